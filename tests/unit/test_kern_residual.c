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
	return tap_done();
}
