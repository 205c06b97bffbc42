/* mim-step -- SimMIM pretraining: for each batch of a stream of {image,
 * mask} frames, forward, loss, backward, clipping and the AdamW update
 * (lib/train, lib/optim), with the official schedules; checkpoints that a
 * killed run resumes from exactly. Under mpirun, data-parallel: every rank
 * trains on its own stream and the gradients are averaged (the run and its
 * agreement protocol: lib/train/run.c, mim/train.h; the MPI calls:
 * cmd/step/dp.c). A classifier checkpoint is fine-tuned (cmd/step/ft.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "step/dp.h"
#include "step/ft.h"

static const char usage_text[] =
"usage: mim-step --ckpt FILE --steps N [options] [INPUT]\n"
"       mim-step --ckpt FILE --grad-out OUT [options] [INPUT]\n"
"Train the model of FILE (from mim-ckpt init or classifier, or a checkpoint of\n"
"an earlier run, which is resumed) on the {image, mask} frames of INPUT (stdin\n"
"when none, or '-'); progress is saved to FILE.\n"
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
"      --loss L           l1 (default), l2, smooth-l1; ce (bins, clusters)\n"
"      --region R         masked (default) or all pixels\n"
"      --beta B           smooth-l1 threshold (default 1.0)\n"
"      --save-every N     save every N steps (default 100; 0: at the end)\n"
"      --skip N           skip N input frames before training (default: the\n"
"                         frames the checkpoint has consumed)\n"
"      --skip-nonfinite   skip a batch with NaN/Inf loss or gradient (default:\n"
"                         stop with an error, keeping the last checkpoint)\n"
"      --log FILE         append one JSON line per step to FILE (a run's first\n"
"                         line also describes the machine: mim-info --system)\n"
"      --precision P      fp32 (default) or bf16: products in bfloat16, summed\n"
"                         in float (AMX or AVX512-BF16), the rest in float\n"
"      --extend           continue a run to more --steps than its checkpoint's\n"
"                         schedule has, stretched to the new length\n"
"      --val FILE         every --val-every K steps (default 100), the masked\n"
"                         loss on FILE's {image, mask} frames (--val-batches N:\n"
"                         the first N) into the log and the progress\n"
"      --progress-every S a progress line every S seconds when stderr is not\n"
"                         a terminal (default 30; 0: every step)\n"
"      --grad-out OUT     write the gradients of the first batch (grad.<name>,\n"
"                         loss) to OUT ('-': stdout) and exit\n"
"      --mpi, --no-mpi    data-parallel over MPI: on, off (default: on when\n"
"                         started by mpirun/mpiexec)\n"
"  -t, --threads N        threads (default $MIM_THREADS, else a thread a core; a\n"
"                         rank: its cores, or its share of the node's)\n"
"  -q, --quiet            no progress lines, no final 'saved' line\n"
"  -h, --help             this help\n";

enum {
	O_LR = 256, O_BASE_LR, O_WARMUP_LR, O_MIN_LR, O_SCHED, O_WARMUP_STEPS,
	O_MILESTONES, O_GAMMA, O_OFFICIAL, O_WD, O_CLIP, O_ACCUM, O_SEED, O_LOSS,
	O_REGION, O_BETA, O_SAVE_EVERY, O_SKIP, O_SKIP_NONFINITE, O_LOG,
	O_GRAD_OUT, O_MPI, O_NO_MPI, O_EXTEND, O_VAL, O_VAL_EVERY, O_VAL_BATCHES,
	O_PROGRESS_EVERY, O_PRECISION,
};

/* All the information the user supplied on the command line, but for what
 * goes straight into the run (checkpoint, steps, saves, skips, log). */
struct cmdline {
	const char *input, *grad_out;
	double lr, base_lr, warmup_lr, min_lr;	/* lr < 0: use base_lr */
	int quiet, threads, have_val;
	enum dp_mode mpi;
	struct mim_trainopt o;			/* the rest, lrs unscaled */
};

static struct mim_run run;	/* (static: reachable at any exit) */

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
	{"precision", required_argument, NULL, O_PRECISION},
	{"grad-out", required_argument, NULL, O_GRAD_OUT},
	{"mpi", no_argument, NULL, O_MPI},
	{"no-mpi", no_argument, NULL, O_NO_MPI},
	{"threads", required_argument, NULL, 't'},
	{"quiet", no_argument, NULL, 'q'},
	{"extend", no_argument, NULL, O_EXTEND},
	{"val", required_argument, NULL, O_VAL},
	{"val-every", required_argument, NULL, O_VAL_EVERY},
	{"val-batches", required_argument, NULL, O_VAL_BATCHES},
	{"progress-every", required_argument, NULL, O_PROGRESS_EVERY},
	{"help", no_argument, NULL, 'h'},
	{0},
};

static void
parse(int argc, char **argv, struct cmdline *cl, struct mim_run *r)
{
	struct mim_sched *s = &cl->o.sched;
	const char *ms = NULL;
	int c, have_lr = 0, have_base = 0;

	memset(cl, 0, sizeof *cl);
	mim_trainopt_default(&cl->o);
	r->steps = -1;
	r->save_every = 100;
	r->skip = -1;
	r->val_every = 100;
	r->progress_every = 30;
	cl->base_lr = 5e-4;
	cl->warmup_lr = 5e-7;
	cl->min_lr = 5e-6;
	while ((c = cli_getopt(argc, argv, "c:n:t:qh", ft_options(opts), NULL)) != -1) {
		switch (c) {
		case 'c': r->ckpt = optarg; break;
		case 'n': r->steps = cli_int("--steps", optarg, 1, INT64_MAX / 1024); break;
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
		case O_SAVE_EVERY: r->save_every = cli_int("--save-every", optarg, 0, INT64_MAX); break;
		case O_SKIP: r->skip = cli_int("--skip", optarg, 0, INT64_MAX / 2); break;
		case O_SKIP_NONFINITE: r->skip_nonfinite = 1; break;
		case O_LOG: r->log = optarg; break;
		case O_PRECISION: cli_precision("--precision", optarg); break;
		case O_GRAD_OUT: cl->grad_out = optarg; break;
		case O_MPI: cl->mpi = DP_ON; break;
		case O_NO_MPI: cl->mpi = DP_OFF; break;
		case 't': cl->threads = (int)cli_int("--threads", optarg, 1, 1024); break;
		case O_EXTEND: r->extend = 1; break;
		case O_VAL: r->val = optarg; break;
		case O_VAL_EVERY: r->val_every = cli_int("--val-every", optarg, 1, INT64_MAX); cl->have_val = 1; break;
		case O_VAL_BATCHES: r->val_batches = cli_int("--val-batches", optarg, 1, INT64_MAX); cl->have_val = 1; break;
		case O_PROGRESS_EVERY: r->progress_every = cli_double("--progress-every", optarg, 0, 1e9); break;
		case 'q': cl->quiet = 1; break;
		case 'h': fputs(usage_text, stdout); fputs(ft_usage, stdout); exit(0);
		default: ft_flag(c, optarg, &cl->o, r);
		}
	}
	if (optind + 1 < argc)
		usage_error("more than one input");
	cl->input = optind < argc ? argv[optind] : "-";
	if (!r->ckpt)
		usage_error("--ckpt FILE is required (make one with mim-ckpt init)");
	if (cl->have_val && !r->val)
		usage_error("--val-every and --val-batches need --val FILE");
	if (r->val && strcmp(r->val, "-") == 0)
		usage_error("--val: a file, not stdin: every pass reads it again");
	if (have_lr && have_base)
		usage_error("--lr and --base-lr exclude each other");
	cl->lr = have_lr ? cl->lr : -1;
	if ((r->grad_only = cl->grad_out != NULL))
		return;
	if (r->steps < 0)
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
	s->steps = r->steps;
	s->lr = s->warmup_lr = s->min_lr = 0;
	if (mim_sched_check(s) < 0)
		usage_error("%s", mim_errmsg());
}

/* Leave once every rank has agreed to: finalize, then exit with the status
 * of how the run ended (enum mim_run_end). */
static void __attribute__((noreturn))
leave(int end)
{
	/* what the checkpoint holds now, unless -q (run.progress: rank 0,
	 * not quiet); a signal's message says it already */
	if (run.progress && run.saved_step > 0 && end != MIM_RUN_STOPPED)
		warn("%s: saved step %lld", run.ckpt, (long long)run.saved_step);
	mim_run_free(&run);	/* (and the lock) */
	dp_barrier();
	dp_finalize();
	exit(end == MIM_RUN_DONE ? 0 : end == MIM_RUN_STOPPED ? 128 + run.signal : 1);
}

/* --grad-out: rank 0 writes the gradient of the first batch (the mean
 * over the ranks) to OUT; the others wait in leave(). */
static void __attribute__((noreturn))
grad_out(const struct cmdline *cl)
{
	static struct mim_frame *g;
	int st = mim_run_grad(&run, &cl->o, &g);

	if (st)
		leave(st);
	if (strcmp(cl->grad_out, "-") == 0) {
		cli_stdout_not_tty();
		cli_put(g);
	} else if (mim_save(cl->grad_out, g) < 0) {
		warn("%s", mim_errmsg());
		leave(MIM_RUN_FAILED);
	}
	mim_frame_free(g);
	leave(MIM_RUN_DONE);
}

int
main(int argc, char **argv)
{
	static struct cmdline cl;	/* (static: reachable at any exit) */
	static char prefix[64];
	struct mim_run *r = &run;
	int st;

	cli_init(argc, argv);
	parse(argc, argv, &cl, r);
	dp_init(cl.mpi);
	if (dp_world > 1) {	/* messages say which rank: "mim-step: rank 1: ..." */
		snprintf(prefix, sizeof prefix, "%s: rank %d", argv0, dp_rank);
		argv0 = prefix;
	}
	int threads = cl.threads ? cl.threads : dp_threads();
	if (threads)
		mim_set_threads(threads);

	/* the run: the checkpoint, then every rank's frames */
	dp_hooks(&r->dp);
	r->next = cli_next_frame;
	r->next_ctx = r;
	r->say = cli_say;
	if ((st = mim_run_load(r)) || (st = mim_run_open(r, cl.input)) || (st = mim_run_first(r)))
		leave(st);
	if (cl.grad_out)
		grad_out(&cl);

	/* train to the last step, stopping at a step boundary on a signal */
	mim_run_lrs(r, &cl.o, cl.lr >= 0 ? cl.lr : cl.base_lr, cl.warmup_lr, cl.min_lr, cl.lr < 0);
	if ((st = mim_run_prepare(r, &cl.o)))
		leave(st);
	if (dp_rank == 0 && !cl.quiet)
		r->progress = isatty(STDERR_FILENO) ? MIM_PROGRESS_REDRAW : MIM_PROGRESS_LINES;
	cli_stop_on_signals(r);
	leave((st = mim_run_train(r)) ? st : MIM_RUN_DONE);
}
