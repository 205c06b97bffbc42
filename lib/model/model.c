/* model.c -- the generic part of a SimMIM model: the flat arena of weights
 * (m->w) and gradients (m->g) over the parameter table (param.c) in
 * official state_dict order, the official weight-decay flags, loading and
 * saving by official name, and the dispatch to the encoder architecture
 * and the prediction head (arch.h, registry.c).
 *
 * A state dict is a frame: one tensor per parameter under its official
 * name (F32 when we write it; F32, F16, BF16 or F64 accepted on load), the
 * official buffers (relative_position_index, attn_mask) optionally, and
 * __metadata__["mim.config"] = the config JSON with every key. */

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "mim/kern.h"
#include "mim/prof.h"

static void work_free(struct mim_model *m);
static int float_dtype(enum mim_dtype t);
static void convert(float *dst, const struct mim_tensor *t, size_t n);

static const struct mim_arch_ops *
ops_of(const struct mim_model *m)
{
	return mim_arch_get(m->cfg.arch);
}

static const struct mim_head_ops *
head_of(const struct mim_model *m)
{
	return mim_head_get(m->cfg.head);
}

static int
ends_with(const char *s, const char *suf)
{
	size_t n = strlen(s), k = strlen(suf);
	return n >= k && strcmp(s + n - k, suf) == 0;
}

/* whether name is in list (substring: contains one of it); a classifier
 * compares with the list's names as its own (mim_pname: the fine-tuning
 * model's no_weight_decay() is the SimMIM one without "encoder.") */
static int
in_list(const struct mim_model *m, const char *const *list, const char *name, int substring)
{
	for (; list && *list; list++) {
		const char *k = mim_pname(m, *list);
		if (substring ? strstr(name, k) != NULL : strcmp(name, k) == 0)
			return 1;
	}
	return 0;
}

/* the official rule, optimizer.py get_pretrain_param_groups (§7.1), and
 * get_finetune_param_groups for a classifier (the same test) */
static void
set_decay(struct mim_model *m)
{
	const struct mim_arch_ops *o = ops_of(m);

	for (int i = 0; i < m->np; i++) {
		struct mim_param *p = &m->p[i];
		p->decay = !(p->ndim == 1 || ends_with(p->name, ".bias") ||
		    in_list(m, o->skip, p->name, 0) || in_list(m, o->skip_kw, p->name, 1));
		p->lr_scale = 1.0;
	}
}

int
mim_model_layer_decay(struct mim_model *m, double decay)
{
	const struct mim_arch_ops *o = ops_of(m);

	if (!(decay > 0 && decay <= 1))
		return mim_seterr("layer decay %g is out of range (0, 1]", decay);
	for (int i = 0; i < m->np; i++) {
		struct mim_param *p = &m->p[i];
		int L = 0;
		p->layer_id = 0;
		p->lr_scale = 1.0;
		if (!mim_is_classifier(&m->cfg) || !o->layer_id)
			continue;
		p->layer_id = o->layer_id(m, p->name, &L);
		/* scales = [decay ** i for i in reversed(range(L + 2))] */
		p->lr_scale = pow(decay, L + 1 - p->layer_id);
	}
	return 0;
}

double
mim_layer_decay_default(const struct mim_config *c)
{
	/* the 800-epoch simmim_finetune configs, TRAIN.LAYER_DECAY */
	return c->arch == MIM_ARCH_SWIN ? 0.8 : 0.65;
}

struct mim_model *
mim_model_new(const struct mim_config *c)
{
	if (mim_config_check(c) < 0)
		return NULL;
	struct mim_model *m = mim_calloc(1, sizeof *m);
	if (!m)
		return NULL;
	m->cfg = *c;
	m->features = ops_of(m)->features(c);
	if (ops_of(m)->params(m) < 0)
		goto fail;
	m->head_p0 = m->np;
	if (head_of(m)->params(m) < 0)
		goto fail;
	set_decay(m);
	size_t bytes = (m->nw * sizeof(float) + 63) & ~(size_t)63;
	if (!(m->w = aligned_alloc(64, bytes))) {
		mim_seterr("out of memory (%zu parameters)", m->nw);
		goto fail;
	}
	memset(m->w, 0, bytes);
	if (c->target == MIM_TARGET_CLUSTERS &&
	    !(m->centres = mim_calloc((size_t)c->target_clusters * 3, sizeof *m->centres)))
		goto fail;
	return m;
fail:
	mim_model_free(m);
	return NULL;
}

void
mim_model_free(struct mim_model *m)
{
	if (!m)
		return;
	if (ops_of(m) && ops_of(m)->free)
		ops_of(m)->free(m);
	work_free(m);
	for (int i = 0; i < m->np; i++)
		free(m->p[i].name);
	free(m->p);
	free(m->w);
	free(m->g);
	free(m->centres);
	free(m);
}

int
mim_model_set_centres(struct mim_model *m, const struct mim_tensor *t, const char *what)
{
	char got[64];
	int K = m->cfg.target_clusters;

	if (m->cfg.target != MIM_TARGET_CLUSTERS)
		return mim_seterr("%s: the model's target is %s, not clusters", what,
		    mim_target_name(m->cfg.target));
	if (!float_dtype(t->dtype) || t->ndim != 2 || t->shape[0] != K || t->shape[1] != 3)
		return mim_seterr("%s: %s %s, want F32 [%d,3] (target_clusters %d colours, 0-255 RGB)",
		    what, mim_dtype_name(t->dtype), mim_shape_str(got, sizeof got, t->ndim, t->shape),
		    K, K);
	float *c = malloc((size_t)K * 3 * sizeof *c);
	if (!c)
		return mim_seterr("out of memory");
	convert(c, t, (size_t)K * 3);
	for (int i = 0; i < 3 * K; i++)
		if (!(c[i] >= 0 && c[i] <= 255)) {
			free(c);
			return mim_seterr("%s: centre %d is not a 0-255 colour", what, i / 3);
		}
	memcpy(m->centres, c, (size_t)K * 3 * sizeof *c);
	free(c);
	return 0;
}

int
mim_model_init(struct mim_model *m, uint64_t seed)
{
	memset(m->w, 0, m->nw * sizeof(float));
	if (ops_of(m)->init(m, seed) < 0)
		return -1;
	return head_of(m)->init(m, seed);
}

/* ---- state dicts ---------------------------------------------------------- */

static int
float_dtype(enum mim_dtype t)
{
	return t == MIM_F32 || t == MIM_F16 || t == MIM_BF16 || t == MIM_F64;
}

static void
convert(float *dst, const struct mim_tensor *t, size_t n)
{
	const unsigned char *s = t->data;

	switch (t->dtype) {
	case MIM_F32:
		memcpy(dst, s, n * 4);
		break;
	case MIM_F64:
		for (size_t i = 0; i < n; i++) {
			double v;
			memcpy(&v, s + 8 * i, 8);
			dst[i] = (float)v;
		}
		break;
	case MIM_F16:
	case MIM_BF16:
		for (size_t i = 0; i < n; i++) {
			uint16_t h;
			memcpy(&h, s + 2 * i, 2);
			dst[i] = t->dtype == MIM_F16 ? mim_f16_to_f32(h) : mim_bf16_to_f32(h);
		}
		break;
	default:
		break;
	}
}

/* the architecture's buffer_check, which knows the SimMIM names: a
 * classifier's buffer goes to it under "encoder." + its name */
static int
buffer_check(const struct mim_model *m, const struct mim_tensor *t)
{
	const struct mim_arch_ops *o = ops_of(m);
	char nm[256];

	if (!o->buffer_check)
		return 0;
	if (!mim_is_classifier(&m->cfg))
		return o->buffer_check(m, t);
	struct mim_tensor u = *t;
	snprintf(nm, sizeof nm, "encoder.%s", t->name);
	u.name = nm;
	return o->buffer_check(m, &u);
}

/* the architecture's buffers_add, under the names of m (mim_pname) */
static int
buffers_add(const struct mim_model *m, struct mim_frame *f)
{
	const struct mim_arch_ops *o = ops_of(m);

	if (!o->buffers_add)
		return 0;
	if (!mim_is_classifier(&m->cfg))
		return o->buffers_add(m, f);
	struct mim_frame *b = mim_frame_new();
	int rc = b ? o->buffers_add(m, b) : -1;
	for (int i = 0; rc == 0 && i < b->n; i++) {
		const struct mim_tensor *t = &b->t[i];
		if (!mim_frame_add(f, mim_pname(m, t->name), t->dtype, t->ndim, t->shape, t->data))
			rc = -1;
	}
	mim_frame_free(b);
	return rc;
}

int
mim_model_load(struct mim_model *m, const struct mim_frame *sd, int allow_extra)
{
	const struct mim_arch_ops *o = ops_of(m);
	char got[160], want[160];
	int missing = 0;
	const char *first = NULL;

	/* validate everything before touching m->w */
	for (int i = 0; i < m->np; i++) {
		const struct mim_param *p = &m->p[i];
		const struct mim_tensor *t = mim_frame_get(sd, p->name);
		if (!t) {
			if (!missing++)
				first = p->name;
			continue;
		}
		if (!float_dtype(t->dtype))
			return mim_seterr("tensor '%s': dtype %s, want a float type (F32, F16, BF16, F64)",
			    p->name, mim_dtype_name(t->dtype));
		int same = t->ndim == p->ndim;
		for (int d = 0; same && d < p->ndim; d++)
			same = t->shape[d] == p->shape[d];
		if (!same)
			return mim_seterr("tensor '%s': shape %s, but mim.config wants %s",
			    p->name, mim_shape_str(got, sizeof got, t->ndim, t->shape),
			    mim_shape_str(want, sizeof want, p->ndim, p->shape));
	}
	if (missing == 1)
		return mim_seterr("missing tensor '%s' (weights do not match mim.config)", first);
	if (missing)
		return mim_seterr("missing tensor '%s' and %d more (weights do not match mim.config)",
		    first, missing - 1);
	const struct mim_tensor *ce = mim_frame_get(sd, "decoder.centres");
	if (m->centres && !ce)
		return mim_seterr("missing tensor 'decoder.centres' (target clusters: the colour centres)");
	if (m->centres && mim_model_set_centres(m, ce, "tensor 'decoder.centres'") < 0)
		return -1;
	for (int i = 0; i < sd->n; i++) {
		const struct mim_tensor *t = &sd->t[i];
		if (mim_model_param(m, t->name) || (m->centres && t == ce))
			continue;
		int rc = buffer_check(m, t);
		if (rc == 0 && head_of(m)->buffer_check)
			rc = head_of(m)->buffer_check(m, t);
		if (rc < 0)
			return -1;
		if (rc > 0)
			continue;
		if (allow_extra && strncmp(t->name, "opt.", 4) == 0)
			continue;
		return mim_seterr("unexpected tensor '%s' (not a parameter of this %s model; weights do not match mim.config?)",
		    t->name, o->name);
	}
	for (int i = 0; i < m->np; i++) {
		const struct mim_param *p = &m->p[i];
		convert(m->w + p->off, mim_frame_get(sd, p->name), p->numel);
	}
	return 0;
}

struct mim_model *
mim_model_from_frame(const struct mim_frame *f)
{
	const char *js = mim_meta_get(f, "mim.config");
	struct mim_config c;

	if (!js) {
		mim_seterr("no \"mim.config\" in __metadata__: not a mim checkpoint (mim-ckpt import converts official ones)");
		return NULL;
	}
	if (mim_config_parse(&c, js) < 0) {
		mim_preferr("mim.config");
		return NULL;
	}
	struct mim_model *m = mim_model_new(&c);
	if (!m)
		return NULL;
	if (mim_model_load(m, f, 1) < 0) {
		mim_model_free(m);
		return NULL;
	}
	return m;
}

struct mim_model *
mim_model_open(const char *path)
{
	struct mim_frame *f = mim_load(path);

	if (!f)
		return NULL;
	struct mim_model *m = mim_model_from_frame(f);
	mim_frame_free(f);
	if (!m)
		mim_preferr("%s", path);
	return m;
}

struct mim_frame *
mim_model_to_frame(const struct mim_model *m)
{
	struct mim_frame *f = mim_frame_new();
	char *js = f ? mim_config_json(&m->cfg) : NULL;

	if (!js || mim_meta_set(f, "mim.config", js) < 0)
		goto fail;
	for (int i = 0; i < m->np; i++) {
		const struct mim_param *p = &m->p[i];
		if (!mim_frame_add(f, p->name, MIM_F32, p->ndim, p->shape, m->w + p->off))
			goto fail;
	}
	int64_t ksh[2] = {m->cfg.target_clusters, 3};
	if (m->centres && !mim_frame_add(f, "decoder.centres", MIM_F32, 2, ksh, m->centres))
		goto fail;
	if (buffers_add(m, f) < 0)
		goto fail;
	if (head_of(m)->buffers_add && head_of(m)->buffers_add(m, f) < 0)
		goto fail;
	free(js);
	return f;
fail:
	free(js);
	mim_frame_free(f);
	return NULL;
}

/* ---- computation: dispatch ------------------------------------------------ */

static int
check_B(int B)
{
	if (B < 1 || B > 1 << 20)
		return mim_seterr("batch size %d is out of range", B);
	return 0;
}

int
mim_model_nlayers(const struct mim_model *m)
{
	return ops_of(m)->nlayers(m);
}

int
mim_layer_shape(const struct mim_model *m, int layer, int64_t chw[3])
{
	if (layer < 0 || layer > mim_model_nlayers(m))
		return mim_seterr("layer %d is out of range [0, %d]", layer, mim_model_nlayers(m));
	return ops_of(m)->layer_shape(m, layer, chw);
}

int
mim_encode_layer(struct mim_model *m, int B, const float *img, const uint8_t *mask,
    int layer, float *out)
{
	if (check_B(B) < 0)
		return -1;
	if (layer < 0 || layer > mim_model_nlayers(m))
		return mim_seterr("layer %d is out of range [0, %d]", layer, mim_model_nlayers(m));
	if (!ops_of(m)->forward)
		return mim_seterr("%s: this libmim has no forward pass", ops_of(m)->name);
	if (mask && mim_is_classifier(&m->cfg))
		return mim_seterr("a classifier has no mask token: it encodes whole images");
	return ops_of(m)->forward(m, B, img, mask, layer, 0, 0, out);
}

int
mim_encode(struct mim_model *m, int B, const float *img, const uint8_t *mask,
    float *latent)
{
	return mim_encode_layer(m, B, img, mask, 0, latent);
}

/* ---- head and training: forward, loss, backward ----------------------------- */

/* buffers of mim_head and mim_model_grad, planned per batch size */
struct work {
	int B, grad;
	float *latent, *pred, *dpred, *dlatent, *dec;
};

static void
work_free(struct mim_model *m)
{
	struct work *w = m->work;

	if (!w)
		return;
	free(w->latent);
	free(w->pred);
	free(w->dpred);
	free(w->dlatent);
	free(w->dec);
	free(w);
	m->work = NULL;
}

static float *
falloc(size_t n)
{
	float *p = aligned_alloc(64, ((n ? n : 1) * sizeof(float) + 63) & ~(size_t)63);
	if (!p)
		mim_seterr("out of memory (%zu floats)", n);
	return p;
}

static struct work *
work_plan(struct mim_model *m, int B, int grad)
{
	struct work *w = m->work;

	if (w && w->B == B && (w->grad || !grad))
		return w;
	work_free(m);
	if (!(w = mim_calloc(1, sizeof *w)))
		return NULL;
	m->work = w;
	w->B = B;
	w->grad = grad;
	if (!(w->dec = falloc(head_of(m)->scratch(m, B))))
		goto fail;
	if (grad) {
		int64_t chw[3], pchw[3];
		ops_of(m)->layer_shape(m, 0, chw);
		head_of(m)->pred_shape(m, pchw);
		size_t nl = (size_t)B * chw[0] * chw[1] * chw[2];
		size_t np = (size_t)B * pchw[0] * pchw[1] * pchw[2];
		if (!(w->latent = falloc(nl)) || !(w->dlatent = falloc(nl)) ||
		    !(w->pred = falloc(np)) || !(w->dpred = falloc(np)))
			goto fail;
	}
	return w;
fail:
	work_free(m);
	return NULL;
}

void
mim_pred_shape(const struct mim_model *m, int64_t chw[3])
{
	head_of(m)->pred_shape(m, chw);
}

int
mim_head(struct mim_model *m, int B, const float *latent, float *pred)
{
	struct work *w;

	if (check_B(B) < 0 || !(w = work_plan(m, B, 0)))
		return -1;
	head_of(m)->forward(m, B, latent, pred, w->dec);
	return 0;
}

/* the start of a training pass: m->g allocated and zeroed (over the pool:
 * one thread writes about 10 GB/s, a base model's gradients are 350 MB),
 * the buffers of batch B planned; NULL with the error set */
static struct work *
grad_begin(struct mim_model *m, int B)
{
	const struct mim_arch_ops *ops = ops_of(m);
	struct work *w;

	if (check_B(B) < 0)
		return NULL;
	if (!ops->forward || !ops->backward) {
		mim_seterr("%s: this libmim has no training pass", ops->name);
		return NULL;
	}
	if (!m->g) {
		size_t bytes = (m->nw * sizeof(float) + 63) & ~(size_t)63;
		if (!(m->g = aligned_alloc(64, bytes))) {
			mim_seterr("out of memory (gradients of %zu parameters)", m->nw);
			return NULL;
		}
	}
	if (!(w = work_plan(m, B, 1)))
		return NULL;
	double t = MIM_PROF_BEGIN();
	kern_zero(m->g, m->nw);
	MIM_PROF_END("grad zero", t, 0);
	return w;
}

int
mim_model_grad(struct mim_model *m, int B, const float *img, const uint8_t *mask,
    const struct mim_lossopt *o, uint64_t seed, double *loss)
{
	const struct mim_arch_ops *ops = ops_of(m);
	struct work *w = grad_begin(m, B);

	if (!w)
		return -1;
	if (ops->forward(m, B, img, mask, 0, 1, seed, w->latent) < 0)
		return -1;
	head_of(m)->forward(m, B, w->latent, w->pred, w->dec);
	errno = 0;
	double l = mim_model_loss(m, o, B, img, mask, w->pred, w->dpred);
	if (isnan(l))	/* mim_loss said why when it ran out of memory or refused */
		return errno == ENOMEM || errno == EINVAL ? -1 : mim_seterr("loss is not a number");
	if (loss)
		*loss = l;
	head_of(m)->backward(m, B, w->dpred, w->dec, w->dlatent);
	return ops->backward(m, w->dlatent);
}

int
mim_model_grad_cls(struct mim_model *m, int B, const float *img, const float *target,
    uint64_t seed, double *loss, float *logits)
{
	const struct mim_arch_ops *ops = ops_of(m);
	struct work *w;

	if (!mim_is_classifier(&m->cfg))
		return mim_seterr("not a classifier (mim.config has no num_classes)");
	if (!(w = grad_begin(m, B)))
		return -1;
	if (ops->forward(m, B, img, NULL, 0, 1, seed, w->latent) < 0)
		return -1;
	/* pred (B,K,1,1) is the logits (B,K) */
	head_of(m)->forward(m, B, w->latent, w->pred, w->dec);
	int K = m->cfg.num_classes;
	double l = mim_soft_ce(B, K, w->pred, target, w->dpred);
	if (logits)
		memcpy(logits, w->pred, (size_t)B * K * sizeof *logits);
	if (loss)
		*loss = l;
	if (!isfinite(l))
		return mim_seterr("loss is not finite");
	head_of(m)->backward(m, B, w->dpred, w->dec, w->dlatent);
	return ops->backward(m, w->dlatent);
}
