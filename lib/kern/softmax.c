/* softmax.c -- softmax over the last dim: p = exp(x - max) / sum, and its
 * backward dx = p * (dp - sum(p * dp)). The row versions run on the
 * calling thread (attention calls them inside its parallel jobs). */

#include "mim/kern.h"
#include "kern_int.h"

void
softmax_rows(float *x, int R, int C)
{
	for (int r = 0; r < R; r++) {
		float *v = x + (size_t)r * C, mx = v[0], s = 0;
		for (int c = 1; c < C; c++)
			mx = v[c] > mx ? v[c] : mx;
		for (int c = 0; c < C; c++) {
			v[c] = kern_exp(v[c] - mx);
			s += v[c];
		}
		float inv = 1.0f / s;
		for (int c = 0; c < C; c++)
			v[c] *= inv;
	}
}

void
softmax_rows_backward(float *d, const float *p, int R, int C)
{
	for (int r = 0; r < R; r++) {
		float *dv = d + (size_t)r * C;
		const float *pv = p + (size_t)r * C;
		double s = 0;
		for (int c = 0; c < C; c++)
			s += (double)pv[c] * dv[c];
		float sf = (float)s;
		for (int c = 0; c < C; c++)
			dv[c] = pv[c] * (dv[c] - sf);
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
	struct sm j = {out, inp, NULL, C};
	kern_for((size_t)R, 1 + 4096 / (size_t)C, fwd, &j);
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
	struct sm j = {dinp, dout, out, C};
	kern_for((size_t)R, 1 + 4096 / (size_t)C, bwd, &j);
}
