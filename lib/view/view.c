/* view.c -- reconstruction grids, mask tiles and loss curves.
 *
 * Tiles are built in plain RGB buffers; libvips is used only at the edges:
 * text rendering (vips_text, pango), PNG encoding and SVG rasterising. */
#include <errno.h>
#include <stdarg.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "mim/stream.h"
#include "mim/view.h"

const char *const mim_view_col_name[MIM_NCOL] = {
	"original", "masked", "reconstruction", "prediction",
};

static int vips_ready;

static int
vips_start(void)
{
	if (!vips_ready) {
		if (VIPS_INIT("mim"))
			return mim_seterr("libvips: %s", vips_error_buffer());
		vips_cache_set_max(0);
		vips_ready = 1;
	}
	return 0;
}

static int
vips_fail(const char *what)
{
	mim_seterr("%s: %s", what, vips_error_buffer());
	vips_error_clear();
	/* libvips messages end with a newline */
	char *m = (char *)mim_errmsg();
	size_t n = strlen(m);
	while (n && m[n - 1] == '\n')
		m[--n] = 0;
	return -1;
}

struct mim_rgb *
mim_rgb_new(int w, int h, uint8_t grey)
{
	struct mim_rgb *p = mim_calloc(1, sizeof *p);

	if (!p)
		return NULL;
	p->w = w;
	p->h = h;
	p->px = mim_malloc((size_t)w * h * 3);
	if (!p->px) {
		free(p);
		return NULL;
	}
	memset(p->px, grey, (size_t)w * h * 3);
	return p;
}

void
mim_rgb_free(struct mim_rgb *p)
{
	if (p) {
		free(p->px);
		free(p);
	}
}

void
mim_rgb_paste(struct mim_rgb *dst, const struct mim_rgb *src, int x, int y)
{
	for (int r = 0; r < src->h; r++) {
		int yy = y + r;
		if (yy < 0 || yy >= dst->h)
			continue;
		for (int c = 0; c < src->w; c++) {
			int xx = x + c;
			if (xx < 0 || xx >= dst->w)
				continue;
			memcpy(dst->px + ((size_t)yy * dst->w + xx) * 3,
			    src->px + ((size_t)r * src->w + c) * 3, 3);
		}
	}
}

int
mim_rgb_text(struct mim_rgb *dst, const char *text, int x, int y, int px)
{
	VipsImage *t = NULL;
	char font[32];

	if (vips_start())
		return -1;
	snprintf(font, sizeof font, "sans %d", px * 3 / 4 > 4 ? px * 3 / 4 : 4);
	if (vips_text(&t, text, "font", font, "dpi", 96, NULL))
		return vips_fail("text");
	size_t n;
	uint8_t *a = vips_image_write_to_memory(t, &n);
	if (!a) {
		g_object_unref(t);
		return vips_fail("text");
	}
	int w = vips_image_get_width(t), h = vips_image_get_height(t);
	for (int r = 0; r < h; r++)
		for (int c = 0; c < w; c++) {
			int yy = y + r, xx = x + c;
			if (yy < 0 || yy >= dst->h || xx < 0 || xx >= dst->w)
				continue;
			uint8_t *d = dst->px + ((size_t)yy * dst->w + xx) * 3;
			unsigned al = a[(size_t)r * w + c];
			for (int k = 0; k < 3; k++)
				d[k] = (uint8_t)((d[k] * (255 - al) + 127) / 255);
		}
	g_free(a);
	g_object_unref(t);
	return 0;
}

int
mim_rgb_save_png(const struct mim_rgb *p, const char *path)
{
	if (vips_start())
		return -1;
	VipsImage *im = vips_image_new_from_memory(p->px, (size_t)p->w * p->h * 3,
	    p->w, p->h, 3, VIPS_FORMAT_UCHAR);
	if (!im)
		return vips_fail(path);
	int rc = vips_pngsave(im, path, NULL);
	g_object_unref(im);
	if (rc)
		return vips_fail(path);
	return 0;
}

static uint8_t
to_u8(double v)
{
	v = v * 255.0 + 0.5;
	return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

struct mim_rgb *
mim_view_tile(enum mim_view_col col, int H, int W, int p, const float *img,
    const uint8_t *mask, const float *pred, const double mean[3],
    const double std[3], int scale)
{
	struct mim_rgb *t = mim_rgb_new(W * scale, H * scale, 0);
	size_t hw = (size_t)H * W;

	if (!t)
		return NULL;
	for (int y = 0; y < H; y++)
		for (int x = 0; x < W; x++) {
			int m = mask ? mask[(size_t)(y / p) * (W / p) + x / p] != 0 : 0;
			uint8_t rgb[3];
			for (int c = 0; c < 3; c++) {
				size_t i = c * hw + (size_t)y * W + x;
				double v;
				switch (col) {
				case MIM_COL_ORIGINAL: v = img[i]; break;
				case MIM_COL_MASKED: v = m ? NAN : img[i]; break;
				case MIM_COL_RECON: v = m ? pred[i] : img[i]; break;
				default: v = pred[i]; break;
				}
				rgb[c] = isnan(v) ? 128 : to_u8(v * std[c] + mean[c]);
			}
			for (int dy = 0; dy < scale; dy++)
				for (int dx = 0; dx < scale; dx++)
					memcpy(t->px + ((size_t)(y * scale + dy) * t->w + x * scale + dx) * 3, rgb, 3);
		}
	return t;
}

struct mim_rgb *
mim_view_mask(int h, int w, const uint8_t *mask, int scale)
{
	struct mim_rgb *t = mim_rgb_new(w * scale, h * scale, 0);

	if (!t)
		return NULL;
	for (int y = 0; y < h * scale; y++)
		for (int x = 0; x < w * scale; x++)
			if (mask[(size_t)(y / scale) * w + x / scale])
				memset(t->px + ((size_t)y * t->w + x) * 3, 255, 3);
	return t;
}

/* ---- loss curve -------------------------------------------------------- */

struct buf {
	char *s;
	size_t n, cap;
	int err;
};

static void __attribute__((format(printf, 2, 3)))
bprintf(struct buf *b, const char *fmt, ...)
{
	va_list ap;

	for (;;) {
		va_start(ap, fmt);
		int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
		va_end(ap);
		if (k < 0) {
			b->err = 1;
			return;
		}
		if (b->s && b->n + (size_t)k < b->cap) {
			b->n += (size_t)k;
			return;
		}
		size_t cap = (b->cap + (size_t)k + 1) * 2;
		char *s = realloc(b->s, cap);
		if (!s) {
			b->err = 1;
			return;
		}
		b->s = s;
		b->cap = cap;
	}
}

/* A "nice" tick step for a range. */
static double
nice_step(double range, int want)
{
	double raw = range / want, mag = pow(10, floor(log10(raw)));
	double f = raw / mag;
	return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

/* A series of points of the curve. */
struct series {
	double *x, *y;
	size_t n, cap;
};

static int
series_add(struct series *s, double x, double y)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 256;
		double *a = realloc(s->x, cap * sizeof *a);
		if (a)
			s->x = a;
		double *b = a ? realloc(s->y, cap * sizeof *b) : NULL;
		if (!b)
			return mim_seterr("out of memory");
		s->y = b;
		s->cap = cap;
	}
	s->x[s->n] = x;
	s->y[s->n] = y;
	s->n++;
	return 0;
}

/* The training steps ({"step","loss",...}) and the validation passes
 * ({"step","val_loss",...}) of a log. 0, or -1 with the error set. A last
 * line without its newline is a line still being written (mim-step
 * appends while a run goes on): it is left out, not an error. */
static int
read_log(const char *log_path, struct series *tr, struct series *va)
{
	FILE *fp = fopen(log_path, "r");
	size_t lcap = 0;
	char *line = NULL;
	ssize_t len;
	long lineno = 0;
	int rc = 0;

	if (!fp)
		return mim_seterr("%s: %s", log_path, strerror(errno));
	while (!rc && (len = getline(&line, &lcap, fp)) > 0 && line[len - 1] == '\n') {
		json_error_t je;
		lineno++;
		if (line[strspn(line, " \t\r\n")] == 0)
			continue;
		json_t *o = json_loads(line, 0, &je);
		json_t *s = o ? json_object_get(o, "step") : NULL;
		json_t *l = o ? json_object_get(o, "loss") : NULL;
		json_t *v = o ? json_object_get(o, "val_loss") : NULL;
		if (json_is_number(s) && json_is_number(l))
			rc = series_add(tr, json_number_value(s), json_number_value(l));
		else if (json_is_number(s) && json_is_number(v))
			rc = series_add(va, json_number_value(s), json_number_value(v));
		else
			rc = mim_seterr("%s: line %ld: not a JSON object with numbers \"step\" and "
			    "\"loss\" (or \"val_loss\")", log_path, lineno);
		json_decref(o);
	}
	if (!rc && ferror(fp))
		rc = mim_seterr("%s: %s", log_path, strerror(errno));
	free(line);
	fclose(fp);
	if (!rc && tr->n == 0)
		rc = mim_seterr("%s: no steps in the log", log_path);
	return rc;
}

char *
mim_view_curve_svg(const char *log_path, const char *title)
{
	struct series tr = {0}, va = {0};

	if (read_log(log_path, &tr, &va) < 0) {
		free(tr.x);
		free(tr.y);
		free(va.x);
		free(va.y);
		return NULL;
	}
	double *st = tr.x, *lo = tr.y;
	size_t n = tr.n;

	double x0 = st[0], x1 = st[0], y0 = INFINITY, y1 = -INFINITY;
	for (size_t i = 0; i < n; i++) {
		x0 = fmin(x0, st[i]);
		x1 = fmax(x1, st[i]);
		if (isfinite(lo[i])) {
			y0 = fmin(y0, lo[i]);
			y1 = fmax(y1, lo[i]);
		}
	}
	for (size_t i = 0; i < va.n; i++) {
		x0 = fmin(x0, va.x[i]);
		x1 = fmax(x1, va.x[i]);
		if (isfinite(va.y[i])) {
			y0 = fmin(y0, va.y[i]);
			y1 = fmax(y1, va.y[i]);
		}
	}
	if (!isfinite(y0))
		y0 = 0, y1 = 1;
	if (x1 <= x0)
		x1 = x0 + 1;
	double ys = nice_step(y1 - y0 > 0 ? y1 - y0 : fabs(y1) + 1e-3, 5);
	y0 = floor(y0 / ys) * ys;
	y1 = ceil(y1 / ys) * ys;
	if (y1 <= y0)
		y1 = y0 + ys;
	double xs = nice_step(x1 - x0, 6);

	const int W = 720, H = 400, L = 70, R = 20, T = 40, B = 50;
	double pw = W - L - R, ph = H - T - B;
#define PX(x) (L + ((x) - x0) / (x1 - x0) * pw)
#define PY(y) (T + (1 - ((y) - y0) / (y1 - y0)) * ph)
	struct buf b = {0};
	bprintf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
	    "font-family=\"DejaVu Sans, sans-serif\" font-size=\"12\">\n", W, H);
	bprintf(&b, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
	bprintf(&b, "<text x=\"%d\" y=\"24\" font-size=\"15\">", L);
	for (const char *c = title; *c; c++)	/* escape XML */
		switch (*c) {
		case '<': bprintf(&b, "&lt;"); break;
		case '>': bprintf(&b, "&gt;"); break;
		case '&': bprintf(&b, "&amp;"); break;
		default: bprintf(&b, "%c", *c);
		}
	bprintf(&b, "</text>\n");
	for (double y = y0; y <= y1 + ys / 2; y += ys)
		bprintf(&b, "<line x1=\"%d\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
		    "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>\n",
		    L, L + pw, PY(y), PY(y), L - 6, PY(y) + 4, y);
	for (double x = ceil(x0 / xs) * xs; x <= x1 + xs / 1e6; x += xs)
		bprintf(&b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%.1f\" stroke=\"#eee\"/>"
		    "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.6g</text>\n",
		    PX(x), PX(x), T, T + ph, PX(x), T + ph + 18, x);
	bprintf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#444\"/>\n",
	    L, T, pw, ph);
	bprintf(&b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">step</text>\n", L + pw / 2, H - 10);
	bprintf(&b, "<text transform=\"translate(16,%.1f) rotate(-90)\" text-anchor=\"middle\">loss</text>\n",
	    T + ph / 2);
	/* raw loss, light; exponential moving average, dark */
	bprintf(&b, "<polyline fill=\"none\" stroke=\"#9ecae1\" stroke-width=\"1\" points=\"");
	for (size_t i = 0; i < n; i++)
		if (isfinite(lo[i]))
			bprintf(&b, "%.1f,%.1f ", PX(st[i]), PY(lo[i]));
	bprintf(&b, "\"/>\n<polyline fill=\"none\" stroke=\"#08519c\" stroke-width=\"2\" points=\"");
	double ema = NAN, a = n > 50 ? 0.05 : 0.3;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(lo[i]))
			continue;
		ema = isnan(ema) ? lo[i] : (1 - a) * ema + a * lo[i];
		bprintf(&b, "%.1f,%.1f ", PX(st[i]), PY(ema));
	}
	bprintf(&b, "\"/>\n<text x=\"%.1f\" y=\"%d\" text-anchor=\"end\" fill=\"#08519c\">"
	    "first %.4g, last %.4g, %zu steps</text>\n", L + pw - 6, T + 16, lo[0], lo[n - 1], n);
	if (va.n) {	/* the held-out loss, its points marked; a legend */
		const char *vc = "#d94801";
		bprintf(&b, "<polyline class=\"val_loss\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" "
		    "points=\"", vc);
		for (size_t i = 0; i < va.n; i++)
			if (isfinite(va.y[i]))
				bprintf(&b, "%.1f,%.1f ", PX(va.x[i]), PY(va.y[i]));
		bprintf(&b, "\"/>\n");
		for (size_t i = 0; i < va.n; i++)
			if (isfinite(va.y[i]))
				bprintf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
				    PX(va.x[i]), PY(va.y[i]), vc);
		bprintf(&b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#08519c\" "
		    "stroke-width=\"2\"/><text x=\"%.1f\" y=\"%d\">train loss</text>\n"
		    "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/>"
		    "<text x=\"%.1f\" y=\"%d\">val loss (last %.4g, %zu passes)</text>\n",
		    L + 10.0, L + 30.0, T + 16, T + 16, L + 36.0, T + 20,
		    L + 10.0, L + 30.0, T + 34, T + 34, vc, L + 36.0, T + 38, va.y[va.n - 1], va.n);
	}
	bprintf(&b, "</svg>\n");
#undef PX
#undef PY
	free(st);
	free(lo);
	free(va.x);
	free(va.y);
	if (b.err) {
		free(b.s);
		mim_seterr("out of memory");
		return NULL;
	}
	return b.s;
}

int
mim_svg_to_png(const char *svg, const char *path)
{
	VipsImage *im = NULL;

	if (vips_start())
		return -1;
	if (vips_svgload_buffer((void *)svg, strlen(svg), &im, NULL))
		return vips_fail("svg");
	int rc = vips_pngsave(im, path, NULL);
	g_object_unref(im);
	return rc ? vips_fail(path) : 0;
}

/* ---- predictions of any target and resolution ------------------------------ */

int
mim_view_pred(const struct mim_target *t, int B, int H, int W, const float *img,
    const float *pred, float *out)
{
	int d = t->div > 1 ? t->div : 1, h = H / d, w = W / d, asis = 0;
	size_t n = (size_t)B * 3 * h * w;
	float *x = malloc(n * sizeof *x), *pooled = NULL;

	if (!x)
		return mim_seterr("out of memory");
	if (t->kind != MIM_TARGET_PIXEL) {
		mim_target_expect(t, B, h, w, pred, x);
	} else if (t->norm_pix && img) {
		/* the target's own window statistics, from the image at 1/d */
		if (!(pooled = malloc(n * sizeof *pooled))) {
			free(x);
			return mim_seterr("out of memory");
		}
		mim_target_pool(B, H, W, d, img, pooled);
		mim_target_denorm(B, h, w, t->norm_pix, pooled, pred, x);
	} else {
		memcpy(x, pred, n * sizeof *x);
		asis = t->norm_pix != 0;
	}
	/* nearest up to (H,W) */
	for (size_t bc = 0; bc < (size_t)B * 3; bc++)
		for (int y = 0; y < H; y++)
			for (int xx = 0; xx < W; xx++)
				out[(bc * H + y) * W + xx] = x[(bc * h + y / d) * w + xx / d];
	free(x);
	free(pooled);
	return asis;
}
