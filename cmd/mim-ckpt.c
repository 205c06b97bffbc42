/* mim-ckpt -- create and inspect model checkpoints (safetensors with the
 * official SimMIM state_dict names and __metadata__["mim.config"]).
 *   mim-ckpt init [--preset NAME] [--KEY VALUE...] [--seed N] [-o FILE]
 *   mim-ckpt info [--json] FILE
 * Subcommands are rows of subcmds[] below; see cmd/ckpt/ckpt.h. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ckpt/ckpt.h"

struct subcmd {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

/* One row per subcommand. */
static const struct subcmd subcmds[] = {
	{"init", ckpt_init, "create a checkpoint with the official initialisation"},
	{"info", ckpt_info, "print a checkpoint's config and parameter counts"},
	{"import", ckpt_import, "read a PyTorch checkpoint (.pth, no Python needed)"},
	{"export", ckpt_export, "strip training state; the encoder for fine-tuning"},
	{"diff", ckpt_diff, "compare two checkpoints tensor by tensor"},
	{"classifier", ckpt_classifier, "a classifier (fine-tuning model) from a pretraining one"},
	{"groups", ckpt_groups, "the optimizer's param groups: weight decay, layer lr scale"},
};

static void
usage(FILE *f)
{
	fputs("usage: mim-ckpt COMMAND [ARGS]\n"
	    "Create, inspect and convert mim model checkpoints. Commands:\n", f);
	for (size_t i = 0; i < sizeof subcmds / sizeof subcmds[0]; i++)
		fprintf(f, "  %-10s %s\n", subcmds[i].name, subcmds[i].summary);
	fputs("'mim-ckpt COMMAND --help' describes one command.\n", f);
}

int
main(int argc, char **argv)
{
	cli_init(argc, argv);
	if (argc < 2)
		usage_error("no command given");
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof subcmds / sizeof subcmds[0]; i++)
		if (strcmp(argv[1], subcmds[i].name) == 0)
			cli_exit(subcmds[i].run(argc - 1, argv + 1));
	usage_error("unknown command '%s'", argv[1]);
}

/* ---- init ------------------------------------------------------------------ */

static void
init_usage(void)
{
	printf("usage: mim-ckpt init [--preset NAME] [--KEY VALUE...] [--config JSON]\n"
	    "                     [--seed N] [-o FILE]\n"
	    "Write a checkpoint with the official SimMIM initialisation to FILE\n"
	    "(stdout if none). The model is the preset's (default vit-base), then\n"
	    "--config's keys, then each --KEY flag (any key of mim.config with '_'\n"
	    "written '-': --img-size 192, --depths 2,2,6,2, --qkv-bias false,\n"
	    "--init-values null, --model swin...).\n"
	    "  -p, --preset NAME  one of:");
	for (int i = 0; mim_config_preset_name(i); i++)
		printf(" %s", mim_config_preset_name(i));
	printf("\n"
	    "  -c, --config JSON  a JSON object of config keys\n"
	    "  -k, --clusters FILE  the colour centres of --target clusters: 'centres'\n"
	    "                     F32 [target_clusters,3], 0-255 RGB (mim-cluster(1))\n"
	    "  -s, --seed N       seed of the initialisation (default 0)\n"
	    "  -o, --output FILE  write here (atomically) instead of stdout\n"
	    "  -h, --help         this help\n");
}

/* A flag value as JSON: a JSON literal (number, true, false, null, list),
 * "a,b,c" as a list, or a bare word as a string. */
static json_t *
flag_value(const char *flag, const char *s)
{
	json_t *v = json_loads(s, JSON_DECODE_ANY, NULL);

	if (!v && strchr(s, ',')) {
		char *buf = malloc(strlen(s) + 3);
		if (!buf)
			die("out of memory");
		sprintf(buf, "[%s]", s);
		v = json_loads(buf, 0, NULL);
		free(buf);
	}
	if (!v && strspn(s, "abcdefghijklmnopqrstuvwxyz-_") == strlen(s) && *s)
		v = json_string(s);
	if (!v)
		usage_error("--%s: '%s' is not a value", flag, s);
	return v;
}

/* The config of init: the preset's (or the defaults of --model), then
 * --config's keys, then the --KEY flags (over, consumed). Exits 2 on a
 * usage error. */
static void
init_config(struct mim_config *cfg, const char *preset, const char *config, json_t *over)
{
	/* base: the preset, or the defaults of --model */
	json_t *mv = json_object_get(over, "model");
	if (preset) {
		if (mim_config_preset(cfg, preset) < 0)
			usage_error("--preset: %s", mim_errmsg());
		if (mv && json_is_string(mv) &&
		    strcmp(json_string_value(mv), mim_config_arch_name(cfg)) != 0)
			usage_error("--model %s contradicts --preset %s", json_string_value(mv), preset);
	} else {
		/* the defaults of --model (any the library has; none: vit) */
		json_t *d = json_object();
		if (mv)
			json_object_set(d, "model", mv);
		char *dj = d ? json_dumps(d, JSON_COMPACT) : NULL;
		json_decref(d);
		if (!dj)
			die("out of memory");
		if (mim_config_parse(cfg, dj) < 0)
			usage_error("init: %s", mim_errmsg());
		free(dj);
	}
	char *base = mim_config_json(cfg);
	json_t *o = base ? json_loads(base, 0, NULL) : NULL;
	free(base);
	if (!o)
		die("out of memory");
	if (config) {
		json_error_t e;
		json_t *co = json_loads(config, 0, &e);
		if (!co || !json_is_object(co))
			usage_error("--config: not a JSON object%s%s", co ? "" : ": ", co ? "" : e.text);
		json_t *cm = json_object_get(co, "model");
		if (cm && !json_equal(cm, json_object_get(o, "model")))
			usage_error("--config: \"model\" contradicts the preset or --model");
		json_object_update(o, co);
		json_decref(co);
	}
	json_object_update(o, over);
	json_decref(over);
	char *js = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!js || mim_config_parse(cfg, js) < 0)
		usage_error("init: %s", mim_errmsg());
	free(js);

}

int
ckpt_init(int argc, char **argv)
{
	/* a flag for every config key of every model (--img-size etc.; the
	 * parser decides which belong to which model) */
	enum { MAXK = 64 };
	static struct option opts[MAXK + 7];
	static char flagname[MAXK][32];
	const char *config_keys[MAXK];
	const char *preset = NULL, *config = NULL, *out = NULL, *clusters = NULL;
	uint64_t seed = 0;
	json_t *over = json_object();
	int c, idx, NK = 0;

	while (NK < MAXK && (config_keys[NK] = mim_config_key_name(NK)))
		NK++;
	for (int i = 0; i < NK; i++) {
		snprintf(flagname[i], sizeof flagname[i], "%s", config_keys[i]);
		for (char *p = flagname[i]; *p; p++)
			if (*p == '_')
				*p = '-';
		opts[i] = (struct option){flagname[i], required_argument, NULL, 1000 + i};
	}
	opts[NK] = (struct option){"preset", required_argument, NULL, 'p'};
	opts[NK + 1] = (struct option){"config", required_argument, NULL, 'c'};
	opts[NK + 2] = (struct option){"seed", required_argument, NULL, 's'};
	opts[NK + 3] = (struct option){"output", required_argument, NULL, 'o'};
	opts[NK + 4] = (struct option){"help", no_argument, NULL, 'h'};
	opts[NK + 5] = (struct option){"clusters", required_argument, NULL, 'k'};
	opts[NK + 6] = (struct option){0};
	while ((c = cli_getopt(argc, argv, "p:c:k:s:o:h", opts, &idx)) != -1) {
		switch (c) {
		case 'k': clusters = optarg; break;
		case 'p': preset = optarg; break;
		case 'c': config = optarg; break;
		case 's': seed = (uint64_t)cli_int("--seed", optarg, 0, INT64_MAX); break;
		case 'o': out = optarg; break;
		case 'h': init_usage(); json_decref(over); return 0;
		default:
			if (c >= 1000 && c < 1000 + NK) {
				json_object_set_new(over, config_keys[c - 1000],
				    flag_value(flagname[c - 1000], optarg));
				break;
			}
			usage_error("init: unknown option");
		}
	}
	if (optind < argc)
		usage_error("init: unexpected argument '%s'", argv[optind]);

	struct mim_config cfg;
	init_config(&cfg, preset, config, over);
	if (!out)
		cli_stdout_not_tty();
	struct mim_model *m = mim_model_new(&cfg);
	if (!m || mim_model_init(m, seed) < 0)
		die("init: %s", mim_errmsg());
	if (m->centres && !clusters)
		die("init: target clusters needs --clusters FILE (mim-cluster(1) fits one)");
	if (clusters) {
		struct mim_frame *cf = mim_load(clusters);
		const struct mim_tensor *ct = cf ? mim_frame_get(cf, "centres") : NULL;
		const char *why = cf && !ct ? "no tensor 'centres'" : NULL;
		int bad = !ct || mim_model_set_centres(m, ct, "tensor 'centres'") < 0;
		mim_frame_free(cf);
		if (bad) {
			mim_model_free(m);	/* nothing left for LeakSanitizer */
			die("%s: %s", clusters, why ? why : mim_errmsg());
		}
	}
	struct mim_frame *f = mim_model_to_frame(m);
	if (!f)
		die("init: %s", mim_errmsg());
	char sd[32];
	snprintf(sd, sizeof sd, "%llu", (unsigned long long)seed);
	if (mim_meta_set(f, "mim.init_seed", sd) < 0)
		die("init: %s", mim_errmsg());
	if (out) {
		if (mim_save(out, f) < 0)
			die("%s: %s", out, mim_errmsg());
	} else {
		cli_put(f);
	}
	mim_frame_free(f);
	mim_model_free(m);
	return 0;
}

/* ---- info ------------------------------------------------------------------ */

/* The module a parameter belongs to, for the per-module counts: the name
 * up to its first numbered component ("encoder.blocks.3",
 * "encoder.layers.0", "decoder.0"), else its first two components. */
static void
module_of(const char *name, char *buf, size_t n)
{
	const char *p = name, *end = name + strlen(name);
	int comp = 0;

	for (const char *dot; (dot = strchr(p, '.')) != NULL; p = dot + 1) {
		size_t len = (size_t)(dot - p);
		comp++;
		if ((len && strspn(p, "0123456789") == len) || comp == 2) {
			/* "encoder.blocks" + ".3": take the number too */
			const char *q = dot + 1, *d2 = strchr(q, '.');
			if (comp == 2 && d2 && d2 > q && strspn(q, "0123456789") == (size_t)(d2 - q))
				dot = d2;
			end = dot;
			break;
		}
	}
	size_t k = (size_t)(end - name) < n - 1 ? (size_t)(end - name) : n - 1;
	memcpy(buf, name, k);
	buf[k] = 0;
}

/* 86256720 -> "86,256,720" */
static const char *
commas(unsigned long long v, char *buf)
{
	char tmp[32];
	int n = snprintf(tmp, sizeof tmp, "%llu", v), k = 0;

	for (int i = 0; i < n; i++) {
		if (i && (n - i) % 3 == 0)
			buf[k++] = ',';
		buf[k++] = tmp[i];
	}
	buf[k] = 0;
	return buf;
}

static void
info_usage(void)
{
	printf("usage: mim-ckpt info [--json] FILE\n"
	    "Load checkpoint FILE (checking its weights against its mim.config)\n"
	    "and print the config, the parameters per module and the total.\n"
	    "  -j, --json   one JSON object instead of text\n"
	    "  -h, --help   this help\n");
}

int
ckpt_info(int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int json = 0, c;

	while ((c = cli_getopt(argc, argv, "jh", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = 1; break;
		case 'h': info_usage(); return 0;
		default: usage_error("info: unknown option");
		}
	}
	if (optind != argc - 1)
		usage_error("info: want exactly one FILE");
	const char *path = argv[optind];
	struct mim_frame *f = mim_load(path);
	if (!f)
		die("%s", mim_errmsg());
	struct mim_model *m = mim_model_from_frame(f);
	if (!m)
		die("%s: %s", path, mim_errmsg());

	/* modules in order of first appearance */
	char (*mod)[128] = calloc((size_t)m->np, sizeof *mod);
	unsigned long long *cnt = calloc((size_t)m->np, sizeof *cnt);
	unsigned long long enc = 0, dec = 0, total = 0;
	int nmod = 0;
	if (!mod || !cnt)
		die("out of memory");
	for (int i = 0; i < m->np; i++) {
		char name[128];
		module_of(m->p[i].name, name, sizeof name);
		int k = 0;
		while (k < nmod && strcmp(mod[k], name) != 0)
			k++;
		if (k == nmod)
			strcpy(mod[nmod++], name);
		cnt[k] += m->p[i].numel;
		total += m->p[i].numel;
		if (i < m->head_p0)	/* a classifier's names have no "encoder." */
			enc += m->p[i].numel;
		else
			dec += m->p[i].numel;
	}
	int nopt = 0;
	for (int i = 0; i < f->n; i++)
		nopt += strncmp(f->t[i].name, "opt.", 4) == 0;
	char *cfg = mim_config_json(&m->cfg);
	if (!cfg)
		die("out of memory");
	if (json) {
		json_t *o = json_object(), *mods = json_object(), *train = json_object();
		json_object_set_new(o, "file", json_string(path));
		json_object_set_new(o, "config", json_loads(cfg, 0, NULL));
		for (int k = 0; k < nmod; k++)
			json_object_set_new(mods, mod[k], json_integer((json_int_t)cnt[k]));
		json_object_set_new(o, "modules", mods);
		json_object_set_new(o, "tensors", json_integer(m->np));
		json_object_set_new(o, "encoder", json_integer((json_int_t)enc));
		json_object_set_new(o, "decoder", json_integer((json_int_t)dec));
		json_object_set_new(o, "total", json_integer((json_int_t)total));
		for (int i = 0; i < f->nmeta; i++)
			if (strncmp(f->mkey[i], "mim.train.", 10) == 0)
				json_object_set_new(train, f->mkey[i], json_string(f->mval[i]));
		json_object_set_new(train, "opt_tensors", json_integer(nopt));
		json_object_set_new(o, "training", train);
		char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (!s)
			die("out of memory");
		puts(s);
		free(s);
		json_decref(o);
	} else {
		char b1[32];
		printf("%s\n", path);
		printf("config %s\n", cfg);
		int w = 8;
		for (int k = 0; k < nmod; k++)
			if ((int)strlen(mod[k]) > w)
				w = (int)strlen(mod[k]);
		for (int k = 0; k < nmod; k++)
			printf("  %-*s %14s\n", w, mod[k], commas(cnt[k], b1));
		printf("encoder %s parameters\n", commas(enc, b1));
		printf("%s %s parameters\n", mim_is_classifier(&m->cfg) ? "head" : "decoder",
		    commas(dec, b1));
		printf("total %s parameters in %d tensors (%.1f MB as F32)\n",
		    commas(total, b1), m->np, (double)total * 4 / 1e6);
		if (nopt)
			printf("training state: %d opt.* tensors\n", nopt);
		for (int i = 0; i < f->nmeta; i++)
			if (strncmp(f->mkey[i], "mim.train.", 10) == 0)
				printf("  %s = %s\n", f->mkey[i], f->mval[i]);
	}
	free(cfg);
	free(mod);
	free(cnt);
	mim_model_free(m);
	mim_frame_free(f);
	return 0;
}
