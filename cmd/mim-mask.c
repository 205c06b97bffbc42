/* mim-mask -- add a SimMIM mask to every frame of a stream of image
 * batches: random patch-aligned (the official MaskGenerator), central
 * square or BEiT block-wise; report AvgDist; print the AvgDist table. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
"usage: mim-mask [options] [FILE]\n"
"       mim-mask --avgdist-table [--size N] [--samples N] [options]\n"
"Add 'mask' U8 [B,H/p,W/p] (1 = masked, p = model patch) to every frame of\n"
"the mim stream FILE (stdin when none, or '-') that holds 'image' F32\n"
"[B,3,H,W]; everything else passes through unchanged.\n"
"  -s, --strategy S     random (default), central or block\n"
"  -m, --mask-patch N   mask patch in pixels (default 32)\n"
"  -p, --model-patch N  model patch in pixels (default 4, Swin; 16 for ViT)\n"
"      --ckpt FILE      take the model patch from FILE's mim.config\n"
"  -r, --ratio R        fraction of cells to mask, 0 < R < 1 (default 0.6)\n"
"      --seed N         random seed (default 0)\n"
"      --rng mim|numpy  mim (default) or numpy's legacy np.random stream\n"
"      --block-min N    block: min cells per block (default 16)\n"
"      --block-max N    block: max cells per block (default 0: the target)\n"
"      --block-aspect A block: min aspect ratio, max is 1/A (default 0.3)\n"
"      --stats          print masks, masked fraction and AvgDist to stderr\n"
"      --avgdist-table  print the table of AvgDist by mask patch and ratio\n"
"                       (lists: -m 4,8,16,32 -r 0.1,...,0.9) and exit\n"
"      --size N         table: image size in pixels (default 192)\n"
"      --samples N      table: masks per entry (default 1000)\n"
"  -h, --help           this help\n";

enum {
	O_CKPT = 256, O_SEED, O_RNG, O_BMIN, O_BMAX, O_BASPECT, O_STATS,
	O_TABLE, O_SIZE, O_SAMPLES,
};

/* the model patch of a checkpoint: patch_size of its mim.config (only the
 * header of the file is read) */
static int
ckpt_patch(const char *path)
{
	struct mim_frame *f = mim_load_header(path);
	struct mim_config cfg;

	if (!f)
		die_lib();
	const char *js = mim_meta_get(f, "mim.config");
	int bad = !js || mim_config_parse(&cfg, js) < 0;
	mim_frame_free(f);	/* before a die(): nothing left behind */
	if (bad && !js)
		die("%s: no mim.config in the metadata", path);
	if (bad)
		die("%s: %s", path, mim_errmsg());
	return cfg.patch_size;
}

static void
table(struct mim_maskopt o, const char *patches, const char *ratios, int size,
    int samples)
{
	double pv[16], rv[32], mean[16][32], sem[16][32], worst = 0;
	int np = cli_doubles("--mask-patch", patches, pv, 16);
	int nr = cli_doubles("--ratio", ratios, rv, 32);
	int undef[16][32], anyundef = 0;

	o.model_patch = 1;	/* plays no part: masks are measured at pixel level */
	for (int i = 0; i < np; i++) {
		if (pv[i] != floor(pv[i]) || pv[i] < 1 || pv[i] > size || size % (int)pv[i])
			usage_error("--mask-patch: %g does not divide the size %d", pv[i], size);
	}
	for (int k = 0; k < nr; k++) {
		o.ratio = rv[k];
		if (mim_maskopt_check(&o) < 0)
			usage_error("%s", mim_errmsg());
	}
	for (int i = 0; i < np; i++) {
		for (int k = 0; k < nr; k++) {
			o.mask_patch = (int)pv[i];
			o.ratio = rv[k];
			if (mim_avgdist_mean(&o, size, size, samples, &mean[i][k],
			    &sem[i][k], &undef[i][k]) < 0)
				die_lib();
			if (!isnan(sem[i][k]) && sem[i][k] > worst)
				worst = sem[i][k];
			anyundef |= undef[i][k] > 0;
		}
	}
	printf("AvgDist in pixels: %s masks on %dx%d images, mean of %d masks per entry\n",
	    mim_mask_strategy_name(o.strategy), size, size, samples);
	printf("ratio");
	for (int i = 0; i < np; i++) {
		char h[32];
		snprintf(h, sizeof h, "mask %g", pv[i]);
		printf("%10s", h);
	}
	putchar('\n');
	for (int k = 0; k < nr; k++) {
		printf("%5g", rv[k]);
		for (int i = 0; i < np; i++) {
			if (isnan(mean[i][k]))
				printf("%10s", "-");
			else
				printf("%10.3f", mean[i][k]);
		}
		putchar('\n');
	}
	printf("largest standard error %.3f; seed %llu, rng %s\n", worst,
	    (unsigned long long)o.seed, mim_mask_rng_name(o.rng));
	if (anyundef)
		printf("some masks had no visible pixel and were left out\n");
	cli_exit(0);
}

static const struct option opts[] = {
	{"strategy", required_argument, NULL, 's'},
	{"mask-patch", required_argument, NULL, 'm'},
	{"model-patch", required_argument, NULL, 'p'},
	{"ckpt", required_argument, NULL, O_CKPT},
	{"ratio", required_argument, NULL, 'r'},
	{"seed", required_argument, NULL, O_SEED},
	{"rng", required_argument, NULL, O_RNG},
	{"block-min", required_argument, NULL, O_BMIN},
	{"block-max", required_argument, NULL, O_BMAX},
	{"block-aspect", required_argument, NULL, O_BASPECT},
	{"stats", no_argument, NULL, O_STATS},
	{"avgdist-table", no_argument, NULL, O_TABLE},
	{"size", required_argument, NULL, O_SIZE},
	{"samples", required_argument, NULL, O_SAMPLES},
	{"help", no_argument, NULL, 'h'},
	{0},
};

struct cmdline {
	struct mim_maskopt o;
	/* -m and -r as given: lists for the table, one value otherwise */
	const char *ckpt, *patches, *ratios;
	int stats, tablemode, size, samples, model_set;
	int table_only;		/* --size or --samples given */
};

static void
parse(int argc, char **argv, struct cmdline *c)
{
	struct mim_maskopt *o = &c->o;
	int ch;

	*c = (struct cmdline){.size = 192, .samples = 1000};
	mim_maskopt_default(o);
	while ((ch = cli_getopt(argc, argv, "s:m:p:r:h", opts, NULL)) != -1) {
		switch (ch) {
		case 's':
			if ((ch = mim_mask_strategy_parse(optarg)) < 0)
				usage_error("--strategy: '%s' is not random, central or block", optarg);
			o->strategy = (enum mim_mask_strategy)ch;
			break;
		case 'm': c->patches = optarg; break;
		case 'p':
			o->model_patch = (int)cli_int("--model-patch", optarg, 1, 4096);
			c->model_set = 1;
			break;
		case O_CKPT: c->ckpt = optarg; break;
		case 'r': c->ratios = optarg; break;
		case O_SEED: o->seed = (uint64_t)cli_int("--seed", optarg, 0, INT64_MAX); break;
		case O_RNG:
			if ((ch = mim_mask_rng_parse(optarg)) < 0)
				usage_error("--rng: '%s' is not mim or numpy", optarg);
			o->rng = (enum mim_mask_rng)ch;
			break;
		case O_BMIN: o->block_min = (int)cli_int("--block-min", optarg, 1, 1 << 26); break;
		case O_BMAX: o->block_max = (int)cli_int("--block-max", optarg, 0, 1 << 26); break;
		case O_BASPECT:
			o->block_aspect = cli_double("--block-aspect", optarg, 1e-6, 1);
			break;
		case O_STATS: c->stats = 1; break;
		case O_TABLE: c->tablemode = 1; break;
		case O_SIZE:
			c->size = (int)cli_int("--size", optarg, 1, 8192);
			c->table_only = 1;
			break;
		case O_SAMPLES:
			c->samples = (int)cli_int("--samples", optarg, 1, 1000000);
			c->table_only = 1;
			break;
		case 'h': fputs(usage_text, stdout); exit(0);
		default: usage_error("unknown option");
		}
	}
}

/* the options of the masking mode (not the table's), checked; the model
 * patch of --ckpt is read later, after the cheap checks */
static void
check_masking(int argc, struct cmdline *c)
{
	if (c->table_only)
		usage_error("--size and --samples go with --avgdist-table");
	if (optind + 1 < argc)
		usage_error("more than one input file");
	if (c->patches)
		c->o.mask_patch = (int)cli_int("--mask-patch", c->patches, 1, 1 << 20);
	if (c->ratios)
		c->o.ratio = cli_double("--ratio", c->ratios, -HUGE_VAL, HUGE_VAL);
	if (c->ckpt && c->model_set)
		usage_error("--model-patch and --ckpt both set the model patch");
	if (!c->ckpt && mim_maskopt_check(&c->o) < 0)
		usage_error("%s", mim_errmsg());
}

/* --stats: the running sums over every mask */
struct stats {
	double fsum, dsum;		/* masked fractions, defined AvgDists */
	long long nmask, nundef;	/* masks, masks without an AvgDist */
};

static void
stats_add(struct stats *st, const uint8_t *m, int64_t h, int64_t w, int model_patch)
{
	int64_t on = 0;
	double d;

	for (int64_t i = 0; i < h * w; i++)
		on += m[i];
	st->fsum += (double)on / (double)(h * w);
	if (mim_avgdist(m, (int)h, (int)w, model_patch, &d) < 0)
		die_lib();
	if (isnan(d))
		st->nundef++;
	else
		st->dsum += d;
	st->nmask++;
}

static void
stats_print(const struct stats *st, const char *in)
{
	long long nmask = st->nmask, nundef = st->nundef;

	fflush(stdout);
	if (nmask == 0)
		warn("%s: 0 masks", in);
	else if (nundef == nmask)
		warn("%s: %lld masks, masked fraction %.4f, AvgDist undefined (no mask has a visible pixel)",
		    in, nmask, st->fsum / nmask);
	else
		warn("%s: %lld masks, masked fraction %.4f, AvgDist %.3f px%s", in,
		    nmask, st->fsum / nmask, st->dsum / (double)(nmask - nundef),
		    nundef ? " (masks without a visible pixel left out)" : "");
	if (nundef && nundef < nmask)
		warn("%s: %lld of %lld masks have no visible pixel", in, nundef, nmask);
}

/* adds 'mask' to frame k of input in (its 'image' gives B, H, W) */
static void
mask_frame(struct mim_masker *g, const struct mim_maskopt *o, struct mim_frame *f,
    const char *in, long k, struct stats *st)
{
	const int64_t want[4] = {-1, 3, -1, -1};
	struct mim_tensor *img = mim_frame_want(f, "image", MIM_F32, 4, want);
	int gh, gw;

	if (!img)
		die("%s: frame %ld: %s", in, k, mim_errmsg());
	int64_t B = img->shape[0], H = img->shape[2], W = img->shape[3];
	if (mim_mask_grid(o, H, W, &gh, &gw) < 0)
		die("%s: frame %ld: %s", in, k, mim_errmsg());
	int64_t h = H / o->model_patch, w = W / o->model_patch;
	uint8_t *mask = mim_malloc((size_t)(B * h * w));
	if (!mask)
		die_lib();
	for (int64_t b = 0; b < B; b++) {
		uint8_t *m = mask + (size_t)(b * h * w);
		if (mim_masker_next(g, H, W, m) < 0)
			die("%s: frame %ld: %s", in, k, mim_errmsg());
		if (st)
			stats_add(st, m, h, w, o->model_patch);
	}
	const int64_t shape[3] = {B, h, w};
	if (!mim_frame_take(f, "mask", MIM_U8, 3, shape, mask)) {
		free(mask);
		die("%s: frame %ld: %s", in, k, mim_errmsg());
	}
}

/* A stream that starts part-way (mim-data --resume) says how many images
 * came before its first frame (mim.images): its masks go on from there, as
 * in the uninterrupted stream. Only the first frame counts: streams joined
 * one after another keep counting. */
static void
resume_at(struct mim_masker *g, const struct mim_frame *f, const char *in)
{
	const char *v = mim_meta_get(f, "mim.images");
	const struct mim_tensor *img = mim_frame_get(f, "image");
	char *end;

	if (!v || !img || img->ndim != 4)
		return;
	long long n = strtoll(v, &end, 10);
	if (*end || n < 0)
		die("%s: frame 0: mim.images '%s' is not a count", in, v);
	if (n > 0 && mim_masker_skip(g, img->shape[2], img->shape[3], n) < 0)
		die("%s: frame 0: %s", in, mim_errmsg());
}

int
main(int argc, char **argv)
{
	struct cmdline c;

	cli_init(argc, argv);
	parse(argc, argv, &c);
	if (c.tablemode) {
		if (optind < argc)
			usage_error("--avgdist-table reads no input");
		table(c.o, c.patches ? c.patches : "4,8,16,32",
		    c.ratios ? c.ratios : "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9", c.size, c.samples);
	}
	check_masking(argc, &c);
	cli_stdout_not_tty();
	if (c.ckpt) {
		c.o.model_patch = ckpt_patch(c.ckpt);
		if (mim_maskopt_check(&c.o) < 0)
			die("%s: %s", c.ckpt, mim_errmsg());
	}

	struct mim_masker *g = mim_masker_new(&c.o);
	struct mim_reader *r = mim_reader_open(optind < argc ? argv[optind] : "-");
	struct mim_frame *f;
	struct stats st = {0};
	int rc;

	if (!g || !r)
		die_lib();
	const char *in = mim_reader_name(r);
	while ((rc = mim_read_frame(r, &f)) > 0) {
		if (mim_reader_count(r) == 1)
			resume_at(g, f, in);
		mask_frame(g, &c.o, f, in, mim_reader_count(r) - 1, c.stats ? &st : NULL);
		cli_put(f);
		mim_frame_free(f);
	}
	if (rc < 0)
		die_lib();
	if (c.stats)
		stats_print(&st, in);
	mim_reader_close(r);
	mim_masker_free(g);
	cli_exit(0);
}
