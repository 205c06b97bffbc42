/* test_kern_residual.c -- x + drop_path(gamma * y): layer scale and
 * per-sample drop path (timm's x.div(keep) * kept), forward and backward
 * against central differences; drop path masks from the seed. */
#include "mim.h"
#include "mim/kern.h"
#include "../../lib/model/arch.h"
#include "gradcheck.h"

enum { B = 3, N = 4, C = 70 };
static double X[B * N * C], Y[B * N * C], G_[C], DO[B * N * C], KEPT[B] = {1, 0, 1}, KEEP = 0.75;
static int use_g = 1, use_k = 1;

static double
L(void)
{
	double s = 0;
	for (int b = 0; b < B; b++)
		for (int i = 0; i < N * C; i++) {
			int e = b * N * C + i;
			double t = (use_g ? G_[i % C] : 1) * Y[e];
			if (use_k)
				t = t / KEEP * KEPT[b];
			s += (X[e] + t) * DO[e];
		}
	return s;
}

/* 5 samples of 250 rows (1250: chunks of 32 cut samples), 70 columns
 * (a block of 64 and a tail), drop path: dgamma against double sums, dy
 * and dgamma the same bytes at 1, 2 and 3 threads */
static void
chunks(void)
{
	enum { BB = 5, NN = 250, CC = 70, R = BB * NN };
	float *d = malloc(R * CC * 4), *y = malloc(R * CC * 4), g[CC], kept[BB] = {1, 0, 1, 1, 0};
	float *dy[3], dg[3][CC];
	unsigned u = 11;
	for (int i = 0; i < R * CC; i++) {
		u = u * 1103515245u + 12345u;
		d[i] = (float)(u >> 9 & 0xffff) / 65536.0f - 0.5f;
		u = u * 1103515245u + 12345u;
		y[i] = (float)(u >> 9 & 0xffff) / 65536.0f * 2 - 1;
	}
	for (int c = 0; c < CC; c++)
		g[c] = 0.1f + 0.01f * c;
	int nt = mim_threads();
	for (int t = 0; t < 3; t++) {
		dy[t] = malloc(R * CC * 4);
		memset(dg[t], 0, sizeof dg[t]);
		mim_set_threads(t + 1);
		residual_backward(dy[t], dg[t], d, y, g, kept, 0.8f, BB, NN, CC);
	}
	mim_set_threads(nt);
	double e = 0, mx = 0, ey = 0;
	for (int c = 0; c < CC; c++) {
		double s = 0;
		for (int r = 0; r < R; r++)
			s += (double)d[r * CC + c] * y[r * CC + c] * (kept[r / NN] / 0.8);
		e = fmax(e, fabs(dg[0][c] - s));
		mx = fmax(mx, fabs(s));
	}
	for (int r = 0; r < R; r++)
		for (int c = 0; c < CC; c++)
			ey = fmax(ey, fabs(dy[0][r * CC + c] - d[r * CC + c] * (kept[r / NN] / 0.8) * g[c]));
	tap(e / mx < 1e-5 && ey < 1e-6, "1250 rows (chunks of 32): dgamma against double sums "
	    "(rel err %.1e), dy (%.1e)", e / mx, ey);
	int same = 1;
	for (int t = 1; t < 3; t++)
		same &= !memcmp(dy[0], dy[t], R * CC * 4) && !memcmp(dg[0], dg[t], CC * 4);
	tap(same, "1250 rows: dy and dgamma the same bytes at 1, 2 and 3 threads");
	for (int t = 0; t < 3; t++)
		free(dy[t]);
	free(d), free(y);
}

int
main(void)
{
	static float x[B * N * C], y[B * N * C], g[C], dout[B * N * C], out[B * N * C], dy[B * N * C];
	float kept[B] = {1, 0, 1};
	randfill(x, X, B * N * C, 1);
	randfill(y, Y, B * N * C, 1);
	randfill(g, G_, C, 1);
	randfill(dout, DO, B * N * C, 1);
	for (int mode = 0; mode < 4; mode++) {
		use_g = mode & 1;
		use_k = mode >> 1;
		const char *nm[] = {"plain", "layer scale", "drop path", "layer scale + drop path"};
		residual_forward(out, x, y, use_g ? g : NULL, use_k ? kept : NULL, (float)KEEP, B, N, C);
		double lf = 0;
		for (int i = 0; i < B * N * C; i++)
			lf += (double)out[i] * DO[i];
		tap(fabs(lf - L()) < 1e-5 * fabs(L()), "%s: forward", nm[mode]);
		float *dg = fzero(C);
		residual_backward(dy, use_g ? dg : NULL, dout, y, use_g ? g : NULL,
		    use_k ? kept : NULL, (float)KEEP, B, N, C);
		gradcheck(nm[mode], dy, Y, B * N * C, L, 1e-5);
		if (use_g)
			gradcheck("dgamma", dg, G_, C, L, 1e-5);
		free(dg);
	}
	/* timm's rounding order: (gamma*y)/keep*kept, then + x */
	residual_forward(out, x, y, g, kept, 0.75f, B, N, C);
	tap(out[5] == x[5] + (g[5] * y[5]) / 0.75f * 1.0f && out[N * C + 5] == x[N * C + 5] + 0.0f,
	    "drop path keeps the official rounding order; a dropped sample is x");
	/* drop path masks: a pure function of (seed, block, sample) */
	float k1[64], k2[64], k3[64];
	float keep = mim_droppath(k1, 64, 0.3, 42, 5);
	mim_droppath(k2, 64, 0.3, 42, 5);
	mim_droppath(k3, 32, 0.3, 42, 5);
	int n1 = 0, bin = 1;
	for (int i = 0; i < 64; i++) {
		n1 += k1[i] == 1;
		bin &= k1[i] == 0 || k1[i] == 1;
	}
	tap(keep == 0.7f && bin && memcmp(k1, k2, sizeof k1) == 0 && memcmp(k1, k3, 32 * 4) == 0,
	    "masks from the seed, independent of the batch size");
	tap(n1 > 30 && n1 < 60, "about keep = 70%% of samples kept (%d/64)", n1);
	mim_droppath(k2, 64, 0.3, 43, 5);
	tap(memcmp(k1, k2, sizeof k1) != 0, "another seed, other masks");
	tap(mim_droppath_rate(0.1, 0, 12) == 0 && fabs(mim_droppath_rate(0.1, 11, 12) - 0.1) < 1e-8 &&
	    fabs(mim_droppath_rate(0.1, 5, 12) - 0.1 * 5 / 11) < 1e-8, "rates: linspace(0, rate, depth)");
	chunks();
	return tap_done();
}
