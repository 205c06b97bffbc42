/* pickle.c -- a safe, minimal unpickler for torch.save files.
 *
 * PICKLE MACHINE (Python's pickle protocols 0..5, Lib/pickletools.py)
 *
 *   A pickle is a program of one-byte opcodes for a stack machine, ended by
 *   STOP ('.'), whose result is the top of the stack. Arguments follow the
 *   opcode: fixed-size little-endian integers (BININT 'J' i32, BININT1 'K'
 *   u8, BININT2 'M' u16, BINPUT 'q' u8, LONG_BINPUT 'r' u32), length-prefixed
 *   strings (BINUNICODE 'X' u32 + UTF-8, SHORT_BINUNICODE 0x8c u8, BINBYTES
 *   'B' u32, ...), big-endian BINFLOAT 'G', or newline-ended text lines
 *   (protocol 0: INT 'I', GLOBAL 'c' "module\nname\n", PUT 'p', ...). MARK
 *   '(' remembers a stack position that TUPLE, LIST, DICT, APPENDS,
 *   SETITEMS and friends collect back to. The memo is a table of references
 *   (PUT/GET): a dict is memoised as soon as it is created, then filled, so
 *   values here are shared pointers and may form cycles.
 *
 * What this reader never does: import or call anything. GLOBAL only names a
 * class; REDUCE/NEWOBJ of a name we know (collections.OrderedDict, the
 * torch._utils._rebuild_* functions) builds the plain value it stands
 * for, and anything else becomes an opaque MIM_PK_OBJECT that keeps its
 * class, arguments and state. BINPERSID ids ('storage', type, key,
 * location, numel[, view]) become MIM_PK_STORAGE values, as torch's
 * persistent_load would return.
 *
 * Hostile input: every length is checked against the bytes left, popping
 * below the current MARK is an error, there is no recursion (nesting depth
 * costs nothing), and all memory (values, strings, stack, memo) is charged
 * against MIM_PICKLE_MEMCAP. */

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "mim/ckpt.h"

/* opcodes */
enum {
	OP_MARK = '(', OP_STOP = '.', OP_POP = '0', OP_POP_MARK = '1', OP_DUP = '2',
	OP_FLOAT = 'F', OP_INT = 'I', OP_BININT = 'J', OP_BININT1 = 'K',
	OP_LONG = 'L', OP_BININT2 = 'M', OP_NONE = 'N', OP_PERSID = 'P',
	OP_BINPERSID = 'Q', OP_REDUCE = 'R', OP_STRING = 'S', OP_BINSTRING = 'T',
	OP_SHORT_BINSTRING = 'U', OP_UNICODE = 'V', OP_BINUNICODE = 'X',
	OP_APPEND = 'a', OP_BUILD = 'b', OP_GLOBAL = 'c', OP_DICT = 'd',
	OP_EMPTY_DICT = '}', OP_APPENDS = 'e', OP_GET = 'g', OP_BINGET = 'h',
	OP_INST = 'i', OP_LONG_BINGET = 'j', OP_LIST = 'l', OP_EMPTY_LIST = ']',
	OP_OBJ = 'o', OP_PUT = 'p', OP_BINPUT = 'q', OP_LONG_BINPUT = 'r',
	OP_SETITEM = 's', OP_TUPLE = 't', OP_EMPTY_TUPLE = ')', OP_SETITEMS = 'u',
	OP_BINFLOAT = 'G',
	OP_PROTO = 0x80, OP_NEWOBJ = 0x81, OP_EXT1 = 0x82, OP_EXT2 = 0x83,
	OP_EXT4 = 0x84, OP_TUPLE1 = 0x85, OP_TUPLE2 = 0x86, OP_TUPLE3 = 0x87,
	OP_NEWTRUE = 0x88, OP_NEWFALSE = 0x89, OP_LONG1 = 0x8a, OP_LONG4 = 0x8b,
	OP_BINBYTES = 'B', OP_SHORT_BINBYTES = 'C',
	OP_SHORT_BINUNICODE = 0x8c, OP_BINUNICODE8 = 0x8d, OP_BINBYTES8 = 0x8e,
	OP_EMPTY_SET = 0x8f, OP_ADDITEMS = 0x90, OP_FROZENSET = 0x91,
	OP_NEWOBJ_EX = 0x92, OP_STACK_GLOBAL = 0x93, OP_MEMOIZE = 0x94,
	OP_FRAME = 0x95, OP_BYTEARRAY8 = 0x96, OP_NEXT_BUFFER = 0x97,
	OP_READONLY_BUFFER = 0x98,
};

/* An arena chunk; values, strings and side structs are bump-allocated. */
struct chunk {
	struct chunk *next;
	size_t used, size;
	max_align_t data[];
};

struct mim_pickle {
	struct chunk *chunks;
	size_t mem;
	struct mim_pk *storages;	/* a LIST of every STORAGE, in pickle order */			/* bytes charged */
	struct mim_pk *root;
};

struct memo_slot {
	uint32_t key;
	int used;
	struct mim_pk *v;
};

struct up {
	const unsigned char *b;
	size_t n, pos, op_at;		/* op_at: offset of the current opcode */
	struct mim_pickle *p;
	struct mim_pk **stack;
	size_t sp, scap;
	size_t *marks;
	size_t nmark, mcap;
	struct memo_slot *memo;
	size_t mlen, mslots;		/* entries, table size (power of 2) */
	int proto;
	int hitend;			/* an argument ran past the end */
};

static struct mim_pk none_v = {.kind = MIM_PK_NONE};

static int
fail(struct up *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
fail(struct up *u, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return mim_seterr("pickle: offset %zu: %s", u->op_at, msg);
}

/* ---- memory ---------------------------------------------------------------- */

static int
charge(struct up *u, size_t bytes)
{
	if (bytes > MIM_PICKLE_MEMCAP - u->p->mem)
		return fail(u, "needs more than %zu MiB of memory", MIM_PICKLE_MEMCAP >> 20);
	u->p->mem += bytes;
	return 0;
}

static void *
arena(struct up *u, size_t size)
{
	struct mim_pickle *p = u->p;
	struct chunk *c = p->chunks;

	size = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
	if (!c || c->size - c->used < size) {
		size_t cs = size > 65536 ? size : 65536;
		if (charge(u, cs + sizeof *c) < 0)
			return NULL;
		c = mim_malloc(sizeof *c + cs);
		if (!c)
			return NULL;
		c->next = p->chunks;
		c->used = 0;
		c->size = cs;
		p->chunks = c;
	}
	void *r = (char *)c->data + c->used;
	c->used += size;
	memset(r, 0, size);
	return r;
}

static struct mim_pk *
newval(struct up *u, enum mim_pk_kind kind)
{
	struct mim_pk *v = arena(u, sizeof *v);

	if (v)
		v->kind = kind;
	return v;
}

/* A string value of n bytes copied from s (NUL-terminated copy). */
static struct mim_pk *
newstr(struct up *u, enum mim_pk_kind kind, const void *s, size_t n)
{
	if (n > MIM_PICKLE_MEMCAP)
		return fail(u, "string of %zu bytes", n), NULL;
	struct mim_pk *v = newval(u, kind);
	char *c = v ? arena(u, n + 1) : NULL;

	if (!c)
		return NULL;
	memcpy(c, s, n);
	c[n] = 0;
	v->u.s = c;
	v->n = n;
	return v;
}

/* Make room for `more` items in a TUPLE/LIST/SET/DICT array (DICT: 2 per
 * pair). Arrays live in the arena: a grown array is copied and the old one
 * left behind, which at most doubles what the arrays take. */
static int
grow(struct up *u, struct mim_pk *v, size_t more)
{
	size_t have = v->kind == MIM_PK_DICT ? 2 * v->n : v->n;
	size_t need = have + more;

	if (need <= v->cap)
		return 0;
	size_t cap = v->cap ? v->cap : 4;
	while (cap < need)
		cap *= 2;
	struct mim_pk **nv = arena(u, cap * sizeof *nv);
	if (!nv)
		return -1;
	if (have)
		memcpy(nv, v->u.v, have * sizeof *nv);
	v->u.v = nv;
	v->cap = cap;
	return 0;
}

/* ---- the stack ------------------------------------------------------------- */

static int
push(struct up *u, struct mim_pk *v)
{
	if (!v)
		return -1;
	if (u->sp == u->scap) {
		size_t cap = u->scap ? 2 * u->scap : 64;
		if (charge(u, (cap - u->scap) * sizeof *u->stack) < 0)
			return -1;
		struct mim_pk **ns = mim_realloc(u->stack, cap * sizeof *ns);
		if (!ns)
			return -1;
		u->stack = ns;
		u->scap = cap;
	}
	u->stack[u->sp++] = v;
	return 0;
}

static size_t
floor_(const struct up *u)
{
	return u->nmark ? u->marks[u->nmark - 1] : 0;
}

static struct mim_pk *
pop(struct up *u)
{
	if (u->sp <= floor_(u))
		return fail(u, "stack underflow"), NULL;
	return u->stack[--u->sp];
}

static struct mim_pk *
top(struct up *u)
{
	if (u->sp <= floor_(u))
		return fail(u, "stack underflow"), NULL;
	return u->stack[u->sp - 1];
}

/* Pop to the last MARK: *items = the values above it, *k their count. */
static int
pop_mark(struct up *u, struct mim_pk ***items, size_t *k)
{
	if (!u->nmark)
		return fail(u, "no MARK on the stack");
	size_t m = u->marks[--u->nmark];
	*items = u->stack + m;
	*k = u->sp - m;
	u->sp = m;
	return 0;
}

/* ---- the memo: an open-addressing table keyed by u32 ----------------------- */

static int
memo_put(struct up *u, uint32_t key, struct mim_pk *v)
{
	if (2 * (u->mlen + 1) > u->mslots) {
		size_t ns = u->mslots ? 2 * u->mslots : 256;
		if (charge(u, ns * sizeof(struct memo_slot)) < 0)
			return -1;
		struct memo_slot *nm = mim_calloc(ns, sizeof *nm);
		if (!nm)
			return -1;
		for (size_t i = 0; i < u->mslots; i++) {
			if (!u->memo[i].used)
				continue;
			size_t h = (u->memo[i].key * 2654435761u) & (ns - 1);
			while (nm[h].used)
				h = (h + 1) & (ns - 1);
			nm[h] = u->memo[i];
		}
		free(u->memo);
		u->memo = nm;
		u->mslots = ns;
	}
	size_t h = (key * 2654435761u) & (u->mslots - 1);
	while (u->memo[h].used && u->memo[h].key != key)
		h = (h + 1) & (u->mslots - 1);
	if (!u->memo[h].used)
		u->mlen++;
	u->memo[h].used = 1;
	u->memo[h].key = key;
	u->memo[h].v = v;
	return 0;
}

static struct mim_pk *
memo_get(struct up *u, uint64_t key)
{
	if (u->mslots && key <= UINT32_MAX) {
		size_t h = ((uint32_t)key * 2654435761u) & (u->mslots - 1);
		while (u->memo[h].used) {
			if (u->memo[h].key == key)
				return u->memo[h].v;
			h = (h + 1) & (u->mslots - 1);
		}
	}
	return fail(u, "memo key %llu is not set", (unsigned long long)key), NULL;
}

/* ---- reading arguments ----------------------------------------------------- */

static const unsigned char *
take(struct up *u, size_t k)
{
	if (k > u->n - u->pos) {
		u->hitend = 1;
		return fail(u, "truncated (%zu bytes wanted, %zu left)", k, u->n - u->pos), NULL;
	}
	const unsigned char *r = u->b + u->pos;
	u->pos += k;
	return r;
}

static int
uint_le(struct up *u, int bytes, uint64_t *out)
{
	const unsigned char *p = take(u, (size_t)bytes);

	if (!p)
		return -1;
	*out = 0;
	for (int i = bytes - 1; i >= 0; i--)
		*out = *out << 8 | p[i];
	return 0;
}

/* A newline-ended text argument: *s and *len exclude the newline. */
static int
line(struct up *u, const char **s, size_t *len)
{
	const unsigned char *p = u->b + u->pos;
	const unsigned char *e = memchr(p, '\n', u->n - u->pos);

	if (!e) {
		u->hitend = 1;
		return fail(u, "truncated text argument");
	}
	*s = (const char *)p;
	*len = (size_t)(e - p);
	u->pos += *len + 1;
	return 0;
}

/* Parse a decimal integer (optional sign, optional trailing 'L'). */
static int
text_int(struct up *u, const char *s, size_t len, int64_t *out)
{
	char buf[32];

	if (len && s[len - 1] == 'L')
		len--;
	if (len == 0 || len >= sizeof buf)
		return fail(u, "bad or out-of-range text integer");
	memcpy(buf, s, len);
	buf[len] = 0;
	char *end;
	errno = 0;
	long long v = strtoll(buf, &end, 10);
	if (*end || errno)
		return fail(u, "bad or out-of-range text integer");
	*out = v;
	return 0;
}

/* Append code point c as UTF-8 to out (room for 4 bytes assumed). */
static size_t
utf8(char *out, uint32_t c)
{
	if (c < 0x80) {
		out[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		out[0] = (char)(0xc0 | c >> 6);
		out[1] = (char)(0x80 | (c & 0x3f));
		return 2;
	}
	if (c < 0x10000) {
		out[0] = (char)(0xe0 | c >> 12);
		out[1] = (char)(0x80 | (c >> 6 & 0x3f));
		out[2] = (char)(0x80 | (c & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | c >> 18);
	out[1] = (char)(0x80 | (c >> 12 & 0x3f));
	out[2] = (char)(0x80 | (c >> 6 & 0x3f));
	out[3] = (char)(0x80 | (c & 0x3f));
	return 4;
}

/* Protocol 0 UNICODE: raw-unicode-escape (latin-1 bytes, \uXXXX, \UXXXXXXXX). */
static struct mim_pk *
raw_unicode(struct up *u, const char *s, size_t len)
{
	if (len > MIM_PICKLE_MEMCAP / 4)
		return fail(u, "string too long"), NULL;
	char *tmp = mim_malloc(4 * len + 1);
	size_t k = 0;

	if (!tmp)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		size_t w = 0;
		if (c == '\\' && i + 1 < len && (s[i + 1] == 'u' || s[i + 1] == 'U'))
			w = s[i + 1] == 'u' ? 4 : 8;
		if (w && i + 2 + w <= len) {
			uint32_t cp = 0;
			size_t j;
			for (j = 0; j < w; j++) {
				char h = s[i + 2 + j];
				int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 :
				    h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
				if (d < 0)
					break;
				cp = cp << 4 | (uint32_t)d;
			}
			if (j == w && cp <= 0x10ffff) {
				k += utf8(tmp + k, cp);
				i += 1 + w;
				continue;
			}
		}
		k += utf8(tmp + k, c);
	}
	struct mim_pk *v = newstr(u, MIM_PK_STR, tmp, k);
	free(tmp);
	return v;
}

/* Protocol 0 STRING: a Python repr, 'abc' or "abc", with backslash escapes. */
static struct mim_pk *
repr_string(struct up *u, const char *s, size_t len)
{
	if (len < 2 || s[0] != s[len - 1] || (s[0] != '\'' && s[0] != '"'))
		return fail(u, "STRING argument is not quoted"), NULL;
	char *tmp = mim_malloc(len);
	size_t k = 0;

	if (!tmp)
		return NULL;
	for (size_t i = 1; i + 1 < len; i++) {
		char c = s[i];
		if (c == '\\' && i + 2 < len) {
			char e = s[++i];
			switch (e) {
			case 'n': c = '\n'; break;
			case 't': c = '\t'; break;
			case 'r': c = '\r'; break;
			case '0': c = 0; break;
			case 'x':
				if (i + 3 < len) {
					char hx[3] = {s[i + 1], s[i + 2], 0};
					c = (char)strtol(hx, NULL, 16);
					i += 2;
				}
				break;
			default: c = e; break;
			}
		}
		tmp[k++] = c;
	}
	struct mim_pk *v = newstr(u, MIM_PK_STR, tmp, k);
	free(tmp);
	return v;
}

/* ---- values ---------------------------------------------------------------- */

static struct mim_pk *
newint(struct up *u, int64_t i)
{
	struct mim_pk *v = newval(u, MIM_PK_INT);

	if (v)
		v->u.i = i;
	return v;
}

/* LONG1/LONG4 payload: little-endian two's complement of k bytes. */
static struct mim_pk *
long_bytes(struct up *u, const unsigned char *p, size_t k)
{
	if (k > 8)
		return newstr(u, MIM_PK_BIGINT, p, k);
	uint64_t x = 0;
	for (size_t i = k; i-- > 0;)
		x = x << 8 | p[i];
	if (k && k < 8 && (p[k - 1] & 0x80))
		x |= ~(uint64_t)0 << (8 * k);
	return newint(u, (int64_t)x);
}

static struct mim_pk *
seq(struct up *u, enum mim_pk_kind kind, struct mim_pk **items, size_t k)
{
	struct mim_pk *v = newval(u, kind);

	if (!v)
		return NULL;
	if (k) {
		if (grow(u, v, k) < 0)
			return NULL;
		memcpy(v->u.v, items, k * sizeof *items);
		v->n = k;
	}
	return v;
}

static int
is_str(const struct mim_pk *v, const char *s)
{
	return v && (v->kind == MIM_PK_STR || v->kind == MIM_PK_BYTES) && strcmp(v->u.s, s) == 0;
}

/* The dict a SETITEM targets: a DICT, or the item dict of an OBJECT
 * (dict subclasses such as yacs' CfgNode get their items this way). */
static struct mim_pk *
dict_of(struct up *u, struct mim_pk *t)
{
	if (t->kind == MIM_PK_DICT)
		return t;
	if (t->kind == MIM_PK_OBJECT) {
		if (!t->u.obj->items)
			t->u.obj->items = newval(u, MIM_PK_DICT);
		return t->u.obj->items;
	}
	return fail(u, "SETITEM on a %s", t->kind == MIM_PK_LIST ? "list" : "non-dict"), NULL;
}

static struct mim_pk *
list_of(struct up *u, struct mim_pk *t)
{
	if (t->kind == MIM_PK_LIST || t->kind == MIM_PK_SET)
		return t;
	if (t->kind == MIM_PK_OBJECT) {
		if (!t->u.obj->list)
			t->u.obj->list = newval(u, MIM_PK_LIST);
		return t->u.obj->list;
	}
	return fail(u, "APPEND to a non-list"), NULL;
}

/* Keys may repeat; lookups take the last, as Python's dict would. */
static int
dict_set(struct up *u, struct mim_pk *d, struct mim_pk *k, struct mim_pk *v)
{
	if (grow(u, d, 2) < 0)
		return -1;
	d->u.v[2 * d->n] = k;
	d->u.v[2 * d->n + 1] = v;
	d->n++;
	return 0;
}

static int
list_add(struct up *u, struct mim_pk *l, struct mim_pk **items, size_t k)
{
	if (!k)
		return 0;
	if (grow(u, l, k) < 0)
		return -1;
	memcpy(l->u.v + l->n, items, k * sizeof *items);
	l->n += k;
	return 0;
}

static struct mim_pk *
global(struct up *u, const char *mod, size_t ml, const char *name, size_t nl)
{
	if (ml > 4096 || nl > 4096)
		return fail(u, "GLOBAL name too long"), NULL;
	char tmp[8194];
	memcpy(tmp, mod, ml);
	tmp[ml] = '.';
	memcpy(tmp + ml + 1, name, nl);
	return newstr(u, MIM_PK_GLOBAL, tmp, ml + 1 + nl);
}

static struct mim_pk *
object(struct up *u, struct mim_pk *cls, struct mim_pk *args)
{
	struct mim_pk *v = newval(u, MIM_PK_OBJECT);

	if (!v || !(v->u.obj = arena(u, sizeof *v->u.obj)))
		return NULL;
	v->u.obj->cls = cls;
	v->u.obj->args = args;
	return v;
}

static int
is_global(const struct mim_pk *v, const char *name)
{
	return v && v->kind == MIM_PK_GLOBAL && strcmp(v->u.s, name) == 0;
}

/* torch storage classes and dtypes by name */
static const struct {
	const char *name;
	enum mim_dtype dt;
} storages[] = {
	{"FloatStorage", MIM_F32}, {"HalfStorage", MIM_F16}, {"BFloat16Storage", MIM_BF16},
	{"DoubleStorage", MIM_F64}, {"LongStorage", MIM_I64}, {"IntStorage", MIM_I32},
	{"ShortStorage", MIM_I16}, {"CharStorage", MIM_I8}, {"ByteStorage", MIM_U8},
	{"BoolStorage", MIM_BOOL}, {"UntypedStorage", MIM_U8},
}, dtypes[] = {
	{"float32", MIM_F32}, {"float", MIM_F32}, {"float16", MIM_F16}, {"half", MIM_F16},
	{"bfloat16", MIM_BF16}, {"float64", MIM_F64}, {"double", MIM_F64},
	{"int64", MIM_I64}, {"long", MIM_I64}, {"int32", MIM_I32}, {"int", MIM_I32},
	{"int16", MIM_I16}, {"short", MIM_I16}, {"int8", MIM_I8}, {"uint8", MIM_U8},
	{"bool", MIM_BOOL},
};

static int
storage_dtype(const struct mim_pk *g)
{
	if (!g || g->kind != MIM_PK_GLOBAL)
		return -1;
	const char *s = g->u.s, *dot = strrchr(s, '.');
	if (!dot || !((dot - s == 5 && strncmp(s, "torch", 5) == 0) ||
	    (dot - s == 10 && strncmp(s, "torch.cuda", 10) == 0)))
		return -1;
	for (size_t i = 0; i < sizeof storages / sizeof *storages; i++)
		if (strcmp(dot + 1, storages[i].name) == 0)
			return storages[i].dt;
	return -1;
}

static int
torch_dtype(const struct mim_pk *g)
{
	if (!g || g->kind != MIM_PK_GLOBAL || strncmp(g->u.s, "torch.", 6) != 0)
		return -1;
	for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
		if (strcmp(g->u.s + 6, dtypes[i].name) == 0)
			return dtypes[i].dt;
	return -1;
}

/* torch's persistent_load for ('storage', type, key, location, numel[, view]).
 * Other ids become opaque objects with cls NULL. */
static struct mim_pk *
persistent(struct up *u, struct mim_pk *pid)
{
	if (pid->kind != MIM_PK_TUPLE || pid->n < 1 || !is_str(pid->u.v[0], "storage"))
		return object(u, NULL, pid);
	struct mim_pk **a = pid->u.v;
	if (pid->n != 5 && pid->n != 6)
		return fail(u, "storage id of %zu items, want 5 or 6", pid->n), NULL;
	int dt = storage_dtype(a[1]);
	if (dt < 0) {
		char d[96];
		return fail(u, "unsupported storage type %s", mim_pk_describe(a[1], d, sizeof d)), NULL;
	}
	if ((a[2]->kind != MIM_PK_STR && a[2]->kind != MIM_PK_BYTES) ||
	    (a[3]->kind != MIM_PK_STR && a[3]->kind != MIM_PK_BYTES) ||
	    a[4]->kind != MIM_PK_INT || a[4]->u.i < 0)
		return fail(u, "malformed storage id"), NULL;
	struct mim_pk *v = newval(u, MIM_PK_STORAGE);
	struct mim_pk_storage *st = v ? arena(u, sizeof *st) : NULL;
	if (!st)
		return NULL;
	st->key = a[2]->u.s;
	st->location = a[3]->u.s;
	st->dtype = (enum mim_dtype)dt;
	st->numel = a[4]->u.i;
	st->view_off = 0;
	st->view_numel = st->numel;
	if (pid->n == 6 && a[5]->kind != MIM_PK_NONE) {
		/* legacy view: (view_key, offset, view_size) in elements */
		struct mim_pk *vm = a[5];
		if (vm->kind != MIM_PK_TUPLE || vm->n != 3 || vm->u.v[1]->kind != MIM_PK_INT ||
		    vm->u.v[2]->kind != MIM_PK_INT || vm->u.v[1]->u.i < 0 || vm->u.v[2]->u.i < 0 ||
		    vm->u.v[1]->u.i > st->numel || vm->u.v[2]->u.i > st->numel - vm->u.v[1]->u.i)
			return fail(u, "malformed storage view"), NULL;
		st->view_off = vm->u.v[1]->u.i;
		st->view_numel = vm->u.v[2]->u.i;
	}
	v->u.st = st;
	if (!u->p->storages && !(u->p->storages = newval(u, MIM_PK_LIST)))
		return NULL;
	if (list_add(u, u->p->storages, &v, 1) < 0)
		return NULL;
	return v;
}

/* A tuple of ints into out (at most MIM_MAXDIM); its length, or -1. */
static int
int_tuple(const struct mim_pk *v, int64_t *out)
{
	if (!v || (v->kind != MIM_PK_TUPLE && v->kind != MIM_PK_LIST) || v->n > MIM_MAXDIM)
		return -1;
	for (size_t i = 0; i < v->n; i++) {
		if (v->u.v[i]->kind != MIM_PK_INT)
			return -1;
		out[i] = v->u.v[i]->u.i;
	}
	return (int)v->n;
}

/* _rebuild_tensor*(storage, offset, size, stride, ...): a TENSOR value. */
static struct mim_pk *
rebuild_tensor(struct up *u, struct mim_pk *args, int dtype_arg)
{
	struct mim_pk **a = args->u.v;
	int64_t size[MIM_MAXDIM], stride[MIM_MAXDIM];

	if (args->kind != MIM_PK_TUPLE || args->n < 4 || a[0]->kind != MIM_PK_STORAGE ||
	    a[1]->kind != MIM_PK_INT)
		return fail(u, "malformed tensor arguments"), NULL;
	int nd = int_tuple(a[2], size), ns = int_tuple(a[3], stride);
	if (nd < 0 || ns != nd)
		return fail(u, "malformed tensor size or stride (or more than %d dimensions)",
		    MIM_MAXDIM), NULL;
	int dt = a[0]->u.st->dtype;
	if (dtype_arg) {
		if (args->n < 7 || (dt = torch_dtype(a[6])) < 0)
			return fail(u, "malformed or unsupported tensor dtype"), NULL;
	}
	struct mim_pk *v = newval(u, MIM_PK_TENSOR);
	struct mim_pk_tensor *t = v ? arena(u, sizeof *t) : NULL;
	if (!t)
		return NULL;
	t->storage = a[0];
	t->dtype = (enum mim_dtype)dt;
	t->offset = a[1]->u.i;
	t->ndim = nd;
	memcpy(t->size, size, (size_t)nd * sizeof *size);
	memcpy(t->stride, stride, (size_t)nd * sizeof *stride);
	v->u.t = t;
	return v;
}

/* REDUCE / NEWOBJ: the value cls(*args) stands for, without calling it. */
static struct mim_pk *
reduce(struct up *u, struct mim_pk *cls, struct mim_pk *args, int depth)
{
	int tuple = args->kind == MIM_PK_TUPLE;
	struct mim_pk **a = tuple ? args->u.v : NULL;
	size_t n = tuple ? args->n : 0;

	if (is_global(cls, "collections.OrderedDict") && tuple) {
		struct mim_pk *d = newval(u, MIM_PK_DICT);
		if (!d)
			return NULL;
		if (n == 1 && (a[0]->kind == MIM_PK_LIST || a[0]->kind == MIM_PK_TUPLE)) {
			/* OrderedDict([(k, v), ...]) */
			for (size_t i = 0; i < a[0]->n; i++) {
				struct mim_pk *kv = a[0]->u.v[i];
				if ((kv->kind != MIM_PK_TUPLE && kv->kind != MIM_PK_LIST) || kv->n != 2)
					return fail(u, "OrderedDict item is not a pair"), NULL;
				if (dict_set(u, d, kv->u.v[0], kv->u.v[1]) < 0)
					return NULL;
			}
			return d;
		}
		if (n == 0)
			return d;
	}
	if (is_global(cls, "torch._utils._rebuild_tensor") ||
	    is_global(cls, "torch._utils._rebuild_tensor_v2"))
		return rebuild_tensor(u, args, 0);
	if (is_global(cls, "torch._utils._rebuild_tensor_v3"))
		return rebuild_tensor(u, args, 1);
	if ((is_global(cls, "torch._utils._rebuild_parameter") ||
	    is_global(cls, "torch._utils._rebuild_parameter_with_state")) &&
	    n >= 1 && a[0]->kind == MIM_PK_TENSOR)
		return a[0];
	if (is_global(cls, "torch._utils._rebuild_from_type_v2") && n >= 3 &&
	    a[0]->kind == MIM_PK_GLOBAL && a[2]->kind == MIM_PK_TUPLE && depth < 4) {
		/* (func, new_type, args, state): a tensor subclass; keep the tensor */
		struct mim_pk *r = reduce(u, a[0], a[2], depth + 1);
		if (!r || r->kind == MIM_PK_TENSOR)
			return r;
	}
	return object(u, cls, args);
}

/* BUILD: set state on the top value. Dicts (OrderedDict's _metadata) and
 * tensors ignore it, as nothing here needs it. */
static int
build(struct up *u)
{
	struct mim_pk *state = pop(u), *t = state ? top(u) : NULL;

	if (!t)
		return -1;
	if (t->kind == MIM_PK_OBJECT)
		t->u.obj->state = state;
	return 0;
}

/* ---- the machine ----------------------------------------------------------- */

static int
step(struct up *u, int op)
{
	struct mim_pk *v, *k, **items = NULL;
	size_t cnt = 0, len;
	uint64_t x;
	const unsigned char *p;
	const char *s;

	switch (op) {
	case OP_PROTO:
		if (uint_le(u, 1, &x) < 0)
			return -1;
		if (x > 5)
			return fail(u, "unsupported pickle protocol %d", (int)x);
		u->proto = (int)x;
		return 0;
	case OP_FRAME:
		return uint_le(u, 8, &x);
	case OP_MARK:
		if (u->nmark == u->mcap) {
			size_t cap = u->mcap ? 2 * u->mcap : 32;
			if (charge(u, (cap - u->mcap) * sizeof *u->marks) < 0)
				return -1;
			size_t *nm = mim_realloc(u->marks, cap * sizeof *nm);
			if (!nm)
				return -1;
			u->marks = nm;
			u->mcap = cap;
		}
		u->marks[u->nmark++] = u->sp;
		return 0;
	case OP_POP:
		if (u->sp > floor_(u)) {
			u->sp--;
			return 0;
		}
		return pop_mark(u, &items, &cnt);
	case OP_POP_MARK:
		return pop_mark(u, &items, &cnt);
	case OP_DUP:
		return (v = top(u)) ? push(u, v) : -1;

	case OP_NONE:
		return push(u, &none_v);
	case OP_NEWTRUE:
	case OP_NEWFALSE:
		if (!(v = newval(u, MIM_PK_BOOL)))
			return -1;
		v->u.i = op == OP_NEWTRUE;
		return push(u, v);
	case OP_BININT:
		if (uint_le(u, 4, &x) < 0)
			return -1;
		return push(u, newint(u, (int32_t)(uint32_t)x));
	case OP_BININT1:
		return uint_le(u, 1, &x) < 0 ? -1 : push(u, newint(u, (int64_t)x));
	case OP_BININT2:
		return uint_le(u, 2, &x) < 0 ? -1 : push(u, newint(u, (int64_t)x));
	case OP_LONG1:
	case OP_LONG4:
		if (uint_le(u, op == OP_LONG1 ? 1 : 4, &x) < 0)
			return -1;
		if (op == OP_LONG4 && (int32_t)(uint32_t)x < 0)
			return fail(u, "negative LONG4 length");
		if (!(p = take(u, (size_t)x)))
			return -1;
		return push(u, long_bytes(u, p, (size_t)x));
	case OP_INT:
	case OP_LONG: {
		int64_t i;
		if (line(u, &s, &len) < 0)
			return -1;
		if (op == OP_INT && len == 2 && s[0] == '0' && (s[1] == '0' || s[1] == '1')) {
			if (!(v = newval(u, MIM_PK_BOOL)))
				return -1;
			v->u.i = s[1] == '1';
			return push(u, v);
		}
		if (text_int(u, s, len, &i) < 0)
			return -1;
		return push(u, newint(u, i));
	}
	case OP_BINFLOAT: {
		if (!(p = take(u, 8)))
			return -1;
		uint64_t b = 0;
		for (int i = 0; i < 8; i++)
			b = b << 8 | p[i];	/* big-endian */
		double d;
		memcpy(&d, &b, 8);
		if (!(v = newval(u, MIM_PK_FLOAT)))
			return -1;
		v->u.f = d;
		return push(u, v);
	}
	case OP_FLOAT: {
		char buf[64], *end;
		if (line(u, &s, &len) < 0)
			return -1;
		if (len == 0 || len >= sizeof buf)
			return fail(u, "bad text float");
		memcpy(buf, s, len);
		buf[len] = 0;
		double d = strtod(buf, &end);
		if (*end)
			return fail(u, "bad text float");
		if (!(v = newval(u, MIM_PK_FLOAT)))
			return -1;
		v->u.f = d;
		return push(u, v);
	}

	case OP_BINUNICODE:
	case OP_SHORT_BINUNICODE:
	case OP_BINUNICODE8:
	case OP_BINSTRING:
	case OP_SHORT_BINSTRING:
	case OP_BINBYTES:
	case OP_SHORT_BINBYTES:
	case OP_BINBYTES8:
	case OP_BYTEARRAY8: {
		int w = op == OP_SHORT_BINUNICODE || op == OP_SHORT_BINSTRING ||
		    op == OP_SHORT_BINBYTES ? 1 :
		    op == OP_BINUNICODE8 || op == OP_BINBYTES8 || op == OP_BYTEARRAY8 ? 8 : 4;
		if (uint_le(u, w, &x) < 0)
			return -1;
		if (op == OP_BINSTRING && (int32_t)(uint32_t)x < 0)
			return fail(u, "negative BINSTRING length");
		if (x > u->n - u->pos) {
			u->hitend = 1;
			return fail(u, "string of %llu bytes runs past the end",
			    (unsigned long long)x);
		}
		p = take(u, (size_t)x);
		int bytes = op == OP_BINBYTES || op == OP_SHORT_BINBYTES ||
		    op == OP_BINBYTES8 || op == OP_BYTEARRAY8;
		return push(u, newstr(u, bytes ? MIM_PK_BYTES : MIM_PK_STR, p, (size_t)x));
	}
	case OP_UNICODE:
		if (line(u, &s, &len) < 0)
			return -1;
		return push(u, raw_unicode(u, s, len));
	case OP_STRING:
		if (line(u, &s, &len) < 0)
			return -1;
		return push(u, repr_string(u, s, len));

	case OP_EMPTY_TUPLE:
		return push(u, newval(u, MIM_PK_TUPLE));
	case OP_TUPLE1:
	case OP_TUPLE2:
	case OP_TUPLE3:
		cnt = (size_t)(op - OP_TUPLE1 + 1);
		if (u->sp - floor_(u) < cnt)
			return fail(u, "stack underflow");
		u->sp -= cnt;
		return push(u, seq(u, MIM_PK_TUPLE, u->stack + u->sp, cnt));
	case OP_TUPLE:
	case OP_LIST:
	case OP_FROZENSET:
		if (pop_mark(u, &items, &cnt) < 0)
			return -1;
		return push(u, seq(u, op == OP_TUPLE ? MIM_PK_TUPLE : op == OP_LIST ?
		    MIM_PK_LIST : MIM_PK_SET, items, cnt));
	case OP_EMPTY_LIST:
		return push(u, newval(u, MIM_PK_LIST));
	case OP_EMPTY_SET:
		return push(u, newval(u, MIM_PK_SET));
	case OP_EMPTY_DICT:
		return push(u, newval(u, MIM_PK_DICT));
	case OP_APPEND:
		if (!(v = pop(u)) || !(k = top(u)) || !(k = list_of(u, k)))
			return -1;
		return list_add(u, k, &v, 1);
	case OP_APPENDS:
	case OP_ADDITEMS:
		if (pop_mark(u, &items, &cnt) < 0 || !(k = top(u)) || !(k = list_of(u, k)))
			return -1;
		return list_add(u, k, items, cnt);
	case OP_DICT:
		if (pop_mark(u, &items, &cnt) < 0)
			return -1;
		if (cnt % 2)
			return fail(u, "DICT with an odd number of items");
		if (!(v = newval(u, MIM_PK_DICT)))
			return -1;
		for (size_t i = 0; i < cnt; i += 2)
			if (dict_set(u, v, items[i], items[i + 1]) < 0)
				return -1;
		return push(u, v);
	case OP_SETITEM: {
		struct mim_pk *val = pop(u), *key = val ? pop(u) : NULL;
		if (!key || !(k = top(u)) || !(k = dict_of(u, k)))
			return -1;
		return dict_set(u, k, key, val);
	}
	case OP_SETITEMS:
		if (pop_mark(u, &items, &cnt) < 0)
			return -1;
		if (cnt % 2)
			return fail(u, "SETITEMS with an odd number of items");
		if (!(k = top(u)) || !(k = dict_of(u, k)))
			return -1;
		for (size_t i = 0; i < cnt; i += 2)
			if (dict_set(u, k, items[i], items[i + 1]) < 0)
				return -1;
		return 0;

	case OP_PUT:
	case OP_BINPUT:
	case OP_LONG_BINPUT:
	case OP_MEMOIZE:
		if (op == OP_PUT) {
			int64_t i;
			if (line(u, &s, &len) < 0 || text_int(u, s, len, &i) < 0)
				return -1;
			if (i < 0 || i > UINT32_MAX)
				return fail(u, "memo key out of range");
			x = (uint64_t)i;
		} else if (op == OP_MEMOIZE) {
			x = u->mlen;
			if (x > UINT32_MAX)
				return fail(u, "memo full");
		} else if (uint_le(u, op == OP_BINPUT ? 1 : 4, &x) < 0) {
			return -1;
		}
		if (!(v = top(u)))
			return -1;
		return memo_put(u, (uint32_t)x, v);
	case OP_GET:
	case OP_BINGET:
	case OP_LONG_BINGET:
		if (op == OP_GET) {
			int64_t i;
			if (line(u, &s, &len) < 0 || text_int(u, s, len, &i) < 0)
				return -1;
			x = i < 0 ? UINT64_MAX : (uint64_t)i;
		} else if (uint_le(u, op == OP_BINGET ? 1 : 4, &x) < 0) {
			return -1;
		}
		return push(u, memo_get(u, x));

	case OP_GLOBAL:
	case OP_INST: {
		const char *mod, *name;
		size_t ml, nl;
		if (line(u, &mod, &ml) < 0 || line(u, &name, &nl) < 0)
			return -1;
		if (!(v = global(u, mod, ml, name, nl)))
			return -1;
		if (op == OP_GLOBAL)
			return push(u, v);
		if (pop_mark(u, &items, &cnt) < 0)
			return -1;
		return push(u, reduce(u, v, seq(u, MIM_PK_TUPLE, items, cnt), 0));
	}
	case OP_STACK_GLOBAL: {
		struct mim_pk *name = pop(u), *mod = name ? pop(u) : NULL;
		if (!mod)
			return -1;
		if (mod->kind != MIM_PK_STR || name->kind != MIM_PK_STR)
			return fail(u, "STACK_GLOBAL of non-strings");
		return push(u, global(u, mod->u.s, mod->n, name->u.s, name->n));
	}
	case OP_OBJ:
		if (pop_mark(u, &items, &cnt) < 0)
			return -1;
		if (cnt < 1)
			return fail(u, "OBJ without a class");
		if (!(k = seq(u, MIM_PK_TUPLE, items + 1, cnt - 1)))
			return -1;
		return push(u, reduce(u, items[0], k, 0));
	case OP_REDUCE:
	case OP_NEWOBJ: {
		struct mim_pk *args = pop(u), *cls = args ? pop(u) : NULL;
		if (!cls)
			return -1;
		return push(u, reduce(u, cls, args, 0));
	}
	case OP_NEWOBJ_EX: {
		struct mim_pk *kw = pop(u), *args = kw ? pop(u) : NULL;
		struct mim_pk *cls = args ? pop(u) : NULL;
		if (!cls)
			return -1;
		return push(u, reduce(u, cls, args, 0));
	}
	case OP_BUILD:
		return build(u);
	case OP_PERSID:
		if (line(u, &s, &len) < 0)
			return -1;
		return push(u, object(u, NULL, newstr(u, MIM_PK_STR, s, len)));
	case OP_BINPERSID:
		if (!(v = pop(u)))
			return -1;
		return push(u, persistent(u, v));
	case OP_EXT1:
	case OP_EXT2:
	case OP_EXT4:
		return fail(u, "extension registry codes are not supported");
	case OP_NEXT_BUFFER:
	case OP_READONLY_BUFFER:
		return fail(u, "out-of-band buffers are not supported");
	default:
		return fail(u, "unknown opcode 0x%02x", op);
	}
}

struct mim_pickle *
mim_unpickle(const void *buf, size_t n, size_t *used)
{
	struct up u = {.b = buf, .n = n};
	int rc = -1;

	/* the cap is on the pickle, not on what follows it (legacy files) */
	int capped = n > MIM_PICKLE_MAXLEN;
	if (capped)
		u.n = MIM_PICKLE_MAXLEN;
	if (!(u.p = mim_calloc(1, sizeof *u.p)))
		return NULL;
	for (;;) {
		u.op_at = u.pos;
		if (u.pos >= u.n) {
			u.hitend = 1;
			fail(&u, "truncated: no STOP");
			break;
		}
		int op = u.b[u.pos++];
		if (op == OP_STOP) {
			struct mim_pk *r = pop(&u);
			if (!r)
				break;
			u.p->root = r;
			rc = 0;
			break;
		}
		if (step(&u, op) < 0)
			break;
	}
	free(u.stack);
	free(u.marks);
	free(u.memo);
	if (rc < 0 && capped && u.hitend)
		mim_seterr("pickle: longer than the %zu MiB allowed", MIM_PICKLE_MAXLEN >> 20);
	if (rc < 0) {
		mim_pickle_free(u.p);
		return NULL;
	}
	if (used)
		*used = u.pos;
	return u.p;
}

void
mim_pickle_free(struct mim_pickle *p)
{
	if (!p)
		return;
	while (p->chunks) {
		struct chunk *c = p->chunks;
		p->chunks = c->next;
		free(c);
	}
	free(p);
}

const struct mim_pk *
mim_pickle_root(const struct mim_pickle *p)
{
	return p->root;
}

struct mim_pk *const *
mim_pickle_storages(const struct mim_pickle *p, size_t *n)
{
	*n = p->storages ? p->storages->n : 0;
	return p->storages ? p->storages->u.v : NULL;
}

struct mim_pk *const *
mim_pk_pairs(const struct mim_pk *d, size_t *n)
{
	*n = 0;
	if (d && d->kind == MIM_PK_OBJECT)
		d = d->u.obj->items;
	if (!d || d->kind != MIM_PK_DICT)
		return NULL;
	*n = d->n;
	return d->u.v;
}

const struct mim_pk *
mim_pk_get(const struct mim_pk *d, const char *key)
{
	size_t n;
	struct mim_pk *const *kv = mim_pk_pairs(d, &n);

	for (size_t i = n; i-- > 0;)
		if (kv[2 * i]->kind == MIM_PK_STR && strcmp(kv[2 * i]->u.s, key) == 0)
			return kv[2 * i + 1];
	return NULL;
}

char *
mim_pk_describe(const struct mim_pk *v, char *buf, size_t n)
{
	char sh[160];

	if (!v) {
		snprintf(buf, n, "nothing");
		return buf;
	}
	switch (v->kind) {
	case MIM_PK_NONE: snprintf(buf, n, "None"); break;
	case MIM_PK_BOOL: snprintf(buf, n, "%s", v->u.i ? "True" : "False"); break;
	case MIM_PK_INT: snprintf(buf, n, "int %lld", (long long)v->u.i); break;
	case MIM_PK_BIGINT: snprintf(buf, n, "int of %zu bytes", v->n); break;
	case MIM_PK_FLOAT: snprintf(buf, n, "float %.9g", v->u.f); break;
	case MIM_PK_STR: snprintf(buf, n, "str '%.40s%s'", v->u.s, v->n > 40 ? "..." : ""); break;
	case MIM_PK_BYTES: snprintf(buf, n, "bytes of %zu", v->n); break;
	case MIM_PK_TUPLE: snprintf(buf, n, "tuple of %zu", v->n); break;
	case MIM_PK_LIST: snprintf(buf, n, "list of %zu", v->n); break;
	case MIM_PK_SET: snprintf(buf, n, "set of %zu", v->n); break;
	case MIM_PK_DICT: {
		size_t nt = 0;
		for (size_t i = 0; i < v->n; i++)
			nt += v->u.v[2 * i + 1]->kind == MIM_PK_TENSOR;
		if (nt && nt == v->n)
			snprintf(buf, n, "dict of %zu tensors", nt);
		else
			snprintf(buf, n, "dict of %zu", v->n);
		break;
	}
	case MIM_PK_GLOBAL: snprintf(buf, n, "class %s", v->u.s); break;
	case MIM_PK_OBJECT: {
		const struct mim_pk *c = v->u.obj->cls;
		if (!c)
			snprintf(buf, n, "persistent id");
		else if (c->kind == MIM_PK_GLOBAL)
			snprintf(buf, n, "%s object", c->u.s);
		else
			snprintf(buf, n, "object");
		break;
	}
	case MIM_PK_STORAGE:
		snprintf(buf, n, "storage '%s' of %lld %s", v->u.st->key,
		    (long long)v->u.st->numel, mim_dtype_name(v->u.st->dtype));
		break;
	case MIM_PK_TENSOR:
		snprintf(buf, n, "tensor %s %s", mim_dtype_name(v->u.t->dtype),
		    mim_shape_str(sh, sizeof sh, v->u.t->ndim, v->u.t->size));
		break;
	default: snprintf(buf, n, "?"); break;
	}
	return buf;
}
