/* sgemm.c -- the ceiling: cblas_sgemm GFLOP/s on this machine, at large
 * square sizes and at transformer shapes. Prints one JSON object.
 *   sgemm [threads]  */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

extern void openblas_set_num_threads(int);

static double
now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

/* best-of-reps GFLOP/s of an (M,K)x(K,N) product */
static double
rate(int M, int N, int K, int reps)
{
	float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
	float *C = malloc(sizeof(float) * M * N);
	for (long i = 0; i < (long)M * K; i++) A[i] = (float)(i % 7) * 0.1f;
	for (long i = 0; i < (long)K * N; i++) B[i] = (float)(i % 5) * 0.1f;
	double best = 0;
	for (int r = 0; r < reps; r++) {
		double t = now();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, A, K, B, K, 0, C, N);
		t = now() - t;
		double g = 2.0 * M * N * K / t / 1e9;
		if (r > 0 && g > best)	/* first call warms up */
			best = g;
	}
	free(A); free(B); free(C);
	return best;
}

int
main(int argc, char **argv)
{
	int nt = argc > 1 ? atoi(argv[1]) : 2;
	openblas_set_num_threads(nt);
	double sq = rate(4096, 4096, 4096, 6);
	/* (B*tokens, C) x (C, 4C): ViT-B fc1 at batch 8, 144 tokens; Swin-B stage 2 */
	double t1 = rate(8 * 145, 3072, 768, 8);
	double t2 = rate(8 * 144, 2048, 512, 8);
	printf("{\"threads\":%d,\"square4096\":%.1f,\"vitb_fc1\":%.1f,\"swinb_s2_fc1\":%.1f}\n",
	    nt, sq, t1, t2);
	return 0;
}
