/* mim/eval.h -- measuring a classifier (lib/eval/): top-1 and top-5
 * accuracy, per-class accuracy, confusion matrix and mean cross-entropy of
 * logits against labels (mim-eval), and the linear probe of frozen
 * features, MAE's BatchNorm1d(affine=False) + Linear (mim-probe).
 *
 * Dims: N samples held, B a batch, C feature channels, K classes. */
#ifndef MIM_EVAL_H
#define MIM_EVAL_H

#include <stdint.h>
#include <stddef.h>

struct mim_frame;

/* ---- lib/eval/eval.c: accuracy, confusion, loss ------------------------- */

/* Running totals over the batches added so far. */
struct mim_eval {
	int K;			/* classes */
	int64_t n;		/* samples */
	int64_t top1, top5;	/* samples whose label ranks first / in the first min(5,K) */
	double loss;		/* sum of the samples' cross-entropy, in double */
	int64_t *confusion;	/* (K,K): [label][prediction] counts */
};

/* Totals for K >= 1 classes, all zero; NULL with the error set. */
struct mim_eval *mim_eval_new(int K);
void mim_eval_free(struct mim_eval *e);
/* The rank of class y among the K logits of one sample: how many classes
 * come before it when the logits are sorted in descending order, ties
 * broken by the lower class index first (a stable sort of -logits, as
 * numpy's argsort(-l, kind='stable')): #{j: l[j] > l[y]} + #{j < y: l[j]
 * == l[y]}. Rank 0 is the prediction, which is therefore the first
 * maximal logit, as argmax. */
int mim_eval_rank(const float *logits, int K, int y);
/* Add a batch: logits (B,K), labels (B) in [0,K). 0, or -1 with the error
 * set (a label out of range: "sample i: label L is not in [0,K)"; a logit
 * that is not finite), and then nothing of the batch is counted. */
int mim_eval_add(struct mim_eval *e, const float *logits, const int64_t *label, int B);
/* Accuracy of class k in percent (correct top-1 / samples of class k), or
 * NaN when no sample has label k. */
double mim_eval_class_acc(const struct mim_eval *e, int k);
/* The result as one JSON object (malloc'd string, one line, no newline):
 * {"n", "classes", "acc1", "acc5", "topk" (min(5,K)), "loss",
 *  "mean_class_acc", "per_class": [acc or null, ...], "count": [n_k ...],
 *  "confusion": [[...], ...], "names": [...] if names is not NULL}.
 * Accuracies are percentages, as the official code logs them. NULL on
 * error. */
char *mim_eval_json(const struct mim_eval *e, char *const *names);
/* Read a classes file: one name per line, blank lines and surrounding
 * whitespace dropped; exactly K names wanted. A NULL-terminated malloc'd
 * array, or NULL with the error set. mim_names_free frees it. */
char **mim_names_load(const char *path, int K);
void mim_names_free(char **names);

/* ---- lib/eval/probe.c: the linear probe ---------------------------------- */

/* MAE's linear-probe head (main_linprobe.py): head = Sequential(
 * BatchNorm1d(C, affine=False, eps=1e-6), Linear(C, K)), trained on frozen
 * features. Names in the probe file: head.0.running_mean (C),
 * head.0.running_var (C), head.0.num_batches_tracked (I64 []),
 * head.1.weight (K,C), head.1.bias (K), so that PyTorch loads it with
 * load_state_dict; metadata mim.probe holds the settings as JSON. */
struct mim_probe {
	int C, K;
	float eps, momentum;	/* 1e-6; 0.1, nn.BatchNorm1d's */
	float *mean, *var;	/* (C) running statistics, init 0 and 1 */
	float *w, *b;		/* (K,C), (K) */
	int64_t tracked;	/* batches seen in training (num_batches_tracked) */
	char *config;		/* the settings as JSON, or NULL */
};

/* How it is trained: SGD with momentum on the Linear (torch.optim.SGD,
 * dampening 0, no Nesterov), a cosine schedule from lr to 0 over all steps
 * after a linear warmup, seeded shuffling of the features held in memory,
 * batches of `batch` (the short last one of an epoch dropped: BatchNorm
 * needs two samples). */
struct mim_probe_opts {
	int epochs, batch, warmup_epochs;
	double lr, momentum, weight_decay;
	uint64_t seed;
};
void mim_probe_opts_default(struct mim_probe_opts *o);

/* A probe for C features and K classes: Linear weight N(0, 0.01^2)
 * (MAE's trunc_normal_(std=0.01), whose +-2 bounds never bite), bias 0,
 * running mean 0 and var 1, from the seed. NULL with the error set. */
struct mim_probe *mim_probe_new(int C, int K, uint64_t seed);
void mim_probe_free(struct mim_probe *p);

/* The forward in training mode and the gradient of the loss, side by
 * side (the features are frozen: no input gradient):
 *   mu = mean_b x, var = mean_b (x - mu)^2 (biased), per channel
 *   xhat (B,C) = (x - mu) / sqrt(var + eps)
 *   logits (B,K) = xhat w^T + b
 *   loss = mean_b (logsumexp(logits_b) - logits_b[y_b])
 *   dlogits = (softmax(logits) - onehot(y)) / B
 *   dw (K,C) = dlogits^T xhat, db (K) = sum_b dlogits (OVERWRITTEN)
 * x (B,C), y (B) in [0,K), B >= 2. dlogits, logits (B,K) and xhat (B,C)
 * are the caller's buffers, filled; mu, var (C) receive the batch
 * statistics. Returns the loss. */
double mim_probe_train_forward_backward(const struct mim_probe *p, float *dw, float *db,
    float *dlogits, float *xhat, float *logits, float *mu, float *var, const float *x,
    const int64_t *y, int B);
/* The running statistics after a batch with statistics mu, var (biased):
 * running = (1 - m) running + m stat, with the unbiased var * B/(B-1), as
 * nn.BatchNorm1d in training; tracked += 1. */
void mim_probe_track(struct mim_probe *p, const float *mu, const float *var, int B);
/* Inference (BatchNorm in eval mode): logits (B,K) of x (B,C). 0, or -1
 * (out of memory). */
int mim_probe_forward(const struct mim_probe *p, float *logits, const float *x, int B);
/* One torch.optim.SGD update of n floats in place (dampening 0, no
 * Nesterov): d = g + wd w; buf = d on the first step (first != 0), else
 * momentum buf + d; w -= lr buf (lr d when momentum is 0, buf unused). */
void mim_sgd_update(float *w, float *buf, const float *g, size_t n, double lr, double momentum,
    double wd, int first);

/* What each epoch of mim_probe_train did, for the caller to report. */
struct mim_probe_epoch {
	int epoch, epochs;
	int64_t step;
	double loss, acc1, lr;	/* mean train loss and top-1 (%) of the epoch; last lr */
};
/* Train p on N held features x (N,C) with labels y (N) in [0,K): o.epochs
 * passes, each over a permutation of the samples (from o.seed and the
 * epoch). every(ctx, e) after each epoch, if not NULL; a non-zero return
 * stops. 0, or -1 with the error set. */
int mim_probe_train(struct mim_probe *p, const struct mim_probe_opts *o, const float *x,
    const int64_t *y, int64_t N, int (*every)(void *ctx, const struct mim_probe_epoch *e),
    void *ctx);

/* Score p (BatchNorm in eval mode) on N held features x (N,C) with labels
 * y (N): adds them to e (K classes, mim_eval_new(p->K)). 0, or -1 with the
 * error set (a label out of range). */
int mim_probe_score(const struct mim_probe *p, struct mim_eval *e, const float *x,
    const int64_t *y, int64_t N);

/* The probe as a frame (for mim_save) and back. mim_probe_from_frame
 * checks names, dtypes and shapes; C and K come from the tensors. */
struct mim_frame *mim_probe_to_frame(const struct mim_probe *p);
struct mim_probe *mim_probe_from_frame(const struct mim_frame *f);

#endif
