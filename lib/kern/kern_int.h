/* kern_int.h -- what the kernels of lib/kern/ share and nobody else needs:
 * the spans and row-permuted variants of some kernels, deterministic
 * column sums, and vectorisable exp / normal CDF. The loops here are
 * written so that GCC vectorises them at -O2 -march=native (no branches on
 * data, selects instead). The parallel-for, kern_for, is in mim/kern.h;
 * the vector types are lib/vec.h's. */
#ifndef MIM_KERN_INT_H
#define MIM_KERN_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mim/gemm.h"
#include "mim/kern.h"
#include "mim/prof.h"
#include "mim/stream.h"
#include "../vec.h"

/* GELU of n contiguous floats on the calling thread (gelu.c), and its
 * backward (as gelu_forward / gelu_backward, the same bytes); out may be
 * inp, dinp may be dout. */
void gelu_span(float *out, const float *inp, size_t n);
void gelu_backward_span(float *dinp, const float *dout, const float *inp, size_t n);

/* LayerNorm (layernorm.c) whose row r reads (and, backward, writes the
 * input gradient of) row (r/L)*L + idx[r%L] of inp: Swin's LayerNorm
 * through its window permutation (window.c). idx NULL: row r. */
void ln_forward_idx(float *out, float *mean, float *rstd, const float *inp,
    const float *w, const float *b, int R, int C, float eps, const int *idx, int L);
void ln_backward_idx(float *dinp, float *dw, float *db, const float *dout,
    const float *inp, const float *w, const float *mean, const float *rstd,
    int R, int C, const int *idx, int L);

/* The terms of row r for kern_colsums, in columns c0 .. c0+w-1 (w <= 64):
 * t[0..w) and, when u is not NULL, u[0..w) for the second sum. Returns
 * the row's weight k: the sums add (double)t[c] * k; k 0 skips the row. */
typedef float kern_row_fn(void *ctx, size_t r, int c0, int w, float *t, float *u);

/* Column sums in double over R rows whose terms row() gives: acc[c] +=
 * sum_r t_r[c] * k_r, and acc2 likewise with u (acc2 NULL: no second
 * sum; acc NULL: t is summed but not stored). Parallel over blocks of 64
 * columns, each column summed in row order: the result does not depend on
 * threads. */
void kern_colsums(float *acc, float *acc2, size_t R, int C, kern_row_fn *row, void *ctx);

/* kern_colsums of a strided matrix: acc[c] += sum_r x[r*ld + c], c < C,
 * r < R. */
void kern_colsum(float *acc, const float *x, size_t R, int C, size_t ld);

/* attention's dS = P * (dP - rowsum(P * dP)) over P's N rows of N, in
 * place (softmax.c) */
void attn_dsoftmax(float *P, const float *dP, int N);

/* One head of attention_forward / attention_backward (attention.c) in
 * AVX-512 (attn512.c), the same bits as the mim_gemm path: q, k, v rows
 * of stride ld (q already scaled and biased); S (N,N) gets P; out rows of
 * stride ldo. Backward: P (N,N) becomes dS, dP (N,N) scratch, dq dk dv
 * rows of stride ld. attn512_ok: whether the CPU has AVX-512 and the
 * shape fits. */
int attn512_ok(int N, int D);
void attn512_forward(const float *q, const float *k, const float *v, ptrdiff_t ld,
    int N, int D, const float *bias, const float *mask, float *S, float *out,
    ptrdiff_t ldo);
void attn512_backward(const float *q, const float *k, const float *v, ptrdiff_t ld,
    const float *dO, ptrdiff_t ldo, float *P, float *dP, int N, int D,
    float scale, float *dq, float *dk, float *dv);

/* ---- vector math ---------------------------------------------------------
 * The transcendental loops (GELU, softmax) use the generic vectors of
 * vec.h so that they are vectorised at -O2 without fast-math: every lane
 * does exactly the scalar IEEE operations below, so results do not depend
 * on where a loop starts or how it is split. A tail shorter than 8 is
 * padded (vload_n / vstore_n) and goes through the same code. */

/* exp(x) for x in [-87, 88] (clamped above), within 2 ulp: Cody-Waite
 * reduction by ln 2 and Cephes' degree-6 polynomial, 2^n built in the
 * exponent. Below -87 it is exactly 0 (the true value, under 1.7e-38, is
 * at most 2^-126 away): never a subnormal, nor a value whose products
 * are. A shifted Swin window's -100 mask puts many scores there, and
 * softmax's exp(-87)/sum was subnormal, and every operation giving a
 * subnormal is a microcode assist: attention_forward on windows of 36
 * with 3/7 of every window's scores masked ran ten times slower (165
 * against 17 us a window and head, one thread, a bench not committed;
 * bench/attnbench.c times attention now). attn512.c's vexp16 is the same
 * operations in 16 lanes (test_kern_attn512 checks the bits): change both. */
VINLINE v8f
vexp(v8f x)
{
	v8i under = x < vdup(-87.0f);
	x = vsel(under, vdup(-87.0f), x);
	x = vsel(x > vdup(88.0f), vdup(88.0f), x);
	v8f n = (x * vdup(1.44269504088896341f) + vdup(12582912.0f)) - vdup(12582912.0f);
	v8f r = x - n * vdup(0.693359375f);
	r = r - n * vdup(-2.12194440e-4f);
	v8f p = vdup(1.9875691500e-4f);
	p = vfma(p, r, vdup(1.3981999507e-3f));
	p = vfma(p, r, vdup(8.3334519073e-3f));
	p = vfma(p, r, vdup(4.1665795894e-2f));
	p = vfma(p, r, vdup(1.6666665459e-1f));
	p = vfma(p, r, vdup(5.0000001201e-1f));
	p = vfma(p * r, r, r) + vdup(1.0f);
	v8i e = (__builtin_convertvector(n, v8i) + 127) << 23;
	return vsel(under, vdup(0.0f), p * (v8f)e);
}

/* x*x = sq + lo exactly (Veltkamp split, no fma needed; |x| < 1e18) */
VINLINE void
vsquare(v8f x, v8f *sq, v8f *lo)
{
	v8f c = vdup(4097.0f) * x, hi = c - (c - x), l = x - hi;
	*sq = x * x;
	*lo = ((hi * hi - *sq) + vdup(2.0f) * hi * l) + l * l;
}

/* erfc(a) for a >= 0.85: exp(-a^2) * Q(1/(1+a)), Q a degree-9 fit of
 * erfcx on [0.85, 9.5] (relative error 2e-7 in float; verfcx_q); 0 beyond 9.5.
 * sq + sqlo = a^2 to twice float precision, so that the rounding of a^2
 * costs no relative accuracy in the tail. */
VINLINE v8f
verfcx_q(v8f a)
{
	v8f t = vdup(1.0f) / (vdup(1.0f) + a);
	v8f q = vdup(7.708181417e-01f);
	q = vfma(q, t, vdup(-1.335549300e+00f));
	q = vfma(q, t, vdup(-3.278658016e-01f));
	q = vfma(q, t, vdup(2.380689977e+00f));
	q = vfma(q, t, vdup(-1.837985056e+00f));
	q = vfma(q, t, vdup(5.464004805e-03f));
	q = vfma(q, t, vdup(2.372374490e-01f));
	q = vfma(q, t, vdup(5.684477412e-01f));
	q = vfma(q, t, vdup(5.639641058e-01f));
	q = vfma(q, t, vdup(5.096665150e-06f));
	return q;
}

VINLINE v8f
verfc_big(v8f a, v8f sq, v8f sqlo)
{
	v8f q = verfcx_q(a);
	v8i in = a < vdup(9.5f);
	v8f e = vexp(-vsel(in, sq, vdup(90.25f))) * (vdup(1.0f) - sqlo);
	return vsel(in, q * e, vdup(0.0f));
}

/* erf(z) for |z| < 0.85: z * P(z^2), P a degree-6 fit (1.3e-7 relative) */
VINLINE v8f
verf_small(v8f z)
{
	v8f u = z * z;
	v8f p = vdup(8.955261692e-05f);
	p = vfma(p, u, vdup(-8.268684433e-04f));
	p = vfma(p, u, vdup(5.211164721e-03f));
	p = vfma(p, u, vdup(-2.686313615e-02f));
	p = vfma(p, u, vdup(1.128375744e-01f));
	p = vfma(p, u, vdup(-3.761263746e-01f));
	p = vfma(p, u, vdup(1.128379167e+00f));
	return z * p;
}

/* erf(z) within a few ulp on the whole line */
VINLINE v8f
verf(v8f z)
{
	v8f a = vabs(z);
	v8i small = a < vdup(0.85f);
	v8f ab = vsel(small, vdup(0.85f), a), sq, lo;
	vsquare(ab, &sq, &lo);
	v8f big = vdup(1.0f) - verfc_big(ab, sq, lo);
	big = vsel(z < vdup(0.0f), -big, big);
	return vsel(small, verf_small(z), big);
}

/* Phi(x) = (1 + erf(x/sqrt2))/2, the standard normal CDF. For x < 0 it is
 * erfc(|x|/sqrt2)/2, without cancellation; the exponent x^2/2 is taken
 * from x itself, not from the rounded x/sqrt2. */
VINLINE v8f
vncdf(v8f x)
{
	v8f z = x * vdup(0.70710678118654752f), a = vabs(z);
	v8i small = a < vdup(0.85f);
	v8f xb = vsel(small, vdup(1.2020815f), x), sq, lo;	/* 0.85 sqrt2 */
	vsquare(xb, &sq, &lo);
	v8f c = vdup(0.5f) * verfc_big(vsel(small, vdup(0.85f), a), vdup(0.5f) * sq, vdup(0.5f) * lo);
	v8f big = vsel(z < vdup(0.0f), c, vdup(1.0f) - c);
	return vsel(small, vdup(0.5f) + vdup(0.5f) * verf_small(z), big);
}

/* Phi(x) and the density phi(x) together, as vncdf and vnpdf give them
 * (the same values), with one exponential: exp(-x^2/2) is phi's and, where
 * |x|/sqrt2 >= 0.85, erfc's factor too (GELU's backward needs both) */
VINLINE void
vncdf_npdf(v8f x, v8f *cdf, v8f *pdf)
{
	v8f z = x * vdup(0.70710678118654752f), a = vabs(z), sq, lo;
	v8i small = a < vdup(0.85f);
	vsquare(x, &sq, &lo);
	v8f e = vexp(vdup(-0.5f) * sq) * (vdup(1.0f) - vdup(0.5f) * lo);
	*pdf = vdup(0.398942280401432678f) * e;
	v8f ab = vsel(small, vdup(0.85f), a);
	v8f c = vdup(0.5f) * vsel(ab < vdup(9.5f), verfcx_q(ab) * e, vdup(0.0f));
	v8f big = vsel(z < vdup(0.0f), c, vdup(1.0f) - c);
	*cdf = vsel(small, vdup(0.5f) + vdup(0.5f) * verf_small(z), big);
}

/* the standard normal density exp(-x^2/2)/sqrt(2 pi) */
VINLINE v8f
vnpdf(v8f x)
{
	v8f sq, lo;
	vsquare(x, &sq, &lo);
	return vdup(0.398942280401432678f) * vexp(vdup(-0.5f) * sq) * (vdup(1.0f) - vdup(0.5f) * lo);
}

#endif
