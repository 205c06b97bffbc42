/* sgemm.c -- the ceiling: cblas_sgemm GFLOP/s on this machine, and how
 * libmim's products (mim_gemm) compare at the shapes of a training step.
 * Prints one JSON object:
 *   peak         the best of OpenBLAS's threaded sgemm at large square
 *                sizes (2048, 3072, 4096): the ceiling the bench divides by
 *   shapes[]     per transformer shape (the three products of a Linear at
 *                batch 8 and 192 px): OpenBLAS threaded ("blas") and
 *                mim_gemm ("mim"), GFLOP/s, median of the repetitions
 *   sgemm [-t threads] [-r reps] [--quick]
 * Built and run by bench/run.sh (links libmim). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mim.h"
#include "bench.h"

extern void openblas_set_num_threads(int);

static float *
filled(size_t n, int k)
{
	float *p = malloc(n * sizeof *p);
	for (size_t i = 0; i < n; i++)
		p[i] = (float)((i * 7 + k) % 11) * 0.1f - 0.5f;
	return p;
}

/* GFLOP/s of C = op(A) op(B), median (or best) of reps after one warm-up */
static double
rate(int use_mim, int ta, int tb, int M, int N, int K, int reps, int best)
{
	float *A = filled((size_t)M * K, 1), *B = filled((size_t)K * N, 2);
	float *C = filled((size_t)M * N, 3);
	int lda = ta ? M : K, ldb = tb ? K : N;
	double *g = malloc((size_t)reps * sizeof *g);

	if (!use_mim)	/* mim_gemm keeps OpenBLAS at one thread */
		openblas_set_num_threads(mim_threads());
	for (int r = -1; r < reps; r++) {
		double t = now();
		if (use_mim)
			mim_gemm(ta, tb, M, N, K, 1, A, lda, B, ldb, 0, C, N);
		else
			cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
			    tb ? CblasTrans : CblasNoTrans, M, N, K, 1, A, lda, B, ldb, 0, C, N);
		t = now() - t;
		if (r >= 0)
			g[r] = 2.0 * M * N * K / t / 1e9;
	}
	qsort(g, (size_t)reps, sizeof *g, cmpd);
	double v = best ? g[reps - 1] : g[reps / 2];
	free(A);
	free(B);
	free(C);
	free(g);
	return v;
}

struct shape {
	const char *name;
	int ta, tb, M, N, K;
};

int
main(int argc, char **argv)
{
	int nt = 2, reps = 7, quick = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-t") && i + 1 < argc)
			nt = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-r") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--quick"))
			quick = 1;
		else {
			fprintf(stderr, "usage: sgemm [-t threads] [-r reps] [--quick]\n");
			return 2;
		}
	}
	if (nt < 1 || reps < 1)
		return 2;
	mim_set_threads(nt);
	/* the ceiling: threaded OpenBLAS at large squares, best repetition */
	double peak = 0;
	int sq[] = {2048, 3072, 4096};
	printf("{\"threads\":%d,\"core\":\"%s\"", nt, openblas_get_corename());
	for (int i = 0; i < 3; i++) {
		double g = rate(0, 0, 1, sq[i], sq[i], sq[i], quick ? 2 : 4, 1);
		printf(",\"square%d\":%.1f", sq[i], g);
		if (g > peak)
			peak = g;
	}
	printf(",\"peak\":%.1f", peak);
	/* a Linear's products at batch 8, 192 px: fwd NT, dx NN, dw TN */
	static const struct shape sh[] = {
		{"vitb qkv fwd", 0, 1, 1160, 2304, 768},
		{"vitb fc1 fwd", 0, 1, 1160, 3072, 768},
		{"vitb fc2 dx", 0, 0, 1160, 3072, 768},
		{"vitb fc1 dw", 1, 0, 3072, 768, 1160},
		{"vitt fc1 fwd", 0, 1, 1160, 768, 192},
		{"vitt fc1 dw", 1, 0, 768, 192, 1160},
		{"swint s0 fc1 fwd", 0, 1, 18432, 384, 96},
		{"swint s0 fc1 dw", 1, 0, 384, 96, 18432},
		{"swinb s2 fc1 fwd", 0, 1, 1152, 2048, 512},
		{"swinb s2 fc2 dx", 0, 0, 1152, 2048, 512},
		{"swinb s2 fc1 dw", 1, 0, 2048, 512, 1152},
	};
	printf(",\"shapes\":[");
	for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
		const struct shape *s = &sh[i];
		double b = rate(0, s->ta, s->tb, s->M, s->N, s->K, reps, 0);
		double m = rate(1, s->ta, s->tb, s->M, s->N, s->K, reps, 0);
		printf("%s{\"name\":\"%s\",\"M\":%d,\"N\":%d,\"K\":%d,\"blas\":%.1f,\"mim\":%.1f}",
		    i ? "," : "", s->name, s->M, s->N, s->K, b, m);
	}
	printf("]}\n");
	return 0;
}
