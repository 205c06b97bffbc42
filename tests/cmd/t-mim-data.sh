# t-mim-data.sh -- mim-data: frames, order, ranks, formats, bad input,
# parity with torchvision, crop statistics, --out and --idx.
. "$MIM_TOP/tests/lib.sh"

D=$T/d
mkdir -p "$D"
# A small dataset of real photos (the wallpapers' 640x480 versions shrunk
# to about 160x120; synthetic pictures if they are not installed): shards
# a-0.tar and a-1.tar of 5 samples each (.jpg or .png, .cls, .txt), the
# same as an ImageFolder tree, a tar with bad members and a truncated
# tail, and tiny IDX files.
$PY - "$D" <<'PYEOF'
import glob, gzip, io, os, sys, tarfile
import numpy as np
from PIL import Image
d = sys.argv[1]
photos = sorted(glob.glob("/usr/share/wallpapers/*/contents/images/640x480.jpg"))
def picture(i):
    if photos:
        im = Image.open(photos[i % len(photos)]).convert("RGB")
        return im.resize((160 + 8 * i, 120 + 4 * (i % 3)), Image.BILINEAR)
    rng = np.random.default_rng(i)
    y, x = np.mgrid[0:120, 0:160]
    a = np.stack([x * 1.5 + i * 9, y * 2.0, (x + y) % 255], -1) + rng.normal(0, 20, (120, 160, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
def enc(im, fmt):
    b = io.BytesIO(); im.save(b, fmt, quality=90); return b.getvalue()
def add(t, name, data):
    ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
for s in range(2):
    with tarfile.open(f"{d}/a-{s}.tar", "w") as t:
        for i in range(5 * s, 5 * s + 5):
            im = picture(i)
            if i == 3: im = im.convert("L")
            if i == 5: im = im.convert("RGBA")
            fmt = "png" if i % 2 else "jpg"
            add(t, f"s{i:03d}.cls", str(i % 3).encode())
            add(t, f"s{i:03d}.{fmt}", enc(im, "PNG" if fmt == "png" else "JPEG"))
            add(t, f"s{i:03d}.txt", f"caption {i}".encode())
for i in range(10):
    os.makedirs(f"{d}/folder/class{i % 2}", exist_ok=True)
    picture(i).save(f"{d}/folder/class{i % 2}/p{i:02d}.jpg", quality=90)
# bad.tar: good, corrupt JPEG (cut after 600 bytes), a text-only sample,
# good, then a last JPEG cut in the middle of its data (truncated tail)
good = enc(picture(1), "JPEG")
with tarfile.open(f"{d}/bad.tar", "w") as t:
    add(t, "g1.jpg", good)
    add(t, "corrupt.jpg", good[:600])
    add(t, "note.txt", b"just text\n")
    add(t, "g2.png", enc(picture(2), "PNG"))
    add(t, "g3.jpg", good)
with tarfile.open(f"{d}/bad.tar") as t:
    cut = t.getmember("g3.jpg").offset_data + len(good) // 2
raw = open(f"{d}/bad.tar", "rb").read()
open(f"{d}/bad.tar", "wb").write(raw[:cut])
# mangled.tar: JPEGs of every kind mim-data decodes itself (baseline
# 4:2:0, progressive 4:4:4, grey) and a CMYK one (libvips' path), whole,
# then cut at 8 places and with bytes flipped or zeroed inside the data
import random
random.seed(5)
kinds = [(picture(4), dict(subsampling=2)), (picture(6), dict(progressive=True, subsampling=0)),
         (picture(7).convert("L"), {}), (picture(8).convert("CMYK"), {})]
with tarfile.open(f"{d}/mangled.tar", "w") as t:
    for k, (im, kw) in enumerate(kinds):
        b = io.BytesIO(); im.save(b, "JPEG", quality=85, **kw); b = b.getvalue()
        add(t, f"k{k}.jpg", b)
        for c in (2, 11, 90, 300, len(b) // 4, len(b) // 2, len(b) - 40, len(b) - 2):
            add(t, f"k{k}cut{c}.jpg", b[:c])
        for f in range(5):
            m = bytearray(b)
            at = random.randrange(len(b) // 5, len(b) - 8)
            for q in range((1, 3, 40, 400, 2000)[f]):
                m[(at + q) % len(b)] = 0 if f == 4 else m[(at + q) % len(b)] ^ random.randrange(1, 256)
            add(t, f"k{k}flip{f}.jpg", bytes(m))
# IDX: 3 images of 5x4, labels 7 8 9, gzip'd as Debian ships them
px = (np.arange(60) * 4).astype(np.uint8)
hdr = bytes([0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 5, 0, 0, 0, 4])
gzip.open(f"{d}/img.idx.gz", "wb").write(hdr + px.tobytes())
gzip.open(f"{d}/lab.idx.gz", "wb").write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
PYEOF
A="$D/a-0.tar $D/a-1.tar"

# ---- usage ----------------------------------------------------------------
expect_ok 'help' 'mim-data --help | grep -q "^usage: mim-data"'
expect_fail 'size 0' 2 'mim-data -s 0 $A'
expect_fail 'scale lo > hi' 2 'mim-data --scale 0.9,0.5 $A'
expect_fail 'box with 3 values' 2 'mim-data --box 1,2,3 $A'
expect_fail 'box with eval' 2 'mim-data --box 0,0,8,8 --eval $A'
expect_fail 'split-by nonsense' 2 'mim-data --split-by rows $A'
expect_fail 'out without %d' 2 'mim-data --out "$T/x.tar" $A'
expect_fail 'keep-aspect without out' 2 'mim-data --keep-aspect $A'
expect_fail 'idx without out' 2 'mim-data --idx "$D/img.idx.gz"'
expect_fail 'unknown option' 2 'mim-data --bogus $A'
expect_fail 'shard index >= count' 2 'mim-data --shard-index 2 --shard-count 2 $A'
expect_fail 'stdin twice over' 2 'mim-data --epochs 2 - < "$D/a-0.tar"'
expect_fail 'flip probability 2' 2 'mim-data --flip 2 $A'
expect_fail 'std 0' 2 'mim-data --std 0 $A'
expect_fail 'missing input' 1 'mim-data "$D/nonexistent.tar"'

# ---- frames ------------------------------------------------------------------
expect_ok 'batches of 4 from two shards' 'mim-data -q -b 4 -s 32 --mean 0 --std 1 $A > "$T/f1"'
check 'shapes, labels, keys, batch index, pixels k/255' '$PY - "$T/f1" <<PYEOF
import sys, json, numpy as np, st
fr = list(st.read_frames(open(sys.argv[1], "rb")))
assert [f[0]["image"].shape for f in fr] == [(4,3,32,32), (4,3,32,32), (2,3,32,32)], [f[0]["image"].shape for f in fr]
keys = sum([json.loads(f[1]["mim.keys"]) for f in fr], [])
assert keys == ["s%03d" % i for i in range(10)], keys
lab = np.concatenate([f[0]["label"] for f in fr])
assert lab.dtype == np.int64 and list(lab) == [i % 3 for i in range(10)], lab
assert [f[1]["mim.batch"] for f in fr] == ["0", "1", "2"]
x = np.concatenate([f[0]["image"] for f in fr])
assert x.min() >= 0 and x.max() <= 1 and np.allclose(x * 255, np.round(x * 255), atol=1e-4)
g = x[3]  # the grey photo: three equal channels
assert np.array_equal(g[0], g[1]) and np.array_equal(g[1], g[2])
PYEOF'
expect_ok 'two epochs, drop-last' 'mim-data -q -b 4 -s 16 -e 2 --drop-last $A > "$T/f2"'
check 'four full batches, epochs 0,0,1,1, running batch index' '$PY - "$T/f2" <<PYEOF
import sys, st
fr = list(st.read_frames(open(sys.argv[1], "rb")))
assert [f[0]["image"].shape[0] for f in fr] == [4, 4, 4, 4]
assert [f[1]["mim.epoch"] for f in fr] == ["0", "0", "1", "1"] and [f[1]["mim.batch"] for f in fr] == ["0", "1", "2", "3"]
PYEOF'
expect_ok 'ImageNet normalisation by default, HF 0.5/0.5' 'mim-data -q -s 16 $A > "$T/n1" && mim-data -q -s 16 --mean 0.5 --std 0.5 $A > "$T/n2"'
check 'value ranges' '$PY - "$T/n1" "$T/n2" <<PYEOF
import sys, numpy as np, st
a = np.concatenate([f[0]["image"] for f in st.read_frames(open(sys.argv[1], "rb"))])
b = np.concatenate([f[0]["image"] for f in st.read_frames(open(sys.argv[2], "rb"))])
assert a.min() >= -2.12 and a.max() <= 2.65 and a.min() < -1.5, (a.min(), a.max())
assert b.min() >= -1 and b.max() <= 1
# same crops: b = (x-0.5)/0.5 and a = (x-mean)/std describe the same pixels
x = b * 0.5 + 0.5
m = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]; s = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
assert np.abs((x - m) / s - a).max() < 1e-4
PYEOF'

# ---- determinism, order, ranks ---------------------------------------------
mim-data -q -s 24 -b 3 -e 2 --shuffle 4 --seed 7 -j 1 $A > "$T/s1"
mim-data -q -s 24 -b 3 -e 2 --shuffle 4 --seed 7 -j 2 $A > "$T/s2"
mim-data -q -s 24 -b 3 -e 2 --shuffle 4 --seed 8 -j 2 $A > "$T/s3"
check 'same seed, same bytes with 1 and 2 threads' 'test -s "$T/s1" && cmp -s "$T/s1" "$T/s2"'
check 'another seed, other bytes' '! cmp -s "$T/s1" "$T/s3"'
check 'shuffled epochs are permutations in another order' '$PY - "$T/s1" <<PYEOF
import sys, json, st
fr = list(st.read_frames(open(sys.argv[1], "rb")))
e = [[], []]
for t, m in fr: e[int(m["mim.epoch"])] += json.loads(m["mim.keys"])
want = ["s%03d" % i for i in range(10)]
assert sorted(e[0]) == want and sorted(e[1]) == want and e[0] != want and e[0] != e[1], e
PYEOF'
for by in sample shard; do
	for r in 0 1 2; do mim-data -q --allow-empty -s 8 --shard-index $r --shard-count 3 --split-by $by $A > "$T/r$r"; done
	check "3 ranks by $by: disjoint, together all" '$PY - "$T/r0" "$T/r1" "$T/r2" <<PYEOF
import sys, json, st
ks = [sum([json.loads(m["mim.keys"]) for t, m in st.read_frames(open(p, "rb"))], []) for p in sys.argv[1:]]
allk = sum(ks, [])
assert sorted(allk) == ["s%03d" % i for i in range(10)], ks
PYEOF'
done

# ---- inputs: compressed, stdin, folders -------------------------------------
mim-data -q -s 16 --seed 3 $A > "$T/p"
gzip -c "$D/a-0.tar" > "$D/a-0.tar.gz"
xz -c "$D/a-1.tar" > "$D/a-1.tar.xz"
expect_ok 'tar.gz and tar.xz' 'mim-data -q -s 16 --seed 3 "$D/a-0.tar.gz" "$D/a-1.tar.xz" > "$T/pz" && cmp "$T/p" "$T/pz"'
if command -v zstd >/dev/null; then
	zstd -q -c "$D/a-0.tar" > "$D/a-0.tar.zst"
	expect_ok 'tar.zst' 'mim-data -q -s 16 --seed 3 "$D/a-0.tar.zst" "$D/a-1.tar" > "$T/pzst" && cmp "$T/p" "$T/pzst"'
else
	echo "skip - tar.zst: no zstd"
fi
expect_ok 'concatenated shards on stdin' 'cat $A | mim-data -q -s 16 --seed 3 > "$T/pin" && cmp "$T/p" "$T/pin"'
expect_ok 'folder input' 'mim-data -q -s 16 -b 10 "$D/folder" > "$T/fo"'
check 'ImageFolder: keys and class labels' '$PY - "$T/fo" <<PYEOF
import sys, json, st
(t, m), = list(st.read_frames(open(sys.argv[1], "rb")))
keys = json.loads(m["mim.keys"])
assert keys == sorted("class%d/p%02d" % (i % 2, i) for i in range(10)), keys
assert list(t["label"]) == [int(k[5]) for k in keys]
PYEOF'

# ---- bad input -----------------------------------------------------------------
expect_ok 'bad members and a truncated tail: exit 0' 'mim-data -s 16 -b 64 "$D/bad.tar" "$D/a-0.tar" > "$T/b" 2> "$T/berr"'
check 'every good image comes out' '$PY - "$T/b" <<PYEOF
import sys, json, st
(t, m), = list(st.read_frames(open(sys.argv[1], "rb")))
assert json.loads(m["mim.keys"]) == ["g1", "g2"] + ["s%03d" % i for i in range(5)], m["mim.keys"]
PYEOF'
check 'warnings name shard and member' 'grep -q "bad.tar: corrupt.jpg: " "$T/berr" && grep -q "bad.tar: note: no image" "$T/berr" && grep -q "bad.tar: truncated" "$T/berr"'
check 'counts at the end' 'grep -q "7 images in 1 batch.*skipped 1 bad image, 1 sample without image, 0 damaged members, 1 bad shard" "$T/berr"'
expect_ok 'mangled JPEGs (cut, flipped, zeroed): exit 0' 'mim-data -j 2 -s 24 -b 1 "$D/mangled.tar" > "$T/mg" 2> "$T/mgerr"'
check 'mangled JPEGs: every frame readable, every member an image or a warning, the 4 whole ones out' '$PY - "$T/mg" "$T/mgerr" <<PYEOF
import json, re, sys, st
frames = list(st.read_frames(open(sys.argv[1], "rb")))
keys = sum((json.loads(m["mim.keys"]) for _, m in frames), [])
err = open(sys.argv[2]).read()
n, skipped = map(int, re.search(r"(\d+) images? in .* skipped (\d+) bad image", err).groups())
warned = len(re.findall(r"mangled.tar: k\d\w*\.jpg: ", err))
assert len(frames) == n and n + skipped == 4 * 14 and warned == skipped, (len(frames), n, skipped, warned)
assert all("k%d" % k in keys for k in range(4)), keys
assert all(t["image"].shape == (1, 3, 24, 24) for t, _ in frames)
print("%d decoded, %d refused" % (n, skipped), file=sys.stderr)
PYEOF'
sed 's/^/#   /' "$T/.err"
expect_fail 'strict: the first bad member is fatal' 1 'mim-data --strict -s 16 -b 64 "$D/bad.tar" "$D/a-0.tar"'
expect_fail 'without end and no image at all: an error' 1 'mim-data -e 0 --ext png "$D/a-0.tar" --ext gif'
mkdir -p "$T/empty" "$T/textonly"
echo "not an image" > "$T/textonly/a.txt"
head -c 4096 /dev/urandom > "$T/garbage.tar"
expect_fail 'an empty folder: no images is an error' 1 'mim-data -s 16 "$T/empty"'
check 'an empty folder: the message says so' 'mim-data -q -s 16 "$T/empty" 2>&1 | grep -q "^mim-data: no images: the input holds no samples (--allow-empty accepts that)$"'
check 'a glob that matched nothing, a folder without images, garbage: exit 1, "no images"' \
	'! mim-data -s 16 "$T/empty/*.tar" 2> /dev/null &&
	mim-data -s 16 "$T/textonly" 2>&1 | grep -q "no images: none of the input could be decoded" &&
	head -c 4096 /dev/urandom | mim-data -s 16 2>&1 | grep -q "no images: none of the input could be decoded" &&
	mim-data -s 16 "$T/garbage.tar" 2>&1 | grep -q "no images: none"; test $? = 0'
check 'images that all fail to decode: exit 1' '! mim-data -s 16 --ext txt "$D/a-0.tar" > /dev/null 2>&1'
check '--allow-empty: exit 0 and no frames, as before' \
	'mim-data --allow-empty -s 16 "$T/empty" "$T/textonly" "$T/garbage.tar" > "$T/ae" && ! test -s "$T/ae"'
expect_ok 'a closed pipe ends a run without end quietly' '(mim-data -q -s 16 -e 0 $A; echo $? > "$T/st") | head -c 5000 > /dev/null; test "$(cat "$T/st")" = 0'

# ---- parity with torchvision (committed arrays, real photos) ----------------
if [ -d /usr/share/wallpapers ]; then
	# a script that dies (not just a failed case) must not pass silently
	$PY "$REF/data_ref.py" check "$REF/data_parity.npz" || echo "not ok - parity check exited with $?"
	$PY "$REF/data_ref.py" check "$REF/data_parity.npz" --shrink-min 0 || echo "not ok - exact parity check exited with $?"
	$PY "$REF/data_ref.py" live 3 || echo "not ok - live parity check exited with $?"
	$PY "$REF/data_ref.py" cmyk 3 || echo "not ok - CMYK parity check exited with $?"
	$PY "$REF/data_ref.py" restart 3 || echo "not ok - restart-marker parity check exited with $?"
	$PY "$REF/data_ref.py" draft 3 || echo "not ok - draft parity check exited with $?"
else
	echo "skip - parity: plasma-workspace-wallpapers not installed"
fi

# ---- crop statistics over many draws ------------------------------------------
expect_ok 'print boxes over 60 epochs' 'mim-data -s 8 -b 64 -e 60 --print-boxes $A 2> "$T/boxes" > /dev/null'
expect_ok 'torchvision boxes for the same sizes' '$PY "$REF/data_ref.py" rrc 600 1 $(grep " box " "$T/boxes" | head -10 | awk "{print \$4\"x\"\$5}") > "$T/tvboxes"'
check 'areas, aspects, flips in range and distributed as torchvision' '$PY - "$T/boxes" "$T/tvboxes" <<PYEOF
import sys, numpy as np
b = np.array([[float(v) for v in l.split()[3:10]] for l in open(sys.argv[1]) if " box " in l])
W, H, x, y, w, h, f = b[:, 0], b[:, 1], b[:, 2], b[:, 3], b[:, 4], b[:, 5], b[:, 6]
assert len(b) == 600 and (x >= 0).all() and (x + w <= W).all() and (y + h <= H).all()
area = w * h / (W * H)
# bounds up to the rounding of w and h to whole pixels
amax = (w + .5) * (h + .5) / (W * H); amin = (w - .5) * (h - .5) / (W * H)
assert (amax >= 0.67).all() and (amin <= 1).all(), area.min()
r = w / h; assert ((w + .5) / (h - .5) >= 0.75).all() and ((w - .5) / (h + .5) <= 4 / 3).all(), (r.min(), r.max())
assert abs(f.mean() - 0.5) < 4 * np.sqrt(0.25 / len(f)), f.mean()
t = np.loadtxt(sys.argv[2]); tw, th = t[:, 2], t[:, 3]
# the first 10 images, each 600 torchvision draws: same mean area and log aspect
sizes = b[:10, :2]
ta = (tw * th / np.repeat(sizes[:, 0] * sizes[:, 1], 600))
ma = np.mean([area[i::10].mean() for i in range(10)])
assert abs(ma - ta.mean()) < 0.01, (ma, ta.mean())
assert abs(np.log(r).mean() - np.log(tw / th).mean()) < 0.02, (np.log(r).mean(), np.log(tw / th).mean())
print("# mean area %.4f (torchvision %.4f), mean log aspect %+.4f (%+.4f), flips %.3f" % (ma, ta.mean(), np.log(r).mean(), np.log(tw / th).mean(), f.mean()), file=sys.stderr)
PYEOF'
check 'flip 0 and flip 1' 'mim-data -s 8 --flip 0 --print-boxes $A 2>&1 >/dev/null | grep " box " | awk "{s+=\$10} END {exit s != 0}" &&
	mim-data -s 8 --flip 1 --print-boxes $A 2>&1 >/dev/null | grep " box " | awk "{s+=\$10} END {exit s != 10}"'

# ---- eval transform ------------------------------------------------------------
check 'eval ignores the seed' 'mim-data -q --eval -s 32 --seed 1 $A > "$T/e1" && mim-data -q --eval -s 32 --seed 2 $A > "$T/e2" && cmp -s "$T/e1" "$T/e2"'

# ---- writing shards --------------------------------------------------------------
expect_ok 'preprocess to shards' 'mim-data -q --eval -s 32 --out "$T/p-%03d.tar" --per-shard 4 $A'
check 'three shards: processed images, labels and captions kept' '$PY - "$T" <<PYEOF
import io, sys, tarfile
from PIL import Image
names = []
for i in range(3):
    with tarfile.open("%s/p-%03d.tar" % (sys.argv[1], i)) as t:
        for m in t.getmembers():
            names.append(m.name)
            if m.name.endswith(".png"):
                assert Image.open(io.BytesIO(t.extractfile(m).read())).size == (32, 32)
            if m.name.endswith(".cls"):
                assert int(t.extractfile(m).read()) == int(m.name[1:4]) % 3
assert sorted(names) == sorted("s%03d.%s" % (i, e) for i in range(10) for e in ("png", "cls", "txt")), names
PYEOF'
expect_ok 'shards read back' 'mim-data -q --eval --crop-ratio 1 -s 32 "$T"/p-*.tar > "$T/rb"'
check 'read back: the same pixels as processing directly' '$PY - "$T/e1" "$T/rb" <<PYEOF
import sys, numpy as np, st
a = np.concatenate([f[0]["image"] for f in st.read_frames(open(sys.argv[1], "rb"))])
b = np.concatenate([f[0]["image"] for f in st.read_frames(open(sys.argv[2], "rb"))])
l = np.concatenate([f[0]["label"] for f in st.read_frames(open(sys.argv[2], "rb"))])
assert np.array_equal(a, b) and list(l) == [i % 3 for i in range(10)]
PYEOF'
# a write error names the shard and the reason: a file size limit (as a
# full disk, without needing one) makes write(2) fail with EFBIG
mkdir -p "$T/full"
expect_fail 'a shard that cannot be written: exit 1' 1 \
	'(trap "" XFSZ; ulimit -f 8; mim-data -q --eval -s 128 --out "$T/full/p-%03d.tar" $A)'
cp "$T/.err" "$T/full.err"
check 'the message names the shard and the reason; no partial shard left' \
	'grep -q "^mim-data: $T/full/p-000.tar: File too large$" "$T/full.err" && test -z "$(ls "$T/full")"'
if [ "$(id -u)" = 0 ] && mkdir -p "$T/tiny" && mount -t tmpfs -o size=64k tmpfs "$T/tiny" 2>/dev/null; then
	expect_fail 'a full disk: exit 1' 1 'mim-data -q --eval -s 128 --out "$T/tiny/p-%03d.tar" $A'
	cp "$T/.err" "$T/tiny.err"
	check 'a full disk: "No space left on device", naming the shard' \
		'grep -q "^mim-data: $T/tiny/p-00[0-9].tar: No space left on device$" "$T/tiny.err"'
	umount "$T/tiny"
else
	echo "skip - a full disk: cannot mount a small tmpfs"
fi
expect_ok 'keep aspect, JPEG, from a folder' 'mim-data -q --keep-aspect -s 40 --format jpg --out "$T/k-%d.tar" "$D/folder"'
check 'shorter side 40, class labels added' '$PY - "$T/k-0.tar" <<PYEOF
import io, sys, tarfile
from PIL import Image
with tarfile.open(sys.argv[1]) as t:
    ms = {m.name: t.extractfile(m).read() for m in t.getmembers()}
jp = [n for n in ms if n.endswith(".jpg")]
assert len(jp) == 10 and len(ms) == 20, sorted(ms)
for n in jp:
    assert min(Image.open(io.BytesIO(ms[n])).size) == 40
    assert int(ms[n[:-3] + "cls"]) == int(n[5])
PYEOF'
expect_ok 'idx to shards' 'mim-data -q --idx --out "$T/i-%06d.tar" "$D/img.idx.gz" "$D/lab.idx.gz"'
check 'idx: PNG pixels and labels' '$PY - "$T/i-000000.tar" <<PYEOF
import io, sys, tarfile, numpy as np
from PIL import Image
with tarfile.open(sys.argv[1]) as t:
    ms = {m.name: t.extractfile(m).read() for m in t.getmembers()}
assert sorted(ms) == ["00000%d.%s" % (i, e) for i in range(3) for e in ("cls", "png")], sorted(ms)
px = (np.arange(60) * 4).astype(np.uint8).reshape(3, 5, 4)
for i in range(3):
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(ms["00000%d.png" % i]))), px[i])
    assert int(ms["00000%d.cls" % i]) == 7 + i
PYEOF'
expect_fail 'idx: labels do not match' 1 'mim-data --idx --out "$T/j-%d.tar" "$D/img.idx.gz" "$D/img.idx.gz"'
FM=/usr/share/datasets/fashion-mnist
if [ -r $FM/t10k-images-idx3-ubyte.gz ] && [ -z "${MIM_SANITIZE:-}" ]; then
	expect_ok 'Fashion-MNIST test set to shards' 'mim-data -q --idx --per-shard 5000 --out "$T/fm-%d.tar" $FM/t10k-images-idx3-ubyte.gz $FM/t10k-labels-idx1-ubyte.gz'
	check 'Fashion-MNIST: 10000 samples, first image and label' '$PY - "$T" $FM <<PYEOF
import gzip, io, sys, tarfile, numpy as np
from PIL import Image
n = 0
for i in range(2):
    with tarfile.open("%s/fm-%d.tar" % (sys.argv[1], i)) as t:
        n += len(t.getmembers())
        if i == 0:
            png = t.extractfile("000000.png").read(); cls = int(t.extractfile("000000.cls").read())
img = np.frombuffer(gzip.open(sys.argv[2] + "/t10k-images-idx3-ubyte.gz").read()[16:16 + 784], np.uint8).reshape(28, 28)
lab = gzip.open(sys.argv[2] + "/t10k-labels-idx1-ubyte.gz").read()[8]
assert n == 20000 and np.array_equal(np.asarray(Image.open(io.BytesIO(png))), img) and cls == lab
PYEOF'
else
	echo "skip - Fashion-MNIST: not installed or sanitizer build"
fi
