/* idx.c -- IDX files, the format of MNIST and Fashion-MNIST.
 *
 * Layout (big-endian): 0x00 0x00, a type byte (0x08 = unsigned byte, the
 * only one read here), the number of dimensions d, then d u32 sizes, then
 * the data, row-major. Labels are d = 1 (n), images d = 3 (n, rows, cols).
 * The file may be gzip-compressed (Debian ships *.gz): it is read through
 * libarchive's raw format with every filter on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <archive.h>
#include <archive_entry.h>

#include "mim/stream.h"
#include "mim/data.h"

#define IDX_MAX ((size_t)1 << 31)

static int
slurp(const char *path, uint8_t **out, size_t *len)
{
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	uint8_t *buf = NULL;
	size_t n = 0, cap = 0;

	*out = NULL;
	if (!a)
		return mim_seterr("out of memory");
	archive_read_support_filter_all(a);
	archive_read_support_format_raw(a);
	if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK ||
	    archive_read_next_header(a, &e) != ARCHIVE_OK) {
		mim_seterr("%s: %s", path, archive_error_string(a) ? archive_error_string(a) : "cannot read");
		archive_read_free(a);
		return -1;
	}
	for (;;) {
		if (n == cap) {
			size_t nc = cap ? 2 * cap : 1 << 20;
			uint8_t *nb = nc <= IDX_MAX ? realloc(buf, nc) : NULL;
			if (!nb) {
				free(buf);
				archive_read_free(a);
				return mim_seterr("%s: too large", path);
			}
			buf = nb;
			cap = nc;
		}
		la_ssize_t r = archive_read_data(a, buf + n, cap - n);
		if (r == 0)
			break;
		if (r < 0) {
			mim_seterr("%s: %s", path, archive_error_string(a) ? archive_error_string(a) : "read error");
			free(buf);
			archive_read_free(a);
			return -1;
		}
		n += (size_t)r;
	}
	archive_read_free(a);
	*out = buf;
	*len = n;
	return 0;
}

int
mim_idx_load(const char *path, struct mim_idx *x)
{
	uint8_t *b = NULL;
	size_t n = 0;

	memset(x, 0, sizeof *x);
	if (slurp(path, &b, &n))
		return -1;
	if (n < 4 || b[0] || b[1]) {
		free(b);
		return mim_seterr("%s: not an IDX file (bad magic)", path);
	}
	if (b[2] != 0x08) {
		int type = b[2];
		free(b);
		return mim_seterr("%s: IDX type 0x%02x: only unsigned bytes (0x08) are read", path, type);
	}
	int d = b[3];
	if (d != 1 && d != 3) {
		free(b);
		return mim_seterr("%s: IDX with %d dimensions: want 1 (labels) or 3 (images)", path, d);
	}
	size_t hdr = 4 + 4 * (size_t)d, total = 1;
	if (n < hdr) {
		free(b);
		return mim_seterr("%s: truncated IDX header", path);
	}
	for (int i = 0; i < d; i++) {
		const uint8_t *p = b + 4 + 4 * i;
		uint32_t v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
		x->dim[i] = v;
		if (v == 0 && i > 0) {
			free(b);
			return mim_seterr("%s: IDX dimension %d is 0", path, i);
		}
		if (v && total > IDX_MAX / v) {
			free(b);
			return mim_seterr("%s: IDX sizes too large", path);
		}
		total *= v;
	}
	if (n - hdr != total) {
		free(b);
		return mim_seterr("%s: IDX data is %zu bytes, the header says %zu", path, n - hdr, total);
	}
	x->ndim = d;
	memmove(b, b + hdr, total);
	x->data = b;
	return 0;
}

void
mim_idx_free(struct mim_idx *x)
{
	free(x->data);
	x->data = NULL;
}

int
mim_idx_to_shards(const char *images, const char *labels, struct mim_tarw *w,
    const char *fmt, int quality, int64_t *count)
{
	struct mim_idx im = {0}, lab = {0};
	int rc = -1;

	if (mim_idx_load(images, &im))
		goto done;
	if (im.ndim != 3) {
		mim_seterr("%s: not an IDX image file (%d dimensions, want 3)", images, im.ndim);
		goto done;
	}
	if (labels && mim_idx_load(labels, &lab))
		goto done;
	if (labels && lab.ndim != 1) {
		mim_seterr("%s: not an IDX label file (%d dimensions, want 1)", labels, lab.ndim);
		goto done;
	}
	if (labels && lab.dim[0] != im.dim[0]) {
		mim_seterr("%s: %lld labels for %lld images", labels, (long long)lab.dim[0],
		    (long long)im.dim[0]);
		goto done;
	}
	int64_t n = im.dim[0], rows = im.dim[1], cols = im.dim[2];
	int width = 6;		/* keys zero-padded to 6 digits, more if needed */
	for (int64_t m = n - 1; m >= 1000000 && width < 20; m /= 10)
		width++;
	for (int64_t i = 0; i < n; i++) {
		struct mim_img g = {(int)cols, (int)rows, 1, im.data + (size_t)(i * rows * cols)};
		void *buf;
		size_t len;
		char key[32], cls[32];
		snprintf(key, sizeof key, "%0*lld", width, (long long)i);
		if (mim_image_encode(&g, fmt, quality, &buf, &len))
			goto done;
		int bad = mim_tarw_add(w, key, fmt, buf, len);
		free(buf);
		if (!bad && lab.data) {
			int k = snprintf(cls, sizeof cls, "%d", lab.data[i]);
			bad = mim_tarw_add(w, key, "cls", cls, (size_t)k);
		}
		if (bad || mim_tarw_end_sample(w))
			goto done;
	}
	*count = n;
	rc = 0;
done:
	mim_idx_free(&im);
	mim_idx_free(&lab);
	return rc;
}
