/* test_target.c -- the targets and losses of lib/model/target.c and
 * loss.c against references:
 *   no arguments: d loss / d pred of every target (pixel l1/l2/smooth-l1,
 *     norm_pix, bins, clusters; resolutions 1, 2, 4) against the central
 *     differences of a double-precision loss; the 1x pixel loss is
 *     mim_loss's, bit for bit; the k-means; then the committed PyTorch
 *     dump of tests/ref/target_ref.py (tests/ref/target_ref.safetensors);
 *   --compare REF: the same parity against another dump of target_ref.py.
 * Parity per case: the target (pooled, normalised), the mask at the
 * target's resolution and the labels exactly or at max |mim - ref| / max
 * |ref| <= 1e-4, the loss and d loss / d pred at <= 1e-4. */
#include <jansson.h>
#include <string.h>

#include "mim.h"
#include "mim/view.h"
#include "gradcheck.h"

#define rel relerr_f

/* ---- gradient checks against a double-precision loss ----------------------- */

static struct {
	struct mim_lossopt o;
	struct mim_target t;
	int B, C, hw, G;
	const double *tgt;	/* (B,3,h,w) */
	const int32_t *lab;	/* (B,G,h,w) */
	const uint8_t *on;	/* (B,h,w) */
	double *x;		/* pred */
} g;

static double
Lref(void)
{
	double s = 0, cnt = 0;
	int K = g.t.K;

	for (int k = 0; k < g.B * g.hw; k++)
		cnt += g.on[k];
	for (int b = 0; b < g.B; b++)
		for (int e = 0; e < g.hw; e++) {
			if (!g.on[b * g.hw + e])
				continue;
			if (g.t.kind == MIM_TARGET_PIXEL) {
				for (int c = 0; c < 3; c++) {
					size_t i = ((size_t)b * 3 + c) * g.hw + e;
					double d = g.tgt[i] - g.x[i], a = fabs(d);
					s += g.o.kind == MIM_LOSS_L2 ? d * d :
					    g.o.kind == MIM_LOSS_SMOOTH_L1 ? (a < g.o.beta ? 0.5 * d * d / g.o.beta :
					    a - 0.5 * g.o.beta) : a;
				}
				continue;
			}
			for (int c = 0; c < g.G; c++) {
				const double *l = g.x + ((size_t)b * g.C + (size_t)c * K) * g.hw + e;
				double se = 0;
				for (int k = 0; k < K; k++)
					se += exp(l[(size_t)k * g.hw]);
				s += log(se) - l[(size_t)g.lab[((size_t)b * g.G + c) * g.hw + e] * g.hw];
			}
		}
	return s / (cnt + 1e-5) / (g.t.kind == MIM_TARGET_CLUSTERS ? 1 : 3);
}

static void
check_grad(const char *what, enum mim_loss_kind kind, struct mim_target t)
{
	enum { B = 2, H = 8, P = 2 };
	int d = t.div, h = H / d, hw = h * h, C = mim_target_channels(&t);
	size_t n = (size_t)B * C * hw;
	float *img = fzero((size_t)B * 3 * H * H), *pred = fzero(n), *dpred = fzero(n);
	float *pooled = fzero((size_t)B * 3 * hw), *normed = fzero((size_t)B * 3 * hw);
	uint8_t mask[B * (H / P) * (H / P)], on[B * 64];
	int32_t *lab = calloc((size_t)B * 3 * hw, sizeof *lab);
	double *tgt = malloc((size_t)B * 3 * hw * sizeof *tgt), *x = malloc(n * sizeof *x);

	randfill(img, NULL, (size_t)B * 3 * H * H, 2.0f);
	randfill(pred, x, n, t.kind == MIM_TARGET_PIXEL ? 2.0f : 3.0f);
	/* masked in 2x2-patch blocks (so that d = 4 has masked pixels), one
	 * patch of a masked block left visible */
	for (int i = 0; i < (int)sizeof mask; i++) {
		int b = i / 16, py = i / 4 % 4, px = i % 4;
		mask[i] = ((py / 2) * 2 + px / 2 + b) % 3 != 1 && i != 16 * b + 5;
	}
	g.o = (struct mim_lossopt){kind, MIM_REGION_MASKED, 0.7};
	g.t = t;
	double l = mim_target_loss(&g.o, &t, B, H, H, P, img, mask, pred, dpred);
	mim_target_pool(B, H, H, d, img, pooled);
	if (t.norm_pix)
		mim_target_norm(B, h, h, t.norm_pix, pooled, normed);
	for (size_t i = 0; i < (size_t)B * 3 * hw; i++)
		tgt[i] = t.norm_pix ? normed[i] : pooled[i];
	if (t.kind != MIM_TARGET_PIXEL)
		mim_target_labels(&t, B, h, h, pooled, lab);
	mim_target_mask(B, H, H, P, d, mask, on);
	g.B = B, g.C = C, g.hw = hw, g.G = t.kind == MIM_TARGET_BINS ? 3 : 1;
	g.tgt = tgt, g.lab = lab, g.on = on, g.x = x;
	double lr = Lref();
	tap(fabs(l - lr) <= 1e-5 * fabs(lr) && lr > 0, "%s: loss %.6f vs double %.6f", what, l, lr);
	gradcheck(what, dpred, x, n, Lref, 1e-4);
	free(img), free(pred), free(dpred), free(pooled), free(normed), free(lab), free(tgt), free(x);
}

static void
test_grads(void)
{
	static const float centres[5 * 3] = {0, 0, 0, 255, 255, 255, 200, 30, 40, 20, 180, 60, 90, 90, 220};
	for (int d = 1; d <= 4; d *= 2) {
		char w[64];
		snprintf(w, sizeof w, "pixel l1 d%d", d);
		check_grad(w, MIM_LOSS_L1, (struct mim_target){MIM_TARGET_PIXEL, d, 0, 0, NULL});
		snprintf(w, sizeof w, "pixel smooth-l1 d%d", d);
		check_grad(w, MIM_LOSS_SMOOTH_L1, (struct mim_target){MIM_TARGET_PIXEL, d, 0, 0, NULL});
		snprintf(w, sizeof w, "norm_pix 3, l2 d%d", d);
		check_grad(w, MIM_LOSS_L2, (struct mim_target){MIM_TARGET_PIXEL, d, 0, 3, NULL});
		snprintf(w, sizeof w, "bins 4 d%d", d);
		check_grad(w, MIM_LOSS_CE, (struct mim_target){MIM_TARGET_BINS, d, 4, 0, NULL});
		snprintf(w, sizeof w, "clusters 5 d%d", d);
		check_grad(w, MIM_LOSS_CE, (struct mim_target){MIM_TARGET_CLUSTERS, d, 5, 0, centres});
	}
}

/* the 1x pixel target through mim_target_loss is mim_loss, bit for bit */
static void
test_official(void)
{
	enum { B = 3, H = 16, P = 4 };
	size_t n = (size_t)B * 3 * H * H;
	float *img = fzero(n), *pred = fzero(n), *d1 = fzero(n), *d2 = fzero(n);
	uint8_t mask[B * 16];
	struct mim_lossopt o = {MIM_LOSS_L1, MIM_REGION_MASKED, 1.0};
	struct mim_target t = {MIM_TARGET_PIXEL, 1, 0, 0, NULL};

	randfill(img, NULL, n, 1.0f);
	randfill(pred, NULL, n, 1.0f);
	for (int i = 0; i < B * 16; i++)
		mask[i] = (i * 7) % 5 < 3;
	double a = mim_loss(&o, B, H, H, P, img, mask, pred, d1);
	double b = mim_target_loss(&o, &t, B, H, H, P, img, mask, pred, d2);
	tap(a == b && memcmp(d1, d2, n * sizeof *d1) == 0, "pixel 1x: mim_target_loss is mim_loss");
	free(img), free(pred), free(d1), free(d2);
}

/* refused options: a NaN and the reason */
static void
test_refused(void)
{
	float img[3 * 16] = {0}, pred[3 * 16] = {0};
	uint8_t mask[4] = {1, 1, 1, 1};
	struct mim_lossopt o = {MIM_LOSS_L2, MIM_REGION_MASKED, 1.0};
	struct mim_target t = {MIM_TARGET_BINS, 1, 8, 0, NULL};

	tap(isnan(mim_target_loss(&o, &t, 1, 4, 4, 2, img, mask, pred, NULL)) &&
	    strstr(mim_errmsg(), "l2 is a regression"), "bins with l2 refused: %s", mim_errmsg());
	t = (struct mim_target){MIM_TARGET_CLUSTERS, 1, 8, 0, NULL};
	o.kind = MIM_LOSS_CE;
	tap(isnan(mim_target_loss(&o, &t, 1, 4, 4, 2, img, mask, pred, NULL)) &&
	    strstr(mim_errmsg(), "no colour centres"), "clusters without centres refused: %s", mim_errmsg());
	t = (struct mim_target){MIM_TARGET_PIXEL, 1, 0, 0, NULL};
	tap(isnan(mim_target_loss(&o, &t, 1, 4, 4, 2, img, mask, pred, NULL)) &&
	    strstr(mim_errmsg(), "ce is for the classification"), "pixel with ce refused: %s", mim_errmsg());
	o.kind = MIM_LOSS_L1;
	t.div = 3;
	tap(isnan(mim_target_loss(&o, &t, 1, 4, 4, 2, img, mask, pred, NULL)),
	    "a resolution not dividing the image refused: %s", mim_errmsg());
}

/* k-means: three tight groups of colours are found, in any order */
static void
test_kmeans(void)
{
	enum { N = 300 };
	float px[N * 3], c[9];
	static const float want[3][3] = {{10, 20, 30}, {200, 40, 90}, {120, 220, 250}};

	for (int i = 0; i < N; i++)
		for (int k = 0; k < 3; k++)
			px[3 * i + k] = want[i % 3][k] + (float)((i * 37 + k * 11) % 7) - 3.0f;
	int rc = mim_kmeans(px, N, 3, 50, 1, c);
	int found = 0;
	for (int a = 0; a < 3; a++)
		for (int b = 0; b < 3; b++)
			found += fabsf(c[3 * b] - want[a][0]) < 2 && fabsf(c[3 * b + 1] - want[a][1]) < 2 &&
			    fabsf(c[3 * b + 2] - want[a][2]) < 2;
	tap(rc == 0 && found == 3, "k-means finds the 3 colour groups");
	float c2[9];
	mim_kmeans(px, N, 3, 50, 1, c2);
	tap(memcmp(c, c2, sizeof c) == 0, "k-means is a function of its seed");
	tap(mim_kmeans(px, 2, 3, 5, 1, c) < 0, "k-means of fewer pixels than clusters refused: %s",
	    mim_errmsg());
}

/* mim-view's colours of a prediction: a sure one (one-hot logits) of 256
 * bins, or of the clusters at the image's own colours, gives the image
 * back; d = 2 upsamples by repetition; de-normalising the normalised
 * target gives the pooled image */
static void
test_view(void)
{
	enum { B = 2, H = 8, K = 256 };
	size_t hw = (size_t)H * H, n = (size_t)B * 3 * hw;
	float *img = fzero(n), *out = fzero(n), *pred = fzero((size_t)B * 3 * K * hw);
	int32_t *lab = calloc(n, sizeof *lab);
	struct mim_target t = {MIM_TARGET_BINS, 1, K, 0, NULL};
	static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};

	for (size_t i = 0; i < n; i++) {	/* images of 0-255 values, as mim-data makes them */
		int c = (int)(i / hw % 3);
		img[i] = ((float)((i * 97) % 256) / 255.0f - mean[c]) / std[c];
	}
	mim_target_labels(&t, B, H, H, img, lab);
	for (size_t i = 0; i < n; i++)
		pred[((i / hw) * K + lab[i]) * hw + i % hw] = 60.0f;
	int rc = mim_view_pred(&t, B, H, H, img, pred, out);
	tap(rc == 0 && relerr_f(out, img, n) < 1e-5, "view: sure 256-bin predictions are the image, "
	    "max rel err %.2e", relerr_f(out, img, n));

	float cen[3 * 4] = {10, 20, 30, 200, 100, 50, 0, 255, 128, 90, 90, 90};
	float *cp = fzero((size_t)B * 4 * hw), *want = fzero(n);
	t = (struct mim_target){MIM_TARGET_CLUSTERS, 2, 4, 0, cen};
	for (int b = 0; b < B; b++)	/* cluster (b + y) % 4 at (y, x) of the 4x4 prediction */
		for (int y = 0; y < H; y++)
			for (int x = 0; x < H; x++) {
				int k = (b + y / 2) % 4;
				if (y % 2 == 0 && x % 2 == 0)
					cp[((size_t)b * 4 + k) * 16 + (y / 2) * 4 + x / 2] = 60.0f;
				for (int c = 0; c < 3; c++)
					want[((size_t)b * 3 + c) * hw + y * H + x] =
					    (cen[3 * k + c] / 255.0f - mean[c]) / std[c];
			}
	rc = mim_view_pred(&t, B, H, H, NULL, cp, out);
	tap(rc == 0 && relerr_f(out, want, n) < 1e-5, "view: sure cluster predictions at 1/2 are "
	    "their colours, upsampled, max rel err %.2e", relerr_f(out, want, n));

	float *pooled = fzero((size_t)B * 3 * 16), *normed = fzero((size_t)B * 3 * 16);
	mim_target_pool(B, H, H, 2, img, pooled);
	mim_target_norm(B, 4, 4, 3, pooled, normed);
	t = (struct mim_target){MIM_TARGET_PIXEL, 2, 0, 3, NULL};
	rc = mim_view_pred(&t, B, H, H, img, normed, out);
	int same = rc == 0;
	for (size_t i = 0; i < n; i++)
		same &= fabsf(out[i] - pooled[(i / hw) * 16 + (i % hw / H / 2) * 4 + i % H / 2]) < 1e-4f;
	tap(same, "view: the normalised target de-normalised is the pooled image");
	tap(mim_view_pred(&t, B, H, H, NULL, normed, out) == 1, "view: without the image, shown as is");
	free(img), free(out), free(pred), free(lab), free(cp), free(want), free(pooled), free(normed);
}

/* ---- parity with the PyTorch dump ------------------------------------------ */

static const struct mim_tensor *
need(const struct mim_frame *f, const char *a, const char *b)
{
	char nm[128];
	snprintf(nm, sizeof nm, "%s%s%s", a, b ? "." : "", b ? b : "");
	const struct mim_tensor *t = mim_frame_get(f, nm);
	if (!t) {
		tap(0, "reference has no tensor '%s'", nm);
		exit(tap_done());
	}
	return t;
}

static int
compare(const char *path)
{
	struct mim_frame *f = mim_load(path);
	json_t *cases = f ? json_loads(mim_meta_get(f, "cases") ? mim_meta_get(f, "cases") : "", 0, NULL) : NULL;
	if (!cases) {
		tap(0, "%s: %s", path, f ? "no cases" : mim_errmsg());
		return tap_done();
	}
	const struct mim_tensor *img = need(f, "image", NULL), *mask = need(f, "mask", NULL);
	const struct mim_tensor *cen = need(f, "centres", NULL);
	int B = (int)img->shape[0], H = (int)img->shape[2], p = H / (int)mask->shape[1];
	size_t i;
	json_t *c;
	json_array_foreach(cases, i, c) {
		const char *name = json_string_value(json_object_get(c, "name"));
		struct mim_target t = {mim_target_parse(json_string_value(json_object_get(c, "target"))),
		    (int)json_integer_value(json_object_get(c, "div")),
		    (int)json_integer_value(json_object_get(c, "K")),
		    (int)json_integer_value(json_object_get(c, "norm_pix")), cen->data};
		struct mim_lossopt o = {mim_loss_parse(json_string_value(json_object_get(c, "loss"))),
		    mim_region_parse(json_string_value(json_object_get(c, "region"))),
		    json_number_value(json_object_get(c, "beta"))};
		int h = H / t.div;
		size_t hw = (size_t)h * h;
		const struct mim_tensor *pred = need(f, name, "pred"), *rt = need(f, name, "target");
		size_t np = (size_t)mim_tensor_numel(pred);
		float *dpred = fzero(np), *pooled = fzero((size_t)B * 3 * hw), *normed = fzero((size_t)B * 3 * hw);
		double l = mim_target_loss(&o, &t, B, H, H, p, img->data, mask->data, pred->data, dpred);
		double rl = ((const double *)need(f, name, "loss")->data)[0];
		tap(rl > 0 && fabs(l - rl) <= 1e-4 * fabs(rl), "%s: loss %.6f vs PyTorch %.6f, rel err %.2e", name,
		    l, rl, fabs(l - rl) / fabs(rl));
		double e = rel(dpred, need(f, name, "dpred")->data, np);
		tap(e <= 1e-4, "%s: d loss / d pred vs PyTorch, max rel err %.2e", name, e);
		mim_target_pool(B, H, H, t.div, img->data, pooled);
		if (t.norm_pix)
			mim_target_norm(B, h, h, t.norm_pix, pooled, normed);
		e = rel(t.norm_pix ? normed : pooled, rt->data, (size_t)B * 3 * hw);
		tap(e <= 1e-4, "%s: the %s target vs PyTorch, max rel err %.2e", name,
		    t.norm_pix ? "normalised" : "pooled", e);
		if (o.region == MIM_REGION_MASKED) {
			uint8_t *on = calloc((size_t)B * hw, 1);
			mim_target_mask(B, H, H, p, t.div, mask->data, on);
			tap(memcmp(on, need(f, name, "mask")->data, (size_t)B * hw) == 0,
			    "%s: the mask at 1/%d the same", name, t.div);
			free(on);
		}
		if (t.kind != MIM_TARGET_PIXEL) {
			const struct mim_tensor *rlab = need(f, name, "labels");
			int32_t *lab = calloc((size_t)mim_tensor_numel(rlab), sizeof *lab);
			mim_target_labels(&t, B, h, h, pooled, lab);
			tap(memcmp(lab, rlab->data, (size_t)mim_tensor_numel(rlab) * 4) == 0,
			    "%s: the %zu labels the same", name, (size_t)mim_tensor_numel(rlab));
			free(lab);
		}
		free(dpred), free(pooled), free(normed);
	}
	json_decref(cases);
	mim_frame_free(f);
	return tap_done();
}

int
main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--compare") == 0)
		return compare(argv[2]);
	test_official();
	test_refused();
	test_kmeans();
	test_grads();
	test_view();
	const char *top = getenv("MIM_TOP");
	char a[4096];
	snprintf(a, sizeof a, "%s/tests/ref/target_ref.safetensors", top ? top : ".");
	return compare(a);
}
