/* util.c -- error messages, checked allocation, whole reads and writes,
 * thread count, half-precision conversion. The library never prints or
 * exits: a failing call sets a per-thread message and returns -1/NULL. */

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mim/stream.h"

static _Thread_local char errbuf[1024];

int
mim_seterr(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	va_end(ap);
	return -1;
}

int
mim_preferr(const char *fmt, ...)
{
	char pre[512], old[sizeof errbuf];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(pre, sizeof pre, fmt, ap);
	va_end(ap);
	memcpy(old, errbuf, sizeof old);
	size_t k = strlen(pre);
	if (k > sizeof errbuf - 3)
		k = sizeof errbuf - 3;
	memcpy(errbuf, pre, k);
	memcpy(errbuf + k, ": ", 2);
	memcpy(errbuf + k + 2, old, sizeof errbuf - k - 2);
	errbuf[sizeof errbuf - 1] = 0;
	return -1;
}

const char *
mim_errmsg(void)
{
	return errbuf;
}

void *
mim_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		mim_seterr("out of memory (%zu bytes)", n);
	return p;
}

void *
mim_calloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);

	if (!p)
		mim_seterr("out of memory (%zu x %zu bytes)", n, sz);
	return p;
}

void *
mim_realloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q)
		mim_seterr("out of memory (%zu bytes)", n);
	return q;
}

char *
mim_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = mim_malloc(n);

	if (p)
		memcpy(p, s, n);
	return p;
}

int
mim_parse_size(const char *s, uint64_t *out)
{
	char *end;
	int shift = 0;

	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	}
	if (*s < '0' || *s > '9' || *end || errno || v == 0 || v > (UINT64_MAX >> shift))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

long long
mim_readall(int fd, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t k = read(fd, (char *)buf + got, n - got);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return mim_seterr("read error: %s", strerror(errno));
		}
		if (k == 0)
			break;
		got += (size_t)k;
	}
	return (long long)got;
}

int
mim_writeall(int fd, const void *buf, size_t n)
{
	size_t put = 0;

	while (put < n) {
		ssize_t k = write(fd, (const char *)buf + put, n - put);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			mim_seterr("write error: %s", strerror(e));
			errno = e;
			return -1;
		}
		put += (size_t)k;
	}
	return 0;
}

/* ---- half precision ----------------------------------------------------- */

static uint32_t
f2u(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	return u;
}

static float
u2f(uint32_t u)
{
	float f;

	memcpy(&f, &u, 4);
	return f;
}

float
mim_bf16_to_f32(uint16_t h)
{
	return u2f((uint32_t)h << 16);
}

uint16_t
mim_f32_to_bf16(float f)
{
	uint32_t u = f2u(f);

	if ((u & 0x7fffffff) > 0x7f800000)	/* NaN: keep it quiet */
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fff + ((u >> 16) & 1);		/* round to nearest even */
	return (uint16_t)(u >> 16);
}

float
mim_f16_to_f32(uint16_t h)
{
	uint32_t s = (uint32_t)(h & 0x8000) << 16;
	uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;

	if (e == 0x1f)
		return u2f(s | 0x7f800000 | (m << 13));
	if (e == 0) {
		if (m == 0)
			return u2f(s);
		/* subnormal: value m * 2^-24 */
		float v = (float)m * 5.9604644775390625e-8f;
		return s ? -v : v;
	}
	return u2f(s | ((e + 112) << 23) | (m << 13));
}

uint16_t
mim_f32_to_f16(float f)
{
	uint32_t u = f2u(f), s = (u >> 16) & 0x8000;
	uint32_t a = u & 0x7fffffff;

	if (a > 0x7f800000)
		return (uint16_t)(s | 0x7e00);
	if (a >= 0x477ff000)	/* rounds to >= 65520: overflow */
		return (uint16_t)(s | 0x7c00);
	if (a < 0x38800000) {	/* below the smallest normal half, 2^-14 */
		/* subnormal half: round(value * 2^24) to nearest even */
		float v = u2f(a) * 16777216.0f;
		uint32_t m = (uint32_t)v;
		float r = v - (float)m;
		if (r > 0.5f || (r == 0.5f && (m & 1)))
			m++;
		return (uint16_t)(s | m);
	}
	uint32_t e = (a >> 23) - 112, m = a & 0x7fffff;
	uint32_t h = (e << 10) | (m >> 13);
	uint32_t rest = m & 0x1fff;
	if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
		h++;
	return (uint16_t)(s | h);
}
