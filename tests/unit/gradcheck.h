/* gradcheck.h -- finite-difference gradient checks in double for the
 * kernel tests. A test keeps its inputs in double arrays, writes a plain
 * double reference of the op's forward, and a function L() returning
 * sum(ref_forward(inputs) * dout) for a fixed random dout. The analytic
 * gradient of the float kernel is then compared with the central
 * differences (L(x+h) - L(x-h)) / 2h of L in double. */
#ifndef MIM_GRADCHECK_H
#define MIM_GRADCHECK_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"

/* max |a - b| / max |b| (b the reference) */
static inline double
relerr_d(const float *a, const double *b, size_t n)
{
	double m = 0, s = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);
		m = d > m ? d : m;
		s = fabs(b[i]) > s ? fabs(b[i]) : s;
	}
	return s > 0 ? m / s : m;
}

/* the same of two float arrays */
static inline double
relerr_f(const float *a, const float *b, size_t n)
{
	double m = 0, s = 0;
	for (size_t i = 0; i < n; i++) {
		m = fmax(m, fabs((double)a[i] - b[i]));
		s = fmax(s, fabs((double)b[i]));
	}
	return s > 0 ? m / s : m;
}

/* numerical gradient of L with respect to x[0..n) into gn */
static inline void
numgrad(double *gn, double *x, size_t n, double (*L)(void), double h)
{
	for (size_t i = 0; i < n; i++) {
		double x0 = x[i];
		x[i] = x0 + h;
		double lp = L();
		x[i] = x0 - h;
		double lm = L();
		x[i] = x0;
		gn[i] = (lp - lm) / (2 * h);
	}
}

/* check the float analytic gradient ga of L w.r.t. x; prints one line */
static inline void
gradcheck(const char *what, const float *ga, double *x, size_t n, double (*L)(void),
    double tol)
{
	double *gn = calloc(n ? n : 1, sizeof *gn);
	numgrad(gn, x, n, L, 1e-5);
	double e = relerr_d(ga, gn, n);
	double mx = 0;
	for (size_t i = 0; i < n; i++)
		mx = fabs(gn[i]) > mx ? fabs(gn[i]) : mx;
	tap(e < tol && mx > 0, "%s: gradient vs central differences, max rel err %.2e", what, e);
	free(gn);
}

/* random data: float and the same values in double */
static inline void
randfill(float *f, double *d, size_t n, float scale)
{
	for (size_t i = 0; i < n; i++) {
		f[i] = frand() * scale;
		if (d)
			d[i] = f[i];
	}
}

static inline double *
dcopy(const float *f, size_t n)
{
	double *d = malloc((n ? n : 1) * sizeof *d);
	for (size_t i = 0; i < n; i++)
		d[i] = f[i];
	return d;
}

static inline float *
fzero(size_t n)
{
	return calloc(n ? n : 1, sizeof(float));
}

/* all elements of a equal 2*b (backward called twice accumulates) */
static inline int
doubled(const float *a, const float *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fabsf(a[i] - 2 * b[i]) > 1e-6f * (1 + fabsf(b[i])))
			return 0;
	return 1;
}
#endif
