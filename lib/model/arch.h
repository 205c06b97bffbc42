/* arch.h -- the internal interfaces between the generic model code and
 * the parts that plug into it: an encoder architecture (struct
 * mim_arch_ops) and a prediction head (struct mim_head_ops). Not
 * installed; only the files of lib/model/ (and lib/ckpt/) include it.
 *
 * WHO DOES WHAT
 *
 *   generic                                  an architecture / a head
 *   -------------------------------------    ---------------------------------
 *   config.c: the JSON of mim.config, the    its config keys, defaults, size
 *     generic keys and checks                checks and feature count
 *   param.c: the parameter table             its parameter list in the
 *     (mim_addp, mim_model_param)            official state_dict order
 *   model.c: struct mim_model, the flat      its official init, forward and
 *     arena m->w / m->g, weight-decay        backward, activations and plans
 *     flags (official rule, reference        (m->priv; the head: its scratch)
 *     §7.1, from ops->skip), load / save
 *     by name, mim_model_grad, mim_encode,
 *     mim_head, the loss (loss.c)
 *   registry.c: the tables of encoders
 *     and heads, looked up by id and name
 *
 * LAYERS. No two files of lib/ may depend on each other in a loop (the
 * suite checks this over nm of the objects). So an architecture or a head
 * calls only param.c, rng.c, target.c (a head), swinblk.c (the Swin
 * block, for the Swin encoder and the swin-inverse head), the kernels and
 * the stream: never config.c, model.c or registry.c, which call it
 * through the tables.
 *
 * ADDING AN ARCHITECTURE: write lib/model/<arch>.c defining one
 * `const struct mim_arch_ops mim_<arch>_ops` and add it to the built-in
 * table of registry.c, or register it at run time with
 * mim_arch_register(). ADDING A HEAD: the same with struct mim_head_ops
 * and mim_head_register(). Nothing else.
 *
 * LIFE OF A MODEL
 *
 *   mim_model_new(cfg):  m->cfg = *cfg (already checked by
 *       mim_config_check); m->features = ops->features(cfg);
 *       ops->params(m) registers the encoder parameters with mim_addp();
 *       m->head_p0 = m->np, then head->params(m) appends the head's
 *       ("decoder.*"); computes every decay flag; allocates m->w (zeroed,
 *       64-byte aligned). m->g stays NULL.
 *   mim_model_init(m, seed): ops->init(m, seed) fills the encoder
 *       parameters, head->init(m, seed) the head's.
 *   mim_encode / mim_encode_layer: ops->forward(train = 0).
 *   mim_model_grad: model.c allocates m->g if NULL and zeroes it, calls
 *       ops->forward(train = 1, layer = 0) to get the latent, runs the
 *       head and the loss and their backward (head gradients), then
 *       ops->backward(m, dlatent), which ADDS d loss / d w of every
 *       encoder parameter into m->g (m->g + p->off, same layout as m->w).
 *   mim_model_free: ops->free(m) releases m->priv (may be called on a
 *       model whose params() failed half-way, or that never ran).
 *
 * Every hook returns 0 (or a count) on success and -1 with mim_seterr() on
 * failure; none prints or exits. Hooks may assume m->cfg passed
 * mim_config_check and cfg.arch is theirs.
 *
 * LAYOUTS (row-major, PyTorch's conventions)
 *   img    (B, in_chans, H, W), H = W = cfg.img_size, normalised
 *   mask   (B, H/p, W/p) uint8, 1 = masked, p = cfg.patch_size; NULL means
 *          nothing masked (the mask token never enters)
 *   latent (B, F, H/s, W/s), s = cfg.encoder_stride, F = m->features
 *   pred   (B, C, Hp, Wp) as head->pred_shape says (linear: (B, 3, H, W))
 *
 * THREADS AND SPEED: every matrix product goes through mim_gemm /
 * mim_gemm_batch (include/mim/gemm.h); elementwise loops through
 * mim_parallel (include/mim/pool.h). Results must not depend on scheduling: never let the thread
 * that happens to run a job decide an order of float additions. The
 * kernels of include/mim/kern.h follow this and are shared by all
 * architectures (layernorm, linear, gelu, softmax, attention with additive
 * bias and window mask, residual with layer scale and drop path, mask
 * token, patch embedding). */
#ifndef MIM_MODEL_ARCH_H
#define MIM_MODEL_ARCH_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "mim/ckpt.h"
#include "mim/model.h"
#include "mim/stream.h"

/* One key of mim.config: its JSON name and type, and where it lives in
 * struct mim_config. A table ends with a NULL name. */
enum mim_ktype { MIM_K_INT, MIM_K_DBL, MIM_K_BOOL, MIM_K_LIST, MIM_K_DBLNULL };
struct mim_config_key {
	const char *name;
	enum mim_ktype type;	/* MIM_K_LIST: int[MIM_MAXSTAGE], nstages long;
				 * the first list key of a table sets nstages */
	size_t off;		/* offsetof(struct mim_config, field) */
};

/* The keys every architecture has, first and last in its table. */
#define MIM_CONFIG_KEYS_FIRST \
	{"img_size", MIM_K_INT, offsetof(struct mim_config, img_size)}, \
	{"in_chans", MIM_K_INT, offsetof(struct mim_config, in_chans)}, \
	{"patch_size", MIM_K_INT, offsetof(struct mim_config, patch_size)}, \
	{"embed_dim", MIM_K_INT, offsetof(struct mim_config, embed_dim)}
#define MIM_CONFIG_KEYS_LAST \
	{"drop_path_rate", MIM_K_DBL, offsetof(struct mim_config, drop_path_rate)}, \
	{"layer_norm_eps", MIM_K_DBL, offsetof(struct mim_config, layer_norm_eps)}, \
	{"encoder_stride", MIM_K_INT, offsetof(struct mim_config, encoder_stride)}, \
	{NULL, 0, 0}

struct mim_arch_ops {
	const char *name;	/* the "model" key: "vit", "swin" */

	/* ---- the config (config.c) ---- */

	/* This architecture's keys of mim.config (besides "model" and
	 * "head"), in the order mim_config_json writes them. */
	const struct mim_config_key *keys;
	/* Set the official defaults of every key (c is zeroed, c->arch set;
	 * the generic defaults in_chans 3, mlp_ratio 4, qkv_bias on are set
	 * before). */
	void (*defaults)(struct mim_config *c);
	/* The sizes only this architecture knows (depth, heads, windows,
	 * encoder_stride). config.c checks the generic keys first. 0 / -1,
	 * the message without the "config: " prefix. */
	int (*check)(const struct mim_config *c);
	/* Channels of the encoder output (num_features). */
	int (*features)(const struct mim_config *c);

	/* ---- reading foreign state dicts (lib/ckpt/infer.c) ---- */

	/* What its SimMIM state dict is known by, for messages:
	 * "encoder.blocks.* (ViT)". */
	const char *signature;
	/* 1 if sd (official names) holds this architecture's encoder. */
	int (*detect)(const struct mim_frame *sd);
	/* Its config keys as the weights tell them, into the JSON object o
	 * ("model", in_chans, patch_size, embed_dim are in already; E the
	 * embedding width, p the patch): set every key the names and shapes
	 * determine. *grid: the patch grid side if the weights tell it
	 * (*from: which tensor said so), else left -1. A key that cannot be
	 * told and that hint (the user's JSON, may be NULL) does not give:
	 * append " KEY" to unknown (n bytes). 0, or -1 with the error set. */
	int (*infer)(const struct mim_frame *sd, json_t *o, const json_t *hint, int E, int p,
	    int *grid, const char **from, char *unknown, size_t n);
	/* Keys that leave no trace in the weights (they keep their defaults
	 * unless the hint gives them; a key the weights told to be null is
	 * not one), NULL-terminated. */
	const char *const *untraced;

	/* ---- the official pretrain -> finetune conversion (lib/ckpt/export.c) ---- */

	/* The fine-tuning model's keys from the export options (ft is the
	 * pretraining config with img_size already set): a window, pooling,
	 * the relative position tables it wants. 0, or -1 with the error set
	 * (an option this architecture has no use for). NULL: nothing. */
	int (*ft_config)(struct mim_config *ft, const struct mim_export_opt *o);
	/* What becomes of the encoder tensor `name` ("encoder." stripped; the
	 * decoder, mask_token and the rebuilt buffers are gone already) in the
	 * fine-tuning model ft: 0 drop it, 1 keep it, 2 hold it back for
	 * ft_copy; with 1 or 2, *side > 0 says it is a relative position table
	 * that must have side^2 + *extra rows (resampled if it has not).
	 * -1 with the error set. */
	int (*ft_tensor)(const struct mim_config *ft, const struct mim_export_opt *o,
	    const char *name, int *side, int *extra);
	/* The name of copy i (0, 1, ...) of a held tensor at the end of the
	 * state dict, into buf; NULL after the last. */
	const char *(*ft_copy)(const struct mim_config *ft, const char *held, int i, char *buf,
	    size_t n);
	/* What the conversion did that is this architecture's, appended to the
	 * export's note (ncopies: the copies ft_copy made). NULL: nothing. */
	void (*ft_note)(const struct mim_config *ft, const struct mim_export_opt *o, int ncopies,
	    char *note, size_t n);

	/* ---- the model ---- */

	/* Register every ENCODER parameter with mim_addp(), in the order of
	 * the official module's named_parameters() (= its state_dict order
	 * without the buffers): names start with "encoder.". May allocate
	 * m->priv. Shapes exactly as PyTorch's (a Conv2d weight is 4-D). */
	int (*params)(struct mim_model *m);

	/* The official no_weight_decay() set and no_weight_decay_keywords()
	 * list of the SimMIM wrapper, full names ("encoder.cls_token"),
	 * NULL-terminated; either may be NULL. model.c applies the official
	 * rule: no decay if ndim == 1, or the name ends in ".bias", or it is
	 * in skip, or it CONTAINS one of skip_kw (plain substring test; for
	 * Swin the keyword never matches a real name, and that quirk is
	 * official, reference §7.1). */
	const char *const *skip;
	const char *const *skip_kw;

	/* A tensor of a state dict that is not a parameter: return 0 if t is
	 * not a buffer this architecture knows (the loader then treats it as
	 * unexpected), 1 if it is one and its contents are right (or need not
	 * be checked), -1 with an error if it is one and wrong. Buffers are
	 * never required. NULL: no buffers. */
	int (*buffer_check)(const struct mim_model *m, const struct mim_tensor *t);

	/* Add the official persistent buffers (relative_position_index I64,
	 * attn_mask F32...) to a state-dict frame, so that PyTorch's
	 * load_state_dict(strict=True) takes our files. NULL: none. */
	int (*buffers_add)(const struct mim_model *m, struct mim_frame *f);

	/* The official initialisation of the encoder parameters, a
	 * deterministic function of seed (use struct mim_rng below). The
	 * parameters are zero on entry. */
	int (*init)(struct mim_model *m, uint64_t seed);

	/* Encoder forward. layer 0: the encoder output, written as the
	 * latent (B,F,H/s,W/s). layer K in 1..nlayers(m): the features of
	 * intermediate layer K, (B,C,h,w) as layer_shape() says (ViT: block
	 * K's output, patch tokens, no final norm; Swin: define and document
	 * it in swin.c, e.g. stage K's output before its patch merging).
	 * train = 1 (only with layer 0): keep what backward needs in m->priv
	 * and apply drop path, drawn from seed per block and sample with
	 * mim_droppath(); train = 0: inference, no drop path, seed unused.
	 * B may change between calls: re-plan buffers when it does (plan
	 * once per batch size, reuse across calls). */
	int (*forward)(struct mim_model *m, int B, const float *img,
	    const uint8_t *mask, int layer, int train, uint64_t seed, float *out);

	/* Backward of the last forward(train = 1): dlatent has the latent's
	 * shape. ADD the gradient of every encoder parameter into m->g
	 * (zeroed by the caller). dlatent is read only. */
	int (*backward)(struct mim_model *m, const float *dlatent);

	/* Number of intermediate layers for forward(layer = K). */
	int (*nlayers)(const struct mim_model *m);
	/* (C,h,w) of one sample's output of forward(layer); layer 0 gives
	 * (F, H/s, W/s). -1 if layer is out of range. */
	int (*layer_shape)(const struct mim_model *m, int layer, int64_t chw[3]);

	/* The official fine-tuning layer id of parameter `name` (a
	 * classifier's name, no "encoder." prefix): optimizer.py's
	 * get_vit_layer / get_swin_layer; *nblocks gets the number of blocks
	 * L (the ids run 0..L+1). */
	int (*layer_id)(const struct mim_model *m, const char *name, int *nblocks);

	/* Release m->priv (and set it NULL). */
	void (*free)(struct mim_model *m);
};

extern const struct mim_arch_ops mim_vit_ops;
extern const struct mim_arch_ops mim_swin_ops;

/* ---- prediction heads ------------------------------------------------------ */

struct mim_head_ops {
	const char *name;	/* the "head" key: "linear" */

	/* The head's own keys of mim.config (written after "head"), or NULL;
	 * and their defaults (after the architecture's), or NULL. */
	const struct mim_config_key *keys;
	void (*defaults)(struct mim_config *c);

	/* 1 if the state dict sd holds this head's parameters (official
	 * names); then set its keys that the shapes tell into o. NULL: never
	 * inferred. */
	int (*infer)(const struct mim_frame *sd, json_t *o);
	/* Sizes only this head knows, for a config whose encoder already
	 * passed (e.g. a head that needs a Swin encoder). NULL: none. 0 / -1,
	 * the message without the "config: " prefix. */
	int (*check)(const struct mim_config *c);
	/* Its persistent buffers, as the architecture's buffer_check and
	 * buffers_add above (names "decoder."); checked after the
	 * encoder's, written after them. NULL: none. */
	int (*buffer_check)(const struct mim_model *m, const struct mim_tensor *t);
	int (*buffers_add)(const struct mim_model *m, struct mim_frame *f);
	/* Register the head's parameters with mim_addp() after the
	 * encoder's (m->features is set; the first lands at m->head_p0).
	 * Official names start with "decoder.". */
	int (*params)(struct mim_model *m);
	/* The head's initialisation (its parameters are zero on entry). */
	int (*init)(struct mim_model *m, uint64_t seed);
	/* (C,H,W) of one sample's prediction: what the loss compares with the
	 * image (or its target). */
	void (*pred_shape)(const struct mim_model *m, int64_t chw[3]);
	/* Floats of scratch for a batch of B: the forward's activations that
	 * the backward reads, and the backward's temporaries. */
	size_t (*scratch)(const struct mim_model *m, int B);
	/* latent (B,F,h,w) -> pred (B,C,H,W) */
	void (*forward)(const struct mim_model *m, int B, const float *latent,
	    float *pred, float *scratch);
	/* head gradients += into m->g; dlatent (B,F,h,w) OVERWRITTEN (or
	 * NULL: not wanted); scratch as the forward of this batch left it */
	void (*backward)(struct mim_model *m, int B, const float *dpred,
	    float *scratch, float *dlatent);
};

extern const struct mim_head_ops mim_head_linear_ops;
extern const struct mim_head_ops mim_head_mlp_ops;
extern const struct mim_head_ops mim_head_swinv_ops;	/* head_swinv.c */

/* What every head predicts (target.c): C channels per predicted pixel, at
 * 1/d of the input resolution; a head's last layer has (s/d)^2 * C outputs
 * per latent position, shuffled by s/d (s = encoder_stride). */
int mim_pred_channels(const struct mim_config *c);
int mim_pred_div(const struct mim_config *c);
extern const struct mim_head_ops mim_head_cls_ops;

/* ---- the registry (registry.c) -------------------------------------------- */

/* The architecture of id (enum mim_arch, or an id from mim_arch_register),
 * NULL if none. */
const struct mim_arch_ops *mim_arch_get(int id);
/* The id of the architecture called name, or -1. */
int mim_arch_find(const char *name);
/* Add an architecture at run time (a plug-in, a test): its id, or -1 with
 * the error set (name taken, table full). ops must outlive its use. */
int mim_arch_register(const struct mim_arch_ops *ops);
/* The same for heads: id 0 is "linear" (the default). */
const struct mim_head_ops *mim_head_get(int id);
int mim_head_find(const char *name);
int mim_head_register(const struct mim_head_ops *ops);

/* ---- helpers for the hooks (param.c, rng.c) ------------------------------ */

/* Append parameter fmt... with ndim dims (d0..d3; unused ones ignored) to
 * the table (param.c). Returns its index into m->p (stable), or -1. Only valid
 * inside ops->params (the arena is allocated afterwards). */
int mim_addp(struct mim_model *m, int ndim, int64_t d0, int64_t d1, int64_t d2,
    int64_t d3, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
/* A classifier's state dict has no "encoder." prefix (the official
 * fine-tuning model): mim_addp drops it from the names an architecture
 * registers, and mim_model_param finds "encoder.X" as "X" there. This
 * gives the name `name` has in m (name itself, or past the prefix). */
const char *mim_pname(const struct mim_model *m, const char *name);
/* 1 if s ends in suf (sdnames.c) */
int mim_ends_with(const char *s, const char *suf);
/* A state dict by name pattern (sdnames.c): the tensor fmt(a, b), or NULL;
 * how many consecutive indices i from 0 have fmt(i) (stage < 0), or
 * fmt(stage, i); S for a table of S*S + extra rows, S odd, or -1; the
 * exact integer square root of v, or -1. */
const struct mim_tensor *mim_sd_get(const struct mim_frame *sd, const char *fmt, int a, int b);
int mim_sd_count(const struct mim_frame *sd, const char *fmt, int stage);
int mim_sd_table_side(int64_t rows, int extra);
int mim_sd_isqrt(int64_t v);

/* Weights and gradients of parameter index i (m->g may be NULL). */
static inline float *
mim_pw(const struct mim_model *m, int i)
{
	return i < 0 ? (float *)0 : m->w + m->p[i].off;
}
static inline float *
mim_pg(const struct mim_model *m, int i)
{
	return i < 0 || !m->g ? (float *)0 : m->g + m->p[i].off;
}

/* ---- deterministic random numbers --------------------------------------- */

/* A small PRNG (xoshiro256** seeded through splitmix64). Streams with
 * different `stream` numbers are independent for the same seed; use one
 * stream per purpose (init of the encoder, init of the decoder, ...). */
struct mim_rng {
	uint64_t s[4];
	double spare;		/* second Box-Muller normal, if have_spare */
	int have_spare;
};
void mim_rng_seed(struct mim_rng *r, uint64_t seed, uint64_t stream);
uint64_t mim_rng_u64(struct mim_rng *r);
double mim_rng_uniform(struct mim_rng *r);	/* [0,1), 53 bits */
double mim_rng_normal(struct mim_rng *r);	/* N(0,1) */

/* Fill w[0..n) in order:
 *   trunc_normal: N(mean, std^2) restricted to [a, b] (rejection; timm's
 *     trunc_normal_(t, mean, std, a, b) has this distribution; for the
 *     SimMIM ViT a = -std, b = std, "truncated at +-1 sigma"; timm's
 *     default a = -2, b = 2 is absolute)
 *   uniform: U(lo, hi)  (PyTorch's default Conv2d / Linear init is
 *     U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias)
 *   const: v */
void mim_init_trunc_normal(struct mim_rng *r, float *w, size_t n, double mean,
    double std, double a, double b);
void mim_init_uniform(struct mim_rng *r, float *w, size_t n, double lo, double hi);
void mim_init_const(float *w, size_t n, float v);

/* ---- drop path (timm DropPath, per sample) -------------------------------
 * The rate of block i of n is torch.linspace(0, rate, n)[i] (float32).
 * For one block: keep = 1 - rate_i, and sample b is kept iff
 * floor(keep + u) = 1, u a float32 uniform in [0,1) that is a pure function
 * of (seed, block, b) -- independent of threads and of the batch size.
 * A kept branch is multiplied by 1/keep (the kernels compute
 * (branch / keep) * kept, timm's x.div(keep_prob) * random_tensor).
 * mim_droppath fills kept[0..B) with 0 or 1 and returns keep (1.0 and all
 * ones when rate_i is 0). */
double mim_droppath_rate(double rate, int i, int n);
float mim_droppath(float *kept, int B, double rate_i, uint64_t seed, int block);

#endif
