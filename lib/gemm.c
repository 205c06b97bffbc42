/* gemm.c -- matrix products (OpenBLAS sgemm) and the thread pool.
 *
 * Threads: one knob, mim_threads(). BLAS runs with that many threads when
 * called from the main thread; inside mim_parallel jobs each worker calls
 * BLAS with one thread (openblas' own pool is not reentrant-parallel), so
 * the two never oversubscribe the cores. */
#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>

#include "mim/gemm.h"
#include "mim/prof.h"
#include "mim/stream.h"

static _Thread_local int tindex;
static _Thread_local int in_job;

void
mim_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A,
    int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
	if (M <= 0 || N <= 0)
		return;
	if (K <= 0) {	/* sgemm would leave C untouched for K=0 with beta!=1 */
		for (int i = 0; i < M; i++)
			for (int j = 0; j < N; j++)
				C[(size_t)i * ldc + j] = beta == 0 ? 0 : beta * C[(size_t)i * ldc + j];
		return;
	}
	double t = MIM_PROF_BEGIN();
	cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
	    tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb,
	    beta, C, ldc);
	MIM_PROF_END("gemm", t, 2.0 * M * N * K);
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
	/* big products: threaded BLAS, one after another */
	if (nt == 1 || in_job || flops >= 4e7 || batch == 1) {
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

/* ---- thread pool ---------------------------------------------------------- */

static struct {
	pthread_mutex_t mu;
	pthread_cond_t work, done;
	int nworkers;		/* threads started (excluding the caller) */
	long gen;		/* job generation */
	void (*fn)(void *, int);
	void *ctx;
	int n, next, active;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
    PTHREAD_COND_INITIALIZER, 0, 0, NULL, NULL, 0, 0, 0};

extern void openblas_set_num_threads(int);
extern int openblas_get_num_threads(void);

/* Take tasks of the current job until none are left. Called with mu held. */
static void
drain(void)
{
	while (pool.next < pool.n) {
		int i = pool.next++;
		pthread_mutex_unlock(&pool.mu);
		pool.fn(pool.ctx, i);
		pthread_mutex_lock(&pool.mu);
	}
}

static void *
worker(void *arg)
{
	long seen = 0;

	tindex = (int)(long)arg;
	in_job = 1;
	pthread_mutex_lock(&pool.mu);
	for (;;) {
		while (pool.gen == seen)
			pthread_cond_wait(&pool.work, &pool.mu);
		seen = pool.gen;
		pool.active++;
		drain();
		if (--pool.active == 0)
			pthread_cond_broadcast(&pool.done);
	}
	return NULL;
}

void
mim_parallel(int n, void (*fn)(void *ctx, int i), void *ctx)
{
	int nt = mim_threads();

	if (n <= 0)
		return;
	if (nt == 1 || n == 1 || in_job) {
		for (int i = 0; i < n; i++)
			fn(ctx, i);
		return;
	}
	pthread_mutex_lock(&pool.mu);
	while (pool.nworkers < nt - 1) {
		pthread_t t;
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &at, worker, (void *)(long)(pool.nworkers + 1)))
			break;
		pool.nworkers++;
	}
	pool.fn = fn;
	pool.ctx = ctx;
	pool.n = n;
	pool.next = 0;
	pool.gen++;
	pthread_cond_broadcast(&pool.work);
	/* the caller works too, with single-threaded BLAS like the workers */
	int blas = openblas_get_num_threads();
	openblas_set_num_threads(1);
	in_job = 1;
	pool.active++;
	drain();
	pool.active--;
	while (pool.active > 0 || pool.next < pool.n)
		pthread_cond_wait(&pool.done, &pool.mu);
	in_job = 0;
	pthread_mutex_unlock(&pool.mu);
	openblas_set_num_threads(blas);
}

int
mim_thread_index(void)
{
	return tindex;
}
