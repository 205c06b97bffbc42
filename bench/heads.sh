#!/bin/sh
# heads.sh -- what each prediction head costs in training: mim-step on
# swin-tiny at 192 px, batch 8, with the linear, mlp and swin-inverse
# heads, the heads taking turns over ROUNDS rounds of STEPS steps each.
#   bench/heads.sh [WORKDIR]      (after make; tools from build/bin)
#   env: ROUNDS (2), STEPS (5), MIM_THREADS (the library's default)
# Prints per head and round: img_per_s of every step after the first
# (mim-step --log), their median, and the CPU seconds (user + system) per
# image of the whole run, which other jobs on the machine disturb less
# than the wall clock; then the load average, since the wall clock of a
# shared machine means little without it.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$top/${MIM_BUILD:-build}/bin:$PATH"
W=${1:-/tmp/mim-heads-bench}
ROUNDS=${ROUNDS:-2}
STEPS=${STEPS:-5}
mkdir -p "$W"
cd "$W"
grep -m1 'model name' /proc/cpuinfo
echo "cpus $(nproc), MIM_THREADS ${MIM_THREADS:-(default)}, swin-tiny 192 px, batch 8, $STEPS steps"
TOP=$top /usr/bin/python3 - "$STEPS" <<'EOF'
import os, sys
sys.path.insert(0, os.environ["TOP"] + "/tests/ref")
import numpy as np, st
g = np.random.default_rng(1)
with open("b8.mim", "wb") as f:
    for _ in range(int(sys.argv[1])):
        m = (g.random((8, 6, 6)) < 0.6).astype(np.uint8).repeat(8, 1).repeat(8, 2)
        f.write(st.frame_bytes({"image": g.standard_normal((8, 3, 192, 192)).astype(np.float32),
                                "mask": m}))
EOF
for h in linear mlp swin-inverse; do
	mim-ckpt init --preset swin-tiny --head "$h" --seed 1 -o "$h.init.st"
done
r=1
while [ "$r" -le "$ROUNDS" ]; do
	for h in linear mlp swin-inverse; do
		cp "$h.init.st" "$h.st"
		rm -f "$h.log"
		/usr/bin/time -f "%U %S" -o "$h.time" \
		    mim-step -q --ckpt "$h.st" --steps "$STEPS" --lr 1e-4 --save-every 0 --log "$h.log" b8.mim
		/usr/bin/python3 - "$h" "$r" "$STEPS" <<'EOF'
import json, sys, statistics
h, r, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ips = [json.loads(l)["img_per_s"] for l in open(h + ".log")][1:]
u, s = map(float, open(h + ".time").read().split()[-2:])
load = open("/proc/loadavg").read().split()[0]
print("%-13s round %s: img_per_s %s  median %.2f  cpu_s/img %.3f  load %s"
      % (h, r, " ".join("%.2f" % x for x in ips), statistics.median(ips), (u + s) / (8 * n), load))
EOF
	done
	r=$((r + 1))
done
