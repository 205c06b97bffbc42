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
#include "kern_int.h"

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
	float *out;
	const float *x, *y, *b, *kept;
	const int *idx;
	int B, L, C, per, rows;
	float keep;
	uint16_t *yb;		/* gather: out's kept bf16 copy, made here */
	double *ys;		/* and its chunk column sums */
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
	if (j->ys)	/* whole chunks of sums a task */
		j->per = (j->per + MIM_GEMM_ROWS - 1) / MIM_GEMM_ROWS * MIM_GEMM_ROWS;
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
	float t[SPAN];

	for (int r = lo; r < hi; r++) {
		const float *x = j->x + src_row(j, r) * C;
		float *o = j->out + (size_t)r * C;
		int b = r / j->L;
		if (j->yb) {
			/* bf16: out is read only through its kept copy and
			 * chunk sums (a Linear's output gradient): the float
			 * goes no further than the stack */
			for (int c0 = 0; c0 < C; c0 += SPAN) {
				int w = C - c0 < SPAN ? C - c0 : SPAN;
				for (int c = 0; c < w; c++)
					t[c] = DP(j, x[c0 + c], b);
				mim_gemm_round_sums(j->yb + (size_t)r * C + c0, j->ys + c0, C, r,
				    MIM_GEMM_ROWS, t, w);
			}
		} else if (j->kept) {
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

	/* (bf16, out kept by the caller: its copy and chunk sums made here) */
	j.yb = mim_gemm_kept_fill_sums(out, B * L, C, MIM_GEMM_ROWS, &j.ys);
	rows_run(B * L, C, gather_task, &j);
	MIM_PROF_END("window gather", prof_t_, 0);
}

/* out's row of window-order row r, columns [n0, n1): x + drop_path(y +
 * bias), y that row's columns */
static void
revadd_row(const struct rowjob *j, int r, const float *y, int n0, int n1)
{
	size_t s = src_row(j, r) * j->C + n0;
	float *o = j->out + s;
	const float *x = j->x + s, *bias = j->b ? j->b + n0 : NULL;
	int b = r / j->L;

	if (bias)
		for (int c = 0; c < n1 - n0; c++)
			o[c] = x[c] + DP(j, y[c] + bias[c], b);
	else
		for (int c = 0; c < n1 - n0; c++)
			o[c] = x[c] + DP(j, y[c], b);
}

static void
revadd_task(void *ctx, int k)
{
	struct rowjob *j = ctx;
	int lo = k * j->per, hi = lo + j->per < j->rows ? lo + j->per : j->rows;

	for (int r = lo; r < hi; r++)
		revadd_row(j, r, j->y + (size_t)r * j->C, 0, j->C);
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

/* the add on the product's sums at c, rows [m0, m1) x columns [n0, n1) */
static void
revadd_sums(void *ctx, const float *c, int ldc, int m0, int m1, int n0, int n1)
{
	const struct rowjob *j = ctx;

	for (int r = m0; r < m1; r++)
		revadd_row(j, r, c + (size_t)(r - m0) * ldc, n0, n1);
}

void
linear_reverse_add(float *out, const float *x, const float *inp, const float *w, int IC,
    const float *bias, const float *kept, float keep, const int *idx, int B, int L, int C,
    float *tmp)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct rowjob j = {.out = out, .x = x, .b = bias, .kept = kept,
	    .keep = keep, .idx = idx, .B = B, .L = L, .C = C};

	mim_gemm_sums(0, 1, B * L, C, IC, inp, IC, w, IC, NULL, tmp, C, revadd_sums, &j);
	MIM_PROF_END("linear+reverse_add fwd", prof_t_, 2.0 * B * L * IC * C);
}

/* ---- LayerNorm through the permutation -----------------------------------
 * The rows of LayerNorm's kernels (layernorm.c: statistics in double,
 * eight lanes at a time) with the window order as their row map. */

void
window_ln_forward(float *out, float *mean, float *rstd, const float *x,
    const float *w, const float *b, const int *idx, int B, int L, int C, float eps)
{
	double prof_t_ = MIM_PROF_BEGIN();
	ln_forward_idx(out, mean, rstd, x, w, b, B * L, C, eps, idx, L);
	MIM_PROF_END("window_ln fwd", prof_t_, 0);
}

void
window_ln_backward(float *dx, float *dw, float *db, const float *dout,
    const float *x, const float *w, const float *mean, const float *rstd,
    const int *idx, int B, int L, int C)
{
	double prof_t_ = MIM_PROF_BEGIN();
	ln_backward_idx(dx, dw, db, dout, x, w, mean, rstd, B * L, C, idx, L);
	MIM_PROF_END("window_ln bwd", prof_t_, 0);
}
