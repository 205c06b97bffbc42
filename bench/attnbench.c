/* attnbench.c -- attention_forward and attention_backward on the shapes of
 * a swin-base step at 192 px (windows of 36 tokens, head dim 32; 4, 8, 16,
 * 32 heads at C = 128 .. 1024; the windows of a batch; shifted: the
 * -100 mask of Swin's shifted windows) and of the ViTs (145 tokens, head
 * dim 64; vit-base's 12 heads, vit-tiny's 3), both kernels
 * (attention_set_fused 0: through mim_gemm and softmax_rows, "old"; 1:
 * lib/kern/attn512.c, "new") in turn, interleaved, on the same inputs.
 * --bf16: the precision bf16, "old" attn512.c in float
 * (attention_set_amx 0), "new" the products in bf16 on AMX tiles
 * (lib/kern/attn_amx.c, attention_set_amx 2: every shape, not only the
 * default's N over 64; where the CPU has AMX-BF16, else float again).
 *
 *   attnbench [--bf16] [-t threads] [-r rounds] [-b batch] [shape-filter]
 *
 * qkv is restored before every forward (which scales q in place). Times
 * are the thread's CPU time at one thread, wall time at more. Prints
 * per shape and pass the median over the rounds of us per (window, head)
 * and GFLOP/s (4 N^2 D flops forward, 8 backward) of each kernel, their
 * ratio, and whether the outputs (out and P; dqkv and dS) are the same
 * bits (--bf16: their largest difference over the largest element, of
 * out and P; dqkv and dS). Built by scripts/benchprogs.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include "mim.h"
#include "bench.h"

struct shape {
	const char *name;
	int windows, N, C, Hh, nW, shift;	/* windows a sample; nW of the mask */
};

static const struct shape shapes[] = {
	{"swin-s1", 64, 36, 128, 4, 64, 0},
	{"swin-s1-shift", 64, 36, 128, 4, 64, 1},
	{"swin-s2", 16, 36, 256, 8, 16, 0},
	{"swin-s2-shift", 16, 36, 256, 8, 16, 1},
	{"swin-s3", 4, 36, 512, 16, 4, 0},
	{"swin-s3-shift", 4, 36, 512, 16, 4, 1},
	{"swin-s4", 1, 36, 1024, 32, 1, 0},
	{"vit-base", 1, 145, 768, 12, 0, 0},
	{"vit-tiny", 1, 145, 192, 3, 0, 0},
	{"vit-base-224", 1, 197, 768, 12, 0, 0},
	{"vit-tiny-224", 1, 197, 192, 3, 0, 0},
};

static float *
alloc(size_t n)
{
	float *p = malloc(n * sizeof *p);
	if (!p) {
		fprintf(stderr, "attnbench: out of memory\n");
		exit(1);
	}
	return p;
}

static void
fill(float *p, size_t n, unsigned *seed, float amp)
{
	for (size_t i = 0; i < n; i++) {
		*seed = *seed * 1103515245u + 12345u;
		p[i] = amp * ((float)((*seed >> 8) % 65536) / 65536.0f - 0.5f);
	}
}

/* Swin's mask of shifted windows (window 6, shift 3) on a g x g grid of
 * nW windows of 36 tokens: the library's (window_mask) */
static void
swin_mask(float *m, int nW)
{
	int g = 1;
	while (g * g < nW)
		g++;
	window_mask(m, 6 * g, 6 * g, 6, 3);
}

/* the largest |a - b| over the largest |b| */
static double
reldiff(const float *a, const float *b, size_t n)
{
	double e = 0, m = 0;
	for (size_t i = 0; i < n; i++) {
		e = fmax(e, fabs((double)a[i] - b[i]));
		m = fmax(m, fabs((double)b[i]));
	}
	return m > 0 ? e / m : e;
}

static double
median(double *x, int n)
{
	qsort(x, n, sizeof *x, cmpd);
	return n % 2 ? x[n / 2] : (x[n / 2 - 1] + x[n / 2]) / 2;
}

int
main(int argc, char **argv)
{
	int threads = 1, rounds = 5, batch = 32, bf16 = 0, i = 1;
	const char *filter = NULL;

	for (; i < argc; i++) {
		if (!strcmp(argv[i], "-t") && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-r") && i + 1 < argc)
			rounds = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-b") && i + 1 < argc)
			batch = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--bf16"))
			bf16 = 1;
		else
			filter = argv[i];
	}
	if (threads < 1 || rounds < 1 || rounds > 100 || batch < 1) {
		fprintf(stderr, "usage: attnbench [--bf16] [-t threads] [-r rounds] [-b batch] [filter]\n");
		return 2;
	}
	mim_set_threads(threads);
	if (bf16 && mim_gemm_set_precision(MIM_PREC_BF16) < 0) {
		fprintf(stderr, "attnbench: --bf16: %s\n", mim_errmsg());
		return 1;
	}
	/* one thread: its CPU time (the machine's load is not the kernel's);
	 * more: wall time */
	clockid_t id = threads == 1 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC;
	printf("# threads %d, batch %d, median of %d rounds; us per (window, head)%s\n",
	    threads, batch, rounds, bf16 ? "; old: float (attn512.c), new: bf16 on AMX "
	    "(attn_amx.c), same: max rel diff" : "");
	printf("%-14s %4s %5s  %9s %9s %7s %7s %5s  %9s %9s %7s %7s %5s\n", "shape", "B", "heads",
	    "fwd old", "fwd new", "GF old", "GF new", "same", "bwd old", "bwd new", "GF old",
	    "GF new", "same");
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
		const struct shape *sh = &shapes[s];
		if (filter && !strstr(sh->name, filter))
			continue;
		int B = batch * sh->windows, N = sh->N, C = sh->C, Hh = sh->Hh, D = C / Hh;
		size_t nq = (size_t)B * N * 3 * C, no = (size_t)B * N * C, nP = (size_t)B * Hh * N * N;
		unsigned seed = 7;
		float *qkv0 = alloc(nq), *qkv = alloc(nq), *dout = alloc(no), *bias = alloc((size_t)Hh * N * N);
		float *qb = alloc(C), *vb = alloc(C), *mask = NULL, *work = alloc(attention_work(N));
		memset(work, 0, attention_work(N) * sizeof(float));
		float *out[2], *P[2], *dq[2];
		for (int k = 0; k < 2; k++) {
			out[k] = alloc(no);
			P[k] = alloc(nP);
			dq[k] = alloc(nq);
			/* touched: no page faults in the timed calls */
			memset(out[k], 0, no * sizeof(float));
			memset(P[k], 0, nP * sizeof(float));
			memset(dq[k], 0, nq * sizeof(float));
		}
		fill(qkv0, nq, &seed, 4.0f);
		fill(dout, no, &seed, 1.0f);
		fill(bias, (size_t)Hh * N * N, &seed, 2.0f);
		fill(qb, C, &seed, 1.0f);
		fill(vb, C, &seed, 1.0f);
		if (sh->shift) {
			mask = alloc((size_t)sh->nW * N * N);
			swin_mask(mask, sh->nW);
		}
		int vit = sh->nW == 0;
		float scale = 1.0f / sqrtf((float)D);
		double tf[2][100], tb[2][100];
		int samef = 1, sameb = 1;
		double df = 0, db = 0;
		for (int r = 0; r < rounds; r++)
			for (int k0 = 0; k0 < 2; k0++) {
				int k = (r % 2) ^ k0;	/* alternate which goes first */
				if (bf16)
					attention_set_amx(k ? 2 : 0);
				else
					attention_set_fused(k);
				memcpy(qkv, qkv0, nq * sizeof *qkv);
				double t = clk(id);
				attention_forward(out[k], P[k], qkv, vit ? qb : NULL, vit ? vb : NULL,
				    vit ? NULL : bias, mask, sh->nW, B, N, C, Hh, scale, work);
				tf[k][r] = clk(id) - t;
				t = clk(id);
				attention_backward(dq[k], NULL, NULL, P[k], dout, qkv, B, N, C, Hh,
				    scale, work);
				tb[k][r] = clk(id) - t;
			}
		/* the last round's outputs (forward's P is now dS) */
		samef = !memcmp(out[0], out[1], no * sizeof(float));
		sameb = !memcmp(dq[0], dq[1], nq * sizeof(float)) &&
		    !memcmp(P[0], P[1], nP * sizeof(float));
		char sf[16], sb[16];
		if (bf16) {
			df = reldiff(out[1], out[0], no);
			db = fmax(reldiff(dq[1], dq[0], nq), reldiff(P[1], P[0], nP));
			snprintf(sf, sizeof sf, "%.0e", df);
			snprintf(sb, sizeof sb, "%.0e", db);
		} else {
			snprintf(sf, sizeof sf, "%s", samef ? "yes" : "NO");
			snprintf(sb, sizeof sb, "%s", sameb ? "yes" : "NO");
		}
		attention_set_fused(1);
		attention_set_amx(1);
		double heads = (double)B * Hh, ff = 4.0 * N * N * D, fb = 2 * ff, m[2][2];
		for (int k = 0; k < 2; k++) {
			m[k][0] = median(tf[k], rounds) / heads;
			m[k][1] = median(tb[k], rounds) / heads;
		}
		printf("%-14s %4d %5d  %9.2f %9.2f %7.1f %7.1f %5s  %9.2f %9.2f %7.1f %7.1f %5s"
		    "  x%.2f x%.2f\n", sh->name, B, Hh, m[0][0] * 1e6, m[1][0] * 1e6,
		    ff / m[0][0] * 1e-9, ff / m[1][0] * 1e-9, sf,
		    m[0][1] * 1e6, m[1][1] * 1e6, fb / m[0][1] * 1e-9, fb / m[1][1] * 1e-9,
		    sb, m[0][0] / m[1][0], m[0][1] / m[1][1]);
		fflush(stdout);
		free(qkv0), free(qkv), free(dout), free(bias), free(qb), free(vb), free(mask), free(work);
		for (int k = 0; k < 2; k++)
			free(out[k]), free(P[k]), free(dq[k]);
	}
	return 0;
}
