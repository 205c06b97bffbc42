/* registry.c -- the tables of encoder architectures and prediction heads:
 * the built-in ones, and those registered at run time (a plug-in, a unit
 * test). config.c, model.c and lib/ckpt find every per-architecture or
 * per-head answer here, through the ops, never by naming one.
 *
 * The ids are indices: enum mim_arch for the built-in encoders, 0 for the
 * linear head. A registered entry gets the next free id; the tables only
 * grow, so an id stays valid for the life of the process. */

#include <string.h>

#include "arch.h"

#define MAXARCH 16
#define MAXHEAD 16

static const struct mim_arch_ops *archs[MAXARCH] = {
	[MIM_ARCH_VIT] = &mim_vit_ops,
	[MIM_ARCH_SWIN] = &mim_swin_ops,
};
static int narch = MIM_ARCH_SWIN + 1;

static const struct mim_head_ops *heads[MAXHEAD] = {
	&mim_head_linear_ops,
	&mim_head_mlp_ops,
	&mim_head_swinv_ops,
	&mim_head_cls_ops,
};
static int nhead = 4;

const struct mim_arch_ops *
mim_arch_get(int id)
{
	return id >= 0 && id < narch ? archs[id] : NULL;
}

const struct mim_head_ops *
mim_head_get(int id)
{
	return id >= 0 && id < nhead ? heads[id] : NULL;
}

int
mim_arch_find(const char *name)
{
	for (int i = 0; name && i < narch; i++)
		if (strcmp(archs[i]->name, name) == 0)
			return i;
	return -1;
}

int
mim_head_find(const char *name)
{
	for (int i = 0; name && i < nhead; i++)
		if (strcmp(heads[i]->name, name) == 0)
			return i;
	return -1;
}

int
mim_arch_register(const struct mim_arch_ops *ops)
{
	if (!ops || !ops->name || mim_arch_find(ops->name) >= 0)
		return mim_seterr("architecture '%s' is registered already", ops && ops->name ? ops->name : "?");
	if (narch == MAXARCH)
		return mim_seterr("too many architectures (%d)", MAXARCH);
	archs[narch] = ops;
	return narch++;
}

int
mim_head_register(const struct mim_head_ops *ops)
{
	if (!ops || !ops->name || mim_head_find(ops->name) >= 0)
		return mim_seterr("head '%s' is registered already", ops && ops->name ? ops->name : "?");
	if (nhead == MAXHEAD)
		return mim_seterr("too many heads (%d)", MAXHEAD);
	heads[nhead] = ops;
	return nhead++;
}
