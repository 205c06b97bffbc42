/* relpos.c -- the relative position bias of the SimMIM / BEiT ViT: a
 * table (R,Hh), R = (2G-1)^2 + 3, gathered through an index (N,N) into a
 * bias (Hh,N,N) that is added to every head's attention logits. The last
 * three rows of the table serve the cls token (reference §4.2). */

#include "mim/kern.h"
#include "kern_int.h"

void
relpos_index(int64_t *index, int G)
{
	int N = G * G + 1, R = (2 * G - 1) * (2 * G - 1) + 3;

	for (int p = 0; p < N; p++)
		for (int q = 0; q < N; q++) {
			int64_t ix;
			if (p == 0 && q == 0)
				ix = R - 1;	/* cls to cls */
			else if (p == 0)
				ix = R - 3;	/* cls query to a token */
			else if (q == 0)
				ix = R - 2;	/* a token query to cls */
			else {
				int hp = (p - 1) / G, wp = (p - 1) % G;
				int hq = (q - 1) / G, wq = (q - 1) % G;
				ix = (int64_t)(hp - hq + G - 1) * (2 * G - 1) + (wp - wq + G - 1);
			}
			index[(size_t)p * N + q] = ix;
		}
}

struct rp {
	float *out;
	const float *in;
	const int64_t *index;
	int N, Hh;
};

static void
fwd(void *p, size_t lo, size_t hi)
{
	const struct rp *j = p;
	size_t NN = (size_t)j->N * j->N;

	for (size_t h = lo; h < hi; h++)
		for (size_t i = 0; i < NN; i++)
			j->out[h * NN + i] = j->in[j->index[i] * j->Hh + (int64_t)h];
}

void
relpos_forward(float *bias, const float *table, const int64_t *index, int N, int Hh)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct rp j = {bias, table, index, N, Hh};
	kern_for((size_t)Hh, 1, fwd, &j);
	MIM_PROF_END("relpos fwd", prof_t_, 0);
}

/* one head per job: table column h only, in index order */
static void
bwd(void *p, size_t lo, size_t hi)
{
	const struct rp *j = p;
	size_t NN = (size_t)j->N * j->N;

	for (size_t h = lo; h < hi; h++)
		for (size_t i = 0; i < NN; i++)
			j->out[j->index[i] * j->Hh + (int64_t)h] += j->in[h * NN + i];
}

void
relpos_backward(float *dtable, const float *dbias, const int64_t *index, int N, int Hh)
{
	double prof_t_ = MIM_PROF_BEGIN();
	struct rp j = {dtable, dbias, index, N, Hh};
	kern_for((size_t)Hh, 1, bwd, &j);
	MIM_PROF_END("relpos bwd", prof_t_, 0);
}
