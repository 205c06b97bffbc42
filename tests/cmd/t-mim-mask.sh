# t-mim-mask.sh -- mim-mask against the NumPy reference (tests/ref/mask_ref.py:
# the official MaskGenerator on np.random, a brute-force AvgDist), pass-through,
# determinism, --ckpt, --stats, the AvgDist table, and bad input.
. "$MIM_TOP/tests/lib.sh"
MR="$PY $REF/mask_ref.py"

# frames: mk OUT B H [W [FRAMES]] -- image F32 [B,3,H,W] with random values,
# label I64 [B], metadata mim.keys and mim.batch
mk() {
	$PY - "$@" <<'PYEOF'
import sys, numpy as np, st
out, B, H = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
W = int(sys.argv[4]) if len(sys.argv) > 4 else H
n = int(sys.argv[5]) if len(sys.argv) > 5 else 1
rs = np.random.RandomState(1)
with open(out, "wb") as f:
    for k in range(n):
        f.write(st.frame_bytes(
            {"image": rs.standard_normal((B, 3, H, W)).astype(np.float32),
             "label": np.arange(B, dtype=np.int64) + 10 * k},
            {"mim.keys": '["k%d"]' % k, "mim.batch": str(k)}))
PYEOF
}
mk "$T/a192" 2 192 192 3
mk "$T/a224" 1 224
mk "$T/b224" 3 224 224 2

# the acceptance vectors (reference/simmim.md §2.3)
expect_ok 'numpy seed 0, 192/32/4/0.6' 'mim-mask --rng numpy --seed 0 < "$T/a192" > "$T/o1"'
check 'first mask is 001001/011011/011111/001010/001111/111101, 1408 of 48x48' '$PY - "$T/o1" <<PYEOF
import sys, numpy as np, st
t, m = next(st.read_frames(open(sys.argv[1], "rb")))
k = t["mask"][0]
assert t["mask"].dtype == np.uint8 and t["mask"].shape == (2, 48, 48), t["mask"].shape
rows = "/".join("".join(str(v) for v in r) for r in k[::8, ::8])
assert rows == "001001/011011/011111/001010/001111/111101" and k.sum() == 1408, (rows, k.sum())
PYEOF'
expect_ok 'numpy seed 0, 224/32/16/0.6' 'mim-mask --rng numpy --seed 0 --model-patch 16 < "$T/a224" > "$T/o2"'
check '7x7 mask of §2.3, 120 of 14x14' '$PY - "$T/o2" <<PYEOF
import sys, st
t, m = next(st.read_frames(open(sys.argv[1], "rb")))
k = t["mask"][0]
rows = "/".join("".join(str(v) for v in r) for r in k[::2, ::2])
assert rows == "0010110/1101101/0111101/0100111/1111111/0010011/1000101" and k.sum() == 120, rows
PYEOF'

# the whole numpy stream, bit for bit, against the reference re-implementation
check 'random, 3 frames of 2: every mask equals the official generator' \
	'$MR check "$T/o1" --seed 0 | grep -q "^6 masks equal"'
expect_ok 'random 224/16/16/0.75 seed 5' 'mim-mask --rng numpy --seed 5 -m 16 -p 16 -r 0.75 < "$T/b224" > "$T/o3"'
check 'equal to the reference' '$MR check "$T/o3" --seed 5 --mask-patch 16 --model-patch 16 --ratio 0.75 | grep -q "^6 masks"'
expect_ok 'central, numpy' 'mim-mask --rng numpy --seed 2 -s central -m 8 -p 4 -r 0.3 < "$T/a192" > "$T/o4"'
check 'central equals the reference' '$MR check "$T/o4" --seed 2 --strategy central --mask-patch 8 --ratio 0.3 | grep -q "^6 masks"'
expect_ok 'block, numpy' 'mim-mask --rng numpy --seed 4 -s block -m 16 -p 16 -r 0.4 < "$T/b224" > "$T/o5"'
check 'block (BEiT) equals the reference' '$MR check "$T/o5" --seed 4 --strategy block --mask-patch 16 --model-patch 16 --ratio 0.4 | grep -q "^6 masks"'
expect_ok 'block with other parameters' 'mim-mask --rng numpy --seed 4 -s block -m 8 -r 0.7 --block-min 4 --block-max 30 --block-aspect 0.5 < "$T/a192" > "$T/o6"'
check 'equal to the reference' '$MR check "$T/o6" --seed 4 --strategy block --mask-patch 8 --ratio 0.7 --block-min 4 --block-max 30 --block-aspect 0.5 | grep -q "^6 masks"'

# the official golden batches (np.random.seed(7), img 32, mask patch 8)
G=$GOLDEN
for arch in vit:4 swin:2; do
	name=${arch%:*} p=${arch#*:}
	f="$G/micro-$name.s7.b2.safetensors"
	if [ -r "$f" ]; then
		check "golden micro-$name: input/mask reproduced" '$PY - "$f" "$p" <<PYEOF
import sys, subprocess, numpy as np, st
t, m = st.load(sys.argv[1])
fr = st.frame_bytes({"image": t["input/images"]})
out = subprocess.run(["mim-mask", "--rng", "numpy", "--seed", m["seed"], "-m", "8", "-p", sys.argv[2]],
                     input=fr, capture_output=True, check=True).stdout
got = st.read_frames(__import__("io").BytesIO(out)).__next__()[0]["mask"]
assert np.array_equal(got, t["input/mask"]), (got, t["input/mask"])
PYEOF'
	else
		echo "skip - golden micro-$name not found in $G"
	fi
done

# pass-through, counts, alignment
expect_ok 'default rng' 'mim-mask < "$T/a192" > "$T/d1"'
check 'everything but mask passes through unchanged; counts exact and aligned' '$PY - "$T/a192" "$T/d1" <<PYEOF
import sys, numpy as np, st
A = list(st.read_frames(open(sys.argv[1], "rb"))); B = list(st.read_frames(open(sys.argv[2], "rb")))
assert len(A) == len(B) == 3
for (ta, ma), (tb, mb) in zip(A, B):
    assert ma == mb and set(tb) == set(ta) | {"mask"}, (ma, mb, list(tb))
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and np.array_equal(ta[k], tb[k]), k
    m = tb["mask"]
    assert m.dtype == np.uint8 and m.shape == (2, 48, 48) and set(np.unique(m)) <= {0, 1}
    for x in m:
        c = x.reshape(6, 8, 6, 8)
        assert (c == c[:, :1, :, :1]).all() and x.sum() == 22 * 64
PYEOF'
check 'default seed is 0: same bytes as --seed 0' 'mim-mask --seed 0 < "$T/a192" | cmp -s - "$T/d1"'
check 'another seed gives other masks' '! mim-mask --seed 1 < "$T/a192" | cmp -s - "$T/d1"'
check 'file argument same as stdin' 'mim-mask "$T/a192" | cmp -s - "$T/d1"'
mk "$T/c6" 6 192
mk "$T/c2" 2 192 192 3
check 'mim rng: mask i depends on seed and i only, not on batching' '$PY - <<PYEOF
import subprocess, numpy as np, st, io
def masks(path, *a):
    out = subprocess.run(["mim-mask", *a, "$T/" + path], capture_output=True, check=True).stdout
    return np.concatenate([t["mask"] for t, m in st.read_frames(io.BytesIO(out))])
for s in ("block", "central", "random"):
    a, b = masks("c6", "-s", s, "-m", "16"), masks("c2", "-s", s, "-m", "16")
    assert a.shape == (6, 48, 48) and np.array_equal(a, b), s
PYEOF'
mk "$T/r" 1 96 160
expect_ok 'non-square images' 'mim-mask -m 32 -p 16 < "$T/r" > "$T/ro"'
check 'mask [1,6,10], 60% of 15 cells -> 9' '$PY -c "
import sys, st; t, m = st.load(sys.argv[1]); k = t[\"mask\"]
assert k.shape == (1, 6, 10) and k.sum() == 9 * 4, (k.shape, k.sum())" "$T/ro"'
mim-mask --seed 3 < "$T/a192" > "$T/d3"
check 'an existing mask is replaced' 'mim-mask --seed 3 < "$T/d1" | cmp -s - "$T/d3"'
check 'empty stream gives empty output' 'mim-mask < /dev/null | cmp -s - /dev/null'

# --ckpt: the model patch from mim.config
$PY - "$T/vit.safetensors" "$T/noconf.safetensors" "$T/badconf.safetensors" <<'PYEOF'
import sys, numpy as np, st
st.save(sys.argv[1], {"encoder.mask_token": np.zeros((1, 1, 8), np.float32)},
        {"mim.config": '{"model": "vit", "img_size": 224, "patch_size": 16}'})
st.save(sys.argv[2], {"x": np.zeros(1, np.float32)})
st.save(sys.argv[3], {"x": np.zeros(1, np.float32)}, {"mim.config": '{"model": "resnet", "patch_size": 16}'})
PYEOF
expect_ok '--ckpt' 'mim-mask --rng numpy --ckpt "$T/vit.safetensors" < "$T/a224" > "$T/k1"'
check '--ckpt gives the ViT mask (patch 16)' 'cmp -s "$T/k1" "$T/o2"'
expect_fail '--ckpt without mim.config' 1 'mim-mask --ckpt "$T/noconf.safetensors" < "$T/a224"'
expect_fail '--ckpt with a bad mim.config' 1 'mim-mask --ckpt "$T/badconf.safetensors" < "$T/a224"'
expect_fail '--ckpt missing file' 1 'mim-mask --ckpt "$T/nonexistent" < "$T/a224"'
expect_fail '--ckpt and --model-patch' 2 'mim-mask --ckpt "$T/vit.safetensors" -p 16 < "$T/a224"'

# --stats: masks, masked fraction, AvgDist against brute force on the same masks
expect_ok '--stats' 'mim-mask --stats -s block -m 16 -r 0.5 < "$T/a192" > "$T/s1" 2> "$T/s1.err"'
check 'stats line and values match brute force' '$PY - "$T/s1" "$T/s1.err" <<PYEOF
import sys, re, numpy as np, st, mask_ref
ms = np.concatenate([t["mask"] for t, m in st.read_frames(open(sys.argv[1], "rb"))])
line = open(sys.argv[2]).read()
g = re.match(r"mim-mask: <stdin>: (\d+) masks, masked fraction ([0-9.]+), AvgDist ([0-9.]+) px\n\Z", line)
assert g, line
cells = ms[:, ::4, ::4]   # mask patch 16 = 4 tokens of 4 px
assert np.array_equal(mask_ref.upsample(cells.transpose(1, 2, 0), 4).transpose(2, 0, 1), ms)
d = np.mean([mask_ref.avgdist(c, 16) for c in cells])
assert int(g[1]) == 6 and abs(float(g[2]) - ms.mean()) < 6e-5, (g[2], ms.mean())
assert abs(float(g[3]) - d) < 6e-4, (g[3], d)
PYEOF'
check '--stats output is the same stream' 'mim-mask -s block -m 16 -r 0.5 < "$T/a192" | cmp -s - "$T/s1"'
mk "$T/tiny" 2 64
check '--stats: masks without a visible pixel are left out and counted' \
	'mim-mask --stats -m 32 -r 0.9 < "$T/tiny" 2>&1 >/dev/null | grep -q "AvgDist undefined"'

# the AvgDist table: numpy masks against brute force on the same masks
expect_ok 'table with numpy masks' 'mim-mask --avgdist-table --rng numpy --samples 4 -m 8,32 -r 0.3,0.6,0.9 > "$T/t1"'
expect_ok 'reference table' '$MR table --samples 4 --mask-patch 8,32 --ratio 0.3,0.6,0.9 > "$T/t2"'
check 'every entry equals the brute-force mean of the same masks' '$PY - "$T/t1" "$T/t2" <<PYEOF
import sys
L = open(sys.argv[1]).read().split("\n")
assert L[1].split() == ["ratio", "mask", "8", "mask", "32"], L[1]
got = {}
for l in L[2:5]:
    r, a, b = l.split(); got[8, float(r)] = float(a); got[32, float(r)] = float(b)
n = 0
for l in open(sys.argv[2]):
    m, r, v, k = l.split()
    assert abs(got[int(m), float(r)] - float(v)) <= 5.1e-4, (m, r, got[int(m), float(r)], v)
    n += 1
assert n == 6
PYEOF'
# the committed table in the man page: the documented command reproduces an
# entry, and a few entries agree with brute force on independent masks
MAN="$MIM_TOP/man/mim-mask.1"
cell() { awk -v r="$1" -v c="$2" '/^ratio +mask 4 / {t=1; next} t && $1 == r {print $(c+1); exit}' "$MAN"; }
if [ "${MIM_SANITIZE:-0}" = 1 ]; then
	echo "skip - man page table entry regeneration (slow under sanitizers)"
else
	check 'man page entry (mask 32, ratio 0.6) regenerated by the documented command' \
		'test "$(mim-mask --avgdist-table --samples 10000 -m 32 -r 0.6 | awk "NR==3 {print \$2}")" = "$(cell 0.6 4)"'
fi
check 'man page entries agree with brute force on 20 to 100 independent numpy masks (4 standard errors)' '$PY - "$(cell 0.6 4)" "$(cell 0.4 3)" "$(cell 0.8 2)" <<PYEOF
import sys, math, numpy as np, mask_ref
for (m, r, n), want in zip([(32, 0.6, 100), (16, 0.4, 30), (8, 0.8, 20)], map(float, sys.argv[1:])):
    np.random.seed(100 + m)
    v = [mask_ref.avgdist(mask_ref.MaskGenerator(192 // m, 1, 1, r).cells(), m) for _ in range(n)]
    se = np.std(v, ddof=1) / math.sqrt(len(v))
    assert abs(np.mean(v) - want) < 4 * se, (m, r, np.mean(v), se, want)
PYEOF'

# errors: exit 1 for bad input, 2 for bad flags; nothing on stdout
$PY -c "
import sys, numpy as np, st
open(sys.argv[1], 'wb').write(st.frame_bytes({'label': np.zeros(2, np.int64)}))
open(sys.argv[2], 'wb').write(st.frame_bytes({'image': np.zeros((1, 3, 190, 192), np.float32)}))
open(sys.argv[3], 'wb').write(st.frame_bytes({'image': np.zeros((1, 3, 64, 64), np.float64)}))
open(sys.argv[4], 'wb').write(st.frame_bytes({'image': np.zeros((1, 1, 64, 64), np.float32)}))
" "$T/noimg" "$T/odd" "$T/f64" "$T/gray"
expect_fail 'frame without image' 1 'mim-mask < "$T/noimg"'
check 'message names the frame and the tensor' 'mim-mask < "$T/noimg" 2>&1 | grep -q "^mim-mask: <stdin>: frame 0: no tensor .image.$"'
expect_fail 'size not divisible by the mask patch' 1 'mim-mask < "$T/odd"'
check 'message says so' 'mim-mask < "$T/odd" 2>&1 | grep -q "190x192 is not divisible by the mask patch 32"'
expect_fail 'image not F32' 1 'mim-mask < "$T/f64"'
expect_fail 'image not 3 channels' 1 'mim-mask < "$T/gray"'
cat "$T/a192" "$T/noimg" > "$T/mixed"
check 'bad frame 3: the first 3 frames are written whole, then exit 1' \
	'! mim-mask < "$T/mixed" > "$T/mo" 2>/dev/null && test "$($PY -c "import st,sys; print(len(list(st.read_frames(open(sys.argv[1], \"rb\")))))" "$T/mo")" = 3'
head -c 1000 "$T/a192" > "$T/trunc"
expect_fail 'truncated stream' 1 'mim-mask < "$T/trunc"'
expect_fail 'missing file' 1 'mim-mask "$T/nonexistent"'
expect_fail 'ratio 0' 2 'mim-mask -r 0 < "$T/a192"'
expect_fail 'ratio 1' 2 'mim-mask -r 1 < "$T/a192"'
expect_fail 'ratio 1.5' 2 'mim-mask --ratio 1.5 < "$T/a192"'
expect_fail 'ratio not a number' 2 'mim-mask -r abc < "$T/a192"'
expect_fail 'mask patch not a multiple of the model patch' 2 'mim-mask -m 24 -p 16 < "$T/a192"'
expect_fail 'mask patch 0' 2 'mim-mask -m 0 < "$T/a192"'
expect_fail 'unknown strategy' 2 'mim-mask -s chequer < "$T/a192"'
expect_fail 'unknown rng' 2 'mim-mask --rng torch < "$T/a192"'
expect_fail 'numpy seed over 2^32-1' 2 'mim-mask --rng numpy --seed 4294967296 < "$T/a192"'
expect_fail 'negative seed' 2 'mim-mask --seed -1 < "$T/a192"'
expect_fail 'block aspect over 1' 2 'mim-mask --block-aspect 2 < "$T/a192"'
expect_fail 'two input files' 2 'mim-mask "$T/a192" "$T/a192"'
expect_fail 'unknown flag' 2 'mim-mask --frobnicate'
expect_fail 'table: patch does not divide the size' 2 'mim-mask --avgdist-table -m 7'
expect_fail 'table: ratio list with a bad value' 2 'mim-mask --avgdist-table -r 0.5,1'
expect_fail 'table: zero samples' 2 'mim-mask --avgdist-table --samples 0'
expect_fail '--samples without --avgdist-table' 2 'mim-mask --samples 10 < "$T/a192"'
expect_fail 'table reads no input' 2 'mim-mask --avgdist-table "$T/a192"'
check 'exit 0 quietly when the reader goes away' '{ mim-mask < "$T/b224" 2>"$T/pe"; echo $? > "$T/rc"; } | head -c 100 > /dev/null; test "$(cat "$T/rc")" = 0 && ! test -s "$T/pe"'
check 'help' 'mim-mask --help | grep -q "^usage: mim-mask"'
check 'man page lints clean' 'test -z "$(mandoc -Tlint -Wwarning "$MAN" 2>&1)"'
check 'every long option of --help is in the man page' '$PY - "$MAN" <<PYEOF
import re, subprocess, sys
man = open(sys.argv[1]).read().replace("\\\\-", "-")
opts = set(re.findall(r"--[a-z-]+", subprocess.run(["mim-mask", "--help"], capture_output=True, text=True).stdout))
missing = [o for o in opts if o not in man]
assert len(opts) > 10 and not missing, missing
PYEOF'
