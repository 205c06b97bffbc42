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
 * same from run to run for a given thread count. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "mim/gemm.h"
#include "mim/prof.h"
#include "mim/stream.h"
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

static void
sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
    const float *B, int ldb, float beta, float *C, int ldc)
{
	if ((double)M * N * K <= SMALL_MACS && use_smm() &&
	    mim_smm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
		return;
	cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
	    tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb,
	    beta, C, ldc);
}

/* one product cut into blocks of C for the pool */
struct split {
	int ta, tb, M, N, K, lda, ldb, ldc, rows, per;
	float alpha, beta;
	const float *A, *B;
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
		const float *A = s->ta ? s->A + lo : s->A + (size_t)lo * s->lda;
		sgemm(s->ta, s->tb, hi - lo, s->N, s->K, s->alpha, A, s->lda, s->B, s->ldb,
		    s->beta, s->C + (size_t)lo * s->ldc, s->ldc);
		if (s->epi)
			s->epi(s->ctx, lo, hi, 0, s->N);
	} else {		/* columns [lo,hi) */
		hi = hi < s->N ? hi : s->N;
		const float *B = s->tb ? s->B + (size_t)lo * s->ldb : s->B + lo;
		sgemm(s->ta, s->tb, s->M, hi - lo, s->K, s->alpha, s->A, s->lda, B, s->ldb,
		    s->beta, s->C + lo, s->ldc);
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

	int whole = nt == 1 || pool_in_job() || flops < SPLIT_FLOPS || (M < 32 && N < 32);

	if (whole || pool_blas_threaded()) {
		/* one call: single-threaded BLAS, or OpenBLAS's threads */
		int bt = whole ? 1 : nt;
		if (!pool_in_job())
			pool_set_blas_threads(bt);
		sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
		if (epi)
			epi(ctx, 0, M, 0, N);
	} else {
		/* cut the longer side of C into one block per thread (each
		 * block packs the other operand anew: more blocks balance a
		 * busy machine better but cost more packing, about 4% of a step
		 * at two per thread), rows in multiples of MIM_GEMM_ROWS,
		 * columns of 16 */
		struct split s = {ta, tb, M, N, K, lda, ldb, ldc, M >= N, 0, alpha, beta,
		    A, B, C, epi, ctx};
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
