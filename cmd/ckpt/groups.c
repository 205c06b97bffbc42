/* groups.c -- mim-ckpt groups: the optimizer's view of every parameter,
 * the official param groups (optimizer.py): its weight decay and, for a
 * classifier, the layer-wise lr decay scale. */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ckpt/ckpt.h"

static void
groups_usage(void)
{
	printf("usage: mim-ckpt groups [--layer-decay D] [--weight-decay W] FILE\n"
	    "       mim-ckpt groups [options] --preset NAME [--classes K]\n"
	    "Print one JSON line per parameter of checkpoint FILE, in state-dict order:\n"
	    "{\"name\":..,\"layer_id\":..,\"weight_decay\":..,\"lr_scale\":..}, the official\n"
	    "param groups of optimizer.py. A pretraining checkpoint: the two groups of\n"
	    "get_pretrain_param_groups, lr_scale 1. A classifier: layer ids of\n"
	    "get_vit_layer / get_swin_layer and lr_scale = D^(L+1-id), L the number\n"
	    "of blocks. --preset: the model of a preset without a file (with\n"
	    "--classes, its classifier).\n"
	    "  -l, --layer-decay D   the layer decay (default: the checkpoint's run,\n"
	    "                        else the official 0.65 for ViT, 0.8 for Swin)\n"
	    "  -w, --weight-decay W  the weight decay of the decay group (default:\n"
	    "                        the checkpoint's run, else 0.05)\n"
	    "  -p, --preset NAME     a preset's model instead of FILE\n"
	    "  -K, --classes K       with --preset: its classifier of K classes\n"
	    "  -h, --help            this help\n");
}

/* key of the JSON object in metadata entry meta of f, or dflt */
static double
meta_num(const struct mim_frame *f, const char *meta, const char *key, double dflt)
{
	const char *s = f ? mim_meta_get(f, meta) : NULL;
	json_t *o = s ? json_loads(s, 0, NULL) : NULL;
	json_t *v = o ? json_object_get(o, key) : NULL;
	double d = json_is_number(v) ? json_number_value(v) : dflt;
	json_decref(o);
	return d;
}

/* the shortest decimal that reads back as v (Python's repr) */
static const char *
shortest(char *buf, size_t n, double v)
{
	for (int p = 1; p <= 17; p++) {
		snprintf(buf, n, "%.*g", p, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	if (!strpbrk(buf, ".eE"))
		strncat(buf, ".0", n - strlen(buf) - 1);
	return buf;
}

int
ckpt_groups(int argc, char **argv)
{
	static const struct option opts[] = {
		{"layer-decay", required_argument, NULL, 'l'},
		{"weight-decay", required_argument, NULL, 'w'},
		{"preset", required_argument, NULL, 'p'},
		{"classes", required_argument, NULL, 'K'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	double ld = -1, wd = -1;
	const char *preset = NULL;
	int c, classes = 0;

	while ((c = cli_getopt(argc, argv, "l:w:p:K:h", opts, NULL)) != -1) {
		switch (c) {
		case 'l': ld = cli_double("--layer-decay", optarg, 1e-9, 1); break;
		case 'w': wd = cli_double("--weight-decay", optarg, 0, 1e6); break;
		case 'p': preset = optarg; break;
		case 'K': classes = (int)cli_int("--classes", optarg, 1, 1 << 20); break;
		case 'h': groups_usage(); return 0;
		default: usage_error("groups: unknown option");
		}
	}
	if (optind != argc - !preset)
		usage_error("groups: want exactly one FILE, or --preset NAME");
	if (classes && !preset)
		usage_error("groups: --classes goes with --preset");
	const char *in = preset ? preset : argv[optind];
	struct mim_frame *f = preset ? NULL : mim_load(in);
	struct mim_model *m = f ? mim_model_from_frame(f) : NULL;
	if (preset) {
		struct mim_config cfg;
		struct mim_cls_opt co = {.num_classes = classes, .drop_path_rate = -1,
		    .init_scale = NAN};
		if (mim_config_preset(&cfg, preset) < 0)
			usage_error("--preset: %s", mim_errmsg());
		if (classes && mim_config_classifier(&cfg, &co) < 0)
			die("%s: %s", in, mim_errmsg());
		m = mim_model_new(&cfg);
	}
	if (!m)
		die("%s: %s", in, mim_errmsg());
	if (ld < 0)
		ld = meta_num(f, "mim.train.finetune", "layer_decay", mim_layer_decay_default(&m->cfg));
	if (wd < 0)
		wd = meta_num(f, "mim.train.optim", "weight_decay", 0.05);
	if (mim_model_layer_decay(m, ld) < 0)
		die("%s: %s", in, mim_errmsg());
	for (int i = 0; i < m->np; i++) {
		const struct mim_param *p = &m->p[i];
		json_t *nm = json_string(p->name);
		char *s = nm ? json_dumps(nm, JSON_ENCODE_ANY) : NULL;
		char a[32], b[32];
		if (!s)
			die("out of memory");
		printf("{\"name\":%s,\"layer_id\":%d,\"weight_decay\":%s,\"lr_scale\":%s}\n", s,
		    p->layer_id, shortest(a, sizeof a, p->decay ? wd : 0.0),
		    shortest(b, sizeof b, p->lr_scale));
		free(s);
		json_decref(nm);
	}
	mim_model_free(m);
	mim_frame_free(f);
	return 0;
}
