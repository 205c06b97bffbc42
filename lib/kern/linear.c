/* linear.c -- nn.Linear: out = inp @ w^T + b, and its backward.
 * inp (R,IC), w (OC,IC), b (OC), out (R,OC). linear_forward is
 * mim_gemm_bias: the bias first and the product added to it, as PyTorch's
 * addmm does (in bf16 oneDNN adds it to its float sums as it stores them).
 * linear_gelu_forward (fc1) adds it to the product's sums in the
 * epilogue instead, with the GELU (the sum differs from addmm's where
 * OpenBLAS cuts K into more than one block: the bias then comes last
 * rather than first). The epilogue takes the sums from mim_gemm_sums,
 * a strip of rows at a time from a buffer in L2, so that the product's
 * float output is never stored, nor read back; the
 * GELU's epilogues write only what is read later (Swin-T's stage-0 fc1 at
 * batch 32, 73728 x 384: 113 MB of sums that went to memory and back;
 * bench/RESULTS.md). In training it keeps GELU's derivative
 * at each element rather than the element itself: the erf and the
 * exponential are computed once, in the forward, and the backward's
 * epilogue is a product (on Swin-T's stage 0, K = 96, the backward's
 * erf took as long as its product).
 *
 * The bias gradient (column sums of dout) is taken while the input-gradient
 * product dout @ w has dout's rows in cache: each block of that product
 * sums its rows in chunks of MIM_GEMM_ROWS (in double), and the chunks are
 * added in order afterwards, so the result does not depend on the threads. */

#include <stdlib.h>

#include "mim/gemm.h"
#include "mim/kern.h"
#include "kern_int.h"

#define CH MIM_GEMM_ROWS

void
linear_forward(float *out, const float *inp, const float *w, const float *b,
    int R, int IC, int OC)
{
	double prof_t_ = MIM_PROF_BEGIN();
	if (b)
		mim_gemm_bias(0, 1, R, OC, IC, inp, IC, w, IC, b, out, OC);
	else
		mim_gemm(0, 1, R, OC, IC, 1.0f, inp, IC, w, IC, 0.0f, out, OC);
	MIM_PROF_END("linear fwd", prof_t_, 2.0 * R * IC * OC);
}

/* the GELU's epilogues: the fc1 product's sums (forward), fc2's input
 * gradient's (backward) */
struct dbsum;
struct actblk {
	float *pre, *out;	/* forward: gelu' (training) and gelu's output;
				 * backward: out the GELU's input gradient */
	const float *dg;	/* backward: gelu' at the GELU's input */
	int ld;
	struct dbsum *db;
	const float *b;		/* forward: the bias, added here */
	int train;		/* forward: pre becomes gelu' */
	uint16_t *yb;		/* out's kept bf16 copy, made here */
	double *ys;		/* backward: with out's chunk column sums */
};

/* GELU on the sums at c (rows ldc apart) of fc1's rows [m0,m1) x columns
 * [n0,n1), plus the bias (mim_gemm_sums: c is pre's own place, or the
 * thread's buffer, pre not written by the product) */
static void
gelu_sums(void *p, const float *c, int ldc, int m0, int m1, int n0, int n1)
{
	const struct actblk *a = p;
	float x[SPAN], t[SPAN];

	for (int r = m0; r < m1; r++) {
		const float *cr = c + (size_t)(r - m0) * ldc;
		size_t o = (size_t)r * a->ld + n0;
		for (int j = 0; j < n1 - n0; j += SPAN) {
			int w = n1 - n0 - j < SPAN ? n1 - n0 - j : SPAN;
			const float *in = cr + j;
			if (a->b) {
				vsum(x, in, a->b + n0 + j, (size_t)w);
				in = x;
			}
			/* bf16 training: the GELU's output is read only
			 * through its kept copy (fc2's product and weight
			 * gradient), so the float goes no further than the
			 * stack */
			float *g = a->yb ? t : a->out + o + j;
			if (a->train)
				gelu_dgelu_span(g, a->pre + o + j, in, (size_t)w);
			else
				gelu_span(g, in, (size_t)w);
			if (a->yb)
				mim_gemm_round(a->yb + o + j, 0, t, 0, 1, w);
		}
	}
}

void
linear_gelu_forward(float *dg, float *out, const float *inp, const float *w,
    const float *b, int R, int IC, int OC)
{
	double prof_t_ = MIM_PROF_BEGIN();
	float *y = dg ? dg : out;
	/* (bf16 training: out is fc2's input, kept; its copy made here) */
	struct actblk a = {y, out, NULL, OC, NULL, b, dg != NULL, mim_gemm_kept_fill(out, R, OC),
	    NULL};
	mim_gemm_sums(0, 1, R, OC, IC, inp, IC, w, IC, NULL, y, OC, gelu_sums, &a);
	MIM_PROF_END("linear+gelu fwd", prof_t_, 2.0 * R * IC * OC);
}

/* column sums of dout by chunks of CH rows, gathered by the blocks of the
 * input-gradient product */
struct dbsum {
	double *part;		/* (chunks, OC) */
	double *mem;		/* part, when it is ours to free */
	unsigned char *seen;	/* (chunks) */
	const float *dout;
	int R, OC;
	int done;		/* bf16: summed by dout's rounding (sum_init) */
};

static void
sum_rows(struct dbsum *s, int m0, int m1, int n0, int n1)
{
	if (!s || !s->part || s->done || n0 != 0)
		return;		/* rows summed once: by the block (or panel) of column 0 */
	for (int r = m0; r < m1; r++) {	/* (m0 is a multiple of CH) */
		vchunk_add_d(s->part, (size_t)s->OC, r, CH, s->dout + (size_t)r * s->OC, s->OC);
		s->seen[r / CH] = 1;
	}
}

/* db += the chunks' sums in order, or the plain column sums if the product
 * was cut into columns (or there was no memory for the chunks) */
static void
sum_finish(struct dbsum *s, float *db)
{
	int nch = (s->R + CH - 1) / CH, all = s->part != NULL;

	for (int k = 0; all && !s->done && k < nch; k++)
		all = s->seen[k];
	if (!all) {
		kern_colsum(db, s->dout, (size_t)s->R, s->OC, (size_t)s->OC);
		return;
	}
	kern_add_chunks(db, s->part, (size_t)nch, s->OC, (size_t)s->OC);
}

/* kept: dout is kept for the products (bf16): the chunks' sums made
 * with its copy by the kernel that wrote it (linear_gelu_backward's dpre,
 * mim_gemm_kept_sums), or else by the pass that makes the copy now, in
 * the same order (mim_gemm_keep_colsums); either way the product's blocks
 * need not read dout again. (The product keeps its epilogue all the same,
 * so that it is cut as without: MIM_BF16_KEEP=0 gives the same bytes.) */
static void
sum_init(struct dbsum *s, const float *dout, int R, int OC, int kept)
{
	size_t nch = ((size_t)R + CH - 1) / CH;
	const double *made = kept >= 0 ? mim_gemm_kept_sums(dout, R, OC, CH) : NULL;

	s->dout = dout;
	s->R = R;
	s->OC = OC;
	if (made) {
		s->part = (double *)made;
		s->done = 1;
		return;
	}
	s->part = s->mem = malloc(nch * OC * sizeof *s->part + nch);
	s->seen = s->part ? (unsigned char *)(s->part + nch * OC) : NULL;
	s->done = s->part && kept >= 0 && mim_gemm_keep_colsums(dout, R, OC, CH, s->part) == 0;
	if (s->seen)
		memset(s->seen, s->done, nch);
}

static void
dx_block(void *p, int m0, int m1, int n0, int n1)
{
	sum_rows(p, m0, m1, n0, n1);
}

/* dpre = d act * gelu'(pre) from the sums at c of the fc2 input-gradient
 * product (d act), rows [m0,m1) x columns [n0,n1); with dpre kept (bf16)
 * only its copy and chunk sums are made, the float going no further than
 * the stack: fc1's backward reads the two alone */
static void
dgelu_sums(void *p, const float *c, int ldc, int m0, int m1, int n0, int n1)
{
	const struct actblk *a = p;
	float t[SPAN];

	sum_rows(a->db, m0, m1, n0, n1);
	for (int r = m0; r < m1; r++) {
		const float *cr = c + (size_t)(r - m0) * ldc;
		size_t o = (size_t)r * a->ld + n0;
		for (int j = 0; j < n1 - n0; j += SPAN) {
			int w = n1 - n0 - j < SPAN ? n1 - n0 - j : SPAN;
			float *d = a->yb ? t : a->out + o + j;
			vprod(d, cr + j, a->dg + o + j, (size_t)w);
			if (a->yb)
				mim_gemm_round_sums(a->yb + o + j, a->ys + n0 + j, a->ld, r, CH, t, w);
		}
	}
}

void
linear_gelu_backward(float *dpre, float *dw, float *db, const float *dout,
    const float *act, const float *dg, const float *w, int R, int IC, int OC)
{
	double fl = 2.0 * R * IC * OC, t = MIM_PROF_BEGIN();
	struct dbsum s = {0};
	struct actblk a = {NULL, dpre, dg, IC, db ? &s : NULL, NULL, 0, NULL, NULL};

	/* (bf16: dpre kept by the caller for fc1's backward: its copy and
	 * bias-gradient chunks made here) */
	a.yb = mim_gemm_kept_fill_sums(dpre, R, IC, CH, &a.ys);
	int kept = dw ? mim_gemm_keep(dout) : 0;	/* bf16: rounded once for both */
	if (db)
		sum_init(&s, dout, R, OC, kept);
	mim_gemm_sums(0, 0, R, IC, OC, dout, OC, w, IC, NULL, dpre, IC, dgelu_sums, &a);
	if (db) {
		sum_finish(&s, db);
		free(s.mem);
	}
	MIM_PROF_END("linear+gelu bwd dx", t, fl);
	linear_backward(NULL, dw, NULL, dout, act, w, R, IC, OC);
	if (kept == 1)
		mim_gemm_drop(dout);
}

void
linear_backward(float *dinp, float *dw, float *db, const float *dout,
    const float *inp, const float *w, int R, int IC, int OC)
{
	double t;
	double fl = 2.0 * R * IC * OC;
	struct dbsum s = {0};
	int kept = dinp && dw ? mim_gemm_keep(dout) : 0;	/* bf16: rounded once for both */

	/* dinp (R,IC) = dout (R,OC) @ w (OC,IC), db summed on the way */
	if (dinp) {
		t = MIM_PROF_BEGIN();
		if (db)
			sum_init(&s, dout, R, OC, kept);
		mim_gemm_ex(0, 0, R, IC, OC, 1.0f, dout, OC, w, IC, 0.0f, dinp, IC,
		    db ? dx_block : NULL, db ? &s : NULL);
		if (db) {
			sum_finish(&s, db);
			free(s.mem);
			db = NULL;
		}
		MIM_PROF_END("linear bwd dx", t, fl);
	}
	/* dw (OC,IC) += dout^T (OC,R) @ inp (R,IC) */
	if (dw) {
		t = MIM_PROF_BEGIN();
		mim_gemm(1, 0, OC, IC, R, 1.0f, dout, OC, inp, IC, 1.0f, dw, IC);
		MIM_PROF_END("linear bwd dw", t, fl);
	}
	/* the last reader of the input: a copy kept since the forward goes */
	mim_gemm_drop(inp);
	if (kept == 1)
		mim_gemm_drop(dout);
	if (db) {
		t = MIM_PROF_BEGIN();
		kern_colsum(db, dout, (size_t)R, OC, (size_t)OC);
		MIM_PROF_END("linear bwd db", t, 0);
	}
}
