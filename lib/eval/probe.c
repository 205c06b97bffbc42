/* probe.c -- the linear probe of frozen features: BatchNorm1d without
 * affine (eps 1e-6) then Linear, MAE's main_linprobe.py head, trained with
 * cross-entropy.
 *
 * The recipe (the paper's linear probe, MAE's, trains with LARS at batch
 * 16384 for 90 epochs; that is for ImageNet-sized sets): at small scale
 * plain SGD with momentum 0.9 (torch.optim.SGD), weight decay 0, a cosine
 * schedule to 0 after an optional linear warmup, lr 0.1 at batch 256, and
 * many epochs over the features held in memory, reshuffled each epoch from
 * the seed. BatchNorm makes the step size independent of the features'
 * scale, which differs a lot between layers.
 *
 * Dims: N samples held, B batch, C channels, K classes. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mim/stream.h"
#include "mim/kern.h"
#include "mim/optim.h"
#include "mim/eval.h"
#include "../model/arch.h"
#include "../rng.h"

#define PROBE_STREAM 0x70726f6265ULL	/* "probe": the init's random stream */

void
mim_probe_opts_default(struct mim_probe_opts *o)
{
	*o = (struct mim_probe_opts){
		.epochs = 100, .batch = 256, .warmup_epochs = 0,
		.lr = 0.1, .momentum = 0.9, .weight_decay = 0, .seed = 0,
	};
}

struct mim_probe *
mim_probe_new(int C, int K, uint64_t seed)
{
	if (C < 1 || K < 1)
		return mim_seterr("a probe of %d features and %d classes", C, K), NULL;
	struct mim_probe *p = mim_calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->C = C;
	p->K = K;
	p->eps = 1e-6f;
	p->momentum = 0.1f;
	p->mean = mim_calloc((size_t)C, sizeof(float));
	p->var = mim_malloc((size_t)C * sizeof(float));
	p->w = mim_malloc((size_t)K * C * sizeof(float));
	p->b = mim_calloc((size_t)K, sizeof(float));
	if (!p->mean || !p->var || !p->w || !p->b) {
		mim_probe_free(p);
		return NULL;
	}
	struct mim_rng r;
	mim_rng_seed(&r, seed, PROBE_STREAM);
	mim_init_trunc_normal(&r, p->w, (size_t)K * C, 0, 0.01, -2, 2);
	mim_init_const(p->var, (size_t)C, 1);
	return p;
}

void
mim_probe_free(struct mim_probe *p)
{
	if (p) {
		free(p->mean);
		free(p->var);
		free(p->w);
		free(p->b);
		free(p->config);
		free(p);
	}
}

/* ---- BatchNorm1d without affine --------------------------------------------- */

struct bn_job {
	float *out, *mu, *var;
	const float *x, *m, *v;
	int B, C;
	float eps;
};

/* mu, var (C) = batch mean and biased variance of x (B,C), per channel in
 * double; channel by channel, so any split gives the same sums */
static void
bn_stats_chunk(void *ctx, size_t lo, size_t hi)
{
	struct bn_job *j = ctx;

	for (size_t c = lo; c < hi; c++) {
		double s = 0, ss = 0;
		for (int b = 0; b < j->B; b++)
			s += j->x[(size_t)b * j->C + c];
		double m = s / j->B;
		for (int b = 0; b < j->B; b++) {
			double d = j->x[(size_t)b * j->C + c] - m;
			ss += d * d;
		}
		j->mu[c] = (float)m;
		j->var[c] = (float)(ss / j->B);
	}
}

/* out (B,C) = (x - m) / sqrt(v + eps), rows lo..hi */
static void
bn_norm_chunk(void *ctx, size_t lo, size_t hi)
{
	struct bn_job *j = ctx;

	for (size_t b = lo; b < hi; b++)
		for (int c = 0; c < j->C; c++)
			j->out[b * j->C + c] = (float)((j->x[b * j->C + c] - j->m[c]) /
			    sqrt((double)j->v[c] + j->eps));
}

double
mim_probe_train_forward_backward(const struct mim_probe *p, float *dw, float *db,
    float *dlogits, float *xhat, float *logits, float *mu, float *var, const float *x,
    const int64_t *y, int B)
{
	int C = p->C, K = p->K;
	struct bn_job j = {.out = xhat, .mu = mu, .var = var, .x = x, .m = mu, .v = var,
	    .B = B, .C = C, .eps = p->eps};

	kern_for((size_t)C, 64, bn_stats_chunk, &j);
	kern_for((size_t)B, 64, bn_norm_chunk, &j);
	linear_forward(logits, xhat, p->w, p->b, B, C, K);
	/* cross-entropy and its gradient, row by row in double:
	 *   loss_b = logsumexp(l_b) - l_b[y_b];  dl_b = (softmax(l_b) - onehot(y_b)) / B */
	double loss = 0;
	for (int b = 0; b < B; b++) {
		const float *l = logits + (size_t)b * K;
		float *d = dlogits + (size_t)b * K;
		double m = l[0], s = 0;
		for (int k = 1; k < K; k++)
			m = l[k] > m ? l[k] : m;
		for (int k = 0; k < K; k++)
			s += exp((double)l[k] - m);
		loss += m + log(s) - l[y[b]];
		for (int k = 0; k < K; k++)
			d[k] = (float)((exp((double)l[k] - m) / s - (k == y[b])) / B);
	}
	/* in the forward pass this was logits = xhat w^T + b, so
	 * dw = dlogits^T xhat and db = column sums of dlogits */
	memset(dw, 0, (size_t)K * C * sizeof *dw);
	memset(db, 0, (size_t)K * sizeof *db);
	linear_backward(NULL, dw, db, dlogits, xhat, p->w, B, C, K);
	return loss / B;
}

void
mim_probe_track(struct mim_probe *p, const float *mu, const float *var, int B)
{
	double m = p->momentum, unb = (double)B / (B - 1);

	for (int c = 0; c < p->C; c++) {
		p->mean[c] = (float)((1 - m) * p->mean[c] + m * mu[c]);
		p->var[c] = (float)((1 - m) * p->var[c] + m * var[c] * unb);
	}
	p->tracked++;
}

int
mim_probe_forward(const struct mim_probe *p, float *logits, const float *x, int B)
{
	float *xhat = mim_malloc((size_t)B * p->C * sizeof *xhat);
	if (!xhat)
		return -1;
	struct bn_job j = {.out = xhat, .x = x, .m = p->mean, .v = p->var, .B = B, .C = p->C,
	    .eps = p->eps};
	kern_for((size_t)B, 64, bn_norm_chunk, &j);
	linear_forward(logits, xhat, p->w, p->b, B, p->C, p->K);
	free(xhat);
	return 0;
}

void
mim_sgd_update(float *w, float *buf, const float *g, size_t n, double lr, double momentum,
    double wd, int first)
{
	for (size_t i = 0; i < n; i++) {
		double d = g[i] + wd * w[i];
		if (momentum != 0) {
			d = first ? d : momentum * buf[i] + d;
			buf[i] = (float)d;
		}
		w[i] = (float)(w[i] - lr * d);
	}
}

/* ---- training ------------------------------------------------------------- */

/* the settings of a run, as the probe file's mim.probe keeps them */
static char *
probe_config(const struct mim_probe *p, const struct mim_probe_opts *o, int64_t N, int B)
{
	json_t *j = json_pack("{s:i, s:i, s:f, s:f, s:s, s:f, s:f, s:f, s:s, s:i, s:i, s:i, "
	    "s:I, s:I}", "dim", p->C, "classes", p->K, "eps", (double)p->eps,
	    "bn_momentum", (double)p->momentum, "optimizer", "sgd", "lr", o->lr,
	    "momentum", o->momentum, "weight_decay", o->weight_decay, "sched", "cosine",
	    "epochs", o->epochs, "warmup_epochs", o->warmup_epochs, "batch", B,
	    "seed", (json_int_t)o->seed, "samples", (json_int_t)N);
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
	json_decref(j);
	if (!s)
		mim_seterr("out of memory");
	return s;
}

/* idx (N) = a permutation of 0..N-1 for epoch e (Fisher-Yates) */
static void
shuffle(int64_t *idx, int64_t N, uint64_t seed, int e)
{
	uint64_t k = seed ^ ((uint64_t)e * 0xd1b54a32d192ed03ULL), s[4];

	for (int i = 0; i < 4; i++)
		s[i] = mim_splitmix64(&k);
	for (int64_t i = 0; i < N; i++)
		idx[i] = i;
	for (int64_t i = N - 1; i > 0; i--) {
		int64_t r = (int64_t)(mim_u64_to_unit(mim_xoshiro256ss(s)) * (double)(i + 1));
		int64_t t = idx[i];
		idx[i] = idx[r];
		idx[r] = t;
	}
}

int
mim_probe_train(struct mim_probe *p, const struct mim_probe_opts *o, const float *x,
    const int64_t *y, int64_t N, int (*every)(void *ctx, const struct mim_probe_epoch *e),
    void *ctx)
{
	if (N < 2)
		return mim_seterr("%lld samples: a probe needs at least 2", (long long)N);
	if (o->batch < 2 || o->epochs < 1)
		return mim_seterr("batch %d, epochs %d: want batch >= 2, epochs >= 1", o->batch,
		    o->epochs);
	int C = p->C, K = p->K;
	int B = (int)(o->batch < N ? o->batch : N);
	int64_t per = N / B, steps = per * o->epochs;
	for (int64_t i = 0; i < N; i++)
		if (y[i] < 0 || y[i] >= K)
			return mim_seterr("sample %lld: label %lld is not in [0,%d)", (long long)i,
			    (long long)y[i], K);
	struct mim_sched sc = {.kind = MIM_SCHED_COSINE, .lr = o->lr, .steps = steps,
	    .warmup_steps = per * o->warmup_epochs, .gamma = 1};
	if (mim_sched_check(&sc) < 0)
		return mim_preferr("schedule");
	free(p->config);
	if (!(p->config = probe_config(p, o, N, B)))
		return -1;

	size_t sz = (size_t)B * C + (size_t)B * C + 3 * (size_t)B * K + 2 * (size_t)C +
	    2 * ((size_t)K * C + K);
	float *mem = mim_malloc(sz * sizeof *mem);
	int64_t *idx = mim_malloc((size_t)N * sizeof *idx), *yb = mim_malloc((size_t)B * sizeof *yb);
	if (!mem || !idx || !yb) {
		free(mem), free(idx), free(yb);
		return -1;
	}
	float *xb = mem, *xhat = xb + (size_t)B * C, *logits = xhat + (size_t)B * C;
	float *dlogits = logits + (size_t)B * K, *mu = dlogits + (size_t)B * K, *var = mu + C;
	float *dw = var + C, *db = dw + (size_t)K * C, *mw = db + K, *mb = mw + (size_t)K * C;
	int64_t g = 0;
	int rc = 0;

	for (int e = 0; e < o->epochs && !rc; e++) {
		double lsum = 0, lr = 0;
		int64_t right = 0;
		shuffle(idx, N, o->seed, e);
		for (int64_t s = 0; s < per; s++, g++) {
			for (int b = 0; b < B; b++) {
				int64_t i = idx[s * B + b];
				memcpy(xb + (size_t)b * C, x + (size_t)i * C, (size_t)C * sizeof *xb);
				yb[b] = y[i];
			}
			lsum += mim_probe_train_forward_backward(p, dw, db, dlogits, xhat, logits, mu,
			    var, xb, yb, B);
			for (int b = 0; b < B; b++)
				right += mim_eval_rank(logits + (size_t)b * K, K, (int)yb[b]) == 0;
			mim_probe_track(p, mu, var, B);
			lr = mim_sched_lr(&sc, g);
			mim_sgd_update(p->w, mw, dw, (size_t)K * C, lr, o->momentum, o->weight_decay, g == 0);
			mim_sgd_update(p->b, mb, db, (size_t)K, lr, o->momentum, o->weight_decay, g == 0);
		}
		struct mim_probe_epoch ep = {.epoch = e + 1, .epochs = o->epochs, .step = g,
		    .loss = lsum / per, .acc1 = 100.0 * (double)right / ((double)per * B), .lr = lr};
		if (every && every(ctx, &ep))
			break;
	}
	free(mem);
	free(idx);
	free(yb);
	return rc;
}

int
mim_probe_score(const struct mim_probe *p, struct mim_eval *e, const float *x,
    const int64_t *y, int64_t N)
{
	enum { CHUNK = 1024 };

	for (int64_t i = 0; i < N; i++)
		if (y[i] < 0 || y[i] >= p->K)
			return mim_seterr("sample %lld: label %lld is not in [0,%d)", (long long)i,
			    (long long)y[i], p->K);
	float *lg = mim_malloc((size_t)CHUNK * p->K * sizeof *lg);
	int rc = lg ? 0 : -1;
	for (int64_t i = 0; !rc && i < N; i += CHUNK) {
		int B = (int)(N - i < CHUNK ? N - i : CHUNK);
		rc = mim_probe_forward(p, lg, x + (size_t)i * p->C, B);
		rc = rc ? rc : mim_eval_add(e, lg, y + i, B);
	}
	free(lg);
	return rc;
}

/* ---- the probe file ------------------------------------------------------- */

struct mim_frame *
mim_probe_to_frame(const struct mim_probe *p)
{
	struct mim_frame *f = mim_frame_new();
	int64_t c[1] = {p->C}, kc[2] = {p->K, p->C}, k[1] = {p->K};

	if (!f)
		return NULL;
	if (!mim_frame_add(f, "head.0.running_mean", MIM_F32, 1, c, p->mean) ||
	    !mim_frame_add(f, "head.0.running_var", MIM_F32, 1, c, p->var) ||
	    !mim_frame_add(f, "head.0.num_batches_tracked", MIM_I64, 0, NULL, &p->tracked) ||
	    !mim_frame_add(f, "head.1.weight", MIM_F32, 2, kc, p->w) ||
	    !mim_frame_add(f, "head.1.bias", MIM_F32, 1, k, p->b) ||
	    (p->config && mim_meta_set(f, "mim.probe", p->config) < 0)) {
		mim_frame_free(f);
		return NULL;
	}
	return f;
}

struct mim_probe *
mim_probe_from_frame(const struct mim_frame *f)
{
	const struct mim_tensor *w = mim_frame_want(f, "head.1.weight", MIM_F32, 2, NULL);
	if (!w)
		return mim_preferr("not a linear probe (mim-probe)"), NULL;
	int K = (int)w->shape[0], C = (int)w->shape[1];
	const int64_t c[1] = {C}, k[1] = {K};
	const struct mim_tensor *b = mim_frame_want(f, "head.1.bias", MIM_F32, 1, k);
	const struct mim_tensor *m = b ? mim_frame_want(f, "head.0.running_mean", MIM_F32, 1, c) : NULL;
	const struct mim_tensor *v = m ? mim_frame_want(f, "head.0.running_var", MIM_F32, 1, c) : NULL;
	if (!v)
		return NULL;
	struct mim_probe *p = mim_probe_new(C, K, 0);
	if (!p)
		return NULL;
	memcpy(p->w, w->data, w->nbytes);
	memcpy(p->b, b->data, b->nbytes);
	memcpy(p->mean, m->data, m->nbytes);
	memcpy(p->var, v->data, v->nbytes);
	const struct mim_tensor *t = mim_frame_get(f, "head.0.num_batches_tracked");
	if (t && mim_tensor_numel(t) == 1)
		p->tracked = (int64_t)mim_tensor_get(t, 0);
	const char *cfg = mim_meta_get(f, "mim.probe");
	if (cfg && !(p->config = mim_strdup(cfg))) {
		mim_probe_free(p);
		return NULL;
	}
	return p;
}
