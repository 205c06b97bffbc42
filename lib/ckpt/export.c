/* export.c -- hand weights back to PyTorch: strip training state, and the
 * official pretrain -> finetune conversion (reference/simmim.md §9.4).
 *
 * FINE-TUNE CONVERSION (utils.py load_pretrained + remap_pretrained_keys_*)
 *
 *   1. Keep the encoder: if any name starts with "encoder.", keep only those,
 *      prefix stripped; this drops the decoder. mask_token goes too (the
 *      fine-tune model has none), and so do the buffers the new model
 *      rebuilds: relative_position_index, relative_coords_table, attn_mask.
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
