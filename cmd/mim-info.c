/* mim-info -- describe the frames of mim streams and safetensors files:
 * tensor names, dtypes, shapes, element counts, value statistics, metadata;
 * or, with --system, the machine the products run on. */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
"usage: mim-info [--json] [FILE...]\n"
"       mim-info --system [--json]\n"
"Describe every frame of each mim stream or .safetensors FILE (stdin when\n"
"none, or '-'): tensor names, dtypes, shapes, element counts, min, max,\n"
"mean and standard deviation, and the metadata.\n"
"  -j, --json   one JSON object per frame, one per line\n"
"  -s, --system the machine instead: CPU, its instruction sets, OpenBLAS's\n"
"               kernels (and whether mim corrected the library's choice),\n"
"               threads, oneDNN and whether bf16 products can run, which\n"
"               library runs the float products, and whether a Linear's\n"
"               bf16 products run on AMX tiles (MIM_GEMM_AMX=0: oneDNN)\n"
"  -h, --help   this help\n";

struct stats {
	double min, max, mean, std;
	int64_t n, nonfinite;
};

static void
stats(const struct mim_tensor *t, struct stats *s)
{
	int64_t n = mim_tensor_numel(t);
	double sum = 0, sq = 0;

	memset(s, 0, sizeof *s);
	s->min = INFINITY;
	s->max = -INFINITY;
	for (int64_t i = 0; i < n; i++) {
		double v = mim_tensor_get(t, i);
		if (!isfinite(v)) {
			s->nonfinite++;
			continue;
		}
		s->min = v < s->min ? v : s->min;
		s->max = v > s->max ? v : s->max;
		sum += v;
		sq += v * v;
		s->n++;
	}
	if (s->n) {
		s->mean = sum / (double)s->n;
		double var = sq / (double)s->n - s->mean * s->mean;
		s->std = var > 0 ? sqrt(var) : 0;
	}
}

static void
print_text(const char *input, long k, const struct mim_frame *f)
{
	int w = 4;

	printf("%s: frame %ld: %d tensor%s\n", input, k, f->n, f->n == 1 ? "" : "s");
	for (int i = 0; i < f->nmeta; i++)
		printf("  meta %s = %s\n", f->mkey[i], f->mval[i]);
	for (int i = 0; i < f->n; i++)
		if ((int)strlen(f->t[i].name) > w)
			w = (int)strlen(f->t[i].name);
	for (int i = 0; i < f->n; i++) {
		const struct mim_tensor *t = &f->t[i];
		char sh[160];
		struct stats s;
		stats(t, &s);
		printf("  %-*s %-4s %-18s %10lld", w, t->name, mim_dtype_name(t->dtype),
		    mim_shape_str(sh, sizeof sh, t->ndim, t->shape),
		    (long long)mim_tensor_numel(t));
		if (s.n)
			printf("  min %-11.5g max %-11.5g mean %-11.5g std %.5g",
			    s.min, s.max, s.mean, s.std);
		if (s.nonfinite)
			printf("  non-finite %lld", (long long)s.nonfinite);
		putchar('\n');
	}
}

static void
print_json(const char *input, long k, const struct mim_frame *f)
{
	json_t *o = json_object(), *meta = json_object(), *ts = json_array();

	json_object_set_new(o, "input", json_string(input));
	json_object_set_new(o, "frame", json_integer(k));
	for (int i = 0; i < f->nmeta; i++)
		json_object_set_new(meta, f->mkey[i], json_string(f->mval[i]));
	json_object_set_new(o, "metadata", meta);
	for (int i = 0; i < f->n; i++) {
		const struct mim_tensor *t = &f->t[i];
		json_t *e = json_object(), *sh = json_array();
		struct stats s;
		stats(t, &s);
		for (int d = 0; d < t->ndim; d++)
			json_array_append_new(sh, json_integer(t->shape[d]));
		json_object_set_new(e, "name", json_string(t->name));
		json_object_set_new(e, "dtype", json_string(mim_dtype_name(t->dtype)));
		json_object_set_new(e, "shape", sh);
		json_object_set_new(e, "numel", json_integer(mim_tensor_numel(t)));
		if (s.n) {
			json_object_set_new(e, "min", json_real(s.min));
			json_object_set_new(e, "max", json_real(s.max));
			json_object_set_new(e, "mean", json_real(s.mean));
			json_object_set_new(e, "std", json_real(s.std));
		}
		json_object_set_new(e, "nonfinite", json_integer(s.nonfinite));
		json_array_append_new(ts, e);
	}
	json_object_set_new(o, "tensors", ts);
	char *js = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!js)
		die("out of memory");
	puts(js);
	free(js);
	json_decref(o);
}

/* --system: the machine, as mim_system_json describes it */
static void
print_system(int json)
{
	const struct mim_cpu *c = mim_cpu();
	const struct mim_blas *b = mim_blas();
	char *js = mim_system_json();
	json_t *o = js ? json_loads(js, 0, NULL) : NULL, *dn = json_object_get(o, "onednn");

	if (!o)
		die("out of memory");
	if (json) {
		puts(js);
	} else {
		printf("cpu: %s (family %d, model %d, stepping %d)\n", c->name, c->family, c->model,
		    c->stepping);
		printf("flags:%s%s%s%s%s\n", c->fma ? " fma" : "", c->avx2 ? " avx2" : "",
		    c->avx512f ? " avx512f" : "", c->avx512_bf16 ? " avx512_bf16" : "",
		    c->amx_bf16 ? " amx_bf16" : "");
		printf("openblas: core %s", b->core);
		if (b->corrected)
			printf(" (corrected by mim: the library chose %s)", b->chosen);
		else if (b->user)
			printf(" (OPENBLAS_CORETYPE)");
		printf("; %s\n", b->config);
		printf("threads: %d\n", mim_threads());
		printf("onednn: %s, isa %s, bf16 products %s\n",
		    json_string_value(json_object_get(dn, "version")),
		    json_string_value(json_object_get(dn, "isa")),
		    json_is_true(json_object_get(dn, "bf16")) ? "yes" : "no");
		printf("float products: %s sgemm\n", mim_sgemm_name(mim_gemm_sgemm()));
		printf("bf16 linear products: %s\n", mim_gemm_amx() ? "amx tiles (lib/amx.c)" :
		    "onednn matmul");
	}
	json_decref(o);
	free(js);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"system", no_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int json = 0, sys = 0, c, status = 0;

	cli_init(argc, argv);
	while ((c = cli_getopt(argc, argv, "jsh", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = 1; break;
		case 's': sys = 1; break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: usage_error("unknown option");
		}
	}
	if (sys) {
		if (optind < argc)
			usage_error("--system takes no FILE");
		print_system(json);
		cli_exit(0);
	}
	char *stdin_only[] = {"-", NULL};
	char **files = optind < argc ? argv + optind : stdin_only;
	for (; *files; files++) {
		struct mim_reader *r = mim_reader_open(*files);
		struct mim_frame *f;
		int rc;
		if (!r) {
			warn("%s", mim_errmsg());
			status = 1;
			continue;
		}
		while ((rc = mim_read_frame(r, &f)) > 0) {
			long k = mim_reader_count(r) - 1;
			if (json)
				print_json(mim_reader_name(r), k, f);
			else
				print_text(mim_reader_name(r), k, f);
			mim_frame_free(f);
			if (fflush(stdout) == EOF)
				cli_exit(1);
		}
		if (rc < 0) {
			warn("%s", mim_errmsg());
			status = 1;
		}
		mim_reader_close(r);
	}
	cli_exit(status);
}
