/* mim/optim.h -- SimMIM optimisation (reference/simmim.md §7): AdamW with
 * the official two parameter groups, global-norm gradient clipping, the
 * learning-rate schedules and batch scaling, and the training state with
 * its checkpoint (what mim-step(1) runs and resumes).
 *
 * Float arithmetic follows PyTorch 1.13 (torch.optim.AdamW single-tensor
 * path, torch.nn.utils.clip_grad_norm_) operation by operation in float32,
 * so one step agrees with PyTorch to rounding. Everything here is
 * deterministic: the same inputs and thread count give the same bytes. */
#ifndef MIM_OPTIM_H
#define MIM_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "mim/model.h"
#include "mim/stream.h"

/* ---- AdamW (lib/optim/adamw.c) ------------------------------------------ */

struct mim_adamw {
	double beta1, beta2, eps;
	double weight_decay;	/* of the decay group; the other group has 0 */
};
/* The official settings: betas (0.9, 0.999), eps 1e-8, weight decay 0.05. */
void mim_adamw_default(struct mim_adamw *o);

/* One AdamW update of n floats in place, exactly torch.optim.AdamW:
 *   w *= 1 - lr*wd;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;
 *   w -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
 * t is the 1-based number of this update (torch's state['step']). */
void mim_adamw_update(float *w, float *m, float *v, const float *g, size_t n,
    double lr, double wd, const struct mim_adamw *o, int64_t t);

/* AdamW over a whole model: w, g, exp_avg and exp_avg_sq share the layout
 * of the model arena (mod->nw floats). A parameter whose decay flag is set
 * (struct mim_param.decay, the official no-decay rules of §7.1) gets
 * o->weight_decay, every other parameter none. Runs on the thread pool. */
void mim_adamw_step(const struct mim_adamw *o, const struct mim_model *mod,
    float *w, const float *g, float *exp_avg, float *exp_avg_sq, double lr,
    int64_t t);

/* ---- gradient clipping (lib/optim/clip.c) ------------------------------- */

/* The global L2 norm of the gradient as clip_grad_norm_ computes it: the
 * norm of the per-parameter norms, rounded to float. NaN or Inf when any
 * gradient element is. */
float mim_grad_norm(const struct mim_param *p, int np, const float *g);
/* clip_grad_norm_: coef = max_norm / (norm + 1e-6); when coef < 1 every
 * gradient is multiplied by it. max_norm <= 0 turns clipping off. Returns
 * the norm before clipping (what the official code logs). */
float mim_clip_grad(const struct mim_param *p, int np, float *g,
    double max_norm);

/* ---- learning-rate schedules (lib/optim/sched.c) ------------------------ */

enum mim_sched_kind { MIM_SCHED_COSINE, MIM_SCHED_MULTISTEP, MIM_SCHED_CONSTANT };
#define MIM_MAXMILESTONE 64

/* All lrs absolute (already scaled by mim_lr_scale if wanted); all times
 * in optimizer steps. */
struct mim_sched {
	enum mim_sched_kind kind;
	double lr, warmup_lr, min_lr;	/* min_lr: cosine only */
	int64_t steps, warmup_steps;	/* total steps (cosine length), warmup */
	int nmilestones;		/* multistep: lr *= gamma at each */
	int64_t milestones[MIM_MAXMILESTONE];
	double gamma;
	int official;		/* 1: timm 0.4.12 semantics, see mim_sched_lr */
	int accum;		/* official only: micro-batches per step, the
				 * loop's unit of time (0 or 1: none) */
};

/* "cosine" "multistep" "constant" -> kind, or -1. */
int mim_sched_parse(const char *name);
const char *mim_sched_name(enum mim_sched_kind k);
/* Check the settings (lrs >= 0 and finite, warmup <= steps, milestones
 * ascending and >= warmup). 0, or -1 with the error set. */
int mim_sched_check(const struct mim_sched *s);
/* The learning rate of optimizer step g (0-based).
 * Clean (official = 0): linear warmup from warmup_lr over warmup_steps
 * (lr(g) = warmup_lr + g*(lr-warmup_lr)/W), then cosine from lr to min_lr
 * over the remaining steps - warmup_steps (min_lr from then on), or lr
 * times gamma^(milestones <= g), or lr.
 * Official (timm 0.4.12, as SimMIM calls it): the same warmup ramp, but the
 * cosine runs over all `steps` from t = 0, not shifted by the warmup (a
 * jump at t = W), and the step g uses the value at t = g-1: steps 0 and 1
 * both get warmup_lr (or lr when there is no warmup). With accum = A > 1,
 * t counts micro-batches: step g >= 1 uses the value at t = gA - 1 with
 * W, steps and milestones multiplied by A. */
double mim_sched_lr(const struct mim_sched *s, int64_t g);

/* The official linear scaling of main_simmim.py: lr * batch * world / 512,
 * times accum when accum > 1 (for BASE_LR, WARMUP_LR and MIN_LR alike). */
double mim_lr_scale(double lr, int batch, int world, int accum);

/* AdamW with an lr per parameter (lrs[k] for parameter k of mod, the
 * layer-wise lr decay of fine-tuning); lrs NULL: lr for all. */
void mim_adamw_step_lrs(const struct mim_adamw *o, const struct mim_model *mod,
    float *w, const float *g, float *exp_avg, float *exp_avg_sq, const double *lrs,
    double lr, int64_t t);

/* ---- fine-tuning: labels, mixup and cutmix (lib/train/mixup.c) ------------
 * timm 0.4.12's Mixup in mode 'batch' (reference §3.2, §10) with our own
 * random numbers: per batch, with probability mix_prob, mixup or (with
 * probability switch_prob when both alphas are > 0) cutmix, lambda from
 * Beta(alpha, alpha); cutmix cuts the box of rand_bbox (side int(H *
 * sqrt(1 - lambda)), centre uniform, clipped) and corrects lambda to 1 -
 * box area / image area. The batch is mixed with its flip x.flip(0), the
 * targets are smoothed one-hots (off = smoothing/K, on = 1 - smoothing +
 * off) mixed y*lam + y.flip(0)*(1-lam). Without mixing (lam 1) the targets
 * are the smoothed one-hots: LabelSmoothingCrossEntropy as a soft target.
 *
 * RNG: the draws of batch `index` come from xoshiro256** seeded with
 * mim_train_seed(seed, index, rank) mixed with a stream constant of its
 * own (independent of the drop path's), in timm's order: u < mix_prob;
 * u < switch_prob (both alphas on); lambda = X / (X + Y), X, Y ~
 * Gamma(alpha) by Marsaglia and Tsang (alpha < 1: Gamma(alpha + 1) *
 * u^(1/alpha)) with normals of the polar method; cutmix: cy, cx uniform
 * integers in [0, H), [0, W) (floor(u * n)). Deterministic in (seed, index,
 * rank); numpy's draws are not reproduced, the parity tests feed lambda and
 * the box to the reference instead. */
struct mim_ftopt {
	int on;			/* a classifier is trained (set by the run) */
	double smoothing;	/* label smoothing (official 0.1) */
	double mixup, cutmix;	/* Beta alphas, 0: off (official 0.8, 1.0) */
	double mix_prob;	/* probability of mixing a batch (official 1.0) */
	double switch_prob;	/* of cutmix when both are on (official 0.5) */
	double layer_decay;	/* layer-wise lr decay, 0: the model's official */
};
/* The official settings (main_finetune.py, config.py defaults). */
void mim_ftopt_default(struct mim_ftopt *o);

struct mim_mix {
	double lam;		/* 1: nothing mixed */
	int cutmix;		/* 1: the box [yl,yh) x [xl,xh) was cut */
	int yl, yh, xl, xh;
};
/* The draws of one batch of H x W images. */
void mim_mix_draw(const struct mim_ftopt *o, uint64_t seed, int H, int W, struct mim_mix *mx);
/* out (B,C,H,W) = img mixed with its flip as mx says (out != img). */
void mim_mix_images(const struct mim_mix *mx, int B, int C, int H, int W, const float *img,
    float *out);
/* target (B,K): the smoothed one-hots of label mixed as mx says. */
void mim_mix_targets(const struct mim_mix *mx, double smoothing, int B, int K,
    const int64_t *label, float *target);
/* Labels (B) in [0, K), else -1 with the error naming the first bad one. */
int mim_labels_check(const int64_t *label, int B, int K);
/* Beta(a, a) and Gamma(a) draws of the generator above (for tests). */
double mim_mix_beta(uint64_t s[4], double a);

/* ---- training state (lib/train/) ---------------------------------------- */

/* Everything that defines the optimisation; must not change on resume. */
struct mim_trainopt {
	struct mim_adamw adamw;
	struct mim_sched sched;
	double clip_grad;	/* max global L2 norm; 0 = off (official 5.0) */
	int accum;		/* micro-batches per optimizer step (>= 1) */
	uint64_t seed;		/* drop path seeds derive from (seed, batch index) */
	struct mim_lossopt loss;
	int batch;		/* images per micro-batch (the lr scaling used it) */
	int world;		/* data-parallel ranks (1: one process); a step
				 * trains on batch * accum * world images */
	double base_lr;		/* the --base-lr that sched.lr was scaled from, or 0 */
	struct mim_ftopt ft;	/* fine-tuning a classifier (ft.on) */
};
/* Official defaults: AdamW as above, cosine, clip 5.0, accum 1, seed 0,
 * l1 on masked pixels, one rank. Learning rates and steps are left 0. */
void mim_trainopt_default(struct mim_trainopt *o);

/* What one optimizer step did. */
struct mim_stepinfo {
	int64_t step;		/* the step's 0-based index */
	double loss;		/* mean loss over its micro-batches */
	double lr;		/* the learning rate applied */
	double grad_norm;	/* global norm before clipping */
	int nonfinite;		/* loss or gradient was NaN/Inf: nothing applied */
	double acc1;		/* classifier, unmixed batches: top-1 accuracy of
				 * the training batch (%), else NaN */
	struct mim_mix mix;	/* classifier: the mixing of its last micro-batch */
};

struct mim_train {
	struct mim_model *model;
	struct mim_trainopt o;
	float *exp_avg, *exp_avg_sq;	/* AdamW moments, model->nw floats each */
	float *acc;		/* gradient sum over micro-batches (accum > 1) */
	int64_t step;		/* optimizer steps done */
	int64_t batches;	/* input batches consumed by those steps (and by
				 * skipped non-finite steps): the data position */
	int nmicro;		/* micro-batches in acc so far */
	double loss_sum;
	double norm;		/* official accumulation: the last clip's norm */
	/* Called once per optimizer step between backward (accumulation done)
	 * and clipping, with the gradient and the step's loss: the place for a
	 * data-parallel all-reduce (average over ranks). 0 or -1 (then the
	 * step is not taken and nothing is changed). With the official
	 * accumulation (sched.official, accum > 1): once per micro-batch,
	 * with that micro-batch's gradient / accum and its loss, and a
	 * failure leaves the step's micro-batches to mim_train_discard. */
	int (*reduce)(void *ctx, float *g, size_t n, double *loss);
	void *reduce_ctx;
	int rank;		/* mixed into the drop path seeds */
	/* Where each rank's input resumes, as JSON (a list, one mim.pos of
	 * mim-data per rank), saved as mim.train.data; NULL: unknown (not
	 * saved). Not owned. */
	const char *data;
	/* fine-tuning: the mixed batch, its targets and logits */
	float *mixed, *target, *logits;
	size_t mixcap;
	int64_t correct, counted;	/* top-1 hits and images counted of the
					 * step's micro-batches (unmixed ones),
					 * until the next step's first */
	struct mim_mix mix;
};

/* A training state for m (not owned) with zero moments at step 0, or NULL.
 * Checks o (schedule, accum >= 1, clip >= 0, batch >= 1). */
struct mim_train *mim_train_new(struct mim_model *m, const struct mim_trainopt *o);
void mim_train_free(struct mim_train *t);

/* The drop path seed of input batch `index` (splitmix64 of seed, index
 * and rank): a step is a pure function of the state and its batches. */
uint64_t mim_train_seed(uint64_t seed, int64_t index, int rank);

/* Feed one micro-batch (img (B,3,H,W), mask (B,H/p,W/p), B == o.batch):
 * forward and backward; once o.accum micro-batches are in, the reduce
 * hook, clipping and the AdamW update at mim_sched_lr(step). Returns 1 when
 * a step was taken or rejected (info filled; info->nonfinite set when the
 * loss or gradient was not finite: then the weights and moments are
 * untouched, the micro-batches count as consumed, and the step is not
 * counted), 0 when more micro-batches are needed, -1 on error. */
int mim_train_batch(struct mim_train *t, int B, const float *img,
    const uint8_t *mask, struct mim_stepinfo *info);
/* The same for a classifier (o.ft.on): label (B) in [0, K); the batch is
 * mixed (mim_mix_draw of mim_train_seed(seed, batch index, rank)) and the
 * soft-target cross-entropy trained, with the layer-wise lr decay of the
 * model's lr_scale (mim_model_layer_decay). */
int mim_train_batch_cls(struct mim_train *t, int B, const float *img,
    const int64_t *label, struct mim_stepinfo *info);
/* Its forward and backward alone: micro-batch `index` mixed (t->mixed,
 * t->target, t->mix), m->g and *loss, t->logits. 0 or -1. */
int mim_train_grad_cls(struct mim_train *t, int B, const float *img, const int64_t *label,
    int64_t index, double *loss);
/* Drop a partly accumulated step (its batches are not consumed). */
void mim_train_discard(struct mim_train *t);
/* A 64-bit digest of the state a step depends on: weights, moments, step
 * and data position. Data-parallel ranks compare it to catch drift. */
uint64_t mim_train_digest(const struct mim_train *t);

/* ---- training checkpoint (lib/train/ckpt.c) ------------------------------
 * One safetensors frame: the model's state dict and mim.config exactly as
 * mim_model_to_frame writes them, the moments as F32 tensors
 * "opt.exp_avg.<param>" and "opt.exp_avg_sq.<param>", and metadata, each a
 * JSON string:
 *   mim.train.step     optimizer steps done, e.g. "120"
 *   mim.train.batches  input batches consumed (the data position)
 *   mim.train.optim    {"name":"adamw","betas":[..],"eps":..,
 *                       "weight_decay":..,"clip_grad":..,"accum":..}
 *   mim.train.sched    {"name":..,"lr":..,"warmup_lr":..,"min_lr":..,
 *                       "steps":..,"warmup_steps":..,"milestones":[..],
 *                       "gamma":..,"official":..,"base_lr":..,"batch":..
 *                       [,"world":..]}   (world only when > 1)
 *   mim.train.loss     {"loss":"l1"|"l2"|"smooth-l1","region":..,"beta":..}
 *   mim.train.rng      {"seed":..,"drop_path":"splitmix64(seed,batch,rank)"}
 *   mim.train.data     where each rank's input resumes (when its frames
 *                      said, mim-data's mim.pos): [{"epoch":..,"next":..,
 *                      "batch":..,"images":..}, ...]; mim-data --resume
 * The file depends only on the state (no times, no paths), so equal
 * states give equal bytes. */

#define MIM_TRAIN_PREFIX "opt."

/* Save atomically (mim_save: temp file, fsync, rename). 0 or -1. */
int mim_train_save(const struct mim_train *t, const char *path);
/* 1 if f carries training state (mim.train.step), else 0. */
int mim_train_is_ckpt(const struct mim_frame *f);
/* Restore step, data position and moments from a training checkpoint
 * whose model weights are already loaded into t->model. The settings
 * stored in f must equal t->o: a differing one is an error naming the key
 * and both values. 0 or -1. */
int mim_train_restore(struct mim_train *t, const struct mim_frame *f);
/* mim_train_restore, but with extend a stored mim.train.sched that equals
 * t->o's but for fewer "steps" is taken: the run continues on t->o's
 * schedule, a pure function of the step, so a cosine is stretched to the
 * new length and the lr moves to the new curve at the current step (what
 * the official code does when it resumes with a new total). A stored
 * schedule of more steps is an error. Without extend, a schedule that
 * differs only in fewer steps is refused with a hint at --extend. */
int mim_train_restore_extended(struct mim_train *t, const struct mim_frame *f, int extend);
/* The settings of o as they are stored (malloc'd JSON); key is "optim",
 * "sched", "loss" or "rng". NULL on error. */
char *mim_train_setting(const struct mim_trainopt *o, const char *key);

#endif
