#!/bin/sh
# resume.sh -- how long a resumed run takes to train its first step, with
# `mim-data --resume` against replaying the stream from its start, at
# step 100 and at step 900 of a 1000-step run; and whether the resumed run
# ends byte-identical to an uninterrupted one.
#   bench/resume.sh [WORKDIR]      (after make; tools from build/bin)
# Data: Debian's wallpapers (plasma-workspace-wallpapers) as tar shards of
# JPEGs with the shorter side 480 px (ImageNet's photos are about that
# size); model: micro-vit at 32 px, batch 16, so that the time goes to the
# data, which is what resume is about.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$top/${MIM_BUILD:-build}/bin:$PATH"
W=${1:-/tmp/mim-resume-bench}
rm -rf "$W"
mkdir -p "$W/photos"
cd "$W"
for f in /usr/share/wallpapers/*/contents/images/*.jpg; do
	ln -s "$f" "photos/$(echo "$f" | cut -d/ -f5)_$(basename "$f")"
done
mim-data -q --keep-aspect --size 480 --format jpg --per-shard 40 --out 'sh-%02d.tar' photos
echo "$(ls photos | wc -l) photos into $(ls sh-*.tar | wc -l) shards" >&2
grep -m1 'model name' /proc/cpuinfo >&2
mim-ckpt init --preset micro-vit --seed 1 -o init.st

data() { mim-data -q --size 32 --batch 16 --drop-last --epochs 0 --shuffle 100 --seed 5 "$@" sh-*.tar; }
step() { mim-step -q --ckpt "$1" --steps 1000 --lr 1e-3 --warmup-steps 20 --save-every 100 --log "$2" -; }
frames() {	# pass the first $1 frames
	python3 -c "
import struct, sys
i, o = sys.stdin.buffer, sys.stdout.buffer
for _ in range($1):
    h = i.read(8)
    if len(h) < 8: break
    (n,) = struct.unpack('<Q', h)
    hdr = i.read(n)
    import json
    size = max([v['data_offsets'][1] for k, v in json.loads(hdr).items() if k != '__metadata__'], default=0)
    o.write(h + hdr + i.read(size))
"
}
now() { date +%s.%N; }

t=$(now)
cp init.st full.st
data | mim-mask --ckpt full.st | step full.st full.log
echo "uninterrupted 1000 steps: $(awk "BEGIN{print $(now) - $t}") s" >&2

for at in 100 900; do
	cp init.st cut$at.st
	data | frames $at | mim-mask --ckpt cut$at.st | step cut$at.st cut$at.log 2>/dev/null || true
	for how in replay resume; do
		cp cut$at.st $how$at.st
		rm -f $how$at.log
		flag=""
		[ $how = resume ] && flag="--resume $how$at.st"
		t0=$(now)
		(data $flag | mim-mask --ckpt $how$at.st | step $how$at.st $how$at.log) &
		pid=$!
		# the first step after the resume is logged: step at+1
		until grep -q "\"step\":$((at + 1))," $how$at.log 2>/dev/null; do sleep 0.05; done
		t1=$(now)
		wait $pid
		same=$(cmp -s full.st $how$at.st && echo "byte-identical to the uninterrupted run" || echo "DIFFERS from the uninterrupted run")
		printf 'resume at step %d, %-7s first step after %.2f s; end %s\n' $at $how \
		    "$(awk "BEGIN{print $t1 - $t0}")" "$same"
	done
done
