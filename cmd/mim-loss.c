/* mim-loss -- the SimMIM reconstruction loss over a stream: reads frames
 * with `image` (B,3,H,W), `mask` (B,H/p,W/p) and `pred` (B,3,H,W), adds
 * `loss` (F32 scalar) and prints the running mean to stderr. Needs no
 * checkpoint: the model patch p is H / the mask's height. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
"usage: mim-loss [--loss l1|l2|smooth-l1] [--beta B] [--region masked|all]\n"
"                [--quiet] [FILE...]\n"
"Add 'loss', an F32 scalar, to every frame of the mim streams FILE... (stdin\n"
"when none) from 'image' F32 [B,3,H,W], 'mask' [B,H/p,W/p] and 'pred'\n"
"F32 [B,3,H,W], normalised as the official SimMIM loss:\n"
"  sum(f(image - pred) * M) / (sum(M) + 1e-5) / 3\n"
"with M the mask upsampled to pixels (all ones for --region all). Prints\n"
"each frame's loss and the running mean to stderr.\n"
"  -l, --loss KIND      l1 (default), l2, smooth-l1\n"
"  -b, --beta B         smooth-l1 threshold (default 1.0)\n"
"  -r, --region WHICH   masked (default) or all pixels\n"
"  -q, --quiet          no running mean on stderr\n"
"  -h, --help           this help\n";


struct run {
	struct mim_lossopt o;
	int quiet;
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
	double l = mim_loss(&L->o, B, H, W, p, img->data, mask, pred->data, NULL);
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
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct mim_lossopt o = {MIM_LOSS_L1, MIM_REGION_MASKED, 1.0};
	int quiet = 0, c;

	cli_init(argc, argv);
	while ((c = cli_getopt(argc, argv, "l:b:r:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'l': o.kind = cli_loss("--loss", optarg); break;
		case 'b': o.beta = cli_double("--beta", optarg, 0, 1e30); break;
		case 'r': o.region = cli_region("--region", optarg); break;
		case 'q': quiet = 1; break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: usage_error("unknown option");
		}
	}
	cli_stdout_not_tty();
	struct run L = {o, quiet, 0, 0};
	cli_frames(argv + optind, 1, loss_frame, &L);
	cli_exit(0);
}
