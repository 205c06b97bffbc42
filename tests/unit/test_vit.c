/* test_vit.c -- the ViT forward and backward against the official code:
 * the golden micro-vit step (shared/golden, one official training step of
 * VisionTransformerForSimMIM + SimMIM on CPU): latent, prediction, loss and
 * every parameter gradient; then the intermediate-layer features against
 * the official block activations, inference vs training forward, and
 * determinism. */
#include <math.h>
#include <string.h>

#include "mim.h"
#include "tap.h"

#define TOL 1e-4

/* --pipeline CKPT: the in-process twin of mim-encode | mim-head | mim-loss
 * (stdin to stdout), for tests/cmd/t-mim-encode.sh to compare bytes with */
static int
pipeline(const char *ckpt)
{
	struct mim_model *m = mim_model_open(ckpt);
	struct mim_reader *r = mim_reader_open("-");
	struct mim_frame *f;
	struct mim_lossopt lo = {MIM_LOSS_L1, MIM_REGION_MASKED, 1.0};

	if (!m || !r)
		return fprintf(stderr, "%s\n", mim_errmsg()), 1;
	while (mim_read_frame(r, &f) > 0) {
		struct mim_tensor *img = mim_frame_get(f, "image"), *mk = mim_frame_get(f, "mask");
		int B = (int)img->shape[0], S = m->cfg.img_size, p = S / (int)mk->shape[1];
		const float *x = img->data;	/* the data stays; the structs may move */
		const uint8_t *mask = mk->data;
		int64_t chw[3], ls[4], ps[4] = {B, 3, S, S};
		mim_layer_shape(m, 0, chw);
		ls[0] = B, ls[1] = chw[0], ls[2] = chw[1], ls[3] = chw[2];
		float *lat = mim_frame_add(f, "latent", MIM_F32, 4, ls, NULL)->data;
		mim_encode(m, B, x, mask, lat);
		float *pred = mim_frame_add(f, "pred", MIM_F32, 4, ps, NULL)->data;
		mim_head(m, B, lat, pred);
		float l = (float)mim_loss(&lo, B, S, S, p, x, mask, pred, NULL);
		mim_frame_add(f, "loss", MIM_F32, 0, NULL, &l);
		mim_write_frame(1, f);
		mim_frame_free(f);
	}
	mim_reader_close(r);
	mim_model_free(m);
	return 0;
}

/* --compare CKPT REF: libmim against a dump of tests/ref/vit_ref.py (the
 * independent PyTorch SimMIM ViT): latent, pred, layer features, the six
 * losses, and two training steps' gradients (l1 masked; smooth-l1 all),
 * drop path included (the reference draws libmim's masks). */
static int
compare(const char *ckpt, const char *refpath)
{
	struct mim_model *m = mim_model_open(ckpt);
	struct mim_frame *r = mim_load(refpath);
	if (!m || !r) {
		tap(0, "load: %s", mim_errmsg());
		return tap_done();
	}
	const char *name = strrchr(refpath, '/') ? strrchr(refpath, '/') + 1 : refpath;
	struct mim_tensor *img = mim_frame_get(r, "image"), *mk = mim_frame_get(r, "mask");
	int B = (int)img->shape[0], S = m->cfg.img_size, p = m->cfg.patch_size;
	uint64_t seed = strtoull(mim_meta_get(r, "seed"), NULL, 10);
	const float *x = img->data;
	const uint8_t *mask = mk->data;
	struct mim_tensor *zr = mim_frame_get(r, "latent"), *pr = mim_frame_get(r, "pred");
	float *lat = malloc(zr->nbytes), *pred = malloc(pr->nbytes);
	double e;

	mim_encode(m, B, x, mask, lat);
	e = maxrel(lat, zr->data, zr->nbytes / 4);
	tap(e < TOL, "%s: latent max rel err %.2e", name, e);
	mim_head(m, B, lat, pred);
	e = maxrel(pred, pr->data, pr->nbytes / 4);
	tap(e < TOL, "%s: pred max rel err %.2e", name, e);
	int layers[2] = {1, m->cfg.depth};
	for (int i = 0; i < 2; i++) {
		char nm[32];
		snprintf(nm, sizeof nm, "layer%d", layers[i]);
		struct mim_tensor *t = mim_frame_get(r, nm);
		if (!t)		/* a --quick dump */
			continue;
		float *f = malloc(t->nbytes);
		mim_encode_layer(m, B, x, mask, layers[i], f);
		e = maxrel(f, t->data, t->nbytes / 4);
		tap(e < TOL, "%s: layer %d features max rel err %.2e", name, layers[i], e);
		free(f);
	}
	static const char *kn[] = {"l1", "l2", "smooth-l1"}, *rn[] = {"masked", "all"};
	for (int k = 0; k < 3; k++)
		for (int g = 0; g < 2; g++) {
			char nm[64];
			snprintf(nm, sizeof nm, "loss/%s/%s", kn[k], rn[g]);
			struct mim_lossopt lo = {k, g, 1.0};
			double l = mim_loss(&lo, B, S, S, p, x, mask, pred, NULL);
			double want = *(float *)mim_frame_get(r, nm)->data;
			e = fabs(l - want) / fabs(want);
			tap(e < TOL, "%s: %s %.7f vs %.7f, rel err %.2e", name, nm, l, want, e);
		}
	for (int s = 0; s < 2; s++) {
		struct mim_lossopt lo = {s ? MIM_LOSS_SMOOTH_L1 : MIM_LOSS_L1,
		    s ? MIM_REGION_ALL : MIM_REGION_MASKED, 1.0};
		const char *tag = s ? "smooth-l1/all" : "l1/masked";
		char nm[256];
		double l;
		snprintf(nm, sizeof nm, "train_loss/%s", tag);
		if (!mim_frame_get(r, nm))	/* a --quick dump */
			continue;
		tap(mim_model_grad(m, B, x, mask, &lo, seed, &l) == 0, "%s: mim_model_grad %s", name, tag);
		snprintf(nm, sizeof nm, "train_loss/%s", tag);
		double want = *(float *)mim_frame_get(r, nm)->data;
		tap(fabs(l - want) / fabs(want) < TOL, "%s: %s training loss %.7f vs %.7f (drop path %g)",
		    name, tag, l, want, m->cfg.drop_path_rate);
		double worst = 0;
		const char *wn = "";
		int missing = 0;
		for (int i = 0; i < m->np; i++) {
			snprintf(nm, sizeof nm, "grad/%s/%s", tag, m->p[i].name);
			struct mim_tensor *t = mim_frame_get(r, nm);
			if (!t) {
				missing++;
				continue;
			}
			e = maxrel(m->g + m->p[i].off, t->data, m->p[i].numel);
			if (e > worst)
				worst = e, wn = m->p[i].name;
			if (e >= TOL)
				tap(0, "%s: %s gradient %s max rel err %.2e", name, tag, m->p[i].name, e);
		}
		tap(!missing && worst < TOL, "%s: %s all %d gradients, worst max rel err %.2e (%s)", name, tag,
		    m->np, worst, wn);
	}
	free(lat);
	free(pred);
	mim_model_free(m);
	mim_frame_free(r);
	return tap_done();
}

int
main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--pipeline") == 0)
		return pipeline(argv[2]);
	if (argc == 4 && strcmp(argv[1], "--compare") == 0)
		return compare(argv[2], argv[3]);
	struct mim_frame *g = mim_load(tap_golden("micro-vit.s7.b2.safetensors"));
	struct mim_frame *wf = mim_load(tap_golden("micro-vit.s7.b2.weights.safetensors"));
	struct mim_config c;
	if (!g || !wf) {
		tap(0, "golden files: %s", mim_errmsg());
		return tap_done();
	}
	mim_config_preset(&c, "micro-vit");
	struct mim_model *m = mim_model_new(&c);
	tap(m && mim_model_load(m, wf, 0) == 0, "micro-vit with the official weights");
	struct mim_tensor *img = mim_frame_get(g, "input/images"), *mk = mim_frame_get(g, "input/mask");
	int B = (int)img->shape[0];
	size_t cells = (size_t)mim_tensor_numel(mk);
	uint8_t *mask = malloc(cells);
	for (size_t i = 0; i < cells; i++)
		mask[i] = mim_tensor_get(mk, (int64_t)i) != 0;
	const float *x = img->data;

	/* inference forward: latent and prediction */
	struct mim_tensor *z = mim_frame_get(g, "out/z"), *xr = mim_frame_get(g, "out/x_rec");
	float *lat = malloc(z->nbytes), *pred = malloc(xr->nbytes);
	tap(mim_encode(m, B, x, mask, lat) == 0, "mim_encode");
	double e = maxrel(lat, z->data, z->nbytes / 4);
	tap(e < TOL, "latent vs official: max rel err %.2e", e);
	tap(mim_head(m, B, lat, pred) == 0, "mim_head");
	e = maxrel(pred, xr->data, xr->nbytes / 4);
	tap(e < TOL, "pred vs official: max rel err %.2e", e);
	struct mim_lossopt lo = {MIM_LOSS_L1, MIM_REGION_MASKED, 1.0};
	double L = mim_loss(&lo, B, 32, 32, 4, x, mask, pred, NULL);
	double Lg = *(float *)mim_frame_get(g, "out/loss")->data;
	tap(fabs(L - Lg) / Lg < TOL, "loss %.8f vs official %.8f: rel err %.2e", L, Lg, fabs(L - Lg) / Lg);

	/* intermediate layers: official block outputs, patch tokens */
	for (int k = 1; k <= 2; k++) {
		char nm[64];
		snprintf(nm, sizeof nm, "act/encoder.blocks.%d", k - 1);
		struct mim_tensor *a = mim_frame_get(g, nm);
		int64_t chw[3];
		mim_layer_shape(m, k, chw);
		float *f = malloc((size_t)B * chw[0] * chw[1] * chw[2] * 4);
		float *ref = malloc((size_t)B * 64 * 32 * 4);
		const float *ad = a->data;	/* (B,65,32) -> (B,32,8,8) */
		for (int b = 0; b < B; b++)
			for (int t = 0; t < 64; t++)
				for (int ch = 0; ch < 32; ch++)
					ref[((size_t)b * 32 + ch) * 64 + t] = ad[((size_t)b * 65 + 1 + t) * 32 + ch];
		tap(mim_encode_layer(m, B, x, mask, k, f) == 0 && chw[0] == 32 && chw[1] == 8,
		    "layer %d features", k);
		e = maxrel(f, ref, (size_t)B * 64 * 32);
		tap(e < TOL, "layer %d vs official block %d output: max rel err %.2e", k, k - 1, e);
		free(f);
		free(ref);
	}

	/* training step: loss and every parameter gradient */
	double Lt;
	tap(mim_model_grad(m, B, x, mask, &lo, 7, &Lt) == 0, "mim_model_grad (%s)", mim_errmsg());
	tap(Lt == L, "training loss equals the inference loss bit for bit (%.9g)", Lt);
	double worst = 0;
	const char *wname = "";
	for (int i = 0; i < m->np; i++) {
		char nm[200];
		snprintf(nm, sizeof nm, "grad/%s", m->p[i].name);
		struct mim_tensor *t = mim_frame_get(g, nm);
		if (!t) {
			tap(0, "no official gradient for %s", m->p[i].name);
			continue;
		}
		e = maxrel(m->g + m->p[i].off, t->data, m->p[i].numel);
		if (e > worst) {
			worst = e;
			wname = m->p[i].name;
		}
		if (e >= TOL)
			tap(0, "gradient %s: max rel err %.2e", m->p[i].name, e);
	}
	tap(worst < TOL, "all %d parameter gradients vs official: worst max rel err %.2e (%s)", m->np,
	    worst, wname);
	float *g1 = malloc(m->nw * 4);
	memcpy(g1, m->g, m->nw * 4);
	mim_model_grad(m, B, x, mask, &lo, 7, &Lt);
	tap(memcmp(g1, m->g, m->nw * 4) == 0, "a second step gives the same bytes (gradients overwritten)");
	/* encode after training still gives the same latent */
	float *lat2 = malloc(z->nbytes);
	mim_encode(m, B, x, mask, lat2);
	tap(memcmp(lat, lat2, z->nbytes) == 0, "encode after a training step: same bytes");
	free(g1);
	free(lat2);
	free(lat);
	free(pred);
	free(mask);
	mim_model_free(m);
	mim_frame_free(g);
	mim_frame_free(wf);
	return tap_done();
}
