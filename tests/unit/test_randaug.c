/* test_randaug.c -- RandAugment (lib/data/randaug.c): every op of both of
 * timm's lists against PIL 9.4 on the dump of tests/ref/randaug_ref.py
 * (pixel ops to the byte, geometric ones within 1 of 255 on at least 99%
 * of the values), the draws' statistics against the spec, the spec
 * parser, and a grey picture. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mim.h"
#include "tap.h"

static int
geometric(int op)
{
	return op == MIM_RA_ROTATE || op == MIM_RA_SHEAR_X || op == MIM_RA_SHEAR_Y ||
	    op == MIM_RA_TRANSLATE_X_REL || op == MIM_RA_TRANSLATE_Y_REL;
}

static int
in_list(const int *list, int op)
{
	for (int i = 0; i < MIM_RA_LIST; i++)
		if (list[i] == op)
			return 1;
	return 0;
}

/* each op of the dump: values exact, within 1, and the largest difference */
static void
test_parity(void)
{
	struct mim_frame *f = mim_load(tap_ref("randaug_ref.safetensors"));
	int64_t in_shape[4] = {-1, -1, -1, 3};

	tap(f != NULL, "randaug_ref.safetensors loads%s%s", f ? "" : ": ", f ? "" : mim_errmsg());
	if (!f)
		return;
	struct mim_tensor *in = mim_frame_want(f, "in", MIM_U8, 4, in_shape);
	struct mim_tensor *out = mim_frame_want(f, "out", MIM_U8, 4, in_shape);
	struct mim_tensor *cases = mim_frame_want(f, "cases", MIM_F64, 2, (int64_t[]){-1, 5});
	const char *names = mim_meta_get(f, "ops"), *fills = mim_meta_get(f, "fill");
	if (!in || !out || !cases || !names || !fills) {
		tap(0, "randaug_ref.safetensors: %s", mim_errmsg());
		mim_frame_free(f);
		return;
	}
	/* the dump's op names in its order, to our ops */
	int map[64], nmap = 0;
	char buf[1024];
	snprintf(buf, sizeof buf, "%s", names);
	for (char *s = strtok(buf, ","); s && nmap < 64; s = strtok(NULL, ","))
		map[nmap++] = mim_ra_lookup(s);
	int known = nmap == MIM_RA_NOPS;
	for (int i = 0; i < nmap; i++)
		known &= map[i] >= 0;
	tap(known, "the dump names our %d ops (%d names)", MIM_RA_NOPS, nmap);
	unsigned fr, fg, fb;
	sscanf(fills, "%u,%u,%u", &fr, &fg, &fb);
	uint8_t fill[3] = {(uint8_t)fr, (uint8_t)fg, (uint8_t)fb};
	tap(fill[0] == 124 && fill[1] == 116 && fill[2] == 104, "timm's img_mean fill %u,%u,%u",
	    fr, fg, fb);

	int H = (int)in->shape[1], W = (int)in->shape[2];
	size_t npx = (size_t)H * W * 3;
	long ncase = (long)cases->shape[0];
	const double *tab = cases->data;
	long exact[MIM_RA_NOPS] = {0}, near[MIM_RA_NOPS] = {0}, total[MIM_RA_NOPS] = {0};
	int worst[MIM_RA_NOPS] = {0}, seen[MIM_RA_NOPS] = {0}, bad_case = -1;
	for (long k = 0; k < ncase; k++) {
		const double *c = tab + 5 * k;
		int img = (int)c[0], op = map[(int)c[1]];
		struct mim_img im = {W, H, 3, malloc(npx)};
		memcpy(im.px, (uint8_t *)in->data + (size_t)img * npx, npx);
		if (mim_ra_apply(&im, op, c[2], (int)c[3], fill,
		    c[4] ? MIM_INTERP_BICUBIC : MIM_INTERP_BILINEAR)) {
			bad_case = (int)k;
			free(im.px);
			continue;
		}
		const uint8_t *want = (uint8_t *)out->data + (size_t)k * npx;
		long ex = 0, nr = 0;
		for (size_t i = 0; i < npx; i++) {
			int d = abs((int)im.px[i] - (int)want[i]);
			ex += d == 0;
			nr += d <= 1;
			if (d > worst[op])
				worst[op] = d;
		}
		if (!geometric(op) && ex != (long)npx && bad_case < 0)
			bad_case = (int)k;
		exact[op] += ex;
		near[op] += nr;
		total[op] += (long)npx;
		seen[op]++;
		free(im.px);
	}
	for (int op = 0; op < MIM_RA_NOPS; op++) {
		if (geometric(op))
			tap(seen[op] && near[op] >= 0.99 * total[op],
			    "%s: %d cases, %ld of %ld values exact, %ld within 1 (%.2f%%), largest "
			    "difference %d", mim_ra_name(op), seen[op], exact[op], total[op], near[op],
			    total[op] ? 100.0 * near[op] / total[op] : 0, worst[op]);
		else
			tap(seen[op] && exact[op] == total[op],
			    "%s: %d cases, %ld of %ld values as PIL's (largest difference %d)",
			    mim_ra_name(op), seen[op], exact[op], total[op], worst[op]);
	}
	if (bad_case >= 0) {
		const double *c = tab + 5 * bad_case;
		printf("# first failing case %d: image %d, %s, magnitude %g, negated %d\n", bad_case,
		    (int)c[0], mim_ra_name(map[(int)c[1]]), c[2], (int)c[3]);
	}
	mim_frame_free(f);
}

/* the draws of rand-m9-mstd0.5-inc1 over many pictures: op frequencies,
 * the coin, the magnitudes, the signs */
static void
test_draws(void)
{
	struct mim_randaug ra;
	struct mim_drng rng;
	struct mim_ra_step st[MIM_RA_MAXN];
	enum { N = 200000 };
	long count[MIM_RA_NOPS] = {0}, steps = 0, applied = 0, at10 = 0, inside = 0;
	long nsigned = 0, nneg = 0, at0 = 0;
	double sum = 0, sum2 = 0;
	int inlist = 1;

	tap(mim_randaug_parse(&ra, "rand-m9-mstd0.5-inc1") == 0 && ra.n == 2 && ra.m == 9 &&
	    ra.mstd == 0.5 && ra.inc == 1, "rand-m9-mstd0.5-inc1: n 2, m 9, mstd 0.5, increasing");
	const int *list = mim_ra_list(1);
	mim_drng_key(&rng, 11, 0, 0, 0);
	for (long p = 0; p < N; p++) {
		mim_randaug_draw(&ra, &rng, st);
		for (int l = 0; l < ra.n; l++) {
			inlist &= in_list(list, st[l].op);
			count[st[l].op]++;
			steps++;
			if (!st[l].applied)
				continue;
			double m = st[l].mag;
			applied++;
			sum += m;
			sum2 += m * m;
			at10 += m == 10;
			at0 += m == 0;
			inside += m > 8.5 && m < 9.5;
			if (st[l].op == MIM_RA_ROTATE || st[l].op == MIM_RA_SHEAR_X ||
			    st[l].op == MIM_RA_COLOR_INC || st[l].op == MIM_RA_TRANSLATE_Y_REL) {
				nsigned++;
				nneg += st[l].neg;
			} else if (st[l].op == MIM_RA_INVERT || st[l].op == MIM_RA_SOLARIZE_INC) {
				inlist &= !st[l].neg;	/* no sign to draw */
			}
		}
	}
	tap(inlist, "inc1: every op from the increasing list, unsigned ops never negated");
	/* each op 1/15 of 400000 draws: 26667, sd 158; bound 1000 (> 6 sd) */
	long lo = steps, hi = 0;
	for (int i = 0; i < MIM_RA_LIST; i++) {
		long c = count[list[i]];
		lo = c < lo ? c : lo;
		hi = c > hi ? c : hi;
	}
	tap(labs(lo - steps / 15) < 1000 && labs(hi - steps / 15) < 1000,
	    "each of the 15 ops drawn uniformly: %ld to %ld of %ld (expected %ld each)", lo, hi,
	    steps, steps / 15);
	/* the coin: half, sd 0.0008; bound 0.005 */
	double pa = (double)applied / steps;
	tap(fabs(pa - 0.5) < 0.005, "each op applied with probability 0.5: %.4f", pa);
	/* min(10, max(0, N(9, 0.5))): mean 9 - 0.5 (phi(2) - 2 (1 - Phi(2))) =
	 * 8.99575, P(10) = 0.02275, P(8.5 < m < 9.5) = 0.68269; 200000
	 * samples, bounds over 4 sd */
	double mean = sum / applied, sd = sqrt(sum2 / applied - mean * mean);
	double p10 = (double)at10 / applied, pin = (double)inside / applied;
	tap(fabs(mean - 8.99575) < 0.006 && sd > 0.45 && sd < 0.5,
	    "magnitude gauss(9, 0.5) clipped: mean %.5f (8.99575), sd %.4f (just under 0.5)", mean,
	    sd);
	tap(fabs(p10 - 0.02275) < 0.0015 && at0 == 0 && fabs(pin - 0.68269) < 0.005,
	    "magnitude: %.4f at the clip 10 (0.0228), %.4f within 9 +- 0.5 (0.6827), %ld at 0",
	    p10, pin, at0);
	double pn = (double)nneg / nsigned;
	tap(nsigned > 40000 && fabs(pn - 0.5) < 0.01, "signed ops negated half the time: %.4f of %ld",
	    pn, nsigned);

	/* mstd 0: the magnitude itself; inc0: the plain list */
	int fixed = 1;
	tap(mim_randaug_parse(&ra, "rand-m7-n3") == 0 && ra.n == 3 && ra.m == 7 && ra.mstd == 0 &&
	    !ra.inc, "rand-m7-n3: 3 ops, m 7, no noise, the plain list");
	list = mim_ra_list(0);
	for (long p = 0; p < 20000; p++) {
		mim_randaug_draw(&ra, &rng, st);
		for (int l = 0; l < ra.n; l++)
			fixed &= in_list(list, st[l].op) && (!st[l].applied || st[l].mag == 7);
	}
	tap(fixed, "mstd 0: every applied op at magnitude 7, ops from the plain list");

	/* the same key, the same draws */
	struct mim_drng a, b;
	struct mim_ra_step sa[MIM_RA_MAXN], sb[MIM_RA_MAXN];
	int same = 1;
	mim_randaug_parse(&ra, "rand-m9-mstd0.5-inc1");
	mim_drng_key(&a, 3, 1, 4, 1);
	mim_drng_key(&b, 3, 1, 4, 1);
	for (int p = 0; p < 100; p++) {
		mim_randaug_draw(&ra, &a, sa);
		mim_randaug_draw(&ra, &b, sb);
		for (int l = 0; l < ra.n; l++)
			same &= sa[l].op == sb[l].op && sa[l].applied == sb[l].applied &&
			    sa[l].mag == sb[l].mag && sa[l].neg == sb[l].neg;
	}
	tap(same, "the same generator key gives the same ops");
}

static void
test_parse(void)
{
	static const char *const bad[] = {
		"foo", "rand-m99", "rand-m11", "rand-m9.5", "rand-mstd-1", "rand-inc2", "rand-n11",
		"rand-w0", "rand-x1", "rand-foo", "rand--m9", "rand-m9-", "rand-", "randx", "",
	};
	struct mim_randaug ra;
	char buf[64];
	int all = 1;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int rc = mim_randaug_parse(&ra, bad[i]);
		all &= rc < 0;
		if (rc >= 0)
			printf("# '%s' accepted\n", bad[i]);
	}
	tap(all, "bad specs refused (magnitude over 10, unknown sections, weights, empty)");
	tap(mim_randaug_parse(&ra, "rand-m99") < 0 &&
	    strstr(mim_errmsg(), "magnitude 99 out of range [0, 10]") != NULL,
	    "rand-m99: '%s'", mim_errmsg());
	tap(mim_randaug_parse(&ra, "none") == 0 && ra.n == 0, "none: off");
	tap(mim_randaug_parse(&ra, "rand") == 0 && ra.n == 2 && ra.m == 10 && ra.mstd == 0 &&
	    !ra.inc, "rand: timm's defaults m 10, n 2, no noise, the plain list");
	mim_randaug_parse(&ra, "rand-inc1-n1-mstd1.5-m3");
	mim_randaug_format(buf, sizeof buf, &ra);
	tap(!strcmp(buf, "rand-m3-mstd1.5-inc1-n1"), "sections in any order: %s", buf);
}

/* a grey picture becomes RGB; n 0 leaves an image alone */
static void
test_grey(void)
{
	struct mim_randaug ra;
	struct mim_drng rng;
	struct mim_ra_step st[MIM_RA_MAXN];
	uint8_t *px = malloc(20 * 20);
	int grey = 1;

	for (int i = 0; i < 400; i++)
		px[i] = (uint8_t)(i * 7);
	struct mim_img im = {20, 20, 1, px};
	mim_randaug_parse(&ra, "rand-m9-n1");
	memcpy(ra.fill, (uint8_t[]){124, 116, 104}, 3);
	mim_drng_key(&rng, 0, 0, 0, 0);
	/* an op that keeps grey grey: find a key whose one op is Invert */
	for (uint64_t k = 0; k < 1000; k++) {
		struct mim_drng r;
		mim_drng_key(&r, k, 0, 0, 0);
		mim_randaug_draw(&ra, &r, st);
		if (st[0].op == MIM_RA_INVERT && st[0].applied) {
			mim_drng_key(&rng, k, 0, 0, 0);
			break;
		}
	}
	int rc = mim_randaug(&im, &ra, MIM_INTERP_BICUBIC, &rng, st);
	for (int i = 0; i < 400; i++)
		grey &= im.px[3 * i] == 255 - (uint8_t)(i * 7) && im.px[3 * i + 1] == im.px[3 * i] &&
		    im.px[3 * i + 2] == im.px[3 * i];
	tap(rc == 0 && im.c == 3 && grey && st[0].op == MIM_RA_INVERT,
	    "a grey picture becomes RGB, then the ops (Invert)");
	free(im.px);
}

int
main(void)
{
	test_parse();
	test_parity();
	test_draws();
	test_grey();
	return tap_done();
}
