# t-mask-dtypes.sh -- one mask check for every tool (cli_mask): a mask of
# I64 (as PyTorch writes it), I8, I32 or BOOL gives what the U8 mask gives
# through mim-encode | mim-head | mim-loss, mim-view and mim-step; a float
# mask is refused by each with the same message.
. "$MIM_TOP/tests/lib.sh"
mim-ckpt init --preset micro-vit --seed 3 -o "$T/ck.st" || { notok 'mim-ckpt init'; exit 1; }
$PY "$REF/step_ref.py" data "$T/u8.mim" --patch 4 --frames 3 --seed 1
$PY - "$T" <<'PYEOF'
import sys, numpy as np, st
d = sys.argv[1]
fr = list(st.read_frames(open(d + "/u8.mim", "rb")))
assert fr[0][0]["mask"].dtype == np.uint8 and fr[0][0]["mask"].any()
for name, dt in (("i64", np.int64), ("i8", np.int8), ("i32", np.int32), ("bool", np.bool_),
                 ("f32", np.float32)):
    with open("%s/%s.mim" % (d, name), "wb") as f:
        for t, m in fr:
            u = dict(t)
            # I64: masked cells as 7, so "nonzero = masked" is what is tested
            u["mask"] = t["mask"].astype(dt) * (7 if name == "i64" else 1)
            f.write(st.frame_bytes(u, m))
PYEOF
pipeline() { mim-encode -c "$T/ck.st" "$T/$1.mim" | mim-head -c "$T/ck.st" | mim-loss -q > "$T/$1.out"; }
for k in u8 i64 i8 i32 bool; do
	expect_ok "$k: encode | head | loss" "pipeline $k"
	expect_ok "$k: mim-view" 'mim-view -c original,masked -o "$T/$k.png" "$T/$k.mim" && mim-view --masks -o "$T/$k.m.png" "$T/$k.mim"'
	cp "$T/ck.st" "$T/$k.st"
	expect_ok "$k: mim-step" 'mim-step -c "$T/$k.st" -n 3 --lr 1e-3 "$T/$k.mim"'
done
for k in i64 i8 i32 bool; do
	check "$k: latent, pred and loss = the U8 mask's, bit for bit" '$PY - "$T/u8.out" "$T/$k.out" <<PYEOF
import sys, numpy as np, st
a = list(st.read_frames(open(sys.argv[1], "rb"))); b = list(st.read_frames(open(sys.argv[2], "rb")))
assert len(a) == len(b) == 3
for (x, _), (y, _) in zip(a, b):
    for k in ("latent", "pred", "loss"):
        assert x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]), k
PYEOF'
	check "$k: mim-view draws the same pictures" 'cmp "$T/u8.png" "$T/$k.png" && cmp "$T/u8.m.png" "$T/$k.m.png"'
	check "$k: mim-step writes the same checkpoint" 'cmp "$T/u8.st" "$T/$k.st"'
done

# a float mask: refused by every stage, saying why
mim-encode -c "$T/ck.st" "$T/u8.mim" | mim-head -c "$T/ck.st" > "$T/u8.pred"
$PY - "$T/u8.pred" "$T/f32.pred" <<'PYEOF'
import sys, numpy as np, st
with open(sys.argv[2], "wb") as f:
    for t, m in st.read_frames(open(sys.argv[1], "rb")):
        f.write(st.frame_bytes(dict(t, mask=t["mask"].astype(np.float32)), m))
PYEOF
cp "$T/ck.st" "$T/f32.st"
expect_fail 'F32 mask: mim-encode refuses it' 1 'mim-encode -c "$T/ck.st" "$T/f32.mim"'
expect_fail 'F32 mask: mim-loss refuses it' 1 'mim-loss "$T/f32.pred"'
expect_fail 'F32 mask: mim-view refuses it' 1 'mim-view -o "$T/f.png" "$T/f32.pred"'
expect_fail 'F32 mask: mim-view --masks refuses it' 1 'mim-view --masks -o "$T/f.png" "$T/f32.mim"'
expect_fail 'F32 mask: mim-step refuses it' 1 'mim-step -c "$T/f32.st" -n 1 --lr 1e-3 "$T/f32.mim"'
want="tensor 'mask': dtype F32, want an integer or BOOL mask"
for c in 'mim-encode -c "$T/ck.st" "$T/f32.mim"' 'mim-loss "$T/f32.pred"' \
    'mim-view -o "$T/f.png" "$T/f32.pred"' 'mim-step -c "$T/f32.st" -n 1 --lr 1e-3 "$T/f32.mim"'; do
	check "F32 mask: ${c%% *} says \"$want\"" "$c 2>&1 | grep -q \"^mim-[a-z]*: .*frame 0: $want\""
done
check 'F32 mask: the checkpoint was not touched' 'cmp "$T/ck.st" "$T/f32.st"'
