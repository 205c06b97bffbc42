/* parallel.c -- the kernels' parallel-for over index ranges and their
 * deterministic column sums (kern_int.h). */

#include <stdlib.h>

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

static void
zero_range(void *p, size_t lo, size_t hi)
{
	memset((float *)p + lo, 0, (hi - lo) * sizeof(float));
}

void
kern_zero(float *x, size_t n)
{
	kern_for(n, (size_t)1 << 15, zero_range, x);
}

#define CS_W 64		/* columns per block */

/* rows a chunk of the column sums: fixed by R alone, so that the sums do
 * not depend on the threads; 256 where there are many rows, down to 32
 * so that a few thousand (ViT's 4640 tokens at batch 32, Swin's last
 * stages) still make 60 or so chunks for many threads, where chunks of
 * 256 made 18-19: two rounds of 16 threads, the second mostly idle */
static size_t
chunk_rows(size_t R)
{
	size_t r = (R / 64 + 15) / 16 * 16;

	return r < 32 ? 32 : r > 256 ? 256 : r;
}

struct colsum {
	float *acc, *acc2;
	size_t R, rows;	/* rows a chunk */
	int C, nblk;
	kern_row_fn *row;
	void *ctx;
	double *part;	/* (chunks, 2, C): each chunk's sums; NULL: one chunk */
};

/* rows [r0, r1) of the block of columns from c0 (w of them), each column
 * summed in its own double (a lane of s4 or an element of s), in row
 * order, into s[0..w) and u[0..w) */
static void
colsum_rows(const struct colsum *j, size_t r0, size_t r1, int c0, int w, double *s, double *u)
{
	int w8 = w & ~7;
	v4d s4[CS_W / 4], u4[CS_W / 4];
	float t[CS_W], v[CS_W];

	for (int c = 0; c < w; c++)
		s[c] = u[c] = 0;
	for (int k = 0; k < CS_W / 4; k++)
		s4[k] = u4[k] = (v4d){0, 0, 0, 0};
	for (size_t r = r0; r < r1; r++) {
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
}

/* job i: chunk i / nblk of rows, block i % nblk of columns */
static void
colsum_job(void *p, int i)
{
	const struct colsum *j = p;
	size_t ch = (size_t)(i / j->nblk), r0 = ch * j->rows;
	size_t r1 = r0 + j->rows < j->R ? r0 + j->rows : j->R;
	int c0 = i % j->nblk * CS_W, w = j->C - c0 < CS_W ? j->C - c0 : CS_W;
	double s[CS_W], u[CS_W];

	if (!j->part) {	/* the only chunk: straight into acc */
		colsum_rows(j, 0, j->R, c0, w, s, u);
		for (int c = 0; c < w; c++) {
			if (j->acc)
				j->acc[c0 + c] += (float)s[c];
			if (j->acc2)
				j->acc2[c0 + c] += (float)u[c];
		}
		return;
	}
	double *ps = j->part + ch * 2 * j->C + c0, *pu = ps + j->C;
	colsum_rows(j, r0, r1, c0, w, ps, pu);
}

/* the chunks' partial sums (nch, 2, C), kept by the thread for its next
 * call; NULL when out of memory */
static _Thread_local void *cs_buf;
static _Thread_local size_t cs_cap;

static double *
chunk_sums(size_t nch, int C)
{
	return kern_grow(&cs_buf, &cs_cap, nch * 2 * (size_t)C * sizeof(double));
}

void *
kern_grow(void **buf, size_t *cap, size_t n)
{
	if (n > *cap) {
		free(*buf);
		*cap = 0;
		if (!(*buf = malloc(n)))
			return NULL;
		*cap = n;
	}
	return *buf;
}

struct addch {
	float *acc;
	const double *part;
	size_t nch, stride;
};

/* columns [c0, c1) of kern_add_chunks, 64 at a time */
static void
add_cols(void *p, size_t c0, size_t c1)
{
	const struct addch *j = p;
	double s[CS_W];

	for (size_t b = c0; b < c1; b += CS_W) {
		int w = c1 - b < CS_W ? (int)(c1 - b) : CS_W;
		for (int c = 0; c < w; c++)
			s[c] = 0;
		for (size_t ch = 0; ch < j->nch; ch++) {
			const double *ps = j->part + ch * j->stride + b;
			for (int c = 0; c < w; c++)
				s[c] += ps[c];
		}
		for (int c = 0; c < w; c++)
			j->acc[b + c] += (float)s[c];
	}
}

void
kern_add_chunks(float *acc, const double *part, size_t nch, int C, size_t stride)
{
	struct addch j = {acc, part, nch, stride};

	if (acc)
		kern_for((size_t)C, CS_W, add_cols, &j);
}

/* acc[c] += the chunks' sums (nch, 2, C) in order, acc2 with the second */
static void
add_chunks(float *acc, float *acc2, const double *part, size_t nch, int C)
{
	kern_add_chunks(acc, part, nch, C, 2 * (size_t)C);
	kern_add_chunks(acc2, part + C, nch, C, 2 * (size_t)C);
}

void
kern_colsums(float *acc, float *acc2, size_t R, int C, kern_row_fn *row, void *ctx)
{
	size_t rows = chunk_rows(R), nch = (R + rows - 1) / rows;
	struct colsum j = {acc, acc2, R, rows, C, (C + CS_W - 1) / CS_W, row, ctx, NULL};

	if (R == 0)
		return;
	if (nch > 1)
		j.part = chunk_sums(nch, C);
	if (!j.part) {	/* one chunk (or no memory): blocks of columns */
		mim_parallel(j.nblk, colsum_job, &j);
		return;
	}
	mim_parallel((int)nch * j.nblk, colsum_job, &j);
	add_chunks(acc, acc2, j.part, nch, C);
}

struct rowsums {
	size_t R, rows;
	int C;
	kern_chunk_fn *fn;
	void *ctx;
	double *part;
};

static void
rowsums_job(void *p, int i)
{
	const struct rowsums *j = p;
	size_t r0 = (size_t)i * j->rows, r1 = r0 + j->rows < j->R ? r0 + j->rows : j->R;
	double *s = j->part + (size_t)i * 2 * j->C;

	memset(s, 0, 2 * (size_t)j->C * sizeof *s);
	j->fn(j->ctx, r0, r1, s, s + j->C);
}

int
kern_rows_colsums(float *acc, float *acc2, size_t R, int C, kern_chunk_fn *fn, void *ctx)
{
	size_t rows = chunk_rows(R), nch = (R + rows - 1) / rows;
	struct rowsums j = {R, rows, C, fn, ctx, NULL};

	if (R == 0)
		return 0;
	if (!(j.part = chunk_sums(nch, C)))
		return -1;
	mim_parallel((int)nch, rowsums_job, &j);
	add_chunks(acc, acc2, j.part, nch, C);
	return 0;
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
