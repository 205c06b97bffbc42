/* pos.c -- where a stream of mim-data resumes: the mim.pos of a frame, the
 * position after it, which mim-step keeps per rank in its checkpoint
 * (mim.train.data) and `mim-data --resume` starts from:
 *   {"epoch":E,"next":I,"batch":N,"images":M}
 * E, I: the epoch and the index in that epoch's order of the first sample
 * not yet consumed (samples that failed to decode before it included);
 * N: the number of the next frame (mim.batch); M: the images of the frames
 * so far (mim-mask numbers its masks by it). */
#include <jansson.h>
#include <stdio.h>

#include "mim/data.h"
#include "mim/stream.h"

int
mim_data_pos_format(char *buf, size_t n, const struct mim_data_pos *p)
{
	int k = snprintf(buf, n, "{\"epoch\":%ld,\"next\":%ld,\"batch\":%ld,\"images\":%lld}",
	    p->epoch, p->next, p->batch, p->images);
	return k < 0 || (size_t)k >= n ? mim_seterr("position too long") : 0;
}

static int
field(json_t *o, const char *key, long long *v)
{
	json_t *x = json_object_get(o, key);

	if (!json_is_integer(x) || json_integer_value(x) < 0)
		return mim_seterr("\"%s\" is not a count", key);
	*v = json_integer_value(x);
	return 0;
}

int
mim_data_pos_parse(const char *json, int rank, struct mim_data_pos *p)
{
	json_error_t e;
	json_t *all = json_loads(json, 0, &e), *o;
	long long ep = 0, nx = 0, ba = 0, im = 0;
	int rc = -1;

	if (!all) {
		mim_seterr("bad JSON: %s", e.text);
		return -1;
	}
	if (!json_is_array(all)) {
		mim_seterr("not a list of positions");
	} else if (rank < 0 || (size_t)rank >= json_array_size(all)) {
		mim_seterr("no position for rank %d (the run had %zu rank%s)", rank,
		    json_array_size(all), json_array_size(all) == 1 ? "" : "s");
	} else if (!json_is_object(o = json_array_get(all, (size_t)rank))) {
		mim_seterr("position %d is not an object", rank);
	} else if (field(o, "epoch", &ep) == 0 && field(o, "next", &nx) == 0 &&
	    field(o, "batch", &ba) == 0 && field(o, "images", &im) == 0) {
		*p = (struct mim_data_pos){(long)ep, (long)nx, (long)ba, im};
		rc = 0;
	}
	json_decref(all);
	return rc;
}
