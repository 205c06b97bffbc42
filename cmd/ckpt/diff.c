/* diff.c -- mim-ckpt diff: compare two checkpoints tensor by tensor. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ckpt/ckpt.h"

static void
diff_usage(void)
{
	printf("usage: mim-ckpt diff [--tol T] [--rtol R] [--all] A B\n"
	    "Compare the state dicts of checkpoints A and B (mim checkpoints,\n"
	    ".safetensors or torch.save files) tensor by tensor: print each tensor\n"
	    "whose values differ by more than the tolerance (max abs and max relative\n"
	    "difference, relative to max |B|), each whose shape differs, the names only\n"
	    "in A or only in B, differing metadata, and a summary line. Exit 1 if a\n"
	    "tensor is beyond the tolerance or the names or shapes differ.\n"
	    "  -t, --tol T    largest max abs difference allowed (default 0)\n"
	    "  -r, --rtol R   also allow a max relative difference up to R\n"
	    "  -a, --all      a line for every tensor\n"
	    "  -h, --help     this help\n");
}

int
ckpt_diff(int argc, char **argv)
{
	static const struct option opts[] = {
		{"tol", required_argument, NULL, 't'},
		{"rtol", required_argument, NULL, 'r'},
		{"all", no_argument, NULL, 'a'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	double tol = 0, rtol = -1;
	int all = 0, c;

	while ((c = cli_getopt(argc, argv, "t:r:ah", opts, NULL)) != -1) {
		switch (c) {
		case 't': tol = cli_double("--tol", optarg, 0, HUGE_VAL); break;
		case 'r': rtol = cli_double("--rtol", optarg, 0, HUGE_VAL); break;
		case 'a': all = 1; break;
		case 'h': diff_usage(); return 0;
		default: usage_error("diff: unknown option");
		}
	}
	if (optind != argc - 2)
		usage_error("diff: want two checkpoints A and B");
	const char *pa = argv[optind], *pb = argv[optind + 1];
	struct mim_frame *a = mim_ckpt_load(pa, NULL), *b = a ? mim_ckpt_load(pb, NULL) : NULL;
	if (!a || !b)
		die("%s", mim_errmsg());
	struct mim_diff_entry *e;
	int n = mim_ckpt_diff(a, b, &e);
	if (n < 0)
		die("%s", mim_errmsg());

	int w = 8, compared = 0, beyond = 0, onlya = 0, onlyb = 0, shape = 0;
	double worst = 0;
	const char *worstname = NULL;
	for (int i = 0; i < n; i++)
		if ((int)strlen(e[i].name) > w)
			w = (int)strlen(e[i].name);
	for (int i = 0; i < n; i++) {
		const struct mim_diff_entry *d = &e[i];
		char sa[160], sb[160];
		if (d->status == 1) {
			printf("only in A: %s\n", d->name);
			onlya++;
			continue;
		}
		if (d->status == 2) {
			printf("only in B: %s\n", d->name);
			onlyb++;
			continue;
		}
		if (d->status == 3) {
			const struct mim_tensor *ta = mim_frame_get(a, d->name), *tb = mim_frame_get(b, d->name);
			printf("shape:     %s %s vs %s\n", d->name,
			    mim_shape_str(sa, sizeof sa, ta->ndim, ta->shape),
			    mim_shape_str(sb, sizeof sb, tb->ndim, tb->shape));
			shape++;
			continue;
		}
		compared++;
		int bad = !(d->maxabs <= tol) && !(rtol >= 0 && d->maxrel <= rtol);
		beyond += bad;
		if (!(d->maxabs <= worst)) {
			worst = d->maxabs;
			worstname = d->name;
		}
		if (bad || all) {
			char dt[16];
			snprintf(dt, sizeof dt, "%s%s%s", mim_dtype_name(d->da), d->da == d->db ? "" : "/",
			    d->da == d->db ? "" : mim_dtype_name(d->db));
			printf("%s %-*s %-8s maxabs %-10.4g maxrel %.4g\n", bad ? "differs:" : "        ",
			    w, d->name, dt, d->maxabs, d->maxrel);
		}
	}
	/* metadata: reported, not judged */
	for (int i = 0; i < a->nmeta; i++) {
		const char *v = mim_meta_get(b, a->mkey[i]);
		if (!v)
			printf("metadata only in A: %s\n", a->mkey[i]);
		else if (strcmp(v, a->mval[i]) != 0)
			printf("metadata differs: %s\n", a->mkey[i]);
	}
	for (int i = 0; i < b->nmeta; i++)
		if (!mim_meta_get(a, b->mkey[i]))
			printf("metadata only in B: %s\n", b->mkey[i]);
	printf("%d tensors compared, %d beyond the tolerance, %d of another shape, %d only in A, "
	    "%d only in B; largest max abs difference %.4g%s%s%s\n", compared, beyond, shape, onlya,
	    onlyb, worst, worstname ? " (" : "", worstname ? worstname : "", worstname ? ")" : "");
	free(e);
	mim_frame_free(a);
	mim_frame_free(b);
	return beyond || shape || onlya || onlyb ? 1 : 0;
}
