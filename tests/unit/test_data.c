/* test_data.c -- the data pipeline's parts: generators, RandomResizedCrop
 * boxes, WebDataset keys, output patterns, normalisation, the PIL resize
 * against a floating-point reference, tar shards (good, damaged,
 * truncated), folders, IDX files, decoding, and the loader's order. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mim.h"
#include "tap.h"

static char tmpdir[] = "/tmp/test_data.XXXXXX";
static int nwarn;

static void
count_warn(void *ctx, const char *msg)
{
	(void)ctx;
	(void)msg;
	nwarn++;
}

static void
test_rng(void)
{
	struct mim_drng a, b, c;
	int same = 1, differ = 0, inrange = 1;
	long hist[10] = {0};

	mim_drng_key(&a, 1, 2, 3, 4);
	mim_drng_key(&b, 1, 2, 3, 4);
	mim_drng_key(&c, 1, 2, 3, 5);
	for (int i = 0; i < 1000; i++) {
		uint64_t x = mim_drng_u64(&a), y = mim_drng_u64(&b), z = mim_drng_u64(&c);
		same &= x == y;
		differ += x != z;
	}
	tap(same && differ == 1000, "rng: same key same stream, next key another");
	for (int i = 0; i < 100000; i++) {
		double d = mim_drng_double(&a);
		uint64_t k = mim_drng_below(&a, 10);
		inrange &= d >= 0 && d < 1 && k < 10;
		hist[k]++;
	}
	int flat = 1;
	for (int i = 0; i < 10; i++)
		flat &= labs(hist[i] - 10000) < 500;	/* 5 sigma */
	tap(inrange && flat, "rng: double in [0,1), below(10) uniform");
}

static void
test_rrc(void)
{
	double scale[2] = {0.67, 1.0}, ratio[2] = {0.75, 4.0 / 3.0};
	struct mim_drng r;
	struct mim_box b;
	int ok = 1;
	double asum = 0;

	mim_drng_key(&r, 0, 0, 0, 0);
	/* no try can fit: the centre crop at the ratio limit */
	mim_rrc_box(&b, 1000, 100, scale, ratio, &r);
	tap(b.x == 433 && b.y == 0 && b.w == 133 && b.h == 100, "rrc fallback, wide image: %d,%d,%d,%d", b.x, b.y, b.w, b.h);
	mim_rrc_box(&b, 100, 1000, scale, ratio, &r);
	tap(b.x == 0 && b.y == 433 && b.w == 100 && b.h == 133, "rrc fallback, tall image: %d,%d,%d,%d", b.x, b.y, b.w, b.h);
	for (int i = 0; i < 20000; i++) {
		int W = 50 + (int)mim_drng_below(&r, 3000), H = 50 + (int)mim_drng_below(&r, 3000);
		mim_rrc_box(&b, W, H, scale, ratio, &r);
		ok &= b.w >= 1 && b.h >= 1 && b.x >= 0 && b.y >= 0 && b.x + b.w <= W && b.y + b.h <= H;
	}
	tap(ok, "rrc boxes always inside the image");
	for (int i = 0; i < 20000; i++) {
		mim_rrc_box(&b, 640, 480, scale, ratio, &r);
		asum += (double)b.w * b.h / (640.0 * 480.0);
	}
	/* expected: area fraction a ~ U(0.67,1) and log aspect ~ U, given
	 * that the box fits (w = sqrt(a*r*W*H) <= W, same for h), by
	 * numerical integration, ignoring the rounding to pixels */
	double num = 0, den = 0;
	for (int i = 0; i < 400; i++)
		for (int j = 0; j < 400; j++) {
			double a = 0.67 + 0.33 * (i + 0.5) / 400;
			double q = exp(log(0.75) + (log(4.0 / 3) - log(0.75)) * (j + 0.5) / 400);
			if (sqrt(a * q * 640 * 480) <= 640 && sqrt(a / q * 640 * 480) <= 480)
				num += a, den += 1;
		}
	/* all 10 tries fail with (1-p)^10: then the whole image (4:3 is in
	 * the ratio range), fraction 1 */
	double pf = pow(1 - den / (400.0 * 400.0), 10), want = (1 - pf) * num / den + pf;
	tap(fabs(asum / 20000 - want) < 0.002, "rrc mean area fraction %.4f (expected %.4f)", asum / 20000, want);
}

static void
test_wds(void)
{
	size_t kl;
	const char *ext;
	int ok = 1;

	ok &= !mim_wds_split("a/b.c/n01.seg.png", &kl, &ext) && kl == 9 && !strcmp(ext, "seg.png");
	ok &= !mim_wds_split("x.jpg", &kl, &ext) && kl == 1 && !strcmp(ext, "jpg");
	ok &= !mim_wds_split("./x.jpg", &kl, &ext) && kl == 3;
	tap(ok, "wds keys: path up to the basename's first dot");
	tap(mim_wds_split("README", &kl, &ext) && mim_wds_split("a/.hidden.jpg", &kl, &ext) &&
	    mim_wds_split("__meta__/x.json", &kl, &ext) && mim_wds_split("a/b__c__/d.jpg", &kl, &ext),
	    "wds: no dot, dot file, __x__ paths have no key");
}

static void
test_pattern(void)
{
	char buf[64];

	tap(!mim_pattern_check("out-%06d.tar") && !mim_pattern_format(buf, sizeof buf, "out-%06d.tar", 12) &&
	    !strcmp(buf, "out-000012.tar"), "pattern %%06d: %s", buf);
	tap(!mim_pattern_check("a%%-%d") && !mim_pattern_format(buf, sizeof buf, "a%%-%d", 7) &&
	    !strcmp(buf, "a%-7"), "pattern with %%%%: %s", buf);
	tap(mim_pattern_check("out.tar") && mim_pattern_check("%d-%d") && mim_pattern_check("%s") &&
	    mim_pattern_check("%ld") && mim_pattern_check("%123d") && mim_pattern_check(""),
	    "bad patterns refused");
}

static void
test_normalise(void)
{
	uint8_t px[6] = {0, 128, 255, 10, 20, 30};
	struct mim_img rgb = {2, 1, 3, px}, grey = {3, 1, 1, px};
	float m[3] = {0.485f, 0.456f, 0.406f}, s[3] = {0.229f, 0.224f, 0.225f}, out[9];
	int ok = 1;

	mim_image_normalise(out, &rgb, m, s);
	/* (3,1,2): channel c of pixel i at out[c*2+i] */
	for (int c = 0; c < 3; c++)
		for (int i = 0; i < 2; i++)
			ok &= out[c * 2 + i] == ((float)px[3 * i + c] / 255.0f - m[c]) / s[c];
	mim_image_normalise(out, &grey, m, s);
	for (int c = 0; c < 3; c++)
		for (int i = 0; i < 3; i++)
			ok &= out[c * 3 + i] == ((float)px[i] / 255.0f - m[c]) / s[c];
	tap(ok, "normalise: (x/255 - mean)/std in float, grey replicated");
}

/* PIL's resize in double precision, no fixed point: within 1 level. */
static double
tri(double x)
{
	x = fabs(x);
	return x < 1 ? 1 - x : 0;
}

static void
ref_axis(double *w, int *lo, int *n, int insize, double in0, double in1, int out, int i)
{
	double sc = (in1 - in0) / out, fs = sc < 1 ? 1 : sc, sup = fs, c = in0 + (i + 0.5) * sc, sum = 0;
	int a = (int)(c - sup + 0.5), b = (int)(c + sup + 0.5);

	a = a < 0 ? 0 : a;
	b = b > insize ? insize : b;
	for (int j = a; j < b; j++)
		sum += w[j - a] = tri((j - c + 0.5) / fs);
	for (int j = a; j < b; j++)
		w[j - a] /= sum;
	*lo = a;
	*n = b - a;
}

static void
test_resample(void)
{
	int sw = 57, sh = 43, c = 3;
	uint8_t *src = malloc((size_t)sw * sh * c), *dst = malloc(64 * 64 * 3);
	int worst = 0;
	int sizes[][2] = {{20, 15}, {57, 43}, {64, 30}, {9, 60}};

	for (int i = 0; i < sw * sh * c; i++)
		src[i] = (uint8_t)((i * 37 + (i / 7) * 11) & 255);
	for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
		int rw = sizes[t][0], rh = sizes[t][1];
		double box[4] = {3, 2, sw - 1, sh - 4};
		if (mim_resample(dst, 0, 0, rw, rh, rw, rh, src, sw, sh, c, box, MIM_INTERP_BILINEAR)) {
			worst = 999;
			break;
		}
		/* horizontal then vertical, rounding in between as PIL */
		double wx[200], wy[200];
		int lx, nx, ly, ny;
		for (int y = 0; y < rh; y++) {
			ref_axis(wy, &ly, &ny, sh, box[1], box[3], rh, y);
			for (int x = 0; x < rw; x++) {
				ref_axis(wx, &lx, &nx, sw, box[0], box[2], rw, x);
				for (int k = 0; k < c; k++) {
					double v = 0;
					for (int j = 0; j < ny; j++) {
						double h = 0;
						for (int i = 0; i < nx; i++)
							h += wx[i] * src[((size_t)(ly + j) * sw + lx + i) * c + k];
						h = floor(h + 0.5);
						v += wy[j] * (h < 0 ? 0 : h > 255 ? 255 : h);
					}
					int d = abs(dst[((size_t)y * rw + x) * c + k] - (int)floor(v + 0.5));
					worst = d > worst ? d : worst;
				}
			}
		}
	}
	tap(worst <= 1, "resample vs floating-point PIL: max diff %d level(s)", worst);
	double whole[4] = {0, 0, sw, sh};
	mim_resample(dst, 0, 0, sw, sh, sw, sh, src, sw, sh, c, whole, MIM_INTERP_BILINEAR);
	tap(!memcmp(dst, src, (size_t)sw * sh * c), "resample at 1x is a copy");
	/* a window of the output is the same pixels as the whole output */
	uint8_t *full = malloc(40 * 30 * 3);
	mim_resample(full, 0, 0, 40, 30, 40, 30, src, sw, sh, c, whole, MIM_INTERP_BICUBIC);
	mim_resample(dst, 5, 7, 20, 10, 40, 30, src, sw, sh, c, whole, MIM_INTERP_BICUBIC);
	int same = 1;
	for (int y = 0; y < 10; y++)
		same &= !memcmp(dst + (size_t)y * 20 * 3, full + ((size_t)(y + 7) * 40 + 5) * 3, 20 * 3);
	tap(same, "resample window = crop of the whole resize");
	free(full);
	free(src);
	free(dst);
}

/* PIL's integer arithmetic, one output value at a time, the slow way:
 * weights w * 2^22 rounded half away from zero, sums from 2^21, >> 22,
 * clamped; horizontal first, rounded to 8 bits, then vertical. */
static double
kern(double x, int cubic)
{
	x = fabs(x);
	if (!cubic)
		return x < 1 ? 1 - x : 0;
	if (x < 1)
		return (1.5 * x - 2.5) * x * x + 1;
	return x < 2 ? (((x - 5) * x + 8) * x - 4) * -0.5 : 0;
}

static void
int_axis(int32_t *w, int *lo, int *n, int insize, double in0, double in1, int out, int i, int cubic)
{
	double sc = (in1 - in0) / out, fs = sc < 1 ? 1 : sc, sup = (cubic ? 2 : 1) * fs;
	double c = in0 + (i + 0.5) * sc, k[512], sum = 0;
	int a = (int)(c - sup + 0.5), b = (int)(c + sup + 0.5);

	a = a < 0 ? 0 : a;
	b = b > insize ? insize : b;
	for (int j = a; j < b; j++)
		sum += k[j - a] = kern((j - c + 0.5) / fs, cubic);
	for (int j = a; j < b; j++) {
		double v = k[j - a] / sum * (1 << 22);
		w[j - a] = (int32_t)(v < 0 ? v - 0.5 : v + 0.5);
	}
	*lo = a;
	*n = b - a;
}

static int
clamp8(int32_t v)
{
	v >>= 22;
	return v < 0 ? 0 : v > 255 ? 255 : v;
}

/* The resampler (SIMD where built with it) against that, exactly, over
 * random sizes, boxes and windows, 1 and 3 channels, both filters. */
static void
test_resample_exact(void)
{
	int bad = 0, cases = 0;
	unsigned seed = 12345;

	for (int t = 0; t < 120; t++) {
#define RND(n) ((int)((seed = seed * 1103515245u + 12345u) >> 8) % (n))
		int c = RND(2) ? 3 : 1, cubic = RND(3) == 0;
		int sw = 1 + RND(300), sh = 1 + RND(120);
		int rw = 1 + RND(70), rh = 1 + RND(70);
		double box[4] = {RND(sw) * 0.37, RND(sh) * 0.29, 0, 0};
		box[2] = box[0] + (sw - box[0]) * (0.2 + 0.8 * RND(1000) / 1000.0);
		box[3] = box[1] + (sh - box[1]) * (0.2 + 0.8 * RND(1000) / 1000.0);
		int ox = RND(rw), oy = RND(rh), ow = 1 + RND(rw - ox), oh = 1 + RND(rh - oy);
		uint8_t *src = malloc((size_t)sw * sh * c), *dst = malloc((size_t)ow * oh * c);
		uint8_t *mid = malloc((size_t)sh * ow * c);
		for (int i = 0; i < sw * sh * c; i++)
			src[i] = (uint8_t)(RND(7) ? RND(256) : 255 * RND(2));
#undef RND
		if (mim_resample(dst, ox, oy, ow, oh, rw, rh, src, sw, sh, c, box,
		    cubic ? MIM_INTERP_BICUBIC : MIM_INTERP_BILINEAR)) {
			bad++;
			goto next;
		}
		int32_t w[512];
		int lo, n;
		int hx = rw != sw || box[0] != 0 || box[2] != sw;
		int vy = rh != sh || box[1] != 0 || box[3] != sh;
		for (int y = 0; y < sh; y++)
			for (int x = 0; x < ow; x++) {
				if (hx)
					int_axis(w, &lo, &n, sw, box[0], box[2], rw, ox + x, cubic);
				for (int k = 0; k < c; k++) {
					int32_t s = 1 << 21;
					if (!hx) {
						mid[((size_t)y * ow + x) * c + k] = src[((size_t)y * sw + ox + x) * c + k];
						continue;
					}
					for (int j = 0; j < n; j++)
						s += w[j] * src[((size_t)y * sw + lo + j) * c + k];
					mid[((size_t)y * ow + x) * c + k] = (uint8_t)clamp8(s);
				}
			}
		for (int y = 0; y < oh; y++) {
			if (vy)
				int_axis(w, &lo, &n, sh, box[1], box[3], rh, oy + y, cubic);
			for (int x = 0; x < ow * c; x++) {
				int v;
				if (vy) {
					int32_t s = 1 << 21;
					for (int j = 0; j < n; j++)
						s += w[j] * mid[(size_t)(lo + j) * ow * c + x];
					v = clamp8(s);
				} else {
					v = mid[(size_t)(oy + y) * ow * c + x];	/* rh = sh */
				}
				bad += dst[(size_t)y * ow * c + x] != v;
			}
		}
		cases++;
next:
		free(src);
		free(dst);
		free(mid);
	}
	tap(cases == 120 && bad == 0, "resample = PIL's integer arithmetic exactly: %d cases, %d values differ",
	    cases, bad);
}

static char *
path(const char *name)
{
	static char buf[4][512];
	static int k;

	k = (k + 1) % 4;
	snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
	return buf[k];
}

static int
writefile(const char *p, const void *d, size_t n)
{
	FILE *f = fopen(p, "wb");

	if (!f)
		return -1;
	fwrite(d, 1, n, f);
	return fclose(f);
}

/* A small test image, encoded. */
static void
make_png(int w, int h, int c, int seed, void **buf, size_t *n)
{
	uint8_t *px = malloc((size_t)w * h * c);
	struct mim_img im = {w, h, c, px};

	for (int i = 0; i < w * h * c; i++)
		px[i] = (uint8_t)(i * 7 + seed * 31 + (i / (w * c)) * 3);
	if (mim_image_encode(&im, "png", 0, buf, n))
		*buf = NULL;
	free(px);
}

static void
test_decode(void)
{
	void *png;
	size_t n;
	struct mim_aug a;
	struct mim_img out;
	struct mim_geom g;
	uint8_t ref[24 * 16 * 3];

	make_png(24, 16, 3, 1, &png, &n);
	for (int i = 0; i < 24 * 16 * 3; i++)
		ref[i] = (uint8_t)(i * 7 + 31 + (i / 72) * 3);
	mim_aug_default(&a);
	a.size = 16;
	a.force = 1;
	a.box = (struct mim_box){4, 0, 16, 16, 0};
	int rc = mim_image_transform(png, n, &a, NULL, &out, &g);
	int same = !rc && out.w == 16 && out.h == 16 && out.c == 3;
	for (int y = 0; same && y < 16; y++)
		same = !memcmp(out.px + y * 48, ref + y * 72 + 12, 48);
	tap(same && !strcmp(g.format, "png") && g.W == 24 && g.H == 16, "decode: PNG box at 1x gives the pixels");
	if (!rc)
		free(out.px);
	a.box.flip = 1;
	rc = mim_image_transform(png, n, &a, NULL, &out, &g);
	same = !rc;
	for (int y = 0; same && y < 16; y++)
		for (int x = 0; x < 16; x++)
			same &= !memcmp(out.px + y * 48 + x * 3, ref + y * 72 + 12 + (15 - x) * 3, 3);
	tap(same, "decode: flip mirrors the rows");
	if (!rc)
		free(out.px);
	free(png);

	make_png(20, 20, 1, 2, &png, &n);
	a.box = (struct mim_box){0, 0, 20, 20, 0};
	rc = mim_image_transform(png, n, &a, NULL, &out, &g);
	tap(!rc && out.c == 1, "decode: grey stays one channel");
	if (!rc)
		free(out.px);
	/* truncated PNG, text, SVG: errors, no crash */
	rc = mim_image_transform(png, n / 2, &a, NULL, &out, &g);
	tap(rc < 0 && *mim_errmsg(), "decode: truncated PNG is an error (%s)", mim_errmsg());
	free(png);
	const char *txt = "hello, this is not an image\n";
	tap(mim_image_transform(txt, strlen(txt), &a, NULL, &out, &g) < 0 &&
	    strstr(mim_errmsg(), "not an image"), "decode: text is not an image");
	const char *svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"></svg>";
	tap(mim_image_transform(svg, strlen(svg), &a, NULL, &out, &g) < 0 &&
	    strstr(mim_errmsg(), "unsupported"), "decode: SVG is refused (%s)", mim_errmsg());
	a.box = (struct mim_box){10, 10, 20, 20, 0};
	make_png(20, 20, 3, 2, &png, &n);
	tap(mim_image_transform(png, n, &a, NULL, &out, &g) < 0 && strstr(mim_errmsg(), "outside"),
	    "decode: a box outside the image is an error");
	free(png);
}

/* A shard of n samples: key%03d.png + key%03d.cls */
static void
write_shard(const char *pattern, int n, int per)
{
	struct mim_tarw *w = mim_tarw_open(pattern, per);

	for (int i = 0; w && i < n; i++) {
		char key[16], cls[8];
		void *png;
		size_t len;
		snprintf(key, sizeof key, "k%03d", i);
		snprintf(cls, sizeof cls, "%d", i % 3);
		make_png(12 + i % 5, 10 + i % 4, 3, i, &png, &len);
		mim_tarw_add(w, key, "png", png, len);
		mim_tarw_add(w, key, "cls", cls, strlen(cls));
		mim_tarw_end_sample(w);
		free(png);
	}
	mim_tarw_close(w);
}

static int
read_all(const char *file, char keys[][16], int64_t *labels, int max, int *err)
{
	struct mim_tar *t = mim_tar_open(file);
	struct mim_data_counts k = {0};
	struct mim_sample *s;
	int n = 0, r;

	*err = 0;
	if (!t)
		return -1;
	while ((r = mim_tar_next(t, &s, NULL, count_warn, NULL, &k)) > 0) {
		if (n < max) {
			snprintf(keys[n], 16, "%s", s->key);
			labels[n] = s->has_label && mim_sample_member(s, "png") ? s->label : -9;
		}
		n++;
		mim_sample_free(s);
	}
	*err = r < 0;
	mim_tar_close(t);
	return n;
}

static void
test_tar(void)
{
	char keys[32][16];
	int64_t lab[32];
	int err, ok = 1;

	write_shard(path("s-%02d.tar"), 5, 2);
	struct stat st;
	tap(!stat(path("s-00.tar"), &st) && !stat(path("s-02.tar"), &st) && stat(path("s-03.tar"), &st),
	    "tar writer: 5 samples, 2 per shard, 3 shards");
	int n = read_all(path("s-02.tar"), keys, lab, 32, &err);
	tap(n == 1 && !err && !strcmp(keys[0], "k004") && lab[0] == 1, "tar reader: last shard has k004, label 1");
	n = read_all(path("s-00.tar"), keys, lab, 32, &err);
	ok = n == 2 && !err && !strcmp(keys[0], "k000") && lab[0] == 0 && !strcmp(keys[1], "k001") && lab[1] == 1;
	tap(ok, "tar reader: samples grouped by key with their .cls");

	/* damage: a bad header checksum in the middle, then a truncated tail */
	write_shard(path("d-%d.tar"), 6, 100);
	FILE *f = fopen(path("d-0.tar"), "rb");
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	rewind(f);
	uint8_t *b = malloc((size_t)size);
	if (fread(b, 1, (size_t)size, f) != (size_t)size)
		size = 0;
	fclose(f);
	/* find the header of k002.png and break its checksum */
	long off = -1;
	for (long i = 0; i + 512 <= size; i += 512)
		if (!memcmp(b + i, "k002.png", 8))
			off = i;
	if (off >= 0)
		memset(b + off + 148, 'x', 8);
	writefile(path("d-0.tar"), b, (size_t)size);
	nwarn = 0;
	n = read_all(path("d-0.tar"), keys, lab, 32, &err);
	int found5 = 0, found2png = 0;
	for (int i = 0; i < n && i < 32; i++) {
		found5 |= !strcmp(keys[i], "k005");
		found2png |= !strcmp(keys[i], "k002") && lab[i] != -9;
	}
	tap(off >= 0 && !err && nwarn >= 1 && found5 && !found2png,
	    "tar reader: damaged header skipped with a warning, later samples read (%d samples, %d warnings)", n, nwarn);
	/* the tail cut inside k004.png */
	long cut = -1;
	for (long i = 0; i + 512 <= size; i += 512)
		if (!memcmp(b + i, "k004.png", 8))
			cut = i + 600;
	writefile(path("t-0.tar"), b, (size_t)(cut > 0 ? cut : size));
	n = read_all(path("t-0.tar"), keys, lab, 32, &err);
	tap(err && n >= 4 && !strcmp(keys[3], "k003"), "tar reader: truncated shard ends with an error after the good samples (%d, %s)",
	    n, mim_errmsg());
	free(b);
	writefile(path("notatar"), "just some text\n", 15);
	n = read_all(path("notatar"), keys, lab, 32, &err);
	tap(n < 0 || (n == 0 && err), "tar reader: a text file is an error, no samples");
	tap(!mim_tar_open(path("missing.tar")), "tar reader: missing file: %s", mim_errmsg());
}

static void
test_dir(void)
{
	const char *dirs[] = {"img", "img/b", "img/a", "img/a/deep", "img/.git"};
	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
		mkdir(path(dirs[i]), 0755);
	writefile(path("img/b/x.jpg"), "1", 1);
	writefile(path("img/a/y.png"), "2", 1);
	writefile(path("img/a/y.txt"), "caption", 7);
	writefile(path("img/a/deep/z.png"), "3", 1);
	writefile(path("img/.git/q.png"), "4", 1);
	writefile(path("img/README"), "5", 1);
	struct mim_dir *d = mim_dir_open(path("img"));
	struct mim_sample *s[3] = {0};
	int ok = d && mim_dir_count(d) == 3 && mim_dir_nclasses(d) == 2 &&
	    !strcmp(mim_dir_class(d, 0), "a") && !strcmp(mim_dir_class(d, 1), "b");
	for (int i = 0; ok && i < 3; i++)
		ok = !mim_dir_read(d, i, &s[i]);
	ok = ok && !strcmp(s[0]->key, "a/deep/z") && s[0]->label == 0 &&
	    !strcmp(s[1]->key, "a/y") && s[1]->n == 2 && s[1]->label == 0 &&
	    !strcmp(s[2]->key, "b/x") && s[2]->label == 1 && s[2]->m[0].size == 1;
	tap(ok, "folder: ImageFolder classes, keys grouped, dot folders skipped");
	for (int i = 0; i < 3; i++)
		mim_sample_free(s[i]);
	mim_dir_close(d);
}

static void
test_idx(void)
{
	uint8_t img[4 + 12 + 2 * 3 * 2] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 2};
	uint8_t lab[4 + 4 + 2] = {0, 0, 8, 1, 0, 0, 0, 2, 7, 9};
	struct mim_idx x, y;

	for (int i = 0; i < 12; i++)
		img[16 + i] = (uint8_t)(i * 20);
	writefile(path("img.idx"), img, sizeof img);
	writefile(path("lab.idx"), lab, sizeof lab);
	int ok = !mim_idx_load(path("img.idx"), &x) && x.ndim == 3 && x.dim[0] == 2 && x.dim[1] == 3 &&
	    x.dim[2] == 2 && x.data[11] == 220;
	ok = ok && !mim_idx_load(path("lab.idx"), &y) && y.ndim == 1 && y.dim[0] == 2 && y.data[1] == 9;
	tap(ok, "idx: images (2,3,2) and labels read");
	mim_idx_free(&x);
	mim_idx_free(&y);
	writefile(path("bad.idx"), img, sizeof img - 1);
	tap(mim_idx_load(path("bad.idx"), &x) < 0, "idx: short data is an error: %s", mim_errmsg());
	img[2] = 0x0d;
	writefile(path("bad.idx"), img, sizeof img);
	tap(mim_idx_load(path("bad.idx"), &x) < 0, "idx: float IDX refused: %s", mim_errmsg());
}

/* Run a loader over the shards and collect keys and the first pixel. */
static int
run_loader(struct mim_loader_opts *o, char keys[][16], float *px, long *epochs, int max)
{
	struct mim_loader *L = mim_loader_open(o);
	struct mim_item *it;
	int n = 0, r;

	if (!L)
		return -1;
	while ((r = mim_loader_next(L, &it)) > 0) {
		if (n < max) {
			snprintf(keys[n], 16, "%s", it->s->key);
			px[n] = it->x[0] + it->x[37] * 3 + it->x[3 * o->aug.size * o->aug.size - 1];
			epochs[n] = it->epoch;
		}
		n++;
		mim_item_free(it);
	}
	mim_loader_close(L);
	return r < 0 ? -1 : n;
}

static void
test_loader(void)
{
	static char k1[64][16], k2[64][16], k3[64][16];
	float p1[64], p2[64], p3[64];
	long e1[64], e2[64], e3[64];
	char *in[] = {path("l-0.tar"), path("l-1.tar")};
	struct mim_loader_opts o = {0};

	write_shard(path("l-%d.tar"), 14, 7);
	o.inputs = in;
	o.ninputs = 2;
	mim_aug_default(&o.aug);
	o.aug.size = 8;
	o.epochs = 2;
	o.nranks = 1;
	o.mean[0] = o.mean[1] = o.mean[2] = 0.5f;
	o.std[0] = o.std[1] = o.std[2] = 0.25f;
	o.seed = 5;
	o.shuffle = 4;
	o.threads = 1;
	int n1 = run_loader(&o, k1, p1, e1, 64);
	o.threads = 3;
	int n2 = run_loader(&o, k2, p2, e2, 64);
	int same = n1 == 28 && n2 == 28;
	for (int i = 0; same && i < n1; i++)
		same = !strcmp(k1[i], k2[i]) && p1[i] == p2[i] && e1[i] == e2[i];
	tap(same, "loader: 2 epochs x 14, same order and pixels with 1 and 3 threads");
	int inorder = 1, perm = 1;
	for (int i = 0; i < 14; i++) {
		char want[16];
		snprintf(want, sizeof want, "k%03d", i);
		inorder &= !strcmp(k1[i], want);
		int found = 0;
		for (int j = 0; j < 14; j++)
			found += !strcmp(k1[j], want) && e1[j] == 0;
		perm &= found == 1;
	}
	tap(!inorder && perm && e1[13] == 0 && e1[14] == 1, "loader: shuffled epoch is a permutation");
	o.seed = 6;
	run_loader(&o, k3, p3, e3, 64);
	int differ = 0;
	for (int i = 0; i < 28; i++)
		differ += strcmp(k1[i], k3[i]) != 0 || p1[i] != p3[i];
	tap(differ > 10, "loader: another seed, another stream (%d of 28 differ)", differ);

	/* ranks: disjoint, together everything */
	o.epochs = 1;
	o.shuffle = 0;
	for (int split = 0; split < 2; split++) {
		int seen[14] = {0}, total = 0;
		o.split_shards = split;
		o.nranks = 3;
		for (int r = 0; r < 3; r++) {
			o.rank = r;
			int n = run_loader(&o, k3, p3, e3, 64);
			for (int i = 0; i < n; i++)
				seen[atoi(k3[i] + 1)]++;
			total += n;
		}
		int once = total == 14;
		for (int i = 0; i < 14; i++)
			once &= seen[i] == 1;
		tap(once, "loader: 3 ranks split by %s are disjoint and complete", split ? "shard" : "sample");
	}
	o.nranks = 1;
	o.rank = 0;
	o.split_shards = 0;

	/* a bad member: skipped with a warning, or with strict an error */
	char *in2[] = {path("l-0.tar"), path("notatar"), path("l-1.tar")};
	o.inputs = in2;
	o.ninputs = 3;
	o.warn = count_warn;
	nwarn = 0;
	int n = run_loader(&o, k3, p3, e3, 64);
	tap(n == 14 && nwarn == 1, "loader: a bad shard is skipped with one warning (%d images)", n);
	o.strict = 1;
	tap(run_loader(&o, k3, p3, e3, 64) < 0 && strstr(mim_errmsg(), "notatar"),
	    "loader: strict makes it an error: %s", mim_errmsg());
	o.strict = 0;
	char *in3[] = {path("nonexistent.tar")};
	o.inputs = in3;
	o.ninputs = 1;
	tap(!mim_loader_open(&o), "loader: a missing input is refused at open: %s", mim_errmsg());
}

int
main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_rng();
	test_rrc();
	test_wds();
	test_pattern();
	test_normalise();
	test_resample();
	test_resample_exact();
	test_decode();
	test_tar();
	test_dir();
	test_idx();
	test_loader();
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
	return tap_done();
}
