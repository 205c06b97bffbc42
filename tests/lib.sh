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

# ---- data-parallel mim-step under Open MPI's mpirun ----------------------------
# mpi_setup: 1 without mpirun (having said "skip - ..."), else 0 with $MPI
# the launcher of 2 ranks whatever the cores (oversubscribed, not bound, so
# each gets cores/2 threads; a hang fails the test instead of the suite),
# $half those threads, and $leaks the ASAN_OPTIONS of the one run that
# LeakSanitizer checks: under MIM_SANITIZE=1 Open MPI leaks at exit, and
# suppressing that needs every malloc's full stack (10 s a run)
mpi_setup() {
	if ! command -v mpirun >/dev/null 2>&1; then echo "skip - no mpirun (openmpi-bin)"; return 1; fi
	leaks=
	if [ "${MIM_SANITIZE:-0}" = 1 ]; then
		{ cat "$MIM_TOP/tests/lsan.supp" 2>/dev/null
		  printf 'leak:%s\n' libmpi.so libopen-pal.so libopen-rte.so libpmix.so libhwloc.so libevent mca_; } > "$T/lsan.supp"
		export LSAN_OPTIONS="suppressions=$T/lsan.supp:print_suppressions=0"
		leaks="${ASAN_OPTIONS:-}:detect_leaks=1:fast_unwind_on_malloc=0"
		export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
	fi
	export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1	# tests and CI run as root
	export OMPI_MCA_btl_vader_single_copy_mechanism=none	# containers forbid CMA
	MPI="timeout 120 mpirun -np 2 --oversubscribe --bind-to none"
	half=$(( $(nproc) / 2 )); [ "$half" -ge 1 ] || half=1
}

# ranks NAME MIM-STEP-FLAGS...: mim-step FLAGS on each of 2 ranks, rank r
# on its own input $T/NAME.r.mim
ranks() {
	rk_n=$1; shift
	$MPI sh -c 'n=$1; shift; exec mim-step "$@" "$n.$OMPI_COMM_WORLD_RANK.mim"' sh "$T/$rk_n" "$@"
}

# split_ranks NAME: $T/NAME.mim into $T/NAME.0.mim and $T/NAME.1.mim, rank
# r the r-th half of every tensor of every frame (images 0..B/2-1 to rank 0)
split_ranks() {
	$PY - "$T/$1" <<'PYEOF'
import sys, st
fr = list(st.read_frames(open(sys.argv[1] + ".mim", "rb")))
for r in range(2):
    with open("%s.%d.mim" % (sys.argv[1], r), "wb") as f:
        for t, m in fr:
            f.write(st.frame_bytes({k: v[r * len(v) // 2:(r + 1) * len(v) // 2] for k, v in t.items()}, m))
PYEOF
}

# ranks_agree W0 A B TOL: checkpoint A (2 ranks) against B (1 process), from
# the common start W0: per tensor, max |a - b| / max |b| of the update
# (w - w0) and of both AdamW moments; prints the worst of each, fails above
# TOL
ranks_agree() {
	$PY - "$@" <<'PYEOF'
import sys, numpy as np, st
w0, _ = st.load(sys.argv[1]); a, _ = st.load(sys.argv[2]); b, _ = st.load(sys.argv[3])
tol, worst, ok = float(sys.argv[4]), {}, True
for k, vb in b.items():
    kind = k.split(".")[1] if k.startswith("opt.") else "update"
    va, vb = np.asarray(a[k], np.float64), np.asarray(vb, np.float64)
    if kind == "update":
        va, vb = va - w0[k], vb - w0[k]
    s = np.abs(vb).max()
    e = np.abs(va - vb).max() / s if s > 0 else np.abs(va).max()
    if not e <= worst.get(kind, (-1,))[0]:
        worst[kind] = (e, k)
for kind, (e, k) in sorted(worst.items()):
    print("%s: max rel %.2g (%s)" % (kind, e, k))
    ok = ok and e <= tol
sys.exit(0 if ok and len(worst) == 3 else 1)
PYEOF
}

# logs_agree A B N [FIELD...]: the logs of 2 ranks (A) and of 1 process (B)
# have N steps each with the same lr, loss within 1e-5 and grad norm
# within 1e-4, and each FIELD the same (or absent in both)
logs_agree() {
	$PY - "$@" <<'PYEOF'
import sys, json
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
n, fields = int(sys.argv[3]), sys.argv[4:]
assert len(a) == len(b) == n and all(x["lr"] == y["lr"] for x, y in zip(a, b)), (a, b)
assert all(abs(x["loss"] - y["loss"]) <= 1e-5 * y["loss"] for x, y in zip(a, b)), (a, b)
assert all(abs(x["grad_norm"] - y["grad_norm"]) <= 1e-4 * y["grad_norm"] for x, y in zip(a, b)), (a, b)
for f in fields:
    assert [x.get(f) for x in a] == [y.get(f) for y in b], (f, [x.get(f) for x in a], [y.get(f) for y in b])
PYEOF
}

# ranks_vs_one CKPT DATA FIELDS FLAGS...: 6 steps of mim-step FLAGS from
# $T/CKPT0.st on 2 ranks ($T/DATA.r.mim, into $T/CKPT2.st, log CKPT2.log)
# and in one process at twice the batch ($T/DATA.mim, into CKPT1.st and
# CKPT1.log), $half threads each; then ranks_agree within 2e-3 (float
# rounding: the same products summed in another order) and logs_agree
# with the FIELDS (a list in one word, "" for none)
ranks_vs_one() {
	rv_m=$1 rv_d=$2 rv_fields=$3
	shift 3
	rv_flags="$*"
	cp "$T/${rv_m}0.st" "$T/${rv_m}2.st"
	cp "$T/${rv_m}0.st" "$T/${rv_m}1.st"
	rm -f "$T/${rv_m}2.log" "$T/${rv_m}1.log"
	expect_ok "$rv_m: 6 steps, 2 ranks, $rv_flags" \
		'MIM_THREADS=$half ranks $rv_d -c "$T/${rv_m}2.st" $rv_flags --log "$T/${rv_m}2.log"'
	MIM_THREADS=$half mim-step -c "$T/${rv_m}1.st" $rv_flags --log "$T/${rv_m}1.log" "$T/$rv_d.mim"
	check "$rv_m: weights and moments of 2 ranks = 1 process (float rounding, 2e-3):" \
		'ranks_agree "$T/${rv_m}0.st" "$T/${rv_m}2.st" "$T/${rv_m}1.st" 2e-3 >&2'
	sed 's/^/#   /' "$T/.err"
	check "$rv_m: the log: the same lr, loss (1e-5) and grad norm (1e-4)${rv_fields:+; $rv_fields}" \
		'logs_agree "$T/${rv_m}2.log" "$T/${rv_m}1.log" 6 $(echo "$rv_fields" | tr , " ")'
}
