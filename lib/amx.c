/* amx.c -- bf16 products on AMX tiles (amx.h): in bf16 mode, mim_gemm's
 * products whose op(A) is a row-major bf16 matrix, which are a Linear's
 * forward (A its input, B its weight transposed) and its input gradient
 * (A the output gradient, B the weight), A kept rounded by its producer
 * (mim_gemm_keep) and B packed here once a product into the tiles' pair
 * layout, for every block of the product (lib/gemm.c).
 *
 * oneDNN 2.6's matmul (Debian 12's; lib/onednn.c) runs the others. For
 * these it was measured against this file on a 2-core Xeon (family 6
 * model 207), a thread each, operands in bf16 (bench/RESULTS.md): in
 * cache, this ran 1.3-2.9x oneDNN's rate (Swin-T's stage-0 shapes,
 * 36864 rows and K 96: 360 GFLOP/s in oneDNN, which packs B again in
 * every call, against 690-730 here). At K 768 and beyond it first ran
 * 5-30% behind and was kept to K 256; that was the operands' placing,
 * not the kernel: rows 16 bytes off the cache lines (malloc) and V's rows
 * so placed that a panel of them crowds a few sets of L2 (lib/gemm.c's
 * pairs_ld). With both mended it ran every product of the four models
 * that was measured ahead of oneDNN, K 3072 too (bench/amxbench.c, one thread: 2320 x 768 x
 * 3072 1010-1070 GFLOP/s against 743-857, 2320 x 3072 x 768 1521 against
 * 945), and it takes every K.
 *
 * C's blocks of 32 x 32 floats are four 16 x 16 float tiles (0-3), summed
 * over K 32 at a time: two 16 x 32 bf16 tiles of A's rows (4, 5) times two
 * 16 x 16 tiles of V's pairs (6, 7), TDPBF16PS (tile += A's pairs dotted
 * with V's, in float). Columns go in panels whose V is about 1 MB, for L2;
 * inside a panel, rows 32 at a time, A's 32 rows in L1 across the panel's
 * columns. A sum starts from 0, the bias (16 rows of it in a buffer of
 * the thread) or C itself (beta 1). A last block of fewer than 32 rows
 * reads A's rows from a zero-padded copy and stores through a 16 x 16
 * buffer, so no row past M is read or written.
 *
 * The tiles' state: Linux grants it once (amx_ready); each call loads the
 * tile configuration and releases it at the end, since oneDNN (and
 * lib/kern/attn_amx.c) load their own on the same threads. Built for any
 * target through function attributes; callers check amx_ready first. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mim/gemm.h"
#include "amx.h"

int
amx_takes(int ta, int N, int K)
{
	return !ta && N > 0 && N % 16 == 0 && K > 0 && K % 32 == 0;
}

#define PANEL 512		/* columns at most in a panel */
#define PANEL_BYTES (1 << 20)	/* V's bytes in a panel, about */

int
amx_panel(int K)
{
	int np = PANEL_BYTES / (2 * K) / 32 * 32;

	return np < 32 ? 32 : np > PANEL ? PANEL : np;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    (defined(__clang__) || __GNUC__ >= 11)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "amxtile.h"
#include "tr8.h"

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static int ready;
static pthread_once_t ready_once = PTHREAD_ONCE_INIT;

static void
ask(void)
{
	const struct mim_cpu *c = mim_cpu();

	ready = c->amx_bf16 && c->avx512_bf16 && c->avx512 &&
	    syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

int
amx_ready(void)
{
	pthread_once(&ready_once, ask);
	return ready;
}

/* ---- packing B ---------------------------------------------------------------- */

/* V's rows [k0, k1) from B (K,N): row k the words of B's rows 2k and
 * 2k + 1 interleaved */
AMX static void
pack_rows(uint32_t *V, int ldv, const float *B, int ldb, int N, int k0, int k1)
{
	/* the words of (x0[0..15], x1[0..15]) as (x0[0], x1[0], x0[1], ...) */
	const __m512i ix = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10,
	    25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);

	for (int k = k0; k < k1; k++) {
		const float *x0 = B + (size_t)2 * k * ldb, *x1 = x0 + ldb;
		for (int n = 0; n < N; n += 16) {
			__m512 a = _mm512_loadu_ps(x0 + n), b = _mm512_loadu_ps(x1 + n);
			_mm512_storeu_si512((void *)(V + (size_t)k * ldv + n),
			    _mm512_permutexvar_epi16(ix, (__m512i)_mm512_cvtne2ps_pbh(b, a)));
		}
	}
}

/* V's rows [k0, k1) from B (N,K): row n of B in bf16 is the pairs
 * (B[n][2k], B[n][2k+1]) for every k, so V is that (N, K/2) matrix of
 * pairs transposed, 16 x 16 at a time (four tr8: moves, no arithmetic) */
AMX static void
pack_cols(uint32_t *V, int ldv, const float *B, int ldb, int N, int k0, int k1)
{
	uint32_t t[16 * 16] __attribute__((aligned(64)));

	for (int n = 0; n < N; n += 16)
		for (int k = k0; k < k1; k += 16) {
			for (int r = 0; r < 16; r++) {
				const float *x = B + (size_t)(n + r) * ldb + 2 * k;
				__m512 lo = _mm512_loadu_ps(x), hi = _mm512_loadu_ps(x + 16);
				_mm512_store_si512((void *)(t + 16 * r),
				    (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
			}
			float *v = (float *)(V + (size_t)k * ldv + n);
			const float *s = (const float *)t;
			tr8(v, ldv, s, 16);
			tr8(v + 8, ldv, s + 8 * 16, 16);
			tr8(v + (size_t)8 * ldv, ldv, s + 8, 16);
			tr8(v + (size_t)8 * ldv + 8, ldv, s + 8 * 16 + 8, 16);
		}
}

void
amx_pack(uint32_t *V, int ldv, const float *B, int ldb, int tb, int N, int k0, int k1)
{
	if (tb)
		pack_cols(V, ldv, B, ldb, N, k0, k1);
	else
		pack_rows(V, ldv, B, ldb, N, k0, k1);
}

/* ---- the product ---------------------------------------------------------------- */


static _Thread_local float bb[16 * PANEL] __attribute__((aligned(64)));	/* bias rows */
static _Thread_local float ob[16 * 16] __attribute__((aligned(64)));	/* a tile bounced */
static _Thread_local uint16_t *pad;	/* A's last rows, zero-padded to 32 */
static _Thread_local size_t padcap;

/* tile t from n rows of C at c (16 floats each, lc bytes apart) */
#define LOADC(t, c, n) do { \
	if ((n) >= 16) { \
		_tile_loadd(t, c, lc); \
	} else { \
		for (int r_ = 0; r_ < 16; r_++) \
			_mm512_store_ps(ob + 16 * r_, r_ < (n) ? \
			    _mm512_loadu_ps((const float *)((const char *)(c) + r_ * lc)) : \
			    _mm512_setzero_ps()); \
		BARRIER(); \
		_tile_loadd(t, ob, 64); \
	} \
} while (0)

/* tile t to n rows of C at c */
#define STOREC(t, c, n) do { \
	if ((n) >= 16) { \
		_tile_stored(t, c, lc); \
	} else { \
		_tile_stored(t, ob, 64); \
		BARRIER(); \
		for (int r_ = 0; r_ < (n); r_++) \
			_mm512_storeu_ps((float *)((char *)(c) + r_ * lc), _mm512_load_ps(ob + 16 * r_)); \
	} \
} while (0)

/* tile t's starting sums: 0, the bias (16 rows at bt, PANEL floats apart)
 * or C */
#define INIT(t, c, n, bt) do { \
	if (init == 0) \
		_tile_zero(t); \
	else if (init == 1) \
		_tile_loadd(t, bt, PANEL * sizeof(float)); \
	else \
		LOADC(t, c, n); \
} while (0)

/* C's rows (nr: 1 to 32, tiles 2 and 3 only past 16: r2) by columns
 * (two tiles, or one: c2 0) from the start init, plus A's 32 rows at a
 * (la bytes apart) times V's columns at b (lb bytes apart), kt steps of
 * 32 of K; bt: the bias rows of these columns */
AMX static inline __attribute__((always_inline)) void
blk(int r2, int c2, int kt, const char *a, size_t la, const char *b, size_t lb, char *c,
    size_t lc, int nr, int init, const float *bt)
{
	int n0 = nr < 16 ? nr : 16, n1 = nr - 16;

	INIT(0, c, n0, bt);
	if (c2)
		INIT(1, c + 64, n0, bt + 16);
	if (r2) {
		INIT(2, c + 16 * lc, n1, bt);
		if (c2)
			INIT(3, c + 16 * lc + 64, n1, bt + 16);
	}
	amx_dot(r2, c2, kt, a, la, b, lb);
	STOREC(0, c, n0);
	if (c2)
		STOREC(1, c + 64, n0);
	if (r2) {
		STOREC(2, c + 16 * lc, n1);
		if (c2)
			STOREC(3, c + 16 * lc + 64, n1);
	}
}

AMX int
amx_gemm(int M, int N, int K, const uint16_t *A, int lda, const uint32_t *V, int ldv,
    const float *bias, int beta, float *C, int ldc)
{
	int kt = K / 32, init = bias ? 1 : beta ? 2 : 0, tail = M % 32;
	int np = amx_panel(K);
	size_t la = (size_t)lda * 2, lb = (size_t)ldv * 4, lc = (size_t)ldc * 4;

	if (M <= 0)
		return 0;
	if (tail) {	/* the last rows, and zeros to 32 */
		size_t n = (size_t)32 * K;
		if (n > padcap) {
			free(pad);
			padcap = 0;
			if (!(pad = aligned_alloc(64, (n * sizeof *pad + 63) & ~(size_t)63)))
				return -1;
			padcap = n;
		}
		for (int r = 0; r < 32; r++)
			if (r < tail)
				memcpy(pad + (size_t)r * K, A + (size_t)(M - tail + r) * lda,
				    (size_t)K * sizeof *pad);
			else
				memset(pad + (size_t)r * K, 0, (size_t)K * sizeof *pad);
	}
	_tile_loadconfig(&amx_cfg);
	for (int p0 = 0; p0 < N; p0 += np) {
		int p1 = N - p0 < np ? N : p0 + np;
		if (bias)
			for (int r = 0; r < 16; r++)
				memcpy(bb + r * PANEL, bias + p0, (size_t)(p1 - p0) * sizeof *bb);
		BARRIER();
		for (int i = 0; i < M; i += 32) {
			int nr = M - i < 32 ? M - i : 32;
			const char *a = nr < 32 ? (const char *)pad : (const char *)(A + (size_t)i * lda);
			size_t al = nr < 32 ? (size_t)K * 2 : la;
			for (int j = p0; j < p1; j += 32) {
				const char *b = (const char *)(V + j);
				char *c = (char *)(C + (size_t)i * ldc + j);
				const float *bt = bb + (j - p0);
				int c2 = j + 16 < p1;
				if (nr > 16 && c2)
					blk(1, 1, kt, a, al, b, lb, c, lc, nr, init, bt);
				else if (nr > 16)
					blk(1, 0, kt, a, al, b, lb, c, lc, nr, init, bt);
				else if (c2)
					blk(0, 1, kt, a, al, b, lb, c, lc, nr, init, bt);
				else
					blk(0, 0, kt, a, al, b, lb, c, lc, nr, init, bt);
			}
		}
	}
	_tile_release();
	BARRIER();
	return 0;
}

#else

int
amx_ready(void)
{
	return 0;
}

void
amx_pack(uint32_t *V, int ldv, const float *B, int ldb, int tb, int N, int k0, int k1)
{
}

int
amx_gemm(int M, int N, int K, const uint16_t *A, int lda, const uint32_t *V, int ldv,
    const float *bias, int beta, float *C, int ldc)
{
	return -1;
}

#endif
