/* loader.c -- the order of samples, and decoding them in parallel.
 *
 * Order, drawn on the calling thread only:
 *   epoch e: the units (a tar shard, or one sample of a folder) in input
 *     order, or, with a shuffle buffer, permuted by a generator keyed by
 *     (seed, e) -- the same on every rank;
 *   rank split: the k-th sample of that stream goes to rank k mod n, or
 *     with split_shards the j-th unit to rank j mod n;
 *   shuffle buffer of K: fill K, then emit a random one and put the next
 *     sample in its place (WebDataset's shuffle), keyed by (seed, rank, e);
 *   index i: the position in the epoch's output; sample (e, i) draws its
 *     crop, flip, RandAugment and erasing from (seed, rank, e, i).
 * Decoding happens on `threads` worker threads (or on the caller when
 * threads is 1) through a ring of jobs; results are handed out strictly in
 * order, so nothing depends on which worker was faster. */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jansson.h>

#include "mim/stream.h"
#include "mim/data.h"

#define TAG_ORDER 0x4f52444552000000ULL	/* "ORDER" */
#define TAG_SHUF 0x5348554600000000ULL	/* "SHUF" */

enum { J_FREE, J_QUEUED, J_BUSY, J_DONE };

struct job {
	struct mim_sample *s;
	const struct mim_member *img;
	long epoch, index;
	int state;
	int ok, fatal;
	char err[768];
	struct mim_item *it;
	uint64_t cost;		/* bytes counted in inflight */
};

struct input {
	char *name;		/* as given; "<stdin>" for "-" */
	char *path;
	struct mim_dir *dir;	/* a folder, else a tar shard */
};

struct unit {
	int input;
	long sample;		/* folder sample, or -1 for a whole shard */
};

struct mim_loader {
	struct mim_loader_opts o;
	struct input *in;
	int nin;
	char **exts;
	int next;
	struct mim_data_counts counts;

	/* order */
	long epoch;
	int started, src_done, at_boundary;
	struct unit *units;
	long nunits, upos;
	int uin;		/* input of the open tar */
	struct mim_tar *tar;
	long tarbase;		/* rawk at the start of the open tar */
	long rawk;		/* samples of this epoch's stream, all ranks */
	long eindex;		/* next index in this epoch's output */
	struct mim_sample **buf;
	long nbuf;
	int raw_done;
	struct mim_drng shuf;
	int pending_fatal;
	char fatalmsg[768];

	/* jobs */
	struct job *jobs;
	long Q, head, tail, dispatch;
	uint64_t inflight, budget;	/* bytes of the jobs in the ring */
	pthread_t *thr;
	int nthr, stop;
	pthread_mutex_t mu;
	pthread_cond_t work, done;
};

static const char default_exts[] = "jpg,jpeg,png,webp,ppm,pgm,pbm,pnm,tif,tiff,gif";

/* ---- diagnostics ---------------------------------------------------------- */

/* Problems met while reading: passed on, or in strict mode kept as the
 * error that stops the stream (after the samples before it). */
static void
src_warn(void *ctx, const char *msg)
{
	struct mim_loader *L = ctx;

	if (L->o.strict) {
		if (!L->pending_fatal)
			snprintf(L->fatalmsg, sizeof L->fatalmsg, "%s", msg);
		L->pending_fatal = 1;
	} else if (L->o.warn) {
		L->o.warn(L->o.ctx, msg);
	}
}

/* ---- the order of samples ------------------------------------------------- */

static int
start_epoch(struct mim_loader *L)
{
	long n = 0;

	for (int i = 0; i < L->nin; i++)
		n += L->in[i].dir ? mim_dir_count(L->in[i].dir) : 1;
	free(L->units);
	if (!(L->units = mim_malloc((size_t)(n ? n : 1) * sizeof *L->units)))
		return -1;
	L->nunits = 0;
	for (int i = 0; i < L->nin; i++) {
		if (L->in[i].dir) {
			long c = mim_dir_count(L->in[i].dir);
			for (long j = 0; j < c; j++)
				L->units[L->nunits++] = (struct unit){i, j};
		} else {
			L->units[L->nunits++] = (struct unit){i, -1};
		}
	}
	if (L->o.shuffle > 0 && L->nunits > 1) {
		/* Fisher-Yates, the same permutation on every rank */
		struct mim_drng r;
		mim_drng_key(&r, L->o.seed, TAG_ORDER, (uint64_t)L->epoch, 0);
		for (long i = L->nunits - 1; i > 0; i--) {
			long j = (long)mim_drng_below(&r, (uint64_t)i + 1);
			struct unit t = L->units[i];
			L->units[i] = L->units[j];
			L->units[j] = t;
		}
	}
	mim_drng_key(&L->shuf, L->o.seed, TAG_SHUF | (uint64_t)L->o.rank, (uint64_t)L->epoch, 0);
	L->upos = 0;
	L->rawk = 0;
	L->eindex = 0;
	L->raw_done = 0;
	L->started = 1;
	return 0;
}

static int
ours(const struct mim_loader *L, long k)
{
	return L->o.split_shards || k % L->o.nranks == L->o.rank;
}

/* mim_tar_next's question: is the open shard's sample i ours? */
static int
want_sample(void *ctx, long i)
{
	struct mim_loader *L = ctx;

	return ours(L, L->tarbase + i);
}

/* This rank's next sample of the epoch, in stream order: 1, 0 at the end
 * of the epoch, -1 on an error (out of memory). Skipped input is reported
 * through src_warn. */
static int
raw_next(struct mim_loader *L, struct mim_sample **out)
{
	for (;;) {
		if (L->pending_fatal)
			return 0;
		if (L->tar) {
			struct mim_sample *s;
			int r = mim_tar_next(L->tar, &s, want_sample, src_warn, L, &L->counts);
			L->rawk = L->tarbase + mim_tar_count(L->tar);
			if (r > 0) {
				if (!ours(L, L->tarbase + s->seq)) {
					mim_sample_free(s);
					continue;
				}
				s->url = L->in[L->uin].name;
				L->counts.samples++;
				*out = s;
				return 1;
			}
			if (r < 0) {
				L->counts.bad_shards++;
				src_warn(L, mim_errmsg());
			}
			mim_tar_close(L->tar);
			L->tar = NULL;
			continue;
		}
		if (L->upos == L->nunits)
			return 0;
		long j = L->upos++;
		struct unit u = L->units[j];
		struct input *in = &L->in[u.input];
		if (L->o.split_shards && j % L->o.nranks != L->o.rank)
			continue;
		if (in->dir) {
			long k = L->rawk++;
			if (!ours(L, k))
				continue;
			struct mim_sample *s;
			if (mim_dir_read(in->dir, u.sample, &s)) {
				L->counts.bad_members++;
				src_warn(L, mim_errmsg());
				continue;
			}
			s->url = in->name;
			L->counts.samples++;
			*out = s;
			return 1;
		}
		if (!(L->tar = mim_tar_open(in->path))) {
			L->counts.bad_shards++;
			src_warn(L, mim_errmsg());
			continue;
		}
		L->uin = u.input;
		L->tarbase = L->rawk;
		L->counts.shards++;
	}
}

/* Through the shuffle buffer. */
static int
shuffled_next(struct mim_loader *L, struct mim_sample **out)
{
	struct mim_sample *x;
	int r;

	if (L->o.shuffle <= 1)
		return raw_next(L, out);
	while (L->nbuf < L->o.shuffle && !L->raw_done) {
		if ((r = raw_next(L, &x)) < 0)
			return -1;
		if (r == 0)
			L->raw_done = 1;
		else
			L->buf[L->nbuf++] = x;
	}
	if (L->nbuf == 0)
		return 0;
	long k = (long)mim_drng_below(&L->shuf, (uint64_t)L->nbuf);
	*out = L->buf[k];
	r = L->raw_done ? 0 : raw_next(L, &x);
	if (r < 0) {
		mim_sample_free(*out);
		return -1;
	}
	if (r > 0) {
		L->buf[k] = x;
	} else {
		L->raw_done = 1;
		L->buf[k] = L->buf[--L->nbuf];
	}
	return 1;
}

/* The next sample over all epochs: 1 (epoch, index set), 0 at the end,
 * 2 at an epoch boundary in a run without end (see mim_loader_next), -1
 * on an error. */
static int
next_sample(struct mim_loader *L, struct mim_sample **out, long *epoch, long *index)
{
	for (;;) {
		if (L->src_done)
			return 0;
		if (!L->started && start_epoch(L))
			return -1;
		int r = shuffled_next(L, out);
		if (r < 0)
			return -1;
		if (r > 0) {
			*epoch = L->epoch;
			*index = L->eindex++;
			return 1;
		}
		if (L->pending_fatal)
			return 0;
		/* the epoch is over */
		int empty = L->rawk == 0;
		L->started = 0;
		L->epoch++;
		if ((L->o.epochs && L->epoch >= L->o.epochs) || (empty && !L->o.epochs)) {
			L->src_done = 1;
			if (empty && !L->o.epochs)
				return mim_seterr("the input has no samples");
			return 0;
		}
		if (!L->o.epochs)
			return 2;
	}
}

int
mim_loader_seek(struct mim_loader *L, long epoch, long next)
{
	struct mim_sample *s;
	long e, i;

	if (L->dispatch || L->head)
		return mim_seterr("seek after the first sample");
	for (;;) {
		long cur = L->started ? L->eindex : 0;
		if (L->epoch > epoch || (L->epoch == epoch && cur >= next))
			return L->epoch == epoch && cur > next ? mim_seterr("seek past the position") : 0;
		int r = next_sample(L, &s, &e, &i);
		if (r == 1)
			mim_sample_free(s);
		else if (r == 0 || r < 0)
			return r < 0 ? -1 : mim_seterr("the input ends before epoch %ld, sample %ld "
			    "(not the input the run was trained on?)", epoch, next);
	}
}

/* ---- decoding ------------------------------------------------------------- */

static const struct mim_member *
image_member(const struct mim_loader *L, const struct mim_sample *s)
{
	for (int i = 0; i < L->next; i++) {
		const struct mim_member *m = mim_sample_member(s, L->exts[i]);
		if (m)
			return m;
	}
	return NULL;
}

static void
process(struct mim_loader *L, struct job *j)
{
	struct mim_drng rng;
	struct mim_img im;
	struct mim_geom g;
	struct mim_item *it;
	const struct mim_aug *a = &L->o.aug;

	mim_drng_key(&rng, L->o.seed, (uint64_t)L->o.rank, (uint64_t)j->epoch, (uint64_t)j->index);
	if (mim_image_transform(j->img->data, j->img->size, a, &rng, &im, &g)) {
		snprintf(j->err, sizeof j->err, "%s: %s.%s: %s", j->s->url, j->s->key,
		    j->img->ext, mim_errmsg());
		return;
	}
	/* RandAugment on the 8-bit crop, after the flip (randaug.c) */
	if (a->ra.n > 0 && (a->mode == MIM_MODE_TRAIN || a->mode == MIM_MODE_PADCROP)) {
		if (mim_randaug(&im, &a->ra, a->interp, &rng, g.ra)) {
			free(im.px);
			snprintf(j->err, sizeof j->err, "%s: %s: %s", j->s->url, j->s->key,
			    mim_errmsg());
			return;
		}
		g.nra = a->ra.n;
	}
	if (!(it = mim_calloc(1, sizeof *it)))
		goto oom;
	it->g = g;
	it->epoch = j->epoch;
	it->index = j->index;
	if (L->o.want == MIM_WANT_FLOAT) {
		size_t S = (size_t)a->size;
		if (im.w != a->size || im.h != a->size) {
			free(im.px);
			free(it);
			snprintf(j->err, sizeof j->err, "%s: %s: internal: image is %dx%d", j->s->url,
			    j->s->key, im.w, im.h);
			return;
		}
		if (!(it->x = mim_malloc(3 * S * S * sizeof(float)))) {
			free(it);
			goto oom;
		}
		mim_image_normalise(it->x, &im, L->o.mean, L->o.std);
		if (a->reprob > 0 && a->mode != MIM_MODE_EVAL && a->mode != MIM_MODE_RESIZE)
			it->g.erased = mim_random_erase(it->x, 3, (int)S, (int)S, a->reprob, &rng,
			    &it->g.erase);
		/* the encoded bytes are no longer needed */
		for (int i = 0; i < j->s->n; i++) {
			free(j->s->m[i].data);
			j->s->m[i].data = NULL;
		}
	} else {
		if (mim_image_encode(&im, L->o.encfmt, L->o.quality, &it->enc, &it->nenc)) {
			free(im.px);
			free(it);
			snprintf(j->err, sizeof j->err, "%s: %s: %s", j->s->url, j->s->key, mim_errmsg());
			return;
		}
		it->encext = strcmp(L->o.encfmt, "png") ? "jpg" : "png";
	}
	free(im.px);
	it->s = j->s;
	j->s = NULL;
	j->it = it;
	j->ok = 1;
	return;
oom:
	free(im.px);
	snprintf(j->err, sizeof j->err, "%s: %s: out of memory", j->s->url, j->s->key);
}

static void *
worker(void *arg)
{
	struct mim_loader *L = arg;

	pthread_mutex_lock(&L->mu);
	for (;;) {
		while (!L->stop && L->dispatch == L->head)
			pthread_cond_wait(&L->work, &L->mu);
		if (L->stop)
			break;
		struct job *j = &L->jobs[L->dispatch % L->Q];
		L->dispatch++;
		if (j->state != J_QUEUED)
			continue;
		j->state = J_BUSY;
		pthread_mutex_unlock(&L->mu);
		process(L, j);
		pthread_mutex_lock(&L->mu);
		j->state = J_DONE;
		pthread_cond_broadcast(&L->done);
	}
	pthread_mutex_unlock(&L->mu);
	mim_data_thread_done();
	return NULL;
}

static void
enqueue(struct mim_loader *L, struct job *src)
{
	struct job *j = &L->jobs[L->head % L->Q];

	*j = *src;
	pthread_mutex_lock(&L->mu);
	L->head++;
	pthread_cond_signal(&L->work);
	pthread_mutex_unlock(&L->mu);
}

/* What a job holds until it is taken: the sample's members, then its
 * result. */
static uint64_t
job_cost(const struct mim_loader *L, const struct mim_sample *s)
{
	uint64_t S = (uint64_t)L->o.aug.size, c = 3 * S * S;

	if (L->o.want == MIM_WANT_FLOAT)
		c *= sizeof(float);
	for (int i = 0; i < s->n; i++)
		c += s->m[i].size;
	return c;
}

/* Queue samples until the ring is full, holds its budget of bytes, or the
 * input pauses. */
static void
fill(struct mim_loader *L)
{
	while (L->head - L->tail < L->Q && !L->src_done && !L->at_boundary &&
	    (L->head == L->tail || L->inflight < L->budget)) {
		struct job j = {0};
		int r = next_sample(L, &j.s, &j.epoch, &j.index);
		if (r < 0 || L->pending_fatal) {
			/* an error job: reported in its place in the order */
			if (r > 0)
				mim_sample_free(j.s);
			j.s = NULL;
			j.fatal = 1;
			j.state = J_DONE;
			snprintf(j.err, sizeof j.err, "%s", r < 0 ? mim_errmsg() : L->fatalmsg);
			L->src_done = 1;
			enqueue(L, &j);
			return;
		}
		if (r == 0)
			return;
		if (r == 2) {
			L->at_boundary = 1;
			return;
		}
		if (!(j.img = image_member(L, j.s))) {
			char msg[768];
			L->counts.no_image++;
			snprintf(msg, sizeof msg, "%s: %s: no image member in the sample", j.s->url, j.s->key);
			mim_sample_free(j.s);
			src_warn(L, msg);
			continue;
		}
		j.state = J_QUEUED;
		j.cost = job_cost(L, j.s);
		L->inflight += j.cost;
		enqueue(L, &j);
	}
}

int
mim_loader_next(struct mim_loader *L, struct mim_item **out)
{
	*out = NULL;
	for (;;) {
		fill(L);
		if (L->tail == L->head) {
			if (L->at_boundary) {
				/* a run without end: stop if a whole epoch gave
				 * no image at all */
				if (L->counts.images == 0)
					return mim_seterr("no image of the input could be decoded");
				L->at_boundary = 0;
				continue;
			}
			return 0;
		}
		struct job *j = &L->jobs[L->tail % L->Q];
		if (L->nthr == 0) {
			if (j->state == J_QUEUED)
				process(L, j);
		} else {
			pthread_mutex_lock(&L->mu);
			while (j->state != J_DONE)
				pthread_cond_wait(&L->done, &L->mu);
			pthread_mutex_unlock(&L->mu);
		}
		L->tail++;
		L->inflight -= j->cost;
		mim_sample_free(j->s);
		j->s = NULL;
		j->state = J_FREE;
		if (j->fatal)
			return mim_seterr("%s", j->err);
		if (!j->ok) {
			L->counts.bad_images++;
			if (L->o.strict)
				return mim_seterr("%s", j->err);
			if (L->o.warn)
				L->o.warn(L->o.ctx, j->err);
			continue;
		}
		L->counts.images++;
		*out = j->it;
		j->it = NULL;
		return 1;
	}
}

void
mim_item_free(struct mim_item *it)
{
	if (!it)
		return;
	mim_sample_free(it->s);
	free(it->x);
	free(it->enc);
	free(it);
}

/* (here, not in image.c: it sets a RandAugment, and randaug.c draws with
 * image.c's generator) */
int
mim_aug_finetune(struct mim_aug *a, unsigned given, int eval, int keep, int out)
{
	int stream = !eval && !keep && !out;	/* a training stream */

	if (!(given & MIM_GIVEN_SCALE))
		a->scale[0] = 0.08, a->scale[1] = 1;
	if (!(given & MIM_GIVEN_INTERP))
		a->interp = MIM_INTERP_BICUBIC;
	if (a->size <= 32 && eval && !(given & MIM_GIVEN_CROP))
		a->crop_ratio = 1;
	if (stream && !(given & MIM_GIVEN_REPROB))
		a->reprob = 0.25;
	if (stream && !(given & MIM_GIVEN_RANDAUG))
		mim_randaug_parse(&a->ra, "rand-m9-mstd0.5-inc1");
	return a->size <= 32 && !eval && !keep;
}

const struct mim_data_counts *
mim_loader_counts(const struct mim_loader *L)
{
	return &L->counts;
}

static const char *
plural(long long n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

void
mim_data_counts_format(char *buf, size_t n, const struct mim_data_counts *k)
{
	if (n)
		buf[0] = 0;
	if (k->bad_images || k->no_image || k->bad_members || k->bad_shards)
		snprintf(buf, n, "; skipped %lld bad %s, %lld %s without image, %lld damaged %s, "
		    "%lld bad %s", k->bad_images, plural(k->bad_images, "image", "images"),
		    k->no_image, plural(k->no_image, "sample", "samples"), k->bad_members,
		    plural(k->bad_members, "member", "members"), k->bad_shards,
		    plural(k->bad_shards, "shard", "shards"));
}

/* a progressive JPEG's coefficients, line caches: tens of MB per image,
 * allocated and freed; kept in the heap for the next image instead of
 * mapped as fresh, zeroed pages each time, which costs more system time
 * than the decoding itself. One arena: a worker thread's own arena maps
 * every block above its 64 MB heap afresh (2 threads: 306k page faults
 * and 1.0 s of system time for 228 photos, against 41k and 0.2 s). */
void
mim_data_tune_malloc(void)
{
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	mallopt(M_ARENA_MAX, 1);
}

int
mim_loader_is_image(const struct mim_loader *L, const char *ext)
{
	for (int i = 0; i < L->next; i++)
		if (strcasecmp(L->exts[i], ext) == 0)
			return 1;
	return 0;
}

/* ---- open and close ------------------------------------------------------ */

static int
parse_exts(struct mim_loader *L, const char *list)
{
	char *dup = mim_strdup(list ? list : default_exts), *save = NULL;

	if (!dup)
		return -1;
	for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char **e = mim_realloc(L->exts, (size_t)(L->next + 1) * sizeof *e);
		if (!e) {
			free(dup);
			return -1;
		}
		L->exts = e;
		if (!(L->exts[L->next] = mim_strdup(*t == '.' ? t + 1 : t))) {
			free(dup);
			return -1;
		}
		for (char *p = L->exts[L->next]; *p; p++)
			*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
		L->next++;
	}
	free(dup);
	if (L->next == 0)
		return mim_seterr("no image extensions in '%s'", list);
	return 0;
}

struct mim_loader *
mim_loader_open(const struct mim_loader_opts *o)
{
	struct mim_loader *L = mim_calloc(1, sizeof *L);
	int nstdin = 0;

	if (!L)
		return NULL;
	L->o = *o;
	L->o.inputs = NULL;
	pthread_mutex_init(&L->mu, NULL);
	pthread_cond_init(&L->work, NULL);
	pthread_cond_init(&L->done, NULL);
	if (mim_aug_check(&o->aug) || parse_exts(L, o->exts))
		goto fail;
	if (o->nranks < 1 || o->rank < 0 || o->rank >= o->nranks) {
		mim_seterr("shard index %d is not in [0, %d)", o->rank, o->nranks);
		goto fail;
	}
	if (o->want == MIM_WANT_FLOAT && o->aug.mode == MIM_MODE_RESIZE) {
		mim_seterr("the resize transform keeps the aspect ratio: only for writing shards");
		goto fail;
	}
	if (o->want == MIM_WANT_ENCODED && (!o->encfmt ||
	    (strcmp(o->encfmt, "png") && strcmp(o->encfmt, "jpg")))) {
		mim_seterr("output format '%s': want png or jpg", o->encfmt ? o->encfmt : "");
		goto fail;
	}
	for (int c = 0; c < 3 && o->want == MIM_WANT_FLOAT; c++)
		if (!(o->std[c] != 0)) {
			mim_seterr("std %g: must not be 0", (double)o->std[c]);
			goto fail;
		}
	if (mim_data_init())
		goto fail;

	/* inputs: each must exist; folders are listed now */
	if (!(L->in = mim_calloc((size_t)(o->ninputs ? o->ninputs : 1), sizeof *L->in)))
		goto fail;
	for (int i = 0; i < o->ninputs; i++) {
		const char *p = o->inputs[i];
		struct input *in = &L->in[L->nin++];
		struct stat st;
		if (!strcmp(p, "-")) {
			if (nstdin++) {
				mim_seterr("'-' (stdin) given twice");
				goto fail;
			}
			if (o->epochs != 1) {
				mim_seterr("stdin can be read once only: it needs --epochs 1");
				goto fail;
			}
		} else if (stat(p, &st)) {
			mim_seterr("%s: %s", p, strerror(errno));
			goto fail;
		}
		if (!(in->path = mim_strdup(p)) || !(in->name = mim_strdup(strcmp(p, "-") ? p : "<stdin>")))
			goto fail;
		if (strcmp(p, "-") && S_ISDIR(st.st_mode) && !(in->dir = mim_dir_open(p)))
			goto fail;
	}
	if (o->shuffle > 0 && !(L->buf = mim_calloc((size_t)o->shuffle, sizeof *L->buf)))
		goto fail;

	int threads = o->threads < 1 ? 1 : o->threads;
	/* 16 jobs a thread: one slow image (a 5120x2880 progressive JPEG
	 * takes 20 times a small one) holds up the ordered output while the
	 * other workers go on with the next 15 a thread */
	L->Q = threads > 1 ? 16 * threads : 1;
	L->budget = o->max_inflight ? o->max_inflight : MIM_INFLIGHT_DEFAULT;
	if (!(L->jobs = mim_calloc((size_t)L->Q, sizeof *L->jobs)))
		goto fail;
	if (threads > 1) {
		if (!(L->thr = mim_calloc((size_t)threads, sizeof *L->thr)))
			goto fail;
		for (int i = 0; i < threads; i++) {
			if (pthread_create(&L->thr[i], NULL, worker, L)) {
				mim_seterr("cannot start a thread");
				goto fail;
			}
			L->nthr++;
		}
	}
	return L;
fail:
	mim_loader_close(L);
	return NULL;
}

void
mim_loader_close(struct mim_loader *L)
{
	if (!L)
		return;
	pthread_mutex_lock(&L->mu);
	L->stop = 1;
	pthread_cond_broadcast(&L->work);
	pthread_mutex_unlock(&L->mu);
	for (int i = 0; i < L->nthr; i++)
		pthread_join(L->thr[i], NULL);
	free(L->thr);
	for (long i = L->tail; i < L->head; i++) {
		struct job *j = &L->jobs[i % L->Q];
		mim_sample_free(j->s);
		mim_item_free(j->it);
	}
	free(L->jobs);
	for (long i = 0; i < L->nbuf; i++)
		mim_sample_free(L->buf[i]);
	free(L->buf);
	mim_tar_close(L->tar);
	free(L->units);
	for (int i = 0; i < L->nin; i++) {
		free(L->in[i].name);
		free(L->in[i].path);
		mim_dir_close(L->in[i].dir);
	}
	free(L->in);
	for (int i = 0; i < L->next; i++)
		free(L->exts[i]);
	free(L->exts);
	pthread_mutex_destroy(&L->mu);
	pthread_cond_destroy(&L->work);
	pthread_cond_destroy(&L->done);
	free(L);
}

/* ---- batches -------------------------------------------------------------- */

/* Copy s into a fresh string, bytes that are not valid UTF-8 as '?', so
 * the keys are always valid JSON. */
static char *
utf8_clean(const char *s)
{
	size_t n = strlen(s);
	char *o = mim_malloc(n + 1);
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, k = 0;

	if (!o)
		return NULL;
	while (i < n) {
		unsigned char c = p[i];
		int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
		int ok = len > 0 && i + (size_t)len <= n;
		for (int j = 1; ok && j < len; j++)
			ok = (p[i + j] & 0xc0) == 0x80;
		if (ok && len == 2 && c < 0xc2)
			ok = 0;	/* overlong */
		if (ok && len == 3) {
			unsigned v = ((c & 15u) << 12) | ((p[i + 1] & 63u) << 6) | (p[i + 2] & 63u);
			ok = v >= 0x800 && (v < 0xd800 || v > 0xdfff);
		}
		if (ok && len == 4) {
			unsigned v = ((c & 7u) << 18) | ((p[i + 1] & 63u) << 12) | ((p[i + 2] & 63u) << 6) | (p[i + 3] & 63u);
			ok = v >= 0x10000 && v <= 0x10ffff;
		}
		if (!ok) {
			o[k++] = '?';
			i++;
		} else {
			memcpy(o + k, p + i, (size_t)len);
			k += (size_t)len;
			i += (size_t)len;
		}
	}
	o[k] = '\0';
	return o;
}

struct mim_frame *
mim_batch_frame(struct mim_item **items, int n, int S, long batch)
{
	struct mim_frame *f = mim_frame_new();
	size_t per = 3 * (size_t)S * S;
	int64_t shape[4] = {n, 3, S, S};
	float *x;
	int anylabel = 0;
	char num[32];

	if (!f)
		return NULL;
	if (!(x = mim_malloc(per * (size_t)(n ? n : 1) * sizeof *x)))
		goto fail;
	for (int i = 0; i < n; i++)
		memcpy(x + per * (size_t)i, items[i]->x, per * sizeof *x);
	if (!mim_frame_take(f, "image", MIM_F32, 4, shape, x)) {
		free(x);
		goto fail;
	}
	for (int i = 0; i < n; i++)
		anylabel |= items[i]->s->has_label;
	if (anylabel) {
		int64_t *lab = mim_malloc((size_t)(n ? n : 1) * sizeof *lab);
		if (!lab)
			goto fail;
		for (int i = 0; i < n; i++)
			lab[i] = items[i]->s->has_label ? items[i]->s->label : -1;
		int64_t ls[1] = {n};
		if (!mim_frame_take(f, "label", MIM_I64, 1, ls, lab)) {
			free(lab);
			goto fail;
		}
	}
	json_t *keys = json_array();
	if (!keys)
		goto fail;
	for (int i = 0; i < n; i++) {
		char *k = utf8_clean(items[i]->s->key);
		if (!k || json_array_append_new(keys, json_string(k))) {
			free(k);
			json_decref(keys);
			goto fail;
		}
		free(k);
	}
	char *js = json_dumps(keys, JSON_COMPACT);
	json_decref(keys);
	if (!js)
		goto fail;
	int rc = mim_meta_set(f, "mim.keys", js);
	free(js);
	if (rc)
		goto fail;
	snprintf(num, sizeof num, "%ld", batch);
	if (mim_meta_set(f, "mim.batch", num))
		goto fail;
	snprintf(num, sizeof num, "%ld", n ? items[0]->epoch : 0L);
	if (mim_meta_set(f, "mim.epoch", num))
		goto fail;
	return f;
fail:
	mim_frame_free(f);
	mim_seterr("out of memory");
	return NULL;
}
