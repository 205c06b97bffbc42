# t-mim-view.sh -- mim-view draws grids of the right size, tiles in the
# right places, masks, loss curves; bad input gives clear errors.
. "$MIM_TOP/tests/lib.sh"

$PY - "$T" <<'PYEOF'
import sys, numpy as np, st
d = sys.argv[1]
B, H, W = 3, 32, 32
rs = np.random.RandomState(1)
img = rs.randn(B, 3, H, W).astype(np.float32)
mask = (rs.rand(B, 4, 4) < 0.5).astype(np.uint8)
pred = rs.randn(B, 3, H, W).astype(np.float32)
st.save(d + "/full.mim", {"image": img, "mask": mask, "pred": pred})
st.save(d + "/nopred.mim", {"image": img, "mask": mask})
st.save(d + "/badmask.mim", {"image": img, "mask": mask[:, :3], "pred": pred})
st.save(d + "/badpred.mim", {"image": img, "mask": mask, "pred": pred[:, :, :16]})
np.save(d + "/img.npy", img); np.save(d + "/mask.npy", mask); np.save(d + "/pred.npy", pred)
open(d + "/log", "w").write("".join('{"step":%d,"loss":%g,"lr":1e-4}\n' % (i, 1 / (i + 1)) for i in range(50)))
PYEOF

expect_ok 'grid of a stream with image, mask, pred' 'mim-view -o "$T/g.png" --scale 3 --no-labels "$T/full.mim"'
# 4 columns of 96 px tiles with 4 px gaps, 3 rows, no label band
check 'grid size and tile contents' '$PY - "$T" <<PYEOF
import sys, numpy as np
from PIL import Image
d = sys.argv[1]
g = np.asarray(Image.open(d + "/g.png").convert("RGB")).astype(int)
assert g.shape == (4 + 3 * 100, 4 + 4 * 100, 3), g.shape
img, mask, pred = np.load(d + "/img.npy"), np.load(d + "/mask.npy"), np.load(d + "/pred.npy")
mean = np.array([0.485, 0.456, 0.406])[:, None, None]; std = np.array([0.229, 0.224, 0.225])[:, None, None]
u8 = lambda x: np.clip(np.floor((x * std + mean) * 255 + 0.5), 0, 255)
for b in range(3):
    tile = lambda c: g[4 + b * 100: 4 + b * 100 + 96: 3, 4 + c * 100: 4 + c * 100 + 96: 3].transpose(2, 0, 1)
    m = np.kron(mask[b], np.ones((8, 8), int))[None].astype(bool)
    assert np.abs(tile(0) - u8(img[b])).max() <= 1
    t1 = tile(1); assert (t1[:, m[0]] == 128).all() and np.abs(t1 - u8(img[b]))[np.broadcast_to(~m, t1.shape)].max() <= 1
    rec = np.where(m, pred[b], img[b]); assert np.abs(tile(2) - u8(rec)).max() <= 1
    assert np.abs(tile(3) - u8(pred[b])).max() <= 1
assert (g[:, 100:104] == 255).all()   # a gap between columns
PYEOF'
expect_ok 'labels and --max' 'mim-view -o "$T/l.png" --max 2 -c original,masked < "$T/full.mim"'
check 'label band, two rows of two tiles' '$PY -c "
from PIL import Image; import sys
w, h = Image.open(sys.argv[1]).size; assert (w, h) == (4 + 2 * 100, 22 + 4 + 2 * 100), (w, h)" "$T/l.png"'
expect_ok 'one picture per frame with --out' 'cat "$T/full.mim" "$T/full.mim" | mim-view --out "$T/dir" -c original'
check 'two pictures' 'test -f "$T/dir/frame-000000.png" && test -f "$T/dir/frame-000001.png"'
expect_ok 'masks alone' 'mim-view --masks --per-row 2 -o "$T/m.png" "$T/nopred.mim"'
check 'mask picture size (2 per row, 3 masks, 96 px)' '$PY -c "
from PIL import Image; import sys
assert Image.open(sys.argv[1]).size == (4 + 2 * 100, 4 + 2 * 100)" "$T/m.png"'
expect_ok 'columns without pred' 'mim-view -c original,masked -o "$T/np.png" "$T/nopred.mim"'
expect_ok 'loss curve as SVG' 'mim-view --curve "$T/log" -o "$T/c.svg"'
check 'SVG has the polyline' 'grep -q "<polyline" "$T/c.svg" && grep -q "50 steps" "$T/c.svg"'
expect_ok 'loss curve as PNG' 'mim-view --curve "$T/log" -o "$T/c.png" && test -s "$T/c.png"'

expect_fail 'no pred for the default columns' 1 'mim-view -o "$T/x.png" "$T/nopred.mim"'
check 'the message names the tensor' 'mim-view -o "$T/x.png" "$T/nopred.mim" 2>&1 | grep -q "no tensor .pred."'
expect_fail 'mask that does not fit the image' 1 'mim-view -o "$T/x.png" "$T/badmask.mim"'
expect_fail 'pred and image shapes disagree' 1 'mim-view -o "$T/x.png" "$T/badpred.mim"'
check 'no picture left behind by a failure' 'test ! -e "$T/x.png"'
printf 'not json\n' > "$T/badlog"
expect_fail 'bad log' 1 'mim-view --curve "$T/badlog" -o "$T/x.svg"'
# the log of a running job: its last line half written
{ cat "$T/log"; printf '{"step": 51, "lo'; } > "$T/growing"
expect_ok 'a log still being written: its complete lines' 'mim-view --curve "$T/growing" -o "$T/g.svg"'
check 'a log still being written: 50 steps plotted' 'grep -q "50 steps" "$T/g.svg"'
{ cat "$T/log"; printf '{"step": 51, "lo\n'; } > "$T/cutline"
expect_fail 'a malformed complete line is still an error' 1 'mim-view --curve "$T/cutline" -o "$T/x.svg"'
cp "$T/.err" "$T/cut.err"
check 'the message names the line' 'grep -q "cutline: line 51: not a JSON object" "$T/cut.err"'
expect_fail 'empty stream' 1 ': | mim-view -o "$T/x.png"'
expect_fail 'no output given' 2 'mim-view "$T/full.mim"'
expect_fail 'unknown column' 2 'mim-view -c nope -o "$T/x.png" "$T/full.mim"'
expect_fail 'bad --scale' 2 'mim-view --scale 0 -o "$T/x.png" "$T/full.mim"'
