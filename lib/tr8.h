/* tr8.h -- the transpose of an 8x8 block of floats in AVX2, for the
 * small-product code (lib/smm.c, lib/kern/attn512.c). Not installed. */
#ifndef MIM_TR8_H
#define MIM_TR8_H

#include <immintrin.h>

/* p (8 rows of stride ldp) = the transpose of the 8x8 block at b (rows of
 * stride ldb) */
__attribute__((target("avx2"))) static inline __attribute__((always_inline)) void
tr8(float *p, int ldp, const float *b, int ldb)
{
	__m256 r0 = _mm256_loadu_ps(b), r1 = _mm256_loadu_ps(b + ldb);
	__m256 r2 = _mm256_loadu_ps(b + 2 * ldb), r3 = _mm256_loadu_ps(b + 3 * ldb);
	__m256 r4 = _mm256_loadu_ps(b + 4 * ldb), r5 = _mm256_loadu_ps(b + 5 * ldb);
	__m256 r6 = _mm256_loadu_ps(b + 6 * ldb), r7 = _mm256_loadu_ps(b + 7 * ldb);
	__m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
	__m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
	__m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
	__m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
	__m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
	__m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
	__m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
	__m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
	_mm256_storeu_ps(p, _mm256_permute2f128_ps(u0, u4, 0x20));
	_mm256_storeu_ps(p + ldp, _mm256_permute2f128_ps(u1, u5, 0x20));
	_mm256_storeu_ps(p + 2 * ldp, _mm256_permute2f128_ps(u2, u6, 0x20));
	_mm256_storeu_ps(p + 3 * ldp, _mm256_permute2f128_ps(u3, u7, 0x20));
	_mm256_storeu_ps(p + 4 * ldp, _mm256_permute2f128_ps(u0, u4, 0x31));
	_mm256_storeu_ps(p + 5 * ldp, _mm256_permute2f128_ps(u1, u5, 0x31));
	_mm256_storeu_ps(p + 6 * ldp, _mm256_permute2f128_ps(u2, u6, 0x31));
	_mm256_storeu_ps(p + 7 * ldp, _mm256_permute2f128_ps(u3, u7, 0x31));
}

#endif
