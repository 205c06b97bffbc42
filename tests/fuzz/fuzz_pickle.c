/* fuzz_pickle.c -- libFuzzer target for the safe unpickler: unpickle the
 * input (and the rest after the first STOP, as the legacy format does),
 * then walk what it built (a bounded breadth-first walk, as the values may
 * form cycles) through the public accessors.
 *   make fuzz && build/fuzz/fuzz_pickle -jobs=1 -max_total_time=600 \
 *       -dict=tests/fuzz/pickle.dict CORPUS tests/fuzz/pickle_seeds */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mim.h"

static void
walk(const struct mim_pk *root)
{
	const struct mim_pk *q[4096];
	size_t head = 0, tail = 0;
	char buf[128];
	volatile size_t sink = 0;

	q[tail++] = root;
	while (head < tail) {
		const struct mim_pk *v = q[head++];
		sink += strlen(mim_pk_describe(v, buf, sizeof buf));
		size_t n;
		struct mim_pk *const *kv = mim_pk_pairs(v, &n);
		if (kv)
			sink += mim_pk_get(v, "model") != NULL;
		for (size_t i = 0; kv && i < 2 * n && tail < 4096; i++)
			q[tail++] = kv[i];
		switch (v->kind) {
		case MIM_PK_TUPLE:
		case MIM_PK_LIST:
		case MIM_PK_SET:
			for (size_t i = 0; i < v->n && tail < 4096; i++)
				q[tail++] = v->u.v[i];
			break;
		case MIM_PK_OBJECT:
			if (v->u.obj->cls && tail < 4096)
				q[tail++] = v->u.obj->cls;
			if (v->u.obj->args && tail < 4096)
				q[tail++] = v->u.obj->args;
			if (v->u.obj->state && tail < 4096)
				q[tail++] = v->u.obj->state;
			if (v->u.obj->list && tail < 4096)
				q[tail++] = v->u.obj->list;
			break;
		case MIM_PK_TENSOR:
			sink += (size_t)v->u.t->storage->u.st->numel;
			break;
		case MIM_PK_STR:
		case MIM_PK_BYTES:
		case MIM_PK_BIGINT:
		case MIM_PK_GLOBAL:
			sink += v->n ? (unsigned char)v->u.s[v->n - 1] : 0;
			break;
		default:
			break;
		}
	}
	(void)sink;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t pos = 0;

	/* up to three pickles back to back */
	for (int k = 0; k < 3 && pos < size; k++) {
		size_t used = 0;
		struct mim_pickle *p = mim_unpickle(data + pos, size - pos, &used);
		if (!p)
			break;
		walk(mim_pickle_root(p));
		size_t ns;
		struct mim_pk *const *st = mim_pickle_storages(p, &ns);
		for (size_t i = 0; i < ns; i++)
			walk(st[i]);
		mim_pickle_free(p);
		pos += used;
	}
	return 0;
}
