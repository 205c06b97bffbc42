/* mim/model.h -- SimMIM models (ViT and Swin encoders, the linear
 * prediction head, the losses) as flat parameter arenas with official
 * state_dict names. See reference/simmim.md in the design notes, and
 * mim-ckpt(1) for the checkpoint format.
 *
 * CONTRACT shared by lib/model/, mim-encode, mim-head, mim-loss,
 * mim-step and mim-ckpt. Extend it; do not change what is here without
 * updating every user. */
#ifndef MIM_MODEL_H
#define MIM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "mim/stream.h"

/* The built-in encoders; a plug-in registered at run time gets a higher id
 * (lib/model/arch.h). */
enum mim_arch { MIM_ARCH_VIT, MIM_ARCH_SWIN };
#define MIM_MAXSTAGE 8

/* The model, exactly the keys of __metadata__["mim.config"] (JSON). */
struct mim_config {
	enum mim_arch arch;		/* "model": "vit" | "swin" */
	int head;			/* "head": "linear" (id 0, the default), "mlp",
					 * "swin-inverse" */
	int head_hidden;		/* mlp: hidden width (0: the encoder's) */
	int head_depths[MIM_MAXSTAGE];	/* swin-inverse: blocks of its stage j (0: the
					 * encoder's stage nstages-1-j), nstages long */
	int img_size, in_chans, patch_size, embed_dim;
	double mlp_ratio;
	int qkv_bias;
	double drop_path_rate, layer_norm_eps;
	int encoder_stride;
	/* ViT */
	int depth, num_heads;
	double init_values;
	int use_abs_pos_emb, use_rel_pos_bias, use_shared_rel_pos_bias, use_mean_pooling;
	/* Swin */
	int nstages, depths[MIM_MAXSTAGE], num_heads_s[MIM_MAXSTAGE];	/* JSON "depths", "num_heads" */
	int window_size, ape, patch_norm;
	/* What the head predicts (lib/model/target.c; keys written only when
	 * not the default, so a pixel-target config keeps its bytes) */
	int target;			/* "target": enum mim_target_kind */
	int pred_div;			/* "pred_div": d, prediction at H/d (1) */
	int target_bins;		/* "target_bins": K bins per channel (8) */
	int target_clusters;		/* "target_clusters": K colours (512) */
	int norm_pix;			/* "norm_pix": window P of the normalised
					 * pixel target, 0 = off */
	/* the classification head ("head": "cls", lib/model/classify.c): a
	 * classifier is the official fine-tuning model, num_classes > 0 */
	int num_classes;
	double init_scale;		/* head init: trunc_normal(.02) * init_scale */
};

/* Targets (lib/model/target.c): the normalised pixels (SimMIM's), each
 * colour channel's 0-255 value in K equal bins, or the nearest of K colour
 * centres. */
enum mim_target_kind { MIM_TARGET_PIXEL, MIM_TARGET_BINS, MIM_TARGET_CLUSTERS };

/* Defaults of the official configs (issue text / reference §8). */
void mim_config_default(struct mim_config *c, enum mim_arch arch);
/* Parse JSON: "model" picks the defaults, then every key present
 * overrides; unknown keys, wrong types and impossible sizes are errors. */
int mim_config_parse(struct mim_config *c, const char *json);
/* The config as compact JSON (malloc'd), every key written. */
char *mim_config_json(const struct mim_config *c);
/* Presets: vit-tiny vit-small vit-base vit-large swin-tiny swin-small
 * swin-base swin-large (and the micro configs of the golden tests). */
int mim_config_preset(struct mim_config *c, const char *name);
/* Name of preset i (0, 1, ...), NULL past the last: for help texts. */
const char *mim_config_preset_name(int i);
/* Check sizes (image divisible, windows divide stages...). 0 / -1. */
int mim_config_check(const struct mim_config *c);
/* Channels of the encoder output (num_features). */
int mim_config_features(const struct mim_config *c);
/* Key i (0, 1, ...) of mim.config for any architecture the library has,
 * each name once ("model", "head", then the architectures' keys); NULL
 * past the last: for flags and help texts. */
const char *mim_config_key_name(int i);
/* The names of the architecture and of the head of c ("vit", "linear"). */
const char *mim_config_arch_name(const struct mim_config *c);
const char *mim_config_head_name(const struct mim_config *c);

/* One parameter in the flat arena. */
struct mim_param {
	char *name;		/* official state_dict name, e.g. "encoder.norm.weight" */
	int ndim;
	int64_t shape[4];
	size_t off, numel;	/* offset into w / g, in floats */
	int decay;		/* 1 if in the official weight-decay group (§7.1) */
	int layer_id;		/* classifiers: the official layer id of the
				 * fine-tuning optimizer (§10), else 0 */
	double lr_scale;	/* its layer-decay lr scale (1: none) */
};

struct mim_model {
	struct mim_config cfg;
	int np;
	struct mim_param *p;	/* in official state_dict order */
	size_t nw;		/* total parameters */
	float *w;		/* parameters, nw floats */
	float *g;		/* gradients, nw floats (allocated by mim_model_grad) */
	int features;		/* F: channels of the encoder output */
	int head_p0;		/* index in p of the head's first parameter */
	float *centres;		/* target "clusters": (K,3) colours, 0-255 RGB,
				 * "decoder.centres" in a checkpoint; not a
				 * parameter (no gradient, no optimiser) */
	void *priv;		/* activations, plans: the architecture's own */
	void *work;		/* buffers of the head and loss (lib/model/model.c) */
};

/* A model of this config with zeroed weights; NULL on error. */
struct mim_model *mim_model_new(const struct mim_config *c);
void mim_model_free(struct mim_model *m);
/* The official initialisation, deterministic in seed. */
int mim_model_init(struct mim_model *m, uint64_t seed);
/* The parameter called name, or NULL. */
struct mim_param *mim_model_param(const struct mim_model *m, const char *name);
/* Copy weights in by official name (F32, F16, BF16, F64 accepted). Every
 * parameter must be present with its shape; known buffers
 * (relative_position_index, attn_mask) are checked or ignored; other extra
 * names are an error unless allow_extra (training state, "opt.*"). */
int mim_model_load(struct mim_model *m, const struct mim_frame *sd, int allow_extra);
/* Config from f's mim.config, then the weights: the model of a checkpoint. */
struct mim_model *mim_model_from_frame(const struct mim_frame *f);
struct mim_model *mim_model_open(const char *path);
/* The colour centres of a clusters target from t (F32/F16/BF16/F64
 * [target_clusters,3], 0-255 RGB); what names t in messages. 0 / -1. */
int mim_model_set_centres(struct mim_model *m, const struct mim_tensor *t, const char *what);
/* The state dict (parameters, official names, F32; "decoder.centres" of a
 * clusters target) plus mim.config. */
struct mim_frame *mim_model_to_frame(const struct mim_model *m);

/* ---- computation ---------------------------------------------------------
 * img (B,3,H,W) normalised; mask (B,H/p,W/p) u8, 1 = masked, or NULL;
 * latent (B,C,H/s,W/s); pred (B,)+mim_pred_shape: (B,3,H,W) for the
 * linear head. */

/* (C,H,W) of one sample's prediction by m's head: every tool and the
 * training step size `pred` by this. */
void mim_pred_shape(const struct mim_model *m, int64_t chw[3]);
/* Whether a prediction of shape pred (4-D) can be scored against the
 * images of shape img (4-D, [B,3,H,W]) by mim_loss: for the tools that see
 * a stream and no model (mim-loss, mim-view). 0, or -1 with the error
 * naming what disagrees. */
int mim_pred_check(const int64_t img[4], int pred_ndim, const int64_t *pred);

enum mim_loss_kind { MIM_LOSS_L1, MIM_LOSS_L2, MIM_LOSS_SMOOTH_L1, MIM_LOSS_CE };
enum mim_loss_region { MIM_REGION_MASKED, MIM_REGION_ALL };
/* What the loss compares pred with (all zero: SimMIM's pixels at 1x). */
struct mim_target {
	enum mim_target_kind kind;
	int div;		/* d: pred is (B,C,H/d,W/d); 0 or 1: full resolution */
	int K;			/* bins per channel, or clusters */
	int norm_pix;		/* P (odd): normalised pixel target, 0 = off */
	const float *centres;	/* clusters: (K,3), 0-255 RGB */
};
struct mim_lossopt {
	enum mim_loss_kind kind;	/* a regression (l1, l2, smooth-l1) for the
					 * pixel target; ce for bins and clusters,
					 * where l1 (the default) also means ce */
	enum mim_loss_region region;
	double beta;		/* smooth-l1 threshold, default 1.0 */
};
/* The target of a model's config (and centres). */
void mim_target_of(const struct mim_model *m, struct mim_target *t);
/* Whether the loss o can score target t, and t is sound: 0, or -1 with
 * the error ("loss l2 is a regression: target bins is scored by ce"). */
int mim_loss_check(const struct mim_lossopt *o, const struct mim_target *t);
/* Channels of a prediction of target t (3, 3K or K) */
int mim_target_channels(const struct mim_target *t);
/* "pixel", "bins", "clusters" (NULL if out of range) and back (-1) */
const char *mim_target_name(int kind);
int mim_target_parse(const char *name);
/* The pieces of the loss, for tests and mim-view (target.c):
 * pooled: (B,3,H/d,W/d) the d x d means of img (B,3,H,W);
 * normed: (B,3,h,w) of t (B,3,h,w) normalised with window P;
 * labels: (B,h,w) per-pixel labels of pooled normalised pixels x
 *   (B,3,h,w): bins -> (B,3,h,w) values in [0,K), clusters -> (B,1,h,w);
 * mask_at: (B,h,w) 1 where the target pixel is masked, h = H/d, from
 *   mask (B,H/p,W/p): a target pixel is masked iff every patch it
 *   covers is. */
void mim_target_pool(int B, int H, int W, int d, const float *img, float *pooled);
void mim_target_norm(int B, int h, int w, int P, const float *t, float *normed);
void mim_target_labels(const struct mim_target *t, int B, int h, int w, const float *x,
    int32_t *labels);
/* For pictures (mim-view): x (B,3,h,w) normalised with the statistics of
 * t's P x P windows undone (the inverse of mim_target_norm); the expected
 * colour of a bins or clusters prediction pred (B,C,h,w), the softmax-
 * weighted mean of the bin centres (k + 0.5) 256/K - 0.5 or of the colour
 * centres, normalised as mim-data does, into x (B,3,h,w). */
void mim_target_denorm(int B, int h, int w, int P, const float *t, const float *x, float *out);
void mim_target_expect(const struct mim_target *t, int B, int h, int w, const float *pred, float *x);
void mim_target_mask(int B, int H, int W, int p, int d, const uint8_t *mask, uint8_t *mask_at);
/* The normalisation mim-data applies (ImageNet mean and std) undone:
 * the 0-255 value of channel c of a normalised value v, rounded to the
 * nearest integer and clamped to [0,255]. */
int mim_target_u8(int c, float v);
/* per pixels of each image of img (B,3,H,W, normalised), drawn uniformly
 * with replacement by a generator of (seed, first + b), as unrounded
 * 0-255 RGB colours into out (B*per, 3): the sample of mim-cluster. */
void mim_target_sample(int B, int H, int W, const float *img, uint64_t seed, int64_t first, int per,
    float *out);
/* K-means colour centres (target.c): k-means++ from seed, then Lloyd
 * iterations until no label changes or iters; px (n,3) 0-255 RGB;
 * centres (K,3). 0, or -1 with the error set (n < K). */
int mim_kmeans(const float *px, size_t n, int K, int iters, uint64_t seed, float *centres);
/* The names of the losses and regions: one owner (lib/model/loss.c), for
 * flags, checkpoints and messages. parse: the enum, or -1; name: NULL when
 * out of range; choices: the names for a message ("l1, l2 or smooth-l1"). */
int mim_loss_parse(const char *name);
const char *mim_loss_name(enum mim_loss_kind k);
const char *mim_loss_choices(void);
int mim_region_parse(const char *name);
const char *mim_region_name(enum mim_loss_region r);
const char *mim_region_choices(void);

/* Encoder forward (inference: no drop path). */
int mim_encode(struct mim_model *m, int B, const float *img, const uint8_t *mask,
    float *latent);
/* Intermediate features, for linear probes and feature extraction.
 * Layers are numbered 1..mim_model_nlayers(m) (ViT: blocks; Swin: stages);
 * layer 0 is the encoder output itself (what mim_encode gives). Layer K of
 * the ViT is the output of block K, without the final LayerNorm, patch
 * tokens only. mim_layer_shape gives (C,h,w) of one sample's feature map;
 * mim_encode_layer writes (B,C,h,w) into out. */
int mim_model_nlayers(const struct mim_model *m);
int mim_layer_shape(const struct mim_model *m, int layer, int64_t chw[3]);
int mim_encode_layer(struct mim_model *m, int B, const float *img,
    const uint8_t *mask, int layer, float *out);
/* The prediction head of the config ("linear": 1x1 conv + pixel shuffle):
 * latent (B,F,h,w) -> pred. */
int mim_head(struct mim_model *m, int B, const float *latent, float *pred);
/* The official loss (the pixel target at 1x); if dpred is not NULL it
 * receives d loss / d pred. */
double mim_loss(const struct mim_lossopt *o, int B, int H, int W, int p,
    const float *img, const uint8_t *mask, const float *pred, float *dpred);
/* The loss of o against target t (NULL: pixels at 1x): pred
 * (B,C,H/d,W/d). NaN with the error set on bad options (mim_loss_check,
 * errno EINVAL) or no memory (errno ENOMEM). */
double mim_target_loss(const struct mim_lossopt *o, const struct mim_target *t, int B, int H,
    int W, int p, const float *img, const uint8_t *mask, const float *pred, float *dpred);
/* mim_target_loss with the target of m's config */
double mim_model_loss(const struct mim_model *m, const struct mim_lossopt *o, int B,
    const float *img, const uint8_t *mask, const float *pred, float *dpred);
/* One training forward and backward: m->g (allocated on first use) is
 * overwritten with d loss / d w for every parameter; *loss gets the loss.
 * Drop path (cfg.drop_path_rate) is drawn from seed, so a step is a pure
 * function of (weights, batch, seed). */
int mim_model_grad(struct mim_model *m, int B, const float *img,
    const uint8_t *mask, const struct mim_lossopt *o, uint64_t seed,
    double *loss);

/* ---- classifiers: the official fine-tuning models (reference §4.2, §10) ----
 * A config with "head": "cls" and num_classes K > 0 (lib/model/classify.c).
 * Its state dict has the official fine-tuning names: no "encoder." prefix,
 * no mask_token, no decoder. ViT (use_mean_pooling): the patch tokens
 * averaged, fc_norm, head; Swin: the final norm, average pooling, head.
 * mim_head then gives the logits as (B,K,1,1) from the latent, and the
 * decay flags follow the fine-tuning models' no_weight_decay(): ViT
 * pos_embed, cls_token; Swin absolute_pos_embed and every name holding
 * relative_position_bias_table (the keyword matches here). */
int mim_is_classifier(const struct mim_config *c);
/* timm's SoftTargetCrossEntropy: mean over b of sum_k -target[b,k] *
 * log_softmax(logits[b])_k; logits, target (B,K). dlogits (B,K), if not
 * NULL, gets d loss / d logits. Label smoothing is a soft target
 * (mim_smooth_targets in mim/optim.h). */
double mim_soft_ce(int B, int K, const float *logits, const float *target, float *dlogits);
/* One classifier training forward and backward: m->g overwritten with the
 * gradient of mim_soft_ce(logits, target) (target (B,K)); *loss and, if
 * not NULL, logits (B,K) filled. Drop path from seed as mim_model_grad. */
int mim_model_grad_cls(struct mim_model *m, int B, const float *img, const float *target,
    uint64_t seed, double *loss, float *logits);
/* Layer-wise lr decay of the official fine-tuning optimizer
 * (optimizer.py get_vit_layer / get_swin_layer): every parameter's
 * layer_id, and lr_scale = decay^(L + 1 - layer_id), L the number of
 * blocks. A pretraining model: ids 0 and scales 1. 0 or -1. */
int mim_model_layer_decay(struct mim_model *m, double decay);
/* The official LAYER_DECAY of the shipped fine-tuning configs for this
 * architecture: 0.65 (ViT), 0.8 (Swin, 800 epochs). */
double mim_layer_decay_default(const struct mim_config *c);

#endif
