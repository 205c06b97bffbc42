/* mim-probe -- the linear probe of frozen features: trains BatchNorm1d
 * (no affine) + Linear on the pooled features of a stream (--out), or
 * adds the `logits` of a trained probe to every frame (--ckpt). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
"usage: mim-probe --out PROBE [--epochs N] [--lr X] [--batch B] [--seed S]\n"
"                 [--classes K] [--val FILE] [--log FILE] [options] [STREAM...]\n"
"       mim-probe --ckpt PROBE [STREAM...]\n"
"The linear probe of frozen features (MAE's: BatchNorm1d without affine,\n"
"eps 1e-6, then Linear). The streams (stdin when none) hold 'latent' F32\n"
"[B,C] (mim-encode --layer K --pool mean) and 'label' [B].\n"
"Training (--out): reads every frame into memory, trains with SGD (momentum\n"
"0.9) and cross-entropy on a cosine schedule, the samples reshuffled each\n"
"epoch from the seed, and writes the probe (safetensors, PyTorch's names\n"
"head.0.running_mean ... head.1.bias).\n"
"Inference (--ckpt): adds 'logits' F32 [B,K] to every frame and passes the\n"
"rest on ('label' for mim-eval).\n"
"  -o, --out FILE         train, write the probe to FILE\n"
"  -c, --ckpt FILE        apply the probe of FILE\n"
"  -e, --epochs N         passes over the features, default 100\n"
"      --lr X             peak learning rate, default 0.1\n"
"  -b, --batch B          samples per step, default 256 (at most all; the\n"
"                         short last batch of an epoch is dropped)\n"
"      --warmup-epochs N  linear warmup from 0, default 0\n"
"      --momentum M       SGD momentum, default 0.9\n"
"      --weight-decay W   default 0\n"
"      --seed S           initialisation and shuffling, default 0\n"
"  -k, --classes K        classes (default: the largest label + 1)\n"
"      --val FILE         score held-out features (a stream as the input) at\n"
"                         each progress line and log line\n"
"      --log FILE         append a JSON line per epoch: epoch, step, loss,\n"
"                         acc1 (train, %), lr, and with --val val_loss,\n"
"                         val_acc1, val_acc5 (mim-view --curve --field)\n"
"  -q, --quiet            no progress on stderr\n"
"  -t, --threads N        threads (default MIM_THREADS or a thread a core)\n"
"  -h, --help             this help\n";

enum { O_LR = 256, O_WARM, O_MOM, O_WD, O_SEED, O_LOG, O_VAL };

/* what is in flight, global so that an exit through die() leaves nothing
 * unreachable behind (LeakSanitizer) */
static struct mim_probe *probe;
static FILE *logfp;

/* features held in memory: for training, and --val */
struct held {
	float *x;		/* (n,C) */
	int64_t *y;		/* (n) */
	int64_t n, cap;
	int C;
	char latent_meta[256];	/* mim.latent of the first frame: which layer */
};
static struct held tr, va;

static const struct mim_tensor *
latent(const struct mim_frame *f, const char *where)
{
	const struct mim_tensor *t = mim_frame_get(f, "latent");
	char sh[128];

	if (!t)
		die("%s: no tensor 'latent' (features from mim-encode --pool mean)", where);
	if (t->dtype != MIM_F32 || t->ndim != 2 || t->shape[0] < 1 || t->shape[1] < 1 ||
	    t->shape[1] > 1 << 24)
		die("%s: tensor 'latent': %s %s, want F32 [B,C] (mim-encode --pool mean)", where,
		    mim_dtype_name(t->dtype), mim_shape_str(sh, sizeof sh, t->ndim, t->shape));
	return t;
}

static void
hold_frame(struct mim_frame *f, const char *where, void *ctx)
{
	struct held *h = ctx;
	const struct mim_tensor *t = latent(f, where), *lb = mim_frame_get(f, "label");
	int64_t B = t->shape[0];
	int C = (int)t->shape[1];
	char sh[128];

	if (!lb)
		die("%s: no tensor 'label' (a probe trains on labelled data)", where);
	if (lb->ndim != 1 || lb->shape[0] != B || lb->dtype == MIM_F32 || lb->dtype == MIM_F64 ||
	    lb->dtype == MIM_F16 || lb->dtype == MIM_BF16)
		die("%s: tensor 'label': %s %s, want an integer type [%lld]", where,
		    mim_dtype_name(lb->dtype), mim_shape_str(sh, sizeof sh, lb->ndim, lb->shape),
		    (long long)B);
	if (!h->C) {
		h->C = C;
		const char *m = mim_meta_get(f, "mim.latent");
		snprintf(h->latent_meta, sizeof h->latent_meta, "%s", m ? m : "");
	} else if (C != h->C)
		die("%s: tensor 'latent': %d features, the frames before %d", where, C, h->C);
	if (h->n + B > h->cap) {
		int64_t cap = h->cap ? 2 * h->cap : 4096;
		while (cap < h->n + B)
			cap *= 2;
		float *nf = realloc(h->x, (size_t)cap * C * sizeof *h->x);
		if (nf)
			h->x = nf;
		int64_t *nl = nf ? realloc(h->y, (size_t)cap * sizeof *h->y) : NULL;
		if (!nl)
			die("%s: out of memory holding %lld features", where, (long long)cap);
		h->y = nl;
		h->cap = cap;
	}
	memcpy(h->x + (size_t)h->n * C, t->data, t->nbytes);
	for (int64_t b = 0; b < B; b++)
		if ((h->y[h->n + b] = (int64_t)mim_tensor_get(lb, b)) < 0)
			die("%s: sample %lld: label %lld is negative", where, (long long)b,
			    (long long)h->y[h->n + b]);
	h->n += B;
}

struct report {
	int quiet;
	const char *val;	/* --val FILE, held in va */
};

static int
epoch_done(void *ctx, const struct mim_probe_epoch *e)
{
	struct report *r = ctx;
	int every = e->epochs >= 10 ? e->epochs / 10 : 1, report = e->epoch % every == 0 ||
	    e->epoch == e->epochs;
	char vtext[128] = "", vjson[160] = "";

	if (r->val && (report || logfp)) {	/* the held-out features, BatchNorm in eval mode */
		struct mim_eval *ev = mim_eval_new(probe->K);
		if (!ev || mim_probe_score(probe, ev, va.x, va.y, va.n) < 0)
			die("%s: %s", r->val, mim_errmsg());
		double n = (double)ev->n;
		snprintf(vtext, sizeof vtext, ", val loss %.4f, val top-1 %.2f %%", ev->loss / n,
		    100.0 * (double)ev->top1 / n);
		snprintf(vjson, sizeof vjson, ",\"val_loss\":%.9g,\"val_acc1\":%.9g,\"val_acc5\":%.9g",
		    ev->loss / n, 100.0 * (double)ev->top1 / n, 100.0 * (double)ev->top5 / n);
		mim_eval_free(ev);
	}
	if (!r->quiet && report)
		warn("epoch %d/%d: loss %.4f, train top-1 %.2f %%, lr %.4g%s", e->epoch, e->epochs,
		    e->loss, e->acc1, e->lr, vtext);
	if (logfp && (fprintf(logfp, "{\"epoch\":%d,\"step\":%lld,\"loss\":%.9g,\"acc1\":%.9g,"
	    "\"lr\":%.9g%s}\n", e->epoch, (long long)e->step, e->loss, e->acc1, e->lr, vjson) < 0 ||
	    fflush(logfp) == EOF))
		die("--log: %s", strerror(errno));
	return 0;
}

/* the largest label of h */
static int64_t
max_label(const struct held *h)
{
	int64_t m = 0;

	for (int64_t i = 0; i < h->n; i++)
		m = h->y[i] > m ? h->y[i] : m;
	return m;
}

static void
train(char **files, const char *out, const struct mim_probe_opts *o, int K, int quiet,
    const char *val)
{
	struct report r = {.quiet = quiet, .val = val};

	cli_frames(files, 0, hold_frame, &tr);
	if (tr.n == 0)
		die("%s: no samples (an empty stream)", *files ? *files : "<stdin>");
	if (val) {
		char *vf[] = {(char *)val, NULL};
		cli_frames(vf, 0, hold_frame, &va);
		if (va.n == 0)
			die("%s: no samples (an empty stream)", val);
		if (va.C != tr.C)
			die("%s: %d features, the training ones %d", val, va.C, tr.C);
	}
	int64_t maxl = max_label(&tr);
	if (K && maxl >= K)
		die("label %lld is not in [0,%d) (--classes)", (long long)maxl, K);
	if (!K)
		K = (int)maxl + 1;
	if (K < 2)
		die("%lld samples all of class 0: nothing to tell apart (--classes K)", (long long)tr.n);
	if (val && max_label(&va) >= K)
		die("%s: label %lld is not in [0,%d) (the training labels' classes)", val,
		    (long long)max_label(&va), K);
	if (!quiet)
		warn("%lld samples, %d features, %d classes", (long long)tr.n, tr.C, K);
	if (!(probe = mim_probe_new(tr.C, K, o->seed)))
		die_lib();
	if (mim_probe_train(probe, o, tr.x, tr.y, tr.n, epoch_done, &r) < 0)
		die_lib();
	struct mim_frame *f = mim_probe_to_frame(probe);
	if (!f || (*tr.latent_meta && mim_meta_set(f, "mim.latent", tr.latent_meta) < 0))
		die_lib();
	if (mim_save(out, f) < 0)
		die("%s", mim_errmsg());
	mim_frame_free(f);
}

struct apply {
	const char *latent_meta;	/* what the probe was trained on, or NULL */
	int warned;
};

static void
apply_frame(struct mim_frame *f, const char *where, void *ctx)
{
	struct apply *a = ctx;
	const struct mim_tensor *t = latent(f, where);
	int B = (int)t->shape[0];
	const char *m = mim_meta_get(f, "mim.latent");

	if (t->shape[1] != probe->C)
		die("%s: tensor 'latent' has %lld features, the probe %d", where,
		    (long long)t->shape[1], probe->C);
	if (a->latent_meta && !a->warned && strcmp(a->latent_meta, m ? m : "") != 0) {
		warn("%s: features of '%s', the probe was trained on '%s'", where, m ? m : "the output",
		    a->latent_meta);
		a->warned = 1;
	}
	int64_t sh[2] = {B, probe->K};
	struct mim_tensor *lg = mim_frame_add(f, "logits", MIM_F32, 2, sh, NULL);
	if (!lg || mim_probe_forward(probe, lg->data, t->data, B) < 0)
		die_lib();
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"out", required_argument, NULL, 'o'},
		{"ckpt", required_argument, NULL, 'c'},
		{"epochs", required_argument, NULL, 'e'},
		{"lr", required_argument, NULL, O_LR},
		{"batch", required_argument, NULL, 'b'},
		{"warmup-epochs", required_argument, NULL, O_WARM},
		{"momentum", required_argument, NULL, O_MOM},
		{"weight-decay", required_argument, NULL, O_WD},
		{"seed", required_argument, NULL, O_SEED},
		{"classes", required_argument, NULL, 'k'},
		{"log", required_argument, NULL, O_LOG},
		{"val", required_argument, NULL, O_VAL},
		{"quiet", no_argument, NULL, 'q'},
		{"threads", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct mim_probe_opts o;
	const char *out = NULL, *ckpt = NULL, *log = NULL, *val = NULL;
	int K = 0, quiet = 0, c;

	cli_init(argc, argv);
	mim_probe_opts_default(&o);
	while ((c = cli_getopt(argc, argv, "o:c:e:b:k:qt:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'c': ckpt = optarg; break;
		case 'e': o.epochs = (int)cli_int("--epochs", optarg, 1, 1000000); break;
		case O_LR: o.lr = cli_double("--lr", optarg, 0, 1e6); break;
		case 'b': o.batch = (int)cli_int("--batch", optarg, 2, 1 << 24); break;
		case O_WARM: o.warmup_epochs = (int)cli_int("--warmup-epochs", optarg, 0, 1000000); break;
		case O_MOM: o.momentum = cli_double("--momentum", optarg, 0, 1); break;
		case O_WD: o.weight_decay = cli_double("--weight-decay", optarg, 0, 1e6); break;
		case O_SEED: o.seed = (uint64_t)cli_int("--seed", optarg, 0, INT64_MAX); break;
		case 'k': K = (int)cli_int("--classes", optarg, 2, 1 << 20); break;
		case O_LOG: log = optarg; break;
		case O_VAL: val = optarg; break;
		case 'q': quiet = 1; break;
		case 't': mim_set_threads((int)cli_int("--threads", optarg, 1, 1024)); break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: usage_error("unknown option");
		}
	}
	if (!!out == !!ckpt)
		usage_error("give one of --out FILE (train) and --ckpt FILE (apply)");
	if (ckpt && (val || log))
		usage_error("--val and --log go with training (--out)");
	if (o.warmup_epochs > o.epochs)
		usage_error("--warmup-epochs %d: more than --epochs %d", o.warmup_epochs, o.epochs);
	if (out) {
		if (log && !(logfp = fopen(log, "a")))
			die("%s: %s", log, strerror(errno));
		train(argv + optind, out, &o, K, quiet, val);
		if (logfp && fclose(logfp) == EOF)
			die("%s: %s", log, strerror(errno));
	} else {
		struct mim_frame *f = mim_load(ckpt);
		if (!f)
			die_lib();
		if (!(probe = mim_probe_from_frame(f))) {
			mim_frame_free(f);	/* nothing left for LeakSanitizer */
			die("%s: %s", ckpt, mim_errmsg());
		}
		struct apply a = {.latent_meta = mim_meta_get(f, "mim.latent")};
		cli_stdout_not_tty();
		cli_frames(argv + optind, 1, apply_frame, &a);
		mim_frame_free(f);
	}
	mim_probe_free(probe);
	free(tr.x);
	free(tr.y);
	free(va.x);
	free(va.y);
	cli_exit(0);
}
