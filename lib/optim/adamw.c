/* adamw.c -- AdamW (Loshchilov & Hutter, decoupled weight decay) exactly as
 * torch.optim.AdamW in PyTorch 1.13 (single-tensor path, amsgrad off,
 * maximize off), which the official SimMIM code uses (reference §7.1).
 *
 * PyTorch works in float32 with its scalars (1 - lr*wd, beta1, 1-beta1,
 * ...) computed in double and rounded to float when they meet a tensor.
 * The loop below performs the same float operations in the same order:
 *
 *   param.mul_(1 - lr*wd)                      w = w * decay
 *   exp_avg.mul_(b1).add_(g, alpha=1-b1)       m = m*b1 + (1-b1)*g
 *   exp_avg_sq.mul_(b2).addcmul_(g, g, 1-b2)   v = v*b2 + (1-b2)*g*g
 *   denom = (v.sqrt() / sqrt(bc2)).add_(eps)   d = sqrt(v)/bc2s + eps
 *   param.addcdiv_(m, denom, value=-lr/bc1)    w = w + (-lr/bc1) * (m/d)
 *
 * with bc1 = 1 - b1^t, bc2 = 1 - b2^t in double. (PyTorch's vector loops
 * may fuse a multiply-add; the difference is at most an ulp.) */
#include <math.h>
#include <stdlib.h>

#include "mim/gemm.h"
#include "mim/optim.h"
#include "mim/prof.h"
#include "../vec.h"

/* lane-wise sqrt, correctly rounded like sqrtf */
VINLINE v8f
vsqrt(v8f x)
{
#ifdef __AVX__
	return (v8f)_mm256_sqrt_ps((__m256)x);
#else
	for (int k = 0; k < 8; k++)
		x[k] = sqrtf(x[k]);
	return x;
#endif
}

void
mim_adamw_default(struct mim_adamw *o)
{
	o->beta1 = 0.9;
	o->beta2 = 0.999;
	o->eps = 1e-8;
	o->weight_decay = 0.05;
}

void
mim_adamw_update(float *w, float *m, float *v, const float *g, size_t n,
    double lr, double wd, const struct mim_adamw *o, int64_t t)
{
	const float decay = (float)(1.0 - lr * wd);
	const float b1 = (float)o->beta1, c1 = (float)(1.0 - o->beta1);
	const float b2 = (float)o->beta2, c2 = (float)(1.0 - o->beta2);
	const double bc1 = 1.0 - pow(o->beta1, (double)t);
	const double bc2 = 1.0 - pow(o->beta2, (double)t);
	const float bc2s = (float)sqrt(bc2);
	const float eps = (float)o->eps;
	const float neg_step = (float)(-(lr / bc1));
	size_t i = 0;

	/* eight at a time: the same float operations in the same order as the
	 * scalar loop below, lane by lane, so the same bytes */
	const v8f decay8 = vdup(decay), b18 = vdup(b1), c18 = vdup(c1), b28 = vdup(b2);
	const v8f c28 = vdup(c2), bc2s8 = vdup(bc2s), eps8 = vdup(eps), ns8 = vdup(neg_step);
	for (; i + 8 <= n; i += 8) {
		v8f wi = vload(w + i) * decay8;
		v8f gi = vload(g + i);
		v8f mi = vload(m + i) * b18 + c18 * gi;
		v8f vi = vload(v + i) * b28 + c28 * gi * gi;
		v8f d = vsqrt(vi) / bc2s8 + eps8;
		vstore(m + i, mi);
		vstore(v + i, vi);
		vstore(w + i, wi + ns8 * (mi / d));
	}
	for (; i < n; i++) {
		float wi = w[i] * decay;
		float gi = g[i];
		float mi = m[i] * b1 + c1 * gi;
		float vi = v[i] * b2 + c2 * gi * gi;
		float d = sqrtf(vi) / bc2s + eps;
		m[i] = mi;
		v[i] = vi;
		w[i] = wi + neg_step * (mi / d);
	}
}

/* The model's arena cut into pieces of at most CHUNK floats, each inside
 * one parameter, spread over the thread pool. Elementwise, so the result
 * does not depend on the split. */
#define CHUNK ((size_t)1 << 15)

struct piece {
	size_t off, n;
	int decay;
	double lr;
};

struct job {
	const struct mim_adamw *o;
	float *w, *m, *v;
	const float *g;
	double lr;
	int64_t t;
	const struct piece *pc;
};

static void
run_piece(void *ctx, int i)
{
	const struct job *j = ctx;
	const struct piece *p = &j->pc[i];

	mim_adamw_update(j->w + p->off, j->m + p->off, j->v + p->off,
	    j->g + p->off, p->n, p->lr, p->decay ? j->o->weight_decay : 0.0,
	    j->o, j->t);
}

void
mim_adamw_step(const struct mim_adamw *o, const struct mim_model *mod,
    float *w, const float *g, float *exp_avg, float *exp_avg_sq, double lr,
    int64_t t)
{
	mim_adamw_step_lrs(o, mod, w, g, exp_avg, exp_avg_sq, NULL, lr, t);
}

void
mim_adamw_step_lrs(const struct mim_adamw *o, const struct mim_model *mod,
    float *w, const float *g, float *exp_avg, float *exp_avg_sq, const double *lrs,
    double lr, int64_t t)
{
	size_t np = 0;
	double t0 = MIM_PROF_BEGIN();

	for (int k = 0; k < mod->np; k++)
		np += (mod->p[k].numel + CHUNK - 1) / CHUNK;
	struct piece *pc = malloc(np * sizeof *pc + 1);
	if (!pc) {
		/* no memory for the work list: the same update, serially */
		for (int k = 0; k < mod->np; k++) {
			const struct mim_param *p = &mod->p[k];
			mim_adamw_update(w + p->off, exp_avg + p->off,
			    exp_avg_sq + p->off, g + p->off, p->numel, lrs ? lrs[k] : lr,
			    p->decay ? o->weight_decay : 0.0, o, t);
		}
		MIM_PROF_END("adamw", t0, 0);
		return;
	}
	size_t k2 = 0;
	for (int k = 0; k < mod->np; k++) {
		const struct mim_param *p = &mod->p[k];
		for (size_t at = 0; at < p->numel; at += CHUNK) {
			pc[k2].off = p->off + at;
			pc[k2].n = p->numel - at < CHUNK ? p->numel - at : CHUNK;
			pc[k2].decay = p->decay;
			pc[k2].lr = lrs ? lrs[k] : lr;
			k2++;
		}
	}
	struct job j = {o, w, exp_avg, exp_avg_sq, g, lr, t, pc};
	mim_parallel((int)np, run_piece, &j);
	free(pc);
	MIM_PROF_END("adamw", t0, 0);
}
