/* dp.h -- data-parallel mim-step over MPI (cmd/step/dp.c is the only file
 * that includes mpi.h, and mim-step the only tool that links libmpi).
 *
 * Every rank runs the same program on its own input; the calls below are
 * collective: every rank makes the same calls in the same order. Without
 * MPI (dp_init chose not to start it) they are the one-process identity:
 * rank 0 of a world of 1. MPI errors abort the job (MPI_ERRORS_ARE_FATAL). */
#ifndef MIM_STEP_DP_H
#define MIM_STEP_DP_H

#include <stddef.h>
#include <stdint.h>

#include "mim/train.h"

enum dp_mode { DP_AUTO, DP_ON, DP_OFF };

extern int dp_rank, dp_world;	/* 0 and 1 outside MPI */

/* 1 if a launcher (mpirun, mpiexec, srun --mpi=pmix) started this process:
 * OMPI_COMM_WORLD_SIZE or PMIX_RANK is set. */
int dp_launched(void);
/* Start MPI when mode is DP_ON, or DP_AUTO and dp_launched(); set dp_rank
 * and dp_world. Returns 1 when MPI is on. */
int dp_init(enum dp_mode mode);
int dp_on(void);
/* Threads of a rank that neither --threads nor MIM_THREADS sets: the
 * cores mpirun bound it to, or when it is not bound (--bind-to none) an
 * equal share of the node's cores (mim_cores: a core's second hardware
 * thread left out). 0 without MPI or with MIM_THREADS. */
int dp_threads(void);
/* Ranks on this node (OMPI_COMM_WORLD_LOCAL_SIZE; dp_world if unknown). */
int dp_local_size(void);
/* MPI_Finalize, once; a no-op without MPI. */
void dp_finalize(void);

/* The largest of every rank's v. */
int dp_max(int v);
/* Sum over ranks. */
double dp_sum(double x);
/* 1 when v is the same on every rank. */
int dp_same(uint64_t v);
/* n bytes from rank 0 to every rank (in pieces under INT_MAX). */
void dp_bcast(void *buf, size_t n);
/* x = sum over ranks of x, in place (in pieces under INT_MAX). */
void dp_sum_floats(float *x, size_t n);
void dp_gather(const void *mine, void *all, size_t n);
void dp_barrier(void);
/* The calls above as the collectives of a training run (mim/train.h),
 * with this process's rank and world: call after dp_init. */
void dp_hooks(struct mim_dp *h);

#endif
