/* mim/gemm.h -- every matrix product of the library goes through here, so a
 * different backend can replace sgemm without touching the models:
 * oneDNN's sgemm or OpenBLAS's (lib/gemm.c; OpenBLAS's kernels checked
 * against the CPU in lib/blas.c) or, with the precision set to bf16,
 * oneDNN's bf16 matmul (lib/onednn.c). Row-major, as
 * cblas_sgemm(CblasRowMajor). */
#ifndef MIM_GEMM_H
#define MIM_GEMM_H

#include <stddef.h>
#include <stdint.h>

#include "mim/pool.h"

/* C = alpha * op(A) @ op(B) + beta * C, op(X) = X or X^T (ta, tb nonzero).
 * op(A) is (M,K), op(B) is (K,N), C is (M,N); lda/ldb/ldc are the stored
 * row lengths. */
void mim_gemm(int ta, int tb, int M, int N, int K, float alpha,
    const float *A, int lda, const float *B, int ldb, float beta,
    float *C, int ldc);

/* C = op(A) @ op(B) + bias, bias (N) added to every row: PyTorch's addmm,
 * nn.Linear's forward. In float C starts as the bias and the product is
 * added to it (beta 1), as addmm does; in bf16 oneDNN adds the bias to its
 * float sums as it stores them, instead of a pass writing the bias over C
 * and the product reading C back (where oneDNN splits K itself the bias
 * may join the sums at another point: the last bit can differ from that
 * way, not the precision). */
void mim_gemm_bias(int ta, int tb, int M, int N, int K, const float *A, int lda,
    const float *B, int ldb, const float *bias, float *C, int ldc);

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

/* C = op(A) @ op(B) (+ bias in every row), its sums handed to
 * own(ctx, c, ldc, m0, m1, n0, n1) block by block, as mim_gemm_ex's
 * epilogue, with c the block's first sum (row m0, column n0) and its rows
 * ldc apart: in bf16 a strip of rows computed into a buffer of the
 * thread (for L2), C's memory left unwritten; in float (or without memory
 * for the buffer) C itself. For an epilogue that writes everything that follows from the
 * sums itself (fc1's GELU, fc2's GELU backward): the sums are not stored
 * to memory and read back. They are mim_gemm_bias's (mim_gemm's without
 * bias) to the bit in float and on lib/amx.c's tiles; oneDNN's bf16
 * matmul, called a strip at a time, may sum a long K another way for
 * fewer rows (at K 1536, in the last place). */
typedef void (*mim_gemm_sums_fn)(void *ctx, const float *c, int ldc, int m0, int m1, int n0,
    int n1);
void mim_gemm_sums(int ta, int tb, int M, int N, int K, const float *A, int lda,
    const float *B, int ldb, const float *bias, float *C, int ldc, mim_gemm_sums_fn own,
    void *ctx);

/* How a product is shared by the pool's threads (lib/gemm.c, "the cut"):
 * MIM_CUT_AUTO, a grid of blocks of rows, columns and slices of K chosen
 * by a cost model per shape; MIM_CUT_1D, blocks of the longer side of C
 * only (the rule before the grid, kept for measuring against; also
 * MIM_GEMM_CUT=1d in the environment). mim_gemm_set_grid forces gm x gn
 * x gk blocks on every product without an epilogue (NULL: the cut again),
 * for the bench. mim_gemm_grid tells the blocks along M, N and K that
 * mim_gemm(_ex, with an epilogue if epi) would cut an M x N x K product
 * into at the present thread count (1, 1, 1: on the calling thread). */
enum mim_gemm_cut { MIM_CUT_AUTO, MIM_CUT_1D };
void mim_gemm_set_cut(enum mim_gemm_cut c);
void mim_gemm_set_grid(const int g[3]);
void mim_gemm_grid(int M, int N, int K, int epi, int g[3]);

/* The float products' backend: MIM_SGEMM_ONEDNN (the default), oneDNN's
 * sgemm, whose JIT kernels for the CPU's ISA ran 11 of 16 product shapes
 * of the four models 5-34% faster than OpenBLAS 0.3.21's on one thread,
 * two 3-4%, three level within 1% (AVX-512, operands cold; the level ones
 * Swin's stage-0 products of 73,728 rows: bench/RESULTS.md), and capped
 * at AVX2 level to 49% faster; a transposed A at a stride of a multiple
 * of 2 KB, which it reads slowly, goes to OpenBLAS anyway. Or
 * MIM_SGEMM_OPENBLAS, OpenBLAS's sgemm (also MIM_SGEMM=openblas in the
 * environment; any other value: oneDNN). Either way a product is cut over
 * the pool the same way, each block on one thread; the two differ in the
 * last place. For the whole process: set it before the work (or between
 * steps, as the bench does). */
enum mim_sgemm { MIM_SGEMM_ONEDNN, MIM_SGEMM_OPENBLAS };
void mim_gemm_set_sgemm(enum mim_sgemm b);
enum mim_sgemm mim_gemm_sgemm(void);
const char *mim_sgemm_name(enum mim_sgemm b);

/* bf16: the products whose op(A) is not transposed (a Linear's forward and
 * input gradient; N a multiple of 16, K of 32, alpha 1, beta 0
 * or 1) on AMX tiles by lib/amx.c, where the CPU has AMX-BF16: 1 (the default),
 * or 0, oneDNN's matmul as for every other bf16 product (also
 * MIM_GEMM_AMX=0 in the environment). Both sum the bf16 products in
 * float; they differ in the last place. For the bench and the tests. */
void mim_gemm_set_amx(int on);
/* 1 when those bf16 products go to lib/amx.c: set (above) and the CPU and
 * Linux allow the tiles; else 0 (oneDNN). */
int mim_gemm_amx(void);

/* bf16: keep x's bfloat16 copy, made by the next product that reads x,
 * for the products after it (x the same stored matrix: pointer, row
 * length and shape), until mim_gemm_drop(x); NULL drops every kept copy.
 * The caller promises that x does not change from that first product to
 * the drop, nor is freed before it. A training
 * forward keeps a layer's input for its weight gradient, linear_backward
 * dout for its two products: each conversion is a pass over memory (a
 * tenth of a swin-tiny bf16 step, all of them). Returns 1 (kept now), 0
 * (kept already; or fp32, where there is nothing to keep) or -1 (the
 * table of 128 is full: x is rounded for every product, as without).
 * MIM_BF16_KEEP=0 in the environment: nothing is kept (the same bytes). */
int mim_gemm_keep(const float *x);
void mim_gemm_drop(const float *x);
/* bf16: make kept x's copy now (x rows x cols, packed), and in the same
 * pass over x the column sums of each chunk of ch rows in double, row
 * after row: sums[(r / ch) * cols + c] (a Linear's bias gradient, from the
 * pass that reads dout anyway, not one more). 0, or -1 and nothing done
 * (x not kept, its copy made already, fp32, no memory). */
int mim_gemm_keep_colsums(const float *x, int rows, int cols, int ch, double *sums);
/* bf16: the producer of a kept matrix x (rows x cols, packed) makes its
 * copy while it writes x, from the rows still in its cache, instead of the
 * first product reading x back: mim_gemm_kept_fill returns the copy's
 * buffer (rows x cols) when x is kept and its copy not yet made, x's copy
 * from now on, which the caller must fill whole with mim_gemm_round
 * before any product reads x; NULL otherwise (fp32, x not kept or made
 * already, no memory: write x alone). mim_gemm_round: y (ldy) = x (ldx)
 * rounded to bfloat16 the way the products round their operands. */
uint16_t *mim_gemm_kept_fill(const float *x, int rows, int cols);
void mim_gemm_round(uint16_t *y, size_t ldy, const float *x, size_t ldx, int rows, int cols);
/* ... and with x's column sums by chunks of ch rows, as
 * mim_gemm_keep_colsums makes them (in double, row after row from 0 at
 * each chunk's first row), into *sums ((rows + ch - 1) / ch x cols, held
 * with the copy), which the caller fills too; mim_gemm_kept_sums then
 * returns them, until x is dropped (NULL: none made with that chunk).
 * mim_gemm_round_sums fills both a span of row r at a time: y (row r's
 * copy, from some column) = x (n floats) rounded, and x added to the
 * chunk sums of the same columns (sums: their first row, rows cols
 * apart), in that order, so that each row comes after the row before it. */
uint16_t *mim_gemm_kept_fill_sums(const float *x, int rows, int cols, int ch, double **sums);
void mim_gemm_round_sums(uint16_t *y, double *sums, int cols, int r, int ch, const float *x,
    int n);
const double *mim_gemm_kept_sums(const float *x, int rows, int cols, int ch);
/* The bytes held for kept copies, in use or not: a dropped copy's buffer
 * waits for the same x to be kept again. */
size_t mim_gemm_kept_bytes(void);

/* The same product for `batch` independent matrices at strides sA, sB, sC
 * (in floats). Small products (attention heads, Swin windows) are spread
 * over the thread pool, each on one thread (lib/smm.c or single-threaded
 * BLAS); large ones go one by one, each cut over the pool as mim_gemm
 * does. */
void mim_gemm_batch(int ta, int tb, int M, int N, int K, float alpha,
    const float *A, int lda, size_t sA, const float *B, int ldb, size_t sB,
    float beta, float *C, int ldc, size_t sC, int batch);

/* ---- precision -------------------------------------------------------------
 * MIM_PREC_FP32 (the default): float products. MIM_PREC_BF16: mixed
 * precision the way PyTorch's autocast does it: the operands of a product
 * rounded to bfloat16, the product summed in float (AMX or AVX512-BF16
 * through oneDNN), the result float; everything else (LayerNorm, softmax,
 * GELU, the loss, the optimizer, the weights) stays float. Attention's
 * products go to bf16 on AMX tiles without oneDNN (lib/kern/attn_amx.c)
 * where the CPU has AMX and the shape gains from it (N over 64, the
 * ViTs); Swin's windows stay float (attention_set_amx in mim/kern.h,
 * MIM_ATTN_AMX). For the whole process: set it before the work. */
enum mim_precision { MIM_PREC_FP32, MIM_PREC_BF16 };

/* 0, or -1 with the error set: bf16 on a CPU (or oneDNN ISA,
 * DNNL_MAX_CPU_ISA) without AMX or AVX512-BF16, which would only emulate
 * it, slowly. */
int mim_gemm_set_precision(enum mim_precision p);
enum mim_precision mim_gemm_precision(void);
/* "fp32" or "bf16" to the enum, or -1; and back. */
int mim_precision_parse(const char *s);
const char *mim_precision_name(enum mim_precision p);

/* ---- the machine (lib/blas.c, lib/sysinfo.c) --------------------------------- */
struct mim_cpu {
	char name[64];		/* the CPU's brand string, or "unknown" */
	int family, model, stepping;
	/* instruction sets the CPU has and the OS enabled (0/1); avx512:
	 * F, DQ, BW and VL, what OpenBLAS's SkylakeX kernels need */
	int fma, avx2, avx512f, avx512, avx512_bf16, amx_bf16;
};
const struct mim_cpu *mim_cpu(void);

struct mim_blas {
	char core[32];		/* OpenBLAS's kernels in use: "SkylakeX" */
	char chosen[32];	/* the library's own choice ("Prescott") */
	int corrected;		/* 1: mim made it choose again (lib/blas.c) */
	int user;		/* OPENBLAS_CORETYPE was set (respected) */
	char config[160];	/* openblas_get_config(): version and build */
};
/* OpenBLAS's kernels, checked (and corrected) before the first product. */
const struct mim_blas *mim_blas(void);

/* The machine in one line of JSON (malloc'd; NULL when out of memory):
 * CPU, instruction sets, OpenBLAS core and version, whether mim corrected
 * it, threads, oneDNN version and ISA, bf16 support, the precision. */
char *mim_system_json(void);

#endif
