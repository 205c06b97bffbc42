/* head_swinv.c -- the "swin-inverse" prediction head: the Swin encoder's
 * stages mirrored, the paper's "inverse Swin-T" / "inverse Swin-B" heads
 * (SimMIM, Xie et al. 2022, the head ablation; reference/simmim.md §11).
 * The paper names these heads without giving their layout; this is ours,
 * built from the official Swin block and Swin-Unet's patch expanding.
 *
 * Encoder: S stages s = 0..S-1 of dim E*2^s, side G/2^s (G = img/patch),
 * depths d_s, heads n_s, window w; latent (B, F, h, h), F = E*2^(S-1),
 * h = G/2^(S-1). The head has S stages j = 0..S-1, stage j mirroring
 * encoder stage e = S-1-j:
 *
 *   x = latent as tokens (B, h*h, F)
 *   for j = 0..S-1 (C = E*2^e, side r = G/2^e, heads n_e, e = S-1-j):
 *     head_depths[j] Swin blocks (0: d_e, the mirror), each exactly the
 *       encoder's block (swinblk.h): pre-norm, W-MSA on even blocks,
 *       SW-MSA (shift w/2) on odd ones, the window clamped to r as in
 *       the encoder, relative position bias, MLP ratio mlp_ratio, qkv
 *       bias qkv_bias, no drop path
 *     if j < S-1: patch expanding (Swin-Unet's PatchExpand):
 *       y = expand(x)          Linear(C, 2C, bias=False), (B, r*r, 2C)
 *       token (a,b) of y is split into 4 quarters of C/2 channels;
 *       quarter k goes to (2a + k%2, 2b + k/2) -- the exact inverse of
 *       the encoder's patch merging order [x(2i,2j), x(2i+1,2j),
 *       x(2i,2j+1), x(2i+1,2j+1)], so the kernels are patchmerge's
 *       gather and scatter with their roles swapped
 *       x = norm(y)            LayerNorm(C/2), (B, 4*r*r, C/2)
 *   x = norm(x)                LayerNorm(E), side G
 *   x = proj(x)                Linear(E, O), O = (p/d)^2 * Cp
 *   pred = PixelShuffle(p/d)   (B, Cp, H/d, W/d), the token-major
 *                              shuffle of the linear head
 * where Cp = mim_pred_channels, d = mim_pred_div (target.c), p =
 * patch_size. The check hook refuses a ViT encoder and a d that does not
 * divide p.
 *
 * Parameters, official-style names in named_parameters() order:
 *   decoder.layers.{j}.blocks.{b}.{norm1,attn.relative_position_bias_table,
 *       attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*   (the encoder's names)
 *   decoder.layers.{j}.upsample.expand.weight (2C, C)        j < S-1
 *   decoder.layers.{j}.upsample.norm.{weight,bias} (C/2)
 *   decoder.norm.{weight,bias} (E), decoder.proj.{weight (O,E), bias (O)}
 * and, like the encoder's, each block's buffers
 * decoder.layers.{j}.blocks.{b}.attn.relative_position_index (I64) and,
 * shifted blocks only, .attn_mask (F32), written with the weights and
 * checked when read.
 *
 * Init as the Swin encoder: the relative position tables trunc normal
 * .02 (constructor order), then every Linear weight trunc normal .02,
 * biases 0, LayerNorms 1/0, in module order; its own random stream.
 *
 * Config: "head_depths" (a list, nstages long; default all 0: the
 * encoder's depths reversed). With the presets swin-tiny (2,2,6,2) and
 * swin-base (2,2,18,2) the default is the paper's inverse Swin-T
 * (depths 2,6,2,2) and inverse Swin-B (2,18,2,2).
 *
 * Scratch (all the head keeps, laid out per batch by layout() below;
 * T_j = B*r_j^2 rows of stage j): per stage its window index (two), the
 * relative position index and shift mask (ints in float slots, rebuilt by
 * every forward), its input (T,C), every block's activations (struct
 * bact), the expanding's output (T,2C), its shuffle (T,2C) and LN stats
 * (4T); the final LN stats and output (T,E) and the projection (T,O);
 * the blocks' shared temporaries and the backward's dx, dx2 (T,C). The
 * forward keeps everything the backward reads, so that mim-head (no
 * backward) and training run the same code. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "swinblk.h"
#include "mim/kern.h"
#include "mim/prof.h"
#include "mim/swin.h"

/* the head's shape and parameter indices, from the config alone */
struct inv {
	int S, G, E, Cp, r, O;
	struct sstage st[MIM_MAXSTAGE];	/* redw: expand, mnw/mnb: its norm */
	int shift[MIM_MAXSTAGE], N[MIM_MAXSTAGE], nW[MIM_MAXSTAGE];
	int blk0[MIM_MAXSTAGE];		/* first parameter of stage j's block 0 */
	int nper;			/* parameters per block */
	int nw, nb, pw, pb;		/* decoder.norm, decoder.proj */
};

static int
depth_of(const struct mim_config *c, int j)
{
	int e = c->nstages - 1 - j;
	return c->head_depths[j] ? c->head_depths[j] : c->depths[e];
}

/* v from m's config; parameter indices from m->head_p0 (valid once
 * params() ran) */
static void
geo(const struct mim_model *m, struct inv *v)
{
	const struct mim_config *c = &m->cfg;
	int p = m->head_p0;

	memset(v, 0, sizeof *v);
	v->S = c->nstages;
	v->G = c->img_size / c->patch_size;
	v->E = c->embed_dim;
	v->Cp = mim_pred_channels(c);
	v->r = c->patch_size / mim_pred_div(c);
	v->O = v->r * v->r * v->Cp;
	v->nper = c->qkv_bias ? 13 : 12;
	for (int j = 0; j < v->S; j++) {
		struct sstage *t = &v->st[j];
		int e = v->S - 1 - j;
		t->C = c->embed_dim << e;
		t->res = v->G >> e;
		t->L = t->res * t->res;
		t->nH = c->num_heads_s[e];
		t->D = t->C / t->nH;
		t->Hd = (int)(t->C * c->mlp_ratio);
		t->depth = depth_of(c, j);
		swin_window(t->res, c->window_size, &t->ws, &v->shift[j]);
		v->N[j] = t->ws * t->ws;
		v->nW[j] = t->L / v->N[j];
		v->blk0[j] = p;
		p += t->depth * v->nper;
		t->redw = t->mnw = t->mnb = -1;
		if (j < v->S - 1) {
			t->redw = p++;
			t->mnw = p++;
			t->mnb = p++;
		}
	}
	v->nw = p++;
	v->nb = p++;
	v->pw = p++;
	v->pb = p;
}

/* block b of stage j (its window arrays set by the caller's stage) */
static void
block_of(const struct inv *v, const struct sstage *t, int j, int b, struct sblock *k)
{
	memset(k, 0, sizeof *k);
	swin_block_at(k, v->blk0[j] + b * v->nper, v->nper == 13);
	k->ws = t->ws;
	k->shift = b % 2 ? v->shift[j] : 0;
	k->N = v->N[j];
	k->nW = v->nW[j];
	k->idx = t->idx[k->shift > 0];
	k->relidx = t->relidx;
	k->mask = k->shift > 0 ? t->mask : NULL;
}

/* ---- config ---------------------------------------------------------------- */

#define O_(f) offsetof(struct mim_config, f)
static const struct mim_config_key swinv_keys[] = {
	{"head_depths", MIM_K_LIST, O_(head_depths)},
	{NULL, 0, 0},
};
#undef O_

static int
swinv_check(const struct mim_config *c)
{
	int d = mim_pred_div(c);

	if (c->arch != MIM_ARCH_SWIN)
		return mim_seterr("the swin-inverse head mirrors a Swin encoder's stages: it needs "
		    "\"model\": \"swin\" (use the linear or mlp head with this encoder)");
	for (int j = 0; j < MIM_MAXSTAGE; j++) {
		if (j < c->nstages && c->head_depths[j] > 1000)
			return mim_seterr("head_depths[%d] = %d is out of range [0, 1000]", j,
			    c->head_depths[j]);
		if (j >= c->nstages && c->head_depths[j])
			return mim_seterr("head_depths has more entries than the encoder's %d stages",
			    c->nstages);
	}
	if (d < 1 || c->patch_size % d)
		return mim_seterr("the swin-inverse head ends at 1/%d of the input (patch_size); "
		    "it cannot predict at 1/%d", c->patch_size, d);
	return 0;
}

/* decoder.layers.0.blocks.0: the depths of its stages (0 where they mirror
 * the encoder's depths that o holds already) */
static int
swinv_infer(const struct mim_frame *sd, json_t *o)
{
	int S = mim_sd_count(sd, "decoder.layers.%d.blocks.0.norm1.weight", -1);
	const json_t *enc = json_object_get(o, "depths");

	if (S < 1 || S > MIM_MAXSTAGE)
		return 0;
	json_t *d = json_array();
	for (int j = 0; j < S; j++) {
		int n = mim_sd_count(sd, "decoder.layers.%d.blocks.%d.norm1.weight", j);
		const json_t *e = json_array_get(enc, (size_t)(S - 1 - j));
		if ((int)json_array_size(enc) == S && json_integer_value(e) == n)
			n = 0;
		json_array_append_new(d, json_integer(n));
	}
	json_object_set_new(o, "head_depths", d);
	return 1;
}

/* ---- buffers: each block's relative_position_index and (shifted blocks)
 * attn_mask, as the encoder writes its own (swinblk.c) ------------------- */

/* stage j's arrays (malloc'd into t; free with stage_free) */
static int
stage_arrays(struct inv *v, int j)
{
	struct sstage *t = &v->st[j];
	size_t N = (size_t)v->N[j];

	t->relidx = mim_malloc(N * N * sizeof(int64_t));
	t->mask = v->shift[j] > 0 ? mim_malloc((size_t)v->nW[j] * N * N * sizeof(float)) : NULL;
	if (!t->relidx || (v->shift[j] > 0 && !t->mask))
		return -1;
	window_relidx(t->relidx, t->ws);
	if (t->mask)
		window_mask(t->mask, t->res, t->res, t->ws, v->shift[j]);
	return 0;
}

static void
stage_free(struct inv *v, int j)
{
	free(v->st[j].relidx);
	free(v->st[j].mask);
	v->st[j].relidx = NULL;
	v->st[j].mask = NULL;
}

static int
swinv_buffer_check(const struct mim_model *m, const struct mim_tensor *t)
{
	struct inv v;
	struct sblock k;
	int j, b, kind = swin_buffer_name(t->name, "decoder", &j, &b), rc;

	geo(m, &v);
	if (!kind || j >= v.S || b >= v.st[j].depth)
		return 0;
	if (stage_arrays(&v, j) < 0) {
		stage_free(&v, j);
		return -1;
	}
	block_of(&v, &v.st[j], j, b, &k);
	rc = swin_buffer_check_one(t, kind, &k);
	stage_free(&v, j);
	return rc;
}

static int
swinv_buffers_add(const struct mim_model *m, struct mim_frame *f)
{
	struct inv v;
	struct sblock k;
	int rc = 0;

	geo(m, &v);
	for (int j = 0; j < v.S && rc == 0; j++) {
		rc = stage_arrays(&v, j);
		for (int b = 0; b < v.st[j].depth && rc == 0; b++) {
			block_of(&v, &v.st[j], j, b, &k);
			rc = swin_block_buffers_add(f, "decoder", j, b, &k);
		}
		stage_free(&v, j);
	}
	return rc;
}

/* ---- parameters and init ---------------------------------------------------- */

static int
swinv_params(struct mim_model *m)
{
	struct inv v;
	const struct mim_config *c = &m->cfg;

	geo(m, &v);
	for (int j = 0; j < v.S; j++) {
		struct sstage *t = &v.st[j];
		for (int b = 0; b < t->depth; b++) {
			struct sblock k = {.ws = t->ws};
			if (swin_block_params(m, &k, "decoder", j, b, t->C, t->Hd, t->nH, c->qkv_bias) < 0)
				return -1;
		}
		if (j < v.S - 1 &&
		    (mim_addp(m, 2, 2 * t->C, t->C, 0, 0, "decoder.layers.%d.upsample.expand.weight", j) < 0 ||
		    mim_addp(m, 1, t->C / 2, 0, 0, 0, "decoder.layers.%d.upsample.norm.weight", j) < 0 ||
		    mim_addp(m, 1, t->C / 2, 0, 0, 0, "decoder.layers.%d.upsample.norm.bias", j) < 0))
			return -1;
	}
	if (mim_addp(m, 1, v.E, 0, 0, 0, "decoder.norm.weight") < 0 ||
	    mim_addp(m, 1, v.E, 0, 0, 0, "decoder.norm.bias") < 0 ||
	    mim_addp(m, 2, v.O, v.E, 0, 0, "decoder.proj.weight") < 0 ||
	    mim_addp(m, 1, v.O, 0, 0, 0, "decoder.proj.bias") < 0)
		return -1;
	return 0;
}

static int
swinv_init(struct mim_model *m, uint64_t seed)
{
	struct inv v;
	struct sblock k;
	struct mim_rng r;

	geo(m, &v);
	mim_rng_seed(&r, seed, 3);
	for (int j = 0; j < v.S; j++)
		for (int b = 0; b < v.st[j].depth; b++) {
			block_of(&v, &v.st[j], j, b, &k);
			swin_tn(&r, m, k.table);
		}
	for (int j = 0; j < v.S; j++) {
		for (int b = 0; b < v.st[j].depth; b++) {
			block_of(&v, &v.st[j], j, b, &k);
			swin_block_init(&r, m, &k);
		}
		swin_tn(&r, m, v.st[j].redw);
		swin_ones(m, v.st[j].mnw);
	}
	swin_ones(m, v.nw);
	swin_tn(&r, m, v.pw);
	return 0;
}

static void
swinv_pred_shape(const struct mim_model *m, int64_t chw[3])
{
	chw[0] = mim_pred_channels(&m->cfg);
	chw[1] = chw[2] = m->cfg.img_size / mim_pred_div(&m->cfg);
}

/* ---- the scratch ------------------------------------------------------------ */

struct ilay {
	struct sbscratch bs;
	float *dx, *dx2;		/* (T,C) the backward's residual stream */
	float *in[MIM_MAXSTAGE];	/* (T,C) stage input */
	float *blk[MIM_MAXSTAGE];	/* its first block's activations */
	size_t bsz[MIM_MAXSTAGE];	/* floats per block */
	float *e[MIM_MAXSTAGE], *u[MIM_MAXSTAGE];	/* expand output, shuffled (T,2C) */
	float *um[MIM_MAXSTAGE], *ur[MIM_MAXSTAGE];	/* its LN stats (4T) */
	float *fm, *fr, *fo, *dec;	/* final LN stats (T), output (T,E); proj (T,O) */
};

static float *
take(size_t *off, size_t n, float *base)
{
	float *p = base ? base + *off : NULL;

	*off += (n + 15) & ~(size_t)15;	/* 64-byte aligned */
	return p;
}

/* one block's activations at *off (NULL pointers when base is) */
static void
block_lay(struct bact *a, float *base, size_t *off, size_t T, int C, int Hd, size_t att)
{
	memset(a, 0, sizeof *a);
	a->xm = take(off, T * C, base);
	a->out = take(off, T * C, base);
	a->m1 = take(off, T, base);
	a->r1 = take(off, T, base);
	a->xw = take(off, T * C, base);
	a->qkv = take(off, 3 * T * C, base);
	a->att = take(off, att, base);
	a->ao = take(off, T * C, base);
	a->m2 = take(off, T, base);
	a->r2 = take(off, T, base);
	a->xn = take(off, T * C, base);
	a->h1 = take(off, T * Hd, base);
	a->h2 = take(off, T * Hd, base);
	a->keep[0] = a->keep[1] = 1.0f;	/* no drop path: kept stays NULL */
}

#define MAXZ(a, b) ((a) > (b) ? (a) : (b))

/* Lay the scratch of batch B over base (or count, base NULL): floats.
 * With base, v's stages get their window arrays. */
static size_t
layout(struct inv *v, int B, float *base, struct ilay *y)
{
	size_t off = 0, mx_tc = 0, mx_t3c = 0, mx_th = 0, mx_bias = 0, mx_n = 0;

	memset(y, 0, sizeof *y);
	for (int j = 0; j < v->S; j++) {
		const struct sstage *t = &v->st[j];
		size_t T = (size_t)B * t->L, N = (size_t)v->N[j];
		mx_tc = MAXZ(mx_tc, T * t->C);
		mx_t3c = MAXZ(mx_t3c, 3 * T * t->C);
		mx_th = MAXZ(mx_th, T * t->Hd);
		mx_bias = MAXZ(mx_bias, t->nH * N * N);
		mx_n = MAXZ(mx_n, N);
	}
	y->bs.tmp = take(&off, mx_tc, base);
	y->bs.bias = take(&off, mx_bias, base);
	y->bs.work = take(&off, attention_work((int)mx_n), base);
	y->bs.dy = take(&off, mx_tc, base);
	y->bs.dao = take(&off, mx_tc, base);
	y->bs.dxn = take(&off, mx_tc, base);
	y->bs.dqkv = take(&off, mx_t3c, base);
	y->bs.dh = take(&off, mx_th, base);
	y->bs.dbias = take(&off, mx_bias, base);
	y->dx = take(&off, mx_tc, base);
	y->dx2 = take(&off, mx_tc, base);
	for (int j = 0; j < v->S; j++) {
		struct sstage *t = &v->st[j];
		size_t T = (size_t)B * t->L, N = (size_t)v->N[j];
		/* ints in float slots: the same size (4 bytes), 8 for int64 */
		t->idx[0] = (int *)take(&off, (size_t)t->L, base);
		t->idx[1] = (int *)take(&off, (size_t)t->L, base);
		t->relidx = (int64_t *)take(&off, 2 * N * N, base);
		t->mask = v->shift[j] > 0 && t->depth > 1 ?
		    take(&off, (size_t)v->nW[j] * N * N, base) : NULL;
		y->in[j] = take(&off, T * t->C, base);
		struct bact a;
		size_t b0 = off;
		y->blk[j] = base ? base + off : NULL;
		block_lay(&a, base, &off, T, t->C, t->Hd, (size_t)B * v->nW[j] * t->nH * N * N);
		y->bsz[j] = off - b0;
		off += y->bsz[j] * (size_t)(t->depth - 1);
		if (j < v->S - 1) {
			y->e[j] = take(&off, 2 * T * t->C, base);
			y->u[j] = take(&off, 2 * T * t->C, base);
			y->um[j] = take(&off, 4 * T, base);
			y->ur[j] = take(&off, 4 * T, base);
		}
	}
	size_t T = (size_t)B * v->G * v->G;
	y->fm = take(&off, T, base);
	y->fr = take(&off, T, base);
	y->fo = take(&off, T * v->E, base);
	y->dec = take(&off, T * v->O, base);
	return off;
}

/* the activations of block b of stage j */
static void
block_act(const struct inv *v, const struct ilay *y, int B, int j, int b, struct bact *a)
{
	const struct sstage *t = &v->st[j];
	size_t off = 0, T = (size_t)B * t->L, N = (size_t)v->N[j];

	block_lay(a, y->blk[j] + (size_t)b * y->bsz[j], &off, T, t->C, t->Hd,
	    (size_t)B * v->nW[j] * t->nH * N * N);
	if (b == 0) {
		a->x = y->in[j];
	} else {
		struct bact prev;
		off = 0;
		block_lay(&prev, y->blk[j] + (size_t)(b - 1) * y->bsz[j], &off, T, t->C, t->Hd,
		    (size_t)B * v->nW[j] * t->nH * N * N);
		a->x = prev.out;
	}
}

static size_t
swinv_scratch(const struct mim_model *m, int B)
{
	struct inv v;
	struct ilay y;

	geo(m, &v);
	return layout(&v, B, NULL, &y);
}

/* ---- forward and backward ---------------------------------------------------- */

static void
swinv_forward(const struct mim_model *m, int B, const float *latent, float *pred,
    float *scratch)
{
	struct inv v;
	struct ilay y;
	struct bact a;
	struct sblock k;
	float eps = (float)m->cfg.layer_norm_eps;
	double t0 = MIM_PROF_BEGIN();

	geo(m, &v);
	layout(&v, B, scratch, &y);
	const struct sstage *t0s = &v.st[0];
	int F = t0s->C;
	/* latent (B,F,h,h) -> tokens (B*L,F) */
	transpose_backward(y.in[0], F, (size_t)t0s->L * F, latent, B, t0s->L, F);
	const float *x = y.in[0];
	for (int j = 0; j < v.S; j++) {
		struct sstage *t = &v.st[j];
		window_index(t->idx[0], t->res, t->res, t->ws, 0);
		window_index(t->idx[1], t->res, t->res, t->ws, v.shift[j]);
		window_relidx(t->relidx, t->ws);
		if (t->mask)
			window_mask(t->mask, t->res, t->res, t->ws, v.shift[j]);
		for (int b = 0; b < t->depth; b++) {
			block_of(&v, t, j, b, &k);
			block_act(&v, &y, B, j, b, &a);
			swin_block_forward(m, t, &k, &a, &y.bs, B);
			x = a.out;
		}
		if (j == v.S - 1)
			break;
		/* patch expanding: Linear(C,2C), quarters to 2x2 tokens, LN(C/2) */
		int T = B * t->L, C = t->C;
		linear_forward(y.e[j], x, mim_pw(m, t->redw), NULL, T, C, 2 * C);
		kern_zero(y.u[j], (size_t)T * 2 * C);
		patchmerge_backward(y.u[j], y.e[j], B, 2 * t->res, 2 * t->res, C / 2);
		layernorm_forward(y.in[j + 1], y.um[j], y.ur[j], y.u[j], mim_pw(m, t->mnw),
		    mim_pw(m, t->mnb), 4 * T, C / 2, eps);
	}
	int T = B * v.G * v.G;
	layernorm_forward(y.fo, y.fm, y.fr, x, mim_pw(m, v.nw), mim_pw(m, v.nb), T, v.E, eps);
	linear_forward(y.dec, y.fo, mim_pw(m, v.pw), mim_pw(m, v.pb), T, v.E, v.O);
	pixel_shuffle_forward(pred, y.dec, B, v.Cp, v.G, v.G, v.r);
	MIM_PROF_END("head fwd", t0, 0);
}

static void
swinv_backward(struct mim_model *m, int B, const float *dpred, float *scratch,
    float *dlatent)
{
	struct inv v;
	struct ilay y;
	struct bact a;
	struct sblock k;
	double t0 = MIM_PROF_BEGIN();

	geo(m, &v);
	layout(&v, B, scratch, &y);
	int S = v.S, T = B * v.G * v.G;
	const struct sstage *t = &v.st[S - 1];
	float *dx = y.dx, *dx2 = y.dx2;

	/* pred -> proj -> final norm; dec is free after the forward */
	pixel_shuffle_backward(y.dec, dpred, B, v.Cp, v.G, v.G, v.r);
	linear_backward(y.bs.dxn, mim_pg(m, v.pw), mim_pg(m, v.pb), y.dec, y.fo,
	    mim_pw(m, v.pw), T, v.E, v.O);
	block_act(&v, &y, B, S - 1, t->depth - 1, &a);
	kern_zero(dx, (size_t)T * v.E);
	layernorm_backward(dx, mim_pg(m, v.nw), mim_pg(m, v.nb), y.bs.dxn, a.out,
	    mim_pw(m, v.nw), y.fm, y.fr, T, v.E);
	for (int j = S - 1; j >= 0; j--) {
		t = &v.st[j];
		for (int b = t->depth - 1; b >= 0; b--) {
			block_of(&v, t, j, b, &k);
			block_act(&v, &y, B, j, b, &a);
			swin_block_backward(m, t, &k, &a, &y.bs, B, dx);
		}
		if (j == 0)
			break;
		/* dx = d loss / d (the expanding of stage j-1) */
		const struct sstage *u = &v.st[j - 1];
		int Tu = B * u->L, C = u->C;
		float *du = y.bs.dy, *de = y.bs.dao;
		block_act(&v, &y, B, j - 1, u->depth - 1, &a);
		kern_zero(du, (size_t)Tu * 2 * C);
		layernorm_backward(du, mim_pg(m, u->mnw), mim_pg(m, u->mnb), dx, y.u[j - 1],
		    mim_pw(m, u->mnw), y.um[j - 1], y.ur[j - 1], 4 * Tu, C / 2);
		patchmerge_forward(de, du, B, 2 * u->res, 2 * u->res, C / 2);
		linear_backward(dx2, mim_pg(m, u->redw), NULL, de, a.out, mim_pw(m, u->redw),
		    Tu, C, 2 * C);
		float *sw = dx;
		dx = dx2;
		dx2 = sw;
	}
	if (dlatent) {
		t = &v.st[0];
		transpose_forward(dlatent, dx, t->C, (size_t)t->L * t->C, B, t->L, t->C);
	}
	MIM_PROF_END("head bwd", t0, 0);
}

const struct mim_head_ops mim_head_swinv_ops = {
	.name = "swin-inverse",
	.keys = swinv_keys,
	.infer = swinv_infer,
	.check = swinv_check,
	.buffer_check = swinv_buffer_check,
	.buffers_add = swinv_buffers_add,
	.params = swinv_params,
	.init = swinv_init,
	.pred_shape = swinv_pred_shape,
	.scratch = swinv_scratch,
	.forward = swinv_forward,
	.backward = swinv_backward,
};
