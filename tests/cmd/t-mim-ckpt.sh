# t-mim-ckpt.sh -- mim-ckpt init and info: presets, flags, counts, PyTorch
# reading our files, malformed checkpoints.
. "$MIM_TOP/tests/lib.sh"

expect_ok 'init vit-base' 'mim-ckpt init --preset vit-base --seed 1 > "$T/vb.st"'
expect_ok 'info vit-base' 'mim-ckpt info "$T/vb.st" > "$T/info"'
check 'vit-base: 86,256,720 parameters (the official count)' 'grep -q "^total 86,256,720 parameters in 189 tensors" "$T/info"'
check 'encoder 85,666,128, decoder 590,592' 'grep -q "^encoder 85,666,128 " "$T/info" && grep -q "^decoder 590,592 " "$T/info"'
check 'per-module counts' 'grep -q "^  encoder.blocks.11 *7,088,640$" "$T/info" && grep -q "^  encoder.rel_pos_bias *8,784$" "$T/info"'
check 'config line has every key' 'grep -q "^config {\"model\":\"vit\",\"img_size\":224,.*\"encoder_stride\":16,\"head\":\"linear\"}$" "$T/info"'
expect_ok 'info --json' 'mim-ckpt info --json "$T/vb.st" > "$T/j"'
check 'json: total and config' '$PY -c "
import json,sys; o=json.load(open(sys.argv[1]))
assert o[\"total\"]==86256720 and o[\"config\"][\"embed_dim\"]==768 and o[\"modules\"][\"decoder.0\"]==590592
" "$T/j"'
check 'the file is safetensors with official names, F32, mim.config' '$PY - "$T/vb.st" <<PYEOF
import sys, json, st
t, meta = st.load(sys.argv[1])
cfg = json.loads(meta["mim.config"])
assert cfg["model"] == "vit" and cfg["depth"] == 12 and len(cfg) == 18 and cfg["head"] == "linear", cfg
assert t["encoder.blocks.11.attn.qkv.weight"].shape == (2304, 768)
assert t["encoder.rel_pos_bias.relative_position_index"][0, 0] == 731
assert all(v.dtype.name == "float32" for k, v in t.items() if not k.endswith("index"))
PYEOF'

# flags for config keys
expect_ok 'init with flags' 'mim-ckpt init --preset micro-vit --depth 3 --qkv-bias false --init-values null --seed 5 -o "$T/m.st"'
check 'flags reach the config' 'mim-ckpt info "$T/m.st" | grep -q "\"depth\":3,\"num_heads\":2,\"mlp_ratio\":4.0,\"qkv_bias\":false,\"init_values\":null"'
expect_ok 'init --config' 'mim-ckpt init --config "{\"model\":\"vit\",\"img_size\":64,\"embed_dim\":64,\"depth\":1,\"num_heads\":4}" > "$T/c.st"'
check 'init to stdout, same seed, same bytes' 'mim-ckpt init --preset micro-vit --seed 3 > "$T/a1" && mim-ckpt init --preset micro-vit --seed 3 -o "$T/a2" && cmp "$T/a1" "$T/a2"'
check 'another seed, other bytes' 'mim-ckpt init --preset micro-vit --seed 4 > "$T/a3" && ! cmp -s "$T/a1" "$T/a3"'
expect_fail 'unknown preset' 2 'mim-ckpt init --preset vit-huge -o "$T/x"'
expect_fail 'unknown key for the model' 2 'mim-ckpt init --preset vit-base --window-size 7 -o "$T/x"'
expect_fail 'bad value' 2 'mim-ckpt init --depth twelve -o "$T/x"'
expect_fail 'impossible size' 2 'mim-ckpt init --img-size 100 -o "$T/x"'
expect_fail 'model contradicts preset' 2 'mim-ckpt init --preset vit-base --model swin -o "$T/x"'
expect_fail 'unknown command' 2 'mim-ckpt frobnicate'
expect_fail 'no command' 2 'mim-ckpt'
expect_fail 'info without file' 2 'mim-ckpt info'
check 'help lists init and info' 'mim-ckpt --help | grep -q "^  init " && mim-ckpt --help | grep -q "^  info "'
check 'init --help' 'mim-ckpt init --help | grep -q "usage: mim-ckpt init"'
check 'no file written on error' 'test ! -e "$T/x"'

# malformed checkpoints: a clear message, exit 1
expect_fail 'missing file' 1 'mim-ckpt info "$T/nonexistent"'
$PY - "$T" <<'PYEOF'
import sys, json, st, numpy as np
d = sys.argv[1]
t, meta = st.load(d + "/m.st")
t = dict(t)
def save(name, tt, mm=meta): st.save(d + "/" + name, tt, mm)
u = dict(t); del u["encoder.blocks.1.mlp.fc1.weight"]; save("missing.st", u)
u = dict(t); u["encoder.norm.weight"] = np.zeros(7, np.float32); save("shape.st", u)
m2 = dict(meta); m2["mim.config"] = meta["mim.config"].replace('"depth":3', '"depth":4'); save("cfg.st", t, m2)
m3 = dict(meta); del m3["mim.config"]; save("nocfg.st", t, m3)
m4 = dict(meta); m4["mim.config"] = '{"model":"vit","depht":3}'; save("badcfg.st", t, m4)
u = dict(t); u["encoder.extra"] = np.zeros(2, np.float32); save("extra.st", u)
u = dict(t); u["encoder.norm.weight"] = np.zeros(32, np.int32); save("dtype.st", u)
open(d + "/trunc.st", "wb").write(open(d + "/m.st", "rb").read()[:-10])
PYEOF
expect_fail 'missing tensor' 1 'mim-ckpt info "$T/missing.st"'
check 'message names the tensor' 'mim-ckpt info "$T/missing.st" 2>&1 | grep -q "^mim-ckpt: .*missing.st: missing tensor .encoder.blocks.1.mlp.fc1.weight."'
expect_fail 'wrong shape' 1 'mim-ckpt info "$T/shape.st"'
expect_fail 'config does not match the weights' 1 'mim-ckpt info "$T/cfg.st"'
expect_fail 'no mim.config' 1 'mim-ckpt info "$T/nocfg.st"'
expect_fail 'bad mim.config' 1 'mim-ckpt info "$T/badcfg.st"'
expect_fail 'unexpected tensor' 1 'mim-ckpt info "$T/extra.st"'
expect_fail 'integer weights' 1 'mim-ckpt info "$T/dtype.st"'
expect_fail 'truncated file' 1 'mim-ckpt info "$T/trunc.st"'
