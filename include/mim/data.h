/* mim/data.h -- the data pipeline behind mim-data(1): WebDataset tar
 * shards and image folders in, decoded, augmented and normalised samples
 * out, in a deterministic order.
 *
 *   lib/data/shard.c   tar shards (libarchive) and folders -> samples
 *   lib/data/image.c   libvips decode, SimMIM's transforms, encode
 *   lib/data/randaug.c RandAugment (timm 0.4.12 on PIL 9.4's ops)
 *   lib/data/loader.c  epochs, order, rank split, shuffle buffer, worker
 *                      threads, batches as frames
 *   lib/data/tarout.c  tar shard writer (--out)
 *   lib/data/idx.c     IDX files (MNIST, Fashion-MNIST)
 *
 * Samples follow the WebDataset rules (reference/ecosystem.md section 3):
 * a member path "dir/n01.seg.png" has key "dir/n01" and extension
 * "seg.png"; a sample is a run of adjacent members with one key.
 *
 * Random numbers never depend on threads or timing: every sample's crop,
 * flip, RandAugment and erasing come from a generator keyed by (seed,
 * rank, epoch, index), and the order (shard permutation, shuffle buffer)
 * is drawn on the calling thread. The same options and inputs give the
 * same bytes. */
#ifndef MIM_DATA_H
#define MIM_DATA_H

#include <stddef.h>
#include <stdint.h>

struct mim_frame;

/* ---- random numbers (lib/data/image.c) ----------------------------------- */

/* xoshiro256** seeded through splitmix64 from a key of four words. */
struct mim_drng {
	uint64_t s[4];
};

void mim_drng_key(struct mim_drng *r, uint64_t a, uint64_t b, uint64_t c, uint64_t d);
uint64_t mim_drng_u64(struct mim_drng *r);
/* Uniform in [0,1) with 53 random bits. */
double mim_drng_double(struct mim_drng *r);
/* Uniform integer in [0,n), unbiased; n >= 1. */
uint64_t mim_drng_below(struct mim_drng *r, uint64_t n);

/* ---- transforms (lib/data/image.c) ----------------------------------- */

/* train: RandomResizedCrop(size, scale, ratio) + flip, SimMIM's pre-training
 * transform. eval: shorter side to int(size / crop_ratio), centre crop
 * size x size (timm/SimMIM validation: 256/224). resize: shorter side to
 * size, no crop (aspect kept; for writing shards only). padcrop:
 * torchvision's RandomCrop(size, padding=pad) + flip, no resize: the image
 * padded with pad black pixels on every side, a size x size window of it
 * at a uniform offset (the official fine-tuning's training transform for
 * images of at most 32 px, CIFAR-style). */
enum mim_mode { MIM_MODE_TRAIN, MIM_MODE_EVAL, MIM_MODE_RESIZE, MIM_MODE_PADCROP };
enum mim_interp { MIM_INTERP_BILINEAR, MIM_INTERP_BICUBIC };

/* A crop box in source pixels and a horizontal flip. In padcrop mode the
 * window in the source's coordinates, which may reach past its edges
 * (x, y from -pad). */
struct mim_box {
	int x, y, w, h;
	int flip;
};

/* RandAugment (lib/data/randaug.c): the ops of timm 0.4.12's
 * RandAugment (auto_augment.py), as PIL 9.4 does them on an 8-bit RGB
 * image. The plain list is the first 15, in timm's order (_RAND_
 * TRANSFORMS); the increasing list (_RAND_INCREASING_TRANSFORMS) has the
 * *_INC variants in their places. */
enum mim_ra_op {
	MIM_RA_AUTOCONTRAST, MIM_RA_EQUALIZE, MIM_RA_INVERT, MIM_RA_ROTATE,
	MIM_RA_POSTERIZE, MIM_RA_SOLARIZE, MIM_RA_SOLARIZE_ADD, MIM_RA_COLOR,
	MIM_RA_CONTRAST, MIM_RA_BRIGHTNESS, MIM_RA_SHARPNESS, MIM_RA_SHEAR_X,
	MIM_RA_SHEAR_Y, MIM_RA_TRANSLATE_X_REL, MIM_RA_TRANSLATE_Y_REL,
	MIM_RA_POSTERIZE_INC, MIM_RA_SOLARIZE_INC, MIM_RA_COLOR_INC,
	MIM_RA_CONTRAST_INC, MIM_RA_BRIGHTNESS_INC, MIM_RA_SHARPNESS_INC,
	MIM_RA_NOPS
};

#define MIM_RA_LIST 15		/* ops in either list */
#define MIM_RA_MAXN 10		/* most ops drawn per image */

/* A RandAugment: n ops a picture drawn uniformly with replacement from
 * the list; each is applied with probability 0.5, at a magnitude
 * gauss(m, mstd) clipped to [0, 10] (m itself when mstd is 0), with a
 * random sign for the ops whose argument has one. */
struct mim_randaug {
	int n;			/* ops drawn per image (num_layers); 0: off */
	int m;			/* magnitude, 0..10 */
	double mstd;		/* its standard deviation, >= 0 */
	int inc;		/* the increasing list */
	uint8_t fill[3];	/* what geometric ops uncover: timm's img_mean,
				 * round(255 * mean) */
};

/* One op of a picture, as drawn. */
struct mim_ra_step {
	int op;			/* enum mim_ra_op */
	int applied;		/* the 0.5 coin said yes */
	double mag;		/* magnitude (applied only) */
	int neg;		/* the argument negated (signed ops only) */
};

struct mim_aug {
	enum mim_mode mode;
	int size;		/* S, output side (default 192) */
	double scale[2];	/* train: area fraction range (0.67, 1) */
	double ratio[2];	/* train: aspect range (3/4, 4/3) */
	double flip;		/* probability of a horizontal flip (0.5) */
	enum mim_interp interp;	/* bilinear (train default) or bicubic */
	double crop_ratio;	/* eval: 224/256 = 0.875 */
	int pad;		/* padcrop: padding on each side (4), < size */
	double reprob;		/* train: random erasing probability (0: none) */
	struct mim_randaug ra;	/* train, padcrop: RandAugment after the flip
				 * (n 0: none) */
	double gap;		/* box pre-shrink by floor(factor/gap) for non-JPEG
				 * images (vips_shrink), as PIL's reducing_gap;
				 * 0 = none, the exact PIL resize */
	double shrink_min;	/* JPEG shrink-on-load (1/s) only while the box
				 * stays >= shrink_min times the output on both
				 * axes; 0 turns shrink-on-load off */
	int shrink_max;		/* largest s: 1, 2 (default), 4 or 8 */
	int force;		/* use `box` (and box.flip) instead of sampling */
	struct mim_box box;
	int64_t max_pixels;	/* refuse images of more pixels, from the
				 * header, before any pixel buffer is sized
				 * (MIM_MAX_PIXELS) */
};

/* PIL's decompression-bomb limit: Image.open refuses an image of more
 * than 2 * MAX_IMAGE_PIXELS = 178956970 pixels (about 13377 squared). A
 * 74-byte PNG can claim 999999 x 999999, and the decoders would size
 * their buffers from that claim. */
#define MIM_MAX_PIXELS ((int64_t)178956970)

/* The defaults: SimMIM's training transform at 192 px. */
void mim_aug_default(struct mim_aug *a);
/* Check ranges (size, scale, ratio, flip, crop_ratio, gap, shrink_max,
 * shrink_min, max_pixels, and the box when forced). 0 or -1. */
int mim_aug_check(const struct mim_aug *a);

/* The official fine-tuning transform (reference §3.2, timm's
 * create_transform) on a, for the settings the caller did not give
 * (given: MIM_GIVEN_* bits): crop scale 0.08-1 and bicubic; at size <= 32
 * (timm's resize_im false) RandomCrop(S, padding 4) in training and no
 * resize in eval; and, in a training stream (not eval, not keep, not
 * shards: out 0), random erasing 0.25 and RandAugment
 * rand-m9-mstd0.5-inc1. Returns 1 where the mode is to be padcrop (the
 * caller sets modes), else 0. */
enum {
	MIM_GIVEN_SCALE = 1, MIM_GIVEN_INTERP = 2, MIM_GIVEN_CROP = 4, MIM_GIVEN_REPROB = 8,
	MIM_GIVEN_RANDAUG = 16,
};
int mim_aug_finetune(struct mim_aug *a, unsigned given, int eval, int keep, int out);

/* torchvision's RandomResizedCrop.get_params for a W x H image: 10 tries
 * of area fraction uniform in scale and log-uniform aspect, w and h
 * rounded half to even; then the centre-crop fallback. */
void mim_rrc_box(struct mim_box *b, int W, int H, const double scale[2],
    const double ratio[2], struct mim_drng *rng);

/* timm 0.4.12's RandomErasing(probability=p, mode='pixel', max_count=1),
 * the last step of the official fine-tuning transform, on a normalised
 * image x (C,H,W): with probability p, 10 tries of a box of area fraction
 * uniform in [0.02, 1/3) and aspect log-uniform in [0.3, 1/0.3] that fits
 * strictly inside, its pixels replaced by N(0,1) draws (Box-Muller in
 * double, in pairs, in (c,y,x) order). Draws from rng, after the crop's.
 * Returns 1 if a box was erased (and it in *b), else 0. */
int mim_random_erase(float *x, int C, int H, int W, double p, struct mim_drng *rng,
    struct mim_box *b);

/* An 8-bit image, rows of w*c bytes, c = 1 (grey) or 3 (RGB). */
struct mim_img {
	int w, h, c;
	uint8_t *px;
};

/* What a transform did: source size, box (source pixels), flip, and the
 * JPEG shrink-on-load factor used (1 = none). */
struct mim_geom {
	int W, H;
	struct mim_box box;
	int shrink;
	const char *format;	/* "jpeg", "png", "webp", "gif", "tiff", "ppm" */
	int erased;		/* random erasing: a box of the output erased */
	struct mim_box erase;	/* that box (x, y, w, h in output pixels) */
	int nra;		/* RandAugment: the ops drawn (0: off) */
	struct mim_ra_step ra[MIM_RA_MAXN];
};

/* What a transform did, as mim-data --print-boxes prints it after the
 * sample's key: "W H x y w h flip shrink", then " erase x y w h" if a box
 * was erased, then " ra" and each RandAugment op drawn, Name:MAG (applied;
 * MAG with a minus if its argument was negated) or (Name) (the coin said
 * no). */
void mim_geom_format(char *buf, size_t n, const struct mim_geom *g);

/* Parse timm's spec "rand-m9-mstd0.5-inc1" (sections m, mstd, inc, n in
 * any order after "rand"; defaults m 10, mstd 0, inc 0, n 2), or "none"
 * (n 0). ra->fill is left alone. 0, or -1 with the error set. */
int mim_randaug_parse(struct mim_randaug *ra, const char *spec);
/* The spec back in timm's syntax ("rand-m9-mstd0.5-inc1-n2"), or "none". */
void mim_randaug_format(char *buf, size_t n, const struct mim_randaug *ra);
/* ra->fill from the normalisation's mean: timm's img_mean, round(255 *
 * mean), clipped to 0..255. */
void mim_randaug_fill(struct mim_randaug *ra, const float mean[3]);
/* timm's name of an op ("Rotate", "ColorIncreasing", ...), NULL if none. */
const char *mim_ra_name(int op);
/* The op of a name, or -1. */
int mim_ra_lookup(const char *name);
/* The list an image's ops are drawn from (MIM_RA_LIST of them). */
const int *mim_ra_list(int inc);
/* Draw one picture's ops (ra->n steps into st): the n op indices first,
 * then for each op in turn its coin, its magnitude (two draws, when mstd
 * > 0) and its sign, the last two only for an op the coin applies. */
void mim_randaug_draw(const struct mim_randaug *ra, struct mim_drng *rng,
    struct mim_ra_step *st);
/* Apply op at magnitude mag (its sign negated if neg) to the RGB image im
 * (c 3), in place: the argument from the magnitude as timm's level
 * functions, the pixels as PIL's; geometric ops resample with interp and
 * fill with fill. 0, or -1 (out of memory). */
int mim_ra_apply(struct mim_img *im, int op, double mag, int neg, const uint8_t fill[3],
    enum mim_interp interp);
/* The whole RandAugment of one picture: a grey image becomes RGB first
 * (the official pipeline reads every image with convert('RGB')), then
 * the draws and the ops. The steps go to st (MIM_RA_MAXN of them) if not
 * NULL. 0, or -1 with the error set. The loader calls it on the output of
 * mim_image_transform in train and padcrop modes, with the same rng. */
int mim_randaug(struct mim_img *im, const struct mim_randaug *ra, enum mim_interp interp,
    struct mim_drng *rng, struct mim_ra_step *st);

/* Initialise libvips once for the process (thread safe): no operation
 * cache, one libvips thread per pipeline (callers run their own workers),
 * libvips warnings silenced. 0 or -1. */
int mim_data_init(void);
/* Call at the end of every thread (other than main) that used libvips. */
void mim_data_thread_done(void);

/* Decode the encoded image buf[0..n) (JPEG, PNG, WebP, GIF, TIFF, PPM/PGM)
 * and apply a's transform but its RandAugment (a->ra, which the loader
 * applies next with mim_randaug), drawing from rng (train mode). Grey stays one
 * channel, alpha is dropped, anything else becomes sRGB: as PIL's
 * convert('RGB'), grey being replicated later. On success *out holds a
 * malloc'd image (size x size in train and eval modes) and *g, if not
 * NULL, what was done. -1 with the error set on a bad or unsupported
 * image, or one of more than a->max_pixels pixels (refused from its
 * header). */
int mim_image_transform(const void *buf, size_t n, const struct mim_aug *a,
    struct mim_drng *rng, struct mim_img *out, struct mim_geom *g);

/* PIL's antialiased resize (lib/data/resample.c): the box
 * [box[0],box[2]) x [box[1],box[3]) of src (sw x sh, c = 1 or 3 channels,
 * rows packed) resized to rw x rh, of which the window ox,oy,ow,oh is
 * written to dst (ow x oh x c). Bit-exact with Pillow's Image.resize for
 * an integer box. 0, or -1 (out of memory, bad window). */
int mim_resample(uint8_t *dst, int ox, int oy, int ow, int oh, int rw, int rh,
    const uint8_t *src, int sw, int sh, int c, const double box[4], enum mim_interp interp);

/* The same, streaming: mim_rs_new (NULL on error), then source rows
 * y in [first, end) of mim_rs_range through mim_rs_row (others are
 * ignored), then mim_rs_finish writes dst (0 or -1). */
struct mim_rs;
struct mim_rs *mim_rs_new(int ox, int oy, int ow, int oh, int rw, int rh, int sw,
    int sh, int c, const double box[4], enum mim_interp interp);
void mim_rs_range(const struct mim_rs *r, int *first, int *end);
void mim_rs_row(struct mim_rs *r, int y, const uint8_t *row);
int mim_rs_finish(struct mim_rs *r, uint8_t *dst);
void mim_rs_free(struct mim_rs *r);

/* out (3,h,w) = (px/255 - mean[c]) / std[c] in float arithmetic, as
 * torchvision's ToTensor + Normalize; grey is repeated to 3 channels. */
void mim_image_normalise(float *out, const struct mim_img *im,
    const float mean[3], const float std[3]);

/* Encode as "png" or "jpg" (quality 1..100) into a malloc'd buffer. */
int mim_image_encode(const struct mim_img *im, const char *fmt, int quality,
    void **buf, size_t *n);

/* ---- samples (lib/data/shard.c) ------------------------------------------ */

struct mim_member {
	char *ext;		/* lower-cased, e.g. "jpg", "seg.png", "cls" */
	uint8_t *data;
	size_t size;
};

struct mim_sample {
	char *key;		/* WebDataset key */
	const char *url;	/* the shard or folder it came from (not owned) */
	int n, cap;
	struct mim_member *m;
	int64_t label;		/* from a .cls member or the class folder */
	int has_label;
	long seq;		/* position in its shard (0-based) */
};

void mim_sample_free(struct mim_sample *s);
/* The member with exactly this extension, or NULL. */
struct mim_member *mim_sample_member(const struct mim_sample *s, const char *ext);

/* Diagnostics: a problem with the input that is skipped (or, strict, is an
 * error) is passed as one line "shard: member: reason" to warn(ctx, msg).
 * The library prints nothing itself. */
struct mim_data_counts {
	long long shards;	/* tar shards opened */
	long long samples;	/* samples read (this rank's share) */
	long long images;	/* images delivered */
	long long bad_images;	/* image members that failed to decode */
	long long no_image;	/* samples without an image member */
	long long bad_members;	/* members skipped: damaged, duplicate, too big */
	long long bad_shards;	/* shards that ended early or could not be read */
};

/* Largest member read into memory (1 GiB). */
#define MIM_MEMBER_MAX ((size_t)1 << 30)

/* The WebDataset split of a member path into key and extension: 0 and
 * *keylen (the key is path[0..keylen)) and *ext (inside path), or -1 if
 * the member has no key (no dot in the basename, or a leading dot) or
 * is a __hidden__ path. */
int mim_wds_split(const char *path, size_t *keylen, const char **ext);

/* One pass over one tar shard (a file, or "-" for stdin: concatenated
 * archives are read through; gzip, zstd, xz, bzip2 filters work). */
struct mim_tar;
struct mim_tar *mim_tar_open(const char *path);
const char *mim_tar_name(const struct mim_tar *t);
/* Next sample. want(ctx, i), if not NULL, is asked when the shard's i-th
 * sample begins; if it says 0 the sample's members are skipped unread
 * (their data NULL), e.g. samples of another rank. Returns 1 (*out set,
 * (*out)->seq = i), 0 at the end of the shard, -1 on an error that ends
 * the shard: damaged or truncated archive, not a tar, read error (the
 * error is set; samples before it were good). A damaged member inside the
 * shard is skipped with warn(ctx, msg). */
int mim_tar_next(struct mim_tar *t, struct mim_sample **out,
    int (*want)(void *ctx, long i), void (*warn)(void *ctx, const char *msg),
    void *ctx, struct mim_data_counts *counts);
/* Samples begun so far in this shard. */
long mim_tar_count(const struct mim_tar *t);
void mim_tar_close(struct mim_tar *t);

/* A folder: every regular file below root, sorted by path (bytewise),
 * grouped by key as if the folder were an unpacked shard. When root has
 * sub-folders, the ImageFolder layout applies: the label of a file is the
 * index of its top-level sub-folder among them in sorted order (a .cls
 * member overrides it). */
struct mim_dir;
struct mim_dir *mim_dir_open(const char *root);
const char *mim_dir_name(const struct mim_dir *d);
long mim_dir_count(const struct mim_dir *d);	/* samples */
int mim_dir_nclasses(const struct mim_dir *d);
const char *mim_dir_class(const struct mim_dir *d, int i);
/* Read sample i (0-based) into memory: *out, or -1 (unreadable file). */
int mim_dir_read(const struct mim_dir *d, long i, struct mim_sample **out);
void mim_dir_close(struct mim_dir *d);

/* ---- the pipeline (lib/data/loader.c) ---------------------------------- */

enum mim_want { MIM_WANT_FLOAT, MIM_WANT_ENCODED };

struct mim_loader_opts {
	char **inputs;		/* tar shards, "-" (stdin), folders */
	int ninputs;
	struct mim_aug aug;
	const char *exts;	/* image extensions by priority, comma-separated;
				 * NULL: jpg,jpeg,png,webp,ppm,pgm,pbm,pnm,tif,tiff,gif */
	uint64_t seed;
	long epochs;		/* 0 = forever */
	long shuffle;		/* shuffle buffer size; 0 = input order */
	int threads;		/* worker threads; 1 = decode on the caller */
	int rank, nranks;	/* this process takes part rank of nranks */
	int split_shards;	/* split by whole input shard rather than sample */
	int strict;		/* any skipped input is an error */
	uint64_t max_inflight;	/* bytes of samples queued for decoding and of
				 * results not yet taken; 0: MIM_INFLIGHT_DEFAULT */
	enum mim_want want;
	float mean[3], std[3];	/* MIM_WANT_FLOAT */
	const char *encfmt;	/* MIM_WANT_ENCODED: "png" or "jpg" */
	int quality;
	void (*warn)(void *ctx, const char *msg);
	void *ctx;
};

/* The decode ring holds up to 16 samples a thread, their encoded members
 * and then their decoded results, until they are taken in order. It
 * stops taking in samples while these hold this many bytes (one sample
 * is always let in, whatever its size): a shard of 100 MB members would
 * otherwise have 16 of them a thread in memory. The pixel limit
 * (mim_aug.max_pixels) bounds what each thread's decoder holds. */
#define MIM_INFLIGHT_DEFAULT ((uint64_t)1 << 30)

/* One processed sample, in output order. */
struct mim_item {
	struct mim_sample *s;	/* key, url, label, every member */
	long epoch, index;	/* index: position in the epoch's order */
	struct mim_geom g;
	float *x;		/* MIM_WANT_FLOAT: (3,S,S) normalised */
	void *enc;		/* MIM_WANT_ENCODED: the image, encoded */
	size_t nenc;
	const char *encext;	/* "png" or "jpg" */
};

struct mim_loader;

/* Check the options and the inputs (that they exist, folders scanned).
 * NULL with the error set. */
struct mim_loader *mim_loader_open(const struct mim_loader_opts *o);
/* Next item in order: 1 (*it set, free with mim_item_free), 0 at the end,
 * -1 on an error (strict mode, or an I/O error on an input). */
int mim_loader_next(struct mim_loader *L, struct mim_item **it);
void mim_item_free(struct mim_item *it);
const struct mim_data_counts *mim_loader_counts(const struct mim_loader *L);
/* "; skipped 2 bad images, ..." when any of the counts is not 0, else "". */
void mim_data_counts_format(char *buf, size_t n, const struct mim_data_counts *k);
/* malloc settings for a decoding process (glibc): decoders allocate and
 * free tens of MB per image, kept in the heap rather than mapped afresh,
 * in one arena. */
void mim_data_tune_malloc(void);
void mim_loader_close(struct mim_loader *L);

/* Where a stream resumes (lib/data/pos.c): after a frame, the first
 * sample not consumed (epoch, its index in the epoch's order), the next
 * frame's number and the images of the frames so far. */
struct mim_data_pos {
	long epoch, next, batch;
	long long images;
};
/* As JSON, {"epoch":..,"next":..,"batch":..,"images":..} (a frame's
 * mim.pos). 0 or -1. */
int mim_data_pos_format(char *buf, size_t n, const struct mim_data_pos *p);
/* Rank's entry of a list of them (mim-step's mim.train.data). 0 or -1. */
int mim_data_pos_parse(const char *json, int rank, struct mim_data_pos *p);
/* Before the first mim_loader_next: go to sample `next` of epoch `epoch`
 * of the order, reading the samples before it but decoding none. 0, or
 * -1 with the error set (the input ends before it). */
int mim_loader_seek(struct mim_loader *L, long epoch, long next);

/* Whether ext (a member's extension) is one of the loader's image
 * extensions (--ext), case aside. */
int mim_loader_is_image(const struct mim_loader *L, const char *ext);

/* ---- what mim-data writes (lib/data/batch.c) ------------------------------ */

/* Items into frames of `batch` (mim_batch_frame, size S) that never span
 * epochs, a short one at an epoch's end unless drop_last; each frame also
 * says where the stream resumes after it (mim.pos) and the images before
 * it (mim.images). */
struct mim_batcher;
struct mim_batcher *mim_batcher_new(int batch, int drop_last, int size);
void mim_batcher_free(struct mim_batcher *b);
/* Take it (owned from now on): the frames it completes, 0 to 2 of them
 * (a frame ended by the epoch, then one it fills), into out. -1 on error. */
int mim_batcher_add(struct mim_batcher *b, struct mim_item *it, struct mim_frame *out[2]);
/* The pending items as a last frame: 1 with *out, 0 (none, or a short one
 * under drop_last), -1. */
int mim_batcher_flush(struct mim_batcher *b, struct mim_frame **out);
/* The number of the next frame (mim.batch). */
long mim_batcher_next(const struct mim_batcher *b);
/* Start where the run of mim-step's checkpoint ckpt stopped reading (its
 * mim.train.data for rank): seek L, go on numbering frames and images from
 * there; *pos gets the position. Before the first item. 1 resumed, 0 the
 * checkpoint has not trained (start at the beginning), -1 with the error
 * set. */
int mim_batcher_resume(struct mim_batcher *b, struct mim_loader *L, const char *ckpt, int rank,
    struct mim_data_pos *pos);

/* A frame from n items of one epoch (MIM_WANT_FLOAT, size S): image F32
 * (n,3,S,S); label I64 (n) if any item has a label (-1 where one has
 * none); metadata mim.keys (JSON list), mim.batch (batch) and mim.epoch. */
struct mim_frame *mim_batch_frame(struct mim_item **items, int n, int S,
    long batch);

/* ---- tar shard writer (lib/data/tarout.c) -------------------------------- */

/* Check an output pattern: exactly one integer conversion %d, %Nd or
 * %0Nd, and %% for a literal percent. 0 or -1. */
int mim_pattern_check(const char *pattern);
/* Format the pattern with i into buf (NUL-terminated). 0 or -1 (too long). */
int mim_pattern_format(char *buf, size_t n, const char *pattern, long i);

struct mim_tarw;
/* Shards named by pattern, at most per_shard samples each. Each shard is
 * written to a temporary name and renamed when complete. */
struct mim_tarw *mim_tarw_open(const char *pattern, long per_shard);
/* Add one member to the current sample (key.ext). Members of one sample
 * must be added together; mim_tarw_end_sample closes the sample. */
int mim_tarw_add(struct mim_tarw *w, const char *key, const char *ext,
    const void *data, size_t n);
int mim_tarw_end_sample(struct mim_tarw *w);
/* One loader item as a sample of a shard: its processed image (MIM_WANT_
 * ENCODED), every member that is not an image of L's extensions, and its
 * label as .cls if it had none (batch.c). 0 or -1. */
int mim_tarw_add_item(struct mim_tarw *w, const struct mim_loader *L, const struct mim_item *it);
/* Finish the last shard. 0 or -1; the writer is freed either way.
 * Shards written so far stay; an unfinished one is removed. */
int mim_tarw_close(struct mim_tarw *w);
long mim_tarw_shards(const struct mim_tarw *w);

/* ---- IDX files (lib/data/idx.c) -------------------------------------- */

/* An IDX file (MNIST, Fashion-MNIST), plain or gzip-compressed: unsigned
 * bytes with dims (n) for labels or (n,rows,cols) for images. */
struct mim_idx {
	int ndim;
	int64_t dim[3];
	uint8_t *data;
};
int mim_idx_load(const char *path, struct mim_idx *out);
void mim_idx_free(struct mim_idx *x);
/* An IDX image file (and its labels, or NULL) as samples of w: key
 * 000000, 000001, ... (zero-padded to 6 digits or more), the image encoded
 * as fmt ("png" or "jpg", quality), the label as .cls. *count gets the
 * images. 0, or -1 with the error set (w's shards so far stay). */
int mim_idx_to_shards(const char *images, const char *labels, struct mim_tarw *w,
    const char *fmt, int quality, int64_t *count);

#endif
