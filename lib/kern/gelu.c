/* gelu.c -- the exact GELU of nn.GELU(): x * Phi(x), Phi the standard
 * normal CDF = (1 + erf(x/sqrt2))/2, with our own vectorised erf (a few
 * ulp; kern_int.h). gelu'(x) = Phi(x) + x * exp(-x^2/2) / sqrt(2 pi). */

#include "mim/kern.h"
#include "kern_int.h"

struct gl {
	float *out;
	const float *inp, *dout;
};

VINLINE v8f
gelu8(v8f x)
{
	return x * vncdf(x);
}

VINLINE v8f
dgelu8(v8f x, v8f dy)
{
	return dy * (vncdf(x) + x * vnpdf(x));
}

static void
fwd(void *p, size_t lo, size_t hi)
{
	const struct gl *j = p;
	size_t i = lo;

	for (; i + 8 <= hi; i += 8)
		vstore(j->out + i, gelu8(vload(j->inp + i)));
	if (i < hi)
		vstore_n(j->out + i, gelu8(vload_n(j->inp + i, (int)(hi - i), 0)), (int)(hi - i));
}

void
gelu_forward(float *out, const float *inp, size_t n)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct gl j = {out, inp, NULL};
	kern_for(n, 16384, fwd, &j);
	MIM_PROF_END("gelu fwd", prof_t_, 0);
}

static void
bwd(void *p, size_t lo, size_t hi)
{
	const struct gl *j = p;
	size_t i = lo;

	for (; i + 8 <= hi; i += 8)
		vstore(j->out + i, dgelu8(vload(j->inp + i), vload(j->dout + i)));
	if (i < hi) {
		int n = (int)(hi - i);
		vstore_n(j->out + i, dgelu8(vload_n(j->inp + i, n, 0), vload_n(j->dout + i, n, 0)), n);
	}
}

void
gelu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct gl j = {dinp, inp, dout};
	kern_for(n, 16384, bwd, &j);
	MIM_PROF_END("gelu bwd", prof_t_, 0);
}

float
gelu_erf(float x)
{
	return verf(vdup(x))[0];
}
