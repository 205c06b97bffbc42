# t-docs.sh -- the house rule, kept: every tool (cmd/mim-X.c) has --help
# (exit 0, its usage on stdout), a man page man/mim-X.1 and a row in
# README.md's tools table, and mim(7) lists it. For each tool, and each
# subcommand of mim-ckpt, the long options of --help (the lines that define
# one), of the man page's OPTIONS (the heading line after .TP or .TQ) and
# of the parser (the struct option tables of cmd/mim-X.c and cmd/X/*.c) are
# the same options, with the same short forms, and the usage lines of --help
# and the page's SYNOPSIS name no other. mim-ckpt's commands are the same in
# its --help, its dispatch table and its page. Nothing stale: no man page,
# README row or mim(7) entry of a tool that is not there. The man pages are
# read as troff source: man need not be installed.
. "$MIM_TOP/tests/lib.sh"
MAN=$MIM_TOP/man
CMD=$MIM_TOP/cmd

# Options that --help names only inside another option's description
# (keeping the help short), never on a line of their own; they must still
# appear in --help, and have their own entry in the man page.
#   --crop-pct is --crop-ratio's other name ("or --crop-pct")
#   --val-every and --val-batches qualify --val ("every --val-every K ...")
HELP_IN_PROSE='mim-data --crop-pct
mim-step --val-every
mim-step --val-batches'

# ---- extraction -------------------------------------------------------------
# longs: the long options named anywhere on stdin (troff's \- read as -)
longs() { sed 's/\\-/-/g' | grep -oE -- '--[a-z0-9][a-z0-9-]*' | sort -u; }

# help_defs: the long options that --help's text on stdin defines: a line
# whose first character, within 7 columns, is '-' ("  -c, --ckpt FILE ...",
# "      --eval, --no-augment ..."), up to the description (deeper-indented
# continuation lines and the description's own mentions are prose)
help_defs() {
	sed -n -E 's/^ {1,7}(-[A-Za-z0-9], )?(--[a-z0-9][a-z0-9-]*([ =][^ ,]+)?(, --[a-z0-9][a-z0-9-]*([ =][^ ,]+)?)*).*/\2/p' |
		longs
}
# help_shorts: "-c --ckpt" for each defining line with a short form
help_shorts() { sed -n -E 's/^ {1,7}(-[A-Za-z0-9]), (--[a-z0-9][a-z0-9-]*).*/\1 \2/p' | sort -u; }

# man_heads PAGE [SUB]: the heading lines (after .TP or .TQ) of the OPTIONS
# section; with SUB (mim-ckpt), those under ".SS SUB" and ".SS every command"
man_heads() {
	awk -v sub_="${2:-}" '
	/^\.SH/ { opts = ($0 ~ /OPTIONS/); sec = ""; prev = ""; next }
	/^\.SS/ { sec = substr($0, 5); gsub(/"/, "", sec); prev = ""; next }
	opts && (prev == ".TP" || prev == ".TQ") &&
	    (sub_ == "" || sec == sub_ || sec == "every command") { print }
	{ prev = $1 }' "$1"
}
# help_usage: the usage lines at the head of --help's text on stdin
help_usage() { awk '/^usage:/ { u = 1 } u && !/^usage:/ && !/^       / { u = 0 } u'; }
# man_synopsis PAGE [SUB]: its SYNOPSIS; with SUB, the lines of "mim-ckpt SUB"
man_synopsis() {
	awk -v sub_="${2:-}" '
	/^\.SH/ { syn = ($0 ~ /SYNOPSIS/); next }
	syn && /^\.B mim-/ { cmd = $3 }
	syn && (sub_ == "" || cmd == sub_) { print }' "$1"
}
# man_shorts: "-c --ckpt" for each ".BR \-c ", " \-\-ckpt ..." on stdin
man_shorts() {
	sed 's/\\-/-/g; s/\\f[A-Z]//g; s/"//g' |
		grep -oE -- '(^|[ ,])-[A-Za-z0-9] *, *--[a-z0-9][a-z0-9-]*' |
		sed -E 's/^[ ,]*//; s/ *, */ /' | sort -u
}

# parser_longs FILE...: the names of the struct option tables' entries
parser_longs() {
	grep -ohE '\{"[a-z0-9][a-z0-9-]*", *(no|required|optional)_argument' "$@" |
		sed -E 's/^\{"([^"]*)".*/--\1/' | sort -u
}
# parser_src TOOL [SUB]: the source of TOOL's parser, cmd/TOOL.c and
# cmd/X/*.c as the Makefile builds them; of mim-ckpt SUB, the function
# ckpt_SUB in those files
parser_src() {
	ps_dir=$CMD/${1#mim-}
	set -- "$1" "${2:-}" "$CMD/$1.c" $(ls "$ps_dir"/*.c 2>/dev/null)
	if [ -n "$2" ]; then
		ps_sub=$2; shift 2
		awk "/^ckpt_$ps_sub\\(/,/^}/" "$@"
	else
		shift 2
		cat "$@"
	fi
}

# only_in A B WHAT: the lines of A that are not in B; says them on stderr
# ("WHAT: --x --y") and fails if there are any
only_in() {
	comm -23 "$1" "$2" > "$T/.only"
	[ -s "$T/.only" ] || return 0
	echo "$3: $(tr '\n' ' ' < "$T/.only")" >&2
	return 1
}
# why MSG: say MSG on stderr, fail
why() { echo "$1" >&2; return 1; }
# has_help FILE WHERE: FILE found --help (the extraction read something)
has_help() { grep -qx -- '--help' "$1" || why "no --help found in $2: did its markup change?"; }

# ---- the tools ----------------------------------------------------------------
tools=$(for f in "$CMD"/mim-*.c; do basename "$f" .c; done)
check 'the tools are cmd/mim-*.c, twelve of them or more' 'test "$(echo "$tools" | wc -l)" -ge 12'
subs=$(mim-ckpt --help | sed -n '/Commands:/,$s/^  \([a-z][a-z]*\) .*/\1/p')
printf '%s\n' $subs | sort > "$T/subs"

# "mim-x" -> "MIM-X"
upper() { echo "$1" | tr a-z A-Z; }
# mim(7)'s tools: the .BR mim-x (1) headings of ".SS The tools"; its SEE ALSO
awk '/^\.S[HS]/ { s = ($0 ~ /The tools/) } s && p == ".TP" { print } { p = $1 }' "$MAN/mim.7" |
	sed -n 's/^\.BR \(mim-[a-z]*\) (1).*/\1/p' | sort > "$T/mim7.tools"
awk '/^\.SH/ { s = ($0 ~ /SEE ALSO/) } s' "$MAN/mim.7" |
	sed -n 's/^\.BR \(mim-[a-z]*\) (1).*/\1/p' | sort > "$T/mim7.see"

# the checks of TOOL (or mim-ckpt SUB): --help, and its options everywhere
unit() {
	tool=$1 sub=${2:-}
	u="$tool${sub:+ $sub}"	# the command, as it is typed
	$tool $sub --help > "$T/help" 2> "$T/help.err"
	rc=$?
	check "$u --help: exit 0, its usage on stdout, nothing on stderr" \
		'{ test $rc = 0 || why "exit $rc"; } &&
		{ head -n 1 "$T/help" | grep -q "^usage: $u " || why "stdout does not begin with usage: $u"; } &&
		{ ! test -s "$T/help.err" || why "stderr: $(head -n 1 "$T/help.err")"; }'
	[ "$tool" = mim-ckpt ] && [ -z "$sub" ] && return	# its commands have the options
	help_defs < "$T/help" > "$T/hd"
	longs < "$T/help" > "$T/ha"
	man_heads "$MAN/$tool.1" "$sub" > "$T/mh"
	longs < "$T/mh" > "$T/md"
	parser_src "$tool" "$sub" | parser_longs > "$T/pd"
	check "$u: each option that --help defines has an entry in OPTIONS of $tool.1" \
		'has_help "$T/hd" "the option lines of --help" && only_in "$T/hd" "$T/md" "in --help, not in OPTIONS of $tool.1"'
	check "$u: each option in OPTIONS of $tool.1 has a line of its own in --help" '
		has_help "$T/md" "OPTIONS of $tool.1" &&
		comm -23 "$T/md" "$T/hd" > "$T/prose" &&
		echo "$HELP_IN_PROSE" | sed -n "s/^$u \(--[^ ]*\)$/\1/p" | sort > "$T/exc" &&
		only_in "$T/prose" "$T/exc" "in OPTIONS of $tool.1, not defined in --help" &&
		only_in "$T/exc" "$T/ha" "HELP_IN_PROSE, but not named in --help at all" &&
		only_in "$T/exc" "$T/prose" "HELP_IN_PROSE, but not (or no longer) only in prose"'
	check "$u: OPTIONS of $tool.1 are the options of the parser (cmd/)" '
		has_help "$T/pd" "the parser'"'"'s tables" &&
		only_in "$T/pd" "$T/md" "accepted by the parser, not in OPTIONS of $tool.1" &&
		only_in "$T/md" "$T/pd" "in OPTIONS of $tool.1, not accepted by the parser"'
	{ help_usage < "$T/help"; man_synopsis "$MAN/$tool.1" "$sub"; } | longs > "$T/syn"
	check "$u: the usage of --help and SYNOPSIS of $tool.1 name only options of the parser" \
		'{ test -s "$T/syn" || why "no options found in usage nor SYNOPSIS"; } &&
		only_in "$T/syn" "$T/pd" "in the usage or SYNOPSIS, not accepted by the parser"'
	help_shorts < "$T/help" > "$T/hs"
	man_shorts < "$T/mh" > "$T/ms"
	check "$u: the short forms of --help and of $tool.1 agree" \
		'only_in "$T/hs" "$T/ms" "in --help, not in OPTIONS of $tool.1" &&
		only_in "$T/ms" "$T/hs" "in OPTIONS of $tool.1, not in --help"'
}

for t in $tools; do
	check "$t: a man page, man/$t.1 (.TH $(upper "$t") 1, NAME $t)" \
		'{ test -f "$MAN/$t.1" || why "no man/$t.1"; } &&
		{ head -n 1 "$MAN/$t.1" | grep -q "^\.TH $(upper "$t") 1 " || why "its first line is not .TH $(upper "$t") 1 ..."; } &&
		{ sed -n "/^\.SH NAME/{n;p;q;}" "$MAN/$t.1" | grep -q "^$t \\\\-" || why "its NAME is not \"$t \\- ...\""; }'
	check "$t: a row in README.md's tools table" 'grep -q "^| \`$t\` |" "$MIM_TOP/README.md"'
	check "$t: mim(7) lists it under The tools and in SEE ALSO" \
		'echo "$t" | only_in - "$T/mim7.tools" "not under The tools of mim.7" &&
		echo "$t" | only_in - "$T/mim7.see" "not in SEE ALSO of mim.7"'
	unit "$t"
done
for s in $subs; do
	unit mim-ckpt "$s"
done

# ---- nothing stale -----------------------------------------------------------
echo "$tools" | sort > "$T/tools"
check 'every man/mim-*.1 is a tool' \
	'ls "$MAN" | sed -n "s/\.1$//p" | sort | only_in - "$T/tools" "man pages of no tool"'
check "every row of README.md's tools table is a tool" \
	'sed -n "s/^| \`\(mim-[a-z]*\)\` |.*/\1/p" "$MIM_TOP/README.md" | sort | only_in - "$T/tools" "rows of no tool"'
check 'every tool that mim(7) lists is a tool' \
	'sort -u "$T/mim7.tools" "$T/mim7.see" | only_in - "$T/tools" "in mim.7, not a tool"'
check 'mim-ckpt: the commands of --help are its dispatch table (cmd/mim-ckpt.c)' \
	'test -s "$T/subs" && sed -n "s/^[[:space:]]*{\"\([a-z]*\)\", ckpt_.*/\1/p" "$CMD/mim-ckpt.c" | sort > "$T/disp" &&
	only_in "$T/disp" "$T/subs" "in the dispatch table, not in --help" &&
	only_in "$T/subs" "$T/disp" "in --help, not in the dispatch table"'
check 'mim-ckpt: OPTIONS of mim-ckpt.1 has a .SS for each command' \
	'awk "/^\.SH/ { o = (\$0 ~ /OPTIONS/) } o && /^\.SS/" "$MAN/mim-ckpt.1" | sed "s/^\.SS //; /^every command$/d" | sort > "$T/ss" &&
	only_in "$T/subs" "$T/ss" "no .SS in OPTIONS" && only_in "$T/ss" "$T/subs" ".SS of no command"'
