# t-mim-step-run.sh -- mim-step's run around the steps: a checkpoint folder
# it cannot save in fails before the first step, a second run on a locked
# checkpoint is refused (the first ends as a lone run), progress lines
# when stderr is not a terminal and the final "saved" line, validation on
# a held-out stream (same training bytes; val_loss in the log and in
# mim-view --curve), and --extend (the stretched cosine).
. "$MIM_TOP/tests/lib.sh"

mim-ckpt init --preset micro-vit --seed 3 -o "$T/vit0.st" || { notok 'mim-ckpt init'; exit 1; }
$PY "$REF/step_ref.py" data "$T/vit.mim" --patch 4 --frames 12 --seed 1
$PY "$REF/step_ref.py" data "$T/val.mim" --patch 4 --frames 3 --seed 7
$PY "$REF/step_ref.py" data "$T/long.mim" --patch 4 --frames 80 --seed 2
fresh() { cp "$T/$1" "$T/$2"; }	# fresh COPY-OF NAME
# wait_for N FILE: until FILE has N lines (at most 30 s)
wait_for() { i=0; while [ $i -lt 600 ] && [ "$(cat "$2" 2>/dev/null | wc -l)" -lt "$1" ]; do sleep 0.05; i=$((i + 1)); done; }

# ---- a checkpoint folder it cannot save in: fails before the first step -------
# (root passes access(W_OK) on a read-only folder: make one that refuses
# root too, an immutable folder or a read-only mount, and clean it up)
mkdir "$T/ro"
fresh vit0.st ro/r.st
ro=""
if [ "$(id -u)" != 0 ]; then chmod a-w "$T/ro" && ro=chmod
elif chattr +i "$T/ro" 2>/dev/null; then ro=chattr
elif mount -t tmpfs tmpfs "$T/ro" 2>/dev/null; then
	cp "$T/vit0.st" "$T/ro/r.st"
	mount -o remount,ro "$T/ro" 2>/dev/null && ro=mount
fi
trap 'case $ro in chattr) chattr -i "$T/ro";; mount) umount "$T/ro";; chmod) chmod u+w "$T/ro";; esac
	rm -rf "$T"' EXIT
if [ -z "$ro" ] || touch "$T/ro/x" 2>/dev/null; then
	echo "skip - cannot make a read-only folder here ($ro)"
else
	expect_fail 'a read-only checkpoint folder: refused' 1 \
		'mim-step -c "$T/ro/r.st" -n 3 --lr 1e-3 --log "$T/ro.log" < "$T/vit.mim"'
	cp "$T/.err" "$T/ro.err"
	check 'before the first step (no log line), naming the folder' \
		'[ ! -s "$T/ro.log" ] && grep -q "^mim-step: .*/ro: cannot save the checkpoint in this folder" "$T/ro.err"'
	check 'the checkpoint is untouched' 'cmp "$T/ro/r.st" "$T/vit0.st"'
fi

# ---- a second run on the same checkpoint: refused while the first goes on -------
$PY - "$T/vit.mim" "$T/h1.mim" "$T/h2.mim" <<'PYEOF'
import sys, st
fr = open(sys.argv[1], "rb").read()
n = len(fr) // 12	# 12 frames of the same size
open(sys.argv[2], "wb").write(fr[:6 * n])
open(sys.argv[3], "wb").write(fr[6 * n:])
PYEOF
fresh vit0.st lone.st
mim-step -q -c "$T/lone.st" -n 12 --lr 1e-3 --save-every 1 < "$T/vit.mim"
fresh vit0.st one.st
mkfifo "$T/fifo1"
# the feeder gives 6 frames, waits for the second run to be refused, then the rest
( cat "$T/h1.mim"; i=0; while [ $i -lt 600 ] && [ ! -e "$T/two.done" ]; do sleep 0.05; i=$((i + 1)); done
  cat "$T/h2.mim" ) > "$T/fifo1" &
mim-step -c "$T/one.st" -n 12 --lr 1e-3 --save-every 1 --log "$T/one.log" < "$T/fifo1" 2>"$T/one.err" &
one=$!
wait_for 6 "$T/one.log"
mim-step -c "$T/one.st" -n 12 --lr 1e-3 --save-every 1 < "$T/vit.mim" >"$T/two.out" 2>"$T/two.err"; two=$?
alive=0; kill -0 $one 2>/dev/null && alive=1
check 'the lock file names the holder' '[ "$(cat "$T/one.st.lock")" = "$one" ]'
touch "$T/two.done"
wait $one; rc=$?
check 'a second run on a checkpoint in use: exit 1 at once, naming the pid of the first' \
	'[ $two -eq 1 ] && [ $alive -eq 1 ] && grep -q "^mim-step: .*one.st: in use by another run (pid $one holds .*one.st.lock)" "$T/two.err"'
check 'the first goes on to the end: the checkpoint of a lone run, byte for byte' \
	'[ $rc -eq 0 ] && cmp "$T/one.st" "$T/lone.st"'
check 'the lock file goes with the run' '[ ! -e "$T/one.st.lock" ]'
echo 12345 > "$T/lone.st.lock"	# left by a killed run: nobody holds it
expect_ok 'a stale lock file does not block' 'mim-step -c "$T/lone.st" -n 12 --lr 1e-3 --save-every 1 < /dev/null'
check 'it is taken over and removed' '[ ! -e "$T/lone.st.lock" ]'

# ---- progress when stderr is not a terminal; the final "saved" line ---------------
fresh vit0.st p.st
mkfifo "$T/fifo2"
( cat "$T/vit.mim"; exec sleep 60 ) > "$T/fifo2" &
feeder=$!
mim-step -c "$T/p.st" -n 50 --lr 1e-3 --progress-every 0 --log "$T/p.log" < "$T/fifo2" 2>"$T/p.err" &
pid=$!
wait_for 12 "$T/p.log"
sleep 0.2
cp "$T/p.err" "$T/p.during"
alive=0; kill -0 $pid 2>/dev/null && alive=1
kill -TERM $pid; wait $pid
kill $feeder 2>/dev/null
check '--progress-every 0, stderr a file: a line per step while the run goes on' \
	'[ $alive -eq 1 ] && [ "$(grep -c "^mim-step: step [0-9]*/50  loss [0-9.]*  lr [0-9.e-]*  [0-9.]* img/s  ETA [0-9]*:[0-9][0-9]:[0-9][0-9]$" "$T/p.during")" -eq 12 ]'
check 'plain lines: no carriage return' '! grep -q "$(printf "\r")" "$T/p.during"'
fresh vit0.st s.st
mim-step -c "$T/s.st" -n 6 --lr 1e-3 < "$T/vit.mim" 2>"$T/s.err"
check 'the default (a line every 30 s): the first step and the last, then "saved"' \
	'grep -q "^mim-step: step 1/6 " "$T/s.err" && grep -q "^mim-step: step 6/6 " "$T/s.err" &&
	 [ "$(grep -c "step [0-9]/6" "$T/s.err")" -eq 2 ] && [ "$(tail -n 1 "$T/s.err")" = "mim-step: $T/s.st: saved step 6" ]'
fresh vit0.st s.st
mim-step -q -c "$T/s.st" -n 6 --lr 1e-3 < "$T/vit.mim" 2>"$T/q.err"
check '-q: nothing at all' '[ ! -s "$T/q.err" ]'
fresh vit0.st s.st
mim-step -c "$T/s.st" -n 20 --lr 1e-3 --save-every 5 < "$T/vit.mim" 2>"$T/e.err"
check 'an input that ends early: says the step saved' \
	'grep -q "input ended after step 12 of 20" "$T/e.err" && [ "$(tail -n 1 "$T/e.err")" = "mim-step: $T/s.st: saved step 12" ]'

# ---- validation on a held-out stream ---------------------------------------------
fresh vit0.st nv.st
fresh vit0.st v.st
mim-step -q -c "$T/nv.st" -n 6 --lr 1e-3 < "$T/vit.mim"
expect_ok '--val every 2 steps' 'mim-step -c "$T/v.st" -n 6 --lr 1e-3 --val "$T/val.mim" --val-every 2 --log "$T/v.log" < "$T/vit.mim"'
cp "$T/.err" "$T/v.err"
check 'validation does not change the training: the same checkpoint, byte for byte' 'cmp "$T/v.st" "$T/nv.st"'
mim-encode -c "$T/v.st" "$T/val.mim" | mim-head -c "$T/v.st" | mim-loss 2>&1 >/dev/null | tail -n 1 > "$T/pipe.loss"
check 'val lines at steps 2, 4, 6 over the 3 frames; the last = mim-encode | mim-head | mim-loss' '$PY - "$T/v.log" "$T/pipe.loss" <<PYEOF
import sys, json
L = [json.loads(l) for l in open(sys.argv[1])]
v = [x for x in L if "val_loss" in x]
assert [x["step"] for x in v] == [2, 4, 6] and all(x["val_frames"] == 3 for x in v), v
assert len([x for x in L if "loss" in x]) == 6
want = float(open(sys.argv[2]).read().split("mean ")[1])
assert abs(v[-1]["val_loss"] - want) <= 2e-6 * want, (v[-1], want)
PYEOF'
check 'and on the progress lines' 'grep -q "^mim-step: step 4/6  val_loss [0-9.]*  (3 frames of .*val.mim)$" "$T/v.err"'
fresh vit0.st v2.st
mim-step -q -c "$T/v2.st" -n 3 --lr 1e-3 --val "$T/val.mim" --val-every 3 --val-batches 2 --log "$T/v2.log" < "$T/vit.mim"
check '--val-batches 2: the first 2 frames' 'grep -q "^{\"step\":3,\"val_loss\":[0-9.]*,\"val_frames\":2," "$T/v2.log"'
expect_ok 'mim-view --curve reads a log with val lines' 'mim-view --curve "$T/v.log" -o "$T/v.svg"'
check 'and draws val_loss as a second series (3 points) with a legend' \
	'grep -q "<polyline class=\"val_loss\"" "$T/v.svg" && [ "$(grep -c "<circle" "$T/v.svg")" -eq 3 ] &&
	 grep -q ">val loss (last" "$T/v.svg" && grep -q ">train loss<" "$T/v.svg"'
expect_fail '--val-every without --val' 2 'mim-step -c "$T/v.st" -n 6 --val-every 2 < "$T/vit.mim"'
expect_fail '--val - (read again at every pass)' 2 'mim-step -c "$T/v.st" -n 6 --val - < "$T/vit.mim"'
fresh vit0.st vb.st
expect_fail 'a --val file that is not there: before the first step' 1 \
	'mim-step -c "$T/vb.st" -n 6 --val "$T/nothere.mim" < "$T/vit.mim"'
check 'the checkpoint is untouched' 'cmp "$T/vb.st" "$T/vit0.st"'

# ---- --extend: more steps on a stretched schedule ---------------------------------
sched='--lr 1e-3 --min-lr 1e-5 --warmup-steps 5'
fresh vit0.st x.st
mim-step -q -c "$T/x.st" -n 60 $sched < "$T/long.mim"
expect_fail 'more --steps without --extend: refused' 1 'mim-step -c "$T/x.st" -n 80 $sched < "$T/long.mim"'
cp "$T/.err" "$T/x.err"
check 'the message suggests --extend' 'grep -q "mim.train.sched differs: .* (--extend continues the run" "$T/x.err"'
expect_ok '60 steps, then --steps 80 --extend' 'mim-step -c "$T/x.st" -n 80 $sched --extend --log "$T/x.log" < "$T/long.mim"'
check 'steps 61..80: the lr of the cosine stretched to 80 steps (warmup 5)' '$PY - "$T/x.log" <<PYEOF
import sys, json, math
L = [json.loads(l) for l in open(sys.argv[1])]
lr, mn, W, T = 1e-3, 1e-5, 5, 80
want = [mn + 0.5 * (lr - mn) * (1 + math.cos(math.pi * (g - W) / (T - W))) for g in range(60, 80)]
got = [x["lr"] for x in L]
assert [x["step"] for x in L] == list(range(61, 81)), [x["step"] for x in L]
assert all(abs(a - b) <= 1e-15 * b for a, b in zip(got, want)), list(zip(got, want))
PYEOF'
check 'the checkpoint holds the new schedule and step 80' \
	'mim-ckpt info "$T/x.st" | grep -q "mim.train.sched = .*\"steps\":80," && mim-ckpt info "$T/x.st" | grep -q "mim.train.step = 80$"'
expect_fail '--extend to fewer steps than done: an error' 1 'mim-step -c "$T/x.st" -n 70 $sched --extend < "$T/long.mim"'
fresh vit0.st y.st
mim-step -q -c "$T/y.st" -n 40 $sched < "$T/vit.mim" 2>/dev/null	# (the input ends: step 12 of 40)
expect_fail '--extend cannot shorten a schedule' 1 'mim-step -c "$T/y.st" -n 30 $sched --extend < "$T/long.mim"'
cp "$T/.err" "$T/y.err"
check 'the message says so' 'grep -q "extend makes a schedule longer: the checkpoint.s has 40 steps, this run 30" "$T/y.err"'
expect_fail 'other settings must still match with --extend' 1 'mim-step -c "$T/x.st" -n 90 --lr 2e-3 --min-lr 1e-5 --warmup-steps 5 --extend < "$T/long.mim"'
