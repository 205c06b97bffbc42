/* test_train.c -- what data-parallel mim-step relies on in lib/train: the
 * reduce hook (called once a step, between backward and clipping, with the
 * whole gradient; a failure leaves the state untouched), the state digest
 * the ranks compare, and the world size in the stored settings. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mim.h"
#include "tap.h"

struct hook {
	int calls, fail;
	size_t n;
	double loss;
	float value;	/* set every gradient element to this */
};

static int
hook(void *ctx, float *g, size_t n, double *loss)
{
	struct hook *h = ctx;

	h->calls++;
	h->n = n;
	h->loss = *loss;
	if (h->fail)
		return mim_seterr("refused");
	for (size_t i = 0; i < n; i++)
		g[i] = h->value;
	*loss = 0.25;
	return 0;
}

int
main(void)
{
	struct mim_config c;
	struct mim_trainopt o;
	enum { B = 2 };

	if (mim_config_preset(&c, "micro-vit") < 0) {
		tap(0, "micro-vit preset: %s", mim_errmsg());
		return tap_done();
	}
	struct mim_model *m = mim_model_new(&c);
	tap(m && mim_model_init(m, 1) == 0, "micro-vit model");
	if (!m)
		return tap_done();
	int S = c.img_size, P = S / c.patch_size;
	float *img = malloc((size_t)B * 3 * S * S * sizeof(float));
	uint8_t *mask = malloc((size_t)B * P * P);
	uint64_t x = 7;
	for (int i = 0; i < B * 3 * S * S; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		img[i] = (float)((x >> 40) % 2001) / 1000.0f - 1.0f;
	}
	for (int i = 0; i < B * P * P; i++)
		mask[i] = (uint8_t)(i % 5 < 3);

	mim_trainopt_default(&o);
	o.batch = B;
	o.accum = 2;
	o.sched.kind = MIM_SCHED_CONSTANT;
	o.sched.lr = 1e-3;
	o.sched.steps = 10;
	tap(o.world == 1, "one rank by default");
	struct mim_train *t = mim_train_new(m, &o);
	struct hook h = {.value = 0.5f};
	t->reduce = hook;
	t->reduce_ctx = &h;
	struct mim_stepinfo info;

	/* the hook: once per step, after the accumulation, before clipping */
	uint64_t d0 = mim_train_digest(t);
	tap(mim_train_digest(t) == d0, "digest: the same state, the same digest");
	int r1 = mim_train_batch(t, B, img, mask, &info);
	tap(r1 == 0 && h.calls == 0, "no reduce before the step's last micro-batch");
	int r2 = mim_train_batch(t, B, img, mask, &info);
	tap(r2 == 1 && h.calls == 1 && h.n == m->nw, "reduce once a step, with all %zu gradients", m->nw);
	tap(h.loss > 0 && isfinite(h.loss), "reduce gets the step's mean loss (%g)", h.loss);
	float want = sqrtf((float)m->nw) * 0.5f;
	tap(fabs(info.grad_norm - want) <= 1e-5 * want && info.loss == 0.25,
	    "the step clips and logs what reduce left (norm %g, want %g; loss %g)", info.grad_norm,
	    (double)want, info.loss);
	uint64_t d1 = mim_train_digest(t);
	tap(d1 != d0 && t->step == 1 && t->batches == 2, "digest: a step changes it");

	/* a failing hook: -1, nothing changed */
	h.fail = 1;
	float *w = malloc(m->nw * sizeof(float));
	memcpy(w, m->w, m->nw * sizeof(float));
	mim_train_batch(t, B, img, mask, &info);
	int r3 = mim_train_batch(t, B, img, mask, &info);
	tap(r3 == -1 && strstr(mim_errmsg(), "refused") != NULL, "reduce fails: the step fails (%s)",
	    mim_errmsg());
	tap(memcmp(w, m->w, m->nw * sizeof(float)) == 0 && t->step == 1 && t->batches == 2 &&
	    mim_train_digest(t) == d1, "... and leaves weights, moments, step and data position");

	/* the digest sees every part of the state */
	m->w[m->nw - 1] = nextafterf(m->w[m->nw - 1], INFINITY);
	uint64_t dw = mim_train_digest(t);
	m->w[m->nw - 1] = w[m->nw - 1];
	t->exp_avg_sq[0] = nextafterf(t->exp_avg_sq[0], INFINITY);
	uint64_t dv = mim_train_digest(t);
	t->exp_avg_sq[0] = nextafterf(t->exp_avg_sq[0], 0);
	t->batches++;
	uint64_t db = mim_train_digest(t);
	t->batches--;
	tap(dw != d1 && dv != d1 && db != d1 && mim_train_digest(t) == d1,
	    "digest: one ulp of the last weight, of a moment, the data position");

	/* the world size is a stored setting, absent for one process */
	char *s1 = mim_train_setting(&o, "sched");
	o.world = 2;
	char *s2 = mim_train_setting(&o, "sched");
	tap(s1 && !strstr(s1, "world"), "one process: no world in mim.train.sched (%s)", s1 ? s1 : "");
	tap(s2 && strstr(s2, "\"batch\":2,\"world\":2}"), "2 ranks: \"world\":2 in mim.train.sched");
	o.world = 0;
	tap(mim_train_new(m, &o) == NULL, "world 0 refused (%s)", mim_errmsg());

	free(s1);
	free(s2);
	free(w);
	free(img);
	free(mask);
	mim_train_free(t);
	mim_model_free(m);
	return tap_done();
}
