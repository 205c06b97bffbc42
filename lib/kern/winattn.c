/* winattn.c -- Swin window attention with relative position bias and the
 * shifted-window mask, forward and backward, batched over (window, head).
 *
 * A window holds N = ws*ws tokens (36 at window 6), so one head of one
 * window is a 36x36x32 product: far too small for threaded BLAS, and a
 * Swin-B batch has thousands of them. The (window, head) pairs are cut into
 * a few chunks per thread and run on the pool (mim_parallel); inside a chunk
 * each pair does its two (forward) or four (backward) single-threaded
 * products with the softmax in between, while the N x N block is in cache.
 *
 * Official forward (reference/simmim.md 4.1, WindowAttention):
 *   q = q * D^-0.5;  a = q @ k^T + bias[h] (+ mask[w % nW]);  a = softmax(a)
 *   out = a @ v   (heads concatenated: column h*D + d)
 * The scale is folded into the product (alpha of sgemm): the same value as
 * scaling q first, up to float rounding. See include/mim/swin.h for dims. */
#include <math.h>

#include "mim/gemm.h"
#include "mim/stream.h"
#include "mim/swin.h"

void
winattn_bias(float *bias, const float *table, const int *idx, int nH, int N)
{
	for (int h = 0; h < nH; h++)
		for (int pq = 0; pq < N * N; pq++)
			bias[(size_t)h * N * N + pq] = table[(size_t)idx[pq] * nH + h];
}

struct attjob {
	float *out, *att, *dqkv, *datt, *dtable;
	const float *qkv, *bias, *mask, *dout, *catt, *cdatt;
	const int *idx;
	int Bw, nW, N, nH, D, per;
};

static int
chunks(int n, struct attjob *j)
{
	int nt = mim_threads(), t = nt * 4 < n ? nt * 4 : n;

	j->per = (n + t - 1) / t;
	return (n + j->per - 1) / j->per;
}

static void
fwd_task(void *ctx, int t)
{
	struct attjob *j = ctx;
	int N = j->N, nH = j->nH, D = j->D, C = nH * D, lo = t * j->per;
	int hi = lo + j->per < j->Bw * nH ? lo + j->per : j->Bw * nH;
	float scale = 1.0f / sqrtf((float)D);

	for (int k = lo; k < hi; k++) {
		int w = k / nH, h = k % nH;
		const float *q = j->qkv + (size_t)w * N * 3 * C + (size_t)h * D;
		float *a = j->att + (size_t)k * N * N;
		const float *bias = j->bias + (size_t)h * N * N;
		const float *m = j->mask ? j->mask + (size_t)(w % j->nW) * N * N : NULL;

		/* a = (q*scale) @ k^T */
		mim_gemm(0, 1, N, N, D, scale, q, 3 * C, q + C, 3 * C, 0, a, N);
		for (int p = 0; p < N; p++) {
			float *r = a + (size_t)p * N, mx = -INFINITY, s = 0;
			const float *br = bias + (size_t)p * N;
			if (m) {
				const float *mr = m + (size_t)p * N;
				for (int c = 0; c < N; c++)
					r[c] += br[c] + mr[c];
			} else {
				for (int c = 0; c < N; c++)
					r[c] += br[c];
			}
			for (int c = 0; c < N; c++)
				mx = r[c] > mx ? r[c] : mx;
			for (int c = 0; c < N; c++) {
				r[c] = expf(r[c] - mx);
				s += r[c];
			}
			s = 1.0f / s;
			for (int c = 0; c < N; c++)
				r[c] *= s;
		}
		/* out[:, h*D:(h+1)*D] = a @ v */
		mim_gemm(0, 0, N, D, N, 1.0f, a, N, q + 2 * C, 3 * C, 0,
		    j->out + (size_t)w * N * C + (size_t)h * D, C);
	}
}

void
winattn_forward(float *out, float *att, const float *qkv, const float *bias,
    const float *mask, int Bw, int nW, int N, int nH, int D)
{
	struct attjob j = {.out = out, .att = att, .qkv = qkv, .bias = bias,
	    .mask = mask, .Bw = Bw, .nW = nW, .N = N, .nH = nH, .D = D};

	mim_parallel(chunks(Bw * nH, &j), fwd_task, &j);
}

/* Backward of one (window, head), with s = D^-0.5:
 *   forward  a = softmax(z), z = s q k^T + bias + mask, o = a v
 *   dv = a^T do;  da = do v^T;  dz = a * (da - rowsum(a * da))
 *   dq = s dz k;  dk = s dz^T q   (bias gets dz, the mask nothing) */
static void
bwd_task(void *ctx, int t)
{
	struct attjob *j = ctx;
	int N = j->N, nH = j->nH, D = j->D, C = nH * D, lo = t * j->per;
	int hi = lo + j->per < j->Bw * nH ? lo + j->per : j->Bw * nH;
	float scale = 1.0f / sqrtf((float)D);

	for (int k = lo; k < hi; k++) {
		int w = k / nH, h = k % nH;
		size_t off = (size_t)w * N * 3 * C + (size_t)h * D;
		const float *q = j->qkv + off, *kk = q + C, *v = q + 2 * C;
		float *dq = j->dqkv + off, *dk = dq + C, *dv = dq + 2 * C;
		const float *a = j->catt + (size_t)k * N * N;
		float *dz = j->datt + (size_t)k * N * N;
		const float *dout = j->dout + (size_t)w * N * C + (size_t)h * D;

		mim_gemm(1, 0, N, D, N, 1.0f, a, N, dout, C, 0, dv, 3 * C);
		mim_gemm(0, 1, N, N, D, 1.0f, dout, C, v, 3 * C, 0, dz, N);
		for (int p = 0; p < N; p++) {
			const float *ar = a + (size_t)p * N;
			float *r = dz + (size_t)p * N, s = 0;
			for (int c = 0; c < N; c++)
				s += ar[c] * r[c];
			for (int c = 0; c < N; c++)
				r[c] = ar[c] * (r[c] - s);
		}
		mim_gemm(0, 0, N, D, N, scale, dz, N, kk, 3 * C, 0, dq, 3 * C);
		mim_gemm(1, 0, N, D, N, scale, dz, N, q, 3 * C, 0, dk, 3 * C);
	}
}

void
winattn_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
    const float *att, int Bw, int N, int nH, int D)
{
	struct attjob j = {.dqkv = dqkv, .datt = datt, .dout = dout, .qkv = qkv,
	    .catt = att, .Bw = Bw, .N = N, .nH = nH, .D = D};

	mim_parallel(chunks(Bw * nH, &j), bwd_task, &j);
}

/* one head per task: its column of dtable is written by no other task, and
 * every entry is summed in the same order whatever the thread count */
static void
biasb_task(void *ctx, int h)
{
	struct attjob *j = ctx;
	int N = j->N, nH = j->nH;
	size_t NN = (size_t)N * N;

	for (size_t pq = 0; pq < NN; pq++) {
		double s = 0;
		for (int w = 0; w < j->Bw; w++)
			s += j->cdatt[((size_t)w * nH + h) * NN + pq];
		j->dtable[(size_t)j->idx[pq] * nH + h] += (float)s;
	}
}

void
winattn_bias_backward(float *dtable, const float *datt, const int *idx, int Bw,
    int nH, int N)
{
	struct attjob j = {.dtable = dtable, .cdatt = datt, .idx = idx,
	    .Bw = Bw, .nH = nH, .N = N};

	mim_parallel(nH, biasb_task, &j);
}
