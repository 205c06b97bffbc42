/* test_probe.c -- the linear probe (lib/eval/probe.c): gradients of the
 * training forward against central differences in double; two SGD steps
 * and the eval-mode logits against PyTorch (tests/ref/probe_ref.py,
 * 1e-4 relative); it learns a separable toy problem; the same seed gives
 * the same bytes; the probe file round-trips and a wrong one is refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mim.h"
#include "gradcheck.h"

enum { B = 6, C = 5, K = 3 };

/* the inputs of the gradient check, in double */
static double gx[B * C], gw[K * C], gb[K];
static int64_t gy[B];

/* the training forward in double: mean cross-entropy of BN(x) w^T + b */
static double
ref_loss(void)
{
	double xh[B * C], loss = 0;

	for (int c = 0; c < C; c++) {
		double m = 0, v = 0;
		for (int b = 0; b < B; b++)
			m += gx[b * C + c] / B;
		for (int b = 0; b < B; b++)
			v += (gx[b * C + c] - m) * (gx[b * C + c] - m) / B;
		for (int b = 0; b < B; b++)
			xh[b * C + c] = (gx[b * C + c] - m) / sqrt(v + 1e-6);
	}
	for (int b = 0; b < B; b++) {
		double l[K], mx = -INFINITY, s = 0;
		for (int k = 0; k < K; k++) {
			l[k] = gb[k];
			for (int c = 0; c < C; c++)
				l[k] += xh[b * C + c] * gw[k * C + c];
			mx = fmax(mx, l[k]);
		}
		for (int k = 0; k < K; k++)
			s += exp(l[k] - mx);
		loss += mx + log(s) - l[gy[b]];
	}
	return loss / B;
}

static void
test_gradcheck(void)
{
	struct mim_probe *p = mim_probe_new(C, K, 1);
	float x[B * C], dw[K * C], db[K], dl[B * K], xh[B * C], lg[B * K], mu[C], var[C];
	double gnw[K * C], gnb[K];

	for (int i = 0; i < B * C; i++)
		x[i] = (float)(gx[i] = 2 * frand() + 0.5 * (i % C));
	for (int i = 0; i < K * C; i++)
		p->w[i] = (float)(gw[i] = frand());
	for (int k = 0; k < K; k++)
		p->b[k] = (float)(gb[k] = 0.3 * frand());
	for (int b = 0; b < B; b++)
		gy[b] = b % K;
	double loss = mim_probe_train_forward_backward(p, dw, db, dl, xh, lg, mu, var, x, gy, B);
	tap(fabs(loss - ref_loss()) < 1e-5, "probe train loss %.7f = double reference %.7f",
	    loss, ref_loss());
	numgrad(gnw, gw, K * C, ref_loss, 1e-4);
	numgrad(gnb, gb, K, ref_loss, 1e-4);
	double ew = relerr_d(dw, gnw, K * C), eb = relerr_d(db, gnb, K);
	tap(ew < 1e-4, "probe dw against central differences: maxrel %.2e", ew);
	tap(eb < 1e-4, "probe db against central differences: maxrel %.2e", eb);
	/* the gradient is overwritten, not accumulated */
	mim_probe_train_forward_backward(p, dw, db, dl, xh, lg, mu, var, x, gy, B);
	tap(relerr_d(dw, gnw, K * C) < 1e-4, "probe dw overwritten by a second call");
	mim_probe_free(p);
}

static const float *
ref(const struct mim_frame *f, const char *name)
{
	const struct mim_tensor *t = mim_frame_get(f, name);
	if (!t) {
		tap(0, "reference has '%s'", name);
		exit(1);
	}
	return t->data;
}

static double
ref_d(const struct mim_frame *f, const char *name, int i)
{
	return mim_tensor_get(mim_frame_get(f, name), i);
}

static void
test_reference(void)
{
	struct mim_frame *f = mim_load(tap_ref("probe_ref.safetensors"));
	if (!f) {
		tap(0, "load the reference: %s", mim_errmsg());
		return;
	}
	enum { RB = 8, RC = 6, RK = 4 };
	struct mim_probe *p = mim_probe_new(RC, RK, 0);
	float dw[RK * RC], db[RK], dl[RB * RK], xh[RB * RC], lg[RB * RK], mu[RC], var[RC];
	float mw[RK * RC], mb[RK];
	memcpy(p->w, ref(f, "w0"), sizeof p->w[0] * RK * RC);
	memcpy(p->b, ref(f, "b0"), sizeof p->b[0] * RK);
	double mom = ref_d(f, "momentum", 0), wd = ref_d(f, "wd", 0);
	for (int s = 1; s <= 2; s++) {
		char n[32];
		snprintf(n, sizeof n, "x%d", s);
		const float *x = ref(f, n);
		snprintf(n, sizeof n, "y%d", s);
		const int64_t *y = (const int64_t *)(const void *)ref(f, n);
		double loss = mim_probe_train_forward_backward(p, dw, db, dl, xh, lg, mu, var, x, y, RB);
		mim_probe_track(p, mu, var, RB);
		snprintf(n, sizeof n, "loss%d", s);
		double want = ref_d(f, n, 0);
		tap(fabs(loss - want) <= 1e-4 * fabs(want), "step %d: loss %.7f, PyTorch %.7f", s,
		    loss, want);
		const char *what[] = {"logits", "dw", "db"};
		const float *got[] = {lg, dw, db};
		size_t cnt[] = {RB * RK, RK * RC, RK};
		for (int i = 0; i < 3; i++) {
			snprintf(n, sizeof n, "%s%d", what[i], s);
			double e = maxrel(got[i], ref(f, n), cnt[i]);
			tap(e < 1e-4, "step %d: %s as PyTorch: maxrel %.2e", s, what[i], e);
		}
		double lr = ref_d(f, "lr", s - 1);
		mim_sgd_update(p->w, mw, dw, RK * RC, lr, mom, wd, s == 1);
		mim_sgd_update(p->b, mb, db, RK, lr, mom, wd, s == 1);
		const char *pn[] = {"w", "b", "mean", "var"};
		const float *pv[] = {p->w, p->b, p->mean, p->var};
		size_t pc[] = {RK * RC, RK, RC, RC};
		for (int i = 0; i < 4; i++) {
			snprintf(n, sizeof n, "%s%d", pn[i], s);
			double e = maxrel(pv[i], ref(f, n), pc[i]);
			tap(e < 1e-4, "after step %d: %s as PyTorch: maxrel %.2e", s, pn[i], e);
		}
	}
	float ev[5 * RK];
	tap(mim_probe_forward(p, ev, ref(f, "xt"), 5) == 0, "eval forward");
	double e = maxrel(ev, ref(f, "logits_eval"), 5 * RK);
	tap(e < 1e-4, "eval-mode logits (running statistics) as PyTorch: maxrel %.2e", e);
	tap(p->tracked == 2, "num_batches_tracked 2");
	mim_probe_free(p);
	mim_frame_free(f);
}

/* N samples of K gaussian clusters in C dims, far apart, on a scale and
 * offset BatchNorm has to undo */
static void
toy(float *x, int64_t *y, int N, int TC, int TK)
{
	float centre[8][16];
	for (int k = 0; k < TK; k++)
		for (int c = 0; c < TC; c++)
			centre[k][c] = 6 * frand();
	for (int i = 0; i < N; i++) {
		y[i] = i % TK;
		for (int c = 0; c < TC; c++)
			x[i * TC + c] = 50 + 20 * (centre[y[i]][c] + frand());
	}
}

static int
count_epochs(void *ctx, const struct mim_probe_epoch *e)
{
	double *last = ctx;
	last[0] = e->loss;
	last[1] = e->acc1;
	return 0;
}

static void
test_learns(void)
{
	enum { N = 240, TC = 12, TK = 4 };
	static float x[N * TC], lg[N * TK];
	static int64_t y[N];
	struct mim_probe_opts o;
	double last[2] = {NAN, NAN};

	toy(x, y, N, TC, TK);
	mim_probe_opts_default(&o);
	o.epochs = 30;
	o.batch = 32;
	o.seed = 5;
	struct mim_probe *p = mim_probe_new(TC, TK, o.seed), *q = mim_probe_new(TC, TK, o.seed);
	float l0[N * TK];
	mim_probe_forward(p, l0, x, N);
	int right0 = 0;
	for (int i = 0; i < N; i++)
		right0 += mim_eval_rank(l0 + i * TK, TK, (int)y[i]) == 0;
	tap(mim_probe_train(p, &o, x, y, N, count_epochs, last) == 0, "train the toy probe %s", mim_errmsg());
	mim_probe_forward(p, lg, x, N);
	int right = 0;
	for (int i = 0; i < N; i++)
		right += mim_eval_rank(lg + i * TK, TK, (int)y[i]) == 0;
	tap(right == N && right0 < N, "separable toy: %d of %d right after training (%d before)",
	    right, N, right0);
	tap(last[0] < 0.05 && last[1] == 100, "last epoch: loss %.4f, train top-1 %.1f %%", last[0],
	    last[1]);
	mim_probe_train(q, &o, x, y, N, NULL, NULL);
	tap(!memcmp(p->w, q->w, sizeof(float) * TK * TC) && !memcmp(p->var, q->var, sizeof(float) * TC),
	    "the same seed gives the same probe, bit for bit");
	mim_probe_free(q);
	o.seed = 6;
	q = mim_probe_new(TC, TK, 5);
	mim_probe_train(q, &o, x, y, N, NULL, NULL);
	tap(memcmp(p->w, q->w, sizeof(float) * TK * TC) != 0, "another seed shuffles otherwise");
	mim_probe_free(q);

	/* the file: round trip, settings kept; wrong shapes refused */
	struct mim_frame *f = mim_probe_to_frame(p);
	q = f ? mim_probe_from_frame(f) : NULL;
	tap(q && q->C == TC && q->K == TK && !memcmp(p->w, q->w, sizeof(float) * TK * TC) &&
	    !memcmp(p->mean, q->mean, sizeof(float) * TC) && q->tracked == p->tracked &&
	    q->config && strstr(q->config, "\"epochs\":30"), "probe file round trip");
	mim_probe_free(q);
	int64_t k1[1] = {TK + 1};
	mim_frame_add(f, "head.1.bias", MIM_F32, 1, k1, NULL);
	q = mim_probe_from_frame(f);
	tap(!q && strstr(mim_errmsg(), "head.1.bias"), "a bias of the wrong shape: %s", mim_errmsg());
	mim_frame_remove(f, "head.1.weight");
	q = mim_probe_from_frame(f);
	tap(!q && strstr(mim_errmsg(), "not a linear probe"), "no weight: %s", mim_errmsg());
	mim_frame_free(f);

	int64_t bad[3] = {0, 1, TK};
	tap(mim_probe_train(p, &o, x, bad, 3, NULL, NULL) < 0 && strstr(mim_errmsg(), "label 4"),
	    "a label out of range: %s", mim_errmsg());
	tap(mim_probe_train(p, &o, x, y, 1, NULL, NULL) < 0, "one sample: %s", mim_errmsg());
	mim_probe_free(p);
}

int
main(void)
{
	test_gradcheck();
	test_reference();
	test_learns();
	return tap_done();
}
