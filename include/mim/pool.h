/* mim/pool.h -- the library's threads (lib/pool.c): how many, and the
 * pool that runs the kernels' loops and cuts large products. */
#ifndef MIM_POOL_H
#define MIM_POOL_H

/* Number of threads for the library's own loops and BLAS: MIM_THREADS, or
 * mim_cores(). mim_set_threads overrides (OpenBLAS follows at its next
 * use). */
int mim_threads(void);
void mim_set_threads(int n);

/* The cores the process may run on: the CPUs of its affinity (taskset, a
 * cgroup's cpuset, a batch system), a core that runs two hardware threads
 * counted once, at most the cgroup's CPU quota (cpu.max); at least 1. */
int mim_cores(void);

/* Run fn(ctx, i) for i in [0,n) on the library's thread pool (mim_threads()
 * threads; the caller takes part; runs of tasks are claimed at a time,
 * smaller towards the end). Returns when all are done. Between jobs
 * workers watch for the next one for MIM_SPIN_US (default 300 us), then
 * sleep on a condition variable. A call from inside fn runs its tasks
 * serially on the calling thread. */
void mim_parallel(int n, void (*fn)(void *ctx, int i), void *ctx);

/* Current pool thread index in [0, mim_threads()) (0 outside a job). */
int mim_thread_index(void);

/* Large products on OpenBLAS's own threads (1) or cut over the pool (0,
 * the default; MIM_GEMM_THREADS=blas in the environment sets 1). For
 * measuring one against the other (bench/). */
void mim_gemm_blas_threads(int on);

/* A forecast for a machine with more cores than this one (bench/stepbench
 * --forecast): with on = 1, every job runs its tasks one after another on
 * the calling thread, each timed, the work cut as for mim_threads()
 * threads (the same results as that many threads give), and the pool
 * adds up what those threads would have saved by running them at once:
 * each claim of tasks, in the order the pool hands them out, to the
 * thread that is free first (no cost for waking threads, no memory bandwidth shared).
 * mim_pool_forecast_saved returns those seconds (and the number of jobs
 * so far in *jobs, if not NULL); a run's wall time less them is the
 * forecast. For one thread (the one that called it on) at a time. */
void mim_pool_forecast(int on);
double mim_pool_forecast_saved(long *jobs);

#endif
