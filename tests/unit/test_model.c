/* test_model.c -- config JSON, presets, the parameter table (names, order,
 * shapes, counts, weight-decay flags against the official golden dump),
 * the official ViT initialisation, and state-dict load / save. */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "mim.h"
#include "tap.h"

static void
test_config(void)
{
	struct mim_config c, d;
	char *js = NULL;

	for (int i = 0; mim_config_preset_name(i); i++) {
		const char *name = mim_config_preset_name(i);
		int ok = mim_config_preset(&c, name) == 0 && (js = mim_config_json(&c)) != NULL;
		ok = ok && mim_config_parse(&d, js) == 0 && memcmp(&c, &d, sizeof c) == 0;
		char *js2 = ok ? mim_config_json(&d) : NULL;
		tap(ok && js2 && strcmp(js, js2) == 0, "preset %s: JSON round trip", name);
		free(js2);
		free(js);
	}
	mim_config_preset(&c, "vit-tiny");
	tap(c.embed_dim == 192 && c.num_heads == 3 && c.depth == 12 && c.img_size == 192 &&
	    c.patch_size == 16 && c.encoder_stride == 16, "vit-tiny is 192/3/12 at 192 px");
	mim_config_preset(&c, "vit-base");
	tap(c.embed_dim == 768 && c.img_size == 224 && c.init_values == 0.1 &&
	    c.layer_norm_eps == 1e-6 && c.drop_path_rate == 0.1 && c.use_shared_rel_pos_bias &&
	    !c.use_abs_pos_emb && mim_config_features(&c) == 768, "vit-base defaults");
	mim_config_preset(&c, "swin-base");
	tap(c.arch == MIM_ARCH_SWIN && c.nstages == 4 && c.depths[2] == 18 && c.num_heads_s[3] == 32 &&
	    c.window_size == 6 && c.img_size == 192 && mim_config_features(&c) == 1024,
	    "swin-base defaults, 1024 features");
	mim_config_preset(&c, "swin-large");
	tap(c.embed_dim == 192 && c.window_size == 12 && c.num_heads_s[0] == 6 &&
	    mim_config_features(&c) == 1536, "swin-large");
	mim_config_preset(&c, "swin-tiny");
	tap(c.embed_dim == 96 && c.depths[2] == 6 && c.num_heads_s[3] == 24, "swin-tiny");
	mim_config_preset(&c, "micro-swin");
	tap(c.nstages == 2 && c.patch_size == 2 && c.window_size == 4 && c.encoder_stride == 4 &&
	    c.num_heads_s[1] == 2, "micro-swin matches the golden model");

	/* missing keys take the defaults; "model" defaults to vit */
	tap(mim_config_parse(&c, "{\"depth\":2}") == 0 && c.arch == MIM_ARCH_VIT && c.depth == 2 &&
	    c.embed_dim == 768, "missing keys take the defaults");
	tap(mim_config_parse(&c, "{\"model\":\"swin\",\"depths\":[2,2],\"num_heads\":[4,8],"
	    "\"img_size\":96,\"encoder_stride\":8}") == 0 && c.nstages == 2, "swin with 2 stages");
	/* errors */
	struct { const char *js, *what; } bad[] = {
		{"{\"depht\":2}", "unknown key"},
		{"{\"window_size\":7}", "swin key in a vit config"},
		{"{\"model\":\"resnet\"}", "unknown model"},
		{"{\"depth\":\"12\"}", "string for an integer"},
		{"{\"depth\":1.5}", "real for an integer"},
		{"{\"qkv_bias\":1}", "number for a bool"},
		{"{\"img_size\":225}", "image not a multiple of the patch"},
		{"{\"num_heads\":5}", "heads do not divide embed_dim"},
		{"{\"encoder_stride\":32}", "stride differs from the patch"},
		{"{\"in_chans\":1}", "in_chans not 3"},
		{"{\"model\":\"swin\",\"depths\":[2,2]}", "depths and num_heads of different lengths"},
		{"{\"model\":\"swin\",\"window_size\":5}", "window does not divide the stage"},
		{"{\"drop_path_rate\":1.0}", "drop path 1"},
		{"[1,2]", "not an object"},
		{"{\"depth\":2", "bad JSON"},
		{"{\"depth\":2,\"depth\":3}", "duplicate key"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int rc = mim_config_parse(&c, bad[i].js);
		tap(rc < 0 && strncmp(mim_errmsg(), "config", 6) == 0, "rejects %s (%s)", bad[i].what,
		    mim_errmsg());
	}
	tap(mim_config_preset(&c, "vit-huge") < 0 && strstr(mim_errmsg(), "vit-tiny"),
	    "unknown preset lists the known ones");
	/* null init_values: no layer scale */
	tap(mim_config_parse(&c, "{\"init_values\":null}") == 0 && isnan(c.init_values) &&
	    (js = mim_config_json(&c)) && strstr(js, "\"init_values\":null"), "init_values null");
	free(js);
}

static void
test_params(void)
{
	struct mim_config c;
	mim_config_preset(&c, "vit-base");
	struct mim_model *m = mim_model_new(&c);
	tap(m != NULL, "vit-base model");
	if (!m)
		return;
	size_t total = 0;
	for (int i = 0; i < m->np; i++)
		total += m->p[i].numel;
	tap(m->nw == 86256720 && total == m->nw, "vit-base has 86,256,720 parameters (%zu)", m->nw);
	tap(m->np == 189, "vit-base has 189 parameter tensors (%d)", m->np);
	static const char *const first[] = {
		"encoder.cls_token", "encoder.mask_token", "encoder.patch_embed.proj.weight",
		"encoder.patch_embed.proj.bias", "encoder.rel_pos_bias.relative_position_bias_table",
		"encoder.blocks.0.gamma_1", "encoder.blocks.0.gamma_2", "encoder.blocks.0.norm1.weight",
		"encoder.blocks.0.norm1.bias", "encoder.blocks.0.attn.q_bias", "encoder.blocks.0.attn.v_bias",
		"encoder.blocks.0.attn.qkv.weight", "encoder.blocks.0.attn.proj.weight",
		"encoder.blocks.0.attn.proj.bias", "encoder.blocks.0.norm2.weight",
		"encoder.blocks.0.norm2.bias", "encoder.blocks.0.mlp.fc1.weight",
		"encoder.blocks.0.mlp.fc1.bias", "encoder.blocks.0.mlp.fc2.weight",
		"encoder.blocks.0.mlp.fc2.bias", "encoder.blocks.1.gamma_1",
	};
	int order = 1;
	for (size_t i = 0; i < sizeof first / sizeof first[0]; i++)
		order &= strcmp(m->p[i].name, first[i]) == 0;
	order &= strcmp(m->p[m->np - 4].name, "encoder.norm.weight") == 0 &&
	    strcmp(m->p[m->np - 1].name, "decoder.0.bias") == 0;
	tap(order, "official state_dict order");
	struct mim_param *p = mim_model_param(m, "encoder.rel_pos_bias.relative_position_bias_table");
	tap(p && p->ndim == 2 && p->shape[0] == 732 && p->shape[1] == 12, "shared table (732,12)");
	p = mim_model_param(m, "decoder.0.weight");
	tap(p && p->ndim == 4 && p->shape[0] == 768 && p->shape[1] == 768 && p->shape[2] == 1, "decoder (768,768,1,1)");
	p = mim_model_param(m, "encoder.blocks.11.attn.qkv.weight");
	tap(p && p->shape[0] == 2304 && !mim_model_param(m, "encoder.blocks.11.attn.qkv.bias"),
	    "qkv (2304,768), no qkv.bias");
	mim_model_free(m);

	/* variants of the config change the table as the official module does */
	mim_config_parse(&c, "{\"depth\":2,\"embed_dim\":64,\"num_heads\":2,\"use_abs_pos_emb\":true,"
	    "\"use_rel_pos_bias\":true,\"use_shared_rel_pos_bias\":false,\"qkv_bias\":false,"
	    "\"init_values\":null,\"use_mean_pooling\":true}");
	m = mim_model_new(&c);
	tap(m && mim_model_param(m, "encoder.pos_embed") && mim_model_param(m, "encoder.pos_embed")->shape[1] == 197 &&
	    mim_model_param(m, "encoder.blocks.1.attn.relative_position_bias_table") &&
	    !mim_model_param(m, "encoder.rel_pos_bias.relative_position_bias_table") &&
	    !mim_model_param(m, "encoder.blocks.0.attn.q_bias") && !mim_model_param(m, "encoder.blocks.0.gamma_1") &&
	    mim_model_param(m, "encoder.fc_norm.weight") && !mim_model_param(m, "encoder.norm.weight") &&
	    strcmp(m->p[1].name, "encoder.pos_embed") == 0,
	    "abs pos, per-block tables, no qkv bias, no gamma, mean pooling");
	tap(m && !mim_model_param(m, "encoder.pos_embed")->decay && !mim_model_param(m, "encoder.cls_token")->decay &&
	    mim_model_param(m, "encoder.blocks.0.attn.relative_position_bias_table")->decay,
	    "pos_embed, cls_token: no decay; tables: decay");
	mim_model_free(m);
}

/* names and decay flags against the official micro-vit dump */
static void
test_golden(void)
{
	struct mim_config c;
	struct mim_frame *g = mim_load(tap_golden("micro-vit.s7.b2.safetensors"));
	struct mim_frame *wf = mim_load(tap_golden("micro-vit.s7.b2.weights.safetensors"));
	if (!g || !wf) {
		tap(0, "golden files: %s", mim_errmsg());
		return;
	}
	mim_config_preset(&c, "micro-vit");
	struct mim_model *m = mim_model_new(&c);
	json_t *dec = json_loads(mim_meta_get(g, "decay_params"), 0, NULL);
	json_t *nodec = json_loads(mim_meta_get(g, "no_decay_params"), 0, NULL);
	int ok = m && dec && nodec && json_array_size(dec) + json_array_size(nodec) == (size_t)m->np;
	size_t idx;
	json_t *v;
	/* the official lists are in named_parameters() order too */
	int k = 0, kd = 0, kn = 0;
	for (; ok && k < m->np; k++) {
		const struct mim_param *p = &m->p[k];
		json_t *want = p->decay ? json_array_get(dec, kd++) : json_array_get(nodec, kn++);
		ok = want && strcmp(json_string_value(want), p->name) == 0;
		if (!ok)
			printf("# %s decay %d\n", p->name, p->decay);
	}
	tap(ok, "micro-vit: decay flags and order equal the official optimizer groups");
	(void)idx;
	(void)v;
	json_decref(dec);
	json_decref(nodec);

	/* load the official weights (with the index buffer), save, compare */
	tap(mim_model_load(m, wf, 0) == 0, "loads the official state dict with its buffer (%s)", mim_errmsg());
	int same = 1;
	for (int i = 0; i < m->np; i++) {
		struct mim_tensor *t = mim_frame_get(wf, m->p[i].name);
		same &= t && memcmp(t->data, m->w + m->p[i].off, m->p[i].numel * 4) == 0;
	}
	tap(same, "weights equal the file");
	struct mim_frame *out = mim_model_to_frame(m);
	struct mim_tensor *ix = out ? mim_frame_get(out, "encoder.rel_pos_bias.relative_position_index") : NULL;
	struct mim_tensor *gix = mim_frame_get(wf, "encoder.rel_pos_bias.relative_position_index");
	tap(ix && gix && ix->nbytes == gix->nbytes && memcmp(ix->data, gix->data, ix->nbytes) == 0,
	    "relative_position_index equals the official buffer (cls indices)");
	tap(out && out->n == wf->n && mim_meta_get(out, "mim.config"), "state dict: every tensor, mim.config");
	struct mim_model *m2 = out ? mim_model_from_frame(out) : NULL;
	tap(m2 && m2->nw == m->nw && memcmp(m2->w, m->w, m->nw * 4) == 0, "round trip through a frame");
	mim_model_free(m2);

	/* malformed state dicts */
	struct mim_frame *bad = mim_model_to_frame(m);
	mim_frame_remove(bad, "encoder.blocks.1.mlp.fc2.bias");
	tap(mim_model_load(m, bad, 1) < 0 && strstr(mim_errmsg(), "missing tensor 'encoder.blocks.1.mlp.fc2.bias'"),
	    "missing tensor: %s", mim_errmsg());
	mim_frame_free(bad);
	bad = mim_model_to_frame(m);
	int64_t sh[2] = {96, 31};
	mim_frame_add(bad, "encoder.blocks.0.attn.qkv.weight", MIM_F32, 2, sh, NULL);
	tap(mim_model_load(m, bad, 1) < 0 && strstr(mim_errmsg(), "shape [96,31]"), "wrong shape: %s", mim_errmsg());
	mim_frame_free(bad);
	bad = mim_model_to_frame(m);
	sh[0] = 3;
	mim_frame_add(bad, "encoder.blocks.2.gamma_1", MIM_F32, 1, sh, NULL);
	tap(mim_model_load(m, bad, 1) < 0 && strstr(mim_errmsg(), "unexpected tensor 'encoder.blocks.2.gamma_1'"),
	    "extra tensor: %s", mim_errmsg());
	mim_frame_remove(bad, "encoder.blocks.2.gamma_1");
	mim_frame_add(bad, "opt.exp_avg.decoder.0.bias", MIM_F32, 1, sh, NULL);
	tap(mim_model_load(m, bad, 0) < 0, "opt.* rejected without allow_extra");
	tap(mim_model_load(m, bad, 1) == 0, "opt.* skipped with allow_extra");
	struct mim_tensor *bi = mim_frame_get(bad, "encoder.rel_pos_bias.relative_position_index");
	((int64_t *)bi->data)[5] += 1;
	tap(mim_model_load(m, bad, 1) < 0 && strstr(mim_errmsg(), "relative_position_index"),
	    "wrong index buffer: %s", mim_errmsg());
	mim_frame_remove(bad, "encoder.rel_pos_bias.relative_position_index");
	tap(mim_model_load(m, bad, 1) == 0, "buffers are not required");
	float keep = m->w[0];
	mim_frame_remove(bad, "decoder.0.weight");
	struct mim_tensor *ct = mim_frame_get(bad, "encoder.cls_token");
	((float *)ct->data)[0] = 123;
	tap(mim_model_load(m, bad, 1) < 0 && m->w[0] == keep, "a failed load leaves the weights alone");
	mim_frame_free(bad);
	/* F16 / BF16 / F64 are converted */
	bad = mim_frame_new();
	for (int i = 0; i < m->np; i++) {
		const struct mim_param *p = &m->p[i];
		double *d = malloc(p->numel * 8);
		for (size_t j = 0; j < p->numel; j++)
			d[j] = 0.5;
		mim_frame_add(bad, p->name, MIM_F64, p->ndim, p->shape, d);
		free(d);
	}
	tap(mim_model_load(m, bad, 0) == 0 && m->w[0] == 0.5f && m->w[m->nw - 1] == 0.5f, "F64 weights converted");
	mim_frame_free(bad);
	mim_meta_set(out, "mim.config", "{\"depth\":3}");
	tap(mim_model_from_frame(out) == NULL && strstr(mim_errmsg(), "mim.config wants"), "config does not match the weights: %s", mim_errmsg());
	mim_frame_free(out);
	mim_model_free(m);
	mim_frame_free(g);
	mim_frame_free(wf);
}

static void
test_init(void)
{
	struct mim_config c;
	mim_config_preset(&c, "vit-tiny");
	struct mim_model *m = mim_model_new(&c), *m2 = mim_model_new(&c);
	if (!m || !m2 || mim_model_init(m, 42) < 0 || mim_model_init(m2, 42) < 0) {
		tap(0, "vit-tiny init: %s", mim_errmsg());
		return;
	}
	tap(memcmp(m->w, m2->w, m->nw * 4) == 0, "init is deterministic in the seed");
	mim_model_init(m2, 43);
	tap(memcmp(m->w, m2->w, m->nw * 4) != 0, "another seed, other weights");
	struct { const char *name; double absmax, std; } want[] = {
		{"encoder.cls_token", 0.02, -1},
		{"encoder.mask_token", 0.02, -1},
		{"encoder.patch_embed.proj.weight", 0.02, 0.01079},
		{"encoder.blocks.0.attn.qkv.weight", 0.02, 0.01079},
		{"encoder.blocks.0.mlp.fc1.weight", 0.02, 0.01079},
		{"encoder.blocks.0.attn.proj.weight", 0.02 / sqrt(2), 0.01079 / sqrt(2)},
		{"encoder.blocks.11.mlp.fc2.weight", 0.02 / sqrt(24), 0.01079 / sqrt(24)},
		{"decoder.0.weight", 1 / sqrt(192), 1 / sqrt(192) / sqrt(3)},
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		struct mim_param *p = mim_model_param(m, want[i].name);
		double mx = 0, s = 0, s2 = 0;
		for (size_t j = 0; j < p->numel; j++) {
			double x = m->w[p->off + j];
			mx = fabs(x) > mx ? fabs(x) : mx;
			s += x;
			s2 += x * x;
		}
		double sd = sqrt(s2 / p->numel - (s / p->numel) * (s / p->numel));
		int ok = mx <= want[i].absmax * (1 + 1e-6) && mx > want[i].absmax * 0.9;
		if (want[i].std > 0)
			ok = ok && fabs(sd - want[i].std) < 0.03 * want[i].std;
		tap(ok, "init %s: absmax %.5f (bound %.5f) std %.5f (want %.5f)", want[i].name, mx,
		    want[i].absmax, sd, want[i].std);
	}
	int zero = 1, ones = 1;
	for (int i = 0; i < m->np; i++) {
		const struct mim_param *p = &m->p[i];
		const float *w = m->w + p->off;
		int isbias = strstr(p->name, "bias") != NULL && strcmp(p->name, "decoder.0.bias") != 0;
		for (size_t j = 0; j < p->numel; j++) {
			if (isbias && w[j] != 0)
				zero = 0;
			if (strstr(p->name, "norm") && strstr(p->name, "weight") && w[j] != 1)
				ones = 0;
			if (strstr(p->name, "gamma") && w[j] != 0.1f)
				ones = 0;
		}
	}
	tap(zero, "biases, q_bias, v_bias and the relative position table are zero");
	tap(ones, "LayerNorm weights 1, gammas 0.1");
	mim_model_free(m);
	mim_model_free(m2);
}

int
main(void)
{
	test_config();
	test_params();
	test_golden();
	test_init();
	return tap_done();
}
