/* mim/train.h -- a training run around struct mim_train (optim.h): what
 * mim-step(1) runs, pretraining or fine-tuning (a classifier checkpoint:
 * {image, label} frames, mim_train_batch_cls). A run loads the
 * checkpoint on every rank, reads its frames (replaying past those a
 * resumed run has consumed), takes a step per frame until the last, saves,
 * writes the log and progress lines, and stops on a signal, a non-finite
 * step or a bad frame, keeping the progress made.
 *
 * Data parallel. Every rank runs the same program on its own input; the
 * collectives come from the tool as hooks (struct mim_dp), so that the
 * library needs no MPI. Ranks decide together: at each agreement point
 * every rank passes what it found (its own problem, or the signal that
 * asked it to stop) and all get the worst, so they stop at the same frame.
 * A rank that fails between two agreement points agrees at once: that
 * meets the others at whichever point they reach next, for the loop is
 * ordered so that the next collective after any local failure is an
 * agreement (the digest check and the gradient sums come only after an
 * agreement all passed). Alone the agreement is the rank's own verdict.
 *
 * Messages. The library prints nothing: it hands each message to the
 * tool's say() hook when it arises, on the rank that found the problem
 * (rank 0 for what all ranks see alike), in the order a user reads them.
 *
 * The calls, in order (each collective: every rank makes it):
 *   mim_run_load     checkpoint and model on every rank (rank 0 first
 *                    probes the folder and locks the checkpoint)
 *   mim_run_open     every rank its input
 *   mim_run_first    the first frame: the batch size
 *   mim_run_grad     (--grad-out: the first batch's gradient, then stop)
 *   mim_run_lrs      the learning rates for that batch
 *   mim_run_prepare  training state (restored on resume), log
 *   mim_run_train    the loop, to the last step, and the final save
 * Each returns 0 to go on, or how the run ended (enum mim_run_end); the
 * tool then leaves (with MPI: a barrier, then finalize). */
#ifndef MIM_TRAIN_H
#define MIM_TRAIN_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mim/optim.h"

/* Collectives over the ranks. A NULL hook is one process's identity. */
struct mim_dp {
	int rank, world;		/* 0 and 1: one process */
	int (*max)(int v);		/* the largest v of all ranks */
	double (*sum)(double x);	/* sum over ranks */
	void (*sum_floats)(float *x, size_t n);	/* in place */
	void (*bcast)(void *buf, size_t n);	/* rank 0's bytes to all */
	int (*same)(uint64_t v);	/* 1 when v is equal on every rank */
	/* every rank's n bytes of mine, in rank order, into all (rank 0;
	 * world * n bytes) */
	void (*gather)(const void *mine, void *all, size_t n);
};

enum mim_run_end {
	MIM_RUN_FAILED = 1,	/* said why (on the rank that found it) */
	MIM_RUN_DONE,		/* nothing (more) to do: success */
	MIM_RUN_STOPPED,	/* by signal `signal`, progress saved: 128+signal */
};

enum mim_say {
	MIM_SAY_MSG,		/* a message: "prog: TEXT" and a newline */
	MIM_SAY_PROGRESS,	/* the progress line, redrawn: "\rprog: TEXT" */
	MIM_SAY_EOL,		/* end the progress line: a newline */
	MIM_SAY_LINE,		/* a progress line of its own, for a log file
				 * or a pipe: "prog: TEXT" and a newline */
};

/* How a run reports its progress (rank 0). */
enum mim_progress {
	MIM_PROGRESS_NONE,
	MIM_PROGRESS_REDRAW,	/* a terminal: the line redrawn after each step */
	MIM_PROGRESS_LINES,	/* anything else: a line of its own every
				 * progress_every seconds (and after the first
				 * step), so that nohup, CI and tee show it */
};

struct mim_run {
	/* ---- set by the tool (zero: the default) ---- */
	const char *ckpt;	/* loaded, and saved to (rank 0) */
	int64_t steps;		/* optimizer steps of the whole run */
	int64_t save_every;	/* save every N steps; 0: at the end only */
	int64_t skip;		/* frames consumed before the first; < 0: the
				 * checkpoint's data position (set it -1) */
	int skip_nonfinite;	/* skip a non-finite step, do not stop */
	int grad_only;		/* mim_run_grad follows: no step count checks */
	const char *log;	/* append a JSON line per step (rank 0), or NULL */
	int progress;		/* enum mim_progress */
	double progress_every;	/* MIM_PROGRESS_LINES: seconds between lines
				 * (0: a line per step) */
	int extend;		/* a stored schedule of fewer steps is taken:
				 * the run goes on to `steps` on the new
				 * schedule (mim_train_restore_extended) */
	/* validation (rank 0): every val_every steps, the masked loss of the
	 * model on the frames of the stream val (its first val_batches; 0:
	 * all), without gradient or drop path; a JSON line of the log
	 * {"step","val_loss","val_frames","val_s"} and a progress line (a
	 * classifier: the cross-entropy on {image, label} frames, and
	 * "val_acc1", "val_acc5" in percent). It
	 * reads the weights and changes nothing a step depends on. */
	const char *val;
	int64_t val_every, val_batches;
	int ft_given;		/* the tool was given fine-tuning settings: the
				 * checkpoint must be a classifier */
	struct mim_dp dp;
	/* the frames: 1 and *f, 0 at the end, -1 with the error set; NULL:
	 * mim_read_frame(reader) */
	int (*next)(void *ctx, struct mim_frame **f);
	void *next_ctx;
	struct mim_reader *reader;	/* (mim_run_open, or the tool's) */
	const char *input;	/* the input's name, for messages */
	int fd;			/* the reader's file descriptor (mim_run_open
				 * sets it; a tool with a reader of its own
				 * sets it, or -1) */
	volatile sig_atomic_t *stop;	/* nonzero: stop at the next frame
					 * (the signal number), or NULL */
	void (*say)(void *ctx, enum mim_say kind, const char *text);
	void *say_ctx;

	/* ---- the run's state ---- */
	struct mim_model *model;
	struct mim_train *t;
	int resume;		/* the checkpoint carried training state */
	int batch;		/* images per frame (mim_run_first) */
	int signal;		/* MIM_RUN_STOPPED: the signal */
	int64_t saved_step;	/* the step this run last saved, 0: none */
	/* (private) */
	struct mim_frame *cf, *frame;
	const float *img;
	const uint8_t *mask;
	uint8_t *maskbuf;
	size_t maskcap;
	const int64_t *label;	/* a classifier's: the frame's labels */
	const int64_t *vlabels;	/* (validation's) */
	double vacc[2];		/* a classifier's last val_acc1, val_acc5 */
	int64_t *labelbuf, *vlabel;
	size_t labelcap, vlabelcap;
	int B, told, own_fd;
	int lockfd;		/* FILE.lock, held (lockpath set) */
	char *lockpath;
	float *vbuf;		/* validation: latent, then prediction */
	uint8_t *vmask;		/* validation: the mask's bytes */
	size_t vcap, vmaskcap;
	long k;			/* index of the frame in hand */
	char pos[128];		/* mim.pos of the last frame trained on ("":
				 * none), and the steps it is true for */
	char *posall;		/* rank 0: every rank's, as mim.train.data */
	int64_t pos_step;	/* the step posall was gathered at, -1: none */
	int64_t saved, step0;	/* step of the checkpoint on disk, at start */
	FILE *logf;
	double t0, tlast, input_s, tline;
	int64_t line_step;	/* MIM_PROGRESS_LINES: step of the last line */
	char msg[1200];
};

/* Rank 0 reads the checkpoint and sends the model's config and weights to
 * the others; removes the temporary files of killed saves. MIM_RUN_DONE
 * when the checkpoint is already at `steps` (said so).
 * Unless grad_only, rank 0 first makes sure that the run can save and
 * that no other run saves to the same file: it creates and removes the
 * save's temporary file (FILE.tmp.PID) in the checkpoint's folder, a real
 * probe where access(2) would pass root on a read-only mount, and takes
 * an exclusive flock(2) on FILE.lock for the whole run, writing its pid
 * into it. The lock is a file of its own because a save renames a new
 * file over FILE: a lock on FILE's inode would stay with the old one. A
 * run that finds the lock held fails at once, naming the holder's pid.
 * The kernel drops the lock of a killed run; the file it leaves is taken
 * over by the next run, and mim_run_free removes it. */
int mim_run_load(struct mim_run *r);
/* Open the input: FILE, or stdin for "-"; r->fd is its descriptor, which
 * the run closes after the last step (before the final save). */
int mim_run_open(struct mim_run *r, const char *path);
/* An agreement on a check of the tool's: every rank passes its problem
 * (msg) or NULL; MIM_RUN_FAILED (msg said here) when any rank had one. */
int mim_run_together(struct mim_run *r, const char *msg);
/* Read the first frame, check it against the model: sets r->batch, the
 * same on every rank (else fails). */
int mim_run_first(struct mim_run *r);
/* The gradient of the first batch (the mean over the ranks), as a frame
 * on rank 0 (*out: grad.<name> per parameter, loss, mim.config and
 * mim.grad_norm); MIM_RUN_DONE on the other ranks. */
int mim_run_grad(struct mim_run *r, const struct mim_trainopt *o, struct mim_frame **out);
/* The learning rates of o for the batch of the first frame: sets
 * o->batch and o->world, and the schedule's lr, warmup_lr and min_lr: as
 * given, or with per512 the official scaling of lrs given per 512 images
 * by the images of a step on all ranks (mim_lr_scale; o->base_lr = lr). */
void mim_run_lrs(const struct mim_run *r, struct mim_trainopt *o, double lr, double warmup_lr,
    double min_lr, int per512);
/* The training state with the settings o (o->batch == r->batch), restored
 * from the checkpoint on resume (with r->extend: to a longer schedule)
 * and the same on every rank, which must all have the same settings;
 * opens the log; checks the first frame of the validation stream. */
int mim_run_prepare(struct mim_run *r, const struct mim_trainopt *o);
/* Skip the consumed frames, then train to step r->steps, saving every
 * save_every steps and at the end. 0 when the last step is saved. */
int mim_run_train(struct mim_run *r);
/* Free what the run holds (not r itself); closes the log, removes and
 * releases the lock. */
void mim_run_free(struct mim_run *r);

#endif
