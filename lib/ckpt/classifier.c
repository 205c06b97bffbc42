/* classifier.c -- a classifier checkpoint (the official fine-tuning
 * model, "head": "cls") from a pretraining checkpoint or from scratch.
 *
 * main_finetune.py builds the fine-tuning model (its init), then
 * utils.py load_pretrained converts the SimMIM state dict (reference §9.4,
 * mim_ckpt_export with finetune: encoder only, ViT's shared table into
 * every block, tables resampled) and loads it with strict=False: what the
 * conversion gives replaces the init, the rest (head, ViT's fc_norm) keeps
 * it. We do the same: a model of the classifier config initialised from
 * o->seed, then every tensor of the conversion copied over by name. A
 * tensor the classifier has no parameter for, or a parameter other than
 * head.* and fc_norm.* that the conversion does not give, is an error
 * (strict=False would let it pass silently). */

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mim/ckpt.h"
#include "../model/arch.h"

/* the parameters a conversion leaves fresh */
static int
fresh(const char *name)
{
	return strncmp(name, "head.", 5) == 0 || strncmp(name, "fc_norm.", 8) == 0;
}

struct mim_frame *
mim_ckpt_classifier(const struct mim_frame *pre, const struct mim_config *scratch,
    const struct mim_cls_opt *o, char *note, size_t n)
{
	struct mim_config c;
	struct mim_frame *ft = NULL, *out = NULL;
	struct mim_model *m = NULL;
	struct mim_export_opt ex = o->ex;
	char exnote[512] = "", scratch_note[1];

	if (!note) {
		note = scratch_note;
		n = sizeof scratch_note;
	}
	note[0] = 0;
	ex.finetune = 1;
	if (pre) {
		const char *js = mim_meta_get(pre, "mim.config");
		struct mim_config pc;
		if (js && mim_config_parse(&pc, js) == 0 && mim_is_classifier(&pc)) {
			mim_seterr("already a classifier (num_classes %d): a pretraining checkpoint is "
			    "needed", pc.num_classes);
			return NULL;
		}
		if (!(ft = mim_ckpt_export(pre, &ex, exnote, sizeof exnote)))
			return NULL;
		const char *fj = mim_meta_get(ft, "mim.finetune");
		if (!fj || mim_config_parse(&c, fj) < 0)
			goto fail;
		/* the fine-tuning config again from the pretraining one: the
		 * export applied img_size and window already */
		ex.img_size = 0;
		ex.window_size = 0;
	} else {
		c = *scratch;
	}
	struct mim_cls_opt co = *o;
	co.ex = ex;
	if (mim_config_classifier(&c, &co) < 0 || !(m = mim_model_new(&c)) ||
	    mim_model_init(m, o->seed) < 0)
		goto fail;
	int copied = 0, kept = 0;
	if (ft) {
		for (int i = 0; i < ft->n; i++) {
			const struct mim_tensor *t = &ft->t[i];
			struct mim_param *p = mim_model_param(m, t->name);
			char a[96], b[96];
			if (!p || strcmp(p->name, t->name) != 0) {
				mim_seterr("tensor '%s' of the fine-tuning encoder is not a parameter "
				    "of the classifier", t->name);
				goto fail;
			}
			int same = t->ndim == p->ndim;
			for (int d = 0; same && d < p->ndim; d++)
				same = t->shape[d] == p->shape[d];
			if (!same) {
				mim_seterr("tensor '%s': shape %s, the classifier wants %s", t->name,
				    mim_shape_str(a, sizeof a, t->ndim, t->shape),
				    mim_shape_str(b, sizeof b, p->ndim, p->shape));
				goto fail;
			}
			for (size_t k = 0; k < p->numel; k++)
				m->w[p->off + k] = (float)mim_tensor_get(t, (int64_t)k);
			copied++;
		}
		for (int i = 0; i < m->np; i++) {
			if (mim_frame_get(ft, m->p[i].name))
				continue;
			if (!fresh(m->p[i].name)) {
				mim_seterr("the pretraining checkpoint has no '%s'", m->p[i].name);
				goto fail;
			}
			kept++;
		}
	}
	if (!(out = mim_model_to_frame(m)))
		goto fail;
	char sd[32];
	snprintf(sd, sizeof sd, "%llu", (unsigned long long)o->seed);
	if (mim_meta_set(out, "mim.init_seed", sd) < 0)
		goto fail_out;
	if (ft)
		snprintf(note, n, "classifier of %d classes: %d tensors from the pretraining "
		    "checkpoint (%s), %d fresh (head, fc_norm)", c.num_classes, copied, exnote, kept);
	else
		snprintf(note, n, "classifier of %d classes from scratch: %d tensors", c.num_classes,
		    m->np);
	mim_frame_free(ft);
	mim_model_free(m);
	return out;
fail_out:
	mim_frame_free(out);
fail:
	mim_frame_free(ft);
	mim_model_free(m);
	return NULL;
}
