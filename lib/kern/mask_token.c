/* mask_token.c -- SimMIM's mask-token substitution after the patch
 * embedding: x = x * (1 - w) + token * w, w = mask in {0,1} per token
 * (models/simmim.py), computed as written. */

#include <stdlib.h>

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

/* dtoken: the masked rows summed in double, in chunks of TOK_ROWS rows x 64
 * columns (one task each, so that a batch's 70,000 tokens are shared by
 * every thread), then the chunks' sums added in order: the same bits
 * whatever the thread count */
#define TOK_ROWS 1024

struct tokacc {
	const float *dx;
	const uint8_t *mask;
	int ldx, T, C, B;
	size_t sx;
	int nblk;		/* blocks of 64 columns */
	double *part;		/* per chunk of rows, C sums */
};

static void
tok_chunks(void *p, size_t lo, size_t hi)
{
	const struct tokacc *j = p;
	size_t R = (size_t)j->B * j->T;

	for (size_t t = lo; t < hi; t++) {
		size_t ch = t / (size_t)j->nblk, r1 = (ch + 1) * TOK_ROWS < R ? (ch + 1) * TOK_ROWS : R;
		int c0 = (int)(t % (size_t)j->nblk) * 64, w = j->C - c0 < 64 ? j->C - c0 : 64;
		double s[64] = {0};
		for (size_t r = ch * TOK_ROWS; r < r1; r++) {
			if (!j->mask[r])
				continue;
			const float *dx = j->dx + (r / (size_t)j->T) * j->sx +
			    (r % (size_t)j->T) * (size_t)j->ldx + c0;
			for (int c = 0; c < w; c++)
				s[c] += dx[c];
		}
		memcpy(j->part + ch * (size_t)j->C + c0, s, (size_t)w * sizeof *s);
	}
}

/* dtok += the chunks' sums, in order; -1 when out of memory */
static int
token_grad(float *dtok, const float *dx, int ldx, size_t sx, const uint8_t *mask, int B, int T,
    int C)
{
	size_t nch = ((size_t)B * T + TOK_ROWS - 1) / TOK_ROWS;
	struct tokacc a = {dx, mask, ldx, T, C, B, sx, (C + 63) / 64,
	    malloc(nch * (size_t)C * sizeof(double))};

	if (!a.part)
		return -1;
	kern_for(nch * (size_t)a.nblk, 1, tok_chunks, &a);
	for (int c = 0; c < C; c++) {
		double s = 0;
		for (size_t ch = 0; ch < nch; ch++)
			s += a.part[ch * (size_t)C + c];
		dtok[c] += (float)s;
	}
	free(a.part);
	return 0;
}

void
mask_token_backward(float *dpe, float *dtoken, const float *dx, int ldx, size_t sx,
    const uint8_t *mask, int B, int T, int C)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct mt j = {.dpe = dpe, .dx = dx, .mask = mask, .ldx = ldx, .T = T, .C = C, .sx = sx};

	if (dpe)
		kern_for((size_t)B * T, 1 + 8192 / (size_t)C, bwd_rows, &j);
	if (dtoken && mask && token_grad(dtoken, dx, ldx, sx, mask, B, T, C) < 0)
		for (int c = 0; c < C; c++) {	/* (out of memory: on one thread) */
			double s = 0;
			for (size_t r = 0; r < (size_t)B * T; r++)
				if (mask[r])
					s += dx[(r / (size_t)T) * sx + (r % (size_t)T) * (size_t)ldx + c];
			dtoken[c] += (float)s;
		}
	MIM_PROF_END("mask_token bwd", prof_t_, 0);
}
