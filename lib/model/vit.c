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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "mim/gemm.h"
#include "mim/kern.h"

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
	/* a classifier (the fine-tuning model) has no mask token */
	v->mtok = c->num_classes ? -1 : P3(1, 1, C) "encoder.mask_token");
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
	if (v->cls < 0 || (v->mtok < 0 && !c->num_classes) || v->pew < 0 || v->peb < 0 ||
	    (c->use_shared_rel_pos_bias && v->table < 0))
		return -1;
	/* relative_position_index (N,N): the Swin formula over the patch
	 * grid, plus the three cls entries */
	if (!(v->index = mim_malloc((size_t)v->N * v->N * sizeof *v->index)))
		return -1;
	relpos_index(v->index, v->G);
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
	/* VisionTransformerForSimMIM._trunc_normal_: std .02, cut at +-1
	 * sigma; the fine-tuning VisionTransformer (a classifier) keeps
	 * timm's absolute bounds +-2 */
	double cut = m->cfg.num_classes ? 2.0 : 0.02;
	if (i >= 0)
		mim_init_trunc_normal(r, mim_pw(m, i), m->p[i].numel, 0.0, 0.02, -cut, cut);
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

/* optimizer.py get_vit_layer: cls_token, mask_token, pos_embed and
 * patch_embed.* 0; blocks.i i+1; rel_pos_bias.* and the rest (fc_norm,
 * head) L+1 */
static int
vit_layer_id(const struct mim_model *m, const char *name, int *nblocks)
{
	int L = V(m)->L, i;

	*nblocks = L;
	if (strcmp(name, "cls_token") == 0 || strcmp(name, "mask_token") == 0 ||
	    strcmp(name, "pos_embed") == 0 || strncmp(name, "patch_embed", 11) == 0)
		return 0;
	if (strncmp(name, "blocks.", 7) == 0 && sscanf(name + 7, "%d", &i) == 1)
		return i + 1;
	return L + 1;
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
	mim_gemm_drop(NULL);	/* no kept copy of a freed buffer */
	plan_free(v->plan);
	free(v->blk);
	free(v->index);
	free(v);
	m->priv = NULL;
}

/* ---- activations -------------------------------------------------------------
 * Planned once per (batch size, threads, mode) and reused. Training keeps
 * one set of saved activations per block; inference keeps one set and
 * runs the residual stream in place. The LayerNorm outputs and x1 (x +
 * gamma_1 y: the same float operations again) are recomputed in the
 * backward, in shared buffers, not kept per block. */

struct vlayer {
	float *x;		/* (B,N,C) block input */
	float *mean1, *rstd1;	/* (B*N) norm1 statistics */
	float *qkv;		/* (B,N,3C) q scaled and biased, k, v biased */
	float *P;		/* (B,Hh,N,N) attention probabilities (training) */
	float *att;		/* (B,N,C) attention output before proj */
	float *y;		/* (B,N,C) proj output */
	float *mean2, *rstd2;	/* (B*N) norm2 statistics */
	float *h, *a;		/* (B,N,F) GELU' at fc1's output (training), GELU output */
	float *m;		/* (B,N,C) fc2 output */
};

struct vplan {
	int B, nthreads, train;
	float *mem;
	struct vlayer *lay;
	float *cols;		/* (B*T, Ci*P*P) im2col of the image */
	float *rbias;		/* (Hh,N,N) shared relative position bias */
	float *bbias;		/* (Hh,N,N) per-block bias (use_rel_pos_bias) */
	float *ln;		/* (B,N,C) LayerNorm output scratch */
	float *x1;		/* (B,N,C) after the attention residual, scratch */
	float *work;		/* attention scratch */
	float *xL;		/* (B,N,C) output of the last block */
	float *meanf, *rstdf;	/* (B*N) final norm statistics */
	float *kept;		/* (2L,B) drop path: block i's two branches */
	float *keep;		/* (2L) */
	uint8_t *mask;		/* (B,T) the training forward's mask */
	int masked;		/* ... if it had one */
	int fresh;		/* the saved activations are the last training
				 * forward's (an inference forward reuses layer 0's) */
	/* backward */
	float *dres, *dln, *dsm, *datt, *dhq, *dbias, *dbb, *dpe;
};

static void
plan_free(struct vplan *p)
{
	if (!p)
		return;
	free(p->mem);
	free(p->lay);
	free(p->mask);
	free(p);
}

/* Carve n floats (64-byte aligned) out of the plan's memory; with base
 * NULL only count. */
static float *
carve(float *base, size_t *off, size_t n)
{
	float *p = base ? base + *off : NULL;
	*off += (n + 15) & ~(size_t)15;
	return p;
}

static int
plan(struct mim_model *m, int B, int train)
{
	struct vit *v = V(m);
	struct vplan *p = v->plan;
	int nt = mim_threads();

	if (p && p->B == B && p->nthreads == nt && (p->train || !train))
		return 0;
	plan_free(p);
	v->plan = NULL;
	if (!(p = mim_calloc(1, sizeof *p)))
		return -1;
	p->B = B;
	p->nthreads = nt;
	p->train = train;
	int nl = train ? v->L : 1;
	if (!(p->lay = mim_calloc((size_t)nl, sizeof *p->lay)) ||
	    (train && !(p->mask = mim_malloc((size_t)B * v->T)))) {
		plan_free(p);
		return -1;
	}
	size_t BN = (size_t)B * v->N, C = (size_t)v->C, F = (size_t)v->F;
	size_t NN = (size_t)v->N * v->N, K = (size_t)m->cfg.in_chans * v->P * v->P;
	size_t HF = F > 3 * C ? F : 3 * C;
	for (int pass = 0; pass < 2; pass++) {
		float *base = pass ? p->mem : NULL;
		size_t off = 0;
		p->cols = carve(base, &off, (size_t)B * v->T * K);
		p->rbias = carve(base, &off, v->Hh * NN);
		p->bbias = carve(base, &off, m->cfg.use_rel_pos_bias ? v->Hh * NN : 0);
		p->ln = carve(base, &off, BN * C);
		p->x1 = carve(base, &off, train ? BN * C : 0);
		p->work = carve(base, &off, attention_work(v->N));
		p->xL = carve(base, &off, BN * C);
		p->meanf = carve(base, &off, BN);
		p->rstdf = carve(base, &off, BN);
		p->kept = carve(base, &off, 2 * (size_t)v->L * B);
		p->keep = carve(base, &off, 2 * (size_t)v->L);
		for (int l = 0; l < nl; l++) {
			struct vlayer *y = &p->lay[l];
			y->x = carve(base, &off, BN * C);
			y->mean1 = carve(base, &off, BN);
			y->rstd1 = carve(base, &off, BN);
			y->qkv = carve(base, &off, BN * 3 * C);
			y->P = train ? carve(base, &off, (size_t)B * v->Hh * NN) : NULL;
			y->att = carve(base, &off, BN * C);
			y->y = carve(base, &off, BN * C);
			y->mean2 = carve(base, &off, BN);
			y->rstd2 = carve(base, &off, BN);
			y->h = carve(base, &off, BN * F);
			y->a = train ? carve(base, &off, BN * F) : y->h;
			y->m = train ? carve(base, &off, BN * C) : y->y;
		}
		if (train) {
			p->dres = carve(base, &off, BN * C);
			p->dln = carve(base, &off, BN * C);
			p->dsm = carve(base, &off, BN * C);
			p->datt = carve(base, &off, BN * C);
			p->dhq = carve(base, &off, BN * HF);
			p->dbias = carve(base, &off, v->Hh * NN);
			p->dbb = carve(base, &off, m->cfg.use_rel_pos_bias ? v->Hh * NN : 0);
			p->dpe = carve(base, &off, (size_t)B * v->T * C);
		}
		if (!pass) {
			if (!(p->mem = aligned_alloc(64, off * sizeof(float)))) {
				mim_seterr("out of memory planning a batch of %d (%.1f GB of activations)",
				    B, (double)off * 4 / 1e9);
				plan_free(p);
				return -1;
			}
		}
	}
	v->plan = p;
	return 0;
}

/* ---- forward ---------------------------------------------------------------- */

static void
copy_rows(float *dst, const float *src, int B, size_t stride, int C)
{
	for (int b = 0; b < B; b++)
		memcpy(dst + (size_t)b * stride, src, (size_t)C * sizeof(float));
}

static int
vit_forward(struct mim_model *m, int B, const float *img, const uint8_t *mask,
    int layer, int train, uint64_t seed, float *out)
{
	struct vit *v = V(m);
	const struct mim_config *c = &m->cfg;

	/* bf16 copies kept by an earlier forward (its backward not run) may
	 * be of buffers this one rewrites, or frees */
	mim_gemm_drop(NULL);
	if (plan(m, B, train) < 0)
		return -1;
	struct vplan *p = v->plan;
	int N = v->N, C = v->C, F = v->F, Hh = v->Hh, BN = B * N;
	float eps = (float)c->layer_norm_eps;
	float scale = (float)(1.0 / sqrt((double)v->D));	/* head_dim ** -0.5 */
	int last = layer > 0 ? layer : v->L;

	p->fresh = train && layer == 0;
	if (train) {
		p->masked = mask != NULL;
		if (mask)
			memcpy(p->mask, mask, (size_t)B * v->T);
	}
	/* embedding: patches behind a cls row per sample, mask token, cls */
	float *X = p->lay[0].x;
	patch_embed_forward(X + C, C, (size_t)N * C, p->cols, img, mim_pw(m, v->pew),
	    mim_pw(m, v->peb), B, c->in_chans, c->img_size, c->img_size, v->P, C);
	mask_token_forward(X + C, C, (size_t)N * C, mask, mim_pw(m, v->mtok), B, v->T, C);
	copy_rows(X, mim_pw(m, v->cls), B, (size_t)N * C, C);
	if (v->pos >= 0) {
		const float *pe = mim_pw(m, v->pos);
		for (size_t b = 0; b < (size_t)B; b++)
			for (size_t i = 0; i < (size_t)N * C; i++)
				X[b * N * C + i] += pe[i];
	}
	if (v->table >= 0)
		relpos_forward(p->rbias, mim_pw(m, v->table), v->index, N, Hh);

	for (int l = 0; l < last; l++) {
		const struct vblock *b = &v->blk[l];
		struct vlayer *y = &p->lay[train ? l : 0];
		float *x = train ? y->x : X;
		/* attention branch */
		layernorm_forward(p->ln, y->mean1, y->rstd1, x, mim_pw(m, b->n1w),
		    mim_pw(m, b->n1b), BN, C, eps);
		linear_forward(y->qkv, p->ln, mim_pw(m, b->qkvw), NULL, BN, C, 3 * C);
		const float *bias = v->table >= 0 ? p->rbias : NULL;
		if (b->table >= 0) {
			relpos_forward(p->bbias, mim_pw(m, b->table), v->index, N, Hh);
			if (bias) {	/* both biases: their sum */
				for (size_t e = 0; e < (size_t)Hh * N * N; e++)
					p->bbias[e] += p->rbias[e];
			}
			bias = p->bbias;
		}
		if (train)	/* bf16: rounded once (by the attention), for the forward and dw */
			mim_gemm_keep(y->att);
		attention_forward(y->att, y->P, y->qkv, mim_pw(m, b->qb), mim_pw(m, b->vb),
		    bias, NULL, 1, B, N, C, Hh, scale, p->work);
		linear_forward(y->y, y->att, mim_pw(m, b->projw), mim_pw(m, b->projb), BN, C, C);
		/* drop path: the block's DropPath module draws anew on each call */
		float *k1 = NULL, *k2 = NULL, keep = 1;
		double rate = mim_droppath_rate(c->drop_path_rate, l, v->L);
		if (train && rate > 0) {
			k1 = p->kept + (size_t)(2 * l) * B;
			k2 = k1 + B;
			keep = p->keep[2 * l] = mim_droppath(k1, B, rate, seed, 2 * l);
			p->keep[2 * l + 1] = mim_droppath(k2, B, rate, seed, 2 * l + 1);
		}
		float *x1 = train ? p->x1 : x;
		residual_forward(x1, x, y->y, mim_pw(m, b->g1), k1, keep, B, N, C);
		/* MLP branch: fc1 and GELU fused (inference: in place, a is h) */
		layernorm_forward(p->ln, y->mean2, y->rstd2, x1, mim_pw(m, b->n2w),
		    mim_pw(m, b->n2b), BN, C, eps);
		if (train)	/* (kept first: the GELU's epilogue makes its copy) */
			mim_gemm_keep(y->a);
		linear_gelu_forward(train ? y->h : NULL, y->a, p->ln, mim_pw(m, b->fc1w),
		    mim_pw(m, b->fc1b), BN, C, F);
		linear_forward(y->m, y->a, mim_pw(m, b->fc2w), mim_pw(m, b->fc2b), BN, F, C);
		float *xo = !train ? X : l + 1 < v->L ? p->lay[l + 1].x : p->xL;
		residual_forward(xo, x1, y->m, mim_pw(m, b->g2), k2, keep, B, N, C);
	}
	float *xL = train ? p->xL : X;
	if (layer > 0) {	/* block `layer`'s output, patch tokens */
		transpose_forward(out, xL + C, C, (size_t)N * C, B, v->T, C);
		return 0;
	}
	const float *fin = xL;
	if (v->nw >= 0) {
		layernorm_forward(p->ln, p->meanf, p->rstdf, xL, mim_pw(m, v->nw),
		    mim_pw(m, v->nb), BN, C, eps);
		fin = p->ln;
	}
	transpose_forward(out, fin + C, C, (size_t)N * C, B, v->T, C);
	return 0;
}

/* ---- backward --------------------------------------------------------------- */

static int
vit_backward(struct mim_model *m, const float *dlatent)
{
	struct vit *v = V(m);
	struct vplan *p = v->plan;
	const struct mim_config *c = &m->cfg;

	if (!p || !p->train || !p->fresh)
		return mim_seterr("vit: backward without a fresh training forward");
	p->fresh = 0;	/* backward overwrites P with dS: once only */
	int B = p->B, N = v->N, C = v->C, F = v->F, Hh = v->Hh, BN = B * N;
	size_t NN = (size_t)N * N;
	float eps = (float)c->layer_norm_eps;
	float scale = (float)(1.0 / sqrt((double)v->D));
	float *dres = p->dres;

	/* latent -> the final norm's output gradient (cls rows: zero) */
	float *dfin = v->nw >= 0 ? p->dln : dres;
	for (int b = 0; b < B; b++)
		memset(dfin + (size_t)b * N * C, 0, (size_t)C * sizeof(float));
	transpose_backward(dfin + C, C, (size_t)N * C, dlatent, B, v->T, C);
	if (v->nw >= 0) {
		kern_zero(dres, (size_t)BN * C);
		layernorm_backward(dres, mim_pg(m, v->nw), mim_pg(m, v->nb), p->dln, p->xL,
		    mim_pw(m, v->nw), p->meanf, p->rstdf, BN, C);
	}
	if (v->table >= 0)
		memset(p->dbias, 0, (size_t)Hh * NN * sizeof(float));

	for (int l = v->L - 1; l >= 0; l--) {
		const struct vblock *b = &v->blk[l];
		struct vlayer *y = &p->lay[l];
		double rate = mim_droppath_rate(c->drop_path_rate, l, v->L);
		float *k1 = NULL, *k2 = NULL, keep = 1;
		if (rate > 0) {
			k1 = p->kept + (size_t)(2 * l) * B;
			k2 = k1 + B;
			keep = p->keep[2 * l];
		}
		/* x_out = x1 + dp(gamma_2 * m): dres is d x_out, and stays d x1 */
		residual_backward(p->dsm, mim_pg(m, b->g2), dres, y->m, mim_pw(m, b->g2),
		    k2, keep, B, N, C);
		mim_gemm_keep(p->dhq);	/* bf16: rounded by the GELU's backward */
		linear_gelu_backward(p->dhq, mim_pg(m, b->fc2w), mim_pg(m, b->fc2b), p->dsm, y->a,
		    y->h, mim_pw(m, b->fc2w), BN, F, C);
		residual_forward(p->x1, y->x, y->y, mim_pw(m, b->g1), k1, keep, B, N, C);
		layernorm_forward(p->ln, NULL, NULL, p->x1, mim_pw(m, b->n2w),
		    mim_pw(m, b->n2b), BN, C, eps);	/* x1, norm2 output again */
		linear_backward(p->dln, mim_pg(m, b->fc1w), mim_pg(m, b->fc1b), p->dhq, p->ln,
		    mim_pw(m, b->fc1w), BN, C, F);
		mim_gemm_drop(p->dhq);
		layernorm_backward(dres, mim_pg(m, b->n2w), mim_pg(m, b->n2b), p->dln, p->x1,
		    mim_pw(m, b->n2w), y->mean2, y->rstd2, BN, C);
		/* x1 = x + dp(gamma_1 * y): dres is d x1, and stays d x */
		residual_backward(p->dsm, mim_pg(m, b->g1), dres, y->y, mim_pw(m, b->g1),
		    k1, keep, B, N, C);
		linear_backward(p->datt, mim_pg(m, b->projw), mim_pg(m, b->projb), p->dsm,
		    y->att, mim_pw(m, b->projw), BN, C, C);
		attention_backward(p->dhq, mim_pg(m, b->qb), mim_pg(m, b->vb), y->P, p->datt,
		    y->qkv, B, N, C, Hh, scale, p->work);
		/* y->P now holds dS, the gradient of every additive bias */
		if (v->table >= 0)
			attention_dbias(p->dbias, y->P, B, Hh, N);
		if (b->table >= 0) {
			memset(p->dbb, 0, (size_t)Hh * NN * sizeof(float));
			attention_dbias(p->dbb, y->P, B, Hh, N);
			relpos_backward(mim_pg(m, b->table), p->dbb, v->index, N, Hh);
		}
		layernorm_forward(p->ln, NULL, NULL, y->x, mim_pw(m, b->n1w),
		    mim_pw(m, b->n1b), BN, C, eps);	/* norm1 output again */
		linear_backward(p->dln, mim_pg(m, b->qkvw), NULL, p->dhq, p->ln,
		    mim_pw(m, b->qkvw), BN, C, 3 * C);
		layernorm_backward(dres, mim_pg(m, b->n1w), mim_pg(m, b->n1b), p->dln, y->x,
		    mim_pw(m, b->n1w), y->mean1, y->rstd1, BN, C);
	}
	if (v->table >= 0)
		relpos_backward(mim_pg(m, v->table), p->dbias, v->index, N, Hh);
	/* embedding: pos_embed, cls token, mask token, patch embedding */
	if (v->pos >= 0)
		for (int b = 0; b < B; b++) {
			float *dp = mim_pg(m, v->pos);
			const float *d = dres + (size_t)b * N * C;
			for (size_t i = 0; i < (size_t)N * C; i++)
				dp[i] += d[i];
		}
	for (int b = 0; b < B; b++) {
		float *dc = mim_pg(m, v->cls);
		const float *d = dres + (size_t)b * N * C;
		for (int i = 0; i < C; i++)
			dc[i] += d[i];
	}
	mask_token_backward(p->dpe, mim_pg(m, v->mtok), dres + C, C, (size_t)N * C,
	    p->masked ? p->mask : NULL, B, v->T, C);
	patch_embed_backward(mim_pg(m, v->pew), mim_pg(m, v->peb), p->dpe, C,
	    (size_t)v->T * C, p->cols, B, c->in_chans, c->img_size, c->img_size, v->P, C);
	return 0;
}

/* ---- the config: keys, defaults, checks (config.c asks) --------------------- */

#define O(f) offsetof(struct mim_config, f)
/* in the order of issue 5 (and of mim_config_json) */
static const struct mim_config_key vit_keys[] = {
	MIM_CONFIG_KEYS_FIRST,
	{"depth", MIM_K_INT, O(depth)},
	{"num_heads", MIM_K_INT, O(num_heads)},
	{"mlp_ratio", MIM_K_DBL, O(mlp_ratio)},
	{"qkv_bias", MIM_K_BOOL, O(qkv_bias)},
	{"init_values", MIM_K_DBLNULL, O(init_values)},
	{"use_abs_pos_emb", MIM_K_BOOL, O(use_abs_pos_emb)},
	{"use_rel_pos_bias", MIM_K_BOOL, O(use_rel_pos_bias)},
	{"use_shared_rel_pos_bias", MIM_K_BOOL, O(use_shared_rel_pos_bias)},
	{"use_mean_pooling", MIM_K_BOOL, O(use_mean_pooling)},
	MIM_CONFIG_KEYS_LAST,
};
#undef O

/* simmim_pretrain__vit_base__img224__800ep.yaml */
static void
vit_defaults(struct mim_config *c)
{
	c->img_size = 224;
	c->patch_size = 16;
	c->embed_dim = 768;
	c->depth = 12;
	c->num_heads = 12;
	c->init_values = 0.1;
	c->use_shared_rel_pos_bias = 1;
	c->drop_path_rate = 0.1;
	c->layer_norm_eps = 1e-6;
	c->encoder_stride = 16;
}

static int
vit_check(const struct mim_config *c)
{
	int grid = c->img_size / c->patch_size;

	if (c->depth < 1 || c->depth > 1000)
		return mim_seterr("depth %d is out of range [1, 1000]", c->depth);
	if (c->num_heads < 1 || c->embed_dim % c->num_heads)
		return mim_seterr("embed_dim %d is not a multiple of num_heads %d", c->embed_dim, c->num_heads);
	if (!isnan(c->init_values) && !isfinite(c->init_values))
		return mim_seterr("init_values must be a number or null");
	if (c->encoder_stride != c->patch_size)
		return mim_seterr("encoder_stride %d differs from patch_size %d: the prediction would not cover the image",
		    c->encoder_stride, c->patch_size);
	if ((int64_t)grid * grid + 1 > 65536)
		return mim_seterr("%d tokens are too many", grid * grid + 1);
	return 0;
}

static int
vit_features(const struct mim_config *c)
{
	return c->embed_dim;
}

/* ---- reading a foreign state dict (lib/ckpt/infer.c asks) ------------------
 *   number of blocks.{i}                             depth
 *   blocks.0.mlp.fc1.weight (E*mlp_ratio, E)         mlp_ratio
 *   rel_pos_bias / blocks.{i}.attn relative_position_bias_table
 *     ((2g-1)^2 + 3, heads)                          num_heads, grid g (img_size = g p),
 *                                                    use_(shared_)rel_pos_bias
 *   pos_embed (1, g*g+1, E)                          use_abs_pos_emb, g
 *   relative_position_index (g*g+1, g*g+1)           g
 *   gamma_1 present / absent                         layer scale on (init_values 0.1) / null
 *   fc_norm / norm                                   use_mean_pooling
 *   q_bias                                           qkv_bias */

static int
vit_detect(const struct mim_frame *sd)
{
	return mim_frame_get(sd, "encoder.blocks.0.norm1.weight") != NULL;
}

static int
is2d(const struct mim_tensor *t)
{
	return t && t->ndim == 2;
}

static int
vit_infer(const struct mim_frame *sd, json_t *o, const json_t *hint, int E, int p, int *grid,
    const char **from, char *unknown, size_t n)
{
	json_object_set_new(o, "depth", json_integer(mim_sd_count(sd, "encoder.blocks.%d.norm1.weight", -1)));
	const struct mim_tensor *fc1 = mim_frame_get(sd, "encoder.blocks.0.mlp.fc1.weight");
	if (is2d(fc1) && E > 0)
		json_object_set_new(o, "mlp_ratio", json_real((double)fc1->shape[0] / E));
	json_object_set_new(o, "qkv_bias",
	    json_boolean(mim_frame_get(sd, "encoder.blocks.0.attn.q_bias") != NULL));
	int gamma = mim_frame_get(sd, "encoder.blocks.0.gamma_1") != NULL;
	json_object_set_new(o, "init_values", gamma ? json_real(0.1) : json_null());
	const struct mim_tensor *shared =
	    mim_frame_get(sd, "encoder.rel_pos_bias.relative_position_bias_table");
	const struct mim_tensor *own =
	    mim_frame_get(sd, "encoder.blocks.0.attn.relative_position_bias_table");
	const struct mim_tensor *pos = mim_frame_get(sd, "encoder.pos_embed");
	json_object_set_new(o, "use_shared_rel_pos_bias", json_boolean(shared != NULL));
	json_object_set_new(o, "use_rel_pos_bias", json_boolean(own != NULL));
	json_object_set_new(o, "use_abs_pos_emb", json_boolean(pos != NULL));
	json_object_set_new(o, "use_mean_pooling",
	    json_boolean(mim_frame_get(sd, "encoder.fc_norm.weight") != NULL));
	const struct mim_tensor *tab = shared ? shared : own;
	if (is2d(tab)) {
		json_object_set_new(o, "num_heads", json_integer(tab->shape[1]));
		int s = mim_sd_table_side(tab->shape[0], 3);
		if (s > 0) {
			*grid = (s + 1) / 2;
			*from = "the relative position table";
		}
	}
	const struct mim_tensor *idx =
	    mim_frame_get(sd, "encoder.rel_pos_bias.relative_position_index");
	if (!idx)
		idx = mim_frame_get(sd, "encoder.blocks.0.attn.relative_position_index");
	if (*grid < 0 && pos && pos->ndim == 3 && mim_sd_isqrt(pos->shape[1] - 1) > 0) {
		*grid = mim_sd_isqrt(pos->shape[1] - 1);
		*from = "pos_embed";
	}
	if (*grid < 0 && is2d(idx) && mim_sd_isqrt(idx->shape[0] - 1) > 0) {
		*grid = mim_sd_isqrt(idx->shape[0] - 1);
		*from = "relative_position_index";
	}
	json_object_set_new(o, "encoder_stride", json_integer(p));
	if (!tab && !json_object_get(hint, "num_heads"))
		snprintf(unknown + strlen(unknown), n - strlen(unknown), " num_heads");
	return 0;
}

static const char *const vit_untraced[] = {"drop_path_rate", "layer_norm_eps", "init_values", NULL};

/* ---- fine-tuning export (lib/ckpt/export.c asks) ----------------------------
 * The official remap_pretrained_keys_vit: the shared table
 * rel_pos_bias.relative_position_bias_table is copied into every block's
 * attention; the final norm is dropped (fine-tuning pools with a fresh
 * fc_norm instead); every table has (2g-1)^2 + 3 rows for the grid g of
 * the fine-tuning image size (the 3 cls rows kept as they are). */

static int
vit_ft_config(struct mim_config *ft, const struct mim_export_opt *o)
{
	if (o->window_size)
		return mim_seterr("a window size is for Swin models, this is a ViT");
	ft->use_rel_pos_bias = 1;
	ft->use_shared_rel_pos_bias = 0;
	ft->use_mean_pooling = !o->keep_norm;
	return 0;
}

static int
vit_ft_tensor(const struct mim_config *ft, const struct mim_export_opt *o, const char *name,
    int *side, int *extra)
{
	int shared = strcmp(name, "rel_pos_bias.relative_position_bias_table") == 0;

	if (!o->keep_norm && strncmp(name, "norm.", 5) == 0)
		return 0;
	if (shared || mim_ends_with(name, ".attn.relative_position_bias_table")) {
		*side = 2 * (ft->img_size / ft->patch_size) - 1;
		*extra = 3;
	}
	return shared ? 2 : 1;
}

static const char *
vit_ft_copy(const struct mim_config *ft, const char *held, int i, char *buf, size_t n)
{
	if (i >= ft->depth)
		return NULL;
	snprintf(buf, n, "blocks.%d.attn.relative_position_bias_table", i);
	return buf;
}

static void
vit_ft_note(const struct mim_config *ft, const struct mim_export_opt *o, int ncopies, char *note,
    size_t n)
{
	size_t k = strlen(note);
	snprintf(note + k, n - k, "; shared relative position table copied into %d blocks%s", ncopies,
	    o->keep_norm ? "" : "; final norm dropped");
}

const struct mim_arch_ops mim_vit_ops = {
	.name = "vit",
	.keys = vit_keys,
	.defaults = vit_defaults,
	.check = vit_check,
	.features = vit_features,
	.signature = "encoder.blocks.* (ViT)",
	.detect = vit_detect,
	.infer = vit_infer,
	.untraced = vit_untraced,
	.ft_config = vit_ft_config,
	.ft_tensor = vit_ft_tensor,
	.ft_copy = vit_ft_copy,
	.ft_note = vit_ft_note,
	.params = vit_params,
	.skip = vit_skip,
	.skip_kw = NULL,
	.buffer_check = vit_buffer_check,
	.buffers_add = vit_buffers_add,
	.layer_id = vit_layer_id,
	.init = vit_init,
	.forward = vit_forward,
	.backward = vit_backward,
	.nlayers = vit_nlayers,
	.layer_shape = vit_layer_shape,
	.free = vit_free,
};
