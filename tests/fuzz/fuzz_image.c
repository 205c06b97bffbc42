/* fuzz_image.c -- libFuzzer target for image decoding and the transform:
 * the input is one image member as mim-data gets it (JPEGs go through
 * libjpeg directly, everything else through libvips). The first byte picks
 * the output size, the mode and the JPEG shrink, so crops, skips and
 * scaled decoding all see bad data.
 *   make fuzz && cp -r tests/fuzz/image_seeds corpus &&
 *   build/fuzz/fuzz_image -max_total_time=600 -rss_limit_mb=2048 corpus/
 * (seeds: tests/fuzz/image_seeds.py's tiny images of each format, whole
 * and with headers claiming up to 1e12 pixels; the default pixel limit
 * of mim_aug_default applies, so those must be refused, not decoded.
 * Add a few small real JPEGs of each kind, e.g. from the wallpapers.) */
#include <stdint.h>
#include <stdlib.h>

#include "mim.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	struct mim_aug a;
	struct mim_drng rng;
	struct mim_img out;

	if (!ready) {
		if (mim_data_init())
			abort();
		ready = 1;
	}
	if (size < 1)
		return 0;
	mim_aug_default(&a);
	a.size = 8 + (data[0] & 31);
	a.mode = (data[0] >> 5) % 3 == 0 ? MIM_MODE_EVAL : MIM_MODE_TRAIN;
	a.shrink_min = (data[0] & 0x80) ? 1 : 3;
	a.shrink_max = (data[0] & 0x80) ? 8 : 2;
	mim_drng_key(&rng, size, data[0], 0, 0);
	if (mim_image_transform(data + 1, size - 1, &a, &rng, &out, NULL) == 0) {
		volatile unsigned s = 0;
		for (size_t i = 0; i < (size_t)out.w * out.h * out.c; i++)
			s += out.px[i];
		free(out.px);
	}
	return 0;
}
