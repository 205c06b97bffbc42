/* attn_amx.c -- one attention head (attention.c's per (sample, head) job)
 * in bf16 on AMX tiles: attn512.c's arithmetic with the operands of its
 * six products rounded to bfloat16 (to nearest even, as dnn_to_bf16 and
 * mim_f32_to_bf16), as torch.autocast runs q @ k^T and attn @ v and their
 * backward:
 *
 *   S = bf(q) bf(k)^T (+ bias) (+ mask);  P = softmax(S);  out = bf(P) bf(v)
 *   dv = bf(P)^T bf(dO);  dP = bf(dO) bf(v)^T;  dS = P * (dP - rowsum(P * dP))
 *   dq = scale * bf(dS) bf(k);  dk = bf(dS)^T bf(q)
 *
 * Every product is summed in float on the tiles (TDPBF16PS: a 16x16 float
 * tile += a 16x32 bf16 tile of A times a 16x16 tile of pairs of B), its
 * result float; the bias and mask, softmax (smax16.h, shared with
 * attn512.c), dsoftmax (attn_dsoftmax) and the scaling are float.
 *
 * Operands are packed per head into buffers of the thread, all in L1/L2
 * (N 197, D 64: 310 KB at most): A operands row-major bf16, K contiguous
 * (rows_bf16); B operands in the tiles' VNNI layout, row k the pairs
 * (B[2k][n], B[2k+1][n]) (vnni: two rows of the float matrix interleaved;
 * B = X^T: X's rows in bf16 transposed as 32-bit pairs, tr_dw). Rows and
 * columns are padded to 16 and K to 32 with zeros; S's padded columns are
 * cut off (masked) before the softmax and the padded rows of any result
 * are never stored.
 *
 * AMX state: the process asks Linux for it once (amx_ready, lib/amx.c:
 * arch_prctl ARCH_REQ_XCOMP_PERM); each head loads its tile configuration and
 * releases the tiles at the end, since oneDNN on the same threads loads
 * its own. Built for any target through function attributes; attention.c
 * calls it only where attn_amx_ok says the CPU and the OS allow it. */
#include <stddef.h>
#include <stdint.h>

#include "kern_int.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    (defined(__clang__) || __GNUC__ >= 11)
#include <immintrin.h>

#include "../amx.h"
#include "../amxtile.h"
#include "../tr8.h"
#include "smax16.h"

#define NPMAX 224	/* N padded to 16 (and to 32 as K): ViT's 145 at 192 px, 197 at 224 */
#define DPMAX 64	/* D padded to 32 */

/* the operands of one head (sizes for N 145 -> 160, D 64):
 * qa   A (Np, Dp) bf16: q forward, dO backward
 * kb   B (Dp/2, Np) pairs: k^T forward, v^T backward
 * pa   A (Np, Kp) bf16: P, P^T, dS, dS^T
 * tb   (Np, Dp/2) or (Kp/2, Np) pairs on the way to a transpose
 * vb   B (Kp/2, D) pairs: v forward; dO, k, q backward
 * sb   32 rows of S or dP (Np floats apart); ob a tile bounced */
static _Thread_local uint16_t qa[NPMAX * DPMAX] __attribute__((aligned(64)));
static _Thread_local uint32_t kb[DPMAX / 2 * NPMAX] __attribute__((aligned(64)));
static _Thread_local uint16_t pa[NPMAX * NPMAX] __attribute__((aligned(64)));
static _Thread_local uint32_t tb[NPMAX / 2 * NPMAX] __attribute__((aligned(64)));
static _Thread_local uint32_t vb[NPMAX / 2 * DPMAX] __attribute__((aligned(64)));
static _Thread_local float sb[32 * NPMAX] __attribute__((aligned(64)));
static _Thread_local float ob[16 * 16] __attribute__((aligned(64)));

static int
up(int x, int m)
{
	return (x + m - 1) / m * m;
}

int
attn_amx_ok(int N, int D)
{
	return amx_ready() && N >= 1 && N <= NPMAX && D % 16 == 0 && D >= 16 && D <= DPMAX;
}

/* the first n of 16 lanes (none for n <= 0) */
static inline __mmask16
lanes(int n)
{
	return (__mmask16)(n >= 16 ? 0xffff : n <= 0 ? 0 : (1u << n) - 1);
}

/* tile t of C, tile row i (C's rows 16i..) and column j, to C (ldc floats
 * apart) times alpha; only rows under M (through ob where some are not, or
 * alpha is not 1) */
#define STORE(t, i, j) do { \
	float *c_ = C + (size_t)16 * (i) * ldc + 16 * (j); \
	int n_ = M - 16 * (i); \
	if (n_ >= 16 && alpha == 1.0f) { \
		_tile_stored(t, c_, ldc * sizeof(float)); \
	} else { \
		_tile_stored(t, ob, 64); \
		BARRIER(); \
		for (int r_ = 0; r_ < n_ && r_ < 16; r_++) \
			_mm512_storeu_ps(c_ + (size_t)r_ * ldc, \
			    _mm512_mul_ps(_mm512_load_ps(ob + 16 * r_), _mm512_set1_ps(alpha))); \
	} \
} while (0)

/* C's tiles (i, j) .. (i + r2, j + c2) = alpha A B over kt steps of 32 of
 * K: tiles 0-3 C, 4-5 A, 6-7 B; A's rows lda bytes apart, B's ldb */
AMX static inline __attribute__((always_inline)) void
blk(int r2, int c2, int i, int j, int kt, const char *A, size_t lda, const char *B,
    size_t ldb, float *C, size_t ldc, int M, float alpha)
{
	const char *a = A + (size_t)16 * i * lda, *b = B + (size_t)64 * j;

	_tile_zero(0);
	if (c2)
		_tile_zero(1);
	if (r2) {
		_tile_zero(2);
		if (c2)
			_tile_zero(3);
	}
	amx_dot(r2, c2, kt, a, lda, b, ldb);
	STORE(0, i, j);
	if (c2)
		STORE(1, i, j + 1);
	if (r2) {
		STORE(2, i + 1, j);
		if (c2)
			STORE(3, i + 1, j + 1);
	}
}

/* C (mt*16 rows, rows from M on not stored; nt*16 columns, ldc floats
 * apart) = alpha A B: A (mt*16, kt*32) bf16, lda bf16 apart; B pairs
 * (kt*16, nt*16), ldb pairs apart; in blocks of 2x2 tiles */
AMX static void
amx_mm(int mt, int nt, int kt, const uint16_t *A, int lda, const uint32_t *B, int ldb,
    float *C, int ldc, int M, float alpha)
{
	const char *a = (const char *)A, *b = (const char *)B;
	size_t la = (size_t)lda * 2, lb = (size_t)ldb * 4, lc = (size_t)ldc;

	BARRIER();
	for (int i = 0; i < mt; i += 2)
		for (int j = 0; j < nt; j += 2) {
			int r2 = i + 1 < mt, c2 = j + 1 < nt;
			if (r2 && c2)
				blk(1, 1, i, j, kt, a, la, b, lb, C, lc, M, alpha);
			else if (r2)
				blk(1, 0, i, j, kt, a, la, b, lb, C, lc, M, alpha);
			else if (c2)
				blk(0, 1, i, j, kt, a, la, b, lb, C, lc, M, alpha);
			else
				blk(0, 0, i, j, kt, a, la, b, lb, C, lc, M, alpha);
		}
	BARRIER();
}

/* y (Rp, Wp) bf16, rows ldy apart = x (R, W), rows ldx apart, rounded to
 * nearest even; zeros outside. Wp a multiple of 32. */
AMX static void
rows_bf16(uint16_t *y, int ldy, const float *x, ptrdiff_t ldx, int R, int W, int Rp, int Wp)
{
	for (int r = 0; r < Rp; r++) {
		const float *xr = x + r * ldx;
		for (int c = 0; c < Wp; c += 32) {
			__m512 lo = _mm512_setzero_ps(), hi = lo;
			if (r < R) {
				lo = _mm512_maskz_loadu_ps(lanes(W - c), xr + c);
				hi = _mm512_maskz_loadu_ps(lanes(W - c - 16), xr + c + 16);
			}
			_mm512_store_si512((void *)(y + (size_t)r * ldy + c),
			    (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
		}
	}
}

/* y (Rp2, Wp) pairs, rows ldy apart: y[i][c] = (x[2i][c], x[2i+1][c]) in
 * bf16, x (R, W) rows ldx apart; zeros outside. Wp a multiple of 16. */
AMX static void
vnni(uint32_t *y, int ldy, const float *x, ptrdiff_t ldx, int R, int W, int Rp2, int Wp)
{
	/* the words of (x0[0..15], x1[0..15]) as (x0[0], x1[0], x0[1], ...) */
	const __m512i ix = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10,
	    25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);

	for (int i = 0; i < Rp2; i++) {
		const float *x0 = x + 2 * i * ldx, *x1 = x0 + ldx;
		for (int c = 0; c < Wp; c += 16) {
			__mmask16 m = lanes(W - c);
			__m512 a = 2 * i < R ? _mm512_maskz_loadu_ps(m, x0 + c) : _mm512_setzero_ps();
			__m512 b = 2 * i + 1 < R ? _mm512_maskz_loadu_ps(m, x1 + c) : _mm512_setzero_ps();
			_mm512_store_si512((void *)(y + (size_t)i * ldy + c),
			    _mm512_permutexvar_epi16(ix, (__m512i)_mm512_cvtne2ps_pbh(b, a)));
		}
	}
}

/* y (Cc, R) = x^T, x (R, Cc) 32-bit words (pairs of bf16), rows ldx and
 * ldy apart; R and Cc multiples of 8 */
AMX static void
tr_dw(uint32_t *y, int ldy, const uint32_t *x, int ldx, int R, int Cc)
{
	for (int r = 0; r < R; r += 8)
		for (int c = 0; c < Cc; c += 8)
			tr8((float *)(y + (size_t)c * ldy + r), ldy, (const float *)(x + (size_t)r * ldx + c), ldx);
}

/* y (R, N), rows N apart = the strip sb's R rows (Np apart), cut to N */
AMX static void
from_strip(float *y, int N, int R, int Np)
{
	for (int r = 0; r < R; r++)
		for (int c = 0; c < N; c += 16)
			_mm512_mask_storeu_ps(y + (size_t)r * N + c, lanes(N - c),
			    _mm512_loadu_ps(sb + (size_t)r * Np + c));
}

/* rows r0 .. r0+R-1 of S from sb (Np floats apart, N <= 64: nv vectors):
 * P = softmax(S + bias + mask) into S (N apart) and in bf16 into pa (Kp
 * apart), all in registers */
AMX static inline __attribute__((always_inline)) void
sm_rows(int nv, int r0, int R, int N, int Np, int Kp, const float *bias, const float *mask,
    float *S)
{
	__mmask16 m = lanes(N - 16 * (nv - 1));

	for (int r = r0; r < r0 + R; r++) {
		__m512 t[4];
		const float *s = sb + (size_t)(r - r0) * Np;
#pragma GCC unroll 4
		for (int v = 0; v < nv; v++)
			t[v] = _mm512_maskz_loadu_ps(v < nv - 1 ? 0xffff : m, s + 16 * v);
		smrow(nv, t, bias ? bias + (size_t)r * N : NULL, mask ? mask + (size_t)r * N : NULL,
		    m, S + (size_t)r * N, N);
		for (int c = 0; c < Kp; c += 32) {
			__m512 lo = c / 16 < nv ? t[c / 16] : _mm512_setzero_ps();
			__m512 hi = c / 16 + 1 < nv ? t[c / 16 + 1] : _mm512_setzero_ps();
			_mm512_store_si512((void *)(pa + (size_t)r * Kp + c),
			    (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
		}
	}
}

AMX void
attn_amx_forward(const float *q, const float *k, const float *v, ptrdiff_t ld,
    int N, int D, const float *bias, const float *mask, float *S, float *out,
    ptrdiff_t ldo)
{
	int Np = up(N, 16), Kp = up(N, 32), Dp = up(D, 32), nv = Np / 16;

	_tile_loadconfig(&amx_cfg);
	rows_bf16(qa, Dp, q, ld, N, D, Np, Dp);
	rows_bf16((uint16_t *)tb, Dp, k, ld, N, D, Np, Dp);
	tr_dw(kb, Np, tb, Dp / 2, Np, Dp / 2);
	/* S in strips of 32 rows, each softmaxed while in L1 */
	for (int i = 0; i < N; i += 32) {
		int R = N - i < 32 ? N - i : 32;
		amx_mm((R + 15) / 16, nv, Dp / 32, qa + (size_t)i * Dp, Dp, kb, Np, sb, Np, R, 1.0f);
		const float *bi = bias ? bias + (size_t)i * N : NULL, *mi = mask ? mask + (size_t)i * N : NULL;
		switch (nv) {
		case 1: sm_rows(1, i, R, N, Np, Kp, bias, mask, S); break;
		case 2: sm_rows(2, i, R, N, Np, Kp, bias, mask, S); break;
		case 3: sm_rows(3, i, R, N, Np, Kp, bias, mask, S); break;
		case 4: sm_rows(4, i, R, N, Np, Kp, bias, mask, S); break;
		default:	/* rows longer than 64: softmax16 in memory */
			from_strip(S + (size_t)i * N, N, R, Np);
			softmax16(S + (size_t)i * N, bi, mi, R, N);
			rows_bf16(pa + (size_t)i * Kp, Kp, S + (size_t)i * N, N, R, N, R, Kp);
		}
	}
	memset(pa + (size_t)N * Kp, 0, (size_t)(Np - N) * Kp * sizeof *pa);
	vnni(vb, D, v, ld, N, D, Kp / 2, D);
	amx_mm(nv, D / 16, Kp / 32, pa, Kp, vb, D, out, (int)ldo, N, 1.0f);
	_tile_release();
}

AMX void
attn_amx_backward(const float *q, const float *k, const float *v, ptrdiff_t ld,
    const float *dO, ptrdiff_t ldo, float *P, float *dP, int N, int D,
    float scale, float *dq, float *dk, float *dv)
{
	int Np = up(N, 16), Kp = up(N, 32), Dp = up(D, 32), nv = Np / 16, l = (int)ld;

	_tile_loadconfig(&amx_cfg);
	/* dv = P^T dO: A = P^T, the pairs of P's rows transposed */
	vnni(tb, Np, P, N, N, N, Kp / 2, Np);
	tr_dw((uint32_t *)pa, Kp / 2, tb, Np, Kp / 2, Np);
	vnni(vb, D, dO, ldo, N, D, Kp / 2, D);
	amx_mm(nv, D / 16, Kp / 32, pa, Kp, vb, D, dv, l, N, 1.0f);
	/* dP = dO v^T in strips, then dS = dsoftmax in place of P */
	rows_bf16(qa, Dp, dO, ldo, N, D, Np, Dp);
	rows_bf16((uint16_t *)tb, Dp, v, ld, N, D, Np, Dp);
	tr_dw(kb, Np, tb, Dp / 2, Np, Dp / 2);
	for (int i = 0; i < N; i += 32) {
		int R = N - i < 32 ? N - i : 32;
		amx_mm((R + 15) / 16, nv, Dp / 32, qa + (size_t)i * Dp, Dp, kb, Np, sb, Np, R, 1.0f);
		from_strip(dP + (size_t)i * N, N, R, Np);
	}
	attn_dsoftmax(P, dP, N);
	/* dq = scale dS k */
	rows_bf16(pa, Kp, P, N, N, N, Np, Kp);
	vnni(vb, D, k, ld, N, D, Kp / 2, D);
	amx_mm(nv, D / 16, Kp / 32, pa, Kp, vb, D, dq, l, N, scale);
	/* dk = dS^T q */
	vnni(tb, Np, P, N, N, N, Kp / 2, Np);
	tr_dw((uint32_t *)pa, Kp / 2, tb, Np, Kp / 2, Np);
	vnni(vb, D, q, ld, N, D, Kp / 2, D);
	amx_mm(nv, D / 16, Kp / 32, pa, Kp, vb, D, dk, l, N, 1.0f);
	_tile_release();
}

#else

int
attn_amx_ok(int N, int D)
{
	return 0;
}

void
attn_amx_forward(const float *q, const float *k, const float *v, ptrdiff_t ld,
    int N, int D, const float *bias, const float *mask, float *S, float *out,
    ptrdiff_t ldo)
{
}

void
attn_amx_backward(const float *q, const float *k, const float *v, ptrdiff_t ld,
    const float *dO, ptrdiff_t ldo, float *P, float *dP, int N, int D,
    float scale, float *dq, float *dk, float *dv)
{
}

#endif
