/* window.c -- Swin window geometry: the (shifted) window partition as one
 * token permutation, the relative position index, the -100 shift mask, and
 * the row kernels that apply the permutation (gather, scatter-add, and a
 * LayerNorm that reads its rows through it).
 *
 * The official block does norm1 -> view (B,H,W,C) -> roll(-s,-s) ->
 * window_partition -> attention -> window_reverse -> roll(+s,+s) ->
 * residual add. Roll and partition only reorder tokens, so both are one
 * index table idx (L): window-order token t reads image token idx[t]. The
 * LayerNorm is per token, so it reads through idx directly and no
 * partitioned copy of the input is made; the reverse and the residual add
 * are one scatter-add. See include/mim/swin.h for the dims. */
#include <math.h>
#include <string.h>

#include "mim/gemm.h"
#include "mim/prof.h"
#include "mim/stream.h"
#include "mim/swin.h"

void
window_index(int *idx, int H, int W, int ws, int shift)
{
	int nWw = W / ws, N = ws * ws;

	for (int wh = 0; wh < H / ws; wh++)
		for (int ww = 0; ww < nWw; ww++)
			for (int ph = 0; ph < ws; ph++)
				for (int pw = 0; pw < ws; pw++) {
					/* rolled[i,j] = x[(i+s)%H, (j+s)%W] */
					int i = (wh * ws + ph + shift) % H;
					int j = (ww * ws + pw + shift) % W;
					idx[(wh * nWw + ww) * N + ph * ws + pw] = i * W + j;
				}
}

void
window_relidx(int64_t *idx, int ws)
{
	int N = ws * ws;

	for (int p = 0; p < N; p++)
		for (int q = 0; q < N; q++) {
			int dh = p / ws - q / ws + ws - 1, dw = p % ws - q % ws + ws - 1;
			idx[p * N + q] = dh * (2 * ws - 1) + dw;
		}
}

/* region of coordinate i on an axis of n: 0 for [0,n-ws), 1 for
 * [n-ws,n-s), 2 for [n-s,n) (in the rolled frame, as the official code) */
static int
region(int i, int n, int ws, int s)
{
	return i < n - ws ? 0 : i < n - s ? 1 : 2;
}

void
window_mask(float *mask, int H, int W, int ws, int shift)
{
	int nWw = W / ws, nW = H / ws * nWw, N = ws * ws;

	for (int w = 0; w < nW; w++)
		for (int p = 0; p < N; p++) {
			int ip = w / nWw * ws + p / ws, jp = w % nWw * ws + p % ws;
			int idp = region(ip, H, ws, shift) * 3 + region(jp, W, ws, shift);
			for (int q = 0; q < N; q++) {
				int iq = w / nWw * ws + q / ws, jq = w % nWw * ws + q % ws;
				int idq = region(iq, H, ws, shift) * 3 + region(jq, W, ws, shift);
				mask[((size_t)w * N + p) * N + q] = idp == idq ? 0.0f : -100.0f;
			}
		}
}

/* ---- row kernels, parallel over chunks of rows --------------------------- */

struct rowjob {
	float *out, *mean, *rstd, *dw, *db;
	const float *x, *y, *w, *b, *dout, *cmean, *crstd, *kept;
	const int *idx;
	int B, L, C, per, rows;
	float eps, keep;
};

static void
rows_run(int rows, int C, void (*fn)(void *, int), struct rowjob *j)
{
	int nt = mim_threads();
	/* aim for >= 16k floats per task and a few tasks per thread */
	int per = (int)(16384 / (C > 0 ? C : 1)) + 1;
	int tasks = (rows + per - 1) / per;

	if (tasks > nt * 4)
		tasks = nt * 4;
	if (tasks < 1)
		tasks = 1;
	j->rows = rows;
	j->per = (rows + tasks - 1) / tasks;
	mim_parallel((rows + j->per - 1) / j->per, fn, j);
}

/* image row of window-order row r = b*L + t */
static inline size_t
src_row(const struct rowjob *j, int r)
{
	return j->idx ? (size_t)(r / j->L) * j->L + j->idx[r % j->L] : (size_t)r;
}

/* drop path factor of sample b: timm computes (v / keep) * kept[b] */
#define DP(j, v, b) ((j)->kept ? (v) / (j)->keep * (j)->kept[b] : (v))

static void
gather_task(void *ctx, int k)
{
	struct rowjob *j = ctx;
	int lo = k * j->per, hi = lo + j->per < j->rows ? lo + j->per : j->rows;
	int C = j->C;

	for (int r = lo; r < hi; r++) {
		const float *x = j->x + src_row(j, r) * C;
		float *o = j->out + (size_t)r * C;
		if (j->kept) {
			int b = r / j->L;
			for (int c = 0; c < C; c++)
				o[c] = DP(j, x[c], b);
		} else
			memcpy(o, x, (size_t)C * sizeof(float));
	}
}

void
window_gather(float *out, const float *x, const int *idx, const float *kept,
    float keep, int B, int L, int C)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct rowjob j = {.out = out, .x = x, .idx = idx, .kept = kept,
	    .keep = keep, .B = B, .L = L, .C = C};

	rows_run(B * L, C, gather_task, &j);
	MIM_PROF_END("window gather", prof_t_, 0);
}

static void
revadd_task(void *ctx, int k)
{
	struct rowjob *j = ctx;
	int lo = k * j->per, hi = lo + j->per < j->rows ? lo + j->per : j->rows;
	int C = j->C;

	for (int r = lo; r < hi; r++) {
		size_t s = src_row(j, r) * C;
		float *o = j->out + s;
		const float *x = j->x + s, *y = j->y + (size_t)r * C, *bias = j->b;
		int b = r / j->L;
		if (bias)
			for (int c = 0; c < C; c++)
				o[c] = x[c] + DP(j, y[c] + bias[c], b);
		else
			for (int c = 0; c < C; c++)
				o[c] = x[c] + DP(j, y[c], b);
	}
}

void
window_reverse_add(float *out, const float *x, const float *y, const float *bias,
    const float *kept, float keep, const int *idx, int B, int L, int C)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct rowjob j = {.out = out, .x = x, .y = y, .b = bias, .kept = kept,
	    .keep = keep, .idx = idx, .B = B, .L = L, .C = C};

	rows_run(B * L, C, revadd_task, &j);
	MIM_PROF_END("window reverse_add", prof_t_, 0);
}

/* ---- LayerNorm through the permutation ----------------------------------- */

static void
lnf_task(void *ctx, int k)
{
	struct rowjob *j = ctx;
	int lo = k * j->per, hi = lo + j->per < j->rows ? lo + j->per : j->rows;
	int C = j->C;

	for (int r = lo; r < hi; r++) {
		const float *x = j->x + src_row(j, r) * C;
		float *o = j->out + (size_t)r * C;
		float m = 0, v = 0;
		for (int c = 0; c < C; c++)
			m += x[c];
		m /= C;
		for (int c = 0; c < C; c++) {
			float d = x[c] - m;
			v += d * d;
		}
		v /= C;
		float s = 1.0f / sqrtf(v + j->eps);
		for (int c = 0; c < C; c++)
			o[c] = (x[c] - m) * s * j->w[c] + j->b[c];
		j->mean[r] = m;
		j->rstd[r] = s;
	}
}

void
window_ln_forward(float *out, float *mean, float *rstd, const float *x,
    const float *w, const float *b, const int *idx, int B, int L, int C, float eps)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct rowjob j = {.out = out, .mean = mean, .rstd = rstd, .x = x, .w = w,
	    .b = b, .idx = idx, .B = B, .L = L, .C = C, .eps = eps};

	rows_run(B * L, C, lnf_task, &j);
	MIM_PROF_END("window_ln fwd", prof_t_, 0);
}

/* dx: xhat = (x-mean)*rstd, g = dout*w;
 * dx = rstd * (g - mean(g) - xhat * mean(g*xhat)) */
static void
lnb_dx_task(void *ctx, int k)
{
	struct rowjob *j = ctx;
	int lo = k * j->per, hi = lo + j->per < j->rows ? lo + j->per : j->rows;
	int C = j->C;

	for (int r = lo; r < hi; r++) {
		size_t s = src_row(j, r) * C;
		const float *x = j->x + s, *d = j->dout + (size_t)r * C;
		float *dx = j->out + s;
		float m = j->cmean[r], rs = j->crstd[r], a = 0, bsum = 0;
		for (int c = 0; c < C; c++) {
			float g = d[c] * j->w[c];
			a += g;
			bsum += g * (x[c] - m) * rs;
		}
		a /= C;
		bsum /= C;
		for (int c = 0; c < C; c++) {
			float g = d[c] * j->w[c], xh = (x[c] - m) * rs;
			dx[c] += rs * (g - a - xh * bsum);
		}
	}
}

/* dw, db: column sums, parallel over column blocks so that the summation
 * order (over all rows, in order) does not depend on the thread count */
#define LN_CB 32
static void
lnb_dw_task(void *ctx, int k)
{
	struct rowjob *j = ctx;
	int c0 = k * LN_CB, c1 = c0 + LN_CB < j->C ? c0 + LN_CB : j->C, C = j->C;
	float sw[LN_CB] = {0}, sb[LN_CB] = {0};

	for (int r = 0; r < j->B * j->L; r++) {
		const float *x = j->x + src_row(j, r) * C, *d = j->dout + (size_t)r * C;
		float m = j->cmean[r], rs = j->crstd[r];
		for (int c = c0; c < c1; c++) {
			sw[c - c0] += d[c] * (x[c] - m) * rs;
			sb[c - c0] += d[c];
		}
	}
	for (int c = c0; c < c1; c++) {
		j->dw[c] += sw[c - c0];
		j->db[c] += sb[c - c0];
	}
}

void
window_ln_backward(float *dx, float *dw, float *db, const float *dout,
    const float *x, const float *w, const float *mean, const float *rstd,
    const int *idx, int B, int L, int C)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct rowjob j = {.out = dx, .dw = dw, .db = db, .dout = dout, .x = x,
	    .w = w, .cmean = mean, .crstd = rstd, .idx = idx, .B = B, .L = L, .C = C};

	mim_parallel((C + LN_CB - 1) / LN_CB, lnb_dw_task, &j);
	rows_run(B * L, C, lnb_dx_task, &j);
	MIM_PROF_END("window_ln bwd", prof_t_, 0);
}
