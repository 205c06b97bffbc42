/* config.c -- the model configuration: defaults, presets, the JSON of
 * __metadata__["mim.config"], and the size checks.
 *
 * The JSON is one object. "model" ("vit" or "swin", default "vit") picks the
 * defaults of the official configs; every other key present overrides one
 * default. Keys that the architecture does not have, wrong JSON types and
 * impossible sizes are errors. mim_config_json writes every key, in the
 * order of the tables below, so a checkpoint describes its model fully. */

#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mim/model.h"

enum ktype { K_INT, K_DBL, K_BOOL, K_LIST, K_DBLNULL };

struct key {
	const char *name;
	enum ktype type;
	size_t off;		/* offset in struct mim_config */
};

#define O(f) offsetof(struct mim_config, f)

/* ViT keys, in the order of issue 5 (and of mim_config_json) */
static const struct key vit_keys[] = {
	{"img_size", K_INT, O(img_size)},
	{"in_chans", K_INT, O(in_chans)},
	{"patch_size", K_INT, O(patch_size)},
	{"embed_dim", K_INT, O(embed_dim)},
	{"depth", K_INT, O(depth)},
	{"num_heads", K_INT, O(num_heads)},
	{"mlp_ratio", K_DBL, O(mlp_ratio)},
	{"qkv_bias", K_BOOL, O(qkv_bias)},
	{"init_values", K_DBLNULL, O(init_values)},
	{"use_abs_pos_emb", K_BOOL, O(use_abs_pos_emb)},
	{"use_rel_pos_bias", K_BOOL, O(use_rel_pos_bias)},
	{"use_shared_rel_pos_bias", K_BOOL, O(use_shared_rel_pos_bias)},
	{"use_mean_pooling", K_BOOL, O(use_mean_pooling)},
	{"drop_path_rate", K_DBL, O(drop_path_rate)},
	{"layer_norm_eps", K_DBL, O(layer_norm_eps)},
	{"encoder_stride", K_INT, O(encoder_stride)},
	{NULL, 0, 0},
};

/* Swin keys; "depths" and "num_heads" are lists of equal length */
static const struct key swin_keys[] = {
	{"img_size", K_INT, O(img_size)},
	{"in_chans", K_INT, O(in_chans)},
	{"patch_size", K_INT, O(patch_size)},
	{"embed_dim", K_INT, O(embed_dim)},
	{"depths", K_LIST, O(depths)},
	{"num_heads", K_LIST, O(num_heads_s)},
	{"window_size", K_INT, O(window_size)},
	{"mlp_ratio", K_DBL, O(mlp_ratio)},
	{"qkv_bias", K_BOOL, O(qkv_bias)},
	{"ape", K_BOOL, O(ape)},
	{"patch_norm", K_BOOL, O(patch_norm)},
	{"drop_path_rate", K_DBL, O(drop_path_rate)},
	{"layer_norm_eps", K_DBL, O(layer_norm_eps)},
	{"encoder_stride", K_INT, O(encoder_stride)},
	{NULL, 0, 0},
};

#define FIELD(c, k, T) ((T *)((char *)(c) + (k)->off))

void
mim_config_default(struct mim_config *c, enum mim_arch arch)
{
	memset(c, 0, sizeof *c);
	c->arch = arch;
	c->in_chans = 3;
	c->mlp_ratio = 4.0;
	c->qkv_bias = 1;
	if (arch == MIM_ARCH_VIT) {
		c->img_size = 224;
		c->patch_size = 16;
		c->embed_dim = 768;
		c->depth = 12;
		c->num_heads = 12;
		c->init_values = 0.1;
		c->use_shared_rel_pos_bias = 1;
		c->drop_path_rate = 0.1;
		c->layer_norm_eps = 1e-6;
		c->encoder_stride = 16;
	} else {
		static const int d[] = {2, 2, 18, 2}, h[] = {4, 8, 16, 32};
		c->img_size = 192;
		c->patch_size = 4;
		c->embed_dim = 128;
		c->nstages = 4;
		memcpy(c->depths, d, sizeof d);
		memcpy(c->num_heads_s, h, sizeof h);
		c->window_size = 6;
		c->patch_norm = 1;
		c->drop_path_rate = 0.0;
		c->layer_norm_eps = 1e-5;
		c->encoder_stride = 32;
	}
}

static const struct key *
keys_of(enum mim_arch a)
{
	return a == MIM_ARCH_VIT ? vit_keys : swin_keys;
}

static const char *
arch_name(enum mim_arch a)
{
	return a == MIM_ARCH_VIT ? "vit" : "swin";
}

/* Set one key from a JSON value; -1 with a message on a type error. */
static int
set_key(struct mim_config *c, const struct key *k, json_t *v)
{
	switch (k->type) {
	case K_INT: {
		if (!json_is_integer(v))
			return mim_seterr("\"%s\" must be an integer", k->name);
		json_int_t x = json_integer_value(v);
		if (x < 0 || x > 1000000)
			return mim_seterr("\"%s\": %lld is out of range", k->name, (long long)x);
		*FIELD(c, k, int) = (int)x;
		return 0;
	}
	case K_DBLNULL:
		if (json_is_null(v)) {
			*FIELD(c, k, double) = NAN;
			return 0;
		}
		/* fall through */
	case K_DBL:
		if (!json_is_number(v))
			return mim_seterr("\"%s\" must be a number", k->name);
		*FIELD(c, k, double) = json_number_value(v);
		if (!isfinite(*FIELD(c, k, double)))
			return mim_seterr("\"%s\" must be finite", k->name);
		return 0;
	case K_BOOL:
		if (!json_is_boolean(v))
			return mim_seterr("\"%s\" must be true or false", k->name);
		*FIELD(c, k, int) = json_is_true(v);
		return 0;
	case K_LIST: {
		if (!json_is_array(v))
			return mim_seterr("\"%s\" must be a list of integers", k->name);
		size_t n = json_array_size(v);
		if (n < 1 || n > MIM_MAXSTAGE)
			return mim_seterr("\"%s\" must have 1 to %d entries", k->name, MIM_MAXSTAGE);
		int *dst = FIELD(c, k, int);
		for (size_t i = 0; i < n; i++) {
			json_t *e = json_array_get(v, i);
			if (!json_is_integer(e) || json_integer_value(e) < 0 ||
			    json_integer_value(e) > 100000)
				return mim_seterr("\"%s\" must be a list of integers", k->name);
			dst[i] = (int)json_integer_value(e);
		}
		for (size_t i = n; i < MIM_MAXSTAGE; i++)
			dst[i] = 0;
		/* nstages follows "depths"; "num_heads" must match it (checked below) */
		if (strcmp(k->name, "depths") == 0)
			c->nstages = (int)n;
		return 0;
	}
	}
	return -1;
}

int
mim_config_parse(struct mim_config *c, const char *text)
{
	json_error_t e;
	json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, &e);
	enum mim_arch arch = MIM_ARCH_VIT;

	if (!o)
		return mim_seterr("config: bad JSON: %s", e.text);
	if (!json_is_object(o)) {
		json_decref(o);
		return mim_seterr("config: not a JSON object");
	}
	json_t *mv = json_object_get(o, "model");
	if (mv) {
		const char *s = json_string_value(mv);
		if (s && strcmp(s, "vit") == 0)
			arch = MIM_ARCH_VIT;
		else if (s && strcmp(s, "swin") == 0)
			arch = MIM_ARCH_SWIN;
		else {
			json_decref(o);
			return mim_seterr("config: \"model\" must be \"vit\" or \"swin\"");
		}
	}
	struct mim_config t;
	mim_config_default(&t, arch);
	int nheads = -1;	/* length of the Swin "num_heads" list, if given */
	const char *key;
	json_t *v;
	json_object_foreach(o, key, v) {
		if (strcmp(key, "model") == 0)
			continue;
		const struct key *k = keys_of(arch);
		while (k->name && strcmp(k->name, key) != 0)
			k++;
		if (!k->name) {
			/* the message first: key lives inside o */
			mim_seterr("config: unknown key \"%s\" for model \"%s\"",
			    key, arch_name(arch));
			json_decref(o);
			return -1;
		}
		if (set_key(&t, k, v) < 0) {
			json_decref(o);
			return mim_preferr("config");
		}
		if (k->type == K_LIST && strcmp(k->name, "num_heads") == 0)
			nheads = (int)json_array_size(v);
	}
	json_decref(o);
	if (arch == MIM_ARCH_SWIN) {
		if (nheads < 0)
			nheads = 4;	/* length of the default list */
		if (nheads != t.nstages)
			return mim_seterr("config: \"num_heads\" has %d entries, \"depths\" %d",
			    nheads, t.nstages);
	}
	if (mim_config_check(&t) < 0)
		return -1;
	*c = t;
	return 0;
}

/* Shortest decimal that reads back as the same double, always with a '.'
 * or an exponent so that it reads as a float in Python too. */
static void
fmt_double(char *buf, size_t n, double v)
{
	for (int p = 1; p <= 17; p++) {
		snprintf(buf, n, "%.*g", p, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	if (!strpbrk(buf, ".eEn"))
		strncat(buf, ".0", n - strlen(buf) - 1);
}

char *
mim_config_json(const struct mim_config *c)
{
	size_t cap = 1024, len = 0;
	char *s = mim_malloc(cap), num[64];

	if (!s)
		return NULL;
#define PUT(...) len += (size_t)snprintf(s + len, cap - len, __VA_ARGS__)
	PUT("{\"model\":\"%s\"", arch_name(c->arch));
	for (const struct key *k = keys_of(c->arch); k->name; k++) {
		PUT(",\"%s\":", k->name);
		switch (k->type) {
		case K_INT:
			PUT("%d", *FIELD(c, k, const int));
			break;
		case K_DBLNULL:
			if (isnan(*FIELD(c, k, const double))) {
				PUT("null");
				break;
			}
			/* fall through */
		case K_DBL:
			fmt_double(num, sizeof num, *FIELD(c, k, const double));
			PUT("%s", num);
			break;
		case K_BOOL:
			PUT("%s", *FIELD(c, k, const int) ? "true" : "false");
			break;
		case K_LIST:
			for (int i = 0; i < c->nstages; i++)
				PUT("%c%d", i ? ',' : '[', FIELD(c, k, const int)[i]);
			PUT("]");
			break;
		}
	}
	PUT("}");
#undef PUT
	/* 16 keys of bounded size cannot reach 1024 bytes */
	return s;
}

struct preset {
	const char *name;
	const char *json;
};

static const struct preset presets[] = {
	{"vit-tiny", "{\"model\":\"vit\",\"img_size\":192,\"embed_dim\":192,\"depth\":12,\"num_heads\":3}"},
	{"vit-small", "{\"model\":\"vit\",\"embed_dim\":384,\"depth\":12,\"num_heads\":6}"},
	{"vit-base", "{\"model\":\"vit\"}"},
	{"vit-large", "{\"model\":\"vit\",\"embed_dim\":1024,\"depth\":24,\"num_heads\":16}"},
	{"swin-tiny", "{\"model\":\"swin\",\"embed_dim\":96,\"depths\":[2,2,6,2],\"num_heads\":[3,6,12,24]}"},
	{"swin-small", "{\"model\":\"swin\",\"embed_dim\":96,\"depths\":[2,2,18,2],\"num_heads\":[3,6,12,24]}"},
	{"swin-base", "{\"model\":\"swin\"}"},
	{"swin-large", "{\"model\":\"swin\",\"embed_dim\":192,\"depths\":[2,2,18,2],\"num_heads\":[6,12,24,48],\"window_size\":12}"},
	/* the micro models of the golden tests (shared/golden/README.md) */
	{"micro-vit", "{\"model\":\"vit\",\"img_size\":32,\"patch_size\":4,\"embed_dim\":32,\"depth\":2,\"num_heads\":2,\"drop_path_rate\":0.0,\"encoder_stride\":4}"},
	{"micro-swin", "{\"model\":\"swin\",\"img_size\":32,\"patch_size\":2,\"embed_dim\":16,\"depths\":[2,2],\"num_heads\":[1,2],\"window_size\":4,\"drop_path_rate\":0.0,\"encoder_stride\":4}"},
	{NULL, NULL},
};

int
mim_config_preset(struct mim_config *c, const char *name)
{
	for (const struct preset *p = presets; p->name; p++)
		if (strcmp(p->name, name) == 0)
			return mim_config_parse(c, p->json);
	char list[256] = "";
	for (const struct preset *p = presets; p->name; p++) {
		strcat(list, p->name);
		if (p[1].name)
			strcat(list, ", ");
	}
	return mim_seterr("unknown preset '%s' (known: %s)", name, list);
}

/* The names of the presets, NULL-terminated (for --help texts). */
const char *
mim_config_preset_name(int i)
{
	if (i < 0 || i >= (int)(sizeof presets / sizeof presets[0]) - 1)
		return NULL;
	return presets[i].name;
}

int
mim_config_features(const struct mim_config *c)
{
	if (c->arch == MIM_ARCH_VIT)
		return c->embed_dim;
	return c->embed_dim << (c->nstages - 1);
}

int
mim_config_check(const struct mim_config *c)
{
#define BAD(...) return mim_seterr("config: " __VA_ARGS__)
	if (c->arch != MIM_ARCH_VIT && c->arch != MIM_ARCH_SWIN)
		BAD("unknown model");
	if (c->in_chans != 3)
		BAD("in_chans is %d, but the prediction head predicts 3 channels (RGB): only 3 works", c->in_chans);
	if (c->img_size < 1 || c->img_size > 16384)
		BAD("img_size %d is out of range [1, 16384]", c->img_size);
	if (c->patch_size < 1 || c->img_size % c->patch_size)
		BAD("img_size %d is not a multiple of patch_size %d", c->img_size, c->patch_size);
	if (c->embed_dim < 1 || c->embed_dim > 65536)
		BAD("embed_dim %d is out of range [1, 65536]", c->embed_dim);
	if (!(c->mlp_ratio > 0) || c->mlp_ratio > 1024 || (int)(c->embed_dim * c->mlp_ratio) < 1)
		BAD("mlp_ratio %g gives no hidden units", c->mlp_ratio);
	if (!(c->drop_path_rate >= 0 && c->drop_path_rate < 1))
		BAD("drop_path_rate %g is out of range [0, 1)", c->drop_path_rate);
	if (!(c->layer_norm_eps > 0) || c->layer_norm_eps > 1)
		BAD("layer_norm_eps %g is out of range (0, 1]", c->layer_norm_eps);
	int grid = c->img_size / c->patch_size;
	if (c->arch == MIM_ARCH_VIT) {
		if (c->depth < 1 || c->depth > 1000)
			BAD("depth %d is out of range [1, 1000]", c->depth);
		if (c->num_heads < 1 || c->embed_dim % c->num_heads)
			BAD("embed_dim %d is not a multiple of num_heads %d", c->embed_dim, c->num_heads);
		if (!isnan(c->init_values) && !isfinite(c->init_values))
			BAD("init_values must be a number or null");
		if (c->encoder_stride != c->patch_size)
			BAD("encoder_stride %d differs from patch_size %d: the prediction would not cover the image",
			    c->encoder_stride, c->patch_size);
		if ((int64_t)grid * grid + 1 > 65536)
			BAD("%d tokens are too many", grid * grid + 1);
	} else {
		if (c->nstages < 1 || c->nstages > MIM_MAXSTAGE)
			BAD("depths must have 1 to %d entries", MIM_MAXSTAGE);
		if (c->window_size < 1)
			BAD("window_size %d is out of range", c->window_size);
		if (c->embed_dim << (c->nstages - 1) > 1 << 20)
			BAD("embed_dim %d is too large for %d stages", c->embed_dim, c->nstages);
		int res = grid;
		for (int s = 0; s < c->nstages; s++) {
			int dim = c->embed_dim << s;
			if (c->depths[s] < 1 || c->depths[s] > 1000)
				BAD("depths[%d] = %d is out of range [1, 1000]", s, c->depths[s]);
			if (c->num_heads_s[s] < 1 || dim % c->num_heads_s[s])
				BAD("stage %d: dim %d is not a multiple of num_heads %d", s, dim, c->num_heads_s[s]);
			/* the official window clamp: a stage no larger than the
			 * window uses one window of the whole stage */
			if (res > c->window_size && res % c->window_size)
				BAD("stage %d: resolution %d is not a multiple of window_size %d",
				    s, res, c->window_size);
			if (s < c->nstages - 1) {
				if (res % 2)
					BAD("stage %d: resolution %d is odd, patch merging needs it even", s, res);
				res /= 2;
			}
		}
		if (c->encoder_stride != c->patch_size << (c->nstages - 1))
			BAD("encoder_stride %d differs from patch_size * 2^(stages-1) = %d",
			    c->encoder_stride, c->patch_size << (c->nstages - 1));
	}
	if ((int64_t)c->encoder_stride * c->encoder_stride * 3 > 1 << 24)
		BAD("encoder_stride %d is too large", c->encoder_stride);
	return 0;
#undef BAD
}
