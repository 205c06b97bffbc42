/* cli.c -- shared tool helpers (see cli.h). Only tools link this; the
 * library itself never prints or exits. */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

const char *argv0 = "mim";

void
cli_init(int argc, char **argv)
{
	(void)argc;
	if (argv[0]) {
		const char *s = strrchr(argv[0], '/');
		argv0 = s ? s + 1 : argv[0];
	}
	signal(SIGPIPE, SIG_IGN);
	mim_pipe_grow(1);
}

/* "prog: " + the message + end, in one write: the lines of processes that
 * share a stderr (the ranks under mpirun, a pipeline) never interleave
 * within a line. Pieces of a longer message are written in turn. */
static void
vline(const char *pre, const char *end, const char *fmt, va_list ap)
{
	char buf[4096];
	int n = snprintf(buf, sizeof buf, "%s%s: ", pre, argv0);
	size_t k = n < 0 ? 0 : (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
	va_list aq;

	va_copy(aq, ap);
	n = vsnprintf(buf + k, sizeof buf - k, fmt, aq);
	va_end(aq);
	if (n >= 0 && k + (size_t)n + strlen(end) < sizeof buf) {
		strcat(buf + k, end);
		fputs(buf, stderr);
		return;
	}
	fwrite(buf, 1, k, stderr);	/* too long for one write: as it comes */
	vfprintf(stderr, fmt, ap);
	fputs(end, stderr);
}

static void
vmsg(const char *fmt, va_list ap)
{
	vline("", "\n", fmt, ap);
}

static void
line(const char *pre, const char *end, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vline(pre, end, fmt, ap);
	va_end(ap);
}

void
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg(fmt, ap);
	va_end(ap);
	exit(1);
}

void
die_lib(void)
{
	die("%s", mim_errmsg());
}

void
warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg(fmt, ap);
	va_end(ap);
}

void
usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg(fmt, ap);
	va_end(ap);
	fprintf(stderr, "Try '%s --help' for more information.\n", argv0);
	exit(2);
}

/* The long options that "--name" (up to any '=') names: how many, and
 * their names, comma-separated, into list; *one, the option when exactly
 * one. An exact match is the only one; prefixes of options with the same
 * meaning count once, as in getopt. */
static int
long_matches(const struct option *lo, const char *tok, char *list, size_t n,
    const struct option **one)
{
	size_t len = strcspn(tok, "=");
	int k = 0;

	*list = '\0';
	*one = NULL;
	for (const struct option *o = lo; o && o->name; o++)
		if (!strncmp(o->name, tok, len) && strlen(o->name) == len) {
			snprintf(list, n, "--%s", o->name);
			*one = o;
			return 1;
		}
	for (const struct option *o = lo; o && o->name; o++) {
		if (strncmp(o->name, tok, len))
			continue;
		int dup = 0;
		for (const struct option *p = lo; p < o; p++)
			dup |= !strncmp(p->name, tok, len) && p->has_arg == o->has_arg &&
			    p->flag == o->flag && p->val == o->val;
		if (dup)
			continue;
		size_t at = strlen(list);
		snprintf(list + at, n - at, "%s--%s", k++ ? ", " : "", o->name);
		*one = o;
	}
	if (k != 1)
		*one = NULL;
	return k;
}

/* getopt_long said '?' or ':' (the option string begins with ':'): one
 * message for the option at fault. With opterr 0, glibc leaves optopt 0
 * for a long option it does not know or finds ambiguous, argv[optind - 1]
 * being that option; for a long option's missing or unwanted value optopt
 * is its value; else optopt is the short option. */
static void __attribute__((noreturn))
bad_option(int c, char **argv, const struct option *lo)
{
	const char *tok = optind > 0 ? argv[optind - 1] : "", *sub = "", *colon = "";
	const struct option *o;
	char list[512];

	/* a subcommand's argv[0], "diff" for "mim-ckpt diff" */
	if (argv[0] && strcmp(argv[0], argv0)) {
		const char *b = strrchr(argv[0], '/');
		sub = b ? b + 1 : argv[0];
		colon = ": ";
		if (!strcmp(sub, argv0))
			sub = colon = "";
	}
	if (tok[0] == '-' && tok[1] == '-' && tok[2]) {
		int k = long_matches(lo, tok + 2, list, sizeof list, &o);
		int len = (int)strcspn(tok + 2, "=");
		if (optopt == 0 && k > 1)
			usage_error("%s%soption '--%.*s' is ambiguous (%s)", sub, colon, len, tok + 2, list);
		if (optopt == 0)
			usage_error("%s%sunknown option '--%.*s'", sub, colon, len, tok + 2);
		if (o && o->val == optopt && c == ':')
			usage_error("%s%soption '%s' needs a value", sub, colon, list);
		if (o && o->val == optopt && strchr(tok, '='))
			usage_error("%s%soption '%s' takes no value", sub, colon, list);
	}
	if (c == ':')
		usage_error("%s%soption '-%c' needs a value", sub, colon, optopt);
	usage_error("%s%sunknown option '-%c'", sub, colon, optopt);
}

int
cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
    int *longindex)
{
	char so[128];
	int c;

	/* a leading ':' makes a missing value ':' rather than '?' */
	snprintf(so, sizeof so, ":%s", shortopts[0] == ':' ? shortopts + 1 : shortopts);
	opterr = 0;
	c = getopt_long(argc, argv, so, longopts, longindex);
	if (c == '?' || c == ':')
		bad_option(c, argv, longopts);
	return c;
}

long long
cli_int(const char *flag, const char *s, long long min, long long max)
{
	char *end;

	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (!*s || *end || errno)
		usage_error("%s: '%s' is not an integer", flag, s);
	if (v < min || v > max)
		usage_error("%s: %s is out of range [%lld, %lld]", flag, s, min, max);
	return v;
}

double
cli_double(const char *flag, const char *s, double min, double max)
{
	char *end;

	errno = 0;
	double v = strtod(s, &end);
	if (!*s || *end || errno || !isfinite(v))
		usage_error("%s: '%s' is not a number", flag, s);
	if (v < min || v > max)
		usage_error("%s: %s is out of range [%g, %g]", flag, s, min, max);
	return v;
}

enum mim_loss_kind
cli_loss(const char *flag, const char *s)
{
	int k = mim_loss_parse(s);
	if (k < 0)
		usage_error("%s: '%s' is not %s", flag, s, mim_loss_choices());
	return (enum mim_loss_kind)k;
}

enum mim_loss_region
cli_region(const char *flag, const char *s)
{
	int r = mim_region_parse(s);
	if (r < 0)
		usage_error("%s: '%s' is not %s", flag, s, mim_region_choices());
	return (enum mim_loss_region)r;
}

void
cli_precision(const char *flag, const char *s)
{
	int p = mim_precision_parse(s);

	if (p < 0)
		usage_error("%s: '%s' is not fp32 or bf16", flag, s);
	if (mim_gemm_set_precision((enum mim_precision)p) < 0)
		die("%s %s: %s", flag, s, mim_errmsg());
}

int
cli_doubles(const char *flag, const char *s, double *v, int max)
{
	int n = 0;
	char *dup = strdup(s), *save = NULL;

	if (!dup)
		die("out of memory");
	for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (n == max)
			usage_error("%s: more than %d values in '%s'", flag, max, s);
		v[n++] = cli_double(flag, tok, -HUGE_VAL, HUGE_VAL);
	}
	free(dup);
	if (n == 0)
		usage_error("%s: no values in '%s'", flag, s);
	return n;
}

void
cli_stdout_not_tty(void)
{
	if (isatty(STDOUT_FILENO))
		usage_error("refusing to write binary frames to a terminal (pipe into a tool or redirect to a file)");
}

void
cli_put(const struct mim_frame *f)
{
	if (mim_write_frame(STDOUT_FILENO, f) < 0) {
		if (errno == EPIPE)
			exit(0);
		die("<stdout>: %s", mim_errmsg());
	}
}

/* what cli_frames has in flight, global so that an exit through die()
 * leaves nothing unreachable behind (LeakSanitizer) */
static struct mim_reader *frames_r;
static struct mim_frame *frames_f;

void
cli_frames(char **files, int put,
    void (*fn)(struct mim_frame *f, const char *where, void *ctx), void *ctx)
{
	static char *stdin_only[] = {"-", NULL};
	int rc;

	if (!files || !*files)
		files = stdin_only;
	for (; *files; files++) {
		if (!(frames_r = mim_reader_open(*files)))
			die("%s", mim_errmsg());
		while ((rc = mim_read_frame(frames_r, &frames_f)) > 0) {
			char where[300];
			snprintf(where, sizeof where, "%s: frame %ld", mim_reader_name(frames_r),
			    mim_reader_count(frames_r) - 1);
			fn(frames_f, where, ctx);
			if (put)
				cli_put(frames_f);
			mim_frame_free(frames_f);
			frames_f = NULL;
		}
		if (rc < 0)
			die("%s", mim_errmsg());
		mim_reader_close(frames_r);
		frames_r = NULL;
	}
}

struct mim_tensor *
cli_batch(struct mim_frame *f, const char *name, const int64_t d[3], const char *where,
    const char *hint, const char *what)
{
	struct mim_tensor *t = mim_frame_get(f, name);
	char got[128];

	if (!t)
		die("%s: no tensor '%s'%s%s%s", where, name, hint ? " (" : "", hint ? hint : "",
		    hint ? ")" : "");
	if (t->dtype != MIM_F32)
		die("%s: tensor '%s': dtype %s, want F32", where, name, mim_dtype_name(t->dtype));
	if (t->ndim != 4 || t->shape[0] < 1 || t->shape[0] > 1 << 20 ||
	    t->shape[1] != d[0] || t->shape[2] != d[1] || t->shape[3] != d[2])
		die("%s: tensor '%s': shape %s, want [B,%lld,%lld,%lld] (%s)", where, name,
		    mim_shape_str(got, sizeof got, t->ndim, t->shape),
		    (long long)d[0], (long long)d[1], (long long)d[2], what);
	return t;
}

const uint8_t *
cli_mask(const struct mim_frame *f, const int64_t want[3], const char *where, const char *need)
{
	static uint8_t *buf;	/* (static: reachable at exit) */
	static size_t cap;
	struct mim_tensor *t = mim_frame_get(f, "mask");

	if (!t && !need)
		return NULL;
	if (!t)
		die("%s: no tensor 'mask' (%s)", where, need);
	if (mim_mask_check(t) < 0)
		die("%s: %s", where, mim_errmsg());
	if (!mim_frame_want(f, "mask", -1, 3, want))
		die("%s: %s%s", where, mim_errmsg(), want[1] >= 0 ? " (image / model patch size)" : "");
	size_t n = (size_t)mim_tensor_numel(t);
	if (!buf || n > cap) {
		uint8_t *p = realloc(buf, n ? n : 1);
		if (!p)
			die("out of memory");
		buf = p;
		cap = n;
	}
	mim_mask_bytes(t, buf);
	return buf;
}

void
cli_say(void *ctx, enum mim_say kind, const char *text)
{
	(void)ctx;
	if (kind == MIM_SAY_PROGRESS)
		line("\r", "", "%s", text);
	else if (kind == MIM_SAY_EOL)
		fputc('\n', stderr);
	else
		warn("%s", text);
}

volatile sig_atomic_t cli_stop;
static volatile sig_atomic_t reading;	/* cli_next_frame is waiting */
static struct mim_run *stop_run;

static void
on_signal(int sig)
{
	int e = errno;

	cli_stop = sig;
	signal(sig, SIG_DFL);	/* a second one kills */
	if (reading && stop_run && stop_run->fd >= 0) {
		int fd = open("/dev/null", O_RDONLY);
		if (fd >= 0) {
			dup2(fd, stop_run->fd);
			close(fd);
		}
	}
	errno = e;
}

void
cli_stop_on_signals(struct mim_run *r)
{
	struct sigaction sa = {.sa_handler = on_signal};

	stop_run = r;
	r->stop = &cli_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

int
cli_next_frame(void *ctx, struct mim_frame **f)
{
	struct mim_run *r = ctx;

	reading = 1;
	int rc = cli_stop ? 0 : mim_read_frame(r->reader, f);
	reading = 0;
	return rc;
}

void
cli_exit(int status)
{
	if (fflush(stdout) == EOF || ferror(stdout)) {
		if (errno != EPIPE) {
			warn("<stdout>: write error: %s", strerror(errno));
			status = 1;
		}
	}
	exit(status);
}

/* what cli_target loaded, which t points into: freed at the exit (a
 * static that is only written is no root for LeakSanitizer, the compiler
 * drops the store) */
static struct mim_model *target_model;
static struct mim_frame *target_centres;

static void
target_free(void)
{
	mim_model_free(target_model);
	mim_frame_free(target_centres);
}

void
cli_target(const char *ckpt, const char *kind, const char *clusters, int norm_pix, int div,
    struct mim_target *t)
{
	memset(t, 0, sizeof *t);
	atexit(target_free);
	if (ckpt && (kind || clusters || norm_pix || div))
		usage_error("--ckpt gives the target: no --target, --clusters, --norm-pix or --pred-div "
		    "beside it");
	if (ckpt) {
		if (!(target_model = mim_model_open(ckpt)))
			die("%s", mim_errmsg());
		mim_target_of(target_model, t);
		return;
	}
	if (kind && (int)(t->kind = mim_target_parse(kind)) < 0)
		usage_error("--target: '%s' is not pixel, bins or clusters", kind);
	t->norm_pix = norm_pix;
	t->div = div ? div : 1;
	if (clusters) {
		struct mim_frame *cf = target_centres = mim_load(clusters);
		struct mim_tensor *ct = cf ? mim_frame_get(cf, "centres") : NULL;
		char sh[64];
		if (!ct || ct->dtype != MIM_F32 || ct->ndim != 2 || ct->shape[1] != 3 || ct->shape[0] < 2)
			die("%s: %s%s%s", clusters, !cf ? mim_errmsg() : !ct ? "no tensor 'centres'" :
			    "tensor 'centres': want F32 [K,3], got ", ct ? mim_dtype_name(ct->dtype) : "",
			    ct ? mim_shape_str(sh, sizeof sh, ct->ndim, ct->shape) : "");
		t->K = (int)ct->shape[0];
		t->centres = ct->data;
	}
	if (t->kind == MIM_TARGET_CLUSTERS && !t->centres)
		usage_error("--target clusters needs --clusters FILE (or --ckpt)");
	if (t->centres && t->kind != MIM_TARGET_CLUSTERS)
		usage_error("--clusters goes with --target clusters");
}
