/* mim-view -- pictures of a stream: original | masked | reconstruction |
 * prediction grids, masks alone; loss curves from mim-step --log, any
 * fields of a JSON-lines log, confusion matrices from mim-eval --json. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "mim/view.h"

static const char usage_text[] =
"usage: mim-view (-o FILE.png | --out DIR) [options] [FILE]\n"
"       mim-view --masks -o FILE.png [options] [FILE]\n"
"       mim-view --curve LOG [--field F,...] [--x F] -o FILE.svg|FILE.png [--title T]\n"
"       mim-view --confusion EVAL.json -o FILE.svg|FILE.png [--title T]\n"
"Draw the samples of a stream (stdin or FILE) as a PNG grid, one row per\n"
"sample: original | masked (masked patches grey) | reconstruction (the\n"
"prediction pasted into the visible image) | prediction. A prediction at a\n"
"lower resolution is upsampled (nearest); one of the bins or clusters target\n"
"is drawn as its expected colour (the softmax-weighted mean of the bin or\n"
"colour centres); the normalised pixel target de-normalised with the mean\n"
"and variance of the image's windows (as it is, with a note, without the\n"
"image). The target comes from --ckpt or --target (default pixel).\n"
"  -o, --output FILE     one PNG of the first --max samples of the stream\n"
"      --out DIR         one PNG per frame, DIR/frame-000000.png ...\n"
"  -n, --max N           samples per picture (default 8)\n"
"  -c, --columns LIST    columns, comma-separated, from original, masked,\n"
"                        reconstruction, prediction (default: all four)\n"
"      --masks           draw the masks alone (white = masked), --per-row per row\n"
"      --per-row K       tiles per row with --masks (default 8)\n"
"  -s, --scale K         magnify tiles K times (default: 1, or enough to make\n"
"                        tiles at least 96 px)\n"
"      --mean M[,M,M]    undo this normalisation (default ImageNet's\n"
"      --std S[,S,S]     0.485,0.456,0.406 and 0.229,0.224,0.225)\n"
"      --no-labels       no column titles\n"
"      --ckpt FILE       the target of this checkpoint (target, pred_div,\n"
"                        norm_pix, colour centres)\n"
"      --target KIND     pixel (default), bins or clusters (with --clusters)\n"
"      --clusters FILE   the colour centres, 'centres' F32 [K,3] (mim-cluster)\n"
"      --norm-pix P      the prediction is of the normalised target, window P\n"
"      --pred-div D      the prediction is at 1/D of the image (default 1)\n"
"      --curve LOG       plot loss against step from mim-step's --log (and\n"
"                        val_loss, from mim-step --val, beside it)\n"
"      --field F[,F...]  with --curve: plot these numeric fields of the log's\n"
"                        lines instead (loss,val_acc1 ...), one panel each\n"
"      --x F             with --field: the field along x (default step)\n"
"      --confusion JSON  draw the confusion matrix of mim-eval --json\n"
"      --title T         title of the curve (default: the log's name)\n"
"  -h, --help            this help\n";

enum { OPT_OUT = 256, OPT_MASKS, OPT_PERROW, OPT_MEAN, OPT_STD, OPT_NOLABELS,
	OPT_CURVE, OPT_TITLE, OPT_CKPT, OPT_TARGET, OPT_CLUSTERS, OPT_NORMPIX,
	OPT_PREDDIV, OPT_FIELD, OPT_X, OPT_CONFUSION };

#define MAXFIELD 16

static struct {
	const char *output, *outdir, *curve, *title, *confusion, *x;
	char *fieldlist, *field[MAXFIELD];
	int nfield;
	int max, masks, perrow, scale, labels;
	int cols[MIM_NCOL], ncols;
	double mean[3], std[3];
	struct mim_target t;	/* of the predictions (cli_target) */
	int ckpt;		/* t is a checkpoint's */
	float *pfull;		/* a frame's predictions as (B,3,H,W) colours */
	int noted;		/* the note on normalised predictions given */
} o = {
	.max = 8, .perrow = 8, .labels = 1,
	.mean = {0.485, 0.456, 0.406}, .std = {0.229, 0.224, 0.225},
};

/* tensors a column needs */
static const int needs[MIM_NCOL][3] = {
	/* image mask pred */
	{1, 0, 0}, {1, 1, 0}, {1, 1, 1}, {0, 0, 1},
};

static void
parse_columns(const char *s)
{
	char *dup = strdup(s), *save = NULL;

	o.ncols = 0;
	for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int k;
		for (k = 0; k < MIM_NCOL; k++)
			if (strcmp(t, mim_view_col_name[k]) == 0)
				break;
		if (k == MIM_NCOL)
			usage_error("--columns: unknown column '%s'", t);
		if (o.ncols == MIM_NCOL)
			usage_error("--columns: too many columns");
		o.cols[o.ncols++] = k;
	}
	free(dup);
	if (!o.ncols)
		usage_error("--columns: no columns");
}

/* The picture being assembled: rows of tiles. */
struct sheet {
	struct mim_rgb **tiles;	/* row-major, ncol per row */
	int n, cap, ncol, tw, th;
};

static void
sheet_add(struct sheet *s, struct mim_rgb *t)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 16;
		s->tiles = realloc(s->tiles, (size_t)s->cap * sizeof *s->tiles);
		if (!s->tiles)
			die("out of memory");
	}
	s->tiles[s->n++] = t;
	s->tw = t->w;
	s->th = t->h;
}

static void
sheet_write(struct sheet *s, const char *path, int labels)
{
	const int gap = 4, head = labels ? 22 : 0;
	int rows = (s->n + s->ncol - 1) / s->ncol;
	int W = gap + s->ncol * (s->tw + gap), H = head + gap + rows * (s->th + gap);
	struct mim_rgb *pic = mim_rgb_new(W, H, 255);

	if (!pic)
		die_lib();
	if (labels)
		for (int c = 0; c < s->ncol; c++)
			if (mim_rgb_text(pic, mim_view_col_name[o.cols[c]], gap + c * (s->tw + gap),
			    4, 14) < 0) {
				warn("labels left out: %s", mim_errmsg());
				break;
			}
	for (int i = 0; i < s->n; i++)
		mim_rgb_paste(pic, s->tiles[i], gap + (i % s->ncol) * (s->tw + gap),
		    head + gap + (i / s->ncol) * (s->th + gap));
	if (mim_rgb_save_png(pic, path) < 0)
		die_lib();
	mim_rgb_free(pic);
	for (int i = 0; i < s->n; i++)
		mim_rgb_free(s->tiles[i]);
	s->n = 0;
}

/* Add up to `room` samples of frame f (index k) to the sheet. */
static int
add_frame(struct sheet *s, const struct mim_frame *f, const char *input, long k, int room)
{
	const struct mim_tensor *img = NULL, *mask = NULL, *pred = NULL;
	int need[3] = {0, 0, 0};
	int64_t B = -1, H = 0, W = 0, p = 1;

	for (int c = 0; c < o.ncols && !o.masks; c++)
		for (int j = 0; j < 3; j++)
			need[j] |= needs[o.cols[c]][j];
	if (o.masks)
		need[1] = 1;
	static const char *names[3] = {"image", "mask", "pred"};
	const struct mim_tensor **got[3] = {&img, &mask, &pred};
	for (int j = 0; j < 3; j++) {
		if (!need[j])
			continue;
		*got[j] = mim_frame_get(f, names[j]);
		if (!*got[j])
			die("%s: frame %ld: no tensor '%s' (%s); see --columns and --masks", input, k,
			    names[j], o.masks ? "--masks draws it" : "a column needs it");
	}
	char sh[128];
	if (img && (img->dtype != MIM_F32 || img->ndim != 4 || img->shape[1] != 3))
		die("%s: frame %ld: tensor 'image': want F32 [B,3,H,W], got %s %s", input, k,
		    mim_dtype_name(img->dtype), mim_shape_str(sh, sizeof sh, img->ndim, img->shape));
	struct mim_target tg = o.t;
	if (pred && (tg.kind == MIM_TARGET_BINS && !tg.K))	/* from the flags: 3K channels */
		tg.K = (int)(pred->shape[1] / 3);
	if (pred && (pred->dtype != MIM_F32 || pred->ndim != 4 || pred->shape[0] < 1 ||
	    pred->shape[1] != mim_target_channels(&tg) || (tg.kind == MIM_TARGET_BINS && tg.K < 2) ||
	    pred->shape[2] < 1 || pred->shape[2] != pred->shape[3]))
		die("%s: frame %ld: tensor 'pred': want F32 [B,%d,h,h] (target %s), got %s %s%s", input,
		    k, mim_target_channels(&tg), mim_target_name(tg.kind), mim_dtype_name(pred->dtype),
		    mim_shape_str(sh, sizeof sh, pred->ndim, pred->shape),
		    tg.kind == MIM_TARGET_PIXEL && !o.t.norm_pix ? " (another target? see --ckpt)" : "");
	char where[300];
	const int64_t any[3] = {-1, -1, -1};
	snprintf(where, sizeof where, "%s: frame %ld", input, k);
	const uint8_t *mbytes = mask ? cli_mask(f, any, where, NULL) : NULL;
	const struct mim_tensor *ref = img ? img : pred;
	if (ref) {
		B = ref->shape[0];
		H = ref->shape[2];
		W = ref->shape[3];
	}
	if (img && pred && mim_pred_check(img->shape, 4, pred->shape) < 0)
		die("%s: frame %ld: %s", input, k, mim_errmsg());
	if (pred) {	/* the predictions as colours at the image's resolution */
		if (img && pred->shape[2] * tg.div != H)
			die("%s: frame %ld: tensor 'pred': %s is not at 1/%d of the image (%s)", input, k,
			    mim_shape_str(sh, sizeof sh, pred->ndim, pred->shape), tg.div,
			    o.ckpt ? "the checkpoint's pred_div" : "--pred-div, default 1");
		if (!img)
			B = pred->shape[0], H = W = pred->shape[2] * tg.div;
		free(o.pfull);
		if (!(o.pfull = malloc((size_t)B * 3 * H * W * sizeof *o.pfull)))
			die("out of memory");
		int rc = mim_view_pred(&tg, (int)B, (int)H, (int)W, img ? img->data : NULL, pred->data,
		    o.pfull);
		if (rc < 0)
			die_lib();
		if (rc == 1 && !o.noted++)
			warn("%s: normalised pixel predictions drawn as they are (no 'image' to "
			    "de-normalise them with)", input);
	}
	if (mask && ref) {
		if (mask->shape[0] != B || mask->shape[1] == 0 || mask->shape[2] == 0 ||
		    H % mask->shape[1] || W % mask->shape[2] ||
		    H / mask->shape[1] != W / mask->shape[2])
			die("%s: frame %ld: 'mask' %s does not fit the images %s", input, k,
			    mim_shape_str(sh, 64, 3, mask->shape), mim_shape_str(sh + 64, 64, 4, ref->shape));
		p = H / mask->shape[1];
	}
	if (mask && !ref)
		B = mask->shape[0];

	int n = (int)(B < room ? B : room);
	for (int b = 0; b < n; b++) {
		if (o.masks) {
			int mh = (int)mask->shape[1], mw = (int)mask->shape[2];
			int sc = o.scale ? o.scale : (mh < 96 ? (96 + mh - 1) / mh : 1);
			struct mim_rgb *t = mim_view_mask(mh, mw,
			    mbytes + (size_t)b * mh * mw, sc);
			if (!t)
				die_lib();
			sheet_add(s, t);
			continue;
		}
		int sc = o.scale ? o.scale : (H < 96 ? (int)((96 + H - 1) / H) : 1);
		size_t is = (size_t)3 * H * W;
		for (int c = 0; c < o.ncols; c++) {
			struct mim_rgb *t = mim_view_tile(o.cols[c], (int)H, (int)W, (int)p,
			    img ? (const float *)img->data + b * is : NULL,
			    mask ? mbytes + (size_t)b * (H / p) * (W / p) : NULL,
			    pred ? o.pfull + b * is : NULL, o.mean, o.std, sc);
			if (!t)
				die_lib();
			sheet_add(s, t);
		}
	}
	return n;
}

/* --field a,b,c */
static void
parse_fields(const char *s)
{
	char *save = NULL;

	free(o.fieldlist);
	if (!(o.fieldlist = strdup(s)))
		die("out of memory");
	o.nfield = 0;
	for (char *t = strtok_r(o.fieldlist, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (o.nfield == MAXFIELD)
			usage_error("--field: more than %d fields", MAXFIELD);
		o.field[o.nfield++] = t;
	}
	if (!o.nfield)
		usage_error("--field: no fields");
}

/* a curve or the confusion matrix, as SVG or (FILE.png) PNG */
static void
drawing(void)
{
	const char *in = o.confusion ? o.confusion : o.curve;
	const char *t = o.title ? o.title : in;
	char *svg = o.confusion ? mim_view_confusion_svg(in, t) :
	    o.nfield ? mim_view_fields_svg(in, t, o.x ? o.x : "step", (const char *const *)o.field,
	    o.nfield) : mim_view_curve_svg(in, t);
	size_t n = strlen(o.output);

	if (!svg)
		die_lib();
	if (n > 4 && strcmp(o.output + n - 4, ".png") == 0) {
		if (mim_svg_to_png(svg, o.output) < 0)
			die_lib();
	} else {
		/* atomically: a failed write leaves an older picture alone */
		char tmp[4096];
		snprintf(tmp, sizeof tmp, "%s.tmp%ld", o.output, (long)getpid());
		FILE *fp = fopen(tmp, "w");
		if (!fp || fputs(svg, fp) == EOF || fclose(fp) == EOF || rename(tmp, o.output) < 0) {
			int e = errno;
			unlink(tmp);
			die("%s: %s", o.output, strerror(e));
		}
	}
	free(svg);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"output", required_argument, NULL, 'o'},
		{"out", required_argument, NULL, OPT_OUT},
		{"max", required_argument, NULL, 'n'},
		{"columns", required_argument, NULL, 'c'},
		{"masks", no_argument, NULL, OPT_MASKS},
		{"per-row", required_argument, NULL, OPT_PERROW},
		{"scale", required_argument, NULL, 's'},
		{"mean", required_argument, NULL, OPT_MEAN},
		{"std", required_argument, NULL, OPT_STD},
		{"no-labels", no_argument, NULL, OPT_NOLABELS},
		{"curve", required_argument, NULL, OPT_CURVE},
		{"title", required_argument, NULL, OPT_TITLE},
		{"ckpt", required_argument, NULL, OPT_CKPT},
		{"target", required_argument, NULL, OPT_TARGET},
		{"clusters", required_argument, NULL, OPT_CLUSTERS},
		{"norm-pix", required_argument, NULL, OPT_NORMPIX},
		{"pred-div", required_argument, NULL, OPT_PREDDIV},
		{"field", required_argument, NULL, OPT_FIELD},
		{"x", required_argument, NULL, OPT_X},
		{"confusion", required_argument, NULL, OPT_CONFUSION},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *ckpt = NULL, *target = NULL, *clusters = NULL;
	int c, n, norm_pix = 0, pred_div = 0;

	cli_init(argc, argv);
	parse_columns("original,masked,reconstruction,prediction");
	while ((c = cli_getopt(argc, argv, "o:n:c:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o': o.output = optarg; break;
		case OPT_OUT: o.outdir = optarg; break;
		case 'n': o.max = (int)cli_int("--max", optarg, 1, 100000); break;
		case 'c': parse_columns(optarg); break;
		case OPT_MASKS: o.masks = 1; break;
		case OPT_PERROW: o.perrow = (int)cli_int("--per-row", optarg, 1, 1000); break;
		case 's': o.scale = (int)cli_int("--scale", optarg, 1, 64); break;
		case OPT_MEAN:
			if ((n = cli_doubles("--mean", optarg, o.mean, 3)) == 1)
				o.mean[1] = o.mean[2] = o.mean[0];
			else if (n != 3)
				usage_error("--mean: want one or three values");
			break;
		case OPT_STD:
			if ((n = cli_doubles("--std", optarg, o.std, 3)) == 1)
				o.std[1] = o.std[2] = o.std[0];
			else if (n != 3)
				usage_error("--std: want one or three values");
			break;
		case OPT_NOLABELS: o.labels = 0; break;
		case OPT_CURVE: o.curve = optarg; break;
		case OPT_TITLE: o.title = optarg; break;
		case OPT_CKPT: ckpt = optarg; break;
		case OPT_TARGET: target = optarg; break;
		case OPT_CLUSTERS: clusters = optarg; break;
		case OPT_NORMPIX: norm_pix = (int)cli_int("--norm-pix", optarg, 3, 1023); break;
		case OPT_PREDDIV: pred_div = (int)cli_int("--pred-div", optarg, 1, 1024); break;
		case OPT_FIELD: parse_fields(optarg); break;
		case OPT_X: o.x = optarg; break;
		case OPT_CONFUSION: o.confusion = optarg; break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: usage_error("unknown option");
		}
	}
	if (!!o.output == !!o.outdir)
		usage_error("give one of -o FILE and --out DIR");
	cli_target(ckpt, target, clusters, norm_pix, pred_div, &o.t);
	o.ckpt = ckpt != NULL;
	if ((o.nfield || o.x) && !o.curve)
		usage_error("--field and --x go with --curve LOG");
	if (o.x && !o.nfield)
		usage_error("--x goes with --field");
	if (o.curve && o.confusion)
		usage_error("give one of --curve and --confusion");
	if (o.curve || o.confusion) {
		if (!o.output)
			usage_error("%s needs -o FILE.svg or FILE.png", o.curve ? "--curve" : "--confusion");
		drawing();
		free(o.fieldlist);
		return 0;
	}
	if (optind < argc - 1)
		usage_error("more than one input");
	if (o.outdir && mkdir(o.outdir, 0777) < 0 && errno != EEXIST)
		die("%s: %s", o.outdir, strerror(errno));

	struct mim_reader *r = mim_reader_open(optind < argc ? argv[optind] : "-");
	if (!r)
		die_lib();
	struct sheet s = {.ncol = o.masks ? o.perrow : o.ncols};
	struct mim_frame *f;
	int rc, total = 0, pictures = 0;
	while ((rc = mim_read_frame(r, &f)) > 0) {
		long k = mim_reader_count(r) - 1;
		int room = o.output ? o.max - total : o.max;
		total += add_frame(&s, f, mim_reader_name(r), k, room);
		mim_frame_free(f);
		if (o.outdir && s.n) {
			char path[4096];
			snprintf(path, sizeof path, "%s/frame-%06ld.png", o.outdir, k);
			sheet_write(&s, path, o.labels && !o.masks);
			pictures++;
		}
		if (o.output && total >= o.max)
			break;
	}
	if (rc < 0)
		die_lib();
	mim_reader_close(r);
	if (o.output) {
		if (!s.n)
			die("%s: no samples to draw", optind < argc ? argv[optind] : "<stdin>");
		sheet_write(&s, o.output, o.labels && !o.masks);
		pictures++;
	}
	free(s.tiles);
	free(o.pfull);
	return 0;
}
