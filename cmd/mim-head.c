/* mim-head -- the SimMIM prediction head over a stream: reads frames with
 * `latent` (B,C,h,w), adds `pred` (B,)+mim_pred_shape: for the linear head
 * (B,3,h*s,w*s), a 1x1 convolution to s*s*3 channels and a pixel shuffle by
 * the encoder stride s; for another target or resolution (target.c)
 * (B,C,h*s/d,w*s/d). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
"usage: mim-head --ckpt FILE [--threads N] [FILE...]\n"
"Run the prediction head (decoder: linear, mlp or swin-inverse) of checkpoint\n"
"FILE on every frame of the mim streams FILE... (stdin when none): reads\n"
"'latent' F32 [B,C,h,w] as mim-encode(1) writes it, adds 'pred' F32\n"
"[B,3,h*s,w*s] (s = encoder stride), the reconstruction in normalised pixel\n"
"space, and passes everything else on. A model of another target or\n"
"resolution (mim-loss(1)) predicts [B,C,h*s/d,w*s/d]: C = 3 pixels, 3K bin\n"
"or K colour logits.\n"
"  -c, --ckpt FILE    the model checkpoint (mim-ckpt(1))\n"
"  -t, --threads N    threads (default MIM_THREADS or a thread a core)\n"
"  -h, --help         this help\n";

/* what is in flight, global so that an exit through die() leaves nothing
 * unreachable behind (LeakSanitizer) */
static struct mim_model *m;
static float *pred;

/* add 'pred' to a frame with 'latent' [B,chw] */
static void
head_frame(struct mim_frame *f, const char *where, void *ctx)
{
	const int64_t *chw = ctx;
	struct mim_tensor *t = cli_batch(f, "latent", chw, where, "run mim-encode first",
	    "the encoder output of this checkpoint");
	int B = (int)t->shape[0];
	int64_t sh[4] = {B};
	mim_pred_shape(m, sh + 1);
	pred = malloc((size_t)B * sh[1] * sh[2] * sh[3] * sizeof(float));
	if (!pred)
		die("out of memory");
	if (mim_head(m, B, t->data, pred) < 0)
		die("%s: %s", where, mim_errmsg());
	if (!mim_frame_take(f, "pred", MIM_F32, 4, sh, pred))
		die("%s", mim_errmsg());
	pred = NULL;	/* the frame owns it */
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"ckpt", required_argument, NULL, 'c'},
		{"threads", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *ckpt = NULL;
	int c;

	cli_init(argc, argv);
	while ((c = cli_getopt(argc, argv, "c:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': ckpt = optarg; break;
		case 't': mim_set_threads((int)cli_int("--threads", optarg, 1, 1024)); break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: usage_error("unknown option");
		}
	}
	if (!ckpt)
		usage_error("--ckpt FILE is required");
	cli_stdout_not_tty();
	m = mim_model_open(ckpt);
	if (!m)
		die("%s", mim_errmsg());
	if (mim_is_classifier(&m->cfg))
		die("%s: a classifier has no prediction head (mim-encode gives its logits)", ckpt);
	int64_t chw[3];
	mim_layer_shape(m, 0, chw);
	cli_frames(argv + optind, 1, head_frame, chw);
	mim_model_free(m);
	cli_exit(0);
}
