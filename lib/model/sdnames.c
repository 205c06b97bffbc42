/* sdnames.c -- reading a state dict by its names and shapes: what the
 * architectures' infer hooks use to tell a config from the weights
 * (lib/ckpt/infer.c). The bottom layer of lib/model, like param.c. */

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "arch.h"

const struct mim_tensor *
mim_sd_get(const struct mim_frame *sd, const char *fmt, int a, int b)
{
	char name[256];

	snprintf(name, sizeof name, fmt, a, b);
	return mim_frame_get(sd, name);
}

int
mim_sd_count(const struct mim_frame *sd, const char *fmt, int stage)
{
	int n = 0;

	while (n < 100000 && (stage < 0 ? mim_sd_get(sd, fmt, n, 0) : mim_sd_get(sd, fmt, stage, n)))
		n++;
	return n;
}

int
mim_sd_table_side(int64_t rows, int extra)
{
	int64_t r = rows - extra;
	int s = (int)llround(sqrt((double)(r > 0 ? r : 0)));

	return r > 0 && (int64_t)s * s == r && s % 2 == 1 ? s : -1;
}

int
mim_sd_isqrt(int64_t v)
{
	int s = (int)llround(sqrt((double)v));
	return v > 0 && (int64_t)s * s == v ? s : -1;
}

int
mim_ends_with(const char *s, const char *suf)
{
	size_t n = strlen(s), k = strlen(suf);
	return n >= k && strcmp(s + n - k, suf) == 0;
}
