/* mim-loss -- the SimMIM reconstruction loss over a stream: reads frames
 * with `image` (B,3,H,W), `mask` (B,H/p,W/p) and `pred` (B,C,H/d,W/d),
 * adds `loss` (F32 scalar) and prints the running mean to stderr. Needs no
 * checkpoint: the model patch p is H / the mask's height, the resolution d
 * H / pred's height; the target (lib/model/target.c) comes from --ckpt or
 * the --target flags. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
"usage: mim-loss [--loss l1|l2|smooth-l1|ce] [--beta B] [--region masked|all]\n"
"                [--ckpt FILE | [--target KIND] [--clusters FILE] [--norm-pix P]\n"
"                [--pred-div D]] [--quiet] [FILE...]\n"
"Add 'loss', an F32 scalar, to every frame of the mim streams FILE... (stdin\n"
"when none) from 'image' F32 [B,3,H,W], 'mask' [B,H/p,W/p] and 'pred'\n"
"F32 [B,C,H/d,W/d] (d = 1 unless the model predicts at a lower resolution),\n"
"normalised as the official SimMIM loss:\n"
"  sum(f(target - pred) * M) / (sum(M) + 1e-5) / 3\n"
"with M the mask upsampled to pixels (all ones for --region all) and the\n"
"target the image (its d x d means at 1/d; a target pixel is masked iff all\n"
"its patches are). The classification targets score the cross-entropy (ce)\n"
"instead of f: bins per masked pixel and channel (/ 3), clusters per masked\n"
"pixel. Prints each frame's loss and the running mean to stderr.\n"
"  -l, --loss KIND      l1 (default), l2, smooth-l1 for the pixel target; ce\n"
"                       (the default) for bins and clusters\n"
"  -b, --beta B         smooth-l1 threshold (default 1.0)\n"
"  -r, --region WHICH   masked (default) or all pixels\n"
"  -c, --ckpt FILE      the target of this checkpoint (its mim.config's\n"
"                       target, pred_div, norm_pix and colour centres)\n"
"  -d, --pred-div D     pred is at 1/D of the image's resolution (default 1)\n"
"  -t, --target KIND    pixel (default), bins (K = C/3 bins per channel) or\n"
"                       clusters (with --clusters)\n"
"  -k, --clusters FILE  the colour centres, 'centres' F32 [K,3] (mim-cluster)\n"
"  -n, --norm-pix P     the normalised pixel target, window P (odd)\n"
"  -q, --quiet          no running mean on stderr\n"
"  -h, --help           this help\n";


struct run {
	struct mim_lossopt o;
	struct mim_target t;	/* div and (bins) K from each frame's shapes */
	int K;			/* clusters: the centres' rows; --ckpt: the config's */
	int div;		/* pred_div of --ckpt or --pred-div (1) */
	int quiet, ckpt;
	double sum;	/* of the frames' losses so far */
	long n;
};

/* add 'loss' to a frame with 'image', 'pred' (and 'mask') */
static void
loss_frame(struct mim_frame *f, const char *where, void *ctx)
{
	struct run *L = ctx;
	char got[128], want[128];

	struct mim_tensor *img = mim_frame_get(f, "image"), *pred = mim_frame_get(f, "pred");
	struct mim_tensor *mk = mim_frame_get(f, "mask");
	if (!img || !pred)
		die("%s: no tensor '%s'", where, img ? "pred" : "image");
	if (img->dtype != MIM_F32 || pred->dtype != MIM_F32)
		die("%s: tensor '%s': dtype %s, want F32", where, img->dtype != MIM_F32 ? "image" : "pred",
		    mim_dtype_name(img->dtype != MIM_F32 ? img->dtype : pred->dtype));
	if (img->ndim != 4 || img->shape[1] != 3 || img->shape[0] < 1 || img->shape[2] < 1 ||
	    img->shape[3] < 1 || img->shape[0] > 1 << 20)
		die("%s: tensor 'image': shape %s, want [B,3,H,W]", where,
		    mim_shape_str(got, sizeof got, img->ndim, img->shape));
	if (mim_pred_check(img->shape, pred->ndim, pred->shape) < 0)
		die("%s: %s", where, mim_errmsg());
	int B = (int)img->shape[0], H = (int)img->shape[2], W = (int)img->shape[3], p = 1;
	struct mim_target t = L->t;
	t.div = H / (int)pred->shape[2];
	t.K = t.kind == MIM_TARGET_BINS && !L->K ? (int)(pred->shape[1] / 3) : L->K;
	if (t.div != L->div)
		die("%s: tensor 'pred': %s is at 1/%d of the image, not 1/%d (%s)", where,
		    mim_shape_str(got, sizeof got, pred->ndim, pred->shape), t.div, L->div,
		    L->ckpt ? "the checkpoint's pred_div" : "--pred-div, default 1");
	if (pred->shape[1] != mim_target_channels(&t) || (t.kind == MIM_TARGET_BINS && t.K < 2)) {
		char need[64] = "3 per bin, 2 bins or more";
		if (t.kind != MIM_TARGET_BINS || L->K)
			snprintf(need, sizeof need, "%d (%s)", mim_target_channels(&t),
			    t.kind == MIM_TARGET_PIXEL ? "RGB" : t.kind == MIM_TARGET_BINS ?
			    "3 x the checkpoint's bins" : "one per colour centre");
		die("%s: tensor 'pred': %lld channels, but target %s wants %s", where,
		    (long long)pred->shape[1], mim_target_name(t.kind), need);
	}
	const uint8_t *mask = NULL;
	if (!mk && L->o.region == MIM_REGION_MASKED)
		die("%s: no tensor 'mask' (--region all needs none)", where);
	if (mk) {
		if (mk->ndim != 3 || mk->shape[0] != B || mk->shape[1] < 1 || H % mk->shape[1] ||
		    mk->shape[2] < 1 || W % mk->shape[2] || H / mk->shape[1] != W / mk->shape[2])
			die("%s: tensor 'mask': shape %s does not tile the image %s", where,
			    mim_shape_str(got, sizeof got, mk->ndim, mk->shape),
			    mim_shape_str(want, sizeof want, img->ndim, img->shape));
		p = H / (int)mk->shape[1];
		mask = cli_mask(f, mk->shape, where, NULL);
	}
	errno = 0;
	double l = mim_target_loss(&L->o, &t, B, H, W, p, img->data, mask, pred->data, NULL);
	if (isnan(l) && errno)
		die("%s: %s", where, mim_errmsg());
	float lf = (float)l;
	if (!mim_frame_add(f, "loss", MIM_F32, 0, NULL, &lf))
		die("%s", mim_errmsg());
	L->sum += lf;
	L->n++;
	if (!L->quiet)
		fprintf(stderr, "%s: frame %ld: loss %.6f, mean %.6f\n", argv0, L->n - 1, lf, L->sum / L->n);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"loss", required_argument, NULL, 'l'},
		{"beta", required_argument, NULL, 'b'},
		{"region", required_argument, NULL, 'r'},
		{"ckpt", required_argument, NULL, 'c'},
		{"target", required_argument, NULL, 't'},
		{"clusters", required_argument, NULL, 'k'},
		{"norm-pix", required_argument, NULL, 'n'},
		{"pred-div", required_argument, NULL, 'd'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct mim_lossopt o = {MIM_LOSS_L1, MIM_REGION_MASKED, 1.0};
	struct run L = {.o = o};
	const char *ckpt = NULL, *clusters = NULL, *target = NULL;
	int quiet = 0, given = 0, norm_pix = 0, pred_div = 0, c;

	cli_init(argc, argv);
	while ((c = cli_getopt(argc, argv, "l:b:r:c:t:k:n:d:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'l': o.kind = cli_loss("--loss", optarg), given = 1; break;
		case 'c': ckpt = optarg; break;
		case 't': target = optarg; break;
		case 'k': clusters = optarg; break;
		case 'n': norm_pix = (int)cli_int("--norm-pix", optarg, 3, 1023); break;
		case 'd': pred_div = (int)cli_int("--pred-div", optarg, 1, 1024); break;
		case 'b': o.beta = cli_double("--beta", optarg, 0, 1e30); break;
		case 'r': o.region = cli_region("--region", optarg); break;
		case 'q': quiet = 1; break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: usage_error("unknown option");
		}
	}
	cli_target(ckpt, target, clusters, norm_pix, pred_div, &L.t);
	L.ckpt = ckpt != NULL;
	L.div = L.t.div;
	L.K = L.t.K;
	if (L.t.kind != MIM_TARGET_PIXEL && !given)
		o.kind = MIM_LOSS_CE;
	if (L.t.kind != MIM_TARGET_PIXEL && o.kind != MIM_LOSS_CE)
		usage_error("--loss %s: the target %s is a classification, scored by ce",
		    mim_loss_name(o.kind), mim_target_name(L.t.kind));
	if (mim_loss_check(&o, &L.t) < 0 && (L.t.kind != MIM_TARGET_BINS || L.K))
		usage_error("%s", mim_errmsg());
	cli_stdout_not_tty();
	L.o = o;
	L.quiet = quiet;
	cli_frames(argv + optind, 1, loss_frame, &L);
	cli_exit(0);
}
