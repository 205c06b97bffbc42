# t-finetune-mpi.sh -- data-parallel fine-tuning (a classifier checkpoint)
# under Open MPI's mpirun, checked as t-mim-step-mpi.sh checks pretraining:
# the averaged gradient of mixed batches exactly (each rank mixes its own
# half with its own draw), 2 ranks at batch B against one process at 2B on
# the same images (weights, moments, and the log's lr, loss, grad norm and
# acc1, which counts every rank's images), validation on rank 0 reported
# once, a crash-resume with mixup/cutmix, smoothing and drop path on that
# ends byte for byte as the uninterrupted 2-rank run, and ranks given other
# fine-tuning flags refused.
. "$MIM_TOP/tests/lib.sh"
mpi_setup || exit 0	# tests/lib.sh: $MPI (2 ranks), $half, $leaks; ranks, split_ranks

# classifiers of 10 classes without drop path (its draws are per rank: one
# process at 2B draws others), the ViT's head at init scale 1 (its logits
# then have no near ties for float rounding to swap in acc1)
for m in vit swin; do
	mim-ckpt init --preset micro-$m --seed 3 -o "$T/${m}pre.st" &&
	mim-ckpt classifier "$T/${m}pre.st" --classes 10 --drop-path 0 --init-scale 1 -q -o "$T/${m}0.st" ||
		{ notok "a micro $m classifier"; exit 1; }
done
# 12 frames of 4 labelled images (rank r: images 2r, 2r+1 of each), and 3
# held-out frames
$PY - "$T/cls.mim" "$T/val.mim" <<'PYEOF'
import sys, numpy as np, st
g = np.random.default_rng(11)
for path, n in zip(sys.argv[1:], (12, 3)):
    with open(path, "wb") as f:
        for _ in range(n):
            f.write(st.frame_bytes({"image": g.standard_normal((4, 3, 32, 32)).astype(np.float32),
                                    "label": g.integers(0, 10, 4).astype(np.int64)}))
PYEOF
split_ranks cls

# ---- the averaged gradient of mixed batches --------------------------------------
# Each rank mixes its half with its own draw (mim_train_seed of --seed, the
# batch index and the rank, as the official code seeds each rank's own
# Mixup): rank 0 draws as one process at the same seed, and rank 1 as one
# process at another seed S1, found here by drawing as lib/train/mixup.c
# does (a cutmix box, which a process alone can draw too; rank 0's is
# another). The ranks' gradient is then (h0 + h1) / 2 of two processes at
# the same thread count, bit for bit.
seeds=$($PY - <<'PYEOF'
import math, timm_ref
from step_ref import train_seed

def box(seed, H=32, W=32, mixup=0.8, cutmix=1.0):
    """the cutmix box [yl, yh, xl, xh] of mim_mix_draw, or None (unmixed,
    mixup, an empty box)"""
    r = timm_ref.Drng.__new__(timm_ref.Drng)
    k, r.s = seed ^ 0x6d69787570, []
    for _ in range(4):
        k, v = timm_ref.splitmix64(k)
        r.s.append(v)
    unit = r.double

    def normal():
        while True:
            u = 2 * unit() - 1
            v = 2 * unit() - 1
            q = u * u + v * v
            if 0 < q < 1:
                return u * math.sqrt(-2 * math.log(q) / q)

    def gamma(a):
        if a < 1:
            g, u = gamma(a + 1), unit()
            while u == 0:
                u = unit()
            return g * math.pow(u, 1 / a)
        d = a - 1.0 / 3
        c = 1 / math.sqrt(9 * d)
        while True:
            x = normal()
            v = 1 + c * x
            if v <= 0:
                continue
            v = v * v * v
            u = unit()
            if u < 1 - 0.0331 * x * x * x * x or math.log(u) < 0.5 * x * x + d * (1 - v + math.log(v)):
                return d * v

    if not unit() < 1.0:                # mix_prob
        return None
    cut = unit() < 0.5                  # switch_prob
    a = cutmix if cut else mixup
    x, y = gamma(a), gamma(a)
    lam = x / (x + y) if x + y > 0 else 0.5
    if lam == 1 or not cut:
        return None
    ratio = math.sqrt(1 - lam)
    ch, cw = int(H * ratio), int(W * ratio)
    cy, cx = int(unit() * H), int(unit() * W)
    clip = lambda v, hi: min(max(v, 0), hi)
    b = [clip(cy - ch // 2, H), clip(cy + ch // 2, H), clip(cx - cw // 2, W), clip(cx + cw // 2, W)]
    return b if b[0] < b[1] and b[2] < b[3] else None

alone = {}
for s in range(1, 4000):
    b = box(train_seed(s, 0, 0))
    if b:
        alone.setdefault(tuple(b), s)
for s in range(1, 4000):
    b0, b1 = box(train_seed(s, 0, 0)), box(train_seed(s, 0, 1))
    if b0 and b1 and b0 != b1 and tuple(b1) in alone and alone[tuple(b1)] != s:
        print(s, alone[tuple(b1)], "[%d,%d,%d,%d]" % tuple(b1))
        break
PYEOF
)
set -- $seeds
S=${1:-} S1=${2:-} box=${3:-}
check "seeds: $S for 2 ranks, $S1 for a process that cuts rank 1's box $box" '[ -n "$box" ]'
for m in vit swin; do
	expect_ok "$m: --grad-out with 2 ranks, mixup/cutmix and smoothing on" \
		'MIM_THREADS=$half ranks cls -c "$T/${m}0.st" --grad-out "$T/g2$m.st" --seed $S'
	MIM_THREADS=$half mim-step -c "$T/${m}0.st" --grad-out "$T/h0$m.st" --seed $S "$T/cls.0.mim"
	MIM_THREADS=$half mim-step -c "$T/${m}0.st" --grad-out "$T/h1$m.st" --seed $S1 "$T/cls.1.mim"
	check "$m: the process at seed $S1 cut box $box (the draw above is mim's), rank 0 another; the frame's mim.mix is rank 0's" \
		'$PY - "$T/g2$m.st" "$T/h0$m.st" "$T/h1$m.st" "$box" <<PYEOF
import sys, json, st
g, h0, h1 = [st.load(p)[1] for p in sys.argv[1:4]]
want = json.loads(sys.argv[4])
assert json.loads(h1["mim.mix"]).get("box") == want, (h1["mim.mix"], want)
assert json.loads(h0["mim.mix"]).get("box") not in (None, want), h0["mim.mix"]
assert g["mim.mix"] == h0["mim.mix"], (g["mim.mix"], h0["mim.mix"])
PYEOF'
	check "$m: the ranks' gradient is the mean of the two processes', bit for bit; the loss their mean" \
		'$PY - "$T/g2$m.st" "$T/h0$m.st" "$T/h1$m.st" <<PYEOF
import sys, numpy as np, st
g, h0, h1 = [st.load(p)[0] for p in sys.argv[1:4]]
names = [k for k in g if k.startswith("grad.")]
assert names and all(np.array_equal(g[k], (h0[k] + h1[k]) / np.float32(2)) for k in names), \
    [k for k in names if not np.array_equal(g[k], (h0[k] + h1[k]) / np.float32(2))]
l = (float(h0["loss"]) + float(h1["loss"])) / 2
assert abs(float(g["loss"]) - l) <= 1e-6 * l, (float(g["loss"]), l)
PYEOF'
done

# ---- training: 2 ranks at batch 2 = 1 process at batch 4 ---------------------------
# Mixing off (its draws are per rank), label smoothing and layer decay on;
# --base-lr scales by batch*accum*ranks, clipping acts on the averaged
# gradient; the ViT with accumulation (gradients sent in pieces of 1000,
# LeakSanitizer on under MIM_SANITIZE=1), and with the official one (a
# reduce and a clip after every micro-batch). acc1 counts the images of
# every rank: the same as one process's. (Tolerance 2e-3 as in
# t-mim-step-mpi.sh, float rounding: measured 5e-6..4e-5 of a tensor's
# largest update here)
train='-n 6 --base-lr 0.5 --warmup-steps 2 --clip-grad 1 --save-every 3 --mixup 0 --cutmix 0'
cp "$T/vit0.st" "$T/vito0.st"
(ASAN_OPTIONS=${leaks:-${ASAN_OPTIONS:-}} MIM_MPI_PIECE=1000; export ASAN_OPTIONS MIM_MPI_PIECE; ranks_vs_one vit cls acc1,lam $train --accum 2)
ranks_vs_one vito cls acc1,lam $train --accum 2 --official-sched
ranks_vs_one swin cls acc1,lam $train
check 'the checkpoint records the 2 ranks and the fine-tuning settings' \
	'mim-ckpt info "$T/swin2.st" > "$T/info" && grep -q "\"batch\":2,\"world\":2}" "$T/info" && grep -q "mim.train.finetune" "$T/info"'

# ---- mixing, drop path and validation on 2 ranks -----------------------------------
# rank 0 validates (the others wait): the checkpoint of the run without,
# byte for byte; one val line in the log and in the progress per
# validation (rank 0's), whose scores are mim-eval's of the saved
# classifier
mim-ckpt classifier "$T/vitpre.st" --classes 10 --drop-path 0.1 -q -o "$T/dp0.st"
mix='-n 6 --lr 2e-3 --warmup-steps 2 --save-every 3 --seed 5'
cp "$T/dp0.st" "$T/m2.st"
cp "$T/dp0.st" "$T/mv.st"
expect_ok '2 ranks: 6 steps, mixup/cutmix, smoothing, drop path 0.1' \
	'MIM_THREADS=$half ranks cls -c "$T/m2.st" $mix --log "$T/m2.log"'
check 'the batches were mixed: lam < 1 in every step (mix-prob 1)' '$PY - "$T/m2.log" <<PYEOF
import sys, json
a = [json.loads(l) for l in open(sys.argv[1])]
assert len(a) == 6 and all(x["lam"] < 1 for x in a), a
PYEOF'
MIM_THREADS=$half ranks cls -c "$T/mv.st" $mix --val "$T/val.mim" --val-every 2 --log "$T/mv.log" 2>"$T/mv.err"
check '--val on rank 0: the checkpoint of the run without, byte for byte' 'cmp "$T/mv.st" "$T/m2.st"'
check 'validation reported once: 3 val lines in the log and 3 in the progress, all from rank 0' \
	'[ "$(grep -c "\"val_acc1\"" "$T/mv.log")" = 3 ] && [ "$(grep -c "val_acc1" "$T/mv.err")" = 3 ] &&
	 ! grep -q "rank 1" "$T/mv.err" && [ "$(grep -c "saved step 6$" "$T/mv.err")" = 1 ] && [ ! -e "$T/mv.st.lock" ]'
sed 's/^/# /' "$T/mv.err"
check 'the last val_acc1, val_acc5 and val_loss are mim-eval'"'"'s of the saved classifier' \
	'mim-encode --ckpt "$T/mv.st" "$T/val.mim" | mim-eval --json > "$T/ev.json" && $PY - "$T/mv.log" "$T/ev.json" <<PYEOF
import sys, json
v = [json.loads(l) for l in open(sys.argv[1]) if "val_loss" in l][-1]
e = json.load(open(sys.argv[2]))
assert v["step"] == 6 and v["val_frames"] == 3 and e["n"] == 12, (v, e)
assert abs(v["val_acc1"] - e["acc1"]) < 1e-6 and abs(v["val_acc5"] - e["acc5"]) < 1e-6, (v, e)
assert abs(v["val_loss"] - e["loss"]) <= 1e-6 * e["loss"], (v, e)
PYEOF'

# ---- resume: rank 1's input cut -------------------------------------------------
# rank 1's input ends inside its 4th frame: every rank stops there, rank 0
# saves step 3, the job fails with rank 1's message; run again on the
# whole inputs, it ends where the uninterrupted run did, byte for byte
cp "$T/dp0.st" "$T/r.st"
cp "$T/cls.0.mim" "$T/short.0.mim"
head -c $(( $(wc -c < "$T/cls.1.mim") / 4 + 100 )) "$T/cls.1.mim" > "$T/short.1.mim"
MIM_THREADS=$half ranks short -c "$T/r.st" $mix >"$T/r.out" 2>"$T/r.err"; rc=$?
check 'a rank whose input is cut: the job fails with its message' \
	'[ $rc -ne 0 ] && grep -q "^mim-step: rank 1: .*short.1.mim: frame 3" "$T/r.err" && [ ! -s "$T/r.out" ]'
check 'the others stopped at the same frame, rank 0 saved step 3' \
	'mim-ckpt info "$T/r.st" | grep -q "mim.train.step = 3$"'
expect_ok 'resumed on the whole inputs' 'MIM_THREADS=$half ranks cls -c "$T/r.st" $mix'
check 'resumed run = uninterrupted run, byte for byte' 'cmp "$T/r.st" "$T/m2.st"'

# ---- what the ranks must agree on -----------------------------------------------
cp "$T/vit0.st" "$T/a.st"
$MPI sh -c 'exec mim-step -c "$1" -n 2 --lr 1e-3 --smoothing 0.$((1 + OMPI_COMM_WORLD_RANK)) "$2.$OMPI_COMM_WORLD_RANK.mim"' \
	sh "$T/a.st" "$T/cls" >"$T/a.out" 2>"$T/a.err"; rc=$?
check 'ranks with different fine-tuning flags (--smoothing): refused, checkpoint untouched' \
	'[ $rc -ne 0 ] && grep -q "different settings" "$T/a.err" && cmp "$T/a.st" "$T/vit0.st"'

# ---- a NaN in one rank's images stops all (the mean loss is NaN everywhere) ------
$PY - "$T/cls.1.mim" "$T/nan.1.mim" <<'PYEOF'
import sys, st
with open(sys.argv[2], "wb") as f:
    for i, (t, m) in enumerate(st.read_frames(open(sys.argv[1], "rb"))):
        if i == 3:
            t["image"] = t["image"].copy()
            t["image"][1, 0, 5, 5] = float("nan")
        f.write(st.frame_bytes(t, m))
PYEOF
cp "$T/cls.0.mim" "$T/nan.0.mim"
cp "$T/vit0.st" "$T/n.st"
MIM_THREADS=$half ranks nan -c "$T/n.st" -n 6 --lr 1e-3 --save-every 1 >"$T/n.out" 2>"$T/n.err"; rc=$?
check "NaN in rank 1's 4th frame: every rank stops, rank 0 says so, step 3 stays" \
	'[ $rc -ne 0 ] && grep -q "rank 0: step 4: the loss is not finite" "$T/n.err" &&
	 mim-ckpt info "$T/n.st" | grep -q "mim.train.step = 3$"'

# ---- MPI of one rank is the one process -----------------------------------------
cp "$T/dp0.st" "$T/o1.st"; cp "$T/dp0.st" "$T/o2.st"
mim-step -c "$T/o1.st" $mix "$T/cls.mim"
expect_ok '--mpi without mpirun (a world of 1): mixup/cutmix, drop path' 'mim-step --mpi -c "$T/o2.st" $mix "$T/cls.mim"'
check 'its checkpoint = a run without MPI, byte for byte' 'cmp "$T/o1.st" "$T/o2.st"'
