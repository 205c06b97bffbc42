/* onednn.h -- lib/onednn.c, oneDNN behind mim_gemm (lib/gemm.c): bf16
 * products, and float ones through its sgemm. */
#ifndef MIM_ONEDNN_H
#define MIM_ONEDNN_H

#include <stddef.h>
#include <stdint.h>

/* oneDNN's version ("2.6.3") and the ISA it runs on ("avx512_core_amx"). */
const char *dnn_version(void);
const char *dnn_isa(void);
/* 1 when oneDNN runs bf16 products in hardware: AMX or AVX512-BF16. */
int dnn_bf16(void);

/* C = alpha * op(A) @ op(B) (+ bias[j] on every row i, when bias; alpha 1
 * then) + beta * C with A and B bfloat16, summed in float, row-major as
 * mim_gemm, on the calling thread alone. 0, or -1 with the error set. */
int dnn_gemm_bf16(int ta, int tb, int M, int N, int K, float alpha, const uint16_t *A, int lda,
    const uint16_t *B, int ldb, const float *bias, float beta, float *C, int ldc);

/* the same in float (oneDNN's sgemm: its JIT kernels for the CPU's ISA),
 * without the bias; 0, or -1 with the error set */
int dnn_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
    const float *B, int ldb, float beta, float *C, int ldc);

/* the OpenMP threads of the calling thread's next products (1: alone) */
void dnn_set_threads(int n);

/* rows x cols floats at stride ldx to bfloat16 at stride ldy, rounded to
 * nearest even; fast: with AVX512-BF16's instruction (the CPU has it). */
void dnn_to_bf16(const float *x, size_t ldx, uint16_t *y, size_t ldy, int rows, int cols,
    int fast);

#endif
