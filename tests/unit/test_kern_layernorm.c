/* test_kern_layernorm.c -- LayerNorm forward / backward against a double
 * reference and central differences; backward accumulates into dinp. */
#include "mim.h"
#include "mim/kern.h"
#include "gradcheck.h"

enum { R = 6, C = 80 };	/* C > 64: two column blocks */
static double X[R * C], Wt[C], Bs[C], DO[R * C];
static const double EPS = 1e-6;

static void
ref(double *out)
{
	for (int r = 0; r < R; r++) {
		double m = 0, v = 0;
		for (int c = 0; c < C; c++)
			m += X[r * C + c];
		m /= C;
		for (int c = 0; c < C; c++)
			v += (X[r * C + c] - m) * (X[r * C + c] - m);
		v /= C;
		for (int c = 0; c < C; c++)
			out[r * C + c] = (X[r * C + c] - m) / sqrt(v + EPS) * Wt[c] + Bs[c];
	}
}

static double
L(void)
{
	static double out[R * C];
	double s = 0;
	ref(out);
	for (int i = 0; i < R * C; i++)
		s += out[i] * DO[i];
	return s;
}

/* More rows than a chunk of the column sums (32 rows for 1000: 31 whole
 * and a part; parallel.c's chunk_rows) and a tail of columns: dw and db against double sums, the same
 * bytes at 1, 2 and 3 threads, and dinp as the small case's rows. */
static void
chunks(void)
{
	enum { RR = 1000, CC = 203 };
	float *x = malloc(RR * CC * 4), *dy = malloc(RR * CC * 4), *w = malloc(CC * 4);
	float *b = malloc(CC * 4), *out = malloc(RR * CC * 4), *mean = malloc(RR * 4), *rstd = malloc(RR * 4);
	float *dx[3], *dw[3], *db[3];
	unsigned u = 7;
	for (int i = 0; i < RR * CC; i++) {
		u = u * 1103515245u + 12345u;
		x[i] = (float)(u >> 9 & 0xffff) / 65536.0f * 4 - 1;
		u = u * 1103515245u + 12345u;
		dy[i] = (float)(u >> 9 & 0xffff) / 65536.0f - 0.5f;
	}
	for (int c = 0; c < CC; c++)
		w[c] = 0.5f + c * 0.01f, b[c] = 0.1f * c;
	layernorm_forward(out, mean, rstd, x, w, b, RR, CC, 1e-5f);
	int nt = mim_threads();
	for (int t = 0; t < 3; t++) {
		dx[t] = fzero(RR * CC), dw[t] = fzero(CC), db[t] = fzero(CC);
		mim_set_threads(t + 1);
		layernorm_backward(dx[t], dw[t], db[t], dy, x, w, mean, rstd, RR, CC);
	}
	mim_set_threads(nt);
	double e = 0, mx = 0;
	for (int c = 0; c < CC; c++) {
		double sw = 0, sb = 0;
		for (int r = 0; r < RR; r++) {
			sw += (double)dy[r * CC + c] * ((out[r * CC + c] - b[c]) / w[c]);
			sb += dy[r * CC + c];
		}
		e = fmax(e, fmax(fabs(dw[0][c] - sw), fabs(db[0][c] - sb)));
		mx = fmax(mx, fmax(fabs(sw), fabs(sb)));
	}
	tap(e / mx < 1e-5, "1000 rows (chunks of 32): dw, db against double sums, rel err %.1e", e / mx);
	int same = 1;
	for (int t = 1; t < 3; t++)
		same &= !memcmp(dx[0], dx[t], RR * CC * 4) && !memcmp(dw[0], dw[t], CC * 4) &&
		    !memcmp(db[0], db[t], CC * 4);
	tap(same, "1000 rows: dinp, dw, db the same bytes at 1, 2 and 3 threads");
	/* dinp alone (no sums) takes the rows' path: the same bytes */
	float *dx1 = fzero(RR * CC);
	layernorm_backward(dx1, NULL, NULL, dy, x, w, mean, rstd, RR, CC);
	tap(!memcmp(dx1, dx[0], RR * CC * 4), "dinp without dw, db: the same bytes");
	free(dx1);
	for (int t = 0; t < 3; t++)
		free(dx[t]), free(dw[t]), free(db[t]);
	free(x), free(dy), free(w), free(b), free(out), free(mean), free(rstd);
}

int
main(void)
{
	static float x[R * C], w[C], b[C], dout[R * C], out[R * C], mean[R], rstd[R];
	static double ro[R * C];
	randfill(x, X, R * C, 2);
	for (int i = 0; i < R * C; i++) {	/* an offset, as real activations have */
		x[i] += 3;
		X[i] = x[i];
	}
	randfill(w, Wt, C, 1);
	randfill(b, Bs, C, 1);
	randfill(dout, DO, R * C, 1);
	ref(ro);
	layernorm_forward(out, mean, rstd, x, w, b, R, C, (float)EPS);
	tap(relerr_d(out, ro, R * C) < 1e-6, "forward vs double reference (%.2e)", relerr_d(out, ro, R * C));
	float *dx = fzero(R * C), *dw = fzero(C), *db = fzero(C);
	layernorm_backward(dx, dw, db, dout, x, w, mean, rstd, R, C);
	gradcheck("dinp", dx, X, R * C, L, 1e-4);
	gradcheck("dw", dw, Wt, C, L, 1e-5);
	gradcheck("db", db, Bs, C, L, 1e-5);
	float *dx2 = fzero(R * C), *dw2 = fzero(C);
	memcpy(dx2, dx, sizeof(float) * R * C);
	memcpy(dw2, dw, sizeof(float) * C);
	layernorm_backward(dx, dw, db, dout, x, w, mean, rstd, R, C);
	tap(doubled(dx, dx2, R * C) && doubled(dw, dw2, C), "dinp, dw accumulate");
	float out2[R * C];
	layernorm_forward(out2, NULL, NULL, x, w, b, R, C, (float)EPS);
	tap(memcmp(out, out2, sizeof out) == 0, "forward without saved statistics: same bytes");
	free(dx);
	free(dw);
	free(db);
	free(dx2);
	free(dw2);
	chunks();
	return tap_done();
}
