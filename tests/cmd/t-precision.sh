# t-precision.sh -- --precision bf16 of mim-step and mim-encode against
# fp32 on small ViT and Swin models (big enough that their Linear products
# take the bf16 path; attention's small products stay float): one step's
# gradients, 30 steps' losses, the encoder's output; bf16 checkpoints are
# fp32 ones; the refusal where the CPU cannot run bf16.
#
# The gradient criterion: for each parameter tensor whose gradient carries
# at least 1e-3 of the whole gradient's norm, ||g_bf16 - g_fp32|| /
# ||g_fp32|| <= 2e-2, and the same over all tensors together. Below that
# share a tensor's gradient is a sum that mostly cancels (relative
# position tables, the patch embedding on noise images: up to 7e-2 here,
# as autocast's would be); those count in the global figure only.
. "$MIM_TOP/tests/lib.sh"

expect_fail '--precision fp16: usage error' 2 'mim-step -c /nonexistent -n 1 --precision fp16 < /dev/null'
expect_fail 'mim-encode --precision fp16: usage error' 2 'mim-encode -c /nonexistent --precision fp16 < /dev/null'
# oneDNN capped below AVX512-BF16 (DNNL_MAX_CPU_ISA) stands for a CPU without it
expect_fail 'bf16 without AMX or AVX512-BF16: refused at start' 1 \
	'DNNL_MAX_CPU_ISA=AVX512_CORE mim-step -c /nonexistent -n 1 --precision bf16 < /dev/null'
check 'the message says why' \
	'DNNL_MAX_CPU_ISA=AVX512_CORE mim-step -c /nonexistent -n 1 --precision bf16 < /dev/null 2>&1 |
	 grep -q "^mim-step: --precision bf16: .*without AMX and AVX512-BF16"'

if ! mim-info --system --json | $PY -c 'import json,sys; sys.exit(not json.load(sys.stdin)["onednn"]["bf16"])'; then
	echo "skip - this CPU has neither AMX nor AVX512-BF16: bf16 accuracy"
	check 'and mim-step says so' \
		'mim-step -c /nonexistent -n 1 --precision bf16 < /dev/null 2>&1 |
		 grep -q "^mim-step: --precision bf16: this CPU has neither AMX nor AVX512-BF16"'
	exit 0
fi

mim-ckpt init --preset micro-vit --img-size 64 --embed-dim 128 --num-heads 4 --seed 3 -o "$T/vit0.st" &&
mim-ckpt init --preset micro-swin --img-size 64 --embed-dim 64 --window-size 8 --seed 3 -o "$T/swin0.st" ||
	{ notok 'mim-ckpt init'; exit 1; }
$PY "$REF/step_ref.py" data "$T/vit.mim" --img 64 --patch 4 --batch 8 --frames 30 --seed 1
$PY "$REF/step_ref.py" data "$T/swin.mim" --img 64 --patch 2 --batch 8 --frames 30 --seed 2

for m in vit swin; do
	for p in fp32 bf16; do
		mim-step -c "$T/${m}0.st" --grad-out "$T/g$m-$p.st" --precision $p "$T/$m.mim" ||
			notok "$m: --grad-out --precision $p"
	done
	check "$m: one step's gradients, bf16 against fp32: within 2e-2 per tensor and overall" \
		'$PY - "$T/g$m-fp32.st" "$T/g$m-bf16.st" <<PYEOF
import sys, numpy as np, st
a, _ = st.load(sys.argv[1]); b, _ = st.load(sys.argv[2])
g = {k: (np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)) for k in a if k.startswith("grad.")}
tot = np.sqrt(sum((x * x).sum() for x, _ in g.values()))
glob = np.sqrt(sum(((x - y) ** 2).sum() for x, y in g.values())) / tot
rel = {k: np.linalg.norm(x - y) / np.linalg.norm(x) for k, (x, y) in g.items() if np.linalg.norm(x) >= 1e-3 * tot}
worst = max(rel, key=rel.get)
print("# global %.2e, worst %s %.2e over %d of %d tensors" % (glob, worst, rel[worst], len(rel), len(g)), file=sys.stderr)
assert glob <= 2e-2 and rel[worst] <= 2e-2, (glob, worst, rel[worst])
# the bf16 path was taken: float would agree to ~1e-6
assert glob > 1e-4, glob
PYEOF'
	# bf16 copies kept from the forward for the backward (mim_gemm_keep)
	# are the copies the backward would make: the same bytes without them
	MIM_BF16_KEEP=0 mim-step -c "$T/${m}0.st" --grad-out "$T/g$m-bf16n.st" --precision bf16 \
	    "$T/$m.mim" || notok "$m: MIM_BF16_KEEP=0 --grad-out"
	check "$m: bf16 gradients, the same bytes with kept copies as without" \
		'$PY - "$T/g$m-bf16.st" "$T/g$m-bf16n.st" <<PYEOF
import sys, numpy as np, st
a, _ = st.load(sys.argv[1]); b, _ = st.load(sys.argv[2])
g = [k for k in a if k.startswith("grad.")]
assert g and sorted(a) == sorted(b)
bad = [k for k in g if np.asarray(a[k]).tobytes() != np.asarray(b[k]).tobytes()]
assert not bad, bad
PYEOF'
	for p in fp32 bf16 bf16n; do
		cp "$T/${m}0.st" "$T/$m-$p.st"
		if [ $p = bf16n ]; then k=0; p1=bf16; else k=1; p1=$p; fi
		MIM_BF16_KEEP=$k mim-step -c "$T/$m-$p.st" -n 30 --lr 1e-3 --warmup-steps 5 \
		    --precision $p1 --log "$T/$m-$p.log" "$T/$m.mim" || notok "$m: 30 steps --precision $p"
	done
	check "$m: 30 bf16 steps, the same losses with kept copies as without" \
		'$PY - "$T/$m-bf16.log" "$T/$m-bf16n.log" <<PYEOF
import sys, json
a = [json.loads(l)["loss"] for l in open(sys.argv[1])]; b = [json.loads(l)["loss"] for l in open(sys.argv[2])]
assert len(a) == 30 and a == b, (a, b)
PYEOF'
	check "$m: the loss of each of 30 steps, bf16 within 2% of fp32's" \
		'$PY - "$T/$m-fp32.log" "$T/$m-bf16.log" <<PYEOF
import sys, json
a = [json.loads(l) for l in open(sys.argv[1])]; b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b) == 30
d = [abs(x["loss"] - y["loss"]) / x["loss"] for x, y in zip(a, b)]
print("# worst step %d: %.2e" % (d.index(max(d)) + 1, max(d)), file=sys.stderr)
assert max(d) <= 0.02, d
assert a[-1]["loss"] < a[0]["loss"] and b[-1]["loss"] < b[0]["loss"], "no learning"
assert b[0]["system"]["precision"] == "bf16" and a[0]["system"]["precision"] == "fp32"
PYEOF'
	# a bf16 run whose input ends after 2 of 4 steps, resumed in fp32
	head -c $(($(wc -c < "$T/$m.mim") / 15)) "$T/$m.mim" > "$T/$m-2.mim"
	cp "$T/${m}0.st" "$T/$m-r.st"
	mim-step -c "$T/$m-r.st" -n 4 --lr 1e-3 --precision bf16 --log "$T/$m-r.log" "$T/$m-2.mim" 2>/dev/null
	check "$m: a bf16 checkpoint is F32, and resumes in fp32 (logged)" \
		'mim-info "$T/$m-r.st" | grep -q " F32 " && ! mim-info "$T/$m-r.st" | grep -q " BF16 " &&
		 mim-step -c "$T/$m-r.st" -n 4 --lr 1e-3 --precision fp32 --log "$T/$m-r.log" "$T/$m.mim" &&
		 $PY -c "
import json, sys; L = [json.loads(l) for l in open(sys.argv[1])]
assert [x[\"step\"] for x in L] == [1, 2, 3, 4], L
assert L[0][\"system\"][\"precision\"] == \"bf16\" and L[2][\"system\"][\"precision\"] == \"fp32\"
assert \"system\" not in L[1] and \"system\" not in L[3]" "$T/$m-r.log"'
	for p in fp32 bf16; do
		mim-encode -c "$T/${m}0.st" --precision $p "$T/$m.mim" > "$T/e$m-$p.mim" ||
			notok "$m: mim-encode --precision $p"
	done
	check "$m: mim-encode, bf16 latents within 2e-2 of fp32's (relative norm)" \
		'$PY - "$T/e$m-fp32.mim" "$T/e$m-bf16.mim" <<PYEOF
import sys, numpy as np, st
fa = list(st.read_frames(open(sys.argv[1], "rb"))); fb = list(st.read_frames(open(sys.argv[2], "rb")))
assert len(fa) == len(fb) == 30
x = np.concatenate([np.asarray(t["latent"], np.float64).ravel() for t, _ in fa])
y = np.concatenate([np.asarray(t["latent"], np.float64).ravel() for t, _ in fb])
r = np.linalg.norm(x - y) / np.linalg.norm(x)
print("# %.2e" % r, file=sys.stderr)
assert 1e-5 < r <= 2e-2, r
PYEOF'
done
