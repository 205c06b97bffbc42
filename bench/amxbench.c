/* amxbench.c -- lib/amx.c's kernel on one thread against oneDNN's bf16
 * matmul, and what the operands' placing costs it: C (M,N) = A (M,K) @
 * W^T, W (N,K), as a Linear's forward runs, bf16 operands summed in float.
 *
 *   amxbench M N K
 *
 * Times (best of 20, in turn, the operands hot) amx_gemm with A's rows 16
 * bytes off the cache lines (where malloc puts a large block) or on them,
 * and V's rows N pairs apart (the layout before 003927b) or N + 16 (as
 * lib/gemm.c packs them now); and oneDNN's matmul on the aligned bf16 A
 * and W. Prints one JSON line of GFLOP/s, and the largest difference of
 * the kernel's sums from oneDNN's. Needs AMX (exits 2 without). Built by
 * scripts/benchprogs.sh; bench/RESULTS.md has what it showed. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mim.h"
#include "bench.h"
#include "../lib/amx.h"
#include "../lib/onednn.h"

static void *
at(size_t n, size_t off)
{
	char *p = aligned_alloc(4096, (n + off + 4095) & ~(size_t)4095);
	if (!p) {
		fprintf(stderr, "amxbench: out of memory\n");
		exit(1);
	}
	return p + off;
}

int
main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: amxbench M N K\n");
		return 2;
	}
	int M = atoi(argv[1]), N = atoi(argv[2]), K = atoi(argv[3]);
	if (M < 1 || N < 16 || N % 16 || K < 32 || K % 32) {
		fprintf(stderr, "amxbench: want M >= 1, N a multiple of 16, K of 32\n");
		return 2;
	}
	if (!amx_ready()) {
		fprintf(stderr, "amxbench: no AMX tiles here (CPU or Linux)\n");
		return 2;
	}
	mim_set_threads(1);
	dnn_set_threads(1);
	size_t na = (size_t)M * K, nw = (size_t)N * K, nv = (size_t)K / 2 * (N + 16);
	uint16_t *a0 = at(na * 2, 0), *a16 = at(na * 2, 16), *wb = at(nw * 2, 0);
	float *w = at(nw * 4, 0), *c = at((size_t)M * N * 4, 0), *r = at((size_t)M * N * 4, 0);
	uint32_t *v = at(nv * 4, 0), *vp = at(nv * 4, 0);
	unsigned s = 1;
	for (size_t i = 0; i < na; i++) {
		s = s * 1103515245u + 12345u;
		a0[i] = a16[i] = mim_f32_to_bf16((float)((s >> 16) % 1000) / 1000.0f - 0.5f);
	}
	for (size_t i = 0; i < nw; i++) {
		s = s * 1103515245u + 12345u;
		w[i] = mim_bf16_to_f32(mim_f32_to_bf16((float)((s >> 16) % 1000) / 1000.0f - 0.5f));
		wb[i] = mim_f32_to_bf16(w[i]);
	}
	amx_pack(v, N, w, K, 1, N, 0, K / 2);
	amx_pack(vp, N + 16, w, K, 1, N, 0, K / 2);

	/* 0: A off the lines, V unpadded; 1: A on them; 2: and V padded; 3: oneDNN */
	double best[4] = {1e30, 1e30, 1e30, 1e30};
	for (int it = 0; it < 20; it++)
		for (int k = 0; k < 4; k++) {
			double t = now();
			if (k < 3)
				amx_gemm(M, N, K, k ? a0 : a16, K, k == 2 ? vp : v, k == 2 ? N + 16 : N,
				    NULL, 0, c, N);
			else
				dnn_gemm_bf16(0, 1, M, N, K, 1.0f, a0, K, wb, K, NULL, 0.0f, r, N);
			t = now() - t;
			best[k] = t < best[k] ? t : best[k];
		}
	double e = 0, f = 2.0 * M * N * K * 1e-9;
	for (size_t i = 0; i < (size_t)M * N; i++)
		e = fabs(c[i] - r[i]) > e ? fabs(c[i] - r[i]) : e;
	printf("{\"M\":%d,\"N\":%d,\"K\":%d,\"amx_a_off\":%.1f,\"amx\":%.1f,\"amx_v_padded\":%.1f,"
	    "\"onednn\":%.1f,\"max_diff\":%.3g}\n", M, N, K, f / best[0], f / best[1], f / best[2],
	    f / best[3], e);
	return 0;
}
