/* sched.c -- learning-rate schedules per optimizer step, and the official
 * batch scaling of the learning rates (reference §7.2, §7.3).
 *
 * The official code (lr_scheduler.py over timm 0.4.12, t_in_epochs=False)
 * defines, for W = warmup steps and T = total steps,
 *   t <  W:  f(t) = warmup_lr + t * ((lr - warmup_lr) / W)
 *   cosine:  f(t) = min_lr + 0.5*(lr - min_lr)*(1 + cos(pi * t / T)), t < T
 *            (t not shifted by W: a jump at t = W), min_lr for t >= T
 *   multistep: f(t) = lr * gamma ** bisect_right(milestones, t)
 * and, because the loop calls step_update(g) after optimizer step g, step g
 * runs with f(g-1); step 0 with the lr the scheduler set up front
 * (warmup_lr, or lr without warmup). That is the `official` mode. With
 * gradient accumulation over A micro-batches the official loop counts t in
 * micro-batches (W, T and the milestones are epochs times the loader's
 * length) and calls step_update(gA - 1) after step g, so step g runs with
 * f(gA - 1) on those A-times-longer axes (s->accum).
 *
 * The clean default uses f(g) for step g and runs the cosine over the
 * T - W steps after the warmup (timm's warmup_prefix, the later
 * Swin-Transformer code), so the lr is continuous and reaches min_lr. */
#include <math.h>
#include <string.h>

#include "mim/optim.h"

static const char *names[] = {"cosine", "multistep", "constant"};

int
mim_sched_parse(const char *name)
{
	for (int i = 0; i < 3; i++)
		if (strcmp(name, names[i]) == 0)
			return i;
	return -1;
}

const char *
mim_sched_name(enum mim_sched_kind k)
{
	return (unsigned)k < 3 ? names[k] : "?";
}

static int
lr_ok(double x)
{
	return isfinite(x) && x >= 0;
}

int
mim_sched_check(const struct mim_sched *s)
{
	if ((unsigned)s->kind >= 3)
		return mim_seterr("unknown schedule %d", (int)s->kind);
	if (!lr_ok(s->lr) || !lr_ok(s->warmup_lr) || !lr_ok(s->min_lr))
		return mim_seterr("learning rates must be finite and >= 0");
	if (s->steps < 1)
		return mim_seterr("steps must be >= 1");
	if (s->accum < 0 || s->accum > 1 << 20)
		return mim_seterr("accum %d out of range", s->accum);
	if (s->warmup_steps < 0 || s->warmup_steps > s->steps)
		return mim_seterr("warmup steps (%lld) must be in [0, steps = %lld]",
		    (long long)s->warmup_steps, (long long)s->steps);
	if (s->nmilestones < 0 || s->nmilestones > MIM_MAXMILESTONE)
		return mim_seterr("at most %d milestones", MIM_MAXMILESTONE);
	if (!(isfinite(s->gamma) && s->gamma > 0))
		return mim_seterr("gamma must be > 0");
	for (int i = 0; i < s->nmilestones; i++) {
		if (s->milestones[i] < s->warmup_steps)
			return mim_seterr("milestone %lld is inside the warmup (%lld steps)",
			    (long long)s->milestones[i], (long long)s->warmup_steps);
		if (i > 0 && s->milestones[i] < s->milestones[i - 1])
			return mim_seterr("milestones must be ascending");
	}
	return 0;
}

/* bisect_right: the number of milestones <= t */
static int
passed(const struct mim_sched *s, int64_t t)
{
	int k = 0;

	while (k < s->nmilestones && s->milestones[k] <= t)
		k++;
	return k;
}

static double
cosine(double lr, double min_lr, int64_t t, int64_t T)
{
	if (T <= 0 || t >= T)
		return min_lr;
	return min_lr + 0.5 * (lr - min_lr) * (1 + cos(M_PI * (double)t / (double)T));
}

/* f(t) of the header comment; prefix: cosine shifted by the warmup */
static double
value(const struct mim_sched *s, int64_t t, int prefix)
{
	int64_t W = s->warmup_steps;

	if (t < W)
		return s->warmup_lr + (double)t * ((s->lr - s->warmup_lr) / (double)W);
	switch (s->kind) {
	case MIM_SCHED_COSINE:
		return prefix ? cosine(s->lr, s->min_lr, t - W, s->steps - W)
		    : cosine(s->lr, s->min_lr, t, s->steps);
	case MIM_SCHED_MULTISTEP:
		return s->lr * pow(s->gamma, passed(s, t));
	case MIM_SCHED_CONSTANT:
		break;
	}
	return s->lr;
}

double
mim_sched_lr(const struct mim_sched *s, int64_t g)
{
	if (g < 0)
		g = 0;
	if (!s->official)
		return value(s, g, 1);
	if (g == 0)
		return s->warmup_steps > 0 ? s->warmup_lr : s->lr;
	if (s->accum <= 1)
		return value(s, g - 1, 0);
	/* time in micro-batches: T, W and the milestones are A times the
	 * steps, and step_update(idx) runs after the step whose last
	 * micro-batch is idx = gA - 1 */
	struct mim_sched m = *s;
	int64_t a = s->accum;
	m.steps *= a;
	m.warmup_steps *= a;
	for (int i = 0; i < m.nmilestones; i++)
		m.milestones[i] *= a;
	return value(&m, g * a - 1, 0);
}

double
mim_lr_scale(double lr, int batch, int world, int accum)
{
	double x = lr * (double)batch * (double)world / 512.0;

	if (accum > 1)
		x = x * (double)accum;
	return x;
}
