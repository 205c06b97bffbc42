/* test_plugin.c -- an encoder and a head added through the ops tables
 * alone (lib/model/arch.h), touching no file of the library: "flat", a
 * patch embedding with no transformer, and "zero", a head that predicts
 * zeros. The config, the model, training gradients and state dicts must
 * then work for them as for the built-in ones. */
#include <string.h>

#include "mim.h"
#include "../../lib/model/arch.h"
#include "tap.h"

/* ---- "flat": latent (B,E,G,G) = W (E, 3pp) @ patch, 0 at masked patches --- */

static struct {
	int B;
	const float *img;
	const uint8_t *mask;
} flat_saved;

static const struct mim_config_key flat_keys[] = {
	MIM_CONFIG_KEYS_FIRST,
	MIM_CONFIG_KEYS_LAST,
};

static void
flat_defaults(struct mim_config *c)
{
	c->img_size = 8;
	c->patch_size = 4;
	c->embed_dim = 6;
	c->layer_norm_eps = 1e-6;
	c->encoder_stride = 4;
}

static int
flat_check(const struct mim_config *c)
{
	if (c->encoder_stride != c->patch_size)
		return mim_seterr("flat: encoder_stride %d is not patch_size %d", c->encoder_stride,
		    c->patch_size);
	return 0;
}

static int
flat_features(const struct mim_config *c)
{
	return c->embed_dim;
}

static int
flat_params(struct mim_model *m)
{
	int p = m->cfg.patch_size;
	return mim_addp(m, 2, m->cfg.embed_dim, 3 * p * p, 0, 0, "encoder.proj.weight") < 0 ? -1 : 0;
}

static int
flat_init(struct mim_model *m, uint64_t seed)
{
	struct mim_rng r;
	mim_rng_seed(&r, seed, 1);
	mim_init_uniform(&r, m->w, m->p[0].numel, -0.5, 0.5);
	return 0;
}

/* the k-th value of patch (b, gy, gx): channel c, row i, column j */
static float
patch(const struct mim_model *m, const float *img, int b, int gy, int gx, int k)
{
	int p = m->cfg.patch_size, S = m->cfg.img_size;
	int c = k / (p * p), i = k / p % p, j = k % p;
	return img[(((size_t)b * 3 + c) * S + gy * p + i) * S + gx * p + j];
}

static int
flat_forward(struct mim_model *m, int B, const float *img, const uint8_t *mask, int layer,
    int train, uint64_t seed, float *out)
{
	int p = m->cfg.patch_size, G = m->cfg.img_size / p, E = m->cfg.embed_dim, K = 3 * p * p;

	for (int b = 0; b < B; b++)
		for (int e = 0; e < E; e++)
			for (int g = 0; g < G * G; g++) {
				double s = 0;
				if (!mask || !mask[(size_t)b * G * G + g])
					for (int k = 0; k < K; k++)
						s += (double)m->w[e * K + k] * patch(m, img, b, g / G, g % G, k);
				out[((size_t)b * E + e) * G * G + g] = (float)s;
			}
	if (train)
		flat_saved.B = B, flat_saved.img = img, flat_saved.mask = mask;
	return 0;
}

static int
flat_backward(struct mim_model *m, const float *dlatent)
{
	int p = m->cfg.patch_size, G = m->cfg.img_size / p, E = m->cfg.embed_dim, K = 3 * p * p;
	const uint8_t *mask = flat_saved.mask;

	for (int e = 0; e < E; e++)
		for (int k = 0; k < K; k++) {
			double s = 0;
			for (int b = 0; b < flat_saved.B; b++)
				for (int g = 0; g < G * G; g++)
					if (!mask || !mask[(size_t)b * G * G + g])
						s += (double)dlatent[((size_t)b * E + e) * G * G + g] *
						    patch(m, flat_saved.img, b, g / G, g % G, k);
			m->g[e * K + k] += (float)s;
		}
	return 0;
}

static int
flat_nlayers(const struct mim_model *m)
{
	return 0;
}

static int
flat_layer_shape(const struct mim_model *m, int layer, int64_t chw[3])
{
	if (layer != 0)
		return -1;
	chw[0] = m->cfg.embed_dim;
	chw[1] = chw[2] = m->cfg.img_size / m->cfg.patch_size;
	return 0;
}

static void
flat_free(struct mim_model *m)
{
}

static const struct mim_arch_ops flat_ops = {
	.name = "flat",
	.keys = flat_keys,
	.defaults = flat_defaults,
	.check = flat_check,
	.features = flat_features,
	.params = flat_params,
	.init = flat_init,
	.forward = flat_forward,
	.backward = flat_backward,
	.nlayers = flat_nlayers,
	.layer_shape = flat_layer_shape,
	.free = flat_free,
};

/* ---- "zero": pred = 0, no parameters ----------------------------------------- */

static int zero_params(struct mim_model *m) { return 0; }
static int zero_init(struct mim_model *m, uint64_t seed) { return 0; }
static size_t zero_scratch(const struct mim_model *m, int B) { return 0; }

static void
zero_pred_shape(const struct mim_model *m, int64_t chw[3])
{
	chw[0] = 3;
	chw[1] = chw[2] = m->cfg.img_size;
}

static void
zero_forward(const struct mim_model *m, int B, const float *latent, float *pred, float *scratch)
{
	memset(pred, 0, (size_t)B * 3 * m->cfg.img_size * m->cfg.img_size * sizeof *pred);
}

static void
zero_backward(struct mim_model *m, int B, const float *dpred, float *scratch, float *dlatent)
{
	int64_t chw[3];
	mim_layer_shape(m, 0, chw);
	if (dlatent)
		memset(dlatent, 0, (size_t)B * chw[0] * chw[1] * chw[2] * sizeof *dlatent);
}

static const struct mim_head_ops zero_ops = {
	.name = "zero",
	.params = zero_params,
	.init = zero_init,
	.pred_shape = zero_pred_shape,
	.scratch = zero_scratch,
	.forward = zero_forward,
	.backward = zero_backward,
};

/* ---- the tests ------------------------------------------------------------- */

static void
fill(float *x, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		x[i] = (float)((seed >> 8 & 0xffff) / 32768.0 - 1.0);
	}
}

/* the l2 loss of m on (img, mask), by the training pass */
static double
loss_of(struct mim_model *m, int B, const float *img, const uint8_t *mask,
    const struct mim_lossopt *o)
{
	double l = NAN;
	mim_model_grad(m, B, img, mask, o, 0, &l);
	return l;
}

static void
test_flat(void)
{
	struct mim_config c;
	char *js;

	tap(mim_config_parse(&c, "{\"model\":\"flat\"}") == 0 && (int)c.arch == mim_arch_find("flat"),
	    "a registered architecture parses by name");
	js = mim_config_json(&c);
	tap(js && strcmp(js, "{\"model\":\"flat\",\"img_size\":8,\"in_chans\":3,\"patch_size\":4,"
	    "\"embed_dim\":6,\"drop_path_rate\":0.0,\"layer_norm_eps\":1e-06,\"encoder_stride\":4,"
	    "\"head\":\"linear\"}") == 0, "its keys and defaults: %s", js ? js : mim_errmsg());
	free(js);
	tap(mim_config_parse(&c, "{\"model\":\"flat\",\"depth\":2}") < 0 &&
	    strstr(mim_errmsg(), "unknown key \"depth\" for model \"flat\""),
	    "a key it lacks is refused: %s", mim_errmsg());
	tap(mim_config_parse(&c, "{\"model\":\"flat\",\"encoder_stride\":8}") < 0 &&
	    strstr(mim_errmsg(), "config: flat: encoder_stride 8"),
	    "its own check runs: %s", mim_errmsg());
	tap(mim_config_parse(&c, "{\"model\":\"nope\"}") < 0 &&
	    strstr(mim_errmsg(), "\"vit\", \"swin\" or \"flat\""),
	    "the message lists it among the models: %s", mim_errmsg());
	int seen = 0;
	for (int i = 0; mim_config_key_name(i); i++)
		seen |= strcmp(mim_config_key_name(i), "window_size") == 0;
	tap(seen, "mim_config_key_name still lists the built-in keys");

	/* a model of it, trained through the linear head */
	mim_config_parse(&c, "{\"model\":\"flat\",\"embed_dim\":5}");
	struct mim_model *m = mim_model_new(&c);
	tap(m && m->np == 3 && strcmp(m->p[1].name, "decoder.0.weight") == 0 && m->head_p0 == 1 &&
	    m->p[1].shape[0] == 48 && m->p[1].shape[1] == 5, "encoder then the linear head's parameters");
	if (!m)
		return;
	tap(mim_model_init(m, 3) == 0, "init");
	int B = 2;
	float img[2 * 3 * 8 * 8];
	uint8_t mask[2 * 2 * 2] = {1, 0, 0, 1, 0, 0, 1, 1};
	fill(img, sizeof img / sizeof img[0], 7);
	struct mim_lossopt o = {MIM_LOSS_L2, MIM_REGION_ALL, 1.0};
	double l0 = loss_of(m, B, img, mask, &o);
	float *g = malloc(m->nw * sizeof *g);
	memcpy(g, m->g, m->nw * sizeof *g);
	/* the loss is quadratic in any one weight: central differences are
	 * exact but for rounding */
	double worst = 0, scale = 0;
	for (int pi = 0; pi < m->np; pi++)
		for (size_t i = 0; i < 6 && i < m->p[pi].numel; i++) {
			float *w = m->w + m->p[pi].off + i * 7 % m->p[pi].numel, w0 = *w;
			*w = w0 + 0.01f;
			double lp = loss_of(m, B, img, mask, &o);
			*w = w0 - 0.01f;
			double lm = loss_of(m, B, img, mask, &o);
			*w = w0;
			double num = (lp - lm) / ((double)(w0 + 0.01f) - (double)(w0 - 0.01f));
			double ana = g[w - m->w];
			worst = fmax(worst, fabs(num - ana));
			scale = fmax(scale, fabs(num));
		}
	tap(isfinite(l0) && l0 > 0 && scale > 0 && worst < 1e-3 * scale,
	    "gradients of encoder and head vs central differences (max err %.2e of %.2e)", worst, scale);
	free(g);

	struct mim_frame *f = mim_model_to_frame(m);
	struct mim_model *m2 = f ? mim_model_from_frame(f) : NULL;
	tap(m2 && (int)m2->cfg.arch == (int)c.arch && m2->nw == m->nw &&
	    memcmp(m2->w, m->w, m->nw * sizeof(float)) == 0, "state dict round trip");
	mim_model_free(m2);
	mim_frame_free(f);
	mim_model_free(m);
}

static void
test_zero(void)
{
	struct mim_config c;

	tap(mim_config_parse(&c, "{\"model\":\"vit\",\"img_size\":32,\"patch_size\":4,"
	    "\"embed_dim\":32,\"depth\":2,\"num_heads\":2,\"encoder_stride\":4,\"head\":\"zero\"}") == 0 &&
	    c.head == mim_head_find("zero"), "a registered head parses by name");
	char *js = mim_config_json(&c);
	tap(js && strstr(js, ",\"head\":\"zero\"}"), "and is written: %s", js ? js : "");
	free(js);
	tap(mim_config_parse(&c, "{\"head\":\"nope\"}") < 0 &&
	    strcmp(mim_errmsg(), "config: unknown \"head\" \"nope\"") == 0, "an unknown head: %s",
	    mim_errmsg());
	mim_config_parse(&c, "{\"model\":\"vit\",\"img_size\":32,\"patch_size\":4,"
	    "\"embed_dim\":32,\"depth\":2,\"num_heads\":2,\"encoder_stride\":4,\"head\":\"zero\"}");
	struct mim_model *m = mim_model_new(&c);
	if (!m || mim_model_init(m, 1) < 0) {
		tap(0, "zero-head model: %s", mim_errmsg());
		return;
	}
	int decoder = 0;
	for (int i = 0; i < m->np; i++)
		decoder |= strncmp(m->p[i].name, "decoder.", 8) == 0;
	tap(m->head_p0 == m->np && !decoder, "no decoder parameters");
	int64_t chw[3];
	mim_pred_shape(m, chw);
	tap(chw[0] == 3 && chw[1] == 32 && chw[2] == 32, "mim_pred_shape asks the head");
	enum { B = 2, N = B * 3 * 32 * 32 };
	static float img[N], zeros[N];
	uint8_t mask[B * 8 * 8];
	fill(img, N, 3);
	for (int i = 0; i < B * 64; i++)
		mask[i] = i % 3 == 0;
	struct mim_lossopt o = {MIM_LOSS_L1, MIM_REGION_MASKED, 1.0};
	double l = NAN;
	int rc = mim_model_grad(m, B, img, mask, &o, 0, &l);
	double want = mim_loss(&o, B, 32, 32, 4, img, mask, zeros, NULL);
	size_t nz = 0;
	for (size_t i = 0; i < m->nw; i++)
		nz += m->g[i] != 0;
	tap(rc == 0 && l == want && want > 0, "training loss is the loss of zeros (%g, %g)", l, want);
	tap(nz == 0, "no gradient reaches the encoder (%zu nonzero)", nz);
	float *pred = malloc(N * sizeof *pred), lat[B * 32 * 8 * 8];
	mim_encode(m, B, img, mask, lat);
	pred[0] = 1;
	tap(mim_head(m, B, lat, pred) == 0 && pred[0] == 0 && pred[N - 1] == 0, "mim_head runs it");
	free(pred);
	struct mim_frame *f = mim_model_to_frame(m);
	struct mim_model *m2 = f ? mim_model_from_frame(f) : NULL;
	tap(m2 && m2->cfg.head == c.head, "a checkpoint keeps its head");
	mim_model_free(m2);
	mim_frame_free(f);
	mim_model_free(m);
}

int
main(void)
{
	int a = mim_arch_register(&flat_ops), h = mim_head_register(&zero_ops);
	tap(a > MIM_ARCH_SWIN && h > 0, "registered: architecture %d, head %d", a, h);
	tap(mim_arch_register(&flat_ops) < 0 && mim_head_register(&zero_ops) < 0,
	    "a name is registered once: %s", mim_errmsg());
	tap(mim_head_register(&mim_head_linear_ops) < 0, "the built-in head's name is taken");
	test_flat();
	test_zero();
	return tap_done();
}
