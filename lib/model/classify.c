/* classify.c -- the classification head "cls" of the head table (arch.h):
 * what turns an encoder into the official fine-tuning model
 * (reference §4.2 "Fine-tune ViT", §10; models/vision_transformer.py
 * forward_features + head, models/swin_transformer.py forward_features +
 * head).
 *
 *   pooled = mean over the h*w positions of latent (B,F,h,w)     (B,F)
 *   normed = fc_norm(pooled)       ViT only (LayerNorm, eps of the config);
 *                                  Swin pools after its final norm
 *   logits = normed @ W^T + b      head = Linear(F, K)            (B,K)
 *
 * The ViT latent of a use_mean_pooling model is x[:,1:] without a norm
 * (norm is Identity there), so the mean is t.mean(1) of the official
 * forward; Swin's latent is norm(x), and the mean its AdaptiveAvgPool1d.
 * The logits come out as a prediction of shape (K,1,1).
 *
 * Parameters: "head.weight" (K,F), "head.bias" (K), after the encoder's
 * (the ViT's fc_norm is the encoder's last, registered by vit.c, so the
 * order is the official one). Init: head.weight trunc_normal(std .02,
 * timm's bounds +-2), bias 0, both times init_scale (ViT's official 0.001;
 * Swin has none: 1).
 *
 * Scratch (floats): pooled (B,F), normed (B,F), dnormed (B,F), dpooled
 * (B,F), mean (B), rstd (B). The pooling and its backward run over the
 * B*F rows on the pool (kern_for), each row summed in its own order. */

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "arch.h"
#include "mim/kern.h"

#define O_(f) offsetof(struct mim_config, f)
static const struct mim_config_key cls_keys[] = {
	{"num_classes", MIM_K_INT, O_(num_classes)},
	{"init_scale", MIM_K_DBL, O_(init_scale)},
	{NULL, 0, 0},
};
#undef O_

int
mim_is_classifier(const struct mim_config *c)
{
	return c->num_classes > 0;
}

static void
cls_defaults(struct mim_config *c)
{
	/* ImageNet-1K, and the official head init of each architecture; the
	 * fine-tuning ViT pools the patch tokens (USE_MEAN_POOLING) */
	c->num_classes = 1000;
	c->init_scale = c->arch == MIM_ARCH_VIT ? 0.001 : 1.0;
	if (c->arch == MIM_ARCH_VIT)
		c->use_mean_pooling = 1;
}

static int
cls_check(const struct mim_config *c)
{
	if (c->num_classes < 1 || c->num_classes > 1 << 20)
		return mim_seterr("num_classes %d is out of range [1, 1048576]", c->num_classes);
	if (!isfinite(c->init_scale))
		return mim_seterr("init_scale is not a finite number");
	if (c->arch == MIM_ARCH_VIT && !c->use_mean_pooling)
		return mim_seterr("a ViT classifier pools the patch tokens: use_mean_pooling must be true");
	return 0;
}

static int
cls_params(struct mim_model *m)
{
	if (mim_addp(m, 2, m->cfg.num_classes, m->features, 0, 0, "head.weight") < 0 ||
	    mim_addp(m, 1, m->cfg.num_classes, 0, 0, 0, "head.bias") < 0)
		return -1;
	return 0;
}

static int
cls_init(struct mim_model *m, uint64_t seed)
{
	struct mim_rng r;
	const struct mim_param *w = &m->p[m->head_p0], *b = &m->p[m->head_p0 + 1];
	float s = (float)m->cfg.init_scale;

	mim_rng_seed(&r, seed, 2);
	mim_init_trunc_normal(&r, m->w + w->off, w->numel, 0.0, 0.02, -2.0, 2.0);
	for (size_t i = 0; i < w->numel; i++)
		m->w[w->off + i] *= s;
	mim_init_const(m->w + b->off, b->numel, 0.0f);
	return 0;
}

static void
logits_shape(const struct mim_model *m, int64_t chw[3])
{
	chw[0] = m->cfg.num_classes;
	chw[1] = chw[2] = 1;
}

/* positions of one latent map (B,F,H/s,W/s) */
static size_t
positions(const struct mim_model *m)
{
	size_t h = (size_t)(m->cfg.img_size / m->cfg.encoder_stride);
	return h * h;
}

/* rows [lo, hi) of the mean over hw positions, or of its backward */
struct rows {
	const float *in;
	float *out;
	size_t hw;
};

static void
pool_rows(void *ctx, size_t lo, size_t hi)
{
	const struct rows *j = ctx;

	for (size_t i = lo; i < hi; i++) {
		const float *x = j->in + i * j->hw;
		float s = 0;
		for (size_t k = 0; k < j->hw; k++)
			s += x[k];
		j->out[i] = s / (float)j->hw;
	}
}

/* the mean spreads its gradient evenly over the positions */
static void
spread_rows(void *ctx, size_t lo, size_t hi)
{
	const struct rows *j = ctx;

	for (size_t i = lo; i < hi; i++) {
		float d = j->in[i] / (float)j->hw;
		for (size_t k = 0; k < j->hw; k++)
			j->out[i * j->hw + k] = d;
	}
}

static size_t
cls_scratch(const struct mim_model *m, int B)
{
	return (size_t)B * (4 * (size_t)m->features + 2);
}

static void
cls_forward(const struct mim_model *m, int B, const float *latent, float *pred, float *scratch)
{
	int F = m->features, K = m->cfg.num_classes;
	size_t hw = positions(m);
	float *pooled = scratch, *normed = pooled + (size_t)B * F;
	float *mean = normed + 3 * (size_t)B * F, *rstd = mean + B;
	const struct mim_param *w = &m->p[m->head_p0], *b = &m->p[m->head_p0 + 1];
	const struct mim_param *nw = mim_model_param(m, "fc_norm.weight");
	const struct mim_param *nb = mim_model_param(m, "fc_norm.bias");

	struct rows j = {latent, pooled, hw};
	kern_for((size_t)B * F, 64, pool_rows, &j);
	if (nw && nb)
		layernorm_forward(normed, mean, rstd, pooled, m->w + nw->off, m->w + nb->off, B, F,
		    (float)m->cfg.layer_norm_eps);
	else
		memcpy(normed, pooled, (size_t)B * F * sizeof *normed);
	linear_forward(pred, normed, m->w + w->off, m->w + b->off, B, F, K);
}

static void
cls_backward(struct mim_model *m, int B, const float *dpred, float *scratch, float *dlatent)
{
	int F = m->features, K = m->cfg.num_classes;
	size_t hw = positions(m);
	float *pooled = scratch, *normed = pooled + (size_t)B * F;
	float *dnormed = normed + (size_t)B * F, *dpooled = dnormed + (size_t)B * F;
	float *mean = dpooled + (size_t)B * F, *rstd = mean + B;
	const struct mim_param *w = &m->p[m->head_p0], *b = &m->p[m->head_p0 + 1];
	const struct mim_param *nw = mim_model_param(m, "fc_norm.weight");
	const struct mim_param *nb = mim_model_param(m, "fc_norm.bias");

	/* dnormed (B,F) = dlogits @ W; dW += dlogits^T normed; db += sums */
	linear_backward(dnormed, m->g + w->off, m->g + b->off, dpred, normed, m->w + w->off,
	    B, F, K);
	if (nw && nb) {
		memset(dpooled, 0, (size_t)B * F * sizeof *dpooled);
		layernorm_backward(dpooled, m->g + nw->off, m->g + nb->off, dnormed, pooled,
		    m->w + nw->off, mean, rstd, B, F);
	} else {
		dpooled = dnormed;
	}
	if (!dlatent)
		return;
	struct rows j = {dpooled, dlatent, hw};
	kern_for((size_t)B * F, 64, spread_rows, &j);
}

const struct mim_head_ops mim_head_cls_ops = {
	.name = "cls",
	.keys = cls_keys,
	.defaults = cls_defaults,
	.check = cls_check,
	.params = cls_params,
	.init = cls_init,
	.pred_shape = logits_shape,
	.scratch = cls_scratch,
	.forward = cls_forward,
	.backward = cls_backward,
};
