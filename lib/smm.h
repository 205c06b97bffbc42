/* smm.h -- lib/smm.c, the small-product backend of mim_gemm (lib/gemm.c).
 * Not installed. */
#ifndef MIM_SMM_H
#define MIM_SMM_H

/* C = alpha op(A) op(B) + beta C as cblas_sgemm(CblasRowMajor, ...) on the
 * calling thread, if the CPU and the size allow (returns 1); else nothing
 * is done and it returns 0. */
int mim_smm(int ta, int tb, int M, int N, int K, float alpha, const float *A,
    int lda, const float *B, int ldb, float beta, float *C, int ldc);

#endif
