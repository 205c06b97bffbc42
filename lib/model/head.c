/* head.c -- the SimMIM prediction head, "linear" (models/simmim.py
 * `decoder`), the first entry of the head table (arch.h):
 *   dec  = Conv2d(F, O = s*s*3, kernel 1)(latent)   a Linear on each position
 *   pred = PixelShuffle(s)(dec)                     (B,3,h*s,w*s)
 * latent (B,F,h,w) is channel-major; the 1x1 convolution is one product
 * over all B*h*w positions, tok (B*hw,F) @ W^T (O,F) + bias, with tok the
 * latent's positions as rows (a transpose); the pixel shuffle (kern's)
 * then reads dec (B*hw,O) directly. One product of B*hw rows instead of B
 * products of hw columns (36 for Swin at 192 px): BLAS is much faster on
 * that shape.
 *
 * Parameters: "decoder.0.weight" (O,F,1,1), "decoder.0.bias" (O), O =
 * s*s*3, with PyTorch's default Conv2d init (reference §5).
 *
 * Scratch (linear_scratch floats): tok (B*hw,F), dec (B*hw,O), and in the
 * backward dtok (B*hw,F). The backward reads the tok its forward left. */

#include <math.h>
#include <string.h>

#include "arch.h"
#include "mim/gemm.h"
#include "mim/kern.h"
#include "mim/prof.h"

static void
dims(const struct mim_model *m, int *F, int *O, int *h, int *s)
{
	*F = m->features;
	*s = m->cfg.encoder_stride;
	*O = *s * *s * 3;
	*h = m->cfg.img_size / *s;
}

static int
linear_params(struct mim_model *m)
{
	int s = m->cfg.encoder_stride;

	if (mim_addp(m, 4, (int64_t)s * s * 3, m->features, 1, 1, "decoder.0.weight") < 0 ||
	    mim_addp(m, 1, (int64_t)s * s * 3, 0, 0, 0, "decoder.0.bias") < 0)
		return -1;
	return 0;
}

/* PyTorch's default Conv2d init: kaiming_uniform_(a=sqrt(5)) =
 * U(+-1/sqrt(fan_in)), the bias the same */
static int
linear_init(struct mim_model *m, uint64_t seed)
{
	const struct mim_param *w = &m->p[m->head_p0], *b = &m->p[m->head_p0 + 1];
	double bound = 1.0 / sqrt((double)w->shape[1]);
	struct mim_rng r;

	mim_rng_seed(&r, seed, 2);
	mim_init_uniform(&r, m->w + w->off, w->numel, -bound, bound);
	mim_init_uniform(&r, m->w + b->off, b->numel, -bound, bound);
	return 0;
}

/* the image itself: 3 channels at full resolution */
static void
linear_pred_shape(const struct mim_model *m, int64_t chw[3])
{
	chw[0] = 3;
	chw[1] = chw[2] = m->cfg.img_size;
}

static size_t
linear_scratch(const struct mim_model *m, int B)
{
	int F, O, h, s;
	dims(m, &F, &O, &h, &s);
	return (size_t)B * h * h * (2 * (size_t)F + O);
}

static void
linear_head_forward(const struct mim_model *m, int B, const float *latent, float *pred,
    float *scratch)
{
	int F, O, h, s;
	dims(m, &F, &O, &h, &s);
	size_t hw = (size_t)h * h, P = (size_t)B * hw;
	const struct mim_param *w = &m->p[m->head_p0], *b = &m->p[m->head_p0 + 1];
	float *tok = scratch, *dec = scratch + P * F;
	double t0 = MIM_PROF_BEGIN();

	transpose_backward(tok, F, hw * F, latent, B, (int)hw, F);
	/* the bias first, then the product added (addmm's order) */
	linear_forward(dec, tok, m->w + w->off, m->w + b->off, (int)P, F, O);
	pixel_shuffle_forward(pred, dec, B, 3, h, h, s);
	MIM_PROF_END("head fwd", t0, 2.0 * P * O * F);
}

static void
linear_head_backward(struct mim_model *m, int B, const float *dpred, float *scratch,
    float *dlatent)
{
	int F, O, h, s;
	dims(m, &F, &O, &h, &s);
	size_t hw = (size_t)h * h, P = (size_t)B * hw;
	const struct mim_param *w = &m->p[m->head_p0], *b = &m->p[m->head_p0 + 1];
	float *tok = scratch, *ddec = scratch + P * F, *dtok = ddec + P * O;
	double t0 = MIM_PROF_BEGIN();

	/* tok: the forward's, still in scratch */
	pixel_shuffle_backward(ddec, dpred, B, 3, h, h, s);
	/* dtok = ddec @ W; dW += ddec^T @ tok; db += column sums of ddec */
	linear_backward(dlatent ? dtok : NULL, m->g + w->off, m->g + b->off, ddec, tok,
	    m->w + w->off, (int)P, F, O);
	if (dlatent)
		transpose_forward(dlatent, dtok, F, hw * F, B, (int)hw, F);
	MIM_PROF_END("head bwd", t0, (dlatent ? 4.0 : 2.0) * P * O * F);
}

const struct mim_head_ops mim_head_linear_ops = {
	.name = "linear",
	.params = linear_params,
	.init = linear_init,
	.pred_shape = linear_pred_shape,
	.scratch = linear_scratch,
	.forward = linear_head_forward,
	.backward = linear_head_backward,
};
