/* infer.c -- the SimMIM config of a state dict, from its names and shapes.
 *
 * What the weights of every encoder say (official names, reference/simmim.md §9):
 *   patch_embed.proj.weight (E, in_chans, p, p)      embed_dim, in_chans, patch_size
 * Which encoder it is, and the rest, each architecture says (its detect
 * and infer hooks, lib/model/arch.h; the tables of names and shapes are
 * beside them in vit.c and swin.c). The patch grid g gives img_size = g p.
 * The keys that leave no trace in the weights (drop_path_rate,
 * layer_norm_eps...) keep their defaults unless the hint gives them. */

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mim/ckpt.h"
#include "../model/arch.h"

#define NOTE(...) do { if (k < n) k += (size_t)snprintf(note + k, n - k, __VA_ARGS__); } while (0)

/* A fine-tuning state dict (a classifier: no "encoder.", a 2-D
 * head.weight): its encoder's config from the names with "encoder."
 * put back (the head left out), then the classification head of
 * head.weight's rows. 1 done (0 or -1 in *rc), 0 not one. */
static int
infer_classifier(const struct mim_frame *sd, const char *hint, struct mim_config *c, char *note,
    size_t n, int *rc)
{
	const struct mim_tensor *hw = mim_frame_get(sd, "head.weight");
	char name[1024];

	if (mim_frame_get(sd, "encoder.patch_embed.proj.weight") ||
	    !mim_frame_get(sd, "patch_embed.proj.weight") || !hw || hw->ndim != 2)
		return 0;
	struct mim_frame *enc = mim_frame_new();
	*rc = enc ? 0 : -1;
	for (int i = 0; *rc == 0 && i < sd->n; i++) {
		const struct mim_tensor *t = &sd->t[i];
		if (strncmp(t->name, "head.", 5) == 0)
			continue;
		snprintf(name, sizeof name, "encoder.%s", t->name);
		if (!mim_frame_add(enc, name, t->dtype, t->ndim, t->shape, t->data))
			*rc = -1;
	}
	struct mim_cls_opt o = {.num_classes = (int)hw->shape[0], .drop_path_rate = -1,
	    .init_scale = NAN};
	if (*rc == 0 && (*rc = mim_ckpt_infer(enc, hint, c, note, n)) == 0) {
		int pool = c->use_mean_pooling;
		*rc = mim_config_classifier(c, &o);
		if (*rc == 0 && c->arch == MIM_ARCH_VIT && !pool)
			*rc = mim_seterr("a ViT classifier without fc_norm (cls token pooling) is not "
			    "one mim has");
		/* the note: the classifier's config, then what the encoder's said */
		const char *why = strstr(note, "} (");
		char *js = *rc == 0 ? mim_config_json(c) : NULL;
		char *rest = why ? mim_strdup(why + 2) : NULL;
		if (js && rest)
			snprintf(note, n, "%s %.*s; num_classes from head.weight)", js,
			    (int)strlen(rest) - 1, rest);
		free(js);
		free(rest);
	}
	mim_frame_free(enc);
	return 1;
}

int
mim_ckpt_infer(const struct mim_frame *sd, const char *hint, struct mim_config *c, char *note,
    size_t n)
{
	int crc;
	char scratch[1];

	if (!n) {
		note = scratch;
		n = sizeof scratch;
	}
	if (infer_classifier(sd, hint, c, note, n, &crc))
		return crc;
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
	const struct mim_arch_ops *arch = NULL, *a;
	int found = 0;
	for (int i = 0; (a = mim_arch_get(i)); i++)
		if (a->detect && a->detect(sd)) {
			arch = a;
			found++;
		}
	if (found != 1 || !pe || pe->ndim != 4 || pe->shape[2] != pe->shape[3]) {
		char sigs[512] = "";	/* "A (ViT) or B (Swin)" */
		int last = 0, first = 1;
		for (int i = 0; (a = mim_arch_get(i)); i++)
			if (a->signature)
				last = i;
		for (int i = 0; (a = mim_arch_get(i)); i++)
			if (a->signature) {
				snprintf(sigs + strlen(sigs), sizeof sigs - strlen(sigs), "%s%s",
				    first ? "" : i == last ? " or " : ", ", a->signature);
				first = 0;
			}
		int bare = mim_frame_get(sd, "patch_embed.proj.weight") != NULL;
		mim_seterr("cannot tell the model from the names: want encoder.patch_embed.proj.weight "
		    "and %s%s", sigs,
		    bare ? "; these names lack 'encoder.' (a fine-tuning state dict, not SimMIM's)" : "");
		goto done;
	}
	int E = (int)pe->shape[0], p = (int)pe->shape[3];
	json_object_set_new(o, "model", json_string(arch->name));
	json_object_set_new(o, "in_chans", json_integer(pe->shape[1]));
	json_object_set_new(o, "patch_size", json_integer(p));
	json_object_set_new(o, "embed_dim", json_integer(E));
	int grid = -1;		/* patch grid side, if found */
	const char *gridfrom = NULL;
	if (arch->infer(sd, o, h, E, p, &grid, &gridfrom, unknown, sizeof unknown) < 0)
		goto done;
	/* the head, by its parameters (none: the default) */
	const struct mim_head_ops *hd;
	for (int i = 0; (hd = mim_head_get(i)); i++)
		if (hd->infer && hd->infer(sd, o)) {
			json_object_set_new(o, "head", json_string(hd->name));
			break;
		}
	/* colour centres: the clusters target (the other targets and the
	 * resolution leave no trace but the decoder's width: --config) */
	const struct mim_tensor *ce = mim_frame_get(sd, "decoder.centres");
	if (ce && ce->ndim == 2 && ce->shape[1] == 3 && !json_object_get(h, "target")) {
		json_object_set_new(o, "target", json_string("clusters"));
		json_object_set_new(o, "target_clusters", json_integer(ce->shape[0]));
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
			    json_string_value(hm) : "?", arch->name);
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
	int nd = 0;
	for (const char *const *d = arch->untraced; d && *d; d++) {
		if (json_is_null(json_object_get(o, *d)))	/* the weights said null */
			continue;
		if (!json_object_get(h, *d))
			NOTE("%s%s", nd++ ? ", " : "; defaults: ", *d);
	}
	NOTE(")");
	rc = 0;
done:
	json_decref(o);
	json_decref(h);
	return rc;
}
