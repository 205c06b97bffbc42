/* layernorm.c -- nn.LayerNorm over the last dim of (R,C):
 *   out = (inp - mean) * rstd * w + b,  rstd = 1/sqrt(var + eps)
 * with the biased variance. Statistics are summed in double. Backward
 * ACCUMULATES into dinp, dw, db:
 *   xh = (x - mean) * rstd,  g = dout * w
 *   dinp += rstd * (g - mean(g) - xh * mean(g * xh))
 *   dw += sum_r dout * xh,   db += sum_r dout */

#include <math.h>

#include "mim/kern.h"
#include "kern_int.h"

struct ln {
	float *out, *mean, *rstd, *dinp, *dw, *db;
	const float *inp, *w, *b, *dout, *cmean, *crstd;
	int R, C;
	float eps;
};

static void
fwd_rows(void *p, size_t lo, size_t hi)
{
	const struct ln *j = p;
	int C = j->C;

	for (size_t r = lo; r < hi; r++) {
		const float *x = j->inp + r * C;
		float *y = j->out + r * C;
		double s = 0, v = 0;
		for (int c = 0; c < C; c++)
			s += x[c];
		double m = s / C;
		for (int c = 0; c < C; c++) {
			double d = x[c] - m;
			v += d * d;
		}
		float mf = (float)m, rs = (float)(1.0 / sqrt(v / C + (double)j->eps));
		for (int c = 0; c < C; c++)
			y[c] = (x[c] - mf) * rs * j->w[c] + j->b[c];
		if (j->mean) {
			j->mean[r] = mf;
			j->rstd[r] = rs;
		}
	}
}

void
layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
    const float *w, const float *b, int R, int C, float eps)
{
	struct ln j = {.out = out, .mean = mean, .rstd = rstd, .inp = inp, .w = w,
	    .b = b, .R = R, .C = C, .eps = eps};
	kern_for((size_t)R, 1 + 4096 / (size_t)C, fwd_rows, &j);
}

static void
bwd_rows(void *p, size_t lo, size_t hi)
{
	const struct ln *j = p;
	int C = j->C;

	for (size_t r = lo; r < hi; r++) {
		const float *x = j->inp + r * C, *dy = j->dout + r * C;
		float *dx = j->dinp + r * C, m = j->cmean[r], rs = j->crstd[r];
		double sg = 0, sgx = 0;
		for (int c = 0; c < C; c++) {
			float xh = (x[c] - m) * rs, g = dy[c] * j->w[c];
			sg += g;
			sgx += (double)g * xh;
		}
		float mg = (float)(sg / C), mgx = (float)(sgx / C);
		for (int c = 0; c < C; c++) {
			float xh = (x[c] - m) * rs, g = dy[c] * j->w[c];
			dx[c] += rs * (g - mg - xh * mgx);
		}
	}
}

/* dw, db: blocks of 64 columns, each summing all rows in order */
static void
bwd_cols(void *p, size_t lo, size_t hi)
{
	const struct ln *j = p;
	int C = j->C;

	for (size_t blk = lo; blk < hi; blk++) {
		int c0 = (int)blk * 64, w = C - c0 < 64 ? C - c0 : 64;
		double sw[64] = {0}, sb[64] = {0};
		for (int r = 0; r < j->R; r++) {
			const float *x = j->inp + (size_t)r * C + c0, *dy = j->dout + (size_t)r * C + c0;
			float m = j->cmean[r], rs = j->crstd[r];
			for (int c = 0; c < w; c++) {
				sw[c] += dy[c] * ((x[c] - m) * rs);
				sb[c] += dy[c];
			}
		}
		for (int c = 0; c < w; c++) {
			if (j->dw)
				j->dw[c0 + c] += (float)sw[c];
			if (j->db)
				j->db[c0 + c] += (float)sb[c];
		}
	}
}

void
layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
    const float *inp, const float *w, const float *mean, const float *rstd,
    int R, int C)
{
	struct ln j = {.dinp = dinp, .dw = dw, .db = db, .inp = inp, .w = w,
	    .dout = dout, .cmean = mean, .crstd = rstd, .R = R, .C = C};
	if (dinp)
		kern_for((size_t)R, 1 + 4096 / (size_t)C, bwd_rows, &j);
	if (dw || db)
		kern_for(((size_t)C + 63) / 64, 1, bwd_cols, &j);
}
