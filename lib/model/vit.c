/* vit.c -- the SimMIM ViT encoder, exactly the official
 * VisionTransformerForSimMIM (reference §4.2, BEiT-derived):
 *
 *   x = patch_embed(img)                    conv k=p s=p as a GEMM, (B,T,C)
 *   x = x*(1-w) + mask_token*w              w = mask, before the cls token
 *   x = cat(cls_token, x) [+ pos_embed]     (B,N,C), N = T+1
 *   bias = rel_pos_bias()                   shared (Hh,N,N), cls indices
 *   for each block:                         pre-norm, layer scale gamma
 *     x = x + drop_path(gamma_1 * attn(norm1(x), bias))
 *     x = x + drop_path(gamma_2 * mlp(norm2(x)))
 *   x = norm(x)                             LN eps 1e-6 (Identity if mean pooling)
 *   latent = x[:,1:] as (B,C,G,G)
 *
 * attn: qkv = x @ Wqkv^T + (q_bias, 0, v_bias) -- k has no bias; q is
 * scaled by head_dim^-0.5 before q @ k^T; + bias; softmax; @ v; proj.
 *
 * Dims: B batch, G = img/p patch grid, T = G*G patches, N = T+1 tokens,
 * C embed_dim, Hh heads, D = C/Hh head dim, F = int(C*mlp_ratio) hidden,
 * R = (2G-1)^2 + 3 rows of a relative position table. */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "mim/gemm.h"

struct vblock {		/* parameter indices of one block (-1: absent) */
	int g1, g2, n1w, n1b, qb, vb, table, qkvw, projw, projb, n2w, n2b,
	    fc1w, fc1b, fc2w, fc2b;
};

struct vit {
	int G, T, N, C, Hh, D, F, R, L, P;	/* P = patch_size, L = depth */
	int cls, pos, mtok, pew, peb, table, nw, nb;	/* parameter indices */
	struct vblock *blk;
	int64_t *index;		/* relative_position_index (N,N) */
	struct vplan *plan;	/* activations, planned per batch size */
};

static struct vit *
V(const struct mim_model *m)
{
	return m->priv;
}

static int
has_gamma(const struct mim_config *c)
{
	/* official: gammas exist unless init_values is None (JSON null) */
	return !isnan(c->init_values);
}

/* ---- parameters ------------------------------------------------------------ */

static int
vit_params(struct mim_model *m)
{
	const struct mim_config *c = &m->cfg;
	struct vit *v = mim_calloc(1, sizeof *v);

	if (!v)
		return -1;
	m->priv = v;
	v->P = c->patch_size;
	v->G = c->img_size / c->patch_size;
	v->T = v->G * v->G;
	v->N = v->T + 1;
	v->C = c->embed_dim;
	v->Hh = c->num_heads;
	v->D = v->C / v->Hh;
	v->F = (int)(c->embed_dim * c->mlp_ratio);
	v->R = (2 * v->G - 1) * (2 * v->G - 1) + 3;
	v->L = c->depth;
	if (!(v->blk = mim_calloc((size_t)v->L, sizeof *v->blk)))
		return -1;
	int C = v->C, F = v->F;
#define P1(a) mim_addp(m, 1, a, 0, 0, 0,
#define P2(a, b) mim_addp(m, 2, a, b, 0, 0,
#define P3(a, b, c) mim_addp(m, 3, a, b, c, 0,
	/* named_parameters order: the encoder's own parameters (cls_token,
	 * pos_embed, then mask_token registered by the SimMIM subclass),
	 * then the children: patch_embed, rel_pos_bias, blocks, norm,
	 * fc_norm */
	v->cls = P3(1, 1, C) "encoder.cls_token");
	v->pos = c->use_abs_pos_emb ? P3(1, v->N, C) "encoder.pos_embed") : -1;
	v->mtok = P3(1, 1, C) "encoder.mask_token");
	v->pew = mim_addp(m, 4, C, c->in_chans, v->P, v->P, "encoder.patch_embed.proj.weight");
	v->peb = P1(C) "encoder.patch_embed.proj.bias");
	v->table = c->use_shared_rel_pos_bias ?
	    P2(v->R, v->Hh) "encoder.rel_pos_bias.relative_position_bias_table") : -1;
	for (int i = 0; i < v->L; i++) {
		struct vblock *b = &v->blk[i];
		/* Block's own parameters (gamma_1, gamma_2) come before its
		 * children; Attention's own (q_bias, v_bias, table) before qkv */
		b->g1 = has_gamma(c) ? P1(C) "encoder.blocks.%d.gamma_1", i) : -1;
		b->g2 = has_gamma(c) ? P1(C) "encoder.blocks.%d.gamma_2", i) : -1;
		b->n1w = P1(C) "encoder.blocks.%d.norm1.weight", i);
		b->n1b = P1(C) "encoder.blocks.%d.norm1.bias", i);
		b->qb = c->qkv_bias ? P1(C) "encoder.blocks.%d.attn.q_bias", i) : -1;
		b->vb = c->qkv_bias ? P1(C) "encoder.blocks.%d.attn.v_bias", i) : -1;
		b->table = c->use_rel_pos_bias ?
		    P2(v->R, v->Hh) "encoder.blocks.%d.attn.relative_position_bias_table", i) : -1;
		b->qkvw = P2(3 * C, C) "encoder.blocks.%d.attn.qkv.weight", i);
		b->projw = P2(C, C) "encoder.blocks.%d.attn.proj.weight", i);
		b->projb = P1(C) "encoder.blocks.%d.attn.proj.bias", i);
		b->n2w = P1(C) "encoder.blocks.%d.norm2.weight", i);
		b->n2b = P1(C) "encoder.blocks.%d.norm2.bias", i);
		b->fc1w = P2(F, C) "encoder.blocks.%d.mlp.fc1.weight", i);
		b->fc1b = P1(F) "encoder.blocks.%d.mlp.fc1.bias", i);
		b->fc2w = P2(C, F) "encoder.blocks.%d.mlp.fc2.weight", i);
		b->fc2b = P1(C) "encoder.blocks.%d.mlp.fc2.bias", i);
		if (b->n1w < 0 || b->fc2b < 0)
			return -1;
	}
	/* use_mean_pooling: norm is Identity and an fc_norm LayerNorm exists
	 * (unused by the SimMIM forward, but in the state dict) */
	const char *nn = c->use_mean_pooling ? "encoder.fc_norm" : "encoder.norm";
	v->nw = P1(C) "%s.weight", nn);
	v->nb = P1(C) "%s.bias", nn);
	if (c->use_mean_pooling)
		v->nw = v->nb = -1;
#undef P1
#undef P2
#undef P3
	if (v->cls < 0 || v->mtok < 0 || v->pew < 0 || v->peb < 0 ||
	    (c->use_shared_rel_pos_bias && v->table < 0))
		return -1;
	/* relative_position_index (N,N): the Swin formula over the patch
	 * grid, plus the three cls entries */
	if (!(v->index = mim_malloc((size_t)v->N * v->N * sizeof *v->index)))
		return -1;
	int G = v->G, N = v->N, R = v->R;
	for (int p = 0; p < N; p++)
		for (int q = 0; q < N; q++) {
			int64_t ix;
			if (p == 0 && q == 0)
				ix = R - 1;		/* cls to cls */
			else if (p == 0)
				ix = R - 3;		/* cls to token */
			else if (q == 0)
				ix = R - 2;		/* token to cls */
			else {
				int hp = (p - 1) / G, wp = (p - 1) % G;
				int hq = (q - 1) / G, wq = (q - 1) % G;
				ix = (int64_t)(hp - hq + G - 1) * (2 * G - 1) + (wp - wq + G - 1);
			}
			v->index[(size_t)p * N + q] = ix;
		}
	return 0;
}

static const char *const vit_skip[] = {"encoder.pos_embed", "encoder.cls_token", NULL};

static int
vit_buffer_check(const struct mim_model *m, const struct mim_tensor *t)
{
	const struct vit *v = V(m);
	const char *suf = ".relative_position_index";
	size_t n = strlen(t->name), k = strlen(suf);

	if (n < k || strcmp(t->name + n - k, suf) != 0)
		return 0;
	int ok = 0;
	if (strcmp(t->name, "encoder.rel_pos_bias.relative_position_index") == 0)
		ok = m->cfg.use_shared_rel_pos_bias;
	else if (m->cfg.use_rel_pos_bias)
		for (int i = 0; i < v->L && !ok; i++) {
			char nm[96];
			snprintf(nm, sizeof nm, "encoder.blocks.%d.attn.relative_position_index", i);
			ok = strcmp(t->name, nm) == 0;
		}
	if (!ok)
		return 0;
	if (t->dtype != MIM_I64 && t->dtype != MIM_I32)
		return mim_seterr("buffer '%s': dtype %s, want I64", t->name, mim_dtype_name(t->dtype));
	if (t->ndim != 2 || t->shape[0] != v->N || t->shape[1] != v->N)
		return mim_seterr("buffer '%s': shape is not [%d,%d]", t->name, v->N, v->N);
	for (int64_t i = 0; i < (int64_t)v->N * v->N; i++)
		if ((int64_t)mim_tensor_get(t, i) != v->index[i])
			return mim_seterr("buffer '%s': differs from the official index at %lld",
			    t->name, (long long)i);
	return 1;
}

static int
vit_buffers_add(const struct mim_model *m, struct mim_frame *f)
{
	const struct vit *v = V(m);
	int64_t sh[2] = {v->N, v->N};

	if (m->cfg.use_shared_rel_pos_bias &&
	    !mim_frame_add(f, "encoder.rel_pos_bias.relative_position_index", MIM_I64, 2, sh, v->index))
		return -1;
	if (m->cfg.use_rel_pos_bias)
		for (int i = 0; i < v->L; i++) {
			char nm[96];
			snprintf(nm, sizeof nm, "encoder.blocks.%d.attn.relative_position_index", i);
			if (!mim_frame_add(f, nm, MIM_I64, 2, sh, v->index))
				return -1;
		}
	return 0;
}

/* ---- initialisation (reference §4.2) --------------------------------------- */

static void
tn(struct mim_rng *r, const struct mim_model *m, int i)
{
	/* VisionTransformerForSimMIM._trunc_normal_: std .02, cut at +-1 sigma */
	if (i >= 0)
		mim_init_trunc_normal(r, mim_pw(m, i), m->p[i].numel, 0.0, 0.02, -0.02, 0.02);
}

static void
fill(const struct mim_model *m, int i, float val)
{
	if (i >= 0)
		mim_init_const(mim_pw(m, i), m->p[i].numel, val);
}

static int
vit_init(struct mim_model *m, uint64_t seed)
{
	const struct vit *v = V(m);
	struct mim_rng r;

	mim_rng_seed(&r, seed, 1);
	/* 1. pos_embed, cls_token */
	tn(&r, m, v->pos);
	tn(&r, m, v->cls);
	/* 2. self.apply(_init_weights), modules in order: Linear and Conv2d
	 * weights truncated normal, biases 0, LayerNorm 1 / 0. q_bias,
	 * v_bias and the relative position tables stay zero. */
	tn(&r, m, v->pew);
	for (int i = 0; i < v->L; i++) {
		const struct vblock *b = &v->blk[i];
		fill(m, b->n1w, 1);
		tn(&r, m, b->qkvw);
		tn(&r, m, b->projw);
		fill(m, b->n2w, 1);
		tn(&r, m, b->fc1w);
		tn(&r, m, b->fc2w);
		/* gammas: init_values * ones */
		fill(m, b->g1, (float)m->cfg.init_values);
		fill(m, b->g2, (float)m->cfg.init_values);
	}
	fill(m, v->nw, 1);
	if (m->cfg.use_mean_pooling) {	/* fc_norm is a LayerNorm too */
		struct mim_param *p = mim_model_param(m, "encoder.fc_norm.weight");
		mim_init_const(m->w + p->off, p->numel, 1);
	}
	/* 3. fix_init_weight: block i (0-based) divides attn.proj.weight and
	 * mlp.fc2.weight by sqrt(2 (i+1)) */
	for (int i = 0; i < v->L; i++) {
		const struct vblock *b = &v->blk[i];
		float s = (float)sqrt(2.0 * (i + 1));
		float *pw = mim_pw(m, b->projw), *fw = mim_pw(m, b->fc2w);
		for (size_t k = 0; k < m->p[b->projw].numel; k++)
			pw[k] /= s;
		for (size_t k = 0; k < m->p[b->fc2w].numel; k++)
			fw[k] /= s;
	}
	/* 4. mask_token (the SimMIM subclass, after the base constructor) */
	tn(&r, m, v->mtok);
	return 0;
}

static int
vit_nlayers(const struct mim_model *m)
{
	return V(m)->L;
}

static int
vit_layer_shape(const struct mim_model *m, int layer, int64_t chw[3])
{
	const struct vit *v = V(m);

	if (layer < 0 || layer > v->L)
		return mim_seterr("layer %d is out of range [0, %d]", layer, v->L);
	chw[0] = v->C;
	chw[1] = v->G;
	chw[2] = v->G;
	return 0;
}

static void plan_free(struct vplan *p);

static void
vit_free(struct mim_model *m)
{
	struct vit *v = m->priv;

	if (!v)
		return;
	plan_free(v->plan);
	free(v->blk);
	free(v->index);
	free(v);
	m->priv = NULL;
}

/* ---- forward and backward -------------------------------------------------- */

struct vplan {
	int B;
};

static void
plan_free(struct vplan *p)
{
	free(p);
}

const struct mim_arch_ops mim_vit_ops = {
	.name = "vit",
	.params = vit_params,
	.skip = vit_skip,
	.skip_kw = NULL,
	.buffer_check = vit_buffer_check,
	.buffers_add = vit_buffers_add,
	.init = vit_init,
	.forward = NULL,
	.backward = NULL,
	.nlayers = vit_nlayers,
	.layer_shape = vit_layer_shape,
	.free = vit_free,
};
