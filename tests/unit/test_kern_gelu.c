/* test_kern_gelu.c -- exact-erf GELU: our erf against libm's erf in double
 * over the whole range, forward and backward against central differences. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mim.h"
#include "mim/kern.h"
#include "gradcheck.h"
#include "../../lib/kern/kern_int.h"	/* gelu_dgelu_span */

enum { N = 400 };
static double X[N], DO[N];

static double
L(void)
{
	double s = 0;
	for (int i = 0; i < N; i++)
		s += X[i] * 0.5 * (1 + erf(X[i] / sqrt(2.0))) * DO[i];
	return s;
}

int
main(void)
{
	/* erf: absolute error against libm's double erf on a fine grid */
	double worst = 0, at = 0;
	for (int i = -400000; i <= 400000; i++) {
		float z = (float)i * 2.5e-5f;
		double e = fabs((double)gelu_erf(z) - erf((double)z));
		if (e > worst) {
			worst = e;
			at = z;
		}
	}
	tap(worst < 2.5e-7, "erf on [-10,10]: max abs err %.2e at %g (float ulp of 1 is 6e-8)", worst, at);
	/* relative accuracy of gelu itself, including the negative tail */
	float x[N], dout[N], out[N], dx[N];
	double rmax = 0;
	for (int i = 0; i < N; i++) {
		x[i] = -9.0f + 12.0f * i / N;
		X[i] = x[i];
	}
	gelu_forward(out, x, N);
	for (int i = 0; i < N; i++) {
		double r = x[i] * 0.5 * erfc(-(double)x[i] / sqrt(2.0));
		if (r != 0)
			rmax = fmax(rmax, fabs(out[i] - r) / fabs(r));
	}
	tap(rmax < 2e-6, "gelu relative error on [-9,3] %.2e (no cancellation in the tail)", rmax);
	randfill(x, X, N, 4);
	randfill(dout, DO, N, 1);
	gelu_forward(out, x, N);
	double ref[N];
	for (int i = 0; i < N; i++)
		ref[i] = X[i] * 0.5 * (1 + erf(X[i] / sqrt(2.0)));
	tap(relerr_d(out, ref, N) < 1e-6, "forward vs double reference (%.2e)", relerr_d(out, ref, N));
	gelu_backward(dx, dout, x, N);
	gradcheck("dinp", dx, X, N, L, 1e-5);
	memcpy(out, dout, sizeof dout);
	gelu_backward(out, out, x, N);
	tap(memcmp(out, dx, sizeof dx) == 0, "backward in place (dinp aliases dout)");

	/* finite inputs too large to square in float (x^2 past FLT_MAX from
	 * 1.8e19): gelu' is 1 or 0, not NaN, at both widths */
	{
		float big[16] = {1.9e19f, -1.9e19f, 1e30f, -1e30f, 3e38f, -3e38f, 13.5f, -13.5f,
		    1e19f, -1e19f, 9e18f, -9e18f, 20.0f, -20.0f, 1e10f, -1e10f};
		float gb[16], db[16], ones[16];
		for (int i = 0; i < 16; i++)
			ones[i] = 1.0f;
		int bad = 0;
		for (int w = 0; w < 2; w++) {
			gelu_set_wide(!w);
			gelu_backward(db, ones, big, 16);
			for (int i = 0; i < 16; i++)
				bad += db[i] != (big[i] > 0 ? 1.0f : 0.0f);
			gelu_dgelu_span(gb, db, big, 16);
			for (int i = 0; i < 16; i++)
				bad += db[i] != (big[i] > 0 ? 1.0f : 0.0f);
			gelu_forward(gb, big, 16);
			for (int i = 0; i < 16; i++)
				bad += gb[i] != (big[i] > 0 ? big[i] : 0.0f);
		}
		gelu_set_wide(1);
		tap(bad == 0, "huge finite inputs (to 3e38): gelu x or 0 and gelu' 1 or 0 (%d wrong)", bad);
	}

	/* 16 lanes (AVX-512) against 8: the same bits, on floats spread over
	 * every exponent and sign (NaN aside), spans of odd lengths */
	size_t n = (size_t)1 << 22;
	float *xs = malloc(n * sizeof *xs), *dy = malloc(n * sizeof *dy);
	float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
	for (size_t i = 0; i < n; i++) {
		uint32_t u = (uint32_t)(i * 1023u + 7u);
		memcpy(&xs[i], &u, sizeof u);
		if (xs[i] != xs[i])
			xs[i] = (float)i;
		dy[i] = 1.0f + (float)(i % 7) * 0.25f;
	}
	long fd = 0, bd = 0;
	int lanes = gelu_set_wide(1);
	for (int w = 0; w < 2; w++) {
		float *o = w ? b : a;
		gelu_set_wide(!w);
		for (size_t lo = 0, len = 1; lo < n; lo += len, len = len * 3 % 1021 + 1)
			gelu_forward(o + lo, xs + lo, len < n - lo ? len : n - lo);
	}
	for (size_t i = 0; i < n; i++)
		fd += memcmp(&a[i], &b[i], sizeof *a) != 0;
	for (int w = 0; w < 2; w++) {
		float *o = w ? b : a;
		gelu_set_wide(!w);
		gelu_backward(o, dy, xs, n);
	}
	for (size_t i = 0; i < n; i++)
		bd += memcmp(&a[i], &b[i], sizeof *a) != 0;
	gelu_set_wide(1);
	tap(fd == 0 && bd == 0, "%d lanes against 8: %ld of %zu forward values differ, %ld backward",
	    lanes, fd, n, bd);

	/* the training forward's pair (linear_gelu_forward's epilogue): gelu
	 * and gelu' in one pass, in place, the bytes of gelu_forward and of
	 * gelu_backward of ones, at both widths */
	float *g = malloc(n * sizeof *g), *d = malloc(n * sizeof *d);
	float *one = malloc(n * sizeof *one);
	for (size_t i = 0; i < n; i++)
		one[i] = 1.0f;
	gelu_forward(a, xs, n);
	gelu_backward(b, one, xs, n);
	for (int w = 0; w < 2; w++) {
		long gd = 0, dd = 0;
		gelu_set_wide(!w);
		memcpy(d, xs, n * sizeof *d);
		for (size_t lo = 0, len = 1; lo < n; lo += len, len = len * 3 % 1021 + 1) {
			size_t k = len < n - lo ? len : n - lo;
			gelu_dgelu_span(g + lo, d + lo, d + lo, k);
		}
		for (size_t i = 0; i < n; i++) {
			gd += memcmp(&a[i], &g[i], sizeof *a) != 0;
			dd += memcmp(&b[i], &d[i], sizeof *b) != 0;
		}
		tap(gd == 0 && dd == 0, "gelu and gelu' in one pass (%s lanes): %ld gelu, %ld gelu' "
		    "of %zu differ", w ? "8" : "the widest", gd, dd, n);
	}
	gelu_set_wide(1);
	free(g);
	free(d);
	free(one);
	free(xs);
	free(dy);
	free(a);
	free(b);
	return tap_done();
}
