#!/bin/sh
# fashion-mnist.sh -- SimMIM end to end on Fashion-MNIST (Debian's
# dataset-fashion-mnist): IDX files to WebDataset shards, pretrain a small
# ViT at 32 px, then measure the features with a linear probe
# (mim-encode --pool mean | mim-probe, scored by mim-eval) beside the same
# probe on the randomly initialised model.
#   examples/fashion-mnist.sh [DIR]      (STEPS=300 by default)
set -eu
dir=${1:-fashion-mnist-run}
steps=${STEPS:-300}
src=/usr/share/datasets/fashion-mnist
mkdir -p "$dir"
cd "$dir"

[ -e train-00.tar ] || mim-data --idx --out 'train-%02d.tar' --per-shard 10000 \
	$src/train-images-idx3-ubyte.gz $src/train-labels-idx1-ubyte.gz
[ -e test-00.tar ] || mim-data --idx --out 'test-%02d.tar' --per-shard 10000 \
	$src/t10k-images-idx3-ubyte.gz $src/t10k-labels-idx1-ubyte.gz

# a ViT for 32 px images: 8x8 tokens of 4x4 pixels, mask patch 8
[ -e init.safetensors ] || mim-ckpt init --model vit --img-size 32 --patch-size 4 \
	--encoder-stride 4 --embed-dim 128 --depth 4 --num-heads 4 --drop-path-rate 0 \
	-o init.safetensors
[ -e run.safetensors ] || cp init.safetensors run.safetensors

# grey 28x28 images become 3-channel 32x32 crops; the mean/std of the data
norm="--mean 0.286 --std 0.353"
mim-data $norm --size 32 --batch 64 --drop-last --epochs 0 --shuffle 2000 train-*.tar |
	mim-mask --ckpt run.safetensors --mask-patch 8 |
	mim-step --ckpt run.safetensors --steps "$steps" --lr 1e-3 --warmup-steps 20 \
		--min-lr 1e-5 --save-every 50 --log run.log
mim-view --curve run.log -o loss.svg --title "SimMIM on Fashion-MNIST"

# linear probe (BatchNorm + Linear on the mean-pooled output) trained on
# 10000 training images, scored on all 10000 test images
printf '%s\n' T-shirt/top Trouser Pullover Dress Coat Sandal Shirt Sneaker Bag \
	'Ankle boot' > classes.txt
for m in init run; do
	mim-data $norm --eval --crop-ratio 1 --size 32 --batch 500 -q train-00.tar |
		mim-encode --ckpt $m.safetensors --pool mean > $m-train.mim
	mim-data $norm --eval --crop-ratio 1 --size 32 --batch 500 -q test-*.tar |
		mim-encode --ckpt $m.safetensors --pool mean > $m-test.mim
	rm -f $m-probe.log
	mim-probe -q --out $m-probe.safetensors --epochs 100 --val $m-test.mim --log $m-probe.log \
		$m-train.mim
	mim-probe --ckpt $m-probe.safetensors $m-test.mim |
		mim-eval --json --classes-file classes.txt > $m-eval.json
	mim-probe --ckpt $m-probe.safetensors $m-test.mim | mim-eval | sed -n "3s/^/$m: /p"
done
mim-view --confusion run-eval.json -o confusion.png --title "linear probe, Fashion-MNIST test"
mim-view --curve run-probe.log --field loss,val_loss,val_acc1 -o probe.svg --title "linear probe"

# a look at reconstructions of test images
mim-data $norm --eval --crop-ratio 1 --size 32 --batch 8 -q test-00.tar |
	mim-mask --ckpt run.safetensors --mask-patch 8 | mim-encode --ckpt run.safetensors |
	mim-head --ckpt run.safetensors | mim-view $norm --max 8 -o recon.png
echo "fashion-mnist.sh: loss curve $dir/loss.svg, reconstructions $dir/recon.png," \
	"probe curves $dir/probe.svg, confusion matrix $dir/confusion.png"
