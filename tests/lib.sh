# lib.sh -- helpers for the shell tests (sourced by tests/cmd/t-*.sh).
#   expect_ok DESC CMD       CMD (a shell string) exits 0
#   expect_fail DESC N CMD   CMD exits with status N, prints nothing on
#                            stdout and a "prog: ..." message on stderr
#   check DESC CMD           like expect_ok, for assertions (test, cmp, ...)
# Each prints "ok - DESC" or "not ok - DESC". Work in $T, a fresh temp dir;
# $REF is tests/ref, $GOLDEN the golden data.
set -u
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
PY=/usr/bin/python3
REF="$MIM_TOP/tests/ref"
# the golden data (one official training step of each micro model): shared/
# beside the checkout, where CI puts a copy too
GOLDEN=${MIM_GOLDEN:-$MIM_TOP/../shared/golden}
export PYTHONPATH="$MIM_TOP/tests/ref${PYTHONPATH:+:$PYTHONPATH}"

ok()    { echo "ok - $1"; }
notok() { echo "not ok - $1"; }

expect_ok() {
	if (eval "$2") >"$T/.out" 2>"$T/.err"; then ok "$1"; else
		notok "$1 (status $?)"; sed 's/^/#   /' "$T/.err" | head -n 20; fi
}
check() { expect_ok "$@"; }

expect_fail() {
	(eval "$3") >"$T/.out" 2>"$T/.err"
	rc=$?
	if [ "$rc" -ne "$2" ]; then
		notok "$1 (status $rc, want $2)"; sed 's/^/#   /' "$T/.err" | head -n 5
	elif [ -s "$T/.out" ]; then
		notok "$1 (wrote to stdout)"
	elif ! grep -q '^mim-[a-z]*: ' "$T/.err"; then
		notok "$1 (no 'prog: ...' message)"; sed 's/^/#   /' "$T/.err" | head -n 5
	else
		ok "$1"
	fi
}

have_torch() { $PY -c 'import torch' 2>/dev/null; }

# the first N frames of the stream on stdin (an input cut short)
first_frames() { $PY -c "
import sys, st
for i, (t, m) in enumerate(st.read_frames(sys.stdin.buffer)):
    sys.stdout.buffer.write(st.frame_bytes(t, m))
    if i == int(sys.argv[1]) - 1: break
" "$1"; }
