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
 * * 2^22 < 2^31. Built with AVX2, both passes run 8 (16) sums at a time;
 * the sums are exact integers, so the result is the same to the bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "mim/stream.h"
#include "mim/data.h"

#define PREC 22

struct taps {
	int ksize;		/* weights per output pixel (stride) */
	int *lo, *n;		/* first source pixel and count, per output */
	int32_t *w;		/* ksize weights per output, zero after n */
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

#ifndef __AVX2__
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
#else
/* Row of c = 1 or 3 interleaved bytes to c int32 planes of stride ps. */
static void
planes(int32_t *pl, size_t ps, const uint8_t *row, int c, int sw)
{
	int x = 0;

	if (c == 3) {
		/* 16 pixels: three 16-byte loads, each channel gathered by
		 * byte shuffles, then widened */
		const __m128i m[3][3] = {
#define S(a) _mm_setr_epi8 a
			{S((0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)),
			 S((-1, -1, -1, -1, -1, -1, 2, 5, 8, 11, 14, -1, -1, -1, -1, -1)),
			 S((-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 1, 4, 7, 10, 13))},
			{S((1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)),
			 S((-1, -1, -1, -1, -1, 0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1)),
			 S((-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 2, 5, 8, 11, 14))},
			{S((2, 5, 8, 11, 14, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)),
			 S((-1, -1, -1, -1, -1, 1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1)),
			 S((-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 3, 6, 9, 12, 15))},
#undef S
		};
		for (; x + 16 <= sw; x += 16) {
			const uint8_t *p = row + (size_t)x * 3;
			__m128i a = _mm_loadu_si128((const __m128i *)p);
			__m128i b = _mm_loadu_si128((const __m128i *)(p + 16));
			__m128i d = _mm_loadu_si128((const __m128i *)(p + 32));
			for (int k = 0; k < 3; k++) {
				__m128i v = _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(a, m[k][0]),
				    _mm_shuffle_epi8(b, m[k][1])), _mm_shuffle_epi8(d, m[k][2]));
				int32_t *o = pl + k * ps + x;
				_mm256_storeu_si256((__m256i *)o, _mm256_cvtepu8_epi32(v));
				_mm256_storeu_si256((__m256i *)(o + 8),
				    _mm256_cvtepu8_epi32(_mm_srli_si128(v, 8)));
			}
		}
	}
	for (; x < sw; x++)
		for (int k = 0; k < c; k++)
			pl[k * ps + x] = row[(size_t)x * c + k];
}

/* The same sums, 8 taps at a time, over the row split into one int32
 * plane per channel (pl: c planes of stride ps, zero past the row) and
 * weights padded with zeros to a multiple of 8 (stride k8). The sums are
 * exact integers, so the order of the additions changes nothing. The
 * three channel sums are reduced together (hadd), rounded, shifted and
 * clamped to 0-255 by the saturating packs, as clip8. */
static void
hrow_avx2(uint8_t *o, const uint8_t *row, int c, const struct taps *t, int n,
    int32_t *pl, size_t ps, int sw, const int32_t *w8, int k8)
{
	const __m128i half = _mm_set1_epi32(1 << (PREC - 1));

	planes(pl, ps, row, c, sw);
	for (int x = 0; x < n; x++) {
		const int32_t *w = w8 + (size_t)x * k8, *p = pl + t->lo[x];
		__m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0;
		if (c == 3) {
			for (int j = 0; j < t->n[x]; j += 8) {
				__m256i wj = _mm256_loadu_si256((const __m256i *)(w + j));
				a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(wj,
				    _mm256_loadu_si256((const __m256i *)(p + j))));
				a1 = _mm256_add_epi32(a1, _mm256_mullo_epi32(wj,
				    _mm256_loadu_si256((const __m256i *)(p + ps + j))));
				a2 = _mm256_add_epi32(a2, _mm256_mullo_epi32(wj,
				    _mm256_loadu_si256((const __m256i *)(p + 2 * ps + j))));
			}
		} else {
			for (int j = 0; j < t->n[x]; j += 8)
				a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(
				    _mm256_loadu_si256((const __m256i *)(w + j)),
				    _mm256_loadu_si256((const __m256i *)(p + j))));
		}
		__m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a2));
		__m128i v = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
		v = _mm_srai_epi32(_mm_add_epi32(v, half), PREC);
		v = _mm_packus_epi16(_mm_packs_epi32(v, v), v);
		uint32_t px = (uint32_t)_mm_cvtsi128_si32(v);
		if (c == 3)
			memcpy(o + (size_t)x * 3, &px, 3);
		else
			o[x] = (uint8_t)px;
	}
}
#endif

/* The resampler: source rows go in one by one (mim_rs_row), the
 * horizontal pass (or the plain column crop) turns each into a row of
 * `mid`; mim_rs_finish runs the vertical pass. */
struct mim_rs {
	int ox, oy, ow, oh, sw, sh, c;
	int needh, needv;
	int r0, r1;		/* source rows used */
	struct taps th, tv;
	uint8_t *mid;		/* rows r0..r1 after the horizontal step */
	size_t midlen;		/* bytes per mid row */
	int32_t *pl, *w8;	/* hrow_avx2's planes and padded weights */
	size_t ps;
	int k8;
};

void
mim_rs_free(struct mim_rs *r)
{
	if (!r)
		return;
	taps_free(&r->th);
	taps_free(&r->tv);
	free(r->mid);
	free(r->pl);
	free(r->w8);
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
	*r = (struct mim_rs){.ox = ox, .oy = oy, .ow = ow, .oh = oh, .sw = sw, .sh = sh, .c = c};
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
#ifdef __AVX2__
	if (r->needh) {
		/* a tap run starting anywhere in the row may read k8 past it */
		r->k8 = (r->th.ksize + 7) / 8 * 8;
		r->ps = (size_t)sw + r->k8;
		r->pl = mim_calloc(r->ps * c, sizeof *r->pl);
		r->w8 = mim_calloc((size_t)ow * r->k8, sizeof *r->w8);
		if (!r->pl || !r->w8)
			goto fail;
		for (int x = 0; x < ow; x++)
			memcpy(r->w8 + (size_t)x * r->k8, r->th.w + (size_t)x * r->th.ksize,
			    (size_t)r->th.ksize * sizeof *r->w8);
	}
#endif
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
#ifdef __AVX2__
		hrow_avx2(o, row, r->c, &r->th, r->ow, r->pl, r->ps, r->sw, r->w8, r->k8);
#else
		hrow(o, row, r->c, &r->th, r->ow);
#endif
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
		const uint8_t *rows = r->mid + (size_t)(r->tv.lo[i] - r->r0) * len;
		uint8_t *o = dst + (size_t)i * len;
		size_t x = 0;
#ifdef __AVX2__
		/* 16 bytes across the taps at a time, in registers */
		const __m256i half = _mm256_set1_epi32(1 << (PREC - 1));
		for (; x + 16 <= len; x += 16) {
			__m256i a0 = half, a1 = half;
			for (int j = 0; j < r->tv.n[i]; j++) {
				__m256i wj = _mm256_set1_epi32(w[j]);
				__m128i v = _mm_loadu_si128((const __m128i *)(rows + (size_t)j * len + x));
				a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(wj, _mm256_cvtepu8_epi32(v)));
				a1 = _mm256_add_epi32(a1, _mm256_mullo_epi32(wj,
				    _mm256_cvtepu8_epi32(_mm_srli_si128(v, 8))));
			}
			a0 = _mm256_srai_epi32(a0, PREC);
			a1 = _mm256_srai_epi32(a1, PREC);
			/* packs work within 128-bit lanes: put the 16 back in order */
			__m256i p16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(a0, a1), 0xd8);
			__m128i p8 = _mm_packus_epi16(_mm256_castsi256_si128(p16),
			    _mm256_extracti128_si256(p16, 1));
			_mm_storeu_si128((__m128i *)(o + x), p8);
		}
#endif
		size_t x0 = x;
		for (; x < len; x++)
			acc[x] = 1 << (PREC - 1);
		for (int j = 0; j < r->tv.n[i]; j++) {
			const uint8_t *row = rows + (size_t)j * len;
			int32_t wj = w[j];
			for (x = x0; x < len; x++)
				acc[x] += row[x] * wj;
		}
		for (x = x0; x < len; x++)
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
