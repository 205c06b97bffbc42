/* softmax.c -- softmax over the last dim: p = exp(x - max) / sum, and its
 * backward dx = p * (dp - sum(p * dp)). The row versions run on the
 * calling thread (attention calls them inside its parallel jobs). */

#include "mim/kern.h"
#include "kern_int.h"

void
softmax_rows(float *x, int R, int C)
{
	for (int r = 0; r < R; r++) {
		float *v = x + (size_t)r * C;
		int c, n = C % 8;
		v8f m8 = vdup(v[0]);
		for (c = 0; c + 8 <= C; c += 8) {
			v8f t = vload(v + c);
			m8 = vsel(t > m8, t, m8);
		}
		if (n) {
			v8f t = vload_n(v + c, n, v[0]);
			m8 = vsel(t > m8, t, m8);
		}
		float mx = m8[0];
		for (int i = 1; i < 8; i++)
			mx = m8[i] > mx ? m8[i] : mx;
		v8f s8 = vdup(0), mxv = vdup(mx);
		for (c = 0; c + 8 <= C; c += 8) {
			v8f e = vexp(vload(v + c) - mxv);
			vstore(v + c, e);
			s8 += e;
		}
		if (n) {
			v8f e = vexp(vload_n(v + c, n, mx) - mxv);
			vstore_n(v + c, e, n);
			for (int i = n; i < 8; i++)
				e[i] = 0;
			s8 += e;
		}
		float s = ((s8[0] + s8[1]) + (s8[2] + s8[3])) + ((s8[4] + s8[5]) + (s8[6] + s8[7]));
		v8f inv = vdup(1.0f / s);
		for (c = 0; c + 8 <= C; c += 8)
			vstore(v + c, vload(v + c) * inv);
		if (n)
			vstore_n(v + c, vload_n(v + c, n, 0) * inv, n);
	}
}

void
softmax_rows_backward(float *d, const float *p, int R, int C)
{
	for (int r = 0; r < R; r++) {
		float *dv = d + (size_t)r * C;
		const float *pv = p + (size_t)r * C;
		int c, n = C % 8;
		v8f s8 = vdup(0);
		for (c = 0; c + 8 <= C; c += 8)
			s8 += vload(pv + c) * vload(dv + c);
		if (n)
			s8 += vload_n(pv + c, n, 0) * vload_n(dv + c, n, 0);
		v8f sf = vdup(((s8[0] + s8[1]) + (s8[2] + s8[3])) + ((s8[4] + s8[5]) + (s8[6] + s8[7])));
		for (c = 0; c + 8 <= C; c += 8)
			vstore(dv + c, vload(pv + c) * (vload(dv + c) - sf));
		if (n)
			vstore_n(dv + c, vload_n(pv + c, n, 0) * (vload_n(dv + c, n, 0) - sf), n);
	}
}

/* attention's dS = P * (dP - rowsum(P * dP)), written over P (no copy),
 * the row sum in double (attention.c, attn512.c) */
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

struct sm {
	float *out;
	const float *inp, *p;
	int C;
};

static void
fwd(void *q, size_t lo, size_t hi)
{
	const struct sm *j = q;

	if (j->out != j->inp)
		memcpy(j->out + lo * j->C, j->inp + lo * j->C, (hi - lo) * j->C * sizeof(float));
	softmax_rows(j->out + lo * j->C, (int)(hi - lo), j->C);
}

void
softmax_forward(float *out, const float *inp, int R, int C)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct sm j = {out, inp, NULL, C};
	kern_for((size_t)R, 1 + 4096 / (size_t)C, fwd, &j);
	MIM_PROF_END("softmax fwd", prof_t_, 0);
}

static void
bwd(void *q, size_t lo, size_t hi)
{
	const struct sm *j = q;

	if (j->out != j->inp)
		memcpy(j->out + lo * j->C, j->inp + lo * j->C, (hi - lo) * j->C * sizeof(float));
	softmax_rows_backward(j->out + lo * j->C, j->p + lo * j->C, (int)(hi - lo), j->C);
}

void
softmax_backward(float *dinp, const float *dout, const float *out, int R, int C)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct sm j = {dinp, dout, out, C};
	kern_for((size_t)R, 1 + 4096 / (size_t)C, bwd, &j);
	MIM_PROF_END("softmax bwd", prof_t_, 0);
}
