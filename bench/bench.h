/* bench.h -- the clock and the sort order the bench programs share. */
#ifndef MIM_BENCH_H
#define MIM_BENCH_H

#include <time.h>

/* seconds on clock id (CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID) */
static inline double
clk(clockid_t id)
{
	struct timespec t;
	clock_gettime(id, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static inline double
now(void)
{
	return clk(CLOCK_MONOTONIC);
}

/* qsort order of doubles */
static inline int
cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

#endif
