/* tarout.c -- write samples as WebDataset tar shards (libarchive).
 *
 * Shard i is the output pattern formatted with i (e.g. 'prep-%06d.tar'),
 * holding at most per_shard samples, members key.ext in the order added.
 * Members are POSIX ustar (pax headers only for long names) with mode
 * 0644, owner 0 and mtime 0, so the same samples give the same bytes. A
 * shard is written to "<name>.tmp.XXXXXX" in the same folder, fsync'd and
 * renamed into place when complete: a reader never sees half a shard. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "mim/stream.h"
#include "mim/data.h"

int
mim_pattern_check(const char *p)
{
	int conv = 0;

	if (!*p)
		return mim_seterr("empty output pattern");
	for (; *p; p++) {
		if (*p != '%')
			continue;
		if (p[1] == '%') {
			p++;
			continue;
		}
		p++;
		if (*p == '0')
			p++;
		int digits = 0;
		while (*p >= '0' && *p <= '9')
			p++, digits++;
		if (*p != 'd' || digits > 2)
			return mim_seterr("output pattern: only %%d, %%Nd, %%0Nd and %%%% are allowed");
		conv++;
	}
	if (conv != 1)
		return mim_seterr("output pattern needs exactly one %%d (e.g. 'out-%%06d.tar')");
	return 0;
}

int
mim_pattern_format(char *buf, size_t n, const char *p, long i)
{
	size_t k = 0;

	for (; *p; p++) {
		char piece[64];
		const char *add = piece;
		size_t len;
		if (*p != '%') {
			piece[0] = *p;
			len = 1;
		} else if (p[1] == '%') {
			piece[0] = '%';
			len = 1;
			p++;
		} else {
			int zero = 0, width = 0;
			p++;
			if (*p == '0')
				zero = 1, p++;
			while (*p >= '0' && *p <= '9')
				width = width * 10 + (*p++ - '0');
			if (*p != 'd')
				return mim_seterr("bad output pattern");
			len = (size_t)snprintf(piece, sizeof piece, zero ? "%0*ld" : "%*ld", width, i);
		}
		if (k + len >= n)
			return mim_seterr("output name too long");
		memcpy(buf + k, add, len);
		k += len;
	}
	buf[k] = '\0';
	return 0;
}

struct mim_tarw {
	char *pattern;
	long per_shard;
	long shard;		/* index of the open (or next) shard */
	long nsamples;		/* complete samples in the open shard */
	struct archive *a;
	int fd;
	char name[4096], tmp[4200];
	int failed;
};

struct mim_tarw *
mim_tarw_open(const char *pattern, long per_shard)
{
	struct mim_tarw *w;

	if (mim_pattern_check(pattern))
		return NULL;
	if (per_shard < 1)
		return mim_seterr("samples per shard %ld: want >= 1", per_shard), NULL;
	if (!(w = mim_calloc(1, sizeof *w)))
		return NULL;
	if (!(w->pattern = mim_strdup(pattern))) {
		free(w);
		return NULL;
	}
	w->per_shard = per_shard;
	w->fd = -1;
	return w;
}

long
mim_tarw_shards(const struct mim_tarw *w)
{
	return w->shard + (w->a ? 1 : 0);
}

static void
discard(struct mim_tarw *w)
{
	if (w->a) {
		archive_write_free(w->a);
		w->a = NULL;
	}
	if (w->fd >= 0) {
		close(w->fd);
		w->fd = -1;
		unlink(w->tmp);
	}
}

/* libarchive's error as ours, "shard: reason": its fd writer says only
 * "Write error" and keeps the reason in errno (ENOSPC, EFBIG, EIO) */
static int
archive_err(struct mim_tarw *w)
{
	const char *m = archive_error_string(w->a);
	int en = archive_errno(w->a);

	if (en > 0 && (!m || !strcmp(m, "Write error")))
		return mim_seterr("%s: %s", w->name, strerror(en));
	if (en > 0)
		return mim_seterr("%s: %s: %s", w->name, m, strerror(en));
	return mim_seterr("%s: %s", w->name, m ? m : "write error");
}

static int
start_shard(struct mim_tarw *w)
{
	if (mim_pattern_format(w->name, sizeof w->name, w->pattern, w->shard))
		return -1;
	snprintf(w->tmp, sizeof w->tmp, "%s.tmp.XXXXXX", w->name);
	if ((w->fd = mkstemp(w->tmp)) < 0)
		return mim_seterr("%s: %s", w->name, strerror(errno));
	fchmod(w->fd, 0644);
	if (!(w->a = archive_write_new()) ||
	    archive_write_set_format_pax_restricted(w->a) != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(w->a, 1) != ARCHIVE_OK ||
	    archive_write_open_fd(w->a, w->fd) != ARCHIVE_OK) {
		mim_seterr("%s: %s", w->name, w->a ? archive_error_string(w->a) : "out of memory");
		discard(w);
		return -1;
	}
	w->nsamples = 0;
	return 0;
}

static int
finish_shard(struct mim_tarw *w)
{
	int rc = 0;

	if (!w->a)
		return 0;
	if (archive_write_close(w->a) != ARCHIVE_OK)
		rc = archive_err(w);
	archive_write_free(w->a);
	w->a = NULL;
	if (!rc && fsync(w->fd))
		rc = mim_seterr("%s: %s", w->name, strerror(errno));
	if (close(w->fd) && !rc)
		rc = mim_seterr("%s: %s", w->name, strerror(errno));
	w->fd = -1;
	if (!rc && rename(w->tmp, w->name))
		rc = mim_seterr("%s: %s", w->name, strerror(errno));
	if (rc) {
		unlink(w->tmp);
		return -1;
	}
	w->shard++;
	return 0;
}

int
mim_tarw_add(struct mim_tarw *w, const char *key, const char *ext, const void *data, size_t n)
{
	struct archive_entry *e;
	char path[8192];

	if (w->failed)
		return mim_seterr("%s: an earlier write failed", w->name);
	if (!w->a && start_shard(w)) {
		w->failed = 1;
		return -1;
	}
	if ((size_t)snprintf(path, sizeof path, "%s.%s", key, ext) >= sizeof path) {
		w->failed = 1;
		return mim_seterr("%s: member name too long", w->name);
	}
	if (!(e = archive_entry_new())) {
		w->failed = 1;
		return mim_seterr("out of memory");
	}
	archive_entry_set_pathname(e, path);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, (la_int64_t)n);
	archive_entry_set_mtime(e, 0, 0);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	int rc = archive_write_header(w->a, e);
	archive_entry_free(e);
	if (rc != ARCHIVE_OK || (n && archive_write_data(w->a, data, n) != (la_ssize_t)n)) {
		w->failed = 1;
		return archive_err(w);
	}
	return 0;
}

int
mim_tarw_end_sample(struct mim_tarw *w)
{
	if (w->failed)
		return -1;
	if (!w->a)
		return 0;
	if (++w->nsamples >= w->per_shard && finish_shard(w)) {
		w->failed = 1;
		return -1;
	}
	return 0;
}

int
mim_tarw_close(struct mim_tarw *w)
{
	int rc = 0;

	if (!w)
		return 0;
	if (w->failed) {
		discard(w);
		rc = -1;
	} else if (w->a && w->nsamples == 0) {
		discard(w);
	} else {
		rc = finish_shard(w);
		discard(w);
	}
	free(w->pattern);
	free(w);
	return rc;
}
