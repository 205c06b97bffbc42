#!/bin/sh
# run.sh -- training and encoding throughput of mim against PyTorch on this
# machine, in one run (bench/README.md; the committed figures are in
# bench/RESULTS.md).
#
#   bench/run.sh [MODEL...]      models: vit-tiny swin-tiny vit-base swin-base
#                                (default all four); `make bench` runs all
#
# For each model at 192 px and each batch size: mim-step images/s (forward,
# loss, backward, clipping, AdamW: the log's per-step rate) and mim-encode
# images/s (time between output frames), each with its peak RSS; the same
# step and encoder forward in PyTorch (bench/torch_step.py on the reference
# modules of tests/ref, same checkpoint, same frames, same thread count,
# OMP_WAIT_POLICY=PASSIVE); the analytic FLOPs per image (bench/flops.py);
# and each rate as a fraction of cblas_sgemm's peak (bench/sgemm.c),
# measured in the same run. Rates are medians of the steps after warm-up,
# the best of BENCH_ROUNDS rounds in which mim and PyTorch take turns.
# Then the cost of the pipe (mim-data | mim-mask | mim-step against a
# stream file) and a per-kernel profile of one step of each model
# (bench/stepbench.c).
#
# The input is real photos: Debian's wallpapers (/usr/share/wallpapers)
# through mim-data (SimMIM's crop and flip) and mim-mask (ratio 0.6, mask
# patch 32).
#
# Environment:
#   BENCH_BATCHES   batch sizes (default "8 32")
#   BENCH_THREADS   threads for both sides (default: mim's, a thread a core)
#   BENCH_ROUNDS    rounds per row, the two sides taking turns; each side's
#                   figure is its best round (default 2)
#   BENCH_WARMUP, BENCH_STEPS   steps before timing / timed (default 2 and 5
#                   for the tiny models, 1 and 3 for the base ones)
#   BENCH_MEM_GB    skip a row whose estimated need exceeds this (default:
#                   MemAvailable)
#   BENCH_SKIP      words of: cache rows encode torch pipe sweep profile
#                   (parts to leave out; "rows" leaves out the table of
#                   models, e.g. to time the pipe alone; "encode" the
#                   encoder columns of both sides, where time is short)
#   BENCH_OMP       PyTorch's OpenMP wait policies to try, the faster kept
#                   (default "PASSIVE ACTIVE")
#   BENCH_IMAGES    the photos (default /usr/share/wallpapers; a bundle's
#                   own bench/images where the wallpapers are not installed)
#   BENCH_PYTHON    the Python with torch (default /usr/bin/python3; from a
#                   bundle, python3 on PATH)
#   BENCH_OUT       output directory (default bench/out/DATE)
#   BENCH_PRECISIONS  fp32 and/or bf16 (default "fp32 bf16" where the CPU has
#                   AMX or AVX512-BF16, else fp32): mim's --precision and
#                   PyTorch's torch.autocast(bfloat16), each row per precision
#   BENCH_TORCH_CORETYPE  OPENBLAS_CORETYPE for PyTorch's runs. Default:
#                   the core mim's own check chose where it corrected the
#                   OpenBLAS model table (Debian's PyTorch runs Debian's
#                   OpenBLAS, and on a CPU newer than its table runs the
#                   Prescott kernels too: 70 against 328 GFLOP/s at 1024^2
#                   on an Emerald Rapids); "as-is" leaves PyTorch's BLAS as
#                   it comes. Unset, a user's OPENBLAS_CORETYPE is kept.
# Writes BENCH_OUT/rows.jsonl, BENCH_OUT/table.md (also printed), profiles
# and the raw logs.
set -eu
cd "$(dirname "$0")/.."
TOP=$(pwd)
BUILD=${MIM_BUILD:-build}
BIN=$TOP/$BUILD/bin
PY=${BENCH_PYTHON:-/usr/bin/python3}
# from a relocatable bundle (make bundle: mim/bench/run.sh beside mim/bin,
# the bench programs prebuilt in mim/libexec/bench): its tools, and the
# PyTorch of this machine (python3 on PATH unless BENCH_PYTHON says)
BUNDLE=
if [ -x "$TOP/bin/mim-step" ] && [ -d "$TOP/libexec/bench" ]; then
	BUNDLE=1
	BIN=$TOP/bin
	BUILD=$TOP/libexec
	export LD_LIBRARY_PATH="$TOP/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
	[ -n "${BENCH_PYTHON:-}" ] || PY=python3
fi
IMAGES=${BENCH_IMAGES:-/usr/share/wallpapers}
[ -d "$IMAGES" ] || [ -z "$BUNDLE" ] || IMAGES=$TOP/bench/images
MODELS=${*:-vit-tiny swin-tiny vit-base swin-base}
BATCHES=${BENCH_BATCHES:-8 32}
# the machine as mim sees it: its threads by default (a thread a core of
# the CPUs this process may use), bf16 products, OpenBLAS's kernels
SYS=$(env -u MIM_THREADS "$BIN/mim-info" --system)
NT=${BENCH_THREADS:-$(echo "$SYS" | sed -n 's/^threads: //p')}
NT=${NT:-$(nproc)}
ROUNDS=${BENCH_ROUNDS:-2}
SKIP=${BENCH_SKIP:-}
if [ -z "${BENCH_PRECISIONS:-}" ] && echo "$SYS" | grep -q 'bf16 products yes'; then
	BENCH_PRECISIONS="fp32 bf16"
fi
PRECS=${BENCH_PRECISIONS:-fp32}
# the anchor's BLAS: the kernels mim's correction gave mim (see above)
TCORE=${BENCH_TORCH_CORETYPE:-}
if [ -z "$TCORE" ] && [ -z "${OPENBLAS_CORETYPE:-}" ]; then
	TCORE=$(echo "$SYS" | sed -n 's/^openblas: core \([A-Za-z0-9]*\) (corrected by mim.*/\1/p')
fi
[ "$TCORE" != as-is ] || TCORE=
OUT=${BENCH_OUT:-$TOP/bench/out/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
ROWS=$OUT/rows.jsonl
: >"$ROWS"
export MIM_THREADS=$NT
TIME="/usr/bin/time"
# a bundle brings its own GNU time for machines without it
[ -x "$TIME" ] || [ -z "$BUNDLE" ] || TIME=$TOP/libexec/time
for m in $MODELS; do
	case $m in vit-tiny|swin-tiny|vit-base|swin-base) ;;
	*) echo "run.sh: unknown model '$m' (vit-tiny swin-tiny vit-base swin-base)" >&2; exit 2 ;;
	esac
done
[ -x "$BIN/mim-step" ] || { echo "run.sh: no $BIN/mim-step: run make first" >&2; exit 1; }
[ -x "$TIME" ] || { echo "run.sh: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }
skipping() { case " $SKIP " in *" $1 "*) return 0 ;; esac; return 1; }
log() { echo "# $*" >&2; }
load() { cut -d' ' -f1 /proc/loadavg; }

# ---- the bench programs, linked with libmim -----------------------------
[ -n "$BUNDLE" ] || MIM_BUILD=$BUILD scripts/benchprogs.sh

# ---- the machine ----------------------------------------------------------
{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "cpu: $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1), $(nproc) CPUs," \
	    "$(grep -o -w -E 'avx512f|avx2|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
	echo "memory: $(awk '/MemTotal/ {printf "%.1f GB", $2/1048576}' /proc/meminfo)"
	echo "kernel: $(uname -sr)"
	echo "cc: $(cc --version 2>/dev/null | head -1 || echo none)"
	echo "openblas: $(dpkg-query -W -f '${Version}' libopenblas0-pthread 2>/dev/null || echo '?')"
	echo "torch: $($PY -c 'import torch; print(torch.__version__)' 2>/dev/null || echo none)"
	if [ -n "$TCORE" ]; then
		echo "torch blas: OPENBLAS_CORETYPE=$TCORE (the core mim corrected its own OpenBLAS to)"
	else
		echo "torch blas: as it comes${OPENBLAS_CORETYPE:+ (OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE)}"
	fi
	echo "threads: $NT"
	echo "precisions: $PRECS"
	echo "mim-info --system: $("$BIN/mim-info" --system --json)"
	echo "mim: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- lib include cmd 2>/dev/null || echo ' (modified)')"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# ---- the ceiling ------------------------------------------------------------
sgemm() {	# sgemm TAG
	log "sgemm ceiling ($1), load $(load)"
	"$BUILD/bench/sgemm" -t "$NT" >"$OUT/sgemm-$1.json"
	$PY -c "import json,sys; d=json.load(open(sys.argv[1])); d['tag']=sys.argv[2]; d['load']=float(sys.argv[3]); print(json.dumps({'kind':'sgemm',**d}))" \
	    "$OUT/sgemm-$1.json" "$1" "$(load)" >>"$ROWS"
}
sgemm start

# ---- the products of a step with their operands hot and cold in cache ------
if ! skipping cache; then
	# M N K of a Linear at batch 8, 192 px: vit-tiny fc1, vit-base qkv and
	# fc1, swin-tiny stage-0 fc1, swin-base stage-2 fc1
	for shape in "1160 768 192" "1160 2304 768" "1160 3072 768" "18432 384 96" "1152 2048 512"; do
		log "gemm hot and cold: $shape, load $(load)"
		"$BUILD/bench/gemmcold" -t "$NT" $shape | sed 's/^{/{"kind":"cache",/' >>"$ROWS"
	done
fi

# ---- the input: real photos -----------------------------------------------
memavail_gb() { awk '/MemAvailable/ {printf "%d", $2/1048576}' /proc/meminfo; }
MEMGB=${BENCH_MEM_GB:-$(memavail_gb)}
NIMG=$(find -L "$IMAGES" -type f \( -name '*.jpg' -o -name '*.png' -o -name '*.jpeg' \) | wc -l)
[ "$NIMG" -gt 0 ] || { echo "run.sh: no photos in $IMAGES" >&2; exit 1; }
stream() {	# stream B P -> path of a stream of B-image frames masked at patch P
	s=$W/img$1.mim
	if [ ! -s "$s" ]; then
		# an epoch of at least two whole batches (a bundle's dozen photos
		# named k times), and enough epochs for 12 frames (the most a row
		# or the pipe reads), at least two
		k=$(( (2 * $1 + NIMG - 1) / NIMG ))
		e=$(( (12 * $1 + k * NIMG - 1) / (k * NIMG) ))
		[ "$e" -ge 2 ] || e=2
		set -- "$1" "$2" "$IMAGES"
		i=1; while [ "$i" -lt "$k" ]; do set -- "$@" "$IMAGES"; i=$((i + 1)); done
		log "decoding $NIMG photos ($k times an epoch) into batches of $1, $e epochs"
		b=$1 pp=$2; shift 2
		"$BIN/mim-data" -q -b "$b" -s 192 --drop-last -e "$e" --shuffle 256 --seed 1 \
		    "$@" >"$s" 2>"$W/data.err"
		set -- "$b" "$pp"
	fi
	t=$W/b$1p$2.mim
	[ -s "$t" ] || "$BIN/mim-mask" -p "$2" -m 32 -r 0.6 "$s" >"$t"
	echo "$t"
}

# median of numbers on stdin
median() { sort -g | awk '{v[NR]=$1} END {if (NR == 0) print "null"; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

rss_of() { awk '{print $1}' "$1"; }	# /usr/bin/time -f '%M ...' output, KiB
# the median img_per_s of the last N steps of a mim-step --log
log_ips() { tail -n "$2" "$1" | sed 's/.*"img_per_s":\([0-9.e+-]*\).*/\1/' | median; }
# PyTorch's step or encoder (MODE) on the row's checkpoint and stream, at
# its best setting: each OpenMP wait policy of BENCH_OMP (default PASSIVE
# and ACTIVE; which is faster depends on the machine and the core count),
# the faster one kept; its JSON in $W/torch.json (with "omp"), its
# /usr/bin/time in $W/torch.time
torch_run() {
	best_ips=-1
	for pol in ${BENCH_OMP:-PASSIVE ACTIVE}; do
		log "$m batch $B $pr round $r: PyTorch $1, OMP_WAIT_POLICY=$pol, load $(load)"
		OMP_WAIT_POLICY=$pol env ${TCORE:+OPENBLAS_CORETYPE=$TCORE} \
		    $TIME -f '%M %e %U %S' -o "$W/torch.time.$pol" \
		    $PY bench/torch_step.py --ckpt "$ck" --stream "$s" --mode "$1" --threads "$NT" \
		    --precision "$pr" --warmup "$wu" --steps "$st" >"$W/torch.json.$pol"
		# kept as it comes, so that a run cut short still shows it
		cp "$W/torch.json.$pol" "$OUT/torch-$m-b$B-$pr-r$r-$1-$pol.json"
		ips=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['img_per_s'])" "$W/torch.json.$pol")
		if [ "$(echo "$ips $best_ips" | awk '{print ($1 > $2)}')" = 1 ]; then
			best_ips=$ips
			$PY -c "import json,sys; d=json.load(open(sys.argv[1])); d['omp']=sys.argv[2]; print(json.dumps(d))" \
			    "$W/torch.json.$pol" "$pol" >"$W/torch.json"
			cp "$W/torch.time.$pol" "$W/torch.time"
		fi
	done
}
torch_ips() { $PY -c "import json,sys; print(json.load(open(sys.argv[1]))['img_per_s'])" "$W/torch.json"; }
maxof() { echo "${1:-0} $2" | awk '{print ($1 > $2 ? $1 : $2)}'; }
best() { if [ $# -eq 0 ]; then echo null; else printf '%s\n' "$@" | sort -g | tail -n 1; fi; }
jlist() { printf '['; sep=; for x in "$@"; do printf '%s%s' "$sep" "$x"; sep=,; done; printf ']'; }

# the activations of a training step, roughly, in GB: to skip what cannot fit
need_gb() {	# need_gb MODEL B
	case $1 in
	vit-tiny) echo "$2" | awk '{printf "%d", 1 + $1 * 0.03}' ;;
	swin-tiny) echo "$2" | awk '{printf "%d", 1 + $1 * 0.08}' ;;
	vit-base) echo "$2" | awk '{printf "%d", 3 + $1 * 0.16}' ;;
	swin-base) echo "$2" | awk '{printf "%d", 3 + $1 * 0.18}' ;;
	esac
}

for m in $MODELS; do
	skipping rows && break
	case $m in
	vit-*) p=16 ;;
	*) p=4 ;;
	esac
	case $m in
	*-tiny) wu=${BENCH_WARMUP:-2} st=${BENCH_STEPS:-5} ;;
	*) wu=${BENCH_WARMUP:-1} st=${BENCH_STEPS:-3} ;;
	esac
	ck=$W/$m.ckpt
	"$BIN/mim-ckpt" init --preset "$m" --img-size 192 -o "$ck"
	fl=$($PY bench/flops.py "$ck")
	for B in $BATCHES; do
		if [ "$(need_gb "$m" "$B")" -gt "$MEMGB" ]; then
			log "$m batch $B: skipped, needs about $(need_gb "$m" "$B") GB, $MEMGB GB available"
			echo "{\"kind\":\"skip\",\"model\":\"$m\",\"batch\":$B,\"need_gb\":$(need_gb "$m" "$B"),\"avail_gb\":$MEMGB}" >>"$ROWS"
			continue
		fi
		s=$(stream "$B" "$p")
		n=$((wu + st))
		for pr in $PRECS; do
			# ROUNDS rounds, each side in turn (mim, PyTorch, mim, ...), so that
			# a slow spell of the machine falls on both; each side's figure is
			# its best round, and every round is kept in rows.jsonl
			ips_l= rss=0 eips_l= erss=0 tstep_l= trss=null tenc_l= terss=null
			r=1
			while [ "$r" -le "$ROUNDS" ]; do
				# mim-step: the log's img/s of each step (the time from one
				# step's end to the next, reading the next frame included)
				log "$m batch $B $pr round $r: mim-step, $wu+$st steps, load $(load)"
				cp "$ck" "$W/run.ckpt"
				rm -f "$W/step.log"
				$TIME -f '%M %e %U %S' -o "$W/step.time" "$BIN/mim-step" -q -c "$W/run.ckpt" -n "$n" \
				    --save-every 0 --lr 1e-4 -t "$NT" --precision "$pr" --log "$W/step.log" "$s"
				cp "$W/step.log" "$OUT/$m-b$B-$pr-r$r-step.log"
				ips_l="$ips_l $(log_ips "$W/step.log" "$st")"
				rss=$(maxof "$rss" "$(rss_of "$W/step.time")")
				if ! skipping encode; then
				# mim-encode: time between output frames
				log "$m batch $B $pr round $r: mim-encode, load $(load)"
				$TIME -f '%M %e %U %S' -o "$W/enc.time" "$BIN/mim-encode" -c "$ck" -t "$NT" --precision "$pr" "$s" |
				    $PY bench/frametime.py >"$W/enc.json"
				eips_l="$eips_l $($PY -c "import json,sys,statistics as S; d=json.load(open(sys.argv[1])); g=d['gaps'][int(sys.argv[2])-1:]; print(d['batch']/S.median(g))" "$W/enc.json" "$wu")"
				erss=$(maxof "$erss" "$(rss_of "$W/enc.time")")
				fi
				if ! skipping torch; then
					torch_run step
					tstep_l="$tstep_l $(torch_ips)"
					trss=$(maxof "${trss#null}" "$(rss_of "$W/torch.time")")
					if ! skipping encode; then
						torch_run encode
						tenc_l="$tenc_l $(torch_ips)"
						terss=$(maxof "${terss#null}" "$(rss_of "$W/torch.time")")
					fi
				fi
				r=$((r + 1))
			done
			ips=$(best $ips_l) eips=$(best $eips_l) tstep=$(best $tstep_l) tenc=$(best $tenc_l)
			echo "{\"kind\":\"row\",\"model\":\"$m\",\"batch\":$B,\"precision\":\"$pr\",\"threads\":$NT,\"warmup\":$wu,\"steps\":$st,\"flops\":$fl,\"step_ips\":$ips,\"step_rss_kb\":$rss,\"encode_ips\":$eips,\"encode_rss_kb\":$erss,\"torch_step_ips\":$tstep,\"torch_step_rss_kb\":$trss,\"torch_encode_ips\":$tenc,\"torch_encode_rss_kb\":$terss,\"rounds\":{\"step\":$(jlist $ips_l),\"encode\":$(jlist $eips_l),\"torch_step\":$(jlist $tstep_l),\"torch_encode\":$(jlist $tenc_l)},\"load\":$(load)}" >>"$ROWS"
			tail -n 1 "$ROWS" >&2
		done
	done
done

# ---- the pipe: mim-data | mim-mask | mim-step against the file ----------
if ! skipping pipe; then
	m=${BENCH_PIPE_MODEL:-vit-tiny} B=${BENCH_PIPE_BATCH:-32} p=16
	case $m in swin-*) p=4 ;; esac
	ck=$W/$m.ckpt
	[ -s "$ck" ] || "$BIN/mim-ckpt" init --preset "$m" --img-size 192 -o "$ck"
	s=$(stream "$B" "$p")
	n=$($PY bench/frametime.py --count "$s")
	n=$((n > 9 ? 9 : n))
	pipe_run() {	# pipe_run NAME: reads the stream on stdin
		cp "$ck" "$W/run.ckpt"
		rm -f "$W/pipe.log"
		"$BIN/mim-step" -q -c "$W/run.ckpt" -n "$n" --save-every 0 --lr 1e-4 -t "$NT" \
		    --log "$W/pipe.log" -
		cp "$W/pipe.log" "$OUT/pipe-$1.log"
		# the share of each step spent getting its frame (input_s over
		# the step's time, B / img_per_s), median, to $W/frac
		tail -n $((n - 2)) "$W/pipe.log" |
		    sed 's/.*"img_per_s":\([0-9.e+-]*\),"input_s":\([0-9.e+-]*\).*/\1 \2/' |
		    awk -v B="$B" '{print $2 * $1 / B}' | median >"$W/frac"
		log_ips "$W/pipe.log" $((n - 2))
	}
	# ROUNDS rounds of the three, taking turns; each one's best round
	file_l= framed_l= full_l= file_f= framed_f= full_f=
	r=1
	while [ "$r" -le "$ROUNDS" ]; do
		log "pipe round $r: $m batch $B, $n steps each, load $(load)"
		file_l="$file_l $(pipe_run file-r$r <"$s")"
		file_f="$file_f $(cat "$W/frac")"
		framed_l="$framed_l $(cat "$W/img$B.mim" | "$BIN/mim-mask" -p "$p" -m 32 -r 0.6 | pipe_run framed-r$r)"
		framed_f="$framed_f $(cat "$W/frac")"
		# the whole pipeline from the photos (decoding competes for the cores)
		full_l="$full_l $("$BIN/mim-data" -q -b "$B" -s 192 --drop-last -e 2 --shuffle 256 --seed 1 \
		    "$IMAGES" 2>/dev/null | "$BIN/mim-mask" -p "$p" -m 32 -r 0.6 | pipe_run full-r$r)"
		full_f="$full_f $(cat "$W/frac")"
		r=$((r + 1))
	done
	file=$(best $file_l) framed=$(best $framed_l) full=$(best $full_l)
	echo "{\"kind\":\"pipe\",\"model\":\"$m\",\"batch\":$B,\"steps\":$n,\"file_ips\":$file,\"framed_ips\":$framed,\"full_ips\":$full,\"rounds\":{\"file\":$(jlist $file_l),\"framed\":$(jlist $framed_l),\"full\":$(jlist $full_l)},\"input_share\":{\"file\":$(jlist $file_f),\"framed\":$(jlist $framed_f),\"full\":$(jlist $full_f)},\"load\":$(load)}" >>"$ROWS"
	tail -n 1 "$ROWS" >&2
fi

# ---- thread sweep: vit-tiny, batch 32, 1, 2, 4, ... BENCH_THREADS ---------
# (in process, both sides: bench/stepbench.c and torch_step.py on the same
# checkpoint; what scaling the pool and the products give)
if ! skipping sweep; then
	ck=$W/sweep.ckpt
	"$BIN/mim-ckpt" init --preset vit-tiny --img-size 192 -o "$ck"
	s=$(stream 32 16)
	m=vit-tiny B=32 wu=1 st=3 pr=fp32 r=sweep
	t=1
	while :; do
		log "sweep: $t threads, load $(load)"
		"$BUILD/bench/stepbench" -t "$t" -b 32 -w 1 -n 3 vit-tiny >"$OUT/sweep-mim-t$t.json"
		mips=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['img_per_s'])" "$OUT/sweep-mim-t$t.json")
		NT_SAVE=$NT NT=$t r=sweep-t$t
		torch_run step
		NT=$NT_SAVE
		echo "{\"kind\":\"sweep\",\"model\":\"vit-tiny\",\"batch\":32,\"threads\":$t,\"mim_ips\":$mips,\"torch_ips\":$(torch_ips),\"torch_omp\":\"$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['omp'])" "$W/torch.json")\",\"load\":$(load)}" >>"$ROWS"
		tail -n 1 "$ROWS" >&2
		[ "$t" -ge "$NT" ] && break
		t=$((t * 2))
		[ "$t" -gt "$NT" ] && t=$NT
	done
fi

# ---- profiles: where a step's time goes ---------------------------------
if ! skipping profile; then
	for m in $MODELS; do
		for pr in $PRECS; do
			log "profile: $m batch 8 $pr, load $(load)"
			"$BUILD/bench/stepbench" -t "$NT" -b 8 -w 1 -n 3 --profile --precision "$pr" "$m" \
			    >"$OUT/profile-$m-$pr.json" 2>"$OUT/profile-$m-$pr.txt" || true
		done
	done
fi

sgemm end
$PY bench/report.py "$ROWS" "$OUT/machine.txt" >"$OUT/table.md"
cat "$OUT/table.md"
log "results in $OUT"
