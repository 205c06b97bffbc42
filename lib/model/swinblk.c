/* swinblk.c -- the Swin transformer block shared by the encoder (swin.c)
 * and the inverse-Swin head (head_swinv.c); see swinblk.h. Moved here
 * from swin.c unchanged, so that the encoder computes the same bytes. */

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "swinblk.h"
#include "mim/gemm.h"
#include "mim/kern.h"
#include "mim/swin.h"

void
swin_window(int res, int window, int *ws, int *shift)
{
	int clamp = res <= window;

	*ws = clamp ? res : window;
	*shift = clamp ? 0 : window / 2;
}

int
swin_block_params(struct mim_model *m, struct sblock *b, const char *pre, int s, int i,
    int C, int Hd, int nH, int qkv_bias)
{
#define P1(a) mim_addp(m, 1, a, 0, 0, 0,
#define P2(a, b) mim_addp(m, 2, a, b, 0, 0,
	const char *f = "%s.layers.%d.blocks.%d.%s";
	b->n1w = P1(C) f, pre, s, i, "norm1.weight");
	b->n1b = P1(C) f, pre, s, i, "norm1.bias");
	b->table = P2((2 * b->ws - 1) * (2 * b->ws - 1), nH) f, pre, s, i,
	    "attn.relative_position_bias_table");
	b->qkvw = P2(3 * C, C) f, pre, s, i, "attn.qkv.weight");
	b->qkvb = qkv_bias ? P1(3 * C) f, pre, s, i, "attn.qkv.bias") : -1;
	b->projw = P2(C, C) f, pre, s, i, "attn.proj.weight");
	b->projb = P1(C) f, pre, s, i, "attn.proj.bias");
	b->n2w = P1(C) f, pre, s, i, "norm2.weight");
	b->n2b = P1(C) f, pre, s, i, "norm2.bias");
	b->fc1w = P2(Hd, C) f, pre, s, i, "mlp.fc1.weight");
	b->fc1b = P1(Hd) f, pre, s, i, "mlp.fc1.bias");
	b->fc2w = P2(C, Hd) f, pre, s, i, "mlp.fc2.weight");
	b->fc2b = P1(C) f, pre, s, i, "mlp.fc2.bias");
#undef P1
#undef P2
	if (b->n1w < 0 || b->table < 0 || b->qkvw < 0 || (qkv_bias && b->qkvb < 0) ||
	    b->projw < 0 || b->projb < 0 || b->n2w < 0 || b->n2b < 0 ||
	    b->fc1w < 0 || b->fc1b < 0 || b->fc2w < 0 || b->fc2b < 0)
		return -1;
	return 0;
}

void
swin_block_at(struct sblock *b, int first, int qkv_bias)
{
	int p = first;

	/* the order of swin_block_params */
	b->n1w = p++;
	b->n1b = p++;
	b->table = p++;
	b->qkvw = p++;
	b->qkvb = qkv_bias ? p++ : -1;
	b->projw = p++;
	b->projb = p++;
	b->n2w = p++;
	b->n2b = p++;
	b->fc1w = p++;
	b->fc1b = p++;
	b->fc2w = p++;
	b->fc2b = p;
}

/* ---- buffers: relative_position_index (I64 (N,N)) of every block and
 * attn_mask (F32 (nW,N,N)) of the shifted ones ---------------------------- */

int
swin_buffer_name(const char *name, const char *pre, int *s, int *b)
{
	int n = 0;
	char fmt[64], what[64], canon[192];

	snprintf(fmt, sizeof fmt, "%s.layers.%%d.blocks.%%d.%%63s%%n", pre);
	if (sscanf(name, fmt, s, b, what, &n) != 3 || name[n] != 0 || *s < 0 || *b < 0)
		return 0;
	/* exactly the official spelling ("layers.01" is not a buffer) */
	snprintf(canon, sizeof canon, "%s.layers.%d.blocks.%d.%s", pre, *s, *b, what);
	if (strcmp(canon, name) != 0)
		return 0;
	if (strcmp(what, "attn.relative_position_index") == 0)
		return 1;
	if (strcmp(what, "attn_mask") == 0)
		return 2;
	return 0;
}

int
swin_buffer_check_one(const struct mim_tensor *t, int kind, const struct sblock *k)
{
	int64_t N = k->N, n;

	if (kind == 2 && !k->mask)
		return 0;	/* an unshifted block has no mask */
	if (kind == 1) {
		if (t->dtype != MIM_I64 && t->dtype != MIM_I32)
			return mim_seterr("buffer '%s': dtype %s, want I64", t->name, mim_dtype_name(t->dtype));
		if (t->ndim != 2 || t->shape[0] != N || t->shape[1] != N)
			return mim_seterr("buffer '%s': shape is not [%lld,%lld] (window %d)", t->name,
			    (long long)N, (long long)N, k->ws);
		for (int64_t i = 0; i < N * N; i++)
			if ((int64_t)mim_tensor_get(t, i) != k->relidx[i])
				return mim_seterr("buffer '%s': differs from the official index at %lld",
				    t->name, (long long)i);
		return 1;
	}
	n = (int64_t)k->nW * N * N;
	if (t->dtype != MIM_F32 && t->dtype != MIM_F16 && t->dtype != MIM_BF16 && t->dtype != MIM_F64)
		return mim_seterr("buffer '%s': dtype %s, want F32", t->name, mim_dtype_name(t->dtype));
	if (t->ndim != 3 || t->shape[0] != k->nW || t->shape[1] != N || t->shape[2] != N)
		return mim_seterr("buffer '%s': shape is not [%d,%lld,%lld]", t->name, k->nW,
		    (long long)N, (long long)N);
	for (int64_t i = 0; i < n; i++)
		if (mim_tensor_get(t, i) != k->mask[i])
			return mim_seterr("buffer '%s': differs from the official shift mask at %lld",
			    t->name, (long long)i);
	return 1;
}

int
swin_block_buffers_add(struct mim_frame *f, const char *pre, int s, int b,
    const struct sblock *k)
{
	char nm[160];
	int64_t N = k->N, sh[3] = {k->nW, N, N};

	if (k->mask) {
		snprintf(nm, sizeof nm, "%s.layers.%d.blocks.%d.attn_mask", pre, s, b);
		if (!mim_frame_add(f, nm, MIM_F32, 3, sh, k->mask))
			return -1;
	}
	snprintf(nm, sizeof nm, "%s.layers.%d.blocks.%d.attn.relative_position_index", pre, s, b);
	if (!mim_frame_add(f, nm, MIM_I64, 2, sh + 1, k->relidx))
		return -1;
	return 0;
}

void
swin_tn(struct mim_rng *r, const struct mim_model *m, int i)
{
	/* timm trunc_normal_(std=.02) with its default bounds a=-2, b=2
	 * (absolute), i.e. effectively an untruncated N(0, .02^2) */
	if (i >= 0)
		mim_init_trunc_normal(r, mim_pw(m, i), m->p[i].numel, 0.0, 0.02, -2.0, 2.0);
}

void
swin_ones(const struct mim_model *m, int i)
{
	if (i >= 0)
		mim_init_const(mim_pw(m, i), m->p[i].numel, 1.0f);
}

void
swin_block_init(struct mim_rng *r, const struct mim_model *m, const struct sblock *b)
{
	swin_ones(m, b->n1w);
	swin_tn(r, m, b->qkvw);
	swin_tn(r, m, b->projw);
	swin_ones(m, b->n2w);
	swin_tn(r, m, b->fc1w);
	swin_tn(r, m, b->fc2w);
}

/* bf16: the four Linears' inputs are rounded once, by the forward, and
 * read again by their weight gradients (linear_backward drops them) */
void
swin_block_keep(const struct bact *a)
{
	mim_gemm_keep(a->xw);
	mim_gemm_keep(a->ao);
	mim_gemm_keep(a->xn);
	mim_gemm_keep(a->h2);
}

void
swin_block_forward(const struct mim_model *m, const struct sstage *t, const struct sblock *k,
    struct bact *a, const struct sbscratch *s, int B)
{
	int C = t->C, L = t->L, T = B * L, N = k->N, Bw = B * k->nW;
	float eps = (float)m->cfg.layer_norm_eps;
	const float *kept0 = a->kept && a->keep[0] < 1 ? a->kept : NULL;
	const float *kept1 = a->kept && a->keep[1] < 1 ? a->kept + B : NULL;

	/* windows = partition(roll(norm1(x), -shift)): one pass through idx */
	window_ln_forward(a->xw, a->m1, a->r1, a->x, mim_pw(m, k->n1w), mim_pw(m, k->n1b),
	    k->idx, B, L, C, eps);
	linear_forward(a->qkv, a->xw, mim_pw(m, k->qkvw), mim_pw(m, k->qkvb), T, C, 3 * C);
	/* attention over the Bw windows: q * D^-0.5 (in place), + bias[h], +
	 * the shift mask of window w % nW, softmax, @ v */
	relpos_forward(s->bias, mim_pw(m, k->table), k->relidx, N, t->nH);
	attention_forward(a->ao, a->att, a->qkv, NULL, NULL, s->bias, k->mask, k->nW, Bw, N,
	    C, t->nH, 1.0f / sqrtf((float)t->D), s->work);
	/* xm = x + drop_path(roll(reverse(proj(ao)), +shift)): the add on the
	 * product's rows as they are summed */
	linear_reverse_add(a->xm, a->x, a->ao, mim_pw(m, k->projw), C, mim_pw(m, k->projb), kept0,
	    a->keep[0], k->idx, B, L, C, s->tmp);
	/* out = xm + drop_path(fc2(gelu(fc1(norm2(xm))))) */
	layernorm_forward(a->xn, a->m2, a->r2, a->xm, mim_pw(m, k->n2w), mim_pw(m, k->n2b),
	    T, C, eps);
	/* fc1 and GELU fused (inference: in place, h2 is h1) */
	linear_gelu_forward(a->h2 != a->h1 ? a->h1 : NULL, a->h2, a->xn, mim_pw(m, k->fc1w),
	    mim_pw(m, k->fc1b), T, C, t->Hd);
	linear_residual_forward(a->out, a->xm, a->h2, mim_pw(m, k->fc2w), mim_pw(m, k->fc2b), t->Hd,
	    NULL, kept1, a->keep[1], B, L, C, s->tmp);
}

void
swin_block_backward(struct mim_model *m, const struct sstage *t, const struct sblock *k,
    struct bact *a, const struct sbscratch *s, int B, float *dx)
{
	int C = t->C, L = t->L, T = B * L, N = k->N, Bw = B * k->nW, Hd = t->Hd;
	const float *kept0 = a->kept && a->keep[0] < 1 ? a->kept : NULL;
	const float *kept1 = a->kept && a->keep[1] < 1 ? a->kept + B : NULL;

	/* out = xm + drop_path(fc2(h2) + b2): d/d xm is dx itself */
	const float *dt = dx;
	if (kept1) {
		residual_backward(s->dy, NULL, dx, NULL, NULL, kept1, a->keep[1], B, L, C);
		dt = s->dy;
	}
	mim_gemm_keep(s->dh);	/* bf16: rounded by the GELU's backward */
	linear_gelu_backward(s->dh, mim_pg(m, k->fc2w), mim_pg(m, k->fc2b), dt, a->h2, a->h1,
	    mim_pw(m, k->fc2w), T, Hd, C);
	linear_backward(s->dxn, mim_pg(m, k->fc1w), mim_pg(m, k->fc1b), s->dh, a->xn,
	    mim_pw(m, k->fc1w), T, C, Hd);
	mim_gemm_drop(s->dh);
	layernorm_backward(dx, mim_pg(m, k->n2w), mim_pg(m, k->n2b), s->dxn, a->xm,
	    mim_pw(m, k->n2w), a->m2, a->r2, T, C);
	/* xm = x + drop_path(reverse(proj(ao) + pb)): the branch gradient is
	 * dx read through the window order */
	mim_gemm_keep(s->dy);	/* bf16: rounded, its bias sums made, by the gather */
	window_gather(s->dy, dx, k->idx, kept0, a->keep[0], B, L, C);
	linear_backward(s->dao, mim_pg(m, k->projw), mim_pg(m, k->projb), s->dy, a->ao,
	    mim_pw(m, k->projw), T, C, C);
	mim_gemm_drop(s->dy);
	attention_backward(s->dqkv, NULL, NULL, a->att, s->dao, a->qkv, Bw, N, C, t->nH,
	    1.0f / sqrtf((float)t->D), s->work);
	/* the logit gradients, summed over windows, are the bias gradient */
	memset(s->dbias, 0, (size_t)t->nH * N * N * sizeof(float));
	attention_dbias(s->dbias, a->att, Bw, t->nH, N);
	relpos_backward(mim_pg(m, k->table), s->dbias, k->relidx, N, t->nH);
	linear_backward(s->dxn, mim_pg(m, k->qkvw), mim_pg(m, k->qkvb), s->dqkv, a->xw,
	    mim_pw(m, k->qkvw), T, C, 3 * C);
	window_ln_backward(dx, mim_pg(m, k->n1w), mim_pg(m, k->n1b), s->dxn, a->x,
	    mim_pw(m, k->n1w), a->m1, a->r1, k->idx, B, L, C);
}

