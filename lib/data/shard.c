/* shard.c -- samples from WebDataset tar shards (libarchive) and folders.
 *
 * WebDataset rules (webdataset/tariterators.py, base_plus_ext and
 * group_by_keys):
 *   - a member "a/b.c/n01.seg.png" has key "a/b.c/n01" (the path up to the
 *     first dot of the basename) and extension "seg.png", lower-cased;
 *   - a basename without a dot, or starting with one, has no key: skipped;
 *     so are paths with a component matching __*__ (e.g. __key__), and
 *     anything that is not a regular file;
 *   - a sample is a run of adjacent members with the same key; a repeated
 *     extension within one sample is an error in WebDataset, here the
 *     repeat is skipped with a warning.
 * libarchive facts (reference/ecosystem.md section 3): a damaged header
 * gives ARCHIVE_RETRY and reading on resynchronises; truncation gives
 * ARCHIVE_FATAL, which ends the shard; read_concatenated_archives makes
 * `cat a.tar b.tar |` read both. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "mim/stream.h"
#include "mim/data.h"

/* ---- samples ------------------------------------------------------------ */

void
mim_sample_free(struct mim_sample *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->n; i++) {
		free(s->m[i].ext);
		free(s->m[i].data);
	}
	free(s->m);
	free(s->key);
	free(s);
}

struct mim_member *
mim_sample_member(const struct mim_sample *s, const char *ext)
{
	for (int i = 0; i < s->n; i++)
		if (!strcmp(s->m[i].ext, ext))
			return &s->m[i];
	return NULL;
}

static struct mim_sample *
sample_new(const char *key, size_t keylen, const char *url)
{
	struct mim_sample *s = mim_calloc(1, sizeof *s);

	if (!s)
		return NULL;
	if (!(s->key = mim_malloc(keylen + 1))) {
		free(s);
		return NULL;
	}
	memcpy(s->key, key, keylen);
	s->key[keylen] = '\0';
	s->url = url;
	s->label = -1;
	return s;
}

/* Append a member (takes data). 1 if added, 0 if the extension is already
 * there (nothing taken), -1 out of memory. */
static int
sample_add(struct mim_sample *s, const char *ext, uint8_t *data, size_t size)
{
	if (mim_sample_member(s, ext))
		return 0;
	if (s->n == s->cap) {
		int cap = s->cap ? 2 * s->cap : 4;
		struct mim_member *m = mim_realloc(s->m, (size_t)cap * sizeof *m);
		if (!m)
			return -1;
		s->m = m;
		s->cap = cap;
	}
	char *e = mim_strdup(ext);
	if (!e)
		return -1;
	for (char *p = e; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	s->m[s->n++] = (struct mim_member){e, data, size};
	return 1;
}

/* A .cls member: a decimal integer, surrounding white space allowed. */
static int
parse_label(const struct mim_member *m, int64_t *out)
{
	char buf[64];
	size_t n = m->size;
	char *end;

	if (!m->data || n == 0 || n >= sizeof buf)
		return -1;
	memcpy(buf, m->data, n);
	buf[n] = '\0';
	errno = 0;
	long long v = strtoll(buf, &end, 10);
	while (*end && isspace((unsigned char)*end))
		end++;
	if (end == buf || *end || errno)
		return -1;
	*out = v;
	return 0;
}

/* Finish a sample: its label from a .cls member, if any. */
static void
sample_finish(struct mim_sample *s, void (*warn)(void *, const char *), void *ctx,
    struct mim_data_counts *counts)
{
	struct mim_member *c = mim_sample_member(s, "cls");
	int64_t v;

	if (!c || !c->data)
		return;
	if (parse_label(c, &v) == 0) {
		s->label = v;
		s->has_label = 1;
	} else {
		char msg[512];
		snprintf(msg, sizeof msg, "%s: %s.cls: not an integer label, ignored", s->url, s->key);
		if (counts)
			counts->bad_members++;
		if (warn)
			warn(ctx, msg);
	}
}

int
mim_wds_split(const char *path, size_t *keylen, const char **ext)
{
	const char *base = strrchr(path, '/'), *dot, *c;

	base = base ? base + 1 : path;
	dot = strchr(base, '.');
	if (!dot || dot == base)
		return -1;
	/* a component __x__ (re.search("__[^/]*__($|/)")) marks metadata */
	for (c = path; *c;) {
		const char *e = strchr(c, '/');
		size_t L = e ? (size_t)(e - c) : strlen(c);
		if (L >= 4 && c[L - 1] == '_' && c[L - 2] == '_') {
			for (size_t i = 0; i + 4 <= L; i++)
				if (c[i] == '_' && c[i + 1] == '_')
					return -1;
		}
		if (!e)
			break;
		c = e + 1;
	}
	*keylen = (size_t)(dot - path);
	*ext = dot + 1;
	return 0;
}

/* ---- tar shards ----------------------------------------------------------- */

struct mim_tar {
	struct archive *a;
	char *name;
	int fd, ownfd;
	int seekable;		/* a regular file: skip by lseek */
	off_t size;		/* its size */
	int in_header;		/* inside archive_read_next_header */
	la_int64_t hdr_start;	/* the tar stream's position then */
	uint8_t *rbuf;		/* TAR_BLOCK bytes */
	struct mim_sample *cur;	/* sample being collected */
	int done;		/* no more members */
	int failed;		/* ended by an error: err */
	int skip;		/* the current sample is not wanted */
	long nstarted;		/* samples begun */
	long nheaders;		/* member headers read */
	char err[2048];		/* read buffer for members of unknown size */
};

#define TAR_BLOCK (1 << 16)
/* How far the tar stream may go inside one archive_read_next_header: a
 * header, its pax or GNU long-name records and the padding. With
 * read_concatenated_archives, libarchive reads on through end-of-archive
 * (zero) blocks looking for the next archive, all inside that one call:
 * on /dev/zero, for ever. */
#define TAR_HEADER_SPAN ((la_int64_t)64 << 20)

/* libarchive's read callback: the next block of the input, unless a
 * header has been looked for over TAR_HEADER_SPAN bytes. */
static la_ssize_t
tar_read(struct archive *a, void *ctx, const void **buf)
{
	struct mim_tar *t = ctx;

	if (t->in_header && archive_filter_bytes(a, 0) - t->hdr_start > TAR_HEADER_SPAN) {
		archive_set_error(a, EINVAL, "%d MiB of zero blocks and no member header",
		    (int)(TAR_HEADER_SPAN >> 20));
		return -1;
	}
	for (;;) {
		ssize_t n = read(t->fd, t->rbuf, TAR_BLOCK);
		if (n >= 0) {
			*buf = t->rbuf;
			return n;
		}
		if (errno != EINTR) {
			archive_set_error(a, errno, "read error: %s", strerror(errno));
			return -1;
		}
	}
}

/* The skip callback: members of other ranks are passed over by lseek in
 * a file; a pipe is read through (0: libarchive reads and discards), and
 * so is a skip past the end of a file, which then shows as truncation (as
 * in libarchive's own file reader). */
static la_int64_t
tar_skip(struct archive *a, void *ctx, la_int64_t n)
{
	struct mim_tar *t = ctx;
	off_t at;

	(void)a;
	if (!t->seekable || n <= 0)
		return 0;
	if ((at = lseek(t->fd, 0, SEEK_CUR)) < 0 || n > t->size - at ||
	    lseek(t->fd, (off_t)n, SEEK_CUR) < 0) {
		t->seekable = 0;
		return 0;
	}
	return n;
}

struct mim_tar *
mim_tar_open(const char *path)
{
	struct mim_tar *t = mim_calloc(1, sizeof *t);
	struct stat st;
	int rc;

	if (!t)
		return NULL;
	t->fd = -1;
	t->name = mim_strdup(strcmp(path, "-") ? path : "<stdin>");
	t->a = archive_read_new();
	t->rbuf = malloc(TAR_BLOCK);
	if (!t->name || !t->a || !t->rbuf) {
		mim_tar_close(t);
		return mim_seterr("out of memory"), NULL;
	}
	if (!strcmp(path, "-")) {
		t->fd = 0;
	} else if ((t->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		mim_seterr("%s: %s", t->name, strerror(errno));
		mim_tar_close(t);
		return NULL;
	} else {
		t->ownfd = 1;
	}
	t->seekable = fstat(t->fd, &st) == 0 && S_ISREG(st.st_mode);
	t->size = t->seekable ? st.st_size : 0;
	archive_read_support_format_tar(t->a);
	archive_read_support_filter_all(t->a);
	archive_read_set_format_option(t->a, "tar", "read_concatenated_archives", "1");
	archive_read_set_read_callback(t->a, tar_read);
	archive_read_set_skip_callback(t->a, tar_skip);
	archive_read_set_callback_data(t->a, t);
	rc = archive_read_open1(t->a);
	if (rc != ARCHIVE_OK) {
		const char *e = archive_error_string(t->a);
		mim_seterr("%s: %s", t->name, e ? e : "cannot open");
		mim_tar_close(t);
		return NULL;
	}
	return t;
}

const char *
mim_tar_name(const struct mim_tar *t)
{
	return t->name;
}

void
mim_tar_close(struct mim_tar *t)
{
	if (!t)
		return;
	if (t->a)
		archive_read_free(t->a);
	if (t->ownfd)
		close(t->fd);
	free(t->rbuf);
	mim_sample_free(t->cur);
	free(t->name);
	free(t);
}

static void
tar_fail(struct mim_tar *t, const char *what)
{
	const char *e = archive_error_string(t->a);

	t->done = t->failed = 1;
	snprintf(t->err, sizeof t->err, "%s: %s%s%s", t->name, what, e ? ": " : "", e ? e : "");
}

/* Read the current entry's data: 1 with *data and *size set, 0 when the member is
 * damaged and was skipped (warned), -1 when the shard ends (t->err). */
static int
read_member(struct mim_tar *t, struct archive_entry *e, const char *path,
    uint8_t **data, size_t *size, void (*warn)(void *, const char *), void *ctx,
    struct mim_data_counts *counts)
{
	size_t cap = 0, n = 0;
	uint8_t *buf = NULL;
	char msg[1024];

	if (archive_entry_size_is_set(e)) {
		la_int64_t sz = archive_entry_size(e);
		if (sz < 0 || (uint64_t)sz > MIM_MEMBER_MAX) {
			snprintf(msg, sizeof msg, "%s: %s: member of %lld bytes is over the %zu limit, skipped",
			    t->name, path, (long long)sz, MIM_MEMBER_MAX);
			if (archive_read_data_skip(t->a) == ARCHIVE_FATAL) {
				tar_fail(t, "truncated or damaged");
				return -1;
			}
			counts->bad_members++;
			warn(ctx, msg);
			return 0;
		}
		cap = (size_t)sz;
	}
	if (!(buf = malloc(cap ? cap : 1))) {
		snprintf(t->err, sizeof t->err, "%s: %s: out of memory", t->name, path);
		t->done = t->failed = 1;
		return -1;
	}
	for (;;) {
		if (n == cap) {
			if (cap >= MIM_MEMBER_MAX) {
				free(buf);
				snprintf(msg, sizeof msg, "%s: %s: member over the %zu byte limit, skipped",
				    t->name, path, MIM_MEMBER_MAX);
				if (archive_read_data_skip(t->a) == ARCHIVE_FATAL) {
					tar_fail(t, "truncated or damaged");
					return -1;
				}
				counts->bad_members++;
				warn(ctx, msg);
				return 0;
			}
			/* unknown size (or larger than the header said) */
			size_t nc = cap ? 2 * cap : 1 << 16;
			uint8_t *nb = nc <= MIM_MEMBER_MAX ? realloc(buf, nc) : NULL;
			if (!nb) {
				free(buf);
				snprintf(t->err, sizeof t->err, "%s: %s: out of memory", t->name, path);
				t->done = t->failed = 1;
				return -1;
			}
			buf = nb;
			cap = nc;
		}
		la_ssize_t r = archive_read_data(t->a, buf + n, cap - n);
		if (r == 0)
			break;
		if (r > 0) {
			n += (size_t)r;
			continue;
		}
		free(buf);
		if (r == ARCHIVE_FATAL) {
			char what[600];
			snprintf(what, sizeof what, "truncated or damaged in '%s'", path);
			tar_fail(t, what);
			return -1;
		}
		/* ARCHIVE_WARN / ARCHIVE_RETRY: this member is unusable */
		const char *ae = archive_error_string(t->a);
		snprintf(msg, sizeof msg, "%s: %s: damaged member, skipped%s%s", t->name, path,
		    ae ? ": " : "", ae ? ae : "");
		counts->bad_members++;
		warn(ctx, msg);
		return 0;
	}
	*data = buf;
	*size = n;
	return 1;
}

long
mim_tar_count(const struct mim_tar *t)
{
	return t->nstarted;
}

int
mim_tar_next(struct mim_tar *t, struct mim_sample **out,
    int (*want)(void *ctx, long i), void (*warn)(void *ctx, const char *msg),
    void *ctx, struct mim_data_counts *counts)
{
	struct archive_entry *e;
	int retries = 0;
	char msg[1024];

	*out = NULL;
	while (!t->done) {
		t->hdr_start = archive_filter_bytes(t->a, 0);
		t->in_header = 1;
		int r = archive_read_next_header(t->a, &e);
		t->in_header = 0;
		if (r == ARCHIVE_EOF) {
			t->done = 1;
			break;
		}
		if (r == ARCHIVE_RETRY) {
			/* a damaged header: libarchive resynchronises on the
			 * next call, as bsdtar does */
			const char *ae = archive_error_string(t->a);
			if (++retries > 1000) {
				tar_fail(t, "damaged beyond repair");
				break;
			}
			snprintf(msg, sizeof msg, "%s: damaged member header, skipped%s%s", t->name,
			    ae ? ": " : "", ae ? ae : "");
			counts->bad_members++;
			warn(ctx, msg);
			continue;
		}
		if (r == ARCHIVE_FATAL) {
			tar_fail(t, t->nheaders > 0 ? "truncated or damaged" : "not a readable tar archive");
			break;
		}
		retries = 0;
		t->nheaders++;
		const char *path = archive_entry_pathname(e), *ext;
		size_t kl;
		if (archive_entry_filetype(e) != AE_IFREG || !path || mim_wds_split(path, &kl, &ext)) {
			/* not a member of a sample: skipped here, so that the
			 * next header is found within TAR_HEADER_SPAN */
			if (archive_read_data_skip(t->a) == ARCHIVE_FATAL)
				tar_fail(t, "truncated or damaged");
			continue;
		}

		/* a new key closes the current sample */
		struct mim_sample *ready = NULL;
		if (t->cur && (strlen(t->cur->key) != kl || memcmp(t->cur->key, path, kl))) {
			ready = t->cur;
			t->cur = NULL;
		}
		if (!t->cur) {
			if (!(t->cur = sample_new(path, kl, t->name))) {
				mim_sample_free(ready);
				snprintf(t->err, sizeof t->err, "%s: out of memory", t->name);
				t->done = t->failed = 1;
				return mim_seterr("%s", t->err);
			}
			t->cur->seq = t->nstarted;
			t->skip = want && !want(ctx, t->nstarted);
			t->nstarted++;
		}
		uint8_t *data = NULL;
		size_t size = 0;
		if (t->skip) {
			if (archive_read_data_skip(t->a) == ARCHIVE_FATAL) {
				char what[600];
				snprintf(what, sizeof what, "truncated or damaged in '%s'", path);
				tar_fail(t, what);
			}
		} else {
			r = read_member(t, e, path, &data, &size, warn, ctx, counts);
			if (r == 0)
				goto next;
		}
		if (!t->failed) {
			int a = sample_add(t->cur, ext, data, size);
			if (a <= 0)
				free(data);
			if (a < 0) {
				mim_sample_free(ready);
				snprintf(t->err, sizeof t->err, "%s: out of memory", t->name);
				t->done = t->failed = 1;
				return mim_seterr("%s", t->err);
			}
			if (a == 0) {
				snprintf(msg, sizeof msg, "%s: %s: duplicate member in sample '%s', skipped",
				    t->name, path, t->cur->key);
				counts->bad_members++;
				warn(ctx, msg);
			}
		}
next:
		if (ready && ready->n == 0) {
			/* every member of it was damaged */
			mim_sample_free(ready);
			ready = NULL;
		}
		if (ready) {
			sample_finish(ready, warn, ctx, counts);
			*out = ready;
			return 1;
		}
	}
	/* end of the shard: the last sample (its members were read whole),
	 * then the error if the shard ended badly */
	if (t->cur) {
		*out = t->cur;
		t->cur = NULL;
		if ((*out)->n == 0) {
			mim_sample_free(*out);
			*out = NULL;
		} else {
			sample_finish(*out, warn, ctx, counts);
			return 1;
		}
	}
	if (t->failed)
		return mim_seterr("%s", t->err);
	return 0;
}

/* ---- folders -------------------------------------------------------------- */

struct dfile {
	char *rel;		/* path relative to root */
	int cls;		/* class index, -1 if none */
};

struct dsample {
	long first, n;		/* files[first .. first+n) */
};

struct mim_dir {
	char *root;
	struct dfile *f;
	long nf, capf;
	struct dsample *s;
	long ns;
	char **classes;
	int ncls;
};

struct walk {
	struct mim_dir *d;
	dev_t dev[64];
	ino_t ino[64];
	int depth;
};

static int
add_file(struct mim_dir *d, const char *rel, int cls)
{
	if (d->nf == d->capf) {
		long cap = d->capf ? 2 * d->capf : 256;
		struct dfile *f = mim_realloc(d->f, (size_t)cap * sizeof *f);
		if (!f)
			return -1;
		d->f = f;
		d->capf = cap;
	}
	if (!(d->f[d->nf].rel = mim_strdup(rel)))
		return -1;
	d->f[d->nf++].cls = cls;
	return 0;
}

/* Walk root/rel recursively; symlinks are followed, but not into a
 * folder already on the current path (a loop); dot-folders are skipped. */
static int
walk(struct walk *w, const char *rel, int cls)
{
	char path[4096];
	DIR *dp;
	struct dirent *de;
	struct stat st;

	snprintf(path, sizeof path, "%s%s%s", w->d->root, *rel ? "/" : "", rel);
	if (stat(path, &st))
		return mim_seterr("%s: %s", path, strerror(errno));
	for (int i = 0; i < w->depth; i++)
		if (w->dev[i] == st.st_dev && w->ino[i] == st.st_ino)
			return 0;
	if (w->depth == 64)
		return mim_seterr("%s: folders nested too deep", path);
	if (!(dp = opendir(path)))
		return mim_seterr("%s: %s", path, strerror(errno));
	w->dev[w->depth] = st.st_dev;
	w->ino[w->depth] = st.st_ino;
	w->depth++;
	int rc = 0;
	while ((de = readdir(dp))) {
		char sub[4096], full[8200];
		if (de->d_name[0] == '.')
			continue;
		if ((size_t)snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", de->d_name) >= sizeof sub) {
			rc = mim_seterr("%s/%s: path too long", path, de->d_name);
			break;
		}
		snprintf(full, sizeof full, "%s/%s", w->d->root, sub);
		if (stat(full, &st))
			continue;	/* dangling symlink */
		if (S_ISDIR(st.st_mode)) {
			int c = cls;
			if (!*rel) {
				/* a top-level folder: its class */
				c = -1;
				for (int i = 0; i < w->d->ncls; i++)
					if (!strcmp(w->d->classes[i], de->d_name))
						c = i;
			}
			if ((rc = walk(w, sub, c)))
				break;
		} else if (S_ISREG(st.st_mode)) {
			if ((rc = add_file(w->d, sub, cls)))
				break;
		}
	}
	closedir(dp);
	w->depth--;
	return rc;
}

static int
cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
cmpfile(const void *a, const void *b)
{
	return strcmp(((const struct dfile *)a)->rel, ((const struct dfile *)b)->rel);
}

struct mim_dir *
mim_dir_open(const char *root)
{
	struct mim_dir *d = mim_calloc(1, sizeof *d);
	struct walk w = {0};
	DIR *dp;
	struct dirent *de;
	size_t rl = strlen(root);

	if (!d)
		return NULL;
	while (rl > 1 && root[rl - 1] == '/')
		rl--;
	if (!(d->root = mim_malloc(rl + 1)))
		goto fail;
	memcpy(d->root, root, rl);
	d->root[rl] = '\0';

	/* the classes: top-level sub-folders, sorted (torchvision's
	 * find_classes), dot-folders left out */
	if (!(dp = opendir(d->root))) {
		mim_seterr("%s: %s", d->root, strerror(errno));
		goto fail;
	}
	int cap = 0;
	while ((de = readdir(dp))) {
		char full[4096];
		struct stat st;
		if (de->d_name[0] == '.')
			continue;
		snprintf(full, sizeof full, "%s/%s", d->root, de->d_name);
		if (stat(full, &st) || !S_ISDIR(st.st_mode))
			continue;
		if (d->ncls == cap) {
			cap = cap ? 2 * cap : 16;
			char **c = mim_realloc(d->classes, (size_t)cap * sizeof *c);
			if (!c) {
				closedir(dp);
				goto fail;
			}
			d->classes = c;
		}
		if (!(d->classes[d->ncls] = mim_strdup(de->d_name))) {
			closedir(dp);
			goto fail;
		}
		d->ncls++;
	}
	closedir(dp);
	if (d->ncls)
		qsort(d->classes, (size_t)d->ncls, sizeof *d->classes, cmpstr);

	w.d = d;
	if (walk(&w, "", -1))
		goto fail;
	if (d->nf)
		qsort(d->f, (size_t)d->nf, sizeof *d->f, cmpfile);

	/* group adjacent files by key */
	d->s = mim_calloc((size_t)(d->nf ? d->nf : 1), sizeof *d->s);
	if (!d->s)
		goto fail;
	const char *prev = NULL;
	size_t prevlen = 0;
	for (long i = 0; i < d->nf; i++) {
		size_t kl;
		const char *ext;
		if (mim_wds_split(d->f[i].rel, &kl, &ext))
			continue;
		if (prev && kl == prevlen && !memcmp(prev, d->f[i].rel, kl)) {
			/* same key: extend the sample if the file is adjacent */
			struct dsample *s = &d->s[d->ns - 1];
			if (s->first + s->n == i) {
				s->n++;
				continue;
			}
		}
		d->s[d->ns++] = (struct dsample){i, 1};
		prev = d->f[i].rel;
		prevlen = kl;
	}
	return d;
fail:
	mim_dir_close(d);
	return NULL;
}

const char *
mim_dir_name(const struct mim_dir *d)
{
	return d->root;
}

long
mim_dir_count(const struct mim_dir *d)
{
	return d->ns;
}

int
mim_dir_nclasses(const struct mim_dir *d)
{
	return d->ncls;
}

const char *
mim_dir_class(const struct mim_dir *d, int i)
{
	return i >= 0 && i < d->ncls ? d->classes[i] : NULL;
}

static int
read_file(const char *path, uint8_t **data, size_t *size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	if (fd < 0)
		return mim_seterr("%s: %s", path, strerror(errno));
	if (fstat(fd, &st)) {
		close(fd);
		return mim_seterr("%s: %s", path, strerror(errno));
	}
	if ((uint64_t)st.st_size > MIM_MEMBER_MAX) {
		close(fd);
		return mim_seterr("%s: file of %lld bytes is over the %zu limit", path,
		    (long long)st.st_size, MIM_MEMBER_MAX);
	}
	size_t n = (size_t)st.st_size;
	uint8_t *buf = malloc(n ? n : 1);
	if (!buf) {
		close(fd);
		return mim_seterr("%s: out of memory", path);
	}
	long long r = mim_readall(fd, buf, n);
	close(fd);
	if (r < 0 || (size_t)r != n) {
		free(buf);
		if (r >= 0)
			mim_seterr("%s: file shrank while reading", path);
		return mim_preferr("%s", path);
	}
	*data = buf;
	*size = n;
	return 0;
}

int
mim_dir_read(const struct mim_dir *d, long i, struct mim_sample **out)
{
	const struct dsample *ds = &d->s[i];
	const struct dfile *f0 = &d->f[ds->first];
	struct mim_sample *s;
	size_t kl;
	const char *ext;

	*out = NULL;
	mim_wds_split(f0->rel, &kl, &ext);
	if (!(s = sample_new(f0->rel, kl, d->root)))
		return -1;
	for (long j = ds->first; j < ds->first + ds->n; j++) {
		char path[8192];
		uint8_t *data = NULL;
		size_t size = 0;
		mim_wds_split(d->f[j].rel, &kl, &ext);
		snprintf(path, sizeof path, "%s/%s", d->root, d->f[j].rel);
		if (read_file(path, &data, &size)) {
			mim_sample_free(s);
			return -1;
		}
		if (sample_add(s, ext, data, size) <= 0)
			free(data);
	}
	if (f0->cls >= 0) {
		s->label = f0->cls;
		s->has_label = 1;
	}
	sample_finish(s, NULL, NULL, NULL);
	*out = s;
	return 0;
}

void
mim_dir_close(struct mim_dir *d)
{
	if (!d)
		return;
	for (long i = 0; i < d->nf; i++)
		free(d->f[i].rel);
	free(d->f);
	free(d->s);
	for (int i = 0; i < d->ncls; i++)
		free(d->classes[i]);
	free(d->classes);
	free(d->root);
	free(d);
}
