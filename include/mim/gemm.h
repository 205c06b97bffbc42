/* mim/gemm.h -- every matrix product of the library goes through here, so a
 * different backend (bf16 on AMX through oneDNN, say) can replace sgemm
 * without touching the models. Row-major, as cblas_sgemm(CblasRowMajor). */
#ifndef MIM_GEMM_H
#define MIM_GEMM_H

#include <stddef.h>

/* C = alpha * op(A) @ op(B) + beta * C, op(X) = X or X^T (ta, tb nonzero).
 * op(A) is (M,K), op(B) is (K,N), C is (M,N); lda/ldb/ldc are the stored
 * row lengths. */
void mim_gemm(int ta, int tb, int M, int N, int K, float alpha,
    const float *A, int lda, const float *B, int ldb, float beta,
    float *C, int ldc);

/* The same product for `batch` independent matrices at strides sA, sB, sC
 * (in floats). Small products (attention heads, Swin windows) are spread
 * over the thread pool with single-threaded BLAS calls, large ones go to
 * threaded BLAS one by one. */
void mim_gemm_batch(int ta, int tb, int M, int N, int K, float alpha,
    const float *A, int lda, size_t sA, const float *B, int ldb, size_t sB,
    float beta, float *C, int ldc, size_t sC, int batch);

/* Run fn(ctx, i) for i in [0,n) on the library's thread pool (mim_threads()
 * threads; the caller takes part). Returns when all are done. Workers
 * sleep on a condition variable between jobs: no spinning. fn must not
 * call mim_parallel itself (nested calls run serially). */
void mim_parallel(int n, void (*fn)(void *ctx, int i), void *ctx);

/* Current pool thread index in [0, mim_threads()) (0 outside a job). */
int mim_thread_index(void);

#endif
