/* fuzz_pth.c -- libFuzzer target for the whole torch.save reader: zip
 * (libarchive, central directory, storages) and legacy (five pickles and
 * raw storages), state dict lookup, strided gathers.
 *   make fuzz && build/fuzz/fuzz_pth -jobs=1 -max_total_time=600 CORPUS tests/ref/pth */
#include <stdint.h>
#include <stdlib.h>

#include "mim.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mim_ckpt_info info;
	struct mim_frame *f = mim_pth_parse(data, size, "fuzz", &info);

	if (f) {
		volatile double s = 0;
		for (int i = 0; i < f->n; i++) {
			int64_t n = mim_tensor_numel(&f->t[i]);
			if (n)
				s += mim_tensor_get(&f->t[i], n - 1);
		}
		mim_frame_free(f);
	}
	return 0;
}
