# t-swin.sh -- the Swin encoder through the tools: mim-ckpt init/info on the
# presets (official parameter counts), PyTorch loading our Swin checkpoints
# strictly, impossible sizes, and parity with tests/ref/swin_ref.py on
# swin-tiny at 192 px, window 6 (reference made here, in float64).
. "$MIM_TOP/tests/lib.sh"
san=${MIM_SANITIZE:-0}

# presets and the official counts (with the decoder)
expect_ok 'init swin-base' 'mim-ckpt init --preset swin-base --seed 1 -o "$T/b.st"'
expect_ok 'info swin-base' 'mim-ckpt info "$T/b.st" > "$T/info"'
check 'swin-base (192, w6): 89,874,104 parameters' 'grep -q "^total 89,874,104 parameters in 330 tensors" "$T/info"'
check 'swin-base: encoder 86,725,304, decoder 3,148,800' 'grep -q "^encoder 86,725,304 " "$T/info" && grep -q "^decoder 3,148,800 " "$T/info"'
if [ "$san" = 1 ]; then
	echo "skip - swin-large checkpoint (800 MB) under the sanitizers"
else
	expect_ok 'init swin-large' 'mim-ckpt init --preset swin-large -o "$T/l.st"'
	check 'swin-large (192, w12): 199,881,204 parameters' 'mim-ckpt info "$T/l.st" | grep -q "^total 199,881,204 parameters in 330 tensors"'
	rm -f "$T/l.st"
fi
rm -f "$T/b.st"
check 'explicit flags equal the preset' 'mim-ckpt init --preset micro-swin --seed 1 -o "$T/m1.st" && mim-ckpt init --model swin --img-size 32 --patch-size 2 --embed-dim 16 --depths 2,2 --num-heads 1,2 --window-size 4 --encoder-stride 4 --seed 1 -o "$T/m2.st" && cmp "$T/m1.st" "$T/m2.st"'

# PyTorch (our reference module) loads a Swin checkpoint strictly: official
# names, shapes, relative_position_index and attn_mask buffers included
if have_torch; then
	expect_ok 'init swin-tiny' 'mim-ckpt init --preset swin-tiny --seed 2 -o "$T/t.st"'
	check 'swin-tiny checkpoint loads with load_state_dict(strict=True)' '$PY - "$T/t.st" <<PYEOF
import sys, json, numpy as np, torch, st, swin_ref
t, meta = st.load(sys.argv[1])
cfg = json.loads(meta["mim.config"])
m = swin_ref.SimMIMSwin({k: v for k, v in cfg.items() if k in swin_ref.DEFAULT and k != "model"})
m.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in t.items()}, strict=True)
assert t["encoder.layers.0.blocks.1.attn_mask"].shape == (64, 36, 36)
assert "encoder.layers.3.blocks.1.attn_mask" not in t      # clamped: no shift
w = t["encoder.patch_embed.proj.weight"]
assert abs(np.abs(w).max() - 48 ** -0.5) < 1e-3 and abs(w.std() - 48 ** -0.5 / 3 ** 0.5) < 3e-3
q = t["encoder.layers.2.blocks.5.attn.qkv.weight"]
assert q.shape == (1152, 384) and abs(q.std() - 0.02) < 2e-4 and abs(q.mean()) < 2e-4
assert (t["encoder.layers.2.blocks.5.attn.qkv.bias"] == 0).all()
assert (t["encoder.layers.0.downsample.norm.weight"] == 1).all()
r = t["encoder.layers.1.blocks.0.attn.relative_position_bias_table"]
assert abs(r.std() - 0.02) < 2e-3
PYEOF'
else
	echo "skip - no torch: strict load of a Swin checkpoint"
fi

# sizes that cannot work: a clear error, exit 2, nothing written
expect_fail 'image not divisible by the patch' 2 'mim-ckpt init --preset swin-tiny --img-size 190 -o "$T/x"'
cp "$T/.err" "$T/err1"
check 'message names the sizes' 'grep -q "img_size 190 is not a multiple of patch_size 4" "$T/err1"'
expect_fail 'window does not divide a stage' 2 'mim-ckpt init --preset swin-tiny --window-size 5 -o "$T/x"'
cp "$T/.err" "$T/err2"
check 'message names the stage' 'grep -q "stage 0: resolution 48 is not a multiple of window_size 5" "$T/err2"'
expect_fail 'odd stage for patch merging' 2 'mim-ckpt init --model swin --img-size 24 --depths 2,2,2 --num-heads 2,4,8 --window-size 3 --encoder-stride 16 -o "$T/x"'
expect_fail 'wrong encoder stride for the stages' 2 'mim-ckpt init --model swin --depths 2,2,2 --num-heads 4,8,16 -o "$T/x"'
expect_fail 'heads do not divide a stage' 2 'mim-ckpt init --preset swin-tiny --num-heads 5,6,12,24 -o "$T/x"'
check 'nothing written' 'test ! -e "$T/x"'

# the stage tools on a Swin checkpoint, through mim.config alone: the
# committed micro dump (4 stages) as a checkpoint and a stream
$PY - "$REF/swin_micro.safetensors" "$T" <<'PYEOF'
import sys, numpy as np, st
t, meta = st.load(sys.argv[1])
st.save(sys.argv[2] + "/ck.st", {k: v for k, v in t.items() if k.split(".")[0] in ("encoder", "decoder")},
        {"mim.config": meta["mim.config"]})
st.save(sys.argv[2] + "/in.mim", {"image": t["input/image"], "mask": t["input/mask"].astype(np.uint8)},
        {"mim.keys": '["a","b"]'})
PYEOF
expect_ok 'mim-ckpt info on the micro Swin' 'mim-ckpt info "$T/ck.st" > "$T/ckinfo"'
check 'micro Swin: 50,406 parameters, 4 stages' 'grep -q "^total 50,406 parameters" "$T/ckinfo" && grep -q "^  encoder.layers.3 " "$T/ckinfo"'
expect_ok 'mim-encode | mim-head | mim-loss with a Swin checkpoint' 'mim-encode --ckpt "$T/ck.st" "$T/in.mim" | mim-head --ckpt "$T/ck.st" | mim-loss --quiet > "$T/out.mim"'
check 'latent, pred and loss equal the reference (1e-4)' '$PY - "$REF/swin_micro.safetensors" "$T/out.mim" <<PYEOF
import sys, numpy as np, st
ref, _ = st.load(sys.argv[1])
(out, meta), = list(st.read_frames(open(sys.argv[2], "rb")))
def rel(a, b): return float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max())
assert out["latent"].shape == (2, 32, 2, 2), out["latent"].shape
assert rel(out["latent"], ref["out/latent"]) < 1e-4, rel(out["latent"], ref["out/latent"])
assert rel(out["pred"], ref["out/pred"]) < 1e-4, rel(out["pred"], ref["out/pred"])
assert abs(float(out["loss"]) - float(ref["out/loss"])) < 1e-4 * float(ref["out/loss"])
assert meta["mim.keys"] == "[\"a\",\"b\"]" and (out["mask"] == ref["input/mask"]).all()
PYEOF'
expect_ok 'mim-encode --layer 2 (stage 2 before merging)' 'mim-encode --ckpt "$T/ck.st" --layer 2 "$T/in.mim" > "$T/l2.mim"'
check 'layer 2 equals the reference stage output' '$PY - "$REF/swin_micro.safetensors" "$T/l2.mim" <<PYEOF
import sys, numpy as np, st
ref, _ = st.load(sys.argv[1])
(out, meta), = list(st.read_frames(open(sys.argv[2], "rb")))
a, b = out["latent"], ref["out/layer2"]
assert a.shape == (2, 8, 8, 8) and np.abs(a - b).max() < 1e-4 * np.abs(b).max()
PYEOF'
expect_fail 'mim-encode --layer 5 of 4 stages' 2 'mim-encode --ckpt "$T/ck.st" --layer 5 "$T/in.mim"'
expect_ok 'mim-mask --ckpt takes the Swin patch size' 'mim-mask --ckpt "$T/ck.st" --mask-patch 8 "$T/in.mim" > "$T/m.mim"'
check 'mask at the Swin token grid [2,16,16]' 'mim-info "$T/m.mim" | grep -q "mask  *U8  *\[2,16,16\]"'
$PY -c "
import sys, numpy as np, st
st.save(sys.argv[1], {'image': np.zeros((1, 3, 64, 64), np.float32)})" "$T/big.mim"
expect_fail 'image of the wrong size for the Swin model' 1 'mim-encode --ckpt "$T/ck.st" "$T/big.mim"'

# parity with the float64 reference of swin_ref.py, made here in one run
# of it (torch imports slowly):
#  - drop path 0.5 in training: the reference draws libmim's per-sample
#    decisions (two per block, rates linspace(0, 0.5, 7)), so the step
#    compares exactly;
#  - the other config keys: ape, no patch norm, no qkv bias, mlp_ratio 2.5,
#    eps 1e-6, patch 3, window 2 (shift 1), 3 stages, batch 3;
#  - swin-tiny at 192 px, window 6, batch 2, from the checkpoint mim-ckpt
#    init wrote above: latent, pred, loss and every gradient within 1e-4.
if ! have_torch; then
	echo "skip - no torch: parity of drop path, config keys and swin-tiny"
	exit 0
fi
tiny=""
if [ "$san" = 1 ]; then
	echo "skip - swin-tiny parity under the sanitizers (too slow)"
else
	tiny="+ $T/tiny.st --weights $T/t.st --batch 2 --perturb --double --seed 3"
fi
expect_ok 'swin_ref.py: the float64 references' '$PY "$REF/swin_ref.py" gen \
	"$T/dp.st" --config "{\"img_size\":32,\"patch_size\":2,\"window_size\":4,\"embed_dim\":4,\"depths\":[2,2,2,1],\"num_heads\":[1,2,2,4],\"drop_path_rate\":0.5}" --perturb --seed 4 --mask-patch 8 --double --batch 4 --dp-seed 11 \
	+ "$T/var.st" --config "{\"img_size\":24,\"patch_size\":3,\"window_size\":2,\"embed_dim\":6,\"depths\":[1,2,1],\"num_heads\":[2,3,3],\"ape\":true,\"patch_norm\":false,\"qkv_bias\":false,\"mlp_ratio\":2.5,\"layer_norm_eps\":1e-6}" --perturb --seed 5 --mask-patch 6 --double --batch 3 \
	'"$tiny"
"$MIM_TOP/$MIM_BUILD/tests/test_swin" "$T/dp.st" "micro, drop path 0.5"
"$MIM_TOP/$MIM_BUILD/tests/test_swin" "$T/var.st" "ape, no patch norm, no qkv bias"
if [ -n "$tiny" ]; then
	rm -f "$T/t.st"
	"$MIM_TOP/$MIM_BUILD/tests/test_swin" "$T/tiny.st" "swin-tiny 192 w6"
fi
