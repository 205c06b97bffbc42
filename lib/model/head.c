/* head.c -- the SimMIM prediction head (models/simmim.py `decoder`):
 *   dec  = Conv2d(F, O = s*s*3, kernel 1)(latent)   a Linear on each position
 *   pred = PixelShuffle(s)(dec)                     (B,3,h*s,w*s)
 * latent (B,F,h,w) is channel-major; the 1x1 convolution is one product
 * over all B*h*w positions, tok (B*hw,F) @ W^T (O,F) + bias, with tok the
 * latent's positions as rows (a transpose); the pixel shuffle then reads
 * dec (B*hw,O) directly. One product of B*hw rows instead of B products
 * of hw columns (36 for Swin at 192 px): BLAS is much faster on that shape.
 *
 * Scratch (mim_head_scratch floats): tok (B*hw,F), dec (B*hw,O), and in the
 * backward dtok (B*hw,F). The backward reads the tok its forward left. */

#include <string.h>

#include "arch.h"
#include "mim/gemm.h"
#include "mim/kern.h"
#include "mim/prof.h"
#include "../kern/kern_int.h"

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
	return (size_t)B * h * h * (2 * (size_t)F + O);
}

/* pred (B,3,h*s,w*s) from / to dec (B*hw, O), o = c*s*s + i*s + j: one job
 * per row (b, c, y) of pred */
struct shuf {
	float *pred, *dec;
	int h, s, back;
};

static void
shuffle_rows(void *p, size_t lo, size_t hi)
{
	const struct shuf *j = p;
	int h = j->h, s = j->s, H = h * s, O = 3 * s * s;

	for (size_t row = lo; row < hi; row++) {
		size_t bc = row / (size_t)H;
		int y = (int)(row % (size_t)H), b = (int)(bc / 3), c = (int)(bc % 3);
		float *pr = j->pred + row * H;
		const size_t base = ((size_t)b * h + y / s) * h;
		int o0 = c * s * s + (y % s) * s;
		for (int x = 0; x < H; x++) {
			float *d = j->dec + (base + x / s) * O + o0 + x % s;
			if (j->back)
				*d = pr[x];
			else
				pr[x] = *d;
		}
	}
}

static void
shuffle(float *pred, float *dec, int B, int h, int s, int back)
{
	struct shuf j = {pred, dec, h, s, back};
	kern_for((size_t)B * 3 * h * s, 16, shuffle_rows, &j);
}

void
mim_head_forward(const struct mim_model *m, int B, const float *latent, float *pred,
    float *scratch)
{
	int F, O, h, s;
	dims(m, &F, &O, &h, &s);
	size_t hw = (size_t)h * h, P = (size_t)B * hw;
	const struct mim_param *w = mim_model_param(m, "decoder.0.weight");
	const struct mim_param *b = mim_model_param(m, "decoder.0.bias");
	float *tok = scratch, *dec = scratch + P * F;
	double t0 = MIM_PROF_BEGIN();

	transpose_backward(tok, F, hw * F, latent, B, (int)hw, F);
	/* the bias first, then the product added (addmm's order) */
	linear_forward(dec, tok, m->w + w->off, m->w + b->off, (int)P, F, O);
	shuffle(pred, dec, B, h, s, 0);
	MIM_PROF_END("head fwd", t0, 2.0 * P * O * F);
}

void
mim_head_backward(struct mim_model *m, int B, const float *dpred, float *scratch,
    float *dlatent)
{
	int F, O, h, s;
	dims(m, &F, &O, &h, &s);
	size_t hw = (size_t)h * h, P = (size_t)B * hw;
	const struct mim_param *w = mim_model_param(m, "decoder.0.weight");
	const struct mim_param *b = mim_model_param(m, "decoder.0.bias");
	float *tok = scratch, *ddec = scratch + P * F, *dtok = ddec + P * O;
	double t0 = MIM_PROF_BEGIN();

	/* tok: the forward's, still in scratch */
	shuffle((float *)dpred, ddec, B, h, s, 1);
	/* dtok = ddec @ W; dW += ddec^T @ tok; db += column sums of ddec */
	linear_backward(dlatent ? dtok : NULL, m->g + w->off, m->g + b->off, ddec, tok,
	    m->w + w->off, (int)P, F, O);
	if (dlatent)
		transpose_forward(dlatent, dtok, F, hw * F, B, (int)hw, F);
	MIM_PROF_END("head bwd", t0, (dlatent ? 4.0 : 2.0) * P * O * F);
}
