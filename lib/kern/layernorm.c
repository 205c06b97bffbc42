/* layernorm.c -- nn.LayerNorm over the last dim of (R,C):
 *   out = (inp - mean) * rstd * w + b,  rstd = 1/sqrt(var + eps)
 * with the biased variance. Statistics are summed in double. Backward
 * ACCUMULATES into dinp, dw, db:
 *   xh = (x - mean) * rstd,  g = dout * w
 *   dinp += rstd * (g - mean(g) - xh * mean(g * xh))
 *   dw += sum_r dout * xh,   db += sum_r dout */

#include <math.h>

#include "mim/gemm.h"
#include "mim/kern.h"
#include "kern_int.h"

struct ln {
	float *out, *mean, *rstd, *dinp, *dw, *db;
	const float *inp, *w, *b, *dout, *cmean, *crstd;
	int R, C;
	float eps;
	const int *idx;		/* row r of out reads row src(r) of inp */
	int L;
	uint16_t *yb;		/* forward: out's kept bf16 copy, made here */
};

/* the input (and input-gradient) row of row r: r itself, or through the
 * permutation idx of each group of L rows (Swin's windows, window.c) */
static inline size_t
src(const struct ln *j, size_t r)
{
	return j->idx ? r / (size_t)j->L * j->L + (size_t)j->idx[r % (size_t)j->L] : r;
}

/* sum of x[0..C) in double */
static double
dsum(const float *x, int C)
{
	v4d a = {0, 0, 0, 0}, b = {0, 0, 0, 0};
	int c = 0;
	double t = 0;
	for (; c + 8 <= C; c += 8) {
		a += vload4d(x + c);
		b += vload4d(x + c + 4);
	}
	for (; c < C; c++)
		t += x[c];
	return vsum4d(a + b) + t;
}

#define STAGE 4096	/* floats of rows staged on the stack for the copy */

static void
fwd_rows(void *p, size_t lo, size_t hi)
{
	const struct ln *j = p;
	int C = j->C, c;
	/* bf16 training: out is a Linear's input, read only through its
	 * kept copy (the product, the weight gradient), so the rows go to
	 * the stack, G at a time, and from there into the copy; else into
	 * out, and the copy (if any) from there every 16 rows */
	float stage[STAGE];
	int staged = j->yb && C <= STAGE;
	size_t G = staged && STAGE / C < 16 ? (size_t)(STAGE / C) : 16;

	for (size_t r = lo; r < hi; r++) {
		const float *x = j->inp + src(j, r) * C;
		float *y = staged ? stage + (r - lo) % G * C : j->out + r * C;
		double m = dsum(x, C) / C, v = 0;
		v4d va = {0, 0, 0, 0}, md = {m, m, m, m};
		for (c = 0; c + 4 <= C; c += 4) {
			v4d d = vload4d(x + c) - md;
			va += d * d;
		}
		for (; c < C; c++)
			v += (x[c] - m) * (x[c] - m);
		v += vsum4d(va);
		float mf = (float)m, rs = (float)(1.0 / sqrt(v / C + (double)j->eps));
		v8f m8 = vdup(mf), r8 = vdup(rs);
		for (c = 0; c + 8 <= C; c += 8)
			vstore(y + c, (vload(x + c) - m8) * r8 * vload(j->w + c) + vload(j->b + c));
		for (; c < C; c++)
			y[c] = (x[c] - mf) * rs * j->w[c] + j->b[c];
		if (j->mean) {
			j->mean[r] = mf;
			j->rstd[r] = rs;
		}
		/* the copy of G rows at a time, while they are in cache */
		if (j->yb && ((r + 1 - lo) % G == 0 || r + 1 == hi)) {
			size_t r0 = r - (r - lo) % G;
			mim_gemm_round(j->yb + r0 * C, (size_t)C, staged ? stage : j->out + r0 * C,
			    (size_t)C, (int)(r + 1 - r0), C);
		}
	}
}

void
ln_forward_idx(float *out, float *mean, float *rstd, const float *inp,
    const float *w, const float *b, int R, int C, float eps, const int *idx, int L)
{
	/* (bf16 training: out is a Linear's input, kept; its copy made here) */
	struct ln j = {.out = out, .mean = mean, .rstd = rstd, .inp = inp, .w = w,
	    .b = b, .R = R, .C = C, .eps = eps, .idx = idx, .L = L,
	    .yb = mim_gemm_kept_fill(out, R, C)};
	kern_for((size_t)R, 1 + 4096 / (size_t)C, fwd_rows, &j);
}

void
layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
    const float *w, const float *b, int R, int C, float eps)
{
	double prof_t_ = MIM_PROF_BEGIN();
	ln_forward_idx(out, mean, rstd, inp, w, b, R, C, eps, NULL, 0);
	MIM_PROF_END("layernorm fwd", prof_t_, 0);
}

/* rows [r0, r1): dinp's rows (when asked for), and the terms of dw
 * (dout * xh) and db (dout) added to s and u (when asked for), in one
 * pass over x and dout */
static void
bwd_chunk(void *p, size_t r0, size_t r1, double *s, double *u)
{
	const struct ln *j = p;
	int C = j->C, c, sums = j->dw || j->db;

	for (size_t r = r0; r < r1; r++) {
		size_t sr = src(j, r);
		const float *x = j->inp + sr * C, *dy = j->dout + r * C;
		float m = j->cmean[r], rs = j->crstd[r];
		v8f m8 = vdup(m), r8 = vdup(rs);
		if (sums) {
			float t[8];
			for (c = 0; c + 8 <= C; c += 8) {
				vstore(t, vload(dy + c) * ((vload(x + c) - m8) * r8));
				vadd_to_d(s + c, t, 8);
				vadd_to_d(u + c, dy + c, 8);
			}
			for (; c < C; c++) {
				s[c] += (double)(dy[c] * ((x[c] - m) * rs));
				u[c] += (double)dy[c];
			}
		}
		if (!j->dinp)
			continue;
		float *dx = j->dinp + sr * C;
		v4d sg4 = {0, 0, 0, 0}, sgx4 = {0, 0, 0, 0};
		double sg = 0, sgx = 0;
		for (c = 0; c + 8 <= C; c += 8) {
			v8f xh = (vload(x + c) - m8) * r8, g = vload(dy + c) * vload(j->w + c), gx = g * xh;
			float t[8], v[8];
			vstore(t, g);
			vstore(v, gx);
			sg4 += vload4d(t) + vload4d(t + 4);
			sgx4 += vload4d(v) + vload4d(v + 4);
		}
		for (; c < C; c++) {
			float xh = (x[c] - m) * rs, g = dy[c] * j->w[c];
			sg += g;
			sgx += (double)(g * xh);
		}
		sg += vsum4d(sg4);
		sgx += vsum4d(sgx4);
		float mg = (float)(sg / C), mgx = (float)(sgx / C);
		v8f mg8 = vdup(mg), mgx8 = vdup(mgx);
		for (c = 0; c + 8 <= C; c += 8) {
			v8f xh = (vload(x + c) - m8) * r8, g = vload(dy + c) * vload(j->w + c);
			vstore(dx + c, vload(dx + c) + r8 * (g - mg8 - xh * mgx8));
		}
		for (; c < C; c++) {
			float xh = (x[c] - m) * rs, g = dy[c] * j->w[c];
			dx[c] += rs * (g - mg - xh * mgx);
		}
	}
}

static void
bwd_rows(void *p, size_t lo, size_t hi)
{
	bwd_chunk(p, lo, hi, NULL, NULL);
}

/* the terms of dw (t) and db (u) in row r: dout * xh and dout */
static float
bwd_cols(void *p, size_t r, int c0, int w, float *t, float *u)
{
	const struct ln *j = p;
	const float *x = j->inp + src(j, r) * j->C + c0;
	const float *dy = j->dout + r * j->C + c0;
	float m = j->cmean[r], rs = j->crstd[r];
	v8f m8 = vdup(m), r8 = vdup(rs);
	int c = 0;

	for (; c + 8 <= w; c += 8)
		vstore(t + c, vload(dy + c) * ((vload(x + c) - m8) * r8));
	for (; c < w; c++)
		t[c] = dy[c] * ((x[c] - m) * rs);
	if (u)
		memcpy(u, dy, (size_t)w * sizeof *u);
	return 1.0f;
}

/* dinp, dw and db in one pass over the rows (kern_rows_colsums); where
 * there is no memory for its sums, the rows then the columns */
void
ln_backward_idx(float *dinp, float *dw, float *db, const float *dout,
    const float *inp, const float *w, const float *mean, const float *rstd,
    int R, int C, const int *idx, int L)
{
	struct ln j = {.dinp = dinp, .dw = dw, .db = db, .inp = inp, .w = w,
	    .dout = dout, .cmean = mean, .crstd = rstd, .R = R, .C = C, .idx = idx, .L = L};
	if ((dw || db) && kern_rows_colsums(dw, db, (size_t)R, C, bwd_chunk, &j) == 0)
		return;
	if (dinp)
		kern_for((size_t)R, 1 + 4096 / (size_t)C, bwd_rows, &j);
	if (dw || db)
		kern_colsums(dw, db, (size_t)R, C, bwd_cols, &j);
}

void
layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
    const float *inp, const float *w, const float *mean, const float *rstd,
    int R, int C)
{
	double prof_t_ = MIM_PROF_BEGIN();
	ln_backward_idx(dinp, dw, db, dout, inp, w, mean, rstd, R, C, NULL, 0);
	MIM_PROF_END("layernorm bwd", prof_t_, 0);
}
