# t-mim-encode.sh -- mim-encode, mim-head, mim-loss: the official micro-vit
# step through pipes, byte equality with the in-process library calls,
# intermediate and pooled features, loss options, malformed input.
. "$MIM_TOP/tests/lib.sh"
G=$GOLDEN
TV="$MIM_TOP/$MIM_BUILD/tests/test_vit"

# a checkpoint written by Python: the official weights + our mim.config,
# and the official inputs as a stream frame (mask as I64, as PyTorch has it)
$PY - "$G" "$T" "$(mim-ckpt init --preset micro-vit | mim-info --json | $PY -c 'import json,sys; print(json.loads(sys.stdin.readline())["metadata"]["mim.config"])')" <<'PYEOF'
import sys, numpy as np, st
g, d, cfg = sys.argv[1], sys.argv[2], sys.argv[3]
w, _ = st.load(g + "/micro-vit.s7.b2.weights.safetensors")
st.save(d + "/ck.st", {k: v for k, v in w.items() if not k.endswith("index")}, {"mim.config": cfg})
t, _ = st.load(g + "/micro-vit.s7.b2.safetensors")
st.save(d + "/in.mim", {"image": t["input/images"], "mask": t["input/mask"].astype(np.uint8),
                        "label": np.array([3, 5], np.int64)}, {"mim.keys": '["a","b"]'})
st.save(d + "/in64.mim", {"image": t["input/images"], "mask": t["input/mask"]})
for k in ("out/z", "out/x_rec", "out/loss"):
    np.save(d + "/" + k.replace("/", "_") + ".npy", t[k])
PYEOF
expect_ok 'encode | head | loss through pipes' 'mim-encode --ckpt "$T/ck.st" < "$T/in.mim" | mim-head --ckpt "$T/ck.st" | mim-loss > "$T/out.mim" 2> "$T/err"'
check 'stderr: the running mean' 'grep -q "^mim-loss: frame 0: loss 0.71443[56], mean 0.71443[56]$" "$T/err"'
check 'latent, pred, loss equal the official step (max rel err < 1e-5)' '$PY - "$T" <<PYEOF
import sys, numpy as np, st
d = sys.argv[1]
fr = list(st.read_frames(open(d + "/out.mim", "rb")))
assert len(fr) == 1
t, m = fr[0]
def rel(a, b): return float(np.abs(a - b).max() / np.abs(b).max())
z, x, l = (np.load(d + "/" + k + ".npy") for k in ("out_z", "out_x_rec", "out_loss"))
assert t["latent"].shape == (2, 32, 8, 8) and t["pred"].shape == (2, 3, 32, 32) and t["loss"].shape == ()
assert rel(t["latent"], z) < 1e-5 and rel(t["pred"], x) < 1e-5, (rel(t["latent"], z), rel(t["pred"], x))
assert abs(float(t["loss"]) - float(l[0])) < 1e-5 * float(l[0])
assert t["label"].tolist() == [3, 5] and m["mim.keys"] == "[\"a\",\"b\"]"   # passed through
PYEOF'
expect_ok 'the same in one process (library calls)' '"$TV" --pipeline "$T/ck.st" < "$T/in.mim" > "$T/lib.mim"'
check 'pipes and in-process give the same bytes' 'cmp "$T/out.mim" "$T/lib.mim"'
check 'an I64 mask (as PyTorch writes it) gives the same latent' 'mim-encode -c "$T/ck.st" < "$T/in64.mim" | mim-head -c "$T/ck.st" | mim-loss 2>/dev/null | $PY -c "
import sys, st; t, m = next(st.read_frames(sys.stdin.buffer)); print(float(t[\"loss\"]))" > "$T/l64" && grep -q "^0.71443" "$T/l64"'
expect_ok 'several frames, several files' 'cat "$T/in.mim" "$T/in.mim" > "$T/two.mim" && mim-encode -c "$T/ck.st" "$T/in.mim" "$T/two.mim" | mim-head -c "$T/ck.st" | mim-loss 2> "$T/err3" > "$T/three.mim"'
check 'three frames, running mean' 'test "$(grep -c "^mim-loss: frame" "$T/err3")" = 3 && grep -q "frame 2: loss 0.71443[56], mean 0.71443[56]" "$T/err3"'
check 'same bytes for a stream and a file of it' 'mim-encode -c "$T/ck.st" < "$T/in.mim" > "$T/e1" && cat "$T/in.mim" | mim-encode -c "$T/ck.st" > "$T/e2" && cmp "$T/e1" "$T/e2"'
check 'threads 1 and 2 agree within 1e-6 (same count: same bytes, above)' 'MIM_THREADS=1 mim-encode -c "$T/ck.st" < "$T/in.mim" > "$T/t1" && mim-encode -c "$T/ck.st" --threads 2 < "$T/in.mim" > "$T/t2" && $PY -c "
import sys, st, numpy as np
a = next(st.read_frames(open(sys.argv[1], \"rb\")))[0][\"latent\"]; b = next(st.read_frames(open(sys.argv[2], \"rb\")))[0][\"latent\"]
assert np.abs(a - b).max() <= 1e-6 * np.abs(a).max()" "$T/t1" "$T/t2"'

# no mask: nothing masked (different latent), loss over all pixels works without one
$PY - "$T" <<'PYEOF'
import sys, st
d = sys.argv[1]
t, m = st.load(d + "/in.mim")
st.save(d + "/nomask.mim", {"image": t["image"]})
PYEOF
expect_ok 'encode without a mask' 'mim-encode -c "$T/ck.st" < "$T/nomask.mim" | mim-head -c "$T/ck.st" | mim-loss --region all --loss l2 2>/dev/null > "$T/nm.mim"'
check 'no mask: the mask token never enters' '$PY - "$T" <<PYEOF
import sys, numpy as np, st
d = sys.argv[1]
a = st.load(d + "/nm.mim")[0]; b = st.load(d + "/out.mim")[0]
assert not np.allclose(a["latent"], b["latent"])
x, p = a["image"], a["pred"]
l = ((x - p) ** 2).sum() / (x.size / 3 + 1e-5) / 3
assert abs(float(a["loss"]) - l) < 1e-5 * l, (float(a["loss"]), l)
PYEOF'
expect_fail 'loss over masked pixels needs a mask' 1 'mim-encode -c "$T/ck.st" < "$T/nomask.mim" | mim-head -c "$T/ck.st" | mim-loss'
check 'smooth-l1, l1 over all pixels: against NumPy' 'mim-loss --loss smooth-l1 --beta 0.5 -q < "$T/out.mim" > "$T/s1" && mim-loss --region all -q < "$T/out.mim" > "$T/a1" && $PY - "$T" <<PYEOF
import sys, numpy as np, st
d = sys.argv[1]
t = st.load(d + "/s1")[0]; x, p = t["image"].astype(np.float64), t["pred"].astype(np.float64)
M = np.repeat(np.repeat(t["mask"], 4, 1), 4, 2)[:, None].astype(np.float64)
a = np.abs(x - p); f = np.where(a < 0.5, 0.5 * a * a / 0.5, a - 0.25)
want = (f * M).sum() / (M.sum() + 1e-5) / 3
assert abs(float(t["loss"]) - want) < 1e-6 * want, (float(t["loss"]), want)
t = st.load(d + "/a1")[0]
want = np.abs(x - p).sum() / (x.size / 3 + 1e-5) / 3
assert abs(float(t["loss"]) - want) < 1e-6 * want
PYEOF'
check 'a loss frame passes through (loss replaced)' 'mim-loss --loss l2 -q < "$T/out.mim" | mim-loss -q | cmp - "$T/out.mim"'

# intermediate and pooled features
expect_ok '--layer 1' 'mim-encode -c "$T/ck.st" --layer 1 < "$T/in.mim" > "$T/l1.mim"'
expect_ok '--layer 2 --pool mean' 'mim-encode -c "$T/ck.st" --layer 2 --pool mean < "$T/in.mim" > "$T/l2p.mim"'
check 'layer features equal the official block outputs; pooled = mean' '$PY - "$T" "$G" <<PYEOF
import sys, numpy as np, st
d, g = sys.argv[1], sys.argv[2]
gt = st.load(g + "/micro-vit.s7.b2.safetensors")[0]
t, m = st.load(d + "/l1.mim")
ref = gt["act/encoder.blocks.0"][:, 1:].transpose(0, 2, 1).reshape(2, 32, 8, 8)
assert t["latent"].shape == (2, 32, 8, 8) and m["mim.latent"] == "layer 1"
assert np.abs(t["latent"] - ref).max() < 1e-5 * np.abs(ref).max()
t, m = st.load(d + "/l2p.mim")
ref = gt["act/encoder.blocks.1"][:, 1:].mean(1)
assert t["latent"].shape == (2, 32) and m["mim.latent"] == "layer 2, pool mean"
assert np.abs(t["latent"] - ref).max() < 1e-5 * np.abs(ref).max()
PYEOF'
expect_fail 'pooled latent is not a head input' 1 'mim-head -c "$T/ck.st" < "$T/l2p.mim"'
expect_fail '--layer beyond the depth' 2 'mim-encode -c "$T/ck.st" --layer 3 < "$T/in.mim"'
expect_fail '--pool max' 2 'mim-encode -c "$T/ck.st" --pool max < "$T/in.mim"'

# malformed frames and checkpoints
$PY - "$T" <<'PYEOF'
import sys, numpy as np, st
d = sys.argv[1]
t, m = st.load(d + "/in.mim")
st.save(d + "/size.mim", {"image": np.zeros((2, 3, 64, 64), np.float32)})
st.save(d + "/f64.mim", {"image": t["image"].astype(np.float64)})
st.save(d + "/mshape.mim", {"image": t["image"], "mask": np.zeros((2, 4, 4), np.uint8)})
st.save(d + "/noimg.mim", {"mask": t["mask"]})
st.save(d + "/lat.mim", {"latent": np.zeros((2, 16, 8, 8), np.float32)})
st.save(d + "/pred.mim", {"image": t["image"], "mask": t["mask"], "pred": np.zeros((2, 3, 16, 16), np.float32)})
st.save(d + "/mtile.mim", {"image": t["image"], "mask": np.zeros((2, 5, 5), np.uint8), "pred": t["image"]})
PYEOF
expect_fail 'image of the wrong size' 1 'mim-encode -c "$T/ck.st" < "$T/size.mim"'
check 'message names frame and tensor' 'mim-encode -c "$T/ck.st" < "$T/size.mim" 2>&1 | grep -q "^mim-encode: <stdin>: frame 0: tensor .image.: shape \[2,3,64,64\], want \[B,3,32,32\]"'
expect_fail 'F64 image' 1 'mim-encode -c "$T/ck.st" < "$T/f64.mim"'
expect_fail 'mask of the wrong shape' 1 'mim-encode -c "$T/ck.st" < "$T/mshape.mim"'
expect_fail 'no image' 1 'mim-encode -c "$T/ck.st" < "$T/noimg.mim"'
expect_fail 'latent of another model' 1 'mim-head -c "$T/ck.st" < "$T/lat.mim"'
expect_fail 'no latent' 1 'mim-head -c "$T/ck.st" < "$T/in.mim"'
expect_fail 'pred of the wrong shape' 1 'mim-loss < "$T/pred.mim"'
expect_fail 'mask that does not tile the image' 1 'mim-loss < "$T/mtile.mim"'
expect_fail 'truncated stream' 1 'head -c 3000 "$T/in.mim" | mim-encode -c "$T/ck.st"'
expect_fail 'missing checkpoint' 1 'mim-encode -c "$T/none.st" < "$T/in.mim"'
expect_fail 'a stream is not a checkpoint' 1 'mim-head -c "$T/in.mim" < "$T/out.mim"'
$PY - "$T" <<'PYEOF'
import sys, st
d = sys.argv[1]
t, m = st.load(d + "/ck.st")
u = dict(t); del u["encoder.blocks.0.mlp.fc1.bias"]; st.save(d + "/bad1.st", u, m)
m2 = dict(m); m2["mim.config"] = m["mim.config"].replace('"embed_dim":32', '"embed_dim":64'); st.save(d + "/bad2.st", t, m2)
PYEOF
expect_fail 'checkpoint missing a tensor' 1 'mim-encode -c "$T/bad1.st" < "$T/in.mim"'
expect_fail 'config that does not match the weights' 1 'mim-head -c "$T/bad2.st" < "$T/out.mim"'
expect_fail 'no --ckpt' 2 'mim-encode < "$T/in.mim"'
expect_fail 'bad --loss' 2 'mim-loss --loss l3 < "$T/out.mim"'
expect_fail 'bad --region' 2 'mim-loss --region some < "$T/out.mim"'
expect_fail 'bad --threads' 2 'mim-encode -c "$T/ck.st" --threads 0 < "$T/in.mim"'
check 'helps' 'mim-encode --help | grep -q "usage: mim-encode" && mim-head -h | grep -q "usage: mim-head" && mim-loss --help | grep -q "usage: mim-loss"'
check 'a closed pipe is not an error' '(cat "$T/in.mim" "$T/in.mim" "$T/in.mim" | mim-encode -c "$T/ck.st"; echo $? > "$T/rc") | head -c 10 > /dev/null; test "$(cat "$T/rc")" = 0'
