/* test_kern_fused.c -- the speed paths of the products and the fused
 * kernels: mim_gemm cut over the thread pool (by rows and by columns) and
 * through the small-product backend (lib/smm.c), with an epilogue, against
 * a double reference in every transpose; the bias gradient summed inside
 * the input-gradient product; Linear+GELU forward and backward against the
 * unfused kernels, byte for byte; Swin's proj + window reverse-add and
 * fc2 + residual against the unfused pairs, in float and bf16; 1 and 2
 * threads alike. (A product cut
 * into blocks of columns is not always bitwise the uncut one: OpenBLAS's
 * edge kernels round differently. Each thread count is still
 * deterministic, which is what the library promises.) */
#include "mim.h"
#include "mim/kern.h"
#include "mim/swin.h"
#include "gradcheck.h"

static void
fill(float *x, size_t n, unsigned seed)
{
	uint64_t s = 0x9e3779b97f4a7c15ULL * (seed + 1);
	for (size_t i = 0; i < n; i++) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		x[i] = (float)((s >> 40) * (1.0 / (1 << 24)) * 2 - 1);
	}
}

/* C = alpha op(A) op(B) + beta C in double, row-major */
static void
ref_gemm(double *out, int ta, int tb, int M, int N, int K, double alpha,
    const float *A, int lda, const float *B, int ldb, double beta, const float *C, int ldc)
{
	for (int i = 0; i < M; i++)
		for (int j = 0; j < N; j++) {
			double s = 0;
			for (int k = 0; k < K; k++)
				s += (double)(ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]) *
				    (tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
			out[(size_t)i * N + j] = alpha * s + (beta != 0 ? beta * C[(size_t)i * ldc + j] : 0);
		}
}

/* every element of C visited once by the epilogue, in blocks that are
 * whole rows or whole columns */
static int *visits;
static int vM, vN, vldc, badblock;

static void
count(void *ctx, int m0, int m1, int n0, int n1)
{
	(void)ctx;
	if (!((n0 == 0 && n1 == vN) || (m0 == 0 && m1 == vM)) ||
	    (n0 == 0 && n1 == vN && m0 % MIM_GEMM_ROWS != 0))
		badblock = 1;
	for (int i = m0; i < m1; i++)
		for (int j = n0; j < n1; j++)
			visits[(size_t)i * vN + j]++;
}

static void
gemm_case(int M, int N, int K, const char *what, int same1)
{
	int pad = 3;
	for (int ta = 0; ta < 2; ta++)
		for (int tb = 0; tb < 2; tb++) {
			int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
			size_t na = (size_t)lda * (ta ? K : M), nb = (size_t)ldb * (tb ? N : K);
			size_t nc = (size_t)ldc * M;
			float *A = malloc(na * 4), *B = malloc(nb * 4), *C0 = malloc(nc * 4);
			float *C1 = malloc(nc * 4), *C2 = malloc(nc * 4);
			double *r = malloc((size_t)M * N * 8);
			fill(A, na, 1 + ta);
			fill(B, nb, 3 + tb);
			fill(C0, nc, 5);
			for (int bi = 0; bi < 2; bi++) {
				float beta = bi ? 0.5f : 0.0f;
				memcpy(C1, C0, nc * 4);
				memcpy(C2, C0, nc * 4);
				ref_gemm(r, ta, tb, M, N, K, 0.75, A, lda, B, ldb, beta, C0, ldc);
				visits = calloc((size_t)M * N, sizeof *visits);
				vM = M, vN = N, vldc = ldc, badblock = 0;
				mim_set_threads(2);
				mim_gemm_ex(ta, tb, M, N, K, 0.75f, A, lda, B, ldb, beta, C1, ldc, count, NULL);
				if (same1)
					mim_set_threads(1);
				mim_gemm(ta, tb, M, N, K, 0.75f, A, lda, B, ldb, beta, C2, ldc);
				mim_set_threads(2);
				double e = 0, mx = 0;
				int once = 1, same = 1, pads = 1;
				for (int i = 0; i < M; i++) {
					for (int j = 0; j < N; j++) {
						size_t c = (size_t)i * ldc + j;
						e = fmax(e, fabs(C1[c] - r[(size_t)i * N + j]));
						mx = fmax(mx, fabs(r[(size_t)i * N + j]));
						once &= visits[(size_t)i * N + j] == 1;
						same &= C1[c] == C2[c];
					}
					for (int j = N; j < ldc; j++)	/* the padding is not touched */
						pads &= C1[(size_t)i * ldc + j] == C0[(size_t)i * ldc + j];
				}
				tap(e / mx < 1e-5 && once && !badblock && pads,
				    "%s %dx%dx%d ta=%d tb=%d beta=%g: rel err %.1e, epilogue once per element",
				    what, M, N, K, ta, tb, beta, e / mx);
				tap(same, "%s %dx%dx%d ta=%d tb=%d beta=%g: %s, same bytes",
				    what, M, N, K, ta, tb, beta, same1 ? "1 and 2 threads" : "2 threads twice");
				free(visits);
			}
			free(A), free(B), free(C0), free(C1), free(C2), free(r);
		}
}

/* linear_reverse_add and linear_residual_forward against linear_forward
 * then window_reverse_add / residual_forward: 4 samples of 24 x 24 tokens
 * in shifted windows of 6, with drop path (samples 1 and 3 dropped) and
 * without: C 96 and K 96 (strips of 672 rows in bf16, on lib/amx.c's
 * tiles or oneDNN's matmul), C 384 and K 1536 (strips of 160, oneDNN).
 * The same bytes in float and on the tiles; through oneDNN, whose sums
 * over a long K can depend on how many rows a call has (the fused kernels
 * run it a strip of rows a call), within a few ulp. */
static void
fused_adds(const char *p)
{
	enum { B = 4, H = 24, L = H * H, R = B * L, CM = 384 };
	int idx[L], bf = mim_gemm_precision() == MIM_PREC_BF16, nt = mim_threads();
	float kept[B] = {1, 0, 1, 0};

	window_index(idx, H, H, 6, 3);
	for (int IC = 96, C = 96; IC <= 1536; IC *= 16, C = CM)
		for (int dp = 0; dp < 2; dp++)
			for (int t = 1; t <= 2; t++) {
				float *inp = malloc((size_t)R * IC * 4), *w = malloc((size_t)C * IC * 4);
				float *b = malloc(C * 4), *x = malloc(R * CM * 4), *y = malloc(R * CM * 4);
				float *o[4], *tmp = malloc(R * CM * 4);
				for (int i = 0; i < 4; i++)
					o[i] = malloc(R * CM * 4);
				fill(inp, (size_t)R * IC, 21), fill(w, (size_t)C * IC, 22);
				fill(b, C, 23), fill(x, R * C, 24);
				mim_set_threads(t);
				const float *k = dp ? kept : NULL;
				linear_forward(y, inp, w, NULL, R, IC, C);
				window_reverse_add(o[0], x, y, b, k, 0.75f, idx, B, L, C);
				linear_reverse_add(o[1], x, inp, w, IC, b, k, 0.75f, idx, B, L, C, tmp);
				linear_forward(y, inp, w, b, R, IC, C);
				residual_forward(o[2], x, y, NULL, k, 0.75f, B, L, C);
				linear_residual_forward(o[3], x, inp, w, b, IC, NULL, k, 0.75f, B, L, C,
				    tmp);
				mim_set_threads(nt);
				for (int f = 0; f < 2; f++) {
					int differ = 0;
					double worst = 0, top = 0;
					for (int i = 0; i < R * C; i++) {
						float u = o[2 * f][i], v = o[2 * f + 1][i];
						differ += u != v;
						worst = fmax(worst, fabs((double)u - v));
						top = fmax(top, fabs(u));
					}
					worst /= top;	/* (of the largest: x + y cancels) */
					int exact = !bf || (IC <= 256 && mim_gemm_amx());
					tap(exact ? differ == 0 : worst < 1e-5,
					    "%s %s, K %d%s, %d thread%s: %d of %d differ from the unfused "
					    "pair (by %.1e of the largest)%s", p,
					    f ? "linear+residual" : "linear+reverse_add", IC,
					    dp ? ", drop path" : "", t, t > 1 ? "s" : "", differ, R * C, worst,
					    exact ? ", none may" : "");
				}
				free(inp), free(w), free(b), free(x), free(y), free(tmp);
				for (int i = 0; i < 4; i++)
					free(o[i]);
			}
}

/* bf16: window_gather into a kept matrix (a Linear's output gradient)
 * makes its copy and chunk sums and leaves its floats alone: a product
 * reading it gives the bytes of one reading the plain gather's output,
 * the sums are those of its rows, 32 at a time, in order */
static void
gather_fill(void)
{
	enum { B = 3, H = 12, L = H * H, R = B * L, C = 96, N = 128 };	/* (over 4M MACs: bf16) */
	int idx[L];
	float kept[B] = {1, 0, 1};
	float *x = malloc(R * C * 4), *ref = malloc(R * C * 4), *out = malloc(R * C * 4);
	float *w = malloc(C * N * 4), *c1 = malloc(R * N * 4), *c2 = malloc(R * N * 4);

	window_index(idx, H, H, 6, 3);
	fill(x, R * C, 31), fill(w, C * N, 32);
	window_gather(ref, x, idx, kept, 0.75f, B, L, C);
	for (int i = 0; i < R * C; i++)
		out[i] = -3.5f;
	mim_gemm_keep(out);
	window_gather(out, x, idx, kept, 0.75f, B, L, C);
	const double *sums = mim_gemm_kept_sums(out, R, C, MIM_GEMM_ROWS);
	int untouched = 1, same = sums != NULL;
	for (int i = 0; i < R * C; i++)
		untouched &= out[i] == -3.5f;
	for (int k = 0; same && k * MIM_GEMM_ROWS < R; k++)
		for (int c = 0; c < C; c++) {
			double t = 0;
			for (int r = k * MIM_GEMM_ROWS; r < R && r < (k + 1) * MIM_GEMM_ROWS; r++)
				t += ref[r * C + c];
			same &= sums[k * C + c] == t;
		}
	mim_gemm(0, 0, R, N, C, 1, out, C, w, N, 0, c1, N);
	mim_gemm(0, 0, R, N, C, 1, ref, C, w, N, 0, c2, N);
	mim_gemm_drop(out);
	tap(untouched && same && memcmp(c1, c2, R * N * 4) == 0,
	    "bf16 window_gather into a kept matrix: its copy (a product's bytes) and chunk "
	    "sums made there, its floats not written");
	free(x), free(ref), free(out), free(w), free(c1), free(c2);
}

int
main(void)
{
	/* small (lib/smm.c), and big enough to be cut by rows / by columns */
	gemm_case(37, 29, 21, "small", 1);
	gemm_case(145, 145, 64, "small", 1);
	gemm_case(300, 70, 120, "rows", 1);
	gemm_case(40, 400, 150, "columns", 0);

	/* Linear backward: the bias gradient summed in row chunks inside
	 * the dx product equals the plain column sums (to rounding of the
	 * double sums), for 1 and 2 threads */
	enum { R = 333, IC = 96, OC = 120 };
	float *x = malloc(R * IC * 4), *w = malloc(OC * IC * 4), *b = malloc(OC * 4);
	float *dout = malloc(R * OC * 4), *dx = malloc(R * IC * 4);
	float *db1 = calloc(OC, 4), *db2 = calloc(OC, 4), *dw = calloc(OC * IC, 4);
	fill(x, R * IC, 7), fill(w, OC * IC, 8), fill(b, OC, 9), fill(dout, R * OC, 10);
	double ref[OC] = {0}, e = 0, mx = 0;
	for (int r = 0; r < R; r++)
		for (int o = 0; o < OC; o++)
			ref[o] += dout[r * OC + o];
	linear_backward(dx, dw, db1, dout, x, w, R, IC, OC);
	mim_set_threads(1);
	linear_backward(dx, dw, db2, dout, x, w, R, IC, OC);
	mim_set_threads(2);
	for (int o = 0; o < OC; o++) {
		e = fmax(e, fabs(db1[o] - ref[o]));
		mx = fmax(mx, fabs(ref[o]));
	}
	tap(e / mx < 1e-6 && memcmp(db1, db2, OC * 4) == 0,
	    "bias gradient inside the dx product: rel err %.1e, same bytes on 1 and 2 threads", e / mx);

	/* Linear+GELU forward: the same bytes as linear_forward, gelu_forward,
	 * and gelu' (gelu_backward of ones) where the pre-activation was */
	float *h1 = malloc(R * OC * 4), *a1 = malloc(R * OC * 4);
	float *h2 = malloc(R * OC * 4), *a2 = malloc(R * OC * 4);
	float *g2 = malloc(R * OC * 4), *pre = malloc(R * OC * 4);
	linear_gelu_forward(h1, a1, x, w, b, R, IC, OC);
	linear_forward(pre, x, w, b, R, IC, OC);
	gelu_forward(a2, pre, (size_t)R * OC);
	for (int i = 0; i < R * OC; i++)
		g2[i] = 1.0f;
	gelu_backward(g2, g2, pre, (size_t)R * OC);
	tap(memcmp(a1, a2, R * OC * 4) == 0 && memcmp(h1, g2, R * OC * 4) == 0,
	    "linear+gelu forward: the same bytes as the two kernels, gelu' kept");
	linear_gelu_forward(NULL, h2, x, w, b, R, IC, OC);
	tap(memcmp(a1, h2, R * OC * 4) == 0, "linear+gelu forward in place (inference)");
	/* the MLP's fc2 backward fused with GELU's, against the unfused pair:
	 * fc2 maps (R,OC) -> (R,IC) here, w2 (IC,OC) */
	float *w2 = malloc(IC * OC * 4), *d2 = malloc(R * IC * 4);
	float *dp1 = malloc(R * OC * 4), *dp2 = malloc(R * OC * 4);
	float *dw1 = calloc(IC * OC, 4), *dw2 = calloc(IC * OC, 4);
	float *dbb1 = calloc(IC, 4), *dbb2 = calloc(IC, 4);
	fill(w2, IC * OC, 11), fill(d2, R * IC, 12);
	linear_gelu_backward(dp1, dw1, dbb1, d2, a1, h1, w2, R, OC, IC);
	linear_backward(dp2, dw2, dbb2, d2, a1, w2, R, OC, IC);
	gelu_backward(dp2, dp2, pre, (size_t)R * OC);
	tap(memcmp(dp1, dp2, R * OC * 4) == 0 && memcmp(dw1, dw2, IC * OC * 4) == 0 &&
	    memcmp(dbb1, dbb2, IC * 4) == 0,
	    "linear+gelu backward: the same bytes as linear_backward, gelu_backward");
	free(x), free(w), free(b), free(dout), free(dx), free(db1), free(db2), free(dw);
	free(h1), free(a1), free(h2), free(a2), free(g2), free(pre);
	free(w2), free(d2), free(dp1), free(dp2), free(dw1), free(dw2), free(dbb1), free(dbb2);

	fused_adds("fp32");
	if (mim_gemm_set_precision(MIM_PREC_BF16) == 0) {
		fused_adds("bf16");
		gather_fill();
		if (mim_gemm_amx()) {
			mim_gemm_set_amx(0);
			fused_adds("bf16 oneDNN");
			mim_gemm_set_amx(1);
		}
	} else {
		printf("skip - bf16: %s\n", mim_errmsg());
	}
	return tap_done();
}
