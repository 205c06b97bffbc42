/* head.c -- the prediction heads of the head table (arch.h): "linear",
 * SimMIM's (models/simmim.py `decoder`, the default), and "mlp", the
 * paper's 2-layer MLP head (its table of heads, below).
 *
 * LINEAR
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
#include <stddef.h>
#include <string.h>

#include "arch.h"
#include "mim/gemm.h"
#include "mim/kern.h"
#include "mim/prof.h"

/* F latent channels, h latent side, C predicted channels, r the shuffle
 * factor (s/d), O = r*r*C outputs per position (target.c) */
static void
dims(const struct mim_model *m, int *F, int *O, int *h, int *s)
{
	int r = m->cfg.encoder_stride / mim_pred_div(&m->cfg);

	*F = m->features;
	*s = r;
	*O = r * r * mim_pred_channels(&m->cfg);
	*h = m->cfg.img_size / m->cfg.encoder_stride;
}

static int
linear_params(struct mim_model *m)
{
	int F, O, h, s;
	dims(m, &F, &O, &h, &s);

	if (mim_addp(m, 4, O, F, 1, 1, "decoder.0.weight") < 0 ||
	    mim_addp(m, 1, O, 0, 0, 0, "decoder.0.bias") < 0)
		return -1;
	return 0;
}

/* PyTorch's default Conv2d init of every (weight, bias) pair of the head,
 * in order: kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in)), the bias
 * the same */
static int
conv_init(struct mim_model *m, uint64_t seed)
{
	struct mim_rng r;

	mim_rng_seed(&r, seed, 2);
	for (int i = m->head_p0; i + 1 < m->np; i += 2) {
		const struct mim_param *w = &m->p[i], *b = &m->p[i + 1];
		double bound = 1.0 / sqrt((double)w->shape[1]);
		mim_init_uniform(&r, m->w + w->off, w->numel, -bound, bound);
		mim_init_uniform(&r, m->w + b->off, b->numel, -bound, bound);
	}
	return 0;
}

/* decoder.0 and nothing after it */
static int
linear_infer(const struct mim_frame *sd, json_t *o)
{
	return mim_frame_get(sd, "decoder.0.weight") && !mim_frame_get(sd, "decoder.2.weight");
}

/* (C, H/d, W/d): target.c's channels at its resolution */
static void
pixels_shape(const struct mim_model *m, int64_t chw[3])
{
	chw[0] = mim_pred_channels(&m->cfg);
	chw[1] = chw[2] = m->cfg.img_size / mim_pred_div(&m->cfg);
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
	pixel_shuffle_forward(pred, dec, B, mim_pred_channels(&m->cfg), h, h, s);
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
	pixel_shuffle_backward(ddec, dpred, B, mim_pred_channels(&m->cfg), h, h, s);
	/* dtok = ddec @ W; dW += ddec^T @ tok; db += column sums of ddec */
	linear_backward(dlatent ? dtok : NULL, m->g + w->off, m->g + b->off, ddec, tok,
	    m->w + w->off, (int)P, F, O);
	if (dlatent)
		transpose_forward(dlatent, dtok, F, hw * F, B, (int)hw, F);
	MIM_PROF_END("head bwd", t0, (dlatent ? 4.0 : 2.0) * P * O * F);
}

const struct mim_head_ops mim_head_linear_ops = {
	.name = "linear",
	.infer = linear_infer,
	.params = linear_params,
	.init = conv_init,
	.pred_shape = pixels_shape,
	.scratch = linear_scratch,
	.forward = linear_head_forward,
	.backward = linear_head_backward,
};

/* MLP
 *   hid  = Conv2d(F, D, 1)(latent)     decoder.0, a Linear on each position
 *   act  = GELU(hid)                   decoder.1 (exact erf GELU)
 *   dec  = Conv2d(D, O, 1)(act)        decoder.2, O = s*s*3
 *   pred = PixelShuffle(s)(dec)        decoder.3
 * D = "head_hidden" of mim.config (0: the encoder width F). The same
 * layout as the linear head: tok (B*hw,F) the latent's positions as rows,
 * fc1 and GELU fused (kern's linear_gelu), fc2, the shuffle from rows.
 * Scratch: tok (P,F), hid (P,D) (GELU' at fc1's output), act (P,D),
 * dec (P,O), and in the backward dhid (P,D), dtok (P,F); P = B*h*w. */

#define O_(f) offsetof(struct mim_config, f)
static const struct mim_config_key mlp_keys[] = {
	{"head_hidden", MIM_K_INT, O_(head_hidden)},
	{NULL, 0, 0},
};
#undef O_

static int
mlp_hidden(const struct mim_model *m)
{
	return m->cfg.head_hidden ? m->cfg.head_hidden : m->features;
}

static int
mlp_check(const struct mim_config *c)
{
	if (c->head_hidden < 0 || c->head_hidden > 1 << 16)
		return mim_seterr("head_hidden %d is out of range [0, 65536]", c->head_hidden);
	return 0;
}

/* decoder.0 (D,F,1,1) and decoder.2: head_hidden D (0 when it is F) */
static int
mlp_infer(const struct mim_frame *sd, json_t *o)
{
	const struct mim_tensor *w = mim_frame_get(sd, "decoder.0.weight");

	if (!w || w->ndim != 4 || !mim_frame_get(sd, "decoder.2.weight"))
		return 0;
	json_object_set_new(o, "head_hidden", json_integer(w->shape[0] == w->shape[1] ? 0 : w->shape[0]));
	return 1;
}

static int
mlp_params(struct mim_model *m)
{
	int F, O, h, s, D = mlp_hidden(m);
	dims(m, &F, &O, &h, &s);

	if (mim_addp(m, 4, D, F, 1, 1, "decoder.0.weight") < 0 ||
	    mim_addp(m, 1, D, 0, 0, 0, "decoder.0.bias") < 0 ||
	    mim_addp(m, 4, O, D, 1, 1, "decoder.2.weight") < 0 ||
	    mim_addp(m, 1, O, 0, 0, 0, "decoder.2.bias") < 0)
		return -1;
	return 0;
}

static size_t
mlp_scratch(const struct mim_model *m, int B)
{
	int F, O, h, s;
	dims(m, &F, &O, &h, &s);
	return (size_t)B * h * h * (2 * (size_t)F + 4 * (size_t)mlp_hidden(m) + O);
}

static void
mlp_head_forward(const struct mim_model *m, int B, const float *latent, float *pred,
    float *scratch)
{
	int F, O, h, s, D = mlp_hidden(m);
	dims(m, &F, &O, &h, &s);
	size_t hw = (size_t)h * h, P = (size_t)B * hw;
	const struct mim_param *p = &m->p[m->head_p0];
	float *tok = scratch, *hid = tok + P * F, *act = hid + P * D, *dec = act + P * D;
	double t0 = MIM_PROF_BEGIN();

	transpose_backward(tok, F, hw * F, latent, B, (int)hw, F);
	linear_gelu_forward(hid, act, tok, m->w + p[0].off, m->w + p[1].off, (int)P, F, D);
	linear_forward(dec, act, m->w + p[2].off, m->w + p[3].off, (int)P, D, O);
	pixel_shuffle_forward(pred, dec, B, mim_pred_channels(&m->cfg), h, h, s);
	MIM_PROF_END("head fwd", t0, 2.0 * P * D * (F + O));
}

static void
mlp_head_backward(struct mim_model *m, int B, const float *dpred, float *scratch,
    float *dlatent)
{
	int F, O, h, s, D = mlp_hidden(m);
	dims(m, &F, &O, &h, &s);
	size_t hw = (size_t)h * h, P = (size_t)B * hw;
	const struct mim_param *p = &m->p[m->head_p0];
	float *tok = scratch, *hid = tok + P * F, *act = hid + P * D, *ddec = act + P * D;
	float *dhid = ddec + P * O, *dtok = dhid + P * D;
	double t0 = MIM_PROF_BEGIN();

	pixel_shuffle_backward(ddec, dpred, B, mim_pred_channels(&m->cfg), h, h, s);
	/* dhid = (ddec @ W2) * hid (= gelu' at fc1's output); dW2 += ddec^T act;
	 * db2 += sums */
	linear_gelu_backward(dhid, m->g + p[2].off, m->g + p[3].off, ddec, act, hid,
	    m->w + p[2].off, (int)P, D, O);
	linear_backward(dlatent ? dtok : NULL, m->g + p[0].off, m->g + p[1].off, dhid, tok,
	    m->w + p[0].off, (int)P, F, D);
	if (dlatent)
		transpose_forward(dlatent, dtok, F, hw * F, B, (int)hw, F);
	MIM_PROF_END("head bwd", t0, (dlatent ? 4.0 : 3.0) * P * D * (F + O));
}

const struct mim_head_ops mim_head_mlp_ops = {
	.name = "mlp",
	.infer = mlp_infer,
	.keys = mlp_keys,
	.check = mlp_check,
	.params = mlp_params,
	.init = conv_init,
	.pred_shape = pixels_shape,
	.scratch = mlp_scratch,
	.forward = mlp_head_forward,
	.backward = mlp_head_backward,
};
