/* residual.c -- a residual branch with layer scale and drop path, as the
 * official Block computes it:  out = x + drop_path(gamma * y),
 * drop_path(t) = t.div(keep) * kept[b]  (timm, per sample). Without drop
 * path (kept NULL) it is x + gamma * y, without layer scale x + y. */

#include "mim/gemm.h"
#include "mim/kern.h"
#include "kern_int.h"

struct rs {
	float *out, *dy, *dgamma;
	const float *x, *y, *gamma, *kept, *dout;
	float keep;
	int N, C;
};

/* out's row r, columns [c0, c0 + n): x + drop_path(gamma * y), y that
 * row's columns */
static void
fwd_row(const struct rs *j, size_t r, const float *y, int c0, int n)
{
	const float *x = j->x + r * j->C + c0, *g = j->gamma ? j->gamma + c0 : NULL;
	float *o = j->out + r * j->C + c0;
	float k = j->kept ? j->kept[r / (size_t)j->N] : 1.0f;
	v8f k8 = vdup(k), kp8 = vdup(j->keep);
	int c, n8 = n & ~7;

	/* the four cases keep the official order of roundings */
	if (j->kept && g) {
		for (c = 0; c < n8; c += 8)
			vstore(o + c, vload(x + c) + (vload(g + c) * vload(y + c)) / kp8 * k8);
		for (; c < n; c++)
			o[c] = x[c] + (g[c] * y[c]) / j->keep * k;
	} else if (j->kept) {
		for (c = 0; c < n8; c += 8)
			vstore(o + c, vload(x + c) + vload(y + c) / kp8 * k8);
		for (; c < n; c++)
			o[c] = x[c] + y[c] / j->keep * k;
	} else if (g) {
		for (c = 0; c < n8; c += 8)
			vstore(o + c, vload(x + c) + vload(g + c) * vload(y + c));
		for (; c < n; c++)
			o[c] = x[c] + g[c] * y[c];
	} else {
		for (c = 0; c < n8; c += 8)
			vstore(o + c, vload(x + c) + vload(y + c));
		for (; c < n; c++)
			o[c] = x[c] + y[c];
	}
}

static void
fwd(void *p, size_t lo, size_t hi)
{
	const struct rs *j = p;

	for (size_t r = lo; r < hi; r++)
		fwd_row(j, r, j->y + r * j->C, 0, j->C);
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

/* the residual on the product's sums at c, rows [m0, m1) x columns [n0, n1) */
static void
fwd_sums(void *p, const float *c, int ldc, int m0, int m1, int n0, int n1)
{
	const struct rs *j = p;

	for (int r = m0; r < m1; r++)
		fwd_row(j, (size_t)r, c + (size_t)(r - m0) * ldc, n0, n1 - n0);
}

void
linear_residual_forward(float *out, const float *x, const float *inp, const float *w,
    const float *b, int IC, const float *gamma, const float *kept, float keep, int B, int N,
    int C, float *tmp)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct rs j = {.out = out, .x = x, .gamma = gamma, .kept = kept, .keep = keep, .N = N,
	    .C = C};
	mim_gemm_sums(0, 1, B * N, C, IC, inp, IC, w, IC, b, tmp, C, fwd_sums, &j);
	MIM_PROF_END("linear+residual fwd", prof_t_, 2.0 * B * N * IC * C);
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

/* dgamma: the terms of row r, dout * y, and its drop-path factor */
struct rg {
	const float *dout, *y, *kept;
	float keep;
	int N, C;
};

static float
gamma_row(void *p, size_t r, int c0, int w, float *t, float *u)
{
	const struct rg *j = p;
	float k = j->kept ? j->kept[r / (size_t)j->N] / j->keep : 1.0f;
	const float *d = j->dout + r * j->C + c0, *y = j->y + r * j->C + c0;
	int c = 0;

	if (k == 0)
		return 0;	/* a dropped sample */
	for (; c + 8 <= w; c += 8)
		vstore(t + c, vload(d + c) * vload(y + c));
	for (; c < w; c++)
		t[c] = d[c] * y[c];
	return k;
}

/* dy's rows and dgamma's terms in one pass over dout (kern_rows_colsums) */
struct rb {
	struct rs r;
	struct rg g;
};

static void
bwd_chunk(void *p, size_t r0, size_t r1, double *s, double *u)
{
	struct rb *j = p;
	float t[64];
	int C = j->g.C;

	if (j->r.dy)
		bwd_rows(&j->r, r0, r1);
	for (size_t r = r0; r < r1; r++)
		for (int c0 = 0; c0 < C; c0 += 64) {
			int w = C - c0 < 64 ? C - c0 : 64;
			float k = gamma_row(&j->g, r, c0, w, t, NULL);
			if (k != 0)
				vacc_d(s + c0, t, k, w);
		}
}

void
residual_backward(float *dy, float *dgamma, const float *dout, const float *y,
    const float *gamma, const float *kept, float keep, int B, int N, int C)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct rb j = {{.dy = dy, .dout = dout, .gamma = gamma, .kept = kept, .keep = keep,
	    .N = N, .C = C}, {dout, y, kept, keep, N, C}};
	if (dgamma && kern_rows_colsums(dgamma, NULL, (size_t)B * N, C, bwd_chunk, &j) == 0)
		dgamma = dy = NULL;	/* both done */
	if (dy)
		kern_for((size_t)B * N, 1 + 8192 / (size_t)C, bwd_rows, &j.r);
	if (dgamma)
		kern_colsums(dgamma, NULL, (size_t)B * N, C, gamma_row, &j.g);
	MIM_PROF_END("residual bwd", prof_t_, 0);
}
