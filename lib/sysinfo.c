/* sysinfo.c -- the machine under the products in one JSON line, for
 * mim-info --system, mim-step's log and the bench's machine record: a
 * figure without the CPU and the kernels that made it says little. */
#include <jansson.h>
#include <stdlib.h>

#include "mim/gemm.h"
#include "mim/pool.h"
#include "onednn.h"

char *
mim_system_json(void)
{
	const struct mim_cpu *c = mim_cpu();
	const struct mim_blas *b = mim_blas();
	json_t *o = json_object(), *f = json_object(), *bl = json_object(), *dn = json_object();

	if (!o || !f || !bl || !dn) {
		json_decref(o);
		json_decref(f);
		json_decref(bl);
		json_decref(dn);
		return NULL;
	}
	json_object_set_new(o, "cpu", json_string(c->name));
	json_object_set_new(o, "family", json_integer(c->family));
	json_object_set_new(o, "model", json_integer(c->model));
	json_object_set_new(f, "fma", json_boolean(c->fma));
	json_object_set_new(f, "avx2", json_boolean(c->avx2));
	json_object_set_new(f, "avx512f", json_boolean(c->avx512f));
	json_object_set_new(f, "avx512_bf16", json_boolean(c->avx512_bf16));
	json_object_set_new(f, "amx_bf16", json_boolean(c->amx_bf16));
	json_object_set_new(o, "flags", f);
	json_object_set_new(bl, "core", json_string(b->core));
	json_object_set_new(bl, "chosen", json_string(b->chosen));
	json_object_set_new(bl, "corrected", json_boolean(b->corrected));
	json_object_set_new(bl, "coretype_env", json_boolean(b->user));
	json_object_set_new(bl, "config", json_string(b->config));
	json_object_set_new(o, "openblas", bl);
	json_object_set_new(dn, "version", json_string(dnn_version()));
	json_object_set_new(dn, "isa", json_string(dnn_isa()));
	json_object_set_new(dn, "bf16", json_boolean(dnn_bf16()));
	json_object_set_new(o, "onednn", dn);
	json_object_set_new(o, "sgemm", json_string(mim_sgemm_name(mim_gemm_sgemm())));
	json_object_set_new(o, "bf16_linear", json_string(mim_gemm_amx() ? "amx" : "onednn"));
	json_object_set_new(o, "threads", json_integer(mim_threads()));
	json_object_set_new(o, "precision", json_string(mim_precision_name(mim_gemm_precision())));
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return s;
}
