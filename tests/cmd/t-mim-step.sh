# t-mim-step.sh -- mim-step: one step against PyTorch (micro ViT and Swin,
# official golden step and tests/ref/step_ref.py), the lr of every step
# against tests/ref/sched_ref.py, SIGKILL/resume byte for byte, SIGTERM,
# the NaN guard, --grad-out, accumulation, bad flags and bad input.
. "$MIM_TOP/tests/lib.sh"
STEP="$PY $REF/step_ref.py"

mim-ckpt init --preset micro-vit --seed 3 -o "$T/vit0.st" || { notok 'mim-ckpt init'; exit 1; }
archs=vit
if mim-ckpt init --preset micro-swin --seed 3 -o "$T/swin0.st" 2>/dev/null; then archs="vit swin"
else echo "skip - this libmim has no Swin encoder: Swin parity"; fi
$PY "$REF/step_ref.py" data "$T/vit.mim" --patch 4 --frames 12 --seed 1
$PY "$REF/step_ref.py" data "$T/swin.mim" --patch 2 --frames 4 --seed 2
fresh() { cp "$T/$1" "$T/$2"; }	# fresh COPY-OF NAME
sum0=$(cksum < "$T/vit0.st")

# ---- usage errors: exit 2, nothing on stdout --------------------------------
expect_fail 'no --ckpt' 2 'mim-step --steps 1 < "$T/vit.mim"'
expect_fail 'no --steps' 2 'mim-step --ckpt "$T/vit0.st" < "$T/vit.mim"'
expect_fail '--lr with --base-lr' 2 'mim-step -c "$T/vit0.st" -n 1 --lr 1e-3 --base-lr 1e-4 < "$T/vit.mim"'
expect_fail 'unknown schedule' 2 'mim-step -c "$T/vit0.st" -n 1 --sched linear < "$T/vit.mim"'
expect_fail '--milestones without multistep' 2 'mim-step -c "$T/vit0.st" -n 9 --milestones 3 < "$T/vit.mim"'
expect_fail 'milestone inside the warmup' 2 'mim-step -c "$T/vit0.st" -n 9 --sched multistep --warmup-steps 4 --milestones 3 < "$T/vit.mim"'
expect_fail 'warmup longer than the run' 2 'mim-step -c "$T/vit0.st" -n 3 --warmup-steps 4 < "$T/vit.mim"'
expect_fail 'negative lr' 2 'mim-step -c "$T/vit0.st" -n 3 --lr -1 < "$T/vit.mim"'
expect_fail 'bad --accum' 2 'mim-step -c "$T/vit0.st" -n 3 --accum 0 < "$T/vit.mim"'
expect_fail 'bad --loss' 2 'mim-step -c "$T/vit0.st" -n 3 --loss l3 < "$T/vit.mim"'
expect_fail 'unknown flag' 2 'mim-step -c "$T/vit0.st" -n 3 --frobnicate < "$T/vit.mim"'
check 'help' 'mim-step --help | grep -q "usage: mim-step"'

# ---- runtime errors: exit 1, checkpoint untouched ---------------------------
expect_fail 'missing checkpoint' 1 'mim-step -c "$T/nonexistent.st" -n 1 < "$T/vit.mim"'
expect_fail 'empty input' 1 'mim-step -c "$T/vit0.st" -n 1 < /dev/null'
$PY - "$T" <<'PYEOF'
import sys, numpy as np, st
T = sys.argv[1]
st.save(T + "/nomask.mim", {"image": np.zeros((2, 3, 32, 32), np.float32)})
st.save(T + "/size.mim", {"image": np.zeros((2, 3, 64, 64), np.float32),
                          "mask": np.zeros((2, 16, 16), np.uint8)})
st.save(T + "/mdtype.mim", {"image": np.zeros((2, 3, 32, 32), np.float32),
                            "mask": np.zeros((2, 8, 8), np.float32)})
PYEOF
expect_fail 'frame without mask' 1 'mim-step -c "$T/vit0.st" -n 1 "$T/nomask.mim"'
check 'message names the missing mask' 'mim-step -c "$T/vit0.st" -n 1 "$T/nomask.mim" 2>&1 | grep -q "no tensor .mask."'
expect_fail 'image of another size' 1 'mim-step -c "$T/vit0.st" -n 1 "$T/size.mim"'
expect_fail 'mask of another dtype' 1 'mim-step -c "$T/vit0.st" -n 1 "$T/mdtype.mim"'
expect_fail 'input is a directory' 1 'mim-step -c "$T/vit0.st" -n 1 "$T"'
check 'the checkpoint was not touched' '[ "$(cksum < "$T/vit0.st")" = "$sum0" ]'
head -c 40000 "$T/vit.mim" > "$T/trunc.mim"	# one whole frame (~25 kB) and a piece
fresh vit0.st tr.st
expect_fail 'truncated input' 1 'mim-step -c "$T/tr.st" -n 5 --lr 1e-3 < "$T/trunc.mim"'
check 'the step before the truncation was saved' 'mim-ckpt info "$T/tr.st" | grep -q "mim.train.step = 1$"'

# ---- --grad-out ------------------------------------------------------------
expect_ok '--grad-out' 'mim-step -c "$T/vit0.st" --grad-out "$T/g.st" < "$T/vit.mim"'
np=$(mim-ckpt info --json "$T/vit0.st" | $PY -c 'import json,sys; print(json.load(sys.stdin)["tensors"])')
check "--grad-out: grad.<name> for all $np parameters, loss, no training" '$PY - "$T/g.st" "$np" <<PYEOF
import sys, st, numpy as np
t, m = st.load(sys.argv[1])
g = [k for k in t if k.startswith("grad.")]
assert len(g) == int(sys.argv[2]) and t["loss"].shape == () and 0 < float(t["loss"]) < 10, (len(g), t["loss"])
assert "grad.encoder.mask_token" in t and float(m["mim.grad_norm"]) > 0
assert all(np.isfinite(v).all() for v in t.values())
PYEOF'
check '--grad-out - writes the frame to stdout' 'mim-step -c "$T/vit0.st" --grad-out - < "$T/vit.mim" | mim-info | grep -q "grad.decoder.0.weight"'

# ---- one step against PyTorch ------------------------------------------------
if have_torch; then
	# mim's steps first, then every PyTorch reference in one process
	jobs=""
	for m in $archs; do
		# the optimizer on mim's own gradients: official groups,
		# clip_grad_norm_ (made to act), AdamW
		mim-step -c "$T/${m}0.st" --grad-out "$T/g$m.st" < "$T/$m.mim"
		clipv=$($PY -c 'import st,sys; print(float(st.load(sys.argv[1])[1]["mim.grad_norm"]) / 3)' "$T/g$m.st")
		fresh ${m}0.st o$m.st
		expect_ok "$m: one step, clipping on" 'mim-step -c "$T/o$m.st" -n 1 --lr 1e-3 --sched constant --clip-grad $clipv < "$T/$m.mim"'
		jobs="$jobs + opt $T/${m}0.st $T/g$m.st $T/o$m.ref --lr 1e-3 --wd 0.05 --clip $clipv"
		# the whole step in PyTorch: the models of tests/ref, clipping on
		if [ -e "$REF/${m}_ref.py" ]; then
			fresh ${m}0.st f$m.st
			mim-step -c "$T/f$m.st" -n 1 --lr 1e-3 --sched constant --clip-grad 0.2 < "$T/$m.mim"
			jobs="$jobs + full $T/${m}0.st $T/$m.mim $T/f$m.ref --lr 1e-3 --clip 0.2"
		fi
	done
	# drop path: vit_ref draws it as libmim does, from mim-step's seeds
	mim-ckpt init --preset micro-vit --drop-path-rate 0.3 --seed 3 -o "$T/dp0.st"
	fresh dp0.st dp.st
	mim-step -c "$T/dp.st" -n 2 --lr 1e-3 --sched constant --seed 9 < "$T/vit.mim"
	jobs="$jobs + full $T/dp0.st $T/vit.mim $T/dp.ref --lr 1e-3 --steps 2 --seed 9"
	jobs="$jobs + full $T/dp0.st $T/vit.mim $T/dpx.ref --lr 1e-3 --steps 2 --seed 8"
	# accumulation as the official loop runs it: clipping (made to act on
	# every micro-batch) after each backward, not once a step
	fresh vit0.st acco.st
	fresh vit0.st accc.st
	mim-step -c "$T/acco.st" -n 2 --accum 2 --lr 1e-3 --sched constant --official-sched --clip-grad 0.05 < "$T/vit.mim"
	mim-step -c "$T/accc.st" -n 2 --accum 2 --lr 1e-3 --sched constant --clip-grad 0.05 < "$T/vit.mim"
	jobs="$jobs + full $T/vit0.st $T/vit.mim $T/acc.ref --lr 1e-3 --steps 2 --accum 2 --clip 0.05"
	$STEP multi $jobs
	# (two Adam steps with every micro-batch clipped: float noise reaches
	# 1.5e-5 of a weight's update, the once-a-step clip is off by 1.7)
	check '--accum 2 --official-sched: two steps = PyTorch, clipping after every micro-batch' \
		'$STEP step-cmp "$T/acco.st" "$T/acc.ref" --tol 1e-4 >&2'
	check '--accum 2 without it clips once a step: not the official result' \
		'! $STEP step-cmp "$T/accc.st" "$T/acc.ref" --tol 1e-4 >&2'
	# (a gradient that is exactly 0 in one and float noise in the other
	# moves a weight by ~1% of lr: hence --atol 2e-2)
	check 'drop path 0.3: two steps = PyTorch with the seeds of --seed 9' '$STEP step-cmp "$T/dp.st" "$T/dp.ref" --atol 2e-2 >&2'
	check 'drop path: the draws depend on --seed' '! $STEP step-cmp "$T/dp.st" "$T/dpx.ref" --atol 2e-2 >&2'
	for m in $archs; do
		check "$m: params and moments = torch AdamW, clip_grad_norm_, official groups (1e-5)" \
			'$STEP cmp "$T/o$m.st" "$T/o$m.ref" --tol 1e-5 >&2'
		[ -e "$T/f$m.ref" ] &&
		check "$m: one step = PyTorch model + official step" '$STEP step-cmp "$T/f$m.st" "$T/f$m.ref" >&2'
		# the official step of the golden files (official model code, clip 5, lr 1e-3)
		if [ ! -e "$GOLDEN/micro-$m.s7.b2.safetensors" ]; then
			echo "skip - no golden file for micro-$m"; continue; fi
		$STEP golden "$GOLDEN/micro-$m.s7.b2" "$T/${m}0.st" "$T/gold$m.st" "$T/gold$m.mim"
		cat "$T/gold$m.mim" "$T/gold$m.mim" "$T/gold$m.mim" > "$T/gold${m}3.mim"
		fresh gold$m.st gold${m}1.st
		fresh gold$m.st gold${m}3.st
		expect_ok "golden $m: one step" 'mim-step -c "$T/gold${m}1.st" -n 1 --lr 1e-3 --sched constant < "$T/gold$m.mim"'
		check "golden $m: params and moments = official step" '$STEP golden-cmp "$GOLDEN/micro-$m.s7.b2" "$T/gold${m}1.st" >&2'
		expect_ok "golden $m: three steps" 'mim-step -c "$T/gold${m}3.st" -n 3 --lr 1e-3 --sched constant --log "$T/gold$m.log" < "$T/gold${m}3.mim"'
		# after 3 steps AdamW has normalised the float noise of the smallest
		# gradients (a q bias of |g| ~ 1e-6, sums that cancel) into the
		# weights: any change of summation order (a faster product, FMA)
		# moves them by ~1e-4 lr, so the parity tolerance 1e-4 here
		check "golden $m: params after 3 official steps" '$STEP golden-cmp "$GOLDEN/micro-$m.s7.b2" "$T/gold${m}3.st" --what final --tol 1e-4 --atol 6e-3 >&2'
		check "golden $m: losses of the 3 steps = official (1e-5)" '$PY - "$GOLDEN/micro-$m.s7.b2.safetensors" "$T/gold$m.log" <<PYEOF
import sys, json, st
want = st.load(sys.argv[1])[0]["train/losses"]
got = [json.loads(l)["loss"] for l in open(sys.argv[2])]
assert len(got) == 3 and all(abs(a - b) <= 1e-5 * abs(b) for a, b in zip(got, want)), (got, list(want))
PYEOF'
	done
else
	echo "skip - no PyTorch: parity with the reference"
fi

# ---- the lr of every step = the official scheduler's ---------------------------
check 'sched_ref.json is what sched_ref.py prints' '$PY "$REF/sched_ref.py" | cmp - "$REF/sched_ref.json"'
lrcase() {	# lrcase DESC TOL REFARGS -- MIMSTEPFLAGS
	desc=$1 tol=$2; shift 2; ra=""
	while [ "$1" != "--" ]; do ra="$ra $1"; shift; done; shift
	fresh vit0.st lr.st; rm -f "$T/lr.log"
	mim-step -c "$T/lr.st" --log "$T/lr.log" "$@" < "$T/vit.mim" 2>"$T/lr.err"
	$PY "$REF/sched_ref.py" case $ra > "$T/lr.want"
	check "$desc" '$PY - "$T/lr.log" "$T/lr.want" $tol <<PYEOF
import sys, json
got = [json.loads(l)["lr"] for l in open(sys.argv[1])]
want = [float(x) for x in open(sys.argv[2])]
tol = float(sys.argv[3])
assert len(got) == len(want) and all(abs(a - b) <= tol * b for a, b in zip(got, want)), list(zip(got, want))
PYEOF'
}
lrcase 'official warmup+cosine: lr of all 12 steps, exactly' 0 cosine 1 8e-4 4e-6 4e-5 12 3 -- \
	-n 12 --official-sched --lr 8e-4 --warmup-lr 4e-6 --min-lr 4e-5 --warmup-steps 3
lrcase 'official multistep: lr of all 12 steps, exactly' 0 multistep 1 4e-4 2e-6 0 12 2 6,9 0.1 -- \
	-n 12 --official-sched --lr 4e-4 --warmup-lr 2e-6 --warmup-steps 2 --sched multistep --milestones 6,9
lrcase 'clean warmup+cosine: lr of all 12 steps, exactly' 0 cosine 0 8e-4 4e-6 4e-5 12 3 -- \
	-n 12 --lr 8e-4 --warmup-lr 4e-6 --min-lr 4e-5 --warmup-steps 3
lrcase 'official, --accum 2: time in micro-batches, lr of all 6 steps, exactly' 0 cosine 1 8e-4 4e-6 4e-5 6 2 , 0.1 2 -- \
	-n 6 --accum 2 --official-sched --lr 8e-4 --warmup-lr 4e-6 --min-lr 4e-5 --warmup-steps 2
lrcase 'official multistep, --accum 2: milestones in micro-batches too' 0 multistep 1 4e-4 2e-6 0 6 1 3,5 0.1 2 -- \
	-n 6 --accum 2 --official-sched --lr 4e-4 --warmup-lr 2e-6 --warmup-steps 1 --sched multistep --milestones 3,5
lrcase '--base-lr scaled by batch*accum/512, warmup and min too' 1e-13 cosine 0 0.00001 0.000000016 0.00000016 6 2 -- \
	-n 6 --base-lr 1.28e-3 --warmup-lr 2.048e-6 --min-lr 2.048e-5 --warmup-steps 2 --accum 2

# ---- kill and resume: byte for byte -------------------------------------------
# (drop path on and two frames a step, so seeds and partial steps resume too)
$PY "$REF/step_ref.py" data "$T/kd.mim" --patch 4 --frames 20 --seed 4
run=' -n 10 --accum 2 --lr 2e-3 --warmup-steps 2 --save-every 1 --seed 5'
mim-ckpt init --preset micro-vit --drop-path-rate 0.2 --seed 3 -o "$T/kd0.st"
fresh kd0.st ref.st
t0=$(date +%s%N)
expect_ok 'uninterrupted run' 'mim-step -c "$T/ref.st" $run < "$T/kd.mim"'
ms=$(( ($(date +%s%N) - t0) / 1000000 + 1 ))	# its time in ms: kill within it
fresh kd0.st k.st
kills=0 starts=0 rc=1
while [ $starts -lt 100 ]; do
	starts=$((starts + 1))
	cat "$T/kd.mim" | mim-step -c "$T/k.st" $run 2>/dev/null &
	pid=$!
	if [ $kills -lt 12 ]; then
		r=$(( $(od -An -N2 -tu2 /dev/urandom) % (ms / 3 + 1) ))
		sleep "$((r / 1000)).$(printf %03d $((r % 1000)))"
		kill -KILL $pid 2>/dev/null && kills=$((kills + 1))
	fi
	wait $pid 2>/dev/null; rc=$?
	[ $rc -eq 0 ] && break
done
check "SIGKILLed $kills times at random moments, restarted: final checkpoint equals the uninterrupted run's byte for byte" \
	'[ $rc -eq 0 ] && [ $kills -gt 0 ] && cmp "$T/ref.st" "$T/k.st"'
check 'no temporary files left' '[ -z "$(ls "$T" | grep "\.tmp\.")" ]'
expect_ok 'a finished run exits at once without input' 'mim-step -c "$T/ref.st" $run < /dev/null'
expect_fail 'resume with other settings: error' 1 'mim-step -c "$T/k.st" -n 12 --accum 2 --lr 1e-3 < "$T/kd.mim"'
check 'the error names the setting' 'mim-step -c "$T/k.st" -n 12 --accum 2 --lr 1e-3 < "$T/kd.mim" 2>&1 | grep -q "mim.train.sched differs"'
check 'another setting: --accum' 'mim-step -c "$T/k.st" $run --accum 1 -n 12 < "$T/kd.mim" 2>&1 | grep -q "mim.train.optim differs"'
check 'mim-ckpt info reads a training checkpoint' 'mim-ckpt info "$T/ref.st" | grep -q "mim.train.step = 10"'

# ---- input_s: the time a step waited for its frame ------------------------------
# The feeder holds back the 13th frame until the 12th step is logged, then
# another 0.5 s: step 13 waited at least that long, the others hardly.
fresh vit0.st wait.st
: > "$T/wait.log"
( cat "$T/vit.mim"
  i=0; while [ $i -lt 1200 ] && [ "$(wc -l < "$T/wait.log")" -lt 12 ]; do sleep 0.05; i=$((i + 1)); done
  sleep 0.5; cat "$T/vit.mim" ) |
	mim-step -c "$T/wait.st" -n 14 --lr 1e-3 --log "$T/wait.log" 2>"$T/wait.err"
check 'the log has input_s: step 13 waited >= 0.5 s for its frame, steps 2-12 did not' '$PY - "$T/wait.log" <<PYEOF
import json, sys
L = [json.loads(l) for l in open(sys.argv[1])]
w = [x["input_s"] for x in L]
assert len(L) == 14 and all(isinstance(x, (int, float)) and x >= 0 for x in w), w
assert w[12] >= 0.45 and max(w[1:12]) < 0.45, w
PYEOF'

# ---- SIGTERM while waiting for input: save, exit 128+15 --------------------------
fresh vit0.st term.st
mkfifo "$T/fifo"
( cat "$T/vit.mim"; exec sleep 60 ) > "$T/fifo" &
feeder=$!
mim-step -c "$T/term.st" -n 50 --lr 1e-3 --log "$T/term.log" < "$T/fifo" 2>"$T/term.err" &
pid=$!
i=0	# once the 12 frames are trained on, it waits on the pipe
while [ $i -lt 600 ] && [ "$(cat "$T/term.log" 2>/dev/null | wc -l)" -lt 12 ]; do sleep 0.05; i=$((i + 1)); done
kill -TERM $pid
wait $pid; rc=$?
kill $feeder 2>/dev/null
check 'SIGTERM while waiting for input: exit 143 at once, progress saved' \
	'[ $rc -eq 143 ] && mim-ckpt info "$T/term.st" | grep -q "mim.train.step = 12$" && grep -q "signal 15" "$T/term.err"'

# ---- NaN guard ----------------------------------------------------------------
$PY "$REF/step_ref.py" data "$T/nan.mim" --frames 6 --nan 3
fresh vit0.st nan.st
expect_fail 'NaN loss stops the run' 1 'mim-step -c "$T/nan.st" -n 6 --lr 1e-3 --save-every 1 < "$T/nan.mim"'
check 'the last good checkpoint stays (step 3)' 'mim-ckpt info "$T/nan.st" | grep -q "mim.train.step = 3$"'
check 'the message says what was not finite' 'mim-step -c "$T/nan.st" -n 6 --lr 1e-3 < "$T/nan.mim" 2>&1 | grep -q "step 4: the loss is not finite"'
fresh vit0.st nan2.st
expect_ok '--skip-nonfinite goes on' 'mim-step -c "$T/nan2.st" -n 5 --lr 1e-3 --skip-nonfinite --log "$T/nan.log" < "$T/nan.mim"'
check 'the skipped batch is logged, 5 steps done on 6 frames' \
	'grep -q "\"skipped\":true" "$T/nan.log" && mim-ckpt info "$T/nan2.st" | grep -q "mim.train.batches = 6$"'

# ---- accumulation, --skip ---------------------------------------------------------
$PY - "$T/vit.mim" "$T/dup.mim" <<'PYEOF'
import sys, st
fr = list(st.read_frames(open(sys.argv[1], "rb")))[:3]
with open(sys.argv[2], "wb") as f:
    for t, m in fr:
        f.write(st.frame_bytes(t) * 2)
PYEOF
fresh vit0.st a1.st
fresh vit0.st a2.st
mim-step -c "$T/a1.st" -n 3 --lr 1e-3 < "$T/vit.mim"
mim-step -c "$T/a2.st" -n 3 --lr 1e-3 --accum 2 < "$T/dup.mim"
check '--accum 2 on doubled frames = --accum 1 (same bytes)' '$STEP cmp "$T/a2.st" "$T/a1.st" --tol 0 >&2'
fresh vit0.st sk.st
expect_ok '--skip' 'mim-step -c "$T/sk.st" -n 2 --lr 1e-3 --skip 10 < "$T/vit.mim"'
check '--skip sets the data position' 'mim-ckpt info "$T/sk.st" | grep -q "mim.train.batches = 12$"'
