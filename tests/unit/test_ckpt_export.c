/* test_ckpt_export.c -- the relative position table resampling against
 * the official procedure (tests/ref/relpos_ref.safetensors, made with
 * scipy's interp2d by tests/ref/pth_ref.py relpos), config inference
 * round trips over model variants, and export's key handling. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mim.h"
#include "mim/ckpt.h"
#include "tap.h"

static void
relpos(void)
{
	char path[4096];
	const char *top = getenv("MIM_TOP");
	snprintf(path, sizeof path, "%s/tests/ref/relpos_ref.safetensors", top ? top : ".");
	struct mim_frame *f = mim_load(path);
	tap(f != NULL, "the reference loads (%s)", f ? "relpos_ref.safetensors" : mim_errmsg());
	if (!f)
		return;
	static const struct {
		const char *name;
		int S, D, extra;
	} c[] = {
		{"w6to7", 11, 13, 0}, {"w7to6", 13, 11, 0}, {"w12to14", 23, 27, 0}, {"vit7to9", 13, 17, 3},
	};
	for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
		char a[64], b[64];
		snprintf(a, sizeof a, "%s.src", c[i].name);
		snprintf(b, sizeof b, "%s.dst", c[i].name);
		struct mim_tensor *src = mim_frame_get(f, a), *dst = mim_frame_get(f, b);
		int nH = (int)src->shape[1];
		float *out = calloc((size_t)(c[i].D * c[i].D + c[i].extra) * nH, sizeof *out);
		int rc = mim_relpos_resize(src->data, c[i].S, nH, out, c[i].D);
		if (c[i].extra)
			memcpy(out + c[i].D * c[i].D * nH, (float *)src->data + c[i].S * c[i].S * nH,
			    (size_t)(c[i].extra * nH) * sizeof *out);
		double m = 0;
		for (int64_t k = 0; k < mim_tensor_numel(dst); k++) {
			double d = fabs(out[k] - ((float *)dst->data)[k]);
			m = d > m ? d : m;
		}
		tap(rc == 0 && m <= 1e-5, "%s: %dx%d -> %dx%d, %d heads: max abs difference to scipy %.3g",
		    c[i].name, c[i].S, c[i].S, c[i].D, c[i].D, nH, m);
		free(out);
	}
	float z[9];
	tap(mim_relpos_resize(z, 3, 1, z, 5) < 0, "a 3x3 table is refused (%s)", mim_errmsg());
	mim_frame_free(f);
}

/* config -> weights (with buffers) -> inferred config: the same, apart from
 * what leaves no trace in the weights. */
static void
infer_one(const char *json, int strip_buffers, const char *hint)
{
	struct mim_config c, g;
	char note[2048];

	if (mim_config_parse(&c, json) < 0) {
		tap(0, "config %s: %s", json, mim_errmsg());
		return;
	}
	struct mim_model *m = mim_model_new(&c);
	struct mim_frame *f = m ? mim_model_to_frame(m) : NULL;
	if (!f) {
		tap(0, "model %s: %s", json, mim_errmsg());
		mim_model_free(m);
		return;
	}
	if (strip_buffers)
		for (int i = f->n - 1; i >= 0; i--)
			if (strstr(f->t[i].name, "attn_mask") || strstr(f->t[i].name, "index"))
				mim_frame_remove(f, f->t[i].name);
	if (hint)
		tap(mim_ckpt_infer(f, NULL, &g, note, sizeof note) < 0, "without %s: %s", hint,
		    mim_errmsg());
	int rc = mim_ckpt_infer(f, hint, &g, note, sizeof note);
	if (rc == 0) {
		g.drop_path_rate = c.drop_path_rate;
		g.layer_norm_eps = c.layer_norm_eps;
		if (!isnan(c.init_values) && !isnan(g.init_values))
			g.init_values = c.init_values;
	}
	char *a = mim_config_json(&c), *b = rc == 0 ? mim_config_json(&g) : NULL;
	tap(rc == 0 && strcmp(a, b) == 0, "infer %s%s%s%s%s", json, strip_buffers ? " (no buffers)" : "",
	    hint ? " given " : "", hint ? hint : "", rc ? mim_errmsg() : "");
	if (rc == 0 && strcmp(a, b) != 0)
		printf("#   got %s\n", b);
	free(a);
	free(b);
	mim_frame_free(f);
	mim_model_free(m);
}

static void
infer(void)
{
	infer_one("{\"model\":\"vit\",\"img_size\":32,\"patch_size\":4,\"embed_dim\":32,\"depth\":2,\"num_heads\":2,\"encoder_stride\":4}", 0, NULL);
	infer_one("{\"model\":\"vit\",\"img_size\":48,\"patch_size\":8,\"embed_dim\":24,\"depth\":3,\"num_heads\":3,\"mlp_ratio\":2.0,\"qkv_bias\":false,\"init_values\":null,\"encoder_stride\":8}", 0, NULL);
	infer_one("{\"model\":\"vit\",\"img_size\":32,\"patch_size\":4,\"embed_dim\":16,\"depth\":1,\"num_heads\":4,\"use_abs_pos_emb\":true,\"use_shared_rel_pos_bias\":false,\"encoder_stride\":4}", 1, "{\"num_heads\":4}");
	infer_one("{\"model\":\"vit\",\"img_size\":32,\"patch_size\":4,\"embed_dim\":16,\"depth\":2,\"num_heads\":2,\"use_rel_pos_bias\":true,\"use_shared_rel_pos_bias\":false,\"use_mean_pooling\":true,\"encoder_stride\":4}", 0, NULL);
	infer_one("{\"model\":\"vit\",\"img_size\":32,\"patch_size\":4,\"embed_dim\":32,\"depth\":2,\"num_heads\":2,\"encoder_stride\":4}", 1, NULL);
	infer_one("{\"model\":\"swin\",\"img_size\":32,\"patch_size\":2,\"embed_dim\":16,\"depths\":[2,2],\"num_heads\":[1,2],\"window_size\":4,\"encoder_stride\":4}", 0, NULL);
	infer_one("{\"model\":\"swin\",\"img_size\":48,\"patch_size\":2,\"embed_dim\":8,\"depths\":[2,1,2],\"num_heads\":[1,2,4],\"window_size\":6,\"encoder_stride\":8}", 0, NULL);
	/* Swin-L-like: the last stage clamps the window */
	infer_one("{\"model\":\"swin\",\"img_size\":64,\"patch_size\":2,\"embed_dim\":8,\"depths\":[2,2,2],\"num_heads\":[1,1,2],\"window_size\":16,\"qkv_bias\":false,\"patch_norm\":false,\"mlp_ratio\":3.0,\"encoder_stride\":8}", 0, NULL);
	/* everything fits in one window: no shift masks at all */
	infer_one("{\"model\":\"swin\",\"img_size\":16,\"patch_size\":2,\"embed_dim\":8,\"depths\":[2,2],\"num_heads\":[1,2],\"window_size\":8,\"encoder_stride\":4}", 0, NULL);
	infer_one("{\"model\":\"swin\",\"img_size\":32,\"patch_size\":2,\"embed_dim\":16,\"depths\":[2,2],\"num_heads\":[1,2],\"window_size\":4,\"ape\":true,\"encoder_stride\":4}", 1, NULL);

	/* ambiguity and hints */
	struct mim_config c, g;
	char note[2048];
	mim_config_preset(&c, "micro-swin");
	struct mim_model *m = mim_model_new(&c);
	struct mim_frame *f = mim_model_to_frame(m);
	for (int i = f->n - 1; i >= 0; i--)
		if (strstr(f->t[i].name, "attn_mask") || strstr(f->t[i].name, "index"))
			mim_frame_remove(f, f->t[i].name);
	tap(mim_ckpt_infer(f, NULL, &g, note, sizeof note) < 0 && strstr(mim_errmsg(), "img_size"),
	    "a Swin without buffers: img_size is ambiguous (%s)", mim_errmsg());
	tap(mim_ckpt_infer(f, "{\"img_size\":32,\"layer_norm_eps\":1e-6}", &g, note, sizeof note) == 0 &&
	    g.img_size == 32 && g.layer_norm_eps == 1e-6 && strstr(note, "img_size given"),
	    "hints fill what the weights cannot tell: %s", note);
	tap(mim_ckpt_infer(f, "{\"model\":\"vit\",\"img_size\":32}", &g, note, sizeof note) < 0,
	    "a hint contradicting the weights: %s", mim_errmsg());
	tap(mim_ckpt_infer(f, "[1]", &g, note, sizeof note) < 0, "a hint that is not an object");
	mim_frame_remove(f, "encoder.patch_embed.proj.weight");
	tap(mim_ckpt_infer(f, NULL, &g, note, sizeof note) < 0, "no patch embedding: %s", mim_errmsg());
	mim_frame_free(f);
	mim_model_free(m);
}

static void
export(void)
{
	struct mim_config c;
	char note[512];
	mim_config_preset(&c, "micro-vit");
	struct mim_model *m = mim_model_new(&c);
	mim_model_init(m, 1);
	struct mim_frame *f = mim_model_to_frame(m);
	int64_t sh[1] = {4};
	mim_frame_add(f, "opt.exp_avg.encoder.norm.weight", MIM_F32, 1, sh, NULL);
	mim_meta_set(f, "mim.train.step", "9");

	struct mim_export_opt o = {.dtype = -1};
	struct mim_frame *e = mim_ckpt_export(f, &o, note, sizeof note);
	tap(e && e->n == f->n - 1 && !mim_frame_get(e, "opt.exp_avg.encoder.norm.weight") &&
	    !mim_meta_get(e, "mim.train.step") && mim_meta_get(e, "mim.config"),
	    "model only: %s", note);
	mim_frame_free(e);

	o.finetune = 1;
	o.dtype = MIM_F16;
	e = mim_ckpt_export(f, &o, note, sizeof note);
	int enc = 0, f16 = 1;
	for (int i = 0; e && i < e->n; i++) {
		enc += strncmp(e->t[i].name, "encoder.", 8) == 0 || strncmp(e->t[i].name, "decoder.", 8) == 0;
		f16 &= e->t[i].dtype == MIM_F16;
	}
	tap(e && !enc && f16 && mim_frame_get(e, "blocks.1.attn.relative_position_bias_table") &&
	    !mim_frame_get(e, "mask_token") && !mim_frame_get(e, "norm.weight") &&
	    !mim_frame_get(e, "rel_pos_bias.relative_position_bias_table") &&
	    mim_frame_get(e, "cls_token") && mim_meta_get(e, "mim.finetune") &&
	    !mim_meta_get(e, "mim.config"), "finetune ViT, F16: %s", note);
	mim_frame_free(e);
	o.window_size = 7;
	tap(!mim_ckpt_export(f, &o, note, sizeof note), "a window for a ViT: %s", mim_errmsg());
	mim_frame_free(f);
	mim_model_free(m);
}

int
main(void)
{
	relpos();
	infer();
	export();
	return tap_done();
}
