/* test_kern_shuffle.c -- PixelShuffle of token-major input (the official
 * formula on the transposed map) and the token / feature-map transpose:
 * exact permutations, forward and back. */
#include "mim.h"
#include "mim/kern.h"
#include "gradcheck.h"

int
main(void)
{
	enum { B = 2, Co = 3, H = 3, W = 2, r = 4 };
	static float in[B * Co * r * r * H * W], out[B * Co * H * r * W * r], back[B * Co * r * r * H * W];
	randfill(in, NULL, sizeof in / 4, 1);
	pixel_shuffle_forward(out, in, B, Co, H, W, r);
	int ok = 1;
	for (int b = 0; b < B; b++)
		for (int c = 0; c < Co; c++)
			for (int h = 0; h < H; h++)
				for (int w = 0; w < W; w++)
					for (int i = 0; i < r; i++)
						for (int j = 0; j < r; j++)
							ok &= out[((b * Co + c) * H * r + h * r + i) * W * r + w * r + j] ==
							    in[((b * H + h) * W + w) * Co * r * r + c * r * r + i * r + j];
	tap(ok, "pixel shuffle: out[b,c,h*r+i,w*r+j] = dec[(b*H+h)*W+w, c*r*r+i*r+j]");
	pixel_shuffle_backward(back, out, B, Co, H, W, r);
	tap(memcmp(back, in, sizeof in) == 0, "backward is the inverse permutation");

	enum { R = 37, C = 70, ld = 75 };
	static float tok[B * (R + 1) * ld], map[B * C * R], tok2[B * (R + 1) * ld];
	randfill(tok, NULL, sizeof tok / 4, 1);
	transpose_forward(map, tok + ld, ld, (size_t)(R + 1) * ld, B, R, C);
	ok = 1;
	for (int b = 0; b < B; b++)
		for (int c = 0; c < C; c++)
			for (int t = 0; t < R; t++)
				ok &= map[(b * C + c) * R + t] == tok[(b * (R + 1) + 1 + t) * ld + c];
	tap(ok, "transpose: tokens behind a cls row to (B,C,R)");
	memset(tok2, 0, sizeof tok2);
	transpose_backward(tok2 + ld, ld, (size_t)(R + 1) * ld, map, B, R, C);
	ok = 1;
	for (int b = 0; b < B; b++)
		for (int t = 0; t < R + 1; t++)
			for (int c = 0; c < ld; c++) {
				float want = t > 0 && c < C ? tok[(b * (R + 1) + t) * ld + c] : 0;
				ok &= tok2[(b * (R + 1) + t) * ld + c] == want;
			}
	tap(ok, "transpose back writes the token rows only");
	return tap_done();
}
