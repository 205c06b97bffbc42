/* smax16.h -- softmax of attention's rows in 16 lanes of AVX-512, shared
 * by the two fused head kernels (attn512.c in float, attn_amx.c in bf16):
 * smrow, one row of at most 64 in registers (bias and mask added first);
 * softmax16, whole rows in memory in three passes. Both the same bits as
 * softmax_rows (lib/kern/softmax.c) after vadd_to of bias and mask
 * (attn512.c says how). Static functions with the AVX-512 target
 * attribute (vmath16.h's T512): a caller checks the CPU first. */
#ifndef MIM_SMAX16_H
#define MIM_SMAX16_H

#include <immintrin.h>
#include <math.h>

#include "vmath16.h"

/* kern_int.h's vexp in 16 lanes (vmath16.h: the same operations) */
T512 static inline __attribute__((always_inline)) __m512
vexp16(__m512 x)
{
	return (__m512)vexp_x16((v16f)x);
}

/* softmax16 of one row of n <= nv*16 in registers t (the lanes past n
 * are 0, last vector's lanes under m valid) into out; t keeps the row's
 * probabilities (0 past n) */
T512 static inline __attribute__((always_inline)) void
smrow(int nv, __m512 *t, const float *bias, const float *mask, __mmask16 m, float *out, int n)
{
	__m512 m16 = _mm512_set1_ps(-INFINITY);
#pragma GCC unroll 4
	for (int v = 0; v < nv; v++) {
		__mmask16 k = v < nv - 1 ? 0xffff : m;
		if (bias)
			t[v] = _mm512_add_ps(t[v], _mm512_maskz_loadu_ps(k, bias + 16 * v));
		if (mask)
			t[v] = _mm512_add_ps(t[v], _mm512_maskz_loadu_ps(k, mask + 16 * v));
		m16 = _mm512_mask_max_ps(m16, k, m16, t[v]);
	}
	__m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(m16));
	__m256 s8 = _mm256_setzero_ps();
#pragma GCC unroll 4
	for (int v = 0; v < nv; v++) {
		__mmask16 k = v < nv - 1 ? 0xffff : m;
		t[v] = _mm512_maskz_mov_ps(k, vexp16(_mm512_sub_ps(t[v], mx)));
		s8 = _mm256_add_ps(s8, _mm512_castps512_ps256(t[v]));
		if (n - 16 * v > 8)
			s8 = _mm256_add_ps(s8, _mm256_castpd_ps(
			    _mm512_extractf64x4_pd(_mm512_castps_pd(t[v]), 1)));
	}
	float s[8];
	_mm256_storeu_ps(s, s8);
	__m512 inv = _mm512_set1_ps(1.0f / (((s[0] + s[1]) + (s[2] + s[3])) +
	    ((s[4] + s[5]) + (s[6] + s[7]))));
#pragma GCC unroll 4
	for (int v = 0; v < nv; v++) {
		t[v] = _mm512_mul_ps(t[v], inv);
		if (v < nv - 1)
			_mm512_storeu_ps(out + 16 * v, t[v]);
		else
			_mm512_mask_storeu_ps(out + 16 * v, m, t[v]);
	}
}

/* the columns c.. of a row of C, as a mask */
#define TAIL(C, c) ((__mmask16)((C) - (c) >= 16 ? 0xffff : (1u << ((C) - (c))) - 1))

/* softmax_rows of the (R, C) rows x after x += bias, x += mask (either
 * NULL), in three passes over all rows, each row's work independent of
 * the others' (one row at a time is a chain of latencies: maximum,
 * exponentials, sum, reciprocal): x + bias + mask - max; then the
 * exponentials of the whole matrix, 16 at a time across rows (no lanes
 * lost to the rows' tails); then each row's sum and scaling */
T512 static void
softmax16(float *x, const float *bias, const float *mask, int R, int C)
{
	for (int r = 0; r < R; r++) {
		float *v = x + (size_t)r * C;
		size_t o = (size_t)r * C;
		__m512 m16 = _mm512_set1_ps(-INFINITY);
		for (int c = 0; c < C; c += 16) {
			__mmask16 k = TAIL(C, c);
			__m512 t = _mm512_maskz_loadu_ps(k, v + c);
			if (bias)
				t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(k, bias + o + c));
			if (mask)
				t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(k, mask + o + c));
			_mm512_mask_storeu_ps(v + c, k, t);
			m16 = _mm512_mask_max_ps(m16, k, m16, t);
		}
		__m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(m16));
		for (int c = 0; c < C; c += 16) {
			__mmask16 k = TAIL(C, c);
			_mm512_mask_storeu_ps(v + c, k, _mm512_sub_ps(_mm512_maskz_loadu_ps(k, v + c), mx));
		}
	}
	size_t n = (size_t)R * C, i = 0;
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(x + i, vexp16(_mm512_loadu_ps(x + i)));
	if (i < n) {
		__mmask16 k = TAIL((int)(n - i), 0);
		_mm512_mask_storeu_ps(x + i, k, vexp16(_mm512_maskz_loadu_ps(k, x + i)));
	}
	for (int r = 0; r < R; r++) {
		float *v = x + (size_t)r * C;
		__m256 s8 = _mm256_setzero_ps();
		for (int c = 0; c < C; c += 16) {
			__m512 e = _mm512_maskz_loadu_ps(TAIL(C, c), v + c);
			s8 = _mm256_add_ps(s8, _mm512_castps512_ps256(e));
			if (C - c > 8)
				s8 = _mm256_add_ps(s8, _mm256_castpd_ps(
				    _mm512_extractf64x4_pd(_mm512_castps_pd(e), 1)));
		}
		float s[8];
		_mm256_storeu_ps(s, s8);
		__m512 inv = _mm512_set1_ps(1.0f / (((s[0] + s[1]) + (s[2] + s[3])) +
		    ((s[4] + s[5]) + (s[6] + s[7]))));
		for (int c = 0; c < C; c += 16) {
			__mmask16 k = TAIL(C, c);
			_mm512_mask_storeu_ps(v + c, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, v + c), inv));
		}
	}
}

#endif
