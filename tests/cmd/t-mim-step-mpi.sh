# t-mim-step-mpi.sh -- data-parallel mim-step under Open MPI's mpirun: 2 ranks
# at batch B against one process at 2B on the same images (micro ViT and
# Swin), the averaged gradient exactly, resume after a failed rank and after
# SIGTERM to mpirun byte for byte, the agreement checks, --mpi alone,
# validation on rank 0.
. "$MIM_TOP/tests/lib.sh"
mpi_setup || exit 0	# tests/lib.sh: $MPI (2 ranks), $half, $leaks; ranks, split_ranks
STEP="$PY $REF/step_ref.py"

# data: frames of 4 images; rank r gets images 2r, 2r+1 of every frame
mkdata() {	# mkdata NAME PATCH FRAMES
	$STEP data "$T/$1.mim" --patch $2 --batch 4 --frames $3 --seed 7
	split_ranks $1
}
mim-ckpt init --preset micro-vit --seed 3 -o "$T/vit0.st" || { notok 'mim-ckpt init'; exit 1; }
mim-ckpt init --preset micro-swin --seed 3 -o "$T/swin0.st" || { notok 'mim-ckpt init swin'; exit 1; }
mkdata vit 4 12
mkdata swin 2 6

# ---- the averaged gradient -------------------------------------------------------
# 2 ranks: (g0 + g1) / 2 of the ranks' own gradients, which one process
# computes alone on each half with the same thread count: exactly
for m in vit swin; do
	expect_ok "$m: --grad-out with 2 ranks" 'MIM_THREADS=$half ranks $m -c "$T/${m}0.st" --grad-out "$T/g2$m.st"'
	for r in 0 1; do MIM_THREADS=$half mim-step -c "$T/${m}0.st" --grad-out "$T/h$r$m.st" "$T/$m.$r.mim"; done
	MIM_THREADS=$half mim-step -c "$T/${m}0.st" --grad-out "$T/g1$m.st" "$T/$m.mim"
	check "$m: the ranks' gradient is the mean of theirs, bit for bit; against one process at 2B:" \
		'$PY - "$T/g2$m.st" "$T/h0$m.st" "$T/h1$m.st" "$T/g1$m.st" <<PYEOF
import sys, numpy as np, st
g, h0, h1, one = [st.load(p)[0] for p in sys.argv[1:]]
for k in g:
    assert np.array_equal(g[k], (h0[k] + h1[k]) / np.float32(2)), k
worst = max((np.abs(g[k] - one[k]).max() / np.abs(one[k]).max(), k) for k in g if k.startswith("grad."))
print("  %s: 2 ranks vs 1 process: max rel %.2g (%s)" % (sys.argv[1][-7:-3], worst[0], worst[1]), file=sys.stderr)
assert worst[0] < 1e-3, worst
PYEOF'
	sed 's/^/# /' "$T/.err"
done

# ---- training: 2 ranks at batch 2 = 1 process at batch 4 -------------------------------
# --base-lr scales by batch*accum*ranks (the same lr); clipping acts, on the
# global norm after the average; ViT with accumulation, and with gradients
# and broadcasts sent in pieces of 1000 (MIM_MPI_PIECE) to test the loop
train='-n 6 --base-lr 0.5 --warmup-steps 2 --clip-grad 1 --save-every 3'
# (tolerance: both sum the same products in another order, so float32
# rounding differs; Swin's relative position bias tables sum many terms of
# both signs to small gradients, where it shows most: measured 1e-4..4e-4
# of the tensor's largest update, ViT 3e-5; a lost or doubled rank, a
# wrong lr or a per-rank clip is off by 1e-1 or more)
(ASAN_OPTIONS=${leaks:-${ASAN_OPTIONS:-}} MIM_MPI_PIECE=1000; export ASAN_OPTIONS MIM_MPI_PIECE; ranks_vs_one vit vit "" $train --accum 2)
# the official accumulation: a reduce and a clip after every micro-batch
cp "$T/vit0.st" "$T/vito0.st"
ranks_vs_one vito vit "" $train --accum 2 --official-sched
ranks_vs_one swin swin "" $train
check 'the checkpoint records the 2 ranks' 'mim-ckpt info "$T/swin2.st" | grep -q "\"batch\":2,\"world\":2}"'
# rank 0 validates (the others wait): the same training bytes; rank 0
# holds the lock, and says what it saved
cp "$T/vit0.st" "$T/vitv.st"
MIM_MPI_PIECE=1000 MIM_THREADS=$half ranks vit -c "$T/vitv.st" $train --accum 2 --val "$T/vit.0.mim" \
	--val-every 2 --log "$T/vitv.log" 2>"$T/vitv.err"
check '2 ranks, --val on rank 0: the checkpoint of the run without, byte for byte; 3 val lines' \
	'cmp "$T/vitv.st" "$T/vit2.st" && [ "$(grep -c "val_loss" "$T/vitv.log")" -eq 3 ] &&
	 grep -q "^mim-step: rank 0: .*vitv.st: saved step 6$" "$T/vitv.err" && [ ! -e "$T/vitv.st.lock" ]'


# ---- resume: a rank whose input fails, then SIGTERM to mpirun ------------------------
# rank 1's input ends inside its 4th frame: every rank stops there, rank 0
# saves step 3, the job fails with rank 1's message; run again on the
# whole inputs (threads by default this time: cores/2 each, as
# MIM_THREADS=$half above) and it ends where the uninterrupted run did
cp "$T/swin0.st" "$T/r.st"
cp "$T/swin.0.mim" "$T/short.0.mim"
head -c $(( $(wc -c < "$T/swin.1.mim") / 2 + 100 )) "$T/swin.1.mim" > "$T/short.1.mim"
(unset MIM_THREADS; ranks short -c "$T/r.st" $train) >"$T/r.out" 2>"$T/r.err"; rc=$?
check 'a rank whose input is cut: the job fails with its message' \
	'[ $rc -ne 0 ] && grep -q "^mim-step: rank 1: .*short.1.mim: frame 3" "$T/r.err" && [ ! -s "$T/r.out" ]'
check 'the others stopped at the same frame, rank 0 saved step 3' \
	'mim-ckpt info "$T/r.st" | grep -q "mim.train.step = 3$"'
cp "$T/r.st" "$T/r3.st"
expect_fail 'one process at batch 4 cannot resume it' 1 'mim-step -c "$T/r3.st" $train "$T/swin.mim"'
check 'the message says why (same lr, other batch and world)' \
	'mim-step -c "$T/r3.st" $train "$T/swin.mim" 2>&1 | grep -q "mim.train.sched differs.*\"batch\":2,\"world\":2}, this run .*\"batch\":4}"'
expect_ok 'resumed on the whole inputs' '(unset MIM_THREADS; ranks swin -c "$T/r.st" $train)'
check 'resumed run = uninterrupted run, byte for byte' 'cmp "$T/r.st" "$T/swin2.st"'

# SIGTERM to mpirun while the ranks wait for input: it passes SIGTERM on,
# the ranks agree to stop, rank 0 saves the step reached (mpirun itself,
# not timeout(1), which would signal the whole process group)
cp "$T/swin0.st" "$T/t.st"
two=$(( $(wc -c < "$T/swin.0.mim") / 3 ))	# 2 of the 6 frames (all of one size)
# (odls_base_sigkill_timeout: mpirun on SIGTERM waits 3 s, sends SIGTERM,
# gives 3 s to save, SIGKILL; default 1 s. It also delays the end of
# every job in which a rank fails, hence only here)
OMPI_MCA_odls_base_sigkill_timeout=3 MIM_THREADS=$half ${MPI#timeout 120 } sh -c '(head -c $1 "$2.$OMPI_COMM_WORLD_RANK.mim"; exec sleep 30) |
	exec mim-step -c "$3" $4 --log "$5"' sh $two "$T/swin" "$T/t.st" "$train" "$T/t.log" \
	>/dev/null 2>"$T/t.err" &
pid=$!
i=0	# 2 steps, then the ranks wait on their pipes
while [ $i -lt 400 ] && [ "$(cat "$T/t.log" 2>/dev/null | wc -l)" -lt 2 ]; do sleep 0.05; i=$((i + 1)); done
kill -TERM $pid
(sleep 60; kill -KILL $pid 2>/dev/null) >/dev/null 2>&1 &
dog=$!
wait $pid
kill $dog 2>/dev/null
sed 's/^/# /' "$T/t.err"
check 'SIGTERM to mpirun: the ranks stop together, step 2 saved' \
	'mim-ckpt info "$T/t.st" | grep -q "mim.train.step = 2$" && grep -q "rank 0: .*stopped by signal 15 at step 2; saved" "$T/t.err"'
expect_ok 'resumed after SIGTERM' 'MIM_THREADS=$half ranks swin -c "$T/t.st" $train'
check 'resumed run = uninterrupted run, byte for byte' 'cmp "$T/t.st" "$T/swin2.st"'

# ---- a NaN on one rank stops all (the mean is NaN everywhere) ------------------------
$STEP data "$T/nan.1.mim" --patch 4 --frames 6 --nan 3 --seed 5
$STEP data "$T/nan.0.mim" --patch 4 --frames 6 --seed 6
cp "$T/vit0.st" "$T/n.st"
ranks nan -c "$T/n.st" -n 6 --lr 1e-3 --save-every 1 >"$T/n.out" 2>"$T/n.err"; rc=$?
check "NaN in rank 1's 4th frame: every rank stops, rank 0 says so, step 3 stays" \
	'[ $rc -ne 0 ] && grep -q "rank 0: step 4: the loss is not finite" "$T/n.err" &&
	 mim-ckpt info "$T/n.st" | grep -q "mim.train.step = 3$"'

# ---- what the ranks must agree on -------------------------------------------------
$MPI sh -c 'exec mim-step -c "$1" -n 2 --lr 1e-3 --seed $OMPI_COMM_WORLD_RANK "$2"' sh "$T/vit0.st" "$T/vit.mim" \
	>"$T/a.out" 2>"$T/a.err"; rc=$?
check 'ranks with different flags: refused, checkpoint untouched' \
	'[ $rc -ne 0 ] && grep -q "different settings" "$T/a.err" && ! mim-ckpt info "$T/vit0.st" | grep -q mim.train'
$MPI sh -c 'if [ $OMPI_COMM_WORLD_RANK = 0 ]; then f=$2; else f=$3; fi; exec mim-step -c "$1" -n 2 --lr 1e-3 "$f"' \
	sh "$T/vit0.st" "$T/vit.mim" "$T/vit.1.mim" >"$T/b.out" 2>"$T/b.err"; rc=$?
check 'ranks with batches of different sizes: refused' '[ $rc -ne 0 ] && grep -q "batches of 2 to 4 images" "$T/b.err"'
ranks vit -c "$T/missing.st" -n 2 >"$T/c.out" 2>"$T/c.err"; rc=$?
check 'no checkpoint: one message from rank 0, no hang' \
	'[ $rc -ne 0 ] && [ "$(grep -c "^mim-step: " "$T/c.err")" = 1 ] && grep -q "rank 0: .*missing.st" "$T/c.err"'

# ---- MPI of one rank is the one process -----------------------------------------
cp "$T/vit0.st" "$T/o1.st"; cp "$T/vit0.st" "$T/o2.st"
mim-step -c "$T/o1.st" -n 3 --lr 1e-3 "$T/vit.mim"
expect_ok '--mpi without mpirun (a world of 1)' 'mim-step --mpi -c "$T/o2.st" -n 3 --lr 1e-3 "$T/vit.mim"'
check 'its checkpoint = a run without MPI, byte for byte' 'cmp "$T/o1.st" "$T/o2.st"'
