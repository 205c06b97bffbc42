/* pixel_shuffle.c -- nn.PixelShuffle(r) from token-major input, the
 * prediction head's layout (head.c): its 1x1 convolution is one product
 * over all B*H*W positions, so its output is dec (B*H*W, Co*r*r), one row
 * per position, and the shuffle reads it there instead of from the
 * channel-major (B, Co*r*r, H, W) map that nn.PixelShuffle takes:
 *   out[b, c, h*r+i, w*r+j] = dec[(b*H + h)*W + w, c*r*r + i*r + j]
 * which is PixelShuffle of dec transposed to (B, Co*r*r, H, W). The
 * backward is the inverse permutation, so both are exact.
 *   out (B, Co, H*r, W*r); dec (B*H*W, Co*r*r) */

#include "mim/kern.h"
#include "kern_int.h"

struct ps {
	float *out, *dec;
	int Co, H, W, r, back;
};

/* one job per output row (b, c, y) */
static void
rows(void *p, size_t lo, size_t hi)
{
	const struct ps *j = p;
	int r = j->r, H = j->H, W = j->W, Ho = H * r, Wo = W * r, O = j->Co * r * r;

	for (size_t row = lo; row < hi; row++) {
		size_t bc = row / (size_t)Ho;
		int y = (int)(row % (size_t)Ho);
		size_t b = bc / (size_t)j->Co, c = bc % (size_t)j->Co;
		const size_t base = (b * H + (size_t)(y / r)) * W;
		size_t o0 = c * r * r + (size_t)(y % r) * r;
		float *orow = j->out + row * Wo;
		for (int x = 0; x < Wo; x++) {
			float *d = j->dec + (base + (size_t)(x / r)) * O + o0 + x % r;
			if (j->back)
				*d = orow[x];
			else
				orow[x] = *d;
		}
	}
}

void
pixel_shuffle_forward(float *out, const float *dec, int B, int Co, int H, int W, int r)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct ps j = {out, (float *)dec, Co, H, W, r, 0};
	kern_for((size_t)B * Co * H * r, 16, rows, &j);
	MIM_PROF_END("pixel_shuffle fwd", prof_t_, 0);
}

void
pixel_shuffle_backward(float *ddec, const float *dout, int B, int Co, int H, int W, int r)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct ps j = {(float *)dout, ddec, Co, H, W, r, 1};
	kern_for((size_t)B * Co * H * r, 16, rows, &j);
	MIM_PROF_END("pixel_shuffle bwd", prof_t_, 0);
}
