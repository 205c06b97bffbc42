/* mim/swin.h -- the Swin-specific kernels: (shifted) window partition as a
 * token permutation, LayerNorm fused with that permutation, the relative
 * position index, the shifted-window -100 mask, and patch merging. The
 * window attention itself is the shared attention_forward of mim/kern.h
 * (batched over windows x heads, bias and mask). The model is
 * lib/model/swin.c.
 *
 * Dims: B batch, H W map size in tokens, L = H*W tokens per image, C
 * channels, ws window size, N = ws*ws tokens per window, nW = L/N windows
 * per image, Bw = B*nW windows, nH heads, D = C/nH head dim.
 *
 * Window order: token t of the partitioned map (the official
 * window_partition(roll(x, (-s,-s)))) is t = w*N + p, window w = wh*(W/ws)+ww
 * row-major, p = ph*ws+pw row-major inside it. Forward kernels overwrite
 * their outputs; backward kernels ACCUMULATE (+=) into parameter gradients
 * and into dx of the residual stream, and overwrite intermediate buffers
 * where the comment says so. */
#ifndef MIM_SWIN_H
#define MIM_SWIN_H

#include <stddef.h>
#include <stdint.h>

/* ---- lib/kern/window.c --------------------------------------------------- */

/* idx (L): image token (row-major) of window-order token t after
 * roll(-shift,-shift); a permutation of [0,L). ws must divide H and W. */
void window_index(int *idx, int H, int W, int ws, int shift);
/* idx (N,N): relative position index, (hp-hq+ws-1)*(2ws-1) + (wp-wq+ws-1). */
void window_relidx(int64_t *idx, int ws);
/* mask (nW,N,N): -100 where tokens p, q of window w lie in different roll
 * regions (slices (0,-ws), (-ws,-s), (-s,) of each axis), else 0. */
void window_mask(float *mask, int H, int W, int ws, int shift);

/* out[b,t] = x[b,idx[t]] * kept[b] / keep: (B,L,C) <- (B,L,C). kept (B)
 * 0/1 per sample, or NULL for a plain gather (keep unused then). idx NULL
 * is the identity. Also the backward of window_reverse_add's y. In bf16,
 * with out kept (mim_gemm_keep: the output gradient of a Linear), out's
 * copy and chunk sums are made here instead, and out's floats are not
 * written. */
void window_gather(float *out, const float *x, const int *idx, const float *kept,
    float keep, int B, int L, int C);
/* out[b,idx[t]] = x[b,idx[t]] + drop_path(y[b,t] + bias): window reverse,
 * roll back, and the residual add in one pass. drop_path(v) = v / keep *
 * kept[b] (timm's DropPath) if kept is not NULL, else v. bias (C) may be
 * NULL, out may be x, idx NULL is the identity (a plain residual add). */
void window_reverse_add(float *out, const float *x, const float *y, const float *bias,
    const float *kept, float keep, const int *idx, int B, int L, int C);
/* The same with y = inp @ w^T, inp (B*L, IC), w (C, IC) (a Linear
 * without its bias; bias added here, as above): the add takes each strip
 * of the product's rows as it is summed (mim_gemm_sums), so in bf16 y is
 * never stored; tmp (B*L, C) holds it in float. The same bytes as
 * linear_forward then window_reverse_add, but for the last place of a
 * bf16 product on oneDNN (mim_gemm_sums). */
void linear_reverse_add(float *out, const float *x, const float *inp, const float *w, int IC,
    const float *bias, const float *kept, float keep, const int *idx, int B, int L, int C,
    float *tmp);

/* LayerNorm of the gathered rows: out[b,t] = LN(x[b,idx[t]]) * w + b_,
 * biased variance, rstd = 1/sqrt(var+eps). mean, rstd (B*L) by output row.
 * idx NULL means the identity (a plain LayerNorm). */
void window_ln_forward(float *out, float *mean, float *rstd, const float *x,
    const float *w, const float *b, const int *idx, int B, int L, int C, float eps);
/* Accumulates dx (scattered through idx), dw, db. */
void window_ln_backward(float *dx, float *dw, float *db, const float *dout,
    const float *x, const float *w, const float *mean, const float *rstd,
    const int *idx, int B, int L, int C);

/* ---- lib/kern/patchmerge.c ----------------------------------------------- */

/* out (B,H/2*W/2,4C): row (i,j) = [x(2i,2j), x(2i+1,2j), x(2i,2j+1),
 * x(2i+1,2j+1)], the official concatenation order; x (B,H*W,C). */
void patchmerge_forward(float *out, const float *x, int B, int H, int W, int C);
/* dx += the scatter of dout. */
void patchmerge_backward(float *dx, const float *dout, int B, int H, int W, int C);

#endif
