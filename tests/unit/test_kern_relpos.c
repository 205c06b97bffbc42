/* test_kern_relpos.c -- the shared relative position bias: the index with
 * its cls entries (reference values), gather forward, scatter backward
 * against central differences. */
#include "mim.h"
#include "mim/kern.h"
#include "gradcheck.h"

enum { G = 3, N = G * G + 1, Hh = 2, R = (2 * G - 1) * (2 * G - 1) + 3 };
static double TB[R * Hh], DO[Hh * N * N];
static int64_t idx[N * N];

static double
L(void)
{
	double s = 0;
	for (int h = 0; h < Hh; h++)
		for (int e = 0; e < N * N; e++)
			s += TB[idx[e] * Hh + h] * DO[h * N * N + e];
	return s;
}

int
main(void)
{
	/* ViT-B/16 at 224: grid 14, the reference's check values */
	int64_t *big = malloc(197 * 197 * sizeof *big);
	relpos_index(big, 14);
	tap(big[0] == 731 && big[1] == 729 && big[197] == 730 && big[198] == 364 &&
	    big[199] == 363 && big[2 * 197 + 1] == 365, "index: cls 729/730/731, [1,1]=364 [1,2]=363 [2,1]=365");
	int64_t mx = 0;
	for (int i = 0; i < 197 * 197; i++)
		mx = big[i] > mx ? big[i] : mx;
	tap(mx == 731, "index max 731 (table 732 rows)");
	free(big);
	relpos_index(idx, G);
	float tb[R * Hh], dout[Hh * N * N], bias[Hh * N * N];
	randfill(tb, TB, R * Hh, 1);
	randfill(dout, DO, Hh * N * N, 1);
	relpos_forward(bias, tb, idx, N, Hh);
	int ok = 1;
	for (int h = 0; h < Hh; h++)
		for (int e = 0; e < N * N; e++)
			ok &= bias[h * N * N + e] == tb[idx[e] * Hh + h];
	tap(ok, "forward gathers table[index, h]");
	float *dt = fzero(R * Hh);
	relpos_backward(dt, dout, idx, N, Hh);
	gradcheck("dtable", dt, TB, R * Hh, L, 1e-5);
	free(dt);
	return tap_done();
}
