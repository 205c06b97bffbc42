/* prof.c -- the kernel timers of mim/prof.h. The table is only touched by
 * the one thread that turned timing on, so it needs no lock. */
#include <string.h>
#include <time.h>

#include "mim/pool.h"
#include "mim/prof.h"

#define MAXENT 96

int mim_prof_on;
static _Thread_local int mine;		/* this thread is the timed one */
static _Thread_local int depth;		/* nesting of open timers */
static struct mim_prof_entry ent[MAXENT];
static int nent;
static double cpu0;	/* process CPU time at the outermost begin */
static double saved0;	/* mim_pool_forecast_saved there */

static double
clk(clockid_t id)
{
	struct timespec t;

	clock_gettime(id, &t);
	return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

double
mim_now(void)
{
	return clk(CLOCK_MONOTONIC);
}

void
mim_prof_enable(int on)
{
	mine = on;
	depth = 0;
	mim_prof_on = on;
}

void
mim_prof_reset(void)
{
	memset(ent, 0, sizeof ent);
	nent = 0;
}

double
mim_prof_begin_(void)
{
	if (!mine || depth++ > 0)
		return -1;
	cpu0 = clk(CLOCK_PROCESS_CPUTIME_ID);
	saved0 = mim_pool_forecast_saved(NULL);
	return clk(CLOCK_MONOTONIC);
}

void
mim_prof_end_(const char *name, double t0, double flops)
{
	int i;

	if (!mine || depth == 0)
		return;
	depth--;
	if (t0 < 0)
		return;
	double t = clk(CLOCK_MONOTONIC), c = clk(CLOCK_PROCESS_CPUTIME_ID);
	for (i = 0; i < nent && ent[i].name != name && strcmp(ent[i].name, name) != 0; i++)
		;
	if (i == nent) {
		if (nent == MAXENT)
			return;
		ent[nent++].name = name;
	}
	ent[i].seconds += t - t0;
	ent[i].cpu += c - cpu0;
	ent[i].forecast += t - t0 - (mim_pool_forecast_saved(NULL) - saved0);
	ent[i].flops += flops;
	ent[i].calls++;
}

int
mim_prof_get(struct mim_prof_entry *out, int max)
{
	for (int i = 0; i < nent && i < max; i++)
		out[i] = ent[i];
	return nent;
}
