/* patch_embed.c -- the patch embedding, Conv2d(Ci, C, kernel = stride = P),
 * as im2col + one GEMM: a patch is a row of Ci*P*P pixels in the order
 * (ci, kh, kw) of the flattened conv weight (C,Ci,P,P). Tokens are the
 * patches in row-major order (PyTorch's flatten(2).transpose(1,2)). */

#include "mim/kern.h"
#include "kern_int.h"

struct im2col {
	float *cols;
	const float *img;
	int Ci, H, W, P, G, Gw;
};

static void
im2col_rows(void *p, size_t lo, size_t hi)
{
	const struct im2col *j = p;
	int K = j->Ci * j->P * j->P, T = j->G * j->Gw;

	for (size_t r = lo; r < hi; r++) {
		int b = (int)(r / (size_t)T), t = (int)(r % (size_t)T);
		int gh = t / j->Gw, gw = t % j->Gw;
		float *dst = j->cols + r * (size_t)K;
		for (int c = 0; c < j->Ci; c++)
			for (int kh = 0; kh < j->P; kh++) {
				const float *src = j->img + (((size_t)b * j->Ci + c) * j->H +
				    (size_t)gh * j->P + kh) * j->W + (size_t)gw * j->P;
				memcpy(dst, src, (size_t)j->P * sizeof(float));
				dst += j->P;
			}
	}
}

struct bfill {
	float *out;
	const float *bias;
	int ldo, T, C;
	size_t so;
};

static void
bias_rows(void *p, size_t lo, size_t hi)
{
	const struct bfill *j = p;

	for (size_t r = lo; r < hi; r++) {
		size_t b = r / (size_t)j->T, t = r % (size_t)j->T;
		memcpy(j->out + b * j->so + t * (size_t)j->ldo, j->bias, (size_t)j->C * sizeof(float));
	}
}

void
patch_embed_forward(float *out, int ldo, size_t so, float *cols, const float *img,
    const float *w, const float *bias, int B, int Ci, int H, int W, int P, int C)
{
	double prof_t_ = MIM_PROF_BEGIN();
	int G = H / P, Gw = W / P, T = G * Gw, K = Ci * P * P;
	struct im2col j = {cols, img, Ci, H, W, P, G, Gw};

	kern_for((size_t)B * T, 64, im2col_rows, &j);
	if (bias) {
		struct bfill f = {out, bias, ldo, T, C, so};
		kern_for((size_t)B * T, 1 + 16384 / (size_t)C, bias_rows, &f);
	}
	float beta = bias ? 1.0f : 0.0f;
	if (so == (size_t)T * ldo)	/* samples contiguous: one product */
		mim_gemm(0, 1, B * T, C, K, 1.0f, cols, K, w, K, beta, out, ldo);
	else
		for (int b = 0; b < B; b++)
			mim_gemm(0, 1, T, C, K, 1.0f, cols + (size_t)b * T * K, K, w, K, beta,
			    out + (size_t)b * so, ldo);
	MIM_PROF_END("patch_embed fwd", prof_t_, 2.0 * B * (H / P) * (W / P) * C * Ci * P * P);
}

void
patch_embed_backward(float *dw, float *db, const float *dout, int ldo, size_t so,
    const float *cols, int B, int Ci, int H, int W, int P, int C)
{
	double prof_t_ = MIM_PROF_BEGIN();
	int T = (H / P) * (W / P), K = Ci * P * P;

	/* dw (C,K) += dout^T (C,T) @ cols (T,K), summed over samples */
	if (dw) {
		if (so == (size_t)T * ldo)
			mim_gemm(1, 0, C, K, B * T, 1.0f, dout, ldo, cols, K, 1.0f, dw, K);
		else
			for (int b = 0; b < B; b++)
				mim_gemm(1, 0, C, K, T, 1.0f, dout + (size_t)b * so, ldo,
				    cols + (size_t)b * T * K, K, 1.0f, dw, K);
	}
	if (db) {
		if (so == (size_t)T * ldo)
			kern_colsum(db, dout, (size_t)B * T, C, (size_t)ldo);
		else
			for (int b = 0; b < B; b++)
				kern_colsum(db, dout + (size_t)b * so, (size_t)T, C, (size_t)ldo);
	}
	MIM_PROF_END("patch_embed bwd", prof_t_, 2.0 * B * (H / P) * (W / P) * C * Ci * P * P);
}
