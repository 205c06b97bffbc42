/* mim/stream.h -- tensors, frames and the mim stream (see man/mim-stream.5).
 *
 * A stream is zero or more safetensors records ("frames") back to back.
 * A frame holds named tensors and string metadata. Readers validate every
 * header before trusting it; errors are returned, never printed: the
 * message is in mim_errmsg(). */
#ifndef MIM_STREAM_H
#define MIM_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- errors (lib/util.c) ----------------------------------------------- */

/* Set the calling thread's error message (printf-style); returns -1. */
int mim_seterr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prefix the current error message with "subject: ". Returns -1. */
int mim_preferr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The calling thread's last error message ("" if none). */
const char *mim_errmsg(void);

/* Checked allocation: these return NULL and set the error on failure. */
void *mim_malloc(size_t n);
void *mim_calloc(size_t n, size_t sz);
void *mim_realloc(void *p, size_t n);
char *mim_strdup(const char *s);

/* Read exactly n bytes. Returns n, or fewer only at EOF (0 at immediate
 * EOF), or -1 with the error set. Retries short reads and EINTR. */
long long mim_readall(int fd, void *buf, size_t n);
/* Write exactly n bytes; 0 or -1 (errno kept, e.g. EPIPE). */
int mim_writeall(int fd, const void *buf, size_t n);
/* A size in bytes: digits, optionally followed by a binary K, M, G or T
 * (4G = 4 << 30). At least 1. 0, or -1 if s is not one (no message set:
 * the caller names what it parsed). */
int mim_parse_size(const char *s, uint64_t *out);

/* ---- tensors ------------------------------------------------------------ */

enum mim_dtype {
	MIM_F32, MIM_F16, MIM_BF16, MIM_F64, MIM_U8, MIM_I8, MIM_I16,
	MIM_I32, MIM_I64, MIM_BOOL, MIM_NDTYPE
};

#define MIM_MAXDIM 8

struct mim_tensor {
	char *name;
	enum mim_dtype dtype;
	int ndim;
	int64_t shape[MIM_MAXDIM];
	void *data;		/* nbytes bytes, aligned for the dtype */
	size_t nbytes;
	int owned;		/* data is a malloc of its own (else inside frame buf) */
};

/* "F32" etc.; -1 for an unknown name. */
int mim_dtype_parse(const char *s);
const char *mim_dtype_name(enum mim_dtype t);
size_t mim_dtype_size(enum mim_dtype t);
/* Number of elements (product of the shape; 1 for a scalar). */
int64_t mim_tensor_numel(const struct mim_tensor *t);
/* Element i converted to double (any dtype). */
double mim_tensor_get(const struct mim_tensor *t, int64_t i);
/* Format the shape as "[8,3,192,192]" into buf (always terminated). */
char *mim_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);

/* IEEE half / bfloat16 conversions (round to nearest even). */
float mim_f16_to_f32(uint16_t h);
uint16_t mim_f32_to_f16(float f);
float mim_bf16_to_f32(uint16_t h);
uint16_t mim_f32_to_bf16(float f);

/* ---- frames ------------------------------------------------------------- */

struct mim_frame {
	int n, cap;
	struct mim_tensor *t;	/* in insertion (or file data) order */
	int nmeta, metacap;
	char **mkey, **mval;	/* __metadata__, in order */
	void *buf;		/* the data buffer a reader filled, or NULL */
};

struct mim_frame *mim_frame_new(void);
void mim_frame_free(struct mim_frame *f);
/* The tensor called name, or NULL. */
struct mim_tensor *mim_frame_get(const struct mim_frame *f, const char *name);
/* Add (or replace) tensor name with a new zeroed buffer of the given shape;
 * if data is not NULL its nbytes are copied in. Returns the tensor or NULL. */
struct mim_tensor *mim_frame_add(struct mim_frame *f, const char *name,
    enum mim_dtype dtype, int ndim, const int64_t *shape, const void *data);
/* As mim_frame_add, but takes ownership of data (a malloc'd buffer of the
 * right size), which is freed with the frame. */
struct mim_tensor *mim_frame_take(struct mim_frame *f, const char *name,
    enum mim_dtype dtype, int ndim, const int64_t *shape, void *data);
/* Remove tensor name; 0 if removed, -1 if absent (no error set). */
int mim_frame_remove(struct mim_frame *f, const char *name);
/* Metadata: value for key or NULL; set copies both strings (0 / -1). */
const char *mim_meta_get(const struct mim_frame *f, const char *key);
int mim_meta_set(struct mim_frame *f, const char *key, const char *val);

/* Check that tensor name exists with dtype and ndim (and, where shape[i]
 * >= 0, that dimension). Sets "tensor 'name': ..." and returns -1 if not.
 * Pass dtype -1 to accept any. */
struct mim_tensor *mim_frame_want(const struct mim_frame *f, const char *name,
    int dtype, int ndim, const int64_t *shape);

/* ---- reading and writing ------------------------------------------------ */

#define MIM_PIPE_HDRCAP ((size_t)16 << 20)	/* 16 MiB */
#define MIM_FILE_HDRCAP ((size_t)100000000)	/* safetensors' own cap */
/* The largest frame (8 + header + data bytes) read from a pipe or any
 * input that is not a regular file, unless the environment variable
 * MIM_MAX_FRAME says otherwise (bytes, or with K, M, G or T): a file's
 * size bounds its frames, a pipe's header could claim anything. 4 GiB
 * holds a batch of 256 images of 1024 x 1024, or ViT-Large with its
 * optimizer state. */
#define MIM_MAX_FRAME_DEFAULT ((uint64_t)4 << 30)

struct mim_reader;

/* Open path for reading ("-" or NULL = stdin). Returns NULL on error. */
struct mim_reader *mim_reader_open(const char *path);
/* Wrap an open fd; name is used in messages. The header cap is chosen
 * from the fd: regular files MIM_FILE_HDRCAP, pipes MIM_PIPE_HDRCAP; on
 * pipes frames are capped at MIM_MAX_FRAME too (NULL if that variable is
 * not a size). */
struct mim_reader *mim_reader_fdopen(int fd, const char *name);
void mim_reader_close(struct mim_reader *r);
const char *mim_reader_name(const struct mim_reader *r);
/* Index of the next frame to be read (0-based). */
long mim_reader_count(const struct mim_reader *r);
/* Read the next frame: 1 and *out set, 0 at a clean end of stream, -1 on
 * error (message "name: frame K: ..."). */
int mim_read_frame(struct mim_reader *r, struct mim_frame **out);

/* Parse one frame from memory (exactly n bytes). NULL on error. */
struct mim_frame *mim_frame_parse(const void *buf, size_t n, const char *name);

/* Write a frame to fd: header (tensors sorted by alignment, then name;
 * __metadata__ first; padded with spaces to a multiple of 8), then data.
 * Returns 0, or -1 with errno (EPIPE when the reader went away). */
int mim_write_frame(int fd, const struct mim_frame *f);
/* If fd is a pipe, ask Linux for a 1 MiB buffer (F_SETPIPE_SZ; quietly
 * nothing where that is refused or fd is not a pipe). A frame of images is
 * megabytes: with the default 64 KiB each one costs hundreds of wake-ups
 * of the two processes. mim_reader_fdopen does it for its input, the tools
 * for their stdout. */
void mim_pipe_grow(int fd);
/* Write a frame to path atomically: temp file in the same directory,
 * fsync, rename, fsync of the directory. 0 or -1. */
int mim_save(const char *path, const struct mim_frame *f);
/* Read a file holding exactly one frame (a .safetensors file). */
struct mim_frame *mim_load(const char *path);
/* Read only the header of the file's first frame: a frame with the
 * tensors' names, dtypes and shapes (data NULL) and the metadata. For
 * looking at a checkpoint's mim.config without loading its weights. */
struct mim_frame *mim_load_header(const char *path);

#endif
