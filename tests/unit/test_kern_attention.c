/* test_kern_attention.c -- multi-head self-attention with q and v bias (no
 * k bias), q scaled before the product, an additive bias per head and a
 * window mask: forward against a double reference, every input gradient
 * (qkv, q_bias, v_bias, bias via dS) against central differences. */
#include "mim.h"
#include "mim/kern.h"
#include "gradcheck.h"

enum { B = 4, N = 5, C = 8, Hh = 2, D = C / Hh, nW = 2 };
static double QKV[B * N * 3 * C], QB[C], VB[C], BI[Hh * N * N], MK[nW * N * N], DO[B * N * C];
static const double SCALE = 0.5;	/* D^-0.5 */

static void
ref(double *out)
{
	for (int b = 0; b < B; b++)
		for (int h = 0; h < Hh; h++) {
			double S[N][N];
			for (int p = 0; p < N; p++) {
				double mx = -1e300, s = 0;
				for (int q = 0; q < N; q++) {
					double a = 0;
					for (int d = 0; d < D; d++) {
						double qv = (QKV[(b * N + p) * 3 * C + h * D + d] + QB[h * D + d]) * SCALE;
						a += qv * QKV[(b * N + q) * 3 * C + C + h * D + d];
					}
					a += BI[(h * N + p) * N + q] + MK[((b % nW) * N + p) * N + q];
					S[p][q] = a;
					mx = fmax(mx, a);
				}
				for (int q = 0; q < N; q++)
					s += exp(S[p][q] - mx);
				for (int q = 0; q < N; q++)
					S[p][q] = exp(S[p][q] - mx) / s;
				for (int d = 0; d < D; d++) {
					double o = 0;
					for (int q = 0; q < N; q++)
						o += S[p][q] * (QKV[(b * N + q) * 3 * C + 2 * C + h * D + d] + VB[h * D + d]);
					out[(b * N + p) * C + h * D + d] = o;
				}
			}
		}
}

static double
L(void)
{
	double out[B * N * C], s = 0;
	ref(out);
	for (int i = 0; i < B * N * C; i++)
		s += out[i] * DO[i];
	return s;
}

int
main(void)
{
	static float qkv[B * N * 3 * C], qkv0[B * N * 3 * C], qb[C], vb[C], bias[Hh * N * N],
	    mask[nW * N * N], dout[B * N * C], out[B * N * C], P[B * Hh * N * N], dqkv[B * N * 3 * C];
	double ro[B * N * C];
	float *work = calloc(attention_work(N), sizeof(float));
	randfill(qkv0, QKV, B * N * 3 * C, 2);
	randfill(qb, QB, C, 1);
	randfill(vb, VB, C, 1);
	randfill(bias, BI, Hh * N * N, 1);
	for (int i = 0; i < nW * N * N; i++) {	/* like Swin's: 0 or -100 */
		mask[i] = (i * 7) % 5 == 1 && i % (N + 1) ? -100.0f : 0.0f;
		MK[i] = mask[i];
	}
	randfill(dout, DO, B * N * C, 1);
	ref(ro);
	memcpy(qkv, qkv0, sizeof qkv);
	attention_forward(out, P, qkv, qb, vb, bias, mask, nW, B, N, C, Hh, (float)SCALE, work);
	tap(relerr_d(out, ro, B * N * C) < 1e-6, "forward vs double reference (%.2e)", relerr_d(out, ro, B * N * C));
	int inplace = 1;
	for (int b = 0; b < B * N && inplace; b++)
		for (int c = 0; c < C; c++)
			inplace &= qkv[b * 3 * C + c] == (qkv0[b * 3 * C + c] + qb[c]) * (float)SCALE &&
			    qkv[b * 3 * C + C + c] == qkv0[b * 3 * C + C + c] &&
			    qkv[b * 3 * C + 2 * C + c] == qkv0[b * 3 * C + 2 * C + c] + vb[c];
	tap(inplace, "qkv becomes (q + q_bias) * scale, k, v + v_bias in place");
	float out2[B * N * C];
	memcpy(qkv, qkv0, sizeof qkv);
	attention_forward(out2, NULL, qkv, qb, vb, bias, mask, nW, B, N, C, Hh, (float)SCALE, work);
	tap(memcmp(out, out2, sizeof out) == 0, "inference (no saved P) gives the same bytes");

	float *dqb = fzero(C), *dvb = fzero(C), *dbias = fzero(Hh * N * N);
	attention_backward(dqkv, dqb, dvb, P, dout, qkv, B, N, C, Hh, (float)SCALE, work);
	attention_dbias(dbias, P, B, Hh, N);
	gradcheck("dqkv", dqkv, QKV, B * N * 3 * C, L, 1e-4);
	gradcheck("dq_bias", dqb, QB, C, L, 1e-4);
	gradcheck("dv_bias", dvb, VB, C, L, 1e-4);
	gradcheck("dbias (sum of dS over the batch)", dbias, BI, Hh * N * N, L, 1e-4);
	/* the mask gradient is dS too (summed per window): check it the same way */
	float *dmask = fzero(nW * N * N);
	for (int b = 0; b < B; b++)
		for (int h = 0; h < Hh; h++)
			for (int e = 0; e < N * N; e++)
				dmask[(b % nW) * N * N + e] += P[(b * Hh + h) * N * N + e];
	gradcheck("dS as the gradient of the window mask", dmask, MK, nW * N * N, L, 1e-4);
	/* without biases */
	memcpy(qkv, qkv0, sizeof qkv);
	memset(QB, 0, sizeof QB);
	memset(VB, 0, sizeof VB);
	memset(BI, 0, sizeof BI);
	memset(MK, 0, sizeof MK);
	ref(ro);
	attention_forward(out, NULL, qkv, NULL, NULL, NULL, NULL, 1, B, N, C, Hh, (float)SCALE, work);
	tap(relerr_d(out, ro, B * N * C) < 1e-6, "forward without any bias");
	free(work);
	free(dqb);
	free(dvb);
	free(dbias);
	free(dmask);
	return tap_done();
}
