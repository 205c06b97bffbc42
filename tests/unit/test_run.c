/* test_run.c -- the training run of lib/train/run.c, in one process and
 * against fake peers: saves and log lines, resume (skipping the consumed
 * frames) to the same bytes as an uninterrupted run, a finished run, the
 * stop flag, non-finite steps, an input that ends or goes bad, the
 * agreement protocol (another rank's failure, a digest mismatch), and the
 * checkpoint's lock. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "mim.h"
#include "tap.h"

enum { B = 2 };
static struct mim_config cfg;
static char dir[64];

/* ---- the frames: frame k of a fixed stream, made on demand ---------------- */

struct feed {
	int n;			/* frames in the stream */
	int nan_at;		/* this frame's image is NaN (-1: none) */
	int f32_mask_at;	/* this frame's mask is F32 (-1: none) */
	int stop_at;		/* asked for this frame: set *stop, as a signal would */
	volatile sig_atomic_t *stop;
	int reads;		/* frames handed out */
};

static struct mim_frame *
make_frame(int k, int nan, int f32mask)
{
	int S = cfg.img_size, P = S / cfg.patch_size;
	int64_t ish[4] = {B, 3, S, S}, msh[3] = {B, P, P};
	size_t ni = (size_t)B * 3 * S * S, nm = (size_t)B * P * P;
	float *img = malloc(ni * sizeof(float)), *fm = malloc(nm * sizeof(float));
	uint8_t *mask = malloc(nm);
	uint64_t x = 7 + (uint64_t)k;
	struct mim_frame *f = mim_frame_new();

	for (size_t i = 0; i < ni; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		img[i] = nan ? NAN : (float)((x >> 40) % 2001) / 1000.0f - 1.0f;
	}
	for (size_t i = 0; i < nm; i++)
		fm[i] = mask[i] = (uint8_t)((i + (size_t)k) % 5 < 3);
	mim_frame_add(f, "image", MIM_F32, 4, ish, img);
	if (f32mask)
		mim_frame_add(f, "mask", MIM_F32, 3, msh, fm);
	else
		mim_frame_add(f, "mask", MIM_U8, 3, msh, mask);
	free(img);
	free(fm);
	free(mask);
	return f;
}

static int
feed_next(void *ctx, struct mim_frame **f)
{
	struct feed *d = ctx;

	if (d->reads == d->stop_at)
		*d->stop = 15;
	if (*d->stop || d->reads >= d->n)
		return 0;
	*f = make_frame(d->reads, d->reads == d->nan_at, d->reads == d->f32_mask_at);
	d->reads++;
	return 1;
}

/* ---- what the run says ----------------------------------------------------- */

static int nmsg, nprogress, neol;
static char said[4096];

static void
say(void *ctx, enum mim_say kind, const char *text)
{
	(void)ctx;
	if (kind == MIM_SAY_MSG) {
		nmsg++;
		size_t n = strlen(said);
		snprintf(said + n, sizeof said - n, "%s%s", n ? " | " : "", text);
	}
	nprogress += kind == MIM_SAY_PROGRESS;
	neol += kind == MIM_SAY_EOL;
}

/* ---- fake peers: a second rank that does what this one does, or fails ------ */

static struct mim_run *peer_run;
static int peer_fails_at;	/* step at which the other rank fails (0: never) */
static int peer_differs_at;	/* step from which the digests differ (0: never) */

static int
peer_max(int v)
{
	if (peer_fails_at && peer_run->t && peer_run->t->step >= peer_fails_at)
		return 1000;
	return v;
}

static double peer_sum(double x) { return 2 * x; }
static void peer_sum_floats(float *x, size_t n) { for (size_t i = 0; i < n; i++) x[i] *= 2; }

static int
peer_same(uint64_t v)
{
	(void)v;
	return !(peer_differs_at && peer_run->t && peer_run->t->step >= peer_differs_at);
}

/* ---- one run -------------------------------------------------------------------- */

struct how {
	const char *ckpt, *log;
	int64_t steps, save_every, skip;
	int skip_nonfinite, peers, extend;
	struct feed feed;
};

/* Run as mim-step does; returns how it ended (0: done), the run's step in
 * *step. */
static int
run(struct how *h, int64_t *step)
{
	static volatile sig_atomic_t stop;
	struct mim_run r = {
		.ckpt = h->ckpt, .steps = h->steps, .save_every = h->save_every, .skip = h->skip,
		.skip_nonfinite = h->skip_nonfinite, .log = h->log, .progress = 1, .extend = h->extend,
		.next = feed_next, .next_ctx = &h->feed, .input = "feed", .stop = &stop, .say = say,
	};
	struct mim_trainopt o;
	int st;

	if (h->peers)
		r.dp = (struct mim_dp){.rank = 0, .world = 2, .max = peer_max, .sum = peer_sum,
		    .sum_floats = peer_sum_floats, .same = peer_same};
	peer_run = &r;
	stop = 0;
	h->feed.stop = &stop;
	nmsg = nprogress = neol = 0;
	said[0] = 0;
	mim_trainopt_default(&o);
	o.sched.steps = h->steps;
	if (!(st = mim_run_load(&r)) && !(st = mim_run_first(&r))) {
		mim_run_lrs(&r, &o, 1e-3, 1e-4, 1e-5, 0);
		if (!(st = mim_run_prepare(&r, &o)))
			st = mim_run_train(&r);
	}
	*step = r.t ? r.t->step : -1;
	if (st == MIM_RUN_STOPPED && r.signal != 15)
		st = -1;
	mim_run_free(&r);
	return st;
}

/* the checkpoint's mim.train.step, or -1 */
static long
saved_step(const char *file)
{
	struct mim_frame *f = mim_load(file);
	const char *s = f ? mim_meta_get(f, "mim.train.step") : NULL;
	long v = s ? atol(s) : -1;

	mim_frame_free(f);
	return v;
}

static int
same_file(const char *a, const char *b)
{
	FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
	int ca = 0, cb = 1;

	if (fa && fb)
		do {
			ca = getc(fa);
			cb = getc(fb);
		} while (ca == cb && ca != EOF);
	if (fa)
		fclose(fa);
	if (fb)
		fclose(fb);
	return ca == cb;
}

static void
copy(const char *from, const char *to)
{
	struct mim_frame *f = mim_load(from);

	if (!f || mim_save(to, f) < 0)
		tap(0, "copy %s: %s", from, mim_errmsg());
	mim_frame_free(f);
}

static int
lines(const char *file)
{
	FILE *f = fopen(file, "r");
	int n = 0, c;

	while (f && (c = getc(f)) != EOF)
		n += c == '\n';
	if (f)
		fclose(f);
	return n;
}

int
main(void)
{
	int64_t step;
	int st;

	if (mim_config_preset(&cfg, "micro-vit") < 0) {
		tap(0, "micro-vit preset: %s", mim_errmsg());
		return tap_done();
	}
	snprintf(dir, sizeof dir, "/tmp/test_run.XXXXXX");
	if (!mkdtemp(dir) || chdir(dir) < 0) {	/* (the files below are in dir) */
		tap(0, "mkdtemp, chdir");
		return tap_done();
	}
	struct mim_model *m = mim_model_new(&cfg);
	struct mim_frame *f0 = m && mim_model_init(m, 1) == 0 ? mim_model_to_frame(m) : NULL;
	tap(f0 && mim_save("init.st", f0) == 0, "a micro-vit checkpoint");
	mim_frame_free(f0);
	mim_model_free(m);
	const char *init = "init.st";

	/* fresh: 5 steps, saves every 2, a log line per step, progress */
	copy(init, "a.st");
	struct how a = {.ckpt = "a.st", .log = "a.log", .steps = 5, .save_every = 2,
	    .skip = -1, .feed = {.n = 8, .nan_at = -1, .f32_mask_at = -1, .stop_at = -1}};
	st = run(&a, &step);
	tap(st == 0 && step == 5 && saved_step(a.ckpt) == 5 && nmsg == 0,
	    "5 steps: done, saved at step 5, nothing said (%d, %s)", st, said);
	tap(lines(a.log) == 5 && nprogress == 5 && neol == 1, "5 log lines, 5 progress lines, one newline");
	tap(a.feed.reads == 5, "one frame a step (%d read)", a.feed.reads);

	/* a finished run stops at once */
	st = run(&a, &step);
	tap(st == MIM_RUN_DONE && strstr(said, "already at step 5 of 5"), "run again: done (%s)", said);

	/* stopped at frame 3 (a signal): saved at step 3; resumed: skips the 3
	 * frames consumed, ends with the bytes of the uninterrupted run */
	copy(init, "b.st");
	struct how b = {.ckpt = "b.st", .steps = 5, .save_every = 2, .skip = -1,
	    .feed = {.n = 8, .nan_at = -1, .f32_mask_at = -1, .stop_at = 3}};
	st = run(&b, &step);
	tap(st == MIM_RUN_STOPPED && saved_step(b.ckpt) == 3 &&
	    strstr(said, "stopped by signal 15 at step 3; saved"), "a signal: stopped, step 3 saved (%s)", said);
	b.feed = (struct feed){.n = 8, .nan_at = -1, .f32_mask_at = -1, .stop_at = -1};
	st = run(&b, &step);
	tap(st == 0 && b.feed.reads == 5 && same_file(a.ckpt, b.ckpt),
	    "resumed: 3 frames skipped, the checkpoint of the uninterrupted run, byte for byte");

	/* a NaN in frame 2: stop, the last save stays; or skip it */
	copy(init, "c.st");
	struct how c = {.ckpt = "c.st", .steps = 4, .save_every = 1, .skip = -1,
	    .feed = {.n = 8, .nan_at = 2, .f32_mask_at = -1, .stop_at = -1}};
	st = run(&c, &step);
	tap(st == MIM_RUN_FAILED && saved_step(c.ckpt) == 2 &&
	    strstr(said, "step 3: the loss is not finite") && strstr(said, "stays at step 2"),
	    "NaN: stops, step 2 stays (%s)", said);
	copy(init, "c.st");
	c.skip_nonfinite = 1;
	c.feed.reads = 0;
	st = run(&c, &step);
	tap(st == 0 && saved_step(c.ckpt) == 4 && nmsg == 1 &&
	    strstr(said, "step 3: non-finite loss or gradient, batch skipped") && c.feed.reads == 5,
	    "--skip-nonfinite: said, skipped, 4 steps on 5 frames (%s)", said);

	/* the input ends, or goes bad: the progress is saved, the run fails */
	copy(init, "d.st");
	struct how d = {.ckpt = "d.st", .steps = 5, .save_every = 100, .skip = -1,
	    .feed = {.n = 3, .nan_at = -1, .f32_mask_at = -1, .stop_at = -1}};
	st = run(&d, &step);
	tap(st == MIM_RUN_FAILED && saved_step(d.ckpt) == 3 && strstr(said, "feed: input ended after step 3 of 5"),
	    "input ends: step 3 saved (%s)", said);
	copy(init, "d.st");
	d.feed = (struct feed){.n = 8, .nan_at = -1, .f32_mask_at = 2, .stop_at = -1};
	st = run(&d, &step);
	tap(st == MIM_RUN_FAILED && saved_step(d.ckpt) == 2 &&
	    strstr(said, "feed: frame 2: tensor 'mask': dtype F32, want an integer or BOOL mask"),
	    "a float mask in frame 2: step 2 saved (%s)", said);

	/* peers: another rank fails at step 2: this one stops there quietly
	 * (that rank says why), progress saved; digests that differ at a save */
	copy(init, "e.st");
	peer_fails_at = 2;
	struct how e = {.ckpt = "e.st", .steps = 5, .save_every = 100, .skip = -1, .peers = 1,
	    .feed = {.n = 8, .nan_at = -1, .f32_mask_at = -1, .stop_at = -1}};
	st = run(&e, &step);
	tap(st == MIM_RUN_FAILED && step == 2 && saved_step(e.ckpt) == 2 && nmsg == 0,
	    "another rank fails: stopped at step 2, saved, nothing said here (%s)", said);
	peer_fails_at = 0;
	peer_differs_at = 1;
	copy(init, "e.st");
	e.feed.reads = 0;
	e.save_every = 1;
	st = run(&e, &step);
	tap(st == MIM_RUN_FAILED && saved_step(e.ckpt) == -1 &&
	    strstr(said, "step 1: the ranks' weights or moments differ; stopping"),
	    "the ranks' states differ: stopped before saving (%s)", said);
	peer_differs_at = 0;

	/* the checkpoint's lock: held by another open file (as another process
	 * would), the run is refused before anything, naming the holder; a
	 * lock file nobody holds is taken over, and removed at the end */
	int lk = open("a.st.lock", O_RDWR | O_CREAT, 0644);
	tap(lk >= 0 && flock(lk, LOCK_EX | LOCK_NB) == 0 && write(lk, "4242\n", 5) == 5, "hold a.st.lock");
	a.steps = 7;
	a.feed.reads = 0;
	st = run(&a, &step);
	tap(st == MIM_RUN_FAILED && a.feed.reads == 0 && saved_step(a.ckpt) == 5 &&
	    strstr(said, "a.st: in use by another run (pid 4242 holds a.st.lock)"),
	    "a locked checkpoint: refused, nothing read or saved (%s)", said);
	close(lk);	/* (the file stays, unheld: a killed run's) */
	a.extend = 1;	/* (and the finished run goes on to step 7) */
	st = run(&a, &step);
	tap(st == 0 && saved_step(a.ckpt) == 7 && a.feed.reads == 7 && access("a.st.lock", F_OK) < 0,
	    "the stale lock file: taken over, removed at the end; extended to step 7 (%d, %s)", st, said);

	const char *files[] = {"init.st", "a.st", "a.log", "b.st", "c.st", "d.st", "e.st"};
	for (size_t i = 0; i < sizeof files / sizeof *files; i++)
		unlink(files[i]);
	if (chdir("/") == 0)
		rmdir(dir);
	return tap_done();
}
