/* amxtile.h -- what lib/amx.c (the Linear layers' bf16 products) and
 * lib/kern/attn_amx.c (attention's heads) share on AMX tiles: the target
 * attribute, the tile configuration, the barrier, and the inner loop of a
 * block of 2 x 2 tiles. Included only where the compiler has the AMX
 * intrinsics (GCC 11 or later, clang); callers check amx_ready (amx.h)
 * before running any of it. Not installed. */
#ifndef MIM_AMXTILE_H
#define MIM_AMXTILE_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl," \
	"avx512bf16,avx2,fma")))

/* LDTILECFG's 64 bytes: palette 1, tiles 0-7 all 16 rows of 64 bytes
 * (16 floats, 32 bf16 or 16 pairs) */
struct tilecfg {
	uint8_t palette, start_row, reserved[14];
	uint16_t colsb[16];
	uint8_t rows[16];
};

static const struct tilecfg amx_cfg __attribute__((aligned(64))) = {
	.palette = 1,
	.colsb = {64, 64, 64, 64, 64, 64, 64, 64},
	.rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

/* the tiles' loads and stores are asm that names no memory: a barrier
 * where ordinary loads or stores of the same memory come before or after */
#define BARRIER() __asm__ volatile("" ::: "memory")

/* C's tiles 0 (and 1: c2; 2: r2; 3: both) += A's 16 x 32 bf16 tiles (4,
 * and 5 its next 16 rows: r2) times B's 16 x 16 tiles of pairs (6, and 7
 * the next 16 columns: c2), over kt steps of 32 of K: A's rows at a, la
 * bytes apart (64 bytes a step), B's rows of pairs at b, lb bytes apart
 * (16 rows a step) */
AMX static inline __attribute__((always_inline)) void
amx_dot(int r2, int c2, int kt, const char *a, size_t la, const char *b, size_t lb)
{
	for (int k = 0; k < kt; k++) {
		const char *ak = a + 64 * k, *bk = b + (size_t)16 * k * lb;
		_tile_loadd(4, ak, la);
		_tile_loadd(6, bk, lb);
		if (c2)
			_tile_loadd(7, bk + 64, lb);
		_tile_dpbf16ps(0, 4, 6);
		if (c2)
			_tile_dpbf16ps(1, 4, 7);
		if (r2) {
			_tile_loadd(5, ak + 16 * la, la);
			_tile_dpbf16ps(2, 5, 6);
			if (c2)
				_tile_dpbf16ps(3, 5, 7);
		}
	}
}

#endif
