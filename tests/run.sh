#!/bin/sh
# run.sh -- the whole test suite: C unit tests ($MIM_BUILD/tests/test_*) and
# shell tests of the tools (tests/cmd/t-*.sh). Every check prints one line,
# "ok - ..." or "not ok - ..."; a test program that exits non-zero without a
# "not ok" line counts as one failure. Ends with "N passed, N failed" and
# exits non-zero on any failure.
#   tests/run.sh [PATTERN]   run only tests whose file name contains PATTERN
cd "$(dirname "$0")/.." || exit 2
MIM_BUILD=${MIM_BUILD:-build}
export MIM_BUILD
export MIM_TOP=$(pwd)
export PATH="$MIM_TOP/$MIM_BUILD/bin:$PATH"
export MIM_THREADS=${MIM_THREADS:-2}
pat=${1:-}
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
pass=0 fail=0 skip=0

run() {	# run NAME CMD...
	name=$1; shift
	start=$(date +%s)
	# a hung test must not stall the suite: MIM_TEST_TIMEOUT s per file
	timeout -k 10 "${MIM_TEST_TIMEOUT:-900}" "$@" >"$log/out" 2>"$log/err"
	rc=$?
	[ "$rc" -eq 124 ] && echo "not ok - $name timed out after ${MIM_TEST_TIMEOUT:-900} s" >>"$log/out"
	p=$(grep -c '^ok ' "$log/out")
	f=$(grep -c '^not ok ' "$log/out")
	s=$(grep -c '^skip ' "$log/out")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
		echo "not ok - $name exited with status $rc" >>"$log/out"
	fi
	pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s))
	printf '%-40s %4d ok %3d failed %3ds\n' "$name" "$p" "$f" $(( $(date +%s) - start ))
	if [ "$f" -ne 0 ]; then
		grep -v '^ok ' "$log/out" | sed 's/^/    /'
		sed 's/^/    stderr: /' "$log/err" | tail -n 30
	fi
}

for t in "$MIM_BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	case $t in *"$pat"*) ;; *) continue ;; esac
	run "$(basename "$t")" "$t"
done
for t in tests/cmd/t-*.sh; do
	[ -e "$t" ] || continue
	case $t in *"$pat"*) ;; *) continue ;; esac
	run "$(basename "$t")" sh "$t"
done
echo
if [ "$skip" -gt 0 ]; then
	echo "$pass passed, $fail failed, $skip skipped"
else
	echo "$pass passed, $fail failed"
fi
[ "$fail" -eq 0 ]
