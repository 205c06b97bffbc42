/* pool_int.h -- what gemm.c needs of the pool (pool.c) beyond mim/pool.h:
 * whether this thread runs a task of a job, and OpenBLAS's own thread
 * count, which the pool owns like every other thread of the library; and
 * how the default thread count is found (for the tests). */
#ifndef MIM_POOL_INT_H
#define MIM_POOL_INT_H

#include <sched.h>

/* 1 on a thread that runs a task of a pool job (the caller too, while it
 * takes part): nested mim_parallel runs serially there, and OpenBLAS's
 * thread count (global) must not be changed. */
int pool_in_job(void);

/* 1 when large products run on OpenBLAS's own threads
 * (mim_gemm_blas_threads, MIM_GEMM_THREADS=blas). */
int pool_blas_threaded(void);

/* Set OpenBLAS's own thread count to n, if it is not already: outside a
 * job only. */
void pool_set_blas_threads(int n);

/* The cores among the CPUs of set (a core whose CPUs run two threads
 * counted once), from sysfs under sys ("/sys"; CPUs without topology
 * there count one each). */
int pool_cores(const char *sys, const cpu_set_t *set);

/* The CPUs' worth of a cgroup v2 CPU quota (sys/fs/cgroup/cpu.max,
 * rounded up), or 0 when there is none. */
int pool_quota(const char *sys);

#endif
