/* mask_token.c -- SimMIM's mask-token substitution after the patch
 * embedding: x = x * (1 - w) + token * w, w = mask in {0,1} per token
 * (models/simmim.py), computed as written. */

#include "mim/kern.h"
#include "kern_int.h"

struct mt {
	float *x, *dpe, *dtok;
	const float *dx, *tok;
	const uint8_t *mask;
	int ldx, T, C;
	size_t sx;
};

static void
fwd_rows(void *p, size_t lo, size_t hi)
{
	const struct mt *j = p;

	for (size_t r = lo; r < hi; r++) {
		float w = j->mask[r] ? 1.0f : 0.0f, u = 1.0f - w;
		float *x = j->x + (r / (size_t)j->T) * j->sx + (r % (size_t)j->T) * (size_t)j->ldx;
		for (int c = 0; c < j->C; c++)
			x[c] = x[c] * u + j->tok[c] * w;
	}
}

void
mask_token_forward(float *x, int ldx, size_t sx, const uint8_t *mask,
    const float *token, int B, int T, int C)
{
	if (!mask)
		return;
	double prof_t_ = MIM_PROF_BEGIN();
	struct mt j = {.x = x, .tok = token, .mask = mask, .ldx = ldx, .T = T, .C = C, .sx = sx};
	kern_for((size_t)B * T, 1 + 8192 / (size_t)C, fwd_rows, &j);
	MIM_PROF_END("mask_token fwd", prof_t_, 0);
}

static void
bwd_rows(void *p, size_t lo, size_t hi)
{
	const struct mt *j = p;

	for (size_t r = lo; r < hi; r++) {
		float u = j->mask && j->mask[r] ? 0.0f : 1.0f;
		const float *dx = j->dx + (r / (size_t)j->T) * j->sx + (r % (size_t)j->T) * (size_t)j->ldx;
		float *d = j->dpe + r * (size_t)j->C;
		for (int c = 0; c < j->C; c++)
			d[c] = dx[c] * u;
	}
}

/* dtoken: columns in blocks of 64, each summing the masked rows in order */
struct tokacc {
	float *dtok;
	const float *dx;
	const uint8_t *mask;
	int ldx, T, C, B;
	size_t sx;
};

static void
tok_blocks(void *p, size_t lo, size_t hi)
{
	const struct tokacc *j = p;

	for (size_t blk = lo; blk < hi; blk++) {
		int c0 = (int)blk * 64, w = j->C - c0 < 64 ? j->C - c0 : 64;
		double s[64] = {0};
		for (size_t r = 0; r < (size_t)j->B * j->T; r++) {
			if (!j->mask[r])
				continue;
			const float *dx = j->dx + (r / (size_t)j->T) * j->sx +
			    (r % (size_t)j->T) * (size_t)j->ldx + c0;
			for (int c = 0; c < w; c++)
				s[c] += dx[c];
		}
		for (int c = 0; c < w; c++)
			j->dtok[c0 + c] += (float)s[c];
	}
}

void
mask_token_backward(float *dpe, float *dtoken, const float *dx, int ldx, size_t sx,
    const uint8_t *mask, int B, int T, int C)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct mt j = {.dpe = dpe, .dx = dx, .mask = mask, .ldx = ldx, .T = T, .C = C, .sx = sx};

	if (dpe)
		kern_for((size_t)B * T, 1 + 8192 / (size_t)C, bwd_rows, &j);
	if (dtoken && mask) {
		struct tokacc a = {dtoken, dx, mask, ldx, T, C, B, sx};
		kern_for(((size_t)C + 63) / 64, 1, tok_blocks, &a);
	}
	MIM_PROF_END("mask_token bwd", prof_t_, 0);
}
