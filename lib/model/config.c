/* config.c -- the model configuration: defaults, presets, the JSON of
 * __metadata__["mim.config"], and the size checks.
 *
 * The JSON is one object. "model" ("vit" or "swin", default "vit": any
 * architecture of the registry) picks the defaults of the official
 * configs; every other key present overrides one default. The keys, their
 * defaults and their checks come from the architecture's ops (arch.h);
 * "head" (default "linear") names the prediction head. Keys that the
 * architecture does not have, wrong JSON types and impossible sizes are
 * errors. mim_config_json writes every key, in the order of the
 * architecture's table and "head" last, so a checkpoint describes its
 * model fully. */

#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"

#define K_INT MIM_K_INT
#define K_DBL MIM_K_DBL
#define K_BOOL MIM_K_BOOL
#define K_LIST MIM_K_LIST
#define K_DBLNULL MIM_K_DBLNULL
#define FIELD(c, k, T) ((T *)((char *)(c) + (k)->off))

void
mim_config_default(struct mim_config *c, enum mim_arch arch)
{
	const struct mim_arch_ops *o = mim_arch_get(arch);

	memset(c, 0, sizeof *c);
	c->arch = arch;
	c->in_chans = 3;
	c->mlp_ratio = 4.0;
	c->qkv_bias = 1;
	c->pred_div = 1;
	c->target_bins = 8;
	c->target_clusters = 512;
	if (o)
		o->defaults(c);
}

static const struct mim_config_key *
keys_of(enum mim_arch a)
{
	return mim_arch_get(a)->keys;
}

const char *
mim_config_arch_name(const struct mim_config *c)
{
	const struct mim_arch_ops *o = mim_arch_get(c->arch);
	return o ? o->name : "?";
}

const char *
mim_config_head_name(const struct mim_config *c)
{
	const struct mim_head_ops *h = mim_head_get(c->head);
	return h ? h->name : "?";
}

/* The keys of what the head predicts (target.c), every model's and every
 * head's; "target" is a name, written only when not "pixel", and the
 * others only when not their defaults (a 1x pixel-target config keeps the
 * bytes it had before they existed). */
#define O_(f) offsetof(struct mim_config, f)
static const struct mim_config_key target_keys[] = {
	{"target", MIM_K_INT, O_(target)},
	{"target_bins", MIM_K_INT, O_(target_bins)},
	{"target_clusters", MIM_K_INT, O_(target_clusters)},
	{"pred_div", MIM_K_INT, O_(pred_div)},
	{"norm_pix", MIM_K_INT, O_(norm_pix)},
	{NULL, 0, 0},
};
#undef O_

static const struct mim_config_key *
target_key(const char *name)
{
	for (const struct mim_config_key *k = target_keys; k->name; k++)
		if (strcmp(k->name, name) == 0)
			return k;
	return NULL;
}

/* The key called name of head h's table, or NULL. */
static const struct mim_config_key *
head_key(int h, const char *name)
{
	const struct mim_config_key *k = mim_head_get(h)->keys;
	for (; k && k->name; k++)
		if (strcmp(k->name, name) == 0)
			return k;
	return NULL;
}

/* Whether any head has a key called name (for the message). */
static int
head_key_any(const char *name)
{
	for (int h = 0; mim_head_get(h); h++)
		if (head_key(h, name))
			return 1;
	return 0;
}

const char *
mim_config_key_name(int i)
{
	const struct mim_arch_ops *o;

	if (i == 0 || i == 1)
		return i == 0 ? "model" : "head";
	i -= 2;
	for (int a = 0; (o = mim_arch_get(a)); a++)
		for (const struct mim_config_key *k = o->keys; k->name; k++) {
			int seen = 0;	/* in an earlier architecture's table */
			for (int b = 0; b < a && !seen; b++)
				for (const struct mim_config_key *e = mim_arch_get(b)->keys; e->name; e++)
					seen |= strcmp(e->name, k->name) == 0;
			if (!seen && i-- == 0)
				return k->name;
		}
	const struct mim_head_ops *h;
	for (int a = 0; (h = mim_head_get(a)); a++)
		for (const struct mim_config_key *k = h->keys; k && k->name; k++) {
			int seen = 0;	/* in an earlier head's table */
			for (int b = 0; b < a && !seen; b++)
				seen |= head_key(b, k->name) != NULL;
			if (!seen && i-- == 0)
				return k->name;
		}
	return i < (int)(sizeof target_keys / sizeof target_keys[0]) - 1 ? target_keys[i].name : NULL;
}

/* "vit" or "swin" (the built-in ones, then any registered) */
static void
arch_names(char *buf, size_t n)
{
	const struct mim_arch_ops *o;
	int i;

	buf[0] = 0;
	for (i = 0; (o = mim_arch_get(i)); i++)
		;
	for (int k = 0; k < i; k++)
		snprintf(buf + strlen(buf), n - strlen(buf), "%s\"%s\"",
		    k == 0 ? "" : k == i - 1 ? " or " : ", ", mim_arch_get(k)->name);
}

/* Set one key from a JSON value; -1 with a message on a type error. */
static int
set_key(struct mim_config *c, const struct mim_config_key *k, json_t *v)
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
		return 0;
	}
	}
	return -1;
}

/* The first list key of a table ("depths") sets nstages; every other
 * list must have as many entries (given, or the default's nstages). */
static int
check_lists(const struct mim_config_key *keys, const int *len, int dflt, int nstages)
{
	const char *first = NULL;

	for (int i = 0; keys[i].name; i++) {
		if (keys[i].type != K_LIST)
			continue;
		if (!first) {
			first = keys[i].name;
			continue;
		}
		int n = len[i] >= 0 ? len[i] : dflt;
		if (n != nstages)
			return mim_seterr("config: \"%s\" has %d entries, \"%s\" %d",
			    keys[i].name, n, first, nstages);
	}
	return 0;
}

/* One key of target_keys from v ("target" a name); a K of the other
 * classification target, or norm_pix beside a classification, is an error
 * (o: the whole object, for "target"). */
static int
set_target_key(struct mim_config *c, const struct mim_config_key *k, json_t *v, json_t *o)
{
	const char *tn = json_string_value(json_object_get(o, "target"));
	int t = tn ? mim_target_parse(tn) : json_object_get(o, "target") ? -1 : MIM_TARGET_PIXEL;

	if (t < 0)
		return mim_seterr("config: \"target\" must be \"pixel\", \"bins\" or \"clusters\"");
	if (strcmp(k->name, "target") == 0) {
		c->target = t;
		return 0;
	}
	if ((strcmp(k->name, "target_bins") == 0 && t != MIM_TARGET_BINS) ||
	    (strcmp(k->name, "target_clusters") == 0 && t != MIM_TARGET_CLUSTERS) ||
	    (strcmp(k->name, "norm_pix") == 0 && t != MIM_TARGET_PIXEL))
		return mim_seterr("config: \"%s\" does not go with target \"%s\"", k->name,
		    mim_target_name(t));
	if (set_key(c, k, v) < 0)
		return mim_preferr("config");
	return 0;
}

int
mim_config_parse(struct mim_config *c, const char *text)
{
	json_error_t e;
	json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, &e);
	int arch = MIM_ARCH_VIT, head = 0;
	char names[256];

	if (!o)
		return mim_seterr("config: bad JSON: %s", e.text);
	if (!json_is_object(o)) {
		json_decref(o);
		return mim_seterr("config: not a JSON object");
	}
	json_t *mv = json_object_get(o, "model");
	if (mv && (arch = mim_arch_find(json_string_value(mv))) < 0) {
		json_decref(o);
		arch_names(names, sizeof names);
		return mim_seterr("config: \"model\" must be %s", names);
	}
	json_t *hv = json_object_get(o, "head");
	if (hv && (head = mim_head_find(json_string_value(hv))) < 0) {
		mim_seterr("config: unknown \"head\" %s%s%s", json_is_string(hv) ? "\"" : "",
		    json_is_string(hv) ? json_string_value(hv) : "(not a string)",
		    json_is_string(hv) ? "\"" : "");
		json_decref(o);
		return -1;
	}
	struct mim_config t;
	mim_config_default(&t, arch);
	t.head = head;
	if (mim_head_get(head)->defaults)
		mim_head_get(head)->defaults(&t);
	const struct mim_config_key *keys = keys_of(arch);
	int len[64], dflt = t.nstages;	/* lengths of the lists given */
	for (int i = 0; i < 64; i++)
		len[i] = -1;
	const char *key;
	json_t *v;
	json_object_foreach(o, key, v) {
		if (strcmp(key, "model") == 0 || strcmp(key, "head") == 0)
			continue;
		if (target_key(key)) {
			if (set_target_key(&t, target_key(key), v, o) < 0) {
				json_decref(o);
				return -1;
			}
			continue;
		}
		const struct mim_config_key *k = keys;
		while (k->name && strcmp(k->name, key) != 0)
			k++;
		int ai = k->name ? (int)(k - keys) : -1;	/* index in the architecture's table */
		if (!k->name && (k = head_key(head, key)) == NULL) {
			/* the message first: key lives inside o */
			if (head_key_any(key))
				mim_seterr("config: key \"%s\" is not for head \"%s\"",
				    key, mim_head_get(head)->name);
			else
				mim_seterr("config: unknown key \"%s\" for model \"%s\"",
				    key, mim_arch_get(arch)->name);
			json_decref(o);
			return -1;
		}
		if (set_key(&t, k, v) < 0) {
			json_decref(o);
			return mim_preferr("config");
		}
		if (k->type == K_LIST && ai >= 0 && ai < 64) {
			len[ai] = (int)json_array_size(v);
			/* the first list of the table sets nstages */
			const struct mim_config_key *f = keys;
			while (f->type != K_LIST)
				f++;
			if (f == k)
				t.nstages = len[ai];
		}
	}
	json_decref(o);
	if (check_lists(keys, len, dflt, t.nstages) < 0)
		return -1;
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

/* ,"key":value for every key of a table, at s + *len (cap bytes in all) */
static void
put_keys(char *s, size_t cap, size_t *len, const struct mim_config *c,
    const struct mim_config_key *k)
{
	char num[64];

#define PUT(...) *len += (size_t)snprintf(s + *len, cap - *len, __VA_ARGS__)
	for (; k && k->name; k++) {
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
#undef PUT
}

char *
mim_config_json(const struct mim_config *c)
{
	size_t cap = 2048, len = 0;
	char *s = mim_malloc(cap);

	if (!s)
		return NULL;
	len += (size_t)snprintf(s, cap, "{\"model\":\"%s\"", mim_config_arch_name(c));
	put_keys(s, cap, &len, c, keys_of(c->arch));
	len += (size_t)snprintf(s + len, cap - len, ",\"head\":\"%s\"", mim_config_head_name(c));
	put_keys(s, cap, &len, c, mim_head_get(c->head)->keys);
	if (c->target != MIM_TARGET_PIXEL)
		len += (size_t)snprintf(s + len, cap - len, ",\"target\":\"%s\",\"%s\":%d",
		    mim_target_name(c->target), c->target == MIM_TARGET_BINS ? "target_bins" :
		    "target_clusters", c->target == MIM_TARGET_BINS ? c->target_bins : c->target_clusters);
	if (c->pred_div != 1)
		len += (size_t)snprintf(s + len, cap - len, ",\"pred_div\":%d", c->pred_div);
	if (c->norm_pix)
		len += (size_t)snprintf(s + len, cap - len, ",\"norm_pix\":%d", c->norm_pix);
	snprintf(s + len, cap - len, "}");
	/* some 25 keys of bounded size cannot reach 2048 bytes */
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
	return mim_arch_get(c->arch)->features(c);
}

int
mim_config_check(const struct mim_config *c)
{
#define BAD(...) return mim_seterr("config: " __VA_ARGS__)
	const struct mim_arch_ops *o = mim_arch_get(c->arch);
	const struct mim_head_ops *h = mim_head_get(c->head);

	if (!o)
		BAD("unknown model");
	if (!h)
		BAD("unknown head");
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
	if (o->check(c) < 0 || (h->check && h->check(c) < 0))
		return mim_preferr("config");
	/* what the head predicts (target.c) */
	int d = c->pred_div;
	if (c->target < 0 || !mim_target_name(c->target))
		BAD("unknown target");
	if (d != 1 && d != 2 && d != 4 && d != 8 && d != 16 && d != 32)
		BAD("pred_div %d is not 1, 2, 4, 8, 16 or 32", d);
	if (c->encoder_stride % d)
		BAD("pred_div %d does not divide the encoder stride %d (the head predicts "
		    "(stride/pred_div)^2 pixels per position)", d, c->encoder_stride);
	if (c->img_size % d)
		BAD("pred_div %d does not divide img_size %d", d, c->img_size);
	if (c->target_bins < 2 || c->target_bins > 256)
		BAD("target_bins %d is out of range [2, 256]", c->target_bins);
	if (c->target_clusters < 2 || c->target_clusters > 65536)
		BAD("target_clusters %d is out of range [2, 65536]", c->target_clusters);
	if (c->norm_pix && (c->norm_pix < 3 || c->norm_pix % 2 == 0 || c->norm_pix > 1023))
		BAD("norm_pix %d: want 0 (off) or an odd window in [3, 1023]", c->norm_pix);
	if (c->norm_pix && c->img_size / d < 2)
		BAD("norm_pix needs a target of 2 pixels or more a side, not %d", c->img_size / d);
	if ((int64_t)c->encoder_stride * c->encoder_stride * 3 > 1 << 24 ||
	    (int64_t)(c->encoder_stride / d) * (c->encoder_stride / d) * mim_pred_channels(c) > 1 << 24)
		BAD("encoder_stride %d is too large for %d channels a pixel", c->encoder_stride,
		    mim_pred_channels(c));
	return 0;
#undef BAD
}
