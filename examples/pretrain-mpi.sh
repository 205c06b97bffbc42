#!/bin/sh
# pretrain-mpi.sh -- data-parallel SimMIM pretraining with Open MPI: RANKS
# processes, each running its own pipeline on its part of the shards,
#   mim-data --shard-index RANK --shard-count RANKS ... |
#   mim-mask --seed SEED+RANK ... | mim-step ...
# and mim-step averaging the gradients over the ranks (see "Data-parallel
# training" in mim-step(1)). A step trains on RANKS x BATCH x ACCUM images,
# which --base-lr scales by.
#
#   examples/pretrain-mpi.sh OUTDIR SHARD...           Swin-B, 192 px, the
#                                                      official recipe
#   SMALL=1 examples/pretrain-mpi.sh OUTDIR SHARD...   a small Swin at 96 px
#                                                      that runs here in minutes
# Environment: RANKS (default 2), BATCH (images a rank's frame), ACCUM,
# STEPS (SMALL), SEED (0), MPIRUN_FLAGS (more mpirun options: --hostfile
# for several machines, which must then see the same SHARD paths and
# OUTDIR), MIM_THREADS (default: this machine's cores / RANKS, for every
# stage of a rank's pipeline).
# Open MPI refuses to run as root unless OMPI_ALLOW_RUN_AS_ROOT=1 and
# OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 are set.
# Run the same command again after a crash or Ctrl-C: the ranks resume
# from OUTDIR/run.safetensors (which rank 0 writes) and end as an
# uninterrupted run would.
set -eu
out=${1:?usage: pretrain-mpi.sh OUTDIR SHARD...}
shift
[ $# -gt 0 ] || { echo "usage: pretrain-mpi.sh OUTDIR SHARD..." >&2; exit 2; }
mkdir -p "$out"
ranks=${RANKS:-2}
ckpt=$out/run.safetensors
# Open MPI binds a rank to one core by default, and the rank's whole
# pipeline with it: unbind, and share the cores out with MIM_THREADS
threads=$(( $(nproc) / ranks )); [ "$threads" -ge 1 ] || threads=1
export MIM_THREADS=${MIM_THREADS:-$threads}
# Ctrl-C: mpirun waits this long, sends SIGTERM (the ranks stop together
# at the next batch and rank 0 saves), waits as long again, then kills
# (the same delays end a job in which a rank failed)
export OMPI_MCA_odls_base_sigkill_timeout=${OMPI_MCA_odls_base_sigkill_timeout:-20}

# the pipeline of one rank, as mpirun starts it: arguments are the shards,
# settings come in PM_* variables
pipeline='
r=$OMPI_COMM_WORLD_RANK n=$OMPI_COMM_WORLD_SIZE
mim-data -q --size $PM_SIZE --batch $PM_BATCH --drop-last --epochs 0 \
	--shuffle $PM_SHUFFLE --seed $PM_SEED --shard-index $r --shard-count $n "$@" |
	mim-mask --ckpt "$PM_CKPT" --mask-patch $PM_MASK_PATCH --ratio 0.6 --seed $((PM_SEED + r)) |
	mim-step --ckpt "$PM_CKPT" --accum $PM_ACCUM $PM_STEP_FLAGS --log "$PM_LOG"'

export PM_CKPT="$ckpt" PM_LOG="$out/run.log" PM_SEED=${SEED:-0}
if [ "${SMALL:-0}" = 1 ]; then
	[ -e "$ckpt" ] || mim-ckpt init --preset swin-tiny --img-size 96 --embed-dim 48 \
		--depths 2,2,2 --num-heads 3,6,12 --window-size 6 --encoder-stride 16 -o "$ckpt"
	steps=${STEPS:-1000}
	export PM_SIZE=96 PM_BATCH=${BATCH:-8} PM_ACCUM=${ACCUM:-1} PM_SHUFFLE=1000 PM_MASK_PATCH=16
	export PM_STEP_FLAGS="--steps $steps --lr 1e-3 --warmup-steps $((steps / 20)) --min-lr 1e-5 --save-every 100"
else
	# the official total batch 2048 = RANKS x BATCH x ACCUM
	batch=${BATCH:-128} accum=${ACCUM:-$((2048 / (ranks * ${BATCH:-128})))}
	[ "$accum" -ge 1 ] || accum=1
	images=${IMAGES:-1281167}				# images per epoch
	per_epoch=$((images / (ranks * batch * accum)))		# optimizer steps per epoch
	[ -e "$ckpt" ] || mim-ckpt init --preset swin-base -o "$ckpt"
	export PM_SIZE=192 PM_BATCH=$batch PM_ACCUM=$accum PM_SHUFFLE=10000 PM_MASK_PATCH=32
	export PM_STEP_FLAGS="--steps $((800 * per_epoch)) --base-lr 1e-4 --warmup-lr 5e-7
		--warmup-steps $((10 * per_epoch)) --sched multistep --milestones $((700 * per_epoch))
		--gamma 0.1 --weight-decay 0.05 --clip-grad 5.0 --official-sched --save-every $per_epoch"
fi
# shellcheck disable=SC2086
mpirun -np "$ranks" --bind-to none -x PATH -x MIM_THREADS -x PM_CKPT -x PM_LOG -x PM_SEED \
	-x PM_SIZE -x PM_BATCH -x PM_ACCUM -x PM_SHUFFLE -x PM_MASK_PATCH -x PM_STEP_FLAGS \
	${MPIRUN_FLAGS:-} sh -c "$pipeline" sh "$@"
mim-view --curve "$out/run.log" -o "$out/loss.svg"
echo "pretrain-mpi.sh: checkpoint $ckpt, loss curve $out/loss.svg" >&2
