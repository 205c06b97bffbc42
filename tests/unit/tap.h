/* tap.h -- tiny test helpers for the C unit tests: each check prints
 * "ok - ..." or "not ok - ..."; tap_done() returns the exit status. */
#ifndef MIM_TAP_H
#define MIM_TAP_H
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int tap_failed;

static inline void __attribute__((format(printf, 2, 3)))
tap(int cond, const char *fmt, ...)
{
	va_list ap;

	printf(cond ? "ok - " : "not ok - ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	if (!cond)
		tap_failed++;
}

static inline int
tap_done(void)
{
	return tap_failed ? 1 : 0;
}

/* the path of file f of the golden data (one official training step of
 * each micro model): in $MIM_GOLDEN if set, else in shared/golden beside
 * the checkout ($MIM_TOP/../shared/golden; tests/run.sh sets MIM_TOP, and
 * without it the checkout is the working directory). f "" gives the
 * folder. The buffer is static: one path at a time. */
static inline const char *
tap_golden(const char *f)
{
	static char buf[4096];
	const char *g = getenv("MIM_GOLDEN"), *top = getenv("MIM_TOP");

	if (g)
		snprintf(buf, sizeof buf, "%s/%s", g, f);
	else
		snprintf(buf, sizeof buf, "%s/../shared/golden/%s", top ? top : ".", f);
	return buf;
}

/* the path of file f of the committed PyTorch dumps, tests/ref/ of the
 * checkout ($MIM_TOP, else the working directory); static buffer */
static inline const char *
tap_ref(const char *f)
{
	static char buf[4096];
	const char *top = getenv("MIM_TOP");

	snprintf(buf, sizeof buf, "%s/tests/ref/%s", top ? top : ".", f);
	return buf;
}

/* max relative error of a vs b, relative to max|b| (scale-free). */
static inline double
maxrel(const float *a, const float *b, size_t n)
{
	double m = 0, s = 0;

	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);
		if (d > m)
			m = d;
		if (fabs(b[i]) > s)
			s = fabs(b[i]);
	}
	return s > 0 ? m / s : m;
}

/* xorshift rng for test data, uniform in [-1,1) */
static unsigned long long tap_rng = 88172645463325252ULL;
static inline float
frand(void)
{
	tap_rng ^= tap_rng << 13;
	tap_rng ^= tap_rng >> 7;
	tap_rng ^= tap_rng << 17;
	return (float)((tap_rng >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1;
}
#endif
