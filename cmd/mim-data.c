/* mim-data -- tar shards and folders of images into augmented, normalised
 * batches (mim stream frames), or into preprocessed tar shards. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "mim/data.h"

static const char usage_text[] =
"usage: mim-data [OPTION]... [INPUT]...\n"
"Decode the images of WebDataset tar shards (.tar, .tar.gz, .tar.zst; '-' or\n"
"none: stdin) and folders (recursive; sub-folders are classes), apply SimMIM's\n"
"transform and write batches to stdout as mim stream frames: image F32\n"
"[B,3,S,S], label I64 [B] when the data has labels, metadata mim.keys,\n"
"mim.batch, mim.epoch. Warnings and the final counts go to stderr.\n"
"\n"
"Transform (default: RandomResizedCrop + flip, as SimMIM pre-training):\n"
"  -s, --size S            output side, default 192\n"
"      --scale LO,HI       crop area fraction range, default 0.67,1\n"
"      --ratio LO,HI       crop aspect ratio range, default 0.75,1.3333333\n"
"      --flip P            horizontal flip probability, default 0.5\n"
"      --interp NAME       bilinear (default) or bicubic (default with --eval)\n"
"      --mean M[,M,M]      default ImageNet 0.485,0.456,0.406\n"
"      --std S[,S,S]       default ImageNet 0.229,0.224,0.225\n"
"      --eval, --no-augment  shorter side to int(S/R), centre crop S x S\n"
"      --crop-ratio R      R for --eval, default 0.875 (224/256); or --crop-pct\n"
"      --finetune          the official fine-tuning transform (timm): --scale\n"
"                          0.08,1, bicubic, --randaug rand-m9-mstd0.5-inc1,\n"
"                          --reprob 0.25; with --eval,\n"
"                          resize + centre crop as above; for S <= 32,\n"
"                          --pad-crop 4 instead (--eval: no resize)\n"
"      --pad-crop P        RandomCrop(S, padding=P) + flip, no resize\n"
"      --randaug SPEC      timm's RandAugment after the flip, SPEC\n"
"                          rand-mM-mstdS-incI-nN (magnitude M 0..10, its std\n"
"                          S, increasing ops I, N ops an image) or none;\n"
"                          --finetune: rand-m9-mstd0.5-inc1\n"
"      --reprob P          random erasing (timm, mode pixel) with probability\n"
"                          P after normalising; --finetune: 0.25\n"
"      --gap G             box pre-shrink by factor/G for non-JPEG, default 0 (none)\n"
"      --shrink-min F      JPEG decoding at 1/2 size while the box stays F times\n"
"                          the output, default 3 (0: off)\n"
"      --shrink-max N      allow 1/N size too (2, 4 or 8): faster, less exact\n"
"Order and batches:\n"
"  -b, --batch B           images per frame, default 32\n"
"      --drop-last         drop the short last batch of each epoch\n"
"  -e, --epochs N          passes over the input, default 1 (0: without end)\n"
"      --shuffle K         shuffle buffer of K samples (0: input order)\n"
"      --seed N            default 0; fixes order, crops and flips\n"
"  -j, --threads N         decoding threads (default MIM_THREADS or one a core)\n"
"      --max-inflight N    samples being decoded and results waiting their\n"
"                          turn hold at most N bytes (or K, M, G), default 1G\n"
"      --shard-index I     take part I of --shard-count N parts\n"
"      --shard-count N\n"
"      --split-by WHAT     sample (default) or shard\n"
"      --ext LIST          image extensions by priority, default\n"
"                          jpg,jpeg,png,webp,ppm,pgm,pbm,pnm,tif,tiff,gif\n"
"      --strict            a bad image, member or shard is an error\n"
"      --resume CKPT       start where the run of mim-step's CKPT stopped\n"
"                          (its rank --shard-index), decoding nothing before\n"
"      --allow-empty       no image at all is not an error (exit 0)\n"
"      --max-pixels N      skip (as a bad image) any image of more than N pixels,\n"
"                          refused from its header; default 178956970 (PIL's)\n"
"Writing shards instead of frames:\n"
"  -o, --out PATTERN       tar shards named PATTERN % index ('out-%06d.tar')\n"
"      --per-shard N       samples per shard, default 1000\n"
"      --format FMT        png (default) or jpg\n"
"      --quality Q         JPEG quality, default 95\n"
"      --keep-aspect       shorter side to S, no crop (with --out)\n"
"      --idx               inputs are IDX files IMAGES [LABELS] (MNIST,\n"
"                          Fashion-MNIST): write them as .png and .cls\n"
"Debugging:\n"
"      --box X,Y,W,H[,F]   crop this box (and flip if F is 1) in every image\n"
"      --print-boxes       print each image's size, box, flip and JPEG shrink\n"
"  -q, --quiet             no counts at the end\n"
"  -v, --verbose           progress every few seconds\n"
"  -h, --help              this help\n";

enum {
	O_SCALE = 256, O_RATIO, O_FLIP, O_INTERP, O_MEAN, O_STD, O_EVAL, O_CROPR,
	O_GAP, O_SHRINK, O_SHRINKMAX, O_DROP, O_SHUF, O_SEED, O_SIDX, O_SCNT, O_SPLIT, O_EXT,
	O_STRICT, O_EMPTY, O_MAXPIX, O_INFLIGHT, O_PERSHARD, O_FORMAT, O_QUAL, O_KEEP, O_IDX, O_BOX,
	O_PBOX, O_RESUME, O_FINETUNE, O_PADCROP, O_REPROB, O_RANDAUG,
};

struct cmdline {
	struct mim_loader_opts o;
	int batch, drop_last, quiet, verbose, print_boxes, idx, allow_empty;
	int eval, keep;		/* --eval, --keep-aspect */
	int finetune, padcrop;	/* --finetune, --pad-crop given */
	unsigned given;		/* MIM_GIVEN_*: --scale, --interp, --crop-ratio,
				 * --reprob, --randaug given */
	const char *out;
	const char *resume;	/* --resume CKPT */
	long per_shard;
};

static void
pair(const char *flag, const char *s, double v[2])
{
	if (cli_doubles(flag, s, v, 2) != 2)
		usage_error("%s: want two values LO,HI", flag);
}

static void
three(const char *flag, const char *s, float v[3])
{
	double d[3];
	int n = cli_doubles(flag, s, d, 3);

	if (n == 2)
		usage_error("%s: want one or three values", flag);
	for (int i = 0; i < 3; i++)
		v[i] = (float)d[n == 1 ? 0 : i];
}

static const struct option opts[] = {
	{"size", required_argument, NULL, 's'},
	{"scale", required_argument, NULL, O_SCALE},
	{"ratio", required_argument, NULL, O_RATIO},
	{"flip", required_argument, NULL, O_FLIP},
	{"interp", required_argument, NULL, O_INTERP},
	{"mean", required_argument, NULL, O_MEAN},
	{"std", required_argument, NULL, O_STD},
	{"eval", no_argument, NULL, O_EVAL},
	{"no-augment", no_argument, NULL, O_EVAL},
	{"crop-ratio", required_argument, NULL, O_CROPR},
	{"crop-pct", required_argument, NULL, O_CROPR},
	{"finetune", no_argument, NULL, O_FINETUNE},
	{"pad-crop", required_argument, NULL, O_PADCROP},
	{"reprob", required_argument, NULL, O_REPROB},
	{"randaug", required_argument, NULL, O_RANDAUG},
	{"gap", required_argument, NULL, O_GAP},
	{"shrink-min", required_argument, NULL, O_SHRINK},
	{"shrink-max", required_argument, NULL, O_SHRINKMAX},
	{"batch", required_argument, NULL, 'b'},
	{"drop-last", no_argument, NULL, O_DROP},
	{"epochs", required_argument, NULL, 'e'},
	{"shuffle", required_argument, NULL, O_SHUF},
	{"seed", required_argument, NULL, O_SEED},
	{"threads", required_argument, NULL, 'j'},
	{"max-inflight", required_argument, NULL, O_INFLIGHT},
	{"shard-index", required_argument, NULL, O_SIDX},
	{"shard-count", required_argument, NULL, O_SCNT},
	{"split-by", required_argument, NULL, O_SPLIT},
	{"ext", required_argument, NULL, O_EXT},
	{"strict", no_argument, NULL, O_STRICT},
	{"resume", required_argument, NULL, O_RESUME},
	{"allow-empty", no_argument, NULL, O_EMPTY},
	{"max-pixels", required_argument, NULL, O_MAXPIX},
	{"out", required_argument, NULL, 'o'},
	{"per-shard", required_argument, NULL, O_PERSHARD},
	{"format", required_argument, NULL, O_FORMAT},
	{"quality", required_argument, NULL, O_QUAL},
	{"keep-aspect", no_argument, NULL, O_KEEP},
	{"idx", no_argument, NULL, O_IDX},
	{"box", required_argument, NULL, O_BOX},
	{"print-boxes", no_argument, NULL, O_PBOX},
	{"quiet", no_argument, NULL, 'q'},
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, 'h'},
	{0},
};

static void
defaults(struct cmdline *c)
{
	struct mim_loader_opts *o = &c->o;

	memset(c, 0, sizeof *c);
	mim_aug_default(&o->aug);
	o->seed = 0;
	o->epochs = 1;
	o->threads = 0;
	o->rank = 0;
	o->nranks = 1;
	o->mean[0] = 0.485f, o->mean[1] = 0.456f, o->mean[2] = 0.406f;
	o->std[0] = 0.229f, o->std[1] = 0.224f, o->std[2] = 0.225f;
	o->encfmt = "png";
	o->quality = 95;
	c->batch = 32;
	c->per_shard = 1000;
}

/* --box X,Y,W,H[,F]: a fixed crop for every image */
static void
box(struct mim_aug *a, const char *arg)
{
	double d[5];
	int n = cli_doubles("--box", arg, d, 5);

	if (n < 4)
		usage_error("--box: want X,Y,W,H or X,Y,W,H,F");
	for (int i = 0; i < n; i++)
		if (d[i] != floor(d[i]) || d[i] < 0 || d[i] > 1e9)
			usage_error("--box: '%s': want non-negative integers", arg);
	if (d[2] < 1 || d[3] < 1 || (n == 5 && d[4] > 1))
		usage_error("--box: '%s': want W,H >= 1 and F 0 or 1", arg);
	a->force = 1;
	a->box = (struct mim_box){(int)d[0], (int)d[1], (int)d[2], (int)d[3],
	    n == 5 ? (int)d[4] : 0};
}

/* one option ch of getopt_long, with its argument arg */
static void
option(struct cmdline *c, int ch, char *arg)
{
	struct mim_loader_opts *o = &c->o;
	struct mim_aug *a = &o->aug;

	switch (ch) {
	case 's': a->size = (int)cli_int("--size", arg, 1, 8192); break;
	case O_SCALE: pair("--scale", arg, a->scale); c->given |= MIM_GIVEN_SCALE; break;
	case O_RATIO: pair("--ratio", arg, a->ratio); break;
	case O_FLIP: a->flip = cli_double("--flip", arg, 0, 1); break;
	case O_INTERP:
		if (!strcmp(arg, "bilinear"))
			a->interp = MIM_INTERP_BILINEAR;
		else if (!strcmp(arg, "bicubic"))
			a->interp = MIM_INTERP_BICUBIC;
		else
			usage_error("--interp: '%s': want bilinear or bicubic", arg);
		c->given |= MIM_GIVEN_INTERP;
		break;
	case O_MEAN: three("--mean", arg, o->mean); break;
	case O_STD: three("--std", arg, o->std); break;
	case O_EVAL: c->eval = 1; break;
	case O_CROPR:
		a->crop_ratio = cli_double("--crop-ratio", arg, 1e-6, 1);
		c->given |= MIM_GIVEN_CROP;
		break;
	case O_FINETUNE: c->finetune = 1; break;
	case O_REPROB:
		a->reprob = cli_double("--reprob", arg, 0, 1);
		c->given |= MIM_GIVEN_REPROB;
		break;
	case O_RANDAUG:
		if (mim_randaug_parse(&a->ra, arg))
			usage_error("--randaug: '%s': %s", arg, mim_errmsg());
		c->given |= MIM_GIVEN_RANDAUG;
		break;
	case O_PADCROP:
		a->pad = (int)cli_int("--pad-crop", arg, 0, 8191);
		c->padcrop = 1;
		break;
	case O_GAP: a->gap = cli_double("--gap", arg, 0, 1e6); break;
	case O_SHRINK: a->shrink_min = cli_double("--shrink-min", arg, 0, 1e6); break;
	case O_SHRINKMAX:
		a->shrink_max = (int)cli_int("--shrink-max", arg, 1, 8);
		if (a->shrink_max & (a->shrink_max - 1))
			usage_error("--shrink-max: want 1, 2, 4 or 8");
		break;
	case 'b': c->batch = (int)cli_int("--batch", arg, 1, 1 << 20); break;
	case O_DROP: c->drop_last = 1; break;
	case 'e': o->epochs = (long)cli_int("--epochs", arg, 0, 1L << 40); break;
	case O_SHUF: o->shuffle = (long)cli_int("--shuffle", arg, 0, 1L << 24); break;
	case O_SEED: o->seed = (uint64_t)cli_int("--seed", arg, 0, INT64_MAX); break;
	case 'j': o->threads = (int)cli_int("--threads", arg, 1, 1024); break;
	case O_INFLIGHT:
		if (mim_parse_size(arg, &o->max_inflight))
			usage_error("--max-inflight: '%s' is not a size (bytes, or with K, M, G or T)", arg);
		break;
	case O_SIDX: o->rank = (int)cli_int("--shard-index", arg, 0, 1 << 20); break;
	case O_SCNT: o->nranks = (int)cli_int("--shard-count", arg, 1, 1 << 20); break;
	case O_SPLIT:
		if (!strcmp(arg, "shard"))
			o->split_shards = 1;
		else if (strcmp(arg, "sample"))
			usage_error("--split-by: '%s': want sample or shard", arg);
		break;
	case O_EXT: o->exts = arg; break;
	case O_STRICT: o->strict = 1; break;
	case O_EMPTY: c->allow_empty = 1; break;
	case O_MAXPIX: a->max_pixels = (int64_t)cli_int("--max-pixels", arg, 1, INT64_MAX); break;
	case 'o': c->out = arg; break;
	case O_PERSHARD: c->per_shard = (long)cli_int("--per-shard", arg, 1, 1L << 40); break;
	case O_FORMAT:
		if (!strcmp(arg, "jpeg"))
			arg = "jpg";
		if (strcmp(arg, "png") && strcmp(arg, "jpg"))
			usage_error("--format: '%s': want png or jpg", arg);
		o->encfmt = arg;
		break;
	case O_QUAL: o->quality = (int)cli_int("--quality", arg, 1, 100); break;
	case O_KEEP: c->keep = 1; break;
	case O_IDX: c->idx = 1; break;
	case O_BOX: box(a, arg); break;
	case O_PBOX: c->print_boxes = 1; break;
	case O_RESUME: c->resume = arg; break;
	case 'q': c->quiet = 1; break;
	case 'v': c->verbose = 1; break;
	case 'h': fputs(usage_text, stdout); exit(0);
	default: usage_error("unknown option");
	}
}

/* the options together: the transform's mode, and what excludes what */
static void
settle(struct cmdline *c)
{
	struct mim_loader_opts *o = &c->o;
	struct mim_aug *a = &o->aug;

	if (c->eval && c->keep)
		usage_error("--eval and --keep-aspect exclude each other");
	if (c->padcrop && (c->eval || c->keep))
		usage_error("--pad-crop is a training transform: not with --eval or --keep-aspect");
	if (c->finetune && mim_aug_finetune(a, c->given, c->eval, c->keep, c->out != NULL))
		c->padcrop = 1;
	if ((c->given & MIM_GIVEN_REPROB) && a->reprob > 0 && (c->eval || c->keep || c->out))
		usage_error("--reprob erases in the training transform's frames: not with --eval, "
		    "--keep-aspect or --out");
	if ((c->given & MIM_GIVEN_RANDAUG) && a->ra.n > 0 && (c->eval || c->keep))
		usage_error("--randaug is part of the training transform: not with --eval or "
		    "--keep-aspect");
	mim_randaug_fill(&a->ra, o->mean);
	if (c->padcrop)
		a->mode = MIM_MODE_PADCROP;
	if (c->eval) {
		a->mode = MIM_MODE_EVAL;
		if (!(c->given & MIM_GIVEN_INTERP))
			a->interp = MIM_INTERP_BICUBIC;
	}
	if (c->keep) {
		if (!c->out)
			usage_error("--keep-aspect gives images of different sizes: only with --out");
		a->mode = MIM_MODE_RESIZE;
	}
	if (a->force && a->mode != MIM_MODE_TRAIN)
		usage_error("--box applies to the RandomResizedCrop transform only");
	if (o->rank >= o->nranks)
		usage_error("--shard-index %d: want less than --shard-count %d", o->rank, o->nranks);
	if (c->idx && !c->out)
		usage_error("--idx writes shards: it needs --out");
	if (c->resume && c->out)
		usage_error("--resume continues a training stream: not with --out");
	if (mim_aug_check(a))
		usage_error("%s", mim_errmsg());
	if (c->out && mim_pattern_check(c->out))
		usage_error("--out: %s", mim_errmsg());
	for (int i = 0; i < 3; i++)
		if (o->std[i] == 0)
			usage_error("--std: must not be 0");
}

static void
parse(int argc, char **argv, struct cmdline *c)
{
	int ch;

	defaults(c);
	while ((ch = cli_getopt(argc, argv, "s:b:e:j:o:qvh", opts, NULL)) != -1)
		option(c, ch, optarg);
	settle(c);
	c->o.inputs = argv + optind;
	c->o.ninputs = argc - optind;
	if (c->o.threads == 0)
		c->o.threads = mim_threads();
	c->o.want = c->out ? MIM_WANT_ENCODED : MIM_WANT_FLOAT;
}

static void
on_warn(void *ctx, const char *msg)
{
	(void)ctx;
	warn("%s", msg);
}

/* --idx: IMAGES [LABELS] into shards of key.png (+ key.cls). */
static int
idx_convert(struct cmdline *c)
{
	struct mim_tarw *w;
	int64_t n;

	if (c->o.ninputs < 1 || c->o.ninputs > 2)
		usage_error("--idx: want IMAGES [LABELS] (IDX files)");
	if (!(w = mim_tarw_open(c->out, c->per_shard)))
		die_lib();
	if (mim_idx_to_shards(c->o.inputs[0], c->o.ninputs == 2 ? c->o.inputs[1] : NULL, w,
	    c->o.encfmt, c->o.quality, &n) < 0) {
		warn("%s", mim_errmsg());
		mim_tarw_close(w);
		exit(1);
	}
	long shards = mim_tarw_shards(w);
	if (mim_tarw_close(w))
		die_lib();
	if (!c->quiet)
		fprintf(stderr, "%s: %lld images in %ld shard%s\n", argv0, (long long)n, shards,
		    shards == 1 ? "" : "s");
	return 0;
}

/* one run of the loader: where its items go, and the counts */
struct run {
	const struct cmdline *c;
	struct mim_loader *L;
	struct mim_tarw *w;		/* --out, else */
	struct mim_batcher *b;		/* frames to stdout */
	long nimg, batch0;		/* batch0: the first frame's number */
	double t0, tlast;
};

/* one item from the loader: into a shard, or into the pending batch and
 * out as the frames it completes */
static void
take(struct run *r, struct mim_item *it)
{
	struct mim_frame *f[2];
	int n;

	if (r->c->print_boxes) {
		char g[MIM_RA_MAXN * 48 + 160];
		mim_geom_format(g, sizeof g, &it->g);
		fprintf(stderr, "%s: box %s %s\n", argv0, it->s->key, g);
	}
	r->nimg++;
	if (r->w) {
		if (mim_tarw_add_item(r->w, r->L, it)) {
			warn("%s", mim_errmsg());
			mim_tarw_close(r->w);
			exit(1);
		}
		mim_item_free(it);
		return;
	}
	if ((n = mim_batcher_add(r->b, it, f)) < 0)
		die_lib();
	for (int i = 0; i < n; i++) {
		cli_put(f[i]);
		mim_frame_free(f[i]);
	}
}

/* --resume CKPT: start where the checkpoint's run stopped reading */
static void
resume(struct run *r, const char *ckpt)
{
	struct mim_data_pos pos;
	int rc = mim_batcher_resume(r->b, r->L, ckpt, r->c->o.rank, &pos);

	if (rc < 0)
		die_lib();
	r->batch0 = mim_batcher_next(r->b);
	if (rc > 0 && !r->c->quiet)
		fprintf(stderr, "%s: %s: resuming at epoch %ld, sample %ld, frame %ld\n", argv0, ckpt,
		    pos.epoch, pos.next, pos.batch);
}

/* the final counts on stderr */
static void
report(const struct run *r, long shards)
{
	const struct mim_data_counts *k = mim_loader_counts(r->L);
	double dt = mim_now() - r->t0;

	if (r->w)
		fprintf(stderr, "%s: %lld images in %ld shard%s", argv0, k->images, shards,
		    shards == 1 ? "" : "s");
	else
	{
		long nb = mim_batcher_next(r->b) - r->batch0;
		fprintf(stderr, "%s: %lld images in %ld batch%s", argv0, k->images, nb,
		    nb == 1 ? "" : "es");
	}
	char skipped[200];
	mim_data_counts_format(skipped, sizeof skipped, k);
	fprintf(stderr, " (%.1f images/s)%s\n", dt > 0 ? k->images / dt : 0.0, skipped);
}

int
main(int argc, char **argv)
{
	struct cmdline c;
	struct run r = {.c = &c};
	struct mim_item *it;
	int rc;

	cli_init(argc, argv);
	mim_data_tune_malloc();
	parse(argc, argv, &c);
	if (c.idx)
		return idx_convert(&c);
	char *stdin_only[] = {"-", NULL};
	if (c.o.ninputs == 0) {
		c.o.inputs = stdin_only;
		c.o.ninputs = 1;
	}
	for (int i = 0; i < c.o.ninputs; i++)
		if (!strcmp(c.o.inputs[i], "-") && c.o.epochs != 1)
			usage_error("stdin can be read once only: use --epochs 1");
	if (!c.out)
		cli_stdout_not_tty();
	c.o.warn = on_warn;
	if (!(r.L = mim_loader_open(&c.o)))
		die_lib();
	if (c.out && !(r.w = mim_tarw_open(c.out, c.per_shard)))
		die_lib();
	if (!(r.b = mim_batcher_new(c.batch, c.drop_last, c.o.aug.size)))
		die_lib();
	if (c.resume)
		resume(&r, c.resume);
	r.t0 = r.tlast = mim_now();

	while ((rc = mim_loader_next(r.L, &it)) > 0) {
		take(&r, it);
		if (c.verbose && mim_now() - r.tlast >= 2) {
			r.tlast = mim_now();
			fprintf(stderr, "%s: %ld images, %ld batches, %.1f images/s\n", argv0,
			    r.nimg, mim_batcher_next(r.b) - r.batch0, r.nimg / (r.tlast - r.t0));
		}
	}
	if (rc < 0) {
		/* nothing partial goes out: the pending batch is dropped */
		warn("%s", mim_errmsg());
		mim_batcher_free(r.b);
		if (r.w)
			mim_tarw_close(r.w);
		mim_loader_close(r.L);
		exit(1);
	}
	struct mim_frame *last;
	int rl = mim_batcher_flush(r.b, &last);
	if (rl < 0)
		die_lib();
	if (rl > 0) {
		cli_put(last);
		mim_frame_free(last);
	}
	long shards = 0;
	if (r.w) {
		shards = mim_tarw_shards(r.w);
		if (mim_tarw_close(r.w))
			die_lib();
	}
	if (!c.quiet)
		report(&r, shards);
	const struct mim_data_counts *k = mim_loader_counts(r.L);
	int empty = k->images == 0, nosamples = k->samples == 0 && k->bad_shards == 0;
	mim_batcher_free(r.b);
	mim_loader_close(r.L);
	/* an empty folder, a shard of something else, images that all
	 * failed: better said here than as a downstream tool's "no frames" */
	if (empty && !c.allow_empty)
		die("no images: %s (--allow-empty accepts that)",
		    nosamples ? "the input holds no samples" : "none of the input could be decoded");
	cli_exit(0);
}
