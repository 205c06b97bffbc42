/* gemmcold.c -- one product shape through mim_gemm, its operands hot in
 * cache and cold: how much of the gap between a training step's products
 * and the sgemm ceiling is the memory traffic of their operands.
 *
 *   gemmcold [-t threads] [--dw] [--bf16 [--kept]] [--1d | -g GM,GN,GK] M N K [sets]
 *
 * C (M,N) = A (M,K) @ B^T (N,K), as linear_forward calls it; --dw: C =
 * A^T (K,M) @ B (K,N), as linear_backward's weight gradient does. --bf16:
 * the operands rounded to bfloat16 (oneDNN), as --precision bf16; with
 * --kept, rounded once (mim_gemm_keep: op(A), and with --dw op(B) too), as
 * a training step keeps a Linear's input and output gradient. --1d:
 * the product cut in one dimension (MIM_CUT_1D); -g: cut into that grid
 * of blocks (mim_gemm_set_grid); else mim_gemm's own choice. "hot": the
 * same A, B, C again and again (best of 30: all in cache after the first);
 * "cold": `sets` distinct triples (default 40, together far beyond the last
 * level cache) in turn, median of 6 passes. Prints one JSON line, GFLOP/s.
 * Built by bench/run.sh (links libmim); see bench/RESULTS.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mim.h"
#include "bench.h"

static float *
filled(size_t n, unsigned *seed)
{
	float *p = malloc(n * sizeof *p);
	if (!p) {
		fprintf(stderr, "gemmcold: out of memory\n");
		exit(1);
	}
	for (size_t i = 0; i < n; i++) {
		*seed = *seed * 1103515245u + 12345u;
		p[i] = (float)((*seed >> 16) % 1000) / 1000.0f - 0.5f;
	}
	return p;
}

static void
product(int dw, int M, int N, int K, const float *A, const float *B, float *C)
{
	if (dw)		/* dw (M,N) += dout^T (K,M)-stored @ inp (K,N) */
		mim_gemm(1, 0, M, N, K, 1.0f, A, M, B, N, 1.0f, C, N);
	else
		mim_gemm(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
}

int
main(int argc, char **argv)
{
	int i = 1, sets = 40;
	unsigned seed = 1;

	int dw = 0, kept = 0;
	for (; i < argc && argv[i][0] == '-'; i++) {
		int g[3];
		if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
			mim_set_threads(atoi(argv[++i]));
		} else if (strcmp(argv[i], "--dw") == 0) {
			dw = 1;
		} else if (strcmp(argv[i], "--bf16") == 0) {
			mim_gemm_set_precision(MIM_PREC_BF16);
		} else if (strcmp(argv[i], "--kept") == 0) {
			kept = 1;
		} else if (strcmp(argv[i], "--1d") == 0) {
			mim_gemm_set_cut(MIM_CUT_1D);
		} else if (strcmp(argv[i], "-g") == 0 && i + 1 < argc &&
		    sscanf(argv[++i], "%d,%d,%d", &g[0], &g[1], &g[2]) == 3) {
			mim_gemm_set_grid(g);
		} else {
			i = argc;
			break;
		}
	}
	if (argc - i < 3) {
		fprintf(stderr, "usage: gemmcold [-t threads] [--dw] [--bf16 [--kept]] [--1d | -g GM,GN,GK] "
		    "M N K [sets]\n");
		return 2;
	}
	int M = atoi(argv[i]), N = atoi(argv[i + 1]), K = atoi(argv[i + 2]);
	if (argc - i > 3)
		sets = atoi(argv[i + 3]);
	if (M < 1 || N < 1 || K < 1 || sets < 1 || sets > 1000) {
		fprintf(stderr, "gemmcold: want M, N, K >= 1 and 1 <= sets <= 1000\n");
		return 2;
	}
	float **A = malloc(sets * sizeof *A), **B = malloc(sets * sizeof *B),
	    **C = malloc(sets * sizeof *C);
	for (int s = 0; s < sets; s++) {
		A[s] = filled((size_t)M * K, &seed);
		B[s] = filled((size_t)N * K, &seed);
		C[s] = filled((size_t)M * N, &seed);
		if (kept && (mim_gemm_keep(A[s]) < 0 || (dw && mim_gemm_keep(B[s]) < 0))) {
			fprintf(stderr, "gemmcold: --kept: %d sets are more than mim_gemm_keep holds\n",
			    sets);
			return 2;
		}
	}
	double f = 2.0 * M * N * K, hot = 0, cold[6];
	for (int it = 0; it < 30; it++) {
		double t = now();
		product(dw, M, N, K, A[0], B[0], C[0]);
		t = f / (now() - t) * 1e-9;
		hot = t > hot ? t : hot;
	}
	for (int it = 0; it < 6; it++) {
		double t = now();
		for (int s = 0; s < sets; s++)
			product(dw, M, N, K, A[s], B[s], C[s]);
		cold[it] = f * sets / (now() - t) * 1e-9;
	}
	qsort(cold, 6, sizeof *cold, cmpd);
	printf("{\"dw\":%d,\"kept\":%d,\"precision\":\"%s\",\"M\":%d,\"N\":%d,\"K\":%d,\"threads\":%d,\"sets\":%d,\"hot\":%.1f,\"cold\":%.1f,"
	    "\"cold_mb\":%.0f}\n", dw, kept, mim_precision_name(mim_gemm_precision()), M, N, K, mim_threads(), sets, hot, (cold[2] + cold[3]) / 2,
	    (double)sets * ((double)M * K + (double)N * K + (double)M * N) * 4 / 1048576);
	return 0;
}
