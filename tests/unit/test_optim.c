/* test_optim.c -- AdamW with the two parameter groups and global-norm
 * clipping against PyTorch: the committed dump tests/ref/adamw_ref.safetensors
 * (step_ref.py adamw: 4 steps of torch.optim.AdamW after
 * clip_grad_norm_, two of them clipped), and the official step of the
 * golden micro ViT and Swin files when $MIM_GOLDEN (default
 * shared/golden beside the checkout) has them. Plus the properties that need no
 * reference: decoupled decay, no decay in the other group, clipping
 * off/under/over the threshold, non-finite norms, thread-count
 * independence. No model code is needed: a parameter table is built by
 * hand from the dumps. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mim.h"
#include "tap.h"

/* a parameter table over one arena, from tensor names in a frame */
struct fake {
	struct mim_model m;
	float *g, *ea, *eas;
};

static int
in_list(json_t *list, const char *name)
{
	size_t i;
	json_t *v;

	json_array_foreach(list, i, v)
		if (strcmp(json_string_value(v), name) == 0)
			return 1;
	return 0;
}

/* names: JSON list; the shapes come from tensors "<prefix><name>" of f */
static int
fake_new(struct fake *fk, const struct mim_frame *f, json_t *names,
    const char *prefix, json_t *decay)
{
	size_t n = json_array_size(names), off = 0;
	char key[1024];

	memset(fk, 0, sizeof *fk);
	fk->m.np = (int)n;
	fk->m.p = calloc(n, sizeof *fk->m.p);
	for (size_t i = 0; i < n; i++) {
		const char *nm = json_string_value(json_array_get(names, i));
		snprintf(key, sizeof key, "%s%s", prefix, nm);
		struct mim_tensor *t = mim_frame_get(f, key);
		if (!t || t->dtype != MIM_F32)
			return -1;
		struct mim_param *p = &fk->m.p[i];
		p->name = strdup(nm);
		p->ndim = t->ndim;
		for (int d = 0; d < t->ndim; d++)
			p->shape[d] = t->shape[d];
		p->numel = (size_t)mim_tensor_numel(t);
		p->off = off;
		p->decay = in_list(decay, nm);
		off += p->numel;
	}
	fk->m.nw = off;
	fk->m.w = calloc(off + 1, sizeof(float));
	fk->g = calloc(off + 1, sizeof(float));
	fk->ea = calloc(off + 1, sizeof(float));
	fk->eas = calloc(off + 1, sizeof(float));
	return 0;
}

static void
fake_free(struct fake *fk)
{
	for (int i = 0; i < fk->m.np; i++)
		free(fk->m.p[i].name);
	free(fk->m.p);
	free(fk->m.w);
	free(fk->g);
	free(fk->ea);
	free(fk->eas);
}

/* copy tensors "<prefix><name>" into the arena a */
static void
gather(const struct fake *fk, const struct mim_frame *f, const char *prefix, float *a)
{
	char key[1024];

	for (int i = 0; i < fk->m.np; i++) {
		snprintf(key, sizeof key, "%s%s", prefix, fk->m.p[i].name);
		struct mim_tensor *t = mim_frame_get(f, key);
		memcpy(a + fk->m.p[i].off, t->data, fk->m.p[i].numel * sizeof(float));
	}
}

/* worst per-tensor max relative error of arena a vs tensors "<prefix><name>" */
static double
compare(const struct fake *fk, const struct mim_frame *f, const char *prefix,
    const float *a, char *worst_name, size_t wn)
{
	char key[1024];
	double worst = 0;

	for (int i = 0; i < fk->m.np; i++) {
		snprintf(key, sizeof key, "%s%s", prefix, fk->m.p[i].name);
		struct mim_tensor *t = mim_frame_get(f, key);
		if (!t)
			return INFINITY;
		double e = maxrel(a + fk->m.p[i].off, t->data, fk->m.p[i].numel);
		if (!(e <= worst)) {
			worst = e;
			snprintf(worst_name, wn, "%s", key);
		}
	}
	return worst;
}

static void
adamw_ref(const char *path)
{
	struct mim_frame *f = mim_load(path);
	struct fake fk;

	tap(f != NULL, "read %s", path);
	if (!f)
		return;
	json_t *names = json_loads(mim_meta_get(f, "names"), 0, NULL);
	json_t *decay = json_loads(mim_meta_get(f, "decay"), 0, NULL);
	json_t *lrs = json_loads(mim_meta_get(f, "lrs"), 0, NULL);
	json_t *norms = json_loads(mim_meta_get(f, "norms"), 0, NULL);
	double clip = atof(mim_meta_get(f, "clip"));
	struct mim_adamw o;
	mim_adamw_default(&o);
	o.weight_decay = atof(mim_meta_get(f, "weight_decay"));
	tap(fake_new(&fk, f, names, "w0/", decay) == 0, "parameter table from the dump");
	gather(&fk, f, "w0/", fk.m.w);
	for (size_t k = 0; k < json_array_size(lrs); k++) {
		char pre[32], name[1024] = "";
		snprintf(pre, sizeof pre, "g%zu/", k);
		gather(&fk, f, pre, fk.g);
		float norm = mim_clip_grad(fk.m.p, fk.m.np, fk.g, clip);
		double want = json_number_value(json_array_get(norms, k));
		tap(fabs(norm - want) <= 1e-6 * want, "step %zu: grad norm %.7g, torch %.7g%s", k,
		    norm, want, want > clip ? " (clipped)" : "");
		mim_adamw_step(&o, &fk.m, fk.m.w, fk.g, fk.ea, fk.eas,
		    json_number_value(json_array_get(lrs, k)), (int64_t)k + 1);
		static const char *what[] = {"w", "m", "v"};
		float *arr[] = {fk.m.w, fk.ea, fk.eas};
		for (int j = 0; j < 3; j++) {
			snprintf(pre, sizeof pre, "%s%zu/", what[j], k + 1);
			double e = compare(&fk, f, pre, arr[j], name, sizeof name);
			tap(e <= 1e-6, "step %zu: %s within 1e-6 of torch.optim.AdamW (max rel %.2g, %s)",
			    k, what[j][0] == 'w' ? "params" : what[j][0] == 'm' ? "exp_avg" : "exp_avg_sq",
			    e, name);
		}
	}
	fake_free(&fk);
	json_decref(names);
	json_decref(decay);
	json_decref(lrs);
	json_decref(norms);
	mim_frame_free(f);
}

/* the golden file's one official step: clip 5 (not reached), lr 1e-3, wd 0.05 */
static void
golden(const char *dir, const char *model)
{
	char path[4096];

	snprintf(path, sizeof path, "%s/%s.s7.b2.safetensors", dir, model);
	if (access(path, R_OK) != 0) {
		printf("skip - %s: no golden file %s\n", model, path);
		return;
	}
	struct mim_frame *f = mim_load(path);
	tap(f != NULL, "read %s", path);
	if (!f)
		return;
	/* state-dict order: the order of decay_params + no_decay_params does
	 * not matter for AdamW; take both lists */
	json_t *decay = json_loads(mim_meta_get(f, "decay_params"), 0, NULL);
	json_t *nodecay = json_loads(mim_meta_get(f, "no_decay_params"), 0, NULL);
	json_t *names = json_array();
	json_array_extend(names, decay);
	json_array_extend(names, nodecay);
	struct fake fk;
	struct mim_adamw o;
	mim_adamw_default(&o);
	o.weight_decay = atof(mim_meta_get(f, "weight_decay"));
	double lr = atof(mim_meta_get(f, "lr")), clip = atof(mim_meta_get(f, "clip_grad"));
	tap(fake_new(&fk, f, names, "param/", decay) == 0, "%s: %zu parameters, %zu decayed",
	    model, json_array_size(names), json_array_size(decay));
	gather(&fk, f, "param/", fk.m.w);
	gather(&fk, f, "grad/", fk.g);
	float norm = mim_clip_grad(fk.m.p, fk.m.np, fk.g, clip);
	double want = mim_tensor_get(mim_frame_get(f, "opt/grad_norm"), 0);
	tap(fabs(norm - want) <= 1e-6 * want, "%s: grad norm %.7g, official %.7g", model, norm, want);
	mim_adamw_step(&o, &fk.m, fk.m.w, fk.g, fk.ea, fk.eas, lr, 1);
	char name[1024] = "";
	double e1 = compare(&fk, f, "step/", fk.m.w, name, sizeof name);
	tap(e1 <= 1e-5, "%s: params after the official step (max rel %.2g, %s)", model, e1, name);
	double e2 = compare(&fk, f, "step/exp_avg/", fk.ea, name, sizeof name);
	tap(e2 <= 1e-5, "%s: exp_avg (max rel %.2g, %s)", model, e2, name);
	double e3 = compare(&fk, f, "step/exp_avg_sq/", fk.eas, name, sizeof name);
	tap(e3 <= 1e-5, "%s: exp_avg_sq (max rel %.2g, %s)", model, e3, name);
	double e4 = compare(&fk, f, "step_noclip/", fk.m.w, name, sizeof name);
	tap(e4 <= 1e-5, "%s: params equal step_noclip (clip not reached; max rel %.2g)", model, e4);
	fake_free(&fk);
	json_decref(names);
	json_decref(decay);
	json_decref(nodecay);
	mim_frame_free(f);
}

static void
properties(void)
{
	struct mim_adamw o;
	mim_adamw_default(&o);
	enum { N = 4000 };
	static float w[N], m[N], v[N], g[N], w2[N];

	/* zero gradient, zero moments: only the decoupled decay acts */
	for (int i = 0; i < N; i++)
		w[i] = frand();
	memcpy(w2, w, sizeof w);
	mim_adamw_update(w, m, v, g, N, 1e-2, 0.05, &o, 1);
	int exact = 1;
	for (int i = 0; i < N; i++)
		exact &= w[i] == w2[i] * (float)(1.0 - 1e-2 * 0.05);
	tap(exact, "zero gradient: w *= 1 - lr*wd exactly (decoupled decay)");
	memcpy(w, w2, sizeof w);
	mim_adamw_update(w, m, v, g, N, 1e-2, 0.0, &o, 1);
	tap(memcmp(w, w2, sizeof w) == 0, "zero gradient, no decay group: unchanged");

	/* first step: bias correction makes every update lr * g/|g| (|g| >> eps) */
	for (int i = 0; i < N; i++)
		g[i] = frand() + (frand() > 0 ? 0.5f : -0.5f);
	memset(m, 0, sizeof m);
	memset(v, 0, sizeof v);
	memcpy(w, w2, sizeof w);
	mim_adamw_update(w, m, v, g, N, 1e-3, 0.0, &o, 1);
	double worst = 0;
	for (int i = 0; i < N; i++) {
		double want = w2[i] - 1e-3 * (g[i] > 0 ? 1 : -1);
		double e = fabs(w[i] - want);
		if (e > worst)
			worst = e;
	}
	tap(worst < 1e-7, "first step moves every weight by lr (err %.2g)", worst);

	/* clipping */
	struct mim_param p[2] = {{.name = "a", .ndim = 1, .shape = {3}, .off = 0, .numel = 3},
	    {.name = "b", .ndim = 1, .shape = {1}, .off = 3, .numel = 1}};
	float gg[4] = {3, 0, 0, 4}, keep[4];
	memcpy(keep, gg, sizeof gg);
	float nrm = mim_clip_grad(p, 2, gg, 0);
	tap(nrm == 5.0f && memcmp(gg, keep, sizeof gg) == 0, "clip off: norm 5 reported, gradient untouched");
	nrm = mim_clip_grad(p, 2, gg, 6.0);
	tap(nrm == 5.0f && memcmp(gg, keep, sizeof gg) == 0, "norm under the threshold: gradient untouched");
	nrm = mim_clip_grad(p, 2, gg, 5.0);
	tap(nrm == 5.0f && gg[0] < 3 && gg[0] == 3 * ((1.0f / (5.0f + 1e-6f)) * 5.0f),
	    "norm at the threshold: scaled by 5/(5+1e-6) < 1 like torch");
	memcpy(gg, keep, sizeof gg);
	nrm = mim_clip_grad(p, 2, gg, 1.0);
	float after = sqrtf(gg[0] * gg[0] + gg[3] * gg[3]);
	tap(nrm == 5.0f && fabsf(after - 1.0f) < 1e-6f && gg[0] < 3, "clip to 1: norm after %.7g", after);
	gg[1] = NAN;
	memcpy(keep, gg, sizeof gg);
	nrm = mim_clip_grad(p, 2, gg, 1.0);
	tap(isnan(nrm), "NaN gradient: NaN norm, reported to the caller");
	gg[1] = INFINITY;
	tap(isinf(mim_grad_norm(p, 2, gg)), "Inf gradient: Inf norm");

	/* a model-sized update gives the same bytes on 1 and 2 threads */
	enum { M = 300000 };
	struct mim_param big[3] = {{.name = "x", .ndim = 1, .shape = {100000}, .off = 0, .numel = 100000, .decay = 1},
	    {.name = "y", .ndim = 1, .shape = {150000}, .off = 100000, .numel = 150000},
	    {.name = "z", .ndim = 1, .shape = {50000}, .off = 250000, .numel = 50000, .decay = 1}};
	struct mim_model mm = {.np = 3, .p = big, .nw = M};
	float *W[2], *E[2], *S[2], *G = malloc(M * sizeof(float));
	float nm[2];
	for (int i = 0; i < M; i++)
		G[i] = frand() * 0.01f;
	for (int r = 0; r < 2; r++) {
		W[r] = malloc(M * sizeof(float));
		E[r] = calloc(M, sizeof(float));
		S[r] = calloc(M, sizeof(float));
		for (int i = 0; i < M; i++)
			W[r][i] = (float)i * 1e-6f;
		mim_set_threads(r + 1);
		nm[r] = mim_grad_norm(big, 3, G);
		for (int t = 1; t <= 3; t++)
			mim_adamw_step(&o, &mm, W[r], G, E[r], S[r], 1e-3, t);
	}
	tap(memcmp(W[0], W[1], M * sizeof(float)) == 0 && memcmp(E[0], E[1], M * sizeof(float)) == 0 &&
	    memcmp(S[0], S[1], M * sizeof(float)) == 0 && nm[0] == nm[1],
	    "1 and 2 threads give the same bytes");
	for (int r = 0; r < 2; r++) {
		free(W[r]);
		free(E[r]);
		free(S[r]);
	}
	free(G);
}

int
main(void)
{
	const char *top = getenv("MIM_TOP");
	char path[4096], gd[4096];

	snprintf(path, sizeof path, "%s/tests/ref/adamw_ref.safetensors", top ? top : ".");
	adamw_ref(path);
	snprintf(gd, sizeof gd, "%s", tap_golden(""));
	golden(gd, "micro-vit");
	golden(gd, "micro-swin");
	properties();
	return tap_done();
}
