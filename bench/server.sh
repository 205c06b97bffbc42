#!/bin/sh
# server.sh -- the many-core measurements in one timed go, for a server lent
# for minutes (issue #17's 16-core targets): run from an unpacked bundle
# (make bundle; mim/bench/server.sh), against the PyTorch of that machine.
#
#   mim/bench/server.sh OUT.tar.gz
#
# In order, each part under its own time limit so that one slow part costs
# only itself: the machine (lscpu, mim-info --system, PyTorch's parallel
# info); what a job of the pool costs (bench/poolbench.c at 2, 4, ... all
# cores, one task a thread and 6144 short ones) and the step of vit-tiny at batch 32 with the workers spinning
# 50, 300 (the default) and 2000 us before they sleep (MIM_SPIN_US); the training step of vit-tiny and vit-base at batch 32 with the
# float products through oneDNN's sgemm and OpenBLAS's, taking turns
# (stepbench --ab-sgemm); the products' cut against the old
# one-dimensional cut (MIM_GEMM_CUT=1d): gemmcold on weight-gradient and
# forward shapes (three of them in bf16 too), the training step of
# vit-tiny and swin-base at batch 32, the two cuts taking turns, and
# swin-base in bf16 (stepbench --ab-cut); vit-base in bf16, and vit-tiny in float, with the products cut
# over the pool against oneDNN's own OpenMP team (stepbench --ab-blas); the
# step of vit-tiny and swin-tiny at batch 32 profiled on all cores beside
# its forecast (stepbench --forecast: the work's division alone), joined
# kernel by kernel (bench/fcjoin.awk); the
# thread sweep of vit-tiny at batch 32 (1, 2, 4, ... threads); the four
# models at batch 32, fp32 and bf16, training step, both sides
# (bench/run.sh, one round, encoder columns left out); per-kernel profiles
# of the base models at batch 32. Whatever finished is packed into
# OUT.tar.gz with the tables (bench/report.py), also after a time-out.
#
# Environment: SERVER_PARTS (words of: pool cut forecast sweep rows profile;
# default all six), SERVER_THREADS (default: mim's, a thread a core), SERVER_MODELS (default
# the four, base ones first), SERVER_PROFILE (models to profile, default vit-base
# swin-base), SERVER_T_POOL, SERVER_T_CUT, SERVER_T_FORECAST, SERVER_T_SWEEP,
# SERVER_T_ROWS, SERVER_T_PROFILE (seconds, default 45, 150, 90, 110, 330, 40);
# BENCH_PYTHON as for run.sh.
set -u
cd "$(dirname "$0")/.."
TOP=$(pwd)
out=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
PY=${BENCH_PYTHON:-python3}
R=$(mktemp -d)
export LD_LIBRARY_PATH="$TOP/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# mim's own default: a thread a core of the CPUs this process may use
NT=${SERVER_THREADS:-$(env -u MIM_THREADS "$TOP/bin/mim-info" --system | sed -n 's/^threads: //p')}
NT=${NT:-$(nproc)}
log() { echo "# server.sh: $* ($(date -u +%H:%M:%S))" >&2; }

pack() {
	for d in sweep rows; do
		[ -s "$R/$d/rows.jsonl" ] && [ ! -s "$R/$d/table.md" ] &&
		    $PY bench/report.py "$R/$d/rows.jsonl" "$R/$d/machine.txt" >"$R/$d/table.md" 2>&1
	done
	tar -C "$R" -czf "$out" .
	log "packed $out"
}
trap pack EXIT

log "machine"
{
	lscpu 2>/dev/null || grep -m1 'model name' /proc/cpuinfo
	echo "nproc: $(nproc)"
	"$TOP/bin/mim-info" --system
	$PY -c 'import torch; print("torch", torch.__version__); print(torch.__config__.parallel_info()); print(torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "")'
} >"$R/machine.txt" 2>&1

part() { case " ${SERVER_PARTS:-pool cut forecast sweep rows profile} " in *" $1 "*) return 0 ;; esac; return 1; }

# timed NAME LIMIT SCRIPT: SCRIPT by sh under timeout LIMIT, with $B the
# bench programs, $0 the bundle, $1 the part's folder $R/NAME and
# $SERVER_NT the threads; its output in $R/NAME.log
timed() {
	mkdir -p "$R/$1"
	SERVER_NT=$NT timeout -k 5 "$2" sh -c "B=\$0/libexec/bench
$3" "$TOP" "$R/$1" >"$R/$1.log" 2>&1
	log "$1 done: rc $?"
}

part pool && {
log "pool: a job's cost, and the workers' spin before they sleep, $NT threads"
timed pool "${SERVER_T_POOL:-45}" '
	# jobs of one 20 us task a thread, 5 us of the caller between them;
	# and of 6144 tasks of 2 us (Swin-T stage 0 attention, batch 32)
	t=2
	while :; do
		[ "$t" -lt "$SERVER_NT" ] || t=$SERVER_NT
		for sp in 50 300; do
			MIM_SPIN_US=$sp "$B/poolbench" -t "$t" -j 5000 -w 20 -g 5 |
			    sed "s/^{/{\"spin_us\":$sp,/"
		done
		"$B/poolbench" -t "$t" -n 6144 -j 20 -w 2
		[ "$t" -lt "$SERVER_NT" ] || break
		t=$((t * 2))
	done >"$1/poolbench.jsonl"
	for r in 1 2; do
		for sp in 50 300 2000; do
			MIM_SPIN_US=$sp "$B/stepbench" -t "$SERVER_NT" -b 32 -w 1 -n 3 vit-tiny |
			    sed "s/^{/{\"spin_us\":$sp,/"
		done
	done >"$1/spin.jsonl"'
}

part cut && {
log "cut: oneDNN's sgemm against OpenBLAS's; the grid against the 1-D cut, $NT threads"
timed cut "${SERVER_T_CUT:-150}" '
	# float products: the sgemm of oneDNN (the default) against that of OpenBLAS
	for m in vit-tiny vit-base; do
		"$B/stepbench" -t "$SERVER_NT" -b 32 -w 1 -n 4 --ab-sgemm "$m" >"$1/$m-ab-sgemm.json"
	done
	# weight gradients (M N K = out, in, tokens at batch 32) and forward products
	for s in "--dw 768 192 4640" "--dw 384 96 73728" "--dw 384 128 73728" "--dw 3072 768 4640" \
	    "--dw 2048 512 4608" "1160 768 3072" "4640 576 192" "73728 384 96" \
	    "--bf16 4640 768 768" "--bf16 --dw 768 768 4640" "--bf16 73728 384 96"; do
		for c in 1d auto; do
			[ $c = 1d ] && o=--1d || o=
			"$B/gemmcold" -t "$SERVER_NT" $o $s 8 | sed "s/^{/{\"cut\":\"$c\",/"
		done
	done >"$1/gemmcold.jsonl"
	for m in vit-tiny swin-base; do
		for r in 1 2; do
			for c in 1d auto; do
				MIM_GEMM_CUT=$c "$B/stepbench" -t "$SERVER_NT" -b 32 -w 1 -n 2 --profile "$m" \
				    >"$1/$m-$c-$r.json" 2>"$1/$m-$c-$r.txt"
			done
		done
	done
	"$B/stepbench" -t "$SERVER_NT" -b 32 -w 2 -n 6 --ab-cut --precision bf16 swin-base \
	    >"$1/swin-base-bf16-ab.json"
	"$B/stepbench" -t "$SERVER_NT" -b 32 -w 1 -n 4 --ab-blas --precision bf16 vit-base \
	    >"$1/vit-base-bf16-ab-blas.json"
	"$B/stepbench" -t "$SERVER_NT" -b 32 -w 1 -n 6 --ab-blas vit-tiny \
	    >"$1/vit-tiny-ab-blas.json"'
}

part forecast && {
log "forecast against measured, vit-tiny and swin-tiny batch 32, $NT threads"
timed forecast "${SERVER_T_FORECAST:-90}" '
	for m in vit-tiny swin-tiny; do
		"$B/stepbench" -t "$SERVER_NT" -b 32 -w 1 -n 2 --profile "$m" \
		    >"$1/$m-measured.json" 2>"$1/$m-measured.txt"
		"$B/stepbench" --forecast "$SERVER_NT" -b 32 -w 1 -n 2 --profile "$m" \
		    >"$1/$m-forecast.json" 2>"$1/$m-forecast.txt"
		"$0/bench/fcjoin.awk" "$1/$m-measured.txt" "$1/$m-forecast.txt" >"$1/$m.md"
	done'
}

part sweep && {
log "sweep, vit-tiny batch 32, 1..$NT threads"
BENCH_OUT=$R/sweep BENCH_THREADS=$NT BENCH_SKIP="cache rows pipe profile" \
    timeout -k 5 "${SERVER_T_SWEEP:-110}" bench/run.sh vit-tiny >"$R/sweep.log" 2>&1
log "sweep done: rc $?"
}

part rows && {
log "rows, batch 32, fp32 and bf16"
BENCH_OUT=$R/rows BENCH_THREADS=$NT BENCH_BATCHES=32 BENCH_ROUNDS=1 \
    BENCH_SKIP="cache encode pipe sweep profile" \
    timeout -k 5 "${SERVER_T_ROWS:-330}" bench/run.sh ${SERVER_MODELS:-vit-base swin-base vit-tiny swin-tiny} \
    >"$R/rows.log" 2>&1
log "rows done: rc $?"
}

part profile || exit 0
mkdir -p "$R/profile"
end=$(( $(date +%s) + ${SERVER_T_PROFILE:-40} ))
for m in ${SERVER_PROFILE:-vit-base swin-base}; do
	for pr in fp32 bf16; do
		left=$(( end - $(date +%s) ))
		[ "$left" -gt 5 ] || break 2
		log "profile $m $pr batch 32 ($left s left)"
		timeout -k 5 "$left" "$TOP/libexec/bench/stepbench" -t "$NT" -b 32 -w 1 -n 2 --profile \
		    --precision "$pr" "$m" >"$R/profile/$m-$pr.json" 2>"$R/profile/$m-$pr.txt"
	done
done
