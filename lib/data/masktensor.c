/* masktensor.c -- a stream's `mask` tensor as 0/1 bytes, whatever integer
 * type it came in: mim-mask writes U8, PyTorch and NumPy hand over I64 or
 * BOOL, and every tool must take what the one before it wrote. */
#include <stddef.h>
#include <stdint.h>

#include "mim/mask.h"
#include "mim/stream.h"

int
mim_mask_check(const struct mim_tensor *t)
{
	switch (t->dtype) {
	case MIM_U8: case MIM_I8: case MIM_I16: case MIM_I32: case MIM_I64: case MIM_BOOL:
		return 0;
	default:
		return mim_seterr("tensor '%s': dtype %s, want an integer or BOOL mask (U8, I8, I16, "
		    "I32, I64 or BOOL; nonzero = masked)", t->name, mim_dtype_name(t->dtype));
	}
}

int
mim_mask_bytes(const struct mim_tensor *t, uint8_t *out)
{
	size_t n = (size_t)mim_tensor_numel(t);

	if (mim_mask_check(t) < 0)
		return -1;
	if (mim_dtype_size(t->dtype) == 1) {
		const uint8_t *p = t->data;
		for (size_t i = 0; i < n; i++)
			out[i] = p[i] != 0;
	} else {
		/* (a nonzero integer is a nonzero double, even past 2^53) */
		for (size_t i = 0; i < n; i++)
			out[i] = mim_tensor_get(t, (int64_t)i) != 0;
	}
	return 0;
}
