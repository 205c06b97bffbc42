# t-head-swinv.sh -- the swin-inverse prediction head: parity with
# tests/ref/head_swinv_ref.py (PyTorch) on micro Swins, the presets'
# inverse Swin-T and Swin-B, its config through info, export and import,
# the pipe, training (the loss goes down) and a crash-resume that ends
# byte-identical, and the configs it refuses.
. "$MIM_TOP/tests/lib.sh"
TH="$MIM_TOP/$MIM_BUILD/tests/test_head"

# ---- parity, generated here (the committed dump runs in test_head)
if have_torch; then
	for c in "mirror" "deeper --head-depths 3,1" "nobias --head-depths 1,2 --qkv-bias false"; do
		set -- $c
		name=$1
		shift
		args="$*"
		expect_ok "$name: checkpoint" 'mim-ckpt init --preset micro-swin --head swin-inverse $args --seed 2 -o "$T/$name.st"'
		expect_ok "$name: PyTorch dump" '$PY "$REF/head_ref.py" make-input "$T/$name.st" 3 5 "$T/$name.in" && $PY "$REF/head_ref.py" dump "$T/$name.st" "$T/$name.in" "$T/$name.ref" > /dev/null'
		"$TH" --compare "$T/$name.st" "$T/$name.in" "$T/$name.ref"
	done
else
	echo "skip - no torch in $PY: live swin-inverse parity"
fi

# ---- the presets: inverse Swin-T and inverse Swin-B by default
expect_ok 'init --preset swin-tiny --head swin-inverse' 'mim-ckpt init --preset swin-tiny --head swin-inverse -o "$T/t.st"'
check 'inverse Swin-T: head_depths 0 (the mirror: 2,6,2,2 blocks), dims 768..96' 'mim-ckpt info "$T/t.st" > "$T/t.info" && grep -q "\"head\":\"swin-inverse\",\"head_depths\":\[0,0,0,0\]}$" "$T/t.info" && mim-ckpt info --json "$T/t.st" > "$T/t.json" && $PY - "$T/t.st" <<PYEOF
import sys, st
t, _ = st.load(sys.argv[1])
n = [len({k.split(".")[4] for k in t if k.startswith("decoder.layers.%d.blocks." % j)}) for j in range(4)]
assert n == [2, 6, 2, 2], n
assert t["decoder.layers.0.blocks.0.norm1.weight"].shape == (768,)
assert t["decoder.layers.0.upsample.expand.weight"].shape == (1536, 768)
assert t["decoder.layers.2.upsample.norm.weight"].shape == (96,)
assert t["decoder.layers.3.blocks.1.attn.relative_position_bias_table"].shape == (121, 3)
assert t["decoder.proj.weight"].shape == (48, 96) and "decoder.layers.3.upsample.expand.weight" not in t
PYEOF'
expect_ok 'init --preset swin-base --head swin-inverse' 'mim-ckpt init --preset swin-base --head swin-inverse -o "$T/b.st"'
check 'inverse Swin-B: 2,18,2,2 blocks, dim 1024 first' '$PY - "$T/b.st" <<PYEOF
import sys, st
t, _ = st.load(sys.argv[1])
n = [len({k.split(".")[4] for k in t if k.startswith("decoder.layers.%d.blocks." % j)}) for j in range(4)]
assert n == [2, 18, 2, 2], n
assert t["decoder.layers.0.blocks.0.attn.qkv.weight"].shape == (3072, 1024)
PYEOF'
rm -f "$T/t.st" "$T/b.st"

# ---- the config round trip
expect_ok 'init --head swin-inverse --head-depths 1,3' 'mim-ckpt init --preset micro-swin --head swin-inverse --head-depths 1,3 --seed 1 -o "$T/m.st"'
check 'info shows the head and its depths' 'mim-ckpt info "$T/m.st" | grep -q "\"encoder_stride\":4,\"head\":\"swin-inverse\",\"head_depths\":\[1,3\]}$"'
# stage 0 (dim 32, 2 heads, window 4): 1 block of 64+98+3168+1056+64+4224+4128
# = 12,802, expand 2048 + 32; stage 1 (dim 16): 3 blocks of 32+49+816+272+32+
# 1088+1040 = 3,329; norm 32, proj 16*12+12: 25,105
check 'info counts the decoder: 25,105 parameters' 'mim-ckpt info "$T/m.st" | grep -q "^decoder 25,105 "'
expect_ok 'export --pth' 'mim-ckpt export --pth "$T/m.st" -o "$T/m.pth"'
expect_ok 'import infers the head from the weights' 'mim-ckpt import -q "$T/m.pth" -o "$T/m2.st"'
check 'the same config and weights after the round trip' 'mim-ckpt info "$T/m2.st" | grep -q "\"head\":\"swin-inverse\",\"head_depths\":\[1,3\]}$" && mim-ckpt diff "$T/m.st" "$T/m2.st" > /dev/null'
expect_ok 'the mirrored default round-trips too' 'mim-ckpt init --preset micro-swin --head swin-inverse -o "$T/s.st" && mim-ckpt export --pth "$T/s.st" -o "$T/s.pth" && mim-ckpt import -q "$T/s.pth" -o "$T/s2.st"'
check 'head_depths [0,0] both times, the same weights' 'mim-ckpt info "$T/s.st" | grep -q "\"head_depths\":\[0,0\]}$" && mim-ckpt info "$T/s2.st" | grep -q "\"head_depths\":\[0,0\]}$" && mim-ckpt diff "$T/s.st" "$T/s2.st" > /dev/null'
if have_torch; then
	expect_ok 'a state dict without mim.config (2,1 blocks on a 2,2 encoder)' 'mim-ckpt init --preset micro-swin --head swin-inverse --head-depths 2,1 -o "$T/k.st" && $PY - "$T/k.st" "$T/k.pth" <<PYEOF && mim-ckpt import -q "$T/k.pth" -o "$T/k2.st"
import sys, st, torch
t, _ = st.load(sys.argv[1])
torch.save({"model": {k: torch.from_numpy(v.copy()) for k, v in t.items()}}, sys.argv[2])
PYEOF'
	check 'import infers head_depths [0,1] (stage 0 mirrors), the same weights' 'mim-ckpt info "$T/k2.st" | grep -q "\"head_depths\":\[0,1\]}$" && mim-ckpt diff "$T/k.st" "$T/k2.st" > /dev/null'
else
	echo "skip - no torch in $PY: import of a plain state dict"
fi

# ---- the decoder's buffers, written like the encoder's
check 'relative_position_index of every block, attn_mask of the shifted one' '$PY - "$T/m.st" <<PYEOF
import sys, st
t, _ = st.load(sys.argv[1])
b = sorted(k for k in t if k.startswith("decoder.") and ("index" in k or "mask" in k))
assert b == ["decoder.layers.0.blocks.0.attn.relative_position_index",
             "decoder.layers.1.blocks.0.attn.relative_position_index",
             "decoder.layers.1.blocks.1.attn.relative_position_index",
             "decoder.layers.1.blocks.1.attn_mask",
             "decoder.layers.1.blocks.2.attn.relative_position_index"], b
PYEOF'
if have_torch; then
	check 'the PyTorch module takes the decoder with strict=True' '$PY - "$T/m.st" <<PYEOF
import sys, json, st, torch, head_swinv_ref
t, meta = st.load(sys.argv[1])
dec = {k[8:]: torch.from_numpy(v.copy()) for k, v in t.items() if k.startswith("decoder.")}
head_swinv_ref.InverseSwin(json.loads(meta["mim.config"])).load_state_dict(dec, strict=True)
PYEOF'
fi
expect_ok 'a checkpoint whose decoder index is wrong (by hand)' 'cp "$T/m.st" "$T/bad.st" && $PY - "$T/bad.st" <<PYEOF
import sys, st
t, meta = st.load(sys.argv[1])
k = "decoder.layers.1.blocks.2.attn.relative_position_index"
t[k] = t[k].copy()
t[k][0, 1] += 1
st.save(sys.argv[1], t, meta)
PYEOF'
expect_fail 'mim-head refuses it' 1 'mim-head --ckpt "$T/bad.st" < /dev/null'
check 'naming the buffer' 'mim-head --ckpt "$T/bad.st" < /dev/null 2>&1 | grep -q "buffer .decoder.layers.1.blocks.2.attn.relative_position_index.: differs from the official index at 1"'

# ---- through the pipe and in training (tests/lib.sh), and the pipe's
# prediction against PyTorch's head
head_pipe_train "$T/m.st" swin-inverse 16 decoder.layers.1.blocks.2.attn.qkv.weight \
	decoder.proj.weight encoder.layers.0.blocks.0.attn.qkv.weight
if have_torch; then
	check 'mim-head agrees with the PyTorch head on the pipe'"'"'s latent' '$PY - "$T/m.st" "$T/in.mim" "$T/lat.st" <<PYEOF
import sys, subprocess, st, numpy as np, torch, head_ref
ck, inp, out = sys.argv[1:4]
lat = subprocess.run(["mim-encode", "--ckpt", ck, inp], stdout=subprocess.PIPE, check=True).stdout
pr = subprocess.run(["mim-head", "--ckpt", ck], input=lat, stdout=subprocess.PIPE, check=True).stdout
import io
l = next(st.read_frames(io.BytesIO(lat)))[0]["latent"]
p = next(st.read_frames(io.BytesIO(pr)))[0]["pred"]
model, _, _ = head_ref.load(ck)
ref = model(torch.from_numpy(l.copy())).detach().numpy()
e = np.abs(p - ref).max() / np.abs(ref).max()
assert e < 1e-4, e
PYEOF'
fi

# ---- refused
expect_fail 'swin-inverse on a ViT' 2 'mim-ckpt init --preset micro-vit --head swin-inverse -o "$T/x"'
check 'the message says why' 'mim-ckpt init --preset micro-vit --head swin-inverse -o "$T/x" 2>&1 | grep -q "^mim-ckpt: init: config: the swin-inverse head mirrors a Swin encoder.s stages: it needs \"model\": \"swin\""'
expect_fail 'more head_depths than stages' 2 'mim-ckpt init --preset micro-swin --head swin-inverse --head-depths 1,1,1 -o "$T/x"'
expect_fail 'head_depths on the mlp head' 2 'mim-ckpt init --preset micro-swin --head mlp --head-depths 1,1 -o "$T/x"'
# the head ends at the patch grid: it predicts at 1/1, 1/2 or 1/4 of a
# patch-4 Swin's input, not at 1/8
expect_fail 'swin-inverse at a resolution below its last stage (pred_div 8, patch 4)' 2 'mim-ckpt init --preset swin-tiny --img-size 64 --window-size 2 --head swin-inverse --pred-div 8 -o "$T/x"'
check 'the message says why' 'mim-ckpt init --preset swin-tiny --img-size 64 --window-size 2 --head swin-inverse --pred-div 8 -o "$T/x" 2>&1 | grep -q "the swin-inverse head ends at 1/4 of the input (patch_size); it cannot predict at 1/8"'
expect_ok 'and at 1/2 it can' 'mim-ckpt init --preset swin-tiny --img-size 64 --window-size 2 --head swin-inverse --pred-div 2 -o "$T/x" && mim-ckpt info "$T/x" | grep -q "\"pred_div\":2"'
expect_ok 'a ViT checkpoint whose config asks for the swin-inverse head (by hand)' 'mim-ckpt init --preset micro-vit -o "$T/v.st" && $PY - "$T/v.st" <<PYEOF
import sys, json, st
t, meta = st.load(sys.argv[1])
c = json.loads(meta["mim.config"]); c["head"] = "swin-inverse"
meta["mim.config"] = json.dumps(c)
st.save(sys.argv[1], t, meta)
PYEOF'
expect_fail 'mim-head refuses it' 1 'mim-head --ckpt "$T/v.st" < "$T/out.mim"'
check 'and names the file and the reason' 'mim-head --ckpt "$T/v.st" < "$T/out.mim" 2>&1 | grep -q "v.st: mim.config: config: the swin-inverse head mirrors a Swin encoder"'
