/* avgdist.c -- SimMIM's AvgDist: the mean Euclidean distance from each
 * masked pixel to the nearest visible pixel, from an exact distance
 * transform (Felzenszwalb & Huttenlocher, "Distance Transforms of Sampled
 * Functions", 2012). Pixel centres sit on the integer grid, so squared
 * distances are integers and the transform is computed exactly:
 *
 *   1. per column, g(y) = rows to the nearest visible pixel in the column
 *      (two sweeps), f = g^2, or "none";
 *   2. per row, d2(x) = min over columns q with f(q) finite of
 *      (x-q)^2 + f(q): the lower envelope of parabolas, built left to right.
 *
 * The envelope's breakpoints are compared as doubles; numerators and
 * denominators are integers far below 2^53, so distinct breakpoints never
 * collide and equal ones give equal distances either way. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mim/gemm.h"
#include "mim/mask.h"
#include "mim/stream.h"

#define NONE INT64_MAX
#define BIG ((int64_t)1 << 40)	/* no visible pixel in the column */

/* One row of step 2: f (n) in, d (n) out; v (n) scratch, zn/zd (n+1)
 * scratch. Breakpoint k of the envelope is the rational zn[k]/zd[k]
 * (zd > 0, zd[k] == 0 meaning -inf for k == 0 and +inf after the last);
 * all comparisons are exact int64 cross-multiplications. */
static void
envelope(const int64_t *f, int64_t *d, int n, int *v, int64_t *zn, int64_t *zd)
{
	int k = -1;

	for (int q = 0; q < n; q++) {
		if (f[q] == NONE)
			continue;
		int64_t sn = 0, sd = 0;
		while (k >= 0) {
			int p = v[k];
			/* s = ((f[q] + q^2) - (f[p] + p^2)) / (2(q - p)) */
			sn = (f[q] + (int64_t)q * q) - (f[p] + (int64_t)p * p);
			sd = 2 * (int64_t)(q - p);
			if (k == 0 || sn * zd[k] > zn[k] * sd)	/* s > z[k] */
				break;
			k--;
		}
		k++;
		v[k] = q;
		zn[k] = sn;
		zd[k] = k ? sd : 0;
	}
	if (k < 0) {
		for (int x = 0; x < n; x++)
			d[x] = NONE;
		return;
	}
	int last = k;
	k = 0;
	for (int x = 0; x < n; x++) {
		while (k < last && zn[k + 1] < (int64_t)x * zd[k + 1])	/* z[k+1] < x */
			k++;
		int64_t dx = x - v[k];
		d[x] = dx * dx + f[v[k]];
	}
}

int
mim_edt_sq(const uint8_t *masked, int H, int W, int64_t *d2)
{
	size_t n = (size_t)H * W;
	int64_t *f = mim_malloc((size_t)W * sizeof *f);
	int64_t *run = mim_malloc((size_t)W * sizeof *run);
	int *v = mim_malloc((size_t)W * sizeof *v);
	int64_t *zn = mim_malloc(((size_t)W + 1) * sizeof *zn);
	int64_t *zd = mim_malloc(((size_t)W + 1) * sizeof *zd);

	if (!f || !run || !v || !zn || !zd) {
		free(f);
		free(run);
		free(v);
		free(zn);
		free(zd);
		return -1;
	}
	/* step 1, in place in d2, sweeping whole rows (cache friendly): rows to
	 * the nearest visible pixel above, then the nearer of that and the one
	 * below, capped at BIG (none); then squared */
	for (int x = 0; x < W; x++)
		run[x] = BIG;
	for (int y = 0; y < H; y++) {
		const uint8_t *m = masked + (size_t)y * W;
		int64_t *d = d2 + (size_t)y * W;
		for (int x = 0; x < W; x++) {
			int64_t g = run[x] + 1 < BIG ? run[x] + 1 : BIG;
			run[x] = m[x] ? g : 0;
			d[x] = run[x];
		}
	}
	for (int x = 0; x < W; x++)
		run[x] = BIG;
	for (int y = H - 1; y >= 0; y--) {
		int64_t *d = d2 + (size_t)y * W;
		for (int x = 0; x < W; x++) {
			int64_t g = run[x] + 1 < BIG ? run[x] + 1 : BIG;
			run[x] = d[x] ? g : 0;
			if (run[x] < d[x])
				d[x] = run[x];
		}
	}
	for (size_t i = 0; i < n; i++)
		d2[i] = d2[i] >= BIG ? NONE : d2[i] * d2[i];
	/* step 2, row by row */
	for (int y = 0; y < H; y++) {
		int64_t *row = d2 + (size_t)y * W;
		memcpy(f, row, (size_t)W * sizeof *f);
		envelope(f, row, W, v, zn, zd);
	}
	free(f);
	free(run);
	free(v);
	free(zn);
	free(zd);
	return 0;
}

int
mim_avgdist(const uint8_t *mask, int h, int w, int s, double *avg)
{
	int H = h * s, W = w * s;
	size_t n = (size_t)H * W;
	uint8_t *pix = mim_malloc(n);
	int64_t *d2 = mim_malloc(n * sizeof *d2);

	if (!pix || !d2) {
		free(pix);
		free(d2);
		return -1;
	}
	mim_mask_upsample(pix, mask, h, w, s);
	if (mim_edt_sq(pix, H, W, d2) < 0) {
		free(pix);
		free(d2);
		return -1;
	}
	double sum = 0;
	size_t nm = 0, nv = 0;
	for (size_t i = 0; i < n; i++) {
		if (pix[i]) {
			sum += sqrt((double)d2[i]);
			nm++;
		} else {
			nv++;
		}
	}
	*avg = nm && nv ? sum / (double)nm : NAN;
	free(pix);
	free(d2);
	return 0;
}

/* ---- the mean over many masks, on the thread pool ------------------------ */

struct meanjob {
	const uint8_t *cells;	/* n masks of gh x gw */
	int gh, gw, s;
	double *val;		/* n AvgDists */
	int failed;
};

static void
meanjob_run(void *ctx, int i)
{
	struct meanjob *j = ctx;
	size_t c = (size_t)j->gh * j->gw;

	if (mim_avgdist(j->cells + (size_t)i * c, j->gh, j->gw, j->s, &j->val[i]) < 0)
		j->failed = 1;
}

int
mim_avgdist_mean(const struct mim_maskopt *o, int H, int W, int n,
    double *mean, double *sem, int *undefined)
{
	struct mim_masker *g = mim_masker_new(o);
	int gh, gw, rc = -1;
	uint8_t *cells = NULL;
	double *val = NULL;

	if (!g)
		return -1;
	if (n < 1) {
		mim_seterr("number of masks %d is not positive", n);
		goto out;
	}
	if (mim_mask_grid(o, H, W, &gh, &gw) < 0)
		goto out;
	size_t c = (size_t)gh * gw;
	cells = mim_malloc((size_t)n * c);
	val = mim_malloc((size_t)n * sizeof *val);
	if (!cells || !val)
		goto out;
	/* masks in stream order (the numpy stream is sequential), then the
	 * transforms in parallel, then a sum in index order */
	for (int i = 0; i < n; i++)
		if (mim_masker_next_cells(g, gh, gw, cells + (size_t)i * c) < 0)
			goto out;
	struct meanjob j = {cells, gh, gw, o->mask_patch, val, 0};
	mim_parallel(n, meanjob_run, &j);
	if (j.failed) {
		mim_seterr("out of memory");
		goto out;
	}
	double sum = 0, sq = 0;
	int k = 0;
	for (int i = 0; i < n; i++) {
		if (isnan(val[i]))
			continue;
		sum += val[i];
		k++;
	}
	*mean = k ? sum / k : NAN;
	for (int i = 0; i < n; i++)
		if (!isnan(val[i]))
			sq += (val[i] - *mean) * (val[i] - *mean);
	*sem = k > 1 ? sqrt(sq / (k - 1) / k) : NAN;
	*undefined = n - k;
	rc = 0;
out:
	free(cells);
	free(val);
	mim_masker_free(g);
	return rc;
}
