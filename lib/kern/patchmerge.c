/* patchmerge.c -- Swin patch merging, the gather part: each 2x2 block of
 * tokens becomes one token of 4C channels, in the official order
 *   [x(2i,2j), x(2i+1,2j), x(2i,2j+1), x(2i+1,2j+1)]
 * (x1 is the odd ROW, even column: reference/simmim.md 4.1). LayerNorm(4C)
 * and the bias-free reduction Linear(4C,2C) follow in the model. */
#include <string.h>

#include "mim/gemm.h"
#include "mim/prof.h"
#include "mim/stream.h"
#include "mim/swin.h"

struct mergejob {
	float *out;
	const float *in;
	int B, H, W, C, per, rows;
};

/* source token (row-major in the H x W map) of quarter k of merged (i,j) */
static inline int
merge_src(int i, int j, int k, int W)
{
	return (2 * i + (k & 1)) * W + 2 * j + (k >> 1);
}

static void
fwd_task(void *ctx, int t)
{
	struct mergejob *m = ctx;
	int lo = t * m->per, hi = lo + m->per < m->rows ? lo + m->per : m->rows;
	int W2 = m->W / 2, L2 = m->H / 2 * W2, C = m->C;

	for (int r = lo; r < hi; r++) {
		int b = r / L2, i = r % L2 / W2, j = r % W2;
		const float *x = m->in + (size_t)b * m->H * m->W * C;
		for (int k = 0; k < 4; k++)
			memcpy(m->out + ((size_t)r * 4 + k) * C,
			    x + (size_t)merge_src(i, j, k, m->W) * C, (size_t)C * sizeof(float));
	}
}

static void
bwd_task(void *ctx, int t)
{
	struct mergejob *m = ctx;
	int lo = t * m->per, hi = lo + m->per < m->rows ? lo + m->per : m->rows;
	int W2 = m->W / 2, L2 = m->H / 2 * W2, C = m->C;

	for (int r = lo; r < hi; r++) {
		int b = r / L2, i = r % L2 / W2, j = r % W2;
		float *dx = m->out + (size_t)b * m->H * m->W * C;
		for (int k = 0; k < 4; k++) {
			float *d = dx + (size_t)merge_src(i, j, k, m->W) * C;
			const float *g = m->in + ((size_t)r * 4 + k) * C;
			for (int c = 0; c < C; c++)
				d[c] += g[c];
		}
	}
}

static void
run(struct mergejob *m, void (*fn)(void *, int))
{
	int nt = mim_threads(), tasks;

	m->rows = m->B * (m->H / 2) * (m->W / 2);
	tasks = nt * 4 < m->rows ? nt * 4 : m->rows;
	if (tasks < 1)
		return;
	m->per = (m->rows + tasks - 1) / tasks;
	mim_parallel((m->rows + m->per - 1) / m->per, fn, m);
}

void
patchmerge_forward(float *out, const float *x, int B, int H, int W, int C)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct mergejob m = {.out = out, .in = x, .B = B, .H = H, .W = W, .C = C};

	run(&m, fwd_task);
	MIM_PROF_END("patchmerge fwd", prof_t_, 0);
}

void
patchmerge_backward(float *dx, const float *dout, int B, int H, int W, int C)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct mergejob m = {.out = dx, .in = dout, .B = B, .H = H, .W = W, .C = C};

	run(&m, bwd_task);
	MIM_PROF_END("patchmerge bwd", prof_t_, 0);
}
