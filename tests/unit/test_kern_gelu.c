/* test_kern_gelu.c -- exact-erf GELU: our erf against libm's erf in double
 * over the whole range, forward and backward against central differences. */
#include "mim.h"
#include "mim/kern.h"
#include "gradcheck.h"

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
	return tap_done();
}
