/* test_swin_kern.c -- the Swin kernels (include/mim/swin.h): window geometry
 * against known official values, the permutation kernels, LayerNorm through
 * a window index, the shared attention kernel as Swin uses it (windows,
 * relative position bias, shift mask) against a naive double
 * implementation, and every backward against double central finite
 * differences of L = sum(out * g) for a fixed random g. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mim.h"
#include "mim/kern.h"
#include "mim/swin.h"
#include "tap.h"

static float *
rnd(size_t n, float s)
{
	float *p = malloc(n * sizeof *p);
	for (size_t i = 0; i < n; i++)
		p[i] = frand() * s;
	return p;
}

static double
dot(const float *a, const float *b, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return s;
}

/* ---- geometry ------------------------------------------------------------ */

static void
test_geometry(void)
{
	int64_t idx[36 * 36];
	int ok = 1, mx = 0;
	static const int row0[8] = {60, 59, 58, 57, 56, 55, 49, 48};

	window_relidx(idx, 6);
	for (int i = 0; i < 8; i++)
		ok &= idx[i] == row0[i];
	for (int i = 0; i < 36 * 36; i++)
		mx = idx[i] > mx ? (int)idx[i] : mx;
	tap(ok && mx == 120, "relative index ws=6: row 0 starts 60,59,..,49,48, max 120");

	/* Swin-B 192 stage 0: 48x48, window 6, shift 3: 64 windows, 15 masked */
	float *m = malloc(sizeof(float) * 64 * 36 * 36);
	int nz = 0, vals = 1;
	window_mask(m, 48, 48, 6, 3);
	for (int w = 0; w < 64; w++) {
		int any = 0;
		for (int i = 0; i < 36 * 36; i++) {
			float v = m[w * 36 * 36 + i];
			any |= v != 0;
			vals &= v == 0 || v == -100.0f;
		}
		nz += any;
	}
	tap(nz == 15 && vals, "shift mask 48/6/3: 15 of 64 windows masked, values 0/-100 (%d)", nz);
	/* last window (bottom right) has 4 regions of 3x3: token 0 and 3 differ */
	float *lw = m + 63 * 36 * 36;
	tap(lw[0 * 36 + 3] == -100.0f && lw[0 * 36 + 1] == 0 && lw[0 * 36 + 18] == -100.0f
	    && lw[0 * 36 + 14] == 0 && lw[35 * 36 + 21] == 0,
	    "shift mask: regions of the bottom-right window");
	free(m);

	/* window index = roll(-s,-s) then partition, checked element-wise */
	int H = 8, W = 12, ws = 4, s = 2, L = H * W, perm[96], seen[96] = {0};
	window_index(perm, H, W, ws, s);
	ok = 1;
	for (int t = 0; t < L; t++) {
		int w = t / (ws * ws), p = t % (ws * ws);
		int i = w / (W / ws) * ws + p / ws, j = w % (W / ws) * ws + p % ws;
		ok &= perm[t] == ((i + s) % H) * W + (j + s) % W;
		seen[perm[t]]++;
	}
	for (int t = 0; t < L; t++)
		ok &= seen[t] == 1;
	tap(ok, "window index is roll(-s) + partition, a permutation (8x12, ws 4, s 2)");
}

/* ---- permutation kernels ------------------------------------------------- */

static void
test_gather_scatter(void)
{
	int B = 2, H = 6, W = 6, C = 5, L = H * W, idx[36];
	size_t n = (size_t)B * L * C;
	float *x = rnd(n, 1), *y = malloc(sizeof(float) * n), *y2 = malloc(sizeof(float) * n);
	float *z = calloc(n, sizeof(float)), *z2 = malloc(sizeof(float) * n);
	float bias[5] = {1, 2, 3, 4, 5}, kept[2] = {0, 1}, keep = 0.75f;

	window_index(idx, H, W, 3, 1);
	window_gather(y, x, idx, NULL, 1, B, L, C);
	int ok = 1;
	for (int b = 0; b < B; b++)
		for (int t = 0; t < L; t++)
			ok &= memcmp(y + ((size_t)b * L + t) * C, x + ((size_t)b * L + idx[t]) * C,
			    C * sizeof(float)) == 0;
	tap(ok, "window_gather reads rows through the index");
	window_reverse_add(z2, z, y, NULL, NULL, 1, idx, B, L, C);
	tap(memcmp(z2, x, sizeof(float) * n) == 0, "window_reverse_add inverts the gather");
	window_reverse_add(z2, z2, y, bias, NULL, 1, idx, B, L, C);
	ok = 1;
	for (size_t i = 0; i < n; i++)
		ok &= z2[i] == x[i] + (x[i] + bias[i % C]);
	tap(ok, "window_reverse_add in place adds y and the bias");
	/* drop path: sample 0 dropped, sample 1 scaled by 1/keep */
	window_reverse_add(z2, x, y, bias, kept, keep, idx, B, L, C);
	ok = 1;
	for (size_t i = 0; i < n; i++)
		ok &= z2[i] == (i < n / 2 ? x[i] : x[i] + (x[i] + bias[i % C]) / keep);
	tap(ok, "window_reverse_add with drop path");
	window_gather(y2, x, idx, kept, keep, B, L, C);
	ok = 1;
	for (size_t i = 0; i < n; i++)
		ok &= y2[i] == (i < n / 2 ? 0 : y[i] / keep);
	tap(ok, "window_gather with drop path (the backward of the residual branch)");
	window_reverse_add(z2, x, y, NULL, NULL, 1, NULL, B, L, C);
	ok = 1;
	for (size_t i = 0; i < n; i++)
		ok &= z2[i] == x[i] + y[i];
	tap(ok, "window_reverse_add without index is a plain residual add");
	free(x), free(y), free(y2), free(z), free(z2);
}

/* ---- LayerNorm through a window index ------------------------------------ */

static double
ln_loss(const float *x, const float *w, const float *b, const int *idx, const float *g,
    int B, int L, int C, float *out, float *mean, float *rstd)
{
	window_ln_forward(out, mean, rstd, x, w, b, idx, B, L, C, 1e-5f);
	return dot(out, g, (size_t)B * L * C);
}

/* central differences of f over every element of p (n), compared with the
 * analytic gradient an: max |fd - an| / max |an| */
#define FD(expr, p, n, an, eps, res) do { \
	double mx_ = 0, sc_ = 0; \
	for (size_t i_ = 0; i_ < (n); i_++) { \
		float o_ = (p)[i_]; \
		(p)[i_] = o_ + (eps); double up_ = (expr); \
		(p)[i_] = o_ - (eps); double dn_ = (expr); \
		(p)[i_] = o_; \
		double fd_ = (up_ - dn_) / (2.0 * (eps)); \
		double d_ = fabs(fd_ - (an)[i_]); \
		mx_ = d_ > mx_ ? d_ : mx_; \
		sc_ = fabs((an)[i_]) > sc_ ? fabs((an)[i_]) : sc_; \
	} \
	(res) = sc_ > 0 ? mx_ / sc_ : mx_; \
} while (0)

static void
test_ln(void)
{
	int B = 2, H = 4, W = 4, C = 7, L = H * W, idx[16];
	size_t n = (size_t)B * L * C;
	float *x = rnd(n, 2), *w = rnd(C, 1), *b = rnd(C, 1), *g = rnd(n, 1);
	float *out = malloc(n * sizeof(float)), *mean = malloc(B * L * sizeof(float));
	float *rstd = malloc(B * L * sizeof(float));
	float *dx = calloc(n, sizeof(float)), *dw = calloc(C, sizeof(float));
	float *db = calloc(C, sizeof(float));
	double e;

	for (int c = 0; c < C; c++)
		w[c] += 1.0f;
	window_index(idx, H, W, 2, 1);
	ln_loss(x, w, b, idx, g, B, L, C, out, mean, rstd);
	/* forward against a double computation of the gathered row */
	double fe = 0;
	for (int r = 0; r < B * L; r++) {
		const float *xr = x + ((size_t)(r / L) * L + idx[r % L]) * C;
		double m = 0, v = 0;
		for (int c = 0; c < C; c++)
			m += xr[c];
		m /= C;
		for (int c = 0; c < C; c++)
			v += (xr[c] - m) * (xr[c] - m);
		v /= C;
		for (int c = 0; c < C; c++) {
			double y = (xr[c] - m) / sqrt(v + 1e-5) * w[c] + b[c];
			fe = fmax(fe, fabs(y - out[(size_t)r * C + c]));
		}
	}
	tap(fe < 1e-5, "window_ln_forward = LN of the gathered rows (max abs err %.2g)", fe);
	window_ln_backward(dx, dw, db, g, x, w, mean, rstd, idx, B, L, C);
	FD(ln_loss(x, w, b, idx, g, B, L, C, out, mean, rstd), x, n, dx, 1e-2f, e);
	tap(e < 5e-4, "window_ln dx vs finite differences (max rel %.2g)", e);
	FD(ln_loss(x, w, b, idx, g, B, L, C, out, mean, rstd), w, (size_t)C, dw, 1e-2f, e);
	tap(e < 5e-4, "window_ln dw vs finite differences (max rel %.2g)", e);
	FD(ln_loss(x, w, b, idx, g, B, L, C, out, mean, rstd), b, (size_t)C, db, 1e-2f, e);
	tap(e < 5e-4, "window_ln db vs finite differences (max rel %.2g)", e);

	/* backward accumulates: a second call doubles every gradient */
	float *dx1 = malloc(n * sizeof(float)), dw1[7], db1[7];
	memcpy(dx1, dx, n * sizeof(float));
	memcpy(dw1, dw, sizeof dw1);
	memcpy(db1, db, sizeof db1);
	ln_loss(x, w, b, idx, g, B, L, C, out, mean, rstd);
	window_ln_backward(dx, dw, db, g, x, w, mean, rstd, idx, B, L, C);
	int ok = 1;
	for (size_t i = 0; i < n; i++)
		ok &= fabsf(dx[i] - 2 * dx1[i]) <= 1e-6f * (1 + fabsf(dx1[i]));
	for (int c = 0; c < C; c++)
		ok &= fabsf(dw[c] - 2 * dw1[c]) <= 1e-6f * (1 + fabsf(dw1[c]))
		    && fabsf(db[c] - 2 * db1[c]) <= 1e-6f * (1 + fabsf(db1[c]));
	tap(ok, "window_ln_backward accumulates");
	free(x), free(w), free(b), free(g), free(out), free(mean), free(rstd);
	free(dx), free(dw), free(db), free(dx1);
}

/* ---- window attention: the shared attention kernel in Swin's use --------
 * (windows as the batch, relative position bias from the window index,
 * the -100 shift mask of window w % nW) */

struct att {
	int B, H, W, ws, s, nH, D, N, nW, Bw, C;
	int64_t *relidx;
	float *qkv0, *qkv, *table, *bias, *mask, *out, *att, *g, *work;
};

static double
att_loss(struct att *a)
{
	/* attention_forward scales q in place: start from the raw qkv */
	memcpy(a->qkv, a->qkv0, sizeof(float) * a->Bw * a->N * 3 * a->C);
	relpos_forward(a->bias, a->table, a->relidx, a->N, a->nH);
	attention_forward(a->out, a->att, a->qkv, NULL, NULL, a->bias, a->s ? a->mask : NULL,
	    a->nW, a->Bw, a->N, a->C, a->nH, 1.0f / sqrtf((float)a->D), a->work);
	return dot(a->out, a->g, (size_t)a->Bw * a->N * a->C);
}

/* the official computation in double, straight from the formula */
static double
att_naive_err(struct att *a)
{
	int N = a->N, C = a->C, D = a->D;
	const float *qkv = a->qkv0;
	double err = 0, sc = 0, z[64];

	for (int w = 0; w < a->Bw; w++)
		for (int h = 0; h < a->nH; h++)
			for (int p = 0; p < N; p++) {
				const float *q = qkv + ((size_t)w * N + p) * 3 * C + h * D;
				double mx = -1e300, sum = 0;
				for (int t = 0; t < N; t++) {
					const float *k = qkv + ((size_t)w * N + t) * 3 * C + C + h * D;
					double s = 0;
					for (int d = 0; d < D; d++)
						s += q[d] / sqrt((double)D) * k[d];
					s += a->table[a->relidx[p * N + t] * a->nH + h];
					if (a->s)
						s += a->mask[((size_t)(w % a->nW) * N + p) * N + t];
					z[t] = s;
					mx = fmax(mx, s);
				}
				for (int t = 0; t < N; t++)
					sum += z[t] = exp(z[t] - mx);
				for (int d = 0; d < D; d++) {
					double o = 0;
					for (int t = 0; t < N; t++)
						o += z[t] / sum * qkv[((size_t)w * N + t) * 3 * C + 2 * C + h * D + d];
					double got = a->out[((size_t)w * N + p) * C + h * D + d];
					err = fmax(err, fabs(o - got));
					sc = fmax(sc, fabs(o));
				}
			}
	return err / sc;
}

static void
test_attn(int ws, int s, int nH, int D)
{
	struct att a = {.B = 2, .H = 2 * ws, .W = 2 * ws, .ws = ws, .s = s, .nH = nH, .D = D};
	a.N = ws * ws;
	a.nW = a.H / ws * (a.W / ws);
	a.Bw = a.B * a.nW;
	a.C = nH * D;
	size_t nq = (size_t)a.Bw * a.N * 3 * a.C, no = (size_t)a.Bw * a.N * a.C;
	size_t na = (size_t)a.Bw * nH * a.N * a.N, nt = (size_t)(2 * ws - 1) * (2 * ws - 1) * nH;
	size_t nb = (size_t)nH * a.N * a.N;
	a.relidx = malloc(sizeof(int64_t) * a.N * a.N);
	a.qkv0 = rnd(nq, 1.5f);
	a.qkv = malloc(nq * sizeof(float));
	a.table = rnd(nt, 1);
	a.bias = malloc(sizeof(float) * nb);
	a.mask = malloc(sizeof(float) * a.nW * a.N * a.N);
	a.out = malloc(no * sizeof(float));
	a.att = malloc(na * sizeof(float));
	a.g = rnd(no, 1);
	a.work = malloc(attention_work(a.N) * sizeof(float));
	window_relidx(a.relidx, ws);
	if (s)
		window_mask(a.mask, a.H, a.W, ws, s);

	att_loss(&a);
	double e = att_naive_err(&a);
	tap(e < 1e-5, "window attention ws %d shift %d heads %d: = naive double (max rel %.2g)",
	    ws, s, nH, e);

	/* backward: logit gradients -> summed over windows -> the table */
	float *dqkv = malloc(nq * sizeof(float)), *dbias = calloc(nb, sizeof(float));
	float *dtable = calloc(nt, sizeof(float));
	attention_backward(dqkv, NULL, NULL, a.att, a.g, a.qkv, a.Bw, a.N, a.C, nH,
	    1.0f / sqrtf((float)D), a.work);
	attention_dbias(dbias, a.att, a.Bw, nH, a.N);
	relpos_backward(dtable, dbias, a.relidx, a.N, nH);
	FD(att_loss(&a), a.qkv0, nq, dqkv, 1e-2f, e);
	tap(e < 5e-4, "window attention ws %d shift %d: dqkv vs finite differences (max rel %.2g)",
	    ws, s, e);
	FD(att_loss(&a), a.table, nt, dtable, 1e-2f, e);
	tap(e < 5e-4, "window attention ws %d shift %d: dtable vs finite differences (max rel %.2g)",
	    ws, s, e);

	free(a.relidx), free(a.qkv0), free(a.qkv), free(a.table), free(a.bias), free(a.mask);
	free(a.out), free(a.att), free(a.g), free(a.work), free(dqkv), free(dbias), free(dtable);
}

/* ---- patch merging ------------------------------------------------------- */

static void
test_merge(void)
{
	int B = 2, H = 4, W = 6, C = 3, L = H * W;
	size_t n = (size_t)B * L * C, n2 = n;
	float *x = rnd(n, 1), *out = malloc(n2 * sizeof(float)), *g = rnd(n2, 1);
	float *dx = calloc(n, sizeof(float));
	int ok = 1;

	patchmerge_forward(out, x, B, H, W, C);
	/* official order: x0 = (even row, even col), x1 = (odd row, even col),
	 * x2 = (even row, odd col), x3 = (odd row, odd col) */
	static const int di[4] = {0, 1, 0, 1}, dj[4] = {0, 0, 1, 1};
	for (int b = 0; b < B; b++)
		for (int i = 0; i < H / 2; i++)
			for (int j = 0; j < W / 2; j++)
				for (int k = 0; k < 4; k++)
					for (int c = 0; c < C; c++)
						ok &= out[(((size_t)b * (H / 2) + i) * (W / 2) + j) * 4 * C + k * C + c]
						    == x[((size_t)b * L + (2 * i + di[k]) * W + 2 * j + dj[k]) * C + c];
	tap(ok, "patchmerge_forward: concatenation order x0 x1 x2 x3");
	patchmerge_backward(dx, g, B, H, W, C);
	double l = dot(out, g, n2), r = dot(x, dx, n);
	tap(fabs(l - r) < 1e-5 * (1 + fabs(l)), "patchmerge_backward is the adjoint (%g vs %g)", l, r);
	patchmerge_backward(dx, g, B, H, W, C);
	tap(fabs(dot(x, dx, n) - 2 * r) < 1e-5 * (1 + fabs(r)), "patchmerge_backward accumulates");
	free(x), free(out), free(g), free(dx);
}

int
main(void)
{
	test_geometry();
	test_gather_scatter();
	test_ln();
	test_attn(2, 1, 2, 3);
	test_attn(3, 1, 1, 4);
	test_attn(4, 0, 3, 2);
	test_merge();
	return tap_done();
}
