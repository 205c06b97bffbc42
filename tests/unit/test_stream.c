/* test_stream.c -- frames: round trips of every dtype, many frames through a
 * real pipe, every malformed header, half-precision conversions.
 *   test_stream            run the tests
 *   test_stream --emit F   write a two-frame sample stream to F (for the
 *                          Python interop test) */
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mim.h"
#include "tap.h"

/* A frame with one tensor of each dtype, values from seed. */
static struct mim_frame *
sample(int seed)
{
	struct mim_frame *f = mim_frame_new();
	int64_t sh[3] = {2, 3, 1 + seed % 4};

	for (int d = 0; d < MIM_NDTYPE; d++) {
		char name[32];
		snprintf(name, sizeof name, "t_%s", mim_dtype_name(d));
		struct mim_tensor *t = mim_frame_add(f, name, d, 3, sh, NULL);
		int64_t n = mim_tensor_numel(t);
		for (int64_t i = 0; i < n; i++) {
			double v = (double)((i * 7 + seed) % 11) - 5;
			switch (d) {
			case MIM_F32: ((float *)t->data)[i] = (float)v / 4; break;
			case MIM_F16: ((uint16_t *)t->data)[i] = mim_f32_to_f16((float)v / 4); break;
			case MIM_BF16: ((uint16_t *)t->data)[i] = mim_f32_to_bf16((float)v / 4); break;
			case MIM_F64: ((double *)t->data)[i] = v / 4; break;
			case MIM_U8: ((uint8_t *)t->data)[i] = (uint8_t)(v + 5); break;
			case MIM_I8: ((int8_t *)t->data)[i] = (int8_t)v; break;
			case MIM_I16: ((int16_t *)t->data)[i] = (int16_t)(v * 1000); break;
			case MIM_I32: ((int32_t *)t->data)[i] = (int32_t)(v * 100000); break;
			case MIM_I64: ((int64_t *)t->data)[i] = (int64_t)v * ((int64_t)1 << 40); break;
			case MIM_BOOL: ((uint8_t *)t->data)[i] = v > 0; break;
			}
		}
	}
	int64_t sc = 0;
	mim_frame_add(f, "scalar", MIM_F32, 0, &sc, NULL);
	int64_t z = 0;
	mim_frame_add(f, "empty", MIM_F32, 1, &z, NULL);
	char buf[32];
	snprintf(buf, sizeof buf, "%d", seed);
	mim_meta_set(f, "mim.batch", buf);
	mim_meta_set(f, "quote\"d", "caf\xc3\xa9 \"x\"\n");
	return f;
}

static int
same(const struct mim_frame *a, const struct mim_frame *b)
{
	if (a->n != b->n || a->nmeta != b->nmeta)
		return 0;
	for (int i = 0; i < a->n; i++) {
		const struct mim_tensor *x = &a->t[i], *y = mim_frame_get(b, x->name);
		if (!y || x->dtype != y->dtype || x->ndim != y->ndim || x->nbytes != y->nbytes)
			return 0;
		if (memcmp(x->shape, y->shape, sizeof(int64_t) * (size_t)x->ndim))
			return 0;
		if (x->nbytes && memcmp(x->data, y->data, x->nbytes))
			return 0;
		if ((uintptr_t)y->data % mim_dtype_size(y->dtype))
			return 0;
	}
	for (int i = 0; i < a->nmeta; i++) {
		const char *v = mim_meta_get(b, a->mkey[i]);
		if (!v || strcmp(v, a->mval[i]))
			return 0;
	}
	return 1;
}

/* Serialise a frame to memory via a temp file. */
static char *
to_bytes(const struct mim_frame *f, size_t *n)
{
	char path[] = "/tmp/mimtestXXXXXX";
	int fd = mkstemp(path);
	mim_write_frame(fd, f);
	*n = (size_t)lseek(fd, 0, SEEK_END);
	char *b = malloc(*n);
	pread(fd, b, *n, 0);
	close(fd);
	unlink(path);
	return b;
}

/* Parse raw header text (+ data bytes) as a frame from a pipe; return
 * the error message (static) or NULL if it parsed. */
static const char *
try_stream(const void *bytes, size_t n)
{
	static char msg[1024];
	int p[2];

	if (pipe(p))
		return "pipe";
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		mim_writeall(p[1], bytes, n);
		_exit(0);
	}
	close(p[1]);
	struct mim_reader *r = mim_reader_fdopen(p[0], "<pipe>");
	struct mim_frame *f;
	int rc, frames = 0;
	while ((rc = mim_read_frame(r, &f)) > 0) {
		mim_frame_free(f);
		frames++;
	}
	snprintf(msg, sizeof msg, "%s", rc < 0 ? mim_errmsg() : "");
	mim_reader_close(r);
	close(p[0]);
	waitpid(pid, NULL, 0);
	return rc < 0 ? msg : NULL;
}

static size_t
mkframe(char *out, const char *json, size_t datalen)
{
	uint64_t n = strlen(json);
	memcpy(out, &n, 8);
	memcpy(out + 8, json, n);
	memset(out + 8 + n, 0x5a, datalen);
	return 8 + n + datalen;
}

static void
malformed(void)
{
	static const struct {
		const char *what, *json, *want;
		size_t data;
	} cases[] = {
		{"bad JSON", "{\"a\":{\"dtype\":\"F32\",", "bad header JSON", 0},
		{"not an object", "[1,2]", "not a JSON object", 0},
		{"unknown dtype", "{\"a\":{\"dtype\":\"F12\",\"shape\":[1],\"data_offsets\":[0,4]}}", "unknown dtype", 4},
		{"missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", "missing shape", 4},
		{"negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", "bad shape", 4},
		{"overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "overlap", 8},
		{"gap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
		  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", "gap", 12},
		{"duplicate name", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
		  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "duplicate name", 8},
		{"shape/offset mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", "shape needs 12 bytes", 8},
		{"shape overflow", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", "too large", 8},
		{"metadata not string", "{\"__metadata__\":{\"k\":1}}", "not a string", 0},
		{"end before begin", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", "end before begin", 0},
		{"truncated data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", "truncated data", 5},
		/* a claim under the pipe's frame cap: the buffer grows with
		 * the 10 bytes that come, then the data ends */
		{"large claim", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1000000000],\"data_offsets\":[0,1000000000]}}", "truncated data", 10},
		{"huge offsets", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1000000000000],\"data_offsets\":[0,1000000000000]}}", "over the limit of 4294967296 for a stream", 10},
	};
	char buf[4096];

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		size_t n = mkframe(buf, cases[i].json, cases[i].data);
		const char *m = try_stream(buf, n);
		tap(m && strstr(m, cases[i].want) && strstr(m, "<pipe>: frame 0"),
		    "malformed: %s -> %s", cases[i].what, m ? m : "(accepted)");
	}
	/* header length over the pipe cap */
	uint64_t big = MIM_PIPE_HDRCAP + 1;
	const char *m = try_stream(&big, 8);
	tap(m && strstr(m, "exceeds the cap"), "malformed: header length over cap -> %s", m ? m : "");
	m = try_stream("\x10\0\0", 3);
	tap(m && strstr(m, "truncated header length"), "malformed: 3-byte stream -> %s", m ? m : "");
	memcpy(buf, &(uint64_t){100}, 8);
	memcpy(buf + 8, "{}", 2);
	m = try_stream(buf, 10);
	tap(m && strstr(m, "truncated header"), "malformed: truncated header -> %s", m ? m : "");
	/* the second frame is bad: the message names frame 1 */
	size_t n1 = mkframe(buf, "{}      ", 0);
	size_t n2 = mkframe(buf + n1, "{\"x\":1}", 0);
	m = try_stream(buf, n1 + n2);
	tap(m && strstr(m, "frame 1"), "malformed: error names the frame -> %s", m ? m : "");
	/* an empty stream is fine, a frame with no tensors is fine */
	tap(try_stream("", 0) == NULL, "empty stream is a clean end");
	n1 = mkframe(buf, "  {}  ", 0);
	tap(try_stream(buf, n1) == NULL, "whitespace-padded empty frame accepted");
}

static void
roundtrip(void)
{
	struct mim_frame *a = sample(3);
	size_t n;
	char *b = to_bytes(a, &n);
	uint64_t hn;
	memcpy(&hn, b, 8);
	tap((8 + hn) % 8 == 0, "header padded to a multiple of 8 (%llu)", (unsigned long long)hn);
	struct mim_frame *c = mim_frame_parse(b, n, "mem");
	tap(c && same(a, c), "round trip of every dtype in memory");
	/* every data offset is aligned for its dtype in the file */
	int aligned = 1;
	for (int i = 0; c && i < c->n; i++) {
		size_t off = (size_t)((char *)c->t[i].data - (char *)c->buf);
		if (c->t[i].owned || (8 + hn + off) % mim_dtype_size(c->t[i].dtype))
			aligned = 0;
	}
	tap(aligned, "writer sorts tensors so each is aligned in the file");
	mim_frame_free(c);
	/* file save / load */
	char path[] = "/tmp/mimtestXXXXXX";
	close(mkstemp(path));
	tap(mim_save(path, a) == 0, "atomic save");
	c = mim_load(path);
	tap(c && same(a, c), "load of a saved file");
	mim_frame_free(c);
	c = mim_load_header(path);
	tap(c && c->n == a->n && c->t[0].data == NULL && mim_meta_get(c, "mim.batch") &&
	    strcmp(mim_meta_get(c, "mim.batch"), "3") == 0, "header-only load");
	mim_frame_free(c);
	unlink(path);
	free(b);
	mim_frame_free(a);
}

static void
many_frames(void)
{
	int p[2];
	const int N = 300;

	if (pipe(p))
		return;
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		for (int i = 0; i < N; i++) {
			struct mim_frame *f = sample(i);
			/* a large tensor too, so frames exceed the pipe buffer */
			int64_t sh[1] = {100000 + i};
			mim_frame_add(f, "big", MIM_F32, 1, sh, NULL);
			if (mim_write_frame(p[1], f))
				_exit(1);
			mim_frame_free(f);
		}
		_exit(0);
	}
	close(p[1]);
	struct mim_reader *r = mim_reader_fdopen(p[0], "<pipe>");
	struct mim_frame *f;
	int k = 0, good = 1, rc;
	while ((rc = mim_read_frame(r, &f)) > 0) {
		struct mim_frame *want = sample(k);
		struct mim_tensor *big = mim_frame_get(f, "big");
		mim_frame_remove(f, "big");
		if (!same(want, f) || !big)
			good = 0;
		mim_frame_free(want);
		mim_frame_free(f);
		k++;
	}
	int status;
	waitpid(pid, &status, 0);
	tap(rc == 0 && k == N && good && status == 0, "%d frames through a pipe (%d read, rc %d)", N, k, rc);
	mim_reader_close(r);
	close(p[0]);
}

static void
halves(void)
{
	int ok = 1;
	/* every f16 value survives f16 -> f32 -> f16 */
	for (uint32_t h = 0; h < 65536; h++) {
		if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
			continue;	/* NaN payloads */
		if (mim_f32_to_f16(mim_f16_to_f32((uint16_t)h)) != h)
			ok = 0;
	}
	tap(ok, "f16 round trip of all 63k non-NaN values");
	tap(mim_f16_to_f32(0x3c00) == 1.0f && mim_f16_to_f32(0xc000) == -2.0f &&
	    mim_f16_to_f32(0x0001) == 5.9604644775390625e-8f, "f16 decode of known values");
	tap(mim_f32_to_f16(65520.0f) == 0x7c00 && mim_f32_to_f16(65519.0f) == 0x7bff,
	    "f16 overflow boundary");
	tap(mim_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00 && mim_f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02,
	    "f16 ties to even");
	tap(mim_f32_to_bf16(1.0f) == 0x3f80 && mim_bf16_to_f32(0x4049) == 3.140625f &&
	    mim_f32_to_bf16(1.00390625f) == 0x3f80 && mim_f32_to_bf16(1.01171875f) == 0x3f82,
	    "bf16 conversions and ties to even");
}

int
main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--emit") == 0) {
		int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
		for (int i = 0; i < 2; i++) {
			struct mim_frame *f = sample(i);
			if (mim_write_frame(fd, f))
				return 1;
			mim_frame_free(f);
		}
		return close(fd) != 0;
	}
	roundtrip();
	many_frames();
	malformed();
	halves();
	return tap_done();
}
