# t-mim-data-ft.sh -- mim-data's fine-tuning transforms (reference §3.2):
# --finetune's RandomResizedCrop boxes equal timm 0.4.12's get_params (its
# 10 tries and centre-crop fallback, tests/ref/timm_ref.py) driven by the
# same draws, sample by sample; --pad-crop (and --finetune at S <= 32) is
# torchvision's RandomCrop(S, padding) + flip, pixel for pixel against
# numpy; --finetune --eval is torchvision's Resize(int(S/0.875), bicubic) +
# CenterCrop; the option checks.
. "$MIM_TOP/tests/lib.sh"

$PY - "$T" <<'PYEOF'
import sys, numpy as np
from shards import gradient_shard
d = sys.argv[1]
rs = np.random.RandomState(5)
shard = lambda path, sizes, grey=(): gradient_shard(path, sizes, rs, grey)
# wide and tall ones fall back to the centre crop most of the time
shard(d + "/big.tar", [(200, 20), (20, 200), (64, 48), (50, 50), (97, 33), (40, 120), (300, 90)])
shard(d + "/small.tar", [(28, 28), (30, 26), (24, 24), (28, 28)], grey=(3,))
shard(d + "/mid.tar", [(96, 80), (75, 110), (64, 64)])
PYEOF

expect_ok '--finetune boxes over 8 epochs' 'mim-data --finetune -s 48 --seed 7 -e 8 -b 7 --print-boxes "$T/big.tar" 2> "$T/boxes" > /dev/null'
check 'each box and flip is timm get_params on the same draws' '$PY - "$T/boxes" <<PYEOF
import sys, timm_ref
rows = [l.split()[2:] for l in open(sys.argv[1]) if " box " in l]
assert len(rows) == 56, len(rows)
fallback = 0
for n, r in enumerate(rows):
    W, H, x, y, w, h, flip = map(int, r[1:8])
    e, i = divmod(n, 7)
    rng = timm_ref.Drng(7, 0, e, i)
    ti, tj, th, tw = timm_ref.timm_get_params(W, H, (0.08, 1.0), (3 / 4, 4 / 3), rng)
    want = (tj, ti, tw, th, int(rng.double() < 0.5))
    assert (x, y, w, h, flip) == want, (n, r, want)
    fallback += (W, H) in ((200, 20), (20, 200), (300, 90)) and (w, h) in ((27, 20), (20, 27), (120, 90))
print("# %d of 56 boxes from the centre-crop fallback" % fallback, file=sys.stderr)
assert fallback >= 6   # the fallback is exercised, not only the tries
PYEOF'
# random erasing (--finetune: p 0.25), after the crop's draws, pixel for pixel
# (RandAugment off here; t-randaug.sh has erasing after its draws)
expect_ok '--finetune: erasing on' 'mim-data --finetune --randaug none -s 48 --seed 7 -e 8 -b 7 --mean 0 --std 1 --print-boxes "$T/big.tar" 2> "$T/eboxes" > "$T/er.mim"'
expect_ok '--finetune --reprob 0: the same crops, nothing erased' 'mim-data --finetune --randaug none --reprob 0 -s 48 --seed 7 -e 8 -b 7 --mean 0 --std 1 "$T/big.tar" > "$T/noer.mim"'
check 'erased boxes and their N(0,1) pixels as timm RandomErasing on the same draws' '$PY - "$T" <<PYEOF
import sys, numpy as np, st, timm_ref
d = sys.argv[1]
rows = [l.split()[2:] for l in open(d + "/eboxes") if " box " in l]
rd = lambda p: np.concatenate([t["image"] for t, m in st.read_frames(open(p, "rb"))])
er, no = rd(d + "/er.mim"), rd(d + "/noer.mim")
assert len(rows) == len(er) == 56
erased = 0
for n, r in enumerate(rows):
    W, H = int(r[1]), int(r[2])
    e, i = divmod(n, 7)
    rng = timm_ref.Drng(7, 0, e, i)
    timm_ref.timm_get_params(W, H, (0.08, 1.0), (3 / 4, 4 / 3), rng); rng.double()   # crop, flip
    want = no[n].astype(np.float64)
    box = timm_ref.timm_erase(want, rng, 0.25)
    got_box = tuple(map(int, r[10:14])) if len(r) > 9 and r[9] == "erase" else None
    assert box == got_box, (n, box, r)
    assert np.array_equal(er[n], want.astype(np.float32)), n
    erased += box is not None
print("# %d of 56 erased" % erased, file=sys.stderr)
assert 5 <= erased <= 25, erased
v = np.concatenate([er[k][er[k] != no[k]] for k in range(56)])
assert abs(v.mean()) < 0.05 and abs(v.std() - 1) < 0.05, (v.mean(), v.std())
PYEOF'
expect_ok '--scale overrides --finetune s range' 'mim-data --finetune --scale 0.5,0.6 -s 48 --seed 3 --print-boxes "$T/big.tar" 2> "$T/boxes2" > /dev/null'
check 'the boxes of --scale 0.5,0.6' '$PY - "$T/boxes2" <<PYEOF
import sys, timm_ref
rows = [l.split()[2:] for l in open(sys.argv[1]) if " box " in l]
for i, r in enumerate(rows):
    W, H, x, y, w, h, flip = map(int, r[1:8])
    rng = timm_ref.Drng(3, 0, 0, i)
    ti, tj, th, tw = timm_ref.timm_get_params(W, H, (0.5, 0.6), (3 / 4, 4 / 3), rng)
    assert (x, y, w, h) == (tj, ti, tw, th), (r, (tj, ti, tw, th))
PYEOF'

# RandomCrop(28, padding=4) + flip on 28 px images, pixels against numpy
expect_ok '--finetune at 28 px: padded random crops (no erasing, no RandAugment)' 'mim-data --finetune --reprob 0 --randaug none -s 28 --mean 0 --std 1 --seed 9 -e 6 -b 4 --print-boxes "$T/small.tar" 2> "$T/pboxes" > "$T/pad.mim"'
check 'windows as torchvision RandomCrop, pixels as np.pad + crop + flip' '$PY - "$T" <<PYEOF
import sys, numpy as np, st, timm_ref
d = sys.argv[1]
rows = [l.split()[2:] for l in open(d + "/pboxes") if " box " in l]
with open(d + "/pad.mim", "rb") as f:
    imgs = np.concatenate([t["image"] for t, m in st.read_frames(f)])
assert len(rows) == 24 == len(imgs)
seen = set()
for n, r in enumerate(rows):
    W, H, x, y, w, h, flip = map(int, r[1:8])
    e, i = divmod(n, 4)
    rng = timm_ref.Drng(9, 0, e, i)
    wy, wx = timm_ref.randomcrop_get_params(W, H, 28, 4, rng)
    assert (x, y, w, h, flip) == (wx, wy, 28, 28, int(rng.double() < 0.5)), (n, r)
    src = np.load(d + "/small-%02d.npy" % int(r[0][1:]))
    if src.ndim == 2:
        src = np.repeat(src[:, :, None], 3, 2)
    p = np.pad(src, ((4, 4), (4, 4), (0, 0)))
    want = p[y + 4:y + 32, x + 4:x + 32].transpose(2, 0, 1) / 255.0
    if flip:
        want = want[:, :, ::-1]
    got = imgs[n]
    assert np.abs(got - want).max() < 1e-6, (n, np.abs(got - want).max())
    seen.add((x, y))
assert min(x for x, y in seen) <= -2 and max(x for x, y in seen) >= 2, seen   # some padding shows
PYEOF'
expect_ok '--pad-crop 2 on the 28 px images at 26' 'mim-data --pad-crop 2 -s 26 --seed 1 --print-boxes "$T/small.tar" 2> "$T/p2" > /dev/null'
check '--pad-crop 2: windows from -2' '$PY - "$T/p2" <<PYEOF
import sys, timm_ref
rows = [l.split()[2:] for l in open(sys.argv[1]) if " box " in l]
for i, r in enumerate(rows):
    W, H, x, y = map(int, r[1:5])
    rng = timm_ref.Drng(1, 0, 0, i)
    assert (y, x) == timm_ref.randomcrop_get_params(W, H, 26, 2, rng), r
PYEOF'
expect_fail 'an image too small for the padded crop' 1 'mim-data --pad-crop 1 -s 28 --strict "$T/small.tar" > "$T/x.mim"'
cp "$T/.err" "$T/e1"
check 'the message gives the sizes' 'grep -q "image 24x24 padded by 1 is smaller than the crop 28x28" "$T/e1"'

# evaluation: Resize(int(S / 0.875), bicubic) + CenterCrop(S), as torchvision
expect_ok '--finetune --eval at 48 px' 'mim-data --finetune --eval -s 48 --mean 0 --std 1 -b 3 "$T/mid.tar" > "$T/ev.mim"'
if $PY -c 'import torchvision' 2>/dev/null; then
check 'as torchvision Resize(54, bicubic) + CenterCrop(48) + ToTensor' '$PY - "$T" <<PYEOF
import sys, numpy as np, st, torchvision.transforms as T
from PIL import Image
d = sys.argv[1]
with open(d + "/ev.mim", "rb") as f:
    got = next(st.read_frames(f))[0]["image"]
tf = T.Compose([T.Resize(int(48 / (224 / 256)), interpolation=T.InterpolationMode.BICUBIC),
                T.CenterCrop(48), T.ToTensor()])
assert int(48 / (224 / 256)) == 54
for k in range(3):
    want = tf(Image.fromarray(np.load(d + "/mid-%02d.npy" % k))).numpy()
    assert np.abs(got[k] - want).max() < 1e-6, (k, np.abs(got[k] - want).max())
PYEOF'
else
	echo "skip - torchvision not available to $PY"
fi
expect_ok '--finetune --eval at 28 px: no resize' 'mim-data --finetune --eval -s 28 --mean 0 --std 1 -b 2 "$T/small.tar" > "$T/ev28.mim"'
check 'the 28 x 28 images unchanged' '$PY - "$T" <<PYEOF
import sys, numpy as np, st
d = sys.argv[1]
with open(d + "/ev28.mim", "rb") as f:
    got = np.concatenate([t["image"] for t, m in st.read_frames(f)])
for k in (0, 3):
    src = np.load(d + "/small-%02d.npy" % k)
    src = np.repeat(src[:, :, None], 3, 2) if src.ndim == 2 else src
    assert np.abs(got[k] - src.transpose(2, 0, 1) / 255.0).max() < 1e-6, k
PYEOF'
expect_ok '--crop-pct is --crop-ratio' 'mim-data -q --eval -s 48 --crop-pct 0.8 "$T/mid.tar" > "$T/c1" && mim-data -q --eval -s 48 --crop-ratio 0.8 "$T/mid.tar" > "$T/c2" && cmp -s "$T/c1" "$T/c2"'
expect_fail '--pad-crop with --eval' 2 'mim-data --pad-crop 4 --eval "$T/mid.tar"'
expect_fail '--pad-crop not less than the size' 2 'mim-data --pad-crop 28 -s 28 "$T/small.tar"'
expect_fail '--pad-crop negative' 2 'mim-data --pad-crop -1 -s 28 "$T/small.tar"'
expect_fail '--reprob with --eval' 2 'mim-data --reprob 0.5 --eval "$T/mid.tar"'
expect_fail '--reprob out of range' 2 'mim-data --reprob 1.5 "$T/mid.tar"'
check '--finetune --eval erases nothing (the seed does not matter)' 'mim-data -q --finetune --eval -s 48 --seed 1 "$T/mid.tar" > "$T/s1" && mim-data -q --finetune --eval -s 48 --seed 2 "$T/mid.tar" > "$T/s2" && cmp -s "$T/s1" "$T/s2"'

# --resume: the fine-tuning stream picks up where a run stopped, the same bytes
expect_ok 'an uninterrupted --finetune stream' 'mim-data -q --finetune -s 40 --seed 4 -e 3 -b 3 --shuffle 4 "$T/big.tar" "$T/mid.tar" > "$T/full.mim"'
check 'resumed after frame 3: the rest of the stream, byte for byte' '$PY - "$T" <<PYEOF
import sys, numpy as np, st, subprocess
d = sys.argv[1]
raw = open(d + "/full.mim", "rb").read()
frames, off = [], 0
import struct, json
while off < len(raw):
    n = struct.unpack("<Q", raw[off:off + 8])[0]
    hdr = json.loads(raw[off + 8:off + 8 + n])
    end = off + 8 + n + max(v["data_offsets"][1] for k, v in hdr.items() if k != "__metadata__")
    frames.append((raw[off:end], hdr["__metadata__"])); off = end
assert len(frames) == 12, len(frames)   # 10 images an epoch: 3+3+3+1
pos = frames[3][1]["mim.pos"]
st.save(d + "/ck.st", {"w": np.zeros(1, np.float32)}, {"mim.train.data": "[%s]" % pos, "mim.train.step": "4"})
rest = subprocess.run(["mim-data", "-q", "--finetune", "-s", "40", "--seed", "4", "-e", "3", "-b", "3", "--shuffle", "4",
                       "--resume", d + "/ck.st", d + "/big.tar", d + "/mid.tar"], capture_output=True, check=True).stdout
assert rest == b"".join(f for f, m in frames[4:]), (len(rest), sum(len(f) for f, m in frames[4:]))
PYEOF'
