# t-cli.sh -- what every tool shares on the command line: an option error
# is one line naming the option (getopt's own message is off), then the
# --help hint, exit 2.
. "$MIM_TOP/tests/lib.sh"

# tool, subcommand (or -), and one of its options that needs a value (or
# -); mim-step adopts cli_getopt separately

# want MSG: the two lines a usage error of $prog (and $sub) prints
want() { printf "%s: %s%s\nTry '%s --help' for more information.\n" "$prog" "${sub:+$sub: }" "$1" "$prog"; }
while read -r prog sub valued; do
	[ "$sub" = - ] && sub=
	tool="$prog${sub:+ $sub}"
	want "unknown option '--frob'" > "$T/want"
	check "$tool: unknown option: exit 2, one line naming it" \
		'$tool --frob < /dev/null > "$T/o" 2> "$T/got"; test $? = 2 && ! test -s "$T/o" && cmp "$T/want" "$T/got"'
	if [ "$valued" != - ]; then
		want "option '$valued' needs a value" > "$T/want"
		$tool $valued < /dev/null 2> "$T/got"
		check "$tool: $valued without its value, one line" 'cmp "$T/want" "$T/got"'
	fi
done <<EOF
mim-data - --size
mim-mask - --strategy
mim-encode - --ckpt
mim-head - --ckpt
mim-loss - --loss
mim-step - --ckpt
mim-view - --output
mim-cluster - --clusters
mim-info - -
mim-ckpt init --preset
mim-ckpt info -
mim-ckpt import --preset
mim-ckpt export --img-size
mim-ckpt diff --tol
EOF
check 'a short option: unknown, and without its value' \
	'test "$(mim-encode -x 2>&1 | sed -n 1p)" = "mim-encode: unknown option '"'"'-x'"'"'" &&
	test "$(mim-encode -c 2>&1 | sed -n 1p)" = "mim-encode: option '"'"'-c'"'"' needs a value"'
check 'an abbreviation: the option it stands for; an ambiguous one: the candidates' \
	'test "$(mim-encode --ck 2>&1 | sed -n 1p)" = "mim-encode: option '"'"'--ckpt'"'"' needs a value" &&
	test "$(mim-ckpt init --dep 3 2>&1 | sed -n 1p)" = "mim-ckpt: init: option '"'"'--dep'"'"' is ambiguous (--depth, --depths)"'
check 'a value for an option that takes none' \
	'test "$(mim-info --json=1 2>&1 | sed -n 1p)" = "mim-info: option '"'"'--json'"'"' takes no value"'
