/* parallel.c -- the kernels' parallel-for over index ranges and their
 * deterministic column sums (kern_int.h). */

#include "kern_int.h"

struct range {
	void (*fn)(void *, size_t, size_t);
	void *ctx;
	size_t n, per;
};

static void
range_job(void *p, int i)
{
	struct range *r = p;
	size_t lo = (size_t)i * r->per, hi = lo + r->per;

	if (hi > r->n)
		hi = r->n;
	if (lo < hi)
		r->fn(r->ctx, lo, hi);
}

void
kern_for(size_t n, size_t grain, void (*fn)(void *ctx, size_t lo, size_t hi), void *ctx)
{
	size_t nt = (size_t)mim_threads(), chunks;

	if (n == 0)
		return;
	if (grain < 1)
		grain = 1;
	chunks = (n + grain - 1) / grain;
	if (chunks > 4 * nt)
		chunks = 4 * nt;
	if (chunks <= 1) {
		fn(ctx, 0, n);
		return;
	}
	struct range r = {fn, ctx, n, (n + chunks - 1) / chunks};
	mim_parallel((int)((n + r.per - 1) / r.per), range_job, &r);
}

#define CS_W 64		/* columns per block */

struct colsum2 {
	float *acc;
	const float *x;
	size_t R, ld;
	int C;
};

static void
colsum_block(void *p, size_t lo, size_t hi)
{
	const struct colsum2 *j = p;

	for (size_t blk = lo; blk < hi; blk++) {
		int c0 = (int)blk * CS_W, w = j->C - c0 < CS_W ? j->C - c0 : CS_W;
		int w4 = w & ~3;
		v4d s4[CS_W / 4];
		double s[CS_W];
		for (int k = 0; k < CS_W / 4; k++)
			s4[k] = (v4d){0, 0, 0, 0};
		for (int c = 0; c < w; c++)
			s[c] = 0;
		for (size_t r = 0; r < j->R; r++) {
			const float *row = j->x + r * j->ld + c0;
			for (int c = 0; c < w4; c += 4)
				s4[c / 4] += vload4d(row + c);
			for (int c = w4; c < w; c++)
				s[c] += row[c];
		}
		for (int c = 0; c < w4; c++)
			s[c] = s4[c / 4][c % 4];
		for (int c = 0; c < w; c++)
			j->acc[c0 + c] += (float)s[c];
	}
}

void
kern_colsum(float *acc, const float *x, size_t R, int C, size_t ld)
{
	struct colsum2 j = {acc, x, R, ld, C};
	size_t blocks = ((size_t)C + CS_W - 1) / CS_W;

	kern_for(blocks, 1, colsum_block, &j);
}
