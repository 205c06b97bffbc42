/* image.c -- decode one image and apply SimMIM's transforms.
 *
 * Geometry of every transform, in three steps:
 *   1. a box (x,y,w,h) of the source image: the RandomResizedCrop box
 *      (train) or the whole image (eval, resize);
 *   2. the box resized to rw x rh: size x size (train), shorter side to
 *      int(size/crop_ratio) (eval) or to size (resize), as torchvision's
 *      Resize computes it;
 *   3. a window (cx,cy,ow,oh) of that: the centre size x size (eval), all
 *      of it otherwise; then the optional horizontal flip.
 * padcrop (RandomCrop with padding) is the same with no resize: the box is
 * the part of the size x size window inside the image, resized to itself
 * (PIL's filters are the identity at scale 1), then placed on a black
 * size x size canvas where the window has it, then flipped.
 *
 * libjpeg (jpeg.c) decodes JPEGs, only the rows and columns under the box,
 * CMYK ones converted as PIL does; libvips decodes the rest, converts to
 * 8-bit RGB or grey and cuts out the pixels under the box. The resize is PIL's own algorithm
 * (resample.c), so with nothing else in the way the output is bit for bit
 * torchvision's. Two
 * speed-ups trade a little of that exactness, each only while the box
 * stays large against the output:
 *   - JPEG shrink-on-load: libjpeg's scaled IDCT decodes at 1/s size (s x s
 *     pixels become one, roughly their mean) for the largest s up to
 *     shrink_max that leaves the box at least shrink_min times the output
 *     on both axes. The box is then mapped to the small image with
 *     fractional coordinates, so no rounding moves it. shrink_max is 2 by
 *     default: at 1/4 libjpeg keeps 2x2 of the 8x8 coefficients and of a
 *     4:2:0 image's chroma only the DC, up to 3-4/255 off PIL at the 99th
 *     percentile whatever the remaining downscale (1/8: up to 7/255); at
 *     1/2 the 99th percentile stays near 2/255 (bench/DATA.md);
 *   - gap: for other formats, a box shrink (vips_shrink) by
 *     floor(factor/gap) first, as libvips' and PIL's reducing_gap do;
 *     0 turns it off.
 * Colour: grey stays one channel (replicated at normalisation), alpha is
 * dropped without compositing and 16-bit RGB becomes 8-bit, as PIL's
 * convert('RGB'). One deliberate difference: PIL opens a 16-bit grey PNG
 * as mode I and convert('RGB') clips it to 0-255, a nearly white image;
 * here it is scaled to 8 bits like 16-bit RGB. No EXIF auto-rotation and
 * no ICC transform: PIL applies neither. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <vips/vips.h>

#include "mim/stream.h"
#include "mim/data.h"
#include "../rng.h"
#include "jpeg.h"

/* ---- random numbers ------------------------------------------------------ */

void
mim_drng_key(struct mim_drng *r, uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
	/* chain the key words through splitmix64 so that nearby keys give
	 * unrelated states */
	uint64_t x = a;
	uint64_t h = mim_splitmix64(&x);
	x = h ^ b;
	h = mim_splitmix64(&x);
	x = h ^ c;
	h = mim_splitmix64(&x);
	x = h ^ d;
	for (int i = 0; i < 4; i++)
		r->s[i] = mim_splitmix64(&x);
}

uint64_t
mim_drng_u64(struct mim_drng *r)
{
	return mim_xoshiro256ss(r->s);
}

double
mim_drng_double(struct mim_drng *r)
{
	return mim_u64_to_unit(mim_drng_u64(r));
}

uint64_t
mim_drng_below(struct mim_drng *r, uint64_t n)
{
	/* rejection: accept x below the largest multiple of n */
	uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;

	do
		x = mim_drng_u64(r);
	while (x >= lim);
	return x % n;
}

/* ---- options --------------------------------------------------------------- */

void
mim_aug_default(struct mim_aug *a)
{
	memset(a, 0, sizeof *a);
	a->mode = MIM_MODE_TRAIN;
	a->size = 192;
	a->scale[0] = 0.67;
	a->scale[1] = 1.0;
	a->ratio[0] = 3.0 / 4.0;
	a->ratio[1] = 4.0 / 3.0;
	a->flip = 0.5;
	a->interp = MIM_INTERP_BILINEAR;
	a->crop_ratio = 224.0 / 256.0;
	a->pad = 4;
	a->gap = 0;
	a->shrink_min = 3;
	a->shrink_max = 2;
	a->max_pixels = MIM_MAX_PIXELS;
}

int
mim_aug_check(const struct mim_aug *a)
{
	if (a->size < 1 || a->size > 8192)
		return mim_seterr("size %d out of range [1, 8192]", a->size);
	if (!(a->scale[0] > 0 && a->scale[0] <= a->scale[1] && a->scale[1] <= 1))
		return mim_seterr("scale (%g, %g): want 0 < lo <= hi <= 1", a->scale[0], a->scale[1]);
	if (!(a->ratio[0] > 0 && a->ratio[0] <= a->ratio[1] && isfinite(a->ratio[1])))
		return mim_seterr("ratio (%g, %g): want 0 < lo <= hi", a->ratio[0], a->ratio[1]);
	if (!(a->flip >= 0 && a->flip <= 1))
		return mim_seterr("flip probability %g out of range [0, 1]", a->flip);
	if (!(a->crop_ratio > 0 && a->crop_ratio <= 1))
		return mim_seterr("crop ratio %g out of range (0, 1]", a->crop_ratio);
	if (!(a->gap == 0 || (a->gap >= 1 && a->gap <= 1e6)))
		return mim_seterr("gap %g: want 0 (none) or >= 1", a->gap);
	if (a->shrink_max != 1 && a->shrink_max != 2 && a->shrink_max != 4 && a->shrink_max != 8)
		return mim_seterr("shrink maximum %d: want 1, 2, 4 or 8", a->shrink_max);
	if (!(a->shrink_min == 0 || (a->shrink_min >= 1 && a->shrink_min <= 1e6)))
		return mim_seterr("shrink minimum %g: want 0 (off) or >= 1", a->shrink_min);
	if (a->mode == MIM_MODE_PADCROP && (a->pad < 0 || a->pad >= a->size))
		return mim_seterr("padding %d: want 0 <= padding < size %d", a->pad, a->size);
	if (!(a->reprob >= 0 && a->reprob <= 1))
		return mim_seterr("erasing probability %g out of range [0, 1]", a->reprob);
	if (a->ra.n < 0 || a->ra.n > MIM_RA_MAXN || a->ra.m < 0 || a->ra.m > 10 ||
	    !(a->ra.mstd >= 0 && a->ra.mstd <= 100))
		return mim_seterr("RandAugment n %d, m %d, mstd %g: want n 0..%d, m 0..10, "
		    "mstd 0..100", a->ra.n, a->ra.m, a->ra.mstd, MIM_RA_MAXN);
	if (a->max_pixels < 1)
		return mim_seterr("pixel limit %lld: want at least 1", (long long)a->max_pixels);
	if (a->force && (a->box.w < 1 || a->box.h < 1 || a->box.x < 0 || a->box.y < 0))
		return mim_seterr("box %d,%d,%d,%d: want x,y >= 0 and w,h >= 1",
		    a->box.x, a->box.y, a->box.w, a->box.h);
	return 0;
}

/* Python's round(): to nearest, ties to even (rint in the default mode). */
static int
pyround(double v)
{
	return (int)rint(v);
}

void
mim_rrc_box(struct mim_box *b, int W, int H, const double scale[2],
    const double ratio[2], struct mim_drng *rng)
{
	double area = (double)W * H;
	double lr0 = log(ratio[0]), lr1 = log(ratio[1]);

	for (int t = 0; t < 10; t++) {
		double target = area * (scale[0] + (scale[1] - scale[0]) * mim_drng_double(rng));
		double aspect = exp(lr0 + (lr1 - lr0) * mim_drng_double(rng));
		int w = pyround(sqrt(target * aspect));
		int h = pyround(sqrt(target / aspect));
		if (w > 0 && w <= W && h > 0 && h <= H) {
			b->y = (int)mim_drng_below(rng, (uint64_t)(H - h + 1));
			b->x = (int)mim_drng_below(rng, (uint64_t)(W - w + 1));
			b->w = w;
			b->h = h;
			return;
		}
	}
	/* fallback: the centre crop of the ratio range nearest the image's */
	double in_ratio = (double)W / H;
	int w = W, h = H;
	if (in_ratio < ratio[0])
		h = pyround(w / ratio[0]);
	else if (in_ratio > ratio[1])
		w = pyround(h * ratio[1]);
	b->w = w;
	b->h = h;
	b->y = (H - h) / 2;
	b->x = (W - w) / 2;
}

int
mim_random_erase(float *x, int C, int H, int W, double p, struct mim_drng *rng,
    struct mim_box *b)
{
	/* timm: if random.random() > probability: return */
	if (mim_drng_double(rng) > p)
		return 0;
	double area = (double)H * W, la0 = log(0.3), la1 = log(1 / 0.3);
	for (int t = 0; t < 10; t++) {
		double target = area * (0.02 + (1.0 / 3 - 0.02) * mim_drng_double(rng));
		double aspect = exp(la0 + (la1 - la0) * mim_drng_double(rng));
		int h = pyround(sqrt(target * aspect)), w = pyround(sqrt(target / aspect));
		if (w >= W || h >= H)
			continue;
		int top = (int)mim_drng_below(rng, (uint64_t)(H - h + 1));
		int left = (int)mim_drng_below(rng, (uint64_t)(W - w + 1));
		/* the box's C*h*w pixels, N(0,1) by Box-Muller in pairs */
		size_t n = (size_t)C * h * w;
		for (size_t k = 0; k < n; k += 2) {
			double rad = sqrt(-2 * log(1 - mim_drng_double(rng)));
			double th = 2 * M_PI * mim_drng_double(rng);
			for (size_t q = k; q < k + 2 && q < n; q++) {
				size_t c = q / ((size_t)h * w), r = q / w % h, col = q % w;
				x[(c * H + top + r) * W + left + col] =
				    (float)(q == k ? rad * cos(th) : rad * sin(th));
			}
		}
		*b = (struct mim_box){left, top, w, h, 0};
		return 1;
	}
	return 0;
}

/* ---- libvips ----------------------------------------------------------------- */

static pthread_once_t vips_once = PTHREAD_ONCE_INIT;
static int vips_rc = -1;
static pthread_mutex_t vips_errlock = PTHREAD_MUTEX_INITIALIZER;

static void
quiet(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer data)
{
	(void)domain, (void)level, (void)msg, (void)data;
}

static void
vips_start(void)
{
	if (vips_init("mim"))
		return;
	vips_concurrency_set(1);
	vips_cache_set_max(0);
	vips_cache_set_max_mem(0);
	vips_cache_set_max_files(0);
	g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE |
	    G_LOG_LEVEL_INFO | G_LOG_LEVEL_DEBUG, quiet, NULL);
	vips_rc = 0;
}

int
mim_data_init(void)
{
	pthread_once(&vips_once, vips_start);
	if (vips_rc)
		return mim_seterr("libvips: cannot initialise");
	return 0;
}

void
mim_data_thread_done(void)
{
	vips_thread_shutdown();
}

/* Take libvips' (process-wide) error buffer as our error: "what: msg". */
static int
vipserr(const char *what)
{
	char msg[512];

	pthread_mutex_lock(&vips_errlock);
	snprintf(msg, sizeof msg, "%s", vips_error_buffer());
	vips_error_clear();
	pthread_mutex_unlock(&vips_errlock);
	for (char *p = msg; *p; p++)
		if (*p == '\n')
			*p = p[1] ? ' ' : '\0';
	return mim_seterr("%s%s%s", what, *msg ? ": " : "", msg);
}

/* The loaders we accept, by the class name libvips' sniffer gives. Anything else
 * (SVG, PDF, ImageMagick, ...) is refused: those are large attack surfaces
 * and not images a PIL dataset would read either. */
static const char *
format_of(const char *loader)
{
	static const char *const tab[][2] = {
		{"VipsForeignLoadJpegSource", "jpeg"},
		{"VipsForeignLoadPngSource", "png"},
		{"VipsForeignLoadWebpSource", "webp"},
		{"VipsForeignLoadNsgifSource", "gif"},
		{"VipsForeignLoadTiffSource", "tiff"},
		{"VipsForeignLoadPpmSource", "ppm"},
	};
	for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
		if (!strcmp(loader, tab[i][0]))
			return tab[i][1];
	return NULL;
}

/* Open buf lazily (header only until pixels are asked for). */
static VipsImage *
open_image(const void *buf, size_t n, int shrink)
{
	VipsSource *src = vips_source_new_from_memory(buf, n);
	VipsImage *im;

	if (!src)
		return NULL;
	if (shrink > 1)
		im = vips_image_new_from_source(src, "", "access", VIPS_ACCESS_SEQUENTIAL,
		    "fail_on", VIPS_FAIL_ON_ERROR, "shrink", shrink, NULL);
	else
		im = vips_image_new_from_source(src, "", "access", VIPS_ACCESS_SEQUENTIAL,
		    "fail_on", VIPS_FAIL_ON_ERROR, NULL);
	g_object_unref(src);
	return im;
}

/* Replace *im by op's output, dropping the reference to the input. */
#define STEP(call) do { VipsImage *o_ = NULL; \
	if (call) { g_object_unref(im); return -1; } \
	g_object_unref(im); im = o_; } while (0)

/* 8-bit grey (1 band) or sRGB (3 bands), as PIL's convert('RGB') sees it. */
static int
to_8bit(VipsImage *in, VipsImage **out)
{
	VipsImage *im = in;
	VipsInterpretation ip = vips_image_get_interpretation(im);

	g_object_ref(im);
	if (im->Coding != VIPS_CODING_NONE)
		STEP(vips_image_decode(im, &o_));
	if (ip == VIPS_INTERPRETATION_CMYK && im->Bands >= 4)
		STEP(vips_colourspace(im, &o_, VIPS_INTERPRETATION_sRGB, NULL));
	if (im->BandFmt != VIPS_FORMAT_UCHAR) {
		if (im->Bands >= 3)
			STEP(vips_colourspace(im, &o_, VIPS_INTERPRETATION_sRGB, NULL));
		else
			STEP(vips_colourspace(im, &o_, VIPS_INTERPRETATION_B_W, NULL));
		if (im->BandFmt != VIPS_FORMAT_UCHAR)
			STEP(vips_cast_uchar(im, &o_, NULL));
	}
	if (im->Bands >= 3 && im->Bands != 3)
		STEP(vips_extract_band(im, &o_, 0, "n", 3, NULL));
	else if (im->Bands == 2)
		STEP(vips_extract_band(im, &o_, 0, NULL));
	*out = im;
	return 0;
}

/* Refuse a W x H image over the pixel limit. Both paths ask this of the
 * header alone, before a decoder sizes anything from the claim: a 74-byte
 * PNG saying 999999 x 999999 otherwise costs tens of GB of row buffers
 * and line caches. */
static int
too_large(const struct mim_aug *a, int W, int H)
{
	if (W < 1 || H < 1)
		return mim_seterr("bad image: size %dx%d", W, H);
	if ((int64_t)W * H > a->max_pixels)
		return mim_seterr("image of %dx%d pixels is over the limit of %lld pixels",
		    W, H, (long long)a->max_pixels);
	return 0;
}

/* Steps 1-3 of the geometry (see the top of the file). */
struct plan {
	struct mim_box box;	/* source box; box.flip */
	int rw, rh;		/* box resized to */
	int cx, cy, ow, oh;	/* crop of the resized box */
	int S, px, py;		/* padcrop: the crop goes to (px,py) of a black
				 * S x S canvas (S 0: no canvas) */
	struct mim_box win;	/* padcrop: the window, in source pixels */
};

static int
make_plan(struct plan *p, const struct mim_aug *a, int W, int H, struct mim_drng *rng)
{
	int S = a->size;

	memset(p, 0, sizeof *p);
	if (a->mode == MIM_MODE_TRAIN) {
		if (a->force) {
			p->box = a->box;
			if ((long)p->box.x + p->box.w > W || (long)p->box.y + p->box.h > H)
				return mim_seterr("box %d,%d,%d,%d is outside the %dx%d image",
				    p->box.x, p->box.y, p->box.w, p->box.h, W, H);
		} else {
			mim_rrc_box(&p->box, W, H, a->scale, a->ratio, rng);
			p->box.flip = mim_drng_double(rng) < a->flip;
		}
		p->rw = p->rh = p->ow = p->oh = S;
		return 0;
	}
	if (a->mode == MIM_MODE_PADCROP) {
		/* torchvision RandomCrop.get_params on the padded image: i, j
		 * uniform in [0, H + 2pad - S], [0, W + 2pad - S] */
		int P = a->pad;
		if (W + 2 * P < S || H + 2 * P < S)
			return mim_seterr("image %dx%d padded by %d is smaller than the crop %dx%d",
			    W, H, P, S, S);
		int i = (int)mim_drng_below(rng, (uint64_t)(H + 2 * P - S + 1));
		int j = (int)mim_drng_below(rng, (uint64_t)(W + 2 * P - S + 1));
		int x0 = j - P, y0 = i - P;
		int bx0 = x0 > 0 ? x0 : 0, by0 = y0 > 0 ? y0 : 0;
		int bx1 = x0 + S < W ? x0 + S : W, by1 = y0 + S < H ? y0 + S : H;
		p->box = (struct mim_box){bx0, by0, bx1 - bx0, by1 - by0, 0};
		p->box.flip = mim_drng_double(rng) < a->flip;
		p->win = (struct mim_box){x0, y0, S, S, p->box.flip};
		p->rw = p->ow = p->box.w;
		p->rh = p->oh = p->box.h;
		p->S = S;
		p->px = bx0 - x0;
		p->py = by0 - y0;
		return 0;
	}
	/* eval and resize: torchvision Resize(int): the shorter side to `n`,
	 * the longer one to int(n * long / short) */
	int n = a->mode == MIM_MODE_EVAL ? (int)((1.0 / a->crop_ratio) * S) : S;
	int shortside = W <= H ? W : H, longside = W <= H ? H : W;
	int nl = (int)((double)n * longside / shortside);
	p->box = (struct mim_box){0, 0, W, H, 0};
	p->rw = W <= H ? n : nl;
	p->rh = W <= H ? nl : n;
	if (p->rw < 1 || p->rh < 1)
		return mim_seterr("image %dx%d is too thin to resize", W, H);
	if (a->mode == MIM_MODE_EVAL) {
		p->ow = p->oh = S;
		p->cx = pyround((p->rw - S) / 2.0);
		p->cy = pyround((p->rh - S) / 2.0);
	} else {
		p->ow = p->rw;
		p->oh = p->rh;
	}
	return 0;
}

/* Output of the resampler into out (ow x oh x c). */
static int
rs_out(struct mim_rs *rs, const struct plan *p, int c, struct mim_img *out)
{
	out->w = p->ow;
	out->h = p->oh;
	out->c = c;
	if (!(out->px = malloc((size_t)p->ow * p->oh * c)))
		return -1;
	if (mim_rs_finish(rs, out->px)) {
		free(out->px);
		out->px = NULL;
		return -1;
	}
	return 0;
}

/* The whole pixels under the fractional box fb of a w x h image:
 * x0 y0 x1 y1, the box's corners floored and ceiled, clipped to the image.
 * Both decoding paths cut these out and resample the box within them. */
static void
pixels_under(const double fb[4], int w, int h, int cut[4])
{
	cut[0] = (int)floor(fb[0]);
	cut[1] = (int)floor(fb[1]);
	cut[2] = (int)ceil(fb[2]) < w ? (int)ceil(fb[2]) : w;
	cut[3] = (int)ceil(fb[3]) < h ? (int)ceil(fb[3]) : h;
}

/* The pixels under the box, from the (possibly shrunk) image, through the
 * resampler of the plan, a strip of rows at a time: the box is never held
 * in memory whole, and libvips decodes no further down than needed. */
static int
stream(VipsImage *im, const double fb[4], int kh, int kv, const struct plan *p,
    enum mim_interp interp, struct mim_img *out)
{
	VipsImage *t;
	VipsRegion *reg;
	struct mim_rs *rs;
	double box[4];
	int cut[4], first, end, rc = -1;

	pixels_under(fb, im->Xsize, im->Ysize, cut);
	int x0 = cut[0], y0 = cut[1], x1 = cut[2], y1 = cut[3];
	g_object_ref(im);
	if (x0 || y0 || x1 != im->Xsize || y1 != im->Ysize)
		STEP(vips_extract_area(im, &o_, x0, y0, x1 - x0, y1 - y0, NULL));
	if (to_8bit(im, &t)) {
		g_object_unref(im);
		return -1;
	}
	g_object_unref(im);
	im = t;
	if (kh > 1 || kv > 1)
		STEP(vips_shrink(im, &o_, (double)kh, (double)kv, "ceil", TRUE, NULL));
	box[0] = (fb[0] - x0) / kh;
	box[1] = (fb[1] - y0) / kv;
	box[2] = (fb[2] - x0) / kh;
	box[3] = (fb[3] - y0) / kv;
	box[2] = box[2] > im->Xsize ? im->Xsize : box[2];
	box[3] = box[3] > im->Ysize ? im->Ysize : box[3];
	if (im->Bands != 1 && im->Bands != 3) {
		g_object_unref(im);
		vips_error("mim", "%d bands after conversion", im->Bands);
		return -1;
	}
	if (!(rs = mim_rs_new(p->cx, p->cy, p->ow, p->oh, p->rw, p->rh, im->Xsize, im->Ysize,
	    im->Bands, box, interp))) {
		g_object_unref(im);
		vips_error("mim", "%s", mim_errmsg());
		return -1;
	}
	mim_rs_range(rs, &first, &end);
	if (!(reg = vips_region_new(im)))
		goto out;
	for (int y = first; y < end; y += 32) {
		VipsRect r = {0, y, im->Xsize, end - y < 32 ? end - y : 32};
		if (vips_region_prepare(reg, &r))
			goto out;
		for (int k = 0; k < r.height; k++)
			mim_rs_row(rs, y + k, (const uint8_t *)VIPS_REGION_ADDR(reg, 0, y + k));
	}
	if (rs_out(rs, p, im->Bands, out)) {
		vips_error("mim", "out of memory");
		goto out;
	}
	rc = 0;
out:
	if (reg)
		g_object_unref(reg);
	mim_rs_free(rs);
	g_object_unref(im);
	return rc;
}

/* The JPEG shrink-on-load factor: the largest s <= shrink_max leaving the
 * box at least shrink_min times the output on both axes. */
static int
jpeg_shrink(const struct mim_aug *a, const struct plan *p)
{
	if (a->shrink_min > 0)
		for (int s = a->shrink_max; s > 1; s /= 2)
			if ((double)p->box.w / s >= a->shrink_min * p->rw &&
			    (double)p->box.h / s >= a->shrink_min * p->rh)
				return s;
	return 1;
}

/* The box of the plan at 1/s scale, fractional, inside the sw x sh image
 * libjpeg makes of it (ceil(W/s) x ceil(H/s)). */
static void
scaled_box(double fb[4], const struct plan *p, int s, int sw, int sh)
{
	fb[0] = (double)p->box.x / s;
	fb[1] = (double)p->box.y / s;
	fb[2] = ((double)p->box.x + p->box.w) / s;
	fb[3] = ((double)p->box.y + p->box.h) / s;
	fb[2] = fb[2] > sw ? sw : fb[2];
	fb[3] = fb[3] > sh ? sh : fb[3];
}

/* padcrop's canvas, step 3's flip, and what was done, for --print-box and
 * the tests. 0, or -1 (out of memory). */
static int
finish(struct mim_img *out, const struct plan *p, int W, int H, int shrink,
    const char *fmt, struct mim_geom *g)
{
	int c = out->c;

	if (p->S) {	/* the crop onto a black S x S canvas at (px,py) */
		uint8_t *cv = calloc((size_t)p->S * p->S, (size_t)c);
		if (!cv) {
			free(out->px);
			out->px = NULL;
			return mim_seterr("out of memory");
		}
		for (int y = 0; y < out->h; y++)
			memcpy(cv + ((size_t)(p->py + y) * p->S + p->px) * c,
			    out->px + (size_t)y * out->w * c, (size_t)out->w * c);
		free(out->px);
		out->px = cv;
		out->w = out->h = p->S;
	}
	if (p->box.flip) {
		for (int y = 0; y < out->h; y++) {
			uint8_t *r = out->px + (size_t)y * out->w * c;
			for (int x = 0; x < out->w / 2; x++)
				for (int k = 0; k < c; k++) {
					uint8_t t = r[x * c + k];
					r[x * c + k] = r[(out->w - 1 - x) * c + k];
					r[(out->w - 1 - x) * c + k] = t;
				}
		}
	}
	if (g) {
		g->W = W;
		g->H = H;
		g->box = p->S ? p->win : p->box;
		g->shrink = shrink;
		g->format = fmt;
	}
	return 0;
}

struct jrows {
	struct mim_rs *rs;
	int y0;			/* the image's row 0 of the resampler */
};

static void
jpeg_row(void *arg, int y, const uint8_t *row)
{
	struct jrows *r = arg;

	mim_rs_row(r->rs, y - r->y0, row);
}

/* A JPEG through jpeg.c: only the rows and columns under the box are
 * reconstructed. 1: not an image for that path (a colour space jpeg.c
 * does not convert), nothing drawn from rng; the caller goes through
 * libvips instead. */
static int
run_jpeg(const void *buf, size_t n, const struct mim_aug *a, struct mim_drng *rng,
    struct mim_img *out, struct mim_geom *g)
{
	struct jpg *j;
	struct mim_rs *rs = NULL;
	struct plan p;
	double fb[4], box[4];
	int W, H, c, sw, sh, s, first, end, rc = -1;

	if (!(j = jpg_open(buf, n, &W, &H, &c)))
		return -1;
	if (too_large(a, W, H))
		goto out;
	if (!c) {
		jpg_close(j);
		return 1;
	}
	if (make_plan(&p, a, W, H, rng))
		goto out;
	s = jpeg_shrink(a, &p);
	if (jpg_scale(j, s, &sw, &sh))
		goto out;
	scaled_box(fb, &p, s, sw, sh);
	int cut[4];
	pixels_under(fb, sw, sh, cut);
	int x0 = cut[0], y0 = cut[1], x1 = cut[2], y1 = cut[3];
	box[0] = fb[0] - x0;
	box[1] = fb[1] - y0;
	box[2] = fb[2] - x0;
	box[3] = fb[3] - y0;
	if (!(rs = mim_rs_new(p.cx, p.cy, p.ow, p.oh, p.rw, p.rh, x1 - x0, y1 - y0, c, box,
	    a->interp)))
		goto out;
	mim_rs_range(rs, &first, &end);
	if (jpg_rows(j, x0, x1, y0 + first, y0 + end, jpeg_row, &(struct jrows){rs, y0}))
		goto out;
	if (rs_out(rs, &p, c, out)) {
		mim_seterr("out of memory");
		goto out;
	}
	rc = finish(out, &p, W, H, s, "jpeg", g);
out:
	mim_rs_free(rs);
	jpg_close(j);
	return rc;
}

static int
run(const void *buf, size_t n, const struct mim_aug *a, struct mim_drng *rng,
    struct mim_img *out, struct mim_geom *g)
{
	VipsSource *src;
	const char *loader, *fmt;
	VipsImage *im;
	struct plan p;
	int shrink = 1, kh = 1, kv = 1;

	if (jpg_is(buf, n)) {
		int rc = run_jpeg(buf, n, a, rng, out, g);
		if (rc <= 0)
			return rc;
	}
	if (!(src = vips_source_new_from_memory(buf, n)))
		return vipserr("cannot read image");
	loader = vips_foreign_find_load_source(src);
	g_object_unref(src);
	if (!loader) {
		vips_error_clear();
		return mim_seterr("not an image (unknown format)");
	}
	if (!(fmt = format_of(loader)))
		return mim_seterr("unsupported image format (%s)", loader);
	if (!(im = open_image(buf, n, 1)))
		return vipserr("bad image");
	int W = im->Xsize, H = im->Ysize;
	if (too_large(a, W, H) || make_plan(&p, a, W, H, rng)) {
		g_object_unref(im);
		return -1;
	}

	double fb[4];
	if (!strcmp(fmt, "jpeg"))
		shrink = jpeg_shrink(a, &p);
	if (shrink > 1) {
		g_object_unref(im);
		if (!(im = open_image(buf, n, shrink)))
			return vipserr("bad image");
		scaled_box(fb, &p, shrink, im->Xsize, im->Ysize);
	} else {
		scaled_box(fb, &p, 1, W, H);
		if (a->gap >= 1) {
			/* box pre-shrink for the rest of the downscale */
			kh = (int)floor((fb[2] - fb[0]) / p.rw / a->gap);
			kv = (int)floor((fb[3] - fb[1]) / p.rh / a->gap);
			kh = kh < 1 ? 1 : kh;
			kv = kv < 1 ? 1 : kv;
		}
	}

	int rc = stream(im, fb, kh, kv, &p, a->interp, out);
	g_object_unref(im);
	if (rc)
		return vipserr("bad image");
	return finish(out, &p, W, H, shrink > 1 ? shrink : (kh > kv ? kh : kv), fmt, g);
}

int
mim_image_transform(const void *buf, size_t n, const struct mim_aug *a,
    struct mim_drng *rng, struct mim_img *out, struct mim_geom *g)
{
	memset(out, 0, sizeof *out);
	if (g)
		memset(g, 0, sizeof *g);
	if (mim_data_init())
		return -1;
	if (n == 0)
		return mim_seterr("empty member");
	return run(buf, n, a, rng, out, g);
}

void
mim_image_normalise(float *out, const struct mim_img *im, const float mean[3],
    const float std[3])
{
	float lut[3][256];
	size_t hw = (size_t)im->w * im->h;

	/* the same float operations as ToTensor (x / 255) and Normalize
	 * ((x - mean) / std), once per byte value */
	for (int c = 0; c < 3; c++)
		for (int v = 0; v < 256; v++)
			lut[c][v] = ((float)v / 255.0f - mean[c]) / std[c];
	if (im->c == 1) {
		for (int c = 0; c < 3; c++)
			for (size_t i = 0; i < hw; i++)
				out[c * hw + i] = lut[c][im->px[i]];
		return;
	}
	for (size_t i = 0; i < hw; i++) {
		const uint8_t *p = im->px + 3 * i;
		out[i] = lut[0][p[0]];
		out[hw + i] = lut[1][p[1]];
		out[2 * hw + i] = lut[2][p[2]];
	}
}

int
mim_image_encode(const struct mim_img *im, const char *fmt, int quality,
    void **buf, size_t *n)
{
	VipsImage *v;
	void *b = NULL;
	size_t len = 0;
	int rc;

	*buf = NULL;
	*n = 0;
	if (mim_data_init())
		return -1;
	v = vips_image_new_from_memory(im->px, (size_t)im->w * im->h * im->c,
	    im->w, im->h, im->c, VIPS_FORMAT_UCHAR);
	if (!v)
		return vipserr("encode");
	if (!strcmp(fmt, "png"))
		rc = vips_pngsave_buffer(v, &b, &len, "strip", TRUE, NULL);
	else if (!strcmp(fmt, "jpg") || !strcmp(fmt, "jpeg"))
		rc = vips_jpegsave_buffer(v, &b, &len, "Q", quality, "strip", TRUE, NULL);
	else {
		g_object_unref(v);
		return mim_seterr("unknown output format '%s' (want png or jpg)", fmt);
	}
	g_object_unref(v);
	if (rc)
		return vipserr("encode");
	*buf = malloc(len ? len : 1);
	if (!*buf) {
		g_free(b);
		return mim_seterr("out of memory");
	}
	memcpy(*buf, b, len);
	g_free(b);
	*n = len;
	return 0;
}
