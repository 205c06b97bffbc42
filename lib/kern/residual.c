/* residual.c -- a residual branch with layer scale and drop path, as the
 * official Block computes it:  out = x + drop_path(gamma * y),
 * drop_path(t) = t.div(keep) * kept[b]  (timm, per sample). Without drop
 * path (kept NULL) it is x + gamma * y, without layer scale x + y. */

#include "mim/kern.h"
#include "kern_int.h"

struct rs {
	float *out, *dy, *dgamma;
	const float *x, *y, *gamma, *kept, *dout;
	float keep;
	int N, C;
};

static void
fwd(void *p, size_t lo, size_t hi)
{
	const struct rs *j = p;
	int C = j->C, C8 = C & ~7;

	for (size_t r = lo; r < hi; r++) {
		const float *x = j->x + r * C, *y = j->y + r * C, *g = j->gamma;
		float *o = j->out + r * C;
		float k = j->kept ? j->kept[r / (size_t)j->N] : 1.0f;
		v8f k8 = vdup(k), kp8 = vdup(j->keep);
		int c;
		/* the four cases keep the official order of roundings */
		if (j->kept && g) {
			for (c = 0; c < C8; c += 8)
				vstore(o + c, vload(x + c) + (vload(g + c) * vload(y + c)) / kp8 * k8);
			for (; c < C; c++)
				o[c] = x[c] + (g[c] * y[c]) / j->keep * k;
		} else if (j->kept) {
			for (c = 0; c < C8; c += 8)
				vstore(o + c, vload(x + c) + vload(y + c) / kp8 * k8);
			for (; c < C; c++)
				o[c] = x[c] + y[c] / j->keep * k;
		} else if (g) {
			for (c = 0; c < C8; c += 8)
				vstore(o + c, vload(x + c) + vload(g + c) * vload(y + c));
			for (; c < C; c++)
				o[c] = x[c] + g[c] * y[c];
		} else {
			for (c = 0; c < C8; c += 8)
				vstore(o + c, vload(x + c) + vload(y + c));
			for (; c < C; c++)
				o[c] = x[c] + y[c];
		}
	}
}

void
residual_forward(float *out, const float *x, const float *y, const float *gamma,
    const float *kept, float keep, int B, int N, int C)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct rs j = {.out = out, .x = x, .y = y, .gamma = gamma, .kept = kept,
	    .keep = keep, .N = N, .C = C};
	kern_for((size_t)B * N, 1 + 8192 / (size_t)C, fwd, &j);
	MIM_PROF_END("residual fwd", prof_t_, 0);
}

static void
bwd_rows(void *p, size_t lo, size_t hi)
{
	const struct rs *j = p;
	int C = j->C, C8 = C & ~7, c;

	for (size_t r = lo; r < hi; r++) {
		const float *d = j->dout + r * C;
		float *dy = j->dy + r * C;
		float s = j->kept ? j->kept[r / (size_t)j->N] / j->keep : 1.0f;
		v8f s8 = vdup(s);
		if (j->gamma) {
			for (c = 0; c < C8; c += 8)
				vstore(dy + c, vload(d + c) * s8 * vload(j->gamma + c));
			for (; c < C; c++)
				dy[c] = d[c] * s * j->gamma[c];
		} else {
			for (c = 0; c < C8; c += 8)
				vstore(dy + c, vload(d + c) * s8);
			for (; c < C; c++)
				dy[c] = d[c] * s;
		}
	}
}

/* dgamma: blocks of 64 columns, each summing every row in order */
struct rg {
	float *dgamma;
	const float *dout, *y, *kept;
	float keep;
	size_t R;
	int N, C;
};

static void
gamma_cols(void *p, size_t lo, size_t hi)
{
	const struct rg *j = p;
	int C = j->C;

	for (size_t blk = lo; blk < hi; blk++) {
		int c0 = (int)blk * 64, w = C - c0 < 64 ? C - c0 : 64, w8 = w & ~7;
		v4d s4[16];
		double s[64] = {0};
		for (int k = 0; k < 16; k++)
			s4[k] = (v4d){0, 0, 0, 0};
		for (size_t r = 0; r < j->R; r++) {
			float k = j->kept ? j->kept[r / (size_t)j->N] / j->keep : 1.0f;
			if (k == 0)
				continue;
			const float *d = j->dout + r * C + c0, *y = j->y + r * C + c0;
			v4d k4 = {k, k, k, k};
			for (int c = 0; c < w8; c += 8) {
				float t[8];
				vstore(t, vload(d + c) * vload(y + c));
				s4[c / 4] += vload4d(t) * k4;
				s4[c / 4 + 1] += vload4d(t + 4) * k4;
			}
			for (int c = w8; c < w; c++)
				s[c] += (double)(d[c] * y[c]) * k;
		}
		for (int c = 0; c < w8; c++)
			s[c] = s4[c / 4][c % 4];
		for (int c = 0; c < w; c++)
			j->dgamma[c0 + c] += (float)s[c];
	}
}

void
residual_backward(float *dy, float *dgamma, const float *dout, const float *y,
    const float *gamma, const float *kept, float keep, int B, int N, int C)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct rs j = {.dy = dy, .dout = dout, .gamma = gamma, .kept = kept, .keep = keep,
	    .N = N, .C = C};
	if (dy)
		kern_for((size_t)B * N, 1 + 8192 / (size_t)C, bwd_rows, &j);
	if (dgamma) {
		struct rg g = {dgamma, dout, y, kept, keep, (size_t)B * N, N, C};
		kern_for(((size_t)C + 63) / 64, 1, gamma_cols, &g);
	}
	MIM_PROF_END("residual bwd", prof_t_, 0);
}
