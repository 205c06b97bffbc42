/* run.c -- a training run: checkpoint, frames, steps, saves, log and
 * progress, stops, and the agreement protocol of data-parallel ranks
 * (see include/mim/train.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "mim/gemm.h"
#include "mim/mask.h"
#include "mim/prof.h"
#include "mim/eval.h"
#include "mim/train.h"

#define BAD 1000	/* an agreement's verdict: above any signal number */

/* ---- collectives: one process when a hook is NULL ------------------------ */

static int
dmax(struct mim_run *r, int v)
{
	return r->dp.max ? r->dp.max(v) : v;
}

static double
dsum(struct mim_run *r, double x)
{
	return r->dp.sum ? r->dp.sum(x) : x;
}

static void
dsum_floats(struct mim_run *r, float *x, size_t n)
{
	if (r->dp.sum_floats)
		r->dp.sum_floats(x, n);
}

static void
dbcast(struct mim_run *r, void *buf, size_t n)
{
	if (r->dp.bcast)
		r->dp.bcast(buf, n);
}

static int
dsame(struct mim_run *r, uint64_t v)
{
	return r->dp.same ? r->dp.same(v) : 1;
}

static int
stopped(const struct mim_run *r)
{
	return r->stop ? *r->stop : 0;
}

static void __attribute__((format(printf, 3, 4)))
say(struct mim_run *r, enum mim_say kind, const char *fmt, ...)
{
	char text[1400];
	va_list ap;

	if (!r->say)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	r->say(r->say_ctx, kind, text);
}

/* End the progress line, if there is one. */
static void
end_line(struct mim_run *r)
{
	if (r->progress == MIM_PROGRESS_REDRAW && r->say)
		r->say(r->say_ctx, MIM_SAY_EOL, "");
}

/* ---- the agreement ------------------------------------------------------- */

/* Every rank passes its problem (msg) or the signal that asks it to stop;
 * all get the worst: >= BAD when a rank failed, else the signal or 0. */
static int
agree(struct mim_run *r, const char *msg, int sig)
{
	int st = dmax(r, msg ? BAD : sig);

	if (st >= BAD)
		r->told = 1;
	return st;
}

/* A failure found before the other ranks could hear of it: tell them. */
static void
tell(struct mim_run *r)
{
	if (!r->told)
		agree(r, "", 0);
}

int
mim_run_together(struct mim_run *r, const char *msg)
{
	char m[1200];

	if (msg)
		snprintf(m, sizeof m, "%s", msg);	/* may be mim_errmsg() */
	if (agree(r, msg, 0) < BAD)
		return 0;
	if (msg)
		say(r, MIM_SAY_MSG, "%s", m);
	return MIM_RUN_FAILED;
}

/* The reduce hook of struct mim_train: the step's gradient and loss
 * become their means over the ranks. An agreement first, so that a rank
 * that failed in its forward or backward stops everyone here. */
static int
reduce(void *ctx, float *g, size_t n, double *loss)
{
	struct mim_run *r = ctx;

	if (agree(r, NULL, 0) >= BAD)
		return mim_seterr("stopping with another rank");
	*loss = dsum(r, *loss) / r->dp.world;
	dsum_floats(r, g, n);
	const float w = (float)r->dp.world;
	for (size_t i = 0; i < n; i++)
		g[i] /= w;
	return 0;
}

/* ---- the checkpoint ---------------------------------------------------------- */

/* A killed save leaves FILE.tmp.PID behind: remove those of dead PIDs. */
static void
clean_temps(const char *ckpt)
{
	char *d1 = strdup(ckpt), *d2 = strdup(ckpt);
	if (!d1 || !d2)
		goto done;
	const char *dir = dirname(d1), *base = basename(d2);
	size_t bl = strlen(base);
	DIR *dp = opendir(dir);
	if (!dp)
		goto done;
	struct dirent *e;
	while ((e = readdir(dp))) {
		const char *n = e->d_name;
		if (strncmp(n, base, bl) != 0 || strncmp(n + bl, ".tmp.", 5) != 0)
			continue;
		char *end;
		long pid = strtol(n + bl + 5, &end, 10);
		if (*end || pid <= 0 || (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
			continue;
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, n);
		unlink(path);
	}
	closedir(dp);
done:
	free(d1);
	free(d2);
}

/* ---- the checkpoint's folder and lock (rank 0; see mim_run_load) -------------- */

/* The folder of path, for messages. */
static void
folder(const char *path, char *buf, size_t n)
{
	const char *sl = strrchr(path, '/');

	if (!sl)
		snprintf(buf, n, ".");
	else
		snprintf(buf, n, "%.*s", sl == path ? 1 : (int)(sl - path), path);
}

/* Create and remove the save's own temporary file: what a save needs of
 * the folder, tested for real (root passes access(W_OK) on a read-only
 * mount or an immutable folder). 0, or -1 with the error set. */
static int
probe_folder(const struct mim_run *r)
{
	char tmp[4200], dir[4200];
	int fd;

	snprintf(tmp, sizeof tmp, "%s.tmp.%ld", r->ckpt, (long)getpid());
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) >= 0) {
		close(fd);
		unlink(tmp);
		return 0;
	}
	int e = errno;
	folder(r->ckpt, dir, sizeof dir);
	return mim_seterr("%s: cannot save the checkpoint in this folder (%s); nothing trained",
	    dir, strerror(e));
}

/* The holder of the lock on fd, for the message of a refused run. */
static int
refuse(const struct mim_run *r, int fd, const char *path)
{
	char buf[32] = "";
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	long pid = n > 0 ? strtol(buf, NULL, 10) : 0;

	close(fd);
	if (pid > 0)
		return mim_seterr("%s: in use by another run (pid %ld holds %s); nothing trained",
		    r->ckpt, pid, path);
	return mim_seterr("%s: in use by another run (%s is locked); nothing trained", r->ckpt, path);
}

/* Take FILE.lock (flock, exclusive, not waiting) and write our pid into
 * it. The holder removes the file before it lets go (mim_run_free), so
 * the file we locked must still be the one at the path: otherwise we
 * locked a removed file, and take the new one. 0, or -1 with the error
 * set. */
static int
lock_ckpt(struct mim_run *r)
{
	size_t n = strlen(r->ckpt) + 8;
	char *path = mim_malloc(n);

	if (!path)
		return -1;
	snprintf(path, n, "%s.lock", r->ckpt);
	for (int tries = 0; tries < 1000; tries++) {
		struct stat a, b;
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0) {
			mim_seterr("%s: %s", path, strerror(errno));
			break;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			int e = errno;
			if (e == EWOULDBLOCK) {
				refuse(r, fd, path);	/* (closes fd) */
			} else {
				mim_seterr("%s: flock: %s", path, strerror(e));
				close(fd);
			}
			break;
		}
		if (fstat(fd, &a) < 0 || stat(path, &b) < 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
			close(fd);	/* removed by its holder as we opened it */
			continue;
		}
		char pid[32];
		int k = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
		if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)k, 0) != k) {
			mim_seterr("%s: %s", path, strerror(errno));
			close(fd);
			break;
		}
		r->lockfd = fd;
		r->lockpath = path;
		return 0;
	}
	free(path);
	return -1;
}

static void
unlock_ckpt(struct mim_run *r)
{
	if (!r->lockpath)
		return;
	unlink(r->lockpath);	/* (before letting go: see lock_ckpt) */
	close(r->lockfd);
	free(r->lockpath);
	r->lockpath = NULL;
}

/* Rank 0: read the checkpoint; head = {resume, done (1, or 2: failed),
 * config length}. */
static int
load_rank0(struct mim_run *r, char **js, long long head[3])
{
	char msg[1200];
	int st;

	/* (a checkpoint that is not there has nothing to protect: the load
	 * says so) */
	int guard = !r->grad_only && access(r->ckpt, F_OK) == 0;
	if (guard && (probe_folder(r) < 0 || lock_ckpt(r) < 0))
		snprintf(msg, sizeof msg, "%s", mim_errmsg());
	else if (!(r->cf = mim_load(r->ckpt)))
		snprintf(msg, sizeof msg, "%s (make a checkpoint with mim-ckpt init)", mim_errmsg());
	else if (!(r->model = mim_model_from_frame(r->cf)))
		snprintf(msg, sizeof msg, "%s: %s", r->ckpt, mim_errmsg());
	else if (r->dp.world > 1 && !(*js = mim_config_json(&r->model->cfg)))
		snprintf(msg, sizeof msg, "%s", mim_errmsg());
	if ((st = mim_run_together(r, r->model && (r->dp.world == 1 || *js) ? NULL : msg)))
		return st;
	head[0] = mim_train_is_ckpt(r->cf);
	if (head[0] && !r->grad_only) {
		const char *s = mim_meta_get(r->cf, "mim.train.step");
		long long at = strtoll(s, NULL, 10);
		if (r->extend && at > r->steps) {	/* (head[1] 2: failed, said) */
			say(r, MIM_SAY_MSG, "%s: at step %s: --extend to %lld steps would be fewer "
			    "than done", r->ckpt, s, (long long)r->steps);
			head[1] = 2;
		} else if ((head[1] = at >= r->steps)) {
			say(r, MIM_SAY_MSG, "%s: already at step %s of %lld", r->ckpt, s,
			    (long long)r->steps);
		}
	}
	head[2] = *js ? (long long)strlen(*js) + 1 : 0;
	return 0;
}

/* Rank 0's model (config js of n bytes, then the weights) to the others. */
static int
share_model(struct mim_run *r, char *js, size_t n)
{
	char msg[1200];
	int st;

	if (r->dp.rank > 0 && !(js = mim_malloc(n)))
		snprintf(msg, sizeof msg, "%s", mim_errmsg());
	if ((st = mim_run_together(r, js ? NULL : msg)))
		return st;
	dbcast(r, js, n);
	if (r->dp.rank > 0) {
		struct mim_config c;
		if (mim_config_parse(&c, js) < 0 || !(r->model = mim_model_new(&c)))
			snprintf(msg, sizeof msg, "%s", mim_errmsg());
		st = mim_run_together(r, r->model ? NULL : msg);
	} else {
		st = mim_run_together(r, NULL);
	}
	free(js);
	if (!st)
		dbcast(r, r->model->w, r->model->nw * sizeof(float));
	if (!st && r->model->centres)	/* the clusters target's colours */
		dbcast(r, r->model->centres, (size_t)r->model->cfg.target_clusters * 3 * sizeof(float));
	return st;
}

int
mim_run_load(struct mim_run *r)
{
	char *js = NULL;
	long long head[3] = {0, 0, 0};	/* resume, done, config length: load_rank0 */
	int st;

	if (r->dp.world < 1)
		r->dp.world = 1;
	if (r->dp.rank == 0)
		st = load_rank0(r, &js, head);
	else
		st = mim_run_together(r, NULL);
	if (st) {
		free(js);
		return st;
	}
	dbcast(r, head, sizeof head);
	r->resume = (int)head[0];
	if (head[1]) {
		free(js);
		return head[1] == 2 ? MIM_RUN_FAILED : MIM_RUN_DONE;
	}
	if (r->dp.world > 1 && (st = share_model(r, js, (size_t)head[2])))
		return st;
	if (!r->grad_only && r->dp.rank == 0)
		clean_temps(r->ckpt);
	return 0;
}

/* ---- frames -------------------------------------------------------------------- */

int
mim_run_open(struct mim_run *r, const char *path)
{
	int std = strcmp(path, "-") == 0;

	r->fd = std ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
	if (r->fd < 0)
		snprintf(r->msg, sizeof r->msg, "%s: %s", path, strerror(errno));
	else if (!(r->reader = mim_reader_fdopen(r->fd, std ? "<stdin>" : path)))
		snprintf(r->msg, sizeof r->msg, "%s", mim_errmsg());
	r->input = r->reader ? mim_reader_name(r->reader) : path;
	r->own_fd = !std;
	return mim_run_together(r, r->reader ? NULL : r->msg);
}

/* Close the input (and the fd, unless stdin). */
static void
close_input(struct mim_run *r)
{
	mim_reader_close(r->reader);
	r->reader = NULL;
	if (r->own_fd && r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	r->own_fd = 0;
}

static int
next(struct mim_run *r, struct mim_frame **f)
{
	return r->next ? r->next(r->next_ctx, f) : mim_read_frame(r->reader, f);
}

/* A classifier's frame: its 'label' (B) as int64 in *buf of *cap, each in
 * [0, K). 0, or -1 with the error set. */
static int
check_labels(const struct mim_frame *f, const char *in, long k, int B, int K,
    const int64_t **label, int64_t **buf, size_t *cap)
{
	const struct mim_tensor *t = mim_frame_get(f, "label");
	int64_t sh[1] = {B};
	char why[1024];

	if (!t)
		return mim_seterr("%s: frame %ld: no tensor 'label': a classifier trains on labelled "
		    "frames (mim-data on shards with .cls members)", in, k);
	enum mim_dtype d = t->dtype;
	if (d != MIM_I64 && d != MIM_I32 && d != MIM_I16 && d != MIM_I8 && d != MIM_U8)
		return mim_seterr("%s: frame %ld: tensor 'label': dtype %s, want I64", in, k,
		    mim_dtype_name(d));
	if (!mim_frame_want(f, "label", -1, 1, sh)) {
		snprintf(why, sizeof why, "%s", mim_errmsg());
		return mim_seterr("%s: frame %ld: %s (one label per image)", in, k, why);
	}
	if ((size_t)B > *cap || !*buf) {
		int64_t *nb = realloc(*buf, (size_t)B * sizeof *nb);
		if (!nb)
			return mim_seterr("out of memory");
		*buf = nb;
		*cap = (size_t)B;
	}
	for (int b = 0; b < B; b++)
		(*buf)[b] = (int64_t)mim_tensor_get(t, b);
	if (mim_labels_check(*buf, B, K) < 0) {
		snprintf(why, sizeof why, "%s", mim_errmsg());
		return mim_seterr("%s: frame %ld: %s", in, k, why);
	}
	*label = *buf;
	return 0;
}

/* Check frame k of the stream `in` (its name) against the model; point
 * *img and *mask at its image and mask (the mask as 0/1 bytes in *buf of
 * *cap, whatever its integer dtype). A classifier's frame: its labels
 * instead (check_labels, into r's buffers; *mask NULL). B, or -1 with the
 * error set. */
static int
check_batch(struct mim_run *r, const struct mim_frame *f, const char *in, long k,
    const float **img, const uint8_t **mask, uint8_t **buf, size_t *cap)
{
	const struct mim_config *c = &r->model->cfg;
	int S = c->img_size, p = c->patch_size;
	int64_t ish[4] = {-1, c->in_chans, S, S};
	struct mim_tensor *ti = mim_frame_want(f, "image", MIM_F32, 4, ish), *tm;
	char why[1024];		/* (mim_seterr must not read its own buffer) */

	if (!ti) {
		snprintf(why, sizeof why, "%s", mim_errmsg());
		return mim_seterr("%s: frame %ld: %s (the model takes %d x %d images)",
		    in, k, why, S, S);
	}
	if (ti->shape[0] < 1 || ti->shape[0] > 1 << 20)
		return mim_seterr("%s: frame %ld: tensor 'image': batch of %lld", in, k,
		    (long long)ti->shape[0]);
	int64_t msh[3] = {ti->shape[0], S / p, S / p};
	if (mim_is_classifier(c)) {	/* labels instead of a mask */
		int vl = buf == &r->vmask;	/* validate()'s frame: its own labels */
		*img = ti->data;
		*mask = NULL;
		if (check_labels(f, in, k, (int)ti->shape[0], c->num_classes, vl ? &r->vlabels : &r->label,
		    vl ? &r->vlabel : &r->labelbuf, vl ? &r->vlabelcap : &r->labelcap) < 0)
			return -1;
		return (int)ti->shape[0];
	}
	if (!(tm = mim_frame_get(f, "mask")))
		return mim_seterr("%s: frame %ld: no tensor 'mask' (pipe the images through mim-mask%s)",
		    in, k, mim_frame_get(f, "label") ? "; or, to fine-tune on these labels, train "
		    "a classifier checkpoint: mim-ckpt classifier" : "");
	if (mim_mask_check(tm) < 0) {
		snprintf(why, sizeof why, "%s", mim_errmsg());
		return mim_seterr("%s: frame %ld: %s", in, k, why);
	}
	if (!mim_frame_want(f, "mask", -1, 3, msh)) {
		snprintf(why, sizeof why, "%s", mim_errmsg());
		return mim_seterr("%s: frame %ld: %s (image / model patch size)", in, k, why);
	}
	size_t n = (size_t)mim_tensor_numel(tm);
	if (n > *cap || !*buf) {
		uint8_t *nb = realloc(*buf, n ? n : 1);
		if (!nb)
			return mim_seterr("out of memory");
		*buf = nb;
		*cap = n;
	}
	mim_mask_bytes(tm, *buf);
	*img = ti->data;
	*mask = *buf;
	return (int)ti->shape[0];
}

/* check_batch of frame k of the input: r->img, r->mask. */
static int
batch_of(struct mim_run *r, const struct mim_frame *f, long k)
{
	return check_batch(r, f, r->input, k, &r->img, &r->mask, &r->maskbuf, &r->maskcap);
}

int
mim_run_first(struct mim_run *r)
{
	int rc = next(r, &r->frame), B = -1, st;

	if (rc == 0)
		snprintf(r->msg, sizeof r->msg, "%s: no frames", r->input);
	if (rc < 0 || (rc > 0 && (B = batch_of(r, r->frame, 0)) < 0))
		snprintf(r->msg, sizeof r->msg, "%s", mim_errmsg());
	if ((st = mim_run_together(r, B < 0 ? r->msg : NULL)))
		return st;
	int bmax = dmax(r, B), bmin = -dmax(r, -B);
	if (bmin != bmax) {
		if (r->dp.rank == 0)
			say(r, MIM_SAY_MSG, "the ranks' inputs have batches of %d to %d images: "
			    "give every rank the same -b", bmin, bmax);
		return MIM_RUN_FAILED;
	}
	r->B = r->batch = B;
	return 0;
}

/* ---- --grad-out -------------------------------------------------------------- */

/* The frame of a gradient (rank 0), or NULL with the error set. */
static struct mim_frame *
grad_frame(const struct mim_model *m, double loss)
{
	struct mim_frame *f = mim_frame_new();
	char name[1024], buf[64];

	if (!f)
		return NULL;
	for (int i = 0; i < m->np; i++) {
		const struct mim_param *p = &m->p[i];
		snprintf(name, sizeof name, "grad.%s", p->name);
		if (!mim_frame_add(f, name, MIM_F32, p->ndim, p->shape, m->g + p->off))
			goto fail;
	}
	float l = (float)loss;
	if (!mim_frame_add(f, "loss", MIM_F32, 0, NULL, &l))
		goto fail;
	char *js = mim_config_json(&m->cfg);
	snprintf(buf, sizeof buf, "%.9g", mim_grad_norm(m->p, m->np, m->g));
	int bad = !js || mim_meta_set(f, "mim.config", js) < 0 || mim_meta_set(f, "mim.grad_norm", buf) < 0;
	free(js);
	if (!bad)
		return f;
fail:
	mim_frame_free(f);
	return NULL;
}

/* Fine-tuning: a classifier trains with o->ft (its layer decay resolved
 * and applied to the model); fine-tuning settings for a pretraining
 * model are a mistake. NULL, or the message. */
static const char *
finetune_setup(struct mim_run *r, struct mim_trainopt *o)
{
	struct mim_model *m = r->model;

	o->ft.on = mim_is_classifier(&m->cfg);
	if (!o->ft.on) {
		if (r->ft_given)
			snprintf(r->msg, sizeof r->msg, "%s: not a classifier: --smoothing, --mixup, "
			    "--cutmix, --mix-prob, --switch-prob and --layer-decay are for "
			    "fine-tuning one (mim-ckpt classifier makes one)", r->ckpt);
		return r->ft_given ? r->msg : NULL;
	}
	if (o->ft.layer_decay == 0)
		o->ft.layer_decay = mim_layer_decay_default(&m->cfg);
	if (mim_model_layer_decay(m, o->ft.layer_decay) < 0) {
		snprintf(r->msg, sizeof r->msg, "%s", mim_errmsg());
		return r->msg;
	}
	return NULL;
}

/* A classifier's --grad-out adds its logits (B,K) and the mixing of the
 * batch as mim.mix {"lam":..[,"box":[yl,yh,xl,xh]]}. 0 or -1. */
static int
grad_cls_extra(struct mim_frame *f, const struct mim_train *t, int B)
{
	char js[160];
	int64_t sh[2] = {B, t->model->cfg.num_classes};

	snprintf(js, sizeof js, "{\"lam\":%.17g", t->mix.lam);
	if (t->mix.cutmix)
		snprintf(js + strlen(js), sizeof js - strlen(js), ",\"box\":[%d,%d,%d,%d]",
		    t->mix.yl, t->mix.yh, t->mix.xl, t->mix.xh);
	strcat(js, "}");
	if (!mim_frame_add(f, "logits", MIM_F32, 2, sh, t->logits) || mim_meta_set(f, "mim.mix", js) < 0)
		return -1;
	return 0;
}

int
mim_run_grad(struct mim_run *r, const struct mim_trainopt *o, struct mim_frame **out)
{
	struct mim_model *m = r->model;
	double loss;
	uint64_t seed = mim_train_seed(o->seed, 0, r->dp.rank);
	struct mim_trainopt ft = *o;
	struct mim_train *t = NULL;
	const char *bad = finetune_setup(r, &ft);
	int st;

	ft.batch = r->B;
	ft.sched.steps = 1;	/* (no step is taken: any valid schedule) */
	ft.sched.warmup_steps = ft.sched.nmilestones = 0;
	if (!bad && ft.ft.on) {	/* a classifier: batch 0 mixed as a step mixes it */
		if ((t = mim_train_new(m, &ft)))
			t->rank = r->dp.rank;
		if (!t || mim_train_grad_cls(t, r->B, r->img, r->label, 0, &loss) < 0)
			bad = mim_errmsg();
	} else if (!bad && mim_model_grad(m, r->B, r->img, r->mask, &o->loss, seed, &loss) < 0) {
		bad = mim_errmsg();
	}
	st = mim_run_together(r, bad);
	if (!st && r->dp.world > 1 && reduce(r, m->g, m->nw, &loss) < 0)
		st = MIM_RUN_FAILED;	/* (cannot happen: all passed together) */
	if (!st && r->dp.rank > 0)
		st = MIM_RUN_DONE;
	if (!st && (!(*out = grad_frame(m, loss)) || (t && grad_cls_extra(*out, t, r->B) < 0))) {
		say(r, MIM_SAY_MSG, "%s", mim_errmsg());
		mim_frame_free(*out);
		*out = NULL;
		st = MIM_RUN_FAILED;
	}
	mim_train_free(t);
	return st;
}

/* ---- validation (rank 0) ------------------------------------------------------ */

/* Room for a batch of B: the latent, then the prediction. */
static int
val_room(struct mim_run *r, int B, size_t *nl)
{
	int64_t lat[3], pred[3];

	if (mim_layer_shape(r->model, 0, lat) < 0)
		return -1;
	mim_pred_shape(r->model, pred);
	*nl = (size_t)B * (size_t)(lat[0] * lat[1] * lat[2]);
	size_t n = *nl + (size_t)B * (size_t)(pred[0] * pred[1] * pred[2]);
	if (n > r->vcap) {
		float *nb = realloc(r->vbuf, n * sizeof(float));
		if (!nb)
			return mim_seterr("out of memory");
		r->vbuf = nb;
		r->vcap = n;
	}
	return 0;
}

/* The mean of the masked losses of the first val_batches frames of r->val
 * (0: all) into *loss, their count into *nf: mim-encode | mim-head |
 * mim-loss in one, for inference (no drop path, no gradient), into
 * buffers of its own. A step depends on the weights, the moments, the
 * step and the data position, which this only reads: a run with
 * validation trains the same bytes as one without (the frame in hand, its
 * mask in r->maskbuf, stays too). With loss NULL, check
 * the first frame only. 0, or -1 with the error set. */
static int
validate(struct mim_run *r, double *loss, long *nf)
{
	const struct mim_config *c = &r->model->cfg;
	struct mim_reader *rd = mim_reader_open(r->val);
	struct mim_frame *f = NULL;
	double sum = 0;
	long k = 0;
	int rc = 0, bad = 0;
	/* a classifier's scores as mim-eval's (labels checked by check_batch,
	 * so only a non-finite logit makes it refuse a batch: then the loss
	 * and the accuracies are NaN, as a regression loss would be) */
	struct mim_eval *ev = loss && mim_is_classifier(c) ? mim_eval_new(c->num_classes) : NULL;

	if (!rd || (loss && mim_is_classifier(c) && !ev)) {
		mim_reader_close(rd);
		return -1;
	}
	while ((loss || k < 1) && (!r->val_batches || k < r->val_batches) &&
	    (rc = mim_read_frame(rd, &f)) > 0) {
		const float *img;
		const uint8_t *mask;
		size_t nl;
		int B = check_batch(r, f, mim_reader_name(rd), k, &img, &mask, &r->vmask, &r->vmaskcap);
		if (B < 0 || val_room(r, B, &nl) < 0 ||
		    mim_encode(r->model, B, img, mask, r->vbuf) < 0 ||
		    mim_head(r->model, B, r->vbuf, r->vbuf + nl) < 0) {
			rc = -1;
			break;
		}
		if (ev)
			bad = bad || mim_eval_add(ev, r->vbuf + nl, r->vlabels, B) < 0;
		else if (loss)
			sum += mim_model_loss(r->model, &r->t->o.loss, B, img, mask, r->vbuf + nl, NULL);
		k++;
		mim_frame_free(f);
		f = NULL;
	}
	mim_frame_free(f);
	if (rc == 0 && k == 0)
		rc = mim_seterr("%s: no frames", mim_reader_name(rd));
	mim_reader_close(rd);
	if (rc >= 0 && loss) {
		/* a classifier: the mean over images, and the accuracies */
		double n = ev ? (double)ev->n : 0;
		*loss = !ev ? sum / (double)k : bad ? NAN : ev->loss / n;
		*nf = k;
		r->vacc[0] = ev && !bad ? 100.0 * (double)ev->top1 / n : NAN;
		r->vacc[1] = ev && !bad ? 100.0 * (double)ev->top5 / n : NAN;
	}
	mim_eval_free(ev);
	return rc < 0 ? -1 : 0;
}

/* At the start: the stream opens and its first frame fits the model
 * (and the buffers are made). */
static int
check_val(struct mim_run *r)
{
	if (r->val_every < 1)
		return mim_seterr("%s: validation every %lld steps", r->val, (long long)r->val_every);
	return validate(r, NULL, NULL);
}

/* ---- the training state ---------------------------------------------------- */

/* Rank 0's training state (restored from the checkpoint on resume) to
 * every rank. */
static int
share_state(struct mim_run *r)
{
	struct mim_train *t = r->t;
	char msg[1200];
	int bad = r->dp.rank == 0 && r->resume && mim_train_restore_extended(t, r->cf, r->extend) < 0, st;

	if (bad)
		snprintf(msg, sizeof msg, "%s: %s", r->ckpt, mim_errmsg());
	if ((st = mim_run_together(r, bad ? msg : NULL)) || r->dp.world == 1)
		return st;
	int64_t pos[2] = {t->step, t->batches};
	dbcast(r, pos, sizeof pos);
	t->step = pos[0];
	t->batches = pos[1];
	dbcast(r, t->exp_avg, t->model->nw * sizeof(float));
	dbcast(r, t->exp_avg_sq, t->model->nw * sizeof(float));
	return 0;
}

/* The settings every rank must share, as one digest: a rank started with
 * other flags would train another model or deadlock the others. */
static uint64_t
settings_digest(const struct mim_run *r, const struct mim_trainopt *o)
{
	static const char *keys[] = {"optim", "sched", "loss", "rng", "finetune"};
	uint64_t h = 1469598103934665603ULL;	/* FNV-1a */
	char extra[128];

	for (int i = 0; i < 6; i++) {
		char *v = i < 4 || (i == 4 && o->ft.on) ? mim_train_setting(o, keys[i]) : NULL;
		const char *p = v;
		if (i == 5) {
			snprintf(extra, sizeof extra, "%lld %lld %lld %d", (long long)r->steps,
			    (long long)r->skip, (long long)r->save_every, r->skip_nonfinite);
			p = extra;
		}
		for (; p && *p; p++)
			h = (h ^ (unsigned char)*p) * 1099511628211ULL;
		h = (h ^ 0xff) * 1099511628211ULL;
		free(v);
	}
	return h;
}

void
mim_run_lrs(const struct mim_run *r, struct mim_trainopt *o, double lr, double warmup_lr,
    double min_lr, int per512)
{
	int B = r->batch, world = r->dp.world;

	o->batch = B;
	o->world = world;
	o->sched.lr = per512 ? mim_lr_scale(lr, B, world, o->accum) : lr;
	o->sched.warmup_lr = per512 ? mim_lr_scale(warmup_lr, B, world, o->accum) : warmup_lr;
	o->sched.min_lr = per512 ? mim_lr_scale(min_lr, B, world, o->accum) : min_lr;
	o->base_lr = per512 ? lr : 0;
}

int
mim_run_prepare(struct mim_run *r, const struct mim_trainopt *opt)
{
	struct mim_trainopt ft = *opt, *o = &ft;
	int st;

	if ((st = mim_run_together(r, finetune_setup(r, o))))
		return st;
	r->t = mim_train_new(r->model, o);
	if ((st = mim_run_together(r, r->t ? NULL : mim_errmsg())))
		return st;
	r->t->reduce = r->dp.world > 1 ? reduce : NULL;
	r->t->reduce_ctx = r;
	r->t->rank = r->dp.rank;
	if ((st = share_state(r)))
		return st;
	mim_frame_free(r->cf);
	r->cf = NULL;
	r->saved = r->t->step;
	if (r->skip >= 0)
		r->t->batches = r->skip;
	if (!dsame(r, settings_digest(r, o))) {
		if (r->dp.rank == 0)
			say(r, MIM_SAY_MSG, "the ranks were started with different settings: "
			    "give every rank the same flags");
		return MIM_RUN_FAILED;
	}
	const char *bad = NULL;
	if (r->dp.rank == 0 && r->log && !(r->logf = fopen(r->log, "a"))) {
		snprintf(r->msg, sizeof r->msg, "%s: %s", r->log, strerror(errno));
		bad = r->msg;
	} else if (r->dp.rank == 0 && r->val && check_val(r) < 0) {
		snprintf(r->msg, sizeof r->msg, "%s", mim_errmsg());
		bad = r->msg;
	}
	return mim_run_together(r, bad);
}

/* ---- the loop ------------------------------------------------------------------ */

/* Rank 0 saves (the ranks hold the same state); every rank notes the
 * step saved, which decides the collectives of the loop. 0, or -1 with
 * the error set. */
static int
save(struct mim_run *r)
{
	char one[sizeof r->pos + 2];

	/* where the input resumes: this rank's, or all ranks' as gathered
	 * at this step (none when a rank stopped between two gatherings) */
	r->t->data = NULL;
	if (r->dp.world == 1 && r->pos[0]) {
		snprintf(one, sizeof one, "[%s]", r->pos);
		r->t->data = one;
	} else if (r->dp.world > 1 && r->pos_step == r->t->step) {
		r->t->data = r->posall;
	}
	int rc = r->dp.rank == 0 ? mim_train_save(r->t, r->ckpt) : 0;
	r->t->data = NULL;
	if (rc < 0)
		return -1;
	r->saved = r->saved_step = r->t->step;
	return 0;
}

/* Stop on a problem with the input (or the model's work on it), found here
 * (msg) or by another rank (msg NULL; agreed already): keep the progress
 * made, then say why. */
static int
stop_input(struct mim_run *r, const char *msg)
{
	char why[1200];

	if (msg)
		snprintf(why, sizeof why, "%s", msg);	/* may be mim_errmsg(), which save() reuses */
	tell(r);
	if (r->t->step > r->saved && save(r) < 0)
		say(r, MIM_SAY_MSG, "%s", mim_errmsg());
	end_line(r);
	if (msg)
		say(r, MIM_SAY_MSG, "%s", why);
	return MIM_RUN_FAILED;
}

/* Every rank's input position (mim.pos of its last frame trained on) to
 * rank 0, as mim.train.data for the save that follows (collective; with
 * the state check). NULL when a rank's frames did not say. */
static void
gather_pos(struct mim_run *r)
{
	size_t n = sizeof r->pos, W = (size_t)r->dp.world;
	char *all = r->dp.rank == 0 ? mim_calloc(W, n) : NULL;

	if (r->dp.gather)
		r->dp.gather(r->pos, all ? all : r->pos, n);
	free(r->posall);
	r->posall = NULL;
	r->pos_step = -1;
	if (!all)
		return;
	size_t len = 2;
	int known = 1;
	for (size_t i = 0; i < W; i++) {
		known &= all[i * n] != 0 && memchr(all + i * n, 0, n) != NULL;
		len += strlen(all + i * n) + 1;
	}
	if (known && (r->posall = mim_malloc(len))) {
		strcpy(r->posall, "[");
		for (size_t i = 0; i < W; i++) {
			strcat(r->posall, all + i * n);
			strcat(r->posall, i + 1 < W ? "," : "]");
		}
		r->pos_step = r->t->step;
	}
	free(all);
}

/* The ranks must hold the same state: compare digests (collective). */
static int
check_same(struct mim_run *r)
{
	if (r->dp.world > 1)
		gather_pos(r);
	if (r->dp.world > 1 && !dsame(r, mim_train_digest(r->t))) {
		if (r->dp.rank == 0)
			say(r, MIM_SAY_MSG, "step %lld: the ranks' weights or moments differ; stopping, "
			    "%s stays at step %lld", (long long)r->t->step, r->ckpt, (long long)r->saved);
		return MIM_RUN_FAILED;
	}
	return 0;
}

/* x as a JSON number (null when not finite) */
static void
num(char *buf, size_t n, double x)
{
	if (isfinite(x))
		snprintf(buf, n, "%.9g", x);
	else
		snprintf(buf, n, "null");
}

/* A classifier's fields of the log line: "acc1" (top-1 of the training
 * batch, when it was not mixed), "lam" of the last micro-batch's mixing
 * and its cutmix "box" [yl,yh,xl,xh] (what the parity test feeds the
 * reference). */
static void
ft_fields(char *buf, size_t n, const struct mim_stepinfo *in)
{
	size_t k = 0;

	if (isfinite(in->acc1))
		k += (size_t)snprintf(buf, n, ",\"acc1\":%.9g", in->acc1);
	k += (size_t)snprintf(buf + k, n - k, ",\"lam\":%.17g", in->mix.lam);
	if (in->mix.cutmix && k < n)
		snprintf(buf + k, n - k, ",\"box\":[%d,%d,%d,%d]", in->mix.yl, in->mix.yh, in->mix.xl,
		    in->mix.xh);
}

/* A classifier's acc1 over all ranks' images: their top-1 hits and counted
 * images summed, as one process at the whole batch counts them
 * (collective: every rank took the step, and found it finite or not). */
static void
ranks_acc1(struct mim_run *r, struct mim_stepinfo *in)
{
	double hits = dsum(r, (double)r->t->correct), n = dsum(r, (double)r->t->counted);

	in->acc1 = n > 0 ? 100.0 * hits / n : NAN;
}

/* Log and progress line of a step (rank 0). 0, or -1 with the error set. */
static int
report(struct mim_run *r, const struct mim_stepinfo *in)
{
	const struct mim_trainopt *o = &r->t->o;
	double t = mim_now(), dt = t - r->tlast;
	double ips = dt > 0 ? (double)o->batch * o->accum * r->dp.world / dt : 0;

	r->tlast = t;
	if (r->logf) {
		/* the run's first line: the machine, kernels and precision */
		char l[32], n[32], *sys = in->step == r->step0 ? mim_system_json() : NULL;
		num(l, sizeof l, in->loss);
		num(n, sizeof n, in->grad_norm);
		char ft[160] = "";
		if (o->ft.on)
			ft_fields(ft, sizeof ft, in);
		fprintf(r->logf, "{\"step\":%lld,\"loss\":%s,\"lr\":%.17g,\"grad_norm\":%s,\"img_per_s\":%.4g,"
		    "\"input_s\":%.4g%s%s%s%s}\n", (long long)in->step + 1, l, in->lr, n, ips, r->input_s,
		    ft, in->nonfinite ? ",\"skipped\":true" : "", sys ? ",\"system\":" : "", sys ? sys : "");
		free(sys);
		if (fflush(r->logf) == EOF)
			return mim_seterr("%s: %s", r->log, strerror(errno));
	}
	int64_t step = r->t->step, done = step - r->step0;
	double avg = done > 0 ? (t - r->t0) / (double)done : 0;
	long eta = (long)(avg * (double)(r->steps - step));
	if (r->progress == MIM_PROGRESS_REDRAW)
		say(r, MIM_SAY_PROGRESS, "step %lld/%lld  loss %.4f  lr %.3g  %.1f img/s  ETA %ld:%02ld:%02ld ",
		    (long long)step, (long long)r->steps, in->loss, in->lr, ips,
		    eta / 3600, eta / 60 % 60, eta % 60);
	if (r->progress == MIM_PROGRESS_LINES &&
	    (r->line_step == r->step0 || t - r->tline >= r->progress_every || step >= r->steps)) {
		/* (img/s over the steps since the last line) */
		double dl = t - r->tline, imgs = (double)(step - r->line_step) * o->batch * o->accum *
		    r->dp.world;
		say(r, MIM_SAY_LINE, "step %lld/%lld  loss %.4f  lr %.3g  %.1f img/s  ETA %ld:%02ld:%02ld",
		    (long long)step, (long long)r->steps, in->loss, in->lr, dl > 0 ? imgs / dl : 0,
		    eta / 3600, eta / 60 % 60, eta % 60);
		r->tline = t;
		r->line_step = step;
	}
	r->input_s = 0;
	return 0;
}

/* Validation after a step (rank 0): a line of the log and of progress. Its
 * time is left out of the next step's img/s. 0, or -1 with the error set. */
static int
val_pass(struct mim_run *r)
{
	double loss, t = mim_now();
	long nf;
	char l[32];

	if (validate(r, &loss, &nf) < 0)
		return -1;
	double dt = mim_now() - t;
	r->tlast += dt;
	r->tline += dt;
	num(l, sizeof l, loss);
	char acc[96] = "";
	if (isfinite(r->vacc[0]))
		snprintf(acc, sizeof acc, ",\"val_acc1\":%.9g,\"val_acc5\":%.9g", r->vacc[0], r->vacc[1]);
	if (r->logf) {
		fprintf(r->logf, "{\"step\":%lld,\"val_loss\":%s%s,\"val_frames\":%ld,\"val_s\":%.4g}\n",
		    (long long)r->t->step, l, acc, nf, dt);
		if (fflush(r->logf) == EOF)
			return mim_seterr("%s: %s", r->log, strerror(errno));
	}
	end_line(r);
	if (r->progress)
		say(r, MIM_SAY_LINE, "step %lld/%lld  val_loss %.4f%s  (%ld frame%s of %s)",
		    (long long)r->t->step, (long long)r->steps, loss, isfinite(r->vacc[0]) ?
		    (snprintf(acc, sizeof acc, "  val_acc1 %.2f  val_acc5 %.2f", r->vacc[0],
		    r->vacc[1]), acc) : "", nf, nf == 1 ? "" : "s", r->val);
	return 0;
}

/* After a step was taken (or rejected as non-finite): digest check, log,
 * the non-finite rule, save, validation. */
static int
step_taken(struct mim_run *r, const struct mim_stepinfo *info)
{
	struct mim_train *t = r->t;
	int st;

	/* (collectives first: a failure of rank 0's log or save below meets
	 * the others at their next agreement) */
	int at_save = r->save_every && t->step % r->save_every == 0 && t->step > r->saved;
	if (at_save && (st = check_same(r)))
		return st;
	int logged = r->dp.rank == 0 ? report(r, info) : 0;
	if (info->nonfinite && !r->skip_nonfinite) {	/* the same on every rank */
		end_line(r);
		if (r->dp.rank == 0)
			say(r, MIM_SAY_MSG, "step %lld: %s is not finite (loss %g, grad norm %g); "
			    "stopping, %s stays at step %lld", (long long)info->step + 1,
			    isfinite(info->loss) ? "the gradient" : "the loss", info->loss,
			    info->grad_norm, r->ckpt, (long long)r->saved);
		return MIM_RUN_FAILED;
	}
	if (logged < 0)
		return stop_input(r, mim_errmsg());
	if (info->nonfinite && r->dp.rank == 0)
		say(r, MIM_SAY_MSG, "step %lld: non-finite loss or gradient, batch skipped",
		    (long long)info->step + 1);
	if (at_save && save(r) < 0)
		return stop_input(r, mim_errmsg());
	if (r->dp.rank == 0 && r->val && !info->nonfinite && t->step % r->val_every == 0 &&
	    val_pass(r) < 0)
		return stop_input(r, mim_errmsg());
	return 0;
}

/* The frame in hand is trained on next: where the input resumes after it
 * (mim-data's mim.pos; "" when it does not say). */
static void
note_pos(struct mim_run *r)
{
	const char *p = mim_meta_get(r->frame, "mim.pos");

	if (p && strlen(p) < sizeof r->pos)
		snprintf(r->pos, sizeof r->pos, "%s", p);
	else
		r->pos[0] = 0;
}

/* The frame number of the frame in hand in its stream (mim-data's
 * mim.batch), or -1. */
static int64_t
frame_number(const struct mim_frame *f)
{
	const char *v = mim_meta_get(f, "mim.batch");
	char *end;

	if (!v)
		return -1;
	long long n = strtoll(v, &end, 10);
	return *end || n < 0 ? -1 : (int64_t)n;
}

/* Skip what the run has consumed: the stream replays from its start, or
 * (mim-data --resume) starts at the frame numbered where the run stopped:
 * its first frame says so (mim.batch). */
static int
skip_consumed(struct mim_run *r)
{
	struct mim_train *t = r->t;
	const char *bad = NULL;
	int rc;
	int64_t first = frame_number(r->frame), skip = t->batches;

	if (first > 0 && r->skip < 0) {	/* a stream that resumes part-way */
		if (first > t->batches) {
			snprintf(r->msg, sizeof r->msg, "%s: the input starts at frame %lld, but %s has "
			    "consumed %lld: not this run's (mim-data --resume with another checkpoint?)",
			    r->input, (long long)first, r->ckpt, (long long)t->batches);
			bad = r->msg;
		}
		skip = t->batches - first;
	}
	for (int64_t k = 0; k < skip && !bad && !stopped(r); k++) {
		mim_frame_free(r->frame);
		r->frame = NULL;
		if ((rc = next(r, &r->frame)) > 0 || stopped(r))
			continue;
		snprintf(r->msg, sizeof r->msg, "%s: %s while skipping the %lld frames already trained on",
		    r->input, rc < 0 ? mim_errmsg() : "end of input", (long long)t->batches);
		bad = r->msg;
	}
	if (!bad && !stopped(r) && t->batches > 0 &&
	    (r->B = batch_of(r, r->frame, (long)t->batches)) < 0) {
		snprintf(r->msg, sizeof r->msg, "%s", mim_errmsg());
		bad = r->msg;
	}
	int st = agree(r, bad, stopped(r));
	if (st >= BAD) {
		if (bad)
			say(r, MIM_SAY_MSG, "%s", bad);
		return MIM_RUN_FAILED;
	}
	r->signal = st;
	return st > 0 ? MIM_RUN_STOPPED : 0;
}

/* Read the next frame; a problem with it is NULL'd into *bad for the next
 * agreement. */
static void
read_next(struct mim_run *r, const char **bad)
{
	mim_frame_free(r->frame);
	r->frame = NULL;
	double ti = mim_now();
	int rc = next(r, &r->frame);
	r->k++;
	if (rc < 0 && !stopped(r)) {
		snprintf(r->msg, sizeof r->msg, "%s", mim_errmsg());
		*bad = r->msg;
	} else if (rc == 0 && !stopped(r)) {
		snprintf(r->msg, sizeof r->msg, "%s: input ended after step %lld of %lld", r->input,
		    (long long)r->t->step, (long long)r->steps);
		*bad = r->msg;
	}
	if (rc > 0 && (r->B = batch_of(r, r->frame, r->k)) < 0) {
		snprintf(r->msg, sizeof r->msg, "%s", mim_errmsg());
		*bad = r->msg;
	}
	r->input_s += mim_now() - ti;
}

/* After the last step or a signal: meet the others, save, close the log. */
static int
finish(struct mim_run *r, int sig)
{
	struct mim_train *t = r->t;
	int st;

	mim_frame_free(r->frame);
	r->frame = NULL;
	close_input(r);
	if (!sig && (st = mim_run_together(r, NULL)))	/* meet a rank that failed after its last step */
		return st;
	if ((st = check_same(r)))
		return st;
	const char *bad = t->step > r->saved && save(r) < 0 ? mim_errmsg() : NULL;
	end_line(r);
	if (!bad && r->logf) {
		int rc = fclose(r->logf);
		r->logf = NULL;
		if (rc == EOF)
			bad = strerror(errno);
	}
	if ((st = mim_run_together(r, bad)))
		return st;
	if (!sig)
		return 0;
	if (r->dp.rank == 0)
		say(r, MIM_SAY_MSG, "%s: stopped by signal %d at step %lld; saved", r->ckpt, sig,
		    (long long)t->step);
	r->signal = sig;
	return MIM_RUN_STOPPED;
}

int
mim_run_train(struct mim_run *r)
{
	struct mim_train *t = r->t;
	const char *bad = NULL;
	int st, sig = 0;

	if ((st = skip_consumed(r)))
		return st;
	r->t0 = r->tlast = r->tline = mim_now();
	r->step0 = r->line_step = t->step;
	r->k = (long)t->batches;
	/* each pass: agree on the frame in hand, train on it, read the next
	 * (a problem with that one waits for the next agreement) */
	while (t->step < r->steps) {
		struct mim_stepinfo info;
		if (!bad && r->B != t->o.batch) {
			snprintf(r->msg, sizeof r->msg, "%s: frame %ld: batch of %d images, the run uses %d",
			    r->input, r->k, r->B, t->o.batch);
			bad = r->msg;
		}
		if ((st = agree(r, bad, stopped(r))) >= BAD)
			return stop_input(r, bad);
		if ((sig = st) > 0)
			break;
		note_pos(r);
		int took = t->o.ft.on ? mim_train_batch_cls(t, r->B, r->img, r->label, &info) :
		    mim_train_batch(t, r->B, r->img, r->mask, &info);
		if (took < 0)
			return stop_input(r, r->told ? NULL : mim_errmsg());
		if (took && t->o.ft.on && r->dp.world > 1 && !info.nonfinite)
			ranks_acc1(r, &info);
		if (took && (st = step_taken(r, &info)))
			return st;
		if (t->step >= r->steps)
			break;
		read_next(r, &bad);
	}
	return finish(r, sig);
}

void
mim_run_free(struct mim_run *r)
{
	unlock_ckpt(r);
	free(r->vbuf);
	free(r->labelbuf);
	free(r->vlabel);
	free(r->vmask);
	r->vbuf = NULL;
	r->vmask = NULL;
	r->vcap = r->vmaskcap = 0;
	mim_train_free(r->t);
	mim_model_free(r->model);
	mim_frame_free(r->cf);
	mim_frame_free(r->frame);
	free(r->maskbuf);
	free(r->posall);
	r->posall = NULL;
	close_input(r);
	if (r->logf)
		fclose(r->logf);
	r->t = NULL;
	r->model = NULL;
	r->cf = r->frame = NULL;
	r->maskbuf = NULL;
	r->maskcap = 0;
	r->logf = NULL;
}
