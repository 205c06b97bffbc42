/* gemm.c -- matrix products (oneDNN's sgemm or OpenBLAS's), cut over the
 * thread pool.
 *
 * Float products run on oneDNN's sgemm (dnn_sgemm, lib/onednn.c) by
 * default: its JIT kernels for the CPU's ISA ran most product shapes of
 * the four models 5-34% faster than OpenBLAS 0.3.21's sgemm, none slower
 * by more than 1% (mim/gemm.h; bench/RESULTS.md, 2026-12-05), once the
 * strides it reads slowly go to OpenBLAS (onednn_takes). OpenBLAS's stays
 * one switch away (mim_gemm_set_sgemm, MIM_SGEMM=openblas), and takes a
 * product that oneDNN refuses.
 *
 * Threads: one knob, mim_threads(), and one set of threads: the pool
 * (pool.c). The libraries run single-threaded; a product big enough to
 * share is cut into blocks (of rows, columns and the sum over K: "the
 * cut" below), each one sgemm on one pool thread. OpenBLAS's own pthreads
 * (and oneDNN's OpenMP team) would otherwise spin for a while after every
 * product and take a core from the pool's next loop.
 * Small products (attention heads, Swin windows: up to a few million
 * multiply-adds) skip BLAS for lib/smm.c, whose AVX2 blocks need no
 * packing of A and no call overhead (MIM_SMM=0 turns it off, for the
 * bench).
 *
 * MIM_GEMM_THREADS=blas in the environment (or mim_gemm_blas_threads(1))
 * has the library's own threads run a large product whole instead:
 * oneDNN's OpenMP team (OpenBLAS's threads with its sgemm). A switch for
 * the bench (bench/README.md): on 2 cores it is slower than the pool's
 * cut (bench/RESULTS.md).
 *
 * A block of C depends only on its own rows and columns of the operands,
 * but neither library sums every element in the same order whatever the
 * shape of the call: edge rows of a block can take another path. So a
 * product cut in blocks agrees with the uncut product to the last bit or
 * so, not exactly (OpenBLAS, a 1160x576x192 product: 14547 of its 668160
 * elements differ, in the last place; a 1152x768x192 one is identical).
 * The cut depends only on the shape and mim_threads(): results are the
 * same from run to run for a given thread count.
 *
 * bf16 (mim_gemm_set_precision): a product first rounds op(A) and op(B)
 * to bfloat16, once, into buffers of the calling thread (over the pool
 * when large), then runs as above with oneDNN's bf16 matmul
 * (lib/onednn.c) in place of sgemm on every block; where the CPU has AMX,
 * a product whose op(A) is not transposed (a Linear's forward and input
 * gradient) runs on lib/amx.c's tiles instead, op(B) packed once into
 * its pairs for every block. Small products (the
 * ones lib/smm.c takes) stay in float here: alone AMX runs a 197x64x197
 * product twice as fast, but through oneDNN one call a product the
 * rounding and the calls cost more than that gains (attention took 5-10%
 * more CPU time in a vit-base step). Attention's own products take AMX
 * without oneDNN instead: lib/kern/attn_amx.c runs a head's six in bf16
 * on AMX tiles, for N over 64 (vit-base: attention about 20% less time);
 * Swin's windows of 36 stay in float, where AMX is slower.
 *
 * mim_gemm_sums hands C's sums to an epilogue that writes all that
 * follows from them (the GELU's): in bf16 a block is computed a strip of
 * rows at a time (STRIP_BYTES, for L2) into a buffer of the thread, one
 * call of the backend a strip, and handed from there, so C itself is
 * never stored (a store that misses the cache reads the line first: on
 * the 2-core Xeon, 8 GB/s of plain stores against 13-25 of reads) nor
 * read back. */
#include <cblas.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mim/gemm.h"
#include "mim/prof.h"
#include "mim/stream.h"
#include "amx.h"
#include "blas.h"
#include "onednn.h"
#include "vec.h"
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

static int sgemm_mode = -1;	/* enum mim_sgemm */
static pthread_once_t sgemm_once = PTHREAD_ONCE_INIT;

static void
sgemm_env(void)
{
	const char *s = getenv("MIM_SGEMM");

	if (sgemm_mode < 0)
		sgemm_mode = s && !strcmp(s, "openblas") ? MIM_SGEMM_OPENBLAS : MIM_SGEMM_ONEDNN;
}

void
mim_gemm_set_sgemm(enum mim_sgemm b)
{
	sgemm_mode = b;
}

enum mim_sgemm
mim_gemm_sgemm(void)
{
	pthread_once(&sgemm_once, sgemm_env);
	return sgemm_mode;
}

const char *
mim_sgemm_name(enum mim_sgemm b)
{
	return b == MIM_SGEMM_OPENBLAS ? "openblas" : "onednn";
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
		if (dnn_gemm_bf16(0, 0, 16, 16, 16, 1, a, 16, a, 16, NULL, 0, c, 16) < 0)
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

/* Whether oneDNN's sgemm runs a float product. Not one with a transposed
 * A whose rows lie a multiple of 2 KB apart (lda 1024, 1536, 2048 floats:
 * Swin's widest weight gradients): oneDNN 2.6 reads that 15-25% slower
 * than OpenBLAS does, on a few cache sets (a copy at a padded stride
 * brought it level with OpenBLAS, not past it: bench/RESULTS.md). */
static int
onednn_takes(int ta, int lda)
{
	return mim_gemm_sgemm() == MIM_SGEMM_ONEDNN && !(ta && lda % 512 == 0);
}

/* The operands of a product: float as given (bf16 0), or rounded to
 * bfloat16 into buffers with row lengths lda, ldb (1: for oneDNN; 2: for
 * lib/amx.c, op(A) row-major and B as amx_pack lays it out, ldb its
 * pairs a row). */
struct operands {
	int bf16, ta, tb, lda, ldb;
	const void *A, *B;
};

static int amx_mode = -1;	/* mim_gemm_set_amx; -1: MIM_GEMM_AMX not read yet */

void
mim_gemm_set_amx(int on)
{
	amx_mode = on;
}

int
mim_gemm_amx(void)
{
	if (amx_mode < 0) {
		const char *s = getenv("MIM_GEMM_AMX");
		amx_mode = !(s && strcmp(s, "0") == 0);
	}
	return amx_mode && amx_ready();
}

/* whether lib/amx.c runs this bf16 product */
static int
use_amx(int ta, int N, int K, float alpha, float beta)
{
	return alpha == 1.0f && (beta == 0.0f || beta == 1.0f) && amx_takes(ta, N, K) &&
	    mim_gemm_amx();
}

/* element (r, c) of op(A) (w 0) or op(B) (w 1) of bf16 operands o, as a
 * float: where they are stored transposed or not, or as lib/amx.c's
 * pairs (B of bf16 2) */
static float
bf16_at(const struct operands *o, int w, int r, int c)
{
	const uint16_t *x = w ? o->B : o->A;
	int t = w ? o->tb : o->ta, ld = w ? o->ldb : o->lda;

	if (w && o->bf16 == 2)
		return mim_bf16_to_f32((uint16_t)(((const uint32_t *)o->B)[(size_t)r / 2 * ld + c] >>
		    16 * (r % 2)));
	return mim_bf16_to_f32(t ? x[(size_t)c * ld + r] : x[(size_t)r * ld + c]);
}

/* op(A) rows [m0, m0+M) x columns [k0, k0+K) times op(B) rows [k0, k0+K)
 * x columns [n0, n0+N) of o, into C; bias (its columns [n0, n0+N), with
 * alpha 1 and beta 0): added to every row, as addmm adds it (float: C
 * starts as the bias, beta 1; oneDNN adds it to its float sums) */
static void
leaf(const struct operands *o, int m0, int n0, int k0, int M, int N, int K, float alpha,
    float beta, float *C, int ldc, const float *bias)
{
	int ta = o->ta, tb = o->tb;
	size_t ao = ta ? (size_t)k0 * o->lda + m0 : (size_t)m0 * o->lda + k0;
	size_t bo = tb ? (size_t)n0 * o->ldb + k0 : (size_t)k0 * o->ldb + n0;

	if (bias && !o->bf16) {
		for (int i = 0; i < M; i++)
			memcpy(C + (size_t)i * ldc, bias + n0, (size_t)N * sizeof *C);
		beta = 1;
	}
	if (o->bf16 == 2) {	/* (ta 0; k0 a multiple of 64, n0 of 16) */
		const uint16_t *A = (const uint16_t *)o->A + (size_t)m0 * o->lda + k0;
		const uint32_t *V = (const uint32_t *)o->B + (size_t)k0 / 2 * o->ldb + n0;
		if (amx_gemm(M, N, K, A, o->lda, V, o->ldb, bias ? bias + n0 : NULL, beta != 0,
		        C, ldc) == 0)
			return;
	} else if (o->bf16) {
		const uint16_t *A = (const uint16_t *)o->A + ao, *B = (const uint16_t *)o->B + bo;
		if (dnn_gemm_bf16(ta, tb, M, N, K, alpha, A, o->lda, B, o->ldb, bias ? bias + n0 : NULL,
		        beta, C, ldc) == 0)
			return;
	}
	if (o->bf16) {	/* (out of memory: the same sums in float, slowly) */
		for (int i = 0; i < M; i++)
			for (int j = 0; j < N; j++) {
				float s = 0;
				for (int k = 0; k < K; k++)
					s += bf16_at(o, 0, m0 + i, k0 + k) * bf16_at(o, 1, k0 + k, n0 + j);
				float *c = &C[(size_t)i * ldc + j];
				*c = alpha * s + (bias ? bias[n0 + j] : beta == 0 ? 0 : beta * *c);
			}
		return;
	}
	const float *A = (const float *)o->A + ao, *B = (const float *)o->B + bo;
	if ((double)M * N * K <= SMALL_MACS && use_smm() &&
	    mim_smm(ta, tb, M, N, K, alpha, A, o->lda, B, o->ldb, beta, C, ldc))
		return;
	if (onednn_takes(ta, o->lda) &&
	    dnn_sgemm(ta, tb, M, N, K, alpha, A, o->lda, B, o->ldb, beta, C, ldc) == 0)
		return;	/* (else OpenBLAS: the same product) */
	cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
	    tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, o->lda, B, o->ldb,
	    beta, C, ldc);
}

/* ---- bf16 operands ------------------------------------------------------------ */

/* n bytes on a 64-byte boundary, as every buffer a product reads or
 * writes here: malloc's 16 put a large block's rows across two cache
 * lines each (glibc's mmap'd blocks start 16 bytes into a page), and a
 * tile load of 16 such rows reads 32 lines */
static void *
amalloc(size_t n)
{
	return aligned_alloc(64, (n + 63) & ~(size_t)63);
}

/* the calling thread's buffers, kept for its next product */
static _Thread_local uint16_t *bufs[2];
static _Thread_local size_t caps[2];

static uint16_t *
buffer(int i, size_t n)
{
	if (n > caps[i]) {
		free(bufs[i]);
		caps[i] = 0;
		if (!(bufs[i] = amalloc(n * sizeof(uint16_t))))
			return NULL;
		caps[i] = n;
	}
	return bufs[i];
}

struct conv {
	const float *x;
	uint16_t *y;
	int ldx, rows, cols, per, fast;
	double *sums;		/* mim_gemm_keep_colsums: chunks of ch rows */
	int ch;
};

static void
conv_task(void *p, int i)
{
	const struct conv *c = p;
	int lo = i * c->per, hi = lo + c->per < c->rows ? lo + c->per : c->rows;

	if (!c->sums) {
		dnn_to_bf16(c->x + (size_t)lo * c->ldx, (size_t)c->ldx, c->y + (size_t)lo * c->cols,
		    (size_t)c->cols, hi - lo, c->cols, c->fast);
		return;
	}
	for (int r = lo; r < hi; r++)		/* (lo is a multiple of ch) */
		mim_gemm_round_sums(c->y + (size_t)r * c->cols, c->sums, c->cols, r, c->ch,
		    c->x + (size_t)r * c->ldx, c->cols);
}

/* c->x into c->y: over the pool when large */
static void
conv_all(struct conv *c)
{
	size_t n = (size_t)c->rows * c->cols;
	if (n >= 1 << 16 && !pool_in_job() && mim_threads() > 1) {
		int tasks = mim_threads() * 2;
		c->per = (c->rows + tasks - 1) / tasks;
		if (c->sums)	/* whole chunks a task */
			c->per = (c->per + c->ch - 1) / c->ch * c->ch;
		mim_parallel((c->rows + c->per - 1) / c->per, conv_task, c);
	} else {
		conv_task(c, 0);
	}
}

/* Operands kept in bf16 for later products (mim_gemm_keep): an entry
 * per kept matrix, its copy made by the first product that reads it.
 * Dropped entries keep their buffers, each for the matrix it was last
 * dropped for: a step keeps the same matrices in the same shapes every
 * time, so after the first step nothing is allocated. (Handing buffers to
 * whichever entry came first had a few matrices of each swin-tiny batch-32
 * step grow theirs again, 7 to 14 MB of new pages a step.) */
#define KEEP_MAX 128
static struct kept {
	const float *x;		/* NULL: free */
	const float *last;	/* the x it was last dropped for: that x takes it again */
	int ldx, rows, cols;	/* the copy's source, once made (rows 0: not yet) */
	uint16_t *y;
	size_t cap;
	double *sums;		/* mim_gemm_kept_fill_sums: chunk column sums */
	size_t scap;
	int sch;		/* their chunk (rows); 0: none made */
} kept[KEEP_MAX];
static pthread_mutex_t kept_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int nkept;	/* entries in use: with none, no product takes the lock */

static int keep_on = -1;	/* MIM_BF16_KEEP=0: never (for the bench and tests) */

/* x's entry, or NULL. Under kept_mu. */
static struct kept *
find(const float *x)
{
	for (int i = 0; i < KEEP_MAX; i++)
		if (kept[i].x == x)
			return &kept[i];
	return NULL;
}

int
mim_gemm_keep(const float *x)
{
	int r = -1;

	if (keep_on < 0) {
		const char *e = getenv("MIM_BF16_KEEP");
		keep_on = !(e && strcmp(e, "0") == 0);
	}
	if (precision != MIM_PREC_BF16 || !x || !keep_on)
		return 0;
	pthread_mutex_lock(&kept_mu);
	if (find(x))
		r = 0;	/* kept already */
	/* a free entry: the one x had last time (a step keeps the same
	 * matrices: its buffer fits, no allocation), else one no other x
	 * had, else any */
	struct kept *e = NULL;
	for (int pass = 0; pass < 3 && r < 0 && !e; pass++)
		for (int i = 0; i < KEEP_MAX && !e; i++)
			if (!kept[i].x && (pass == 2 || kept[i].last == (pass == 0 ? x : NULL)))
				e = &kept[i];
	if (e) {
		e->x = x;
		e->rows = 0;
		e->sch = 0;
		nkept++;
		r = 1;
	}
	pthread_mutex_unlock(&kept_mu);
	return r;
}

void
mim_gemm_drop(const float *x)
{
	if (!nkept)
		return;
	pthread_mutex_lock(&kept_mu);
	for (int i = 0; i < KEEP_MAX; i++)
		if (kept[i].x && (kept[i].x == x || !x)) {
			kept[i].last = kept[i].x;
			kept[i].x = NULL;
			nkept--;
		}
	pthread_mutex_unlock(&kept_mu);
}

/* e's buffer at n elements or more: a free entry's that fits (the
 * smallest), or its own made bigger (its contents are not needed); 0 when
 * out of memory. Under kept_mu. */
static int
fit(struct kept *e, size_t n)
{
	struct kept *f = NULL;

	for (int i = 0; i < KEEP_MAX && e->cap < n; i++)
		if (!kept[i].x && kept[i].cap >= n && (!f || kept[i].cap < f->cap))
			f = &kept[i];
	if (f) {
		uint16_t *t = e->y;
		size_t tc = e->cap;
		e->y = f->y, e->cap = f->cap;
		f->y = t, f->cap = tc;
	}
	if (e->cap < n) {
		free(e->y);
		e->cap = 0;
		if ((e->y = amalloc(n * sizeof *e->y)))
			e->cap = n;
	}
	return e->cap >= n;
}

size_t
mim_gemm_kept_bytes(void)
{
	size_t n = 0;

	pthread_mutex_lock(&kept_mu);
	for (int i = 0; i < KEEP_MAX; i++)
		n += kept[i].cap * sizeof *kept[i].y;
	pthread_mutex_unlock(&kept_mu);
	return n;
}

/* the kept copy of c->x if it is kept and the copy is of c's shape: made
 * now by c (*made set) if it was not yet; NULL when c->x is not kept (or
 * the copy has another shape, or no memory) */
static const uint16_t *
kept_copy(struct conv *c, int *made)
{
	struct kept *e;
	const uint16_t *y = NULL;

	if (!nkept)
		return NULL;
	pthread_mutex_lock(&kept_mu);
	e = find(c->x);
	if (e && e->rows && e->ldx == c->ldx && e->rows == c->rows && e->cols == c->cols) {
		y = e->y;
	} else if (e && !e->rows && fit(e, (size_t)c->rows * c->cols)) {
		e->ldx = c->ldx, e->rows = c->rows, e->cols = c->cols;
		c->y = e->y;
		y = e->y;
		/* converted under the lock: a second reader waits for it */
		conv_all(c);
		*made = 1;
	}
	pthread_mutex_unlock(&kept_mu);
	return y;
}

uint16_t *
mim_gemm_kept_fill_sums(const float *x, int rows, int cols, int ch, double **sums)
{
	struct kept *e;
	uint16_t *y = NULL;
	size_t ns = ch > 0 ? (size_t)(rows + ch - 1) / ch * cols : 0;

	if (!nkept || !x || rows <= 0 || cols <= 0)
		return NULL;
	pthread_mutex_lock(&kept_mu);
	e = find(x);
	if (e && !e->rows && ns > e->scap) {	/* (kept with the entry, as y) */
		free(e->sums);
		e->scap = (e->sums = malloc(ns * sizeof *e->sums)) ? ns : 0;
	}
	if (e && !e->rows && e->scap >= ns && fit(e, (size_t)rows * cols)) {
		e->ldx = cols, e->rows = rows, e->cols = cols;
		e->sch = ch > 0 ? ch : 0;
		y = e->y;
		if (sums)
			*sums = e->sch ? e->sums : NULL;
	}
	pthread_mutex_unlock(&kept_mu);
	return y;
}

uint16_t *
mim_gemm_kept_fill(const float *x, int rows, int cols)
{
	return mim_gemm_kept_fill_sums(x, rows, cols, 0, NULL);
}

const double *
mim_gemm_kept_sums(const float *x, int rows, int cols, int ch)
{
	struct kept *e;
	const double *s = NULL;

	if (!nkept || !x)
		return NULL;
	pthread_mutex_lock(&kept_mu);
	e = find(x);
	if (e && e->rows == rows && e->cols == cols && e->ldx == cols && e->sch == ch && ch > 0)
		s = e->sums;
	pthread_mutex_unlock(&kept_mu);
	return s;
}

void
mim_gemm_round(uint16_t *y, size_t ldy, const float *x, size_t ldx, int rows, int cols)
{
	dnn_to_bf16(x, ldx, y, ldy, rows, cols, mim_cpu()->avx512_bf16);
}

void
mim_gemm_round_sums(uint16_t *y, double *sums, int cols, int r, int ch, const float *x, int n)
{
	dnn_to_bf16(x, 0, y, 0, 1, n, mim_cpu()->avx512_bf16);
	vchunk_add_d(sums, (size_t)cols, r, ch, x, n);
}

int
mim_gemm_keep_colsums(const float *x, int rows, int cols, int ch, double *sums)
{
	struct conv c = {x, NULL, cols, rows, cols, rows, mim_cpu()->avx512_bf16, sums, ch};
	int made = 0;

	if (x && rows > 0 && cols > 0 && ch > 0)
		kept_copy(&c, &made);
	return made ? 0 : -1;
}

/* whether x has a kept copy (made or to be made): its floats may not be
 * written (a producer that makes the copy need not) */
static int
is_kept(const float *x)
{
	int k;

	if (!nkept)
		return 0;
	pthread_mutex_lock(&kept_mu);
	k = find(x) != NULL;
	pthread_mutex_unlock(&kept_mu);
	return k;
}

/* rows x cols floats at stride ldx into buffer i, packed, or x's kept copy;
 * NULL when out of memory */
static const uint16_t *
to_bf16(int i, const float *x, int ldx, int rows, int cols)
{
	struct conv c = {x, NULL, ldx, rows, cols, rows, mim_cpu()->avx512_bf16, NULL, 0};
	int made;
	const uint16_t *k = kept_copy(&c, &made);
	if (k)
		return k;
	uint16_t *y = buffer(i, (size_t)rows * cols);
	if (!y)
		return NULL;
	c.y = y;
	conv_all(&c);
	return y;
}

/* op(B) (K,N) packed for lib/amx.c into buffer 1: (K/2, N) pairs, rows
 * *ldv = pairs_ld(N, K) apart, over the pool in rows of 16 pairs when
 * large; NULL when out of memory. */
struct pairs {
	uint32_t *V;
	const float *B;
	int ldb, tb, K, N, ldv, per;
};

/* V's row length: N pairs, or 16 more where a panel's rows would crowd
 * into a few sets of L2 (2 MB of 16 ways, 2048 sets, on every CPU with
 * AMX). Rows L lines apart fall into 2048 / g sets, g = gcd(L, 2048);
 * a panel w lines wide (amx_panel) with w < g then puts (K/2) g / 2048
 * lines in each: past 8, half the ways, the rows go a line further apart.
 * One thread (bench/amxbench.c, bench/RESULTS.md): 2320 x 3072 x 768
 * 820-835 GFLOP/s, padded 1226-1248; 2320 x 768 x 3072 774-811, padded
 * 1010-1046; 2304 x 512 x 1536 1117-1165, padded 1554-1572; where the
 * sets are not crowded (2320 x 768 x 768, 4608 x 256 x 1024) padding lost
 * up to 18%. */
static int
pairs_ld(int N, int K)
{
	int L = N * 4 / 64, g = 1, w = amx_panel(K) < N ? amx_panel(K) * 4 / 64 : N * 4 / 64;

	while (g < 2048 && L % (2 * g) == 0)
		g *= 2;
	return w < g && (K / 2) * g / 2048 > 8 ? N + 16 : N;
}

static void
pairs_task(void *p, int i)
{
	const struct pairs *j = p;
	int k0 = i * j->per, k1 = k0 + j->per < j->K / 2 ? k0 + j->per : j->K / 2;

	amx_pack(j->V, j->ldv, j->B, j->ldb, j->tb, j->N, k0, k1);
}

static const uint32_t *
to_pairs(const float *B, int ldb, int tb, int K, int N, int *ldv)
{
	*ldv = pairs_ld(N, K);
	uint32_t *V = (uint32_t *)buffer(1, (size_t)K * *ldv);	/* (K/2 x *ldv pairs) */
	struct pairs j = {V, B, ldb, tb, K, N, *ldv, K / 2};

	if (!V)
		return NULL;
	if ((size_t)K * N >= 1 << 16 && !pool_in_job() && mim_threads() > 1) {
		int tasks = (K / 2 + 15) / 16;
		j.per = 16 * ((tasks + 2 * mim_threads() - 1) / (2 * mim_threads()));
		mim_parallel((K / 2 + j.per - 1) / j.per, pairs_task, &j);
	} else {
		pairs_task(&j, 0);
	}
	return V;
}

/* ---- an epilogue that owns C (mim_gemm_sums) ------------------------------------ */

/* the calling thread's strip of C's sums */
static _Thread_local float *stripbuf;
static _Thread_local size_t stripcap;

#define STRIP_BYTES (256 * 1024)	/* a strip of C's sums, for L2 */
#define STRIP_ROWS 128			/* at least, a call of a library */
#define STRIP_V_BYTES (2 << 20)		/* V's bytes (lib/amx.c) for strips by panels */

/* rows [m0, m0+M) x columns [n0, n0+N) of the product (alpha 1, beta 0,
 * the sum over all of K), handed to own. In bf16 a strip of rows at a
 * time through a buffer of the thread, so that C's memory is never
 * written: each strip one call of lib/amx.c (B packed once a product) or
 * of oneDNN's matmul, which packs op(B) again in every call, so at least
 * STRIP_ROWS rows a call there. Float products, and any without memory
 * for the buffer, are computed into C and handed from there: through
 * oneDNN's sgemm, which packs op(B) in float, strips lost up to 10% on
 * Swin-T's stage-2 fc1 (4608 x 1536 x 384) and won as much on stage 0,
 * within the noise of the machine they were measured on (bench/RESULTS.md). */
static void
leaf_own(const struct operands *o, int m0, int n0, int M, int N, int K, float *C, int ldc,
    const float *bias, mim_gemm_sums_fn own, void *ctx)
{
	/* lib/amx.c, with V past L2: by its panels of columns, strips of rows
	 * inside, so that a panel's pairs stay in L2 for all the rows (strips
	 * of all N columns read the whole of V again for each: 4.7 MB for
	 * every 32 rows of ViT-B's fc1) */
	int np = o->bf16 == 2 && (size_t)2 * K * N > STRIP_V_BYTES ? amx_panel(K) : N;
	int least = o->bf16 == 2 ? MIM_GEMM_ROWS : STRIP_ROWS;

	for (int p0 = 0; p0 < N; p0 += np) {
		int pw = N - p0 < np ? N - p0 : np, done = 0;
		int sr = STRIP_BYTES / (int)(pw * sizeof(float)) / MIM_GEMM_ROWS * MIM_GEMM_ROWS;
		sr = sr < least ? least : sr;
		if (o->bf16 && (size_t)sr * pw > stripcap) {
			free(stripbuf);
			stripcap = (stripbuf = amalloc((size_t)sr * pw * sizeof *stripbuf)) ?
			    (size_t)sr * pw : 0;
		}
		for (; o->bf16 && stripcap >= (size_t)sr * pw && done < M; done += sr) {
			int nr = M - done < sr ? M - done : sr;
			if (o->bf16 == 2) {
				const uint16_t *A = (const uint16_t *)o->A + (size_t)(m0 + done) * o->lda;
				const uint32_t *V = (const uint32_t *)o->B + n0 + p0;
				if (amx_gemm(nr, pw, K, A, o->lda, V, o->ldb, bias ? bias + n0 + p0 : NULL,
				        0, stripbuf, pw) < 0)
					break;
			} else {
				leaf(o, m0 + done, n0 + p0, 0, nr, pw, K, 1, 0, stripbuf, pw, bias);
			}
			own(ctx, stripbuf, pw, m0 + done, m0 + done + nr, n0 + p0, n0 + p0 + pw);
		}
		if (done < M) {
			float *c = C + (size_t)(m0 + done) * ldc + n0 + p0;
			leaf(o, m0 + done, n0 + p0, 0, M - done, pw, K, 1, 0, c, ldc, bias);
			own(ctx, c, ldc, m0 + done, m0 + M, n0 + p0, n0 + p0 + pw);
		}
	}
}

/* ---- the cut ------------------------------------------------------------------
 * A product shared by nt threads is cut into a grid of gm x gn x gk blocks,
 * at most nt of them: gm blocks of rows of C (each a multiple of
 * MIM_GEMM_ROWS rows), gn of columns (multiples of 16) and gk slices of
 * the sum over K (multiples of KALIGN). Each block is one single-threaded
 * sgemm (or oneDNN matmul) on one pool thread, and each such call packs
 * the block's rows of op(A) and its columns of op(B) over its slice of K
 * anew. A block of a one-dimensional cut packs the whole of the other
 * operand, so at many threads the packing grows with the thread count
 * while each block's share of the multiply-adds shrinks: for a weight
 * gradient (M, N the layer's widths, K every token of the batch) every
 * thread would read all of op(B). The grid is the one of least cost per
 * thread (cost() below: elements packed, plus the multiply-adds at
 * MACS_PER_ELEM to an element, plus the sum of the partial products a cut
 * of K needs), kept only where it beats the one-dimensional cut of the
 * longer side by GRID_GAIN; else that cut, as before. The partial products
 * of K's slices go to buffers of the calling thread and are added to C in
 * order afterwards. The grid depends only on the shape and mim_threads(),
 * so a product gives the same bits from run to run for a given thread
 * count. An epilogue (mim_gemm_ex) needs whole rows or whole columns:
 * products with one are cut in one dimension only. */

#define KALIGN 64
#define MACS_PER_ELEM 32.0
#define GRID_GAIN 0.9		/* a grid must cost under 0.9 of the 1-D cut */

struct grid {
	int gm, gn, gk;		/* blocks along M, N, K */
	int pm, pn, pk;		/* rows, columns, slice of K per block */
};

static enum mim_gemm_cut cut_mode = -1;
static int forced[3];		/* mim_gemm_set_grid */

void
mim_gemm_set_cut(enum mim_gemm_cut c)
{
	cut_mode = c;
}

void
mim_gemm_set_grid(const int g[3])
{
	for (int i = 0; i < 3; i++)
		forced[i] = g ? g[i] : 0;
}

static enum mim_gemm_cut
cut(void)
{
	if ((int)cut_mode < 0) {
		const char *s = getenv("MIM_GEMM_CUT");
		cut_mode = s && strcmp(s, "1d") == 0 ? MIM_CUT_1D : MIM_CUT_AUTO;
	}
	return cut_mode;
}

static int
up(int x, int a)
{
	return (x + a - 1) / a * a;
}

/* the grid of fm x fn x fk blocks (fewer where rounding the blocks up to
 * their multiples leaves some empty) */
static struct grid
grid_of(int M, int N, int K, int fm, int fn, int fk)
{
	struct grid g;

	g.pm = fm > 1 ? up((M + fm - 1) / fm, MIM_GEMM_ROWS) : M;
	g.pn = fn > 1 ? up((N + fn - 1) / fn, 16) : N;
	g.pk = fk > 1 ? up((K + fk - 1) / fk, KALIGN) : K;
	g.gm = (M + g.pm - 1) / g.pm;
	g.gn = (N + g.pn - 1) / g.pn;
	g.gk = (K + g.pk - 1) / g.pk;
	return g;
}

/* the work of the busiest thread, in operand elements packed */
static double
cost(const struct grid *g, int M, int N, int nt)
{
	double c = (double)(g->pm + g->pn) * g->pk + (double)g->pm * g->pn * g->pk / MACS_PER_ELEM;

	if (g->gk > 1)		/* the partial product written, then all summed */
		c += (double)g->pm * g->pn + (double)(g->gk + 1) * M * N / nt;
	return c;
}

static struct grid
plan(int M, int N, int K, int nt, int epi)
{
	struct grid one = M >= N ? grid_of(M, N, K, nt, 1, 1) : grid_of(M, N, K, 1, nt, 1);

	if (forced[0] > 0 && forced[1] > 0 && forced[2] > 0 && !epi)
		return grid_of(M, N, K, forced[0], forced[1], forced[2]);
	if (epi || cut() == MIM_CUT_1D || nt < 2)
		return one;
	struct grid best = one;
	double bc = cost(&one, M, N, nt) * GRID_GAIN;
	for (int fm = 1; fm <= nt; fm++)
		for (int fn = 1; fm * fn <= nt; fn++) {
			int fk = nt / (fm * fn);
			if (fm * fn * fk != nt)
				continue;
			struct grid g = grid_of(M, N, K, fm, fn, fk);
			double c = cost(&g, M, N, nt);
			if (c < bc) {
				best = g;
				bc = c;
			}
		}
	return best;
}

/* the blocks of one product, for the pool */
struct split {
	int M, N, K, ldc;
	struct grid g;
	float alpha, beta;
	const struct operands *o;
	float *C, *part;	/* part: the gk-1 partial products of K's slices,
				 * M x N each */
	const float *bias;	/* added by the blocks of K's first slice */
	void (*epi)(void *, int, int, int, int);
	mim_gemm_sums_fn own;	/* mim_gemm_sums: the epilogue owns C */
	void *ctx;
};

static int
min(int a, int b)
{
	return a < b ? a : b;
}

static void
split_task(void *p, int i)
{
	const struct split *s = p;
	const struct grid *g = &s->g;
	int im = i % g->gm, in = i / g->gm % g->gn, ik = i / (g->gm * g->gn);
	int m0 = im * g->pm, n0 = in * g->pn, k0 = ik * g->pk;
	int m1 = min(m0 + g->pm, s->M), n1 = min(n0 + g->pn, s->N), k1 = min(k0 + g->pk, s->K);

	if (s->own)
		leaf_own(s->o, m0, n0, m1 - m0, n1 - n0, s->K, s->C, s->ldc, s->bias, s->own, s->ctx);
	else if (ik == 0)
		leaf(s->o, m0, n0, k0, m1 - m0, n1 - n0, k1 - k0, s->alpha, s->beta,
		    s->C + (size_t)m0 * s->ldc + n0, s->ldc, s->bias);
	else
		leaf(s->o, m0, n0, k0, m1 - m0, n1 - n0, k1 - k0, s->alpha, 0,
		    s->part + (size_t)(ik - 1) * s->M * s->N + (size_t)m0 * s->N + n0, s->N, NULL);
	if (s->epi)
		s->epi(s->ctx, m0, m1, n0, n1);
}

/* C += the partial products, in order, rows [lo, hi) of the task's share */
static void
sum_task(void *p, int i)
{
	const struct split *s = p;
	int lo = i * MIM_GEMM_ROWS, hi = min(lo + MIM_GEMM_ROWS, s->M);
	size_t mn = (size_t)s->M * s->N;

	for (int r = lo; r < hi; r++) {
		float *c = s->C + (size_t)r * s->ldc;
		for (int k = 1; k < s->g.gk; k++) {
			const float *q = s->part + (k - 1) * mn + (size_t)r * s->N;
			for (int j = 0; j < s->N; j++)
				c[j] += q[j];
		}
	}
}

/* the calling thread's buffer for partial products */
static _Thread_local float *partbuf;
static _Thread_local size_t partcap;

static float *
partials(size_t n)
{
	if (n > partcap) {
		free(partbuf);
		partcap = 0;
		if (!(partbuf = amalloc(n * sizeof(float))))
			return NULL;
		partcap = n;
	}
	return partbuf;
}

/* products that run on the calling thread */
static int
shared_whole(int M, int N, int K, int nt)
{
	return nt == 1 || pool_in_job() || 2.0 * M * N * K < SPLIT_FLOPS || (M < 32 && N < 32);
}

void
mim_gemm_grid(int M, int N, int K, int epi, int g[3])
{
	int nt = mim_threads();
	struct grid p = {1, 1, 1, M, N, K};

	if (M > 0 && N > 0 && K > 0 && !shared_whole(M, N, K, nt) && !pool_blas_threaded())
		p = plan(M, N, K, nt, epi);
	g[0] = p.gm;
	g[1] = p.gn;
	g[2] = p.gk;
}

/* mim_gemm_ex, and mim_gemm_bias with bias (alpha 1, beta 0) */
static void
product(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
    const float *B, int ldb, float beta, float *C, int ldc, const float *bias,
    void (*epi)(void *ctx, int m0, int m1, int n0, int n1), mim_gemm_sums_fn own, void *ctx)
{
	if (M <= 0 || N <= 0)
		return;
	if (K <= 0) {	/* sgemm would leave C untouched for K=0 with beta!=1 */
		for (int i = 0; i < M; i++)
			for (int j = 0; j < N; j++)
				C[(size_t)i * ldc + j] = bias ? bias[j] : beta == 0 ? 0 :
				    beta * C[(size_t)i * ldc + j];
		if (epi)
			epi(ctx, 0, M, 0, N);
		if (own)
			own(ctx, C, ldc, 0, M, 0, N);
		return;
	}
	double t = MIM_PROF_BEGIN(), flops = 2.0 * M * N * K;
	int nt = mim_threads();
	struct operands o = {0, ta, tb, lda, ldb, A, B};

	mim_blas_setup();
	if (precision == MIM_PREC_BF16 && ((double)M * N * K > SMALL_MACS || !use_smm())) {
		/* op(A) and op(B) as stored (transposed or not), packed; for
		 * lib/amx.c op(B) in its pairs */
		const uint16_t *a = to_bf16(0, A, lda, ta ? K : M, ta ? M : K);
		if (use_amx(ta, N, K, alpha, beta) && !is_kept(B)) {
			int ldv;
			const uint32_t *v = to_pairs(B, ldb, tb, K, N, &ldv);
			if (a && v)	/* (else float, rather than fail) */
				o = (struct operands){2, ta, tb, K, ldv, a, v};
		} else {
			const uint16_t *b = to_bf16(1, B, ldb, tb ? N : K, tb ? K : N);
			if (a && b)
				o = (struct operands){1, ta, tb, ta ? M : K, tb ? K : N, a, b};
		}
	}
	int whole = shared_whole(M, N, K, nt);

	if (whole || pool_blas_threaded()) {
		/* one call: single-threaded BLAS, or OpenBLAS's (oneDNN's) threads */
		int bt = whole || pool_in_job() ? 1 : nt;
		if (!pool_in_job())
			pool_set_blas_threads(bt);
		dnn_set_threads(bt);
		if (own)
			leaf_own(&o, 0, 0, M, N, K, C, ldc, bias, own, ctx);
		else
			leaf(&o, 0, 0, 0, M, N, K, alpha, beta, C, ldc, bias);
		dnn_set_threads(1);
		if (epi)
			epi(ctx, 0, M, 0, N);
	} else {
		struct split s = {M, N, K, ldc, plan(M, N, K, nt, epi || own), alpha, beta, &o, C,
		    NULL, bias, epi, own, ctx};
		if (s.g.gk > 1 && !(s.part = partials((size_t)(s.g.gk - 1) * M * N)))
			s.g = plan(M, N, K, nt, 1);	/* (no memory: the 1-D cut) */
		mim_parallel(s.g.gm * s.g.gn * s.g.gk, split_task, &s);
		if (s.g.gk > 1)
			mim_parallel((M + MIM_GEMM_ROWS - 1) / MIM_GEMM_ROWS, sum_task, &s);
	}
	MIM_PROF_END("gemm", t, flops);
}

void
mim_gemm_ex(int ta, int tb, int M, int N, int K, float alpha, const float *A,
    int lda, const float *B, int ldb, float beta, float *C, int ldc,
    void (*epi)(void *ctx, int m0, int m1, int n0, int n1), void *ctx)
{
	product(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL, epi, NULL, ctx);
}

void
mim_gemm_sums(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B,
    int ldb, const float *bias, float *C, int ldc, mim_gemm_sums_fn own, void *ctx)
{
	product(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc, bias, NULL, own, ctx);
}

void
mim_gemm_bias(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B,
    int ldb, const float *bias, float *C, int ldc)
{
	product(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc, bias, NULL, NULL, NULL);
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
