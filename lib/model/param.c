/* param.c -- the parameter table of a model: what an architecture or a
 * head registers (mim_addp) and what anyone looks up by official name.
 * The bottom layer of lib/model: it calls nothing above it (arch.h). */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "arch.h"

int
mim_addp(struct mim_model *m, int ndim, int64_t d0, int64_t d1, int64_t d2,
    int64_t d3, const char *fmt, ...)
{
	char name[256];
	va_list ap;
	int64_t d[4] = {d0, d1, d2, d3};

	va_start(ap, fmt);
	vsnprintf(name, sizeof name, fmt, ap);
	va_end(ap);
	if (ndim < 1 || ndim > 4)
		return mim_seterr("parameter '%s': bad rank %d", name, ndim);
	struct mim_param *np = mim_realloc(m->p, (size_t)(m->np + 1) * sizeof *np);
	if (!np)
		return -1;
	m->p = np;
	struct mim_param *p = &m->p[m->np];
	memset(p, 0, sizeof *p);
	if (!(p->name = mim_strdup(mim_pname(m, name))))
		return -1;
	p->ndim = ndim;
	p->numel = 1;
	for (int i = 0; i < ndim; i++) {
		if (d[i] < 1 || d[i] > (int64_t)1 << 31)
			return mim_seterr("parameter '%s': bad dimension %lld", name, (long long)d[i]);
		p->shape[i] = d[i];
		p->numel *= (size_t)d[i];
	}
	p->off = m->nw;
	m->nw += p->numel;
	return m->np++;
}

const char *
mim_pname(const struct mim_model *m, const char *name)
{
	if (m->cfg.num_classes > 0 && strncmp(name, "encoder.", 8) == 0)
		return name + 8;
	return name;
}

struct mim_param *
mim_model_param(const struct mim_model *m, const char *name)
{
	name = mim_pname(m, name);
	for (int i = 0; i < m->np; i++)
		if (strcmp(m->p[i].name, name) == 0)
			return &m->p[i];
	return NULL;
}
