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
 * dS replaces P; it is the gradient of any additive term of S. */

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

struct at {
	float *out, *P, *qkv, *work, *dqkv;
	const float *qb, *vb, *bias, *mask, *dout, *cqkv;
	int nW, B, N, C, Hh, D, hpj, pf;	/* hpj: heads a job; pf: prefetch */
	float scale;
};

/* The fused path's jobs take hpj heads of one sample (window) each, the
 * most that still leaves four jobs a thread, and each head first asks
 * for the next head's rows of q, k, v (and dO backward) to be fetched
 * into the cache: the rows of a head are D floats at a stride of 3C, one
 * cache miss each, which the hardware's prefetchers do not foresee. The
 * split changes no sum. */
static int
heads_a_job(int B, int Hh)
{
	int best = 1, want = 4 * mim_threads();

	for (int d = 1; d <= Hh; d++)
		if (Hh % d == 0 && (long)B * (Hh / d) >= want)
			best = d;
	return best;
}

/* the D floats at x + s*C, s < segs, of N rows at stride ld into the
 * cache */
static void
prefetch_rows(const float *x, size_t ld, int N, int D, int segs, int C)
{
	for (int n = 0; n < N; n++)
		for (int s = 0; s < segs; s++)
			for (int d = 0; d < D; d += 16)
				__builtin_prefetch(x + (size_t)n * ld + (size_t)s * C + d, 0, 3);
}

/* the head after (b, h) of job i's thread, as far as it can be told:
 * the next in the job, else the first of job i + threads; 0 if none */
static int
next_head(const struct at *j, int i, int b, int h, int *nb, int *nh)
{
	int groups = j->Hh / j->hpj;

	if ((h + 1) % j->hpj != 0) {
		*nb = b, *nh = h + 1;
		return 1;
	}
	i += mim_threads();
	if (i >= j->B * groups)
		return 0;
	*nb = i / groups, *nh = i % groups * j->hpj;
	return 1;
}

static void
fwd_head(const struct at *j, int b, int h)
{
	int i = b * j->Hh + h, N = j->N, C = j->C, D = j->D;
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
	float *o = j->out + (size_t)b * N * C + (size_t)h * D;
	if (fused && attn512_ok(N, D)) {
		attn512_forward(q, k, v, 3 * C, N, D, j->bias ? j->bias + (size_t)h * NN : NULL,
		    j->mask ? j->mask + (size_t)(b % j->nW) * NN : NULL, S, o, C);
		return;
	}
	mim_gemm(0, 1, N, N, D, 1.0f, q, 3 * C, k, 3 * C, 0.0f, S, N);
	if (j->bias)
		vadd_to(S, j->bias + (size_t)h * NN, NN);
	if (j->mask)
		vadd_to(S, j->mask + (size_t)(b % j->nW) * NN, NN);
	softmax_rows(S, N, N);
	mim_gemm(0, 0, N, D, N, 1.0f, S, N, v, 3 * C, 0.0f, o, C);
}

static void
fwd_job(void *p, int i)
{
	const struct at *j = p;
	int groups = j->Hh / j->hpj, b = i / groups, h0 = i % groups * j->hpj, nb, nh;

	for (int h = h0; h < h0 + j->hpj; h++) {
		if (j->pf && next_head(j, i, b, h, &nb, &nh))
			prefetch_rows(j->qkv + (size_t)nb * j->N * 3 * j->C + (size_t)nh * j->D,
			    (size_t)3 * j->C, j->N, j->D, 3, j->C);
		fwd_head(j, b, h);
	}
}

void
attention_forward(float *out, float *P, float *qkv, const float *q_bias,
    const float *v_bias, const float *bias, const float *mask, int nW, int B,
    int N, int C, int Hh, float scale, float *work)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct at j = {.out = out, .P = P, .qkv = qkv, .work = work, .qb = q_bias,
	    .vb = v_bias, .bias = bias, .mask = mask, .nW = nW > 0 ? nW : 1, .B = B,
	    .N = N, .C = C, .Hh = Hh, .D = C / Hh, .scale = scale, .hpj = 1};
	if (fused && attn512_ok(N, j.D))
		j.hpj = heads_a_job(B, Hh), j.pf = 1;
	mim_parallel(B * (Hh / j.hpj), fwd_job, &j);
	MIM_PROF_END("attention fwd", prof_t_, 4.0 * B * Hh * N * N * (C / Hh));
}

/* dS = P * (dP - rowsum(P * dP)), written over P (no copy) */
void
attn_dsoftmax(float *P, const float *dP, int N)
{
	for (int r = 0; r < N; r++) {
		float *pr = P + (size_t)r * N;
		const float *dr = dP + (size_t)r * N;
		v4d s4 = {0, 0, 0, 0};
		double s = 0;
		int c = 0;
		for (; c + 8 <= N; c += 8) {
			float t[8];
			vstore(t, vload(pr + c) * vload(dr + c));
			s4 += vload4d(t) + vload4d(t + 4);
		}
		for (; c < N; c++)
			s += (double)(pr[c] * dr[c]);
		v8f s8 = vdup((float)(s + vsum4d(s4)));
		for (c = 0; c + 8 <= N; c += 8)
			vstore(pr + c, vload(pr + c) * (vload(dr + c) - s8));
		for (; c < N; c++)
			pr[c] = pr[c] * (dr[c] - s8[0]);
	}
}

static void
bwd_head(const struct at *j, int b, int h)
{
	int i = b * j->Hh + h, N = j->N, C = j->C, D = j->D;
	size_t NN = (size_t)N * N, off = (size_t)b * N * 3 * C + (size_t)h * D;
	const float *q = j->cqkv + off, *k = q + C, *v = q + 2 * C;
	const float *dO = j->dout + (size_t)b * N * C + (size_t)h * D;
	float *dq = j->dqkv + off, *dk = dq + C, *dv = dq + 2 * C;
	float *P = j->P + (size_t)i * NN, *dP = j->work + (size_t)mim_thread_index() * NN;

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

static void
bwd_job(void *p, int i)
{
	const struct at *j = p;
	int groups = j->Hh / j->hpj, b = i / groups, h0 = i % groups * j->hpj, nb, nh;

	for (int h = h0; h < h0 + j->hpj; h++) {
		if (j->pf && next_head(j, i, b, h, &nb, &nh)) {
			prefetch_rows(j->cqkv + (size_t)nb * j->N * 3 * j->C + (size_t)nh * j->D,
			    (size_t)3 * j->C, j->N, j->D, 3, j->C);
			prefetch_rows(j->dout + (size_t)nb * j->N * j->C + (size_t)nh * j->D,
			    (size_t)j->C, j->N, j->D, 1, 0);
		}
		bwd_head(j, b, h);
	}
}

void
attention_backward(float *dqkv, float *dq_bias, float *dv_bias, float *P,
    const float *dout, const float *qkv, int B, int N, int C, int Hh,
    float scale, float *work)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct at j = {.P = P, .work = work, .dqkv = dqkv, .dout = dout, .cqkv = qkv,
	    .B = B, .N = N, .C = C, .Hh = Hh, .D = C / Hh, .scale = scale, .hpj = 1};
	if (fused && attn512_ok(N, j.D))
		j.hpj = heads_a_job(B, Hh), j.pf = 1;
	mim_parallel(B * (Hh / j.hpj), bwd_job, &j);
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
	kern_for((size_t)Hh * N * N, 4096, dbias_chunk, &j);
	MIM_PROF_END("attention dbias", prof_t_, 0);
}
