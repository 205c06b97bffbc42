/* gelu.c -- the exact GELU of nn.GELU(): x * Phi(x), Phi the standard
 * normal CDF = (1 + erf(x/sqrt2))/2, with our own vectorised erf (a few
 * ulp; kern_int.h). gelu'(x) = Phi(x) + x * exp(-x^2/2) / sqrt(2 pi).
 *
 * The span functions (kern_int.h) do a contiguous run on the calling
 * thread: linear.c runs them on each block of a product right after the
 * block is computed (linear_gelu_forward / _backward), while it is in
 * cache, instead of a pass of their own over memory.
 *
 * Where the CPU has AVX-512, the spans run 16 lanes at a time:
 * vmath.h's functions instantiated for 16 lanes (vmath16.h), the
 * same operations lane for lane, so the same bits as 8 (test_kern_gelu
 * compares them on every float of a sweep). The erf is some 40 vector
 * operations an element; beside a product of K = 96 (a Swin-T stage-0
 * fc1), in bf16, it took as long as the product. MIM_GELU512=0 keeps 8
 * lanes (for the bench). */

#include <stdlib.h>
#include <string.h>

#include "mim/kern.h"
#include "kern_int.h"
#include "vmath16.h"

VINLINE v8f
gelu8(v8f x)
{
	return x * vncdf(x);
}

/* gelu'(x) = Phi(x) + x phi(x); *g = gelu(x) from the same Phi */
VINLINE v8f
dgelu8(v8f x, v8f *g)
{
	v8f p, d;
	vncdf_npdf(x, &p, &d);
	if (g)
		*g = x * p;
	return p + x * d;
}

#ifdef MIM_HAVE_X16
/* the spans' whole 16s; returns how many were done */
T512 static size_t
gelu16(float *out, const float *inp, size_t n)
{
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		v16f x;
		memcpy(&x, inp + i, sizeof x);
		x = x * vncdf_x16(x);
		memcpy(out + i, &x, sizeof x);
	}
	return i;
}

/* dout NULL: out = gelu(inp), dinp = gelu'(inp); else dinp = dout gelu'(inp) */
T512 static size_t
dgelu16(float *dinp, float *out, const float *dout, const float *inp, size_t n)
{
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		v16f x, dy, p, d, g;
		memcpy(&x, inp + i, sizeof x);
		vncdf_npdf_x16(x, &p, &d);
		g = x * p;
		d = p + x * d;
		if (dout) {
			memcpy(&dy, dout + i, sizeof dy);
			d = dy * d;
		} else {
			memcpy(out + i, &g, sizeof g);
		}
		memcpy(dinp + i, &d, sizeof d);
	}
	return i;
}

static int wide = -1;

static int
use16(void)
{
	if (wide < 0) {
		const char *e = getenv("MIM_GELU512");
		__builtin_cpu_init();
		wide = __builtin_cpu_supports("avx512f") && !(e && strcmp(e, "0") == 0);
	}
	return wide;
}
#endif

int
gelu_set_wide(int on)
{
#ifdef MIM_HAVE_X16
	__builtin_cpu_init();
	wide = on && __builtin_cpu_supports("avx512f");
	return wide ? 16 : 8;
#else
	(void)on;
	return 8;
#endif
}

void
gelu_span(float *out, const float *inp, size_t n)
{
	size_t i = 0;

#ifdef MIM_HAVE_X16
	if (use16())
		i = gelu16(out, inp, n);
#endif
	for (; i + 8 <= n; i += 8)
		vstore(out + i, gelu8(vload(inp + i)));
	if (i < n)
		vstore_n(out + i, gelu8(vload_n(inp + i, (int)(n - i), 0)), (int)(n - i));
}

void
gelu_backward_span(float *dinp, const float *dout, const float *inp, size_t n)
{
	size_t i = 0;

#ifdef MIM_HAVE_X16
	if (use16())
		i = dgelu16(dinp, NULL, dout, inp, n);
#endif
	for (; i + 8 <= n; i += 8)
		vstore(dinp + i, vload(dout + i) * dgelu8(vload(inp + i), NULL));
	if (i < n) {
		int k = (int)(n - i);
		vstore_n(dinp + i, vload_n(dout + i, k, 0) * dgelu8(vload_n(inp + i, k, 0), NULL), k);
	}
}

void
gelu_dgelu_span(float *out, float *dg, const float *inp, size_t n)
{
	size_t i = 0;
	v8f g;

#ifdef MIM_HAVE_X16
	if (use16())
		i = dgelu16(dg, out, NULL, inp, n);
#endif
	for (; i + 8 <= n; i += 8) {
		v8f d = dgelu8(vload(inp + i), &g);
		vstore(out + i, g);
		vstore(dg + i, d);
	}
	if (i < n) {
		int k = (int)(n - i);
		v8f d = dgelu8(vload_n(inp + i, k, 0), &g);
		vstore_n(out + i, g, k);
		vstore_n(dg + i, d, k);
	}
}

struct gl {
	float *out;
	const float *inp, *dout;
};

static void
fwd(void *p, size_t lo, size_t hi)
{
	const struct gl *j = p;

	gelu_span(j->out + lo, j->inp + lo, hi - lo);
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

	gelu_backward_span(j->out + lo, j->dout + lo, j->inp + lo, hi - lo);
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
