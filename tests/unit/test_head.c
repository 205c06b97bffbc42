/* test_head.c -- the prediction heads (lib/model/head.c) against
 * references:
 *   no arguments: the mlp head's forward and every gradient against a
 *     double-precision reference and its central differences, and the
 *     committed PyTorch dumps of tests/ref/head_ref.py (tests/ref/head_*);
 *   --compare CKPT IN REF: the head of CKPT on IN's latent and dpred
 *     against REF, a dump of head_ref.py (tests/cmd/t-head-ref.sh).
 * Parity: max |mim - ref| / max |ref| <= 1e-4 for pred, dlatent and the
 * gradient of every decoder parameter. */
#include <string.h>

#include "mim.h"
#include "../../lib/model/arch.h"
#include "gradcheck.h"

/* forward and backward of m's head on (latent, dpred): pred, dlatent and
 * m->g (zeroed first) */
static int
run_head(struct mim_model *m, int B, const float *latent, const float *dpred, float *pred,
    float *dlatent)
{
	const struct mim_head_ops *h = mim_head_get(m->cfg.head);
	float *scratch = malloc((h->scratch(m, B) + 1) * sizeof(float));

	if (!m->g)
		m->g = malloc(m->nw * sizeof(float));
	if (!scratch || !m->g)
		return -1;
	memset(m->g, 0, m->nw * sizeof(float));
	h->forward(m, B, latent, pred, scratch);
	h->backward(m, B, dpred, scratch, dlatent);
	free(scratch);
	return 0;
}

#define rel relerr_f

static int
compare(const char *ckpt, const char *inp, const char *refp)
{
	struct mim_model *m = mim_model_open(ckpt);
	struct mim_frame *in = mim_load(inp), *ref = mim_load(refp);

	if (!m || !in || !ref) {
		tap(0, "%s: %s", ckpt, mim_errmsg());
		return tap_done();
	}
	const struct mim_tensor *lat = mim_frame_get(in, "latent"), *dp = mim_frame_get(in, "dpred");
	const struct mim_tensor *rp = mim_frame_get(ref, "pred"), *rl = mim_frame_get(ref, "dlatent");
	int B = (int)lat->shape[0];
	size_t nl = (size_t)mim_tensor_numel(lat), np = (size_t)mim_tensor_numel(dp);
	float *pred = malloc(np * sizeof *pred), *dlat = malloc(nl * sizeof *dlat);
	run_head(m, B, lat->data, dp->data, pred, dlat);
	const char *what = mim_config_head_name(&m->cfg);
	double e = rel(pred, rp->data, np);
	tap(e <= 1e-4, "%s head: pred vs PyTorch, max rel err %.2e", what, e);
	e = rel(dlat, rl->data, nl);
	tap(e <= 1e-4, "%s head: dlatent vs PyTorch, max rel err %.2e", what, e);
	for (int i = m->head_p0; i < m->np; i++) {
		char name[300];
		snprintf(name, sizeof name, "grad.%s", m->p[i].name);
		const struct mim_tensor *g = mim_frame_get(ref, name);
		e = g ? rel(m->g + m->p[i].off, g->data, m->p[i].numel) : INFINITY;
		tap(e <= 1e-4, "%s head: %s vs PyTorch, max rel err %.2e", what, name, e);
	}
	free(pred);
	free(dlat);
	mim_frame_free(in);
	mim_frame_free(ref);
	mim_model_free(m);
	return tap_done();
}

/* ---- the mlp head in double: pred = shuffle(W2 gelu(W1 x + b1) + b2) ----- */

enum { B = 2, F = 6, D = 5, S = 2, Hh = 3, HW = Hh * Hh, O = S * S * 3, H = Hh * S };
static double LAT[B * F * HW], W1[D * F], B1[D], W2[O * D], B2[O], DOUT[B * 3 * H * H];

static double
gelu_d(double x)
{
	return 0.5 * x * (1 + erf(x / sqrt(2.0)));
}

/* sum(pred * DOUT) */
static double
L(void)
{
	double s = 0;
	for (int b = 0; b < B; b++)
		for (int y = 0; y < Hh; y++)
			for (int x = 0; x < Hh; x++) {
				double act[D];
				for (int d = 0; d < D; d++) {
					double t = B1[d];
					for (int f = 0; f < F; f++)
						t += W1[d * F + f] * LAT[(b * F + f) * HW + y * Hh + x];
					act[d] = gelu_d(t);
				}
				for (int o = 0; o < O; o++) {
					double t = B2[o];
					for (int d = 0; d < D; d++)
						t += W2[o * D + d] * act[d];
					int c = o / (S * S), i = o / S % S, j = o % S;
					s += t * DOUT[((b * 3 + c) * H + y * S + i) * H + x * S + j];
				}
			}
	return s;
}

static void
test_mlp_double(void)
{
	struct mim_config c;
	mim_config_parse(&c, "{\"model\":\"vit\",\"img_size\":6,\"patch_size\":2,\"embed_dim\":6,"
	    "\"depth\":1,\"num_heads\":2,\"encoder_stride\":2,\"head\":\"mlp\",\"head_hidden\":5}");
	struct mim_model *m = mim_model_new(&c);
	if (!m || mim_model_init(m, 4) < 0) {
		tap(0, "mlp model: %s", mim_errmsg());
		return;
	}
	const struct mim_param *p = &m->p[m->head_p0];
	tap(m->np - m->head_p0 == 4 && p[0].shape[0] == D && p[0].shape[1] == F && p[2].shape[0] == O &&
	    p[2].shape[1] == D && strcmp(p[2].name, "decoder.2.weight") == 0,
	    "mlp parameters: decoder.0 (D,F,1,1), decoder.2 (O,D,1,1)");
	static float lat[B * F * HW], dout[B * 3 * H * H], pred[B * 3 * H * H], dlat[B * F * HW];
	randfill(lat, LAT, B * F * HW, 1);
	randfill(dout, DOUT, B * 3 * H * H, 2);
	for (size_t i = 0; i < p[0].numel; i++) W1[i] = m->w[p[0].off + i];
	for (size_t i = 0; i < p[1].numel; i++) B1[i] = m->w[p[1].off + i];
	for (size_t i = 0; i < p[2].numel; i++) W2[i] = m->w[p[2].off + i];
	for (size_t i = 0; i < p[3].numel; i++) B2[i] = m->w[p[3].off + i];
	run_head(m, B, lat, dout, pred, dlat);
	double lf = 0;
	for (int i = 0; i < B * 3 * H * H; i++)
		lf += (double)pred[i] * DOUT[i];
	tap(fabs(lf - L()) <= 1e-5 * fabs(L()), "mlp forward vs double reference (%g, %g)", lf, L());
	gradcheck("mlp: dlatent", dlat, LAT, B * F * HW, L, 1e-4);
	gradcheck("mlp: decoder.0.weight", m->g + p[0].off, W1, p[0].numel, L, 1e-4);
	gradcheck("mlp: decoder.0.bias", m->g + p[1].off, B1, p[1].numel, L, 1e-4);
	gradcheck("mlp: decoder.2.weight", m->g + p[2].off, W2, p[2].numel, L, 1e-4);
	gradcheck("mlp: decoder.2.bias", m->g + p[3].off, B2, p[3].numel, L, 1e-4);
	mim_model_free(m);
}

int
main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "--compare") == 0)
		return compare(argv[2], argv[3], argv[4]);
	test_mlp_double();
	/* the committed PyTorch dumps (tests/ref/head_ref.py) */
	const char *top = getenv("MIM_TOP");
	char a[4096], b[4096], c[4096];
	snprintf(a, sizeof a, "%s/tests/ref/head_mlp.ckpt.safetensors", top ? top : ".");
	snprintf(b, sizeof b, "%s/tests/ref/head_mlp.in.safetensors", top ? top : ".");
	snprintf(c, sizeof c, "%s/tests/ref/head_mlp.ref.safetensors", top ? top : ".");
	return compare(a, b, c);
}
