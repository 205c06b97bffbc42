/* vec.h -- GCC/Clang generic vectors for the library's hot loops (lib/kern/,
 * lib/optim/): 8 floats (one AVX register; lowered to what the target
 * has) and 4 doubles, their loads, stores and lane-wise basics. Private
 * to lib/: not installed. */
#ifndef MIM_VEC_H
#define MIM_VEC_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* the intrinsics that the generic vectors have no operator for: vfma
 * here, AdamW's square root */
#if defined(__FMA__) || defined(__AVX__)
#include <immintrin.h>
#endif

/* These helpers are static and never cross a call boundary between files,
 * so GCC's note that 32-byte vector returns change the ABI without AVX
 * (builds without -march=native, e.g. make asan) does not concern them. */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpsabi"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
/* always inlined: no out-of-line copy, so no vector argument ever crosses
 * a call (and GCC has no ABI note to make) */
#define VINLINE static inline __attribute__((always_inline))

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

VINLINE v8f
vdup(float x)
{
	return (v8f){x, x, x, x, x, x, x, x};
}

VINLINE v8f
vload(const float *p)
{
	v8f v;
	memcpy(&v, p, sizeof v);
	return v;
}

VINLINE void
vstore(float *p, v8f v)
{
	memcpy(p, &v, sizeof v);
}

/* n < 8 elements, the rest of the vector filled with pad */
VINLINE v8f
vload_n(const float *p, int n, float pad)
{
	v8f v = vdup(pad);
	for (int i = 0; i < n; i++)
		v[i] = p[i];
	return v;
}

VINLINE void
vstore_n(float *p, v8f v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = v[i];
}

typedef float v4f __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));

/* 4 floats at p widened to doubles (exactly). With AVX one vcvtps2pd
 * from memory: GCC 12 lowers __builtin_convertvector to two 2-lane
 * conversions, a second load and an insert, and every double sum of the
 * library (column sums, LayerNorm's moments) is bound by this */
VINLINE v4d
vload4d(const float *p)
{
#if defined(__AVX__)
	return (v4d)_mm256_cvtps_pd(_mm_loadu_ps(p));
#else
	v4f v;
	memcpy(&v, p, sizeof v);
	return __builtin_convertvector(v, v4d);
#endif
}

VINLINE double
vsum4d(v4d v)
{
	return (v[0] + v[1]) + (v[2] + v[3]);
}

/* acc[0..n) += (double)x[0..n) * k: one row of a column sum in double,
 * in the same order wherever a sum is taken, so that two places give the
 * same bytes */
VINLINE void
vacc_d(double *acc, const float *x, double k, int n)
{
	int i = 0;
	v4d k4 = {k, k, k, k};
	for (; i + 4 <= n; i += 4) {
		v4d a;
		memcpy(&a, acc + i, sizeof a);
		a += vload4d(x + i) * k4;
		memcpy(acc + i, &a, sizeof a);
	}
	for (; i < n; i++)
		acc[i] += (double)x[i] * k;
}

/* vacc_d with k = 1 (x * 1.0 is x exactly) */
VINLINE void
vadd_to_d(double *acc, const float *x, int n)
{
	vacc_d(acc, x, 1.0, n);
}

/* row r of column sums by chunks of ch rows: chunk r / ch's sums (at
 * sums + (r / ch) * ld) += x[0..n), zeroed at the chunk's first row. A
 * bias gradient's chunk sums are made where its rows are at hand (the
 * pass rounding them to bf16, the product's epilogue, the GELU backward):
 * this one order everywhere keeps them the same bytes */
VINLINE void
vchunk_add_d(double *sums, size_t ld, int r, int ch, const float *x, int n)
{
	double *s = sums + (size_t)(r / ch) * ld;

	if (r % ch == 0)
		memset(s, 0, (size_t)n * sizeof *s);
	vadd_to_d(s, x, n);
}

/* y[0..n) = a[0..n) + b[0..n) */
VINLINE void
vsum(float *y, const float *a, const float *b, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		vstore(y + i, vload(a + i) + vload(b + i));
	for (; i < n; i++)
		y[i] = a[i] + b[i];
}

/* y[0..n) += x[0..n) */
VINLINE void
vadd_to(float *y, const float *x, size_t n)
{
	vsum(y, y, x, n);
}

/* y[0..n) = a[0..n) * b[0..n) */
VINLINE void
vprod(float *y, const float *a, const float *b, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		vstore(y + i, vload(a + i) * vload(b + i));
	for (; i < n; i++)
		y[i] = a[i] * b[i];
}

/* lanes of a where cond (a v8i of -1 / 0), else b */
VINLINE v8f
vsel(v8i cond, v8f a, v8f b)
{
	return (v8f)(((v8i)a & cond) | ((v8i)b & ~cond));
}

/* a*b + c: one fused multiply-add where the build targets FMA
 * (-march=native here), else a multiply and an add (the polynomials below
 * are then rounded twice per step; both are far inside their error) */
VINLINE v8f
vfma(v8f a, v8f b, v8f c)
{
#ifdef __FMA__
	return (v8f)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
	return a * b + c;
#endif
}

VINLINE v8f
vabs(v8f x)
{
	return (v8f)((v8i)x & 0x7fffffff);
}

#endif
