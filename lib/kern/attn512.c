/* attn512.c -- one attention head (attention.c's per (sample, head) job)
 * in AVX-512, every operand in L1: the products straight from the qkv
 * rows (no packing but one transpose, of k forward and v backward, into a
 * (D, N) buffer of the thread), 16 columns a register and a mask for the
 * tail (N = 36 is 16 + 16 + 4, not 48), and softmax in 16 lanes.
 *
 * The same bits as the path through mim_gemm (lib/smm.c) and softmax_rows:
 * every element of a product is summed from 0 over k in order, one FMA a
 * term, then times alpha; softmax adds bias then mask, takes the row's
 * maximum, the same vexp lane for lane, sums the exponentials in the same
 * eight lanes in the same order ((0+1)+(2+3))+((4+5)+(6+7)), and scales by
 * 1/sum. Checked by bench/attnbench.c (outputs of both paths compared
 * bit for bit) and tests/unit/test_kern_attn512.c.
 *
 * Built for every target (function attributes); attention.c calls it only
 * where __builtin_cpu_supports says AVX-512F is there (attn512_ok). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "kern_int.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include "../tr8.h"
#include "smax16.h"

#define TBUF (16 * 1024)	/* floats: a transposed (D, N) operand */

static _Thread_local float tbuf[TBUF] __attribute__((aligned(64)));
/* an operand's N rows of D (at a stride of 3C or C in qkv) copied
 * together: rows 3C floats apart fall into a few of L1's sets (C = 1024:
 * all into one), so that a product that reads them again and again for
 * every block of rows would read them from L2 */
static _Thread_local float cbuf[TBUF] __attribute__((aligned(64)));

int
attn512_ok(int N, int D)
{
	static int have = -1;

	if (have < 0) {
		__builtin_cpu_init();
		have = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
		    __builtin_cpu_supports("fma");
	}
	return have && D % 8 == 0 && (size_t)N * D <= TBUF;
}

/* mr rows x nv vectors of C = alpha sum_k A(i,k) B(k,:), A(i,k) at
 * A[i*ars + k*aks], B's row k at B + k*ldb; the last vector's columns
 * under mask m */
/* sm: C's rows are whole rows of S (n = ldc columns, nv*16 >= n): each
 * becomes softmax(row + bias + mask) in registers (alpha is 1) */
T512 static inline __attribute__((always_inline)) void
blk(int mr, int nv, int K, const float *A, ptrdiff_t ars, ptrdiff_t aks,
    const float *B, ptrdiff_t ldb, __mmask16 m, float alpha, float *C, ptrdiff_t ldc,
    int sm, const float *bias, const float *mask)
{
	__m512 acc[12][4];

#pragma GCC unroll 12
	for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
		for (int v = 0; v < nv; v++)
			acc[r][v] = _mm512_setzero_ps();
	for (int k = 0; k < K; k++) {
		__m512 b[4];
		const float *br = B + k * ldb, *a = A + k * aks;
#pragma GCC unroll 4
		for (int v = 0; v < nv; v++)
			b[v] = v < nv - 1 ? _mm512_loadu_ps(br + 16 * v) :
			    _mm512_maskz_loadu_ps(m, br + 16 * v);
#pragma GCC unroll 12
		for (int r = 0; r < mr; r++) {
			__m512 ar = _mm512_set1_ps(a[r * ars]);
#pragma GCC unroll 4
			for (int v = 0; v < nv; v++)
				acc[r][v] = _mm512_fmadd_ps(ar, b[v], acc[r][v]);
		}
	}
	if (sm) {
#pragma GCC unroll 12
		for (int r = 0; r < mr; r++)
			smrow(nv, acc[r], bias ? bias + r * ldc : NULL, mask ? mask + r * ldc : NULL,
			    m, C + r * ldc, (int)ldc);
		return;
	}
	__m512 al = _mm512_set1_ps(alpha);
#pragma GCC unroll 12
	for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
		for (int v = 0; v < nv; v++) {
			__m512 x = _mm512_mul_ps(acc[r][v], al);
			if (v < nv - 1)
				_mm512_storeu_ps(C + r * ldc + 16 * v, x);
			else
				_mm512_mask_storeu_ps(C + r * ldc + 16 * v, m, x);
		}
}

#define BLK(mr, nv) blk(mr, nv, K, A, ars, aks, B, ldb, m, alpha, C, ldc, 0, NULL, NULL)
#define UPTO6(nv) case 1: BLK(1, nv); break; case 2: BLK(2, nv); break; \
	case 3: BLK(3, nv); break; case 4: BLK(4, nv); break; \
	case 5: BLK(5, nv); break; case 6: BLK(6, nv); break;
#define UPTO8(nv) UPTO6(nv) case 7: BLK(7, nv); break; case 8: BLK(8, nv); break;
#define UPTO12(nv) UPTO8(nv) case 9: BLK(9, nv); break; case 10: BLK(10, nv); break; \
	case 11: BLK(11, nv); break; case 12: BLK(12, nv); break;

/* mr rows (at most 24 / nv, 12) of nv vectors, constants for blk */
T512 static void
rows(int mr, int nv, int K, const float *A, ptrdiff_t ars, ptrdiff_t aks,
    const float *B, ptrdiff_t ldb, __mmask16 m, float alpha, float *C, ptrdiff_t ldc)
{
	switch (nv) {
	case 1: switch (mr) { UPTO12(1) } break;
	case 2: switch (mr) { UPTO12(2) } break;
	case 3: switch (mr) { UPTO8(3) } break;
	default: switch (mr) { UPTO6(4) } break;
	}
}

#undef BLK
#define BLK(mr, nv) blk(mr, nv, K, A, ars, aks, B, ldb, m, 1.0f, C, ldc, 1, bias, mask)

T512 static void
rows_sm(int mr, int nv, int K, const float *A, ptrdiff_t ars, ptrdiff_t aks,
    const float *B, ptrdiff_t ldb, __mmask16 m, float *C, ptrdiff_t ldc,
    const float *bias, const float *mask)
{
	switch (nv) {
	case 1: switch (mr) { UPTO12(1) } break;
	case 2: switch (mr) { UPTO12(2) } break;
	case 3: switch (mr) { UPTO8(3) } break;
	default: switch (mr) { UPTO6(4) } break;
	}
}

/* C (M, n) = alpha A B as blk */
static const int mrs[5] = {0, 12, 12, 8, 6};	/* rows a block of nv vectors */

T512 static void
mm(int M, int n, int K, const float *A, ptrdiff_t ars, ptrdiff_t aks,
    const float *B, ptrdiff_t ldb, float alpha, float *C, ptrdiff_t ldc)
{
	for (int j = 0; j < n;) {
		/* panels of 48 columns where 64 would leave a sliver */
		int w = n - j >= 64 && (n - j) % 48 != 0 ? 64 : n - j > 48 ? 48 : n - j;
		int nv = (w + 15) / 16, t = w - 16 * (nv - 1);
		__mmask16 m = (__mmask16)(t == 16 ? 0xffff : (1u << t) - 1);
		for (int i = 0; i < M; i += mrs[nv]) {
			int mr = M - i < mrs[nv] ? M - i : mrs[nv];
			rows(mr, nv, K, A + i * ars, ars, aks, B + j, ldb, m, alpha,
			    C + (size_t)i * ldc + j, ldc);
		}
		j += w;
	}
}

/* cbuf (N, D) = x (N rows of D at stride ld, D a multiple of 8) */
T512 static const float *
gather(const float *x, ptrdiff_t *pld, int N, int D)
{
	ptrdiff_t ld = *pld;

	if (N <= 64)	/* (Swin's windows: no gain measured) */
		return x;
	*pld = D;
	for (int n = 0; n < N; n++)
		for (int d = 0; d < D; d += 8)
			_mm256_store_ps(cbuf + (size_t)n * D + d, _mm256_loadu_ps(x + n * ld + d));
	return cbuf;
}

/* tbuf (D, N) = x^T, x (N, D) rows of stride ld; D a multiple of 8 */
T512 static void
transpose(const float *x, ptrdiff_t ld, int N, int D)
{
	int N8 = N & ~7;

	for (int j = 0; j < N8; j += 8)
		for (int d = 0; d < D; d += 8)
			tr8(tbuf + (size_t)d * N + j, N, x + j * ld + d, (int)ld);
	for (int j = N8; j < N; j++)
		for (int d = 0; d < D; d++)
			tbuf[(size_t)d * N + j] = x[j * ld + d];
}

T512 void
attn512_forward(const float *q, const float *k, const float *v, ptrdiff_t ld,
    int N, int D, const float *bias, const float *mask, float *S, float *out,
    ptrdiff_t ldo)
{
	transpose(k, ld, N, D);
	if (N <= 64) {	/* whole rows of S in registers: softmax there */
		int nv = (N + 15) / 16, t = N - 16 * (nv - 1), mr = mrs[nv];
		__mmask16 m = (__mmask16)(t == 16 ? 0xffff : (1u << t) - 1);
		for (int i = 0; i < N; i += mr)
			rows_sm(N - i < mr ? N - i : mr, nv, D, q + i * ld, ld, 1, tbuf, N, m,
			    S + (size_t)i * N, N, bias ? bias + (size_t)i * N : NULL,
			    mask ? mask + (size_t)i * N : NULL);
	} else {
		mm(N, N, D, q, ld, 1, tbuf, N, 1.0f, S, N);
		softmax16(S, bias, mask, N, N);
	}
	const float *g = gather(v, &ld, N, D);
	mm(N, D, N, S, N, 1, g, ld, 1.0f, out, ldo);
}

T512 void
attn512_backward(const float *q, const float *k, const float *v, ptrdiff_t ld,
    const float *dO, ptrdiff_t ldo, float *P, float *dP, int N, int D,
    float scale, float *dq, float *dk, float *dv)
{
	ptrdiff_t lg = ldo;
	const float *g = gather(dO, &lg, N, D);
	mm(N, D, N, P, 1, N, g, lg, 1.0f, dv, ld);
	transpose(v, ld, N, D);
	mm(N, N, D, g, lg, 1, tbuf, N, 1.0f, dP, N);
	attn_dsoftmax(P, dP, N);
	lg = ld;
	g = gather(k, &lg, N, D);
	mm(N, D, N, P, N, 1, g, lg, scale, dq, ld);
	lg = ld;
	g = gather(q, &lg, N, D);
	mm(N, D, N, P, 1, N, g, lg, 1.0f, dk, ld);
}

#else

int
attn512_ok(int N, int D)
{
	return 0;
}

void
attn512_forward(const float *q, const float *k, const float *v, ptrdiff_t ld,
    int N, int D, const float *bias, const float *mask, float *S, float *out,
    ptrdiff_t ldo)
{
}

void
attn512_backward(const float *q, const float *k, const float *v, ptrdiff_t ld,
    const float *dO, ptrdiff_t ldo, float *P, float *dP, int N, int D,
    float scale, float *dq, float *dk, float *dv)
{
}

#endif
