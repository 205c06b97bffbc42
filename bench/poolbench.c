/* poolbench.c -- what a job of the library's pool (mim_parallel, lib/pool.c)
 * costs beyond its tasks: jobs of one task a thread, back to back, each
 * task busy for -w us, the caller busy for -g us between jobs (the serial
 * bits of a step: the next kernel's set-up).
 *
 *   poolbench [-t threads] [-j jobs] [-w task-us] [-g gap-us] [-r rounds]
 *
 * Prints one JSON line: the median over the rounds of the wall time a job
 * (us_job), of it less the tasks' share of a thread and the gap
 * (overhead_us: publishing, claiming, waking, waiting for the last task), and the voluntary context
 * switches a job, over all the threads (csw_job, getrusage: a thread that
 * sleeps in the kernel, on a condition variable or a contended mutex,
 * counts one). Built by scripts/benchprogs.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "mim.h"
#include "bench.h"

static double task_s;
static _Thread_local volatile long sink;	/* (its own line: no sharing) */

static void
busy(double s)
{
	double t0 = now();
	long k = 0;

	while (now() - t0 < s)
		k++;
	sink += k;
}

static void
task(void *ctx, int i)
{
	(void)ctx;
	(void)i;
	busy(task_s);
}

static long
csw(void)
{
	struct rusage u;

	getrusage(RUSAGE_SELF, &u);
	return u.ru_nvcsw;
}

static void
usage(void)
{
	fprintf(stderr, "usage: poolbench [-t threads] [-n tasks] [-j jobs] [-w task-us] [-g gap-us] "
	    "[-r rounds]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	int T = mim_threads(), J = 20000, R = 5, n = 0;
	double w = 0, g = 0;

	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			usage();
		if (!strcmp(argv[i], "-t"))
			T = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-n"))
			n = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-j"))
			J = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-w"))
			w = atof(argv[++i]);
		else if (!strcmp(argv[i], "-g"))
			g = atof(argv[++i]);
		else if (!strcmp(argv[i], "-r"))
			R = atoi(argv[++i]);
		else
			usage();
	}
	if (n == 0)
		n = T;
	if (T < 1 || n < 1 || J < 1 || R < 1 || R > 99 || w < 0 || g < 0)
		usage();
	mim_set_threads(T);
	task_s = w * 1e-6;
	mim_parallel(n, task, NULL);	/* start the workers */
	double us[99], sw[99];
	for (int r = 0; r < R; r++) {
		long c0 = csw();
		double t0 = now();
		for (int k = 0; k < J; k++) {
			mim_parallel(n, task, NULL);
			if (g > 0)
				busy(g * 1e-6);
		}
		us[r] = (now() - t0) * 1e6 / J;
		sw[r] = (double)(csw() - c0) / J;
	}
	qsort(us, R, sizeof *us, cmpd);
	qsort(sw, R, sizeof *sw, cmpd);
	printf("{\"threads\":%d,\"tasks\":%d,\"jobs\":%d,\"task_us\":%g,\"gap_us\":%g,"
	    "\"us_job\":%.3f,\"overhead_us\":%.3f,\"csw_job\":%.3f}\n", T, n, J, w, g, us[R / 2],
	    us[R / 2] - w * n / T - g, sw[R / 2]);
	return 0;
}
