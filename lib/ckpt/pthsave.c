/* pthsave.c -- write a state dict as a torch.save file (zip format), so
 * that PyTorch code reads it with torch.load(path)['model'], as the
 * official SimMIM fine-tuning code does.
 *
 * The file is the zip layout pth.c reads (top folder "archive"):
 *   archive/data.pkl    a protocol 2 pickle of
 *                       {'model': OrderedDict(name -> tensor)[, 'mim.config': str]}
 *                       each tensor _rebuild_tensor_v2(storage, 0, size,
 *                       stride (row-major), False, OrderedDict()) over the
 *                       persistent id ('storage', torch.<T>Storage, '<i>',
 *                       'cpu', numel)
 *   archive/data/<i>    tensor i's bytes, little-endian
 *   archive/version     "3\n"
 * Entries are stored (not compressed). Only GLOBALs of torch._utils,
 * torch and collections are written. */

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mim/ckpt.h"

struct buf {
	unsigned char *p;
	size_t n, cap;
	int err;
};

static void
put(struct buf *b, const void *s, size_t n)
{
	if (b->err)
		return;
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->n + n)
			cap *= 2;
		unsigned char *np = realloc(b->p, cap);
		if (!np) {
			b->err = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
}

static void
op(struct buf *b, int c)
{
	unsigned char u = (unsigned char)c;
	put(b, &u, 1);
}

static void
str(struct buf *b, const char *s)
{
	size_t n = strlen(s);
	unsigned char h[5] = {'X', (unsigned char)n, (unsigned char)(n >> 8),
		(unsigned char)(n >> 16), (unsigned char)(n >> 24)};
	put(b, h, 5);
	put(b, s, n);
}

/* an int: BININT1 / BININT for small ones, else LONG1 of 8 bytes */
static void
integer(struct buf *b, int64_t v)
{
	if (v >= 0 && v < 256) {
		unsigned char h[2] = {'K', (unsigned char)v};
		put(b, h, 2);
	} else if (v >= INT32_MIN && v <= INT32_MAX) {
		uint32_t u = (uint32_t)(int32_t)v;
		unsigned char h[5] = {'J', (unsigned char)u, (unsigned char)(u >> 8),
			(unsigned char)(u >> 16), (unsigned char)(u >> 24)};
		put(b, h, 5);
	} else {
		uint64_t u = (uint64_t)v;
		unsigned char h[10] = {0x8a, 8};
		for (int i = 0; i < 8; i++)
			h[2 + i] = (unsigned char)(u >> (8 * i));
		put(b, h, 10);
	}
}

static void
global(struct buf *b, const char *mod, const char *name)
{
	op(b, 'c');
	put(b, mod, strlen(mod));
	op(b, '\n');
	put(b, name, strlen(name));
	op(b, '\n');
}

static const char *
storage_class(enum mim_dtype t)
{
	switch (t) {
	case MIM_F32: return "FloatStorage";
	case MIM_F16: return "HalfStorage";
	case MIM_BF16: return "BFloat16Storage";
	case MIM_F64: return "DoubleStorage";
	case MIM_I64: return "LongStorage";
	case MIM_I32: return "IntStorage";
	case MIM_I16: return "ShortStorage";
	case MIM_I8: return "CharStorage";
	case MIM_U8: return "ByteStorage";
	case MIM_BOOL: return "BoolStorage";
	default: return NULL;
	}
}

/* The pickle of {'model': OrderedDict(...)[, 'mim.config': str]}. */
static int
pickle(const struct mim_frame *f, struct buf *b)
{
	op(b, 0x80);
	op(b, 2);
	op(b, '}');
	str(b, "model");
	global(b, "collections", "OrderedDict");
	op(b, ')');
	op(b, 'R');
	for (int i = 0; i < f->n; i++) {
		const struct mim_tensor *t = &f->t[i];
		const char *cls = storage_class(t->dtype);
		char key[16];
		if (!cls)
			return mim_seterr("tensor '%s': no torch storage for %s", t->name,
			    mim_dtype_name(t->dtype));
		if (i % 1000 == 0) {
			if (i)
				op(b, 'u');
			op(b, '(');
		}
		str(b, t->name);
		global(b, "torch._utils", "_rebuild_tensor_v2");
		op(b, '(');
		/* the storage's persistent id */
		op(b, '(');
		str(b, "storage");
		global(b, "torch", cls);
		snprintf(key, sizeof key, "%d", i);
		str(b, key);
		str(b, "cpu");
		integer(b, mim_tensor_numel(t));
		op(b, 't');
		op(b, 'Q');
		integer(b, 0);
		op(b, '(');
		for (int d = 0; d < t->ndim; d++)
			integer(b, t->shape[d]);
		op(b, 't');
		op(b, '(');
		int64_t stride = 1, st[MIM_MAXDIM];
		for (int d = t->ndim - 1; d >= 0; d--) {
			st[d] = stride;
			stride *= t->shape[d];
		}
		for (int d = 0; d < t->ndim; d++)
			integer(b, st[d]);
		op(b, 't');
		op(b, 0x89);	/* requires_grad False */
		global(b, "collections", "OrderedDict");
		op(b, ')');
		op(b, 'R');
		op(b, 't');
		op(b, 'R');
	}
	if (f->n)
		op(b, 'u');
	op(b, 's');		/* 'model' */
	const char *cfg = mim_meta_get(f, "mim.config");
	if (cfg) {
		str(b, "mim.config");
		str(b, cfg);
		op(b, 's');
	}
	op(b, '.');
	return b->err ? mim_seterr("out of memory") : 0;
}

static int
entry(struct archive *a, const char *name, const void *data, size_t n)
{
	struct archive_entry *e = archive_entry_new();

	if (!e)
		return mim_seterr("out of memory");
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, (la_int64_t)n);
	int rc = archive_write_header(a, e);
	archive_entry_free(e);
	if (rc != ARCHIVE_OK)
		return mim_seterr("zip: %s: %s", name, archive_error_string(a));
	const unsigned char *p = data;
	while (n) {
		size_t k = n < ((size_t)1 << 30) ? n : (size_t)1 << 30;
		la_ssize_t w = archive_write_data(a, p, k);
		if (w <= 0)
			return mim_seterr("zip: %s: %s", name, archive_error_string(a));
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int
mim_pth_write(int fd, const struct mim_frame *f)
{
	struct buf b = {0};
	struct archive *a = NULL;
	int rc = -1;

	if (pickle(f, &b) < 0)
		goto done;
	if (!(a = archive_write_new())) {
		mim_seterr("out of memory");
		goto done;
	}
	if (archive_write_set_format_zip(a) != ARCHIVE_OK ||
	    archive_write_zip_set_compression_store(a) != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
	    archive_write_open_fd(a, fd) != ARCHIVE_OK) {
		mim_seterr("zip: %s", archive_error_string(a));
		goto done;
	}
	if (entry(a, "archive/data.pkl", b.p, b.n) < 0)
		goto done;
	for (int i = 0; i < f->n; i++) {
		char name[32];
		snprintf(name, sizeof name, "archive/data/%d", i);
		if (entry(a, name, f->t[i].data, f->t[i].nbytes) < 0)
			goto done;
	}
	if (entry(a, "archive/version", "3\n", 2) < 0)
		goto done;
	if (archive_write_close(a) != ARCHIVE_OK) {
		mim_seterr("zip: %s", archive_error_string(a));
		goto done;
	}
	rc = 0;
done:
	if (a)
		archive_write_free(a);
	free(b.p);
	return rc;
}

int
mim_pth_save(const char *path, const struct mim_frame *f)
{
	size_t n = strlen(path);
	char *tmp = mim_malloc(n + 32), *dir = mim_strdup(path);
	int rc = -1, fd = -1;

	if (!tmp || !dir)
		goto done;
	snprintf(tmp, n + 32, "%s.tmp.%ld", path, (long)getpid());
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
		mim_seterr("%s: %s", tmp, strerror(errno));
		goto done;
	}
	if (mim_pth_write(fd, f) < 0 || (fsync(fd) < 0 && mim_seterr("fsync: %s", strerror(errno)))) {
		mim_preferr("%s", tmp);
		close(fd);
		unlink(tmp);
		goto done;
	}
	if (close(fd) < 0 || rename(tmp, path) < 0) {
		mim_seterr("%s: %s", path, strerror(errno));
		unlink(tmp);
		goto done;
	}
	int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	rc = 0;
done:
	free(tmp);
	free(dir);
	return rc;
}
