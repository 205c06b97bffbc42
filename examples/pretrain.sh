#!/bin/sh
# pretrain.sh -- SimMIM pretraining from tar shards with the official
# hyper-parameters of simmim_pretrain__swin_base__img192_window6__800ep.yaml
# (reference: 16 GPUs x 128 images = total batch 2048, 800 epochs of
# ImageNet-1K = 625 steps per epoch):
#   Swin-B, 192 px, window 6, mask patch 32, ratio 0.6, drop path 0;
#   AdamW (0.9, 0.999), eps 1e-8, weight decay 0.05, clip 5.0;
#   base lr 1e-4, warmup lr 5e-7 (both per 512 images, scaled by the total
#   batch), 10 warmup epochs, multistep x0.1 at epoch 700;
#   the official timm-0.4.12 schedule timing (--official-sched).
# One machine reaches the total batch with --accum (BATCH x ACCUM).
#
#   examples/pretrain.sh OUTDIR SHARD...           the official recipe
#   SMALL=1 examples/pretrain.sh OUTDIR SHARD...   a small Swin at 96 px
#                                                  that runs here in minutes
# Run the same command again after a crash: mim-step resumes from
# OUTDIR/run.safetensors and ends with the same weights.
set -eu
out=${1:?usage: pretrain.sh OUTDIR SHARD...}
shift
[ $# -gt 0 ] || { echo "usage: pretrain.sh OUTDIR SHARD..." >&2; exit 2; }
mkdir -p "$out"
ckpt=$out/run.safetensors

if [ "${SMALL:-0}" = 1 ]; then
	[ -e "$ckpt" ] || mim-ckpt init --preset swin-tiny --img-size 96 --embed-dim 48 \
		--depths 2,2,2 --num-heads 3,6,12 --window-size 6 --encoder-stride 16 -o "$ckpt"
	mim-data --size 96 --batch 16 --drop-last --epochs 0 --shuffle 1000 "$@" |
		mim-mask --ckpt "$ckpt" --mask-patch 16 --ratio 0.6 |
		mim-step --ckpt "$ckpt" --steps "${STEPS:-1000}" --lr 1e-3 --warmup-steps $(( ${STEPS:-1000} / 20 )) \
			--min-lr 1e-5 --save-every 100 --log "$out/run.log"
else
	batch=${BATCH:-128} accum=${ACCUM:-16}
	images=${IMAGES:-1281167}			# images per epoch
	per_epoch=$((images / (batch * accum)))	# optimizer steps per epoch
	[ -e "$ckpt" ] || mim-ckpt init --preset swin-base -o "$ckpt"
	mim-data --size 192 --scale 0.67,1 --ratio 0.75,1.3333333 --batch "$batch" \
		--drop-last --epochs 0 --shuffle 10000 "$@" |
		mim-mask --ckpt "$ckpt" --mask-patch 32 --ratio 0.6 |
		mim-step --ckpt "$ckpt" --accum "$accum" --steps $((800 * per_epoch)) \
			--base-lr 1e-4 --warmup-lr 5e-7 --warmup-steps $((10 * per_epoch)) \
			--sched multistep --milestones $((700 * per_epoch)) --gamma 0.1 \
			--weight-decay 0.05 --clip-grad 5.0 --official-sched \
			--save-every "$per_epoch" --log "$out/run.log"
fi
mim-view --curve "$out/run.log" -o "$out/loss.svg"
echo "pretrain.sh: checkpoint $ckpt, loss curve $out/loss.svg" >&2
