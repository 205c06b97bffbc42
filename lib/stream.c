/* stream.c -- frames of the mim stream: safetensors records back to back.
 *
 * FRAME LAYOUT (all integers little-endian)
 *
 *   <N: u64> <header: N bytes of UTF-8 JSON> <data: L bytes>
 *
 * header  A JSON object. Each member but "__metadata__" describes a tensor:
 *           "name": {"dtype":"F32", "shape":[8,3,192,192], "data_offsets":[B,E]}
 *         B and E are byte offsets into the data section, E one past the end.
 *         "__metadata__", if present, maps strings to strings. JSON whitespace
 *         may pad the header on either side; the writer pads with spaces so
 *         that 8+N is a multiple of 8 and sorts tensors by alignment, then name.
 * data    L = the largest E. Sorted by B, the tensors tile [0,L) exactly: the
 *         first starts at 0, each starts where the previous ended, and E-B is
 *         numel * element size. No gaps, no overlaps.
 *
 * A stream ends cleanly at EOF on a frame boundary; EOF anywhere inside a
 * frame is an error. Each frame cut out of a stream is a valid .safetensors
 * file. Validation happens before any byte of data is trusted, and the data
 * buffer grows with what actually arrives, so a lying header cannot make us
 * allocate more than the input holds. */

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "mim/stream.h"

/* ---- dtypes and tensors -------------------------------------------------- */

static const struct {
	const char *name;
	size_t size;
} dtypes[MIM_NDTYPE] = {
	[MIM_F32] = {"F32", 4}, [MIM_F16] = {"F16", 2}, [MIM_BF16] = {"BF16", 2},
	[MIM_F64] = {"F64", 8}, [MIM_U8] = {"U8", 1}, [MIM_I8] = {"I8", 1},
	[MIM_I16] = {"I16", 2}, [MIM_I32] = {"I32", 4}, [MIM_I64] = {"I64", 8},
	[MIM_BOOL] = {"BOOL", 1},
};

int
mim_dtype_parse(const char *s)
{
	for (int i = 0; i < MIM_NDTYPE; i++)
		if (strcmp(s, dtypes[i].name) == 0)
			return i;
	return -1;
}

const char *
mim_dtype_name(enum mim_dtype t)
{
	return (unsigned)t < MIM_NDTYPE ? dtypes[t].name : "?";
}

size_t
mim_dtype_size(enum mim_dtype t)
{
	return (unsigned)t < MIM_NDTYPE ? dtypes[t].size : 0;
}

int64_t
mim_tensor_numel(const struct mim_tensor *t)
{
	int64_t n = 1;

	for (int i = 0; i < t->ndim; i++)
		n *= t->shape[i];
	return n;
}

double
mim_tensor_get(const struct mim_tensor *t, int64_t i)
{
	const void *p = t->data;

	switch (t->dtype) {
	case MIM_F32: return ((const float *)p)[i];
	case MIM_F16: return mim_f16_to_f32(((const uint16_t *)p)[i]);
	case MIM_BF16: return mim_bf16_to_f32(((const uint16_t *)p)[i]);
	case MIM_F64: return ((const double *)p)[i];
	case MIM_U8: return ((const uint8_t *)p)[i];
	case MIM_I8: return ((const int8_t *)p)[i];
	case MIM_I16: return ((const int16_t *)p)[i];
	case MIM_I32: return ((const int32_t *)p)[i];
	case MIM_I64: return (double)((const int64_t *)p)[i];
	case MIM_BOOL: return ((const uint8_t *)p)[i] != 0;
	default: return NAN;
	}
}

char *
mim_shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
	size_t k = 0;

	k += snprintf(buf + k, n - k, "[");
	for (int i = 0; i < ndim && k < n; i++)
		k += snprintf(buf + k, n - k, "%s%lld", i ? "," : "",
		    (long long)shape[i]);
	if (k < n)
		snprintf(buf + k, n - k, "]");
	return buf;
}

/* numel * size of a shape, or -1 if it overflows 2^62 bytes. */
static int64_t
shape_bytes(enum mim_dtype dt, int ndim, const int64_t *shape)
{
	int64_t n = (int64_t)mim_dtype_size(dt);

	for (int i = 0; i < ndim; i++) {
		if (shape[i] < 0)
			return -1;
		if (shape[i] && n > ((int64_t)1 << 62) / shape[i])
			return -1;
		n *= shape[i];
	}
	return n;
}

/* ---- frames ------------------------------------------------------------- */

struct mim_frame *
mim_frame_new(void)
{
	return mim_calloc(1, sizeof(struct mim_frame));
}

static void
tensor_clear(struct mim_tensor *t)
{
	free(t->name);
	if (t->owned)
		free(t->data);
}

void
mim_frame_free(struct mim_frame *f)
{
	if (!f)
		return;
	for (int i = 0; i < f->n; i++)
		tensor_clear(&f->t[i]);
	for (int i = 0; i < f->nmeta; i++) {
		free(f->mkey[i]);
		free(f->mval[i]);
	}
	free(f->t);
	free(f->mkey);
	free(f->mval);
	free(f->buf);
	free(f);
}

struct mim_tensor *
mim_frame_get(const struct mim_frame *f, const char *name)
{
	for (int i = 0; i < f->n; i++)
		if (strcmp(f->t[i].name, name) == 0)
			return &f->t[i];
	return NULL;
}

int
mim_frame_remove(struct mim_frame *f, const char *name)
{
	struct mim_tensor *t = mim_frame_get(f, name);

	if (!t)
		return -1;
	tensor_clear(t);
	size_t i = (size_t)(t - f->t);
	memmove(t, t + 1, (size_t)(f->n - 1 - (int)i) * sizeof *t);
	f->n--;
	return 0;
}

/* A fresh slot for name (replacing an existing tensor of that name). */
static struct mim_tensor *
slot(struct mim_frame *f, const char *name)
{
	struct mim_tensor *t = mim_frame_get(f, name);
	char *nm = mim_strdup(name);

	if (!nm)
		return NULL;
	if (t) {
		tensor_clear(t);
	} else {
		if (f->n == f->cap) {
			int cap = f->cap ? 2 * f->cap : 8;
			struct mim_tensor *nt = mim_realloc(f->t, (size_t)cap * sizeof *nt);
			if (!nt) {
				free(nm);
				return NULL;
			}
			f->t = nt;
			f->cap = cap;
		}
		t = &f->t[f->n++];
	}
	memset(t, 0, sizeof *t);
	t->name = nm;
	return t;
}

struct mim_tensor *
mim_frame_take(struct mim_frame *f, const char *name, enum mim_dtype dtype,
    int ndim, const int64_t *shape, void *data)
{
	int64_t nb = shape_bytes(dtype, ndim, shape);

	if ((unsigned)dtype >= MIM_NDTYPE || ndim < 0 || ndim > MIM_MAXDIM || nb < 0) {
		mim_seterr("tensor '%s': bad dtype or shape", name);
		return NULL;
	}
	struct mim_tensor *t = slot(f, name);
	if (!t)
		return NULL;
	t->dtype = dtype;
	t->ndim = ndim;
	for (int i = 0; i < ndim; i++)
		t->shape[i] = shape[i];
	t->data = data;
	t->nbytes = (size_t)nb;
	t->owned = 1;
	return t;
}

struct mim_tensor *
mim_frame_add(struct mim_frame *f, const char *name, enum mim_dtype dtype,
    int ndim, const int64_t *shape, const void *data)
{
	int64_t nb = shape_bytes(dtype, ndim, shape);

	if (nb < 0) {
		mim_seterr("tensor '%s': shape too large", name);
		return NULL;
	}
	/* 64-byte aligned so kernels may use aligned vector loads */
	size_t alloc = ((size_t)nb + 63) & ~(size_t)63;
	void *p = aligned_alloc(64, alloc ? alloc : 64);
	if (!p) {
		mim_seterr("out of memory (%lld bytes)", (long long)nb);
		return NULL;
	}
	if (data)
		memcpy(p, data, (size_t)nb);
	else
		memset(p, 0, (size_t)nb);
	struct mim_tensor *t = mim_frame_take(f, name, dtype, ndim, shape, p);
	if (!t)
		free(p);
	return t;
}

const char *
mim_meta_get(const struct mim_frame *f, const char *key)
{
	for (int i = 0; i < f->nmeta; i++)
		if (strcmp(f->mkey[i], key) == 0)
			return f->mval[i];
	return NULL;
}

int
mim_meta_set(struct mim_frame *f, const char *key, const char *val)
{
	char *v = mim_strdup(val);

	if (!v)
		return -1;
	for (int i = 0; i < f->nmeta; i++)
		if (strcmp(f->mkey[i], key) == 0) {
			free(f->mval[i]);
			f->mval[i] = v;
			return 0;
		}
	char *k = mim_strdup(key);
	if (!k) {
		free(v);
		return -1;
	}
	if (f->nmeta == f->metacap) {
		int cap = f->metacap ? 2 * f->metacap : 4;
		char **nk = mim_realloc(f->mkey, (size_t)cap * sizeof *nk);
		if (nk)
			f->mkey = nk;
		char **nv = nk ? mim_realloc(f->mval, (size_t)cap * sizeof *nv) : NULL;
		if (!nv) {
			free(k);
			free(v);
			return -1;
		}
		f->mval = nv;
		f->metacap = cap;
	}
	f->mkey[f->nmeta] = k;
	f->mval[f->nmeta] = v;
	f->nmeta++;
	return 0;
}

struct mim_tensor *
mim_frame_want(const struct mim_frame *f, const char *name, int dtype,
    int ndim, const int64_t *shape)
{
	struct mim_tensor *t = mim_frame_get(f, name);
	char got[128], want[128];

	if (!t) {
		mim_seterr("no tensor '%s'", name);
		return NULL;
	}
	if (dtype >= 0 && t->dtype != (enum mim_dtype)dtype) {
		mim_seterr("tensor '%s': dtype %s, want %s", name,
		    mim_dtype_name(t->dtype), mim_dtype_name(dtype));
		return NULL;
	}
	if (ndim >= 0) {
		int bad = t->ndim != ndim;
		for (int i = 0; !bad && shape && i < ndim; i++)
			bad = shape[i] >= 0 && shape[i] != t->shape[i];
		if (bad) {
			int k = 0;
			k += snprintf(want + k, sizeof want - k, "[");
			for (int i = 0; i < ndim; i++) {
				if (shape && shape[i] >= 0)
					k += snprintf(want + k, sizeof want - k, "%s%lld",
					    i ? "," : "", (long long)shape[i]);
				else
					k += snprintf(want + k, sizeof want - k, "%s*", i ? "," : "");
			}
			snprintf(want + k, sizeof want - k, "]");
			mim_seterr("tensor '%s': shape %s, want %s", name,
			    mim_shape_str(got, sizeof got, t->ndim, t->shape), want);
			return NULL;
		}
	}
	return t;
}

/* ---- parsing a header ---------------------------------------------------- */

struct entry {
	const char *name;
	int dtype, ndim;
	int64_t shape[MIM_MAXDIM];
	int64_t begin, end;
};

static int
cmp_begin(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;

	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	return x->end < y->end ? -1 : x->end > y->end;
}

#define MAXOFF (((int64_t)1 << 48) - 1)	/* safetensors' schema bound */

/* Validate header JSON (hdr, n bytes). On success fills f (tensors without
 * data yet, in data order) and *datalen. Messages name the tensor only;
 * the caller prefixes input and frame. */
static int
parse_header(const char *hdr, size_t n, struct mim_frame *f, int64_t *datalen,
    struct entry **entp, json_t **rootp)
{
	json_error_t je;
	size_t i = 0;

	while (i < n && (hdr[i] == ' ' || hdr[i] == '\t' || hdr[i] == '\n' || hdr[i] == '\r'))
		i++;
	if (i == n || hdr[i] != '{')
		return mim_seterr("header is not a JSON object");
	json_t *root = json_loadb(hdr, n, JSON_REJECT_DUPLICATES, &je);
	if (!root && strstr(je.text, "duplicate object key"))
		return mim_seterr("duplicate name in header (%s)", je.text);
	if (!root)
		return mim_seterr("bad header JSON: %s (column %d)", je.text, je.column);
	*rootp = root;
	if (!json_is_object(root))
		return mim_seterr("header is not a JSON object");

	size_t cnt = json_object_size(root);
	struct entry *ent = mim_calloc(cnt ? cnt : 1, sizeof *ent);
	if (!ent)
		return -1;
	*entp = ent;
	int ne = 0;
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v) {
		if (strcmp(key, "__metadata__") == 0) {
			const char *mk;
			json_t *mv;
			if (!json_is_object(v))
				return mim_seterr("__metadata__ is not an object");
			json_object_foreach(v, mk, mv) {
				if (!json_is_string(mv))
					return mim_seterr("__metadata__: value of '%s' is not a string", mk);
				if (mim_meta_set(f, mk, json_string_value(mv)))
					return -1;
			}
			continue;
		}
		struct entry *e = &ent[ne];
		e->name = key;
		if (!json_is_object(v))
			return mim_seterr("tensor '%s': not an object", key);
		json_t *dt = json_object_get(v, "dtype");
		json_t *sh = json_object_get(v, "shape");
		json_t *off = json_object_get(v, "data_offsets");
		if (!json_is_string(dt))
			return mim_seterr("tensor '%s': missing dtype", key);
		if ((e->dtype = mim_dtype_parse(json_string_value(dt))) < 0)
			return mim_seterr("tensor '%s': unknown dtype '%s'", key,
			    json_string_value(dt));
		if (!json_is_array(sh))
			return mim_seterr("tensor '%s': missing shape", key);
		if (json_array_size(sh) > MIM_MAXDIM)
			return mim_seterr("tensor '%s': more than %d dimensions", key, MIM_MAXDIM);
		e->ndim = (int)json_array_size(sh);
		for (int d = 0; d < e->ndim; d++) {
			json_t *x = json_array_get(sh, (size_t)d);
			if (!json_is_integer(x) || json_integer_value(x) < 0 ||
			    json_integer_value(x) > MAXOFF)
				return mim_seterr("tensor '%s': bad shape", key);
			e->shape[d] = json_integer_value(x);
		}
		if (!json_is_array(off) || json_array_size(off) != 2)
			return mim_seterr("tensor '%s': missing data_offsets", key);
		for (int d = 0; d < 2; d++) {
			json_t *x = json_array_get(off, (size_t)d);
			if (!json_is_integer(x) || json_integer_value(x) < 0 ||
			    json_integer_value(x) > MAXOFF)
				return mim_seterr("tensor '%s': bad data_offsets", key);
		}
		e->begin = json_integer_value(json_array_get(off, 0));
		e->end = json_integer_value(json_array_get(off, 1));
		if (e->end < e->begin)
			return mim_seterr("tensor '%s': data_offsets end before begin", key);
		int64_t nb = shape_bytes(e->dtype, e->ndim, e->shape);
		if (nb < 0 || nb > MAXOFF)
			return mim_seterr("tensor '%s': shape too large", key);
		if (e->end - e->begin != nb)
			return mim_seterr("tensor '%s': shape needs %lld bytes, data_offsets give %lld",
			    key, (long long)nb, (long long)(e->end - e->begin));
		ne++;
	}
	qsort(ent, (size_t)ne, sizeof *ent, cmp_begin);
	int64_t at = 0;
	for (int k = 0; k < ne; k++) {
		if (ent[k].begin < at)
			return mim_seterr("tensor '%s': offsets overlap", ent[k].name);
		if (ent[k].begin > at)
			return mim_seterr("tensor '%s': gap before its data", ent[k].name);
		at = ent[k].end;
	}
	for (int k = 0; k < ne; k++) {
		struct mim_tensor *t = slot(f, ent[k].name);
		if (!t)
			return -1;
		t->dtype = ent[k].dtype;
		t->ndim = ent[k].ndim;
		memcpy(t->shape, ent[k].shape, sizeof t->shape);
		t->nbytes = (size_t)(ent[k].end - ent[k].begin);
	}
	*datalen = at;
	return ne;
}

/* Point the tensors of f into buf (in the data order of ent); copy any
 * tensor whose offset is misaligned for its dtype into its own buffer. */
static int
attach(struct mim_frame *f, struct entry *ent, char *buf)
{
	for (int k = 0; k < f->n; k++) {
		struct mim_tensor *t = &f->t[k];
		char *p = buf + ent[k].begin;
		size_t al = mim_dtype_size(t->dtype);
		if (((uintptr_t)p & (al - 1)) == 0) {
			t->data = p;
			t->owned = 0;
		} else {
			void *q = mim_malloc(t->nbytes);
			if (!q)
				return -1;
			memcpy(q, p, t->nbytes);
			t->data = q;
			t->owned = 1;
		}
	}
	return 0;
}

static int
frame_from_header(const char *hdr, size_t n, struct mim_frame **fp, int64_t *datalen,
    struct entry **entp)
{
	json_t *root = NULL;
	struct mim_frame *f = mim_frame_new();
	int r;

	*entp = NULL;
	if (!f)
		return -1;
	r = parse_header(hdr, n, f, datalen, entp, &root);
	/* entry names point into root: keep them valid by copying now */
	if (r >= 0)
		for (int k = 0; k < r; k++)
			(*entp)[k].name = f->t[k].name;
	json_decref(root);
	if (r < 0) {
		mim_frame_free(f);
		free(*entp);
		*entp = NULL;
		return -1;
	}
	*fp = f;
	return 0;
}

struct mim_frame *
mim_frame_parse(const void *buf, size_t n, const char *name)
{
	const unsigned char *b = buf;
	struct mim_frame *f;
	struct entry *ent;
	int64_t dl;

	if (n < 8) {
		mim_seterr("%s: header too small", name);
		return NULL;
	}
	uint64_t hn = 0;
	for (int i = 7; i >= 0; i--)
		hn = hn << 8 | b[i];
	if (hn > MIM_FILE_HDRCAP || hn > n - 8) {
		mim_seterr("%s: header length %llu too large", name, (unsigned long long)hn);
		return NULL;
	}
	if (frame_from_header((const char *)b + 8, (size_t)hn, &f, &dl, &ent) < 0) {
		mim_preferr("%s", name);
		return NULL;
	}
	if ((uint64_t)dl != n - 8 - hn) {
		mim_seterr("%s: data is %llu bytes, header says %lld", name,
		    (unsigned long long)(n - 8 - hn), (long long)dl);
		goto fail;
	}
	f->buf = mim_malloc((size_t)dl + 64);
	if (!f->buf)
		goto fail;
	memcpy(f->buf, b + 8 + hn, (size_t)dl);
	if (attach(f, ent, f->buf) < 0)
		goto fail;
	free(ent);
	return f;
fail:
	free(ent);
	mim_frame_free(f);
	return NULL;
}

/* ---- reader ---------------------------------------------------------------- */

struct mim_reader {
	int fd, ownfd;
	char *name;
	long count;
	size_t hdrcap;
	int64_t fsize;		/* regular files: size, else -1 */
	uint64_t maxframe;	/* pipes: MIM_MAX_FRAME */
	int64_t pos;
	int failed;
};

void
mim_pipe_grow(int fd)
{
#ifdef F_SETPIPE_SZ
	struct stat st;

	if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode) &&
	    fcntl(fd, F_GETPIPE_SZ) < (1 << 20))
		(void)fcntl(fd, F_SETPIPE_SZ, 1 << 20);
#else
	(void)fd;
#endif
}

/* MIM_MAX_FRAME, or MIM_MAX_FRAME_DEFAULT when unset or empty. 0 or -1. */
static int
max_frame(uint64_t *out)
{
	const char *s = getenv("MIM_MAX_FRAME");

	*out = MIM_MAX_FRAME_DEFAULT;
	if (s && *s && mim_parse_size(s, out))
		return mim_seterr("MIM_MAX_FRAME: '%s' is not a size (bytes, or with K, M, G or T)", s);
	return 0;
}

struct mim_reader *
mim_reader_fdopen(int fd, const char *name)
{
	struct mim_reader *r;
	struct stat st;
	uint64_t maxframe;

	if (max_frame(&maxframe))
		return NULL;
	if (!(r = mim_calloc(1, sizeof *r)))
		return NULL;
	r->maxframe = maxframe;
	r->fd = fd;
	r->name = mim_strdup(name);
	if (!r->name) {
		free(r);
		return NULL;
	}
	r->fsize = -1;
	r->hdrcap = MIM_PIPE_HDRCAP;
	mim_pipe_grow(fd);
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		r->hdrcap = MIM_FILE_HDRCAP;
		r->fsize = st.st_size;
		r->pos = lseek(fd, 0, SEEK_CUR);
		if (r->pos < 0)
			r->pos = 0;
	}
	return r;
}

struct mim_reader *
mim_reader_open(const char *path)
{
	if (!path || strcmp(path, "-") == 0)
		return mim_reader_fdopen(0, "<stdin>");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		mim_seterr("%s: %s", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		close(fd);
		mim_seterr("%s: is a directory", path);
		return NULL;
	}
	struct mim_reader *r = mim_reader_fdopen(fd, path);
	if (!r) {
		close(fd);
		return NULL;
	}
	r->ownfd = 1;
	return r;
}

void
mim_reader_close(struct mim_reader *r)
{
	if (!r)
		return;
	if (r->ownfd)
		close(r->fd);
	free(r->name);
	free(r);
}

const char *
mim_reader_name(const struct mim_reader *r)
{
	return r->name;
}

long
mim_reader_count(const struct mim_reader *r)
{
	return r->count;
}

/* Read n bytes that must be there; "what" names the part for messages. */
static int
need(struct mim_reader *r, void *buf, size_t n, const char *what)
{
	long long k = mim_readall(r->fd, buf, n);

	if (k < 0)
		return -1;
	if ((size_t)k < n)
		return mim_seterr("truncated %s (%llu of %zu bytes)", what,
		    (unsigned long long)k, n);
	r->pos += k;
	return 0;
}

static int
read_frame(struct mim_reader *r, struct mim_frame **out)
{
	unsigned char lenb[8];
	long long k = mim_readall(r->fd, lenb, 8);

	if (k < 0)
		return -1;
	if (k == 0)
		return 0;
	if (k < 8)
		return mim_seterr("truncated header length (%lld of 8 bytes)", k);
	r->pos += 8;
	uint64_t hn = 0;
	for (int i = 7; i >= 0; i--)
		hn = hn << 8 | lenb[i];
	if (hn > r->hdrcap)
		return mim_seterr("header length %llu exceeds the cap of %zu",
		    (unsigned long long)hn, r->hdrcap);
	if (r->fsize >= 0 && (int64_t)hn > r->fsize - r->pos)
		return mim_seterr("truncated header (%lld of %llu bytes)",
		    (long long)(r->fsize - r->pos), (unsigned long long)hn);
	char *hdr = mim_malloc((size_t)hn + 1);
	if (!hdr)
		return -1;
	if (need(r, hdr, (size_t)hn, "header") < 0) {
		free(hdr);
		return -1;
	}
	struct mim_frame *f;
	struct entry *ent;
	int64_t dl;
	int rc = frame_from_header(hdr, (size_t)hn, &f, &dl, &ent);
	free(hdr);
	if (rc < 0)
		return -1;
	if (r->fsize >= 0 && dl > r->fsize - r->pos) {
		mim_seterr("truncated data (%lld of %lld bytes)",
		    (long long)(r->fsize - r->pos), (long long)dl);
		goto fail;
	}
	/* a file's size bounds its frames; a pipe's claim is only a claim,
	 * and a stream of zeros would honour any of them */
	if (r->fsize < 0 && 8 + hn + (uint64_t)dl > r->maxframe) {
		mim_seterr("frame of %llu bytes is over the limit of %llu for a stream "
		    "(raise it with MIM_MAX_FRAME)", (unsigned long long)(8 + hn + (uint64_t)dl),
		    (unsigned long long)r->maxframe);
		goto fail;
	}
	/* grow the buffer with the data actually read */
	size_t cap = r->fsize >= 0 ? (size_t)dl : ((size_t)dl < (1u << 24) ? (size_t)dl : 1u << 24);
	char *buf = aligned_alloc(64, (cap + 63) & ~(size_t)63);
	size_t got = 0;
	if (!buf) {
		mim_seterr("out of memory (%zu bytes)", cap);
		goto fail;
	}
	f->buf = buf;
	while (got < (size_t)dl) {
		if (got == cap) {
			size_t ncap = cap * 2 > (size_t)dl ? (size_t)dl : cap * 2;
			char *nb = aligned_alloc(64, (ncap + 63) & ~(size_t)63);
			if (!nb) {
				mim_seterr("out of memory (%zu bytes)", ncap);
				goto fail;
			}
			memcpy(nb, buf, got);
			free(buf);
			f->buf = buf = nb;
			cap = ncap;
		}
		k = mim_readall(r->fd, buf + got, cap - got);
		if (k < 0)
			goto fail;
		got += (size_t)k;
		r->pos += k;
		if (got < cap) {
			mim_seterr("truncated data (%zu of %lld bytes)", got, (long long)dl);
			goto fail;
		}
	}
	if (attach(f, ent, buf) < 0)
		goto fail;
	free(ent);
	*out = f;
	return 1;
fail:
	free(ent);
	mim_frame_free(f);
	return -1;
}

int
mim_read_frame(struct mim_reader *r, struct mim_frame **out)
{
	if (r->failed)
		return mim_seterr("%s: frame %ld: stream already failed", r->name, r->count);
	int rc = read_frame(r, out);
	if (rc < 0) {
		r->failed = 1;
		mim_preferr("%s: frame %ld", r->name, r->count);
	} else if (rc > 0) {
		r->count++;
	}
	return rc;
}

/* ---- writer ------------------------------------------------------------------ */

static int
cmp_align(const void *a, const void *b)
{
	const struct mim_tensor *x = *(struct mim_tensor *const *)a;
	const struct mim_tensor *y = *(struct mim_tensor *const *)b;
	size_t sx = mim_dtype_size(x->dtype), sy = mim_dtype_size(y->dtype);

	if (sx != sy)
		return sx > sy ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Build the padded header; returns malloc'd bytes (8-byte length + JSON). */
static char *
build_header(const struct mim_frame *f, struct mim_tensor **order, size_t *len)
{
	json_t *root = json_object(), *meta = NULL;
	char *js = NULL, *out = NULL;

	if (!root)
		goto oom;
	if (f->nmeta) {
		meta = json_object();
		if (!meta || json_object_set_new(root, "__metadata__", meta))
			goto oom;
		for (int i = 0; i < f->nmeta; i++)
			if (json_object_set_new(meta, f->mkey[i], json_string(f->mval[i])))
				goto oom;
	}
	int64_t at = 0;
	for (int i = 0; i < f->n; i++) {
		const struct mim_tensor *t = order[i];
		json_t *e = json_object(), *sh = json_array();
		if (!e || !sh || json_object_set_new(root, t->name, e)) {
			json_decref(sh);
			goto oom;
		}
		json_object_set_new(e, "dtype", json_string(mim_dtype_name(t->dtype)));
		for (int d = 0; d < t->ndim; d++)
			json_array_append_new(sh, json_integer(t->shape[d]));
		json_object_set_new(e, "shape", sh);
		json_object_set_new(e, "data_offsets",
		    json_pack("[I,I]", (json_int_t)at, (json_int_t)(at + (int64_t)t->nbytes)));
		at += (int64_t)t->nbytes;
	}
	js = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	if (!js)
		goto oom;
	size_t n = strlen(js), padded = (n + 7) & ~(size_t)7;
	out = mim_malloc(8 + padded);
	if (!out)
		goto done;
	for (int i = 0; i < 8; i++)
		out[i] = (char)((uint64_t)padded >> (8 * i));
	memcpy(out + 8, js, n);
	memset(out + 8 + n, ' ', padded - n);
	*len = 8 + padded;
	goto done;
oom:
	mim_seterr("out of memory building a frame header");
done:
	free(js);
	json_decref(root);
	return out;
}

int
mim_write_frame(int fd, const struct mim_frame *f)
{
	struct mim_tensor **order = mim_calloc((size_t)f->n + 1, sizeof *order);
	size_t hl;
	int rc = -1;

	if (!order)
		return -1;
	for (int i = 0; i < f->n; i++)
		order[i] = &f->t[i];
	qsort(order, (size_t)f->n, sizeof *order, cmp_align);
	char *hdr = build_header(f, order, &hl);
	if (!hdr)
		goto done;
	if (mim_writeall(fd, hdr, hl) < 0)
		goto done;
	for (int i = 0; i < f->n; i++)
		if (mim_writeall(fd, order[i]->data, order[i]->nbytes) < 0)
			goto done;
	rc = 0;
done:
	free(hdr);
	free(order);
	return rc;
}

int
mim_save(const char *path, const struct mim_frame *f)
{
	size_t n = strlen(path);
	char *tmp = mim_malloc(n + 32), *dir = mim_strdup(path);

	if (!tmp || !dir) {
		free(tmp);
		free(dir);
		return -1;
	}
	snprintf(tmp, n + 32, "%s.tmp.%ld", path, (long)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		mim_seterr("%s: %s", tmp, strerror(errno));
		goto fail;
	}
	if (mim_write_frame(fd, f) < 0 || (fsync(fd) < 0 && mim_seterr("fsync: %s", strerror(errno)))) {
		mim_preferr("%s", tmp);
		close(fd);
		unlink(tmp);
		goto fail;
	}
	if (close(fd) < 0 || rename(tmp, path) < 0) {
		mim_seterr("%s: %s", path, strerror(errno));
		unlink(tmp);
		goto fail;
	}
	int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	free(tmp);
	free(dir);
	return 0;
fail:
	free(tmp);
	free(dir);
	return -1;
}

struct mim_frame *
mim_load(const char *path)
{
	struct mim_reader *r = mim_reader_open(path);
	struct mim_frame *f = NULL;

	if (!r)
		return NULL;
	int rc = mim_read_frame(r, &f);
	if (rc == 0)
		mim_seterr("%s: empty file", path);
	if (rc == 1) {
		char c;
		long long k = mim_readall(r->fd, &c, 1);
		if (k != 0) {
			mim_seterr("%s: trailing bytes after the frame", path);
			mim_frame_free(f);
			f = NULL;
		}
	}
	mim_reader_close(r);
	return f;
}

struct mim_frame *
mim_load_header(const char *path)
{
	struct mim_reader *r = mim_reader_open(path);
	struct mim_frame *f = NULL;
	struct entry *ent = NULL;
	unsigned char lenb[8];
	char *hdr = NULL;
	int64_t dl;

	if (!r)
		return NULL;
	if (need(r, lenb, 8, "header length") < 0)
		goto fail;
	uint64_t hn = 0;
	for (int i = 7; i >= 0; i--)
		hn = hn << 8 | lenb[i];
	if (hn > r->hdrcap || (r->fsize >= 0 && (int64_t)hn > r->fsize - 8)) {
		mim_seterr("header length %llu too large", (unsigned long long)hn);
		goto fail;
	}
	if (!(hdr = mim_malloc((size_t)hn + 1)) || need(r, hdr, (size_t)hn, "header") < 0)
		goto fail;
	if (frame_from_header(hdr, (size_t)hn, &f, &dl, &ent) < 0)
		goto fail;
	if (r->fsize >= 0 && dl != r->fsize - 8 - (int64_t)hn) {
		mim_seterr("data is %lld bytes, header says %lld",
		    (long long)(r->fsize - 8 - (int64_t)hn), (long long)dl);
		mim_frame_free(f);
		f = NULL;
		goto fail;
	}
	free(ent);
	free(hdr);
	mim_reader_close(r);
	return f;
fail:
	mim_preferr("%s", path);
	free(ent);
	free(hdr);
	mim_reader_close(r);
	return NULL;
}
