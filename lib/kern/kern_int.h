/* kern_int.h -- what the kernels of lib/kern/ share and nobody else needs:
 * the spans and row-permuted variants of some kernels, deterministic
 * column sums, and vectorisable exp / normal CDF. The loops here are
 * written so that GCC vectorises them at -O2 -march=native (no branches on
 * data, selects instead). The parallel-for, kern_for, is in mim/kern.h;
 * the vector types are lib/vec.h's. */
#ifndef MIM_KERN_INT_H
#define MIM_KERN_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mim/gemm.h"
#include "mim/kern.h"
#include "mim/prof.h"
#include "mim/stream.h"
#include "../vec.h"

/* columns at a time through buffers on a kernel's stack (a row of a
 * product's sums, rounded or summed before it goes further) */
#define SPAN 512

/* GELU of n contiguous floats on the calling thread (gelu.c), and its
 * backward (as gelu_forward / gelu_backward, the same bytes); out may be
 * inp, dinp may be dout. */
void gelu_span(float *out, const float *inp, size_t n);
void gelu_backward_span(float *dinp, const float *dout, const float *inp, size_t n);
/* out = gelu(inp) and dg = gelu'(inp) (dg may be inp): a training
 * forward keeps the derivative for the backward rather than inp, which
 * then is one product a element (dinp = dout * dg, the bytes
 * gelu_backward_span gives) instead of an erf and an exp */
void gelu_dgelu_span(float *out, float *dg, const float *inp, size_t n);

/* LayerNorm (layernorm.c) whose row r reads (and, backward, writes the
 * input gradient of) row (r/L)*L + idx[r%L] of inp: Swin's LayerNorm
 * through its window permutation (window.c). idx NULL: row r. */
void ln_forward_idx(float *out, float *mean, float *rstd, const float *inp,
    const float *w, const float *b, int R, int C, float eps, const int *idx, int L);
void ln_backward_idx(float *dinp, float *dw, float *db, const float *dout,
    const float *inp, const float *w, const float *mean, const float *rstd,
    int R, int C, const int *idx, int L);

/* The terms of row r for kern_colsums, in columns c0 .. c0+w-1 (w <= 64):
 * t[0..w) and, when u is not NULL, u[0..w) for the second sum. Returns
 * the row's weight k: the sums add (double)t[c] * k; k 0 skips the row. */
typedef float kern_row_fn(void *ctx, size_t r, int c0, int w, float *t, float *u);

/* Column sums in double over R rows whose terms row() gives: acc[c] +=
 * sum_r t_r[c] * k_r, and acc2 likewise with u (acc2 NULL: no second
 * sum; acc NULL: t is summed but not stored). Parallel over blocks of 64
 * columns and chunks of rows (256, or fewer where R is a few thousand:
 * parallel.c's chunk_rows, a function of R alone), each column summed in
 * row order within a chunk and the chunks' sums added in order: the
 * result does not depend on threads. (Blocks of columns alone kept all
 * but 2 of 16 threads idle on a C = 96 LayerNorm's dw and db.) */
void kern_colsums(float *acc, float *acc2, size_t R, int C, kern_row_fn *row, void *ctx);

/* Rows' work and column sums in one pass over them: fn(ctx, r0, r1, s, u)
 * does rows [r0, r1) (kern_colsums's chunks, over the pool) and
 * adds their terms to s[0..C) and u[0..C) (zeroed; doubles, row by row,
 * as vacc_d); then acc[c] += the chunks' s[c] in order, acc2 with u
 * (either NULL): kern_colsums's sums, without a second pass over data the
 * row work read already. -1 when out of memory (nothing done). */
typedef void kern_chunk_fn(void *ctx, size_t r0, size_t r1, double *s, double *u);
int kern_rows_colsums(float *acc, float *acc2, size_t R, int C, kern_chunk_fn *fn, void *ctx);

/* acc[c] += part[ch * stride + c] summed over ch = 0, 1, .. nch-1 in that
 * order (in double, then rounded once), c < C; acc NULL: nothing. Chunks'
 * partial column sums added up the same at any thread count, over the
 * pool by blocks of columns (one thread did 2304 chunks of a Swin
 * stage-0 bias gradient, 4.5 ms, while the other 15 waited). */
void kern_add_chunks(float *acc, const double *part, size_t nch, int C, size_t stride);

/* a buffer kept by its owner (a thread's, for its next call) grown to n
 * bytes at least, its contents not kept: *buf, or NULL when out of
 * memory (*cap then 0) */
void *kern_grow(void **buf, size_t *cap, size_t n);

/* kern_colsums of a strided matrix: acc[c] += sum_r x[r*ld + c], c < C,
 * r < R. */
void kern_colsum(float *acc, const float *x, size_t R, int C, size_t ld);

/* attention's dS = P * (dP - rowsum(P * dP)) over P's N rows of N, in
 * place (softmax.c) */
void attn_dsoftmax(float *P, const float *dP, int N);

/* One head of attention_forward / attention_backward (attention.c) in
 * AVX-512 (attn512.c), the same bits as the mim_gemm path: q, k, v rows
 * of stride ld (q already scaled and biased); S (N,N) gets P; out rows of
 * stride ldo. Backward: P (N,N) becomes dS, dP (N,N) scratch, dq dk dv
 * rows of stride ld. attn512_ok: whether the CPU has AVX-512 and the
 * shape fits. */
int attn512_ok(int N, int D);
void attn512_forward(const float *q, const float *k, const float *v, ptrdiff_t ld,
    int N, int D, const float *bias, const float *mask, float *S, float *out,
    ptrdiff_t ldo);
void attn512_backward(const float *q, const float *k, const float *v, ptrdiff_t ld,
    const float *dO, ptrdiff_t ldo, float *P, float *dP, int N, int D,
    float scale, float *dq, float *dk, float *dv);

/* attn512_forward / attn512_backward's head in bf16 on AMX tiles
 * (attn_amx.c), the same arguments: the operands of the six products
 * rounded to bfloat16, the products summed in float, all else float.
 * attn_amx_ok: whether the CPU has AMX-BF16 (and AVX512-BF16), Linux
 * granted the process its tiles, and the shape fits (N <= 224, D a
 * multiple of 16 up to 64). */
int attn_amx_ok(int N, int D);
void attn_amx_forward(const float *q, const float *k, const float *v, ptrdiff_t ld,
    int N, int D, const float *bias, const float *mask, float *S, float *out,
    ptrdiff_t ldo);
void attn_amx_backward(const float *q, const float *k, const float *v, ptrdiff_t ld,
    const float *dO, ptrdiff_t ldo, float *P, float *dP, int N, int D,
    float scale, float *dq, float *dk, float *dv);

/* ---- vector math ---------------------------------------------------------
 * The transcendental loops (GELU, softmax) use the generic vectors of
 * vec.h so that they are vectorised at -O2 without fast-math: every lane
 * does exactly the scalar IEEE operations below, so results do not depend
 * on where a loop starts or how it is split. A tail shorter than 8 is
 * padded (vload_n / vstore_n) and goes through the same code. */

#define VF v8f
#define VI v8i
#define VN(f) f
#define VFN VINLINE
#define VDUP vdup
#define VFMA vfma
#include "vmath.h"

#endif
