/* ckpt.h -- the subcommands of mim-ckpt. Each is `int ckpt_NAME(int argc,
 * char **argv)`: argv[0] is the subcommand's name, the flags follow (parse
 * them with getopt_long from optind = 1); it returns the exit status
 * (0 ok, 1 runtime error) or exits through die() / usage_error() (cli.h).
 * Messages start with "mim-ckpt: " (argv0 stays the tool's name).
 *
 * To add one: define it in cmd/ckpt/NAME.c (the Makefile links every
 * cmd/ckpt/NAME.c into mim-ckpt), declare it here, add ONE row to subcmds[] in
 * cmd/mim-ckpt.c, and document it in man/mim-ckpt.1. */
#ifndef MIM_CMD_CKPT_H
#define MIM_CMD_CKPT_H

int ckpt_init(int argc, char **argv);	/* cmd/mim-ckpt.c */
int ckpt_info(int argc, char **argv);	/* cmd/mim-ckpt.c */
int ckpt_import(int argc, char **argv);	/* cmd/ckpt/import.c */
int ckpt_export(int argc, char **argv);	/* cmd/ckpt/export.c */
int ckpt_diff(int argc, char **argv);	/* cmd/ckpt/diff.c */
int ckpt_classifier(int argc, char **argv);	/* cmd/ckpt/classifier.c */
int ckpt_groups(int argc, char **argv);	/* cmd/ckpt/groups.c */

#endif
