/* test_kern_attn512.c -- attention_forward and attention_backward through
 * lib/kern/attn512.c (the default where the CPU has AVX-512) give the same
 * bits as through mim_gemm and softmax_rows (attention_set_fused(0)) on
 * the shapes its code paths split on: Swin's windows (N 36, D 32, bias
 * and mask), the ViTs' (N 145, D 64, q and v bias), N over 64 (softmax
 * out of registers), N under 16, D 8 and 16. test_kern_attention checks
 * the arithmetic itself (its D of 4 takes the mim_gemm path). Where the
 * CPU has no AVX-512 both runs take the same path and agree trivially. */
#include <stdlib.h>
#include <string.h>

#include "mim.h"
#include "mim/kern.h"
#include "tap.h"

static unsigned seed = 12345;

static float *
filled(size_t n, float amp)
{
	float *p = malloc(n * sizeof *p);
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = amp * ((float)((seed >> 8) % 65536) / 65536.0f - 0.5f);
	}
	return p;
}

struct run {
	float *out, *out2, *P, *qkv, *dqkv, *dqb, *dvb;
};

static void
run(struct run *r, int fused, const float *qkv0, const float *qb, const float *vb,
    const float *bias, const float *mask, int nW, int B, int N, int C, int Hh,
    const float *dout, float *work)
{
	size_t nq = (size_t)B * N * 3 * C, no = (size_t)B * N * C;
	float scale = 0.17677669f;

	attention_set_fused(fused);
	r->out = calloc(no, sizeof(float));
	r->out2 = calloc(no, sizeof(float));
	r->P = calloc((size_t)B * Hh * N * N, sizeof(float));
	r->qkv = malloc(nq * sizeof(float));
	r->dqkv = calloc(nq, sizeof(float));
	r->dqb = calloc(C, sizeof(float));
	r->dvb = calloc(C, sizeof(float));
	memcpy(r->qkv, qkv0, nq * sizeof(float));
	attention_forward(r->out2, NULL, r->qkv, qb, vb, bias, mask, nW, B, N, C, Hh, scale, work);
	memcpy(r->qkv, qkv0, nq * sizeof(float));
	attention_forward(r->out, r->P, r->qkv, qb, vb, bias, mask, nW, B, N, C, Hh, scale, work);
	attention_backward(r->dqkv, qb ? r->dqb : NULL, vb ? r->dvb : NULL, r->P, dout,
	    r->qkv, B, N, C, Hh, scale, work);
	attention_set_fused(1);
}

static void
shape(const char *name, int B, int N, int C, int Hh, int nW, int biases, int vit)
{
	size_t nq = (size_t)B * N * 3 * C, no = (size_t)B * N * C, nP = (size_t)B * Hh * N * N;
	float *qkv0 = filled(nq, 6), *dout = filled(no, 1), *qb = filled(C, 1), *vb = filled(C, 1);
	float *bias = filled((size_t)Hh * N * N, 3), *mask = NULL;
	float *work = calloc(attention_work(N), sizeof(float));

	if (nW) {
		mask = malloc((size_t)nW * N * N * sizeof(float));
		for (size_t i = 0; i < (size_t)nW * N * N; i++)
			mask[i] = (i * 7) % 5 == 1 && i % (N + 1) ? -100.0f : 0.0f;
	}
	struct run a, b;
	run(&a, 0, qkv0, vit ? qb : NULL, vit ? vb : NULL, biases ? bias : NULL, mask, nW, B, N,
	    C, Hh, dout, work);
	run(&b, 1, qkv0, vit ? qb : NULL, vit ? vb : NULL, biases ? bias : NULL, mask, nW, B, N,
	    C, Hh, dout, work);
	tap(!memcmp(a.out, b.out, no * sizeof(float)) && !memcmp(a.out2, b.out2, no * sizeof(float)) &&
	    !memcmp(a.qkv, b.qkv, nq * sizeof(float)), "%s: forward, the same bits", name);
	tap(!memcmp(a.out, a.out2, no * sizeof(float)) && !memcmp(b.out, b.out2, no * sizeof(float)),
	    "%s: inference (no P kept) gives the same bits", name);
	tap(!memcmp(a.dqkv, b.dqkv, nq * sizeof(float)) && !memcmp(a.P, b.P, nP * sizeof(float)) &&
	    !memcmp(a.dqb, b.dqb, C * sizeof(float)) && !memcmp(a.dvb, b.dvb, C * sizeof(float)),
	    "%s: backward (dqkv, dS, bias gradients), the same bits", name);
	struct run *rs[2] = {&a, &b};
	for (int i = 0; i < 2; i++) {
		free(rs[i]->out), free(rs[i]->out2), free(rs[i]->P), free(rs[i]->qkv);
		free(rs[i]->dqkv), free(rs[i]->dqb), free(rs[i]->dvb);
	}
	free(qkv0), free(dout), free(qb), free(vb), free(bias), free(mask), free(work);
}

int
main(void)
{
	shape("swin N 36 D 32, bias and mask", 6, 36, 64, 2, 3, 1, 0);
	shape("swin N 36 D 32, bias only", 3, 36, 128, 4, 0, 1, 0);
	shape("vit N 145 D 64, q and v bias", 2, 145, 128, 2, 0, 0, 1);
	shape("N 70 D 16, everything", 3, 70, 48, 3, 1, 1, 1);
	shape("N 9 D 8, mask", 4, 9, 16, 2, 2, 0, 0);
	shape("N 64 D 24", 2, 64, 48, 2, 0, 1, 0);
	mim_set_threads(2);
	shape("two threads: swin N 36 D 32", 8, 36, 64, 2, 4, 1, 0);
	return tap_done();
}
