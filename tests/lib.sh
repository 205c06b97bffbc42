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

# ---- a prediction head through the pipe and in training ----------------------
# head_pipe_train CKPT HEAD GRID NAME...: 6 frames of one batch of 4 random
# 32x32 images with GRID x GRID masks ($T/in.mim); mim-encode | mim-head |
# mim-loss gives pred (4,3,32,32) for each; 6 steps of mim-step lower the
# loss on it and move each parameter NAME ($T/a.st, its log $T/a.log); the
# same run with its input cut after 3 frames saves step 3 and, resumed on
# the whole input, ends byte-identical. HEAD names the head in the checks.
head_pipe_train() {
	hp_ck=$1 hp_head=$2 hp_grid=$3
	shift 3
	hp_names="$*"
	$PY - "$T/in.mim" "$hp_grid" <<'PYEOF'
import sys, numpy as np, st
g = np.random.default_rng(3)
img = g.standard_normal((4, 3, 32, 32)).astype(np.float32)
n = int(sys.argv[2])
mask = (g.random((4, n, n)) < 0.6).astype(np.uint8)
with open(sys.argv[1], "wb") as f:
    for _ in range(6):
        f.write(st.frame_bytes({"image": img, "mask": mask}))
PYEOF
	expect_ok "mim-encode | mim-head | mim-loss with the $hp_head head" 'mim-encode --ckpt "$hp_ck" "$T/in.mim" | mim-head --ckpt "$hp_ck" | mim-loss -q > "$T/out.mim"'
	check 'pred is (B,3,32,32), 6 frames' '$PY -c "
import sys, st
f = list(st.read_frames(open(sys.argv[1], \"rb\")))
assert f[0][0][\"pred\"].shape == (4, 3, 32, 32) and len(f) == 6
" "$T/out.mim"'
	cp "$hp_ck" "$T/a.st"
	cp "$hp_ck" "$T/b.st"
	rm -f "$T/a.log"
	expect_ok "mim-step trains the $hp_head head, 6 steps" 'mim-step -q --ckpt "$T/a.st" --steps 6 --lr 1e-3 --save-every 0 --log "$T/a.log" "$T/in.mim"'
	check 'the loss on the same batch goes down (step 6 < step 1)' '$PY - "$T/a.log" <<PYEOF
import sys, json
l = [json.loads(x)["loss"] for x in open(sys.argv[1])]
assert len(l) == 6 and l[5] < l[0] and l[5] == l[5], l
PYEOF'
	check "its weights moved: $hp_names" '! mim-ckpt diff "$hp_ck" "$T/a.st" > "$T/d" &&
		for n in $hp_names; do grep -q "$n" "$T/d" || exit 1; done'
	head -c $(( $(wc -c < "$T/in.mim") / 2 )) "$T/in.mim" > "$T/half.mim"
	expect_fail 'the same run, its input cut after 3 frames' 1 'mim-step -q --ckpt "$T/b.st" --steps 6 --lr 1e-3 --save-every 0 "$T/half.mim"'
	check 'it saved step 3' '$PY -c "
import sys, st
t, meta = st.load(sys.argv[1])
assert meta[\"mim.train.step\"] == \"3\", meta[\"mim.train.step\"]
" "$T/b.st"'
	expect_ok 'then resumed on the whole input' 'mim-step -q --ckpt "$T/b.st" --steps 6 --lr 1e-3 --save-every 0 "$T/in.mim"'
	check 'resumed and uninterrupted runs end byte-identical' 'cmp "$T/a.st" "$T/b.st"'
}
