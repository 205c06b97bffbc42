/* rng.c -- deterministic random numbers for initialisation and drop path
 * (see arch.h). xoshiro256** seeded through splitmix64; drop path uses a
 * counter-based hash so that a sample's fate depends on (seed, block,
 * sample) only, never on threads or batch layout. */

#include <math.h>
#include <string.h>

#include "arch.h"
#include "../rng.h"

void
mim_rng_seed(struct mim_rng *r, uint64_t seed, uint64_t stream)
{
	uint64_t x = seed;
	uint64_t y = stream ^ 0x6a09e667f3bcc909ULL;

	x ^= mim_splitmix64(&y);
	for (int i = 0; i < 4; i++)
		r->s[i] = mim_splitmix64(&x);
	r->have_spare = 0;
	r->spare = 0;
}

uint64_t
mim_rng_u64(struct mim_rng *r)
{
	return mim_xoshiro256ss(r->s);
}

double
mim_rng_uniform(struct mim_rng *r)
{
	return mim_u64_to_unit(mim_rng_u64(r));
}

double
mim_rng_normal(struct mim_rng *r)
{
	if (r->have_spare) {
		r->have_spare = 0;
		return r->spare;
	}
	double u, v, s;
	do {	/* Marsaglia's polar method */
		u = 2 * mim_rng_uniform(r) - 1;
		v = 2 * mim_rng_uniform(r) - 1;
		s = u * u + v * v;
	} while (s >= 1 || s == 0);
	double f = sqrt(-2 * log(s) / s);
	r->spare = v * f;
	r->have_spare = 1;
	return u * f;
}

void
mim_init_trunc_normal(struct mim_rng *r, float *w, size_t n, double mean,
    double std, double a, double b)
{
	for (size_t i = 0; i < n; i++) {
		double x;
		do
			x = mean + std * mim_rng_normal(r);
		while (x < a || x > b);
		w[i] = (float)x;
		/* rounding to float may step just outside [a,b]: clamp, as
		 * timm's trunc_normal_ does */
		if (w[i] < (float)a)
			w[i] = (float)a;
		if (w[i] > (float)b)
			w[i] = (float)b;
	}
}

void
mim_init_uniform(struct mim_rng *r, float *w, size_t n, double lo, double hi)
{
	for (size_t i = 0; i < n; i++)
		w[i] = (float)(lo + (hi - lo) * mim_rng_uniform(r));
}

void
mim_init_const(float *w, size_t n, float v)
{
	for (size_t i = 0; i < n; i++)
		w[i] = v;
}

double
mim_droppath_rate(double rate, int i, int n)
{
	/* torch.linspace(0, rate, n) in float32, as PyTorch's CPU kernel
	 * computes it: the first half from the start, the rest from the end */
	if (n <= 1)
		return 0.0;
	float end = (float)rate, step = end / (float)(n - 1);
	float v = i < n / 2 ? step * (float)i : end - step * (float)(n - 1 - i);
	return (double)v;
}

float
mim_droppath(float *kept, int B, double rate_i, uint64_t seed, int block)
{
	if (rate_i <= 0) {
		for (int b = 0; b < B; b++)
			kept[b] = 1;
		return 1.0f;
	}
	double keep = 1.0 - rate_i;
	for (int b = 0; b < B; b++) {
		uint64_t x = seed ^ 0x243f6a8885a308d3ULL;
		uint64_t k = mim_splitmix64(&x) ^ ((uint64_t)(uint32_t)block << 32 | (uint32_t)b);
		uint64_t h = mim_splitmix64(&k);
		float u = (float)(h >> 40) * 0x1.0p-24f;	/* like torch.rand: 24 bits */
		kept[b] = floorf((float)keep + u);
	}
	return (float)keep;
}
