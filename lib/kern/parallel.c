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

struct colsum {
	float *acc, *acc2;
	size_t R;
	int C;
	kern_row_fn *row;
	void *ctx;
};

/* one block of CS_W columns per job: every row in order, each column
 * summed in its own double (a lane of s4 or an element of s), so the
 * result depends neither on the threads nor on where a vector ends */
static void
colsum_block(void *p, size_t lo, size_t hi)
{
	const struct colsum *j = p;

	for (size_t blk = lo; blk < hi; blk++) {
		int c0 = (int)blk * CS_W, w = j->C - c0 < CS_W ? j->C - c0 : CS_W;
		int w8 = w & ~7;
		v4d s4[CS_W / 4], u4[CS_W / 4];
		double s[CS_W] = {0}, u[CS_W] = {0};
		float t[CS_W], v[CS_W];
		for (int k = 0; k < CS_W / 4; k++)
			s4[k] = u4[k] = (v4d){0, 0, 0, 0};
		for (size_t r = 0; r < j->R; r++) {
			float k = j->row(j->ctx, r, c0, w, t, j->acc2 ? v : NULL);
			if (k == 0)
				continue;
			v4d k4 = {k, k, k, k};
			for (int c = 0; c < w8; c += 4)
				s4[c / 4] += vload4d(t + c) * k4;
			for (int c = w8; c < w; c++)
				s[c] += (double)t[c] * k;
			if (!j->acc2)
				continue;
			for (int c = 0; c < w8; c += 4)
				u4[c / 4] += vload4d(v + c) * k4;
			for (int c = w8; c < w; c++)
				u[c] += (double)v[c] * k;
		}
		for (int c = 0; c < w8; c++) {
			s[c] = s4[c / 4][c % 4];
			u[c] = u4[c / 4][c % 4];
		}
		for (int c = 0; c < w; c++) {
			if (j->acc)
				j->acc[c0 + c] += (float)s[c];
			if (j->acc2)
				j->acc2[c0 + c] += (float)u[c];
		}
	}
}

void
kern_colsums(float *acc, float *acc2, size_t R, int C, kern_row_fn *row, void *ctx)
{
	struct colsum j = {acc, acc2, R, C, row, ctx};
	size_t blocks = ((size_t)C + CS_W - 1) / CS_W;

	kern_for(blocks, 1, colsum_block, &j);
}

struct strided {
	const float *x;
	size_t ld;
};

static float
strided_row(void *p, size_t r, int c0, int w, float *t, float *u)
{
	const struct strided *j = p;

	memcpy(t, j->x + r * j->ld + c0, (size_t)w * sizeof *t);
	return 1.0f;
}

void
kern_colsum(float *acc, const float *x, size_t R, int C, size_t ld)
{
	struct strided j = {x, ld};

	kern_colsums(acc, NULL, R, C, strided_row, &j);
}
