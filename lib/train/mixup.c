/* mixup.c -- timm 0.4.12's Mixup (mode 'batch') and label smoothing for
 * fine-tuning (mim/optim.h says what and with which random numbers).
 *
 * timm/data/mixup.py, as the official fine-tuning calls it
 * (Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5,
 * mode='batch', label_smoothing=0.1), correct_lam=True):
 *
 *   _params_per_batch: lam = 1; if rand < mix_prob: cutmix = rand <
 *       switch_prob (both alphas on; only cutmix on: 1), lam =
 *       beta(alpha_of_the_choice)
 *   _mix_batch: lam == 1: nothing. cutmix: rand_bbox(lam) = centre cy =
 *       randint(0, H), cx = randint(0, W), cut_h = int(H sqrt(1-lam)),
 *       cut_w likewise, yl = clip(cy - cut_h//2, 0, H), yh = clip(cy +
 *       cut_h//2, 0, H) (x likewise); lam = 1 - (yh-yl)(xh-xl)/(H W);
 *       x[:, :, yl:yh, xl:xh] = x.flip(0)[:, :, yl:yh, xl:xh].
 *       mixup: x = x*lam + x.flip(0)*(1-lam) (float32, the scalars as
 *       float: x.mul_(lam).add_(x.flip(0).mul_(1 - lam)))
 *   mixup_target: off = smoothing/K, on = 1 - smoothing + off; y1 =
 *       one_hot(target), y2 = one_hot(target.flip(0)); y1*lam + y2*(1-lam)
 */
#include <math.h>
#include <string.h>

#include "mim/optim.h"
#include "mim/pool.h"
#include "../rng.h"

void
mim_ftopt_default(struct mim_ftopt *o)
{
	memset(o, 0, sizeof *o);
	o->smoothing = 0.1;
	o->mixup = 0.8;
	o->cutmix = 1.0;
	o->mix_prob = 1.0;
	o->switch_prob = 0.5;
}

static double
unit(uint64_t s[4])
{
	return mim_u64_to_unit(mim_xoshiro256ss(s));
}

/* N(0,1), Marsaglia's polar method (one of the pair; the other dropped so
 * that every draw uses a fixed number of generator outputs per try) */
static double
normal(uint64_t s[4])
{
	for (;;) {
		double u = 2 * unit(s) - 1, v = 2 * unit(s) - 1, q = u * u + v * v;
		if (q > 0 && q < 1)
			return u * sqrt(-2 * log(q) / q);
	}
}

/* Gamma(a, 1): Marsaglia and Tsang (2000); a < 1 through Gamma(a + 1) *
 * u^(1/a) */
static double
gamma_draw(uint64_t s[4], double a)
{
	if (a < 1) {
		double g = gamma_draw(s, a + 1), u;
		while ((u = unit(s)) == 0)
			;
		return g * pow(u, 1 / a);
	}
	double d = a - 1.0 / 3, c = 1 / sqrt(9 * d);
	for (;;) {
		double x = normal(s), v = 1 + c * x;
		if (v <= 0)
			continue;
		v = v * v * v;
		double u = unit(s);
		if (u < 1 - 0.0331 * x * x * x * x || log(u) < 0.5 * x * x + d * (1 - v + log(v)))
			return d * v;
	}
}

double
mim_mix_beta(uint64_t s[4], double a)
{
	double x = gamma_draw(s, a), y = gamma_draw(s, a);
	return x + y > 0 ? x / (x + y) : 0.5;
}

static int
clip(int v, int hi)
{
	return v < 0 ? 0 : v > hi ? hi : v;
}

void
mim_mix_draw(const struct mim_ftopt *o, uint64_t seed, int H, int W, struct mim_mix *mx)
{
	uint64_t s[4], k = seed ^ 0x6d69787570ULL;	/* "mixup": a stream of its own */

	for (int i = 0; i < 4; i++)
		s[i] = mim_splitmix64(&k);
	memset(mx, 0, sizeof *mx);
	mx->lam = 1;
	if (!(o->mixup > 0 || o->cutmix > 0) || !(unit(s) < o->mix_prob))
		return;
	if (o->mixup > 0 && o->cutmix > 0)
		mx->cutmix = unit(s) < o->switch_prob;
	else
		mx->cutmix = o->cutmix > 0;
	mx->lam = mim_mix_beta(s, mx->cutmix ? o->cutmix : o->mixup);
	if (mx->lam == 1 || !mx->cutmix) {
		mx->cutmix = mx->lam == 1 ? 0 : mx->cutmix;
		return;
	}
	double ratio = sqrt(1 - mx->lam);
	int ch = (int)(H * ratio), cw = (int)(W * ratio);
	int cy = (int)(unit(s) * H), cx = (int)(unit(s) * W);
	mx->yl = clip(cy - ch / 2, H);
	mx->yh = clip(cy + ch / 2, H);
	mx->xl = clip(cx - cw / 2, W);
	mx->xh = clip(cx + cw / 2, W);
	mx->lam = 1.0 - (double)((mx->yh - mx->yl) * (mx->xh - mx->xl)) / (double)(H * W);
}

struct mixjob {
	const struct mim_mix *mx;
	int B, C, H, W;
	const float *img;
	float *out;
};

/* image b of the batch, mixed (elementwise: any split gives the same) */
static void
mix_one(void *ctx, int b)
{
	const struct mixjob *j = ctx;
	const struct mim_mix *mx = j->mx;
	int C = j->C, H = j->H, W = j->W;
	size_t per = (size_t)C * H * W;
	const float *x = j->img + b * per, *f = j->img + (size_t)(j->B - 1 - b) * per;
	float *y = j->out + b * per;
	const float lam = (float)mx->lam, rest = (float)(1.0 - mx->lam);

	memcpy(y, x, per * sizeof *y);
	if (mx->lam == 1)
		return;
	if (mx->cutmix) {
		for (int c = 0; c < C; c++)
			for (int i = mx->yl; i < mx->yh; i++)
				memcpy(y + ((size_t)c * H + i) * W + mx->xl,
				    f + ((size_t)c * H + i) * W + mx->xl,
				    (size_t)(mx->xh - mx->xl) * sizeof *y);
		return;
	}
	for (size_t i = 0; i < per; i++) {
		/* two roundings, then the sum: torch's mul_, mul_, add_ */
		volatile float a = x[i] * lam, r = f[i] * rest;
		y[i] = a + r;
	}
}

void
mim_mix_images(const struct mim_mix *mx, int B, int C, int H, int W, const float *img,
    float *out)
{
	struct mixjob j = {mx, B, C, H, W, img, out};

	mim_parallel(B, mix_one, &j);
}

void
mim_mix_targets(const struct mim_mix *mx, double smoothing, int B, int K,
    const int64_t *label, float *target)
{
	const float off = (float)(smoothing / K), on = (float)(1.0 - smoothing + smoothing / K);
	const float lam = (float)mx->lam, rest = (float)(1.0 - mx->lam);

	for (int b = 0; b < B; b++) {
		int64_t y1 = label[b], y2 = label[B - 1 - b];
		for (int k = 0; k < K; k++) {
			volatile float a = (k == y1 ? on : off) * lam, r = (k == y2 ? on : off) * rest;
			target[(size_t)b * K + k] = a + r;
		}
	}
}

int
mim_labels_check(const int64_t *label, int B, int K)
{
	for (int b = 0; b < B; b++)
		if (label[b] < 0 || label[b] >= K)
			return mim_seterr("label %lld of image %d is out of range [0, %d) (the "
			    "classifier has %d classes)", (long long)label[b], b, K, K);
	return 0;
}
