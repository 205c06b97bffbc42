#!/bin/sh
# precision.sh -- bf16 against fp32 over a whole run: mim-step --precision
# fp32 and --precision bf16 from the same checkpoint on the same frames (the
# wallpapers through mim-data and mim-mask, as bench/run.sh feeds them),
# then the loss of every step of the bf16 run relative to the fp32 run's.
# The suite checks 30 steps of a small model (tests/cmd/t-precision.sh);
# this is the long check on a real one.
#
#   bench/precision.sh [MODEL [STEPS [BATCH]]]   default: vit-tiny 300 8
#
# Prints one JSON line (the worst and the mean relative difference, the
# step of the worst, the first and last losses of both runs, each run's
# median img/s, the machine) and keeps the two logs in
# bench/out/precision-DATE/ (or BENCH_OUT).
set -eu
cd "$(dirname "$0")/.."
BIN=$(pwd)/${MIM_BUILD:-build}/bin
PY=/usr/bin/python3
M=${1:-vit-tiny} N=${2:-300} B=${3:-8}
OUT=${BENCH_OUT:-$(pwd)/bench/out/precision-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
case $M in vit-*) p=16 ;; *) p=4 ;; esac

"$BIN/mim-ckpt" init --preset "$M" --img-size 192 -o "$W/init.st"
# enough epochs of the wallpapers for N frames, decoded once
"$BIN/mim-data" -q -b "$B" -s 192 --drop-last -e 0 --shuffle 256 --seed 1 /usr/share/wallpapers 2>"$W/data.err" |
    "$BIN/mim-mask" -p "$p" -m 32 -r 0.6 | head -c $((N * (B * 3 * 192 * 192 * 4 + 65536))) >"$W/in.mim" || true
for pr in fp32 bf16; do
	echo "# $M batch $B: $N steps, $pr, load $(cut -d' ' -f1 /proc/loadavg)" >&2
	cp "$W/init.st" "$W/$pr.st"
	"$BIN/mim-step" -q -c "$W/$pr.st" -n "$N" --lr 1e-4 --warmup-steps 20 --save-every 0 \
	    --precision "$pr" --log "$OUT/$pr.log" "$W/in.mim"
done
$PY - "$OUT/fp32.log" "$OUT/bf16.log" "$M" "$B" <<'EOF'
import json, statistics, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b), (len(a), len(b))
d = [abs(x["loss"] - y["loss"]) / x["loss"] for x, y in zip(a, b)]
w = max(range(len(d)), key=d.__getitem__)
print(json.dumps({"model": sys.argv[3], "batch": int(sys.argv[4]), "steps": len(d),
                  "worst_rel": d[w], "worst_step": w + 1, "mean_rel": statistics.mean(d),
                  "within_2pct": all(x <= 0.02 for x in d),
                  "fp32_loss": [a[0]["loss"], a[-1]["loss"]], "bf16_loss": [b[0]["loss"], b[-1]["loss"]],
                  "fp32_img_per_s": statistics.median(x["img_per_s"] for x in a[1:]),
                  "bf16_img_per_s": statistics.median(x["img_per_s"] for x in b[1:]),
                  "system": a[0]["system"]}))
EOF
