/* loss.c -- the SimMIM reconstruction loss (models/simmim.py, reference §6)
 * and its variants over the targets of target.c:
 *
 *   M    = mask upsampled by p (nearest) to (B,1,H,W); all ones for
 *          region "all". At prediction resolution H/d (target.c), M is
 *          1 where every patch under a target pixel is masked.
 *   T    = the target (B,3,H/d,W/d): the image at d = 1, else its d x d
 *          means; with norm_pix P normalised per P x P window
 *   pixel: loss = sum_{b,c,y,x} f(T - pred) * M / (sum(M) + 1e-5) / 3
 *   bins:  loss = sum_{b,c,y,x} CE_c * M / (sum(M) + 1e-5) / 3
 *          CE_c = logsumexp_k pred[b,cK+k,y,x] - pred[b,cK+label_c,y,x]
 *   clusters: loss = sum_{b,y,x} CE * M / (sum(M) + 1e-5)
 *          CE = logsumexp_k pred[b,k,y,x] - pred[b,label,y,x]
 *
 * f = |d| (l1, the official one), d^2 (l2, F.mse_loss), or smooth-l1
 * (F.smooth_l1_loss: 0.5 d^2 / beta where |d| < beta, else |d| - beta/2).
 * So the loss is the mean error (or cross-entropy) per masked target pixel
 * and colour channel over the whole batch (not per sample), and 0 when
 * nothing is masked. Sums are in double, one job per (sample, channel),
 * added in order; the 1x pixel target is the official loss, unchanged. */

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
	[MIM_LOSS_CE] = "ce",
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

const char *mim_loss_choices(void) { return "l1, l2, smooth-l1 or ce"; }
const char *mim_region_choices(void) { return "masked or all"; }

/* ---- what it compares ------------------------------------------------------- */

/* The loss scores pixels: pred must be the images' shape (what the linear
 * head predicts, mim_pred_shape), at 1/d of the resolution with a
 * target's channels. */
int
mim_pred_check(const int64_t img[4], int pred_ndim, const int64_t *pred)
{
	char got[128], want[128];
	int64_t d = pred_ndim == 4 && pred[2] > 0 ? img[2] / pred[2] : 0;

	if (pred_ndim != 4 || pred[0] != img[0] || pred[1] < 1 || d < 1 || img[2] % pred[2] ||
	    pred[2] * d != img[2] || pred[3] * d != img[3])
		return mim_seterr("tensor 'pred': shape %s, want the image's %s at 1/d of its "
		    "resolution, d dividing its side", mim_shape_str(got, sizeof got, pred_ndim, pred),
		    mim_shape_str(want, sizeof want, 4, img));
	return 0;
}

int
mim_loss_check(const struct mim_lossopt *o, const struct mim_target *t)
{
	const char *tn = mim_target_name(t->kind), *ln = mim_loss_name(o->kind);

	if (!tn || !ln)
		return mim_seterr("loss: unknown %s", tn ? "loss kind" : "target");
	if (t->div < 0 || t->div > 1024)
		return mim_seterr("loss: resolution 1/%d is out of range", t->div);
	if (t->kind == MIM_TARGET_PIXEL) {
		if (o->kind == MIM_LOSS_CE)
			return mim_seterr("loss ce is for the classification targets (bins, clusters): "
			    "the target pixel is scored by l1, l2 or smooth-l1");
		if (t->norm_pix && (t->norm_pix < 3 || t->norm_pix % 2 == 0))
			return mim_seterr("norm_pix %d: want an odd window of 3 or more", t->norm_pix);
		return 0;
	}
	if (o->kind == MIM_LOSS_L2 || o->kind == MIM_LOSS_SMOOTH_L1)
		return mim_seterr("loss %s is a regression, but the target %s is a classification, "
		    "scored by ce", ln, tn);
	if (t->norm_pix)
		return mim_seterr("norm_pix is for the pixel target, not %s", tn);
	if (t->K < 2 || t->K > 65536)
		return mim_seterr("target %s: %d classes is out of range [2, 65536]", tn, t->K);
	if (t->kind == MIM_TARGET_CLUSTERS && !t->centres)
		return mim_seterr("target clusters: no colour centres (mim-cluster(1) fits them)");
	return 0;
}

/* ---- the loss --------------------------------------------------------------- */

struct lj {
	const struct mim_lossopt *o;
	int G, K, C;		/* label groups (3 bins, 1 clusters), classes, pred channels */
	size_t hw;		/* pixels of a target plane */
	const float *tgt, *pred;	/* tgt (B,3,h,w), pred (B,C,h,w) */
	const int32_t *lab;	/* (B,G,h,w) */
	const uint8_t *on;	/* (B,h,w) 1 = scored; NULL: every pixel */
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

/* regression: job i = (sample, channel) */
static void
job(void *p, int i)
{
	const struct lj *j = p;
	size_t hw = j->hw, base = (size_t)i * hw;
	const uint8_t *on = j->on ? j->on + (size_t)(i / 3) * hw : NULL;
	double s = 0;

	for (size_t e = 0; e < hw; e++) {
		float d = j->tgt[base + e] - j->pred[base + e];
		int in = !on || on[e];
		if (j->pass == 0) {
			if (in)
				s += f_of(j->o, d);
		} else {
			j->dpred[base + e] = in ? df_of(j->o, d) * j->g : 0.0f;
		}
	}
	if (j->pass == 0)
		j->part[i] = s;
}

/* classification: job i = (sample, label group); the group's K logits of
 * pixel e are pred[(b*C + c*K + k)*hw + e] */
static void
ce_job(void *p, int i)
{
	const struct lj *j = p;
	int b = i / j->G, c = i % j->G, K = j->K;
	size_t hw = j->hw;
	const uint8_t *on = j->on ? j->on + (size_t)b * hw : NULL;
	const float *l = j->pred + ((size_t)b * j->C + (size_t)c * K) * hw;
	float *dl = j->dpred ? j->dpred + ((size_t)b * j->C + (size_t)c * K) * hw : NULL;
	const int32_t *lab = j->lab + (size_t)i * hw;
	double s = 0;

	for (size_t e = 0; e < hw; e++) {
		if (on && !on[e]) {
			if (j->pass)
				for (int k = 0; k < K; k++)
					dl[k * hw + e] = 0.0f;
			continue;
		}
		double mx = -INFINITY, se = 0;
		for (int k = 0; k < K; k++)
			mx = fmax(mx, l[k * hw + e]);
		for (int k = 0; k < K; k++)
			se += exp(l[k * hw + e] - mx);
		double lse = mx + log(se);
		if (j->pass == 0) {
			s += lse - l[(size_t)lab[e] * hw + e];
			continue;
		}
		for (int k = 0; k < K; k++)
			dl[k * hw + e] = (float)(exp(l[k * hw + e] - lse) - (k == lab[e])) * j->g;
	}
	if (j->pass == 0)
		j->part[i] = s;
}

double
mim_loss(const struct mim_lossopt *o, int B, int H, int W, int p,
    const float *img, const uint8_t *mask, const float *pred, float *dpred)
{
	return mim_target_loss(o, NULL, B, H, W, p, img, mask, pred, dpred);
}

double
mim_target_loss(const struct mim_lossopt *o, const struct mim_target *tt, int B, int H, int W,
    int p, const float *img, const uint8_t *mask, const float *pred, float *dpred)
{
	static const struct mim_target pixels = {MIM_TARGET_PIXEL, 1, 0, 0, NULL};
	const struct mim_target *t = tt ? tt : &pixels;
	int d = t->div > 1 ? t->div : 1, cls = t->kind != MIM_TARGET_PIXEL;
	int h = H / d, w = W / d, G = t->kind == MIM_TARGET_BINS ? 3 : 1;
	size_t hw = (size_t)h * w;
	struct lj j = {o, G, t->K, mim_target_channels(t), hw, img, pred, NULL, NULL, dpred,
	    NULL, 0, 0};
	double count = 0, sum = 0, tm = MIM_PROF_BEGIN();
	float *pooled = NULL, *normed = NULL;
	int32_t *lab = NULL;
	uint8_t *on = NULL;
	int njobs = cls ? B * G : B * 3;

	if (mim_loss_check(o, t) < 0 || H % d || W % d || (mask && (p < 1 || H % p || W % p))) {
		if (H % d || W % d || (mask && (p < 1 || H % p || W % p)))
			mim_seterr("loss: %dx%d images at 1/%d with patch %d", H, W, d, p);
		errno = EINVAL;
		MIM_PROF_END("loss", tm, 0);
		return NAN;
	}
	int fail = !(j.part = malloc((size_t)njobs * sizeof *j.part));
	if (d > 1 || t->norm_pix || cls)
		fail |= !(pooled = malloc((size_t)B * 3 * hw * sizeof *pooled));
	if (t->norm_pix)
		fail |= !(normed = malloc((size_t)B * 3 * hw * sizeof *normed));
	if (cls)
		fail |= !(lab = malloc((size_t)B * G * hw * sizeof *lab));
	if (o->region == MIM_REGION_MASKED)
		fail |= !(on = calloc((size_t)B * hw, 1));
	if (fail) {
		mim_seterr("out of memory (the loss of %d images)", B);
		errno = ENOMEM;
		sum = NAN;
		goto done;
	}
	/* the target at its resolution */
	if (pooled && d > 1)
		mim_target_pool(B, H, W, d, img, pooled);
	else if (pooled)
		memcpy(pooled, img, (size_t)B * 3 * hw * sizeof *pooled);
	if (normed)
		mim_target_norm(B, h, w, t->norm_pix, pooled, normed);
	j.tgt = normed ? normed : pooled ? pooled : img;
	if (cls)
		mim_target_labels(t, B, h, w, pooled, lab);
	j.lab = lab;
	/* sum(M): target pixels of the one-channel mask */
	if (o->region == MIM_REGION_ALL) {
		count = (double)B * hw;
	} else {
		if (mask)
			mim_target_mask(B, H, W, p, d, mask, on);
		size_t n = 0;
		for (size_t k = 0; k < (size_t)B * hw; k++)
			n += on[k];
		count = (double)n;
	}
	j.on = on;
	void (*fn)(void *, int) = cls ? ce_job : job;
	mim_parallel(njobs, fn, &j);
	for (int i = 0; i < njobs; i++)
		sum += j.part[i];
	/* official: (loss * M).sum() / (M.sum() + 1e-5) / in_chans, float32;
	 * one classification per pixel for clusters: no / 3 */
	float denom = (float)(count + 1e-5);
	double per = t->kind == MIM_TARGET_CLUSTERS ? 1.0 : 3.0;
	if (dpred) {
		j.g = t->kind == MIM_TARGET_CLUSTERS ? 1.0f / denom : (1.0f / 3.0f) / denom;
		j.pass = 1;
		mim_parallel(njobs, fn, &j);
	}
	sum = sum / denom / per;
done:
	free(j.part);
	free(pooled);
	free(normed);
	free(lab);
	free(on);
	MIM_PROF_END("loss", tm, 0);
	return sum;
}

double
mim_model_loss(const struct mim_model *m, const struct mim_lossopt *o, int B,
    const float *img, const uint8_t *mask, const float *pred, float *dpred)
{
	struct mim_target t;

	mim_target_of(m, &t);
	return mim_target_loss(o, &t, B, m->cfg.img_size, m->cfg.img_size, m->cfg.patch_size, img, mask,
	    pred, dpred);
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
