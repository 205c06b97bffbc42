/* gelu.c -- the exact GELU of nn.GELU(): x * Phi(x), Phi the standard
 * normal CDF = (1 + erf(x/sqrt2))/2, with our own vectorisable erf (a few
 * ulp; kern_int.h). gelu'(x) = Phi(x) + x * exp(-x^2/2) / sqrt(2 pi). */

#include "mim/kern.h"
#include "kern_int.h"

struct gl {
	float *out;
	const float *inp, *dout;
};

static void
fwd(void *p, size_t lo, size_t hi)
{
	const struct gl *j = p;
	const float *x = j->inp;
	float *y = j->out;

	for (size_t i = lo; i < hi; i++)
		y[i] = x[i] * kern_ncdf(x[i]);
}

void
gelu_forward(float *out, const float *inp, size_t n)
{
	struct gl j = {out, inp, NULL};
	kern_for(n, 16384, fwd, &j);
}

static void
bwd(void *p, size_t lo, size_t hi)
{
	const struct gl *j = p;
	const float *x = j->inp, *dy = j->dout;
	float *dx = j->out;

	for (size_t i = lo; i < hi; i++) {
		float v = x[i];
		float pdf = 0.398942280401432678f * kern_exp(-0.5f * v * v);
		dx[i] = dy[i] * (kern_ncdf(v) + v * pdf);
	}
}

void
gelu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
	struct gl j = {dinp, inp, dout};
	kern_for(n, 16384, bwd, &j);
}

float
gelu_erf(float x)
{
	return kern_erf(x);
}
