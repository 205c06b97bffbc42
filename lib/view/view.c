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
#include "svg.h"

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

/* ---- loss curves ------------------------------------------------------- */

void
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

void
bxml(struct buf *b, const char *text)
{
	for (const char *c = text; *c; c++)
		switch (*c) {
		case '<': bprintf(b, "&lt;"); break;
		case '>': bprintf(b, "&gt;"); break;
		case '&': bprintf(b, "&amp;"); break;
		case '"': bprintf(b, "&quot;"); break;
		default: bprintf(b, "%c", *c);
		}
}

char *
bdone(struct buf *b)
{
	if (b->err) {
		free(b->s);
		mim_seterr("out of memory");
		return NULL;
	}
	return b->s;
}

/* A "nice" tick step for a range. */
static double
nice_step(double range, int want)
{
	double raw = range / want, mag = pow(10, floor(log10(raw)));
	double f = raw / mag;
	return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

/* A series of points of a curve. */
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

static void
series_free(struct series *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(s[i].x);
		free(s[i].y);
	}
}

/* One plot: its data ranges and where it sits in the picture. */
struct panel {
	double x0, x1, y0, y1;	/* data ranges (x0 > x1: none yet) */
	double L, T, pw, ph;	/* left, top, width, height in pixels */
};

static double
px(const struct panel *p, double x)
{
	return p->L + (x - p->x0) / (p->x1 - p->x0) * p->pw;
}

static double
py(const struct panel *p, double y)
{
	return p->T + (1 - (y - p->y0) / (p->y1 - p->y0)) * p->ph;
}

/* widen p's ranges to the finite points of s */
static void
panel_fit(struct panel *p, const struct series *s)
{
	for (size_t i = 0; i < s->n; i++) {
		p->x0 = fmin(p->x0, s->x[i]);
		p->x1 = fmax(p->x1, s->x[i]);
		if (isfinite(s->y[i])) {
			p->y0 = fmin(p->y0, s->y[i]);
			p->y1 = fmax(p->y1, s->y[i]);
		}
	}
}

/* round p's ranges out to nice ticks and draw the grid, the tick labels,
 * the frame and the axis names */
static void
panel_axes(struct buf *b, struct panel *p, const char *xname, const char *yname)
{
	if (!isfinite(p->y0))
		p->y0 = 0, p->y1 = 1;
	if (p->x1 <= p->x0)
		p->x1 = p->x0 + 1;
	double ys = nice_step(p->y1 - p->y0 > 0 ? p->y1 - p->y0 : fabs(p->y1) + 1e-3, 5);
	p->y0 = floor(p->y0 / ys) * ys;
	p->y1 = ceil(p->y1 / ys) * ys;
	if (p->y1 <= p->y0)
		p->y1 = p->y0 + ys;
	double xs = nice_step(p->x1 - p->x0, 6);
	for (double y = p->y0; y <= p->y1 + ys / 2; y += ys)
		bprintf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
		    "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>\n",
		    p->L, p->L + p->pw, py(p, y), py(p, y), p->L - 6, py(p, y) + 4, y);
	for (double x = ceil(p->x0 / xs) * xs; x <= p->x1 + xs / 1e6; x += xs)
		bprintf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
		    "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.6g</text>\n",
		    px(p, x), px(p, x), p->T, p->T + p->ph, px(p, x), p->T + p->ph + 18, x);
	bprintf(b, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
	    "stroke=\"#444\"/>\n", p->L, p->T, p->pw, p->ph);
	bprintf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", p->L + p->pw / 2,
	    p->T + p->ph + 40);
	bxml(b, xname);
	bprintf(b, "</text>\n<text transform=\"translate(16,%.1f) rotate(-90)\" "
	    "text-anchor=\"middle\">", p->T + p->ph / 2);
	bxml(b, yname);
	bprintf(b, "</text>\n");
}

/* the finite points of s as a polyline (class cls, or none) */
static void
panel_line(struct buf *b, const struct panel *p, const struct series *s, const char *cls,
    const char *colour, int width)
{
	if (cls)
		bprintf(b, "<polyline class=\"%s\" ", cls);
	else
		bprintf(b, "<polyline ");
	bprintf(b, "fill=\"none\" stroke=\"%s\" stroke-width=\"%d\" points=\"", colour, width);
	for (size_t i = 0; i < s->n; i++)
		if (isfinite(s->y[i]))
			bprintf(b, "%.1f,%.1f ", px(p, s->x[i]), py(p, s->y[i]));
	bprintf(b, "\"/>\n");
}

static void
panel_dots(struct buf *b, const struct panel *p, const struct series *s, const char *colour)
{
	for (size_t i = 0; i < s->n; i++)
		if (isfinite(s->y[i]))
			bprintf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
			    px(p, s->x[i]), py(p, s->y[i]), colour);
}

static void
svg_head(struct buf *b, int W, int H, const char *title, double L)
{
	bprintf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
	    "font-family=\"DejaVu Sans, sans-serif\" font-size=\"12\">\n", W, H);
	bprintf(b, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
	bprintf(b, "<text x=\"%.0f\" y=\"24\" font-size=\"15\">", L);
	bxml(b, title);
	bprintf(b, "</text>\n");
}

/* Read the complete lines of a JSON-lines log: each must be an object
 * (blank lines skipped); fn(ctx, obj, lineno) takes each. A last line
 * without its newline is a line still being written (mim-step appends
 * while a run goes on): it is left out, not an error. 0, or -1 with the
 * error set. */
static int
read_jsonl(const char *log_path, int (*fn)(void *ctx, json_t *o, long lineno), void *ctx)
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
		rc = fn(ctx, json_is_object(o) ? o : NULL, lineno);
		json_decref(o);
	}
	if (!rc && ferror(fp))
		rc = mim_seterr("%s: %s", log_path, strerror(errno));
	free(line);
	fclose(fp);
	return rc;
}

struct steps {
	const char *path;
	struct series tr, va;
};

/* a training step ({"step","loss",...}) or a validation pass
 * ({"step","val_loss",...}) */
static int
take_step(void *ctx, json_t *o, long lineno)
{
	struct steps *s = ctx;
	json_t *st = json_object_get(o, "step");
	json_t *l = json_object_get(o, "loss");
	json_t *v = json_object_get(o, "val_loss");

	if (json_is_number(st) && json_is_number(l))
		return series_add(&s->tr, json_number_value(st), json_number_value(l));
	if (json_is_number(st) && json_is_number(v))
		return series_add(&s->va, json_number_value(st), json_number_value(v));
	return mim_seterr("%s: line %ld: not a JSON object with numbers \"step\" and "
	    "\"loss\" (or \"val_loss\")", s->path, lineno);
}

char *
mim_view_curve_svg(const char *log_path, const char *title)
{
	struct steps s = {.path = log_path};

	if (read_jsonl(log_path, take_step, &s) < 0 ||
	    (s.tr.n == 0 && mim_seterr("%s: no steps in the log", log_path))) {
		series_free(&s.tr, 1);
		series_free(&s.va, 1);
		return NULL;
	}
	const double *st = s.tr.x, *lo = s.tr.y;
	size_t n = s.tr.n;
	const int W = 720, H = 400;
	struct panel p = {INFINITY, -INFINITY, INFINITY, -INFINITY, 70, 40, W - 70 - 20, H - 40 - 50};
	struct buf b = {0};

	panel_fit(&p, &s.tr);
	panel_fit(&p, &s.va);
	svg_head(&b, W, H, title, p.L);
	panel_axes(&b, &p, "step", "loss");
	/* raw loss, light; exponential moving average, dark */
	panel_line(&b, &p, &s.tr, NULL, "#9ecae1", 1);
	bprintf(&b, "<polyline fill=\"none\" stroke=\"#08519c\" stroke-width=\"2\" points=\"");
	double ema = NAN, a = n > 50 ? 0.05 : 0.3;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(lo[i]))
			continue;
		ema = isnan(ema) ? lo[i] : (1 - a) * ema + a * lo[i];
		bprintf(&b, "%.1f,%.1f ", px(&p, st[i]), py(&p, ema));
	}
	bprintf(&b, "\"/>\n<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"end\" fill=\"#08519c\">"
	    "first %.4g, last %.4g, %zu steps</text>\n", p.L + p.pw - 6, p.T + 16, lo[0],
	    lo[n - 1], n);
	if (s.va.n) {	/* the held-out loss, its points marked; a legend */
		const char *vc = "#d94801";
		panel_line(&b, &p, &s.va, "val_loss", vc, 2);
		panel_dots(&b, &p, &s.va, vc);
		bprintf(&b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"#08519c\" "
		    "stroke-width=\"2\"/><text x=\"%.1f\" y=\"%.0f\">train loss</text>\n"
		    "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" stroke-width=\"2\"/>"
		    "<text x=\"%.1f\" y=\"%.0f\">val loss (last %.4g, %zu passes)</text>\n",
		    p.L + 10, p.L + 30, p.T + 16, p.T + 16, p.L + 36, p.T + 20,
		    p.L + 10, p.L + 30, p.T + 34, p.T + 34, vc, p.L + 36, p.T + 38,
		    s.va.y[s.va.n - 1], s.va.n);
	}
	bprintf(&b, "</svg>\n");
	series_free(&s.tr, 1);
	series_free(&s.va, 1);
	return bdone(&b);
}

struct fields {
	const char *path, *x;
	const char *const *names;
	int n;
	struct series *s;	/* one per name */
};

/* the named numbers of a line that has the x field */
static int
take_fields(void *ctx, json_t *o, long lineno)
{
	struct fields *f = ctx;
	json_t *x = json_object_get(o, f->x);

	if (!o)
		return mim_seterr("%s: line %ld: not a JSON object", f->path, lineno);
	if (!json_is_number(x))
		return 0;
	for (int i = 0; i < f->n; i++) {
		json_t *v = json_object_get(o, f->names[i]);
		if (json_is_number(v) &&
		    series_add(&f->s[i], json_number_value(x), json_number_value(v)) < 0)
			return -1;
	}
	return 0;
}

char *
mim_view_fields_svg(const char *log_path, const char *title, const char *x,
    const char *const *names, int n)
{
	struct fields f = {.path = log_path, .x = x, .names = names, .n = n};

	if (!(f.s = mim_calloc((size_t)n, sizeof *f.s)))
		return NULL;
	int rc = read_jsonl(log_path, take_fields, &f);
	for (int i = 0; !rc && i < n; i++)
		if (f.s[i].n == 0)
			rc = mim_seterr("%s: no line with numbers \"%s\" and \"%s\"", log_path, x,
			    names[i]);
	if (rc) {
		series_free(f.s, (size_t)n);
		free(f.s);
		return NULL;
	}
	/* one panel per field, stacked, each on its own scale */
	static const char *colour[] = {"#08519c", "#d94801", "#238b45", "#6a51a3", "#a50f15"};
	const int W = 720, ph = 200, gap = 70, top = 40;
	int H = top + n * (ph + gap);
	struct buf b = {0};
	svg_head(&b, W, H, title, 70);
	for (int i = 0; i < n; i++) {
		struct series *s = &f.s[i];
		const char *c = colour[i % 5];
		struct panel p = {INFINITY, -INFINITY, INFINITY, -INFINITY, 70, top + i * (ph + gap),
		    W - 70 - 20, ph};
		panel_fit(&p, s);
		panel_axes(&b, &p, x, names[i]);
		panel_line(&b, &p, s, names[i], c, 2);
		if (s->n <= 60)
			panel_dots(&b, &p, s, c);
		bprintf(&b, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"end\" fill=\"%s\">", p.L + p.pw - 6,
		    p.T + 16, c);
		bxml(&b, names[i]);
		bprintf(&b, ": first %.4g, last %.4g, %zu points</text>\n", s->y[0], s->y[s->n - 1],
		    s->n);
	}
	bprintf(&b, "</svg>\n");
	series_free(f.s, (size_t)n);
	free(f.s);
	return bdone(&b);
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
