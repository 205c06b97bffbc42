/* test_kern_layernorm.c -- LayerNorm forward / backward against a double
 * reference and central differences; backward accumulates into dinp. */
#include "mim.h"
#include "mim/kern.h"
#include "gradcheck.h"

enum { R = 6, C = 80 };	/* C > 64: two column blocks */
static double X[R * C], Wt[C], Bs[C], DO[R * C];
static const double EPS = 1e-6;

static void
ref(double *out)
{
	for (int r = 0; r < R; r++) {
		double m = 0, v = 0;
		for (int c = 0; c < C; c++)
			m += X[r * C + c];
		m /= C;
		for (int c = 0; c < C; c++)
			v += (X[r * C + c] - m) * (X[r * C + c] - m);
		v /= C;
		for (int c = 0; c < C; c++)
			out[r * C + c] = (X[r * C + c] - m) / sqrt(v + EPS) * Wt[c] + Bs[c];
	}
}

static double
L(void)
{
	static double out[R * C];
	double s = 0;
	ref(out);
	for (int i = 0; i < R * C; i++)
		s += out[i] * DO[i];
	return s;
}

int
main(void)
{
	static float x[R * C], w[C], b[C], dout[R * C], out[R * C], mean[R], rstd[R];
	static double ro[R * C];
	randfill(x, X, R * C, 2);
	for (int i = 0; i < R * C; i++) {	/* an offset, as real activations have */
		x[i] += 3;
		X[i] = x[i];
	}
	randfill(w, Wt, C, 1);
	randfill(b, Bs, C, 1);
	randfill(dout, DO, R * C, 1);
	ref(ro);
	layernorm_forward(out, mean, rstd, x, w, b, R, C, (float)EPS);
	tap(relerr_d(out, ro, R * C) < 1e-6, "forward vs double reference (%.2e)", relerr_d(out, ro, R * C));
	float *dx = fzero(R * C), *dw = fzero(C), *db = fzero(C);
	layernorm_backward(dx, dw, db, dout, x, w, mean, rstd, R, C);
	gradcheck("dinp", dx, X, R * C, L, 1e-4);
	gradcheck("dw", dw, Wt, C, L, 1e-5);
	gradcheck("db", db, Bs, C, L, 1e-5);
	float *dx2 = fzero(R * C), *dw2 = fzero(C);
	memcpy(dx2, dx, sizeof(float) * R * C);
	memcpy(dw2, dw, sizeof(float) * C);
	layernorm_backward(dx, dw, db, dout, x, w, mean, rstd, R, C);
	tap(doubled(dx, dx2, R * C) && doubled(dw, dw2, C), "dinp, dw accumulate");
	float out2[R * C];
	layernorm_forward(out2, NULL, NULL, x, w, b, R, C, (float)EPS);
	tap(memcmp(out, out2, sizeof out) == 0, "forward without saved statistics: same bytes");
	free(dx);
	free(dw);
	free(db);
	free(dx2);
	free(dw2);
	return tap_done();
}
