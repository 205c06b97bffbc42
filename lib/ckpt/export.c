/* export.c -- hand weights back to PyTorch: strip training state, and the
 * official pretrain -> finetune conversion (reference/simmim.md §9.4).
 *
 * FINE-TUNE CONVERSION (utils.py load_pretrained + remap_pretrained_keys_*)
 *
 *   1. Keep the encoder: if any name starts with "encoder.", keep only those,
 *      prefix stripped; this drops the decoder. mask_token goes too (the
 *      fine-tune model has none), and so do the buffers the new model
 *      rebuilds: relative_position_index, relative_coords_table, attn_mask.
 *   Steps 2 and 3 are the architectures' (the ft_* hooks of arch.h, in
 *   vit.c and swin.c); this file runs them and resamples what they ask.
 *   2. ViT: the shared table rel_pos_bias.relative_position_bias_table is
 *      copied into blocks.{i}.attn.relative_position_bias_table of every
 *      block; the final norm is dropped (fine-tuning pools with a fresh
 *      fc_norm instead). If the patch grid changes, the first (2P-1)^2 rows
 *      of each table are resampled and the 3 cls rows appended unchanged.
 *   3. Swin: each layers.{s}.blocks.{b}.attn.relative_position_bias_table of
 *      (2w-1)^2 rows is resampled to the fine-tune model's (2w'-1)^2, where
 *      w' is the window clamped to the stage's resolution.
 *
 * RESAMPLING (the official geometric procedure)
 *
 *   For a table of S x S relative offsets (S = 2w-1, h = S/2) going to
 *   D x D: bisect q in [1.01, 1.5] until the interval is <= 1e-6, moving
 *   the right end when 1 + q + ... + q^(h-1) > D/2; q is the last midpoint.
 *   Source coordinates are -d[h-1..0], 0, d[0..h-1] with d[i] = 1 + q + ...
 *   + q^i; targets are the integers -D/2 .. D/2. Each head's S x S grid
 *   (row = dh, column = dw) is interpolated with scipy's interp2d(kind=
 *   'cubic'): FITPACK's regrid with s = 0, i.e. the tensor-product
 *   interpolating cubic spline with not-a-knot ends, evaluated with the
 *   targets clamped to the source range (as FITPACK's fpbisp does). Being
 *   separable, it is out = W z W^T with W the D x S matrix of the 1-D
 *   not-a-knot spline's weights. */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mim/ckpt.h"
#include "../model/arch.h"

/* ---- the 1-D not-a-knot cubic spline as a weight matrix ---------------------- */

/* Solve A x = b in place (n x n, row-major) by Gaussian elimination with
 * partial pivoting. A and b are overwritten; x ends in b. 0 or -1. */
static int
solve(double *A, double *b, int n)
{
	for (int c = 0; c < n; c++) {
		int p = c;
		for (int r = c + 1; r < n; r++)
			if (fabs(A[r * n + c]) > fabs(A[p * n + c]))
				p = r;
		if (A[p * n + c] == 0)
			return -1;
		if (p != c) {
			for (int k = 0; k < n; k++) {
				double t = A[c * n + k];
				A[c * n + k] = A[p * n + k];
				A[p * n + k] = t;
			}
			double t = b[c];
			b[c] = b[p];
			b[p] = t;
		}
		for (int r = c + 1; r < n; r++) {
			double f = A[r * n + c] / A[c * n + c];
			if (f == 0)
				continue;
			for (int k = c; k < n; k++)
				A[r * n + k] -= f * A[c * n + k];
			b[r] -= f * b[c];
		}
	}
	for (int c = n - 1; c >= 0; c--) {
		double s = b[c];
		for (int k = c + 1; k < n; k++)
			s -= A[c * n + k] * b[k];
		b[c] = s / A[c * n + c];
	}
	return 0;
}

/* W (D x S): row i holds the weights on the S samples at x[] of the
 * not-a-knot cubic spline evaluated at t[i] (clamped to [x0, x(S-1)]). */
static int
spline_weights(const double *x, int S, const double *t, int D, double *W)
{
	double *A = malloc((size_t)S * S * sizeof *A), *M = malloc((size_t)S * sizeof *M);
	int rc = -1;

	if (!A || !M)
		goto done;
	for (int j = 0; j < S; j++) {
		/* the spline of the unit vector e_j: second derivatives M */
		memset(A, 0, (size_t)S * S * sizeof *A);
		for (int i = 0; i < S; i++)
			M[i] = 0;
		double h0 = x[1] - x[0], h1 = x[2] - x[1];
		A[0] = h1;
		A[1] = -(h0 + h1);
		A[2] = h0;
		for (int i = 1; i < S - 1; i++) {
			double hl = x[i] - x[i - 1], hr = x[i + 1] - x[i];
			A[i * S + i - 1] = hl;
			A[i * S + i] = 2 * (hl + hr);
			A[i * S + i + 1] = hr;
			double yl = (i - 1 == j) - (i == j), yr = (i + 1 == j) - (i == j);
			M[i] = 6 * (yr / hr + yl / hl);
		}
		double ha = x[S - 2] - x[S - 3], hb = x[S - 1] - x[S - 2];
		A[(S - 1) * S + S - 3] = hb;
		A[(S - 1) * S + S - 2] = -(ha + hb);
		A[(S - 1) * S + S - 1] = ha;
		if (solve(A, M, S) < 0)
			goto done;
		for (int i = 0; i < D; i++) {
			double v = t[i] < x[0] ? x[0] : t[i] > x[S - 1] ? x[S - 1] : t[i];
			int k = 0;
			while (k < S - 2 && v > x[k + 1])
				k++;
			double h = x[k + 1] - x[k], a = x[k + 1] - v, b = v - x[k];
			double y0 = k == j, y1 = k + 1 == j;
			W[(size_t)i * S + j] = M[k] * a * a * a / (6 * h) + M[k + 1] * b * b * b / (6 * h) +
			    (y0 / h - M[k] * h / 6) * a + (y1 / h - M[k + 1] * h / 6) * b;
		}
	}
	rc = 0;
done:
	free(A);
	free(M);
	return rc;
}

int
mim_relpos_resize(const float *src, int S, int nH, float *dst, int D)
{
	if (S < 5 || D < 1 || S % 2 == 0 || D % 2 == 0 || S > 4095 || D > 4095)
		return mim_seterr("relative position table: cannot resample %dx%d to %dx%d "
		    "(odd sizes, at least 5x5)", S, S, D, D);
	int h = S / 2;
	double left = 1.01, right = 1.5, q = 0;
	while (right - left > 1e-6) {
		q = (left + right) / 2.0;
		double gp = (1.0 - pow(q, h)) / (1.0 - q);
		if (gp > D / 2)
			right = q;
		else
			left = q;
	}
	double *x = malloc((size_t)S * sizeof *x), *t = malloc((size_t)D * sizeof *t);
	double *W = malloc((size_t)D * S * sizeof *W), *tmp = malloc((size_t)D * S * sizeof *tmp);
	int rc = -1;
	if (!x || !t || !W || !tmp) {
		mim_seterr("out of memory");
		goto done;
	}
	double cur = 1;
	x[h] = 0;
	for (int i = 0; i < h; i++) {
		x[h + 1 + i] = cur;
		x[h - 1 - i] = -cur;
		cur += pow(q, i + 1);
	}
	for (int i = 0; i < D; i++)
		t[i] = -(double)(D / 2) + i;
	if (spline_weights(x, S, t, D, W) < 0) {
		mim_seterr("relative position table: singular spline system");
		goto done;
	}
	for (int c = 0; c < nH; c++) {
		/* tmp (D x S) = W z: resample the rows (dh) */
		for (int i = 0; i < D; i++)
			for (int k = 0; k < S; k++) {
				double s = 0;
				for (int r = 0; r < S; r++)
					s += W[(size_t)i * S + r] * src[((size_t)r * S + k) * nH + c];
				tmp[(size_t)i * S + k] = s;
			}
		/* out (D x D) = tmp W^T: then the columns (dw) */
		for (int i = 0; i < D; i++)
			for (int j = 0; j < D; j++) {
				double s = 0;
				for (int k = 0; k < S; k++)
					s += tmp[(size_t)i * S + k] * W[(size_t)j * S + k];
				dst[((size_t)i * D + j) * nH + c] = (float)s;
			}
	}
	rc = 0;
done:
	free(x);
	free(t);
	free(W);
	free(tmp);
	return rc;
}

/* ---- export ------------------------------------------------------------------ */

static int
is_float(enum mim_dtype t)
{
	return t == MIM_F32 || t == MIM_F16 || t == MIM_BF16 || t == MIM_F64;
}

/* Element i of a float tensor as float. */
static float
fget(const struct mim_tensor *t, int64_t i)
{
	return (float)mim_tensor_get(t, i);
}

/* Add tensor t to out under name, converted to dtype (float tensors only;
 * -1 keeps it). */
static int
put(struct mim_frame *out, const char *name, const struct mim_tensor *t, int dtype)
{
	if (dtype < 0 || !is_float(t->dtype) || (int)t->dtype == dtype)
		return mim_frame_add(out, name, t->dtype, t->ndim, t->shape, t->data) ? 0 : -1;
	struct mim_tensor *d = mim_frame_add(out, name, (enum mim_dtype)dtype, t->ndim, t->shape, NULL);
	if (!d)
		return -1;
	int64_t n = mim_tensor_numel(t);
	for (int64_t i = 0; i < n; i++) {
		float v = fget(t, i);
		switch (dtype) {
		case MIM_F32: ((float *)d->data)[i] = v; break;
		case MIM_F16: ((uint16_t *)d->data)[i] = mim_f32_to_f16(v); break;
		case MIM_BF16: ((uint16_t *)d->data)[i] = mim_f32_to_bf16(v); break;
		default: return mim_seterr("cannot convert to %s", mim_dtype_name((enum mim_dtype)dtype));
		}
	}
	return 0;
}

/* A relative position table (rows, nH) as F32, resampled from an S x S
 * grid (+ extra rows kept as they are) to D x D. */
static struct mim_tensor *
resize_table(struct mim_frame *tmp, const char *name, const struct mim_tensor *t, int extra, int D)
{
	int64_t rows = t->shape[0], nH = t->shape[1];
	int S = (int)llround(sqrt((double)(rows - extra)));

	if (t->ndim != 2 || rows - extra != (int64_t)S * S || S % 2 == 0 || !is_float(t->dtype)) {
		mim_seterr("tensor '%s': not a relative position table of (2w-1)^2%s rows", name,
		    extra ? " + 3" : "");
		return NULL;
	}
	int64_t sh[2] = {(int64_t)D * D + extra, nH};
	float *src = mim_malloc((size_t)(rows * nH) * sizeof *src);
	struct mim_tensor *d = src ? mim_frame_add(tmp, name, MIM_F32, 2, sh, NULL) : NULL;
	if (!d) {
		free(src);
		return NULL;
	}
	for (int64_t i = 0; i < rows * nH; i++)
		src[i] = fget(t, i);
	int rc = mim_relpos_resize(src, S, (int)nH, d->data, D);
	if (rc == 0 && extra)
		memcpy((float *)d->data + (int64_t)D * D * nH, src + (int64_t)S * S * nH,
		    (size_t)(extra * nH) * sizeof(float));
	free(src);
	if (rc < 0) {
		mim_preferr("tensor '%s'", name);
		return NULL;
	}
	return d;
}


#define NOTE(...) do { if (k < n) k += (size_t)snprintf(note + k, n - k, __VA_ARGS__); } while (0)

struct mim_frame *
mim_ckpt_export(const struct mim_frame *ckpt, const struct mim_export_opt *o, char *note, size_t n)
{
	struct mim_config c, ft;
	struct mim_frame *out = mim_frame_new(), *tmp = mim_frame_new();
	size_t k = 0;
	int nopt = 0, nmeta = 0, ntab = 0, ndrop = 0, S = 0, D = 0;
	char scratch[1];

	if (!note) {
		note = scratch;
		n = sizeof scratch;
	}
	note[0] = 0;
	if (!out || !tmp)
		goto fail;
	for (int i = 0; i < ckpt->nmeta; i++) {
		if (strncmp(ckpt->mkey[i], "mim.train.", 10) == 0) {
			nmeta++;
			continue;
		}
		if (o->finetune && strcmp(ckpt->mkey[i], "mim.config") == 0)
			continue;
		if (mim_meta_set(out, ckpt->mkey[i], ckpt->mval[i]) < 0)
			goto fail;
	}
	if (!o->finetune) {
		for (int i = 0; i < ckpt->n; i++) {
			const struct mim_tensor *t = &ckpt->t[i];
			if (strncmp(t->name, "opt.", 4) == 0) {
				nopt++;
				continue;
			}
			if (put(out, t->name, t, o->dtype) < 0)
				goto fail;
		}
		NOTE("model only: %d tensors; dropped %d opt.* tensors and %d mim.train.* keys",
		    out->n, nopt, nmeta);
		mim_frame_free(tmp);
		return out;
	}

	/* the fine-tuning model: the image size and window asked for */
	const char *js = mim_meta_get(ckpt, "mim.config");
	if (js ? mim_config_parse(&c, js) < 0 : mim_ckpt_infer(ckpt, NULL, &c, NULL, 0) < 0) {
		mim_preferr(js ? "mim.config" : "no mim.config, and the weights do not tell");
		goto fail;
	}
	if (mim_is_classifier(&c)) {
		mim_seterr("a classifier (num_classes %d) is a fine-tuning model already: "
		    "export it without --finetune", c.num_classes);
		goto fail;
	}
	ft = c;
	/* the fine-tuning model has no prediction head, so no target */
	ft.target = MIM_TARGET_PIXEL;
	ft.pred_div = 1;
	ft.norm_pix = 0;
	if (o->img_size)
		ft.img_size = o->img_size;
	const struct mim_arch_ops *arch = mim_arch_get(c.arch);
	if (arch->ft_config && arch->ft_config(&ft, o) < 0)
		goto fail;
	if (mim_config_check(&ft) < 0) {
		mim_preferr("fine-tuning model");
		goto fail;
	}
	int enc = 0;
	for (int i = 0; i < ckpt->n && !enc; i++)
		enc = strncmp(ckpt->t[i].name, "encoder.", 8) == 0;
	const struct mim_tensor *held = NULL;
	const char *heldname = NULL;
	int heldside = 0, heldextra = 0, ncopies = 0;
	for (int i = 0; i < ckpt->n; i++) {
		const struct mim_tensor *t = &ckpt->t[i];
		const char *name = t->name;
		if (strncmp(name, "opt.", 4) == 0) {
			nopt++;
			continue;
		}
		if (enc) {
			if (strncmp(name, "encoder.", 8) != 0) {
				ndrop++;
				continue;
			}
			name += 8;
		}
		if (strcmp(name, "mask_token") == 0 || strstr(name, "relative_position_index") ||
		    strstr(name, "relative_coords_table") || strstr(name, "attn_mask")) {
			ndrop++;
			continue;
		}
		int side = 0, extra = 0;
		int what = arch->ft_tensor ? arch->ft_tensor(&ft, o, name, &side, &extra) : 1;
		if (what < 0) {
			mim_preferr("tensor '%s'", t->name);
			goto fail;
		}
		if (what == 0) {
			ndrop++;
			continue;
		}
		if (what == 2) {
			held = t;
			heldname = name;
			heldside = side;
			heldextra = extra;
			continue;
		}
		if (side > 0 && t->ndim == 2 && t->shape[0] != (int64_t)side * side + extra) {
			S = (int)llround(sqrt((double)(t->shape[0] - extra)));
			D = side;
			if (!(t = resize_table(tmp, name, t, extra, side)))
				goto fail;
			ntab++;
		}
		if (put(out, name, t, o->dtype) < 0)
			goto fail;
	}
	if (held) {
		/* the held tensor (ViT's shared table) into its copies, resampled once */
		const struct mim_tensor *t = held;
		int resized = 0;
		char nm[128];
		if (heldside > 0 && t->ndim == 2 && t->shape[0] != (int64_t)heldside * heldside + heldextra) {
			S = (int)llround(sqrt((double)(t->shape[0] - heldextra)));
			D = heldside;
			if (!(t = resize_table(tmp, heldname, t, heldextra, heldside)))
				goto fail;
			resized = 1;
		}
		for (const char *cn; (cn = arch->ft_copy(&ft, heldname, ncopies, nm, sizeof nm)); ncopies++)
			if (put(out, cn, t, o->dtype) < 0)
				goto fail;
		ntab += resized ? ncopies : 0;
	}
	char *fj = mim_config_json(&ft);
	if (!fj || mim_meta_set(out, "mim.finetune", fj) < 0) {
		free(fj);
		goto fail;
	}
	free(fj);
	NOTE("fine-tuning encoder: %d tensors; dropped %d (decoder, mask_token, buffers) and %d "
	    "opt.* tensors", out->n, ndrop, nopt);
	if (arch->ft_note && k < n)
		arch->ft_note(&ft, o, ncopies, note, n);
	k = strlen(note);
	if (ntab)
		NOTE("; %d tables resampled %dx%d -> %dx%d", ntab, S, S, D, D);
	mim_frame_free(tmp);
	return out;
fail:
	mim_frame_free(out);
	mim_frame_free(tmp);
	return NULL;
}
