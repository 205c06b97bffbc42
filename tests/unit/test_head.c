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

static void
compare_files(const char *ckpt, const char *inp, const char *refp)
{
	struct mim_model *m = mim_model_open(ckpt);
	struct mim_frame *in = mim_load(inp), *ref = mim_load(refp);

	if (!m || !in || !ref) {
		tap(0, "%s: %s", ckpt, mim_errmsg());
		return;
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
}

static int
compare(const char *ckpt, const char *inp, const char *refp)
{
	compare_files(ckpt, inp, refp);
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

/* ---- the swin-inverse head: every gradient against central differences of
 * its own forward. There is no double version of a Swin stage here, so L
 * runs the float head and sums in double, with h = 1e-2 to stay above
 * float rounding; the differences then agree to about 1e-3 relative
 * (tolerance 5e-3), which tells a right backward from a wrong one (errors
 * ~1). The PyTorch dumps check the same head to 1e-4. A micro head of two
 * stages: a single-window stage of one block, then patch expanding, then
 * two blocks of 2x2 windows, the second shifted (with the -100 mask). */

static struct mim_model *SM;
static int SB = 2;
static float *S_lat, *S_pred, *S_scr;
static double *S_x, *S_dout;	/* the coordinates being checked, and dout */
static float *S_f;		/* where S_x's values live in float */
static size_t S_npred;

static double
LS(void)
{
	const struct mim_head_ops *h = mim_head_get(SM->cfg.head);
	double s = 0;
	for (size_t i = 0; S_x && i < (size_t)(S_x[-1]); i++)
		S_f[i] = (float)S_x[i];
	h->forward(SM, SB, S_lat, S_pred, S_scr);
	for (size_t i = 0; i < S_npred; i++)
		s += (double)S_pred[i] * S_dout[i];
	return s;
}

/* gradcheck of n floats at f (analytic gradient ga) */
static void
swinv_check_grad(const char *what, float *f, const float *ga, size_t n)
{
	double *x = malloc((n + 1) * sizeof *x), *gn = malloc(n * sizeof *gn);
	x[0] = (double)n;	/* LS reads the count before the values */
	for (size_t i = 0; i < n; i++)
		x[i + 1] = f[i];
	S_x = x + 1;
	S_f = f;
	numgrad(gn, S_x, n, LS, 1e-2);
	for (size_t i = 0; i < n; i++)	/* numgrad restored x, not f */
		f[i] = (float)S_x[i];
	double e = relerr_d(ga, gn, n), mx = 0;
	for (size_t i = 0; i < n; i++)
		mx = fmax(mx, fabs(gn[i]));
	tap(e < 5e-3 && mx > 0, "swin-inverse: %s: gradient vs central differences, max rel err %.2e",
	    what, e);
	S_x = NULL;
	free(x);
	free(gn);
}

static void
test_swinv_grad(void)
{
	struct mim_config c;
	if (mim_config_parse(&c, "{\"model\":\"swin\",\"img_size\":16,\"patch_size\":2,"
	    "\"embed_dim\":8,\"depths\":[2,1],\"num_heads\":[2,2],\"window_size\":4,"
	    "\"encoder_stride\":4,\"head\":\"swin-inverse\"}") < 0) {
		tap(0, "swin-inverse config: %s", mim_errmsg());
		return;
	}
	SM = mim_model_new(&c);
	if (!SM || mim_model_init(SM, 5) < 0) {
		tap(0, "swin-inverse model: %s", mim_errmsg());
		return;
	}
	const struct mim_param *p = &SM->p[SM->head_p0];
	int np = SM->np - SM->head_p0;
	/* stage 0: 1 block of 13, expand 3; stage 1: 2 blocks; norm, proj */
	tap(np == 13 + 3 + 26 + 4 && strcmp(p[13].name, "decoder.layers.0.upsample.expand.weight") == 0 &&
	    p[13].shape[0] == 32 && p[13].shape[1] == 16 && p[14].shape[0] == 8 &&
	    strcmp(p[np - 2].name, "decoder.proj.weight") == 0 && p[np - 2].shape[0] == 12 &&
	    p[np - 2].shape[1] == 8 &&
	    strcmp(p[16 + 13].name, "decoder.layers.1.blocks.1.norm1.weight") == 0,
	    "swin-inverse parameters: 2 stages (1, 2 blocks), expand (32,16), norm (8), proj (12,8)");
	/* LN weights and all biases random too, so that their gradients are
	 * a real test (init has 1/0 there) */
	for (int i = SM->head_p0; i < SM->np; i++)
		for (size_t k = 0; k < SM->p[i].numel; k++)
			SM->w[SM->p[i].off + k] += 0.2f * frand();
	size_t nl = (size_t)SB * 16 * 4 * 4;
	S_npred = (size_t)SB * 3 * 16 * 16;
	S_lat = malloc(nl * sizeof(float));
	S_pred = malloc(S_npred * sizeof(float));
	float *dout = malloc(S_npred * sizeof(float)), *dlat = malloc(nl * sizeof(float));
	S_dout = malloc(S_npred * sizeof(double));
	randfill(S_lat, NULL, nl, 1);
	randfill(dout, S_dout, S_npred, 1);
	S_scr = malloc(mim_head_get(SM->cfg.head)->scratch(SM, SB) * sizeof(float));
	run_head(SM, SB, S_lat, dout, S_pred, dlat);
	float *g = malloc(SM->nw * sizeof(float));
	memcpy(g, SM->g, SM->nw * sizeof(float));
	swinv_check_grad("dlatent", S_lat, dlat, nl);
	for (int i = SM->head_p0; i < SM->np; i++)
		swinv_check_grad(SM->p[i].name, SM->w + SM->p[i].off, g + SM->p[i].off, SM->p[i].numel);
	/* a second forward and backward: the same bytes (the scratch holds no
	 * state from the first) */
	const struct mim_head_ops *h = mim_head_get(SM->cfg.head);
	float *dlat2 = malloc(nl * sizeof(float));
	run_head(SM, SB, S_lat, dout, S_pred, dlat);
	memcpy(g, SM->g, SM->nw * sizeof(float));
	memset(S_scr, 0x7f, h->scratch(SM, SB) * sizeof(float));
	h->forward(SM, SB, S_lat, S_pred, S_scr);
	memset(SM->g, 0, SM->nw * sizeof(float));
	h->backward(SM, SB, dout, S_scr, dlat2);
	tap(memcmp(dlat, dlat2, nl * sizeof(float)) == 0 && memcmp(g, SM->g, SM->nw * sizeof(float)) == 0,
	    "swin-inverse: forward and backward again on a dirty scratch: the same bytes");
	free(dlat2);
	free(g);
	free(S_scr);
	free(S_dout);
	free(dout);
	free(dlat);
	free(S_pred);
	free(S_lat);
	mim_model_free(SM);
}

/* the configs the swin-inverse head refuses, with their messages */
static void
test_swinv_refused(void)
{
	struct mim_config c;
	int rc = mim_config_parse(&c, "{\"model\":\"vit\",\"head\":\"swin-inverse\"}");
	tap(rc < 0 && strstr(mim_errmsg(), "swin-inverse head mirrors a Swin encoder") != NULL,
	    "swin-inverse on a ViT: refused (%s)", mim_errmsg());
	rc = mim_config_parse(&c, "{\"model\":\"swin\",\"head\":\"swin-inverse\","
	    "\"head_depths\":[2,2,2,2,2]}");
	tap(rc < 0 && strstr(mim_errmsg(), "head_depths has more entries than the encoder's 4 stages") != NULL,
	    "swin-inverse: 5 head_depths for 4 stages refused (%s)", mim_errmsg());
	rc = mim_config_parse(&c, "{\"model\":\"swin\",\"head\":\"swin-inverse\","
	    "\"head_depths\":[1,2,3,1001]}");
	tap(rc < 0 && strstr(mim_errmsg(), "head_depths[3] = 1001 is out of range") != NULL,
	    "swin-inverse: a depth of 1001 refused (%s)", mim_errmsg());
	rc = mim_config_parse(&c, "{\"model\":\"swin\",\"head\":\"linear\",\"head_depths\":[1,1,1,1]}");
	tap(rc < 0 && strstr(mim_errmsg(), "not for head \"linear\"") != NULL,
	    "head_depths on the linear head refused (%s)", mim_errmsg());
	rc = mim_config_parse(&c, "{\"model\":\"swin\",\"head\":\"swin-inverse\",\"head_depths\":[1,0,3,2]}");
	tap(rc == 0 && c.head_depths[1] == 0 && c.head_depths[2] == 3,
	    "swin-inverse: head_depths [1,0,3,2] taken (0: the mirror)");
}

int
main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "--compare") == 0)
		return compare(argv[2], argv[3], argv[4]);
	test_mlp_double();
	test_swinv_grad();
	test_swinv_refused();
	/* the committed PyTorch dumps (tests/ref/head_ref.py) */
	const char *top = getenv("MIM_TOP");
	char a[4096], b[4096], c[4096];
	snprintf(a, sizeof a, "%s/tests/ref/head_mlp.ckpt.safetensors", top ? top : ".");
	snprintf(b, sizeof b, "%s/tests/ref/head_mlp.in.safetensors", top ? top : ".");
	snprintf(c, sizeof c, "%s/tests/ref/head_mlp.ref.safetensors", top ? top : ".");
	compare_files(a, b, c);
	snprintf(a, sizeof a, "%s/tests/ref/head_swinv.ckpt.safetensors", top ? top : ".");
	snprintf(b, sizeof b, "%s/tests/ref/head_swinv.in.safetensors", top ? top : ".");
	snprintf(c, sizeof c, "%s/tests/ref/head_swinv.ref.safetensors", top ? top : ".");
	compare_files(a, b, c);
	return tap_done();
}
