# t-mim-ckpt-import.sh -- mim-ckpt import, export and diff: checkpoints
# written by PyTorch in the official SimMIM layout, the official
# pretrain->finetune conversion (scipy's interp2d), malformed files.
. "$MIM_TOP/tests/lib.sh"

B() { mim-ckpt "$@"; }

# ---- official-layout checkpoints, zip and legacy, for a ViT and a Swin --------
# weights moved away from their init (LN, biases, tables too), and an input
perturb() {	# perturb IN OUT: + noise on every float parameter; in.OUT: image, mask
	$PY - "$1" "$2" <<'PYEOF'
import sys, json, st, numpy as np
t, m = st.load(sys.argv[1]); r = np.random.default_rng(3); out = {}
for k, v in t.items():
    v = np.array(v)
    if v.dtype == np.float32 and "attn_mask" not in k:
        v = v + r.standard_normal(v.shape).astype(np.float32) * (0.2 if "norm" in k else 0.05)
    out[k] = v
st.save(sys.argv[2], out, m)
cfg = json.loads(m["mim.config"]); S = cfg["img_size"]; g = S // cfg["patch_size"]
st.save(sys.argv[2] + ".in", {"image": r.standard_normal((2, 3, S, S)).astype(np.float32),
                              "mask": (r.random((2, g, g)) < 0.6).astype(np.uint8)})
PYEOF
}
for m in micro-vit micro-swin; do
	B init --preset $m --seed 1 -o "$T/$m.init"
	perturb "$T/$m.init" "$T/$m.st"
	$PY "$REF/pth_ref.py" official "$T/$m.st" "$T/$m"
	$PY "$REF/pth_ref.py" latent "$T/$m.pth" "$T/$m.st" "$T/$m.st.in" "$T/$m.torch"
	for f in pth legacy.pth; do
		expect_ok "$m $f: import" 'B import "$T/$m.$f" -o "$T/$m.$f.st" 2> "$T/$m.$f.err"'
		check "$m $f: no difference to the state dict written directly" \
		    'B diff "$T/$m.$f.st" "$T/$m.state.safetensors" > "$T/d" && grep -q "0 beyond the tolerance, 0 of another shape, 0 only in A, 0 only in B; largest max abs difference 0$" "$T/d"'
		check "$m $f: the same weights as the checkpoint it came from" 'B diff "$T/$m.$f.st" "$T/$m.st" > /dev/null'
		check "$m $f: the imported model loads" 'B info "$T/$m.$f.st" > /dev/null'
		check "$m $f: mim-encode gives PyTorch's latent within 1e-4" 'mim-encode --ckpt "$T/$m.$f.st" "$T/$m.st.in" > "$T/enc" && $PY - "$T/enc" "$T/$m.torch" <<PYEOF
import sys, st, numpy as np
a, _ = st.load(sys.argv[1]); b, _ = st.load(sys.argv[2])
d = np.abs(np.array(a["latent"], np.float64) - np.array(b["latent"])).max()
print("# max abs difference to PyTorch %.3g (max |latent| %.3g)" % (d, np.abs(b["latent"]).max()))
assert a["latent"].shape == b["latent"].shape and d <= 1e-4, d
PYEOF'
	done
	check "$m: says what it found and inferred" 'grep -q "torch.save file of model (dict of .* tensors), optimizer (dict of 2), .*config (yacs.config.CfgNode object)" "$T/$m.pth.err" && grep -q "config inferred from the shapes: {\"model\"" "$T/$m.pth.err"'
	check "$m: the inferred config is the preset's (drop path aside)" '$PY - "$T/$m.pth.st" "$T/$m.st" <<PYEOF
import sys, json, st
a = json.loads(st.load(sys.argv[1])[1]["mim.config"]); b = json.loads(st.load(sys.argv[2])[1]["mim.config"])
a.pop("drop_path_rate"); b.pop("drop_path_rate")
assert a == b, (a, b)
PYEOF'
	check "$m: import from a pipe" 'cat "$T/$m.pth" | B import -q - | B diff - "$T/$m.st" > /dev/null'
	check "$m: a .safetensors state dict imports the same way" 'B import -q "$T/$m.state.safetensors" -o "$T/$m.sd.st" && B diff "$T/$m.sd.st" "$T/$m.st" > /dev/null && B info "$T/$m.sd.st" > /dev/null'
done
expect_ok 'import with --preset' 'B import -q --preset micro-vit "$T/micro-vit.pth" -o "$T/p.st"'
check '--preset sets the config' 'B info "$T/p.st" | grep -q "\"drop_path_rate\":0.0"'
expect_fail 'the wrong preset: weights do not match' 1 'B import -q --preset micro-swin "$T/micro-vit.pth" -o "$T/x"'
expect_ok '--config keys win over the inferred ones' 'B import -q --config "{\"layer_norm_eps\":1e-5}" "$T/micro-vit.pth" -o "$T/c.st"'
check '--config reached mim.config' 'B info "$T/c.st" | grep -q "\"layer_norm_eps\":1e-05"'
expect_fail '--config contradicting the weights' 1 'B import -q --config "{\"model\":\"swin\"}" "$T/micro-vit.pth" -o "$T/x"'

# without buffers, a Swin's image size is ambiguous; --config resolves it
$PY - "$T/micro-swin.state.safetensors" "$T/nobuf.st" <<'PYEOF'
import sys, st
t, m = st.load(sys.argv[1])
st.save(sys.argv[2], {k: v for k, v in t.items() if "attn_mask" not in k and "index" not in k})
PYEOF
expect_fail 'ambiguous img_size is an error' 1 'B import -q "$T/nobuf.st" -o "$T/x"'
check 'the message says what is missing' 'B import -q "$T/nobuf.st" -o "$T/x" 2>&1 | grep -q "cannot infer img_size"'
expect_ok 'img_size given: imports' 'B import -q --config "{\"img_size\":32}" "$T/nobuf.st" -o "$T/nb.st" && B diff "$T/nb.st" "$T/micro-swin.st" | grep -q "0 beyond the tolerance, 0 of another shape, 0 only in A, 6 only in B"'

# the committed fixtures: every dtype, views, strides; --raw keeps them as they are
for f in tiny.zip.pth tiny.legacy.pth tiny.p4.pth tiny.p4legacy.pth tiny.sd.pth; do
	check "$f: --raw equals what PyTorch saved" 'B import -q --raw "$REF/pth/$f" | B diff - "$REF/pth/tiny.safetensors" > /dev/null'
done
expect_fail 'not a SimMIM state dict, without --raw' 1 'B import -q "$REF/pth/tiny.zip.pth" -o "$T/x"'

# ---- hostile files: an error, never a crash -----------------------------------
$PY "$REF/pth_ref.py" hostile "$T/h"
expect_ok 'the well-formed crafted file imports (any top folder name)' 'B import -q --raw "$T/h/good.pth" > "$T/good.st"'
check 'a big-endian file is byte-swapped' 'B import -q --raw "$T/h/big-endian.pth" | $PY -c "
import sys, st, numpy as np
t, m = next(st.read_frames(sys.stdin.buffer))
assert t[\"a\"].tolist() == [[0, 2], [1, 3]] and t[\"b\"].tolist() == [1, -2], t"'
for f in "$T"/h/*.pth; do
	n=$(basename "$f" .pth)
	case $n in good|big-endian) continue ;; esac
	expect_fail "hostile: $n" 1 'B import -q --raw "$f" -o "$T/out.st"'
done
check 'nothing was written by the failures' 'test ! -e "$T/out.st"'
check 'message: offset past the end' 'B import -q --raw "$T/h/offset-past-end.pth" 2>&1 | grep -q "^mim-ckpt: .*tensor .a.: storage offset 3 .*past the end of storage"'
check 'message: truncated zip' 'B import -q --raw "$T/h/truncated.pth" 2>&1 | grep -q "truncated or damaged zip"'
echo junk > "$T/out2.st"
expect_fail 'a failed import leaves -o untouched' 1 'B import -q --raw "$T/h/bad-pickle.pth" -o "$T/out2.st"'
check '... still the old content' 'test "$(cat "$T/out2.st")" = junk'

# ---- export --------------------------------------------------------------------
# a training checkpoint: opt.* tensors and mim.train.* metadata
$PY - "$T/micro-swin.st" "$T/train.st" <<'PYEOF'
import sys, st, numpy as np
t, m = st.load(sys.argv[1])
t = dict(t)
for k in list(t)[:5]:
    t["opt.exp_avg." + k] = np.ones_like(t[k]); t["opt.exp_avg_sq." + k] = np.zeros_like(t[k])
m = dict(m, **{"mim.train.step": "7", "mim.train.seed": "3"})
st.save(sys.argv[2], t, m)
PYEOF
expect_ok 'export: model only' 'B export "$T/train.st" -o "$T/model.st" 2> "$T/e"'
check 'no opt.* tensors, no mim.train.* keys, same weights and config' '$PY - "$T/model.st" <<PYEOF
import sys, st
t, m = st.load(sys.argv[1])
assert not [k for k in t if k.startswith("opt.")] and not [k for k in m if k.startswith("mim.train.")], (list(m))
assert "mim.config" in m
PYEOF
B diff "$T/model.st" "$T/micro-swin.st" > /dev/null'
check 'export reports what it dropped' 'grep -q "dropped 10 opt.\* tensors and 2 mim.train.\* keys" "$T/e"'
expect_ok 'export --dtype bf16' 'B export -q --dtype bf16 "$T/train.st" -o "$T/bf.st"'
check 'bf16 floats, I64 buffers kept' '$PY - "$T/bf.st" <<PYEOF
import sys, json
h = json.loads(open(sys.argv[1], "rb").read()[8:][:int.from_bytes(open(sys.argv[1], "rb").read(8), "little")])
d = {v["dtype"] for k, v in h.items() if k != "__metadata__" and "index" not in k}
assert d == {"BF16"}, d
assert all(v["dtype"] == "I64" for k, v in h.items() if k.endswith("relative_position_index"))
PYEOF'
check 'bf16 is close: diff --rtol 1e-2 passes' 'B diff --rtol 1e-2 "$T/bf.st" "$T/micro-swin.st" > /dev/null'
check 'bf16 is not equal: diff exits 1' 'B diff "$T/bf.st" "$T/micro-swin.st" > "$T/d"; test $? = 1'
check 'and says which differ' 'grep -q "^differs: encoder.patch_embed.proj.weight .*BF16/F32" "$T/d"'
expect_ok 'export --dtype f16 from a .pth' 'B export -q --dtype f16 "$T/micro-vit.pth" -o "$T/f16.st" && B diff --tol 2e-3 "$T/f16.st" "$T/micro-vit.st" > /dev/null'

# --pth: a torch.save file PyTorch code loads with torch.load(path)['model']
expect_ok 'export --pth' 'B export -q --pth "$T/micro-swin.st" -o "$T/ms.pth"'
$PY "$REF/pth_ref.py" latent "$T/ms.pth" "$T/micro-swin.st" "$T/micro-swin.st.in" "$T/ms.torch2"
check 'torch.load(...)["model"] loads strictly into the reference Swin: the same latent' '$PY - "$T/ms.torch2" "$T/micro-swin.torch" <<PYEOF
import sys, st, numpy as np
a, _ = st.load(sys.argv[1]); b, _ = st.load(sys.argv[2])
assert np.array_equal(a["latent"], b["latent"])
PYEOF'
check 'the .pth imports back, mim.config and all' 'B import "$T/ms.pth" 2> "$T/e" | B diff - "$T/micro-swin.st" > /dev/null && grep -q "config from the file.s own mim.config" "$T/e"'
check 'export --pth of any state dict: every dtype through torch.load' 'B export -q --pth "$REF/pth/tiny.safetensors" -o "$T/tiny.pth" && $PY - "$T/tiny.pth" "$REF/pth/tiny.sd.pth" <<PYEOF
import sys, torch
a = torch.load(sys.argv[1])["model"]; b = torch.load(sys.argv[2])
assert list(a) == list(b)
assert all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k].contiguous()) for k in b)
PYEOF'
check 'export --pth to a pipe' 'B export -q --pth --dtype f16 "$T/micro-vit.st" | B import -q - | B diff --tol 2e-3 - "$T/micro-vit.st" > /dev/null'

# fine-tuning: Swin window 6 -> 7 (img 48 -> 56) against the official procedure
B init --preset micro-swin --img-size 48 --window-size 6 --seed 4 -o "$T/s6.st"
expect_ok 'export --finetune --window 7' 'B export --finetune --img-size 56 --window 7 "$T/s6.st" -o "$T/s7.st" 2> "$T/e"'
check 'reports the tables resampled 11x11 -> 13x13' 'grep -q "4 tables resampled 11x11 -> 13x13" "$T/e"'
$PY "$REF/pth_ref.py" resize "$T/s6.st" "$T/s7ref.st" 56 7
check 'Swin w6 -> w7 equals the official procedure within 1e-5' 'B diff --tol 1e-5 "$T/s7.st" "$T/s7ref.st" > "$T/d"'
check '... same names exactly' 'grep -q "0 of another shape, 0 only in A, 0 only in B" "$T/d"'
check 'no encoder. prefix, no decoder, mask_token or buffers; mim.finetune' '$PY - "$T/s7.st" <<PYEOF
import sys, st, json
t, m = st.load(sys.argv[1])
assert not [k for k in t if k.startswith(("encoder.", "decoder.")) or "mask_token" in k or "attn_mask" in k or "index" in k]
f = json.loads(m["mim.finetune"]); assert f["window_size"] == 7 and f["img_size"] == 56 and "mim.config" not in m
assert t["layers.0.blocks.0.attn.relative_position_bias_table"].shape == (169, 1)
PYEOF'
# ViT: a trained-looking shared table, into every block, resampled for 40 px
$PY - "$T/micro-vit.st" "$T/vr.st" <<'PYEOF'
import sys, st, numpy as np
t, m = st.load(sys.argv[1]); t = dict(t)
k = "encoder.rel_pos_bias.relative_position_bias_table"
t[k] = np.random.default_rng(0).standard_normal(t[k].shape).astype(np.float32) * 0.02
st.save(sys.argv[2], t, m)
PYEOF
expect_ok 'export --finetune ViT, grid 8 -> 10' 'B export -q --finetune --img-size 40 "$T/vr.st" -o "$T/v40.st"'
$PY "$REF/pth_ref.py" resize "$T/vr.st" "$T/v40ref.st" 40
check 'ViT: per-block tables equal the official procedure within 1e-5' 'B diff --tol 1e-5 "$T/v40.st" "$T/v40ref.st" > "$T/d" && grep -q "0 of another shape, 0 only in A, 0 only in B" "$T/d"'
expect_ok 'ViT same size: tables copied unchanged' 'B export -q --finetune "$T/vr.st" -o "$T/v32.st"'
check 'each block has the shared table' '$PY - "$T/v32.st" "$T/vr.st" <<PYEOF
import sys, st, numpy as np
a, _ = st.load(sys.argv[1]); b, _ = st.load(sys.argv[2])
s = b["encoder.rel_pos_bias.relative_position_bias_table"]
assert all(np.array_equal(a["blocks.%d.attn.relative_position_bias_table" % i], s) for i in range(2))
assert "norm.weight" not in a and "rel_pos_bias.relative_position_bias_table" not in a
PYEOF'
check '--keep-norm keeps the final norm' 'B export -q --finetune --keep-norm "$T/vr.st" | $PY -c "
import sys, st; t, m = next(st.read_frames(sys.stdin.buffer)); assert \"norm.weight\" in t"'
expect_fail 'a Swin window that does not divide the stages' 1 'B export -q --finetune --window 5 "$T/s6.st" -o "$T/x"'
expect_fail '--window for a ViT' 1 'B export -q --finetune --window 7 "$T/vr.st" -o "$T/x"'

# ---- diff ----------------------------------------------------------------------
check 'diff: a file against itself' 'B diff "$T/s6.st" "$T/s6.st" > /dev/null'
check 'diff: other names: exit 1' 'B diff "$T/s6.st" "$T/s7.st" > "$T/d"; test $? = 1'
check 'diff: lists names only in A and only in B' 'grep -q "^only in A: encoder.mask_token$" "$T/d" && grep -q "^only in B: layers.0.blocks.0.norm1.weight$" "$T/d"'
check 'diff --all prints every tensor' 'B diff --all "$T/s6.st" "$T/s6.st" | grep -c "maxabs 0 " | grep -qx "$(B diff --all "$T/s6.st" "$T/s6.st" | grep -c maxabs)"'

# ---- usage ---------------------------------------------------------------------
expect_fail 'import: no file' 2 'B import'
expect_fail 'import: --raw with --preset' 2 'B import --raw --preset vit-base "$T/s6.st"'
expect_fail 'import: unknown preset' 2 'B import --preset nope "$T/s6.st"'
expect_fail 'import: bad --config' 2 'B import --preset micro-vit --config "{oops" "$T/s6.st"'
expect_fail 'import: unknown flag' 2 'B import --frobnicate "$T/s6.st"'
expect_fail 'import: missing file' 1 'B import -q "$T/nonexistent.pth" -o "$T/x"'
expect_fail 'export: --window without --finetune' 2 'B export --window 7 "$T/s6.st"'
expect_fail 'export: bad --dtype' 2 'B export --dtype f8 "$T/s6.st"'
expect_fail 'diff: one file' 2 'B diff "$T/s6.st"'
expect_fail 'diff: negative tolerance' 2 'B diff --tol -1 "$T/s6.st" "$T/s6.st"'
check 'help of each command' 'B import --help | grep -q "^usage: mim-ckpt import" && B export --help | grep -q "^usage: mim-ckpt export" && B diff --help | grep -q "^usage: mim-ckpt diff"'
check 'mim-ckpt --help lists them' 'B --help | grep -q "^  import " && B --help | grep -q "^  export " && B --help | grep -q "^  diff "'
