/* head.c -- the SimMIM prediction head (models/simmim.py `decoder`):
 *   dec  = Conv2d(F, O = s*s*3, kernel 1)(latent)   a GEMM per sample
 *   pred = PixelShuffle(s)(dec)                     (B,3,h*s,w*s)
 * latent (B,F,h,w) is channel-major, so the convolution of sample b is
 * W (O,F) @ latent_b (F,hw) + bias, written into dec (B,O,hw). */

#include <string.h>

#include "arch.h"
#include "mim/gemm.h"
#include "mim/kern.h"
#include "mim/prof.h"

static void
dims(const struct mim_model *m, int *F, int *O, int *h, int *s)
{
	*F = mim_config_features(&m->cfg);
	*s = m->cfg.encoder_stride;
	*O = *s * *s * 3;
	*h = m->cfg.img_size / *s;
}

size_t
mim_head_scratch(const struct mim_model *m, int B)
{
	int F, O, h, s;
	dims(m, &F, &O, &h, &s);
	return (size_t)B * O * h * h;
}

void
mim_head_forward(const struct mim_model *m, int B, const float *latent, float *pred,
    float *dec)
{
	int F, O, h, s;
	dims(m, &F, &O, &h, &s);
	size_t hw = (size_t)h * h;
	const struct mim_param *w = mim_model_param(m, "decoder.0.weight");
	const struct mim_param *b = mim_model_param(m, "decoder.0.bias");
	const float *W = m->w + w->off, *bias = m->w + b->off;
	double t0 = MIM_PROF_BEGIN();

	/* bias first, then dec_b += W @ latent_b (addmm's order) */
	for (int i = 0; i < B; i++)
		for (int o = 0; o < O; o++) {
			float *row = dec + ((size_t)i * O + o) * hw;
			for (size_t t = 0; t < hw; t++)
				row[t] = bias[o];
		}
	mim_gemm_batch(0, 0, O, (int)hw, F, 1.0f, W, F, 0, latent, (int)hw, (size_t)F * hw,
	    1.0f, dec, (int)hw, (size_t)O * hw, B);
	pixel_shuffle_forward(pred, dec, B, 3, h, h, s);
	MIM_PROF_END("head fwd", t0, 2.0 * B * O * hw * F);
}

void
mim_head_backward(struct mim_model *m, int B, const float *latent, const float *dpred,
    float *ddec, float *dlatent)
{
	int F, O, h, s;
	dims(m, &F, &O, &h, &s);
	size_t hw = (size_t)h * h;
	const struct mim_param *w = mim_model_param(m, "decoder.0.weight");
	const struct mim_param *b = mim_model_param(m, "decoder.0.bias");
	const float *W = m->w + w->off;
	float *dW = m->g + w->off, *db = m->g + b->off;
	double t0 = MIM_PROF_BEGIN();

	pixel_shuffle_backward(ddec, dpred, B, 3, h, h, s);
	/* dW (O,F) += sum_b ddec_b (O,hw) @ latent_b^T (hw,F), samples in order */
	for (int i = 0; i < B; i++)
		mim_gemm(0, 1, O, F, (int)hw, 1.0f, ddec + (size_t)i * O * hw, (int)hw,
		    latent + (size_t)i * F * hw, (int)hw, 1.0f, dW, F);
	/* db[o] += sum over samples and positions */
	for (int o = 0; o < O; o++) {
		double acc = 0;
		for (int i = 0; i < B; i++) {
			const float *row = ddec + ((size_t)i * O + o) * hw;
			for (size_t t = 0; t < hw; t++)
				acc += row[t];
		}
		db[o] += (float)acc;
	}
	/* dlatent_b (F,hw) = W^T (F,O) @ ddec_b (O,hw) */
	if (dlatent)
		mim_gemm_batch(1, 0, F, (int)hw, O, 1.0f, W, F, 0, ddec, (int)hw, (size_t)O * hw,
		    0.0f, dlatent, (int)hw, (size_t)F * hw, B);
	MIM_PROF_END("head bwd", t0, (dlatent ? 4.0 : 2.0) * B * O * hw * F);
}
