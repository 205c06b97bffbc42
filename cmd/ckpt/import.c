/* import.c -- mim-ckpt import: a PyTorch checkpoint (torch.save, zip or
 * legacy; or a .safetensors state dict) to a mim checkpoint, without
 * Python. The state dict keeps its names and dtypes; mim.config comes
 * from --preset, --config or the shapes, and the weights are checked
 * against it. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ckpt/ckpt.h"

static void
import_usage(void)
{
	printf("usage: mim-ckpt import [--preset NAME] [--config JSON] [--raw] [-q]\n"
	    "                       [-o FILE] CHECKPOINT\n"
	    "Read the state dict of a PyTorch checkpoint (torch.save, zip or legacy\n"
	    "format: the dict under 'model', else 'state_dict', else the top level;\n"
	    "or a .safetensors state dict; '-' reads stdin) without running Python,\n"
	    "and write it as a mim checkpoint to FILE (stdout if none): the tensors\n"
	    "under their names and dtypes, and mim.config, checked against them.\n"
	    "  -p, --preset NAME  the model of this preset (see mim-ckpt init --help)\n"
	    "  -c, --config JSON  config keys: over the preset's, or, without a preset,\n"
	    "                     over what the shapes tell (img_size, layer_norm_eps...)\n"
	    "  -r, --raw          write the state dict as it is: no mim.config, no check\n"
	    "  -q, --quiet        do not report what was found and inferred\n"
	    "  -o, --output FILE  write here (atomically) instead of stdout\n"
	    "  -h, --help         this help\n");
}

static const char *const fmtname[] = {
	[MIM_FMT_SAFETENSORS] = "safetensors", [MIM_FMT_ZIP] = "zip torch.save",
	[MIM_FMT_LEGACY] = "legacy torch.save",
};

/* The config of --preset overlaid with the keys of --config. */
static void
preset_config(struct mim_config *cfg, const char *preset, const char *config)
{
	if (mim_config_preset(cfg, preset) < 0)
		usage_error("--preset: %s", mim_errmsg());
	if (!config)
		return;
	char *base = mim_config_json(cfg);
	json_t *o = base ? json_loads(base, 0, NULL) : NULL;
	json_error_t e;
	json_t *co = json_loads(config, 0, &e);
	free(base);
	if (!o)
		die("out of memory");
	if (!co || !json_is_object(co))
		usage_error("--config: not a JSON object%s%s", co ? "" : ": ", co ? "" : e.text);
	json_t *cm = json_object_get(co, "model");
	if (cm && !json_equal(cm, json_object_get(o, "model")))
		usage_error("--config: \"model\" contradicts --preset %s", preset);
	json_object_update(o, co);
	char *js = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	json_decref(co);
	if (!js || mim_config_parse(cfg, js) < 0)
		usage_error("--config: %s", mim_errmsg());
	free(js);
}

int
ckpt_import(int argc, char **argv)
{
	static const struct option opts[] = {
		{"preset", required_argument, NULL, 'p'},
		{"config", required_argument, NULL, 'c'},
		{"raw", no_argument, NULL, 'r'},
		{"quiet", no_argument, NULL, 'q'},
		{"output", required_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *preset = NULL, *config = NULL, *out = NULL;
	int raw = 0, quiet = 0, c;

	while ((c = cli_getopt(argc, argv, "p:c:rqo:h", opts, NULL)) != -1) {
		switch (c) {
		case 'p': preset = optarg; break;
		case 'c': config = optarg; break;
		case 'r': raw = 1; break;
		case 'q': quiet = 1; break;
		case 'o': out = optarg; break;
		case 'h': import_usage(); return 0;
		default: usage_error("import: unknown option");
		}
	}
	if (optind != argc - 1)
		usage_error("import: want exactly one CHECKPOINT");
	if (raw && (preset || config))
		usage_error("import: --raw takes no --preset or --config");
	const char *in = argv[optind];
	struct mim_config cfg;
	if (preset)
		preset_config(&cfg, preset, config);
	if (!out)
		cli_stdout_not_tty();

	struct mim_ckpt_info info;
	struct mim_frame *sd = mim_ckpt_load(in, &info);
	if (!sd)
		die("%s", mim_errmsg());
	if (!quiet) {
		int top = strcmp(info.where, "top level") == 0;
		if (info.format != MIM_FMT_SAFETENSORS && !top)
			warn("%s: %s file of %s", in, fmtname[info.format], info.summary);
		warn("%s: state dict %s%s%s: %d tensors%s", in, top ? "at the " : "'",
		    info.where, top ? "" : "'", info.ntensors,
		    info.nskipped ? " (other entries skipped)" : "");
	}
	if (!raw) {
		char note[1536], how[1600];
		const char *have = mim_meta_get(sd, "mim.config");
		if (preset) {
			snprintf(how, sizeof how, "from preset %s%s", preset, config ? " and --config" : "");
		} else if (have && !config) {
			if (mim_config_parse(&cfg, have) < 0)
				die("%s: mim.config: %s", in, mim_errmsg());
			snprintf(how, sizeof how, "from the file's own mim.config");
		} else if (mim_ckpt_infer(sd, config, &cfg, note, sizeof note) < 0) {
			die("%s: %s", in, mim_errmsg());
		} else {
			snprintf(how, sizeof how, "inferred from the shapes: %s", note);
		}
		struct mim_model *m = mim_model_new(&cfg);
		if (!m)
			die("%s", mim_errmsg());
		int bad = mim_model_load(m, sd, 1) < 0;
		mim_model_free(m);
		if (bad) {
			mim_frame_free(sd);
			die("%s: the weights do not match the config %s: %s (%s--raw writes them unchecked)",
			    in, how, mim_errmsg(), strstr(mim_errmsg(), "'decoder.") ? "a decoder that "
			    "predicts another target or resolution cannot be told from its shapes: give "
			    "\"target\", \"target_bins\" and \"pred_div\" with --config; " : "");
		}
		char *js = mim_config_json(&cfg);
		if (!js || mim_meta_set(sd, "mim.config", js) < 0)
			die("%s", mim_errmsg());
		if (!quiet)
			warn("%s: config %s", in, how);
		free(js);
	}
	if (out) {
		if (mim_save(out, sd) < 0)
			die("%s: %s", out, mim_errmsg());
	} else {
		cli_put(sd);
	}
	mim_frame_free(sd);
	return 0;
}
