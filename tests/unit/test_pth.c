/* test_pth.c -- torch.save readers on files written by PyTorch
 * (tests/ref/pth/, made by tests/ref/pth_ref.py fixtures): zip, legacy,
 * protocol 4, a bare state dict; every dtype, strided views, storage
 * offsets, shared storages, stride 0, scalars and empty tensors; the
 * state dict found under "model" next to an optimizer, a yacs config, an
 * argparse Namespace and numpy scalars. Then truncation at every byte and
 * random mutations (no crash), and mim_ckpt_diff. */
#include <stdlib.h>
#include <string.h>

#include "mim.h"
#include "mim/ckpt.h"
#include "tap.h"

static char dir[4096];

static const char *
path(const char *name)
{
	static char buf[8192];
	snprintf(buf, sizeof buf, "%s/%s", dir, name);
	return buf;
}

static unsigned char *
readfile(const char *p, size_t *n)
{
	FILE *f = fopen(p, "rb");
	unsigned char *b = NULL;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	fseek(f, 0, SEEK_SET);
	b = malloc((size_t)len);
	if (b && fread(b, 1, (size_t)len, f) != (size_t)len) {
		free(b);
		b = NULL;
	}
	fclose(f);
	*n = (size_t)len;
	return b;
}

/* Every tensor of want in got with the same dtype, shape and bytes, and
 * nothing else. */
static int
same_state(const struct mim_frame *got, const struct mim_frame *want, char *why, size_t n)
{
	if (got->n != want->n) {
		snprintf(why, n, "%d tensors, want %d", got->n, want->n);
		return 0;
	}
	for (int i = 0; i < want->n; i++) {
		const struct mim_tensor *w = &want->t[i], *g = mim_frame_get(got, w->name);
		if (!g || g->dtype != w->dtype || g->ndim != w->ndim || g->nbytes != w->nbytes ||
		    memcmp(g->shape, w->shape, (size_t)w->ndim * sizeof *w->shape) != 0 ||
		    (w->nbytes && memcmp(g->data, w->data, w->nbytes) != 0)) {
			snprintf(why, n, "tensor '%s' differs", w->name);
			return 0;
		}
	}
	return 1;
}

static void
fixtures(const struct mim_frame *want)
{
	static const struct {
		const char *file, *where;
		int format;
	} fx[] = {
		{"tiny.zip.pth", "model", MIM_FMT_ZIP},
		{"tiny.legacy.pth", "model", MIM_FMT_LEGACY},
		{"tiny.p4.pth", "model", MIM_FMT_ZIP},
		{"tiny.p4legacy.pth", "model", MIM_FMT_LEGACY},
		{"tiny.sd.pth", "top level", MIM_FMT_ZIP},
		{"tiny.safetensors", "top level", MIM_FMT_SAFETENSORS},
	};
	for (size_t i = 0; i < sizeof fx / sizeof *fx; i++) {
		struct mim_ckpt_info info;
		char why[256] = "";
		struct mim_frame *f = mim_ckpt_load(path(fx[i].file), &info);
		if (!f)
			printf("# %s\n", mim_errmsg());
		tap(f && same_state(f, want, why, sizeof why), "%s: the state dict as PyTorch wrote it %s",
		    fx[i].file, why);
		tap(f && (int)info.format == fx[i].format && strcmp(info.where, fx[i].where) == 0 &&
		    info.ntensors == want->n, "%s: format %d, found at the %s", fx[i].file,
		    (int)info.format, info.where);
		if (strcmp(fx[i].where, "model") == 0)
			tap(strstr(info.summary, "config (yacs.config.CfgNode object)") &&
			    strstr(info.summary, "args (argparse.Namespace object)") &&
			    strstr(info.summary, "epoch (int 7)") &&
			    strstr(info.summary, "optimizer (dict of 2)"),
			    "%s: the other entries are kept opaque: %s", fx[i].file, info.summary);
		mim_frame_free(f);
	}
}

/* truncate at every step-th byte: always an error, never a crash */
static void
truncations(const char *file, size_t step)
{
	size_t n;
	unsigned char *b = readfile(path(file), &n);
	int bad = 0, tried = 0;

	for (size_t k = 0; b && k < n; k += step) {
		unsigned char *c = malloc(k ? k : 1);
		memcpy(c, b, k);
		struct mim_frame *f = mim_pth_parse(c, k, "cut", NULL);
		if (f) {
			bad++;
			mim_frame_free(f);
		}
		tried++;
		free(c);
	}
	tap(b && bad == 0, "%s: all %d truncations are errors", file, tried);
	free(b);
}

static void
mutations(const char *file, int iters)
{
	size_t n;
	unsigned char *b = readfile(path(file), &n);
	int ok = 0;

	for (int it = 0; b && it < iters; it++) {
		unsigned char *c = malloc(n);
		memcpy(c, b, n);
		int k = 1 + (int)((frand() + 1) * 4);
		for (int j = 0; j < k; j++)
			c[(size_t)((frand() + 1) / 2 * (double)(n - 1))] = (unsigned char)((frand() + 1) * 128);
		struct mim_frame *f = mim_pth_parse(c, n, "mutant", NULL);
		if (f) {
			ok++;
			mim_frame_free(f);
		}
		free(c);
	}
	tap(b != NULL, "%s: %d mutants read without a crash (%d parsed)", file, iters, ok);
	free(b);
}

static void
diff(const struct mim_frame *want)
{
	struct mim_frame *a = mim_ckpt_load(path("tiny.zip.pth"), NULL);
	struct mim_diff_entry *e;
	int n = a ? mim_ckpt_diff(a, want, &e) : -1, bad = 0;

	for (int i = 0; i < n; i++)
		bad += e[i].status != 0 || e[i].maxabs != 0;
	tap(n == want->n && bad == 0, "diff: the import equals the state written directly");
	free(e);

	/* change one value, drop one tensor, add one, reshape one */
	float *w = mim_frame_get(a, "w")->data;
	w[5] += 0.5f;
	mim_frame_remove(a, "idx");
	int64_t sh[1] = {2};
	mim_frame_add(a, "extra", MIM_F32, 1, sh, NULL);
	struct mim_tensor *t = mim_frame_get(a, "param");
	t->shape[0] = 4;
	t->shape[1] = 1;
	n = mim_ckpt_diff(a, want, &e);
	int seen = 0;
	for (int i = 0; i < n; i++) {
		if (strcmp(e[i].name, "w") == 0 && e[i].status == 0 && e[i].maxabs > 0.49 &&
		    e[i].maxabs < 0.51 && e[i].maxrel > 0)
			seen |= 1;
		if (strcmp(e[i].name, "idx") == 0 && e[i].status == 2)
			seen |= 2;
		if (strcmp(e[i].name, "extra") == 0 && e[i].status == 1)
			seen |= 4;
		if (strcmp(e[i].name, "param") == 0 && e[i].status == 3)
			seen |= 8;
		if (strcmp(e[i].name, "half") == 0 && e[i].status == 0 && e[i].maxabs == 0)
			seen |= 16;
	}
	tap(seen == 31, "diff: a changed value, a missing, an extra and a reshaped tensor (%d)", seen);
	free(e);
	mim_frame_free(a);
}

/* mim_pth_write and back: every dtype, a scalar, an empty tensor, metadata */
static void
roundtrip(const struct mim_frame *want)
{
	FILE *tf = tmpfile();
	struct mim_frame *w = mim_frame_new();
	char why[256] = "";

	for (int i = 0; i < want->n; i++)
		mim_frame_add(w, want->t[i].name, want->t[i].dtype, want->t[i].ndim, want->t[i].shape,
		    want->t[i].data);
	mim_meta_set(w, "mim.config", "{\"model\":\"vit\"}");
	int rc = tf ? mim_pth_write(fileno(tf), w) : -1;
	size_t n = tf ? (size_t)ftell(tf) : 0;
	unsigned char *b = malloc(n ? n : 1);
	if (tf) {
		rewind(tf);
		n = fread(b, 1, n, tf);
		fclose(tf);
	}
	struct mim_ckpt_info info;
	struct mim_frame *f = rc == 0 ? mim_pth_parse(b, n, "written", &info) : NULL;
	tap(f && same_state(f, want, why, sizeof why) && info.format == MIM_FMT_ZIP &&
	    strcmp(info.where, "model") == 0, "mim_pth_write, read back: the same state %s%s", why,
	    f ? "" : mim_errmsg());
	tap(f && mim_meta_get(f, "mim.config") &&
	    strcmp(mim_meta_get(f, "mim.config"), "{\"model\":\"vit\"}") == 0,
	    "mim.config travels as a top-level str");
	mim_frame_free(f);
	mim_frame_free(w);
	free(b);
}

int
main(void)
{
	const char *top = getenv("MIM_TOP");
	snprintf(dir, sizeof dir, "%s/tests/ref/pth", top ? top : ".");
	struct mim_frame *want = mim_load(path("tiny.safetensors"));
	tap(want != NULL, "the expected state loads (%s)", want ? "tiny.safetensors" : mim_errmsg());
	if (!want)
		return tap_done();
	fixtures(want);
	truncations("tiny.zip.pth", 1);
	truncations("tiny.legacy.pth", 1);
	mutations("tiny.zip.pth", 3000);
	mutations("tiny.legacy.pth", 3000);
	mutations("tiny.p4.pth", 1000);
	diff(want);
	roundtrip(want);
	struct mim_frame *f = mim_ckpt_load(path("nonexistent.pth"), NULL);
	tap(!f && strstr(mim_errmsg(), "No such file"), "a missing file: %s", mim_errmsg());
	f = mim_ckpt_load(dir, NULL);
	tap(!f && strstr(mim_errmsg(), "is a directory"), "a directory: %s", mim_errmsg());
	mim_frame_free(want);
	return tap_done();
}
