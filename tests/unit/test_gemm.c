/* test_gemm.c -- mim_gemm against a product in double: float and bf16
 * precision, every transpose, alpha and beta, the cut over the pool, the
 * epilogue, batches, the grids of blocks the cut makes (rows, columns,
 * slices of K) at many threads, through oneDNN's sgemm and OpenBLAS's;
 * the AMX tiles' kernel (lib/amx.c) on its own and behind mim_gemm; and
 * OpenBLAS's kernels against the CPU (lib/blas.c).
 * t-mim-info.sh runs it again with OpenBLAS made to choose Prescott. */
#include <stdio.h>
#include <string.h>

#include "mim.h"
#include "mim/kern.h"
#include "../../lib/amx.h"	/* amx_ready, amx_pack, amx_gemm */
#include "tap.h"

/* deterministic values in [-1, 1) */
static void
fill(float *x, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		x[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
	}
}

/* C = alpha op(A) op(B) + beta C in double; r: A and B rounded to bf16
 * first (then only the order of the sums differs from a bf16 product) */
static void
ref(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
    int ldb, float beta, double *C, int ldc, int r)
{
	for (int i = 0; i < M; i++)
		for (int j = 0; j < N; j++) {
			double s = 0;
			for (int k = 0; k < K; k++) {
				float a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
				float b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
				if (r) {
					a = mim_bf16_to_f32(mim_f32_to_bf16(a));
					b = mim_bf16_to_f32(mim_f32_to_bf16(b));
				}
				s += (double)a * b;
			}
			C[(size_t)i * ldc + j] = alpha * s + beta * C[(size_t)i * ldc + j];
		}
}

/* ||x - y|| / ||y|| over an M x N matrix at stride ld */
static double
relnorm(const float *x, const double *y, int M, int N, int ld)
{
	double d = 0, n = 0;

	for (int i = 0; i < M; i++)
		for (int j = 0; j < N; j++) {
			double e = x[(size_t)i * ld + j] - y[(size_t)i * ld + j];
			d += e * e;
			n += y[(size_t)i * ld + j] * y[(size_t)i * ld + j];
		}
	return n > 0 ? sqrt(d / n) : sqrt(d);
}

struct colsum {
	const float *C;
	int ldc;
	double *sum;	/* per row: written by the block that owns it */
	int blocks;
};

static void
epi(void *ctx, int m0, int m1, int n0, int n1)
{
	struct colsum *c = ctx;

	__atomic_fetch_add(&c->blocks, 1, __ATOMIC_RELAXED);
	if (n0 != 0)
		return;		/* (column blocks: not this test's shapes) */
	for (int i = m0; i < m1; i++) {
		double s = 0;
		for (int j = n0; j < n1; j++)
			s += c->C[(size_t)i * c->ldc + j];
		c->sum[i] = s;
	}
}

/* one product in the current precision; returns its relative error
 * against the double product of the float operands, and in *rerr against
 * that of the bf16-rounded ones */
static double
check(int ta, int tb, int M, int N, int K, float alpha, float beta, double *rerr)
{
	int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
	size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb;
	size_t nc = (size_t)M * ldc;
	float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B), *C = malloc(nc * sizeof *C);
	double *R = malloc(nc * sizeof *R), *Rr = malloc(nc * sizeof *Rr);

	fill(A, na, 1 + M);
	fill(B, nb, 2 + N);
	fill(C, nc, 3 + K);
	for (size_t i = 0; i < nc; i++)
		R[i] = Rr[i] = C[i];
	ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc, 0);
	ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, Rr, ldc, 1);
	mim_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
	double e = relnorm(C, R, M, N, ldc);
	*rerr = relnorm(C, Rr, M, N, ldc);
	free(A);
	free(B);
	free(C);
	free(R);
	free(Rr);
	return e;
}

static const int shapes[][3] = {
	{7, 5, 3}, {64, 48, 40}, {197, 64, 197}, {300, 260, 96}, {577, 384, 129},
	{1160, 96, 64},
};

static void
products(const char *p)
{
	int bf = mim_gemm_precision() == MIM_PREC_BF16;

	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
		for (int t = 0; t < 4; t++) {
			int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
			float alpha = t == 3 ? 0.125f : 1.0f, beta = t & 1 ? 1.0f : 0.0f;
			double rerr, e = check(t & 1, t >> 1, M, N, K, alpha, beta, &rerr);
			/* small products (up to 4M multiply-adds, lib/smm.c's)
			 * stay float in bf16 mode */
			if (bf && (double)M * N * K > 4.0 * 1024 * 1024)
				/* bf16's 8-bit mantissa: ~2^-9 per operand; summed in float */
				tap(e > 1e-4 && e < 1e-2 && rerr < 1e-5,
				    "%s %dx%dx%d ta %d tb %d alpha %g beta %g: error %.2e (bf16 rounding), "
				    "%.2e against the rounded operands", p, M, N, K, t & 1, t >> 1, alpha,
				    beta, e, rerr);
			else
				tap(e < 1e-5, "%s %dx%dx%d ta %d tb %d alpha %g beta %g: error %.2e", p, M,
				    N, K, t & 1, t >> 1, alpha, beta, e);
		}
}

static void
epilogue(const char *p)
{
	int M = 700, N = 300, K = 64;
	float *A = malloc((size_t)M * K * sizeof *A), *B = malloc((size_t)K * N * sizeof *B);
	float *C = malloc((size_t)M * N * sizeof *C);
	double *sum = calloc((size_t)M, sizeof *sum);
	struct colsum c = {C, N, sum, 0};

	fill(A, (size_t)M * K, 7);
	fill(B, (size_t)K * N, 8);
	mim_gemm_ex(0, 0, M, N, K, 1, A, K, B, N, 0, C, N, epi, &c);
	double worst = 0;
	for (int i = 0; i < M; i++) {
		double s = 0;
		for (int j = 0; j < N; j++)
			s += C[(size_t)i * N + j];
		worst = fmax(worst, fabs(s - sum[i]));
	}
	tap(worst == 0 && c.blocks >= (mim_threads() > 1 ? 2 : 1),
	    "%s: the epilogue sees every row of C, final, in %d blocks", p, c.blocks);
	free(A);
	free(B);
	free(C);
	free(sum);
}

/* mim_gemm_sums: the sums handed to the epilogue, copied out of c by it */
struct handed {
	float *D;		/* the copies */
	unsigned char *seen;	/* times each element was handed */
	int N, bad;		/* bad: a block whose rows start off MIM_GEMM_ROWS */
};

static void
take(void *p, const float *c, int ldc, int m0, int m1, int n0, int n1)
{
	struct handed *h = p;

	if (n0 == 0 && m0 % MIM_GEMM_ROWS != 0)
		h->bad = 1;
	for (int i = m0; i < m1; i++)
		for (int j = n0; j < n1; j++) {
			h->D[(size_t)i * h->N + j] = c[(size_t)(i - m0) * ldc + (j - n0)];
			h->seen[(size_t)i * h->N + j]++;
		}
}

/* The sums mim_gemm_sums hands its epilogue, a strip of rows at a time,
 * are mim_gemm_bias's (or mim_gemm's), each element once, at 1 and 2
 * threads: to the bit where lib/amx.c runs the product (bf16, op(A) as
 * stored, N a multiple of 16, K of 32 up to 256), whose sums do not depend
 * on the rows around them; through oneDNN's bf16 matmul within a few ulp,
 * since it may sum K another way for fewer rows (not on these shapes; at
 * K 1536 it did: test_kern_fused). In bf16 the strips go through the
 * thread's buffer and C's memory is left as it was.
 * Shapes: a tail of rows (700 = 21 x 32 + 28); two panels of columns in a
 * strip (N 768); N not a multiple of 16 (oneDNN or float); one on the
 * calling thread. In float the sums are computed into C and handed from
 * there. */
static void
handed(const char *p)
{
	/* (the second from last: V past 2 MB in bf16, handed by panels of
	 * columns) */
	static const int sh[][3] = {{700, 384, 96}, {1000, 768, 192}, {700, 300, 64},
	    {130, 2048, 768}, {60, 48, 32}};
	int nt = mim_threads(), bf = mim_gemm_precision() == MIM_PREC_BF16;

	for (size_t s = 0; s < sizeof sh / sizeof *sh; s++)
		for (int t = 1; t <= 2; t++)
			for (int wb = 0; wb < 2; wb++) {
				int M = sh[s][0], N = sh[s][1], K = sh[s][2];
				size_t mn = (size_t)M * N;
				float *A = malloc((size_t)M * K * sizeof *A), *W = malloc((size_t)N * K * sizeof *W);
				float *b = malloc((size_t)N * sizeof *b), *R = malloc(mn * sizeof *R);
				float *C = malloc(mn * sizeof *C);
				struct handed h = {malloc(mn * sizeof(float)), calloc(mn, 1), N, 0};
				fill(A, (size_t)M * K, 51 + (unsigned)s);
				fill(W, (size_t)N * K, 52);
				fill(b, (size_t)N, 53);
				mim_set_threads(t);
				if (wb)
					mim_gemm_bias(0, 1, M, N, K, A, K, W, K, b, R, N);
				else
					mim_gemm(0, 1, M, N, K, 1, A, K, W, K, 0, R, N);
				for (size_t i = 0; i < mn; i++)
					C[i] = -7.5f;
				mim_gemm_sums(0, 1, M, N, K, A, K, W, K, wb ? b : NULL, C, N, take, &h);
				mim_set_threads(nt);
				int once = 1, kept = 1, differ = 0;
				double worst = 0;
				for (size_t i = 0; i < mn; i++) {
					once &= h.seen[i] == 1;
					kept &= C[i] == -7.5f;
					differ += h.D[i] != R[i];
					worst = fmax(worst, fabs((double)h.D[i] - R[i]) / (fabs(R[i]) + 1e-3));
				}
				int tiles = bf && amx_ready() && mim_gemm_amx() && amx_takes(0, N, K) &&
				    (double)M * N * K > 4.0 * 1024 * 1024;
				int small = (double)M * N * K <= 4.0 * 1024 * 1024;	/* float: lib/smm.c */
				tap((tiles || !bf || small ? differ == 0 : worst < 1e-6) && once && !h.bad &&
				    (bf && !small ? kept : memcmp(C, R, mn * sizeof *C) == 0),
				    "%s mim_gemm_sums %dx%dx%d%s, %d thread%s: the sums handed are the "
				    "product's (%d of %zu differ%s), each once, %s", p, M, N, K,
				    wb ? " + bias" : "", t, t > 1 ? "s" : "", differ, mn,
				    tiles ? ": AMX tiles, none may" : "",
				    bf && !small ? "C's memory untouched" : "and in C");
				free(A), free(W), free(b), free(R), free(C), free(h.D), free(h.seen);
			}
}

/* the cut at 16 threads (on any machine: the pool only runs the blocks):
 * forced grids of rows, columns and slices of K, uneven on purpose, every
 * transpose, beta 0 and 1; then the cost model's own choice for a weight
 * gradient's shape (a long K: sliced), twice, to the same bits */
static void
grids(const char *p)
{
	static const int g[][3] = {{1, 1, 16}, {2, 2, 4}, {4, 1, 3}, {1, 3, 5}, {3, 5, 1}};
	int nt = mim_threads(), bf = mim_gemm_precision() == MIM_PREC_BF16;
	double lim = bf ? 1e-2 : 1e-5, rlim = bf ? 1e-5 : 1e-5;

	mim_set_threads(16);
	for (size_t i = 0; i < sizeof g / sizeof *g; i++) {
		mim_gemm_set_grid(g[i]);
		for (int t = 0; t < 4; t++) {
			double rerr, e = check(t & 1, t >> 1, 300, 200, 1500, t == 3 ? 0.125f : 1.0f,
			    t & 1 ? 1.0f : 0.0f, &rerr);
			tap(e < lim && (!bf || rerr < rlim), "%s grid %dx%dx%d, 300x200x1500 ta %d tb %d: error %.2e",
			    p, g[i][0], g[i][1], g[i][2], t & 1, t >> 1, e);
		}
	}
	epilogue(p);	/* (a grid is not for products with an epilogue) */
	mim_gemm_set_grid(NULL);

	int M = 384, N = 96, K = 18432;		/* a Swin stage-0 fc1 dw, batch 8 */
	int gd[3], ge[3], gf[3];
	mim_gemm_grid(M, N, K, 0, gd);
	mim_gemm_grid(M, N, K, 1, ge);
	mim_gemm_grid(1160, 3072, 768, 1, gf);
	tap(gd[2] > 1 && gd[0] * gd[1] * gd[2] <= 16 && ge[2] == 1 && (ge[0] == 1 || ge[1] == 1) &&
	    gf[0] * gf[1] * gf[2] > 1 && (gf[0] == 1 || gf[1] == 1) && gf[2] == 1,
	    "%s grids at 16 threads: %dx%dx%d for %dx%dx%d (K sliced), %dx%dx%d with an epilogue, "
	    "%dx%dx%d for a ViT-B fc1 with its GELU (one dimension)", p, gd[0], gd[1], gd[2], M, N,
	    K, ge[0], ge[1], ge[2], gf[0], gf[1], gf[2]);
	mim_gemm_set_cut(MIM_CUT_1D);
	mim_gemm_grid(M, N, K, 0, gd);
	mim_gemm_set_cut(MIM_CUT_AUTO);
	tap(gd[0] == 12 && gd[1] == 1 && gd[2] == 1, "%s MIM_CUT_1D: %dx%dx%d, rows of the longer side (24 a thread, rounded up to 32)",
	    p, gd[0], gd[1], gd[2]);
	float *A = malloc((size_t)K * M * sizeof *A), *B = malloc((size_t)K * N * sizeof *B);
	float *C = malloc((size_t)M * N * sizeof *C), *C2 = malloc((size_t)M * N * sizeof *C2);
	double *R = calloc((size_t)M * N, sizeof *R);
	fill(A, (size_t)K * M, 21);
	fill(B, (size_t)K * N, 22);
	fill(C, (size_t)M * N, 23);
	memcpy(C2, C, (size_t)M * N * sizeof *C);
	for (size_t i = 0; i < (size_t)M * N; i++)
		R[i] = C[i];
	ref(1, 0, M, N, K, 1, A, M, B, N, 1, R, N, bf);
	mim_gemm(1, 0, M, N, K, 1, A, M, B, N, 1, C, N);
	mim_gemm(1, 0, M, N, K, 1, A, M, B, N, 1, C2, N);
	double e = relnorm(C, R, M, N, N);
	tap(e < 1e-5 && memcmp(C, C2, (size_t)M * N * sizeof *C) == 0,
	    "%s the cut's own grid, %dx%dx%d at 16 threads: error %.2e%s, the same bits twice", p,
	    M, N, K, e, bf ? " against the rounded operands" : "");
	free(A);
	free(B);
	free(C);
	free(C2);
	free(R);
	mim_set_threads(nt);
}

static void
batch(const char *p)
{
	int M = 50, N = 40, K = 30, nb = 9;
	size_t sA = (size_t)M * K, sB = (size_t)K * N, sC = (size_t)M * N;
	float *A = malloc(nb * sA * sizeof *A), *B = malloc(nb * sB * sizeof *B);
	float *C = malloc(nb * sC * sizeof *C);
	double *R = calloc(nb * sC, sizeof *R), worst = 0;

	fill(A, nb * sA, 11);
	fill(B, nb * sB, 12);
	mim_gemm_batch(0, 1, M, N, K, 1, A, K, sA, B, K, sB, 0, C, N, sC, nb);
	for (int b = 0; b < nb; b++) {
		ref(0, 1, M, N, K, 1, A + b * sA, K, B + b * sB, K, 0, R + b * sC, N, 0);
		worst = fmax(worst, relnorm(C + b * sC, R + b * sC, M, N, N));
	}
	tap(worst < 1e-5, "%s: a batch of %d small products, worst error %.2e (float)", p, nb, worst);
	free(A);
	free(B);
	free(C);
	free(R);
}

/* mim_gemm_bias (nn.Linear's forward, 577 x 384 x 129, B transposed), at
 * 1 and 2 threads and in grids (at 16) that slice K: float gives the bytes
 * of the bias written over C and the product added (beta 1); bf16, where
 * oneDNN adds the bias, the sums of the rounded operands (the bias may
 * join them at another point where oneDNN splits K: the last bit), the
 * same bytes twice */
static void
bias(const char *p)
{
	enum { M = 577, N = 384, K = 129 };
	/* threads, and the grid (0: the cut's own) */
	static const int g[][4] = {{1, 0, 0, 0}, {2, 0, 0, 0}, {16, 1, 1, 4}, {16, 2, 3, 2}};
	int nt = mim_threads(), bf = mim_gemm_precision() == MIM_PREC_BF16;
	float *A = malloc(M * K * 4), *B = malloc(N * K * 4), *b = malloc(N * 4);
	float *C = malloc(M * N * 4), *C2 = malloc(M * N * 4);
	double *R = malloc(M * N * sizeof *R);

	fill(A, M * K, 31);
	fill(B, N * K, 32);
	fill(b, N, 33);
	for (int r = 0; r < M; r++)
		for (int c = 0; c < N; c++)
			R[r * N + c] = b[c];
	ref(0, 1, M, N, K, 1, A, K, B, K, 1, R, N, bf);
	for (size_t i = 0; i < sizeof g / sizeof *g; i++) {
		char cut[32] = "its own cut";
		if (g[i][1])
			snprintf(cut, sizeof cut, "grid %dx%dx%d", g[i][1], g[i][2], g[i][3]);
		mim_set_threads(g[i][0]);
		mim_gemm_set_grid(g[i][1] ? g[i] + 1 : NULL);
		fill(C, M * N, 34);	/* (whatever C held) */
		mim_gemm_bias(0, 1, M, N, K, A, K, B, K, b, C, N);
		if (bf) {
			fill(C2, M * N, 35);
			mim_gemm_bias(0, 1, M, N, K, A, K, B, K, b, C2, N);
		} else {
			for (int r = 0; r < M; r++)
				memcpy(C2 + r * N, b, N * 4);
			mim_gemm(0, 1, M, N, K, 1, A, K, B, K, 1, C2, N);
		}
		double e = relnorm(C, R, M, N, N);
		tap(!memcmp(C, C2, M * N * 4) && e < 1e-5, "%s bias, %d thread%s, %s: error %.2e%s, %s",
		    p, g[i][0], g[i][0] > 1 ? "s" : "", cut, e, bf ? " against the rounded operands" : "",
		    bf ? "the same bytes twice" : "the bytes of the bias written first and the product added");
	}
	mim_gemm_set_grid(NULL);
	mim_set_threads(nt);
	free(A), free(B), free(b), free(C), free(C2), free(R);
}

/* the library's own threads for a whole product (mim_gemm_blas_threads:
 * oneDNN's OpenMP team, or OpenBLAS's threads with its sgemm), at 2 threads, as
 * right as the pool's cut */
static void
libthreads(const char *p)
{
	int nt = mim_threads(), bf = mim_gemm_precision() == MIM_PREC_BF16;

	mim_set_threads(2);
	mim_gemm_blas_threads(1);
	for (int t = 0; t < 4; t++) {
		double rerr, e = check(t & 1, t >> 1, 577, 384, 129, t == 3 ? 0.125f : 1.0f,
		    t & 1 ? 1.0f : 0.0f, &rerr);
		tap(bf ? e > 1e-4 && e < 1e-2 && rerr < 1e-5 : e < 1e-5,
		    "%s 577x384x129 ta %d tb %d on the library's threads: error %.2e, %.2e against "
		    "the rounded operands", p, t & 1, t >> 1, e, rerr);
	}
	mim_gemm_blas_threads(0);
	mim_set_threads(nt);
}

/* the float products' two backends (mim_gemm_set_sgemm): oneDNN's sgemm
 * by default, OpenBLAS's on request; both right, and different code: a
 * sum longer than their blocks of K (both sum a short one in order, to
 * the same bits) differs in the last place somewhere: the switch works */
static void
backends(void)
{
	const char *env = getenv("MIM_SGEMM");
	int M = 577, N = 384, K = 700;
	float *A = malloc((size_t)M * K * sizeof *A), *B = malloc((size_t)K * N * sizeof *B);
	float *C[2] = {malloc((size_t)M * N * sizeof(float)), malloc((size_t)M * N * sizeof(float))};

	tap(mim_gemm_sgemm() == (env && !strcmp(env, "openblas") ? MIM_SGEMM_OPENBLAS :
	    MIM_SGEMM_ONEDNN), "float products through %s sgemm (MIM_SGEMM %s)",
	    mim_sgemm_name(mim_gemm_sgemm()), env ? env : "unset");
	fill(A, (size_t)M * K, 11);
	fill(B, (size_t)K * N, 12);
	for (int b = 0; b < 2; b++) {
		mim_gemm_set_sgemm(b ? MIM_SGEMM_OPENBLAS : MIM_SGEMM_ONEDNN);
		mim_gemm(0, 1, M, N, K, 1, A, K, B, K, 0, C[b], N);
	}
	size_t differ = 0;
	for (size_t i = 0; i < (size_t)M * N; i++)
		differ += C[0][i] != C[1][i];
	tap(differ > 0, "oneDNN's and OpenBLAS's sgemm are different code: %zu of %d sums differ",
	    differ, M * N);
	/* a weight gradient whose A rows lie 4 KB apart (lda 1024) goes to
	 * OpenBLAS whatever the setting (oneDNN reads it slowly): the same bits */
	int Mw = 1024, Nw = 96;
	float *Aw = malloc((size_t)K * Mw * sizeof *Aw), *Cw[2];
	fill(Aw, (size_t)K * Mw, 13);
	for (int b = 0; b < 2; b++) {
		Cw[b] = malloc((size_t)Mw * Nw * sizeof(float));
		mim_gemm_set_sgemm(b ? MIM_SGEMM_OPENBLAS : MIM_SGEMM_ONEDNN);
		mim_gemm(1, 0, Mw, Nw, K, 1, Aw, Mw, B, N, 0, Cw[b], Nw);
	}
	tap(!memcmp(Cw[0], Cw[1], (size_t)Mw * Nw * sizeof(float)),
	    "a transposed A at a stride of 4 KB goes to OpenBLAS's sgemm either way");
	double *Rw = calloc((size_t)Mw * Nw, sizeof *Rw);
	ref(1, 0, Mw, Nw, K, 1, Aw, Mw, B, N, 0, Rw, Nw, 0);
	double ew = relnorm(Cw[0], Rw, Mw, Nw, Nw);
	tap(ew < 1e-5, "and is right: error %.2e", ew);
	free(Aw), free(Cw[0]), free(Cw[1]), free(Rw);
	mim_gemm_set_sgemm(MIM_SGEMM_OPENBLAS);
	products("fp32 openblas");
	libthreads("fp32 openblas");
	mim_gemm_set_sgemm(MIM_SGEMM_ONEDNN);
	free(A), free(B), free(C[0]), free(C[1]);
}

/* bf16 copies kept across products (mim_gemm_keep): the same bytes as
 * rounding anew; kept means kept (a change to x after the first product
 * is not seen, which is why the caller must promise none); another shape
 * of the same pointer, and x after the drop, are rounded anew */
static void
keep(void)
{
	enum { M = 288, N = 256, K = 128 };	/* over SMALL_MACS: bf16 */
	float *A = malloc(M * K * 4), *B = malloc(K * N * 4), *B2 = malloc(K * N * 4);
	float *c0 = malloc(M * N * 4), *c1 = malloc(M * N * 4), *c2 = malloc(M * N * 4);
	for (int i = 0; i < M * K; i++)
		A[i] = (float)((i * 37 % 101) - 50) / 7.0f;
	for (int i = 0; i < K * N; i++) {
		B[i] = (float)((i * 53 % 97) - 48) / 9.0f;
		B2[i] = -B[i];
	}
	mim_gemm(0, 0, M, N, K, 1, A, K, B, N, 0, c0, N);	/* rounded anew */
	tap(mim_gemm_keep(A) == 1 && mim_gemm_keep(A) == 0, "keep: 1 new, 0 kept already");
	mim_gemm(0, 0, M, N, K, 1, A, K, B, N, 0, c1, N);	/* makes the copy */
	mim_gemm(0, 0, M, N, K, 1, A, K, B2, N, 0, c2, N);	/* reads it */
	int same = !memcmp(c0, c1, M * N * 4), neg = 1;
	for (int i = 0; i < M * N; i++)
		neg &= c2[i] == -c0[i];
	tap(same && neg, "a kept copy gives the bytes of rounding anew");
	float a0 = A[0];
	A[0] = 1000.0f;	/* (breaking the promise, to see the copy) */
	mim_gemm(0, 0, M, N, K, 1, A, K, B, N, 0, c1, N);
	tap(!memcmp(c0, c1, M * N * 4), "kept means kept: a later change of x is not read");
	mim_gemm(0, 0, M / 2, N, K, 1, A, K, B, N, 0, c2, N);	/* another shape */
	tap(c2[0] != c0[0] && !memcmp(c2 + N, c0 + N, (M / 2 - 1) * N * 4),
	    "the same pointer in another shape: rounded anew");
	mim_gemm_drop(A);
	mim_gemm(0, 0, M, N, K, 1, A, K, B, N, 0, c1, N);
	tap(c1[0] != c0[0], "after the drop x is rounded anew");
	A[0] = a0;
	/* a step again: the same matrices, kept in another order, reuse
	 * their own buffers (a small one must not take a big one's) */
	mim_gemm_drop(NULL);
	mim_gemm_keep(A), mim_gemm_keep(B2);	/* B2 (K x N) is under A (M x K) */
	mim_gemm(0, 0, M, N, K, 1, A, K, B, N, 0, c1, N);
	mim_gemm(0, 0, M, N, K, 1, A, K, B2, N, 0, c2, N);
	size_t held = mim_gemm_kept_bytes();
	mim_gemm_drop(NULL);
	mim_gemm_keep(B2), mim_gemm_keep(A);
	mim_gemm(0, 0, M, N, K, 1, A, K, B2, N, 0, c2, N);
	tap(held >= (size_t)(M * K + K * N) * 2 && mim_gemm_kept_bytes() == held && c2[0] == -c0[0],
	    "kept again in another order: each its own buffer, nothing more allocated (%zu bytes)",
	    held);
	/* the copy made with the column sums of chunks of rows (a bias
	 * gradient): the sums, in double row after row (31 chunks of 32 and
	 * one of 8, over the pool); the copy as any */
	mim_gemm_drop(NULL);
	enum { XR = 1000, XC = 96, YC = 64 };
	float *X = malloc(XR * XC * 4), *Y = malloc(XC * YC * 4), *p1 = malloc(XR * YC * 4),
	    *p2 = malloc(XR * YC * 4);
	double *sums = malloc(((XR + 31) / 32) * XC * sizeof *sums), worst = 0;
	fill(X, XR * XC, 41);
	fill(Y, XC * YC, 42);
	for (int i = 0; i < XR * XC; i++)	/* magnitudes 2^-30..2^30: the order of a sum shows */
		X[i] = ldexpf(X[i], (int)((i * 2654435761u) % 61) - 30);
	int nt = mim_threads();
	mim_set_threads(3);	/* (6 tasks: each must start a chunk) */
	int kr = mim_gemm_keep(X);
	int made = mim_gemm_keep_colsums(X, XR, XC, 32, sums);
	mim_set_threads(nt);
	for (int ch = 0; ch < (XR + 31) / 32; ch++)
		for (int c = 0; c < XC; c++) {
			double t = 0;
			for (int r = ch * 32; r < XR && r < ch * 32 + 32; r++)
				t += X[r * XC + c];
			worst = fmax(worst, fabs(sums[ch * XC + c] - t));
		}
	mim_gemm(0, 0, XR, YC, XC, 1, X, XC, Y, YC, 0, p1, YC);	/* reads the copy */
	int again = mim_gemm_keep_colsums(X, XR, XC, 32, sums), other = mim_gemm_keep_colsums(Y, XC,
	    YC, 32, sums);
	mim_gemm_drop(X);
	mim_gemm(0, 0, XR, YC, XC, 1, X, XC, Y, YC, 0, p2, YC);	/* rounded anew */
	tap(kr == 1 && made == 0 && worst == 0 && !memcmp(p1, p2, XR * YC * 4) && again < 0 &&
	    other < 0, "the copy made with its chunks' column sums: the sums of sum_rows's order "
	    "(%.3g off), the product's bytes; -1 once made, and for a matrix not kept", worst);
	free(X), free(Y), free(p1), free(p2);
	free(sums);
	mim_gemm_drop(NULL);
	int full = 0;
	for (int i = 0; i < 200 && !full; i++)
		full = mim_gemm_keep(A + i) < 0;
	mim_gemm_drop(NULL);
	tap(full && mim_gemm_keep(A) == 1, "a full table says so; drop(NULL) empties it");
	mim_gemm_drop(NULL);
	mim_gemm_set_precision(MIM_PREC_FP32);
	tap(mim_gemm_keep(A) == 0, "float: nothing to keep");
	mim_gemm_set_precision(MIM_PREC_BF16);
	free(A), free(B), free(B2), free(c0), free(c1), free(c2);
}

/* a kept matrix's copy made by the kernel that writes it
 * (mim_gemm_kept_fill): LayerNorm's output (300 rows: groups of 16 and a
 * tail, over the pool) and fc1's GELU; the product that reads it finds
 * the copy made (mim_gemm_keep_colsums: -1, where it would make it) and
 * gives the bytes of rounding anew */
static void
filled(void)
{
	enum { R = 300, C = 128, O = 384, N = 256 };
	float *x = malloc(R * C * 4), *y = malloc(R * C * 4), *g = malloc(C * 4), *b = malloc(C * 4);
	float *mean = malloc(R * 4), *rstd = malloc(R * 4), *W = malloc(N * O * 4);
	float *W1 = malloc(O * C * 4), *b1 = malloc(O * 4), *dg = malloc(R * O * 4);
	float *h = malloc(R * O * 4), *p[2], *q[2];
	double *sums = malloc((R / 32 + 1) * O * sizeof *sums);
	int made[2];
	for (int i = 0; i < R * C; i++)
		x[i] = (float)((i * 37 % 101) - 50) / 7.0f;
	for (int i = 0; i < C; i++)
		g[i] = 1 + 0.01f * i, b[i] = 0.02f * (i % 7);
	for (int i = 0; i < N * O; i++)
		W[i] = (float)((i * 53 % 97) - 48) / 90.0f;
	for (int i = 0; i < O * C; i++)
		W1[i] = (float)((i * 29 % 89) - 44) / 80.0f;
	for (int i = 0; i < O; i++)
		b1[i] = 0.01f * (i % 13) - 0.05f;
	mim_gemm_drop(NULL);
	{	/* on a 64-byte boundary, as the tiles read them (malloc gives
		 * 16: a large block starts 16 bytes into a page); eight copies
		 * of odd sizes, kept at once */
		float *big[8];
		int odd = 0;
		for (int i = 0; i < 8; i++) {
			big[i] = calloc((size_t)(4096 + 8 * i) * 96, 4);
			mim_gemm_keep(big[i]);
			uint16_t *yb = mim_gemm_kept_fill(big[i], 4096 + 8 * i, 96 - 8 * (i % 2));
			odd += !yb || (uintptr_t)yb % 64 != 0;
		}
		tap(odd == 0, "kept copies start on a 64-byte boundary (%d of 8 do not)", odd);
		mim_gemm_drop(NULL);
		for (int i = 0; i < 8; i++)
			free(big[i]);
	}
	for (int k = 0; k < 2; k++) {	/* rounded by the product, then by the kernel */
		p[k] = malloc(R * N * 4), q[k] = malloc(R * N * 4);
		if (k)
			mim_gemm_keep(y);
		layernorm_forward(y, mean, rstd, x, g, b, R, C, 1e-5f);
		made[0] = mim_gemm_keep_colsums(y, R, C, 32, sums);
		mim_gemm(0, 1, R, N, C, 1, y, C, W, C, 0, p[k], N);
		if (k)
			mim_gemm_keep(h);
		linear_gelu_forward(dg, h, y, W1, b1, R, C, O);
		made[1] = mim_gemm_keep_colsums(h, R, O, 32, sums);
		mim_gemm(0, 1, R, N, O, 1, h, O, W, O, 0, q[k], N);
		mim_gemm_drop(NULL);
	}
	tap(made[0] < 0 && !memcmp(p[0], p[1], R * N * 4),
	    "LayerNorm's output kept: its copy made as it is written, the bytes of rounding anew");
	tap(made[1] < 0 && !memcmp(q[0], q[1], R * N * 4),
	    "fc1's GELU kept: its copy made in the product's epilogue, the bytes of rounding anew");
	/* backward: fc1's output gradient (the GELU backward's dpre) kept: its
	 * copy and its bias-gradient chunks made by that kernel; fc1's
	 * backward then gives the bytes it gives without */
	float *dout = malloc(R * N * 4), *dpre = malloc(R * O * 4), *dw2 = malloc(N * O * 4);
	float *db2 = malloc(N * 4), *dx1[2], *dw1[2], *db1[2];
	int handed[2];
	for (int i = 0; i < R * N; i++)
		dout[i] = (float)((i * 31 % 83) - 41) / 50.0f;
	for (int k = 0; k < 2; k++) {
		dx1[k] = calloc(R * C, 4), dw1[k] = calloc(O * C, 4), db1[k] = calloc(O, 4);
		memset(dw2, 0, N * O * 4), memset(db2, 0, N * 4);
		if (k)
			mim_gemm_keep(dpre);
		linear_gelu_backward(dpre, dw2, db2, dout, h, dg, W, R, O, N);
		handed[k] = mim_gemm_kept_sums(dpre, R, O, MIM_GEMM_ROWS) != NULL;
		linear_backward(dx1[k], dw1[k], db1[k], dpre, y, W1, R, C, O);
		mim_gemm_drop(NULL);
	}
	tap(!handed[0] && handed[1] && !memcmp(dx1[0], dx1[1], R * C * 4) &&
	    !memcmp(dw1[0], dw1[1], O * C * 4) && !memcmp(db1[0], db1[1], O * 4),
	    "fc1's output gradient kept: its copy and bias chunks made by the GELU's backward, "
	    "fc1's gradients the bytes of rounding anew");
	free(dout), free(dpre), free(dw2), free(db2);
	for (int k = 0; k < 2; k++)
		free(dx1[k]), free(dw1[k]), free(db1[k]);
	/* attention's output (proj's input): each head's columns rounded by
	 * its job (16 windows of 36 tokens, 4 heads of 32) */
	enum { AB = 16, AN = 36, AC = 128, AH = 4 };
	float *qkv0 = malloc(AB * AN * 3 * AC * 4), *qkv = malloc(AB * AN * 3 * AC * 4);
	float *ao = malloc(AB * AN * AC * 4), *P = malloc((size_t)AB * AH * AN * AN * 4);
	float *work = malloc(attention_work(AN) * 4), *Wp = malloc(AC * AC * 4), *o2[2];
	for (int i = 0; i < AB * AN * 3 * AC; i++)
		qkv0[i] = (float)((i * 41 % 103) - 51) / 40.0f;
	for (int i = 0; i < AC * AC; i++)
		Wp[i] = (float)((i * 23 % 79) - 39) / 60.0f;
	for (int k = 0; k < 2; k++) {
		o2[k] = malloc(AB * AN * AC * 4);
		memcpy(qkv, qkv0, AB * AN * 3 * AC * 4);
		if (k)
			mim_gemm_keep(ao);
		attention_forward(ao, P, qkv, NULL, NULL, NULL, NULL, 1, AB, AN, AC, AH,
		    0.1767767f, work);
		made[0] = mim_gemm_keep_colsums(ao, AB * AN, AC, 32, sums);
		mim_gemm(0, 1, AB * AN, AC, AC, 1, ao, AC, Wp, AC, 0, o2[k], AC);
		mim_gemm_drop(NULL);
	}
	tap(made[0] < 0 && !memcmp(o2[0], o2[1], AB * AN * AC * 4),
	    "attention's output kept: its copy made by the heads, the bytes of rounding anew");
	free(qkv0), free(qkv), free(ao), free(P), free(work), free(Wp), free(o2[0]), free(o2[1]);
	free(x), free(y), free(g), free(b), free(mean), free(rstd), free(W), free(W1), free(b1);
	free(dg), free(h), free(sums);
	for (int k = 0; k < 2; k++)
		free(p[k]), free(q[k]);
}

/* lib/amx.c's kernel on its own: the pairs exact (each float rounded to
 * nearest even), and C from 0, the bias or C itself against the double
 * sums of the rounded operands, on shapes that leave tails (rows past a
 * multiple of 32 or 16, a last single column tile, several panels), with
 * padded strides; nothing written past M rows or N columns */
static void
amx_kernel(void)
{
	static const int sh[][3] = {
		{1, 16, 32}, {37, 48, 64}, {45, 16, 96}, {64, 96, 32}, {100, 592, 96},
		{33, 32, 1024}, {70, 1056, 640},
	};

	for (size_t s = 0; s < sizeof sh / sizeof *sh; s++)
		for (int tb = 0; tb < 2; tb++) {
			int M = sh[s][0], N = sh[s][1], K = sh[s][2];
			int lda = K + 16, ldb = tb ? K + 3 : N + 5, ldv = N + 16, ldc = N + 7;
			size_t nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)(M + 1) * ldc;
			float *Af = malloc((size_t)M * K * sizeof *Af), *B = malloc(nb * sizeof *B);
			float *bias = malloc((size_t)N * sizeof *bias), *C = malloc(nc * sizeof *C);
			uint16_t *A = malloc((size_t)M * lda * sizeof *A);
			uint32_t *V = malloc((size_t)K / 2 * ldv * sizeof *V);
			double *R = malloc(nc * sizeof *R);

			fill(Af, (size_t)M * K, 31 + M);
			fill(B, nb, 32 + N);
			fill(bias, (size_t)N, 33);
			for (int i = 0; i < M; i++)
				for (int k = 0; k < K; k++)
					A[(size_t)i * lda + k] = mim_f32_to_bf16(Af[(size_t)i * K + k]);
			/* in two calls where there are two rows of 16 pairs */
			int half = K / 2 > 16 ? K / 2 / 32 * 16 : K / 2;
			if (half == 0)
				half = 16;
			amx_pack(V, ldv, B, ldb, tb, N, 0, half);
			if (half < K / 2)
				amx_pack(V, ldv, B, ldb, tb, N, half, K / 2);
			int exact = 1;
			for (int k = 0; k < K; k++)
				for (int n = 0; n < N; n++) {
					float b = tb ? B[(size_t)n * ldb + k] : B[(size_t)k * ldb + n];
					uint16_t w = (uint16_t)(V[(size_t)k / 2 * ldv + n] >> 16 * (k % 2));
					exact &= w == mim_f32_to_bf16(b);
				}
			tap(exact, "amx_pack %d x %d tb %d: the pairs, each float rounded to nearest even",
			    K, N, tb);
			for (int mode = 0; mode < 3; mode++) {	/* 0, the bias, C */
				fill(C, nc, 34 + mode);
				for (int i = 0; i <= M; i++)
					for (int j = 0; j < ldc; j++) {
						float c = C[(size_t)i * ldc + j];
						double r = mode == 2 ? c : mode == 1 ? bias[j < N ? j : 0] : 0;
						for (int k = 0; i < M && j < N && k < K; k++) {
							float b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
							r += (double)mim_bf16_to_f32(A[(size_t)i * lda + k]) *
							    mim_bf16_to_f32(mim_f32_to_bf16(b));
						}
						R[(size_t)i * ldc + j] = i < M && j < N ? r : c;
					}
				int rc = amx_gemm(M, N, K, A, lda, V, ldv, mode == 1 ? bias : NULL, mode == 2,
				    C, ldc);
				int outside = 1;	/* the padding columns and the row past M */
				for (int i = 0; i <= M; i++)
					for (int j = 0; j < ldc; j++)
						if (i == M || j >= N)
							outside &= C[(size_t)i * ldc + j] == (float)R[(size_t)i * ldc + j];
				double e = relnorm(C, R, M, N, ldc);
				tap(rc == 0 && e < 1e-6 && outside,
				    "amx_gemm %dx%dx%d tb %d from %s: error %.2e, nothing written outside C",
				    M, N, K, tb, mode == 0 ? "0" : mode == 1 ? "the bias" : "C", e);
			}
			free(Af), free(B), free(bias), free(C), free(A), free(V), free(R);
		}
}

/* bf16 products that lib/amx.c takes (op(A) as stored, N a multiple of 16,
 * K of 32) through mim_gemm, with its kernel and with oneDNN's matmul
 * (mim_gemm_set_amx 0): each within float's sums of the rounded operands,
 * the two within the last places of each other; with the bias; cut into
 * columns and into slices of K (grids forced at 4 threads) */
static void
amx_products(void)
{
	/* (over 4M multiply-adds, so bf16; the last with K past the old limit
	 * of 256 and V's rows padded by pairs_ld) */
	static const int sh[][3] = {{1160, 96, 64}, {301, 64, 224}, {700, 400, 128},
	    {97, 1024, 768}};

	for (size_t s = 0; s < sizeof sh / sizeof *sh; s++)
		for (int tb = 0; tb < 2; tb++)
			for (int beta = 0; beta < 2; beta++) {
				int M = sh[s][0], N = sh[s][1], K = sh[s][2];
				double e[2], r[2];
				for (int a = 0; a < 2; a++) {
					mim_gemm_set_amx(a);
					e[a] = check(0, tb, M, N, K, 1, (float)beta, &r[a]);
				}
				mim_gemm_set_amx(1);
				tap(r[0] < 1e-5 && r[1] < 1e-5 && fabs(e[0] - e[1]) < 1e-5 * e[0],
				    "bf16 %dx%dx%d tb %d beta %d: AMX tiles %.2e, oneDNN %.2e against the rounded "
				    "operands", M, N, K, tb, beta, r[1], r[0]);
			}
	int M = 577, N = 384, K = 256;
	float *A = malloc((size_t)M * K * sizeof *A), *W = malloc((size_t)N * K * sizeof *W);
	float *b = malloc((size_t)N * sizeof *b), *C = malloc((size_t)M * N * sizeof *C);
	double *R = malloc((size_t)M * N * sizeof *R);
	fill(A, (size_t)M * K, 41);
	fill(W, (size_t)N * K, 42);
	fill(b, (size_t)N, 43);
	for (int i = 0; i < M; i++)
		for (int j = 0; j < N; j++)
			R[(size_t)i * N + j] = b[j];
	ref(0, 1, M, N, K, 1, A, K, W, K, 1, R, N, 1);
	int nt = mim_threads();
	static const int grid[][3] = {{0, 0, 0}, {1, 2, 1}, {2, 2, 1}, {1, 1, 4}, {2, 1, 2}};
	mim_set_threads(4);
	for (size_t g = 0; g < sizeof grid / sizeof *grid; g++) {
		mim_gemm_set_grid(grid[g][0] ? grid[g] : NULL);
		mim_gemm_bias(0, 1, M, N, K, A, K, W, K, b, C, N);
		double e = relnorm(C, R, M, N, N);
		tap(e < 1e-5, "bf16 bias %dx%dx%d on AMX tiles, grid %dx%dx%d: error %.2e against "
		    "the rounded operands", M, N, K, grid[g][0], grid[g][1], grid[g][2], e);
	}
	mim_gemm_set_grid(NULL);
	mim_set_threads(nt);
	free(A), free(W), free(b), free(C), free(R);
}

int
main(void)
{
	const struct mim_cpu *c = mim_cpu();
	const struct mim_blas *b = mim_blas();
	int want = c->avx512 ? 3 : c->avx2 && c->fma ? 2 : 0;

	/* the kernels: of the CPU's class unless the user chose */
	if (b->user && !b->corrected)
		printf("skip - OPENBLAS_CORETYPE=%s is set: the user's choice\n", b->core);
	else if (want == 0)
		printf("skip - the CPU has neither AVX2 nor AVX-512: no kernels to insist on\n");
	else
		tap(strcmp(b->core, want == 3 ? "SkylakeX" : "Haswell") == 0 ||
		    (want == 3 && (!strcmp(b->core, "Cooperlake") || !strcmp(b->core, "SapphireRapids"))) ||
		    (want == 2 && !strcmp(b->core, "Zen")),
		    "OpenBLAS runs kernels of the CPU's class: %s (the library chose %s)", b->core,
		    b->chosen);

	tap(mim_gemm_precision() == MIM_PREC_FP32, "float products by default");
	products("fp32");
	epilogue("fp32");
	handed("fp32");
	grids("fp32");
	batch("fp32");
	libthreads("fp32");
	bias("fp32");
	backends();

	if (mim_gemm_set_precision(MIM_PREC_BF16) < 0) {
		printf("skip - bf16 products: %s\n", mim_errmsg());
		tap(strstr(mim_errmsg(), "AMX") != NULL, "bf16 refused, naming AMX and AVX512-BF16");
		tap(mim_gemm_precision() == MIM_PREC_FP32, "a refused precision leaves float");
		return tap_done();
	}
	products("bf16");
	epilogue("bf16");
	handed("bf16");
	grids("bf16");
	batch("bf16");
	libthreads("bf16");
	bias("bf16");
	keep();
	filled();
	if (amx_ready()) {
		amx_kernel();
		amx_products();
	} else {
		printf("skip - no AMX tiles here (CPU or Linux): lib/amx.c not run\n");
	}
	tap(mim_gemm_set_precision(MIM_PREC_FP32) == 0 && mim_gemm_precision() == MIM_PREC_FP32,
	    "back to float");
	double rerr, e = check(0, 0, 64, 48, 40, 1, 0, &rerr);
	tap(e < 1e-5, "float again after bf16: error %.2e", e);
	tap(mim_precision_parse("bf16") == MIM_PREC_BF16 && mim_precision_parse("fp32") == MIM_PREC_FP32 &&
	    mim_precision_parse("fp16") == -1 && !strcmp(mim_precision_name(MIM_PREC_BF16), "bf16"),
	    "precision names");
	return tap_done();
}
