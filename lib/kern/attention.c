/* attention.c -- the core of multi-head self-attention, one parallel job
 * per (sample, head), every product through mim_gemm:
 *
 *   q = (q + q_bias) * scale,  v = v + v_bias      in place in qkv
 *   S = q @ k^T (+ bias[h]) (+ mask[b % nW])       (N,N)
 *   P = softmax(S)                                 kept for backward
 *   out[:, h*D:(h+1)*D] = P @ v
 *
 * Backward (dO = dout's columns of head h):
 *   dv = P^T @ dO;  dP = dO @ v^T;  dS = P * (dP - rowsum(P * dP))
 *   dq_raw = scale * dS @ k;  dk = dS^T @ q_scaled
 *   dq_bias += sum dq_raw;  dv_bias += sum dv
 * dS replaces P; it is the gradient of any additive term of S.
 *
 * A head runs fused in AVX-512 (attn512.c) where the CPU has it, and in
 * bf16 mode (mim_gemm_precision) for N over 64 on AMX tiles with its six
 * products in bf16 (attn_amx.c) where the CPU has AMX-BF16. */

#include <stdlib.h>
#include <string.h>

#include "mim/gemm.h"
#include "mim/kern.h"
#include "kern_int.h"

size_t
attention_work(int N)
{
	return (size_t)mim_threads() * N * N;
}

/* 1: one head in AVX-512 (attn512.c) where the CPU has it; 0: through
 * mim_gemm and softmax_rows (attention_set_fused; the same bits) */
static int fused = 1;

void
attention_set_fused(int on)
{
	fused = on;
}

/* In bf16 mode, heads on AMX tiles (attn_amx.c; only where attn_amx_ok,
 * and fused): 2 all of them; 1 (the default) those with N over 64, where
 * it is the faster (ViT's 145 tokens: 1.1-1.4x attn512.c's float a head
 * forward and backward in bench/attnbench.c), not Swin's windows of 36
 * (0.7-0.9x: attn512.c keeps S and its softmax in registers, the products
 * are too small for the packing to pay); 0 none, float as in fp32 mode.
 * -1: not yet read from MIM_ATTN_AMX (0, 1 or 2). attention_set_amx sets
 * it. */
static int amx = -1;

void
attention_set_amx(int mode)
{
	amx = mode;
}

static int
use_amx(int N, int D)
{
	if (amx < 0) {
		const char *s = getenv("MIM_ATTN_AMX");
		amx = s && strcmp(s, "0") == 0 ? 0 : s && strcmp(s, "2") == 0 ? 2 : 1;
	}
	return (amx == 2 || (amx == 1 && N > 64)) && fused &&
	    mim_gemm_precision() == MIM_PREC_BF16 && attn_amx_ok(N, D);
}

struct at {
	float *out, *P, *qkv, *work, *dqkv;
	uint16_t *yb;		/* forward: out's kept bf16 copy, made here */
	const float *qb, *vb, *bias, *mask, *dout, *cqkv;
	int nW, B, N, C, Hh, D, amx;
	float scale;
};

/* the calling thread's buffer for one head's output, n floats; NULL when
 * out of memory */
static _Thread_local void *hbuf;
static _Thread_local size_t hcap;

static float *
head_buffer(size_t n)
{
	return kern_grow(&hbuf, &hcap, n * sizeof(float));
}

static void
fwd_job(void *p, int i)
{
	const struct at *j = p;
	int b = i / j->Hh, h = i % j->Hh, N = j->N, C = j->C, D = j->D;
	size_t NN = (size_t)N * N;
	float *q = j->qkv + (size_t)b * N * 3 * C + (size_t)h * D, *k = q + C, *v = q + 2 * C;
	float *S = j->P ? j->P + (size_t)i * NN : j->work + (size_t)mim_thread_index() * NN;

	v8f sc8 = vdup(j->scale);
	int D8 = D & ~7;
	for (int n = 0; n < N; n++) {
		float *qr = q + (size_t)n * 3 * C, *vr = v + (size_t)n * 3 * C;
		const float *qb = j->qb ? j->qb + h * D : NULL;
		int d = 0;
		if (qb)
			for (; d < D8; d += 8)
				vstore(qr + d, (vload(qr + d) + vload(qb + d)) * sc8);
		else
			for (; d < D8; d += 8)
				vstore(qr + d, vload(qr + d) * sc8);
		for (; d < D; d++)
			qr[d] = (qb ? qr[d] + qb[d] : qr[d]) * j->scale;
		if (j->vb)
			vadd_to(vr, j->vb + h * D, (size_t)D);
	}
	size_t oo = (size_t)b * N * C + (size_t)h * D;
	/* bf16 training: out is proj's input, read only through its kept
	 * copy, so the head's output goes to a buffer of the thread and from
	 * there into the copy's columns; else into out's */
	float *o = j->yb ? head_buffer((size_t)N * D) : NULL;
	int ldo = o ? D : C;
	if (!o)
		o = j->out + oo;
	if (j->amx) {
		attn_amx_forward(q, k, v, 3 * C, N, D, j->bias ? j->bias + (size_t)h * NN : NULL,
		    j->mask ? j->mask + (size_t)(b % j->nW) * NN : NULL, S, o, ldo);
	} else if (fused && attn512_ok(N, D)) {
		attn512_forward(q, k, v, 3 * C, N, D, j->bias ? j->bias + (size_t)h * NN : NULL,
		    j->mask ? j->mask + (size_t)(b % j->nW) * NN : NULL, S, o, ldo);
	} else {
		mim_gemm(0, 1, N, N, D, 1.0f, q, 3 * C, k, 3 * C, 0.0f, S, N);
		if (j->bias)
			vadd_to(S, j->bias + (size_t)h * NN, NN);
		if (j->mask)
			vadd_to(S, j->mask + (size_t)(b % j->nW) * NN, NN);
		softmax_rows(S, N, N);
		mim_gemm(0, 0, N, D, N, 1.0f, S, N, v, 3 * C, 0.0f, o, ldo);
	}
	if (j->yb)	/* the head's columns of the kept copy, while in cache */
		mim_gemm_round(j->yb + oo, (size_t)C, o, (size_t)ldo, N, D);
}

void
attention_forward(float *out, float *P, float *qkv, const float *q_bias,
    const float *v_bias, const float *bias, const float *mask, int nW, int B,
    int N, int C, int Hh, float scale, float *work)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct at j = {.out = out, .P = P, .qkv = qkv, .work = work, .qb = q_bias,
	    .vb = v_bias, .bias = bias, .mask = mask, .nW = nW > 0 ? nW : 1, .B = B,
	    .N = N, .C = C, .Hh = Hh, .D = C / Hh, .amx = use_amx(N, C / Hh), .scale = scale,
	    .yb = mim_gemm_kept_fill(out, B * N, C)};	/* (bf16: out is proj's input, kept) */
	mim_parallel(B * Hh, fwd_job, &j);
	MIM_PROF_END("attention fwd", prof_t_, 4.0 * B * Hh * N * N * (C / Hh));
}

static void
bwd_job(void *p, int i)
{
	const struct at *j = p;
	int b = i / j->Hh, h = i % j->Hh, N = j->N, C = j->C, D = j->D;
	size_t NN = (size_t)N * N, off = (size_t)b * N * 3 * C + (size_t)h * D;
	const float *q = j->cqkv + off, *k = q + C, *v = q + 2 * C;
	const float *dO = j->dout + (size_t)b * N * C + (size_t)h * D;
	float *dq = j->dqkv + off, *dk = dq + C, *dv = dq + 2 * C;
	float *P = j->P + (size_t)i * NN, *dP = j->work + (size_t)mim_thread_index() * NN;

	if (j->amx) {
		attn_amx_backward(q, k, v, 3 * C, dO, C, P, dP, N, D, j->scale, dq, dk, dv);
		return;
	}
	if (fused && attn512_ok(N, D)) {
		attn512_backward(q, k, v, 3 * C, dO, C, P, dP, N, D, j->scale, dq, dk, dv);
		return;
	}
	mim_gemm(1, 0, N, D, N, 1.0f, P, N, dO, C, 0.0f, dv, 3 * C);
	mim_gemm(0, 1, N, N, D, 1.0f, dO, C, v, 3 * C, 0.0f, dP, N);
	attn_dsoftmax(P, dP, N);
	mim_gemm(0, 0, N, D, N, j->scale, P, N, k, 3 * C, 0.0f, dq, 3 * C);
	mim_gemm(1, 0, N, D, N, 1.0f, P, N, q, 3 * C, 0.0f, dk, 3 * C);
}

void
attention_backward(float *dqkv, float *dq_bias, float *dv_bias, float *P,
    const float *dout, const float *qkv, int B, int N, int C, int Hh,
    float scale, float *work)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct at j = {.P = P, .work = work, .dqkv = dqkv, .dout = dout, .cqkv = qkv,
	    .B = B, .N = N, .C = C, .Hh = Hh, .D = C / Hh, .amx = use_amx(N, C / Hh),
	    .scale = scale};
	mim_parallel(B * Hh, bwd_job, &j);
	if (dq_bias)
		kern_colsum(dq_bias, dqkv, (size_t)B * N, C, (size_t)3 * C);
	if (dv_bias)
		kern_colsum(dv_bias, dqkv + 2 * C, (size_t)B * N, C, (size_t)3 * C);
	MIM_PROF_END("attention bwd", prof_t_, 8.0 * B * Hh * N * N * (C / Hh));
}

struct db {
	float *dbias;
	const float *dS;
	int B, Hh;
	size_t NN;
};

static void
dbias_chunk(void *p, size_t lo, size_t hi)
{
	const struct db *j = p;
	size_t HNN = (size_t)j->Hh * j->NN;

	for (int b = 0; b < j->B; b++)
		vadd_to(j->dbias + lo, j->dS + (size_t)b * HNN + lo, hi - lo);
}

void
attention_dbias(float *dbias, const float *dS, int B, int Hh, int N)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct db j = {dbias, dS, B, Hh, (size_t)N * N};
	/* (runs of 64 elements: Swin's 3 heads of 36 x 36 are 3888, one run
	 * for every thread; each element summed over b in order all the same) */
	kern_for((size_t)Hh * N * N, 64, dbias_chunk, &j);
	MIM_PROF_END("attention dbias", prof_t_, 0);
}
