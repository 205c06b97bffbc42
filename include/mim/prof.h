/* mim/prof.h -- optional wall-clock timers of the library's kernels, for
 * choosing optimisations by measurement (bench/README.md). Off by default;
 * then a timer costs one load and a branch.
 *
 * Only the thread that called mim_prof_enable(1) is timed, and only at the
 * outermost level: a kernel that calls other kernels (linear_forward ->
 * mim_gemm) is counted once, under its own name, and the products that
 * pool workers run inside a job are counted in the job's kernel. So the
 * entries add up to (at most) the wall time of the timed work. */
#ifndef MIM_PROF_H
#define MIM_PROF_H

#include <stddef.h>

/* Timing on (1) or off (0) for the calling thread; turning it on keeps the
 * totals gathered so far (mim_prof_reset clears them). */
void mim_prof_enable(int on);
void mim_prof_reset(void);

struct mim_prof_entry {
	const char *name;	/* e.g. "linear fwd", "attention bwd" */
	double seconds;		/* wall time, outermost calls only */
	double cpu;		/* CPU time of the whole process (every thread,
				 * BLAS's included) during those calls */
	double forecast;	/* the wall time mim_pool_forecast gives for
				 * those calls (= seconds when it is off) */
	double flops;		/* floating-point operations of those calls (the
				 * products' 2MNK; 0 for elementwise kernels) */
	long calls;
};
/* Copy up to max entries (in first-use order) into out; returns how many
 * there are in all. */
int mim_prof_get(struct mim_prof_entry *out, int max);

/* Seconds on the monotonic clock (for rates and progress lines). */
double mim_now(void);

/* ---- for the library's own kernels ------------------------------------- */
extern int mim_prof_on;
/* A timer: t = MIM_PROF_BEGIN(); ... MIM_PROF_END("name", t, flops);
 * name must outlive the table: a string literal. */
double mim_prof_begin_(void);
void mim_prof_end_(const char *name, double t0, double flops);
#define MIM_PROF_BEGIN() (mim_prof_on ? mim_prof_begin_() : 0.0)
#define MIM_PROF_END(name, t0, flops) \
	do { if (mim_prof_on) mim_prof_end_((name), (t0), (flops)); } while (0)

#endif
