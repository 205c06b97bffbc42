/* pth.c -- read the state dict of a torch.save file, without Python.
 *
 * ZIP FORMAT (torch >= 1.6, the default)
 *
 *   An uncompressed zip whose entries all sit under one top folder, named
 *   after the file or "archive" (never assume which):
 *     <top>/data.pkl      the pickled object, written first
 *     <top>/data/<key>    raw bytes of storage <key>, little-endian
 *     <top>/byteorder     "little" or "big" (torch >= 2.1; absent = little)
 *     <top>/version, <top>/.data/version, <top>/.data/serialization_id
 *   Local headers carry no sizes (flag bit 3, zero CRC and sizes), so sizes
 *   come from the central directory: libarchive's seekable zip reader.
 *
 * LEGACY FORMAT (_use_new_zipfile_serialization=False, torch < 1.6)
 *
 *   Five pickles back to back, then raw storages:
 *     magic      LONG1 0x1950a86a20f9469cfc6c
 *     protocol   1001
 *     sys_info   {'protocol_version', 'little_endian', 'type_sizes'}
 *     object     the pickled object; persistent ids are 6-tuples
 *                ('storage', type, key, location, numel, view | None)
 *     keys       the list of storage keys, in the order they follow
 *   then for each key: numel (i64, little-endian) and numel * element size
 *   bytes. (The older tar layout of torch < 0.4 is not read.)
 *
 * In both, a tensor is _rebuild_tensor_v2(storage, offset, size, stride,
 * ...) with offset and strides in elements. Every storage is checked
 * against the bytes really present and every tensor against its storage
 * (offset + sum((size-1)*stride) < numel, overflow-checked) before a byte is
 * copied. Only storages the state dict uses are read. */

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mim/ckpt.h"

/* LONG1 of 10 bytes: 0x1950a86a20f9469cfc6c, the legacy magic number */
static const unsigned char legacy_magic[] = {
	0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
};

int
mim_ckpt_sniff(const void *buf, size_t n)
{
	const unsigned char *b = buf;

	if (n >= 4 && b[0] == 'P' && b[1] == 'K' && ((b[2] == 3 && b[3] == 4) ||
	    (b[2] == 5 && b[3] == 6)))
		return MIM_FMT_ZIP;
	/* PROTO 2..5, perhaps a FRAME, then the magic number */
	if (n >= 2 + sizeof legacy_magic && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5) {
		size_t at = b[1] >= 4 && n >= 11 + sizeof legacy_magic && b[2] == 0x95 ? 11 : 2;
		if (n - at >= sizeof legacy_magic && memcmp(b + at, legacy_magic, sizeof legacy_magic) == 0)
			return MIM_FMT_LEGACY;
	}
	if (n >= 9) {
		/* safetensors: u64 header length, then JSON starting with '{' */
		size_t k = 8;
		while (k < n && k < 64 && (b[k] == ' ' || b[k] == '\t' || b[k] == '\n' || b[k] == '\r'))
			k++;
		if (k < n && b[k] == '{')
			return MIM_FMT_SAFETENSORS;
	}
	return -1;
}

/* ---- storages ---------------------------------------------------------------- */

/* A storage the state dict needs: its root key, bytes expected (from the
 * first reference) and the bytes found. */
struct need {
	const char *key;
	size_t want;			/* numel * element size of the first reference */
	const unsigned char *data;	/* found bytes (into the input, or own) */
	size_t len;
	unsigned char *own;
};

static int
cmp_need(const void *a, const void *b)
{
	return strcmp(((const struct need *)a)->key, ((const struct need *)b)->key);
}

static struct need *
find_need(struct need *nd, size_t nn, const char *key)
{
	struct need k = {.key = key};

	return bsearch(&k, nd, nn, sizeof *nd, cmp_need);
}

/* Every storage key of a pickle with the dtype and numel of its first id
 * (torch writes a storage once, with the element size of its first use). */
struct skey {
	const char *key;
	size_t es, order;
	int64_t numel;
};

static int
cmp_skey(const void *a, const void *b)
{
	const struct skey *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	return c ? c : x->order < y->order ? -1 : x->order > y->order;
}

static struct skey *
storage_keys(const struct mim_pickle *pk, size_t *nk)
{
	size_t n;
	struct mim_pk *const *st = mim_pickle_storages(pk, &n);
	struct skey *k = mim_calloc(n ? n : 1, sizeof *k);

	*nk = 0;
	if (!k)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		k[i].key = st[i]->u.st->key;
		k[i].es = mim_dtype_size(st[i]->u.st->dtype);
		k[i].numel = st[i]->u.st->numel;
		k[i].order = i;
	}
	qsort(k, n, sizeof *k, cmp_skey);
	size_t u = 0;
	for (size_t i = 0; i < n; i++)
		if (u == 0 || strcmp(k[u - 1].key, k[i].key) != 0)
			k[u++] = k[i];
	*nk = u;
	return k;
}

static const struct skey *
find_skey(const struct skey *k, size_t nk, const char *key)
{
	struct skey x = {.key = key};
	size_t lo = 0, hi = nk;

	/* unique keys: plain bisection on the name */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(k[mid].key, x.key);
		if (c == 0)
			return &k[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The tensors of the state dict and the storages they need. */
struct sd {
	const struct mim_pk **name, **val;	/* parallel: STR key, TENSOR value */
	size_t n;
	struct need *need;
	size_t nneed;
	struct skey *keys;		/* every storage of the pickle */
	size_t nkeys;
};

static void
sd_free(struct sd *s)
{
	for (size_t i = 0; i < s->nneed; i++)
		free(s->need[i].own);
	free(s->need);
	free(s->keys);
	free(s->name);
	free(s->val);
}

static void
summarize(const struct mim_pk *root, struct mim_ckpt_info *info)
{
	size_t n, k = 0;
	struct mim_pk *const *kv = mim_pk_pairs(root, &n);
	char d[128];

	info->summary[0] = 0;
	for (size_t i = 0; i < n && k + 1 < sizeof info->summary; i++) {
		const struct mim_pk *key = kv[2 * i];
		const char *ks = key->kind == MIM_PK_STR ? key->u.s : "?";
		int w = snprintf(info->summary + k, sizeof info->summary - k, "%s%s (%s)",
		    i ? ", " : "", ks, mim_pk_describe(kv[2 * i + 1], d, sizeof d));
		if (w < 0)
			break;
		k += (size_t)w;
	}
	if (k >= sizeof info->summary)
		strcpy(info->summary + sizeof info->summary - 4, "...");
}

/* Find the state dict in the unpickled object and list what it needs. */
static int
find_sd(const struct mim_pickle *pk, struct sd *s, struct mim_ckpt_info *info)
{
	const struct mim_pk *root = mim_pickle_root(pk), *d = NULL;
	const char *where = "top level";
	size_t n;
	char desc[128];

	memset(s, 0, sizeof *s);
	if (!mim_pk_pairs(root, &n))
		return mim_seterr("the file holds a %s, not a dict",
		    mim_pk_describe(root, desc, sizeof desc));
	summarize(root, info);
	static const char *const keys[] = {"model", "state_dict"};
	for (int i = 0; i < 2 && !d; i++) {
		const struct mim_pk *v = mim_pk_get(root, keys[i]);
		if (v && mim_pk_pairs(v, &n)) {
			d = v;
			where = keys[i];
		}
	}
	int top = d == NULL;
	if (top)
		d = root;
	snprintf(info->where, sizeof info->where, "%s", where);
	struct mim_pk *const *kv = mim_pk_pairs(d, &n);
	if (!(s->name = mim_calloc(n ? n : 1, sizeof *s->name)) ||
	    !(s->val = mim_calloc(n ? n : 1, sizeof *s->val)) ||
	    !(s->need = mim_calloc(n ? n : 1, sizeof *s->need)))
		return -1;
	for (size_t i = 0; i < n; i++) {
		const struct mim_pk *k = kv[2 * i], *v = kv[2 * i + 1];
		if (k->kind != MIM_PK_STR || strlen(k->u.s) != k->n) {
			if (top) {
				info->nskipped++;
				continue;
			}
			return mim_seterr("'%s': a key is a %s, not a name", where,
			    mim_pk_describe(k, desc, sizeof desc));
		}
		if (v->kind != MIM_PK_TENSOR) {
			if (top) {
				info->nskipped++;
				continue;
			}
			return mim_seterr("'%s': entry '%s' is a %s, not a tensor", where, k->u.s,
			    mim_pk_describe(v, desc, sizeof desc));
		}
		if (strcmp(k->u.s, "__metadata__") == 0)
			return mim_seterr("a tensor is called '__metadata__'");
		if (s->n == MIM_CKPT_MAXTENSORS)
			return mim_seterr("more than %d tensors", MIM_CKPT_MAXTENSORS);
		s->name[s->n] = k;
		s->val[s->n] = v;
		s->n++;
		const struct mim_pk_storage *st = v->u.t->storage->u.st;
		s->need[s->nneed].key = st->key;
		s->need[s->nneed].want = (size_t)-1;
		s->nneed++;
	}
	if (s->n == 0)
		return mim_seterr("no tensors found (%s)", info->summary);
	/* unique keys, sorted; the byte size comes from the first reference */
	qsort(s->need, s->nneed, sizeof *s->need, cmp_need);
	size_t u = 0;
	for (size_t i = 0; i < s->nneed; i++)
		if (u == 0 || strcmp(s->need[u - 1].key, s->need[i].key) != 0)
			s->need[u++] = s->need[i];
	s->nneed = u;
	if (!(s->keys = storage_keys(pk, &s->nkeys)))
		return -1;
	for (size_t i = 0; i < s->nneed; i++) {
		const struct skey *k = find_skey(s->keys, s->nkeys, s->need[i].key);
		if ((uint64_t)k->numel > ((uint64_t)1 << 62) / k->es)
			return mim_seterr("storage '%s': %lld elements is too many", k->key,
			    (long long)k->numel);
		s->need[i].want = (size_t)k->numel * k->es;
	}
	info->ntensors = (int)s->n;
	return 0;
}

/* ---- tensors ----------------------------------------------------------------- */

static void
byteswap(unsigned char *p, size_t n, size_t es)
{
	for (size_t i = 0; i + es <= n; i += es)
		for (size_t a = 0, b = es - 1; a < b; a++, b--) {
			unsigned char t = p[i + a];
			p[i + a] = p[i + b];
			p[i + b] = t;
		}
}

/* Copy tensor t (named name) out of its storage bytes into out. */
static int
gather(const char *name, const struct mim_pk_tensor *t, const struct need *nd, int swap,
    unsigned char *out)
{
	const struct mim_pk_storage *st = t->storage->u.st;
	size_t ses = mim_dtype_size(st->dtype), es = mim_dtype_size(t->dtype);
	/* the view's bytes, clipped to the bytes really there */
	uint64_t vb = (uint64_t)st->view_off * ses;
	if (vb > nd->len)
		return mim_seterr("tensor '%s': storage view starts past the end of storage '%s'",
		    name, st->key);
	uint64_t avail = nd->len - vb, vlen = (uint64_t)st->view_numel * ses;
	if (vlen < avail)
		avail = vlen;
	const unsigned char *base = nd->data + vb;

	int64_t maxi = t->offset;
	int empty = 0;
	if (t->offset < 0)
		return mim_seterr("tensor '%s': negative storage offset", name);
	for (int i = 0; i < t->ndim; i++) {
		if (t->size[i] < 0 || t->stride[i] < 0)
			return mim_seterr("tensor '%s': negative size or stride", name);
		empty |= t->size[i] == 0;
	}
	if (empty)
		return 0;
	for (int i = 0; i < t->ndim; i++) {
		int64_t sz = t->size[i] - 1;
		if (t->stride[i] && sz > (INT64_MAX / 4 - maxi) / t->stride[i])
			return mim_seterr("tensor '%s': size and stride overflow", name);
		maxi += sz * t->stride[i];
	}
	if ((uint64_t)maxi >= avail / es)
		return mim_seterr("tensor '%s': storage offset %lld and strides reach element %lld, "
		    "past the end of storage '%s' (%llu elements)", name, (long long)t->offset,
		    (long long)maxi, st->key, (unsigned long long)(avail / es));

	int64_t total = 1;
	for (int i = 0; i < t->ndim; i++)
		total *= t->size[i];	/* bounded: checked by the caller's shape_bytes */
	/* row-major contiguous (dims of size 1 may carry any stride)? */
	int contig = 1;
	int64_t want = 1;
	for (int i = t->ndim - 1; i >= 0; i--) {
		if (t->size[i] != 1 && t->stride[i] != want)
			contig = 0;
		want *= t->size[i];
	}
	if (contig) {
		memcpy(out, base + (size_t)t->offset * es, (size_t)total * es);
	} else {
		int64_t idx[MIM_MAXDIM] = {0};
		int64_t off = t->offset;
		for (int64_t k = 0; k < total; k++) {
			memcpy(out + (size_t)k * es, base + (size_t)off * es, es);
			for (int d = t->ndim - 1; d >= 0; d--) {
				if (++idx[d] < t->size[d]) {
					off += t->stride[d];
					break;
				}
				off -= (t->size[d] - 1) * t->stride[d];
				idx[d] = 0;
			}
		}
	}
	if (swap && es > 1)
		byteswap(out, (size_t)total * es, es);
	return 0;
}

static struct mim_frame *build_(const struct sd *s, int swap);

/* The frame of the state dict, once every needed storage has its bytes;
 * a top-level 'mim.config' str (written by mim_pth_write) as metadata. */
static struct mim_frame *
build(const struct sd *s, const struct mim_pickle *pk, int swap)
{
	struct mim_frame *f = build_(s, swap);
	const struct mim_pk *c = f ? mim_pk_get(mim_pickle_root(pk), "mim.config") : NULL;

	if (c && c->kind == MIM_PK_STR && strlen(c->u.s) == c->n &&
	    mim_meta_set(f, "mim.config", c->u.s) < 0) {
		mim_frame_free(f);
		return NULL;
	}
	return f;
}

static struct mim_frame *
build_(const struct sd *s, int swap)
{
	struct mim_frame *f = mim_frame_new();
	uint64_t have = 0, made = 0;

	if (!f)
		return NULL;
	for (size_t i = 0; i < s->nneed; i++)
		have += s->need[i].len;
	for (size_t i = 0; i < s->n; i++) {
		const char *name = s->name[i]->u.s;
		const struct mim_pk_tensor *t = s->val[i]->u.t;
		int64_t sz = (int64_t)mim_dtype_size(t->dtype);
		for (int d = 0; d < t->ndim; d++) {
			if (t->size[d] < 0 || (t->size[d] && sz > ((int64_t)1 << 62) / t->size[d])) {
				mim_seterr("tensor '%s': shape too large", name);
				goto fail;
			}
			sz *= t->size[d];
		}
		/* aliasing views could otherwise blow up the output */
		made += (uint64_t)sz;
		if (made > MIM_CKPT_ALIAS * have + ((uint64_t)64 << 20)) {
			mim_seterr("tensors add up to more than %d times their storages' bytes",
			    MIM_CKPT_ALIAS);
			goto fail;
		}
		struct need *nd = find_need(s->need, s->nneed, t->storage->u.st->key);
		struct mim_tensor *mt = mim_frame_add(f, name, t->dtype, t->ndim, t->size, NULL);
		if (!mt || gather(name, t, nd, swap, mt->data) < 0)
			goto fail;
	}
	return f;
fail:
	mim_frame_free(f);
	return NULL;
}

/* ---- zip --------------------------------------------------------------------- */

static char *
dupn(const char *s, size_t n)
{
	char *r = mim_malloc(n + 1);

	if (r) {
		memcpy(r, s, n);
		r[n] = 0;
	}
	return r;
}

static struct archive *
zip_open(const void *buf, size_t n)
{
	struct archive *a = archive_read_new();

	if (!a) {
		mim_seterr("out of memory");
		return NULL;
	}
	archive_read_support_format_zip_seekable(a);
	if (archive_read_open_memory(a, buf, n) != ARCHIVE_OK) {
		const char *e = archive_error_string(a);
		mim_seterr("truncated or damaged zip archive (%s)", e ? e : "unreadable");
		archive_read_free(a);
		return NULL;
	}
	return a;
}

static int
zip_err(struct archive *a, const char *what)
{
	const char *e = archive_error_string(a);
	return mim_seterr("zip: %s: %s", what, e ? e : "unreadable");
}

/* The part of an entry name after the top folder, or NULL. */
static const char *
inner(const char *path)
{
	const char *s = path ? strchr(path, '/') : NULL;
	return s && s != path ? s + 1 : NULL;
}

/* Read the current entry: exactly `want` bytes (the central directory's
 * size must agree), into *out (malloc'd). *budget is the decompressed
 * bytes still allowed; it shrinks. */
static int
zip_read(struct archive *a, struct archive_entry *e, const char *name, size_t want,
    unsigned char **out, uint64_t *budget)
{
	if (!archive_entry_size_is_set(e))
		return mim_seterr("zip: %s: no size in the central directory", name);
	int64_t es = archive_entry_size(e);
	if (es < 0 || (uint64_t)es != want)
		return mim_seterr("zip: %s: %lld bytes, the pickle says %zu", name, (long long)es,
		    want);
	if (want > *budget)
		return mim_seterr("zip: %s: %zu bytes, more than the archive can hold", name, want);
	unsigned char *buf = mim_malloc(want ? want : 1);
	size_t got = 0;
	if (!buf)
		return -1;
	for (;;) {
		unsigned char tmp[1];
		la_ssize_t r = got < want ? archive_read_data(a, buf + got, want - got) :
		    archive_read_data(a, tmp, sizeof tmp);
		if (r < 0) {
			free(buf);
			return zip_err(a, name);
		}
		if (r == 0)
			break;
		if (got >= want) {
			free(buf);
			return mim_seterr("zip: %s: more data than its size", name);
		}
		got += (size_t)r;
	}
	if (got != want) {
		free(buf);
		return mim_seterr("zip: %s: truncated (%zu of %zu bytes)", name, got, want);
	}
	*budget -= want;
	*out = buf;
	return 0;
}

static struct mim_frame *
zip_parse(const void *buf, size_t n, struct mim_ckpt_info *info)
{
	struct archive *a = NULL;
	struct archive_entry *e;
	struct mim_pickle *pk = NULL;
	struct mim_frame *f = NULL;
	unsigned char *pkl = NULL;
	char *top = NULL;
	struct sd s = {0};
	int r, big = 0;
	/* stored entries cannot exceed the archive; allow deflate some room */
	uint64_t budget = 64 * (uint64_t)n + ((uint64_t)1 << 20);

	/* pass 1: data.pkl (and byteorder) */
	if (!(a = zip_open(buf, n)))
		return NULL;
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		const char *path = archive_entry_pathname(e), *in = inner(path);
		if (!in)
			continue;
		if (strcmp(in, "data.pkl") == 0 && !pkl) {
			int64_t sz = archive_entry_size(e);
			if (!archive_entry_size_is_set(e) || sz < 0 || (uint64_t)sz > MIM_PICKLE_MAXLEN) {
				mim_seterr("zip: %s: missing or too large size", path);
				goto done;
			}
			if (zip_read(a, e, path, (size_t)sz, &pkl, &budget) < 0)
				goto done;
			if (!(pk = mim_unpickle(pkl, (size_t)sz, NULL))) {
				mim_preferr("%s", path);
				goto done;
			}
			if (!(top = dupn(path, (size_t)(in - path))))
				goto done;
		} else if (strcmp(in, "byteorder") == 0) {
			unsigned char *bo = NULL;
			int64_t sz = archive_entry_size(e);
			if (sz < 0 || sz > 16 || zip_read(a, e, path, (size_t)sz, &bo, &budget) < 0) {
				free(bo);
				mim_seterr("zip: %s: unreadable", path);
				goto done;
			}
			big = sz == 3 && memcmp(bo, "big", 3) == 0;
			if (!big && !(sz == 6 && memcmp(bo, "little", 6) == 0)) {
				free(bo);
				mim_seterr("zip: %s: neither 'little' nor 'big'", path);
				goto done;
			}
			free(bo);
		}
	}
	if (r != ARCHIVE_EOF) {
		zip_err(a, "reading the directory");
		goto done;
	}
	if (!pk) {
		mim_seterr("zip: no <folder>/data.pkl: not a torch.save file");
		goto done;
	}
	archive_read_free(a);
	a = NULL;
	if (find_sd(pk, &s, info) < 0)
		goto done;

	/* pass 2: the storages the state dict uses */
	if (!(a = zip_open(buf, n)))
		goto done;
	size_t found = 0;
	size_t tl = strlen(top);
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		const char *path = archive_entry_pathname(e);
		if (!path || strncmp(path, top, tl) != 0 || strncmp(path + tl, "data/", 5) != 0)
			continue;
		struct need *nd = find_need(s.need, s.nneed, path + tl + 5);
		if (!nd || nd->data)
			continue;
		if (zip_read(a, e, path, nd->want, &nd->own, &budget) < 0)
			goto done;
		nd->data = nd->own;
		nd->len = nd->want;
		found++;
	}
	if (r != ARCHIVE_EOF) {
		zip_err(a, "reading entries");
		goto done;
	}
	for (size_t i = 0; i < s.nneed; i++)
		if (!s.need[i].data) {
			mim_seterr("zip: storage %sdata/%s is missing", top, s.need[i].key);
			goto done;
		}
	f = build(&s, pk, big);
done:
	if (a)
		archive_read_free(a);
	sd_free(&s);
	mim_pickle_free(pk);
	free(pkl);
	free(top);
	return f;
}

/* ---- legacy ------------------------------------------------------------------ */

static struct mim_frame *
legacy_parse(const unsigned char *b, size_t n, struct mim_ckpt_info *info)
{
	struct mim_pickle *pk[5] = {0};
	struct mim_frame *f = NULL;
	struct sd s = {0};
	size_t pos = 0, used;
	static const char *const what[5] = {"magic number", "protocol version", "system info",
		"object", "storage keys"};

	for (int i = 0; i < 5; i++) {
		if (!(pk[i] = mim_unpickle(b + pos, n - pos, &used))) {
			mim_preferr("legacy %s at offset %zu", what[i], pos);
			goto done;
		}
		pos += used;
	}
	const struct mim_pk *magic = mim_pickle_root(pk[0]), *proto = mim_pickle_root(pk[1]);
	if (magic->kind != MIM_PK_BIGINT || magic->n != 10 ||
	    memcmp(magic->u.s, legacy_magic + 2, 10) != 0) {
		mim_seterr("legacy: bad magic number");
		goto done;
	}
	if (proto->kind != MIM_PK_INT || proto->u.i != 1001) {
		mim_seterr("legacy: protocol version is not 1001");
		goto done;
	}
	const struct mim_pk *le = mim_pk_get(mim_pickle_root(pk[2]), "little_endian");
	int big = le && le->kind == MIM_PK_BOOL && !le->u.i;
	if (find_sd(pk[3], &s, info) < 0)
		goto done;
	const struct mim_pk *keys = mim_pickle_root(pk[4]);
	if (keys->kind != MIM_PK_LIST) {
		mim_seterr("legacy: the storage keys are not a list");
		goto done;
	}
	/* storages follow in key order: numel (i64 LE), then the bytes. The
	 * element size is that of the storage's type in the object pickle. */
	for (size_t i = 0; i < keys->n; i++) {
		const struct mim_pk *k = keys->u.v[i];
		if (k->kind != MIM_PK_STR) {
			mim_seterr("legacy: a storage key is not a string");
			goto done;
		}
		if (n - pos < 8) {
			mim_seterr("legacy: truncated at storage '%s'", k->u.s);
			goto done;
		}
		uint64_t numel = 0;
		for (int j = 7; j >= 0; j--)
			numel = numel << 8 | b[pos + j];
		pos += 8;
		const struct skey *sk = find_skey(s.keys, s.nkeys, k->u.s);
		if (!sk) {
			mim_seterr("legacy: storage '%s' is not in the object", k->u.s);
			goto done;
		}
		size_t es = sk->es;
		if (numel != (uint64_t)sk->numel) {
			mim_seterr("legacy: storage '%s' has %llu elements, the object says %lld",
			    k->u.s, (unsigned long long)numel, (long long)sk->numel);
			goto done;
		}
		struct need *nd = find_need(s.need, s.nneed, k->u.s);
		if (numel > (n - pos) / es) {
			mim_seterr("legacy: storage '%s' runs past the end of the file", k->u.s);
			goto done;
		}
		if (nd && !nd->data) {
			nd->data = b + pos;
			nd->len = (size_t)numel * es;
		}
		pos += (size_t)numel * es;
	}
	for (size_t i = 0; i < s.nneed; i++)
		if (!s.need[i].data) {
			mim_seterr("legacy: storage '%s' is missing", s.need[i].key);
			goto done;
		}
	f = build(&s, pk[3], big);
done:
	sd_free(&s);
	for (int i = 0; i < 5; i++)
		mim_pickle_free(pk[i]);
	return f;
}

struct mim_frame *
mim_pth_parse(const void *buf, size_t n, const char *name, struct mim_ckpt_info *info)
{
	struct mim_ckpt_info dummy;
	struct mim_frame *f = NULL;

	if (!info)
		info = &dummy;
	memset(info, 0, sizeof *info);
	switch (mim_ckpt_sniff(buf, n)) {
	case MIM_FMT_ZIP:
		info->format = MIM_FMT_ZIP;
		f = zip_parse(buf, n, info);
		break;
	case MIM_FMT_LEGACY:
		info->format = MIM_FMT_LEGACY;
		f = legacy_parse(buf, n, info);
		break;
	default:
		if (n > 262 && memcmp((const char *)buf + 257, "ustar", 5) == 0)
			mim_seterr("a tar archive: the legacy format of PyTorch < 0.4 is not supported");
		else
			mim_seterr("not a torch.save file (neither zip nor legacy format)");
		break;
	}
	if (!f)
		mim_preferr("%s", name);
	return f;
}

/* ---- files ------------------------------------------------------------------- */

/* The bytes of path: mapped if it is a regular file, else read (stdin
 * and pipes). *map tells which to undo. */
static void *
slurp(const char *path, size_t *n, int *map)
{
	int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	void *p = NULL;

	*map = 0;
	if (fd < 0) {
		mim_seterr("%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		mim_seterr("%s: %s", path, strerror(errno));
		goto done;
	}
	if (S_ISDIR(st.st_mode)) {
		mim_seterr("%s: is a directory", path);
		goto done;
	}
	if (S_ISREG(st.st_mode)) {
		if (st.st_size == 0) {
			mim_seterr("%s: empty file", path);
			goto done;
		}
		p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (p == MAP_FAILED) {
			mim_seterr("%s: %s", path, strerror(errno));
			p = NULL;
			goto done;
		}
		*n = (size_t)st.st_size;
		*map = 1;
		goto done;
	}
	size_t cap = 1 << 16, len = 0;
	unsigned char *b = mim_malloc(cap);
	while (b) {
		if (len == cap) {
			unsigned char *nb = mim_realloc(b, cap *= 2);
			if (!nb) {
				free(b);
				b = NULL;
				break;
			}
			b = nb;
		}
		long long r = mim_readall(fd, b + len, cap - len);
		if (r < 0) {
			mim_preferr("%s", path);
			free(b);
			b = NULL;
			break;
		}
		len += (size_t)r;
		if (len < cap)
			break;
	}
	if (b && len == 0) {
		mim_seterr("%s: empty input", path);
		free(b);
		b = NULL;
	}
	p = b;
	*n = len;
done:
	if (fd != STDIN_FILENO)
		close(fd);
	return p;
}

struct mim_frame *
mim_ckpt_load(const char *path, struct mim_ckpt_info *info)
{
	struct mim_ckpt_info dummy;
	const char *name = strcmp(path, "-") == 0 ? "<stdin>" : path;
	size_t n = 0;
	int map;
	void *buf = slurp(path, &n, &map);
	struct mim_frame *f = NULL;

	if (!info)
		info = &dummy;
	memset(info, 0, sizeof *info);
	if (!buf)
		return NULL;
	if (mim_ckpt_sniff(buf, n) == MIM_FMT_SAFETENSORS) {
		info->format = MIM_FMT_SAFETENSORS;
		snprintf(info->where, sizeof info->where, "top level");
		if ((f = mim_frame_parse(buf, n, name)))
			info->ntensors = f->n;
	} else {
		f = mim_pth_parse(buf, n, name, info);
	}
	if (map)
		munmap(buf, n);
	else
		free(buf);
	return f;
}
