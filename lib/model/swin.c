/* swin.c -- the SimMIM Swin encoder, exactly the official
 * SwinTransformerForSimMIM (reference/simmim.md §4.1, §4.3, §9.2):
 *
 *   x = patch_embed.proj(img)               conv k=p s=p as a GEMM, (B,L,E)
 *   x = patch_embed.norm(x)                 if patch_norm
 *   x = x*(1-w) + mask_token*w              w = mask: AFTER the patch LN
 *   x = x + absolute_pos_embed              if ape (off in every config)
 *   for each stage s (C = E*2^s, res = G/2^s, nH heads):
 *     for each block b (pre-norm; shift = b odd ? ws/2 : 0; if res <= ws
 *     the window clamp makes ws = res and shift = 0):
 *       y = norm1(x) -> roll(-shift) -> window partition     (window.c)
 *       y = window attention (qkv bias, q * D^-0.5, + relative position
 *           bias, + the -100 shift mask) -> proj     (kern attention.c)
 *       x = x + drop_path(roll(+shift)(window reverse(y)))
 *       x = x + drop_path(fc2(gelu(fc1(norm2(x)))))
 *     if s < last: patch merging [x0,x1,x2,x3] -> LN(4C) -> Linear(4C,2C)
 *   x = norm(x);  latent = x^T as (B,F,G/2^(n-1),G/2^(n-1))
 *
 * Roll and window partition are one token permutation per (stage, shift),
 * applied by the LayerNorm that reads through it and by the residual add
 * that writes through it, so no rolled or partitioned copy is ever made.
 * Activations live in one arena planned per batch size (training: what the
 * backward needs, per block; inference: one set of buffers reused by every
 * block, the residual stream updated in place).
 *
 * Dims: B batch, P patch, G = img/P, E embed_dim, for a stage C channels,
 * res its map side, L = res^2 tokens per image, T = B*L rows, nH heads,
 * D = C/nH, Hd = int(C*mlp_ratio) hidden; for a block ws its window,
 * N = ws^2, nW = L/N windows per image, Bw = B*nW.
 *
 * Intermediate layers (forward layer K = 1..stages): the output of stage K
 * (its last block, before its patch merging; no final norm) as
 * (B, C_K, res_K, res_K). */

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "mim/gemm.h"
#include "mim/kern.h"
#include "mim/swin.h"
#include "swinblk.h"

static int swin_features(const struct mim_config *c);

struct splan;

struct swin {
	int P, G, E, ns, F, nblocks;
	int ape, mtok, pew, peb, pnw, pnb, nw, nb;
	struct sstage st[MIM_MAXSTAGE];
	struct splan *plan[2];	/* inference, training: kept side by side */
};

static struct swin *
S(const struct mim_model *m)
{
	return m->priv;
}

/* ---- parameters ------------------------------------------------------------ */

static int
stage_geometry(struct sstage *t, const struct mim_config *c, int s, int G)
{
	t->C = c->embed_dim << s;
	t->res = G >> s;
	t->L = t->res * t->res;
	t->nH = c->num_heads_s[s];
	t->D = t->C / t->nH;
	t->Hd = (int)(t->C * c->mlp_ratio);
	t->depth = c->depths[s];
	/* the window clamp (SwinTransformerBlock.__init__): a stage no larger
	 * than the window is one window, and nothing is shifted */
	int shift;
	swin_window(t->res, c->window_size, &t->ws, &shift);
	int N = t->ws * t->ws;
	int nW = t->L / N;

	if (!(t->blk = mim_calloc((size_t)t->depth, sizeof *t->blk)) ||
	    !(t->idx[0] = mim_malloc((size_t)t->L * sizeof(int))) ||
	    !(t->idx[1] = mim_malloc((size_t)t->L * sizeof(int))) ||
	    !(t->relidx = mim_malloc((size_t)N * N * sizeof(int64_t))))
		return -1;
	window_index(t->idx[0], t->res, t->res, t->ws, 0);
	window_index(t->idx[1], t->res, t->res, t->ws, shift);
	window_relidx(t->relidx, t->ws);
	if (shift > 0 && t->depth > 1) {
		if (!(t->mask = mim_malloc((size_t)nW * N * N * sizeof(float))))
			return -1;
		window_mask(t->mask, t->res, t->res, t->ws, shift);
	}
	for (int b = 0; b < t->depth; b++) {
		struct sblock *k = &t->blk[b];
		k->ws = t->ws;
		k->shift = b % 2 ? shift : 0;
		k->N = N;
		k->nW = nW;
		k->idx = t->idx[k->shift > 0];
		k->relidx = t->relidx;
		k->mask = k->shift > 0 ? t->mask : NULL;
	}
	return 0;
}

static int
swin_params(struct mim_model *m)
{
	const struct mim_config *c = &m->cfg;
	struct swin *v = mim_calloc(1, sizeof *v);

	if (!v)
		return -1;
	m->priv = v;
	v->P = c->patch_size;
	v->G = c->img_size / c->patch_size;
	v->E = c->embed_dim;
	v->ns = c->nstages;
	v->F = swin_features(c);
	for (int s = 0; s < v->ns; s++)
		if (stage_geometry(&v->st[s], c, s, v->G) < 0)
			return -1;
#define P1(a) mim_addp(m, 1, a, 0, 0, 0,
#define P2(a, b) mim_addp(m, 2, a, b, 0, 0,
#define P3(a, b, c) mim_addp(m, 3, a, b, c, 0,
	/* named_parameters order: the encoder's own parameters
	 * (absolute_pos_embed from the base constructor, then mask_token
	 * from the SimMIM subclass), then the children: patch_embed (proj,
	 * norm), layers (blocks, then downsample: reduction before norm),
	 * norm. */
	int E = v->E, G = v->G;
	v->ape = c->ape ? P3(1, (int64_t)G * G, E) "encoder.absolute_pos_embed") : -1;
	/* a classifier (the fine-tuning model) has no mask token */
	v->mtok = c->num_classes ? -1 : P3(1, 1, E) "encoder.mask_token");
	v->pew = mim_addp(m, 4, E, c->in_chans, v->P, v->P, "encoder.patch_embed.proj.weight");
	v->peb = P1(E) "encoder.patch_embed.proj.bias");
	v->pnw = c->patch_norm ? P1(E) "encoder.patch_embed.norm.weight") : -1;
	v->pnb = c->patch_norm ? P1(E) "encoder.patch_embed.norm.bias") : -1;
	if ((c->ape && v->ape < 0) || (v->mtok < 0 && !c->num_classes) || v->pew < 0 || v->peb < 0 ||
	    (c->patch_norm && v->pnb < 0))
		return -1;
	int gi = 0;
	for (int s = 0; s < v->ns; s++) {
		struct sstage *t = &v->st[s];
		int C = t->C, Hd = t->Hd;
		for (int i = 0; i < t->depth; i++) {
			struct sblock *b = &t->blk[i];
			b->gi = gi++;
			if (swin_block_params(m, b, "encoder", s, i, C, Hd, t->nH, c->qkv_bias) < 0)
				return -1;
		}
		t->redw = t->mnw = t->mnb = -1;
		if (s < v->ns - 1) {
			t->redw = P2(2 * C, 4 * C) "encoder.layers.%d.downsample.reduction.weight", s);
			t->mnw = P1(4 * C) "encoder.layers.%d.downsample.norm.weight", s);
			t->mnb = P1(4 * C) "encoder.layers.%d.downsample.norm.bias", s);
			if (t->redw < 0 || t->mnw < 0 || t->mnb < 0)
				return -1;
		}
	}
	v->nblocks = gi;
	v->nw = P1(v->F) "encoder.norm.weight");
	v->nb = P1(v->F) "encoder.norm.bias");
#undef P1
#undef P2
#undef P3
	return v->nw < 0 || v->nb < 0 ? -1 : 0;
}

/* The official no_weight_decay(): absolute_pos_embed and mask_token; the
 * keyword never matches a real table name (reference §7.1), so every
 * relative position table is decayed, as in the official code. */
static const char *const swin_skip[] = {"encoder.absolute_pos_embed", "encoder.mask_token", NULL};
static const char *const swin_skip_kw[] = {"encoder.relative_position_bias_table", NULL};

/* ---- buffers: relative_position_index (I64 (N,N)) of every block and
 * attn_mask (F32 (nW,N,N)) of the shifted ones ---------------------------- */

static int
swin_buffer_check(const struct mim_model *m, const struct mim_tensor *t)
{
	const struct swin *v = S(m);
	int s, b, kind = swin_buffer_name(t->name, "encoder", &s, &b);

	if (!kind || s >= v->ns || b >= v->st[s].depth)
		return 0;
	return swin_buffer_check_one(t, kind, &v->st[s].blk[b]);
}

static int
swin_buffers_add(const struct mim_model *m, struct mim_frame *f)
{
	const struct swin *v = S(m);

	for (int s = 0; s < v->ns; s++)
		for (int b = 0; b < v->st[s].depth; b++)
			if (swin_block_buffers_add(f, "encoder", s, b, &v->st[s].blk[b]) < 0)
				return -1;
	return 0;
}

/* ---- initialisation (reference §4.1) --------------------------------------- */

static int
swin_init(struct mim_model *m, uint64_t seed)
{
	const struct swin *v = S(m);
	struct mim_rng r;

	mim_rng_seed(&r, seed, 1);
	/* constructor order: absolute_pos_embed, then each WindowAttention's
	 * table (trunc normal .02, in __init__) */
	swin_tn(&r, m, v->ape);
	for (int s = 0; s < v->ns; s++)
		for (int b = 0; b < v->st[s].depth; b++)
			swin_tn(&r, m, v->st[s].blk[b].table);
	/* self.apply(_init_weights): Linear weights trunc normal .02, biases
	 * 0; LayerNorm 1/0. The patch Conv2d is not touched: PyTorch's
	 * default kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in)), bias
	 * the same bound. */
	double bound = 1.0 / sqrt((double)m->cfg.in_chans * v->P * v->P);
	mim_init_uniform(&r, mim_pw(m, v->pew), m->p[v->pew].numel, -bound, bound);
	mim_init_uniform(&r, mim_pw(m, v->peb), m->p[v->peb].numel, -bound, bound);
	swin_ones(m, v->pnw);
	for (int s = 0; s < v->ns; s++) {
		const struct sstage *t = &v->st[s];
		for (int i = 0; i < t->depth; i++)
			swin_block_init(&r, m, &t->blk[i]);
		swin_tn(&r, m, t->redw);
		swin_ones(m, t->mnw);
	}
	swin_ones(m, v->nw);
	/* the SimMIM subclass: mask_token trunc normal .02 */
	swin_tn(&r, m, v->mtok);
	return 0;
}

/* optimizer.py get_swin_layer: mask_token and patch_embed.* 0; in
 * layers.s, a block b gets sum(depths[:s]) + b + 1 and the downsample
 * (reduction, norm) the id of the stage's last block, sum(depths[:s+1]);
 * the rest (norm, head, absolute_pos_embed) L+1 */
static int
swin_layer_id(const struct mim_model *m, const char *name, int *nblocks)
{
	const struct mim_config *c = &m->cfg;
	int L = 0, s, b, n = 0;

	for (int i = 0; i < c->nstages; i++)
		L += c->depths[i];
	*nblocks = L;
	if (strcmp(name, "mask_token") == 0 || strncmp(name, "patch_embed", 11) == 0)
		return 0;
	if (sscanf(name, "layers.%d.%n", &s, &n) == 1 && n > 0 && s >= 0 && s < c->nstages) {
		int before = 0;
		for (int i = 0; i < s; i++)
			before += c->depths[i];
		if (strncmp(name + n, "downsample.", 11) == 0)
			return before + c->depths[s];
		if (sscanf(name + n, "blocks.%d.", &b) == 1)
			return before + b + 1;
	}
	return L + 1;
}

static int
swin_nlayers(const struct mim_model *m)
{
	return S(m)->ns;
}

static int
swin_layer_shape(const struct mim_model *m, int layer, int64_t chw[3])
{
	const struct swin *v = S(m);

	if (layer < 0 || layer > v->ns)
		return mim_seterr("layer %d is out of range [0, %d]", layer, v->ns);
	const struct sstage *t = &v->st[layer ? layer - 1 : v->ns - 1];
	chw[0] = layer ? t->C : v->F;
	chw[1] = t->res;
	chw[2] = t->res;
	return 0;
}

/* absolute_pos_embed (L,C) added to every sample of x (B,L,C) */
static void
add_pos(float *x, const float *pos, int B, int L, int C)
{
	for (int b = 0; b < B; b++)
		for (size_t i = 0; i < (size_t)L * C; i++)
			x[(size_t)b * L * C + i] += pos[i];
}

/* ---- the activation plan ----------------------------------------------------- */

struct sact {
	struct bact *blk;	/* depth entries */
	float *in;		/* (T,C) stage input */
	float *mg, *mm, *mr, *mln;	/* merging: gathered (T/4,4C), LN stats, LN out */
};

struct splan {
	int B, train, threads, hasmask, ready;	/* ready: a training forward to go back through */
	float *arena;
	uint8_t *mask;			/* (T0) the mask of the training forward */
	float *cols, *x0, *pm, *pr;	/* patches, conv output, patch LN stats */
	float *fm, *fr, *fo;		/* final LN stats and output (T,F) */
	struct sbscratch bs;		/* the blocks' temporaries (swinblk.h) */
	struct sact st[MIM_MAXSTAGE];
	/* backward scratch (training) */
	float *dx, *dx2;
};

static float *
take(size_t *off, size_t n, float *base)
{
	float *p = base ? base + *off : NULL;

	*off += (n + 15) & ~(size_t)15;	/* 64-byte aligned */
	return p;
}

#define MAXZ(a, b) ((a) > (b) ? (a) : (b))

/* Lay the plan out over base (or only count, base NULL): returns floats. */
static size_t
plan_layout(const struct swin *v, struct splan *p, int B, int train, float *base)
{
	size_t off = 0, T0 = (size_t)B * v->G * v->G;
	size_t mx_tc = 0, mx_t3c = 0, mx_att = 0, mx_th = 0, mx_bias = 0, mx_t = 0, mx_n = 0;
	int K = 3 * v->P * v->P;

	for (int s = 0; s < v->ns; s++) {
		const struct sstage *t = &v->st[s];
		size_t T = (size_t)B * t->L, N = (size_t)t->ws * t->ws;
		mx_t = MAXZ(mx_t, T);
		mx_tc = MAXZ(mx_tc, T * t->C);
		mx_t3c = MAXZ(mx_t3c, T * 3 * t->C);
		mx_th = MAXZ(mx_th, T * t->Hd);
		mx_att = MAXZ(mx_att, (size_t)B * (t->L / N) * t->nH * N * N);
		mx_bias = MAXZ(mx_bias, t->nH * N * N);
		mx_n = MAXZ(mx_n, N);
	}
	p->cols = take(&off, T0 * K, base);
	p->x0 = take(&off, T0 * v->E, base);
	p->pm = take(&off, T0, base);
	p->pr = take(&off, T0, base);
	p->bs.tmp = take(&off, mx_tc, base);
	p->bs.bias = take(&off, mx_bias, base);
	p->bs.work = take(&off, attention_work((int)mx_n), base);
	/* inference: one shared set of block buffers, no probabilities kept */
	struct bact sh = {0};
	if (!train) {
		sh.m1 = take(&off, mx_t, base);
		sh.r1 = take(&off, mx_t, base);
		sh.xw = take(&off, mx_tc, base);
		sh.qkv = take(&off, mx_t3c, base);
		sh.ao = take(&off, mx_tc, base);
		sh.m2 = sh.m1;
		sh.r2 = sh.r1;
		sh.xn = sh.xw;
		sh.h1 = take(&off, mx_th, base);
		sh.h2 = sh.h1;	/* GELU in place */
	}
	for (int s = 0; s < v->ns; s++) {
		const struct sstage *t = &v->st[s];
		struct sact *a = &p->st[s];
		size_t T = (size_t)B * t->L, TC = T * t->C, N = (size_t)t->ws * t->ws;
		a->in = take(&off, TC, base);
		for (int b = 0; b < t->depth; b++) {
			struct bact z = sh;
			if (train) {
				z.x = b ? NULL : a->in;
				z.xm = take(&off, TC, base);
				z.out = take(&off, TC, base);
				z.m1 = take(&off, T, base);
				z.r1 = take(&off, T, base);
				z.xw = take(&off, TC, base);
				z.qkv = take(&off, 3 * TC, base);
				z.att = take(&off, (size_t)B * (t->L / N) * t->nH * N * N, base);
				z.ao = take(&off, TC, base);
				z.m2 = take(&off, T, base);
				z.r2 = take(&off, T, base);
				z.xn = take(&off, TC, base);
				z.h1 = take(&off, T * t->Hd, base);
				z.h2 = take(&off, T * t->Hd, base);
				z.kept = take(&off, 2 * (size_t)B, base);
			} else {
				z.x = z.xm = z.out = a->in;	/* in place */
			}
			if (base) {
				if (train && b)
					z.x = a->blk[b - 1].out;
				a->blk[b] = z;
			}
		}
		if (s < v->ns - 1) {
			size_t T4 = T / 4;
			a->mg = take(&off, T4 * 4 * t->C, base);
			a->mm = take(&off, T4, base);
			a->mr = take(&off, T4, base);
			a->mln = take(&off, T4 * 4 * t->C, base);
		}
	}
	const struct sstage *last = &v->st[v->ns - 1];
	size_t TL = (size_t)B * last->L;
	p->fm = take(&off, TL, base);
	p->fr = take(&off, TL, base);
	p->fo = take(&off, TL * v->F, base);
	if (train) {
		/* the merged LN input (T/4,4C) has the size of the stage before */
		p->dx = take(&off, mx_tc, base);
		p->dx2 = take(&off, mx_tc, base);
		p->bs.dy = take(&off, mx_tc, base);
		p->bs.dao = take(&off, mx_tc, base);
		p->bs.dqkv = take(&off, mx_t3c, base);
		p->bs.dh = take(&off, mx_th, base);
		p->bs.dxn = take(&off, mx_tc, base);
		p->bs.dbias = take(&off, mx_bias, base);
	}
	return off;
}

static void
plan_free(struct splan *p)
{
	if (!p)
		return;
	for (int s = 0; s < MIM_MAXSTAGE; s++)
		free(p->st[s].blk);
	free(p->arena);
	free(p->mask);
	free(p);
}

/* the plan for batch B (re-made when B, the mode or the thread count,
 * which sizes the attention scratch, changes) */
static struct splan *
plan_get(struct mim_model *m, int B, int train)
{
	struct swin *v = S(m);
	struct splan *p = v->plan[train];

	if (p && p->B == B && p->threads == mim_threads())
		return p;
	if ((int64_t)B * v->G * v->G > INT_MAX / 4) {	/* rows are ints in the kernels */
		mim_seterr("batch %d is too large for %d tokens per image", B, v->G * v->G);
		return NULL;
	}
	plan_free(p);
	v->plan[train] = NULL;
	if (!(p = mim_calloc(1, sizeof *p)))
		return NULL;
	p->B = B;
	p->train = train;
	p->threads = mim_threads();
	if (train && !(p->mask = mim_malloc((size_t)B * v->G * v->G))) {
		free(p);
		return NULL;
	}
	for (int s = 0; s < v->ns; s++)
		if (!(p->st[s].blk = mim_calloc((size_t)v->st[s].depth, sizeof(struct bact)))) {
			plan_free(p);
			return NULL;
		}
	size_t n = plan_layout(v, p, B, train, NULL);
	if (n > ((size_t)1 << 62) / sizeof(float) ||
	    !(p->arena = aligned_alloc(64, n * sizeof(float)))) {
		mim_seterr("out of memory for the activations of batch %d (%zu MiB)", B,
		    n * sizeof(float) >> 20);
		plan_free(p);
		return NULL;
	}
	plan_layout(v, p, B, train, p->arena);
	v->plan[train] = p;
	return p;
}

/* ---- forward ----------------------------------------------------------------- */

static int
swin_forward(struct mim_model *m, int B, const float *img, const uint8_t *mask,
    int layer, int train, uint64_t seed, float *out)
{
	struct swin *v = S(m);
	/* bf16 copies kept by an earlier forward (its backward not run) may
	 * be of buffers this one rewrites, or frees */
	mim_gemm_drop(NULL);
	struct splan *p = plan_get(m, B, train);
	const struct mim_config *c = &m->cfg;
	float eps = (float)c->layer_norm_eps;

	if (!p)
		return -1;
	p->ready = 0;
	int L0 = v->G * v->G, T0 = B * L0, E = v->E;
	float *x = p->st[0].in;

	/* patch embedding (conv k=P s=P as patches @ W^T + b), its LN */
	patch_embed_forward(v->pnw >= 0 ? p->x0 : x, E, (size_t)L0 * E, p->cols, img,
	    mim_pw(m, v->pew), mim_pw(m, v->peb), B, c->in_chans, c->img_size, c->img_size,
	    v->P, E);
	if (v->pnw >= 0)
		layernorm_forward(x, p->pm, p->pr, p->x0, mim_pw(m, v->pnw), mim_pw(m, v->pnb),
		    T0, E, eps);
	/* the mask token AFTER the patch LN; absolute_pos_embed if ape */
	if (train) {
		p->hasmask = mask != NULL;
		if (mask)
			memcpy(p->mask, mask, (size_t)T0);
	}
	mask_token_forward(x, E, (size_t)L0 * E, mask, mim_pw(m, v->mtok), B, L0, E);
	if (v->ape >= 0)
		add_pos(x, mim_pw(m, v->ape), B, L0, E);
	int last = layer ? layer - 1 : v->ns - 1;
	for (int s = 0; s <= last; s++) {
		const struct sstage *t = &v->st[s];
		struct sact *a = &p->st[s];
		for (int b = 0; b < t->depth; b++) {
			struct bact *k = &a->blk[b];
			if (train) {
				/* two draws per block: DropPath is called on each branch */
				int gi = t->blk[b].gi;
				double r = mim_droppath_rate(c->drop_path_rate, gi, v->nblocks);
				k->keep[0] = mim_droppath(k->kept, B, r, seed, 2 * gi);
				k->keep[1] = mim_droppath(k->kept + B, B, r, seed, 2 * gi + 1);
			}
			if (train)	/* bf16: inputs rounded once, for forward and dw */
				swin_block_keep(k);
			swin_block_forward(m, t, &t->blk[b], k, &p->bs, B);
		}
		const float *so = a->blk[t->depth - 1].out;
		if (layer && s == last) {
			transpose_forward(out, so, t->C, (size_t)t->L * t->C, B, t->L, t->C);
			return 0;
		}
		if (s < v->ns - 1) {
			/* patch merging: [x0,x1,x2,x3] -> LN(4C) -> Linear(4C,2C) */
			int T4 = B * t->L / 4;
			patchmerge_forward(a->mg, so, B, t->res, t->res, t->C);
			layernorm_forward(a->mln, a->mm, a->mr, a->mg, mim_pw(m, t->mnw),
			    mim_pw(m, t->mnb), T4, 4 * t->C, eps);
			linear_forward(p->st[s + 1].in, a->mln, mim_pw(m, t->redw), NULL, T4,
			    4 * t->C, 2 * t->C);
		}
	}
	const struct sstage *t = &v->st[v->ns - 1];
	layernorm_forward(p->fo, p->fm, p->fr, p->st[v->ns - 1].blk[t->depth - 1].out,
	    mim_pw(m, v->nw), mim_pw(m, v->nb), B * t->L, v->F, eps);
	transpose_forward(out, p->fo, v->F, (size_t)t->L * v->F, B, t->L, v->F);
	p->ready = train;
	return 0;
}

/* ---- backward ------------------------------------------------------------------ */

static int
swin_backward(struct mim_model *m, const float *dlatent)
{
	struct swin *v = S(m);
	struct splan *p = v->plan[1];

	if (!p || !p->ready)
		return mim_seterr("swin: backward without a training forward");
	p->ready = 0;	/* the forward's probabilities are consumed below */
	int B = p->B, ns = v->ns;
	const struct sstage *t = &v->st[ns - 1];
	float *dx = p->dx, *dx2 = p->dx2;

	/* latent (B,F,h,w) -> rows, then the final norm */
	transpose_backward(p->bs.dy, v->F, (size_t)t->L * v->F, dlatent, B, t->L, v->F);
	kern_zero(dx, (size_t)B * t->L * t->C);
	layernorm_backward(dx, mim_pg(m, v->nw), mim_pg(m, v->nb), p->bs.dy,
	    p->st[ns - 1].blk[t->depth - 1].out, mim_pw(m, v->nw), p->fm, p->fr,
	    B * t->L, v->F);
	for (int s = ns - 1; s >= 0; s--) {
		t = &v->st[s];
		struct sact *a = &p->st[s];
		for (int b = t->depth - 1; b >= 0; b--)
			swin_block_backward(m, t, &t->blk[b], &a->blk[b], &p->bs, B, dx);
		if (s == 0)
			break;
		/* dx is d loss / d (patch merging output of stage s-1) */
		const struct sstage *u = &v->st[s - 1];
		const struct sact *ua = &p->st[s - 1];
		int T4 = B * t->L, C4 = 4 * u->C;
		linear_backward(p->bs.dxn, mim_pg(m, u->redw), NULL, dx, ua->mln,
		    mim_pw(m, u->redw), T4, C4, 2 * u->C);
		kern_zero(p->bs.dy, (size_t)T4 * C4);
		layernorm_backward(p->bs.dy, mim_pg(m, u->mnw), mim_pg(m, u->mnb), p->bs.dxn, ua->mg,
		    mim_pw(m, u->mnw), ua->mm, ua->mr, T4, C4);
		kern_zero(dx2, (size_t)B * u->L * u->C);
		patchmerge_backward(dx2, p->bs.dy, B, u->res, u->res, u->C);
		float *sw = dx;
		dx = dx2;
		dx2 = sw;
	}
	/* dx = d loss / d (patch embedding + mask token + pos embed) */
	int L0 = v->G * v->G, T0 = B * L0, E = v->E;
	if (v->ape >= 0) {
		float *g = mim_pg(m, v->ape);
		for (int b = 0; b < B; b++)
			for (size_t i = 0; i < (size_t)L0 * E; i++)
				g[i] += dx[(size_t)b * L0 * E + i];
	}
	mask_token_backward(dx2, mim_pg(m, v->mtok), dx, E, (size_t)L0 * E,
	    p->hasmask ? p->mask : NULL, B, L0, E);
	float *dpe = dx2;
	if (v->pnw >= 0) {
		kern_zero(dx, (size_t)T0 * E);
		layernorm_backward(dx, mim_pg(m, v->pnw), mim_pg(m, v->pnb), dx2, p->x0,
		    mim_pw(m, v->pnw), p->pm, p->pr, T0, E);
		dpe = dx;
	}
	patch_embed_backward(mim_pg(m, v->pew), mim_pg(m, v->peb), dpe, E, (size_t)L0 * E,
	    p->cols, B, m->cfg.in_chans, m->cfg.img_size, m->cfg.img_size, v->P, E);
	return 0;
}

static void
swin_free(struct mim_model *m)
{
	struct swin *v = m->priv;

	if (!v)
		return;
	mim_gemm_drop(NULL);	/* no kept copy of a freed buffer */
	plan_free(v->plan[0]);
	plan_free(v->plan[1]);
	for (int s = 0; s < MIM_MAXSTAGE; s++) {
		free(v->st[s].blk);
		free(v->st[s].idx[0]);
		free(v->st[s].idx[1]);
		free(v->st[s].relidx);
		free(v->st[s].mask);
	}
	free(v);
	m->priv = NULL;
}

/* ---- the config: keys, defaults, checks (config.c asks) --------------------- */

#define O(f) offsetof(struct mim_config, f)
/* "depths" (the first list: it sets nstages) and "num_heads" are lists of
 * equal length */
static const struct mim_config_key swin_keys[] = {
	MIM_CONFIG_KEYS_FIRST,
	{"depths", MIM_K_LIST, O(depths)},
	{"num_heads", MIM_K_LIST, O(num_heads_s)},
	{"window_size", MIM_K_INT, O(window_size)},
	{"mlp_ratio", MIM_K_DBL, O(mlp_ratio)},
	{"qkv_bias", MIM_K_BOOL, O(qkv_bias)},
	{"ape", MIM_K_BOOL, O(ape)},
	{"patch_norm", MIM_K_BOOL, O(patch_norm)},
	MIM_CONFIG_KEYS_LAST,
};
#undef O

/* simmim_pretrain__swin_base__img192_window6__800ep.yaml */
static void
swin_defaults(struct mim_config *c)
{
	static const int d[] = {2, 2, 18, 2}, h[] = {4, 8, 16, 32};

	c->img_size = 192;
	c->patch_size = 4;
	c->embed_dim = 128;
	c->nstages = 4;
	memcpy(c->depths, d, sizeof d);
	memcpy(c->num_heads_s, h, sizeof h);
	c->window_size = 6;
	c->patch_norm = 1;
	c->drop_path_rate = 0.0;
	c->layer_norm_eps = 1e-5;
	c->encoder_stride = 32;
}

static int
swin_check(const struct mim_config *c)
{
	int res = c->img_size / c->patch_size;

	if (c->nstages < 1 || c->nstages > MIM_MAXSTAGE)
		return mim_seterr("depths must have 1 to %d entries", MIM_MAXSTAGE);
	if (c->window_size < 1)
		return mim_seterr("window_size %d is out of range", c->window_size);
	if (c->embed_dim << (c->nstages - 1) > 1 << 20)
		return mim_seterr("embed_dim %d is too large for %d stages", c->embed_dim, c->nstages);
	for (int s = 0; s < c->nstages; s++) {
		int dim = c->embed_dim << s;
		if (c->depths[s] < 1 || c->depths[s] > 1000)
			return mim_seterr("depths[%d] = %d is out of range [1, 1000]", s, c->depths[s]);
		if (c->num_heads_s[s] < 1 || dim % c->num_heads_s[s])
			return mim_seterr("stage %d: dim %d is not a multiple of num_heads %d", s, dim,
			    c->num_heads_s[s]);
		/* the official window clamp: a stage no larger than the
		 * window uses one window of the whole stage */
		if (res > c->window_size && res % c->window_size)
			return mim_seterr("stage %d: resolution %d is not a multiple of window_size %d",
			    s, res, c->window_size);
		if (s < c->nstages - 1) {
			if (res % 2)
				return mim_seterr("stage %d: resolution %d is odd, patch merging needs it even",
				    s, res);
			res /= 2;
		}
	}
	if (c->encoder_stride != c->patch_size << (c->nstages - 1))
		return mim_seterr("encoder_stride %d differs from patch_size * 2^(stages-1) = %d",
		    c->encoder_stride, c->patch_size << (c->nstages - 1));
	return 0;
}

/* num_features: the channels double at every patch merging */
static int
swin_features(const struct mim_config *c)
{
	return c->embed_dim << (c->nstages - 1);
}

/* ---- reading a foreign state dict (lib/ckpt/infer.c asks) ------------------
 *   number of layers.{s}, of their blocks            depths
 *   layers.{s}.blocks.0.attn table ((2w-1)^2, nH)    num_heads[s], window (the largest w)
 *   attn_mask (nW, w*w, w*w) in stage s              resolution w sqrt(nW) of stage s
 *   absolute_pos_embed (1, G*G, E)                   ape, resolution G
 *   buffers present but no attn_mask in a stage of >= 2 blocks: the
 *   stage is no larger than its window, so its resolution is w
 *   patch_embed.norm, attn.qkv.bias                  patch_norm, qkv_bias */

static int
swin_detect(const struct mim_frame *sd)
{
	return mim_frame_get(sd, "encoder.layers.0.blocks.0.norm1.weight") != NULL;
}

static int
swin_infer(const struct mim_frame *sd, json_t *o, const json_t *hint, int E, int p, int *grid,
    const char **from, char *unknown, size_t n)
{
	int S = mim_sd_count(sd, "encoder.layers.%d.blocks.0.norm1.weight", -1);
	int W = 0, wstage[MIM_MAXSTAGE] = {0}, masks = 0, buffers = 0;

	if (S > MIM_MAXSTAGE)
		return mim_seterr("%d Swin stages, at most %d", S, MIM_MAXSTAGE);
	json_t *depths = json_array(), *heads = json_array();
	for (int s = 0; s < S; s++) {
		json_array_append_new(depths,
		    json_integer(mim_sd_count(sd, "encoder.layers.%d.blocks.%d.norm1.weight", s)));
		const struct mim_tensor *t =
		    mim_sd_get(sd, "encoder.layers.%d.blocks.0.attn.relative_position_bias_table", s, 0);
		int side = t && t->ndim == 2 ? mim_sd_table_side(t->shape[0], 0) : -1;
		if (side < 0) {
			json_decref(depths);
			json_decref(heads);
			return mim_seterr("stage %d: no relative position table of (2w-1)^2 rows", s);
		}
		json_array_append_new(heads, json_integer(t->shape[1]));
		wstage[s] = (side + 1) / 2;
		if (wstage[s] > W)
			W = wstage[s];
		buffers |= mim_sd_get(sd, "encoder.layers.%d.blocks.0.attn.relative_position_index", s, 0) != NULL;
	}
	json_object_set_new(o, "depths", depths);
	json_object_set_new(o, "num_heads", heads);
	json_object_set_new(o, "window_size", json_integer(W));
	const struct mim_tensor *fc1 = mim_frame_get(sd, "encoder.layers.0.blocks.0.mlp.fc1.weight");
	if (fc1 && fc1->ndim == 2 && E > 0)
		json_object_set_new(o, "mlp_ratio", json_real((double)fc1->shape[0] / E));
	json_object_set_new(o, "qkv_bias",
	    json_boolean(mim_frame_get(sd, "encoder.layers.0.blocks.0.attn.qkv.bias") != NULL));
	const struct mim_tensor *ape = mim_frame_get(sd, "encoder.absolute_pos_embed");
	json_object_set_new(o, "ape", json_boolean(ape != NULL));
	json_object_set_new(o, "patch_norm",
	    json_boolean(mim_frame_get(sd, "encoder.patch_embed.norm.weight") != NULL));
	json_object_set_new(o, "encoder_stride", json_integer(S ? p << (S - 1) : p));
	if (ape && ape->ndim == 3 && mim_sd_isqrt(ape->shape[1]) > 0) {
		*grid = mim_sd_isqrt(ape->shape[1]);
		*from = "absolute_pos_embed";
	}
	for (int s = 0; s < S && *grid < 0; s++) {
		for (int b = 1; b < 100000; b += 2) {
			if (!mim_sd_get(sd, "encoder.layers.%d.blocks.%d.norm1.weight", s, b))
				break;
			const struct mim_tensor *m = mim_sd_get(sd, "encoder.layers.%d.blocks.%d.attn_mask", s, b);
			int nw = m && m->ndim == 3 ? mim_sd_isqrt(m->shape[0]) : -1;
			if (nw > 0) {
				*grid = (wstage[s] * nw) << s;
				*from = "attn_mask";
				masks = 1;
				break;
			}
		}
	}
	/* buffers kept but no shift mask: the first stage of two or more
	 * blocks is no larger than its window */
	for (int s = 0; s < S && *grid < 0 && buffers && !masks; s++)
		if (mim_sd_get(sd, "encoder.layers.%d.blocks.1.norm1.weight", s, 0)) {
			*grid = wstage[s] << s;
			*from = "the absence of shift masks";
		}
	return 0;
}

static const char *const swin_untraced[] = {"drop_path_rate", "layer_norm_eps", NULL};

/* ---- fine-tuning export (lib/ckpt/export.c asks) ----------------------------
 * The official remap_pretrained_keys_swin: each
 * layers.{s}.blocks.{b}.attn.relative_position_bias_table of (2w-1)^2 rows
 * goes to (2w'-1)^2, w' the fine-tuning window clamped to the stage's
 * resolution. */

static int
swin_ft_config(struct mim_config *ft, const struct mim_export_opt *o)
{
	if (o->window_size)
		ft->window_size = o->window_size;
	return 0;
}

static int
swin_ft_tensor(const struct mim_config *ft, const struct mim_export_opt *o, const char *name,
    int *side, int *extra)
{
	int s, b, len = 0;

	if (!mim_ends_with(name, ".attn.relative_position_bias_table"))
		return 1;
	if (sscanf(name, "layers.%d.blocks.%d.attn.relative_position_bias_table%n", &s, &b, &len) != 2 ||
	    name[len] || s < 0 || s >= ft->nstages)
		return mim_seterr("not a table of a Swin block");
	int res = (ft->img_size / ft->patch_size) >> s, w = res <= ft->window_size ? res : ft->window_size;
	*side = 2 * w - 1;
	*extra = 0;
	return 1;
}

const struct mim_arch_ops mim_swin_ops = {
	.name = "swin",
	.keys = swin_keys,
	.defaults = swin_defaults,
	.check = swin_check,
	.features = swin_features,
	.signature = "encoder.layers.* (Swin)",
	.detect = swin_detect,
	.infer = swin_infer,
	.untraced = swin_untraced,
	.ft_config = swin_ft_config,
	.ft_tensor = swin_ft_tensor,
	.params = swin_params,
	.skip = swin_skip,
	.skip_kw = swin_skip_kw,
	.buffer_check = swin_buffer_check,
	.buffers_add = swin_buffers_add,
	.layer_id = swin_layer_id,
	.init = swin_init,
	.forward = swin_forward,
	.backward = swin_backward,
	.nlayers = swin_nlayers,
	.layer_shape = swin_layer_shape,
	.free = swin_free,
};
