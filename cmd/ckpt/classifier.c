/* classifier.c -- mim-ckpt classifier: the official fine-tuning model
 * with its classification head, from a pretraining checkpoint or from
 * scratch (lib/ckpt/classifier.c does the work). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "ckpt/ckpt.h"

static void
classifier_usage(void)
{
	printf("usage: mim-ckpt classifier [PRETRAIN | --preset NAME] -o FILE --classes K\n"
	    "                           [--img-size N] [--window W] [--drop-path R]\n"
	    "                           [--init-scale S] [--seed N] [-q]\n"
	    "Write a classifier checkpoint: the official fine-tuning model (ViT: the\n"
	    "shared relative position table in every block, mean pooling, a fresh\n"
	    "fc_norm, the pretrained final norm discarded; Swin: final norm, average\n"
	    "pooling; tables resampled when the window or image size changes) with\n"
	    "a linear head of K classes. From PRETRAIN (a mim checkpoint, or an\n"
	    "official .pth), converted as 'mim-ckpt export --finetune' does and\n"
	    "loaded over the fine-tuning model's initialisation; or, with --preset,\n"
	    "all from the official initialisation (fine-tuning from scratch). Its\n"
	    "mim.config has \"head\":\"cls\" and \"num_classes\": K; mim-encode gives\n"
	    "its logits, mim-step fine-tunes it.\n"
	    "  -K, --classes K      number of classes (required)\n"
	    "  -p, --preset NAME    from scratch: the model of this preset\n"
	    "  -i, --img-size N     image size (default: as pretrained)\n"
	    "  -w, --window W       Swin window (default: as pretrained)\n"
	    "  -r, --drop-path R    drop path rate (default: as pretrained)\n"
	    "  -S, --init-scale S   head init scale (default: ViT 0.001, Swin 1)\n"
	    "  -s, --seed N         seed of the fresh parameters (default 0)\n"
	    "  -q, --quiet          do not report what was done\n"
	    "  -o, --output FILE    write here (atomically); required\n"
	    "  -h, --help           this help\n");
}

int
ckpt_classifier(int argc, char **argv)
{
	static const struct option opts[] = {
		{"classes", required_argument, NULL, 'K'},
		{"preset", required_argument, NULL, 'p'},
		{"img-size", required_argument, NULL, 'i'},
		{"window", required_argument, NULL, 'w'},
		{"drop-path", required_argument, NULL, 'r'},
		{"init-scale", required_argument, NULL, 'S'},
		{"seed", required_argument, NULL, 's'},
		{"quiet", no_argument, NULL, 'q'},
		{"output", required_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct mim_cls_opt o = {.drop_path_rate = -1, .init_scale = NAN};
	const char *out = NULL, *preset = NULL;
	int quiet = 0, c;

	while ((c = cli_getopt(argc, argv, "K:p:i:w:r:S:s:qo:h", opts, NULL)) != -1) {
		switch (c) {
		case 'K': o.num_classes = (int)cli_int("--classes", optarg, 1, 1 << 20); break;
		case 'p': preset = optarg; break;
		case 'i': o.ex.img_size = (int)cli_int("--img-size", optarg, 1, 16384); break;
		case 'w': o.ex.window_size = (int)cli_int("--window", optarg, 1, 1024); break;
		case 'r': o.drop_path_rate = cli_double("--drop-path", optarg, 0, 0.999999); break;
		case 'S': o.init_scale = cli_double("--init-scale", optarg, -1e6, 1e6); break;
		case 's': o.seed = (uint64_t)cli_int("--seed", optarg, 0, INT64_MAX); break;
		case 'q': quiet = 1; break;
		case 'o': out = optarg; break;
		case 'h': classifier_usage(); return 0;
		default: usage_error("classifier: unknown option");
		}
	}
	if (!o.num_classes)
		usage_error("classifier: --classes K is required");
	if (!out)
		usage_error("classifier: -o FILE is required");
	if (!!preset == (optind < argc) || optind < argc - 1)
		usage_error("classifier: want one PRETRAIN checkpoint or --preset NAME");
	struct mim_config cfg;
	struct mim_frame *pre = NULL;
	const char *in = preset ? preset : argv[optind];
	if (preset) {
		if (mim_config_preset(&cfg, preset) < 0)
			usage_error("--preset: %s", mim_errmsg());
	} else if (!(pre = mim_ckpt_load(in, NULL))) {
		die("%s", mim_errmsg());
	}
	char note[1024];
	struct mim_frame *f = mim_ckpt_classifier(pre, &cfg, &o, note, sizeof note);
	if (!f)
		die("%s: %s", in, mim_errmsg());
	if (mim_save(out, f) < 0)
		die("%s: %s", out, mim_errmsg());
	if (!quiet)
		warn("%s: %s", out, note);
	mim_frame_free(f);
	mim_frame_free(pre);
	return 0;
}
