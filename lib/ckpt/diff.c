/* diff.c -- compare two state dicts tensor by tensor.
 *
 * Tensors are matched by name. For a pair of the same shape, values are
 * compared as doubles (any dtypes): maxabs = max |a - b| over elements,
 * maxrel = maxabs / max |b| (scale-free; maxabs itself when b is all zero).
 * NaN equals NaN and an infinity equals itself; any other mismatch of
 * non-finite values counts as an infinite difference. */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mim/ckpt.h"

static int
cmp_idx(const void *x, const void *y, void *ctx)
{
	const struct mim_frame *f = ctx;

	return strcmp(f->t[*(const int *)x].name, f->t[*(const int *)y].name);
}

static void
compare(const struct mim_tensor *a, const struct mim_tensor *b, struct mim_diff_entry *e)
{
	int64_t n = mim_tensor_numel(a);
	double m = 0, scale = 0;

	for (int64_t i = 0; i < n; i++) {
		double x = mim_tensor_get(a, i), y = mim_tensor_get(b, i), d;
		if (isfinite(x) && isfinite(y))
			d = fabs(x - y);
		else
			d = (x == y || (isnan(x) && isnan(y))) ? 0 : INFINITY;
		if (d > m)
			m = d;
		if (isfinite(y) && fabs(y) > scale)
			scale = fabs(y);
	}
	e->maxabs = m;
	e->maxrel = scale > 0 ? m / scale : m;
}

int
mim_ckpt_diff(const struct mim_frame *a, const struct mim_frame *b,
    struct mim_diff_entry **out)
{
	int *idx = mim_malloc((size_t)(b->n ? b->n : 1) * sizeof *idx);
	char *seen = mim_calloc((size_t)(b->n ? b->n : 1), 1);
	struct mim_diff_entry *e = mim_calloc((size_t)(a->n + b->n + 1), sizeof *e);
	int k = 0;

	*out = NULL;
	if (!idx || !seen || !e) {
		free(idx);
		free(seen);
		free(e);
		return -1;
	}
	/* b's names sorted, for lookups in O(log n) */
	for (int i = 0; i < b->n; i++)
		idx[i] = i;
	qsort_r(idx, (size_t)b->n, sizeof *idx, cmp_idx, (void *)b);
	for (int i = 0; i < a->n; i++) {
		const struct mim_tensor *ta = &a->t[i], *tb = NULL;
		int lo = 0, hi = b->n;
		while (lo < hi) {
			int mid = (lo + hi) / 2, c = strcmp(b->t[idx[mid]].name, ta->name);
			if (c == 0) {
				tb = &b->t[idx[mid]];
				seen[idx[mid]] = 1;
				break;
			}
			if (c < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		struct mim_diff_entry *d = &e[k++];
		d->name = ta->name;
		d->da = ta->dtype;
		if (!tb) {
			d->status = 1;
			continue;
		}
		d->db = tb->dtype;
		int same = ta->ndim == tb->ndim;
		for (int j = 0; same && j < ta->ndim; j++)
			same = ta->shape[j] == tb->shape[j];
		if (!same) {
			d->status = 3;
			continue;
		}
		compare(ta, tb, d);
	}
	for (int i = 0; i < b->n; i++)
		if (!seen[i]) {
			e[k].name = b->t[i].name;
			e[k].db = b->t[i].dtype;
			e[k].status = 2;
			k++;
		}
	free(idx);
	free(seen);
	*out = e;
	return k;
}
