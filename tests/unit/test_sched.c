/* test_sched.c -- learning-rate schedules against the vectors of
 * tests/ref/sched_ref.py (a re-implementation of the official timm 0.4.12
 * and SimMIM schedulers, reference §7.3) committed as sched_ref.json, the
 * official batch scaling, and the settings checks. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mim.h"
#include "tap.h"

static void
vectors(const char *path)
{
	json_error_t e;
	json_t *root = json_load_file(path, 0, &e);
	size_t i;
	json_t *c;

	tap(root && json_is_array(root) && json_array_size(root) >= 14,
	    "read %s (%s)", path, root ? "ok" : e.text);
	if (!root)
		return;
	json_array_foreach(root, i, c) {
		struct mim_sched s = {0};
		json_t *lrs = json_object_get(c, "lrs"), *ms = json_object_get(c, "milestones");
		s.kind = mim_sched_parse(json_string_value(json_object_get(c, "kind")));
		s.lr = json_number_value(json_object_get(c, "lr"));
		s.warmup_lr = json_number_value(json_object_get(c, "warmup_lr"));
		s.min_lr = json_number_value(json_object_get(c, "min_lr"));
		s.steps = json_integer_value(json_object_get(c, "steps"));
		s.warmup_steps = json_integer_value(json_object_get(c, "warmup"));
		s.official = (int)json_integer_value(json_object_get(c, "official"));
		s.accum = (int)json_integer_value(json_object_get(c, "accum"));	/* 0 if absent */
		s.gamma = json_object_get(c, "gamma") ? json_number_value(json_object_get(c, "gamma")) : 0.1;
		for (size_t k = 0; ms && k < json_array_size(ms); k++)
			s.milestones[s.nmilestones++] = json_integer_value(json_array_get(ms, k));
		int bad = 0;
		double worst = 0;
		for (size_t g = 0; g < json_array_size(lrs); g++) {
			double want = json_number_value(json_array_get(lrs, g));
			double got = mim_sched_lr(&s, (int64_t)g);
			double rel = fabs(got - want) / (want > 0 ? want : 1);
			if (rel > worst)
				worst = rel;
			if (rel > 1e-12 && !bad++)
				printf("# step %zu: lr %.17g, want %.17g\n", g, got, want);
		}
		tap(mim_sched_check(&s) == 0 && !bad && json_array_size(lrs) == (size_t)s.steps,
		    "%s%s warmup %lld over %lld steps, accum %d: %zu lrs equal the reference (max rel %.1e)",
		    s.official ? "official " : "clean ", mim_sched_name(s.kind),
		    (long long)s.warmup_steps, (long long)s.steps, s.accum > 1 ? s.accum : 1,
		    json_array_size(lrs), worst);
	}
	json_decref(root);
}

int
main(void)
{
	const char *top = getenv("MIM_TOP");
	char path[4096];

	snprintf(path, sizeof path, "%s/tests/ref/sched_ref.json", top ? top : ".");
	vectors(path);

	/* the official scaling: lr * batch * world / 512, times accum if > 1 */
	tap(mim_lr_scale(1e-4, 128, 16, 1) == 1e-4 * 128 * 16 / 512.0, "lr scaling at batch 2048");
	tap(mim_lr_scale(2e-4, 64, 1, 4) == 2e-4 * 64 / 512.0 * 4, "lr scaling with accumulation");
	tap(mim_lr_scale(2e-4, 64, 1, 1) == mim_lr_scale(2e-4, 64, 1, 0), "accum 0 and 1 do not scale");

	/* hand-checked points of the official cosine: steps 0 and 1 run at the
	 * warmup lr; right after the warmup the cosine is at cos(pi W / T) */
	struct mim_sched s = {.kind = MIM_SCHED_COSINE, .lr = 5e-3, .warmup_lr = 1e-6,
	    .min_lr = 1e-6, .steps = 100, .warmup_steps = 20, .gamma = 0.1, .official = 1};
	tap(mim_sched_lr(&s, 0) == 1e-6 && mim_sched_lr(&s, 1) == 1e-6, "official: steps 0 and 1 at warmup_lr");
	double jump = 1e-6 + 0.5 * (5e-3 - 1e-6) * (1 + cos(M_PI * 20 / 100));
	tap(fabs(mim_sched_lr(&s, 21) - jump) < 1e-15, "official: step W+1 at the unshifted cosine (%.4g)", jump);
	tap(mim_sched_lr(&s, 20) < 5e-3 && mim_sched_lr(&s, 20) > mim_sched_lr(&s, 21),
	    "official: warmup tops out below lr, then jumps down");
	s.official = 0;
	tap(mim_sched_lr(&s, 0) == 1e-6 && mim_sched_lr(&s, 20) == 5e-3, "clean: warmup starts at warmup_lr and reaches lr at W");
	tap(mim_sched_lr(&s, 100) == 1e-6 && mim_sched_lr(&s, 1000) == 1e-6, "clean: min_lr after the end");
	s.kind = MIM_SCHED_CONSTANT;
	tap(mim_sched_lr(&s, 10) < 5e-3 && mim_sched_lr(&s, 20) == 5e-3 && mim_sched_lr(&s, 99) == 5e-3,
	    "constant: warmup, then lr");
	s.warmup_steps = 0;
	s.official = 1;
	tap(mim_sched_lr(&s, 0) == 5e-3, "official without warmup: step 0 at lr");

	/* settings checks */
	struct mim_sched b = {.kind = MIM_SCHED_MULTISTEP, .lr = 1e-3, .steps = 10,
	    .warmup_steps = 2, .gamma = 0.1, .nmilestones = 2, .milestones = {5, 3}};
	tap(mim_sched_check(&b) < 0 && strstr(mim_errmsg(), "ascending"), "descending milestones rejected: %s", mim_errmsg());
	b.milestones[0] = 1;
	b.milestones[1] = 5;
	tap(mim_sched_check(&b) < 0 && strstr(mim_errmsg(), "warmup"), "milestone inside the warmup rejected: %s", mim_errmsg());
	b.milestones[0] = 2;
	tap(mim_sched_check(&b) == 0, "valid multistep accepted");
	b.warmup_steps = 11;
	tap(mim_sched_check(&b) < 0, "warmup longer than the run rejected: %s", mim_errmsg());
	b.warmup_steps = 0;
	b.lr = NAN;
	tap(mim_sched_check(&b) < 0, "NaN lr rejected");
	b.lr = 1e-3;
	b.steps = 0;
	tap(mim_sched_check(&b) < 0, "zero steps rejected");
	tap(mim_sched_parse("cosine") == MIM_SCHED_COSINE && mim_sched_parse("multistep") == MIM_SCHED_MULTISTEP &&
	    mim_sched_parse("constant") == MIM_SCHED_CONSTANT && mim_sched_parse("linear") == -1,
	    "schedule names");
	return tap_done();
}
