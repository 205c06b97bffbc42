/* gemm.c -- matrix products (OpenBLAS sgemm), cut over the thread pool.
 *
 * Threads: one knob, mim_threads(), and one set of threads: the pool
 * (pool.c). BLAS itself runs single-threaded; a product big enough to
 * share is cut into blocks of rows (or columns) of C, each one sgemm on
 * one pool thread. OpenBLAS's own pthreads would otherwise spin
 * (sched_yield) for a while after every product and take a core from the
 * pool's next loop.
 * Small products (attention heads, Swin windows: up to a few million
 * multiply-adds) skip BLAS for lib/smm.c, whose AVX2 blocks need no
 * packing of A and no call overhead (MIM_SMM=0 turns it off, for the
 * bench).
 *
 * MIM_GEMM_THREADS=blas in the environment (or mim_gemm_blas_threads(1))
 * restores OpenBLAS's threading for large products: a switch for the
 * bench (bench/README.md).
 *
 * A block of C depends only on its own rows and columns of the operands,
 * but OpenBLAS does not sum every element in the same order whatever the
 * shape of the call: edge rows of a block can take another path. So a
 * product cut in blocks agrees with the uncut product to the last bit or
 * so, not exactly (for a 1160x576x192 product, 14547 of its 668160
 * elements differ, in the last place; a 1152x768x192 one is identical).
 * The cut depends only on the shape and mim_threads(): results are the
 * same from run to run for a given thread count.
 *
 * bf16 (mim_gemm_set_precision): a product first rounds op(A) and op(B)
 * to bfloat16, once, into buffers of the calling thread (over the pool
 * when large), then runs as above with oneDNN's bf16 matmul
 * (lib/onednn.c) in place of sgemm on every block. Small products (an
 * attention head's, a Swin window's: the ones lib/smm.c takes) stay in
 * float: alone AMX runs a 197x64x197 product twice as fast, but in a
 * vit-base step the rounding and oneDNN's call cost more than that gains
 * (attention took 5-10% more CPU time), and float is the more accurate. */
#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mim/gemm.h"
#include "mim/prof.h"
#include "mim/stream.h"
#include "blas.h"
#include "onednn.h"
#include "pool_int.h"
#include "smm.h"

/* products below this many flops run on the calling thread */
#define SPLIT_FLOPS 4e6

#define SMALL_MACS (4.0 * 1024 * 1024)

static int smm_mode = -1;	/* 1: small products through lib/smm.c */

static int
use_smm(void)
{
	if (smm_mode < 0) {
		const char *s = getenv("MIM_SMM");
		smm_mode = !(s && strcmp(s, "0") == 0);
	}
	return smm_mode;
}

static enum mim_precision precision = MIM_PREC_FP32;

int
mim_gemm_set_precision(enum mim_precision p)
{
	if (p == MIM_PREC_BF16 && !dnn_bf16()) {
		const struct mim_cpu *c = mim_cpu();
		if (c->amx_bf16 || c->avx512_bf16)
			return mim_seterr("oneDNN runs %s only, without AMX and AVX512-BF16 "
			    "(is DNNL_MAX_CPU_ISA set?)", dnn_isa());
		return mim_seterr("this CPU has neither AMX nor AVX512-BF16");
	}
	if (p == MIM_PREC_BF16) {	/* one product now, so that a failure shows here */
		uint16_t a[16 * 16] = {0};
		float c[16 * 16];
		if (dnn_gemm_bf16(0, 0, 16, 16, 16, 1, a, 16, a, 16, 0, c, 16) < 0)
			return -1;
	}
	precision = p;
	return 0;
}

enum mim_precision
mim_gemm_precision(void)
{
	return precision;
}

int
mim_precision_parse(const char *s)
{
	return !strcmp(s, "fp32") ? MIM_PREC_FP32 : !strcmp(s, "bf16") ? MIM_PREC_BF16 : -1;
}

const char *
mim_precision_name(enum mim_precision p)
{
	return p == MIM_PREC_BF16 ? "bf16" : "fp32";
}

/* The operands of a product: float as given, or rounded to bfloat16
 * (bf16 set) into buffers with row lengths lda, ldb. */
struct operands {
	int bf16, ta, tb, lda, ldb;
	const void *A, *B;
};

/* op(A) rows [m0, m0+M) and op(B) columns [n0, n0+N) of o, times, into C */
static void
leaf(const struct operands *o, int m0, int n0, int M, int N, int K, float alpha,
    float beta, float *C, int ldc)
{
	int ta = o->ta, tb = o->tb;
	size_t ao = ta ? (size_t)m0 : (size_t)m0 * o->lda;
	size_t bo = tb ? (size_t)n0 * o->ldb : (size_t)n0;

	if (o->bf16) {
		const uint16_t *A = (const uint16_t *)o->A + ao, *B = (const uint16_t *)o->B + bo;
		if (dnn_gemm_bf16(ta, tb, M, N, K, alpha, A, o->lda, B, o->ldb, beta, C, ldc) == 0)
			return;
		/* (oneDNN out of memory: the same sums in float, slowly) */
		for (int i = 0; i < M; i++)
			for (int j = 0; j < N; j++) {
				float s = 0;
				for (int k = 0; k < K; k++)
					s += mim_bf16_to_f32(A[ta ? (size_t)k * o->lda + i : (size_t)i * o->lda + k]) *
					    mim_bf16_to_f32(B[tb ? (size_t)j * o->ldb + k : (size_t)k * o->ldb + j]);
				float *c = &C[(size_t)i * ldc + j];
				*c = alpha * s + (beta == 0 ? 0 : beta * *c);
			}
		return;
	}
	const float *A = (const float *)o->A + ao, *B = (const float *)o->B + bo;
	if ((double)M * N * K <= SMALL_MACS && use_smm() &&
	    mim_smm(ta, tb, M, N, K, alpha, A, o->lda, B, o->ldb, beta, C, ldc))
		return;
	cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
	    tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, o->lda, B, o->ldb,
	    beta, C, ldc);
}

/* ---- bf16 operands ------------------------------------------------------------ */

/* the calling thread's buffers, kept for its next product */
static _Thread_local uint16_t *bufs[2];
static _Thread_local size_t caps[2];

static uint16_t *
buffer(int i, size_t n)
{
	if (n > caps[i]) {
		free(bufs[i]);
		caps[i] = 0;
		if (!(bufs[i] = malloc(n * sizeof(uint16_t))))
			return NULL;
		caps[i] = n;
	}
	return bufs[i];
}

struct conv {
	const float *x;
	uint16_t *y;
	int ldx, rows, cols, per, fast;
};

static void
conv_task(void *p, int i)
{
	const struct conv *c = p;
	int lo = i * c->per, hi = lo + c->per < c->rows ? lo + c->per : c->rows;

	dnn_to_bf16(c->x + (size_t)lo * c->ldx, (size_t)c->ldx, c->y + (size_t)lo * c->cols,
	    (size_t)c->cols, hi - lo, c->cols, c->fast);
}

/* rows x cols floats at stride ldx into buffer i, packed; NULL when out of
 * memory */
static const uint16_t *
to_bf16(int i, const float *x, int ldx, int rows, int cols)
{
	uint16_t *y = buffer(i, (size_t)rows * cols);
	if (!y)
		return NULL;
	struct conv c = {x, y, ldx, rows, cols, rows, mim_cpu()->avx512_bf16};
	size_t n = (size_t)rows * cols;
	if (n >= 1 << 16 && !pool_in_job() && mim_threads() > 1) {
		int tasks = mim_threads() * 2;
		c.per = (rows + tasks - 1) / tasks;
		mim_parallel((rows + c.per - 1) / c.per, conv_task, &c);
	} else {
		conv_task(&c, 0);
	}
	return y;
}

/* one product cut into blocks of C for the pool */
struct split {
	int M, N, K, ldc, rows, per;
	float alpha, beta;
	const struct operands *o;
	float *C;
	void (*epi)(void *, int, int, int, int);
	void *ctx;
};

static void
split_task(void *p, int i)
{
	const struct split *s = p;
	int lo = i * s->per, hi = lo + s->per;

	if (s->rows) {		/* rows [lo,hi) of C */
		hi = hi < s->M ? hi : s->M;
		leaf(s->o, lo, 0, hi - lo, s->N, s->K, s->alpha, s->beta,
		    s->C + (size_t)lo * s->ldc, s->ldc);
		if (s->epi)
			s->epi(s->ctx, lo, hi, 0, s->N);
	} else {		/* columns [lo,hi) */
		hi = hi < s->N ? hi : s->N;
		leaf(s->o, 0, lo, s->M, hi - lo, s->K, s->alpha, s->beta, s->C + lo, s->ldc);
		if (s->epi)
			s->epi(s->ctx, 0, s->M, lo, hi);
	}
}

void
mim_gemm_ex(int ta, int tb, int M, int N, int K, float alpha, const float *A,
    int lda, const float *B, int ldb, float beta, float *C, int ldc,
    void (*epi)(void *ctx, int m0, int m1, int n0, int n1), void *ctx)
{
	if (M <= 0 || N <= 0)
		return;
	if (K <= 0) {	/* sgemm would leave C untouched for K=0 with beta!=1 */
		for (int i = 0; i < M; i++)
			for (int j = 0; j < N; j++)
				C[(size_t)i * ldc + j] = beta == 0 ? 0 : beta * C[(size_t)i * ldc + j];
		if (epi)
			epi(ctx, 0, M, 0, N);
		return;
	}
	double t = MIM_PROF_BEGIN(), flops = 2.0 * M * N * K;
	int nt = mim_threads();
	struct operands o = {0, ta, tb, lda, ldb, A, B};

	mim_blas_setup();
	if (precision == MIM_PREC_BF16 && ((double)M * N * K > SMALL_MACS || !use_smm())) {
		/* op(A) and op(B) as stored (transposed or not), packed */
		const uint16_t *a = to_bf16(0, A, lda, ta ? K : M, ta ? M : K);
		const uint16_t *b = to_bf16(1, B, ldb, tb ? N : K, tb ? K : N);
		if (a && b)	/* (else float, rather than fail) */
			o = (struct operands){1, ta, tb, ta ? M : K, tb ? K : N, a, b};
	}
	int whole = nt == 1 || pool_in_job() || flops < SPLIT_FLOPS || (M < 32 && N < 32);

	if (whole || (pool_blas_threaded() && !o.bf16)) {
		/* one call: single-threaded BLAS, or OpenBLAS's threads */
		int bt = whole ? 1 : nt;
		if (!pool_in_job())
			pool_set_blas_threads(bt);
		leaf(&o, 0, 0, M, N, K, alpha, beta, C, ldc);
		if (epi)
			epi(ctx, 0, M, 0, N);
	} else {
		/* cut the longer side of C into one block per thread (each
		 * block packs the other operand anew: more blocks balance a
		 * busy machine better but cost more packing, about 4% of a step
		 * at two per thread), rows in multiples of MIM_GEMM_ROWS,
		 * columns of 16 */
		struct split s = {M, N, K, ldc, M >= N, 0, alpha, beta, &o, C, epi, ctx};
		int len = s.rows ? M : N, tasks = nt, al = s.rows ? MIM_GEMM_ROWS : 16;
		s.per = (len + tasks - 1) / tasks;
		s.per = (s.per + al - 1) / al * al;
		mim_parallel((len + s.per - 1) / s.per, split_task, &s);
	}
	MIM_PROF_END("gemm", t, flops);
}

void
mim_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A,
    int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
	mim_gemm_ex(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL, NULL);
}

struct batchjob {
	int ta, tb, M, N, K, lda, ldb, ldc;
	float alpha, beta;
	const float *A, *B;
	float *C;
	size_t sA, sB, sC;
	int batch, per;
};

static void
batch_chunk(void *ctx, int i)
{
	struct batchjob *j = ctx;
	int lo = i * j->per, hi = lo + j->per;

	if (hi > j->batch)
		hi = j->batch;
	for (int b = lo; b < hi; b++)
		mim_gemm(j->ta, j->tb, j->M, j->N, j->K, j->alpha,
		    j->A + (size_t)b * j->sA, j->lda, j->B + (size_t)b * j->sB, j->ldb,
		    j->beta, j->C + (size_t)b * j->sC, j->ldc);
}

void
mim_gemm_batch(int ta, int tb, int M, int N, int K, float alpha,
    const float *A, int lda, size_t sA, const float *B, int ldb, size_t sB,
    float beta, float *C, int ldc, size_t sC, int batch)
{
	int nt = mim_threads();
	double flops = 2.0 * M * N * K;

	if (batch <= 0)
		return;
	double t = MIM_PROF_BEGIN();
	/* big products: one after another, each split over the pool */
	if (nt == 1 || pool_in_job() || flops >= 4e7 || batch == 1) {
		for (int b = 0; b < batch; b++)
			mim_gemm(ta, tb, M, N, K, alpha, A + (size_t)b * sA, lda,
			    B + (size_t)b * sB, ldb, beta, C + (size_t)b * sC, ldc);
		MIM_PROF_END("gemm batch", t, flops * batch);
		return;
	}
	struct batchjob j = {ta, tb, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C,
	    sA, sB, sC, batch, 0};
	int chunks = nt * 4 < batch ? nt * 4 : batch;
	j.per = (batch + chunks - 1) / chunks;
	chunks = (batch + j.per - 1) / j.per;
	mim_parallel(chunks, batch_chunk, &j);
	MIM_PROF_END("gemm batch", t, flops * batch);
}
