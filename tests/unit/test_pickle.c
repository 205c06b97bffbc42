/* test_pickle.c -- the safe unpickler: every opcode family on hand-made
 * pickles, shared references, opaque classes, torch storages and tensors,
 * and hostile input (truncation at every byte, mutations, stack tricks,
 * nesting and memory bombs). */
#include <stdlib.h>
#include <string.h>

#include "mim.h"
#include "mim/ckpt.h"
#include "tap.h"

/* unpickle a string literal (which may hold NUL bytes) */
#define UP(lit) mim_unpickle(lit, sizeof(lit) - 1, NULL)

static const struct mim_pk *
root_of(struct mim_pickle *p)
{
	return p ? mim_pickle_root(p) : NULL;
}

static int
is_int(struct mim_pickle *p, int64_t want)
{
	const struct mim_pk *v = root_of(p);
	int ok = v && v->kind == MIM_PK_INT && v->u.i == want;
	mim_pickle_free(p);
	return ok;
}

static int
is_str(struct mim_pickle *p, int kind, const char *want, size_t n)
{
	const struct mim_pk *v = root_of(p);
	int ok = v && (int)v->kind == kind && v->n == n && memcmp(v->u.s, want, n) == 0;
	mim_pickle_free(p);
	return ok;
}

static int
fails(struct mim_pickle *p, const char *msg_part)
{
	int ok = p == NULL && strstr(mim_errmsg(), msg_part) != NULL;
	if (!ok)
		printf("# got %s, message '%s'\n", p ? "a value" : "NULL", mim_errmsg());
	mim_pickle_free(p);
	return ok;
}

static void
numbers(void)
{
	tap(is_int(UP("\x80\x02J\xfe\xff\xff\xff."), -2), "BININT is signed 32-bit");
	tap(is_int(UP("\x80\x02K\xff."), 255), "BININT1");
	tap(is_int(UP("\x80\x02M\x00\x01."), 256), "BININT2 little-endian");
	tap(is_int(UP("\x80\x02\x8a\x01\xff."), -1), "LONG1 negative");
	tap(is_int(UP("\x80\x02\x8a\x02\x00\x80."), -32768), "LONG1 sign bit");
	tap(is_int(UP("\x80\x02\x8a\x00."), 0), "LONG1 of zero bytes");
	tap(is_int(UP("\x80\x02\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f."), INT64_MAX), "LONG1 int64 max");
	tap(is_int(UP("\x80\x02\x8b\x02\x00\x00\x00\x01\x02."), 513), "LONG4");
	tap(is_str(UP("\x80\x02\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09."), MIM_PK_BIGINT,
	    "\x01\x02\x03\x04\x05\x06\x07\x08\x09", 9), "LONG1 wider than 64 bits kept as bytes");
	tap(is_int(UP("I42\n."), 42), "protocol 0 INT");
	tap(is_int(UP("L-5L\n."), -5), "protocol 0 LONG with the L suffix");
	struct mim_pickle *p = UP("I01\n.");
	tap(root_of(p) && root_of(p)->kind == MIM_PK_BOOL && root_of(p)->u.i == 1, "INT 01 is True");
	mim_pickle_free(p);
	p = UP("\x80\x02\x89.");
	tap(root_of(p) && root_of(p)->kind == MIM_PK_BOOL && root_of(p)->u.i == 0, "NEWFALSE");
	mim_pickle_free(p);
	p = UP("\x80\x02G?\xf8\x00\x00\x00\x00\x00\x00.");
	tap(root_of(p) && root_of(p)->kind == MIM_PK_FLOAT && root_of(p)->u.f == 1.5,
	    "BINFLOAT is big-endian");
	mim_pickle_free(p);
	p = UP("F0.25\n.");
	tap(root_of(p) && root_of(p)->kind == MIM_PK_FLOAT && root_of(p)->u.f == 0.25, "text FLOAT");
	mim_pickle_free(p);
	p = UP("\x80\x02N.");
	tap(root_of(p) && root_of(p)->kind == MIM_PK_NONE, "NONE");
	mim_pickle_free(p);
}

static void
strings(void)
{
	tap(is_str(UP("\x80\x02X\x03\x00\x00\x00""abc."), MIM_PK_STR, "abc", 3), "BINUNICODE");
	tap(is_str(UP("\x80\x04\x8c\x02hi."), MIM_PK_STR, "hi", 2), "SHORT_BINUNICODE");
	tap(is_str(UP("\x80\x04\x8d\x02\x00\x00\x00\x00\x00\x00\x00ok."), MIM_PK_STR, "ok", 2),
	    "BINUNICODE8");
	tap(is_str(UP("Vcaf\\u00e9 \\U0001F600\n."), MIM_PK_STR, "caf\xc3\xa9 \xf0\x9f\x98\x80", 10),
	    "protocol 0 UNICODE with \\u and \\U escapes");
	tap(is_str(UP("V\xe9\n."), MIM_PK_STR, "\xc3\xa9", 2), "protocol 0 UNICODE latin-1 byte");
	tap(is_str(UP("S'a\\nb'\n."), MIM_PK_STR, "a\nb", 3), "protocol 0 STRING repr");
	tap(is_str(UP("\x80\x02T\x01\x00\x00\x00z."), MIM_PK_STR, "z", 1), "BINSTRING");
	tap(is_str(UP("\x80\x02U\x01y."), MIM_PK_STR, "y", 1), "SHORT_BINSTRING");
	tap(is_str(UP("\x80\x03""B\x02\x00\x00\x00\x00\x01."), MIM_PK_BYTES, "\x00\x01", 2),
	    "BINBYTES keeps NUL bytes");
	tap(is_str(UP("\x80\x03""C\x00."), MIM_PK_BYTES, "", 0), "empty SHORT_BINBYTES");
	tap(is_str(UP("\x80\x05\x96\x01\x00\x00\x00\x00\x00\x00\x00q."), MIM_PK_BYTES, "q", 1),
	    "BYTEARRAY8");
}

static void
containers(void)
{
	struct mim_pickle *p = UP("\x80\x02(K\x01K\x02t.");
	const struct mim_pk *v = root_of(p);
	tap(v && v->kind == MIM_PK_TUPLE && v->n == 2 && v->u.v[1]->u.i == 2, "MARK ... TUPLE");
	mim_pickle_free(p);

	p = UP("\x80\x02K\x01K\x02K\x03\x87.");
	v = root_of(p);
	tap(v && v->kind == MIM_PK_TUPLE && v->n == 3 && v->u.v[0]->u.i == 1, "TUPLE3");
	mim_pickle_free(p);

	p = UP("\x80\x02]q\x00(K\x01K\x02K\x03""e.");
	v = root_of(p);
	tap(v && v->kind == MIM_PK_LIST && v->n == 3 && v->u.v[2]->u.i == 3, "EMPTY_LIST + APPENDS");
	mim_pickle_free(p);

	p = UP("\x80\x02}(X\x01\x00\x00\x00""aK\x01X\x01\x00\x00\x00""bK\x02uX\x01\x00\x00\x00""aK\x03s.");
	v = root_of(p);
	const struct mim_pk *a = mim_pk_get(v, "a"), *b = mim_pk_get(v, "b");
	tap(v && v->kind == MIM_PK_DICT && a && a->u.i == 3 && b && b->u.i == 2,
	    "SETITEMS + SETITEM; a repeated key reads as the last value");
	tap(mim_pk_get(v, "c") == NULL, "absent key");
	mim_pickle_free(p);

	p = UP("(K\x01K\x02""d.");
	v = root_of(p);
	tap(v && v->kind == MIM_PK_DICT && v->n == 1 && v->u.v[0]->u.i == 1, "protocol 0 DICT");
	mim_pickle_free(p);

	p = UP("\x80\x04\x8f(K\x01K\x02\x90.");
	v = root_of(p);
	tap(v && v->kind == MIM_PK_SET && v->n == 2, "EMPTY_SET + ADDITEMS");
	mim_pickle_free(p);

	p = UP("\x80\x04(K\x01\x91.");
	v = root_of(p);
	tap(v && v->kind == MIM_PK_SET && v->n == 1, "FROZENSET");
	mim_pickle_free(p);
}

static void
memo(void)
{
	/* {'a': []} with the list memoised, then appended to through the memo */
	struct mim_pickle *p = UP("\x80\x02}q\x00(X\x01\x00\x00\x00""a]q\x01uh\x01K\x05""a0.");
	const struct mim_pk *v = root_of(p), *l = mim_pk_get(v, "a");
	tap(l && l->kind == MIM_PK_LIST && l->n == 1 && l->u.v[0]->u.i == 5,
	    "the memo holds references: a memoised list filled later");
	mim_pickle_free(p);

	p = UP("(lp0\nI1\nag0\n0.");
	v = root_of(p);
	tap(v && v->kind == MIM_PK_LIST && v->n == 1, "protocol 0 PUT and GET");
	mim_pickle_free(p);

	p = UP("\x80\x04]\x94K\x07h\x00\x87.");
	v = root_of(p);
	tap(v && v->kind == MIM_PK_TUPLE && v->n == 3 && v->u.v[0] == v->u.v[2], "MEMOIZE + BINGET");
	mim_pickle_free(p);

	p = UP("\x80\x02K\x09r\x00\x00\x01\x00j\x00\x00\x01\x00\x86.");
	v = root_of(p);
	tap(v && v->n == 2 && v->u.v[1]->u.i == 9, "LONG_BINPUT and LONG_BINGET");
	mim_pickle_free(p);

	/* a list containing itself */
	p = UP("\x80\x02]q\x00h\x00""a.");
	v = root_of(p);
	tap(v && v->n == 1 && v->u.v[0] == v, "a cycle through the memo");
	mim_pickle_free(p);
}

static void
classes(void)
{
	char d[128];
	struct mim_pickle *p = UP("\x80\x02""ccollections\nOrderedDict\nq\x00)R(X\x01\x00\x00\x00kK\x01u.");
	const struct mim_pk *v = root_of(p);
	tap(v && v->kind == MIM_PK_DICT && mim_pk_get(v, "k") && mim_pk_get(v, "k")->u.i == 1,
	    "REDUCE(OrderedDict, ()) is a dict");
	mim_pickle_free(p);

	p = UP("\x80\x04\x8c\x0b""collections\x8c\x0bOrderedDict\x93]((K\x01K\x02t(K\x03K\x04te\x85R.");
	v = root_of(p);
	tap(v && v->kind == MIM_PK_DICT && v->n == 2 && v->u.v[3]->u.i == 4,
	    "STACK_GLOBAL; OrderedDict([(k, v), ...])");
	mim_pickle_free(p);

	/* a yacs CfgNode: a dict subclass through NEWOBJ, items, then BUILD */
	p = UP("\x80\x02""cyacs.config\nCfgNode\n)\x81(X\x04\x00\x00\x00SEEDK\x00u}X\x01\x00\x00\x00xK\x02sb.");
	v = root_of(p);
	tap(v && v->kind == MIM_PK_OBJECT && mim_pk_get(v, "SEED") && mim_pk_get(v, "SEED")->u.i == 0 &&
	    v->u.obj->state && mim_pk_get(v->u.obj->state, "x") &&
	    strcmp(mim_pk_describe(v, d, sizeof d), "yacs.config.CfgNode object") == 0,
	    "an unknown dict subclass stays opaque with its items and state (%s)", d);
	mim_pickle_free(p);

	/* REDUCE of anything else is never called */
	p = UP("\x80\x02""cos\nsystem\nX\x08\x00\x00\x00rm -rf /\x85R.");
	v = root_of(p);
	tap(v && v->kind == MIM_PK_OBJECT && v->u.obj->args->n == 1 &&
	    strcmp(mim_pk_describe(v, d, sizeof d), "os.system object") == 0,
	    "os.system(...) is kept as an opaque object, not run");
	mim_pickle_free(p);

	p = UP("(i__main__\nThing\n}X\x01\x00\x00\x00""aK\x01sb.");
	v = root_of(p);
	tap(v && v->kind == MIM_PK_OBJECT && v->u.obj->args->n == 0 && v->u.obj->state,
	    "protocol 0 INST + BUILD");
	mim_pickle_free(p);
}

#define TENSOR_PKL \
	"\x80\x02""ctorch._utils\n_rebuild_tensor_v2\nq\x00((X\x07\x00\x00\x00storage" \
	"ctorch\nFloatStorage\nX\x01\x00\x00\x00""0X\x03\x00\x00\x00""cpuK\x06tQ" \
	"K\x01K\x02K\x02\x86K\x01K\x02\x86\x89)tR."

static void
torch(void)
{
	char d[128];
	struct mim_pickle *p = UP(TENSOR_PKL);
	const struct mim_pk *v = root_of(p);
	size_t ns = 0;
	struct mim_pk *const *st = p ? mim_pickle_storages(p, &ns) : NULL;
	tap(v && v->kind == MIM_PK_TENSOR && v->u.t->dtype == MIM_F32 && v->u.t->offset == 1 &&
	    v->u.t->ndim == 2 && v->u.t->size[0] == 2 && v->u.t->stride[0] == 1 &&
	    v->u.t->stride[1] == 2, "_rebuild_tensor_v2: dtype, offset, size, stride (%s)",
	    mim_pk_describe(v, d, sizeof d));
	tap(ns == 1 && strcmp(st[0]->u.st->key, "0") == 0 && st[0]->u.st->numel == 6 &&
	    strcmp(st[0]->u.st->location, "cpu") == 0, "the storage id is recorded");
	mim_pickle_free(p);

	/* _rebuild_parameter(_rebuild_tensor_v2(...), True, OrderedDict()) */
	p = UP("\x80\x02""ctorch._utils\n_rebuild_parameter\n"
	    "ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
	    "ctorch\nLongStorage\nX\x01\x00\x00\x00""3X\x03\x00\x00\x00""cpuK\x02NtQ"
	    "K\x00K\x02\x85K\x01\x85\x89)tR\x88)\x87R.");
	v = root_of(p);
	tap(v && v->kind == MIM_PK_TENSOR && v->u.t->dtype == MIM_I64 && v->u.t->storage->u.st->view_numel == 2,
	    "_rebuild_parameter unwraps; a legacy 6-item id with no view");
	mim_pickle_free(p);

	p = UP("\x80\x02(X\x07\x00\x00\x00storagectorch\nComplexFloatStorage\nX\x01\x00\x00\x00""0"
	    "X\x03\x00\x00\x00""cpuK\x01tQ.");
	tap(fails(p, "unsupported storage type"), "complex storages are refused");
	p = UP("\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00""0tQ.");
	tap(fails(p, "storage id of 3 items"), "short storage ids are refused");
	p = UP("\x80\x02(X\x06\x00\x00\x00moduleK\x01tQ.");
	v = root_of(p);
	tap(v && v->kind == MIM_PK_OBJECT && v->u.obj->cls == NULL, "other persistent ids stay opaque");
	mim_pickle_free(p);
}

static void
framing(void)
{
	static const char two[] = "\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00K\x07.\x80\x02K\x08.";
	size_t used = 0;
	struct mim_pickle *p = mim_unpickle(two, sizeof two - 1, &used);
	tap(p && root_of(p)->u.i == 7 && used == 14, "FRAME; the bytes used stop at STOP (%zu)", used);
	mim_pickle_free(p);
	p = mim_unpickle(two + used, sizeof two - 1 - used, NULL);
	tap(p && root_of(p)->u.i == 8, "the next pickle follows");
	mim_pickle_free(p);
}

static void
hostile(void)
{
	tap(fails(UP("\x80\x02""a."), "stack underflow"), "APPEND on an empty stack");
	tap(fails(UP("\x80\x02]K\x01(K\x02""a."), "stack underflow"), "no popping below a MARK");
	tap(fails(UP("\x80\x02K\x01t."), "no MARK"), "TUPLE without a MARK");
	tap(fails(UP("\x80\x02\xf0."), "unknown opcode 0xf0"), "unknown opcode");
	tap(fails(UP("\x80\x02h\x07."), "memo key 7"), "GET of an unset memo key");
	tap(fails(UP("\x80\x04\x8d\x00\x00\x00\x00\x00\x00\x00\x40x."), "runs past the end"),
	    "huge declared string length");
	tap(fails(UP("\x80\x02\x8b\xff\xff\xff\xff."), "negative LONG4"), "negative LONG4 length");
	tap(fails(UP("\x80\x02}(K\x01u."), "odd number"), "SETITEMS with an odd count");
	tap(fails(UP("\x80\x02]K\x01K\x02s."), "SETITEM on a list"), "SETITEM on a list");
	tap(fails(UP("\x80\x02K\x01K\x02""a."), "APPEND to a non-list"), "APPEND to an int");
	tap(fails(UP("\x80\x02\x82\x01."), "extension"), "EXT1");
	tap(fails(UP("\x80\x05\x97."), "out-of-band"), "NEXT_BUFFER");
	tap(fails(UP("\x80\x06K\x01."), "protocol 6"), "unknown protocol");
	tap(fails(UP("\x80\x02K\x01"), "no STOP"), "no STOP");
	tap(fails(UP("\x80\x02."), "stack underflow"), "STOP with an empty stack");
	tap(fails(UP("cfoo\n"), "truncated text"), "GLOBAL without its second line");
	tap(fails(UP("Ixyz\n."), "text integer"), "bad text integer");
	tap(fails(UP("\x80\x02}b."), "stack underflow"), "BUILD with nothing under the state");

	/* every prefix of a valid pickle fails cleanly */
	static const char t[] = TENSOR_PKL;
	int bad = 0;
	for (size_t k = 0; k + 1 < sizeof t - 1; k++) {
		struct mim_pickle *p = mim_unpickle(t, k, NULL);
		if (p) {
			bad++;
			mim_pickle_free(p);
		}
	}
	tap(bad == 0, "every one of the %zu proper prefixes is an error", sizeof t - 2);

	/* random mutations: no crash, and whatever parses is a value */
	unsigned char m[sizeof t];
	int parsed = 0;
	for (int it = 0; it < 20000; it++) {
		memcpy(m, t, sizeof t);
		int k = 1 + (int)((frand() + 1) * 2);
		for (int j = 0; j < k; j++)
			m[(size_t)((frand() + 1) / 2 * (sizeof t - 1))] = (unsigned char)((frand() + 1) * 128);
		struct mim_pickle *p = mim_unpickle(m, sizeof t - 1, NULL);
		if (p) {
			parsed += mim_pickle_root(p) != NULL;
			mim_pickle_free(p);
		}
	}
	tap(1, "20000 mutated pickles read without a crash (%d parsed)", parsed);

	/* nesting costs nothing: 10^6 nested lists */
	size_t depth = 1000000, n = 2 + 2 * depth;
	char *bomb = malloc(n + 1);
	bomb[0] = (char)0x80;
	bomb[1] = 2;
	memset(bomb + 2, ']', depth);
	memset(bomb + 2 + depth, 'a', depth - 1);
	bomb[n - 1] = '.';
	struct mim_pickle *p = mim_unpickle(bomb, n, NULL);
	char d[64];
	tap(p && strcmp(mim_pk_describe(mim_pickle_root(p), d, sizeof d), "list of 1") == 0,
	    "a million nested lists: no recursion");
	mim_pickle_free(p);
	/* a million unclosed MARKs */
	memset(bomb + 2, '(', n - 3);
	tap(fails(mim_unpickle(bomb, n, NULL), "stack underflow"), "a million MARKs");
	free(bomb);

	/* memory: 7 million small ints would need more than the cap */
	n = 2 + 2 * 7000000 + 1;
	bomb = malloc(n);
	bomb[0] = (char)0x80;
	bomb[1] = 2;
	for (size_t i = 2; i + 1 < n; i += 2) {
		bomb[i] = 'K';
		bomb[i + 1] = 1;
	}
	bomb[n - 1] = '.';
	tap(fails(mim_unpickle(bomb, n, NULL), "MiB of memory"), "the memory cap holds (%s)",
	    mim_errmsg());
	free(bomb);
	/* a pickle longer than the cap; and a short one followed by many bytes */
	n = MIM_PICKLE_MAXLEN + 64;
	bomb = calloc(1, n);
	memcpy(bomb, "\x80\x04\x8d", 3);
	uint64_t sl = MIM_PICKLE_MAXLEN;
	memcpy(bomb + 3, &sl, 8);
	bomb[n - 1] = '.';
	tap(fails(mim_unpickle(bomb, n, NULL), "longer than the 64 MiB allowed"),
	    "a pickle longer than the cap: %s", mim_errmsg());
	memcpy(bomb, "\x80\x02K\x07.", 5);
	size_t used = 0;
	struct mim_pickle *q = mim_unpickle(bomb, n, &used);
	tap(q && mim_pickle_root(q)->u.i == 7 && used == 5,
	    "a short pickle followed by more than the cap of other bytes (legacy files)");
	mim_pickle_free(q);
	free(bomb);
}

int
main(void)
{
	numbers();
	strings();
	containers();
	memo();
	classes();
	torch();
	framing();
	hostile();
	return tap_done();
}
