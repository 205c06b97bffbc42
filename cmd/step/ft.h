/* ft.h -- mim-step's fine-tuning flags (cmd/step/ft.c): the options of a
 * classifier's run (lib/train: mim_train_batch_cls, struct mim_ftopt),
 * kept out of mim-step.c, which stays a recipe. */
#ifndef MIM_STEP_FT_H
#define MIM_STEP_FT_H

#include <getopt.h>

#include "mim/train.h"

/* The help lines of the fine-tuning flags. */
extern const char ft_usage[];
/* base (mim-step's options, {0}-terminated) followed by the fine-tuning
 * ones: the table to hand getopt. */
const struct option *ft_options(const struct option *base);
/* Option c (a code of ft_options' own) with its argument into o; marks
 * r->ft_given. Any other code: the usage error "unknown option". */
void ft_flag(int c, const char *arg, struct mim_trainopt *o, struct mim_run *r);

#endif
