/* kern_int.h -- what the kernels of lib/kern/ share and nobody else needs:
 * a parallel-for over index ranges, and vectorisable exp / normal CDF.
 * The loops here are written so that GCC vectorises them at -O2
 * -march=native (no branches on data, selects instead). */
#ifndef MIM_KERN_INT_H
#define MIM_KERN_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mim/gemm.h"
#include "mim/stream.h"

/* Run fn(ctx, lo, hi) over [0,n) in chunks of at least grain items on the
 * thread pool. The split may depend on the thread count, so fn must give
 * the same results for any split (no reductions across chunks). */
void kern_for(size_t n, size_t grain, void (*fn)(void *ctx, size_t lo, size_t hi),
    void *ctx);

/* Column sums in double: acc[c] += sum_r x[r*ld + c], c < C, r < R.
 * Parallel over columns, each column summed in row order: the result does
 * not depend on threads. */
void kern_colsum(float *acc, const float *x, size_t R, int C, size_t ld);

/* exp(x) for x in [-87, 88], within 2 ulp (Cody-Waite reduction, Cephes'
 * polynomial); branch-free so loops over it vectorise. */
static inline float
kern_exp(float x)
{
	x = x < -87.0f ? -87.0f : x;
	x = x > 88.0f ? 88.0f : x;
	float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;	/* round */
	float r = x - n * 0.693359375f;
	r = r - n * -2.12194440e-4f;
	float p = 1.9875691500e-4f;
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * r * r + r + 1.0f;
	int32_t e = ((int32_t)n + 127) << 23;
	float s;
	memcpy(&s, &e, 4);
	return p * s;
}

/* erfc(a) for a >= 0.85: exp(-a^2) * Q(1/(1+a)), Q a degree-9 fit of
 * erfcx on [0.85, 9.5] (relative error 2e-7 in float); 0 beyond 9.5. */
static inline float
kern_erfc_big(float a)
{
	float t = 1.0f / (1.0f + a);
	float q = 7.708181417e-01f;
	q = q * t + -1.335549300e+00f;
	q = q * t + -3.278658016e-01f;
	q = q * t + 2.380689977e+00f;
	q = q * t + -1.837985056e+00f;
	q = q * t + 5.464004805e-03f;
	q = q * t + 2.372374490e-01f;
	q = q * t + 5.684477412e-01f;
	q = q * t + 5.639641058e-01f;
	q = q * t + 5.096665150e-06f;
	float e = kern_exp(-(a < 9.5f ? a * a : 90.25f));
	return a < 9.5f ? q * e : 0.0f;
}

/* erf(z) for |z| < 0.85: z * P(z^2), P a degree-6 fit (1.3e-7 relative). */
static inline float
kern_erf_small(float z)
{
	float u = z * z;
	float p = 8.955261692e-05f;
	p = p * u + -8.268684433e-04f;
	p = p * u + 5.211164721e-03f;
	p = p * u + -2.686313615e-02f;
	p = p * u + 1.128375744e-01f;
	p = p * u + -3.761263746e-01f;
	p = p * u + 1.128379167e+00f;
	return z * p;
}

/* erf(z), float, within a few ulp over the whole line. */
static inline float
kern_erf(float z)
{
	float a = z < 0 ? -z : z;
	float big = 1.0f - kern_erfc_big(a < 0.85f ? 0.85f : a);
	big = z < 0 ? -big : big;
	return a < 0.85f ? kern_erf_small(z) : big;
}

/* Phi(x) = (1 + erf(x/sqrt2)) / 2, the standard normal CDF. For x < 0 it
 * is computed as erfc(|x|/sqrt2)/2, without cancellation. */
static inline float
kern_ncdf(float x)
{
	float z = x * 0.70710678118654752f, a = z < 0 ? -z : z;
	float small = 0.5f + 0.5f * kern_erf_small(z);
	float c = 0.5f * kern_erfc_big(a < 0.85f ? 0.85f : a);
	float big = z < 0 ? c : 1.0f - c;
	return a < 0.85f ? small : big;
}

#endif
