/* mim/kern.h -- the transformer kernels of libmim, one op per file in
 * lib/kern/, each a forward / backward pair over float arrays (llm.c
 * style). The models (lib/model/) are built from these; tests check each
 * against central differences in double.
 *
 * Conventions
 *   - Row-major. Dims: B batch, N tokens per sample, R rows (= B*N), C
 *     channels, OC/IC output/input channels, Hh heads, D = C/Hh.
 *   - forward OVERWRITES its outputs.
 *   - backward ACCUMULATES (+=) into parameter gradients (dw, db, dgamma,
 *     dtable...): the caller zeroes them once per step. Input gradients
 *     are OVERWRITTEN or ACCUMULATED as each kernel says (LayerNorm
 *     accumulates, so a residual stream's gradient needs no extra add).
 *   - NULL for an optional gradient skips computing it.
 *   - Products go through mim_gemm; loops run on mim_parallel. Results are
 *     deterministic for a given thread count: no reduction order depends
 *     on which thread ran what.
 *   - Shapes are trusted: kernels do not fail. */
#ifndef MIM_KERN_H
#define MIM_KERN_H

#include <stddef.h>
#include <stdint.h>

/* ---- lib/kern/parallel.c: the kernels' parallel-for ----------------------- */

/* Run fn(ctx, lo, hi) over [0,n) in chunks of at least grain items on the
 * thread pool (mim_parallel). The split may depend on the thread count,
 * so fn must give the same results for any split (no reductions across
 * chunks). For kernels outside lib/kern too (the head's pixel shuffle). */
void kern_for(size_t n, size_t grain, void (*fn)(void *ctx, size_t lo, size_t hi),
    void *ctx);

/* x[0..n) = 0 over the pool: the backward passes' buffers of tens of MB,
 * which one thread takes milliseconds to clear */
void kern_zero(float *x, size_t n);

/* ---- lib/kern/linear.c: y = x W^T + b ------------------------------------- */

/* out (R,OC) = inp (R,IC) @ w^T + b; w (OC,IC) as nn.Linear; b (OC) or NULL */
void linear_forward(float *out, const float *inp, const float *w, const float *b,
    int R, int IC, int OC);
/* dinp (R,IC) = dout @ w (OVERWRITTEN); dw (OC,IC) += dout^T @ inp;
 * db (OC) += column sums of dout. */
void linear_backward(float *dinp, float *dw, float *db, const float *dout,
    const float *inp, const float *w, int R, int IC, int OC);
/* A Linear followed by GELU (the MLP's fc1), fused: pre (R,OC) = inp @
 * w^T + b, out (R,OC) = gelu(pre), each block of the product activated
 * while it is in cache; dg (R,OC) = gelu'(pre), what the backward needs
 * (the product's buffer until then). dg NULL: out alone (inference; out
 * is then also the product's buffer). */
void linear_gelu_forward(float *dg, float *out, const float *inp, const float *w,
    const float *b, int R, int IC, int OC);
/* The Linear after a GELU (fc2) backward, fused with the GELU's:
 * dpre (R,IC) = (dout @ w) * dg (OVERWRITTEN), dg = gelu'(pre) from
 * linear_gelu_forward, each block of the product while it is in cache;
 * dw (OC,IC) += dout^T @ act, act = gelu(pre) the Linear's input; db (OC)
 * += column sums of dout. */
void linear_gelu_backward(float *dpre, float *dw, float *db, const float *dout,
    const float *act, const float *dg, const float *w, int R, int IC, int OC);

/* ---- lib/kern/patch_embed.c: Conv2d(k = s = P) as im2col + GEMM ----------- */

/* img (B,Ci,H,W); cols (B*T, Ci*P*P) is filled (kept for backward), T =
 * (H/P)*(W/P) row-major patches, column order (ci, kh, kw) as the conv
 * weight (C,Ci,P,P) flattens. Token t of sample b goes to
 * out + b*so + t*ldo (C floats): the ViT writes behind its cls row. */
void patch_embed_forward(float *out, int ldo, size_t so, float *cols,
    const float *img, const float *w, const float *bias, int B, int Ci,
    int H, int W, int P, int C);
/* dw (C,Ci,P,P) += sum dout^T cols; db (C) += sums of dout (layout as out).
 * No input gradient (the image is data). */
void patch_embed_backward(float *dw, float *db, const float *dout, int ldo,
    size_t so, const float *cols, int B, int Ci, int H, int W, int P, int C);

/* ---- lib/kern/mask_token.c: x = x*(1-w) + token*w --------------------------- */

/* In place on token t of sample b at x + b*sx + t*ldx (C floats), w =
 * mask[b*T+t] in {0,1}; mask NULL: nothing masked (x unchanged). */
void mask_token_forward(float *x, int ldx, size_t sx, const uint8_t *mask,
    const float *token, int B, int T, int C);
/* dpe (B*T,C) = dx*(1-w), contiguous (OVERWRITTEN); dtoken (C) += sum dx*w. */
void mask_token_backward(float *dpe, float *dtoken, const float *dx, int ldx,
    size_t sx, const uint8_t *mask, int B, int T, int C);

/* ---- lib/kern/layernorm.c ---------------------------------------------------- */

/* out (R,C) = (inp - mean) * rstd * w + b, rstd = 1/sqrt(var + eps),
 * biased variance (nn.LayerNorm). mean, rstd (R) are saved unless NULL.
 * out may not alias inp. */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
    const float *w, const float *b, int R, int C, float eps);
/* dinp (R,C) += ... (ACCUMULATES); dw, db (C) +=. */
void layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
    const float *inp, const float *w, const float *mean, const float *rstd,
    int R, int C);

/* ---- lib/kern/gelu.c: x * Phi(x), the exact (erf) GELU --------------------- */

void gelu_forward(float *out, const float *inp, size_t n);
/* dinp = dout * gelu'(inp), OVERWRITTEN; dinp may alias dout. */
void gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);
/* erf in float (the one GELU uses; within a few ulp of erf) */
float gelu_erf(float x);
/* 1 (the default): 16 lanes at a time where the CPU has AVX-512F; 0: 8
 * lanes. The same bits either way; for the tests and
 * the bench. Returns the lanes now in use. */
int gelu_set_wide(int on);

/* ---- lib/kern/softmax.c: softmax over the last dim ------------------------- */

/* out (R,C) = softmax(inp) row by row; out may alias inp. */
void softmax_forward(float *out, const float *inp, int R, int C);
/* dinp = out * (dout - sum(out*dout)) per row, OVERWRITTEN; may alias dout. */
void softmax_backward(float *dinp, const float *dout, const float *out, int R, int C);
/* The same on one thread, for use inside a parallel job. */
void softmax_rows(float *x, int R, int C);
void softmax_rows_backward(float *d, const float *p, int R, int C);

/* ---- lib/kern/relpos.c: relative position bias ------------------------------ */

/* index (N,N), N = G*G+1: for patch tokens p,q (1-based, row-major on the
 * G x G grid) (hp-hq+G-1)*(2G-1) + (wp-wq+G-1); row 0 (cls query) R-3,
 * column 0 (cls key) R-2, [0,0] R-1, R = (2G-1)^2+3 (BEiT / SimMIM ViT). */
void relpos_index(int64_t *index, int G);
/* bias (Hh,N,N)[h,p,q] = table (R,Hh)[index[p,q], h] */
void relpos_forward(float *bias, const float *table, const int64_t *index, int N, int Hh);
/* dtable[index[p,q], h] += dbias[h,p,q] */
void relpos_backward(float *dtable, const float *dbias, const int64_t *index, int N, int Hh);

/* ---- lib/kern/attention.c: multi-head self-attention core ------------------ */

/* qkv (B,N,3C), the output of the qkv Linear: rows [q | k | v], each C
 * wide, head-major (head h = columns h*D..h*D+D-1). IN PLACE it becomes
 * q = (q + q_bias) * scale, k, v = v + v_bias (q_bias, v_bias (C) or NULL:
 * the SimMIM ViT has no k bias; Swin passes NULL and biases its Linear),
 * which is what backward needs. Then per sample b and head h:
 *   S = q k^T (+ bias[h]) (+ mask[b % nW]);  P = softmax(S);  out = P v
 * bias (Hh,N,N) or NULL; mask (nW,N,N) or NULL. out (B,N,C), heads
 * concatenated as PyTorch's transpose(1,2).reshape. P (B,Hh,N,N) keeps the
 * probabilities for backward, or NULL (inference); then work must hold
 * attention_work(N) floats, else work may be NULL. */
void attention_forward(float *out, float *P, float *qkv, const float *q_bias,
    const float *v_bias, const float *bias, const float *mask, int nW, int B,
    int N, int C, int Hh, float scale, float *work);
/* dqkv (B,N,3C) OVERWRITTEN with the gradient of the raw Linear output;
 * dq_bias, dv_bias (C) +=. P holds the forward's probabilities and is
 * OVERWRITTEN with dS, the gradient of the logits S, which is also the
 * gradient of each additive bias term (see attention_dbias). work:
 * attention_work(N) floats. */
void attention_backward(float *dqkv, float *dq_bias, float *dv_bias, float *P,
    const float *dout, const float *qkv, int B, int N, int C, int Hh,
    float scale, float *work);
/* dbias (Hh,N,N) += sum over b of dS (B,Hh,N,N). */
void attention_dbias(float *dbias, const float *dS, int B, int Hh, int N);
/* 1 (the default): each head in one AVX-512 kernel (lib/kern/attn512.c)
 * where the CPU has AVX-512F; 0: through mim_gemm and softmax_rows. The
 * same bits either way; a switch for bench/attnbench.c. */
void attention_set_fused(int on);
/* With the precision bf16 (mim_gemm_set_precision) and where the CPU has
 * AMX-BF16, a head's six products on AMX tiles in bf16, summed in float
 * (lib/kern/attn_amx.c; N up to 160, D a multiple of 16 up to 64): 1 (the
 * default) for N over 64, where that is faster than float (the ViTs' 145
 * tokens, not Swin's windows of 36); 2 for every shape that fits; 0 none,
 * float as with fp32. MIM_ATTN_AMX=0, 1 or 2 in the environment sets it
 * before the first call. */
void attention_set_amx(int mode);
/* floats of scratch attention_forward / attention_backward need. */
size_t attention_work(int N);

/* ---- lib/kern/residual.c: x + drop_path(gamma * y) -------------------------- */

/* out (B,N,C) = x + ((gamma*y) / keep) * kept[b]   (timm DropPath after
 * layer scale). gamma (C) or NULL (no layer scale); kept (B) of 0/1 or
 * NULL (no drop path, keep ignored). out may alias x. */
void residual_forward(float *out, const float *x, const float *y, const float *gamma,
    const float *kept, float keep, int B, int N, int C);
/* The same with y = inp @ w^T + b, inp (B*N, IC), w (C, IC), b (C) (a
 * Linear): the residual takes each strip of the product's rows as it is
 * summed (mim_gemm_sums), so in bf16 y is never stored; tmp (B*N, C)
 * holds it in float. The same bytes as linear_forward then
 * residual_forward, but for the last place of a bf16 product on oneDNN
 * (mim_gemm_sums). out must not alias inp. */
void linear_residual_forward(float *out, const float *x, const float *inp, const float *w,
    const float *b, int IC, const float *gamma, const float *kept, float keep, int B, int N,
    int C, float *tmp);
/* dy (B,N,C) = d out/d y * dout, OVERWRITTEN; dgamma (C) +=. The gradient
 * of x is dout itself (the identity): nothing to do. */
void residual_backward(float *dy, float *dgamma, const float *dout, const float *y,
    const float *gamma, const float *kept, float keep, int B, int N, int C);

/* ---- lib/kern/pixel_shuffle.c -------------------------------------------------- */

/* nn.PixelShuffle(r) of token-major input (the head's 1x1 convolution output):
 * out (B,Co,H*r,W*r)[b,c,h*r+i,w*r+j] = dec (B*H*W,Co*r*r)[(b*H+h)*W+w, c*r*r+i*r+j] */
void pixel_shuffle_forward(float *out, const float *dec, int B, int Co, int H, int W, int r);
/* ddec = the inverse permutation of dout, OVERWRITTEN */
void pixel_shuffle_backward(float *ddec, const float *dout, int B, int Co, int H, int W, int r);

/* ---- lib/kern/transpose.c ------------------------------------------------------ */

/* out (B,C,R)[b,c,r] = inp[b*si + r*ldi + c]: tokens to a channel-major
 * feature map (and back with transpose_backward, which OVERWRITES
 * din[b*si + r*ldi + c] = dout[b,c,r] and leaves other rows alone). */
void transpose_forward(float *out, const float *inp, int ldi, size_t si, int B, int R, int C);
void transpose_backward(float *din, int ldi, size_t si, const float *dout, int B, int R, int C);

#endif
