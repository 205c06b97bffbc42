/* mim-eval -- score a classifier's predictions: reads frames with `logits`
 * (B,K) and `label` (B), prints top-1/top-5 accuracy, per-class accuracy,
 * the confusion matrix and the mean cross-entropy, as a table or JSON. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
"usage: mim-eval [--json] [--classes K] [--classes-file FILE] [STREAM...]\n"
"Score the predictions of the mim streams STREAM... (stdin when none): every\n"
"frame holds 'logits' F32 [B,K] (mim-probe, mim-encode of a classifier) and\n"
"'label' [B] (an integer type, classes 0..K-1). Prints top-1 and top-5\n"
"accuracy (top-K when K < 5), per-class accuracy, the confusion matrix and\n"
"the mean cross-entropy. Ties between logits rank the lower class first.\n"
"  -j, --json              one JSON object instead of the table: n, classes,\n"
"                          acc1, acc5, topk, loss, mean_class_acc, per_class[],\n"
"                          count[], confusion[][] (rows: label), names[]\n"
"  -k, --classes K         expect K classes (default: the logits' width)\n"
"  -n, --classes-file FILE class names, one per line, K of them\n"
"  -h, --help              this help\n";

/* what is in flight, global so that an exit through die() leaves nothing
 * unreachable behind (LeakSanitizer) */
static struct mim_eval *ev;
static int64_t *lab;

struct opts {
	int K;		/* from --classes, or the first frame */
};

static void
score_frame(struct mim_frame *f, const char *where, void *ctx)
{
	struct opts *o = ctx;
	struct mim_tensor *lg = mim_frame_get(f, "logits"), *lb = mim_frame_get(f, "label");
	char sh[128];

	if (!lg)
		die("%s: no tensor 'logits' (mim-probe --ckpt, mim-encode of a classifier)", where);
	if (!lb)
		die("%s: no tensor 'label' (the labels of the data, passed on from mim-data)", where);
	if (lg->dtype != MIM_F32 || lg->ndim != 2 || lg->shape[0] < 1 || lg->shape[1] < 1 ||
	    lg->shape[1] > 1 << 20)
		die("%s: tensor 'logits': %s %s, want F32 [B,K]", where, mim_dtype_name(lg->dtype),
		    mim_shape_str(sh, sizeof sh, lg->ndim, lg->shape));
	int B = (int)lg->shape[0], K = (int)lg->shape[1];
	if (lb->ndim != 1 || lb->shape[0] != B || lb->dtype == MIM_F32 || lb->dtype == MIM_F16 ||
	    lb->dtype == MIM_BF16 || lb->dtype == MIM_F64)
		die("%s: tensor 'label': %s %s, want an integer type [%d]", where,
		    mim_dtype_name(lb->dtype), mim_shape_str(sh, sizeof sh, lb->ndim, lb->shape), B);
	if (!ev) {
		if (o->K && o->K != K)
			die("%s: tensor 'logits': %d classes, want %d (--classes)", where, K, o->K);
		if (!(ev = mim_eval_new(K)))
			die_lib();
	} else if (K != ev->K)
		die("%s: tensor 'logits': %d classes, the frames before %d", where, K, ev->K);
	if (!(lab = malloc((size_t)B * sizeof *lab)))
		die("out of memory");
	for (int b = 0; b < B; b++)
		lab[b] = (int64_t)mim_tensor_get(lb, b);
	if (mim_eval_add(ev, lg->data, lab, B) < 0)
		die("%s: %s", where, mim_errmsg());
	free(lab);
	lab = NULL;
}

/* the table for people */
static void
table(const struct mim_eval *e, char *const *names)
{
	int K = e->K, w = 5;
	double n = (double)e->n;

	for (int k = 0; names && k < K; k++)
		if ((int)strlen(names[k]) > w)
			w = (int)strlen(names[k]) > 24 ? 24 : (int)strlen(names[k]);
	printf("samples     %lld\nclasses     %d\n", (long long)e->n, K);
	printf("top-1       %.2f %%\ntop-%d       %.2f %%\n", 100.0 * (double)e->top1 / n,
	    K < 5 ? K : 5, 100.0 * (double)e->top5 / n);
	printf("loss        %.6f (mean cross-entropy)\n\n", e->loss / n);
	printf("%4s %-*s %8s %8s\n", "", w, "class", "n", "top-1 %");
	for (int k = 0; k < K; k++) {
		int64_t nk = 0;
		for (int j = 0; j < K; j++)
			nk += e->confusion[(size_t)k * K + j];
		double a = mim_eval_class_acc(e, k);
		printf("%4d %-*.*s %8lld ", k, w, w, names ? names[k] : "", (long long)nk);
		if (isnan(a))
			printf("%8s\n", "-");
		else
			printf("%8.2f\n", a);
	}
	printf("\nconfusion matrix (row: label, column: prediction)\n%4s", "");
	for (int j = 0; j < K; j++)
		printf(" %6d", j);
	putchar('\n');
	for (int k = 0; k < K; k++) {
		printf("%4d", k);
		for (int j = 0; j < K; j++)
			printf(" %6lld", (long long)e->confusion[(size_t)k * K + j]);
		putchar('\n');
	}
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"classes", required_argument, NULL, 'k'},
		{"classes-file", required_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct opts o = {0};
	const char *names_path = NULL;
	int json = 0, c;

	cli_init(argc, argv);
	while ((c = cli_getopt(argc, argv, "jk:n:h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = 1; break;
		case 'k': o.K = (int)cli_int("--classes", optarg, 1, 1 << 20); break;
		case 'n': names_path = optarg; break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: usage_error("unknown option");
		}
	}
	cli_frames(argv + optind, 0, score_frame, &o);
	if (!ev || !ev->n)
		die("%s: no samples (an empty stream)", optind < argc ? argv[optind] : "<stdin>");
	char **names = NULL;
	if (names_path && !(names = mim_names_load(names_path, ev->K)))
		die_lib();
	if (json) {
		char *s = mim_eval_json(ev, names);
		if (!s)
			die_lib();
		puts(s);
		free(s);
	} else
		table(ev, names);
	mim_names_free(names);
	mim_eval_free(ev);
	cli_exit(0);
}
