/* amx.h -- lib/amx.c: bf16 products on AMX tiles, a backend of mim_gemm
 * (lib/gemm.c) beside oneDNN's matmul, and the tiles' permission, which
 * lib/kern/attn_amx.c asks through it too. Not installed. */
#ifndef MIM_AMX_H
#define MIM_AMX_H

#include <stddef.h>
#include <stdint.h>

/* 1 when the CPU has AMX-BF16 and AVX512-BF16 and Linux has granted this
 * process the tiles' state (asked once, arch_prctl) */
int amx_ready(void);

/* Whether amx_gemm runs C = op(A) op(B) of this shape: op(A) as stored
 * (not transposed), N a multiple of 16, K of 32 (any K: lib/amx.c). */
int amx_takes(int ta, int N, int K);

/* op(B) (K,N) float as the tiles read it: V (K/2, N) 32-bit pairs, rows
 * ldv apart, V[k][n] = (op(B)[2k][n], op(B)[2k+1][n]) in bfloat16,
 * rounded to nearest even (as dnn_to_bf16), the first in the low half.
 * B (K,N) rows ldb apart, or tb: B (N,K), op(B) its transpose. Rows
 * [k0, k1) of V only (multiples of 16, or k1 = K/2), for the pool; N a
 * multiple of 16 and K of 32. */
void amx_pack(uint32_t *V, int ldv, const float *B, int ldb, int tb, int N, int k0,
    int k1);

/* the columns amx_gemm takes at a time (a panel: V's rows of them, for
 * all of K, about 1 MB, for L2) */
int amx_panel(int K);

/* C (M,N) rows ldc apart = A (M,K) bf16 rows lda apart @ V (K/2,N) pairs
 * rows ldv apart (amx_pack), summed in float on the tiles, K in order;
 * beginning from bias[j] in every row (bias), or from C (beta 1), else
 * from 0. On the calling thread; N a multiple of 16, K of 32 (any K:
 * amx_takes' limit is speed); 0, or -1 when out of memory (C then
 * untouched). */
int amx_gemm(int M, int N, int K, const uint16_t *A, int lda, const uint32_t *V, int ldv,
    const float *bias, int beta, float *C, int ldc);

#endif
