/* train.c -- one SimMIM training step (reference §7.4), in the order of the
 * official loop:
 *
 *   for each of the accum micro-batches:
 *       loss, grad = mim_model_grad(batch)        forward, loss, backward
 *       acc += grad / accum                       (loss / ACC in the official code)
 *   reduce hook (data-parallel all-reduce goes here)
 *   norm = clip_grad_norm_(acc, clip_grad)
 *   AdamW step at lr = mim_sched_lr(step)
 *
 * With accumulation and the official schedule (sched.official), the
 * official loop exactly instead: each micro-batch's gradient / accum is
 * reduced at once (DDP all-reduces on every backward), added to the
 * running sum, and the sum is clipped in place after every micro-batch;
 * the step logs the last of those norms, and the scheduler counts
 * micro-batches (mim_sched_lr). The clean default clips once per step.
 *
 * A classifier (mim_train_batch_cls, fine-tuning) differs only in its
 * micro-batch: the batch mixed (mixup.c), soft targets, mim_model_grad_cls;
 * and in the update: an lr per parameter with layer decay (step_lrs).
 *
 * Drop path randomness comes from mim_train_seed(seed, batch index, rank),
 * so a step depends only on the state and its batches: a resumed run
 * repeats an uninterrupted one exactly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mim/kern.h"
#include "mim/optim.h"
#include "../rng.h"

void
mim_trainopt_default(struct mim_trainopt *o)
{
	memset(o, 0, sizeof *o);
	mim_adamw_default(&o->adamw);
	o->sched.kind = MIM_SCHED_COSINE;
	o->sched.gamma = 0.1;
	o->clip_grad = 5.0;
	o->accum = 1;
	o->loss.kind = MIM_LOSS_L1;
	o->loss.region = MIM_REGION_MASKED;
	o->loss.beta = 1.0;
	o->batch = 1;
	o->world = 1;
	mim_ftopt_default(&o->ft);
}

/* splitmix64's output for state x (the mixing function alone) */
static uint64_t
splitmix64(uint64_t x)
{
	return mim_splitmix64(&x);
}

uint64_t
mim_train_seed(uint64_t seed, int64_t index, int rank)
{
	return splitmix64(splitmix64(splitmix64(seed) ^ (uint64_t)index) ^ (uint64_t)rank);
}

static int
check_opt(const struct mim_trainopt *o)
{
	if (mim_sched_check(&o->sched) < 0)
		return mim_preferr("schedule");
	if (o->accum < 1)
		return mim_seterr("accum must be >= 1");
	if (o->batch < 1)
		return mim_seterr("batch must be >= 1");
	if (o->world < 1)
		return mim_seterr("world size must be >= 1");
	if (!(isfinite(o->clip_grad) && o->clip_grad >= 0))
		return mim_seterr("clip_grad must be >= 0");
	const struct mim_adamw *a = &o->adamw;
	if (!(a->beta1 >= 0 && a->beta1 < 1 && a->beta2 >= 0 && a->beta2 < 1))
		return mim_seterr("AdamW betas must be in [0, 1)");
	if (!(isfinite(a->eps) && a->eps > 0))
		return mim_seterr("AdamW eps must be > 0");
	if (!(isfinite(a->weight_decay) && a->weight_decay >= 0))
		return mim_seterr("weight decay must be >= 0");
	return 0;
}

struct mim_train *
mim_train_new(struct mim_model *m, const struct mim_trainopt *o)
{
	struct mim_target tg;	/* the loss against the model's target */
	mim_target_of(m, &tg);
	if (check_opt(o) < 0 || mim_loss_check(&o->loss, &tg) < 0)
		return NULL;
	struct mim_train *t = mim_calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->model = m;
	t->o = *o;
	t->o.sched.accum = o->sched.official ? o->accum : 0;
	t->exp_avg = mim_malloc(m->nw * sizeof(float));
	t->exp_avg_sq = mim_malloc(m->nw * sizeof(float));
	if (o->accum > 1)
		t->acc = mim_malloc(m->nw * sizeof(float));
	if (!t->exp_avg || !t->exp_avg_sq || (o->accum > 1 && !t->acc)) {
		mim_train_free(t);
		return NULL;
	}
	/* zeroed by writing, over the pool: the first AdamW step reads the
	 * moments before it writes them, and calloc's untouched pages would
	 * fault twice there, the second time flushing the other threads' TLBs
	 * (an interrupt to each; swin-tiny's 224 MB of moments: 2-3 s in a
	 * virtual machine of 2 cores). Each thread touches its share first. */
	kern_zero(t->exp_avg, m->nw);
	kern_zero(t->exp_avg_sq, m->nw);
	if (t->acc)
		kern_zero(t->acc, m->nw);
	return t;
}

void
mim_train_free(struct mim_train *t)
{
	if (!t)
		return;
	free(t->exp_avg);
	free(t->exp_avg_sq);
	free(t->acc);
	free(t->mixed);
	free(t->target);
	free(t->logits);
	free(t);
}

void
mim_train_discard(struct mim_train *t)
{
	t->nmicro = 0;
	t->loss_sum = 0;
}

/* one 64-bit word into the digest h (splitmix64's finaliser) */
static uint64_t
mix(uint64_t h, uint64_t x)
{
	return splitmix64(h ^ x);
}

static uint64_t
digest_floats(uint64_t h, const float *x, size_t n)
{
	uint32_t a, b;
	size_t i;

	for (i = 0; i + 1 < n; i += 2) {
		memcpy(&a, x + i, 4);
		memcpy(&b, x + i + 1, 4);
		h = mix(h, (uint64_t)a << 32 | b);
	}
	if (i < n) {
		memcpy(&a, x + i, 4);
		h = mix(h, a);
	}
	return mix(h, n);
}

uint64_t
mim_train_digest(const struct mim_train *t)
{
	const struct mim_model *m = t->model;
	uint64_t h = mix(mix(0, (uint64_t)t->step), (uint64_t)t->batches);

	h = digest_floats(h, m->w, m->nw);
	h = digest_floats(h, t->exp_avg, m->nw);
	return digest_floats(h, t->exp_avg_sq, m->nw);
}

/* the official loop's accumulation (see the top) */
static int
official_accum(const struct mim_train *t)
{
	return t->o.sched.official && t->o.accum > 1;
}

/* The AdamW update at lr; with layer-wise lr decay (a parameter's
 * lr_scale != 1) each parameter's lr is the schedule of its group: the
 * peak times lr_scale, warmup_lr and min_lr unscaled (timm's scheduler
 * over the groups' initial lrs, reference §10); lr is the unscaled
 * group's, the one the official loop logs. */
static int
step_lrs(struct mim_train *t, const float *g, double lr)
{
	struct mim_model *m = t->model;
	double *lrs = NULL;

	for (int k = 0; k < m->np && !lrs; k++)
		if (m->p[k].lr_scale != 1.0 && !(lrs = malloc((size_t)m->np * sizeof *lrs)))
			return mim_seterr("out of memory");
	for (int k = 0; lrs && k < m->np; k++) {
		struct mim_sched s = t->o.sched;
		s.lr = s.lr * m->p[k].lr_scale;
		lrs[k] = m->p[k].lr_scale == 1.0 ? lr : mim_sched_lr(&s, t->step);
	}
	mim_adamw_step_lrs(&t->o.adamw, m, m->w, g, t->exp_avg, t->exp_avg_sq, lrs, lr,
	    t->step + 1);
	free(lrs);
	return 0;
}

/* clip, AdamW: the end of a step whose gradient is in g. For the official
 * accumulation g is reduced and clipped already, its norm in t->norm. */
static int
finish(struct mim_train *t, float *g, struct mim_stepinfo *info)
{
	struct mim_model *m = t->model;
	double loss = t->loss_sum / t->o.accum;
	int64_t used = t->o.accum;
	int done = official_accum(t);

	t->nmicro = 0;
	t->loss_sum = 0;
	if (!done && t->reduce && t->reduce(t->reduce_ctx, g, m->nw, &loss) < 0)
		return mim_preferr("step %lld: reduce", (long long)t->step);
	memset(info, 0, sizeof *info);
	info->acc1 = NAN;
	info->step = t->step;
	info->loss = loss;
	info->lr = mim_sched_lr(&t->o.sched, t->step);
	info->grad_norm = done ? t->norm : mim_clip_grad(m->p, m->np, g, t->o.clip_grad);
	t->batches += used;
	if (!isfinite(info->loss) || !isfinite(info->grad_norm)) {
		info->nonfinite = 1;
		return 1;
	}
	if (t->counted)
		info->acc1 = 100.0 * (double)t->correct / (double)t->counted;
	info->mix = t->mix;
	if (step_lrs(t, g, info->lr) < 0)
		return -1;
	t->step++;
	return 1;
}

/* mim_model_grad may refuse a batch whose loss is NaN. Tell that apart from
 * a real failure by running the forward pass alone: 1 if its loss is not
 * finite, 0 if it is, -1 if that fails too (keeping the first message). */
static int
loss_nonfinite(struct mim_model *m, int B, const float *img, const uint8_t *mask,
    const struct mim_lossopt *o)
{
	char why[1024];
	int64_t lat_chw[3], pred_chw[3];
	mim_layer_shape(m, 0, lat_chw);
	mim_pred_shape(m, pred_chw);
	float *lat = malloc((size_t)B * lat_chw[0] * lat_chw[1] * lat_chw[2] * sizeof(float) + 1);
	float *pred = malloc((size_t)B * pred_chw[0] * pred_chw[1] * pred_chw[2] * sizeof(float) + 1);
	int rc = -1;

	snprintf(why, sizeof why, "%s", mim_errmsg());
	if (lat && pred && mim_encode(m, B, img, mask, lat) == 0 &&
	    mim_head(m, B, lat, pred) == 0)
		rc = !isfinite(mim_model_loss(m, o, B, img, mask, pred, NULL));
	if (rc < 0)
		mim_seterr("%s", why);
	free(lat);
	free(pred);
	return rc;
}

static int accumulate(struct mim_train *t, double loss, struct mim_stepinfo *info);

int
mim_train_batch(struct mim_train *t, int B, const float *img,
    const uint8_t *mask, struct mim_stepinfo *info)
{
	struct mim_model *m = t->model;
	double loss;

	if (B != t->o.batch)
		return mim_seterr("batch of %d images, the run uses %d", B, t->o.batch);
	uint64_t seed = mim_train_seed(t->o.seed, t->batches + t->nmicro, t->rank);
	if (mim_model_grad(m, B, img, mask, &t->o.loss, seed, &loss) < 0) {
		if (loss_nonfinite(m, B, img, mask, &t->o.loss) != 1)
			return -1;
		loss = NAN;	/* the step will be rejected as non-finite */
	}
	return accumulate(t, loss, info);
}

/* m->g and loss of a micro-batch into the step (see the top) */
static int
accumulate(struct mim_train *t, double loss, struct mim_stepinfo *info)
{
	struct mim_model *m = t->model;

	if (t->o.accum == 1) {
		t->loss_sum += loss;
		t->nmicro++;
		return finish(t, m->g, info);
	}
	/* acc = sum of grad/accum over the micro-batches, in their order */
	const float inv = 1.0f / (float)t->o.accum;
	if (official_accum(t)) {
		for (size_t i = 0; i < m->nw; i++)
			m->g[i] *= inv;
		if (t->reduce && t->reduce(t->reduce_ctx, m->g, m->nw, &loss) < 0)
			return mim_preferr("step %lld: reduce", (long long)t->step);
		t->loss_sum += loss;
		if (t->nmicro++ == 0)
			memcpy(t->acc, m->g, m->nw * sizeof *t->acc);
		else
			for (size_t i = 0; i < m->nw; i++)
				t->acc[i] += m->g[i];
		t->norm = mim_clip_grad(m->p, m->np, t->acc, t->o.clip_grad);
		return t->nmicro < t->o.accum ? 0 : finish(t, t->acc, info);
	}
	t->loss_sum += loss;
	t->nmicro++;
	if (t->nmicro == 1)
		for (size_t i = 0; i < m->nw; i++)
			t->acc[i] = m->g[i] * inv;
	else
		for (size_t i = 0; i < m->nw; i++)
			t->acc[i] += m->g[i] * inv;
	if (t->nmicro < t->o.accum)
		return 0;
	return finish(t, t->acc, info);
}

/* room for the mixed batch, its targets and logits */
static int
cls_room(struct mim_train *t, int B)
{
	const struct mim_config *c = &t->model->cfg;
	size_t n = (size_t)B * c->in_chans * c->img_size * c->img_size;
	size_t k = (size_t)B * c->num_classes;

	if (t->mixed && t->mixcap == n)
		return 0;
	free(t->mixed);
	free(t->target);
	free(t->logits);
	t->mixed = malloc(n * sizeof(float));
	t->target = malloc(k * sizeof(float));
	t->logits = malloc(k * sizeof(float));
	t->mixcap = n;
	if (!t->mixed || !t->target || !t->logits) {
		t->mixcap = 0;
		return mim_seterr("out of memory");
	}
	return 0;
}

int
mim_train_grad_cls(struct mim_train *t, int B, const float *img, const int64_t *label,
    int64_t index, double *loss)
{
	struct mim_model *m = t->model;
	const struct mim_config *c = &m->cfg;
	int K = c->num_classes, S = c->img_size;

	*loss = 0;
	if (!t->o.ft.on || !mim_is_classifier(c))
		return mim_seterr("not fine-tuning a classifier");
	if (mim_labels_check(label, B, K) < 0 || cls_room(t, B) < 0)
		return -1;
	uint64_t seed = mim_train_seed(t->o.seed, index, t->rank);
	mim_mix_draw(&t->o.ft, seed, S, S, &t->mix);
	if ((t->o.ft.mixup > 0 || t->o.ft.cutmix > 0) && B % 2)
		return mim_seterr("mixup and cutmix pair image b with image B-1-b: the batch "
		    "must be even (it has %d)", B);
	mim_mix_images(&t->mix, B, c->in_chans, S, S, img, t->mixed);
	mim_mix_targets(&t->mix, t->o.ft.smoothing, B, K, label, t->target);
	return mim_model_grad_cls(m, B, t->mixed, t->target, seed, loss, t->logits);
}

int
mim_train_batch_cls(struct mim_train *t, int B, const float *img, const int64_t *label,
    struct mim_stepinfo *info)
{
	int K = t->model->cfg.num_classes;
	double loss = 0;

	if (B != t->o.batch)
		return mim_seterr("batch of %d images, the run uses %d", B, t->o.batch);
	/* a step's first micro-batch starts its top-1 counts, which stay
	 * after the step for the run to sum over the ranks (run.c) */
	if (t->nmicro == 0)
		t->correct = t->counted = 0;
	if (mim_train_grad_cls(t, B, img, label, t->batches + t->nmicro, &loss) < 0) {
		if (isfinite(loss))
			return -1;
		loss = NAN;	/* the step will be rejected as non-finite */
	}
	if (t->mix.lam == 1) {	/* top-1 on the training batch, when unmixed */
		for (int b = 0; b < B; b++) {
			const float *z = t->logits + (size_t)b * K;
			int best = 0;
			for (int k = 1; k < K; k++)
				best = z[k] > z[best] ? k : best;
			t->correct += best == label[b];
		}
		t->counted += B;
	}
	return accumulate(t, loss, info);
}
