#!/bin/sh
# swap-a-stage.sh -- replace a stage by another program: here mim-loss by
# a NumPy script (examples/numpy_loss.py) that speaks the same stream, and
# check both give the same loss on the same frames.
#   examples/swap-a-stage.sh SHARD.tar [CKPT]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
shard=${1:?usage: swap-a-stage.sh SHARD.tar [CKPT]}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ckpt=${2:-$tmp/vit.safetensors}
[ -e "$ckpt" ] || mim-ckpt init --preset vit-tiny -o "$ckpt"

# run the expensive stages once, keep their stream in a file
mim-data --batch 4 --epochs 1 "$shard" | mim-mask --ckpt "$ckpt" |
	mim-encode --ckpt "$ckpt" | mim-head --ckpt "$ckpt" > "$tmp/pred.mim"

# the C stage and the NumPy stage on the same stream
mim-loss -q "$tmp/pred.mim" | mim-info --json > "$tmp/c.json"
/usr/bin/python3 "$here/numpy_loss.py" l1 < "$tmp/pred.mim" | mim-info --json > "$tmp/np.json"
/usr/bin/python3 - "$tmp/c.json" "$tmp/np.json" <<'PY'
import json, sys
loss = lambda f: [next(t["mean"] for t in json.loads(l)["tensors"] if t["name"] == "loss") for l in open(f)]
a, b = loss(sys.argv[1]), loss(sys.argv[2])
for i, (x, y) in enumerate(zip(a, b)):
    print(f"frame {i}: mim-loss {x:.7f}  numpy_loss.py {y:.7f}  |diff| {abs(x - y):.1e}")
assert len(a) == len(b) and all(abs(x - y) <= 1e-5 * max(1, abs(y)) for x, y in zip(a, b))
print("the NumPy stage agrees with mim-loss")
PY
