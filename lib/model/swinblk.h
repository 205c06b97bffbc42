/* swinblk.h -- the Swin transformer block, shared by the Swin encoder
 * (swin.c) and the inverse-Swin prediction head (head_swinv.c): its
 * parameters, their official initialisation, its forward and backward
 * over one stage's activations. Internal to lib/model (not installed).
 *
 * One block (pre-norm; shift = ws/2 on odd blocks, 0 when the window
 * clamp makes the stage a single window):
 *   y  = norm1(x) -> roll(-shift) -> window partition
 *   y  = window attention (qkv bias, q * D^-0.5, + relative position
 *        bias, + the -100 shift mask) -> proj
 *   xm = x + drop_path(roll(+shift)(window reverse(y)))
 *   out = xm + drop_path(fc2(gelu(fc1(norm2(xm)))))
 *
 * Dims: B batch, C channels, L = res^2 tokens per image, T = B*L rows, nH
 * heads, D = C/nH, Hd hidden, ws window, N = ws^2, nW = L/N, Bw = B*nW.
 *
 * A leaf of the layering (arch.h): it calls param.c, rng.c and the
 * kernels only, so the encoder and any head may call it. */
#ifndef MIM_MODEL_SWINBLK_H
#define MIM_MODEL_SWINBLK_H

#include <stdint.h>

#include "arch.h"

struct sblock {		/* parameter indices of one block (-1: absent) */
	int n1w, n1b, table, qkvw, qkvb, projw, projb, n2w, n2b, fc1w, fc1b,
	    fc2w, fc2b;
	int ws, shift, N, nW;	/* after the window clamp */
	int gi;			/* block index over the whole encoder (drop path) */
	const int *idx;		/* (L) window order of the tokens */
	const int64_t *relidx;	/* (N,N) relative position index */
	const float *mask;	/* (nW,N,N) -100 shift mask, or NULL */
};

struct sstage {
	int C, res, L, nH, D, Hd, depth, ws;
	/* between stages: the encoder's patch merging (reduction, norm), or
	 * the inverse head's patch expanding (expand, norm); -1 if none */
	int redw, mnw, mnb;
	struct sblock *blk;
	int *idx[2];		/* window order without / with the shift */
	int64_t *relidx;
	float *mask;		/* of the shifted blocks, or NULL */
};

struct bact {		/* one block (training), or shared by all (inference) */
	float *x, *xm, *out;	/* (T,C) input, after the attention residual, output */
	float *m1, *r1, *xw;	/* LN1 stats (T), its output in window order (T,C) */
	float *qkv, *att, *ao;	/* (T,3C) (q scaled in place), (Bw,nH,N,N), (T,C) */
	float *m2, *r2, *xn;	/* LN2 stats, output (T,C) */
	float *h1, *h2;		/* (T,Hd) GELU' at fc1's output (training), the GELU */
	float *kept;		/* (2,B) drop path of the two branches, or NULL: none */
	float keep[2];
};

/* Temporaries shared by all blocks of a model (sized for its largest
 * stage): tmp (T,C) proj / fc2 output, bias (nH,N,N), work
 * attention_work(N); the backward's dy, dao, dxn (T,C), dqkv (T,3C), dh
 * (T,Hd), dbias (nH,N,N). */
struct sbscratch {
	float *tmp, *bias, *work;
	float *dy, *dao, *dxn, *dqkv, *dh, *dbias;
};

/* The window clamp (SwinTransformerBlock.__init__): a stage of side res no
 * larger than the window is one window, and nothing is shifted. */
void swin_window(int res, int window, int *ws, int *shift);

/* Register block i of stage s with mim_addp() in the official order, as
 * "<pre>.layers.<s>.blocks.<i>.<name>" (pre "encoder" or "decoder");
 * b->ws must be set. 0 or -1. */
int swin_block_params(struct mim_model *m, struct sblock *b, const char *pre, int s, int i,
    int C, int Hd, int nH, int qkv_bias);
/* The indices swin_block_params gives, for a block whose first parameter
 * is first (12 parameters, 13 with the qkv bias). */
void swin_block_at(struct sblock *b, int first, int qkv_bias);
/* self.apply(_init_weights) on one block: LayerNorms 1/0, the Linear
 * weights trunc normal .02 in module order, biases 0 (left zero). The
 * relative position table is the caller's (the constructor draws every
 * table before apply runs). */
void swin_block_init(struct mim_rng *r, const struct mim_model *m, const struct sblock *b);
/* timm trunc_normal_(std=.02), bounds +-2 absolute, on parameter i (-1:
 * nothing); LayerNorm weights: ones. */
void swin_tn(struct mim_rng *r, const struct mim_model *m, int i);
void swin_ones(const struct mim_model *m, int i);

/* The persistent buffers of a block, official names under pre:
 * relative_position_index I64 (N,N), and attn_mask F32 (nW,N,N) if the
 * block is shifted. swin_buffer_name: 1 if name is
 * "<pre>.layers.<s>.blocks.<b>.attn.relative_position_index" (exactly that
 * spelling), 2 for its attn_mask, else 0; *s, *b set, not range-checked.
 * swin_buffer_check_one: t (of that kind) against block k: 1 right, 0 an
 * attn_mask of an unshifted block (not a buffer), -1 with the error set.
 * swin_block_buffers_add: append block b of stage s's buffers to f. */
int swin_buffer_name(const char *name, const char *pre, int *s, int *b);
int swin_buffer_check_one(const struct mim_tensor *t, int kind, const struct sblock *k);
int swin_block_buffers_add(struct mim_frame *f, const char *pre, int s, int b,
    const struct sblock *k);

/* Training, bf16: keep (mim_gemm_keep) the block's Linear inputs, which
 * its forward rounds and its backward reads again. Before the forward. */
void swin_block_keep(const struct bact *a);
/* One block forward: a->x -> a->xm, a->out (and what the backward reads). */
void swin_block_forward(const struct mim_model *m, const struct sstage *t,
    const struct sblock *k, struct bact *a, const struct sbscratch *s, int B);
/* dx: d loss / d block output on entry, d loss / d block input on return;
 * parameter gradients += into m->g. Destroys a->att (the probabilities
 * become the logit gradients). */
void swin_block_backward(struct mim_model *m, const struct sstage *t, const struct sblock *k,
    struct bact *a, const struct sbscratch *s, int B, float *dx);

#endif
