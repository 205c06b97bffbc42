/* eval.c -- accuracy, confusion matrix and loss of logits against labels.
 *
 * Top-k as the official code's accuracy() (timm): a sample counts when its
 * label is among the k largest logits; k = 5 becomes k = K when K < 5.
 * Ties: the order of torch.topk among equal values is not specified, so we
 * fix one, the stable descending sort (mim_eval_rank). The loss is
 * nn.CrossEntropyLoss (mean over samples), in double. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mim/stream.h"
#include "mim/eval.h"

struct mim_eval *
mim_eval_new(int K)
{
	if (K < 1)
		return mim_seterr("%d classes: want at least 1", K), NULL;
	struct mim_eval *e = mim_calloc(1, sizeof *e);
	if (!e)
		return NULL;
	e->K = K;
	if (!(e->confusion = mim_calloc((size_t)K * K, sizeof *e->confusion))) {
		free(e);
		return NULL;
	}
	return e;
}

void
mim_eval_free(struct mim_eval *e)
{
	if (e) {
		free(e->confusion);
		free(e);
	}
}

int
mim_eval_rank(const float *logits, int K, int y)
{
	int r = 0;

	for (int j = 0; j < K; j++)
		r += logits[j] > logits[y] || (j < y && logits[j] == logits[y]);
	return r;
}

int
mim_eval_add(struct mim_eval *e, const float *logits, const int64_t *label, int B)
{
	int K = e->K, k5 = K < 5 ? K : 5;

	/* check the whole batch first: nothing of a bad one is counted */
	for (int b = 0; b < B; b++) {
		if (label[b] < 0 || label[b] >= K)
			return mim_seterr("sample %d: label %lld is not in [0,%d)", b,
			    (long long)label[b], K);
		for (int j = 0; j < K; j++)
			if (!isfinite(logits[(size_t)b * K + j]))
				return mim_seterr("sample %d: logit %d is %g", b, j,
				    logits[(size_t)b * K + j]);
	}
	for (int b = 0; b < B; b++) {
		const float *l = logits + (size_t)b * K;
		int y = (int)label[b], r = mim_eval_rank(l, K, y), pred = 0;
		for (int j = 1; j < K; j++)
			if (l[j] > l[pred])
				pred = j;
		e->top1 += r == 0;
		e->top5 += r < k5;
		e->confusion[(size_t)y * K + pred]++;
		/* cross-entropy: logsumexp - l[y], shifted by the max */
		double m = l[pred], s = 0;
		for (int j = 0; j < K; j++)
			s += exp((double)l[j] - m);
		e->loss += m + log(s) - l[y];
	}
	e->n += B;
	return 0;
}

double
mim_eval_class_acc(const struct mim_eval *e, int k)
{
	int64_t n = 0;

	for (int j = 0; j < e->K; j++)
		n += e->confusion[(size_t)k * e->K + j];
	return n ? 100.0 * (double)e->confusion[(size_t)k * e->K + k] / (double)n : NAN;
}

char *
mim_eval_json(const struct mim_eval *e, char *const *names)
{
	int K = e->K;
	double n = e->n ? (double)e->n : NAN, msum = 0;
	int mcount = 0;
	json_t *o = json_object(), *pc = json_array(), *cnt = json_array(), *cm = json_array();

	for (int k = 0; k < K; k++) {
		double a = mim_eval_class_acc(e, k);
		json_t *row = json_array();
		int64_t nk = 0;
		for (int j = 0; j < K; j++) {
			nk += e->confusion[(size_t)k * K + j];
			json_array_append_new(row, json_integer(e->confusion[(size_t)k * K + j]));
		}
		json_array_append_new(cm, row);
		json_array_append_new(cnt, json_integer(nk));
		json_array_append_new(pc, isnan(a) ? json_null() : json_real(a));
		if (!isnan(a))
			msum += a, mcount++;
	}
	json_object_set_new(o, "n", json_integer(e->n));
	json_object_set_new(o, "classes", json_integer(K));
	json_object_set_new(o, "acc1", json_real(100.0 * (double)e->top1 / n));
	json_object_set_new(o, "acc5", json_real(100.0 * (double)e->top5 / n));
	json_object_set_new(o, "topk", json_integer(K < 5 ? K : 5));
	json_object_set_new(o, "loss", json_real(e->loss / n));
	json_object_set_new(o, "mean_class_acc", mcount ? json_real(msum / mcount) : json_null());
	json_object_set_new(o, "per_class", pc);
	json_object_set_new(o, "count", cnt);
	json_object_set_new(o, "confusion", cm);
	if (names) {
		json_t *nm = json_array();
		for (int k = 0; k < K; k++)
			json_array_append_new(nm, json_string(names[k]));
		json_object_set_new(o, "names", nm);
	}
	char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
	json_decref(o);
	if (!s)
		mim_seterr("out of memory");
	return s;
}

void
mim_names_free(char **names)
{
	if (names) {
		for (char **p = names; *p; p++)
			free(*p);
		free(names);
	}
}

char **
mim_names_load(const char *path, int K)
{
	FILE *fp = fopen(path, "r");
	char **names = NULL, *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int n = 0;

	if (!fp)
		return mim_seterr("%s: %s", path, strerror(errno)), NULL;
	if (!(names = mim_calloc((size_t)K + 1, sizeof *names)))
		goto fail;
	while ((len = getline(&line, &cap, fp)) >= 0) {
		char *s = line;
		while (len && isspace((unsigned char)s[len - 1]))
			s[--len] = 0;
		while (isspace((unsigned char)*s))
			s++;
		if (!*s)
			continue;
		if (n == K) {
			mim_seterr("%s: more than %d names (one per class)", path, K);
			goto fail;
		}
		if (!(names[n++] = mim_strdup(s)))
			goto fail;
	}
	if (ferror(fp)) {
		mim_seterr("%s: %s", path, strerror(errno));
		goto fail;
	}
	if (n != K) {
		mim_seterr("%s: %d names, want %d (one per class)", path, n, K);
		goto fail;
	}
	free(line);
	fclose(fp);
	return names;
fail:
	free(line);
	fclose(fp);
	mim_names_free(names);
	return NULL;
}
