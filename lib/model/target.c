/* target.c -- what a head predicts, in one place: the channels of each
 * predicted pixel and the resolution of the prediction, as functions of the
 * config. Every head sizes its output by these, mim_pred_shape answers
 * from them, and the loss reads the target at that resolution.
 *
 * Today the only target is SimMIM's: the 3 normalised colour channels of
 * each pixel, at the input resolution (the paper's "1x" prediction). A
 * head's last layer therefore has (s/d)^2 * C outputs per latent position
 * (s = encoder_stride, d = mim_pred_div, C = mim_pred_channels), shuffled
 * by s/d into a (C, H/d, W/d) prediction.
 *
 * A leaf of lib/model: it calls nothing, so heads may call it (arch.h). */

#include "arch.h"

int
mim_pred_channels(const struct mim_config *c)
{
	(void)c;
	return 3;	/* the official decoder: encoder_stride**2 * 3 outputs */
}

int
mim_pred_div(const struct mim_config *c)
{
	(void)c;
	return 1;
}
