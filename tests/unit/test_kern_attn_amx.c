/* test_kern_attn_amx.c -- attention in bf16 mode on AMX tiles
 * (lib/kern/attn_amx.c) against a double-precision reference of the same
 * arithmetic: each of the six products over its operands rounded to bf16
 * (mim_f32_to_bf16, nearest even), everything else exact. The reference
 * takes the kernel's own float intermediates as its inputs (P for out and
 * dv, dS for dq and dk), so that a product's rounded operands are the
 * kernel's to the bit and only the order of the float sums differs: the
 * bound is tight (1e-5 of a tensor's largest element), while truncating
 * instead of rounding, a missing bias or mask, or a lost term are off by
 * 1e-3 and more. Then: the same reference without the rounding must be
 * off by bf16's magnitude (the operands are rounded), and the float path
 * (attn512.c) within 2e-2. Shapes: Swin's windows (N 36, D 32, bias and
 * the shifted windows' -100 mask), the ViTs' (N 145, D 64, q and v bias),
 * N 70 (rows longer than 64), N 9 D 16, and two threads; all through
 * attention_set_amx(2) (the default, 1, leaves N <= 64 in float: checked
 * last). Skipped where the CPU has no AMX-BF16 (or Linux refuses the
 * tiles). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mim.h"
#include "mim/kern.h"
#include "../../lib/kern/kern_int.h"
#include "tap.h"

/* the bound on the kernel vs the rounded reference, relative to each
 * tensor's largest element; measured up to 4.1e-7 */
#define TIGHT 1e-5
/* the bounds on the kernel vs the unrounded reference: bf16 rounding
 * (2^-9 relative an operand) shows */
#define BF16_MIN 2e-4
#define BF16_MAX 2e-2

static unsigned seed = 4321;

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

static double
bf(float x, int round)
{
	return round ? mim_bf16_to_f32(mim_f32_to_bf16(x)) : x;
}

/* Swin's mask of shifted windows (window 6, shift 3) on a g x g grid of
 * nW windows of 36 tokens: the library's (window_mask) */
static void
swin_mask(float *m, int nW)
{
	int g = 1;
	while (g * g < nW)
		g++;
	window_mask(m, 6 * g, 6 * g, 6, 3);
}

/* the largest |a - r| over the largest |r| of one tensor, summed up over
 * calls (err[0] the difference, err[1] the scale) */
static void
acc(double *err, double a, double r)
{
	if (fabs(a - r) > err[0])
		err[0] = fabs(a - r);
	if (fabs(r) > err[1])
		err[1] = fabs(r);
}

static double
rel(const double *err)
{
	return err[1] > 0 ? err[0] / err[1] : err[0];
}

enum { E_P, E_OUT, E_DV, E_DS, E_DQ, E_DK, E_N };
static const char *names[E_N] = {"P", "out", "dv", "dS", "dq", "dk"};

/* err[t] for tensor t of every (b, h): the kernel's P (Pf), out, dS and
 * dqkv against the reference over operands rounded to bf16 (round 1) or
 * not (0), computed from qkv as the forward left it (qs: q scaled, v
 * biased) */
static void
reference(double err[E_N][2], int round, const float *qs, const float *Pf, const float *out,
    const float *dS, const float *dqkv, const float *dout, const float *bias,
    const float *mask, int nW, int B, int N, int C, int Hh, float scale)
{
	int D = C / Hh;
	double *S = malloc((size_t)N * N * sizeof *S), *dP = malloc((size_t)N * N * sizeof *dP);

	for (int b = 0; b < B; b++)
		for (int h = 0; h < Hh; h++) {
			size_t NN = (size_t)N * N, ph = ((size_t)b * Hh + h) * NN;
			const float *q = qs + (size_t)b * N * 3 * C + h * D, *k = q + C, *v = q + 2 * C;
			const float *dO = dout + (size_t)b * N * C + h * D, *o = out + (size_t)b * N * C + h * D;
			const float *dq = dqkv + (size_t)b * N * 3 * C + h * D, *dk = dq + C, *dv = dq + 2 * C;
			const float *P = Pf + ph, *G = dS + ph;
			for (int i = 0; i < N; i++) {
				double mx = -INFINITY, sum = 0;
				for (int j = 0; j < N; j++) {
					double s = 0;
					for (int d = 0; d < D; d++)
						s += bf(q[(size_t)i * 3 * C + d], round) * bf(k[(size_t)j * 3 * C + d], round);
					if (bias)
						s += bias[h * NN + i * N + j];
					if (mask)
						s += mask[(size_t)(b % nW) * NN + i * N + j];
					S[i * N + j] = s;
					mx = s > mx ? s : mx;
				}
				for (int j = 0; j < N; j++)
					sum += S[i * N + j] = exp(S[i * N + j] - mx);
				for (int j = 0; j < N; j++)
					acc(err[E_P], P[i * N + j], S[i * N + j] / sum);
				for (int d = 0; d < D; d++) {
					double s = 0;
					for (int j = 0; j < N; j++)
						s += bf(P[i * N + j], round) * bf(v[(size_t)j * 3 * C + d], round);
					acc(err[E_OUT], o[(size_t)i * C + d], s);
				}
			}
			for (int j = 0; j < N; j++)
				for (int d = 0; d < D; d++) {
					double s = 0;
					for (int i = 0; i < N; i++)
						s += bf(P[i * N + j], round) * bf(dO[(size_t)i * C + d], round);
					acc(err[E_DV], dv[(size_t)j * 3 * C + d], s);
				}
			for (int i = 0; i < N; i++) {
				double rs = 0;
				for (int j = 0; j < N; j++) {
					double s = 0;
					for (int d = 0; d < D; d++)
						s += bf(dO[(size_t)i * C + d], round) * bf(v[(size_t)j * 3 * C + d], round);
					dP[i * N + j] = s;
					rs += P[i * N + j] * s;
				}
				for (int j = 0; j < N; j++)
					acc(err[E_DS], G[i * N + j], P[i * N + j] * (dP[i * N + j] - rs));
			}
			for (int i = 0; i < N; i++)
				for (int d = 0; d < D; d++) {
					double s = 0, t = 0;
					for (int j = 0; j < N; j++) {
						s += bf(G[i * N + j], round) * bf(k[(size_t)j * 3 * C + d], round);
						t += bf(G[j * N + i], round) * bf(q[(size_t)j * 3 * C + d], round);
					}
					acc(err[E_DQ], dq[(size_t)i * 3 * C + d], scale * s);
					acc(err[E_DK], dk[(size_t)i * 3 * C + d], t);
				}
		}
	free(S), free(dP);
}

struct run {
	float *out, *out2, *P, *Pf, *qkv, *dqkv, *dqb, *dvb;
};

/* forward (inference and training) and backward, through AMX (amx 1) or
 * in float (0) */
static void
run(struct run *r, int amx, const float *qkv0, const float *qb, const float *vb,
    const float *bias, const float *mask, int nW, int B, int N, int C, int Hh,
    const float *dout, float scale, float *work)
{
	size_t nq = (size_t)B * N * 3 * C, no = (size_t)B * N * C, nP = (size_t)B * Hh * N * N;

	attention_set_amx(amx ? 2 : 0);
	r->out = calloc(no, sizeof(float));
	r->out2 = calloc(no, sizeof(float));
	r->P = calloc(nP, sizeof(float));
	r->Pf = malloc(nP * sizeof(float));
	r->qkv = malloc(nq * sizeof(float));
	r->dqkv = calloc(nq, sizeof(float));
	r->dqb = calloc(C, sizeof(float));
	r->dvb = calloc(C, sizeof(float));
	memcpy(r->qkv, qkv0, nq * sizeof(float));
	attention_forward(r->out2, NULL, r->qkv, qb, vb, bias, mask, nW, B, N, C, Hh, scale, work);
	memcpy(r->qkv, qkv0, nq * sizeof(float));
	attention_forward(r->out, r->P, r->qkv, qb, vb, bias, mask, nW, B, N, C, Hh, scale, work);
	memcpy(r->Pf, r->P, nP * sizeof(float));
	attention_backward(r->dqkv, qb ? r->dqb : NULL, vb ? r->dvb : NULL, r->P, dout,
	    r->qkv, B, N, C, Hh, scale, work);
	attention_set_amx(1);
}

static void
freerun(struct run *r)
{
	free(r->out), free(r->out2), free(r->P), free(r->Pf), free(r->qkv);
	free(r->dqkv), free(r->dqb), free(r->dvb);
}

/* the largest difference of a and b over the largest |b| */
static double
reldiff(const float *a, const float *b, size_t n)
{
	double e[2] = {0, 0};
	for (size_t i = 0; i < n; i++)
		acc(e, a[i], b[i]);
	return rel(e);
}

static void
shape(const char *name, int B, int N, int C, int Hh, int nW, int biases, int vit)
{
	size_t nq = (size_t)B * N * 3 * C, no = (size_t)B * N * C, nP = (size_t)B * Hh * N * N;
	float *qkv0 = filled(nq, 6), *dout = filled(no, 1), *qb = filled(C, 1), *vb = filled(C, 1);
	float *bias = filled((size_t)Hh * N * N, 4), *mask = NULL;
	float *work = calloc(attention_work(N), sizeof(float)), scale = 1.0f / sqrtf((float)(C / Hh));

	if (!attn_amx_ok(N, C / Hh)) {
		printf("skip - %s: attn_amx_ok says no\n", name);
		return;
	}
	if (nW) {
		mask = malloc((size_t)nW * N * N * sizeof(float));
		if (N == 36)
			swin_mask(mask, nW);
		else
			for (size_t i = 0; i < (size_t)nW * N * N; i++)
				mask[i] = (i * 7) % 5 == 1 && i % (N + 1) ? -100.0f : 0.0f;
	}
	const float *qbp = vit ? qb : NULL, *vbp = vit ? vb : NULL, *bp = biases ? bias : NULL;
	struct run a, f;
	run(&a, 1, qkv0, qbp, vbp, bp, mask, nW, B, N, C, Hh, dout, scale, work);
	run(&f, 0, qkv0, qbp, vbp, bp, mask, nW, B, N, C, Hh, dout, scale, work);

	tap(!memcmp(a.out, a.out2, no * sizeof(float)), "%s: inference (no P kept), the same bits", name);
	double e[2][E_N][2];
	memset(e, 0, sizeof e);
	for (int round = 0; round < 2; round++)
		reference(e[round], round, a.qkv, a.Pf, a.out, a.P, a.dqkv, dout, bp, mask, nW, B, N,
		    C, Hh, scale);
	double worst = 0, least = 1, most = 0;
	char line[256];
	int n = 0;
	for (int t = 0; t < E_N; t++) {
		worst = fmax(worst, rel(e[1][t]));
		if (t != E_P)	/* P's own products are checked through S */
			least = fmin(least, rel(e[0][t])), most = fmax(most, rel(e[0][t]));
		n += snprintf(line + n, sizeof line - n, " %s %.1e", names[t], rel(e[1][t]));
	}
	tap(worst < TIGHT, "%s: vs double over bf16 operands, max rel err%s (bound %.0e)", name, line,
	    TIGHT);
	tap(least > BF16_MIN && most < BF16_MAX,
	    "%s: vs double over float operands off by bf16's rounding: %.1e .. %.1e", name, least, most);
	double d[5] = {reldiff(a.out, f.out, no), reldiff(a.P, f.P, nP), reldiff(a.dqkv, f.dqkv, nq),
	    vit ? reldiff(a.dqb, f.dqb, C) : 0, vit ? reldiff(a.dvb, f.dvb, C) : 0};
	double df = fmax(fmax(fmax(d[0], d[1]), fmax(d[2], d[3])), d[4]);
	tap(df < 2e-2 && df > 0, "%s: vs the float path (attn512.c), max rel diff out %.1e dS %.1e "
	    "dqkv %.1e%s", name, d[0], d[1], d[2], vit ? " and the bias gradients" : "");
	freerun(&a), freerun(&f);
	free(qkv0), free(dout), free(qb), free(vb), free(bias), free(mask), free(work);
}

/* the default (1): AMX for N over 64, float for Swin's windows (the
 * same bits as with attention_set_amx(0)) */
static void
default_mode(void)
{
	int B = 2, C = 64, Hh = 2;
	const int Ns[2] = {36, 70};

	for (int t = 0; t < 2; t++) {
		int N = Ns[t];
		size_t nq = (size_t)B * N * 3 * C, no = (size_t)B * N * C;
		float *qkv0 = filled(nq, 6), *work = calloc(attention_work(N), sizeof(float));
		float *o[3], *qkv = malloc(nq * sizeof(float));
		for (int m = 0; m < 3; m++) {
			o[m] = calloc(no, sizeof(float));
			attention_set_amx(m);
			memcpy(qkv, qkv0, nq * sizeof(float));
			attention_forward(o[m], NULL, qkv, NULL, NULL, NULL, NULL, 0, B, N, C, Hh, 0.25f, work);
		}
		attention_set_amx(1);
		int as0 = !memcmp(o[1], o[0], no * sizeof(float)), as2 = !memcmp(o[1], o[2], no * sizeof(float));
		tap(N > 64 ? as2 && !as0 : as0 && !as2, "the default, N %d: %s", N,
		    N > 64 ? "on AMX (as mode 2, not as 0)" : "in float (as mode 0, not as 2)");
		for (int m = 0; m < 3; m++)
			free(o[m]);
		free(qkv0), free(work), free(qkv);
	}
}

int
main(void)
{
	if (mim_gemm_set_precision(MIM_PREC_BF16) < 0) {
		printf("skip - bf16: %s\n", mim_errmsg());
		return tap_done();
	}
	if (!attn_amx_ok(36, 32)) {
		printf("skip - no AMX-BF16 here (or Linux refused the tiles)\n");
		return tap_done();
	}
	shape("swin N 36 D 32, bias, shifted windows' mask", 8, 36, 128, 4, 4, 1, 0);
	shape("swin N 36 D 32, bias only", 3, 36, 64, 2, 0, 1, 0);
	shape("vit N 145 D 64, q and v bias", 2, 145, 128, 2, 0, 0, 1);
	shape("vit at 224 px: N 197 D 64, q and v bias", 2, 197, 128, 2, 0, 0, 1);
	shape("N 70 D 16, everything", 3, 70, 48, 3, 1, 1, 1);
	shape("N 9 D 16, mask", 4, 9, 32, 2, 2, 0, 0);
	mim_set_threads(2);
	shape("two threads: swin N 36 D 32, mask", 8, 36, 64, 2, 4, 1, 0);
	default_mode();
	return tap_done();
}
