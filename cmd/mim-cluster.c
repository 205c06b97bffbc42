/* mim-cluster -- the colour centres of the "clusters" target (iGPT's 512
 * colours, fitted here): reads mim-data frames, samples pixels, runs
 * k-means (k-means++ then Lloyd, lib/model/target.c) and writes 'centres'
 * F32 [K,3], 0-255 RGB, for mim-ckpt init --clusters. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
"usage: mim-cluster [-k K] [--pixels N] [--per-image M] [--iters I] [--seed S]\n"
"                   [-o FILE] [FILE...]\n"
"Fit K colour centres for the clusters target (mim-ckpt init --target\n"
"clusters --clusters FILE) on the images of the mim streams FILE... (stdin\n"
"when none): 'image' F32 [B,3,H,W] normalised as mim-data does (ImageNet\n"
"mean and std). M pixels of each image, drawn with the seed, as 0-255 RGB\n"
"colours, until N; k-means++ from the seed, then Lloyd iterations until no\n"
"pixel changes centre or I. Writes a safetensors file with 'centres' F32\n"
"[K,3] in 0-255 RGB (stdout when no -o).\n"
"  -k, --clusters K     centres (default 512, the paper's, after iGPT)\n"
"  -n, --pixels N       pixels to fit on (default 100000)\n"
"  -m, --per-image M    pixels drawn from each image (default 64)\n"
"  -i, --iters I        Lloyd iterations at most (default 50)\n"
"  -s, --seed S         seed of the sample and of k-means++ (default 0)\n"
"  -o, --output FILE    write here (atomically) instead of stdout\n"
"  -h, --help           this help\n";

struct sample {
	float *px;	/* (n, 3) */
	size_t n, want;
	int per;
	uint64_t seed;
	int64_t images;
};

static struct sample S;	/* global: a die() leaves nothing unreachable */

static void
sample_frame(struct mim_frame *f, const char *where, void *ctx)
{
	struct sample *s = ctx;
	struct mim_tensor *t = mim_frame_get(f, "image");
	char sh[128];

	if (s->n >= s->want)
		return;
	if (!t)
		die("%s: no tensor 'image' (mim-data writes it)", where);
	if (t->dtype != MIM_F32 || t->ndim != 4 || t->shape[0] < 1 || t->shape[0] > 1 << 20 ||
	    t->shape[1] != 3 || t->shape[2] < 1 || t->shape[3] < 1)
		die("%s: tensor 'image': %s %s, want F32 [B,3,H,W]", where, mim_dtype_name(t->dtype),
		    mim_shape_str(sh, sizeof sh, t->ndim, t->shape));
	int B = (int)t->shape[0], H = (int)t->shape[2], W = (int)t->shape[3];
	size_t room = (s->want - s->n + s->per - 1) / s->per;
	int take = (size_t)B < room ? B : (int)room;
	float *buf = malloc((size_t)take * s->per * 3 * sizeof *buf);
	if (!buf)
		die("out of memory");
	mim_target_sample(take, H, W, t->data, s->seed, s->images, s->per, buf);
	size_t got = (size_t)take * s->per;
	if (got > s->want - s->n)
		got = s->want - s->n;
	memcpy(s->px + 3 * s->n, buf, got * 3 * sizeof *buf);
	free(buf);
	s->n += got;
	s->images += take;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"clusters", required_argument, NULL, 'k'},
		{"pixels", required_argument, NULL, 'n'},
		{"per-image", required_argument, NULL, 'm'},
		{"iters", required_argument, NULL, 'i'},
		{"seed", required_argument, NULL, 's'},
		{"output", required_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *out = NULL;
	int K = 512, iters = 50, c;

	S.want = 100000;
	S.per = 64;
	cli_init(argc, argv);
	while ((c = cli_getopt(argc, argv, "k:n:m:i:s:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'k': K = (int)cli_int("--clusters", optarg, 2, 65536); break;
		case 'n': S.want = (size_t)cli_int("--pixels", optarg, 1, 100000000); break;
		case 'm': S.per = (int)cli_int("--per-image", optarg, 1, 1 << 24); break;
		case 'i': iters = (int)cli_int("--iters", optarg, 1, 100000); break;
		case 's': S.seed = (uint64_t)cli_int("--seed", optarg, 0, INT64_MAX); break;
		case 'o': out = optarg; break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: usage_error("unknown option");
		}
	}
	if (!out)
		cli_stdout_not_tty();
	if (!(S.px = malloc(S.want * 3 * sizeof *S.px)))
		die("out of memory (%zu pixels)", S.want);
	cli_frames(argv + optind, 0, sample_frame, &S);
	if (S.n < (size_t)K)
		die("%s: %zu pixels sampled from %lld images, fewer than the %d clusters (more images "
		    "or --per-image)", optind < argc ? argv[optind] : "<stdin>", S.n,
		    (long long)S.images, K);
	float *cen = malloc((size_t)K * 3 * sizeof *cen);
	if (!cen || mim_kmeans(S.px, S.n, K, iters, S.seed, cen) < 0)
		die("%s", cen ? mim_errmsg() : "out of memory");
	struct mim_frame *f = mim_frame_new();
	int64_t sh[2] = {K, 3};
	char meta[160];
	snprintf(meta, sizeof meta, "{\"pixels\":%zu,\"images\":%lld,\"seed\":%llu,\"space\":\"rgb255\"}",
	    S.n, (long long)S.images, (unsigned long long)S.seed);
	if (!f || !mim_frame_add(f, "centres", MIM_F32, 2, sh, cen) ||
	    mim_meta_set(f, "mim.clusters", meta) < 0)
		die("%s", mim_errmsg());
	if (out) {
		if (mim_save(out, f) < 0)
			die("%s: %s", out, mim_errmsg());
	} else {
		cli_put(f);
	}
	fprintf(stderr, "%s: %d centres from %zu pixels of %lld images\n", argv0, K, S.n,
	    (long long)S.images);
	mim_frame_free(f);
	free(cen);
	free(S.px);
	cli_exit(0);
}
