#!/bin/sh
# data.sh -- mim-data's decode + SimMIM augment throughput on real photos
# (Debian's wallpapers, the largest version of each) beside torchvision's
# SimMIM transform (PIL) on the same files in the same run.
#   bench/data.sh [REPEATS [EPOCHS]]     (after make; default 3 repeats, 2 epochs)
# Prints one line per run and a summary: images/s (wall) and images per
# CPU second (user + sys, all threads/processes), for mim-data with 1 and
# 2 threads (and "1,fast": --shrink-max 4 --shrink-min 2) and torchvision
# with 1 and 2 processes, on the JPEG photos and on every wallpaper (JPEG
# and PNG). Figures go to bench/DATA.md by hand.
set -eu
cd "$(dirname "$0")/.."
BIN=${MIM_BUILD:-build}/bin
R=${1:-3}
E=${2:-2}
PY=/usr/bin/python3
scripts/deps.sh bench
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

# the largest file of each wallpaper (and of its dark variant)
$PY - "$W" <<'PYEOF'
import glob, os, re, sys, tarfile
best = {}
for f in glob.glob("/usr/share/wallpapers/*/contents/images*/*.*"):
    m = re.match(r"(\d+)x(\d+)\.(jpg|png)$", os.path.basename(f))
    if not m:
        continue
    k = f.split("/")[4] + ("-dark" if "images_dark" in f else "")
    px = int(m[1]) * int(m[2])
    if k not in best or px > best[k][0]:
        best[k] = (px, f)
with tarfile.open(sys.argv[1] + "/jpeg.tar", "w") as tj, tarfile.open(sys.argv[1] + "/all.tar", "w") as ta:
    for k in sorted(best):
        f = best[k][1]
        name = k + os.path.splitext(f)[1]
        ta.add(f, name)
        if f.endswith(".jpg"):
            tj.add(f, name)
PYEOF
for set in jpeg all; do
	n=$(tar tf "$W/$set.tar" | wc -l)
	echo "# $set: $n images, $(du -m "$W/$set.tar" | cut -f1) MB, $E epochs per run"
done

mim() {	# mim SET THREADS [FLAG...]
	set=$1 j=$2
	shift 2
	/usr/bin/time -f "%e %U %S" -o "$W/t" "$BIN/mim-data" -q -j "$j" -b 32 -e "$E" --seed "$r" \
		"$@" "$W/$set.tar" > /dev/null
	n=$(( $(tar tf "$W/$set.tar" | wc -l) * E ))
	awk -v t="$j${1:+,fast}" -v n="$n" '{printf "mim-data threads=%s images=%d wall=%.2f cpu=%.2f img/s=%.1f img/cpu-s=%.1f\n",
		t, n, $1, $2 + $3, n / $1, n / ($2 + $3)}' "$W/t"
}

for set in jpeg all; do
	r=0
	while [ $r -lt "$R" ]; do
		r=$((r + 1))
		for cfg in m1 m2 f1 t1 t2; do
			case $cfg in
			m1) mim $set 1 ;;
			m2) mim $set 2 ;;
			f1) mim $set 1 --shrink-max 4 --shrink-min 2 ;;
			t1) $PY bench/data_torchvision.py --procs 1 --epochs "$E" "$W/$set.tar" ;;
			t2) $PY bench/data_torchvision.py --procs 2 --epochs "$E" "$W/$set.tar" ;;
			esac | sed "s/^/$set run=$r /"
		done
	done
done | tee "$W/log"

echo "# summary: min / median / max over $R runs"
awk '{key=$1" "$3" "$4; split($8,a,"="); split($9,b,"="); s[key]=s[key]" "a[2]; c[key]=c[key]" "b[2]}
     END {for (k in s) print k "|" s[k] "|" c[k]}' "$W/log" | sort |
while IFS='|' read -r key ips ipc; do
	m() { echo "$1" | tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {printf "%.1f / %.1f / %.1f", v[1], v[int((NR+1)/2)], v[NR]}'; }
	printf '%-28s img/s %-22s img/cpu-s %s\n' "$key" "$(m "$ips")" "$(m "$ipc")"
done
