/* pool.c -- the library's threads: one knob, mim_threads() (by default a
 * thread a core of the CPUs the process may run on: mim_cores()), and one
 * set of threads, the pool below, whose workers sleep on a condition
 * variable between jobs (after a wait for the next one). The pool also
 * owns OpenBLAS's own thread count (gemm.c calls BLAS, but the count is
 * global): 1 while a job runs, since any task may call sgemm, and
 * OpenBLAS's threads for a large product only when they are asked for
 * (MIM_GEMM_THREADS=blas, mim_gemm_blas_threads; in bf16 it gives oneDNN's
 * OpenMP team the product: lib/onednn.c), as they would otherwise spin
 * (sched_yield) for a while after every product and take a core from the
 * pool's next loop. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mim/pool.h"
#include "pool_int.h"

extern void openblas_set_num_threads(int);
extern int openblas_get_num_threads(void);

static _Thread_local int tindex;
static _Thread_local int in_job;

static int nthreads;	/* 0: not decided yet */

/* whether CPU c is in the list "0-3,8,10-11" (sysfs's format) */
static int
in_list(const char *s, int c)
{
	while (*s) {
		char *e;
		long a = strtol(s, &e, 10), b = a;
		if (e == s)
			return 0;
		if (*e == '-')
			b = strtol(e + 1, &e, 10);
		if (c >= a && c <= b)
			return 1;
		s = *e == ',' ? e + 1 : e;
		if (*s == '\n')
			break;
	}
	return 0;
}

int
pool_cores(const char *sys, const cpu_set_t *set)
{
	int n = 0;

	for (int c = 0; c < CPU_SETSIZE; c++) {
		if (!CPU_ISSET(c, set))
			continue;
		/* counted at the first CPU of its core that the set has */
		char path[256], list[256];
		snprintf(path, sizeof path, "%s/devices/system/cpu/cpu%d/topology/thread_siblings_list",
		    sys, c);
		FILE *f = fopen(path, "r");
		int first = 1;
		if (f && fgets(list, sizeof list, f))
			for (int o = 0; o < c && first; o++)
				first = !(CPU_ISSET(o, set) && in_list(list, o));
		if (f)
			fclose(f);
		n += first;
	}
	return n;
}

int
pool_quota(const char *sys)
{
	char path[256];
	long long q, per;
	int n = 0;

	snprintf(path, sizeof path, "%s/fs/cgroup/cpu.max", sys);
	FILE *f = fopen(path, "r");
	if (f && fscanf(f, "%lld %lld", &q, &per) == 2 && q > 0 && per > 0)
		n = (int)((q + per - 1) / per);
	if (f)
		fclose(f);
	return n;
}

/* the default thread count: the second thread of a core left out as
 * PyTorch does (two threads of one core share its multiply units) */
int
mim_cores(void)
{
	cpu_set_t set;
	int n = 0;

	if (sched_getaffinity(0, sizeof set, &set) == 0)
		n = pool_cores("/sys", &set);
	if (n < 1)
		n = (int)sysconf(_SC_NPROCESSORS_ONLN);
	int q = pool_quota("/sys");
	if (q > 0 && q < n)
		n = q;
	return n < 1 ? 1 : n > 1024 ? 1024 : n;
}

int
mim_threads(void)
{
	if (nthreads > 0)
		return nthreads;
	const char *s = getenv("MIM_THREADS");
	long n = 0;
	if (s && *s) {
		char *end;
		n = strtol(s, &end, 10);
		if (*end || n < 1 || n > 1024)
			n = 0;
	}
	if (n <= 0)
		n = mim_cores();
	mim_set_threads((int)n);
	return nthreads;
}

void
mim_set_threads(int n)
{
	if (n < 1)
		n = 1;
	nthreads = n;	/* OpenBLAS's own count is set where it is used: 1 before
			 * a job, pool_set_blas_threads before a product */
}

static int blas_mode = -1;	/* 1: OpenBLAS threads large products */

void
mim_gemm_blas_threads(int on)
{
	blas_mode = on;
}

int
pool_blas_threaded(void)
{
	if (blas_mode < 0) {
		const char *s = getenv("MIM_GEMM_THREADS");
		blas_mode = s && strcmp(s, "blas") == 0;
	}
	return blas_mode;
}

/* ---- thread pool ----------------------------------------------------------
 * A job is n tasks; the caller and the workers claim them (a run of them
 * at a time, claim()) from a ticket that carries the job's generation, so
 * a worker that is late can never take a task of the next job. Between
 * jobs a worker watches for the next one for a while (SPIN_NS,
 * MIM_SPIN_US: the model's loops follow each other within microseconds,
 * and waking a sleeping thread costs tens of microseconds, more in a
 * virtual machine), then sleeps on a condition variable; the caller waits
 * for the last task the same way. Nothing spins
 * longer than that: a busy machine loses at most SPIN_NS per job. 300 us:
 * a worker whose task ends early in a job, or who waits out the caller's
 * serial set-up between two, should not have gone to sleep when the next
 * job comes (2 threads, batch 32, context switches a step: vit-tiny 143
 * at 50 us, 42 at 300; swin-tiny 290 and 130; PyTorch's OpenMP spins for
 * milliseconds).
 *
 * No lock on the way in or out of a job: the job is published in one of
 * two slots (gen & 1) before its generation, and read from there without
 * the mutex, which all the workers would otherwise take at once at every
 * job's start (on a contended glibc mutex the losers sleep in the kernel
 * and are woken one after another: at 16 threads a chain of wake-ups a
 * job). A worker so late that the slot it reads is being rewritten for job
 * gen + 2 reads a ticket of gen + 1 or later and takes no task (drain). The
 * mutex is taken only to sleep and to wake sleepers, who say so first
 * (sleepers, waiting: seq_cst, against the generation or the count of
 * tasks left, so a wake-up is never missed). */

#define SPIN_NS 300000

/* SPIN_NS, or MIM_SPIN_US (0 to 100000) in nanoseconds */
static long
spin_ns(void)
{
	static long ns = -1;

	if (ns < 0) {
		const char *s = getenv("MIM_SPIN_US");
		char *end;
		long us = s && *s ? strtol(s, &end, 10) : -1;
		ns = us >= 0 && us <= 100000 && !*end ? us * 1000 : SPIN_NS;
	}
	return ns;
}

struct slot {
	_Atomic(void (*)(void *, int)) fn;
	_Atomic(void *) ctx;
	atomic_int n, nt;	/* tasks, threads that may take part */
};

/* (what every thread polls, what the threads claiming tasks write, and
 * what the last of them writes, each on its own cache line, so that a
 * claim does not take the line the others wait on) */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t work, done;
	int nworkers;		/* threads started (excluding the caller) */
	atomic_int sleepers;	/* workers asleep on work, or about to be */
	atomic_int waiting;	/* the caller sleeps on done, or is about to */
	_Alignas(64) atomic_long gen;	/* job generation */
	struct slot job[2];	/* job gen is in job[gen & 1] */
	_Alignas(64) atomic_ullong ticket;	/* gen << 32 | next task */
	_Alignas(64) atomic_int left;	/* tasks not finished */
	char pad[60];
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER};

static long
nanos(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000L + t.tv_nsec;
}

static inline void
relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Wait up to spin_ns() for *v to differ from old (1), or give up (0). */
static int
spin_long(atomic_long *v, long old)
{
	long t0 = nanos(), lim = spin_ns();

	for (int k = 1;; k++) {
		if (atomic_load_explicit(v, memory_order_acquire) != old)
			return 1;
		relax();
		if (k % 64 == 0 && nanos() - t0 > lim)
			return 0;
	}
}

static int
spin_zero(atomic_int *v)
{
	long t0 = nanos(), lim = spin_ns();

	for (int k = 1;; k++) {
		if (atomic_load_explicit(v, memory_order_acquire) == 0)
			return 1;
		relax();
		if (k % 64 == 0 && nanos() - t0 > lim)
			return 0;
	}
}

/* Tasks a claim takes when next of n are taken, at nt threads: a share of
 * what is left (guided scheduling), so that a job of many short tasks
 * (Swin's attention: 6144 of 2-5 us at stage 0, batch 32) is not claimed
 * one by one by every thread on one cache line, and the last claims are
 * single tasks that even out the end. */
static int
claim(int n, int next, int nt)
{
	int k = (n - next) / (2 * nt);

	return k > 1 ? k : 1;
}

/* Take and run tasks of job g (fn, ctx, n, nt) until none are left. */
static void
drain(long g, void (*fn)(void *, int), void *ctx, int n, int nt)
{
	unsigned long long tk = atomic_load(&pool.ticket);

	for (;;) {
		int next = (int)(tk & 0xffffffff);
		if ((long)(tk >> 32) != (g & 0xffffffff) || next >= n)
			return;
		int k = claim(n, next, nt);
		if (!atomic_compare_exchange_weak(&pool.ticket, &tk, tk + (unsigned)k))
			continue;	/* tk now holds the current ticket */
		for (int i = next; i < next + k; i++)
			fn(ctx, i);
		if (atomic_fetch_sub(&pool.left, k) == k && atomic_load(&pool.waiting)) {
			pthread_mutex_lock(&pool.mu);
			pthread_cond_broadcast(&pool.done);
			pthread_mutex_unlock(&pool.mu);
		}
		tk = atomic_load(&pool.ticket);
	}
}

static void *
worker(void *arg)
{
	long seen = 0;

	tindex = (int)(long)arg;
	in_job = 1;
	for (;;) {
		if (!spin_long(&pool.gen, seen)) {
			pthread_mutex_lock(&pool.mu);
			atomic_fetch_add(&pool.sleepers, 1);
			while (atomic_load(&pool.gen) == seen)
				pthread_cond_wait(&pool.work, &pool.mu);
			atomic_fetch_sub(&pool.sleepers, 1);
			pthread_mutex_unlock(&pool.mu);
		}
		seen = atomic_load(&pool.gen);
		struct slot *j = &pool.job[seen & 1];
		void (*fn)(void *, int) = atomic_load_explicit(&j->fn, memory_order_relaxed);
		void *ctx = atomic_load_explicit(&j->ctx, memory_order_relaxed);
		int n = atomic_load_explicit(&j->n, memory_order_relaxed);
		int nt = atomic_load_explicit(&j->nt, memory_order_relaxed);
		/* (the slot's stores are release: whatever of a later job was
		 * read here, drain then sees that job's ticket or a later one) */
		atomic_thread_fence(memory_order_acquire);
		if (tindex < nt)
			drain(seen, fn, ctx, n, nt);
	}
	return NULL;
}

/* ---- the forecast (mim_pool_forecast) ----------------------------------
 * A job's tasks run one after another on the caller, each claim's
 * (claim()) timed, and are dealt out on paper as the pool deals them:
 * claim by claim, in ticket order, to whichever of the nt threads is free
 * first. The job would take the latest of those threads' finishing times;
 * fc_saved adds up what that saves on running its tasks in a row. */

static int forecast;
static double fc_saved;
static long fc_jobs;

void
mim_pool_forecast(int on)
{
	forecast = on;
}

double
mim_pool_forecast_saved(long *jobs)
{
	if (jobs)
		*jobs = fc_jobs;
	return fc_saved;
}

static void
run_forecast(int n, int nt, void (*fn)(void *, int), void *ctx)
{
	static double fin[1024];	/* each thread's finishing time */
	double sum = 0, last = 0;
	int k = nt < 1024 ? nt : 1024;

	memset(fin, 0, (size_t)k * sizeof *fin);
	if (openblas_get_num_threads() != 1)
		openblas_set_num_threads(1);
	in_job = 1;
	long t0 = nanos();
	for (int i = 0; i < n;) {
		for (int e = i + claim(n, i, nt); i < e; i++)
			fn(ctx, i);
		long t1 = nanos();	/* (one reading a claim: the clock's
					 * cost goes with the tasks) */
		double d = (t1 - t0) * 1e-9;
		t0 = t1;
		int b = 0;
		for (int j = 1; j < k; j++)
			if (fin[j] < fin[b])
				b = j;
		fin[b] += d;
		sum += d;
		if (fin[b] > last)
			last = fin[b];
	}
	in_job = 0;
	fc_saved += sum - last;
	fc_jobs++;
}

void
mim_parallel(int n, void (*fn)(void *ctx, int i), void *ctx)
{
	int nt = mim_threads();

	if (n <= 0)
		return;
	if (nt == 1 || n == 1 || in_job) {
		for (int i = 0; i < n; i++)
			fn(ctx, i);
		return;
	}
	if (forecast) {
		run_forecast(n, nt, fn, ctx);
		return;
	}
	/* every thread of the job calls BLAS single-threaded: set before the
	 * job is published */
	int blas = openblas_get_num_threads();
	if (blas != 1)
		openblas_set_num_threads(1);
	if (pool.nworkers < nt - 1) {
		pthread_mutex_lock(&pool.mu);
		while (pool.nworkers < nt - 1) {
			pthread_t t;
			pthread_attr_t at;
			pthread_attr_init(&at);
			pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
			if (pthread_create(&t, &at, worker, (void *)(long)(pool.nworkers + 1)))
				break;
			pool.nworkers++;
		}
		pthread_mutex_unlock(&pool.mu);
	}
	long g = atomic_load(&pool.gen) + 1;
	struct slot *j = &pool.job[g & 1];
	atomic_store_explicit(&j->fn, fn, memory_order_release);
	atomic_store_explicit(&j->ctx, ctx, memory_order_release);
	atomic_store_explicit(&j->n, n, memory_order_release);
	atomic_store_explicit(&j->nt, nt, memory_order_release);
	atomic_store(&pool.left, n);
	atomic_store(&pool.ticket, (unsigned long long)(g & 0xffffffff) << 32);
	atomic_store(&pool.gen, g);
	if (atomic_load(&pool.sleepers)) {
		pthread_mutex_lock(&pool.mu);
		pthread_cond_broadcast(&pool.work);
		pthread_mutex_unlock(&pool.mu);
	}
	in_job = 1;	/* the caller works too */
	drain(g, fn, ctx, n, nt);
	if (!spin_zero(&pool.left)) {
		pthread_mutex_lock(&pool.mu);
		atomic_store(&pool.waiting, 1);
		while (atomic_load(&pool.left) > 0)
			pthread_cond_wait(&pool.done, &pool.mu);
		atomic_store(&pool.waiting, 0);
		pthread_mutex_unlock(&pool.mu);
	}
	in_job = 0;
	if (blas != 1 && pool_blas_threaded())
		openblas_set_num_threads(blas);
}

int
mim_thread_index(void)
{
	return tindex;
}

int
pool_in_job(void)
{
	return in_job;
}

void
pool_set_blas_threads(int n)
{
	if (openblas_get_num_threads() != n)
		openblas_set_num_threads(n);
}
