/* batch.c -- the items of a loader into what mim-data writes: frames of
 * `batch` items that never span epochs, each saying where the stream
 * resumes after it (mim.pos) and how many images came before it
 * (mim.images); or, for --out, each item as the members of a shard. And
 * the start of a stream resumed where a mim-step checkpoint stopped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mim/data.h"
#include "mim/stream.h"

struct mim_batcher {
	struct mim_item **items;	/* the pending frame */
	int n, batch, drop_last, size;
	long next;			/* number of the next frame (mim.batch) */
	long long images;		/* in the frames so far */
};

struct mim_batcher *
mim_batcher_new(int batch, int drop_last, int size)
{
	struct mim_batcher *b = mim_calloc(1, sizeof *b);

	if (!b)
		return NULL;
	if (!(b->items = mim_calloc((size_t)batch, sizeof *b->items))) {
		free(b);
		return NULL;
	}
	b->batch = batch;
	b->drop_last = drop_last;
	b->size = size;
	return b;
}

void
mim_batcher_free(struct mim_batcher *b)
{
	if (!b)
		return;
	for (int i = 0; i < b->n; i++)
		mim_item_free(b->items[i]);
	free(b->items);
	free(b);
}

long
mim_batcher_next(const struct mim_batcher *b)
{
	return b->next;
}

/* The pending items as a frame into *out (NULL when there are none, or
 * they are a short batch and drop_last), then let go. 0 or -1. */
static int
emit(struct mim_batcher *b, struct mim_frame **out)
{
	int rc = 0;

	*out = NULL;
	if (b->n > 0 && (b->n == b->batch || !b->drop_last)) {
		struct mim_frame *f = mim_batch_frame(b->items, b->n, b->size, b->next++);
		const struct mim_item *last = b->items[b->n - 1];
		struct mim_data_pos pos = {last->epoch, last->index + 1, b->next, b->images + b->n};
		char pj[160], nb[32];
		snprintf(nb, sizeof nb, "%lld", b->images);
		if (!f || mim_data_pos_format(pj, sizeof pj, &pos) < 0 ||
		    mim_meta_set(f, "mim.pos", pj) < 0 || mim_meta_set(f, "mim.images", nb) < 0) {
			mim_frame_free(f);
			f = NULL;
			rc = -1;
		}
		b->images += b->n;
		*out = f;
	}
	for (int i = 0; i < b->n; i++)
		mim_item_free(b->items[i]);
	b->n = 0;
	return rc;
}

int
mim_batcher_add(struct mim_batcher *b, struct mim_item *it, struct mim_frame *out[2])
{
	int k = 0;

	out[0] = out[1] = NULL;
	/* batches never span epochs */
	if (b->n > 0 && b->items[0]->epoch != it->epoch) {
		if (emit(b, &out[k]) < 0) {
			mim_item_free(it);
			return -1;
		}
		k += out[k] != NULL;
	}
	b->items[b->n++] = it;
	if (b->n == b->batch) {
		if (emit(b, &out[k]) < 0)
			return -1;
		k += out[k] != NULL;
	}
	return k;
}

int
mim_batcher_flush(struct mim_batcher *b, struct mim_frame **out)
{
	return emit(b, out) < 0 ? -1 : *out != NULL;
}

int
mim_batcher_resume(struct mim_batcher *b, struct mim_loader *L, const char *ckpt, int rank,
    struct mim_data_pos *pos)
{
	struct mim_frame *f = mim_load_header(ckpt);

	if (!f)
		return -1;
	const char *data = mim_meta_get(f, "mim.train.data");
	if (!data && !mim_meta_get(f, "mim.train.step")) {
		mim_frame_free(f);
		return 0;	/* nothing trained: from the start */
	}
	if (!data) {
		mim_frame_free(f);
		return mim_seterr("%s: no data position (mim.train.data): its run read frames that "
		    "did not say where they were (not from mim-data?), or stopped between two state "
		    "checks under mpirun; replay the stream instead (leave out --resume)", ckpt);
	}
	int bad = mim_data_pos_parse(data, rank, pos) < 0;
	mim_frame_free(f);
	if (bad)
		return mim_preferr("%s: mim.train.data", ckpt);
	if (mim_loader_seek(L, pos->epoch, pos->next) < 0)
		return mim_preferr("%s", ckpt);
	b->next = pos->batch;
	b->images = pos->images;
	return 1;
}

int
mim_tarw_add_item(struct mim_tarw *w, const struct mim_loader *L, const struct mim_item *it)
{
	const struct mim_sample *s = it->s;
	char cls[32];

	if (mim_tarw_add(w, s->key, it->encext, it->enc, it->nenc))
		return -1;
	/* the image members are replaced by the processed one */
	for (int i = 0; i < s->n; i++)
		if (!mim_loader_is_image(L, s->m[i].ext) &&
		    mim_tarw_add(w, s->key, s->m[i].ext, s->m[i].data, s->m[i].size))
			return -1;
	if (s->has_label && !mim_sample_member(s, "cls")) {
		int k = snprintf(cls, sizeof cls, "%lld", (long long)s->label);
		if (mim_tarw_add(w, s->key, "cls", cls, (size_t)k))
			return -1;
	}
	return mim_tarw_end_sample(w);
}
