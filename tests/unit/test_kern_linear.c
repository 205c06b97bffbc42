/* test_kern_linear.c -- linear_forward / linear_backward against a double
 * reference and central differences. */
#include "mim.h"
#include "mim/kern.h"
#include "gradcheck.h"

enum { R = 7, IC = 5, OC = 6 };
static double X[R * IC], Wt[OC * IC], Bs[OC], DO[R * OC];

static void
ref(double *out)
{
	for (int r = 0; r < R; r++)
		for (int o = 0; o < OC; o++) {
			double s = Bs[o];
			for (int i = 0; i < IC; i++)
				s += X[r * IC + i] * Wt[o * IC + i];
			out[r * OC + o] = s;
		}
}

static double
L(void)
{
	double out[R * OC], s = 0;
	ref(out);
	for (int i = 0; i < R * OC; i++)
		s += out[i] * DO[i];
	return s;
}

int
main(void)
{
	float x[R * IC], w[OC * IC], b[OC], dout[R * OC], out[R * OC];
	randfill(x, X, R * IC, 1);
	randfill(w, Wt, OC * IC, 1);
	randfill(b, Bs, OC, 1);
	randfill(dout, DO, R * OC, 1);
	double ro[R * OC];
	ref(ro);
	linear_forward(out, x, w, b, R, IC, OC);
	tap(relerr_d(out, ro, R * OC) < 1e-6, "forward vs double reference (%.2e)", relerr_d(out, ro, R * OC));
	linear_forward(out, x, w, NULL, R, IC, OC);
	for (int r = 0; r < R; r++)
		for (int o = 0; o < OC; o++)
			ro[r * OC + o] -= Bs[o];
	tap(relerr_d(out, ro, R * OC) < 1e-6, "forward without bias");

	float *dx = fzero(R * IC), *dw = fzero(OC * IC), *db = fzero(OC);
	for (int i = 0; i < R * IC; i++)
		dx[i] = 99;	/* dinp is overwritten */
	linear_backward(dx, dw, db, dout, x, w, R, IC, OC);
	gradcheck("dinp", dx, X, R * IC, L, 1e-5);
	gradcheck("dw", dw, Wt, OC * IC, L, 1e-5);
	gradcheck("db", db, Bs, OC, L, 1e-5);
	float *dw2 = fzero(OC * IC), *db2 = fzero(OC);
	memcpy(dw2, dw, sizeof(float) * OC * IC);
	memcpy(db2, db, sizeof(float) * OC);
	linear_backward(NULL, dw, db, dout, x, w, R, IC, OC);
	tap(doubled(dw, dw2, OC * IC) && doubled(db, db2, OC), "dw, db accumulate");
	free(dx);
	free(dw);
	free(db);
	free(dw2);
	free(db2);
	return tap_done();
}
