/* mim/mask.h -- SimMIM masks and the AvgDist measure (see mim-mask(1)).
 *
 * A mask is drawn on a grid of mask-patch cells (gh x gw = H/m x W/m for an
 * H x W image and mask patch m), 1 = masked, then upsampled by repetition
 * to the model-token grid (H/p x W/p, p the model patch), as the official
 * MaskGenerator does (reference/simmim.md section 2). Strategies:
 *
 *   random   exactly ceil(gh*gw*ratio) cells (double arithmetic), a
 *            uniformly random subset: the official generator.
 *   central  one square of s x s cells, s the side whose area is nearest
 *            gh*gw*ratio (ties: the smaller; 1 <= s <= min(gh,gw)), placed
 *            uniformly at random: top in [0,gh-s], left in [0,gw-s].
 *   block    BEiT's block-wise masking (microsoft/unilm beit/
 *            masking_generator.py) with target ceil(gh*gw*ratio) cells:
 *            rectangles of area uniform in [block_min, max] cells and
 *            aspect exp(uniform(log a, log 1/a)) until the target is
 *            reached, or until 10 attempts in a row add nothing (then the
 *            mask stays below the target, as BEiT's does).
 *
 * RNGs. MIM_RNG_MIM: mask i of a stream is drawn from xoshiro256** seeded
 * by splitmix64 from (seed, i) alone, so it does not depend on how images
 * are batched. MIM_RNG_NUMPY: one numpy legacy stream, np.random.seed(seed)
 * once, then per mask: random -> np.random.permutation(gh*gw), the first
 * count entries masked (bit-exact with the official generator); central ->
 * top = randint(0,gh-s+1), left = randint(0,gw-s+1); block -> BEiT's code
 * with np.random.uniform / np.random.randint in place of Python's random.
 * tests/ref/mask_ref.py holds the same algorithms in NumPy. */
#ifndef MIM_MASK_H
#define MIM_MASK_H

#include <stddef.h>
#include <stdint.h>

enum mim_mask_strategy { MIM_MASK_RANDOM, MIM_MASK_CENTRAL, MIM_MASK_BLOCK };
enum mim_mask_rng { MIM_RNG_MIM, MIM_RNG_NUMPY };

struct mim_maskopt {
	enum mim_mask_strategy strategy;
	int mask_patch;		/* pixels per cell side, default 32 */
	int model_patch;	/* pixels per token side, default 4 (Swin) */
	double ratio;		/* in (0,1), default 0.6 */
	int block_min;		/* block: min cells per block, default 16 (BEiT) */
	int block_max;		/* block: max cells per block, 0 = the target (BEiT) */
	double block_aspect;	/* block: min aspect, default 0.3; max = 1/it */
	enum mim_mask_rng rng;	/* default MIM_RNG_MIM */
	uint64_t seed;		/* default 0; < 2^32 for MIM_RNG_NUMPY */
};

/* The defaults above. */
void mim_maskopt_default(struct mim_maskopt *o);
/* Check the options on their own (ratio range, patch sizes, block
 * parameters, numpy seed range). 0, or -1 with the error set. */
int mim_maskopt_check(const struct mim_maskopt *o);
/* strategy / rng names: "random" "central" "block", "mim" "numpy";
 * parse returns -1 for an unknown name. */
const char *mim_mask_strategy_name(enum mim_mask_strategy s);
int mim_mask_strategy_parse(const char *s);
const char *mim_mask_rng_name(enum mim_mask_rng r);
int mim_mask_rng_parse(const char *s);

/* ceil(cells * ratio) in double arithmetic (36*0.6 -> 22), as the official
 * generator counts. */
int64_t mim_mask_count(int64_t cells, double ratio);
/* Cell grid of an H x W image: checks that the mask patch divides H and W
 * (and is a multiple of the model patch). 0, or -1 with the error set. */
int mim_mask_grid(const struct mim_maskopt *o, int64_t H, int64_t W, int *gh, int *gw);

/* ---- the generator ------------------------------------------------------- */

struct mim_masker;

/* A generator for one stream (checks o). NULL on error. */
struct mim_masker *mim_masker_new(const struct mim_maskopt *o);
void mim_masker_free(struct mim_masker *g);
/* Draw the next mask of the stream for an H x W image into out, an
 * (H/p) x (W/p) byte grid (p = model patch), row-major, 1 = masked.
 * 0, or -1 with the error set (sizes). */
int mim_masker_next(struct mim_masker *g, int64_t H, int64_t W, uint8_t *out);
/* The same, at cell resolution: cells is gh x gw. */
int mim_masker_next_cells(struct mim_masker *g, int gh, int gw, uint8_t *cells);
/* Number of masks drawn so far. */
int64_t mim_masker_index(const struct mim_masker *g);
/* Go on as if n more masks of H x W images had been drawn (a stream that
 * resumes part-way): the seed's own generator jumps, numpy's draws and
 * drops them. 0, or -1 with the error set. */
int mim_masker_skip(struct mim_masker *g, int64_t H, int64_t W, int64_t n);
/* Repeat each cell of a gh x gw grid s x s times: out is (gh*s) x (gw*s). */
void mim_mask_upsample(uint8_t *out, const uint8_t *cells, int gh, int gw, int s);

/* ---- numpy's legacy RandomState (MT19937), for bit-exact masks ---------- */

struct mim_mt19937 {
	uint32_t mt[624];
	int pos;
};

/* np.random.seed(seed) for an integer seed (init_genrand). */
void mim_mt_seed(struct mim_mt19937 *s, uint32_t seed);
uint32_t mim_mt_u32(struct mim_mt19937 *s);
/* np.random.random_sample(): 53 bits from two draws, in [0,1). */
double mim_mt_double(struct mim_mt19937 *s);
/* numpy's random_interval(max): uniform in [0,max] by masked rejection
 * (also what legacy randint(lo, lo+max+1) uses); no draw when max == 0. */
uint64_t mim_mt_interval(struct mim_mt19937 *s, uint64_t max);
/* np.random.permutation(n) into out (n entries). */
void mim_np_permutation(struct mim_mt19937 *s, int64_t n, int64_t *out);

/* ---- AvgDist ---------------------------------------------------------------
 * Pixels are unit squares; pixel (y,x) has its centre at (y+0.5, x+0.5).
 * The distance between two pixels is the Euclidean distance between their
 * centres, sqrt(dy^2 + dx^2), so a masked pixel next to a visible one is at
 * distance 1. AvgDist of a mask is the mean, over its masked pixels, of the
 * distance to the nearest visible pixel. */

/* Exact squared Euclidean distance transform (Felzenszwalb-Huttenlocher,
 * integer arithmetic): d2[i] = squared distance from pixel i to the nearest
 * pixel with masked == 0 (0 for those), or INT64_MAX when there is none.
 * masked and d2 are H x W. 0, or -1 (out of memory). */
int mim_edt_sq(const uint8_t *masked, int H, int W, int64_t *d2);
/* AvgDist in pixels of an h x w mask whose cells are s x s pixels. *avg is
 * NaN when the mask has no masked pixel or no visible pixel (undefined).
 * 0, or -1 (out of memory). */
int mim_avgdist(const uint8_t *mask, int h, int w, int s, double *avg);
/* Mean AvgDist of n masks drawn for an H x W image by a fresh generator
 * with options o (so the first k masks are the same for every n >= k).
 * *sem is the standard error of the mean; masks whose AvgDist is
 * undefined are left out and counted in *undefined. Runs on the thread
 * pool; the result does not depend on the thread count. 0 or -1. */
int mim_avgdist_mean(const struct mim_maskopt *o, int H, int W, int n,
    double *mean, double *sem, int *undefined);

/* ---- masks in a stream (lib/data/masktensor.c) ---------------------------
 * A frame's `mask` may come in any integer dtype or BOOL (U8 from mim-mask,
 * I64 or BOOL from PyTorch and NumPy); nonzero is masked. Floats are
 * refused: a mask of 0.5 means nothing. */
struct mim_tensor;

/* 0 if t's dtype is one a mask may have, else -1 with the error set
 * ("tensor 'mask': dtype F32, want an integer or BOOL mask ..."). */
int mim_mask_check(const struct mim_tensor *t);
/* The mask t as 0/1 bytes into out (numel(t) bytes). 0, or -1 (the error
 * of mim_mask_check). */
int mim_mask_bytes(const struct mim_tensor *t, uint8_t *out);

#endif
