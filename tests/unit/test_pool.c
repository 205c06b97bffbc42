/* test_pool.c -- the pool (lib/pool.c): its default thread count (a
 * thread a core of the process's CPUs, at most a cgroup's quota, on a
 * fake sysfs); every task of every job runs once, and has run when
 * mim_parallel returns, however the threads come late or sleep between
 * jobs; and its forecast (mim_pool_forecast,
 * bench/stepbench --forecast): the work cut for T threads gives the bytes
 * T threads give, and the time it says T threads save is the pool's deal
 * of the tasks' own times (task i, in order, to the thread free first: 10
 * tasks at 4 threads are claimed one at a time, lib/pool.c claim()). */
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include <stdio.h>
#include <sys/stat.h>

#include "mim.h"
#include "mim/kern.h"
#include "../../lib/pool_int.h"	/* pool_cores, pool_quota */
#include "tap.h"

static double
secs(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* a weight gradient (K every row): sliced along K at 4 threads, so its
 * bytes are not those of one thread; and LayerNorm's backward, whose
 * column sums are summed in chunks over the pool */
static void
work(float *dw, float *ln, const float *x, const float *y, int M, int N, int K, int R, int C)
{
	mim_gemm(1, 0, M, N, K, 1.0f, x, M, y, N, 0.0f, dw, N);
	float *w = ln + R * C, *db = w + C, *dwl = db + C, *mean = dwl + C, *rstd = mean + R;
	for (int c = 0; c < C; c++)
		w[c] = 1 + 0.01f * c, db[c] = dwl[c] = 0;
	for (int r = 0; r < R; r++)
		mean[r] = 0.01f * (r % 7), rstd[r] = 1 + 0.001f * (r % 5);
	memset(ln, 0, (size_t)R * C * sizeof *ln);
	layernorm_backward(ln, dwl, db, y, x, w, mean, rstd, R, C);
}

static void
same_bytes(void)
{
	enum { M = 48, N = 40, K = 8192, R = 1200, C = 96 };
	float *x = malloc((size_t)K * M * 4), *y = malloc((size_t)K * N * 4);
	size_t nl = (size_t)R * C + 3 * C + 2 * R;
	float *dw[3], *ln[3];
	unsigned u = 5;
	for (int i = 0; i < K * M; i++) {
		u = u * 1103515245u + 12345u;
		x[i] = ldexpf((float)(u >> 9 & 0xffff) / 65536.0f - 0.5f, (int)(u >> 26) % 24 - 12);
	}
	for (int i = 0; i < K * N; i++) {
		u = u * 1103515245u + 12345u;
		y[i] = (float)(u >> 9 & 0xffff) / 65536.0f - 0.5f;
	}
	int nt = mim_threads();
	for (int k = 0; k < 3; k++) {
		dw[k] = malloc((size_t)M * N * 4);
		ln[k] = malloc(nl * 4);
		mim_set_threads(k == 0 ? 1 : 4);
		mim_pool_forecast(k == 2);
		work(dw[k], ln[k], x, y, M, N, K, R, C);
	}
	mim_pool_forecast(0);
	mim_set_threads(nt);
	int g[3];
	mim_set_threads(4);
	mim_gemm_grid(M, N, K, 0, g);
	mim_set_threads(nt);
	tap(g[2] > 1 && memcmp(dw[0], dw[1], (size_t)M * N * 4) != 0,
	    "the weight gradient at 4 threads is cut along K (%dx%dx%d): not one thread's bytes",
	    g[0], g[1], g[2]);
	tap(memcmp(dw[1], dw[2], (size_t)M * N * 4) == 0 && memcmp(ln[1], ln[2], nl * 4) == 0,
	    "forecast for 4 threads: the bytes of 4 threads (the product, LayerNorm's backward)");
	for (int k = 0; k < 3; k++)
		free(dw[k]), free(ln[k]);
	free(x), free(y);
}

/* tasks that spin for given times and note what they took */
struct spin {
	double want[16], took[16];
	int nested;
};

static void
inner(void *p, int i)
{
	(void)p, (void)i;
}

static void
spin(void *p, int i)
{
	struct spin *s = p;
	double t0 = secs(), t;

	if (s->nested)
		mim_parallel(3, inner, NULL);	/* on this thread: no job of its own */
	while ((t = secs()) - t0 < s->want[i])
		;
	s->took[i] = t - t0;
}

/* the pool's deal on paper: the tasks' times saved by nt threads */
static double
deal(const double *d, int n, int nt)
{
	double fin[16] = {0}, sum = 0, last = 0;

	for (int i = 0; i < n; i++) {
		int b = 0;
		for (int j = 1; j < nt; j++)
			if (fin[j] < fin[b])
				b = j;
		fin[b] += d[i];
		sum += d[i];
		last = fmax(last, fin[b]);
	}
	return sum - last;
}

static void
saved(void)
{
	enum { n = 10 };
	struct spin s = {.nested = 1};
	for (int i = 0; i < n; i++)
		s.want[i] = 2e-4 * (1 + i % 3) + (i == 7 ? 1e-3 : 0);
	int nt = mim_threads(), ok = 0;
	double got = 0, want = 0, sum = 0;
	long j0, j1;
	mim_set_threads(4);
	/* (a task preempted between its end and the pool's clock reading
	 * would be longer there than here: up to three tries) */
	for (int k = 0; k < 3 && !ok; k++) {
		mim_pool_forecast(1);
		double s0 = mim_pool_forecast_saved(&j0);
		mim_parallel(n, spin, &s);
		got = mim_pool_forecast_saved(&j1) - s0;
		mim_pool_forecast(0);
		want = deal(s.took, n, 4);
		sum = 0;
		for (int i = 0; i < n; i++)
			sum += s.took[i];
		ok = fabs(got - want) < 0.02 * sum + 2e-5 && j1 == j0 + 1;
	}
	tap(ok, "10 tasks dealt to 4 threads: %.3f ms saved of %.3f, the deal of the tasks' own "
	    "times %.3f; one job counted (the nested call runs in its task)", 1e3 * got, 1e3 * sum,
	    1e3 * want);
	double s0 = mim_pool_forecast_saved(&j0);
	mim_parallel(n, spin, &s);
	tap(mim_pool_forecast_saved(&j1) == s0 && j1 == j0, "forecast off: nothing added");
	mim_set_threads(1);
	mim_pool_forecast(1);
	s0 = mim_pool_forecast_saved(&j0);
	mim_parallel(n, spin, &s);
	mim_pool_forecast(0);
	tap(mim_pool_forecast_saved(&j1) == s0 && j1 == j0, "one thread: no job, nothing saved");
	mim_set_threads(nt);
}

/* jobs back to back, of 1 to 13 tasks, at 2 to 5 threads (more threads
 * than this machine's cores: workers preempted anywhere, late for a job
 * or for its slot), some after a pause long enough for the workers to
 * sleep; each task counts itself in its job's row */
enum { JOBS = 30000, TMAX = 13 };

struct count {
	atomic_int (*seen)[TMAX];
	int job;
};

static void
count(void *p, int i)
{
	const struct count *c = p;

	atomic_fetch_add(&c->seen[c->job][i], 1);
}

static void
every_task_once(void)
{
	atomic_int (*seen)[TMAX] = calloc(JOBS, sizeof *seen);
	int nt = mim_threads(), bad = -1, late = -1;
	double t0 = secs();

	for (int k = 0; k < JOBS; k++) {
		int n = 1 + k % TMAX;
		struct count c = {seen, k};
		if (k % 500 == 0)
			mim_set_threads(2 + k / 500 % 4);
		if (k % 97 == 0) {	/* past the workers' spin (20 us, main) */
			struct timespec ts = {0, 200000};
			nanosleep(&ts, NULL);
		}
		mim_parallel(n, count, &c);
		for (int i = 0; i < n && late < 0; i++)
			if (atomic_load(&seen[k][i]) != 1)
				late = k;
	}
	for (int k = 0; k < JOBS && bad < 0; k++)
		for (int i = 0; i < TMAX; i++)
			if (atomic_load(&seen[k][i]) != (i < 1 + k % TMAX))
				bad = k;
	mim_set_threads(nt);
	tap(late < 0 && bad < 0, "%d jobs of 1-%d tasks at 2-5 threads, some after a sleep: each "
	    "task once, done when mim_parallel returns (first wrong job: %d at return, %d at the "
	    "end; %.2f s)", JOBS, TMAX, late, bad, secs() - t0);
	free(seen);
}

/* tasks that note the thread that ran them */
struct who {
	atomic_int ran[4];
};

static void
who(void *p, int i)
{
	struct who *w = p;
	double t0 = secs();

	while (secs() - t0 < 2e-3)
		;
	atomic_store(&w->ran[i], mim_thread_index());
}

/* workers asleep (the caller away for longer than their spin) are woken
 * by the next job and take part in it */
static void
woken(void)
{
	int nt = mim_threads(), ok = 0, other = 0;

	mim_set_threads(2);
	for (int k = 0; k < 3 && !ok; k++) {
		struct who w = {0};
		struct timespec ts = {0, 2000000};
		nanosleep(&ts, NULL);
		mim_parallel(4, who, &w);
		for (int i = 0; i < 4; i++)
			other += atomic_load(&w.ran[i]) != 0;
		ok = other > 0;
	}
	mim_set_threads(nt);
	tap(ok, "after 2 ms without a job, a job of 4 tasks of 2 ms at 2 threads: %d run by the "
	    "worker, woken", other);
}

/* a sysfs under dir: cpu c's siblings list sib[c] (NULL: no topology) */
static void
fake_sys(const char *dir, const char *const *sib, int n, const char *cpumax)
{
	char p[512];

	for (int c = 0; c < n; c++) {
		snprintf(p, sizeof p, "mkdir -p %s/devices/system/cpu/cpu%d/topology", dir, c);
		if (system(p) != 0)
			return;
		snprintf(p, sizeof p, "%s/devices/system/cpu/cpu%d/topology/thread_siblings_list",
		    dir, c);
		if (sib[c]) {
			FILE *f = fopen(p, "w");
			fprintf(f, "%s\n", sib[c]);
			fclose(f);
		} else {
			remove(p);
		}
	}
	snprintf(p, sizeof p, "mkdir -p %s/fs/cgroup", dir);
	if (system(p) != 0)
		return;
	snprintf(p, sizeof p, "%s/fs/cgroup/cpu.max", dir);
	if (cpumax) {
		FILE *f = fopen(p, "w");
		fprintf(f, "%s\n", cpumax);
		fclose(f);
	} else {
		remove(p);
	}
}

static cpu_set_t
cpus(const char *s)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	for (; *s; s++)
		CPU_SET(*s - '0', &set);
	return set;
}

/* the default thread count: a thread a core of the process's CPUs, at
 * most the cgroup's quota */
static void
default_count(void)
{
	char dir[] = "/tmp/mim-sysXXXXXX";
	if (!mkdtemp(dir)) {
		tap(0, "mkdtemp");
		return;
	}
	/* two cores of two threads each (CPUs 0 and 2 one core, 1 and 3 the
	 * other), CPUs 4 and 5 cores of one, CPU 6 without topology, CPUs 7
	 * and 8 one core again (a range) */
	const char *sib[] = {"0,2", "1,3", "0,2", "1,3", "4", "5-5", NULL, "7-8", "7-8"};
	fake_sys(dir, sib, 9, "250000 100000");
	cpu_set_t a = cpus("0123"), b = cpus("02"), c = cpus("23"), d = cpus("012345678");
	int na = pool_cores(dir, &a), nb = pool_cores(dir, &b), nc = pool_cores(dir, &c),
	    nd = pool_cores(dir, &d);
	tap(na == 2 && nb == 1 && nc == 2 && nd == 6, "cores of CPUs 0-3 (two threads a core): %d, "
	    "of 0 and 2 (one core): %d, of 2 and 3: %d, of 0-8: %d (want 2 1 2 6)", na, nb, nc, nd);
	int q1 = pool_quota(dir);
	fake_sys(dir, sib, 0, "max 100000");
	int q2 = pool_quota(dir);
	fake_sys(dir, sib, 0, NULL);
	int q3 = pool_quota(dir);
	tap(q1 == 3 && q2 == 0 && q3 == 0, "cgroup quota 250000/100000: %d CPUs, max: %d, none: %d "
	    "(want 3 0 0)", q1, q2, q3);
	char rm[600];
	snprintf(rm, sizeof rm, "rm -rf %s", dir);
	if (system(rm) != 0)
		tap(0, "rm %s", dir);
}

int
main(void)
{
	/* (a short spin: waits that end spinning and waits that sleep, both
	 * ways of waking, in one run; read at the pool's first wait) */
	setenv("MIM_SPIN_US", "20", 1);
	default_count();
	every_task_once();
	woken();
	same_bytes();
	saved();
	return tap_done();
}
