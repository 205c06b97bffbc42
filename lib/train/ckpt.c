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
 *     mim.train.sched        JSON: schedule, absolute lrs, steps, batch,
 *                            world (data-parallel ranks, only when > 1)
 *     mim.train.loss         JSON: loss kind, region, beta
 *     mim.train.rng          JSON: the seed the drop path seeds derive from
 *     mim.train.data         JSON: where each rank's input resumes (a list
 *                            of mim-data's mim.pos; only when known)
 *
 * All metadata values are JSON texts (numbers as JSON numbers, doubles
 * in the fewest digits that read back exactly). The frame
 * holds nothing else (no time, host or path), so a resumed run that
 * reaches the same state writes the same bytes. mim_model_load(...,
 * allow_extra=1) skips the opt.* tensors; mim-ckpt export drops them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mim/optim.h"

/* "finetune" only when a classifier is trained (o->ft.on) */
static const char *setting_keys[] = {"optim", "sched", "loss", "rng", "finetune"};
#define NSETTING 5

static int
has_setting(const struct mim_trainopt *o, int i)
{
	return i < 4 || o->ft.on;
}

/* x in the fewest digits that read back exactly (%.17g would write 0.05
 * as 0.050000000000000003) */
static void
fmt_num(char *buf, size_t n, double x)
{
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, n, "%.*g", prec, x);
		if (strtod(buf, NULL) == x)
			break;
	}
	if (!strpbrk(buf, ".eEn"))	/* a JSON real keeps a point: 5.0 */
		strncat(buf, ".0", n - strlen(buf) - 1);
}

/* JSON written by hand, for short exact numbers */
char *
mim_train_setting(const struct mim_trainopt *o, const char *key)
{
	char a[40], b[40], c[40], d[40], e[40], out[2048];
	const struct mim_sched *s = &o->sched;

	if (strcmp(key, "optim") == 0) {
		fmt_num(a, sizeof a, o->adamw.beta1);
		fmt_num(b, sizeof b, o->adamw.beta2);
		fmt_num(c, sizeof c, o->adamw.eps);
		fmt_num(d, sizeof d, o->adamw.weight_decay);
		fmt_num(e, sizeof e, o->clip_grad);
		snprintf(out, sizeof out, "{\"name\":\"adamw\",\"betas\":[%s,%s],\"eps\":%s,"
		    "\"weight_decay\":%s,\"clip_grad\":%s,\"accum\":%d}", a, b, c, d, e, o->accum);
	} else if (strcmp(key, "sched") == 0) {
		char ms[MIM_MAXMILESTONE * 21 + 2] = "", g[40], bl[40];
		for (int i = 0; i < s->nmilestones; i++)
			snprintf(ms + strlen(ms), sizeof ms - strlen(ms), "%s%lld",
			    i ? "," : "", (long long)s->milestones[i]);
		fmt_num(a, sizeof a, s->lr);
		fmt_num(b, sizeof b, s->warmup_lr);
		fmt_num(c, sizeof c, s->min_lr);
		fmt_num(g, sizeof g, s->gamma);
		if (o->base_lr > 0)
			fmt_num(bl, sizeof bl, o->base_lr);
		else
			snprintf(bl, sizeof bl, "null");
		char w[32] = "";	/* a one-process run writes what it always did */
		if (o->world > 1)
			snprintf(w, sizeof w, ",\"world\":%d", o->world);
		snprintf(out, sizeof out, "{\"name\":\"%s\",\"lr\":%s,\"warmup_lr\":%s,"
		    "\"min_lr\":%s,\"steps\":%lld,\"warmup_steps\":%lld,\"milestones\":[%s],"
		    "\"gamma\":%s,\"official\":%s,\"base_lr\":%s,\"batch\":%d%s}",
		    mim_sched_name(s->kind), a, b, c, (long long)s->steps,
		    (long long)s->warmup_steps, ms, g, s->official ? "true" : "false", bl,
		    o->batch, w);
	} else if (strcmp(key, "loss") == 0) {
		fmt_num(a, sizeof a, o->loss.beta);
		snprintf(out, sizeof out, "{\"loss\":\"%s\",\"region\":\"%s\",\"beta\":%s}",
		    mim_loss_name(o->loss.kind) ? mim_loss_name(o->loss.kind) : "?",
		    mim_region_name(o->loss.region) ? mim_region_name(o->loss.region) : "?", a);
	} else if (strcmp(key, "finetune") == 0) {
		const struct mim_ftopt *f = &o->ft;
		char g[40];
		fmt_num(a, sizeof a, f->smoothing);
		fmt_num(b, sizeof b, f->mixup);
		fmt_num(c, sizeof c, f->cutmix);
		fmt_num(d, sizeof d, f->mix_prob);
		fmt_num(e, sizeof e, f->switch_prob);
		fmt_num(g, sizeof g, f->layer_decay);
		snprintf(out, sizeof out, "{\"smoothing\":%s,\"mixup\":%s,\"cutmix\":%s,"
		    "\"mix_prob\":%s,\"switch_prob\":%s,\"layer_decay\":%s,"
		    "\"mix_rng\":\"xoshiro256**(splitmix64(seed,batch,rank))\"}", a, b, c, d, e, g);
	} else if (strcmp(key, "rng") == 0) {
		snprintf(out, sizeof out, "{\"seed\":%llu,\"drop_path\":\"splitmix64(seed,batch,rank)\"}",
		    (unsigned long long)o->seed);
	} else {
		mim_seterr("no training setting '%s'", key);
		return NULL;
	}
	return mim_strdup(out);
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
	    set_int(f, "mim.train.batches", t->batches) < 0 ||
	    (t->data && mim_meta_set(f, "mim.train.data", t->data) < 0))
		goto done;
	for (int i = 0; i < NSETTING; i++) {
		if (!has_setting(&t->o, i))
			continue;
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

/* The "steps" of a stored schedule, or -1. (The text is ours, from
 * mim_train_setting: the caller checks it by writing it again.) */
static int64_t
stored_steps(const char *sched)
{
	const char *p = strstr(sched, "\"steps\":");
	char *end;

	if (!p)
		return -1;
	errno = 0;
	long long v = strtoll(p + 8, &end, 10);
	return errno || end == p + 8 || v < 1 ? -1 : v;
}

/* Compare the stored setting `key` (have) with t->o's (want). The
 * schedule may be an extension (see mim_train_restore_extended). 0, or
 * -1 with the error set. */
static int
check_setting(const struct mim_train *t, const char *key, const char *have,
    const char *want, int extend)
{
	if (strcmp(have, want) == 0)
		return 0;
	int64_t s0 = strcmp(key, "mim.train.sched") == 0 ? stored_steps(have) : -1;
	int64_t s1 = t->o.sched.steps;
	char *as_stored = NULL;
	if (s0 > 0) {	/* t->o's schedule with the stored steps */
		struct mim_trainopt o = t->o;
		o.sched.steps = s0;
		if (!(as_stored = mim_train_setting(&o, "sched")))
			return -1;
	}
	int only_steps = as_stored && strcmp(have, as_stored) == 0;
	free(as_stored);
	if (only_steps && extend && s0 < s1)
		return 0;
	if (only_steps && extend)
		return mim_seterr("%s: --extend makes a schedule longer: the checkpoint's has "
		    "%lld steps, this run %lld", key, (long long)s0, (long long)s1);
	return mim_seterr("%s differs: the checkpoint has %s, this run %s%s", key, have, want,
	    only_steps && s0 < s1 ? " (--extend continues the run to the new steps, "
	    "the schedule stretched)" : "");
}

static int
restore(struct mim_train *t, const struct mim_frame *f, int extend)
{
	const struct mim_model *m = t->model;
	int64_t step, batches;

	if (get_count(f, "mim.train.step", &step) < 0 ||
	    get_count(f, "mim.train.batches", &batches) < 0)
		return -1;
	for (int i = 0; i < NSETTING; i++) {
		if (!has_setting(&t->o, i))
			continue;
		char key[64], *want = mim_train_setting(&t->o, setting_keys[i]);
		snprintf(key, sizeof key, "mim.train.%s", setting_keys[i]);
		if (!want)
			return -1;
		const char *have = mim_meta_get(f, key);
		if (!have) {
			free(want);
			return mim_seterr("metadata '%s' missing", key);
		}
		int bad = check_setting(t, key, have, want, extend) < 0;
		free(want);
		if (bad)
			return -1;
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

int
mim_train_restore(struct mim_train *t, const struct mim_frame *f)
{
	return restore(t, f, 0);
}

int
mim_train_restore_extended(struct mim_train *t, const struct mim_frame *f, int extend)
{
	return restore(t, f, extend);
}
