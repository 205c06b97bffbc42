/* blas.h -- what gemm.c needs of lib/blas.c beyond mim/gemm.h. */
#ifndef MIM_BLAS_H
#define MIM_BLAS_H

/* Make sure OpenBLAS runs the kernels of the CPU's instruction set
 * (lib/blas.c); done once, before main, and a no-op after. */
void mim_blas_setup(void);

#endif
