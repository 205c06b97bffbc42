# t-targets.sh -- prediction resolution and the targets (lib/model/target.c,
# loss.c): parity with tests/ref/target_ref.py (PyTorch), generated here
# and through the pipe (mim-encode | mim-head | mim-loss --ckpt), training
# with the loss going down and resuming byte-identical, mim-cluster, the
# config through init, info, export and import, mim-view, and the inputs
# that must be refused.
. "$MIM_TOP/tests/lib.sh"
TT="$MIM_TOP/$MIM_BUILD/tests/test_target"

# ---- parity, generated here (the committed dump runs in test_target)
if have_torch; then
	expect_ok 'target_ref.py make' '$PY "$REF/target_ref.py" make "$T/ref.st" > /dev/null'
	"$TT" --compare "$T/ref.st"
else
	echo "skip - no torch in $PY: live target parity"
fi

# ---- a stream: 8 frames of 4 images of 4x4-pixel colour blocks
$PY - "$T/in.mim" <<'PYEOF'
import sys, numpy as np, st
g = np.random.default_rng(5)
mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
px = np.repeat(np.repeat(g.integers(0, 256, (4, 3, 8, 8)), 4, 2), 4, 3).astype(np.float32)
img = ((px / np.float32(255) - mean) / std).astype(np.float32)
mask = (g.random((4, 8, 8)) < 0.6).astype(np.uint8)
with open(sys.argv[1], "wb") as f:
    for _ in range(8):
        f.write(st.frame_bytes({"image": img, "mask": mask}))
PYEOF

# ---- mim-cluster
expect_ok 'mim-cluster -k 16' 'mim-cluster -k 16 --pixels 1500 --seed 2 -o "$T/c16.st" "$T/in.mim" 2> /dev/null'
check 'the centres: F32 [16,3], 0-255, distinct' '$PY - "$T/c16.st" <<PYEOF
import sys, numpy as np, st
t, meta = st.load(sys.argv[1])
c = t["centres"]
assert c.dtype == np.float32 and c.shape == (16, 3), (c.dtype, c.shape)
assert c.min() >= 0 and c.max() <= 255 and len({tuple(r) for r in c}) == 16
PYEOF'
check 'mim-cluster is a function of its seed' 'mim-cluster -k 16 --pixels 1500 --seed 2 "$T/in.mim" 2> /dev/null | cmp - "$T/c16.st"'
expect_ok 'mim-cluster -k 8' 'mim-cluster -k 8 -o "$T/c8.st" "$T/in.mim" 2> /dev/null'

# ---- checkpoints of each target
init() { n=$1; shift; mim-ckpt init --preset micro-vit --seed 3 "$@" -o "$T/$n.st"; }
expect_ok 'init bins 8 at 1/2' 'init bins --target bins --target-bins 8 --pred-div 2'
expect_ok 'init clusters 16' 'init clus --target clusters --target-clusters 16 --clusters "$T/c16.st"'
expect_ok 'init norm_pix 3 at 1/4' 'init norm --pred-div 4 --norm-pix 3'
expect_ok 'init pixel at 1/4' 'init px4 --pred-div 4'
check 'info: the keys, after the head' 'mim-ckpt info "$T/bins.st" | grep -q "\"head\":\"linear\",\"target\":\"bins\",\"target_bins\":8,\"pred_div\":2}$" &&
	mim-ckpt info "$T/clus.st" | grep -q "\"target\":\"clusters\",\"target_clusters\":16}$" &&
	mim-ckpt info "$T/norm.st" | grep -q "\"head\":\"linear\",\"pred_div\":4,\"norm_pix\":3}$"'
check 'info: the decoder of bins 8 at 1/2 has 32*(2*2*24)+96 = 3,168' 'mim-ckpt info "$T/bins.st" | grep -q "^decoder 3,168 "'
check 'a default checkpoint writes none of the keys' 'init def && ! mim-ckpt info "$T/def.st" | grep -q "target\|pred_div\|norm_pix"'

# ---- through the pipe, against PyTorch
for n in bins clus norm px4; do
	expect_ok "$n: mim-encode | mim-head | mim-loss --ckpt" 'mim-encode --ckpt "$T/$n.st" "$T/in.mim" | mim-head --ckpt "$T/$n.st" | mim-loss -q --ckpt "$T/$n.st" > "$T/$n.out"'
	if have_torch; then
		check "$n: every frame's loss as PyTorch's" '$PY "$REF/target_ref.py" check-stream "$T/$n.st" "$T/$n.out"'
	fi
done
# Swin (patch 2, stride 4) at 1/4: a target pixel over 2x2 patches
expect_ok 'swin: bins 4 at 1/4, through the pipe' 'mim-ckpt init --preset micro-swin --seed 3 --target bins --target-bins 4 --pred-div 4 -o "$T/sw.st" &&
	$PY -c "
import sys, numpy as np, st
fr = [f for f, _ in st.read_frames(open(sys.argv[1], \"rb\"))]
m = np.repeat(np.repeat(fr[0][\"mask\"], 2, 1), 2, 2)
open(sys.argv[2], \"wb\").write(b\"\".join(st.frame_bytes({\"image\": f[\"image\"], \"mask\": m}) for f in fr))
" "$T/in.mim" "$T/in2.mim" &&
	mim-encode --ckpt "$T/sw.st" "$T/in2.mim" | mim-head --ckpt "$T/sw.st" | mim-loss -q --ckpt "$T/sw.st" > "$T/sw.out"'
if have_torch; then
	check "swin: every frame's loss as PyTorch's" '$PY "$REF/target_ref.py" check-stream "$T/sw.st" "$T/sw.out"'
fi
check 'pred shapes: bins (4,24,16,16), clusters (4,16,32,32), norm (4,3,8,8)' '$PY - "$T" <<PYEOF
import sys, st
def shape(n):
    return next(st.read_frames(open(sys.argv[1] + "/" + n + ".out", "rb")))[0]["pred"].shape
assert shape("bins") == (4, 24, 16, 16) and shape("clus") == (4, 16, 32, 32) and shape("norm") == (4, 3, 8, 8)
PYEOF'
check 'mim-loss with the flags as with --ckpt (bins)' 'mim-loss -q --target bins --pred-div 2 "$T/bins.out" | cmp - "$T/bins.out"'
check 'mim-loss with the flags as with --ckpt (clusters)' 'mim-loss -q --target clusters --clusters "$T/c16.st" "$T/clus.out" | cmp - "$T/clus.out"'
check 'mim-loss with the flags as with --ckpt (norm_pix)' 'mim-loss -q --norm-pix 3 --pred-div 4 "$T/norm.out" | cmp - "$T/norm.out"'

# ---- training: the loss goes down, and a cut run resumes byte-identical
for n in bins clus norm; do
	cp "$T/$n.st" "$T/$n.a.st"
	cp "$T/$n.st" "$T/$n.b.st"
	expect_ok "$n: mim-step, 8 steps" 'mim-step -q --ckpt "$T/$n.a.st" --steps 8 --lr 3e-3 --warmup-steps 0 --save-every 0 --log "$T/$n.log" "$T/in.mim"'
	check "$n: the loss of the last step below the first's" '$PY - "$T/$n.log" <<PYEOF
import sys, json
l = [json.loads(x)["loss"] for x in open(sys.argv[1])]
assert len(l) == 8 and l[-1] < l[0], l
PYEOF'
	head -c $(( $(wc -c < "$T/in.mim") / 2 )) "$T/in.mim" > "$T/half.mim"
	expect_fail "$n: the same run, its input cut after 4 frames" 1 'mim-step -q --ckpt "$T/$n.b.st" --steps 8 --lr 3e-3 --warmup-steps 0 --save-every 0 "$T/half.mim"'
	expect_ok "$n: resumed on the whole input" 'mim-step -q --ckpt "$T/$n.b.st" --steps 8 --lr 3e-3 --warmup-steps 0 --save-every 0 "$T/in.mim"'
	check "$n: resumed and uninterrupted runs end byte-identical" 'cmp "$T/$n.a.st" "$T/$n.b.st"'
done
cp "$T/bins.st" "$T/bv.st"
expect_ok 'bins: mim-step --val' 'mim-step -q --ckpt "$T/bv.st" --steps 2 --lr 1e-3 --save-every 0 --val "$T/in.mim" --val-every 2 --val-batches 1 --log "$T/bv.log" "$T/in.mim"'
check 'bins: its val_loss is the pipe'"'"'s loss of the checkpoint it leaves' 'mim-encode --ckpt "$T/bv.st" "$T/in.mim" | mim-head --ckpt "$T/bv.st" | mim-loss --ckpt "$T/bv.st" 2>&1 > /dev/null | head -n 1 | sed "s/.*loss \([0-9.]*\),.*/\1/" > "$T/l1" &&
	$PY -c "import json, sys; print(\"%.6f\" % [json.loads(l) for l in open(sys.argv[1]) if \"val_loss\" in l][-1][\"val_loss\"])" "$T/bv.log" > "$T/l2" && cmp "$T/l1" "$T/l2"'
check 'training kept the colour centres' '$PY - "$T/clus.a.st" "$T/c16.st" <<PYEOF
import sys, numpy as np, st
a, _ = st.load(sys.argv[1]); c, _ = st.load(sys.argv[2])
assert np.array_equal(a["decoder.centres"], c["centres"])
PYEOF'

# ---- export and import: a .pth of mim carries mim.config; a bare state
# dict (the official kind) needs the target in --config but for clusters,
# which its decoder.centres tell
for n in bins clus norm; do
	expect_ok "$n: export --pth, import" 'mim-ckpt export -q --pth "$T/$n.st" -o "$T/$n.pth" && mim-ckpt import -q "$T/$n.pth" -o "$T/$n.i.st"'
	check "$n: the same config and weights after the round trip" 'mim-ckpt info "$T/$n.st" | grep "^config" > "$T/c1" && mim-ckpt info "$T/$n.i.st" | grep "^config" > "$T/c2" && cmp "$T/c1" "$T/c2" && mim-ckpt diff "$T/$n.st" "$T/$n.i.st" > /dev/null'
	$PY -c "
import sys, st
t, m = st.load(sys.argv[1]); st.save(sys.argv[2], t)" "$T/$n.i.st" "$T/$n.sd"
done
expect_ok 'a bare bins state dict with its target in --config' 'mim-ckpt import -q --config "{\"target\":\"bins\",\"target_bins\":8,\"pred_div\":2,\"drop_path_rate\":0.0}" "$T/bins.sd" -o "$T/bins.j.st"'
expect_ok 'a bare norm_pix state dict with its target in --config' 'mim-ckpt import -q --config "{\"pred_div\":4,\"norm_pix\":3,\"drop_path_rate\":0.0}" "$T/norm.sd" -o "$T/norm.j.st"'
expect_ok 'a bare clusters state dict: the target from decoder.centres' 'mim-ckpt import -q --config "{\"drop_path_rate\":0.0}" "$T/clus.sd" -o "$T/clus.j.st"'
for n in bins clus norm; do
	check "$n: the same config and weights as the original" 'mim-ckpt info "$T/$n.st" | grep "^config" > "$T/c1" && mim-ckpt info "$T/$n.j.st" | grep "^config" > "$T/c2" && cmp "$T/c1" "$T/c2" && mim-ckpt diff "$T/$n.st" "$T/$n.j.st" > /dev/null'
done
expect_fail 'a bare bins state dict without its target' 1 'mim-ckpt import -q "$T/bins.sd" -o "$T/x.st"'
check '... says to give the target with --config' 'mim-ckpt import -q "$T/bins.sd" -o "$T/x.st" 2>&1 | grep -q "give \"target\", \"target_bins\" and \"pred_div\" with --config"'
expect_ok 'export --finetune' 'mim-ckpt export -q --finetune "$T/bins.st" -o "$T/ft.st" && mim-ckpt export -q --finetune "$T/clus.st" -o "$T/ftc.st"'
check 'the fine-tuning config has no target and no centres' '$PY - "$T/ft.st" "$T/ftc.st" <<PYEOF
import sys, json, st
for p in sys.argv[1:]:
    t, meta = st.load(p)
    ft = json.loads(meta["mim.finetune"])
    assert "target" not in ft and "pred_div" not in ft and not any(k.startswith("decoder") for k in t), ft
PYEOF'

# ---- mim-view
expect_ok 'mim-view draws bins at 1/2' 'mim-view --ckpt "$T/bins.st" -o "$T/b.png" "$T/bins.out"'
expect_ok 'mim-view draws clusters' 'mim-view --ckpt "$T/clus.st" -o "$T/c.png" "$T/clus.out"'
expect_ok 'mim-view draws norm_pix at 1/4' 'mim-view --ckpt "$T/norm.st" -o "$T/n.png" "$T/norm.out"'
check 'the pictures are PNGs' 'for f in b c n; do head -c 4 "$T/$f.png" | od -c | grep -q "P   N   G" || exit 1; done'
check 'norm_pix predictions alone: drawn as they are, with a note' 'mim-view --norm-pix 3 --pred-div 4 -c prediction -o "$T/n2.png" "$T/norm.out" 2> "$T/e" && grep -q "drawn as they are" "$T/e"'

# ---- refused
expect_fail 'pred_div 3: not a power of two' 2 'init x --pred-div 3'
expect_fail 'pred_div 8 does not divide the encoder stride 4' 2 'init x --pred-div 8'
check '... and says so' 'init x --pred-div 8 2>&1 | grep -q "pred_div 8 does not divide the encoder stride 4"'
expect_fail 'target_bins with the pixel target' 2 'init x --target-bins 8'
expect_fail 'a cluster file of the wrong shape' 1 'init x --target clusters --target-clusters 16 --clusters "$T/c8.st"'
check '... and says so' 'init x --target clusters --target-clusters 16 --clusters "$T/c8.st" 2>&1 | grep -q "want F32 \[16,3\]"'
expect_fail 'target clusters without --clusters' 1 'init x --target clusters'
expect_fail 'a checkpoint without its centres' 1 '$PY - "$T/clus.st" "$T/x.st" <<PYEOF && mim-ckpt info "$T/x.st"
import sys, st
t, meta = st.load(sys.argv[1]); del t["decoder.centres"]; st.save(sys.argv[2], t, meta)
PYEOF'
expect_fail 'mim-loss --loss l2 with a bins target' 2 'mim-loss --ckpt "$T/bins.st" --loss l2 "$T/bins.out"'
check '... and says so' 'mim-loss --ckpt "$T/bins.st" --loss l2 "$T/bins.out" 2>&1 | grep -q "the target bins is a classification, scored by ce"'
expect_fail 'mim-loss --loss l1 with --target clusters' 2 'mim-loss --target clusters --clusters "$T/c16.st" --loss l1 "$T/clus.out"'
expect_fail 'mim-loss --loss ce with the pixel target' 2 'mim-loss --loss ce "$T/norm.out"'
expect_fail 'mim-loss --target clusters without --clusters' 2 'mim-loss --target clusters "$T/clus.out"'
expect_fail 'mim-loss: the centres do not match pred' 1 'mim-loss --target clusters --clusters "$T/c8.st" "$T/clus.out"'
expect_fail 'mim-loss: a bins pred scored as pixels' 1 'mim-loss --pred-div 2 "$T/bins.out"'
expect_fail 'mim-loss: a pred at 1/4 without --pred-div' 1 'mim-loss "$T/px4.out"'
check '... and says so' 'mim-loss "$T/px4.out" 2>&1 | grep -q "is at 1/4 of the image, not 1/1 (--pred-div, default 1)"'
expect_fail 'mim-view: a pred at 1/4 without --pred-div' 1 'mim-view -o "$T/x.png" "$T/px4.out"'
expect_fail 'mim-loss: --pred-div beside --ckpt' 2 'mim-loss --ckpt "$T/px4.st" --pred-div 4 "$T/px4.out"'
expect_fail 'mim-loss: --ckpt beside --target' 2 'mim-loss --ckpt "$T/bins.st" --target bins "$T/bins.out"'
expect_fail 'mim-loss: pred at another resolution than the checkpoint' 1 'mim-loss --ckpt "$T/px4.st" "$T/bins.out"'
expect_fail 'mim-step --loss l2 with a bins target' 1 'cp "$T/bins.st" "$T/x.st" && mim-step -q --ckpt "$T/x.st" --steps 2 --loss l2 "$T/in.mim"'
check '... and the checkpoint is untouched' 'cmp "$T/x.st" "$T/bins.st"'
expect_fail 'mim-view: a bins pred without its target' 1 'mim-view -o "$T/x.png" "$T/bins.out"'
expect_fail 'mim-cluster: fewer pixels than clusters' 1 'mim-cluster -k 512 --pixels 100 "$T/in.mim" -o "$T/x.st"'

# ---- data-parallel: the ranks' gradient of a clusters model is the mean of
# theirs, each computed alone (the centres reach every rank)
if [ "${MIM_SANITIZE:-0}" = 1 ]; then
	echo "skip - sanitizers: Open MPI leaks (t-mim-step-mpi.sh sorts that out)"
elif command -v mpirun > /dev/null 2>&1; then
	export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1	# tests and CI run as root
	export OMPI_MCA_btl_vader_single_copy_mechanism=none	# containers forbid CMA
	$PY - "$T/in.mim" "$T/r" <<'PYEOF'
import sys, st
fr = [t for t, _ in st.read_frames(open(sys.argv[1], "rb"))][:1]
for r in range(2):
    with open("%s.%d.mim" % (sys.argv[2], r), "wb") as f:
        for t in fr:
            f.write(st.frame_bytes({k: v[2 * r:2 * r + 2] for k, v in t.items()}))
PYEOF
	expect_ok 'clusters: --grad-out with 2 ranks' 'MIM_THREADS=1 timeout 120 mpirun -np 2 --oversubscribe --bind-to none sh -c "exec mim-step -c \"$T/clus.st\" --grad-out \"$T/g2.st\" \"$T/r.\$OMPI_COMM_WORLD_RANK.mim\""'
	for r in 0 1; do MIM_THREADS=1 mim-step -c "$T/clus.st" --grad-out "$T/h$r.st" "$T/r.$r.mim"; done
	check 'clusters: the ranks'"'"' gradient is the mean of theirs, bit for bit' '$PY - "$T/g2.st" "$T/h0.st" "$T/h1.st" <<PYEOF
import sys, numpy as np, st
g, h0, h1 = [st.load(p)[0] for p in sys.argv[1:]]
assert any(k.startswith("grad.decoder") for k in g)
for k in g:
    assert np.array_equal(g[k], (h0[k] + h1[k]) / np.float32(2)), k
PYEOF'
else
	echo "skip - no mpirun: data-parallel clusters"
fi
