/* mim/gemm.h -- every matrix product of the library goes through here, so a
 * different backend (bf16 on AMX through oneDNN, say) can replace sgemm
 * without touching the models. Row-major, as cblas_sgemm(CblasRowMajor). */
#ifndef MIM_GEMM_H
#define MIM_GEMM_H

#include <stddef.h>

#include "mim/pool.h"

/* C = alpha * op(A) @ op(B) + beta * C, op(X) = X or X^T (ta, tb nonzero).
 * op(A) is (M,K), op(B) is (K,N), C is (M,N); lda/ldb/ldc are the stored
 * row lengths. */
void mim_gemm(int ta, int tb, int M, int N, int K, float alpha,
    const float *A, int lda, const float *B, int ldb, float beta,
    float *C, int ldc);

/* mim_gemm, then epi(ctx, m0, m1, n0, n1) on blocks of C that together
 * cover it once, each called right after its block is final (on the
 * thread that computed it, while the block is still in its cache): the
 * place to fuse a bias, an activation or a column sum into the product.
 * Blocks are whole rows [m0,m1) x [0,N), m0 a multiple of MIM_GEMM_ROWS,
 * or whole columns [0,M) x [n0,n1), and may run concurrently; epi must
 * only touch data of its block (or keep per-block results to combine in a
 * fixed order later). */
#define MIM_GEMM_ROWS 32
void mim_gemm_ex(int ta, int tb, int M, int N, int K, float alpha,
    const float *A, int lda, const float *B, int ldb, float beta, float *C,
    int ldc, void (*epi)(void *ctx, int m0, int m1, int n0, int n1), void *ctx);

/* The same product for `batch` independent matrices at strides sA, sB, sC
 * (in floats). Small products (attention heads, Swin windows) are spread
 * over the thread pool, each on one thread (lib/smm.c or single-threaded
 * BLAS); large ones go one by one, each cut over the pool as mim_gemm
 * does. */
void mim_gemm_batch(int ta, int tb, int M, int N, int K, float alpha,
    const float *A, int lda, size_t sA, const float *B, int ldb, size_t sB,
    float beta, float *C, int ldc, size_t sC, int batch);

#endif
