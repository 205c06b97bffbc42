/* smm.c -- small matrix products (attention heads, Swin windows: a few
 * dozen to a few hundred rows) without BLAS's call and packing overhead,
 * which at these sizes costs more than the arithmetic. One of mim_gemm's
 * backends (lib/gemm.c); nothing else calls it.
 *
 * C (M,N) = alpha op(A) (M,K) @ op(B) (K,N) + beta C, row-major as
 * cblas_sgemm. op(B) is first copied into a zero-padded (K, N rounded up
 * to 16) panel on the calling thread's stack-like scratch; then each 6x16
 * block of C is 12 AVX2 registers of sums, one FMA per (k, 8 columns),
 * with op(A)'s elements broadcast from wherever they lie (either
 * transpose). Every element is summed over k in order, one FMA per term,
 * whatever the block: results do not depend on M, N or where C starts.
 *
 * Needs AVX2 and FMA, checked at run time: mim_smm returns 0 (nothing
 * done) where they are missing or the product is not small, and mim_gemm
 * goes to BLAS. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "smm.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include "tr8.h"

#define MR 6
#define PACK (16 * 1024)	/* floats of the B panel: K * roundup(N, 16) */

static _Thread_local float pack[PACK] __attribute__((aligned(64)));

#define TGT __attribute__((target("avx2,fma")))

/* row cr[0..nc) = alpha (v0 | v1) + beta cr */
TGT static inline __attribute__((always_inline)) void
store(float *cr, __m256 v0, __m256 v1, __m256 al, __m256 be, float beta, int nc)
{
	v0 = _mm256_mul_ps(v0, al);
	v1 = _mm256_mul_ps(v1, al);
	if (nc == 16) {
		if (beta != 0) {
			v0 = _mm256_fmadd_ps(be, _mm256_loadu_ps(cr), v0);
			v1 = _mm256_fmadd_ps(be, _mm256_loadu_ps(cr + 8), v1);
		}
		_mm256_storeu_ps(cr, v0);
		_mm256_storeu_ps(cr + 8, v1);
	} else {
		float t[16];
		_mm256_storeu_ps(t, v0);
		_mm256_storeu_ps(t + 8, v1);
		for (int j = 0; j < nc; j++)
			cr[j] = beta != 0 ? fmaf(beta, cr[j], t[j]) : t[j];
	}
}

/* One mr x 16 block (mr <= MR rows, nc <= 16 valid columns) of C from
 * the panel Bp (K rows of 16, stride ldp) and A's rows at A + r*ars +
 * k*aks. Written out row by row so that the twelve sums are registers. */
#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
TGT static inline __attribute__((always_inline)) void
block(int mr, int K, const float *A, ptrdiff_t ars, ptrdiff_t aks, const float *Bp,
    int ldp, float alpha, float beta, float *C, int ldc, int nc)
{
#define DECL(r) __m256 c0##r = _mm256_setzero_ps(), c1##r = c0##r;
	ROWS(DECL)
	for (int k = 0; k < K; k++) {
		__m256 b0 = _mm256_load_ps(Bp + (size_t)k * ldp);
		__m256 b1 = _mm256_load_ps(Bp + (size_t)k * ldp + 8);
		const float *a = A + k * aks;
#define FMA(r) if (mr > r) { \
			__m256 ar = _mm256_broadcast_ss(a + r * ars); \
			c0##r = _mm256_fmadd_ps(ar, b0, c0##r); \
			c1##r = _mm256_fmadd_ps(ar, b1, c1##r); \
		}
		ROWS(FMA)
	}
	__m256 al = _mm256_set1_ps(alpha), be = _mm256_set1_ps(beta);
#define STORE(r) if (mr > r) store(C + (size_t)r * ldc, c0##r, c1##r, al, be, beta, nc);
	ROWS(STORE)
#undef DECL
#undef FMA
#undef STORE
}

TGT static void
rows(int mr, int K, const float *A, ptrdiff_t ars, ptrdiff_t aks, const float *Bp,
    int ldp, float alpha, float beta, float *C, int ldc, int nc)
{
	/* the row count as a constant, so the sums stay in registers */
	switch (mr) {
	case 6: block(6, K, A, ars, aks, Bp, ldp, alpha, beta, C, ldc, nc); break;
	case 5: block(5, K, A, ars, aks, Bp, ldp, alpha, beta, C, ldc, nc); break;
	case 4: block(4, K, A, ars, aks, Bp, ldp, alpha, beta, C, ldc, nc); break;
	case 3: block(3, K, A, ars, aks, Bp, ldp, alpha, beta, C, ldc, nc); break;
	case 2: block(2, K, A, ars, aks, Bp, ldp, alpha, beta, C, ldc, nc); break;
	default: block(1, K, A, ars, aks, Bp, ldp, alpha, beta, C, ldc, nc); break;
	}
}

TGT static void
product(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
    const float *B, int ldb, float beta, float *C, int ldc)
{
	int ldp = (N + 15) & ~15;

	/* op(B) into the panel, rows of ldp floats, zero beyond N; B^T in
	 * 8x8 blocks (rows of B are read whole, not a column at a time) */
	int K8 = tb ? K & ~7 : 0, N8 = N & ~7;
	for (int k = 0; k < K8; k += 8)
		for (int j = 0; j < N8; j += 8)
			tr8(pack + (size_t)k * ldp + j, ldp, B + (size_t)j * ldb + k, ldb);
	for (int k = 0; k < K; k++) {
		float *p = pack + (size_t)k * ldp;
		if (!tb)
			memcpy(p, B + (size_t)k * ldb, (size_t)N * sizeof(float));
		else
			for (int j = k < K8 ? N8 : 0; j < N; j++)
				p[j] = B[(size_t)j * ldb + k];
		for (int j = N; j < ldp; j++)
			p[j] = 0;
	}
	ptrdiff_t ars = ta ? 1 : lda, aks = ta ? lda : 1;
	for (int j = 0; j < N; j += 16) {
		int nc = N - j < 16 ? N - j : 16;
		for (int i = 0; i < M; i += MR) {
			int mr = M - i < MR ? M - i : MR;
			rows(mr, K, A + i * ars, ars, aks, pack + j, ldp, alpha, beta,
			    C + (size_t)i * ldc + j, ldc, nc);
		}
	}
}

static int
have_fma(void)
{
	static int have = -1;

	if (have < 0) {
		__builtin_cpu_init();
		have = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
	}
	return have;
}

int
mim_smm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
    const float *B, int ldb, float beta, float *C, int ldc)
{
	if ((size_t)K * (size_t)((N + 15) & ~15) > PACK || !have_fma())
		return 0;
	product(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
	return 1;
}

#else

int
mim_smm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
    const float *B, int ldb, float beta, float *C, int ldc)
{
	return 0;
}

#endif
