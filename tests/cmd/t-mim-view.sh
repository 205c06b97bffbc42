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

# ---- any fields of a log; the confusion matrix of mim-eval --json ---------------
$PY - "$T" <<'PYEOF'
import sys, json, numpy as np, st
d = sys.argv[1]
lines = []
for s in range(1, 41):
    lines.append({"step": s, "loss": 2.0 / s, "acc1": 10 + s, "lr": 1e-3})
    if s % 10 == 0:
        lines.append({"step": s, "val_loss": 1.5 / s, "val_acc1": 20 + s, "val_acc5": 60 + s / 2})
lines.append({"note": "no step here"})
open(d + "/ft.log", "w").write("".join(json.dumps(l) + "\n" for l in lines))
rs = np.random.RandomState(2)
y = np.repeat(np.arange(10), 20)
lg = rs.randn(200, 10).astype(np.float32)
lg[np.arange(200), y] += np.where(y == 3, 100, 1.0)    # class 3 always right
st.save(d + "/pred.mim", {"logits": lg, "label": y})
open(d + "/names", "w").write("".join("class-%d\n" % k for k in range(10)))
json.dump({"confusion": [[1, 2], [3]]}, open(d + "/ragged.json", "w"))
json.dump({"confusion": [[1, 2], [3, 4]], "names": ["a"]}, open(d + "/badnames.json", "w"))
json.dump({"acc1": 3}, open(d + "/nocm.json", "w"))
PYEOF
expect_ok 'fields of a fine-tuning log' 'mim-view --curve "$T/ft.log" --field loss,val_acc1 -o "$T/f.svg"'
check 'a panel per field, its points where the field is, higher values higher up' '$PY - "$T" <<PYEOF
import sys, re, json, numpy as np
d = sys.argv[1]
svg = open(d + "/f.svg").read()
lines = [json.loads(l) for l in open(d + "/ft.log")]
for f in ("loss", "val_acc1"):
    pts = re.search("<polyline class=\"%s\"[^>]* points=\"([^\"]*)\"" % f, svg).group(1).split()
    xy = np.array([[float(v) for v in p.split(",")] for p in pts])
    want = [(l["step"], l[f]) for l in lines if f in l]
    assert len(xy) == len(want), (f, len(xy), len(want))
    # pixels are an affine map of the data: x increasing with step, y decreasing with value
    w = np.array(want, float)
    assert np.corrcoef(xy[:, 0], w[:, 0])[0, 1] > 0.9999 and np.corrcoef(xy[:, 1], w[:, 1])[0, 1] < -0.9999
    assert "%s: first %g, last %g, %d points" % (f, w[0, 1], w[-1, 1], len(w)) in svg
assert "polyline class=\"acc1\"" not in svg
PYEOF'
expect_ok 'fields as PNG, along another x' 'mim-view --curve "$T/ft.log" --field val_acc5 --x val_acc1 -o "$T/f.png" && test -s "$T/f.png"'
expect_fail 'a field no line has' 1 'mim-view --curve "$T/ft.log" --field loss,val_acc9 -o "$T/x.svg"'
cp "$T/.err" "$T/e-field"
check 'the message names the field' 'grep -q "no line with numbers \"step\" and \"val_acc9\"" "$T/e-field"'
expect_fail 'a line that is not an object' 1 'mim-view --curve "$T/badlog" --field loss -o "$T/x.svg"'
expect_fail '--field without --curve' 2 'mim-view --field loss -o "$T/x.svg"'
expect_fail '--x without --field' 2 'mim-view --curve "$T/ft.log" --x epoch -o "$T/x.svg"'

expect_ok 'an evaluation with names' 'mim-eval --json --classes-file "$T/names" "$T/pred.mim" > "$T/eval.json"'
expect_ok 'its confusion matrix as SVG' 'mim-view --confusion "$T/eval.json" -o "$T/cm.svg" --title "probe"'
check 'K*K cells shaded by the row share, names on both axes' '$PY - "$T" <<PYEOF
import sys, re, json
d = sys.argv[1]
svg = open(d + "/cm.svg").read(); ev = json.load(open(d + "/eval.json"))
cells = re.findall(r"<rect class=\"cell\" x=\"(\d+)\" y=\"(\d+)\"[^>]*fill=\"#(\w+)\"[^>]*><title>(\d+)</title>", svg)
assert len(cells) == 100, len(cells)
xs = sorted({int(c[0]) for c in cells}); ys = sorted({int(c[1]) for c in cells})
cm = ev["confusion"]
for x, y, fill, n in cells:
    i, j = ys.index(int(y)), xs.index(int(x))
    assert int(n) == cm[i][j]
    share = cm[i][j] / sum(cm[i])
    red = int(fill[:2], 16)
    assert abs(red - (247 - share * 239)) <= 1, (i, j, fill, share)
assert cm[3][3] == 20 and any(c[3] == "20" and c[2] == "08306b" for c in cells)  # the darkest
assert svg.count(">class-7<") == 2 and "probe" in svg and "of 200 samples" in svg
PYEOF'
expect_ok 'as PNG' 'mim-view --confusion "$T/eval.json" -o "$T/cm.png"'
check 'the PNG is a picture of the matrix' '$PY -c "
from PIL import Image; import sys
w, h = Image.open(sys.argv[1]).size; assert w > 560 and h > 560, (w, h)" "$T/cm.png"'
expect_fail 'no confusion in the JSON' 1 'mim-view --confusion "$T/nocm.json" -o "$T/x.svg"'
expect_fail 'a ragged matrix' 1 'mim-view --confusion "$T/ragged.json" -o "$T/x.svg"'
expect_fail 'names of the wrong count' 1 'mim-view --confusion "$T/badnames.json" -o "$T/x.svg"'
expect_fail 'not JSON' 1 'mim-view --confusion "$T/log" -o "$T/x.svg"'
check 'no picture left by the failures' 'test ! -e "$T/x.svg"'
expect_fail '--confusion and --curve together' 2 'mim-view --confusion "$T/eval.json" --curve "$T/log" -o "$T/x.svg"'
