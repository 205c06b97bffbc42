/* cli.h -- what every mim tool shares: messages, exit codes, flag values.
 * Exit status: 0 ok, 1 runtime failure, 2 usage error. Messages go to
 * stderr as "prog: subject: reason"; stdout carries frames only. */
#ifndef MIM_CLI_H
#define MIM_CLI_H

#include <signal.h>
#include <stdint.h>
#include "mim.h"

extern const char *argv0;

/* Set argv0 from argv[0]; ignore SIGPIPE so a closed downstream pipe shows
 * up as EPIPE, which the write helpers turn into a quiet exit. */
void cli_init(int argc, char **argv);
/* Print "prog: msg" (printf-style) and exit 1. */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Print "prog: <library error message>" and exit 1. */
void die_lib(void) __attribute__((noreturn));
/* Print "prog: msg" and carry on. */
void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print "prog: msg" and "usage..." hint and exit 2. */
void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* getopt_long, with its errors as one message naming the option, exit 2:
 * "prog: unknown option '--frob'", "prog: option '--ckpt' needs a value",
 * "prog: option '--help' takes no value", "prog: option '--s' is
 * ambiguous (--size, --scale)" (a subcommand, argv[0] other than the
 * program, comes first: "mim-ckpt: diff: ..."). getopt's own messages are
 * off; it never returns '?' or ':'. */
struct option;
int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
    int *longindex);

/* Parse a flag value or exit 2 naming the flag. */
long long cli_int(const char *flag, const char *s, long long min, long long max);
double cli_double(const char *flag, const char *s, double min, double max);
/* A loss or region name (mim_loss_parse, mim_region_parse), or exit 2. */
enum mim_loss_kind cli_loss(const char *flag, const char *s);
enum mim_loss_region cli_region(const char *flag, const char *s);
/* --precision: fp32 or bf16 (else exit 2), set for the process's products
 * (mim_gemm_set_precision); a CPU that cannot run bf16 exits 1 with
 * "FLAG bf16: this CPU has neither AMX nor AVX512-BF16". */
void cli_precision(const char *flag, const char *s);
/* Parse "a,b,c" into up to max doubles; returns the count, or exits 2. */
int cli_doubles(const char *flag, const char *s, double *v, int max);

/* Refuse to write binary frames to a terminal (as gzip does). */
void cli_stdout_not_tty(void);
/* Write a frame to stdout; on EPIPE exit 0 quietly (the reader is done),
 * on any other error die. */
void cli_put(const struct mim_frame *f);
/* Call fn on every frame of the streams files[0], files[1], ... (a NULL-
 * terminated list; none: stdin, "-" too), in order, with `where` set to
 * "FILE: frame K" for messages; then, if put, write the frame to stdout
 * (cli_put), and free it. A stream that cannot be opened or read dies with
 * the library's message. The filter loop of mim-encode, mim-head and
 * mim-loss. */
void cli_frames(char **files, int put,
    void (*fn)(struct mim_frame *f, const char *where, void *ctx), void *ctx);
/* The tensor `name` of f, which must be F32 [B,d0,d1,d2] with 1 <= B <=
 * 2^20; otherwise die "WHERE: ..." (hint: why it may be missing, or NULL;
 * what: where the wanted shape comes from). */
struct mim_tensor *cli_batch(struct mim_frame *f, const char *name, const int64_t d[3],
    const char *where, const char *hint, const char *what);
/* The frame's tensor 'mask' as 0/1 bytes, in a buffer of cli's that the
 * next call reuses. Any integer dtype or BOOL, nonzero = masked
 * (mim_mask_bytes); want is its shape [B,h,w], -1 for any. NULL when the
 * frame has none and need is NULL; else dies "WHERE: no tensor 'mask'
 * (NEED)", and "WHERE: tensor 'mask': ..." on another dtype or shape. */
const uint8_t *cli_mask(const struct mim_frame *f, const int64_t want[3], const char *where,
    const char *need);
/* The say hook of a training run (mim/train.h): messages as warn()
 * prints them, the progress line redrawn in place on stderr. */
void cli_say(void *ctx, enum mim_say kind, const char *text);
/* Stop a training run (mim/train.h) on SIGINT or SIGTERM: at the next
 * step boundary, with the progress saved (r->stop = &cli_stop, the
 * signal). A read in cli_next_frame waiting for input then ends at once:
 * /dev/null is put in place of r->fd (EOF; the frame in transit is not
 * needed any more). A second signal kills. */
extern volatile sig_atomic_t cli_stop;
void cli_stop_on_signals(struct mim_run *r);
/* The next hook of a run (ctx: the struct mim_run): mim_read_frame of its
 * reader, interruptible by cli_stop_on_signals; 0 once a signal came. */
int cli_next_frame(void *ctx, struct mim_frame **f);
/* The target of the loss or the picture (lib/model/target.c): that of
 * checkpoint ckpt, or of the flags --target kind (NULL: pixel),
 * --clusters FILE ('centres' F32 [K,3]), --norm-pix P and --pred-div div
 * (0: 1), into *t. t->K is 0 for bins from the flags (pred's channels
 * tell it). Exits 2 on flags that contradict, 1 on a file that will not
 * do; what it loads stays until the exit. */
void cli_target(const char *ckpt, const char *kind, const char *clusters, int norm_pix, int div,
    struct mim_target *t);
/* Check stdout for a late write error (full disk), then exit(status). */
void cli_exit(int status) __attribute__((noreturn));

#endif
