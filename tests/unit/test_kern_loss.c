/* test_kern_loss.c -- the SimMIM loss: l1 / l2 / smooth-l1 over masked or
 * all pixels, normalised as the official sum(f*M) / (sum(M) + 1e-5) / 3;
 * the value against a double reference, d loss / d pred against central
 * differences; and the prediction head (1x1 conv + PixelShuffle) forward
 * and backward against a double reference and central differences. */
#include "mim.h"
#include "mim/kern.h"
#include "../../lib/model/arch.h"
#include "gradcheck.h"

enum { B = 2, H = 8, W = 8, p = 2, h = H / p, w = W / p };
static double IMG[B * 3 * H * W], PRED[B * 3 * H * W];
static uint8_t mask[B * h * w];
static struct mim_lossopt opt;

static double
L(void)
{
	double s = 0, cnt = 0;
	for (int b = 0; b < B; b++)
		for (int y = 0; y < H; y++)
			for (int x = 0; x < W; x++) {
				double M = opt.region == MIM_REGION_ALL ? 1 : mask[(b * h + y / p) * w + x / p];
				cnt += M;
				for (int c = 0; c < 3; c++) {
					int e = ((b * 3 + c) * H + y) * W + x;
					double d = IMG[e] - PRED[e], f;
					if (opt.kind == MIM_LOSS_L1)
						f = fabs(d);
					else if (opt.kind == MIM_LOSS_L2)
						f = d * d;
					else
						f = fabs(d) < opt.beta ? 0.5 * d * d / opt.beta : fabs(d) - 0.5 * opt.beta;
					s += f * M;
				}
			}
	return s / (cnt + 1e-5) / 3;
}

/* ---- head: latent (B,F,hh,hh) -> pred (B,3,hh*s,hh*s) */
static struct mim_model *hm;
static double *HW, *HB, *LAT, *HDO;
static int F_, O_, hh_, s_;

static double
Lhead(void)
{
	double s = 0;
	for (int b = 0; b < B; b++)
		for (int o = 0; o < O_; o++)
			for (int t = 0; t < hh_ * hh_; t++) {
				double v = HB[o];
				for (int f = 0; f < F_; f++)
					v += HW[o * F_ + f] * LAT[(b * F_ + f) * hh_ * hh_ + t];
				/* pixel shuffle: channel o = c*s*s + i*s + j at (y, x) */
				int c = o / (s_ * s_), i = o / s_ % s_, j = o % s_, y = t / hh_, x = t % hh_;
				int H2 = hh_ * s_;
				s += v * HDO[((b * 3 + c) * H2 + y * s_ + i) * H2 + x * s_ + j];
			}
	return s;
}

int
main(void)
{
	static float img[B * 3 * H * W], pred[B * 3 * H * W], dpred[B * 3 * H * W];
	randfill(img, IMG, B * 3 * H * W, 1);
	randfill(pred, PRED, B * 3 * H * W, 1);
	for (int i = 0; i < 6; i++) {	/* some exact ties: sign(0) = 0 */
		pred[i * 17] = img[i * 17];
		PRED[i * 17] = IMG[i * 17];
	}
	for (int i = 0; i < B * h * w; i++)
		mask[i] = (i * 5) % 3 == 0;
	const char *kn[] = {"l1", "l2", "smooth-l1"}, *rn[] = {"masked", "all"};
	for (int k = 0; k < 3; k++)
		for (int r = 0; r < 2; r++) {
			opt = (struct mim_lossopt){k, r, k == 2 ? 0.5 : 1.0};
			double l = mim_loss(&opt, B, H, W, p, img, mask, pred, dpred);
			tap(fabs(l - L()) < 1e-6 * L(), "%s over %s pixels: %.8f vs reference %.8f", kn[k], rn[r], l, L());
			char what[64];
			snprintf(what, sizeof what, "%s %s: dpred", kn[k], rn[r]);
			if (k == 0) {	/* |d| has a kink at the ties: check elsewhere */
				double *gn = malloc(sizeof(double) * B * 3 * H * W);
				numgrad(gn, PRED, B * 3 * H * W, L, 1e-7);
				for (int i = 0; i < 6; i++)
					gn[i * 17] = 0;
				tap(relerr_d(dpred, gn, B * 3 * H * W) < 1e-5 && dpred[17] == 0,
				    "%s vs central differences (%.2e), 0 at ties", what, relerr_d(dpred, gn, B * 3 * H * W));
				free(gn);
			} else {
				gradcheck(what, dpred, PRED, B * 3 * H * W, L, 1e-5);
			}
		}
	opt = (struct mim_lossopt){MIM_LOSS_L1, MIM_REGION_MASKED, 1.0};
	uint8_t none[B * h * w] = {0};
	tap(mim_loss(&opt, B, H, W, p, img, none, pred, NULL) == 0, "nothing masked: loss 0");

	/* the head, through the micro-vit decoder: F 32, stride 4 */
	struct mim_config c;
	mim_config_preset(&c, "micro-vit");
	hm = mim_model_new(&c);
	mim_model_init(hm, 1);
	F_ = 32, s_ = 4, O_ = 48, hh_ = 8;
	struct mim_param *pw = mim_model_param(hm, "decoder.0.weight"), *pb = mim_model_param(hm, "decoder.0.bias");
	HW = dcopy(hm->w + pw->off, pw->numel);
	HB = dcopy(hm->w + pb->off, pb->numel);
	size_t nl = (size_t)B * F_ * hh_ * hh_, np = (size_t)B * 3 * 32 * 32;
	float *lat = malloc(nl * 4), *hp = malloc(np * 4), *hdo = malloc(np * 4), *dlat = malloc(nl * 4);
	const struct mim_head_ops *ho = mim_head_get(hm->cfg.head);
	float *dec = malloc(ho->scratch(hm, B) * 4);
	LAT = malloc(nl * 8);
	HDO = malloc(np * 8);
	randfill(lat, LAT, nl, 1);
	randfill(hdo, HDO, np, 1);
	mim_head(hm, B, lat, hp);
	double lf = 0;
	for (size_t i = 0; i < np; i++)
		lf += (double)hp[i] * HDO[i];
	tap(fabs(lf - Lhead()) < 1e-5 * fabs(Lhead()), "head forward vs 1x1 conv + pixel shuffle in double");
	hm->g = calloc(hm->nw, 4);
	ho->forward(hm, B, lat, hp, dec);	/* the backward reads its scratch */
	ho->backward(hm, B, hdo, dec, dlat);
	gradcheck("head: dlatent (first 300)", dlat, LAT, 300, Lhead, 1e-5);
	gradcheck("head: decoder.0.weight (first 300)", hm->g + pw->off, HW, 300, Lhead, 1e-5);
	gradcheck("head: decoder.0.bias", hm->g + pb->off, HB, pb->numel, Lhead, 1e-5);
	mim_model_free(hm);
	free(lat);
	free(hp);
	free(hdo);
	free(dlat);
	free(dec);
	free(LAT);
	free(HDO);
	free(HW);
	free(HB);
	return tap_done();
}
