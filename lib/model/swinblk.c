/* swinblk.c -- the Swin transformer block shared by the encoder (swin.c)
 * and the inverse-Swin head (head_swinv.c); see swinblk.h. Moved here
 * from swin.c unchanged, so that the encoder computes the same bytes. */

#include <math.h>
#include <string.h>

#include "swinblk.h"
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
	linear_forward(s->tmp, a->ao, mim_pw(m, k->projw), NULL, T, C, C);
	/* xm = x + drop_path(roll(reverse(proj), +shift)): one pass */
	window_reverse_add(a->xm, a->x, s->tmp, mim_pw(m, k->projb), kept0, a->keep[0],
	    k->idx, B, L, C);
	/* out = xm + drop_path(fc2(gelu(fc1(norm2(xm))))) */
	layernorm_forward(a->xn, a->m2, a->r2, a->xm, mim_pw(m, k->n2w), mim_pw(m, k->n2b),
	    T, C, eps);
	/* fc1 and GELU fused (inference: in place, h2 is h1) */
	linear_gelu_forward(a->h2 != a->h1 ? a->h1 : NULL, a->h2, a->xn, mim_pw(m, k->fc1w),
	    mim_pw(m, k->fc1b), T, C, t->Hd);
	linear_forward(s->tmp, a->h2, mim_pw(m, k->fc2w), mim_pw(m, k->fc2b), T, t->Hd, C);
	residual_forward(a->out, a->xm, s->tmp, NULL, kept1, a->keep[1], B, L, C);
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
	linear_gelu_backward(s->dh, mim_pg(m, k->fc2w), mim_pg(m, k->fc2b), dt, a->h2, a->h1,
	    mim_pw(m, k->fc2w), T, Hd, C);
	linear_backward(s->dxn, mim_pg(m, k->fc1w), mim_pg(m, k->fc1b), s->dh, a->xn,
	    mim_pw(m, k->fc1w), T, C, Hd);
	layernorm_backward(dx, mim_pg(m, k->n2w), mim_pg(m, k->n2b), s->dxn, a->xm,
	    mim_pw(m, k->n2w), a->m2, a->r2, T, C);
	/* xm = x + drop_path(reverse(proj(ao) + pb)): the branch gradient is
	 * dx read through the window order */
	window_gather(s->dy, dx, k->idx, kept0, a->keep[0], B, L, C);
	linear_backward(s->dao, mim_pg(m, k->projw), mim_pg(m, k->projb), s->dy, a->ao,
	    mim_pw(m, k->projw), T, C, C);
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

