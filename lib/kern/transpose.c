/* transpose.c -- tokens (rows of C channels, at a stride) to a
 * channel-major feature map (B,C,R) and back: the encoders' output
 * x[:,1:].permute(0,2,1).reshape(B,C,h,w). Blocked by 32x32 tiles. */

#include "mim/kern.h"
#include "kern_int.h"

struct tp {
	float *a;
	const float *b;
	int ld, R, C, back;
	size_t s;
};

/* one job per (sample, channel tile) */
static void
tiles(void *p, size_t lo, size_t hi)
{
	const struct tp *j = p;
	int ct = (j->C + 31) / 32;

	for (size_t t = lo; t < hi; t++) {
		size_t b = t / (size_t)ct;
		int c0 = (int)(t % (size_t)ct) * 32, c1 = c0 + 32 < j->C ? c0 + 32 : j->C;
		for (int r0 = 0; r0 < j->R; r0 += 32) {
			int r1 = r0 + 32 < j->R ? r0 + 32 : j->R;
			for (int c = c0; c < c1; c++)
				for (int r = r0; r < r1; r++) {
					size_t tok = b * j->s + (size_t)r * j->ld + c;
					size_t map = (b * j->C + c) * (size_t)j->R + r;
					if (j->back)
						j->a[tok] = j->b[map];
					else
						j->a[map] = j->b[tok];
				}
		}
	}
}

void
transpose_forward(float *out, const float *inp, int ldi, size_t si, int B, int R, int C)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct tp j = {out, inp, ldi, R, C, 0, si};
	kern_for((size_t)B * ((C + 31) / 32), 1, tiles, &j);
	MIM_PROF_END("transpose fwd", prof_t_, 0);
}

void
transpose_backward(float *din, int ldi, size_t si, const float *dout, int B, int R, int C)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct tp j = {din, dout, ldi, R, C, 1, si};
	kern_for((size_t)B * ((C + 31) / 32), 1, tiles, &j);
	MIM_PROF_END("transpose bwd", prof_t_, 0);
}
