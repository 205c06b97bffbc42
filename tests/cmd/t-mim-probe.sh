# t-mim-probe.sh -- mim-probe trains on separable features and scores them
# through mim-eval; its logits equal numpy's BatchNorm (eval) + Linear of
# the probe file, which PyTorch loads with load_state_dict(strict=True);
# the same seed gives the same file; bad input gives clear errors.
. "$MIM_TOP/tests/lib.sh"

$PY - "$T" <<'PYEOF'
import sys, numpy as np, st
d = sys.argv[1]
rs = np.random.RandomState(11)
C, K = 12, 4
cent = rs.randn(K, C) * 1.5
def make(n, path, meta="layer 3, pool mean"):
    with open(path, "wb") as f:
        for s in range(0, n, 40):
            y = rs.randint(0, K, 40)
            x = (cent[y] + rs.randn(40, C)) * 7 - 2     # far from BatchNorm's 0 and 1
            f.write(st.frame_bytes({"latent": x.astype(np.float32), "label": y.astype(np.int64)},
                                   {"mim.latent": meta}))
make(800, d + "/train.mim"); make(400, d + "/test.mim"); make(40, d + "/layer5.mim", "layer 5, pool mean")
x = rs.randn(8, C).astype(np.float32)
st.save(d + "/nolabel.mim", {"latent": x})
st.save(d + "/range.mim", {"latent": x, "label": np.arange(8, dtype=np.int64)})
st.save(d + "/narrow.mim", {"latent": x[:, :10], "label": np.zeros(8, np.int64)})
st.save(d + "/map.mim", {"latent": x.reshape(8, 3, 2, 2), "label": np.zeros(8, np.int64)})
st.save(d + "/onecls.mim", {"latent": x, "label": np.zeros(8, np.int64)})
PYEOF

expect_ok 'train a probe' 'mim-probe --out "$T/p.st" --epochs 15 --batch 64 --seed 3 --log "$T/log" "$T/train.mim"'
cp "$T/.err" "$T/e0"
check 'the progress names samples, features and classes' 'grep -q "800 samples, 12 features, 4 classes" "$T/e0"'
check 'a log line per epoch' '[ $(wc -l < "$T/log") -eq 15 ] && tail -n 1 "$T/log" | grep -q "\"epoch\":15,\"step\":180,"'
expect_ok 'apply it and score' 'mim-probe --ckpt "$T/p.st" < "$T/test.mim" > "$T/pred.mim" && mim-eval --json "$T/pred.mim" > "$T/eval.json"'
check 'held-out top-1 above 95 %' '$PY -c "import json,sys; a=json.load(open(sys.argv[1]))[\"acc1\"]; assert a > 95, a" "$T/eval.json"'
check 'logits are BatchNorm (running statistics, eps 1e-6) + Linear of the file, label passed on' '$PY - "$T" <<PYEOF
import sys, numpy as np, st
d = sys.argv[1]
p = st.load(d + "/p.st")[0]
assert sorted(p) == ["head.0.num_batches_tracked", "head.0.running_mean", "head.0.running_var",
                     "head.1.bias", "head.1.weight"], sorted(p)
assert int(p["head.0.num_batches_tracked"]) == 180
with open(d + "/pred.mim", "rb") as f:
    frames = list(st.read_frames(f))
with open(d + "/test.mim", "rb") as f:
    src = list(st.read_frames(f))
assert len(frames) == 10
for (t, m), (s, _) in zip(frames, src):
    x = t["latent"].astype(np.float64)
    xh = (x - p["head.0.running_mean"]) / np.sqrt(p["head.0.running_var"].astype(np.float64) + 1e-6)
    want = xh @ p["head.1.weight"].T.astype(np.float64) + p["head.1.bias"]
    assert np.abs(t["logits"] - want).max() <= 1e-5 * np.abs(want).max(), np.abs(t["logits"] - want).max()
    assert (t["label"] == s["label"]).all() and m["mim.latent"] == "layer 3, pool mean"
PYEOF'
if have_torch; then
check 'PyTorch loads the probe (strict) and gives the same logits' '$PY - "$T" <<PYEOF
import sys, numpy as np, torch, st
d = sys.argv[1]
p, meta = st.load(d + "/p.st")
model = torch.nn.Module()   # MAE: model.head = Sequential(BatchNorm1d, Linear)
model.head = head = torch.nn.Sequential(torch.nn.BatchNorm1d(12, affine=False, eps=1e-6), torch.nn.Linear(12, 4))
model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in p.items()}, strict=True)
head.eval()
with open(d + "/pred.mim", "rb") as f:
    t = next(st.read_frames(f))[0]
with torch.no_grad():
    want = head(torch.from_numpy(t["latent"].copy())).numpy()
assert np.abs(t["logits"] - want).max() <= 1e-5 * np.abs(want).max()
import json; cfg = json.loads(meta["mim.probe"])
assert cfg["epochs"] == 15 and cfg["batch"] == 64 and cfg["classes"] == 4 and cfg["optimizer"] == "sgd"
assert meta["mim.latent"] == "layer 3, pool mean"
PYEOF'
fi
expect_ok 'the same seed again' 'mim-probe -q --out "$T/p2.st" --epochs 15 --batch 64 --seed 3 "$T/train.mim"'
check 'the same seed: the same file' 'cmp "$T/p.st" "$T/p2.st"'
expect_ok 'another seed' 'mim-probe -q --out "$T/p3.st" --epochs 15 --batch 64 --seed 4 < "$T/train.mim"'
check 'another seed: another probe' '! cmp -s "$T/p.st" "$T/p3.st"'
expect_ok 'training with --val' 'mim-probe -q --out "$T/pv.st" --epochs 15 --batch 64 --seed 3 --val "$T/test.mim" --log "$T/vlog" "$T/train.mim"'
check 'the same probe as without --val' 'cmp "$T/p.st" "$T/pv.st"'
check 'the last val_acc1 and val_loss are mim-eval of the probe' '$PY - "$T" <<PYEOF
import sys, json
d = sys.argv[1]
last = [json.loads(l) for l in open(d + "/vlog")][-1]; ev = json.load(open(d + "/eval.json"))
assert last["epoch"] == 15 and abs(last["val_acc1"] - ev["acc1"]) < 1e-6 and abs(last["val_acc5"] - ev["acc5"]) < 1e-6
assert abs(last["val_loss"] - ev["loss"]) <= 1e-6 * ev["loss"], (last, ev["loss"])
PYEOF'
expect_ok 'the curves of the probe' 'mim-view --curve "$T/vlog" --field loss,val_loss,val_acc1 -o "$T/curves.svg"'
expect_fail '--val of another width' 1 'mim-probe --out "$T/x.st" --val "$T/narrow.mim" "$T/train.mim"'
expect_fail '--val with --ckpt' 2 'mim-probe --ckpt "$T/p.st" --val "$T/test.mim" < "$T/test.mim"'
expect_ok 'features of another layer: a warning' 'mim-probe --ckpt "$T/p.st" "$T/layer5.mim" > /dev/null'
cp "$T/.err" "$T/e4"
check 'the warning names both' 'grep -q "layer 5, pool mean.*layer 3, pool mean" "$T/e4"'

expect_fail 'training without labels' 1 'mim-probe --out "$T/x.st" "$T/nolabel.mim"'
cp "$T/.err" "$T/e1"
check 'the message names label' 'grep -q "frame 0: no tensor .label." "$T/e1"'
expect_fail 'labels beyond --classes' 1 'mim-probe --classes 4 --out "$T/x.st" "$T/range.mim"'
expect_fail 'one class only' 1 'mim-probe --out "$T/x.st" "$T/onecls.mim"'
expect_fail 'empty stream' 1 ': | mim-probe --out "$T/x.st"'
expect_fail 'a feature map, not pooled' 1 'mim-probe --out "$T/x.st" "$T/map.mim"'
check 'no probe written by a failed run' 'test ! -e "$T/x.st"'
cp "$T/p.st" "$T/keep.st"
expect_fail 'a failed run leaves an old probe alone' 1 'mim-probe --out "$T/keep.st" "$T/nolabel.mim"'
check 'the old probe is intact' 'cmp "$T/p.st" "$T/keep.st"'
expect_fail 'a probe of the wrong shape for the features' 1 'mim-probe --ckpt "$T/p.st" "$T/narrow.mim"'
cp "$T/.err" "$T/e2"
check 'the message gives both widths' 'grep -q "10 features, the probe 12" "$T/e2"'
expect_fail 'not a probe file' 1 'mim-probe --ckpt "$T/test.mim" < "$T/test.mim"'
expect_fail 'a missing probe file' 1 'mim-probe --ckpt "$T/none.st" < "$T/test.mim"'
expect_fail 'a model checkpoint is not a probe' 1 'mim-ckpt init --preset vit-tiny -o "$T/vit.st" 2>/dev/null; mim-probe --ckpt "$T/vit.st" < "$T/test.mim"'
cp "$T/.err" "$T/e3"
check 'the message says so' 'grep -q "not a linear probe" "$T/e3"'
expect_fail 'neither --out nor --ckpt' 2 'mim-probe < "$T/test.mim"'
expect_fail 'both --out and --ckpt' 2 'mim-probe --out "$T/x.st" --ckpt "$T/p.st" < "$T/test.mim"'
expect_fail 'bad --batch' 2 'mim-probe --out "$T/x.st" --batch 1 < "$T/test.mim"'
expect_fail 'warmup longer than training' 2 'mim-probe --out "$T/x.st" --epochs 2 --warmup-epochs 3 < "$T/test.mim"'
expect_ok '--help' 'mim-probe --help | grep -q "usage: mim-probe"'

# the real pipeline: labelled shards | mim-data | mim-encode --layer --pool mean
# (which passes 'label' on) | mim-probe | mim-eval
$PY - "$T" <<'PYEOF'
import io, sys, tarfile, numpy as np
from PIL import Image
d = sys.argv[1]
rs = np.random.RandomState(4)
with tarfile.open(d + "/lab.tar", "w") as t:
    for i in range(40):
        y = i % 2     # dark pictures and bright ones
        a = np.clip(rs.randint(0, 90, (32, 32, 3)) + 150 * y, 0, 255).astype(np.uint8)
        b = io.BytesIO(); Image.fromarray(a).save(b, "PNG")
        for name, data in (("s%03d.png" % i, b.getvalue()), ("s%03d.cls" % i, str(y).encode())):
            ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
PYEOF
expect_ok 'a tiny ViT' 'mim-ckpt init --preset micro-vit --img-size 32 --patch-size 4 --encoder-stride 4 -o "$T/vit.st"'
expect_ok 'shards to features of block 1 to a probe' 'mim-data -q --eval --crop-ratio 1 -s 32 -b 8 "$T/lab.tar" |
	mim-encode --ckpt "$T/vit.st" --layer 1 --pool mean | tee "$T/lab.mim" | mim-probe -q --out "$T/lab.st" --epochs 30 --batch 8'
check 'mim-encode passed the labels on, in order' '$PY - "$T" <<PYEOF
import sys, numpy as np, st
with open(sys.argv[1] + "/lab.mim", "rb") as f:
    fr = list(st.read_frames(f))
y = np.concatenate([t["label"] for t, m in fr])
assert y.dtype == np.int64 and (y == np.arange(40) % 2).all(), y
assert fr[0][0]["latent"].ndim == 2 and fr[0][1]["mim.latent"] == "layer 1, pool mean"
PYEOF'
expect_ok 'applied and scored' 'mim-probe --ckpt "$T/lab.st" "$T/lab.mim" | mim-eval --json > "$T/lab.json"'
check 'dark and bright told apart' '$PY -c "import json,sys; a=json.load(open(sys.argv[1])); assert a[\"n\"] == 40 and a[\"acc1\"] == 100, a" "$T/lab.json"'
