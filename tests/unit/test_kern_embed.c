/* test_kern_embed.c -- the patch embedding (Conv2d k = s = P as im2col +
 * GEMM, tokens written behind a cls row) and the mask-token substitution
 * x*(1-w) + t*w: forward against a direct convolution in double, gradients
 * against central differences. */
#include "mim.h"
#include "mim/kern.h"
#include "gradcheck.h"

enum { B = 2, Ci = 3, H = 8, W = 8, P = 4, C = 5, G = H / P, T = G * G, N = T + 1, K = Ci * P * P };
static double IMG[B * Ci * H * W], WT[C * K], BS[C], TOK[C], DO[B * N * C];
static uint8_t mask[B * T] = {1, 0, 0, 1, 0, 1, 1, 1};

/* conv, then mask token; output in (B,N,C) rows 1..T */
static void
ref(double *x)
{
	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++)
			for (int c = 0; c < C; c++) {
				double s = BS[c];
				int gh = t / G, gw = t % G;
				for (int ci = 0; ci < Ci; ci++)
					for (int i = 0; i < P; i++)
						for (int j = 0; j < P; j++)
							s += WT[((c * Ci + ci) * P + i) * P + j] *
							    IMG[((b * Ci + ci) * H + gh * P + i) * W + gw * P + j];
				double w = mask[b * T + t];
				x[(b * N + 1 + t) * C + c] = s * (1 - w) + TOK[c] * w;
			}
}

static double
L(void)
{
	double x[B * N * C] = {0}, s = 0;
	ref(x);
	for (int b = 0; b < B; b++)
		for (int i = C; i < N * C; i++)
			s += x[b * N * C + i] * DO[b * N * C + i];
	return s;
}

int
main(void)
{
	static float img[B * Ci * H * W], w[C * K], bs[C], tok[C], dout[B * N * C], x[B * N * C], cols[B * T * K];
	double rx[B * N * C] = {0};
	randfill(img, IMG, B * Ci * H * W, 1);
	randfill(w, WT, C * K, 1);
	randfill(bs, BS, C, 1);
	randfill(tok, TOK, C, 1);
	randfill(dout, DO, B * N * C, 1);
	ref(rx);
	for (int i = 0; i < B * N * C; i++)
		x[i] = 77;
	patch_embed_forward(x + C, C, (size_t)N * C, cols, img, w, bs, B, Ci, H, W, P, C);
	mask_token_forward(x + C, C, (size_t)N * C, mask, tok, B, T, C);
	double e = 0, mx = 0;
	int clsrow = 1;
	for (int b = 0; b < B; b++) {
		for (int i = C; i < N * C; i++) {
			e = fmax(e, fabs(x[b * N * C + i] - rx[b * N * C + i]));
			mx = fmax(mx, fabs(rx[b * N * C + i]));
		}
		for (int i = 0; i < C; i++)
			clsrow &= x[b * N * C + i] == 77;
	}
	tap(e / mx < 1e-6 && clsrow, "patch embed + mask token vs direct convolution (%.2e), cls rows untouched", e / mx);
	int exact = 1;
	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++)
			if (mask[b * T + t])
				exact &= memcmp(x + (b * N + 1 + t) * C, tok, sizeof tok) == 0;
	tap(exact, "a masked token is the mask token exactly");
	float dpe[B * T * C], *dw = fzero(C * K), *db = fzero(C), *dt = fzero(C);
	mask_token_backward(dpe, dt, dout + C, C, (size_t)N * C, mask, B, T, C);
	patch_embed_backward(dw, db, dpe, C, (size_t)T * C, cols, B, Ci, H, W, P, C);
	gradcheck("dw (conv weight)", dw, WT, C * K, L, 1e-5);
	gradcheck("db (conv bias)", db, BS, C, L, 1e-5);
	gradcheck("dmask_token", dt, TOK, C, L, 1e-5);
	/* the strided (per-sample) backward path agrees with the contiguous one */
	float *dw2 = fzero(C * K), *db2 = fzero(C);
	float xs[B * N * C];
	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++)
			memcpy(xs + (b * N + 1 + t) * C, dpe + (b * T + t) * C, sizeof(float) * C);
	patch_embed_backward(dw2, db2, xs + C, C, (size_t)N * C, cols, B, Ci, H, W, P, C);
	tap(maxrel(dw2, dw, C * K) < 1e-6 && maxrel(db2, db, C) < 1e-6, "strided and contiguous backward agree");
	/* no mask: nothing substituted, full gradient to the patches */
	float y[B * N * C];
	memcpy(y, x, sizeof y);
	patch_embed_forward(y + C, C, (size_t)N * C, cols, img, w, bs, B, Ci, H, W, P, C);
	mask_token_forward(y + C, C, (size_t)N * C, NULL, tok, B, T, C);
	tap(memcmp(y + C, x + C, sizeof(float) * C) != 0 || !mask[0], "mask NULL: patches stay");
	free(dw);
	free(db);
	free(dt);
	free(dw2);
	free(db2);
	return tap_done();
}
