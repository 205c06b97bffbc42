/* ckpt.c -- the training checkpoint: one safetensors frame.
 *
 * LAYOUT (see also include/mim/optim.h and mim-step(1))
 *   <param>                  F32, every model parameter under its official
 *                            state_dict name, as mim_model_to_frame writes
 *   opt.exp_avg.<param>      F32, same shape: AdamW first moment
 *   opt.exp_avg_sq.<param>   F32, same shape: AdamW second moment
 *   __metadata__
 *     mim.config             the architecture (mim_model_to_frame)
 *     mim.train.step         optimizer steps done ("0", "1", ...)
 *     mim.train.batches      input batches consumed: where the data resumes
 *     mim.train.optim        JSON: AdamW and clipping settings, accum
 *     mim.train.sched        JSON: schedule, absolute lrs, steps, batch
 *     mim.train.loss         JSON: loss kind, region, beta
 *     mim.train.rng          JSON: the seed the drop path seeds derive from
 *
 * All metadata values are JSON texts (numbers as JSON numbers, doubles
 * with 17 significant digits so they read back exactly). The frame
 * holds nothing else (no time, host or path), so a resumed run that
 * reaches the same state writes the same bytes. mim_model_load(...,
 * allow_extra=1) skips the opt.* tensors; mim-ckpt export drops them. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mim/optim.h"

static const char *loss_names[] = {"l1", "l2", "smooth-l1"};
static const char *region_names[] = {"masked", "all"};
static const char *setting_keys[] = {"optim", "sched", "loss", "rng"};
#define NSETTING 4

static json_t *
settings_json(const struct mim_trainopt *o, const char *key)
{
	if (strcmp(key, "optim") == 0)
		return json_pack("{s:s, s:[f,f], s:f, s:f, s:f, s:i}",
		    "name", "adamw",
		    "betas", o->adamw.beta1, o->adamw.beta2,
		    "eps", o->adamw.eps,
		    "weight_decay", o->adamw.weight_decay,
		    "clip_grad", o->clip_grad,
		    "accum", o->accum);
	if (strcmp(key, "sched") == 0) {
		const struct mim_sched *s = &o->sched;
		json_t *ms = json_array();
		for (int i = 0; i < s->nmilestones; i++)
			json_array_append_new(ms, json_integer(s->milestones[i]));
		return json_pack("{s:s, s:f, s:f, s:f, s:I, s:I, s:o, s:f, s:b, s:o, s:i}",
		    "name", mim_sched_name(s->kind),
		    "lr", s->lr, "warmup_lr", s->warmup_lr, "min_lr", s->min_lr,
		    "steps", (json_int_t)s->steps,
		    "warmup_steps", (json_int_t)s->warmup_steps,
		    "milestones", ms, "gamma", s->gamma, "official", s->official,
		    "base_lr", o->base_lr > 0 ? json_real(o->base_lr) : json_null(),
		    "batch", o->batch);
	}
	if (strcmp(key, "loss") == 0)
		return json_pack("{s:s, s:s, s:f}",
		    "loss", (unsigned)o->loss.kind < 3 ? loss_names[o->loss.kind] : "?",
		    "region", (unsigned)o->loss.region < 2 ? region_names[o->loss.region] : "?",
		    "beta", o->loss.beta);
	if (strcmp(key, "rng") == 0)
		return json_pack("{s:I, s:s}", "seed", (json_int_t)o->seed,
		    "drop_path", "splitmix64(seed,batch,rank)");
	return NULL;
}

char *
mim_train_setting(const struct mim_trainopt *o, const char *key)
{
	json_t *j = settings_json(o, key);
	char *s = NULL;

	if (!j) {
		mim_seterr("no training setting '%s'", key);
		return NULL;
	}
	s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
	json_decref(j);
	if (!s)
		mim_seterr("out of memory");
	return s;
}

static int
set_int(struct mim_frame *f, const char *key, int64_t v)
{
	char buf[32];

	snprintf(buf, sizeof buf, "%lld", (long long)v);
	return mim_meta_set(f, key, buf);
}

/* Add the moments of every parameter to f without copying: the tensors
 * point into t's arrays and are given back before f is freed. */
static int
lend_moments(struct mim_frame *f, const struct mim_train *t)
{
	const struct mim_model *m = t->model;
	char name[1024];

	for (int k = 0; k < m->np; k++) {
		const struct mim_param *p = &m->p[k];
		for (int which = 0; which < 2; which++) {
			float *src = which ? t->exp_avg_sq : t->exp_avg;
			snprintf(name, sizeof name, MIM_TRAIN_PREFIX "%s.%s",
			    which ? "exp_avg_sq" : "exp_avg", p->name);
			struct mim_tensor *x = mim_frame_take(f, name, MIM_F32,
			    p->ndim, p->shape, src + p->off);
			if (!x)
				return -1;
			x->owned = 0;	/* borrowed: mim_frame_free leaves it */
		}
	}
	return 0;
}

int
mim_train_save(const struct mim_train *t, const char *path)
{
	struct mim_frame *f = mim_model_to_frame(t->model);
	int rc = -1;

	if (!f)
		return mim_preferr("%s", path);
	if (set_int(f, "mim.train.step", t->step) < 0 ||
	    set_int(f, "mim.train.batches", t->batches) < 0)
		goto done;
	for (int i = 0; i < NSETTING; i++) {
		char key[64], *v = mim_train_setting(&t->o, setting_keys[i]);
		snprintf(key, sizeof key, "mim.train.%s", setting_keys[i]);
		int bad = !v || mim_meta_set(f, key, v) < 0;
		free(v);
		if (bad)
			goto done;
	}
	if (lend_moments(f, t) < 0)
		goto done;
	rc = mim_save(path, f);
done:
	mim_frame_free(f);
	return rc;
}

int
mim_train_is_ckpt(const struct mim_frame *f)
{
	return mim_meta_get(f, "mim.train.step") != NULL;
}

static int
get_count(const struct mim_frame *f, const char *key, int64_t *out)
{
	const char *s = mim_meta_get(f, key);
	char *end;

	if (!s)
		return mim_seterr("metadata '%s' missing", key);
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (!*s || *end || errno || v < 0)
		return mim_seterr("metadata '%s': '%s' is not a count", key, s);
	*out = v;
	return 0;
}

static int
get_moment(const struct mim_frame *f, const struct mim_param *p,
    const char *which, float *dst)
{
	char name[1024];

	snprintf(name, sizeof name, MIM_TRAIN_PREFIX "%s.%s", which, p->name);
	struct mim_tensor *x = mim_frame_want(f, name, MIM_F32, p->ndim, p->shape);
	if (!x)
		return -1;
	memcpy(dst, x->data, p->numel * sizeof(float));
	return 0;
}

int
mim_train_restore(struct mim_train *t, const struct mim_frame *f)
{
	const struct mim_model *m = t->model;
	int64_t step, batches;

	if (get_count(f, "mim.train.step", &step) < 0 ||
	    get_count(f, "mim.train.batches", &batches) < 0)
		return -1;
	for (int i = 0; i < NSETTING; i++) {
		char key[64], *want = mim_train_setting(&t->o, setting_keys[i]);
		snprintf(key, sizeof key, "mim.train.%s", setting_keys[i]);
		if (!want)
			return -1;
		const char *have = mim_meta_get(f, key);
		if (!have) {
			free(want);
			return mim_seterr("metadata '%s' missing", key);
		}
		if (strcmp(have, want) != 0) {
			mim_seterr("%s differs: the checkpoint has %s, this run %s",
			    key, have, want);
			free(want);
			return -1;
		}
		free(want);
	}
	for (int k = 0; k < m->np; k++)
		if (get_moment(f, &m->p[k], "exp_avg", t->exp_avg + m->p[k].off) < 0 ||
		    get_moment(f, &m->p[k], "exp_avg_sq", t->exp_avg_sq + m->p[k].off) < 0)
			return -1;
	t->step = step;
	t->batches = batches;
	mim_train_discard(t);
	return 0;
}
