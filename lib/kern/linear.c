/* linear.c -- nn.Linear: out = inp @ w^T + b, and its backward.
 * inp (R,IC), w (OC,IC), b (OC), out (R,OC). The bias is written first
 * and the product added with beta = 1, as PyTorch's addmm does. */

#include "mim/kern.h"
#include "kern_int.h"

struct fillb {
	float *out;
	const float *b;
	int OC;
};

static void
fill_rows(void *p, size_t lo, size_t hi)
{
	const struct fillb *j = p;

	for (size_t r = lo; r < hi; r++)
		memcpy(j->out + r * j->OC, j->b, (size_t)j->OC * sizeof(float));
}

void
linear_forward(float *out, const float *inp, const float *w, const float *b,
    int R, int IC, int OC)
{
	double prof_t_ = MIM_PROF_BEGIN();
	if (b) {
		struct fillb j = {out, b, OC};
		kern_for((size_t)R, 1 + 16384 / (size_t)OC, fill_rows, &j);
	}
	mim_gemm(0, 1, R, OC, IC, 1.0f, inp, IC, w, IC, b ? 1.0f : 0.0f, out, OC);
	MIM_PROF_END("linear fwd", prof_t_, 2.0 * R * IC * OC);
}

void
linear_backward(float *dinp, float *dw, float *db, const float *dout,
    const float *inp, const float *w, int R, int IC, int OC)
{
	double t;
	double fl = 2.0 * R * IC * OC;

	/* dinp (R,IC) = dout (R,OC) @ w (OC,IC) */
	if (dinp) {
		t = MIM_PROF_BEGIN();
		mim_gemm(0, 0, R, IC, OC, 1.0f, dout, OC, w, IC, 0.0f, dinp, IC);
		MIM_PROF_END("linear bwd dx", t, fl);
	}
	/* dw (OC,IC) += dout^T (OC,R) @ inp (R,IC) */
	if (dw) {
		t = MIM_PROF_BEGIN();
		mim_gemm(1, 0, OC, IC, R, 1.0f, dout, OC, inp, IC, 1.0f, dw, IC);
		MIM_PROF_END("linear bwd dw", t, fl);
	}
	if (db) {
		t = MIM_PROF_BEGIN();
		kern_colsum(db, dout, (size_t)R, OC, (size_t)OC);
		MIM_PROF_END("linear bwd db", t, 0);
	}
}
