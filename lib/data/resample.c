/* resample.c -- PIL's antialiased resize (Image.resize with BILINEAR or
 * BICUBIC), the same arithmetic, so torchvision's PIL transforms can be
 * matched exactly.
 *
 * The algorithm (Pillow's libImaging/Resample.c, reimplemented):
 *   - separable; the horizontal pass first, over the source rows the
 *     vertical pass needs, rounded to 8 bits, then the vertical pass;
 *     an axis whose size and box are unchanged is not resampled at all;
 *   - output pixel i of an axis resized from the box [in0, in1) to n
 *     pixels has centre c = in0 + (i + 0.5) * scale, scale = (in1-in0)/n;
 *     the filter (triangle of support 1, or Keys' cubic with a = -0.5 and
 *     support 2) is stretched by max(scale, 1), so shrinking averages
 *     (antialiasing) and enlarging interpolates;
 *   - taps run over source pixels [int(c - support + 0.5), int(c + support
 *     + 0.5)) clipped to the image, and the weights are divided by their
 *     sum: at the borders the weights of the pixels that exist are
 *     renormalised (nothing is replicated);
 *   - weights become integers, w * 2^22 rounded half away from zero; a sum
 *     starts at 2^21 and the result is clamp(sum >> 22, 0, 255).
 * Sums fit in 32 bits: 255 * (sum of |weights|, at most 1.25 for the cubic)
 * * 2^22 < 2^31. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mim/stream.h"
#include "mim/data.h"

#define PREC 22

struct taps {
	int ksize;		/* weights per output pixel (stride) */
	int *lo, *n;		/* first source pixel and count, per output */
	int32_t *w;		/* ksize weights per output */
};

static double
triangle(double x)
{
	x = fabs(x);
	return x < 1.0 ? 1.0 - x : 0.0;
}

static double
cubic(double x)
{
	const double a = -0.5;

	x = fabs(x);
	if (x < 1.0)
		return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
	if (x < 2.0)
		return (((x - 5) * x + 8) * x - 4) * a;
	return 0.0;
}

static void
taps_free(struct taps *t)
{
	free(t->lo);
	free(t->n);
	free(t->w);
}

/* Weights of output pixels [o0, o0+n) of an axis of `out` pixels resized
 * from [in0, in1) of an axis of `insize` pixels. */
static int
taps_make(struct taps *t, int insize, double in0, double in1, int out, int o0, int n,
    enum mim_interp interp)
{
	double (*filter)(double) = interp == MIM_INTERP_BICUBIC ? cubic : triangle;
	double support = interp == MIM_INTERP_BICUBIC ? 2.0 : 1.0;
	double scale = (in1 - in0) / out, fscale = scale < 1.0 ? 1.0 : scale;
	double *k;

	memset(t, 0, sizeof *t);
	support *= fscale;
	t->ksize = (int)ceil(support) * 2 + 1;
	t->lo = mim_malloc((size_t)n * sizeof *t->lo);
	t->n = mim_malloc((size_t)n * sizeof *t->n);
	t->w = mim_calloc((size_t)n * (size_t)t->ksize, sizeof *t->w);
	k = mim_malloc((size_t)t->ksize * sizeof *k);
	if (!t->lo || !t->n || !t->w || !k) {
		free(k);
		taps_free(t);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		double c = in0 + (o0 + i + 0.5) * scale, sum = 0;
		int lo = (int)(c - support + 0.5), hi = (int)(c + support + 0.5);
		lo = lo < 0 ? 0 : lo;
		hi = hi > insize ? insize : hi;
		int cnt = hi - lo;
		if (cnt > t->ksize)
			cnt = t->ksize;
		if (cnt < 0)
			cnt = 0;
		for (int j = 0; j < cnt; j++) {
			k[j] = filter((j + lo - c + 0.5) / fscale);
			sum += k[j];
		}
		int32_t *w = t->w + (size_t)i * t->ksize;
		for (int j = 0; j < cnt; j++) {
			double v = sum != 0.0 ? k[j] / sum : k[j];
			w[j] = (int32_t)(v < 0 ? -0.5 + v * (1 << PREC) : 0.5 + v * (1 << PREC));
		}
		t->lo[i] = lo;
		t->n[i] = cnt;
	}
	free(k);
	return 0;
}

static inline uint8_t
clip8(int32_t v)
{
	v >>= PREC;
	return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Horizontal pass of one row: sw pixels of c channels to n pixels. */
static void
hrow(uint8_t *o, const uint8_t *row, int c, const struct taps *t, int n)
{
	if (c == 1) {
		for (int x = 0; x < n; x++) {
			const int32_t *w = t->w + (size_t)x * t->ksize;
			const uint8_t *p = row + t->lo[x];
			int32_t s = 1 << (PREC - 1);
			for (int j = 0; j < t->n[x]; j++)
				s += p[j] * w[j];
			o[x] = clip8(s);
		}
		return;
	}
	for (int x = 0; x < n; x++) {
		const int32_t *w = t->w + (size_t)x * t->ksize;
		const uint8_t *p = row + (size_t)t->lo[x] * 3;
		int32_t s0 = 1 << (PREC - 1), s1 = s0, s2 = s0;
		for (int j = 0; j < t->n[x]; j++) {
			s0 += p[3 * j] * w[j];
			s1 += p[3 * j + 1] * w[j];
			s2 += p[3 * j + 2] * w[j];
		}
		o[3 * x] = clip8(s0);
		o[3 * x + 1] = clip8(s1);
		o[3 * x + 2] = clip8(s2);
	}
}

/* The resampler: source rows go in one by one (mim_rs_rows), the
 * horizontal pass (or the plain column crop) turns each into a row of
 * `mid`; mim_rs_finish runs the vertical pass. */
struct mim_rs {
	int ox, oy, ow, oh, sw, sh, c;
	int needh, needv;
	int r0, r1;		/* source rows used */
	struct taps th, tv;
	uint8_t *mid;		/* rows r0..r1 after the horizontal step */
	size_t midlen;		/* bytes per mid row */
};

void
mim_rs_free(struct mim_rs *r)
{
	if (!r)
		return;
	taps_free(&r->th);
	taps_free(&r->tv);
	free(r->mid);
	free(r);
}

struct mim_rs *
mim_rs_new(int ox, int oy, int ow, int oh, int rw, int rh, int sw, int sh, int c,
    const double box[4], enum mim_interp interp)
{
	struct mim_rs *r;

	if (c != 1 && c != 3)
		return mim_seterr("resample: %d channels", c), NULL;
	if (ox < 0 || oy < 0 || ow < 1 || oh < 1 || ox + ow > rw || oy + oh > rh || sw < 1 || sh < 1)
		return mim_seterr("resample: window outside the output"), NULL;
	if (!(r = mim_calloc(1, sizeof *r)))
		return NULL;
	*r = (struct mim_rs){ox, oy, ow, oh, sw, sh, c, 0, 0, 0, 0, {0}, {0}, NULL, 0};
	/* as Pillow: an axis is resampled unless size and box are unchanged */
	r->needh = rw != sw || box[0] != 0 || box[2] != sw;
	r->needv = rh != sh || box[1] != 0 || box[3] != sh;
	r->r0 = oy;
	r->r1 = oy + oh;
	if (r->needv) {
		if (taps_make(&r->tv, sh, box[1], box[3], rh, oy, oh, interp))
			goto fail;
		r->r0 = r->tv.lo[0];
		r->r1 = r->tv.lo[0] + r->tv.n[0];
		for (int i = 0; i < oh; i++) {
			r->r0 = r->tv.lo[i] < r->r0 ? r->tv.lo[i] : r->r0;
			r->r1 = r->tv.lo[i] + r->tv.n[i] > r->r1 ? r->tv.lo[i] + r->tv.n[i] : r->r1;
		}
	}
	if (r->needh && taps_make(&r->th, sw, box[0], box[2], rw, ox, ow, interp))
		goto fail;
	r->midlen = (size_t)ow * c;
	if (!(r->mid = mim_malloc((size_t)(r->r1 - r->r0) * r->midlen + 1)))
		goto fail;
	return r;
fail:
	mim_rs_free(r);
	return NULL;
}

void
mim_rs_range(const struct mim_rs *r, int *first, int *end)
{
	*first = r->r0;
	*end = r->r1;
}

void
mim_rs_row(struct mim_rs *r, int y, const uint8_t *row)
{
	if (y < r->r0 || y >= r->r1)
		return;
	uint8_t *o = r->mid + (size_t)(y - r->r0) * r->midlen;
	if (r->needh)
		hrow(o, row, r->c, &r->th, r->ow);
	else
		memcpy(o, row + (size_t)r->ox * r->c, r->midlen);
}

int
mim_rs_finish(struct mim_rs *r, uint8_t *dst)
{
	size_t len = r->midlen;

	if (!r->needv) {
		memcpy(dst, r->mid + (size_t)(r->oy - r->r0) * len, (size_t)r->oh * len);
		return 0;
	}
	int32_t *acc = mim_malloc(len * sizeof *acc);
	if (!acc)
		return -1;
	for (int i = 0; i < r->oh; i++) {
		const int32_t *w = r->tv.w + (size_t)i * r->tv.ksize;
		for (size_t x = 0; x < len; x++)
			acc[x] = 1 << (PREC - 1);
		for (int j = 0; j < r->tv.n[i]; j++) {
			const uint8_t *row = r->mid + (size_t)(r->tv.lo[i] + j - r->r0) * len;
			int32_t wj = w[j];
			for (size_t x = 0; x < len; x++)
				acc[x] += row[x] * wj;
		}
		uint8_t *o = dst + (size_t)i * len;
		for (size_t x = 0; x < len; x++)
			o[x] = clip8(acc[x]);
	}
	free(acc);
	return 0;
}

int
mim_resample(uint8_t *dst, int ox, int oy, int ow, int oh, int rw, int rh,
    const uint8_t *src, int sw, int sh, int c, const double box[4], enum mim_interp interp)
{
	struct mim_rs *r = mim_rs_new(ox, oy, ow, oh, rw, rh, sw, sh, c, box, interp);
	int first, end;

	if (!r)
		return -1;
	mim_rs_range(r, &first, &end);
	for (int y = first; y < end; y++)
		mim_rs_row(r, y, src + (size_t)y * sw * c);
	int rc = mim_rs_finish(r, dst);
	mim_rs_free(r);
	return rc;
}
