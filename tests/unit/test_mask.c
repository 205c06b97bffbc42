/* test_mask.c -- the mask generators, numpy's legacy RNG and AvgDist:
 * reference vectors of numpy and of the official generator, exact counts,
 * alignment, uniformity, and the distance transform against brute force. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mim.h"
#include "tap.h"

/* ---- numpy's legacy RandomState ------------------------------------------ */

static void
test_numpy(void)
{
	struct mim_mt19937 s;
	/* §2.3: np.random.seed(0); np.random.permutation(36) */
	static const int64_t p36[36] = {31, 20, 16, 30, 22, 15, 10, 2, 11, 29, 27, 35,
	    33, 28, 32, 8, 13, 5, 17, 14, 7, 26, 1, 12, 25, 24, 6, 23, 4, 18, 21, 19,
	    9, 34, 3, 0};
	/* np.random.seed(0); np.random.permutation(49) (numpy 1.24.2) */
	static const int64_t p49[49] = {29, 4, 26, 30, 32, 37, 34, 40, 7, 10, 11, 31,
	    33, 27, 48, 2, 46, 18, 15, 28, 22, 16, 41, 20, 42, 8, 13, 25, 5, 17, 35,
	    14, 38, 1, 12, 43, 24, 6, 23, 36, 21, 19, 9, 39, 45, 3, 0, 47, 44};
	/* np.random.seed(7); two permutation(16) in a row */
	static const int64_t p16a[16] = {8, 5, 10, 2, 12, 0, 1, 14, 13, 7, 11, 3, 6, 9, 4, 15};
	static const int64_t p16b[16] = {15, 5, 1, 9, 12, 3, 13, 2, 10, 11, 14, 0, 4, 6, 7, 8};
	int64_t out[49];

	mim_mt_seed(&s, 5489);
	tap(mim_mt_u32(&s) == 3499211612u, "mt19937 seed 5489: first output 3499211612");
	mim_mt_seed(&s, 0);
	tap(mim_mt_double(&s) == 0.5488135039273248, "np.random.seed(0); random_sample() = 0.5488135039273248");
	mim_mt_seed(&s, 0);
	mim_np_permutation(&s, 36, out);
	tap(!memcmp(out, p36, sizeof p36), "np.random.seed(0); permutation(36) (reference §2.3)");
	mim_mt_seed(&s, 0);
	mim_np_permutation(&s, 49, out);
	tap(!memcmp(out, p49, sizeof p49), "np.random.seed(0); permutation(49)");
	mim_mt_seed(&s, 7);
	mim_np_permutation(&s, 16, out);
	int ok = !memcmp(out, p16a, sizeof p16a);
	mim_np_permutation(&s, 16, out);
	tap(ok && !memcmp(out, p16b, sizeof p16b), "np.random.seed(7); consecutive permutation(16)");
	/* more than 624 draws: the twist runs again */
	mim_mt_seed(&s, 1);
	for (int i = 0; i < 2000; i++)
		mim_mt_u32(&s);
	tap(mim_mt_interval(&s, 0) == 0, "random_interval(0) is 0 without a draw");
}

/* ---- official masks --------------------------------------------------------- */

/* the coarse g x g pattern of a (g*sc) x (g*sc) mask as "row/row/..."; "" if
 * some cell is not constant */
static void
coarse(const uint8_t *m, int g, int sc, char *buf)
{
	int n = g * sc, k = 0;

	for (int y = 0; y < g; y++) {
		for (int x = 0; x < g; x++) {
			uint8_t v = m[(size_t)y * sc * n + (size_t)x * sc];
			for (int a = 0; a < sc; a++)
				for (int b = 0; b < sc; b++)
					if (m[(size_t)(y * sc + a) * n + x * sc + b] != v) {
						buf[0] = 0;
						return;
					}
			buf[k++] = (char)('0' + v);
		}
		buf[k++] = y + 1 < g ? '/' : 0;
	}
}

static long
sum(const uint8_t *m, size_t n)
{
	long s = 0;

	for (size_t i = 0; i < n; i++)
		s += m[i];
	return s;
}

static struct mim_masker *
masker(int strategy, int rng, uint64_t seed, int mp, int pp, double ratio)
{
	struct mim_maskopt o;

	mim_maskopt_default(&o);
	o.strategy = strategy;
	o.rng = rng;
	o.seed = seed;
	o.mask_patch = mp;
	o.model_patch = pp;
	o.ratio = ratio;
	struct mim_masker *g = mim_masker_new(&o);
	if (!g) {
		fprintf(stderr, "masker: %s\n", mim_errmsg());
		exit(1);
	}
	return g;
}

static void
test_official(void)
{
	uint8_t m[48 * 48];
	char buf[128];
	struct mim_masker *g;

	tap(mim_mask_count(36, 0.6) == 22 && mim_mask_count(49, 0.6) == 30 &&
	    mim_mask_count(100, 0.5) == 50 && mim_mask_count(4, 0.9) == 4,
	    "count = ceil(cells*ratio) in double: 36*0.6 -> 22, 49*0.6 -> 30");

	g = masker(MIM_MASK_RANDOM, MIM_RNG_NUMPY, 0, 32, 4, 0.6);
	mim_masker_next(g, 192, 192, m);
	coarse(m, 6, 8, buf);
	tap(!strcmp(buf, "001001/011011/011111/001010/001111/111101") && sum(m, 48 * 48) == 1408,
	    "numpy seed 0, 192/32/4/0.6: %s, %ld masked of 48x48", buf, sum(m, 48 * 48));
	mim_masker_free(g);

	g = masker(MIM_MASK_RANDOM, MIM_RNG_NUMPY, 0, 32, 16, 0.6);
	mim_masker_next(g, 224, 224, m);
	coarse(m, 7, 2, buf);
	tap(!strcmp(buf, "0010110/1101101/0111101/0100111/1111111/0010011/1000101") &&
	    sum(m, 14 * 14) == 120, "numpy seed 0, 224/32/16/0.6: %s, %ld masked of 14x14",
	    buf, sum(m, 14 * 14));
	mim_masker_free(g);

	/* the golden dumps (official MaskGenerator, np.random.seed(7), img 32,
	 * mask patch 8): micro-vit (model patch 4) and micro-swin (patch 2) */
	static const char *golden[2] = {"1110/0101/1010/1110", "0111/0100/0111/1101"};
	for (int pp = 4; pp >= 2; pp /= 2) {
		int ok = 1;
		g = masker(MIM_MASK_RANDOM, MIM_RNG_NUMPY, 7, 8, pp, 0.6);
		for (int b = 0; b < 2; b++) {
			mim_masker_next(g, 32, 32, m);
			coarse(m, 4, 8 / pp, buf);
			ok &= !strcmp(buf, golden[b]);
		}
		tap(ok, "numpy seed 7, 32/8/%d/0.6: the official golden batch of 2", pp);
		mim_masker_free(g);
	}
}

/* ---- counts, alignment, uniformity ---------------------------------------- */

static void
test_counts(void)
{
	static const int sizes[][3] = {	/* image, mask patch, model patch */
		{192, 32, 4}, {224, 32, 16}, {192, 16, 4}, {192, 4, 4}, {96, 8, 2}, {64, 64, 8},
	};
	static const double ratios[] = {0.05, 0.1, 0.33, 0.5, 0.6, 0.75, 0.9, 0.99};
	uint8_t *m = malloc(96 * 96 * 4);

	for (int rng = 0; rng < 2; rng++) {
		int bad = 0, n = 0;
		for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
			for (size_t k = 0; k < sizeof ratios / sizeof *ratios; k++) {
				int S = sizes[i][0], mp = sizes[i][1], pp = sizes[i][2];
				int gc = S / mp, sc = mp / pp, t = S / pp;
				char *buf = malloc((size_t)gc * (gc + 1) + 1);
				struct mim_masker *g = masker(MIM_MASK_RANDOM, rng, 11, mp, pp, ratios[k]);
				for (int r = 0; r < 20; r++, n++) {
					mim_masker_next(g, S, S, m);
					coarse(m, gc, sc, buf);
					long want = (long)mim_mask_count((int64_t)gc * gc, ratios[k]) * sc * sc;
					if (!buf[0] || sum(m, (size_t)t * t) != want)
						bad++;
				}
				mim_masker_free(g);
				free(buf);
			}
		}
		tap(bad == 0, "rng %s: %d random masks, each with exactly the expected count, "
		    "constant on mask-patch cells (%d bad)", mim_mask_rng_name(rng), n, bad);
	}
	free(m);
}

/* per-cell frequency of n masks over 36 cells: max |z| of the counts
 * against the binomial with p = count/36 */
static void
test_uniform(void)
{
	enum { N = 20000 };
	uint8_t c[36];

	for (int rng = 0; rng < 2; rng++) {
		struct mim_masker *g = masker(MIM_MASK_RANDOM, rng, 3, 32, 4, 0.6);
		long cnt[36] = {0};
		for (int i = 0; i < N; i++) {
			mim_masker_next_cells(g, 6, 6, c);
			for (int j = 0; j < 36; j++)
				cnt[j] += c[j];
		}
		double p = 22.0 / 36, sd = sqrt(N * p * (1 - p)), zmax = 0;
		for (int j = 0; j < 36; j++)
			zmax = fmax(zmax, fabs((cnt[j] - N * p) / sd));
		tap(zmax < 4.5, "rng %s: per-cell frequency over %d masks uniform (max |z| %.2f)",
		    mim_mask_rng_name(rng), N, zmax);
		mim_masker_free(g);
	}
	/* central: the square's top-left corner is uniform over the 3x3
	 * positions of a 4x4 square in a 6x6 grid (ratio 0.45: 16.2 cells) */
	for (int rng = 0; rng < 2; rng++) {
		struct mim_masker *g = masker(MIM_MASK_CENTRAL, rng, 5, 32, 4, 0.45);
		long pos[9] = {0};
		int shape_ok = 1;
		for (int i = 0; i < 9000; i++) {
			mim_masker_next_cells(g, 6, 6, c);
			int top = -1, left = -1;
			for (int j = 0; j < 36 && top < 0; j++)
				if (c[j])
					top = j / 6, left = j % 6;
			for (int y = 0; y < 6; y++)
				for (int x = 0; x < 6; x++)
					shape_ok &= c[y * 6 + x] == (y >= top && y < top + 4 && x >= left && x < left + 4);
			if (top >= 0 && top <= 2 && left <= 2)
				pos[top * 3 + left]++;
		}
		double zmax = 0;
		for (int j = 0; j < 9; j++)
			zmax = fmax(zmax, fabs((pos[j] - 1000.0) / sqrt(9000 * (1 / 9.0) * (8 / 9.0))));
		tap(shape_ok && zmax < 4.5, "rng %s: central 4x4 square, position uniform (max |z| %.2f)",
		    mim_mask_rng_name(rng), zmax);
		mim_masker_free(g);
	}
}

static void
test_block(void)
{
	uint8_t c[14 * 14];

	for (int rng = 0; rng < 2; rng++) {
		struct mim_masker *g = masker(MIM_MASK_BLOCK, rng, 9, 16, 16, 0.4);
		int over = 0, exact = 0, N = 500;
		long tot = 0;
		for (int i = 0; i < N; i++) {
			mim_masker_next_cells(g, 14, 14, c);
			long s = sum(c, sizeof c);
			over += s > 79;	/* ceil(196*0.4) = 79 */
			exact += s == 79;
			tot += s;
		}
		/* BEiT's loop gives up after 10 fruitless attempts: about a third
		 * of its masks end a few cells short (the NumPy reference agrees
		 * bit for bit, t-mim-mask.sh) */
		tap(over == 0 && exact > N / 2 && tot > 78L * N,
		    "rng %s: block-wise at 14x14, 0.4: never over 79 cells, %d of %d exactly 79, mean %.2f",
		    mim_mask_rng_name(rng), exact, N, (double)tot / N);
		mim_masker_free(g);
	}
}

static void
test_seeds(void)
{
	uint8_t a[36], b[36];
	struct mim_masker *g1 = masker(MIM_MASK_RANDOM, MIM_RNG_MIM, 42, 32, 4, 0.6);
	struct mim_masker *g2 = masker(MIM_MASK_RANDOM, MIM_RNG_MIM, 42, 32, 4, 0.6);
	struct mim_masker *g3 = masker(MIM_MASK_RANDOM, MIM_RNG_MIM, 43, 32, 4, 0.6);
	int same = 1, diff = 0, succ = 0;
	uint8_t prev[36] = {0};

	for (int i = 0; i < 50; i++) {
		mim_masker_next_cells(g1, 6, 6, a);
		mim_masker_next_cells(g2, 6, 6, b);
		same &= !memcmp(a, b, 36);
		mim_masker_next_cells(g3, 6, 6, b);
		diff += memcmp(a, b, 36) != 0;
		succ += memcmp(a, prev, 36) != 0;
		memcpy(prev, a, 36);
	}
	tap(same && diff >= 45 && succ >= 45 && mim_masker_index(g1) == 50,
	    "mim rng: same seed same masks, other seed (%d/50) and successive masks (%d/50) differ",
	    diff, succ);
	mim_masker_free(g1);
	mim_masker_free(g2);
	mim_masker_free(g3);
}

static void
test_errors(void)
{
	struct mim_maskopt o;
	int gh, gw, bad = 0;

	mim_maskopt_default(&o);
	tap(o.mask_patch == 32 && o.model_patch == 4 && o.ratio == 0.6 && o.seed == 0 &&
	    o.block_min == 16 && o.block_aspect == 0.3 && mim_maskopt_check(&o) == 0,
	    "defaults: 32 / 4 / 0.6, seed 0, block 16 / 0.3");
	o.ratio = 0;
	bad += mim_maskopt_check(&o) == -1 && strstr(mim_errmsg(), "outside (0,1)");
	o.ratio = 1;
	bad += mim_maskopt_check(&o) == -1;
	o.ratio = NAN;
	bad += mim_maskopt_check(&o) == -1;
	o.ratio = 0.6;
	o.model_patch = 12;
	bad += mim_maskopt_check(&o) == -1 && strstr(mim_errmsg(), "not a multiple");
	o.model_patch = 4;
	o.rng = MIM_RNG_NUMPY;
	o.seed = 1ull << 32;
	bad += mim_maskopt_check(&o) == -1 && strstr(mim_errmsg(), "2^32");
	o.seed = 0;
	bad += mim_mask_grid(&o, 200, 192, &gh, &gw) == -1 && strstr(mim_errmsg(), "not divisible");
	bad += mim_mask_grid(&o, 192, 224, &gh, &gw) == 0 && gh == 6 && gw == 7;
	tap(bad == 7, "bad options and sizes are refused with a message (%d of 7)", bad);
	tap(mim_mask_strategy_parse("block") == MIM_MASK_BLOCK && mim_mask_strategy_parse("x") == -1 &&
	    mim_mask_rng_parse("numpy") == MIM_RNG_NUMPY && mim_mask_rng_parse("") == -1,
	    "strategy and rng names");
}

/* ---- distance transform and AvgDist ---------------------------------------- */

static int64_t
brute_d2(const uint8_t *m, int H, int W, int y, int x)
{
	int64_t best = INT64_MAX;

	for (int v = 0; v < H; v++)
		for (int u = 0; u < W; u++)
			if (!m[v * W + u]) {
				int64_t d = (int64_t)(v - y) * (v - y) + (int64_t)(u - x) * (u - x);
				if (d < best)
					best = d;
			}
	return best;
}

static void
test_edt(void)
{
	static const int dims[][2] = {{1, 1}, {1, 17}, {13, 1}, {23, 37}, {40, 29}, {64, 64}};
	static const double dens[] = {0.0, 0.02, 0.3, 0.9, 0.995, 1.0};
	int cases = 0, bad = 0;

	tap_rng = 12345;
	for (size_t i = 0; i < sizeof dims / sizeof *dims; i++) {
		for (size_t k = 0; k < sizeof dens / sizeof *dens; k++) {
			int H = dims[i][0], W = dims[i][1];
			uint8_t *m = malloc((size_t)H * W);
			int64_t *d2 = malloc((size_t)H * W * sizeof *d2);
			for (int j = 0; j < H * W; j++)
				m[j] = (frand() + 1) / 2 < dens[k];
			if (mim_edt_sq(m, H, W, d2) < 0)
				bad++;
			for (int y = 0; y < H; y++)
				for (int x = 0; x < W; x++)
					bad += d2[y * W + x] != brute_d2(m, H, W, y, x);
			cases++;
			free(m);
			free(d2);
		}
	}
	tap(bad == 0, "exact squared EDT equals brute force on %d random masks (%d pixels wrong)",
	    cases, bad);

	/* hand-worked AvgDist */
	const uint8_t r1[3] = {1, 0, 1}, r2[4] = {1, 0, 1, 1}, all[4] = {1, 1, 1, 1};
	const uint8_t none[4] = {0, 0, 0, 0};
	double a, b, c, d, e;
	mim_avgdist(r1, 1, 3, 1, &a);
	mim_avgdist(r2, 2, 2, 1, &b);	/* masked (0,0):1, (1,0):sqrt2, (1,1):1 */
	mim_avgdist(r2, 2, 2, 3, &c);	/* cells of 3x3 pixels */
	mim_avgdist(all, 2, 2, 1, &d);
	mim_avgdist(none, 2, 2, 1, &e);
	/* 6x6 pixels, visible cell top right (3x3): masked 27 pixels. Brute force
	 * in closed form: top-left cell, pixel (y,x), x<3: distance 3-x (row y
	 * < 3); bottom-right cell: 3-y; bottom-left: sqrt((3-x)^2+(3-y)^2). */
	double want = 0;
	for (int y = 0; y < 3; y++)
		for (int x = 0; x < 3; x++)
			want += (3 - x) + (3 - y) + sqrt((double)(3 - x) * (3 - x) + (3 - y) * (3 - y));
	want /= 27;
	tap(a == 1 && fabs(b - (2 + sqrt(2)) / 3) < 1e-15 && fabs(c - want) < 1e-12 &&
	    isnan(d) && isnan(e), "AvgDist by hand: %g, %.6f, %.6f (want %.6f); NaN without "
	    "visible or masked pixels", a, b, c, want);
}

static void
test_mean(void)
{
	struct mim_maskopt o;
	double m1, s1, m2, s2;
	int u1, u2;

	mim_maskopt_default(&o);
	o.model_patch = 1;
	o.mask_patch = 16;
	mim_set_threads(1);
	int r1 = mim_avgdist_mean(&o, 192, 192, 40, &m1, &s1, &u1);
	mim_set_threads(2);
	int r2 = mim_avgdist_mean(&o, 192, 192, 40, &m2, &s2, &u2);
	tap(r1 == 0 && r2 == 0 && m1 == m2 && s1 == s2 && u1 == 0 && m1 > 4 && m1 < 12,
	    "mean AvgDist of 40 masks (16 px, 0.6) is %.4f with 1 and 2 threads alike", m1);
	/* a mask with no visible pixel: 2x2 cells at ratio 0.9 -> 4 of 4 */
	o.mask_patch = 96;
	o.ratio = 0.9;
	r1 = mim_avgdist_mean(&o, 192, 192, 5, &m1, &s1, &u1);
	tap(r1 == 0 && u1 == 5 && isnan(m1), "all-masked masks are left out and counted (%d)", u1);
	o.mask_patch = 16;
	o.ratio = 0.6;
	tap(mim_avgdist_mean(&o, 190, 192, 5, &m1, &s1, &u1) == -1, "mean: bad size refused: %s",
	    mim_errmsg());
}

int
main(void)
{
	test_numpy();
	test_official();
	test_counts();
	test_uniform();
	test_block();
	test_seeds();
	test_errors();
	test_edt();
	test_mean();
	return tap_done();
}
