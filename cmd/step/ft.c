/* ft.c -- mim-step's fine-tuning flags (ft.h). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "step/ft.h"

const char ft_usage[] =
"Fine-tuning: with a classifier checkpoint (mim-ckpt classifier), INPUT has\n"
"{image, label} frames (mim-data on labelled shards) and the step is the\n"
"official fine-tuning one: soft-target cross-entropy with label smoothing,\n"
"mixup or cutmix per batch (timm 0.4.12 Mixup, mode 'batch', our own seeded\n"
"random numbers), layer-wise lr decay, the fine-tuning weight-decay rules.\n"
"The log adds \"acc1\" (training batch, when unmixed) and the mixing \"lam\"\n"
"(cutmix: \"box\"); --val FILE of {image, label} frames gives val_loss (plain\n"
"cross-entropy), val_acc1, val_acc5. The official recipe: --base-lr 1.25e-3\n"
"--warmup-lr 2.5e-7 --min-lr 2.5e-7 --official-sched, warmup 20 of 100 epochs.\n"
"      --smoothing S      label smoothing (default 0.1)\n"
"      --mixup A          mixup Beta alpha, 0 off (default 0.8)\n"
"      --cutmix A         cutmix Beta alpha, 0 off (default 1.0)\n"
"      --mix-prob P       probability of mixing a batch (default 1.0)\n"
"      --switch-prob P    probability of cutmix when both are on (default 0.5)\n"
"      --layer-decay D    layer-wise lr decay (default: 0.65 ViT, 0.8 Swin)\n";

enum { F_SMOOTHING = 512, F_MIXUP, F_CUTMIX, F_MIX_PROB, F_SWITCH_PROB, F_LAYER_DECAY };

static const struct option ft_opts[] = {
	{"smoothing", required_argument, NULL, F_SMOOTHING},
	{"mixup", required_argument, NULL, F_MIXUP},
	{"cutmix", required_argument, NULL, F_CUTMIX},
	{"mix-prob", required_argument, NULL, F_MIX_PROB},
	{"switch-prob", required_argument, NULL, F_SWITCH_PROB},
	{"layer-decay", required_argument, NULL, F_LAYER_DECAY},
	{0},
};

const struct option *
ft_options(const struct option *base)
{
	static struct option *all;
	size_t nb = 0, nf = sizeof ft_opts / sizeof ft_opts[0];

	while (base[nb].name)
		nb++;
	free(all);
	if (!(all = malloc((nb + nf) * sizeof *all)))
		die("out of memory");
	memcpy(all, base, nb * sizeof *all);
	memcpy(all + nb, ft_opts, nf * sizeof *all);
	return all;
}

void
ft_flag(int c, const char *arg, struct mim_trainopt *o, struct mim_run *r)
{
	struct mim_ftopt *f = &o->ft;

	switch (c) {
	case F_SMOOTHING: f->smoothing = cli_double("--smoothing", arg, 0, 1); break;
	case F_MIXUP: f->mixup = cli_double("--mixup", arg, 0, 1e6); break;
	case F_CUTMIX: f->cutmix = cli_double("--cutmix", arg, 0, 1e6); break;
	case F_MIX_PROB: f->mix_prob = cli_double("--mix-prob", arg, 0, 1); break;
	case F_SWITCH_PROB: f->switch_prob = cli_double("--switch-prob", arg, 0, 1); break;
	case F_LAYER_DECAY: f->layer_decay = cli_double("--layer-decay", arg, 1e-9, 1); break;
	default: usage_error("unknown option");
	}
	r->ft_given = 1;
}
