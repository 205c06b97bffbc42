/* rng.h -- the two generators behind every random draw of libmim (internal):
 * splitmix64, which turns seeds and keys into states, and xoshiro256**
 * (Blackman and Vigna), which draws from a state. Initialisation and drop
 * path (lib/model/rng.c), the crop and flip of mim-data (lib/data/image.c)
 * and mim-mask's own generator (lib/data/mask.c) each key their states their
 * own way but share these steps, so a stream of draws is defined once. */
#ifndef MIM_RNG_INTERNAL_H
#define MIM_RNG_INTERNAL_H

#include <stdint.h>

/* the next output of splitmix64 with state *x (advanced) */
static inline uint64_t
mim_splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline uint64_t
mim_rotl64(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* the next output of xoshiro256** with state s (advanced) */
static inline uint64_t
mim_xoshiro256ss(uint64_t s[4])
{
	uint64_t out = mim_rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = mim_rotl64(s[3], 45);
	return out;
}

/* uniform double in [0,1) from the top 53 bits of a draw */
static inline double
mim_u64_to_unit(uint64_t x)
{
	return (double)(x >> 11) * 0x1.0p-53;
}

#endif
