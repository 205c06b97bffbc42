/* target.c -- what a head predicts, in one place: the channels of each
 * predicted pixel and the resolution of the prediction, as functions of the
 * config, and the targets the loss (loss.c) scores them against. Every
 * head sizes its output by mim_pred_channels and mim_pred_div: its last
 * layer has (s/d)^2 * C outputs per latent position (s = encoder_stride),
 * shuffled by s/d into a (C, H/d, W/d) prediction.
 *
 * RESOLUTION (config "pred_div" d, one of 1 2 4 8 16 32 dividing s): the
 * target is the d x d average of the normalised image (the paper's
 * "prediction resolution"; d = 1, the default, is the image itself). A
 * target pixel is masked iff every model patch it covers is masked: for
 * d <= p (p the model patch, both powers of two) that is its one patch;
 * for d > p (ViT p 16 at d 32) a target pixel half visible is not scored.
 *
 * TARGETS (config "target"), all from the pooled normalised image x:
 *   pixel     C = 3: x itself; with "norm_pix" P (odd) each pixel
 *             normalised by the mean and unbiased variance of the P x P
 *             window around it (the Swin-Transformer repo's variant,
 *             reference §13: avg_pool2d k P, stride 1, pad P/2,
 *             count_include_pad False; eps 1e-6), scored by l1, l2 or
 *             smooth-l1.
 *   bins      C = 3K ("target_bins" K): channel c's value undone to 0-255
 *             as mim-data normalised it (ImageNet mean and std, float32
 *             constants), v = floor(255 (x std + mean) + 0.5) clamped to
 *             [0,255], bin floor(v K / 256); prediction channel c*K + k is
 *             the logit of bin k of colour channel c.
 *   clusters  C = K ("target_clusters" K): the label is the centre (K,3,
 *             0-255 RGB, model->centres) nearest to the unrounded 0-255
 *             colour 255 (x std + mean) (squared distance, ties to the
 *             lower index); channel k is the logit of centre k.
 * Pooling, the window means and the distances are in double.
 *
 * A leaf of lib/model: it calls no other file of it but rng.c, so heads
 * may call it (arch.h). */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "mim/pool.h"

static const char *const target_names[] = {
	[MIM_TARGET_PIXEL] = "pixel", [MIM_TARGET_BINS] = "bins", [MIM_TARGET_CLUSTERS] = "clusters",
};

const char *
mim_target_name(int kind)
{
	return kind >= 0 && kind < 3 ? target_names[kind] : NULL;
}

int
mim_target_parse(const char *name)
{
	for (int i = 0; name && i < 3; i++)
		if (strcmp(target_names[i], name) == 0)
			return i;
	return -1;
}

int
mim_target_channels(const struct mim_target *t)
{
	return t->kind == MIM_TARGET_BINS ? 3 * t->K : t->kind == MIM_TARGET_CLUSTERS ? t->K : 3;
}

int
mim_pred_channels(const struct mim_config *c)
{
	struct mim_target t = {c->target, 0, c->target == MIM_TARGET_BINS ? c->target_bins :
	    c->target_clusters, 0, NULL};
	return mim_target_channels(&t);
}

int
mim_pred_div(const struct mim_config *c)
{
	return c->pred_div > 1 ? c->pred_div : 1;
}

/* mim-data's normalisation (cmd/mim-data.c), float32 constants */
static const float in_mean[3] = {0.485f, 0.456f, 0.406f}, in_std[3] = {0.229f, 0.224f, 0.225f};

static double
to_255(int c, float v)
{
	return ((double)v * in_std[c] + in_mean[c]) * 255.0;
}

int
mim_target_u8(int c, float v)
{
	double u = floor(to_255(c, v) + 0.5);
	return u < 0 ? 0 : u > 255 ? 255 : (int)u;
}

/* ---- pooling, normalising, labels, the mask at the target's resolution ---- */

struct tj {
	int H, W, d, P, p;
	const float *in, *undo;	/* undo: normalised values to de-normalise */
	float *out;
	const struct mim_target *t;
	int32_t *lab;
	const uint8_t *mask;
	uint8_t *mout;
};

/* one (sample, channel) plane: (H,W) -> (H/d,W/d) */
static void
pool_job(void *ctx, int i)
{
	const struct tj *j = ctx;
	int d = j->d, h = j->H / d, w = j->W / d;
	const float *src = j->in + (size_t)i * j->H * j->W;
	float *dst = j->out + (size_t)i * h * w;

	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			double s = 0;
			for (int a = 0; a < d; a++)
				for (int b = 0; b < d; b++)
					s += src[(size_t)(y * d + a) * j->W + x * d + b];
			dst[(size_t)y * w + x] = (float)(s / ((double)d * d));
		}
}

void
mim_target_pool(int B, int H, int W, int d, const float *img, float *pooled)
{
	struct tj j = {.H = H, .W = W, .d = d, .in = img, .out = pooled};
	mim_parallel(B * 3, pool_job, &j);
}

/* one plane (h,w): window sums of x and x^2 by columns then rows (the
 * window clipped at the edges, count_include_pad=False) */
static void
norm_job(void *ctx, int i)
{
	const struct tj *j = ctx;
	int h = j->H, w = j->W, r = j->P / 2;
	const float *x = j->in + (size_t)i * h * w;
	float *o = j->out + (size_t)i * h * w;
	double *cs = malloc((size_t)h * w * 2 * sizeof *cs);

	if (!cs) {	/* NaN shows as a NaN loss, which the callers report */
		for (size_t k = 0; k < (size_t)h * w; k++)
			o[k] = NAN;
		return;
	}
	double *cs2 = cs + (size_t)h * w;
	/* cs(y,x) = sum of x over rows y-r..y+r of column x */
	for (int y = 0; y < h; y++)
		for (int c = 0; c < w; c++) {
			double s = 0, s2 = 0;
			for (int a = y - r; a <= y + r; a++)
				if (a >= 0 && a < h) {
					double v = x[(size_t)a * w + c];
					s += v;
					s2 += v * v;
				}
			cs[(size_t)y * w + c] = s;
			cs2[(size_t)y * w + c] = s2;
		}
	for (int y = 0; y < h; y++) {
		int ny = (y + r < h ? y + r : h - 1) - (y - r > 0 ? y - r : 0) + 1;
		for (int c = 0; c < w; c++) {
			double s = 0, s2 = 0;
			for (int b = c - r; b <= c + r; b++)
				if (b >= 0 && b < w) {
					s += cs[(size_t)y * w + b];
					s2 += cs2[(size_t)y * w + b];
				}
			int nx = (c + r < w ? c + r : w - 1) - (c - r > 0 ? c - r : 0) + 1;
			double n = (double)ny * nx, mean = s / n, var = (s2 / n - mean * mean) * n / (n - 1);
			if (var < 0)
				var = 0;
			size_t e = (size_t)y * w + c;
			if (j->undo)
				o[e] = (float)(j->undo[(size_t)i * h * w + e] * sqrt(var + 1e-6) + mean);
			else
				o[e] = (float)((x[e] - mean) / sqrt(var + 1e-6));
		}
	}
	free(cs);
}

void
mim_target_norm(int B, int h, int w, int P, const float *t, float *normed)
{
	struct tj j = {.H = h, .W = w, .P = P, .in = t, .out = normed};
	mim_parallel(B * 3, norm_job, &j);
}

void
mim_target_denorm(int B, int h, int w, int P, const float *t, const float *x, float *out)
{
	struct tj j = {.H = h, .W = w, .P = P, .in = t, .undo = x, .out = out};
	mim_parallel(B * 3, norm_job, &j);
}

/* one sample's expected colour, normalised: bins (c*K + k) at their
 * centres (k + 0.5) 256/K - 0.5, clusters at theirs, softmax-weighted */
static void
expect_job(void *ctx, int b)
{
	const struct tj *j = ctx;
	const struct mim_target *t = j->t;
	int K = t->K, C = mim_target_channels(t);
	size_t hw = (size_t)j->H * j->W;

	for (size_t e = 0; e < hw; e++)
		for (int g = 0; g < (t->kind == MIM_TARGET_BINS ? 3 : 1); g++) {
			const float *l = j->in + ((size_t)b * C + (size_t)g * K) * hw + e;
			double mx = -INFINITY, se = 0, v[3] = {0, 0, 0};
			for (int k = 0; k < K; k++)
				mx = fmax(mx, l[k * hw]);
			for (int k = 0; k < K; k++) {
				double q = exp(l[k * hw] - mx);
				se += q;
				if (t->kind == MIM_TARGET_BINS)
					v[g] += q * ((k + 0.5) * 256.0 / K - 0.5);
				else
					for (int c = 0; c < 3; c++)
						v[c] += q * t->centres[3 * k + c];
			}
			for (int c = 0; c < 3; c++)
				if (t->kind != MIM_TARGET_BINS || c == g)
					j->out[((size_t)b * 3 + c) * hw + e] =
					    (float)((v[c] / se / 255.0 - in_mean[c]) / in_std[c]);
		}
}

void
mim_target_expect(const struct mim_target *t, int B, int h, int w, const float *pred, float *x)
{
	struct tj j = {.H = h, .W = w, .t = t, .in = pred, .out = x};
	mim_parallel(B, expect_job, &j);
}

/* one sample's labels */
static void
label_job(void *ctx, int b)
{
	const struct tj *j = ctx;
	const struct mim_target *t = j->t;
	size_t hw = (size_t)j->H * j->W;
	const float *x = j->in + (size_t)b * 3 * hw;

	for (size_t e = 0; e < hw; e++) {
		if (t->kind == MIM_TARGET_BINS) {
			for (int c = 0; c < 3; c++)
				j->lab[((size_t)b * 3 + c) * hw + e] = mim_target_u8(c, x[c * hw + e]) * t->K / 256;
			continue;
		}
		double v[3], best = INFINITY;
		int32_t k0 = 0;
		for (int c = 0; c < 3; c++)
			v[c] = to_255(c, x[c * hw + e]);
		for (int k = 0; k < t->K; k++) {
			const float *ce = t->centres + 3 * k;
			double d0 = v[0] - ce[0], d1 = v[1] - ce[1], d2 = v[2] - ce[2];
			double dd = d0 * d0 + d1 * d1 + d2 * d2;
			if (dd < best) {
				best = dd;
				k0 = k;
			}
		}
		j->lab[(size_t)b * hw + e] = k0;
	}
}

void
mim_target_labels(const struct mim_target *t, int B, int h, int w, const float *x, int32_t *labels)
{
	struct tj j = {.H = h, .W = w, .in = x, .t = t, .lab = labels};
	mim_parallel(B, label_job, &j);
}

/* one sample: target pixel (y,x) covers image rows y*d .. y*d+d-1, so
 * patches y*d/p .. (y*d+d-1)/p */
static void
mask_job(void *ctx, int b)
{
	const struct tj *j = ctx;
	int d = j->d, p = j->p, h = j->H / d, w = j->W / d, mh = j->H / p, mw = j->W / p;
	const uint8_t *m = j->mask + (size_t)b * mh * mw;

	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			int all = 1;
			for (int py = y * d / p; all && py <= (y * d + d - 1) / p; py++)
				for (int px = x * d / p; all && px <= (x * d + d - 1) / p; px++)
					all = m[(size_t)py * mw + px] != 0;
			j->mout[((size_t)b * h + y) * w + x] = (uint8_t)all;
		}
}

void
mim_target_mask(int B, int H, int W, int p, int d, const uint8_t *mask, uint8_t *mask_at)
{
	struct tj j = {.H = H, .W = W, .d = d, .p = p, .mask = mask, .mout = mask_at};
	mim_parallel(B, mask_job, &j);
}

/* ---- k-means colour centres ------------------------------------------------- */

struct kj {
	const float *px;
	size_t n;
	int K;
	const float *cen;
	int32_t *lab;
	int changed[64];
};

static int
nearest(const float *v, const float *cen, int K, double *dist)
{
	double best = INFINITY;
	int k0 = 0;

	for (int k = 0; k < K; k++) {
		double a = v[0] - cen[3 * k], b = v[1] - cen[3 * k + 1], c = v[2] - cen[3 * k + 2];
		double dd = a * a + b * b + c * c;
		if (dd < best) {
			best = dd;
			k0 = k;
		}
	}
	if (dist)
		*dist = best;
	return k0;
}

/* chunk i of 64: assign its pixels, note whether any label changed */
static void
assign_job(void *ctx, int i)
{
	struct kj *j = ctx;
	size_t lo = j->n * i / 64, hi = j->n * (i + 1) / 64;
	int changed = 0;

	for (size_t e = lo; e < hi; e++) {
		int32_t k = nearest(j->px + 3 * e, j->cen, j->K, NULL);
		changed |= k != j->lab[e];
		j->lab[e] = k;
	}
	j->changed[i] = changed;
}

int
mim_kmeans(const float *px, size_t n, int K, int iters, uint64_t seed, float *centres)
{
	struct mim_rng r;
	double *d2 = malloc(n * sizeof *d2), *sum = malloc((size_t)K * 4 * sizeof *sum);
	int32_t *lab = malloc(n * sizeof *lab);
	int rc = -1;

	if (K < 1 || n < (size_t)K) {
		mim_seterr("%zu pixels cannot make %d clusters", n, K);
		goto done;
	}
	if (!d2 || !sum || !lab) {
		mim_seterr("out of memory (k-means of %zu pixels)", n);
		goto done;
	}
	/* k-means++: the first centre uniform, each next one drawn with
	 * probability proportional to the squared distance to the nearest
	 * centre so far (sums in index order) */
	mim_rng_seed(&r, seed, 7);
	size_t first = (size_t)(mim_rng_uniform(&r) * (double)n);
	memcpy(centres, px + 3 * first, 3 * sizeof *centres);
	for (size_t e = 0; e < n; e++)
		nearest(px + 3 * e, centres, 1, &d2[e]);
	for (int k = 1; k < K; k++) {
		double tot = 0, acc = 0;
		for (size_t e = 0; e < n; e++)
			tot += d2[e];
		double u = mim_rng_uniform(&r) * tot;
		size_t pick = n - 1;
		for (size_t e = 0; e < n && tot > 0; e++)
			if ((acc += d2[e]) > u) {
				pick = e;
				break;
			}
		if (!(tot > 0))	/* fewer distinct colours than K: repeat one */
			pick = (size_t)(mim_rng_uniform(&r) * (double)n);
		memcpy(centres + 3 * k, px + 3 * pick, 3 * sizeof *centres);
		for (size_t e = 0; e < n; e++) {
			const float *v = px + 3 * e, *c = centres + 3 * k;
			double a = v[0] - c[0], b = v[1] - c[1], cc = v[2] - c[2];
			double dd = a * a + b * b + cc * cc;
			if (dd < d2[e])
				d2[e] = dd;
		}
	}
	/* Lloyd: assign (in parallel, each pixel alone), then the means in
	 * index order; an empty cluster keeps its centre */
	for (size_t e = 0; e < n; e++)
		lab[e] = -1;
	struct kj j = {px, n, K, centres, lab, {0}};
	for (int it = 0; it < iters; it++) {
		mim_parallel(64, assign_job, &j);
		int changed = 0;
		for (int i = 0; i < 64; i++)
			changed |= j.changed[i];
		if (!changed)
			break;
		memset(sum, 0, (size_t)K * 4 * sizeof *sum);
		for (size_t e = 0; e < n; e++) {
			double *s = sum + 4 * lab[e];
			for (int c = 0; c < 3; c++)
				s[c] += px[3 * e + c];
			s[3] += 1;
		}
		for (int k = 0; k < K; k++)
			if (sum[4 * k + 3] > 0)
				for (int c = 0; c < 3; c++)
					centres[3 * k + c] = (float)(sum[4 * k + c] / sum[4 * k + 3]);
	}
	rc = 0;
done:
	free(d2);
	free(sum);
	free(lab);
	return rc;
}

void
mim_target_of(const struct mim_model *m, struct mim_target *t)
{
	const struct mim_config *c = &m->cfg;

	t->kind = c->target;
	t->div = mim_pred_div(c);
	t->K = c->target == MIM_TARGET_BINS ? c->target_bins : c->target_clusters;
	t->norm_pix = c->norm_pix;
	t->centres = m->centres;
}

void
mim_target_sample(int B, int H, int W, const float *img, uint64_t seed, int64_t first, int per,
    float *out)
{
	size_t hw = (size_t)H * W;

	for (int b = 0; b < B; b++) {
		struct mim_rng r;
		const float *x = img + (size_t)b * 3 * hw;
		mim_rng_seed(&r, seed, 1000 + (uint64_t)(first + b));
		for (int i = 0; i < per; i++) {
			size_t e = (size_t)(mim_rng_uniform(&r) * (double)hw);
			for (int c = 0; c < 3; c++)
				*out++ = (float)to_255(c, x[c * hw + e]);
		}
	}
}
