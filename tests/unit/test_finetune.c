/* test_finetune.c -- fine-tuning pieces that the PyTorch parity of
 * t-finetune.sh cannot see: the soft-target cross-entropy against central
 * differences, and our own mixup draws (lib/train/mixup.c): the Beta
 * sampler's moments, the frequencies of mixing and of cutmix, the box and
 * its corrected lambda, determinism; the mixing and targets on small
 * hand-checked cases. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "mim.h"
#include "gradcheck.h"

enum { B = 3, K = 5 };
static double xd[B * K], td[B * K];

/* sum_b sum_k -t log_softmax(x) / B in double */
static double
ce_ref(void)
{
	double s = 0;
	for (int b = 0; b < B; b++) {
		double mx = -INFINITY, se = 0;
		for (int k = 0; k < K; k++)
			mx = fmax(mx, xd[b * K + k]);
		for (int k = 0; k < K; k++)
			se += exp(xd[b * K + k] - mx);
		for (int k = 0; k < K; k++)
			s -= td[b * K + k] * (xd[b * K + k] - mx - log(se));
	}
	return s / B;
}

static void
test_soft_ce(void)
{
	float x[B * K], t[B * K], d[B * K];

	randfill(x, xd, B * K, 3.0f);
	for (int b = 0; b < B; b++) {	/* a soft target: positive, rows sum to 1 */
		double s = 0;
		for (int k = 0; k < K; k++)
			s += (td[b * K + k] = 0.1 + fabs(frand()));
		for (int k = 0; k < K; k++)
			t[b * K + k] = (float)(td[b * K + k] /= s);
	}
	for (int i = 0; i < B * K; i++)
		td[i] = t[i];
	double l = mim_soft_ce(B, K, x, t, d);
	tap(fabs(l - ce_ref()) < 1e-12 * fabs(ce_ref()) + 1e-12, "soft CE: loss %.9g = reference %.9g", l,
	    ce_ref());
	gradcheck("soft CE", d, xd, B * K, ce_ref, 1e-6);
}

static void
test_beta(double a)
{
	uint64_t s[4] = {1, 2, 3, 4};
	int n = 40000, in = 1, below = 0;
	double m = 0, v = 0;

	for (int i = 0; i < n; i++) {
		double x = mim_mix_beta(s, a);
		in &= x >= 0 && x <= 1;
		m += x;
		v += x * x;
		below += x < 0.25;
	}
	m /= n;
	v = v / n - m * m;
	double want = 1 / (4 * (2 * a + 1));	/* Beta(a, a): mean 1/2 */
	/* the standard error of the mean is sqrt(want/n) ~ 0.0016 */
	tap(in && fabs(m - 0.5) < 0.01 && fabs(v - want) < 0.05 * want,
	    "Beta(%g,%g): %d draws in [0,1], mean %.4f (0.5), variance %.5f (%.5f)", a, a, n, m, v,
	    want);
	if (a == 1)	/* uniform: P(x < 1/4) = 1/4 */
		tap(fabs(below / (double)n - 0.25) < 0.01, "Beta(1,1) is uniform: P(x < 0.25) = %.4f",
		    below / (double)n);
}

static void
test_draws(void)
{
	struct mim_ftopt o;
	struct mim_mix mx, my;
	int n = 4000, mixed = 0, cut = 0, boxes = 1, same = 1;

	mim_ftopt_default(&o);
	o.mix_prob = 0.6;
	for (int i = 0; i < n; i++) {
		uint64_t seed = mim_train_seed(7, i, 0);
		mim_mix_draw(&o, seed, 28, 24, &mx);
		mim_mix_draw(&o, seed, 28, 24, &my);
		same &= memcmp(&mx, &my, sizeof mx) == 0;
		mixed += mx.lam != 1;
		cut += mx.cutmix;
		if (mx.cutmix)
			boxes &= mx.yl >= 0 && mx.yl <= mx.yh && mx.yh <= 28 && mx.xl >= 0 &&
			    mx.xl <= mx.xh && mx.xh <= 24 &&
			    mx.lam == 1 - (double)((mx.yh - mx.yl) * (mx.xh - mx.xl)) / (28 * 24);
	}
	tap(same, "a batch's draws depend on its seed alone");
	tap(fabs(mixed / (double)n - 0.6) < 0.03, "mix_prob 0.6: %.3f of the batches mixed",
	    mixed / (double)n);
	tap(fabs(cut / (double)mixed - 0.5) < 0.04, "switch_prob 0.5: %.3f of the mixed ones cut",
	    cut / (double)mixed);
	tap(boxes, "every box inside the image, lambda = 1 - box area / image area");
	o.mixup = 0;
	o.mix_prob = 1;
	mim_mix_draw(&o, 3, 28, 28, &mx);
	tap(mx.cutmix, "only cutmix on: cutmix");
	o.cutmix = 0;
	mim_mix_draw(&o, 3, 28, 28, &mx);
	tap(mx.lam == 1 && !mx.cutmix, "both alphas 0: nothing mixed");
}

static void
test_mixing(void)
{
	/* B 2, C 1, 2 x 3 images: 0..5 and 10..15 */
	float img[12], out[12], t[2 * 3];
	int64_t lab[2] = {2, 0};
	for (int i = 0; i < 6; i++) {
		img[i] = (float)i;
		img[6 + i] = (float)(10 + i);
	}
	struct mim_mix mx = {.lam = 0.25};
	mim_mix_images(&mx, 2, 1, 2, 3, img, out);
	tap(out[0] == 0.25f * 0 + 0.75f * 10 && out[7] == 0.25f * 11 + 0.75f * 1,
	    "mixup: x*lam + x.flip(0)*(1-lam)");
	mx = (struct mim_mix){.lam = 0.5, .cutmix = 1, .yl = 1, .yh = 2, .xl = 0, .xh = 3};
	mim_mix_images(&mx, 2, 1, 2, 3, img, out);
	tap(out[0] == 0 && out[2] == 2 && out[3] == 13 && out[5] == 15 && out[9] == 3,
	    "cutmix: the box [1,2) x [0,3) from the flipped batch, the rest kept");
	mx = (struct mim_mix){.lam = 0.25};
	mim_mix_targets(&mx, 0.3, 2, 3, lab, t);
	float off = 0.1f, on = 0.8f;
	tap(t[0] == off * 0.25f + on * 0.75f && t[2] == on * 0.25f + off * 0.75f &&
	    t[1] == off * 0.25f + off * 0.75f,
	    "targets: smoothed one-hots (on %.2f, off %.2f) mixed with the flipped labels", on, off);
	tap(mim_labels_check(lab, 2, 3) == 0 && mim_labels_check(lab, 2, 2) < 0 &&
	    strstr(mim_errmsg(), "label 2 of image 0 is out of range [0, 2)"),
	    "labels out of range are refused: %s", mim_errmsg());
}

int
main(void)
{
	test_soft_ce();
	test_beta(0.8);
	test_beta(1.0);
	test_draws();
	test_mixing();
	return tap_done();
}
