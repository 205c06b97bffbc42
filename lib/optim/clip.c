/* clip.c -- global L2-norm gradient clipping, as
 * torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm) in PyTorch
 * 1.13, which the official loop calls with CLIP_GRAD 5.0 (reference §7.4):
 *
 *   norms = [torch.norm(p.grad, 2) for p in parameters]     float each
 *   total = torch.norm(torch.stack(norms), 2)                float
 *   clip_coef = max_norm / (total + 1e-6)    (= reciprocal(total+1e-6)*max_norm)
 *   grads *= clamp(clip_coef, max=1)
 *
 * Sums of squares are taken in double, four running sums per parameter
 * (PyTorch accumulates in float with its own blocking; the difference is a
 * rounding of the norm). */
#include <math.h>
#include <stdlib.h>

#include "mim/gemm.h"
#include "mim/optim.h"
#include "mim/prof.h"
#include "../vec.h"

struct normjob {
	const struct mim_param *p;
	const float *g;
	float *out;
};

static void
param_norm(void *ctx, int k)
{
	const struct normjob *j = ctx;
	const float *x = j->g + j->p[k].off;
	size_t n = j->p[k].numel, i = 0;
	v4d a = {0, 0, 0, 0}, b = {0, 0, 0, 0};
	double s = 0;

	for (; i + 8 <= n; i += 8) {
		v4d u = vload4d(x + i), w = vload4d(x + i + 4);
		a += u * u;
		b += w * w;
	}
	for (; i < n; i++)
		s += (double)x[i] * x[i];
	j->out[k] = (float)sqrt(vsum4d(a + b) + s);
}

float
mim_grad_norm(const struct mim_param *p, int np, const float *g)
{
	float small[256], *norms = small;

	if (np > 256 && !(norms = mim_malloc((size_t)np * sizeof *norms))) {
		/* no memory for the per-parameter norms: one pass in double */
		double s = 0;
		for (int k = 0; k < np; k++)
			for (size_t i = 0; i < p[k].numel; i++)
				s += (double)g[p[k].off + i] * g[p[k].off + i];
		return (float)sqrt(s);
	}
	struct normjob j = {p, g, norms};
	mim_parallel(np, param_norm, &j);
	double s = 0;
	for (int k = 0; k < np; k++)
		s += (double)norms[k] * norms[k];
	if (norms != small)
		free(norms);
	return (float)sqrt(s);
}

struct scalejob {
	const struct mim_param *p;
	float *g;
	float coef;
};

static void
param_scale(void *ctx, int k)
{
	const struct scalejob *j = ctx;
	float *x = j->g + j->p[k].off;

	for (size_t i = 0; i < j->p[k].numel; i++)
		x[i] *= j->coef;
}

float
mim_clip_grad(const struct mim_param *p, int np, float *g, double max_norm)
{
	double t = MIM_PROF_BEGIN();
	float total = mim_grad_norm(p, np, g);

	if (!(max_norm > 0) || !isfinite(total)) {
		MIM_PROF_END("clip", t, 0);
		return total;
	}
	float coef = (1.0f / (total + 1e-6f)) * (float)max_norm;
	if (coef < 1.0f) {
		struct scalejob j = {p, g, coef};
		mim_parallel(np, param_scale, &j);
	}
	MIM_PROF_END("clip", t, 0);
	return total;
}
