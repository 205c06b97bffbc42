/* mask.c -- SimMIM mask generators: random patch-aligned (the official
 * MaskGenerator), central square, BEiT block-wise; numpy's legacy MT19937
 * for bit-exact reproduction of the official masks. The algorithms and the
 * RNG contract are described in include/mim/mask.h.
 *
 * Every draw goes through struct rng, so each strategy runs unchanged on
 * either RNG:
 *   below(n)   uniform integer in [0,n)   numpy: random_interval(n-1)
 *   uniform()  double in [0,1)            numpy: random_sample()  */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mim/mask.h"
#include "mim/stream.h"
#include "../rng.h"

/* ---- numpy legacy MT19937 ------------------------------------------------ */

#define MT_N 624
#define MT_M 397

void
mim_mt_seed(struct mim_mt19937 *s, uint32_t seed)
{
	s->mt[0] = seed;
	for (int i = 1; i < MT_N; i++)
		s->mt[i] = 1812433253u * (s->mt[i - 1] ^ (s->mt[i - 1] >> 30)) + (uint32_t)i;
	s->pos = MT_N;
}

static void
mt_twist(struct mim_mt19937 *s)
{
	uint32_t *mt = s->mt, y;
	int k;

	for (k = 0; k < MT_N - MT_M; k++) {
		y = (mt[k] & 0x80000000u) | (mt[k + 1] & 0x7fffffffu);
		mt[k] = mt[k + MT_M] ^ (y >> 1) ^ (-(y & 1u) & 0x9908b0dfu);
	}
	for (; k < MT_N - 1; k++) {
		y = (mt[k] & 0x80000000u) | (mt[k + 1] & 0x7fffffffu);
		mt[k] = mt[k + MT_M - MT_N] ^ (y >> 1) ^ (-(y & 1u) & 0x9908b0dfu);
	}
	y = (mt[MT_N - 1] & 0x80000000u) | (mt[0] & 0x7fffffffu);
	mt[MT_N - 1] = mt[MT_M - 1] ^ (y >> 1) ^ (-(y & 1u) & 0x9908b0dfu);
	s->pos = 0;
}

uint32_t
mim_mt_u32(struct mim_mt19937 *s)
{
	if (s->pos >= MT_N)
		mt_twist(s);
	uint32_t y = s->mt[s->pos++];
	y ^= y >> 11;
	y ^= (y << 7) & 0x9d2c5680u;
	y ^= (y << 15) & 0xefc60000u;
	y ^= y >> 18;
	return y;
}

double
mim_mt_double(struct mim_mt19937 *s)
{
	uint32_t a = mim_mt_u32(s) >> 5, b = mim_mt_u32(s) >> 6;

	return ((double)a * 67108864.0 + (double)b) / 9007199254740992.0;
}

uint64_t
mim_mt_interval(struct mim_mt19937 *s, uint64_t max)
{
	uint64_t mask = max, v;

	if (max == 0)
		return 0;
	mask |= mask >> 1;
	mask |= mask >> 2;
	mask |= mask >> 4;
	mask |= mask >> 8;
	mask |= mask >> 16;
	mask |= mask >> 32;
	if (max <= 0xffffffffu) {
		while ((v = (mim_mt_u32(s) & mask)) > max)
			;
	} else {
		/* numpy's next_uint64 for MT19937: two draws, high word first */
		do {
			uint64_t hi = mim_mt_u32(s);
			v = ((hi << 32) | mim_mt_u32(s)) & mask;
		} while (v > max);
	}
	return v;
}

void
mim_np_permutation(struct mim_mt19937 *s, int64_t n, int64_t *out)
{
	for (int64_t i = 0; i < n; i++)
		out[i] = i;
	for (int64_t i = n - 1; i >= 1; i--) {
		int64_t j = (int64_t)mim_mt_interval(s, (uint64_t)i), t = out[i];
		out[i] = out[j];
		out[j] = t;
	}
}

/* ---- mim's own RNG: xoshiro256** keyed by (seed, mask index) ------------ */

struct rng {
	enum mim_mask_rng kind;
	struct mim_mt19937 *mt;	/* numpy: the stream's state */
	uint64_t s[4];		/* mim: xoshiro256** */
};

/* The state for mask `index` of the stream with this seed: splitmix64 from
 * mix(seed) + index * odd, so distinct indices give distinct keys. */
static void
rng_key(struct rng *r, uint64_t seed, uint64_t index)
{
	uint64_t x = seed;
	x = mim_splitmix64(&x) + index * 0xd1b54a32d192ed03u;
	for (int i = 0; i < 4; i++)
		r->s[i] = mim_splitmix64(&x);
}

/* uniform in [0,n), n >= 1 */
static int64_t
below(struct rng *r, int64_t n)
{
	if (r->kind == MIM_RNG_NUMPY)
		return (int64_t)mim_mt_interval(r->mt, (uint64_t)(n - 1));
	/* rejection: accept x < the largest multiple of n, then x mod n */
	uint64_t lim = UINT64_MAX - UINT64_MAX % (uint64_t)n, x;
	do
		x = mim_xoshiro256ss(r->s);
	while (x >= lim);
	return (int64_t)(x % (uint64_t)n);
}

/* uniform in [0,1) */
static double
uniform(struct rng *r)
{
	if (r->kind == MIM_RNG_NUMPY)
		return mim_mt_double(r->mt);
	return mim_u64_to_unit(mim_xoshiro256ss(r->s));
}

/* ---- options ------------------------------------------------------------- */

static const char *strategy_names[] = {"random", "central", "block"};
static const char *rng_names[] = {"mim", "numpy"};

const char *
mim_mask_strategy_name(enum mim_mask_strategy s)
{
	return (unsigned)s < 3 ? strategy_names[s] : "?";
}

int
mim_mask_strategy_parse(const char *s)
{
	for (int i = 0; i < 3; i++)
		if (!strcmp(s, strategy_names[i]))
			return i;
	return -1;
}

const char *
mim_mask_rng_name(enum mim_mask_rng r)
{
	return (unsigned)r < 2 ? rng_names[r] : "?";
}

int
mim_mask_rng_parse(const char *s)
{
	for (int i = 0; i < 2; i++)
		if (!strcmp(s, rng_names[i]))
			return i;
	return -1;
}

void
mim_maskopt_default(struct mim_maskopt *o)
{
	memset(o, 0, sizeof *o);
	o->strategy = MIM_MASK_RANDOM;
	o->mask_patch = 32;
	o->model_patch = 4;
	o->ratio = 0.6;
	o->block_min = 16;
	o->block_max = 0;
	o->block_aspect = 0.3;
	o->rng = MIM_RNG_MIM;
	o->seed = 0;
}

int
mim_maskopt_check(const struct mim_maskopt *o)
{
	if ((unsigned)o->strategy > MIM_MASK_BLOCK)
		return mim_seterr("unknown mask strategy %d", (int)o->strategy);
	if ((unsigned)o->rng > MIM_RNG_NUMPY)
		return mim_seterr("unknown rng %d", (int)o->rng);
	if (!(o->ratio > 0 && o->ratio < 1))
		return mim_seterr("mask ratio %g is outside (0,1)", o->ratio);
	if (o->mask_patch < 1 || o->model_patch < 1)
		return mim_seterr("patch sizes must be positive (mask %d, model %d)",
		    o->mask_patch, o->model_patch);
	if (o->mask_patch % o->model_patch)
		return mim_seterr("mask patch %d is not a multiple of the model patch %d",
		    o->mask_patch, o->model_patch);
	if (o->block_min < 1 || o->block_max < 0)
		return mim_seterr("block sizes must be positive (min %d, max %d)",
		    o->block_min, o->block_max);
	if (!(o->block_aspect > 0 && o->block_aspect <= 1))
		return mim_seterr("block aspect %g is outside (0,1]", o->block_aspect);
	if (o->rng == MIM_RNG_NUMPY && o->seed > 0xffffffffu)
		return mim_seterr("numpy seed %llu is over 2^32-1",
		    (unsigned long long)o->seed);
	return 0;
}

int64_t
mim_mask_count(int64_t cells, double ratio)
{
	return (int64_t)ceil((double)cells * ratio);
}

int
mim_mask_grid(const struct mim_maskopt *o, int64_t H, int64_t W, int *gh, int *gw)
{
	int m = o->mask_patch;

	if (H < 1 || W < 1)
		return mim_seterr("image size %lldx%lld is empty", (long long)H, (long long)W);
	if (H % m || W % m)
		return mim_seterr("image size %lldx%lld is not divisible by the mask patch %d",
		    (long long)H, (long long)W, m);
	if (m % o->model_patch)
		return mim_seterr("mask patch %d is not a multiple of the model patch %d",
		    m, o->model_patch);
	if (H / m > (1 << 20) || W / m > (1 << 20) || (H / m) * (W / m) > (1 << 26))
		return mim_seterr("image size %lldx%lld is too large", (long long)H, (long long)W);
	*gh = (int)(H / m);
	*gw = (int)(W / m);
	return 0;
}

void
mim_mask_upsample(uint8_t *out, const uint8_t *cells, int gh, int gw, int s)
{
	size_t W = (size_t)gw * s;

	for (int y = 0; y < gh; y++) {
		uint8_t *row = out + (size_t)y * s * W;
		for (int x = 0; x < gw; x++)
			memset(row + (size_t)x * s, cells[(size_t)y * gw + x], (size_t)s);
		for (int a = 1; a < s; a++)
			memcpy(row + (size_t)a * W, row, W);
	}
}

/* ---- the generator ------------------------------------------------------- */

struct mim_masker {
	struct mim_maskopt o;
	int64_t index;
	struct mim_mt19937 mt;
	int64_t *perm;		/* scratch, permcap entries */
	size_t permcap;
	uint8_t *cells;		/* scratch for mim_masker_next */
	size_t cellcap;
};

struct mim_masker *
mim_masker_new(const struct mim_maskopt *o)
{
	if (mim_maskopt_check(o) < 0)
		return NULL;
	struct mim_masker *g = mim_calloc(1, sizeof *g);
	if (!g)
		return NULL;
	g->o = *o;
	if (o->rng == MIM_RNG_NUMPY)
		mim_mt_seed(&g->mt, (uint32_t)o->seed);
	return g;
}

void
mim_masker_free(struct mim_masker *g)
{
	if (!g)
		return;
	free(g->perm);
	free(g->cells);
	free(g);
}

int64_t
mim_masker_index(const struct mim_masker *g)
{
	return g->index;
}

static int
grow(void **p, size_t *cap, size_t n, size_t sz)
{
	if (n <= *cap)
		return 0;
	void *q = mim_realloc(*p, n * sz);
	if (!q)
		return -1;
	*p = q;
	*cap = n;
	return 0;
}

/* random: exactly `count` of n cells. numpy: the official permutation,
 * all n-1 swaps drawn so the stream stays in step; mim: a partial
 * Fisher-Yates shuffle of the first count positions. */
static void
mask_random(struct mim_masker *g, struct rng *r, int64_t n, uint8_t *cells)
{
	int64_t count = mim_mask_count(n, g->o.ratio), *a = g->perm;

	if (r->kind == MIM_RNG_NUMPY) {
		mim_np_permutation(r->mt, n, a);
	} else {
		for (int64_t i = 0; i < n; i++)
			a[i] = i;
		for (int64_t i = 0; i < count; i++) {
			int64_t j = i + below(r, n - i), t = a[i];
			a[i] = a[j];
			a[j] = t;
		}
	}
	for (int64_t i = 0; i < count; i++)
		cells[a[i]] = 1;
}

/* central: one s x s square, s the side with area nearest ratio*cells */
static void
mask_central(struct mim_masker *g, struct rng *r, int gh, int gw, uint8_t *cells)
{
	double t = (double)gh * gw * g->o.ratio;
	int64_t s = (int64_t)floor(sqrt(t)), smax = gh < gw ? gh : gw;

	if (fabs((double)((s + 1) * (s + 1)) - t) < fabs((double)(s * s) - t))
		s++;
	if (s < 1)
		s = 1;
	if (s > smax)
		s = smax;
	int64_t top = below(r, gh - s + 1), left = below(r, gw - s + 1);
	for (int64_t y = top; y < top + s; y++)
		memset(cells + y * gw + left, 1, (size_t)s);
}

/* block: BEiT's MaskingGenerator._mask, one block of at most maxp new
 * cells in up to 10 attempts; returns the number of cells added. */
static int64_t
block_once(const struct mim_maskopt *o, struct rng *r, int gh, int gw,
    uint8_t *cells, int64_t maxp)
{
	double lo = log(o->block_aspect), hi = log(1.0 / o->block_aspect);
	int64_t delta = 0;

	for (int attempt = 0; attempt < 10; attempt++) {
		double area = (double)o->block_min + ((double)maxp - o->block_min) * uniform(r);
		double aspect = exp(lo + (hi - lo) * uniform(r));
		int64_t h = (int64_t)nearbyint(sqrt(area * aspect));
		int64_t w = (int64_t)nearbyint(sqrt(area / aspect));
		if (w < gw && h < gh) {
			int64_t top = below(r, gh - h + 1), left = below(r, gw - w + 1), num = 0;
			for (int64_t y = top; y < top + h; y++)
				for (int64_t x = left; x < left + w; x++)
					num += cells[y * gw + x];
			if (h * w - num > 0 && h * w - num <= maxp) {
				for (int64_t y = top; y < top + h; y++)
					for (int64_t x = left; x < left + w; x++)
						if (!cells[y * gw + x]) {
							cells[y * gw + x] = 1;
							delta++;
						}
			}
			if (delta > 0)
				break;
		}
	}
	return delta;
}

static void
mask_block(struct mim_masker *g, struct rng *r, int gh, int gw, uint8_t *cells)
{
	int64_t target = mim_mask_count((int64_t)gh * gw, g->o.ratio), count = 0;
	int64_t maxper = g->o.block_max ? g->o.block_max : target;

	while (count < target) {
		int64_t maxp = target - count < maxper ? target - count : maxper;
		int64_t delta = block_once(&g->o, r, gh, gw, cells, maxp);
		if (delta == 0)
			break;
		count += delta;
	}
}

int
mim_masker_next_cells(struct mim_masker *g, int gh, int gw, uint8_t *cells)
{
	int64_t n = (int64_t)gh * gw;
	struct rng r = {.kind = g->o.rng, .mt = &g->mt};

	if (gh < 1 || gw < 1)
		return mim_seterr("empty mask grid %dx%d", gh, gw);
	if (grow((void **)&g->perm, &g->permcap, (size_t)n, sizeof *g->perm) < 0)
		return -1;
	if (r.kind == MIM_RNG_MIM)
		rng_key(&r, g->o.seed, (uint64_t)g->index);
	memset(cells, 0, (size_t)n);
	switch (g->o.strategy) {
	case MIM_MASK_RANDOM: mask_random(g, &r, n, cells); break;
	case MIM_MASK_CENTRAL: mask_central(g, &r, gh, gw, cells); break;
	case MIM_MASK_BLOCK: mask_block(g, &r, gh, gw, cells); break;
	}
	g->index++;
	return 0;
}

int
mim_masker_skip(struct mim_masker *g, int64_t H, int64_t W, int64_t n)
{
	int gh, gw;

	if (n < 0)
		return mim_seterr("cannot skip %lld masks back", (long long)n);
	if (g->o.rng == MIM_RNG_MIM) {	/* mask i is keyed by (seed, i) */
		g->index += n;
		return 0;
	}
	/* numpy's Mersenne twister is one sequence: draw and drop */
	if (mim_mask_grid(&g->o, H, W, &gh, &gw) < 0 ||
	    grow((void **)&g->cells, &g->cellcap, (size_t)gh * gw, 1) < 0)
		return -1;
	for (int64_t i = 0; i < n; i++)
		if (mim_masker_next_cells(g, gh, gw, g->cells) < 0)
			return -1;
	return 0;
}

int
mim_masker_next(struct mim_masker *g, int64_t H, int64_t W, uint8_t *out)
{
	int gh, gw;

	if (mim_mask_grid(&g->o, H, W, &gh, &gw) < 0)
		return -1;
	if (grow((void **)&g->cells, &g->cellcap, (size_t)gh * gw, 1) < 0)
		return -1;
	if (mim_masker_next_cells(g, gh, gw, g->cells) < 0)
		return -1;
	mim_mask_upsample(out, g->cells, gh, gw, g->o.mask_patch / g->o.model_patch);
	return 0;
}
