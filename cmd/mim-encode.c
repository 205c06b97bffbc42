/* mim-encode -- the SimMIM encoder over a stream: reads frames with
 * `image` (B,3,H,W) and an optional `mask` (B,H/p,W/p), adds `latent`
 * (B,C,H/s,W/s): the encoder output with the mask token at masked patches.
 * --layer K and --pool mean give intermediate and pooled features. A
 * classifier checkpoint (mim-ckpt classifier) adds `logits` (B,K). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
"usage: mim-encode --ckpt FILE [--layer K] [--pool mean] [--precision P]\n"
"                  [--threads N] [FILE...]\n"
"Run the encoder of checkpoint FILE on every frame of the mim streams FILE...\n"
"(stdin when none): reads 'image' F32 [B,3,H,W] (H = W = the model's\n"
"img_size) and 'mask' [B,H/p,W/p] if present (U8 or any integer type or\n"
"BOOL, nonzero = masked; none: nothing masked), adds 'latent' F32\n"
"[B,C,H/s,W/s] and passes everything else on. A classifier checkpoint\n"
"(mim.config with num_classes K: mim-ckpt classifier) adds 'logits' F32 [B,K]\n"
"instead (no mask), unless --layer or --pool asks for features.\n"
"  -c, --ckpt FILE    the model checkpoint (mim-ckpt(1))\n"
"  -l, --layer K      features of layer K instead (ViT: block K's output,\n"
"                     no final norm; Swin: stage K), K >= 1; 0 = output\n"
"  -p, --pool mean    average over positions: 'latent' is [B,C]\n"
"      --precision P  fp32 (default) or bf16: products in bfloat16, summed in\n"
"                     float (AMX or AVX512-BF16), the rest in float\n"
"  -t, --threads N    threads (default MIM_THREADS or a thread a core)\n"
"  -h, --help         this help\n";

/* what is in flight, global so that an exit through die() leaves nothing
 * unreachable behind (LeakSanitizer) */
static struct mim_model *m;
static float *lat;

struct enc {
	int layer, pool, gp, logits;
	int64_t chw[3];
	char meta[64];
};

/* add 'latent' to a frame with 'image' (and 'mask') */
static void
encode_frame(struct mim_frame *f, const char *where, void *ctx)
{
	struct enc *e = ctx;
	const struct mim_config *cf = &m->cfg;
	int S = cf->img_size, gp = e->gp;
	const int64_t want[3] = {cf->in_chans, S, S};
	struct mim_tensor *img = cli_batch(f, "image", want, where, NULL, "the checkpoint's img_size");
	int B = (int)img->shape[0];
	const int64_t msh[3] = {B, gp, gp};
	const uint8_t *mask = e->logits ? NULL : cli_mask(f, msh, where, NULL);
	size_t per = (size_t)(e->chw[0] * e->chw[1] * e->chw[2]);
	lat = malloc((size_t)B * per * sizeof(float));
	if (!lat)
		die("out of memory");
	if (mim_encode_layer(m, B, img->data, mask, e->layer, lat) < 0)
		die("%s: %s", where, mim_errmsg());
	if (e->logits) {
		int64_t sh[2] = {B, cf->num_classes};
		struct mim_tensor *t = mim_frame_add(f, "logits", MIM_F32, 2, sh, NULL);
		if (!t || mim_head(m, B, lat, t->data) < 0)
			die("%s: %s", where, mim_errmsg());
		free(lat);
		lat = NULL;
	} else if (e->pool) {
		/* mean over positions, in double, into the front of lat */
		size_t hw = (size_t)(e->chw[1] * e->chw[2]);
		for (size_t bc = 0; bc < (size_t)B * e->chw[0]; bc++) {
			double s = 0;
			for (size_t t = 0; t < hw; t++)
				s += lat[bc * hw + t];
			lat[bc] = (float)(s / (double)hw);
		}
		int64_t sh[2] = {B, e->chw[0]};
		if (!mim_frame_add(f, "latent", MIM_F32, 2, sh, lat))
			die("%s", mim_errmsg());
		free(lat);
		lat = NULL;
	} else {
		int64_t sh[4] = {B, e->chw[0], e->chw[1], e->chw[2]};
		if (!mim_frame_take(f, "latent", MIM_F32, 4, sh, lat))
			die("%s", mim_errmsg());
		lat = NULL;	/* the frame owns it */
	}
	if (*e->meta && mim_meta_set(f, "mim.latent", e->meta) < 0)
		die("%s", mim_errmsg());
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"ckpt", required_argument, NULL, 'c'},
		{"layer", required_argument, NULL, 'l'},
		{"pool", required_argument, NULL, 'p'},
		{"precision", required_argument, NULL, 'P'},
		{"threads", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *ckpt = NULL;
	int layer = 0, pool = 0, c;

	cli_init(argc, argv);
	while ((c = cli_getopt(argc, argv, "c:l:p:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': ckpt = optarg; break;
		case 'l': layer = (int)cli_int("--layer", optarg, 0, 100000); break;
		case 'p':
			if (strcmp(optarg, "mean") != 0)
				usage_error("--pool: '%s' is not a pooling (only 'mean')", optarg);
			pool = 1;
			break;
		case 'P': cli_precision("--precision", optarg); break;
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
	if (layer > mim_model_nlayers(m))
		usage_error("--layer %d: the model has %d layers", layer, mim_model_nlayers(m));
	const struct mim_config *cf = &m->cfg;
	struct enc e = {.layer = layer, .pool = pool, .gp = cf->img_size / cf->patch_size,
	    .logits = mim_is_classifier(cf) && !layer && !pool};
	mim_layer_shape(m, layer, e.chw);
	if (layer || pool)
		snprintf(e.meta, sizeof e.meta, "layer %d%s", layer, pool ? ", pool mean" : "");
	cli_frames(argv + optind, 1, encode_frame, &e);
	mim_model_free(m);
	cli_exit(0);
}
