/* loss.c -- the SimMIM reconstruction loss (models/simmim.py, reference §6):
 *
 *   M    = mask upsampled by p (nearest) to (B,1,H,W); all ones for
 *          region "all"
 *   loss = sum_{b,c,y,x} f(img - pred) * M / (sum(M) + 1e-5) / 3
 *
 * f = |d| (l1, the official one), d^2 (l2, F.mse_loss), or smooth-l1
 * (F.smooth_l1_loss: 0.5 d^2 / beta where |d| < beta, else |d| - beta/2).
 * So the loss is the mean error per masked pixel and channel over the
 * whole batch (not per sample), and 0 when nothing is masked. Sums are in
 * double, one job per (sample, channel), added in order. */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>

#include "mim/gemm.h"
#include "mim/model.h"
#include "mim/prof.h"

/* ---- names ---------------------------------------------------------------- */

static const char *const loss_names[] = {
	[MIM_LOSS_L1] = "l1", [MIM_LOSS_L2] = "l2", [MIM_LOSS_SMOOTH_L1] = "smooth-l1",
};
static const char *const region_names[] = {
	[MIM_REGION_MASKED] = "masked", [MIM_REGION_ALL] = "all",
};
#define N(a) (int)(sizeof a / sizeof a[0])

static int
lookup(const char *const *names, int n, const char *name)
{
	for (int i = 0; name && i < n; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}

int mim_loss_parse(const char *name) { return lookup(loss_names, N(loss_names), name); }
int mim_region_parse(const char *name) { return lookup(region_names, N(region_names), name); }

const char *
mim_loss_name(enum mim_loss_kind k)
{
	return (unsigned)k < (unsigned)N(loss_names) ? loss_names[k] : NULL;
}

const char *
mim_region_name(enum mim_loss_region r)
{
	return (unsigned)r < (unsigned)N(region_names) ? region_names[r] : NULL;
}

const char *mim_loss_choices(void) { return "l1, l2 or smooth-l1"; }
const char *mim_region_choices(void) { return "masked or all"; }

/* ---- what it compares ------------------------------------------------------- */

/* The loss scores pixels: pred must be the images' shape (what the linear
 * head predicts, mim_pred_shape). */
int
mim_pred_check(const int64_t img[4], int pred_ndim, const int64_t *pred)
{
	char got[128], want[128];

	if (pred_ndim != 4 || memcmp(pred, img, 4 * sizeof(int64_t)) != 0)
		return mim_seterr("tensor 'pred': shape %s, want the image's %s",
		    mim_shape_str(got, sizeof got, pred_ndim, pred),
		    mim_shape_str(want, sizeof want, 4, img));
	return 0;
}

/* ---- the loss --------------------------------------------------------------- */

struct lj {
	const struct mim_lossopt *o;
	int H, W, p, mw;
	const float *img, *pred;
	const uint8_t *mask;
	float *dpred;
	double *part;
	float g;	/* d loss / d f per pixel: 1 / (sum(M) + 1e-5) / 3 */
	int pass;
};

static double
f_of(const struct mim_lossopt *o, double d)
{
	double a = fabs(d);
	switch (o->kind) {
	case MIM_LOSS_L2:
		return d * d;
	case MIM_LOSS_SMOOTH_L1:
		if (o->beta > 0 && a < o->beta)
			return 0.5 * d * d / o->beta;
		return a - 0.5 * (o->beta > 0 ? o->beta : 0);
	default:
		return a;
	}
}

/* d f / d pred, with d = img - pred */
static float
df_of(const struct mim_lossopt *o, float d)
{
	float s = d > 0 ? -1.0f : d < 0 ? 1.0f : 0.0f;	/* sign(pred - img) */
	switch (o->kind) {
	case MIM_LOSS_L2:
		return -2.0f * d;
	case MIM_LOSS_SMOOTH_L1:
		if (o->beta > 0 && fabsf(d) < o->beta)
			return -d / (float)o->beta;
		return s;
	default:
		return s;
	}
}

static void
job(void *p, int i)
{
	const struct lj *j = p;
	int b = i / 3, H = j->H, W = j->W;
	size_t plane = (size_t)H * W, base = (size_t)i * plane;
	double s = 0;

	for (int y = 0; y < H; y++) {
		const uint8_t *mrow = j->mask ? j->mask + ((size_t)b * (H / j->p) + y / j->p) * j->mw : NULL;
		for (int x = 0; x < W; x++) {
			size_t e = base + (size_t)y * W + x;
			int on = j->o->region == MIM_REGION_ALL || (mrow && mrow[x / j->p]);
			float d = j->img[e] - j->pred[e];
			if (j->pass == 0) {
				if (on)
					s += f_of(j->o, d);
			} else {
				j->dpred[e] = on ? df_of(j->o, d) * j->g : 0.0f;
			}
		}
	}
	if (j->pass == 0)
		j->part[i] = s;
}

double
mim_loss(const struct mim_lossopt *o, int B, int H, int W, int p,
    const float *img, const uint8_t *mask, const float *pred, float *dpred)
{
	struct lj j = {o, H, W, p, W / p, img, pred, mask, dpred, NULL, 0, 0};
	double count, sum = 0, t = MIM_PROF_BEGIN();

	/* sum(M): pixels of the one-channel mask */
	if (o->region == MIM_REGION_ALL) {
		count = (double)B * H * W;
	} else {
		size_t n = 0, cells = (size_t)B * (H / p) * (W / p);
		for (size_t k = 0; mask && k < cells; k++)
			n += mask[k] != 0;
		count = (double)n * p * p;
	}
	if (!(j.part = malloc((size_t)B * 3 * sizeof *j.part))) {
		MIM_PROF_END("loss", t, 0);
		mim_seterr("out of memory (the loss of %d images)", B);
		errno = ENOMEM;
		return NAN;
	}
	mim_parallel(B * 3, job, &j);
	for (int i = 0; i < B * 3; i++)
		sum += j.part[i];
	free(j.part);
	/* official: (loss * M).sum() / (M.sum() + 1e-5) / in_chans, float32 */
	float denom = (float)(count + 1e-5);
	if (dpred) {
		j.g = (1.0f / 3.0f) / denom;
		j.pass = 1;
		mim_parallel(B * 3, job, &j);
	}
	MIM_PROF_END("loss", t, 0);
	return sum / denom / 3.0;
}

/* SoftTargetCrossEntropy (timm 0.4.12 loss/cross_entropy.py):
 *   loss = sum(-target * log_softmax(x, -1), -1).mean()
 * in double per row; d loss / d x[b] = (softmax(x[b]) * sum(target[b]) -
 * target[b]) / B. */
double
mim_soft_ce(int B, int K, const float *logits, const float *target, float *dlogits)
{
	double total = 0;

	for (int b = 0; b < B; b++) {
		const float *x = logits + (size_t)b * K, *t = target + (size_t)b * K;
		double mx = -INFINITY, se = 0, ts = 0, row = 0;
		for (int k = 0; k < K; k++)
			mx = x[k] > mx ? x[k] : mx;
		for (int k = 0; k < K; k++)
			se += exp((double)x[k] - mx);
		double lse = mx + log(se);
		for (int k = 0; k < K; k++) {
			row -= (double)t[k] * ((double)x[k] - lse);
			ts += t[k];
		}
		total += row;
		if (dlogits)
			for (int k = 0; k < K; k++)
				dlogits[(size_t)b * K + k] = (float)((exp((double)x[k] - lse) * ts - t[k]) / B);
	}
	return total / B;
}
