/* pixel_shuffle.c -- nn.PixelShuffle(r):
 *   out[b, c, h*r+i, w*r+j] = inp[b, c*r*r + i*r + j, h, w]
 * and its inverse for the backward (a permutation, so exact). The
 * prediction head does not call it: head.c shuffles straight from its
 * token-major (B*h*w, O) decoder output, which saves a transpose. */

#include "mim/kern.h"
#include "kern_int.h"

struct ps {
	float *dst;
	const float *src;
	int Co, H, W, r, inverse;
};

/* one job per output row (b, c, y) */
static void
rows(void *p, size_t lo, size_t hi)
{
	const struct ps *j = p;
	int r = j->r, H = j->H, W = j->W, Ho = H * r, Wo = W * r;

	for (size_t row = lo; row < hi; row++) {
		size_t bc = row / (size_t)Ho;
		int y = (int)(row % (size_t)Ho), h = y / r, i = y % r;
		size_t b = bc / (size_t)j->Co, c = bc % (size_t)j->Co;
		const size_t plane = (size_t)H * W;
		size_t base = (b * j->Co * r * r + c * r * r + (size_t)i * r) * plane + (size_t)h * W;
		for (int x = 0; x < Wo; x++) {
			int w = x / r, jj = x % r;
			size_t in = base + (size_t)jj * plane + w, out = row * Wo + x;
			if (j->inverse)
				j->dst[in] = j->src[out];
			else
				j->dst[out] = j->src[in];
		}
	}
}

void
pixel_shuffle_forward(float *out, const float *inp, int B, int Co, int H, int W, int r)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct ps j = {out, inp, Co, H, W, r, 0};
	kern_for((size_t)B * Co * H * r, 16, rows, &j);
	MIM_PROF_END("pixel_shuffle fwd", prof_t_, 0);
}

void
pixel_shuffle_backward(float *dinp, const float *dout, int B, int Co, int H, int W, int r)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct ps j = {dinp, dout, Co, H, W, r, 1};
	kern_for((size_t)B * Co * H * r, 16, rows, &j);
	MIM_PROF_END("pixel_shuffle bwd", prof_t_, 0);
}
