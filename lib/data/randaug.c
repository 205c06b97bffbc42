/* randaug.c -- RandAugment of the official fine-tuning transform: timm
 * 0.4.12's rand_augment_transform ('rand-m9-mstd0.5-inc1', hparams
 * img_mean = round(255 * mean) as the fill colour, the crop's
 * interpolation), on the 8-bit image after the crop and the flip.
 *
 * The draws (timm's RandAugment.__call__ and AugmentOp.__call__, on our
 * generator): n op indices uniform over the 15 ops of the list, with
 * replacement (np.random.choice); then, op by op, a coin u, the op skipped
 * when u > 0.5; the magnitude gauss(m, mstd) (Python's random.gauss
 * formula, two uniforms, the second normal of the pair unused) clipped to
 * [0, 10]; and, for ops whose argument has a sign, a second coin that
 * negates it when > 0.5 (_randomly_negate).
 *
 * The level functions (magnitude m in [0, 10] to the op's argument):
 *   Rotate             30 * m/10 degrees, signed
 *   Posterize          int(m/10 * 4) bits kept     (...Increasing: 4 - that)
 *   Solarize           int(m/10 * 256) threshold   (...Increasing: 256 - that)
 *   SolarizeAdd        int(m/10 * 110) added below 128
 *   Color, Contrast, Brightness, Sharpness: factor m/10 * 1.8 + 0.1
 *                      (...Increasing: 1 + m/10 * 0.9, signed)
 *   ShearX, ShearY     0.3 * m/10, signed
 *   TranslateX/YRel    0.45 * m/10 of the width (height), signed
 *
 * The pixels, PIL 9.4's arithmetic (libImaging and ImageOps, read from its
 * sources), so that the ops agree to the byte:
 *   - point ops through a 256-entry table a channel, entries clipped to
 *     0..255 (ImagingPoint): autocontrast (cutoff 0), equalize (the
 *     histogram-step table), invert, posterize, solarize;
 *   - ImageEnhance: Image.blend(degenerate, image, factor) with the factor
 *     as a C float; out = (uint8)(d + factor * (i - d)) in float,
 *     truncated, clipped only outside [0, 1]. Degenerate images: Color the
 *     L image (ITU-R 601 in 16.16 fixed point) as RGB, Contrast the mean of
 *     the L image, int(mean + 0.5), everywhere, Brightness black,
 *     Sharpness the 3x3 SMOOTH filter (1 1 1 / 1 5 1 / 1 1 1, /13 in
 *     float, + 0.5, truncated) with the outermost rows and columns kept;
 *   - rotate, shear and translate: Image.transform(AFFINE) (rotate builds
 *     its matrix as Image.rotate does: angle mod 360, cos and sin rounded
 *     to 15 decimals, centre w/2, h/2): each output pixel's centre mapped
 *     to the source; outside the image the fill colour, inside PIL's
 *     bicubic (a = -1, edge rows and columns repeated) or bilinear,
 *     truncated to 8 bits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mim/stream.h"
#include "mim/data.h"

/* ---- names, lists, specs ------------------------------------------------- */

static const char *const names[MIM_RA_NOPS] = {
	[MIM_RA_AUTOCONTRAST] = "AutoContrast",
	[MIM_RA_EQUALIZE] = "Equalize",
	[MIM_RA_INVERT] = "Invert",
	[MIM_RA_ROTATE] = "Rotate",
	[MIM_RA_POSTERIZE] = "Posterize",
	[MIM_RA_SOLARIZE] = "Solarize",
	[MIM_RA_SOLARIZE_ADD] = "SolarizeAdd",
	[MIM_RA_COLOR] = "Color",
	[MIM_RA_CONTRAST] = "Contrast",
	[MIM_RA_BRIGHTNESS] = "Brightness",
	[MIM_RA_SHARPNESS] = "Sharpness",
	[MIM_RA_SHEAR_X] = "ShearX",
	[MIM_RA_SHEAR_Y] = "ShearY",
	[MIM_RA_TRANSLATE_X_REL] = "TranslateXRel",
	[MIM_RA_TRANSLATE_Y_REL] = "TranslateYRel",
	[MIM_RA_POSTERIZE_INC] = "PosterizeIncreasing",
	[MIM_RA_SOLARIZE_INC] = "SolarizeIncreasing",
	[MIM_RA_COLOR_INC] = "ColorIncreasing",
	[MIM_RA_CONTRAST_INC] = "ContrastIncreasing",
	[MIM_RA_BRIGHTNESS_INC] = "BrightnessIncreasing",
	[MIM_RA_SHARPNESS_INC] = "SharpnessIncreasing",
};

/* timm's _RAND_TRANSFORMS and _RAND_INCREASING_TRANSFORMS, in order */
static const int plain[MIM_RA_LIST] = {
	MIM_RA_AUTOCONTRAST, MIM_RA_EQUALIZE, MIM_RA_INVERT, MIM_RA_ROTATE,
	MIM_RA_POSTERIZE, MIM_RA_SOLARIZE, MIM_RA_SOLARIZE_ADD, MIM_RA_COLOR,
	MIM_RA_CONTRAST, MIM_RA_BRIGHTNESS, MIM_RA_SHARPNESS, MIM_RA_SHEAR_X,
	MIM_RA_SHEAR_Y, MIM_RA_TRANSLATE_X_REL, MIM_RA_TRANSLATE_Y_REL,
};
static const int increasing[MIM_RA_LIST] = {
	MIM_RA_AUTOCONTRAST, MIM_RA_EQUALIZE, MIM_RA_INVERT, MIM_RA_ROTATE,
	MIM_RA_POSTERIZE_INC, MIM_RA_SOLARIZE_INC, MIM_RA_SOLARIZE_ADD, MIM_RA_COLOR_INC,
	MIM_RA_CONTRAST_INC, MIM_RA_BRIGHTNESS_INC, MIM_RA_SHARPNESS_INC, MIM_RA_SHEAR_X,
	MIM_RA_SHEAR_Y, MIM_RA_TRANSLATE_X_REL, MIM_RA_TRANSLATE_Y_REL,
};

void
mim_randaug_fill(struct mim_randaug *ra, const float mean[3])
{
	for (int i = 0; i < 3; i++) {
		double v = rint(255.0 * mean[i]);
		ra->fill[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
	}
}

/* --print-boxes' RandAugment part (mim_geom_format) */
static void
format_steps(char *buf, size_t n, const struct mim_geom *g)
{
	size_t k = strlen(buf);

	if (!g->nra)
		return;
	k += snprintf(buf + k, n - k, " ra");
	for (int i = 0; i < g->nra && k < n; i++) {
		const struct mim_ra_step *s = &g->ra[i];
		if (s->applied)
			k += snprintf(buf + k, n - k, " %s:%s%.17g", mim_ra_name(s->op),
			    s->neg ? "-" : "", s->mag);
		else
			k += snprintf(buf + k, n - k, " (%s)", mim_ra_name(s->op));
	}
}

void
mim_geom_format(char *buf, size_t n, const struct mim_geom *g)
{
	int k = snprintf(buf, n, "%d %d %d %d %d %d %d %d", g->W, g->H, g->box.x, g->box.y,
	    g->box.w, g->box.h, g->box.flip, g->shrink);

	if (g->erased && k >= 0 && (size_t)k < n)
		snprintf(buf + k, n - k, " erase %d %d %d %d", g->erase.x, g->erase.y, g->erase.w,
		    g->erase.h);
	format_steps(buf, n, g);
}

const char *
mim_ra_name(int op)
{
	return op >= 0 && op < MIM_RA_NOPS ? names[op] : NULL;
}

int
mim_ra_lookup(const char *name)
{
	for (int i = 0; i < MIM_RA_NOPS; i++)
		if (!strcmp(name, names[i]))
			return i;
	return -1;
}

const int *
mim_ra_list(int inc)
{
	return inc ? increasing : plain;
}

/* a whole non-negative integer of at most 9 digits, or -1 */
static long
whole(const char *s)
{
	long v = 0;

	if (!*s || strlen(s) > 9)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v;
}

int
mim_randaug_parse(struct mim_randaug *ra, const char *spec)
{
	char buf[256], *save = NULL;

	ra->n = 0;
	ra->m = 10;
	ra->mstd = 0;
	ra->inc = 0;
	if (!strcmp(spec, "none"))
		return 0;
	if (strlen(spec) >= sizeof buf)
		return mim_seterr("too long");
	/* timm: config_str.split('-'), config[0] == 'rand', then each section
	 * split at its first digit into key and value */
	snprintf(buf, sizeof buf, "%s", spec);
	if (strncmp(buf, "rand", 4) || (buf[4] && buf[4] != '-'))
		return mim_seterr("not a RandAugment spec (want rand-m9-mstd0.5-inc1 and the like, "
		    "or none)");
	ra->n = 2;
	if (buf[4] && !buf[5])
		return mim_seterr("an empty section");
	for (char *sec = buf[4] ? strtok_r(buf + 5, "-", &save) : NULL; sec;
	    sec = strtok_r(NULL, "-", &save)) {
		size_t k = strcspn(sec, "0123456789");
		const char *val = sec + k;
		if (!*val)
			return mim_seterr("section '%s' has no value", sec);
		if (k == 1 && sec[0] == 'm') {
			long v = whole(val);
			if (v < 0)
				return mim_seterr("magnitude '%s': want a whole number 0..10", val);
			if (v > 10)
				return mim_seterr("magnitude %ld out of range [0, 10]", v);
			ra->m = (int)v;
		} else if (k == 4 && !strncmp(sec, "mstd", 4)) {
			char *end;
			double v = strtod(val, &end);
			if (*end || !isfinite(v) || v > 100)
				return mim_seterr("magnitude std '%s': want a number in [0, 100]", val);
			ra->mstd = v;
		} else if (k == 3 && !strncmp(sec, "inc", 3)) {
			long v = whole(val);
			if (v != 0 && v != 1)
				return mim_seterr("inc '%s': want 0 or 1", val);
			ra->inc = (int)v;
		} else if (k == 1 && sec[0] == 'n') {
			long v = whole(val);
			if (v < 0 || v > MIM_RA_MAXN)
				return mim_seterr("n '%s': want ops per image 0..%d", val, MIM_RA_MAXN);
			ra->n = (int)v;
		} else if (k == 1 && sec[0] == 'w') {
			return mim_seterr("weighted op choice (w%s) is not supported", val);
		} else {
			return mim_seterr("unknown section '%s' (want m, mstd, inc or n)", sec);
		}
	}
	/* "rand--m9": strtok_r skips the empty section; refuse it */
	if (strstr(spec, "--") || spec[strlen(spec) - 1] == '-')
		return mim_seterr("an empty section");
	return 0;
}

void
mim_randaug_format(char *buf, size_t n, const struct mim_randaug *ra)
{
	if (ra->n == 0)
		snprintf(buf, n, "none");
	else
		snprintf(buf, n, "rand-m%d-mstd%g-inc%d-n%d", ra->m, ra->mstd, ra->inc, ra->n);
}

/* ---- draws --------------------------------------------------------------- */

static int
has_sign(int op)
{
	switch (op) {
	case MIM_RA_ROTATE: case MIM_RA_SHEAR_X: case MIM_RA_SHEAR_Y:
	case MIM_RA_TRANSLATE_X_REL: case MIM_RA_TRANSLATE_Y_REL:
	case MIM_RA_COLOR_INC: case MIM_RA_CONTRAST_INC: case MIM_RA_BRIGHTNESS_INC:
	case MIM_RA_SHARPNESS_INC:
		return 1;
	}
	return 0;
}

/* Python's random.gauss(mu, sigma): cos(2 pi u1) sqrt(-2 log(1 - u2)) */
static double
gauss(struct mim_drng *rng, double mu, double sigma)
{
	double x2pi = mim_drng_double(rng) * (2.0 * M_PI);
	double g2rad = sqrt(-2.0 * log(1.0 - mim_drng_double(rng)));
	double z = cos(x2pi) * g2rad;

	return mu + z * sigma;
}

void
mim_randaug_draw(const struct mim_randaug *ra, struct mim_drng *rng, struct mim_ra_step *st)
{
	const int *list = mim_ra_list(ra->inc);

	for (int l = 0; l < ra->n; l++)
		st[l] = (struct mim_ra_step){list[mim_drng_below(rng, MIM_RA_LIST)], 0, 0, 0};
	for (int l = 0; l < ra->n; l++) {
		if (mim_drng_double(rng) > 0.5)
			continue;
		double m = ra->m;
		if (ra->mstd > 0)
			m = gauss(rng, m, ra->mstd);
		m = m > 0 ? m : 0;
		st[l].mag = m < 10 ? m : 10;
		st[l].applied = 1;
		if (has_sign(st[l].op))
			st[l].neg = mim_drng_double(rng) > 0.5;
	}
}

/* ---- point ops ----------------------------------------------------------- */

static void
histogram(const struct mim_img *im, long h[3][256])
{
	size_t n = (size_t)im->w * im->h;

	memset(h, 0, 3 * 256 * sizeof h[0][0]);
	for (size_t i = 0; i < n; i++)
		for (int c = 0; c < 3; c++)
			h[c][im->px[3 * i + c]]++;
}

/* ImagingPoint with a table a channel, each entry clipped to 0..255 */
static void
point(struct mim_img *im, long lut[3][256])
{
	uint8_t t[3][256];
	size_t n = (size_t)im->w * im->h;

	for (int c = 0; c < 3; c++)
		for (int v = 0; v < 256; v++)
			t[c][v] = (uint8_t)(lut[c][v] < 0 ? 0 : lut[c][v] > 255 ? 255 : lut[c][v]);
	for (size_t i = 0; i < n; i++)
		for (int c = 0; c < 3; c++)
			im->px[3 * i + c] = t[c][im->px[3 * i + c]];
}

/* ImageOps.autocontrast(cutoff=0): each channel's lowest and highest
 * values stretched to 0 and 255 */
static void
autocontrast(struct mim_img *im)
{
	long h[3][256], lut[3][256];

	histogram(im, h);
	for (int c = 0; c < 3; c++) {
		int lo = 0, hi = 255;
		while (lo < 255 && !h[c][lo])
			lo++;
		while (hi > 0 && !h[c][hi])
			hi--;
		if (hi <= lo) {
			for (int v = 0; v < 256; v++)
				lut[c][v] = v;
			continue;
		}
		double scale = 255.0 / (hi - lo), offset = -lo * scale;
		for (int v = 0; v < 256; v++) {
			double t = v * scale;
			long x = (long)(t + offset);
			lut[c][v] = x < 0 ? 0 : x > 255 ? 255 : x;
		}
	}
	point(im, lut);
}

/* ImageOps.equalize: step = (pixels - those of the highest value) // 255,
 * value i to (step // 2 + pixels below i) // step */
static void
equalize(struct mim_img *im)
{
	long h[3][256], lut[3][256];

	histogram(im, h);
	for (int c = 0; c < 3; c++) {
		long sum = 0, last = 0;
		int used = 0;
		for (int v = 0; v < 256; v++)
			if (h[c][v]) {
				sum += h[c][v];
				last = h[c][v];
				used++;
			}
		long step = used > 1 ? (sum - last) / 255 : 0;
		if (!step) {
			for (int v = 0; v < 256; v++)
				lut[c][v] = v;
			continue;
		}
		long n = step / 2;
		for (int v = 0; v < 256; v++) {
			lut[c][v] = n / step;
			n += h[c][v];
		}
	}
	point(im, lut);
}

/* invert, posterize, solarize, solarize_add: one table for all channels */
static void
point_op(struct mim_img *im, int op, int arg)
{
	long lut[3][256];

	for (int v = 0; v < 256; v++) {
		long x = v;
		if (op == MIM_RA_INVERT)
			x = 255 - v;
		else if (op == MIM_RA_POSTERIZE)	/* arg bits kept */
			x = v & ~((1L << (8 - arg)) - 1);
		else if (op == MIM_RA_SOLARIZE)		/* arg threshold */
			x = v < arg ? v : 255 - v;
		else if (op == MIM_RA_SOLARIZE_ADD)	/* arg added below 128 */
			x = v < 128 ? (v + arg < 255 ? v + arg : 255) : v;
		lut[0][v] = lut[1][v] = lut[2][v] = x;
	}
	point(im, lut);
}

/* ---- ImageEnhance ---------------------------------------------------------- */

/* Image.blend(deg, im, factor) into im, as ImagingBlend: the factor a
 * float, the arithmetic float, truncated; clipped when extrapolating */
static void
blend(struct mim_img *im, const uint8_t *deg, double factor)
{
	float alpha = (float)factor;
	size_t n = (size_t)im->w * im->h * 3;

	if (alpha == 0.0f) {
		memcpy(im->px, deg, n);
		return;
	}
	if (alpha == 1.0f)
		return;
	if (alpha >= 0 && alpha <= 1.0) {
		for (size_t i = 0; i < n; i++) {
			float p = alpha * (float)((int)im->px[i] - (int)deg[i]);
			float t = (float)deg[i] + p;
			im->px[i] = (uint8_t)t;
		}
		return;
	}
	for (size_t i = 0; i < n; i++) {
		float p = alpha * (float)((int)im->px[i] - (int)deg[i]);
		float t = (float)deg[i] + p;
		im->px[i] = t <= 0.0f ? 0 : t >= 255.0f ? 255 : (uint8_t)t;
	}
}

/* RGB to L: ITU-R 601-2 in 16.16 fixed point (Convert.c rgb2l) */
static inline int
luma(const uint8_t *p)
{
	return (p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16;
}

/* ImageFilter.SMOOTH (ImagingFilter3x3): kernel 1 1 1 / 1 5 1 / 1 1 1
 * divided by 13 in float, rows summed from the one below to the one above
 * as PIL does, + 0.5, truncated; the border pixels copied. Images of fewer
 * than 3 rows or columns are copied whole. */
static void
smooth(uint8_t *out, const struct mim_img *im)
{
	int w = im->w, h = im->h;
	size_t row = (size_t)w * 3;
	const float k1 = 1.0f / 13.0f, k5 = 5.0f / 13.0f;

	memcpy(out, im->px, row * h);
	if (w < 3 || h < 3)
		return;
	for (int y = 1; y < h - 1; y++) {
		const uint8_t *r[3] = {im->px + (y + 1) * row, im->px + y * row,
		    im->px + (y - 1) * row};
		for (int x = 1; x < w - 1; x++)
			for (int c = 0; c < 3; c++) {
				size_t i = (size_t)x * 3 + c;
				float ss = 0.5f;
				for (int k = 0; k < 3; k++) {
					float mid = k == 1 ? k5 : k1;
					float a = (float)r[k][i - 3] * k1;
					float b = (float)r[k][i] * mid;
					float d = (float)r[k][i + 3] * k1;
					float t = a + b;
					t = t + d;
					ss = ss + t;
				}
				out[y * row + i] = ss <= 0.0f ? 0 : ss >= 255.0f ? 255 : (uint8_t)ss;
			}
	}
}

/* Color, Contrast, Brightness, Sharpness at factor f */
static int
enhance(struct mim_img *im, int op, double f)
{
	size_t n = (size_t)im->w * im->h;
	uint8_t *deg = mim_malloc(n * 3);

	if (!deg)
		return -1;
	if (op == MIM_RA_COLOR) {
		for (size_t i = 0; i < n; i++)
			deg[3 * i] = deg[3 * i + 1] = deg[3 * i + 2] = (uint8_t)luma(im->px + 3 * i);
	} else if (op == MIM_RA_CONTRAST) {
		/* ImageStat's mean of the L image, int(mean + 0.5) */
		long hist[256] = {0};
		for (size_t i = 0; i < n; i++)
			hist[luma(im->px + 3 * i)]++;
		double sum = 0;
		for (int v = 0; v < 256; v++)
			sum += (double)v * hist[v];
		memset(deg, (int)(sum / n + 0.5), n * 3);
	} else if (op == MIM_RA_BRIGHTNESS) {
		memset(deg, 0, n * 3);
	} else {
		smooth(deg, im);
	}
	blend(im, deg, f);
	free(deg);
	return 0;
}

/* ---- geometric ops --------------------------------------------------------- */

/* PIL's bicubic (Geometry.c bicubic_filter32RGB): a = -1 */
static inline double
cubic(double v1, double v2, double v3, double v4, double d)
{
	double p1 = v2;
	double p2 = -v1 + v3;
	double p3 = 2 * (v1 - v2) + v3 - v4;
	double p4 = -v1 + v2 - v3 + v4;
	double t = d * p4;

	t = p3 + t;
	t = d * t;
	t = p2 + t;
	t = d * t;
	return p1 + t;
}

static inline int
clampi(int v, int n)
{
	return v < 0 ? 0 : v < n ? v : n - 1;
}

/* FLOOR of Geometry.c: (int) truncation for v >= 0 */
static inline int
pfloor(double v)
{
	return v < 0.0 ? (int)floor(v) : (int)v;
}

/* Where source position (xin, yin) falls, as the heads of PIL's filters:
 * 0 outside the image, else the pixel (x, y) up and left of it, counted
 * from pixel centres, and the fractions (dx, dy) beyond */
struct at {
	int x, y;
	double dx, dy;
};

static int
locate(struct at *p, const struct mim_img *im, double xin, double yin)
{
	if (xin < 0.0 || xin >= im->w || yin < 0.0 || yin >= im->h)
		return 0;
	xin -= 0.5;
	yin -= 0.5;
	p->x = pfloor(xin);
	p->y = pfloor(yin);
	p->dx = xin - p->x;
	p->dy = yin - p->y;
	return 1;
}

/* PIL's bicubic (bicubic_filter32RGB): rows y-1..y+2, columns x-1..x+2,
 * the edge ones repeated */
static void
sample_bicubic(uint8_t *out, const struct mim_img *im, const struct at *p)
{
	int w = im->w, h = im->h, x = p->x - 1, y = p->y - 1, xs[4];

	for (int k = 0; k < 4; k++)
		xs[k] = clampi(x + k, w) * 3;
	for (int c = 0; c < 3; c++) {
		double v[4];
		const uint8_t *in = im->px + (size_t)clampi(y, h) * w * 3 + c;
		v[0] = cubic(in[xs[0]], in[xs[1]], in[xs[2]], in[xs[3]], p->dx);
		for (int k = 1; k < 4; k++) {
			if (y + k >= 0 && y + k < h) {
				in = im->px + (size_t)(y + k) * w * 3 + c;
				v[k] = cubic(in[xs[0]], in[xs[1]], in[xs[2]], in[xs[3]], p->dx);
			} else {
				v[k] = v[k - 1];
			}
		}
		double r = cubic(v[0], v[1], v[2], v[3], p->dy);
		out[c] = r <= 0.0 ? 0 : r >= 255.0 ? 255 : (uint8_t)r;
	}
}

/* PIL's bilinear (bilinear_filter32RGB) */
static void
sample_bilinear(uint8_t *out, const struct mim_img *im, const struct at *p)
{
	int w = im->w, h = im->h, y = p->y;
	int x0 = clampi(p->x, w) * 3, x1 = clampi(p->x + 1, w) * 3;

	for (int c = 0; c < 3; c++) {
		const uint8_t *in = im->px + (size_t)clampi(y, h) * w * 3 + c;
		double t = (in[x1] - in[x0]) * p->dx;
		double v1 = in[x0] + t, v2 = v1;
		if (y + 1 >= 0 && y + 1 < h) {
			in = im->px + (size_t)(y + 1) * w * 3 + c;
			t = (in[x1] - in[x0]) * p->dx;
			v2 = in[x0] + t;
		}
		t = (v2 - v1) * p->dy;
		out[c] = (uint8_t)(v1 + t);
	}
}

/* Image.transform(size, AFFINE, a, resample, fillcolor=fill): output pixel
 * (x, y) from source (a0 (x+.5) + a1 (y+.5) + a2, a3 (x+.5) + a4 (y+.5) + a5) */
static int
affine(struct mim_img *im, const double a[6], const uint8_t fill[3], enum mim_interp interp)
{
	int w = im->w, h = im->h;
	uint8_t *out = mim_malloc((size_t)w * h * 3);

	if (!out)
		return -1;
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			double xin = x + 0.5, yin = y + 0.5;
			double p = a[0] * xin, q = a[1] * yin;
			double xx = p + q;
			xx = xx + a[2];
			p = a[3] * xin;
			q = a[4] * yin;
			double yy = p + q;
			yy = yy + a[5];
			uint8_t *o = out + ((size_t)y * w + x) * 3;
			struct at pos;
			if (!locate(&pos, im, xx, yy))
				memcpy(o, fill, 3);
			else if (interp == MIM_INTERP_BICUBIC)
				sample_bicubic(o, im, &pos);
			else
				sample_bilinear(o, im, &pos);
		}
	free(im->px);
	im->px = out;
	return 0;
}

/* Python's round(v, 15), correctly rounded both ways as CPython's */
static double
round15(double v)
{
	char buf[64];

	snprintf(buf, sizeof buf, "%.15f", v);
	return strtod(buf, NULL);
}

/* Image.rotate(deg, resample, fillcolor=fill), expand off. 1: the angle
 * is 0 mod 360 and the image is left as it is (PIL's copy). */
static int
rotate_matrix(double a[6], double deg, int w, int h)
{
	/* Python's float %: the sign of the divisor */
	double ang = fmod(deg, 360.0);
	if (ang != 0) {
		if (ang < 0)
			ang += 360.0;
	} else {
		ang = 0.0;
	}
	if (ang == 0)
		return 1;
	double rad = -(ang * (M_PI / 180.0));
	double c = round15(cos(rad)), s = round15(sin(rad)), ns = round15(-sin(rad));
	double cx = w / 2.0, cy = h / 2.0;
	a[0] = c;
	a[1] = s;
	a[3] = ns;
	a[4] = c;
	/* matrix[2], matrix[5] = transform(-cx, -cy, matrix); += cx, cy */
	double p = c * -cx, q = s * -cy;
	a[2] = p + q;
	a[2] = a[2] + 0.0;
	p = ns * -cx;
	q = c * -cy;
	a[5] = p + q;
	a[5] = a[5] + 0.0;
	a[2] += cx;
	a[5] += cy;
	return 0;
}

/* ---- one op ------------------------------------------------------------------ */

int
mim_ra_apply(struct mim_img *im, int op, double mag, int neg, const uint8_t fill[3],
    enum mim_interp interp)
{
	double lv = mag / 10.0;	/* timm: level / _MAX_LEVEL */
	double a[6] = {1, 0, 0, 0, 1, 0}, v;

	if (im->c != 3)
		return mim_seterr("RandAugment: want an RGB image");
	switch (op) {
	case MIM_RA_AUTOCONTRAST:
		autocontrast(im);
		return 0;
	case MIM_RA_EQUALIZE:
		equalize(im);
		return 0;
	case MIM_RA_INVERT:
		point_op(im, op, 0);
		return 0;
	case MIM_RA_POSTERIZE:
	case MIM_RA_POSTERIZE_INC: {
		int bits = (int)(lv * 4);
		if (op == MIM_RA_POSTERIZE_INC)
			bits = 4 - bits;
		if (bits < 8)	/* timm's posterize: 8 bits and up, as it is */
			point_op(im, MIM_RA_POSTERIZE, bits);
		return 0;
	}
	case MIM_RA_SOLARIZE:
	case MIM_RA_SOLARIZE_INC: {
		int thresh = (int)(lv * 256);
		if (op == MIM_RA_SOLARIZE_INC)
			thresh = 256 - thresh;
		point_op(im, MIM_RA_SOLARIZE, thresh);
		return 0;
	}
	case MIM_RA_SOLARIZE_ADD:
		point_op(im, op, (int)(lv * 110));
		return 0;
	case MIM_RA_COLOR:
	case MIM_RA_CONTRAST:
	case MIM_RA_BRIGHTNESS:
	case MIM_RA_SHARPNESS:
		return enhance(im, op, lv * 1.8 + 0.1);
	case MIM_RA_COLOR_INC:
	case MIM_RA_CONTRAST_INC:
	case MIM_RA_BRIGHTNESS_INC:
	case MIM_RA_SHARPNESS_INC:
		v = lv * 0.9;
		/* the blend of the plain op (COLOR..SHARPNESS, in the same order) */
		return enhance(im, op - MIM_RA_COLOR_INC + MIM_RA_COLOR, 1.0 + (neg ? -v : v));
	case MIM_RA_ROTATE:
		v = lv * 30.0;
		if (rotate_matrix(a, neg ? -v : v, im->w, im->h))
			return 0;
		break;
	case MIM_RA_SHEAR_X:
	case MIM_RA_SHEAR_Y:
		v = lv * 0.3;
		a[op == MIM_RA_SHEAR_X ? 1 : 3] = neg ? -v : v;
		break;
	case MIM_RA_TRANSLATE_X_REL:
		v = lv * 0.45;
		a[2] = (neg ? -v : v) * im->w;
		break;
	case MIM_RA_TRANSLATE_Y_REL:
		v = lv * 0.45;
		a[5] = (neg ? -v : v) * im->h;
		break;
	default:
		return mim_seterr("RandAugment: no op %d", op);
	}
	if (affine(im, a, fill, interp))
		return mim_seterr("out of memory");
	return 0;
}

int
mim_randaug(struct mim_img *im, const struct mim_randaug *ra, enum mim_interp interp,
    struct mim_drng *rng, struct mim_ra_step *st)
{
	struct mim_ra_step own[MIM_RA_MAXN];

	if (ra->n < 1)
		return 0;
	if (ra->n > MIM_RA_MAXN)
		return mim_seterr("RandAugment: %d ops per image, at most %d", ra->n, MIM_RA_MAXN);
	if (!st)
		st = own;
	if (im->c == 1) {
		size_t n = (size_t)im->w * im->h;
		uint8_t *rgb = mim_malloc(n * 3);
		if (!rgb)
			return -1;
		for (size_t i = 0; i < n; i++)
			rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = im->px[i];
		free(im->px);
		im->px = rgb;
		im->c = 3;
	}
	mim_randaug_draw(ra, rng, st);
	for (int l = 0; l < ra->n; l++)
		if (st[l].applied && mim_ra_apply(im, st[l].op, st[l].mag, st[l].neg, ra->fill, interp))
			return -1;
	return 0;
}
