/* export.c -- mim-ckpt export: a checkpoint back in the layout PyTorch
 * code expects: the model without training state, or the encoder for
 * fine-tuning after the official pretrain -> finetune conversion. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "ckpt/ckpt.h"

static void
export_usage(void)
{
	printf("usage: mim-ckpt export [--finetune [--img-size N] [--window W] [--keep-norm]]\n"
	    "                       [--dtype f32|f16|bf16] [--pth] [-q] [-o FILE] CHECKPOINT\n"
	    "Write CHECKPOINT (a mim checkpoint, a .safetensors state dict or a\n"
	    "torch.save file) without its training state (opt.* tensors, mim.train.*\n"
	    "metadata) to FILE (stdout if none). With --finetune, write the state dict\n"
	    "of the fine-tuning encoder as the official code makes it from a SimMIM\n"
	    "model: 'encoder.' stripped, no decoder, mask token or buffers; ViT: the\n"
	    "shared relative position table in every block, no final norm; Swin:\n"
	    "relative position tables resampled for the new window (bicubic, as the\n"
	    "official code does).\n"
	    "  -f, --finetune       the fine-tuning encoder\n"
	    "  -i, --img-size N     fine-tuning image size (default: as pretrained)\n"
	    "  -w, --window W       fine-tuning Swin window (default: as pretrained)\n"
	    "  -k, --keep-norm      ViT: keep the final norm (for a model without mean pooling)\n"
	    "  -d, --dtype T        f32, f16 or bf16 for the float tensors (default: kept)\n"
	    "  -P, --pth            write a torch.save file: torch.load(FILE)['model']\n"
	    "  -q, --quiet          do not report what was done\n"
	    "  -o, --output FILE    write here (atomically) instead of stdout\n"
	    "  -h, --help           this help\n");
}

int
ckpt_export(int argc, char **argv)
{
	static const struct option opts[] = {
		{"finetune", no_argument, NULL, 'f'},
		{"img-size", required_argument, NULL, 'i'},
		{"window", required_argument, NULL, 'w'},
		{"keep-norm", no_argument, NULL, 'k'},
		{"dtype", required_argument, NULL, 'd'},
		{"pth", no_argument, NULL, 'P'},
		{"quiet", no_argument, NULL, 'q'},
		{"output", required_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct mim_export_opt o = {.dtype = -1};
	const char *out = NULL;
	int quiet = 0, pth = 0, c;

	while ((c = cli_getopt(argc, argv, "fi:w:kd:Pqo:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f': o.finetune = 1; break;
		case 'i': o.img_size = (int)cli_int("--img-size", optarg, 1, 16384); break;
		case 'w': o.window_size = (int)cli_int("--window", optarg, 1, 1024); break;
		case 'k': o.keep_norm = 1; break;
		case 'd':
			if (strcmp(optarg, "f32") == 0)
				o.dtype = MIM_F32;
			else if (strcmp(optarg, "f16") == 0)
				o.dtype = MIM_F16;
			else if (strcmp(optarg, "bf16") == 0)
				o.dtype = MIM_BF16;
			else
				usage_error("--dtype: '%s' is not f32, f16 or bf16", optarg);
			break;
		case 'P': pth = 1; break;
		case 'q': quiet = 1; break;
		case 'o': out = optarg; break;
		case 'h': export_usage(); return 0;
		default: usage_error("export: unknown option");
		}
	}
	if (optind != argc - 1)
		usage_error("export: want exactly one CHECKPOINT");
	if (!o.finetune && (o.img_size || o.window_size || o.keep_norm))
		usage_error("export: --img-size, --window and --keep-norm go with --finetune");
	if (!out)
		cli_stdout_not_tty();
	const char *in = argv[optind];
	struct mim_frame *f = mim_ckpt_load(in, NULL);
	if (!f)
		die("%s", mim_errmsg());
	char note[512];
	struct mim_frame *e = mim_ckpt_export(f, &o, note, sizeof note);
	if (!e)
		die("%s: %s", in, mim_errmsg());
	if (!quiet)
		warn("%s: %s", in, note);
	if (out) {
		if ((pth ? mim_pth_save(out, e) : mim_save(out, e)) < 0)
			die("%s: %s", out, mim_errmsg());
	} else if (pth) {
		if (mim_pth_write(STDOUT_FILENO, e) < 0)
			die("<stdout>: %s", mim_errmsg());
	} else {
		cli_put(e);
	}
	mim_frame_free(e);
	mim_frame_free(f);
	return 0;
}
