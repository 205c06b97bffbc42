/* mim-step -- SimMIM pretraining: for each batch of a stream of {image,
 * mask} frames, forward, loss, backward, clipping and the AdamW update
 * (lib/train, lib/optim), with the official schedules; checkpoints that a
 * killed run resumes from exactly. Under mpirun, data-parallel: every rank
 * trains on its own stream and the gradients are averaged (cmd/step/dp.c).
 * See mim-step(1). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "step/dp.h"

static const char usage_text[] =
"usage: mim-step --ckpt FILE --steps N [options] [INPUT]\n"
"       mim-step --ckpt FILE --grad-out OUT [options] [INPUT]\n"
"Train the model of FILE (from mim-ckpt init, or a checkpoint of an earlier\n"
"run, which is resumed) on the {image, mask} frames of INPUT (stdin when\n"
"none, or '-'); progress is saved to FILE.\n"
"  -c, --ckpt FILE        start from and save to FILE (required)\n"
"  -n, --steps N          optimizer steps of the whole run (required)\n"
"      --lr X             peak learning rate, absolute\n"
"      --base-lr X        peak lr per 512 images, scaled by batch*accum*ranks\n"
"                         /512 like the official code (default 5e-4)\n"
"      --warmup-lr X      lr at the start of the warmup (default 5e-7; per\n"
"                         512 images with --base-lr, else absolute)\n"
"      --min-lr X         final cosine lr (default 5e-6; scaled likewise)\n"
"      --sched S          cosine (default), multistep or constant\n"
"      --warmup-steps N   linear warmup steps (default 0)\n"
"      --milestones A,B   multistep: steps where the lr is multiplied by\n"
"      --gamma G          this factor (default 0.1)\n"
"      --official-sched   timm 0.4.12 behaviour: cosine not shifted by the\n"
"                         warmup, step g runs with the lr of step g-1; with\n"
"                         --accum, clip after every micro-batch and count\n"
"                         scheduler time in micro-batches\n"
"      --weight-decay W   AdamW weight decay of the decay group (0.05)\n"
"      --clip-grad C      clip the global gradient L2 norm to C (5.0; 0 off)\n"
"      --accum N          micro-batches (frames) per step (default 1)\n"
"      --seed N           drop path seed (default 0)\n"
"      --loss L           l1 (default), l2 or smooth-l1\n"
"      --region R         masked (default) or all pixels\n"
"      --beta B           smooth-l1 threshold (default 1.0)\n"
"      --save-every N     save every N steps (default 100; 0: at the end)\n"
"      --skip N           skip N input frames before training (default: the\n"
"                         frames the checkpoint has consumed)\n"
"      --skip-nonfinite   skip a batch with NaN/Inf loss or gradient (default:\n"
"                         stop with an error, keeping the last checkpoint)\n"
"      --log FILE         append one JSON line per step to FILE\n"
"      --grad-out OUT     write the gradients of the first batch (grad.<name>,\n"
"                         loss) to OUT ('-': stdout) and exit\n"
"      --mpi, --no-mpi    data-parallel over MPI: on, off (default: on when\n"
"                         started by mpirun/mpiexec)\n"
"  -t, --threads N        threads (default $MIM_THREADS, else all cores; a\n"
"                         rank: its cores, or its share of the node's)\n"
"  -q, --quiet            no progress line on a terminal\n"
"  -h, --help             this help\n";

enum {
	O_LR = 256, O_BASE_LR, O_WARMUP_LR, O_MIN_LR, O_SCHED, O_WARMUP_STEPS,
	O_MILESTONES, O_GAMMA, O_OFFICIAL, O_WD, O_CLIP, O_ACCUM, O_SEED, O_LOSS,
	O_REGION, O_BETA, O_SAVE_EVERY, O_SKIP, O_SKIP_NONFINITE, O_LOG,
	O_GRAD_OUT, O_MPI, O_NO_MPI,
};

/* All the information the user supplied on the command line. */
struct cmdline {
	const char *ckpt, *input, *log, *grad_out;
	long long steps, save_every, skip;	/* skip < 0: from the checkpoint */
	double lr, base_lr, warmup_lr, min_lr;	/* lr < 0: use base_lr */
	int skip_nonfinite, quiet, threads;
	enum dp_mode mpi;
	struct mim_trainopt o;			/* the rest, lrs unscaled */
};

static volatile sig_atomic_t stop_signal, reading;
static int input_fd = -1;

/* SIGINT, SIGTERM: stop at the next step boundary. If the input is being
 * waited for, put /dev/null in its place so the read ends at once (with
 * EOF; the frame in transit is not needed any more). */
static void
on_signal(int sig)
{
	int e = errno;

	stop_signal = sig;
	signal(sig, SIG_DFL);	/* a second one kills */
	if (reading && input_fd >= 0) {
		int fd = open("/dev/null", O_RDONLY);
		if (fd >= 0) {
			dup2(fd, input_fd);
			close(fd);
		}
	}
	errno = e;
}

/* mim_read_frame, interruptible by on_signal */
static int
next_frame(struct mim_reader *rd, struct mim_frame **f)
{
	reading = 1;
	int rc = stop_signal ? 0 : mim_read_frame(rd, f);
	reading = 0;
	return rc;
}

static void
parse(int argc, char **argv, struct cmdline *cl)
{
	static const struct option opts[] = {
		{"ckpt", required_argument, NULL, 'c'},
		{"steps", required_argument, NULL, 'n'},
		{"lr", required_argument, NULL, O_LR},
		{"base-lr", required_argument, NULL, O_BASE_LR},
		{"warmup-lr", required_argument, NULL, O_WARMUP_LR},
		{"min-lr", required_argument, NULL, O_MIN_LR},
		{"sched", required_argument, NULL, O_SCHED},
		{"warmup-steps", required_argument, NULL, O_WARMUP_STEPS},
		{"milestones", required_argument, NULL, O_MILESTONES},
		{"gamma", required_argument, NULL, O_GAMMA},
		{"official-sched", no_argument, NULL, O_OFFICIAL},
		{"weight-decay", required_argument, NULL, O_WD},
		{"clip-grad", required_argument, NULL, O_CLIP},
		{"accum", required_argument, NULL, O_ACCUM},
		{"seed", required_argument, NULL, O_SEED},
		{"loss", required_argument, NULL, O_LOSS},
		{"region", required_argument, NULL, O_REGION},
		{"beta", required_argument, NULL, O_BETA},
		{"save-every", required_argument, NULL, O_SAVE_EVERY},
		{"skip", required_argument, NULL, O_SKIP},
		{"skip-nonfinite", no_argument, NULL, O_SKIP_NONFINITE},
		{"log", required_argument, NULL, O_LOG},
		{"grad-out", required_argument, NULL, O_GRAD_OUT},
		{"mpi", no_argument, NULL, O_MPI},
		{"no-mpi", no_argument, NULL, O_NO_MPI},
		{"threads", required_argument, NULL, 't'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct mim_sched *s = &cl->o.sched;
	const char *ms = NULL;
	int c, have_lr = 0, have_base = 0;

	memset(cl, 0, sizeof *cl);
	mim_trainopt_default(&cl->o);
	cl->steps = -1;
	cl->save_every = 100;
	cl->skip = -1;
	cl->base_lr = 5e-4;
	cl->warmup_lr = 5e-7;
	cl->min_lr = 5e-6;
	while ((c = getopt_long(argc, argv, "c:n:t:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': cl->ckpt = optarg; break;
		case 'n': cl->steps = cli_int("--steps", optarg, 1, INT64_MAX / 1024); break;
		case O_LR: cl->lr = cli_double("--lr", optarg, 0, 1e3); have_lr = 1; break;
		case O_BASE_LR: cl->base_lr = cli_double("--base-lr", optarg, 0, 1e3); have_base = 1; break;
		case O_WARMUP_LR: cl->warmup_lr = cli_double("--warmup-lr", optarg, 0, 1e3); break;
		case O_MIN_LR: cl->min_lr = cli_double("--min-lr", optarg, 0, 1e3); break;
		case O_SCHED:
			if ((int)(s->kind = mim_sched_parse(optarg)) < 0)
				usage_error("--sched: '%s' is not cosine, multistep or constant", optarg);
			break;
		case O_WARMUP_STEPS:
			s->warmup_steps = cli_int("--warmup-steps", optarg, 0, INT64_MAX / 1024);
			break;
		case O_MILESTONES: ms = optarg; break;
		case O_GAMMA: s->gamma = cli_double("--gamma", optarg, 1e-30, 1e30); break;
		case O_OFFICIAL: s->official = 1; break;
		case O_WD: cl->o.adamw.weight_decay = cli_double("--weight-decay", optarg, 0, 1e6); break;
		case O_CLIP: cl->o.clip_grad = cli_double("--clip-grad", optarg, 0, 1e30); break;
		case O_ACCUM: cl->o.accum = (int)cli_int("--accum", optarg, 1, 1 << 20); break;
		case O_SEED: cl->o.seed = (uint64_t)cli_int("--seed", optarg, 0, INT64_MAX); break;
		case O_LOSS: cl->o.loss.kind = cli_loss("--loss", optarg); break;
		case O_REGION: cl->o.loss.region = cli_region("--region", optarg); break;
		case O_BETA: cl->o.loss.beta = cli_double("--beta", optarg, 1e-12, 1e12); break;
		case O_SAVE_EVERY: cl->save_every = cli_int("--save-every", optarg, 0, INT64_MAX); break;
		case O_SKIP: cl->skip = cli_int("--skip", optarg, 0, INT64_MAX / 2); break;
		case O_SKIP_NONFINITE: cl->skip_nonfinite = 1; break;
		case O_LOG: cl->log = optarg; break;
		case O_GRAD_OUT: cl->grad_out = optarg; break;
		case O_MPI: cl->mpi = DP_ON; break;
		case O_NO_MPI: cl->mpi = DP_OFF; break;
		case 't': cl->threads = (int)cli_int("--threads", optarg, 1, 1024); break;
		case 'q': cl->quiet = 1; break;
		case 'h': fputs(usage_text, stdout); exit(0);
		default: usage_error("unknown option");
		}
	}
	if (optind + 1 < argc)
		usage_error("more than one input");
	cl->input = optind < argc ? argv[optind] : "-";
	if (!cl->ckpt)
		usage_error("--ckpt FILE is required (make one with mim-ckpt init)");
	if (have_lr && have_base)
		usage_error("--lr and --base-lr exclude each other");
	cl->lr = have_lr ? cl->lr : -1;
	if (cl->grad_out)
		return;
	if (cl->steps < 0)
		usage_error("--steps N is required");
	if (ms) {
		double v[MIM_MAXMILESTONE];
		s->nmilestones = cli_doubles("--milestones", ms, v, MIM_MAXMILESTONE);
		for (int i = 0; i < s->nmilestones; i++) {
			if (v[i] != floor(v[i]) || v[i] < 0 || v[i] > 1e15)
				usage_error("--milestones: %g is not a step number", v[i]);
			s->milestones[i] = (int64_t)v[i];
		}
	}
	if (ms && s->kind != MIM_SCHED_MULTISTEP)
		usage_error("--milestones needs --sched multistep");
	/* check the schedule now, with placeholder lrs, for a usage error */
	s->steps = cl->steps;
	s->lr = s->warmup_lr = s->min_lr = 0;
	if (mim_sched_check(s) < 0)
		usage_error("%s", mim_errmsg());
}

/* The run's settings once the batch size is known: lrs scaled (--base-lr,
 * by the images of a step on all ranks) or absolute (--lr). */
static void
resolve(struct cmdline *cl, int B)
{
	struct mim_trainopt *o = &cl->o;

	o->batch = B;
	o->world = dp_world;
	if (cl->lr >= 0) {
		o->sched.lr = cl->lr;
		o->sched.warmup_lr = cl->warmup_lr;
		o->sched.min_lr = cl->min_lr;
		o->base_lr = 0;
	} else {
		o->sched.lr = mim_lr_scale(cl->base_lr, B, dp_world, o->accum);
		o->sched.warmup_lr = mim_lr_scale(cl->warmup_lr, B, dp_world, o->accum);
		o->sched.min_lr = mim_lr_scale(cl->min_lr, B, dp_world, o->accum);
		o->base_lr = cl->base_lr;
	}
	if (cl->steps > 0)
		o->sched.steps = cl->steps;
}

/* A killed save leaves FILE.tmp.PID behind: remove those of dead PIDs. */
static void
clean_temps(const char *ckpt)
{
	char *d1 = strdup(ckpt), *d2 = strdup(ckpt);
	if (!d1 || !d2)
		goto done;
	const char *dir = dirname(d1), *base = basename(d2);
	size_t bl = strlen(base);
	DIR *dp = opendir(dir);
	if (!dp)
		goto done;
	struct dirent *e;
	while ((e = readdir(dp))) {
		const char *n = e->d_name;
		if (strncmp(n, base, bl) != 0 || strncmp(n + bl, ".tmp.", 5) != 0)
			continue;
		char *end;
		long pid = strtol(n + bl + 5, &end, 10);
		if (*end || pid <= 0 || (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
			continue;
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, n);
		unlink(path);
	}
	closedir(dp);
done:
	free(d1);
	free(d2);
}

/* Check a frame's image and mask against the model: B, or -1 with the
 * error set. */
static int
batch_of(const struct mim_frame *f, const struct mim_config *c, long k,
    const char *input, const float **img, const uint8_t **mask)
{
	int S = c->img_size, p = c->patch_size;
	int64_t ish[4] = {-1, c->in_chans, S, S};
	struct mim_tensor *ti = mim_frame_want(f, "image", MIM_F32, 4, ish), *tm;

	char why[1024];		/* (mim_seterr must not read its own buffer) */

	if (!ti) {
		snprintf(why, sizeof why, "%s", mim_errmsg());
		return mim_seterr("%s: frame %ld: %s (the model takes %d x %d images)",
		    input, k, why, S, S);
	}
	if (ti->shape[0] < 1 || ti->shape[0] > 1 << 20)
		return mim_seterr("%s: frame %ld: tensor 'image': batch of %lld", input, k,
		    (long long)ti->shape[0]);
	int64_t msh[3] = {ti->shape[0], S / p, S / p};
	if (!(tm = mim_frame_get(f, "mask")))
		return mim_seterr("%s: frame %ld: no tensor 'mask' (pipe the images through mim-mask)",
		    input, k);
	if (mim_mask_check(tm) < 0) {
		snprintf(why, sizeof why, "%s", mim_errmsg());
		return mim_seterr("%s: frame %ld: %s", input, k, why);
	}
	if (!mim_frame_want(f, "mask", -1, 3, msh)) {
		snprintf(why, sizeof why, "%s", mim_errmsg());
		return mim_seterr("%s: frame %ld: %s (image / model patch size)", input, k, why);
	}
	/* the mask as 0/1 bytes, whatever its integer dtype */
	static uint8_t *buf;
	size_t n = (size_t)mim_tensor_numel(tm);
	uint8_t *nb = realloc(buf, n ? n : 1);
	if (!nb)
		return mim_seterr("out of memory");
	buf = nb;
	mim_mask_bytes(tm, buf);
	*img = ti->data;
	*mask = buf;
	return (int)ti->shape[0];
}

/* ---- data parallel --------------------------------------------------------
 * Every rank runs this program on its own input. Ranks decide together:
 * at each agreement point every rank passes what it found (its own
 * problem as a message, or the signal that asked it to stop) and all get
 * the worst, so they stop at the same frame. A rank that fails between
 * two agreement points calls agree() with its message at once: that meets
 * the others at whichever point they reach next, for the loop is ordered
 * so that the next collective after any local failure is an agreement
 * (the digest check and the gradient sums come only after an agreement
 * all passed). Alone (no MPI) the agreement is the rank's own verdict. */
#define BAD 1000	/* above any signal number */
static int told;	/* this rank has seen a failure agreed */

static int
agree(const char *msg, int sig)
{
	int st = dp_max(msg ? BAD : sig);

	if (st >= BAD)
		told = 1;
	return st;
}

/* A failure found before the other ranks could hear of it: tell them. */
static void
tell(void)
{
	if (!told)
		agree("", 0);
}

/* Leave once every rank has agreed to: finalize, then status. */
static void __attribute__((noreturn))
leave(int status)
{
	dp_barrier();
	dp_finalize();
	exit(status);
}

/* Leave with status 1, printing msg (NULL: another rank's problem, which
 * that rank reports). */
static void __attribute__((noreturn))
fail(const char *msg)
{
	if (msg)
		fprintf(stderr, "%s: %s\n", argv0, msg);
	leave(1);
}

/* Check together: the run fails when any rank passes a message. */
static void
together(const char *msg)
{
	char m[1200];

	if (msg)
		snprintf(m, sizeof m, "%s", msg);	/* may be mim_errmsg() */
	if (agree(msg, 0) >= BAD)
		fail(msg ? m : NULL);
}

/* The reduce hook of struct mim_train: the step's gradient and loss
 * become their means over the ranks. An agreement first, so that a rank
 * that failed in its forward or backward stops everyone here. */
static int
reduce(void *ctx, float *g, size_t n, double *loss)
{
	(void)ctx;
	if (agree(NULL, 0) >= BAD)
		return mim_seterr("stopping with another rank");
	*loss = dp_sum(*loss) / dp_world;
	dp_sum_floats(g, n);
	const float w = (float)dp_world;
	for (size_t i = 0; i < n; i++)
		g[i] /= w;
	return 0;
}

/* Threads of a rank that neither --threads nor MIM_THREADS sets: the
 * cores mpirun bound it to, or when it is not bound (--bind-to none) an
 * equal share of the node's cores. */
static int
rank_threads(void)
{
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;
	int n = 0;

	if (online < 1)
		online = 1;
	if (sched_getaffinity(0, sizeof set, &set) == 0)
		n = CPU_COUNT(&set);
	if (n >= 1 && n < online)
		return n;
	n = (int)(online / dp_local_size());
	return n < 1 ? 1 : n;
}

/* The settings every rank must share, as one digest: a rank started with
 * other flags would train another model or deadlock the others. */
static uint64_t
settings_digest(const struct cmdline *cl)
{
	static const char *keys[] = {"optim", "sched", "loss", "rng"};
	uint64_t h = 1469598103934665603ULL;	/* FNV-1a */
	char extra[128];

	for (int i = 0; i < 5; i++) {
		char *v = i < 4 ? mim_train_setting(&cl->o, keys[i]) : NULL;
		const char *p = v;
		if (i == 4) {
			snprintf(extra, sizeof extra, "%lld %lld %lld %d", cl->steps, cl->skip,
			    cl->save_every, cl->skip_nonfinite);
			p = extra;
		}
		for (; p && *p; p++)
			h = (h ^ (unsigned char)*p) * 1099511628211ULL;
		h = (h ^ 0xff) * 1099511628211ULL;
		free(v);
	}
	return h;
}

/* ---- the tool --------------------------------------------------------------- */

static void
grad_out(struct cmdline *cl, struct mim_model *m, int B, const float *img,
    const uint8_t *mask)
{
	double loss;
	uint64_t seed = mim_train_seed(cl->o.seed, 0, dp_rank);

	together(mim_model_grad(m, B, img, mask, &cl->o.loss, seed, &loss) < 0 ?
	    mim_errmsg() : NULL);
	if (dp_world > 1 && reduce(NULL, m->g, m->nw, &loss) < 0)
		leave(1);	/* (cannot happen: all passed together()) */
	if (dp_rank > 0)
		leave(0);
	/* rank 0 writes; the others wait in leave() */
	struct mim_frame *f = mim_frame_new();
	char name[1024], buf[64];
	if (!f)
		fail(mim_errmsg());
	for (int i = 0; i < m->np; i++) {
		const struct mim_param *p = &m->p[i];
		snprintf(name, sizeof name, "grad.%s", p->name);
		if (!mim_frame_add(f, name, MIM_F32, p->ndim, p->shape, m->g + p->off))
			fail(mim_errmsg());
	}
	float l = (float)loss;
	if (!mim_frame_add(f, "loss", MIM_F32, 0, NULL, &l))
		fail(mim_errmsg());
	char *js = mim_config_json(&m->cfg);
	snprintf(buf, sizeof buf, "%.9g", mim_grad_norm(m->p, m->np, m->g));
	if (!js || mim_meta_set(f, "mim.config", js) < 0 || mim_meta_set(f, "mim.grad_norm", buf) < 0)
		fail(mim_errmsg());
	free(js);
	if (strcmp(cl->grad_out, "-") == 0) {
		cli_stdout_not_tty();
		cli_put(f);
	} else if (mim_save(cl->grad_out, f) < 0) {
		fail(mim_errmsg());
	}
	mim_frame_free(f);
	leave(0);
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Everything the loop needs to save, log and report. */
struct run {
	struct cmdline *cl;
	struct mim_train *t;
	int64_t saved;		/* step of the checkpoint on disk */
	FILE *log;
	int tty;
	double t0, tlast;
	double input_s;		/* spent reading frames since the last report */
	int64_t step0;
};

/* Rank 0 saves (the ranks hold the same state); every rank notes the
 * step saved, which decides the collectives of the loop. 0, or -1 with
 * the error set. */
static int
save(struct run *r)
{
	if (dp_rank == 0 && mim_train_save(r->t, r->cl->ckpt) < 0)
		return -1;
	r->saved = r->t->step;
	return 0;
}

/* Stop on a problem with the input (or the model's work on it), found here
 * (msg) or by another rank (msg NULL; agreed already): keep the progress
 * made, then report. */
static void __attribute__((noreturn))
stop_input(struct run *r, const char *msg)
{
	char why[1200];

	if (msg)
		snprintf(why, sizeof why, "%s", msg);	/* may be mim_errmsg(), which save() reuses */
	tell();
	if (r->t && r->t->step > r->saved && save(r) < 0)
		warn("%s", mim_errmsg());
	if (r->tty)
		fputc('\n', stderr);
	fail(msg ? why : NULL);
}

/* The ranks must hold the same state: compare digests (collective). */
static void
check_same(struct run *r)
{
	if (dp_world > 1 && !dp_same(mim_train_digest(r->t))) {
		if (dp_rank == 0)
			warn("step %lld: the ranks' weights or moments differ; stopping, %s stays at step %lld",
			    (long long)r->t->step, r->cl->ckpt, (long long)r->saved);
		leave(1);
	}
}

/* x as a JSON number (null when not finite) */
static void
num(char *buf, size_t n, double x)
{
	if (isfinite(x))
		snprintf(buf, n, "%.9g", x);
	else
		snprintf(buf, n, "null");
}

/* Log and progress line of a step (rank 0). 0, or -1 with the error set. */
static int
report(struct run *r, const struct mim_stepinfo *in)
{
	const struct cmdline *cl = r->cl;
	double t = now(), dt = t - r->tlast;
	double ips = dt > 0 ? (double)cl->o.batch * cl->o.accum * dp_world / dt : 0;

	r->tlast = t;
	if (r->log) {
		char l[32], n[32];
		num(l, sizeof l, in->loss);
		num(n, sizeof n, in->grad_norm);
		fprintf(r->log, "{\"step\":%lld,\"loss\":%s,\"lr\":%.17g,\"grad_norm\":%s,\"img_per_s\":%.4g,"
		    "\"input_s\":%.4g%s}\n", (long long)in->step + 1, l, in->lr, n, ips, r->input_s,
		    in->nonfinite ? ",\"skipped\":true" : "");
		if (fflush(r->log) == EOF)
			return mim_seterr("%s: %s", cl->log, strerror(errno));
	}
	if (r->tty) {
		int64_t done = r->t->step - r->step0;
		double avg = done > 0 ? (t - r->t0) / (double)done : 0;
		long eta = (long)(avg * (double)(cl->steps - r->t->step));
		fprintf(stderr, "\r%s: step %lld/%lld  loss %.4f  lr %.3g  %.1f img/s  ETA %ld:%02ld:%02ld ",
		    argv0, (long long)r->t->step, cl->steps, in->loss, in->lr, ips,
		    eta / 3600, eta / 60 % 60, eta % 60);
	}
	r->input_s = 0;
	return 0;
}

/* The checkpoint on every rank: rank 0 reads FILE and sends the model's
 * config and weights; returns the frame on rank 0 (NULL elsewhere) and
 * sets *mp, *resume. Exits (status 0) when the run is already done. */
static struct mim_frame *
load(struct cmdline *cl, struct mim_model **mp, int *resume)
{
	struct mim_frame *cf = NULL;
	struct mim_model *m = NULL;
	char msg[1200], *js = NULL;
	long long head[3] = {0, 0, 0};	/* resume, done, config length */

	if (dp_rank == 0) {
		if (!(cf = mim_load(cl->ckpt)))
			snprintf(msg, sizeof msg, "%s (make a checkpoint with mim-ckpt init)", mim_errmsg());
		else if (!(m = mim_model_from_frame(cf)))
			snprintf(msg, sizeof msg, "%s: %s", cl->ckpt, mim_errmsg());
		else if (dp_world > 1 && !(js = mim_config_json(&m->cfg)))
			snprintf(msg, sizeof msg, "%s", mim_errmsg());
		together(m && (dp_world == 1 || js) ? NULL : msg);
		head[0] = mim_train_is_ckpt(cf);
		if (head[0] && !cl->grad_out) {
			const char *s = mim_meta_get(cf, "mim.train.step");
			if ((head[1] = strtoll(s, NULL, 10) >= cl->steps))
				fprintf(stderr, "%s: %s: already at step %s of %lld\n", argv0, cl->ckpt, s,
				    cl->steps);
		}
		head[2] = js ? (long long)strlen(js) + 1 : 0;
	} else {
		together(NULL);
	}
	dp_bcast(head, sizeof head);
	*resume = (int)head[0];
	if (head[1]) {
		mim_frame_free(cf);
		mim_model_free(m);
		free(js);
		leave(0);
	}
	if (dp_world > 1) {
		if (dp_rank > 0 && !(js = mim_malloc((size_t)head[2])))
			snprintf(msg, sizeof msg, "%s", mim_errmsg());
		together(js ? NULL : msg);
		dp_bcast(js, (size_t)head[2]);
		if (dp_rank > 0) {
			struct mim_config c;
			if (mim_config_parse(&c, js) < 0 || !(m = mim_model_new(&c)))
				snprintf(msg, sizeof msg, "%s", mim_errmsg());
			together(m ? NULL : msg);
		} else {
			together(NULL);
		}
		free(js);
		dp_bcast(m->w, m->nw * sizeof(float));
	}
	*mp = m;
	return cf;
}

/* Rank 0's training state (restored from cf on resume) to every rank. */
static void
share_state(struct mim_train *t, const struct mim_frame *cf, int resume, const char *ckpt)
{
	char msg[1200];
	int bad = dp_rank == 0 && resume && mim_train_restore(t, cf) < 0;

	if (bad)
		snprintf(msg, sizeof msg, "%s: %s", ckpt, mim_errmsg());
	together(bad ? msg : NULL);
	if (dp_world == 1)
		return;
	int64_t pos[2] = {t->step, t->batches};
	dp_bcast(pos, sizeof pos);
	t->step = pos[0];
	t->batches = pos[1];
	dp_bcast(t->exp_avg, t->model->nw * sizeof(float));
	dp_bcast(t->exp_avg_sq, t->model->nw * sizeof(float));
}

int
main(int argc, char **argv)
{
	/* static: what lives until exit stays reachable (fail() exits from
	 * anywhere; leak checkers see no leak) */
	static struct cmdline cl;
	static struct run r = {.cl = &cl};
	static struct mim_frame *cf, *f;
	static struct mim_model *m;
	static struct mim_reader *rd;
	static struct mim_train *t;
	static char prefix[64], msg[1200];
	const char *bad = NULL;
	int resume, rc;

	cli_init(argc, argv);
	parse(argc, argv, &cl);
	dp_init(cl.mpi);
	if (dp_world > 1) {	/* messages say which rank: "mim-step: rank 1: ..." */
		snprintf(prefix, sizeof prefix, "%s: rank %d", argv0, dp_rank);
		argv0 = prefix;
	}
	if (cl.threads)
		mim_set_threads(cl.threads);
	else if (dp_on() && !getenv("MIM_THREADS"))
		mim_set_threads(rank_threads());

	cf = load(&cl, &m, &resume);
	if (!cl.grad_out && dp_rank == 0)
		clean_temps(cl.ckpt);

	/* every rank its own input */
	input_fd = strcmp(cl.input, "-") ? open(cl.input, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
	if (input_fd < 0)
		snprintf(msg, sizeof msg, "%s: %s", cl.input, strerror(errno));
	else if (!(rd = mim_reader_fdopen(input_fd, strcmp(cl.input, "-") ? cl.input : "<stdin>")))
		snprintf(msg, sizeof msg, "%s", mim_errmsg());
	together(rd ? NULL : msg);
	const char *in = mim_reader_name(rd);
	const float *img = NULL;
	const uint8_t *mask = NULL;
	int B = -1;
	rc = mim_read_frame(rd, &f);
	if (rc == 0)
		snprintf(msg, sizeof msg, "%s: no frames", in);
	if (rc < 0 || (rc > 0 && (B = batch_of(f, &m->cfg, 0, in, &img, &mask)) < 0))
		snprintf(msg, sizeof msg, "%s", mim_errmsg());
	together(B < 0 ? msg : NULL);
	int bmax = dp_max(B), bmin = -dp_max(-B);
	if (bmin != bmax) {
		if (dp_rank == 0)
			warn("the ranks' inputs have batches of %d to %d images: give every rank the same -b",
			    bmin, bmax);
		leave(1);
	}
	if (cl.grad_out)
		grad_out(&cl, m, B, img, mask);

	resolve(&cl, B);
	t = mim_train_new(m, &cl.o);
	together(t ? NULL : mim_errmsg());
	t->reduce = dp_world > 1 ? reduce : NULL;
	t->rank = dp_rank;
	r.t = t;
	share_state(t, cf, resume, cl.ckpt);
	mim_frame_free(cf);
	cf = NULL;
	r.saved = t->step;
	if (cl.skip >= 0)
		t->batches = cl.skip;
	if (!dp_same(settings_digest(&cl))) {
		if (dp_rank == 0)
			warn("the ranks were started with different settings: give every rank the same flags");
		leave(1);
	}
	if (dp_rank == 0 && cl.log && !(r.log = fopen(cl.log, "a")))
		snprintf(msg, sizeof msg, "%s: %s", cl.log, strerror(errno));
	together(dp_rank == 0 && cl.log && !r.log ? msg : NULL);
	r.tty = dp_rank == 0 && !cl.quiet && isatty(STDERR_FILENO);

	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	/* the stream replays from its start: skip what the run has consumed */
	for (int64_t k = 0; k < t->batches && !bad && !stop_signal; k++) {
		mim_frame_free(f);
		f = NULL;
		if ((rc = next_frame(rd, &f)) > 0 || stop_signal)
			continue;
		snprintf(msg, sizeof msg, "%s: %s while skipping the %lld frames already trained on",
		    in, rc < 0 ? mim_errmsg() : "end of input", (long long)t->batches);
		bad = msg;
	}
	if (!bad && !stop_signal && t->batches > 0 &&
	    (B = batch_of(f, &m->cfg, (long)t->batches, in, &img, &mask)) < 0) {
		snprintf(msg, sizeof msg, "%s", mim_errmsg());
		bad = msg;
	}
	int st = agree(bad, stop_signal);
	if (st >= BAD)
		fail(bad);
	if (st > 0)
		leave(128 + st);

	r.t0 = r.tlast = now();
	r.step0 = t->step;
	long k = (long)t->batches;
	int sig = 0;
	/* each pass: agree on the frame in hand, train on it, read the next
	 * (a problem with that one waits for the next agreement) */
	while (t->step < cl.steps) {
		struct mim_stepinfo info;
		if (!bad && B != cl.o.batch) {
			snprintf(msg, sizeof msg, "%s: frame %ld: batch of %d images, the run uses %d",
			    in, k, B, cl.o.batch);
			bad = msg;
		}
		if ((st = agree(bad, stop_signal)) >= BAD)
			stop_input(&r, bad);
		if ((sig = st) > 0)
			break;
		int took = mim_train_batch(t, B, img, mask, &info);
		if (took < 0)
			stop_input(&r, told ? NULL : mim_errmsg());
		if (took) {
			/* (collectives first: a failure of rank 0's log or save
			 * below meets the others at their next agreement) */
			int at_save = cl.save_every && t->step % cl.save_every == 0 && t->step > r.saved;
			if (at_save)
				check_same(&r);
			int logged = dp_rank == 0 ? report(&r, &info) : 0;
			if (info.nonfinite && !cl.skip_nonfinite) {	/* the same on every rank */
				if (r.tty)
					fputc('\n', stderr);
				if (dp_rank == 0)
					warn("step %lld: %s is not finite (loss %g, grad norm %g); stopping, %s stays at step %lld",
					    (long long)info.step + 1, isfinite(info.loss) ? "the gradient" : "the loss",
					    info.loss, info.grad_norm, cl.ckpt, (long long)r.saved);
				leave(1);
			}
			if (logged < 0)
				stop_input(&r, mim_errmsg());
			if (info.nonfinite && dp_rank == 0)
				warn("step %lld: non-finite loss or gradient, batch skipped", (long long)info.step + 1);
			if (at_save && save(&r) < 0)
				stop_input(&r, mim_errmsg());
		}
		if (t->step >= cl.steps)
			break;
		mim_frame_free(f);
		f = NULL;
		double ti = now();
		rc = next_frame(rd, &f);
		k++;
		if (rc <= 0 && !stop_signal) {
			snprintf(msg, sizeof msg, rc < 0 ? "%s" : "%s: input ended after step %lld of %lld",
			    rc < 0 ? mim_errmsg() : in, (long long)t->step, cl.steps);
			bad = msg;
		}
		if (rc > 0 && (B = batch_of(f, &m->cfg, k, in, &img, &mask)) < 0) {
			snprintf(msg, sizeof msg, "%s", mim_errmsg());
			bad = msg;
		}
		r.input_s += now() - ti;
	}
	mim_frame_free(f);
	mim_reader_close(rd);
	if (input_fd != STDIN_FILENO)
		close(input_fd);
	if (!sig)	/* meet a rank that failed after its last step */
		together(NULL);
	check_same(&r);
	bad = t->step > r.saved && save(&r) < 0 ? mim_errmsg() : NULL;
	if (r.tty)
		fputc('\n', stderr);
	if (!bad && r.log && fclose(r.log) == EOF)
		bad = strerror(errno);
	if (bad)
		snprintf(msg, sizeof msg, "%s", bad);
	together(bad ? msg : NULL);
	if (sig) {
		if (dp_rank == 0)
			warn("%s: stopped by signal %d at step %lld; saved", cl.ckpt, sig,
			    (long long)t->step);
		mim_train_free(t);
		mim_model_free(m);
		leave(128 + sig);
	}
	mim_train_free(t);
	mim_model_free(m);
	dp_finalize();
	return 0;
}
