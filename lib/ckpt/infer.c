/* infer.c -- the SimMIM config of a state dict, from its names and shapes.
 *
 * What the weights say (official names, reference/simmim.md §9):
 *   patch_embed.proj.weight (E, in_chans, p, p)      embed_dim, in_chans, patch_size
 *   blocks.{i}.mlp.fc1.weight (E*mlp_ratio, E)       mlp_ratio (ViT; Swin per stage)
 *   ViT: number of blocks.{i}                        depth
 *        rel_pos_bias / blocks.{i}.attn relative_position_bias_table
 *          ((2g-1)^2 + 3, heads)                     num_heads, grid g (img_size = g p),
 *                                                    use_(shared_)rel_pos_bias
 *        pos_embed (1, g*g+1, E)                     use_abs_pos_emb, g
 *        relative_position_index (g*g+1, g*g+1)      g
 *        gamma_1 present / absent                    layer scale on (init_values 0.1) / null
 *        fc_norm / norm                              use_mean_pooling
 *        q_bias                                      qkv_bias
 *   Swin: number of layers.{s}, of their blocks      depths
 *        layers.{s}.blocks.0.attn table ((2w-1)^2, nH)  num_heads[s], window (the largest w)
 *        attn_mask (nW, w*w, w*w) in stage s         resolution w sqrt(nW) of stage s
 *        absolute_pos_embed (1, G*G, E)              ape, resolution G
 *        buffers present but no attn_mask in a stage of >= 2 blocks: the
 *        stage is no larger than its window, so its resolution is w
 *        patch_embed.norm, attn.qkv.bias             patch_norm, qkv_bias
 *   encoder_stride follows (ViT p; Swin p 2^(stages-1)). drop_path_rate and
 *   layer_norm_eps leave no trace in the weights: they keep their defaults
 *   unless the hint gives them. */

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mim/ckpt.h"

static const struct mim_tensor *
get(const struct mim_frame *sd, const char *fmt, int a, int b)
{
	char name[256];

	snprintf(name, sizeof name, fmt, a, b);
	return mim_frame_get(sd, name);
}

/* Count consecutive indices i (from 0) for which fmt(i) exists; with
 * stage >= 0, fmt has two %d and the first is the stage. */
static int
count(const struct mim_frame *sd, const char *fmt, int stage)
{
	int n = 0;

	while (n < 100000 && (stage < 0 ? get(sd, fmt, n, 0) : get(sd, fmt, stage, n)))
		n++;
	return n;
}

static int
shape_is(const struct mim_tensor *t, int ndim)
{
	return t && t->ndim == ndim;
}

/* S for a table of S*S (+ extra) rows, or -1. */
static int
table_side(int64_t rows, int extra)
{
	int64_t r = rows - extra;
	int s = (int)llround(sqrt((double)(r > 0 ? r : 0)));

	return r > 0 && (int64_t)s * s == r && s % 2 == 1 ? s : -1;
}

static int
isqrt_exact(int64_t v)
{
	int s = (int)llround(sqrt((double)v));
	return v > 0 && (int64_t)s * s == v ? s : -1;
}

#define NOTE(...) do { if (k < n) k += (size_t)snprintf(note + k, n - k, __VA_ARGS__); } while (0)

int
mim_ckpt_infer(const struct mim_frame *sd, const char *hint, struct mim_config *c, char *note,
    size_t n)
{
	json_t *o = json_object(), *h = NULL;
	size_t k = 0;
	int rc = -1;
	char unknown[128] = "";

	if (n)
		note[0] = 0;
	if (!o)
		return mim_seterr("out of memory");
	if (hint) {
		json_error_t e;
		if (!(h = json_loads(hint, 0, &e)) || !json_is_object(h)) {
			mim_seterr("config: not a JSON object%s%s", h ? "" : ": ", h ? "" : e.text);
			goto done;
		}
	}
	const struct mim_tensor *pe = mim_frame_get(sd, "encoder.patch_embed.proj.weight");
	int swin = get(sd, "encoder.layers.0.blocks.0.norm1.weight", 0, 0) != NULL;
	int vit = get(sd, "encoder.blocks.0.norm1.weight", 0, 0) != NULL;
	if (swin == vit || !shape_is(pe, 4) || pe->shape[2] != pe->shape[3]) {
		int bare = mim_frame_get(sd, "patch_embed.proj.weight") != NULL;
		mim_seterr("cannot tell the model from the names: want encoder.patch_embed.proj.weight "
		    "and encoder.blocks.* (ViT) or encoder.layers.* (Swin)%s",
		    bare ? "; these names lack 'encoder.' (a fine-tuning state dict, not SimMIM's)" : "");
		goto done;
	}
	int E = (int)pe->shape[0], p = (int)pe->shape[3];
	json_object_set_new(o, "model", json_string(swin ? "swin" : "vit"));
	json_object_set_new(o, "in_chans", json_integer(pe->shape[1]));
	json_object_set_new(o, "patch_size", json_integer(p));
	json_object_set_new(o, "embed_dim", json_integer(E));
	int grid = -1;		/* patch grid side, if found */
	const char *gridfrom = NULL;

	if (vit) {
		int L = count(sd, "encoder.blocks.%d.norm1.weight", -1);
		json_object_set_new(o, "depth", json_integer(L));
		const struct mim_tensor *fc1 = get(sd, "encoder.blocks.0.mlp.fc1.weight", 0, 0);
		if (shape_is(fc1, 2) && E > 0)
			json_object_set_new(o, "mlp_ratio", json_real((double)fc1->shape[0] / E));
		json_object_set_new(o, "qkv_bias",
		    json_boolean(get(sd, "encoder.blocks.0.attn.q_bias", 0, 0) != NULL));
		int gamma = get(sd, "encoder.blocks.0.gamma_1", 0, 0) != NULL;
		json_object_set_new(o, "init_values", gamma ? json_real(0.1) : json_null());
		const struct mim_tensor *shared =
		    mim_frame_get(sd, "encoder.rel_pos_bias.relative_position_bias_table");
		const struct mim_tensor *own =
		    get(sd, "encoder.blocks.0.attn.relative_position_bias_table", 0, 0);
		const struct mim_tensor *pos = mim_frame_get(sd, "encoder.pos_embed");
		json_object_set_new(o, "use_shared_rel_pos_bias", json_boolean(shared != NULL));
		json_object_set_new(o, "use_rel_pos_bias", json_boolean(own != NULL));
		json_object_set_new(o, "use_abs_pos_emb", json_boolean(pos != NULL));
		json_object_set_new(o, "use_mean_pooling",
		    json_boolean(mim_frame_get(sd, "encoder.fc_norm.weight") != NULL));
		const struct mim_tensor *tab = shared ? shared : own;
		if (shape_is(tab, 2)) {
			json_object_set_new(o, "num_heads", json_integer(tab->shape[1]));
			int s = table_side(tab->shape[0], 3);
			if (s > 0) {
				grid = (s + 1) / 2;
				gridfrom = "the relative position table";
			}
		}
		const struct mim_tensor *idx =
		    mim_frame_get(sd, "encoder.rel_pos_bias.relative_position_index");
		if (!idx)
			idx = get(sd, "encoder.blocks.0.attn.relative_position_index", 0, 0);
		if (grid < 0 && shape_is(pos, 3) && isqrt_exact(pos->shape[1] - 1) > 0) {
			grid = isqrt_exact(pos->shape[1] - 1);
			gridfrom = "pos_embed";
		}
		if (grid < 0 && shape_is(idx, 2) && isqrt_exact(idx->shape[0] - 1) > 0) {
			grid = isqrt_exact(idx->shape[0] - 1);
			gridfrom = "relative_position_index";
		}
		json_object_set_new(o, "encoder_stride", json_integer(p));
		if (!tab && !json_object_get(h, "num_heads"))
			strcat(unknown, " num_heads");
	} else {
		int S = count(sd, "encoder.layers.%d.blocks.0.norm1.weight", -1);
		json_t *depths = json_array(), *heads = json_array();
		int W = 0, wstage[MIM_MAXSTAGE] = {0}, masks = 0, buffers = 0;
		if (S > MIM_MAXSTAGE) {
			mim_seterr("%d Swin stages, at most %d", S, MIM_MAXSTAGE);
			json_decref(depths);
			json_decref(heads);
			goto done;
		}
		for (int s = 0; s < S; s++) {
			json_array_append_new(depths,
			    json_integer(count(sd, "encoder.layers.%d.blocks.%d.norm1.weight", s)));
			const struct mim_tensor *t =
			    get(sd, "encoder.layers.%d.blocks.0.attn.relative_position_bias_table", s, 0);
			int side = shape_is(t, 2) ? table_side(t->shape[0], 0) : -1;
			if (side < 0) {
				json_decref(depths);
				json_decref(heads);
				mim_seterr("stage %d: no relative position table of (2w-1)^2 rows", s);
				goto done;
			}
			json_array_append_new(heads, json_integer(t->shape[1]));
			wstage[s] = (side + 1) / 2;
			if (wstage[s] > W)
				W = wstage[s];
			buffers |= get(sd, "encoder.layers.%d.blocks.0.attn.relative_position_index", s, 0) != NULL;
		}
		json_object_set_new(o, "depths", depths);
		json_object_set_new(o, "num_heads", heads);
		json_object_set_new(o, "window_size", json_integer(W));
		const struct mim_tensor *fc1 = get(sd, "encoder.layers.0.blocks.0.mlp.fc1.weight", 0, 0);
		if (shape_is(fc1, 2) && E > 0)
			json_object_set_new(o, "mlp_ratio", json_real((double)fc1->shape[0] / E));
		json_object_set_new(o, "qkv_bias",
		    json_boolean(get(sd, "encoder.layers.0.blocks.0.attn.qkv.bias", 0, 0) != NULL));
		const struct mim_tensor *ape = mim_frame_get(sd, "encoder.absolute_pos_embed");
		json_object_set_new(o, "ape", json_boolean(ape != NULL));
		json_object_set_new(o, "patch_norm",
		    json_boolean(mim_frame_get(sd, "encoder.patch_embed.norm.weight") != NULL));
		json_object_set_new(o, "encoder_stride", json_integer(S ? p << (S - 1) : p));
		if (shape_is(ape, 3) && isqrt_exact(ape->shape[1]) > 0) {
			grid = isqrt_exact(ape->shape[1]);
			gridfrom = "absolute_pos_embed";
		}
		for (int s = 0; s < S && grid < 0; s++) {
			for (int b = 1; b < 100000; b += 2) {
				if (!get(sd, "encoder.layers.%d.blocks.%d.norm1.weight", s, b))
					break;
				const struct mim_tensor *m = get(sd, "encoder.layers.%d.blocks.%d.attn_mask", s, b);
				int nw = shape_is(m, 3) ? isqrt_exact(m->shape[0]) : -1;
				if (nw > 0) {
					grid = (wstage[s] * nw) << s;
					gridfrom = "attn_mask";
					masks = 1;
					break;
				}
			}
		}
		/* buffers kept but no shift mask: the first stage of two or more
		 * blocks is no larger than its window */
		for (int s = 0; s < S && grid < 0 && buffers && !masks; s++)
			if (get(sd, "encoder.layers.%d.blocks.1.norm1.weight", s, 0)) {
				grid = wstage[s] << s;
				gridfrom = "the absence of shift masks";
			}
	}
	if (grid > 0 && !json_object_get(h, "img_size")) {
		json_object_set_new(o, "img_size", json_integer((json_int_t)grid * p));
	} else if (!json_object_get(h, "img_size")) {
		strcat(unknown, " img_size");
		gridfrom = NULL;
	}
	if (unknown[0]) {
		mim_seterr("cannot infer%s from the weights: give it with --config or use --preset",
		    unknown);
		goto done;
	}
	/* the hint's keys win; a contradicting "model" is an error */
	if (h) {
		json_t *hm = json_object_get(h, "model");
		if (hm && !json_equal(hm, json_object_get(o, "model"))) {
			mim_seterr("config: \"model\" %s, but the weights are a %s", json_string_value(hm) ?
			    json_string_value(hm) : "?", swin ? "swin" : "vit");
			goto done;
		}
		json_object_update(o, h);
	}
	char *js = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!js || mim_config_parse(c, js) < 0) {
		free(js);
		goto done;
	}
	free(js);
	char *full = mim_config_json(c);
	NOTE("%s", full ? full : "");
	free(full);
	if (gridfrom)
		NOTE(" (img_size from %s", gridfrom);
	else
		NOTE(" (img_size given");
	const char *dflt[] = {"drop_path_rate", "layer_norm_eps", "init_values"};
	int nd = 0;
	for (int i = 0; i < 3; i++) {
		if (i == 2 && (swin || json_is_null(json_object_get(o, "init_values"))))
			continue;
		if (!json_object_get(h, dflt[i]))
			NOTE("%s%s", nd++ ? ", " : "; defaults: ", dflt[i]);
	}
	NOTE(")");
	rc = 0;
done:
	json_decref(o);
	json_decref(h);
	return rc;
}
