/* clsconfig.c -- the config of a classifier from a pretraining one
 * (mim_config_classifier): the fine-tuning model's keys (the
 * architecture's ft_config hook, as export --finetune) and the "cls" head.
 * A file of its own below classifier.c and infer.c, which both use it
 * (lib/ files must not depend on each other in a loop). */

#include <math.h>

#include "mim/ckpt.h"
#include "../model/arch.h"

int
mim_config_classifier(struct mim_config *c, const struct mim_cls_opt *o)
{
	struct mim_config t = *c;
	struct mim_export_opt ex = o->ex;
	const struct mim_arch_ops *arch = mim_arch_get(c->arch);

	if (mim_is_classifier(c))
		return mim_seterr("already a classifier (num_classes %d)", c->num_classes);
	if (o->num_classes < 1)
		return mim_seterr("the number of classes must be >= 1");
	ex.finetune = 1;
	if (ex.img_size)
		t.img_size = ex.img_size;
	if (arch->ft_config && arch->ft_config(&t, &ex) < 0)
		return -1;
	t.head = mim_head_find("cls");
	mim_head_cls_ops.defaults(&t);
	t.num_classes = o->num_classes;
	if (!isnan(o->init_scale))
		t.init_scale = o->init_scale;
	if (o->drop_path_rate >= 0)
		t.drop_path_rate = o->drop_path_rate;
	if (mim_config_check(&t) < 0)
		return mim_preferr("classifier");
	*c = t;
	return 0;
}
