/* test_kern_softmax.c -- softmax forward / backward against a double
 * reference and central differences. */
#include "mim.h"
#include "mim/kern.h"
#include "gradcheck.h"

enum { R = 5, C = 37 };
static double X[R * C], DO[R * C];

static void
ref(double *out)
{
	for (int r = 0; r < R; r++) {
		double mx = -1e300, s = 0;
		for (int c = 0; c < C; c++)
			mx = fmax(mx, X[r * C + c]);
		for (int c = 0; c < C; c++)
			s += exp(X[r * C + c] - mx);
		for (int c = 0; c < C; c++)
			out[r * C + c] = exp(X[r * C + c] - mx) / s;
	}
}

static double
L(void)
{
	double out[R * C], s = 0;
	ref(out);
	for (int i = 0; i < R * C; i++)
		s += out[i] * DO[i];
	return s;
}

int
main(void)
{
	float x[R * C], dout[R * C], p[R * C], dx[R * C];
	double ro[R * C];
	randfill(x, X, R * C, 6);
	x[3] = 80;	/* large logits are fine (max subtracted) */
	X[3] = 80;
	randfill(dout, DO, R * C, 1);
	ref(ro);
	softmax_forward(p, x, R, C);
	tap(relerr_d(p, ro, R * C) < 1e-6, "forward vs double reference (%.2e)", relerr_d(p, ro, R * C));
	softmax_backward(dx, dout, p, R, C);
	gradcheck("dinp", dx, X, R * C, L, 1e-5);
	float q[R * C];
	memcpy(q, x, sizeof q);
	softmax_forward(q, q, R, C);
	tap(memcmp(q, p, sizeof q) == 0, "in place forward");
	return tap_done();
}
