#!/bin/sh
# finetune-fashion-mnist.sh -- does SimMIM pretraining help a small model on
# Fashion-MNIST (Debian's dataset-fashion-mnist: 60,000 training and 10,000
# test images) at 32 px? For a small ViT and a small Swin, and each seed:
#   (a) fine-tuning from a random initialisation (the pretraining model's
#       init of that seed, made a classifier by mim-ckpt classifier),
#   (b) SimMIM pretraining on the training images (mim-data | mim-mask |
#       mim-step), then the same fine-tuning (same steps, recipe and seed),
#   (c) linear probes (mim-encode --pool mean | mim-probe, mim-eval) of the
#       pretrained encoder and of the random one.
# Fine-tuned models are scored by mim-eval top-1 on the test set through
# mim-data --finetune --eval. The table goes to DIR/finetune-fashion-mnist.md
# (MD=FILE: there instead).
#   examples/finetune-fashion-mnist.sh [DIR]     the full run (3 seeds)
#   QUICK=1 examples/finetune-fashion-mnist.sh   one seed, fewer steps, the
#                                                first 2,500 test images
#   FM_TEST=1 ...                                a plumbing test of seconds
#                                                (tests/cmd/t-finetune-fm.sh)
# Steps, seeds and subsets can be set: PT_STEPS FT_STEPS SEEDS BATCH
# PROBE_EPOCHS MIXAB (0: no mixup/cutmix row).
set -eu
src=${FM_SRC:-/usr/share/datasets/fashion-mnist}
dir=${1:-finetune-fashion-mnist-run}
QUICK=${QUICK:-0}
FM_TEST=${FM_TEST:-0}
if [ "$FM_TEST" = 1 ]; then
	mode="FM_TEST run (plumbing only: the 10,000 test images split into tiny train and test sets)"
	: "${PT_STEPS:=3}" "${FT_STEPS:=3}" "${SEEDS:=1}" "${BATCH:=16}" "${PROBE_EPOCHS:=5}" "${MIXAB:=1}"
elif [ "$QUICK" = 1 ]; then
	mode="QUICK run (one seed, fewer steps, test subset of 2,500 images)"
	: "${PT_STEPS:=30}" "${FT_STEPS:=30}" "${SEEDS:=1}" "${BATCH:=64}" "${PROBE_EPOCHS:=100}" "${MIXAB:=0}"
else
	mode="full run"
	: "${PT_STEPS:=150}" "${FT_STEPS:=100}" "${SEEDS:=1 2 3}" "${BATCH:=64}" "${PROBE_EPOCHS:=100}" "${MIXAB:=1}"
fi
mkdir -p "$dir"
md=${MD:-$dir/finetune-fashion-mnist.md}
case $md in /*) ;; *) md=$PWD/$md ;; esac
cmdline="$(printf '%s' "$0 $*")"
env_set=""
for v in FM_TEST QUICK PT_STEPS FT_STEPS SEEDS BATCH PROBE_EPOCHS MIXAB; do
	eval "x=\${$v}"
	env_set="$env_set$v='$x' "
done
cd "$dir"
now() { date +%s; }
t_start=$(now)

# ---- shards ------------------------------------------------------------------
# train-NN.tar: 2,000 images each (train-00.tar also trains the probes);
# test-NN.tar: 2,500 each (probes: test-00, test-01; fine-tuned models: all)
if [ "$FM_TEST" = 1 ]; then
	[ -e test-00.tar ] || mim-data -q --idx --out 'fm-%02d.tar' --per-shard 200 \
		$src/t10k-images-idx3-ubyte.gz $src/t10k-labels-idx1-ubyte.gz
	[ -e test-00.tar ] || { mv fm-00.tar test-00.tar; mv fm-01.tar train-00.tar; mv fm-02.tar train-01.tar; rm -f fm-*.tar; }
	ft_test="test-00.tar" probe_train="train-00.tar" probe_test="test-00.tar"
else
	[ -e train-29.tar ] || mim-data -q --idx --out 'train-%02d.tar' --per-shard 2000 \
		$src/train-images-idx3-ubyte.gz $src/train-labels-idx1-ubyte.gz
	[ -e test-03.tar ] || mim-data -q --idx --out 'test-%02d.tar' --per-shard 2500 \
		$src/t10k-images-idx3-ubyte.gz $src/t10k-labels-idx1-ubyte.gz
	probe_train="train-00.tar"
	if [ "$QUICK" = 1 ]; then ft_test="test-00.tar" probe_test="test-00.tar"
	else ft_test="test-00.tar test-01.tar test-02.tar test-03.tar" probe_test="test-00.tar test-01.tar"; fi
fi

# ---- the models ----------------------------------------------------------------
# ViT: 8x8 tokens of 4x4 pixels, width 128, depth 4 (examples/fashion-mnist.sh)
vit_cfg="--model vit --img-size 32 --patch-size 4 --encoder-stride 4 --embed-dim 128 --depth 4 --num-heads 4 --drop-path-rate 0"
# Swin: 16x16 tokens of 2x2 pixels, window 4, stages 2,2 (16x16 -> 8x8), widths 64, 128
swin_cfg="--model swin --img-size 32 --patch-size 2 --encoder-stride 4 --embed-dim 64 --depths 2,2 --num-heads 2,4 --window-size 4 --drop-path-rate 0"

norm="--mean 0.286 --std 0.353"
pt_warm=$((PT_STEPS / 10)) ft_warm=$((FT_STEPS / 10))
pt_opts="--lr 1e-3 --warmup-steps $pt_warm --min-lr 1e-5 --weight-decay 0.05"
ft_recipe="--lr 1e-3 --warmup-steps $ft_warm --min-lr 1e-5 --weight-decay 0.05 --smoothing 0.1 --layer-decay 0.8"
ft_nomix="--mixup 0 --cutmix 0"
ft_mix="--mixup 0.8 --cutmix 1.0 --mix-prob 1.0 --switch-prob 0.5"
cls_opts="--classes 10 --drop-path 0.1"
printf '%s\n' T-shirt/top Trouser Pullover Dress Coat Sandal Shirt Sneaker Bag \
	'Ankle boot' > classes.txt
: > results.tsv
: > times.tsv
tick() { t0=$(now); }
tock() { echo "$1	$(( $(now) - t0 ))	$2" >> times.tsv; }   # stage, seconds, images

top1() { awk '$1 == "top-1" { print $2 }'; }

finetune() {   # ckpt seed mixopts log
	mim-data $norm -q --finetune --size 32 --batch $BATCH --drop-last --epochs 0 \
		--shuffle 2000 --seed $2 train-*.tar |
		mim-step -q --ckpt $1 --steps $FT_STEPS $ft_recipe $3 --seed $2 --save-every 0 --log $4
}
score() {      # classifier -> top-1 on the test images
	mim-data $norm -q --finetune --eval --size 32 --batch 500 $ft_test |
		mim-encode --ckpt $1 | mim-eval --classes-file classes.txt | top1
}
probe() {      # pretraining checkpoint, name -> top-1 of its linear probe
	mim-data $norm -q --eval --crop-ratio 1 --size 32 --batch 500 $probe_train |
		mim-encode --ckpt $1 --pool mean > $2-ptrain.mim
	mim-data $norm -q --eval --crop-ratio 1 --size 32 --batch 500 $probe_test |
		mim-encode --ckpt $1 --pool mean > $2-ptest.mim
	rm -f $2-probe.log
	mim-probe -q --out $2-probe.safetensors --epochs $PROBE_EPOCHS --log $2-probe.log $2-ptrain.mim
	mim-probe --ckpt $2-probe.safetensors $2-ptest.mim | mim-eval --classes-file classes.txt | top1
	rm -f $2-ptrain.mim $2-ptest.mim
}
n_ft_test=$(( $(echo $ft_test | wc -w) * $( [ "$FM_TEST" = 1 ] && echo 200 || echo 2500) ))
n_probe_test=$(( $(echo $probe_test | wc -w) * $( [ "$FM_TEST" = 1 ] && echo 200 || echo 2500) ))
n_probe_train=$( [ "$FM_TEST" = 1 ] && echo 200 || echo 2000)

for arch in vit swin; do
	eval "cfg=\$${arch}_cfg"
	for s in $SEEDS; do
		p=$arch-s$s
		echo "== $p" >&2
		mim-ckpt init $cfg --seed $s -o $p-init.safetensors
		# (b) SimMIM pretraining
		cp $p-init.safetensors $p-pt.safetensors
		rm -f $p-pretrain.log
		tick
		mim-data $norm -q --size 32 --batch $BATCH --drop-last --epochs 0 --shuffle 2000 \
			--seed $s train-*.tar |
			mim-mask --ckpt $p-pt.safetensors --mask-patch 8 --seed $s |
			mim-step -q --ckpt $p-pt.safetensors --steps $PT_STEPS $pt_opts --seed $s \
				--save-every 0 --log $p-pretrain.log
		tock "$arch pretrain" $((PT_STEPS * BATCH))
		# (a) and (b): the same fine-tuning from the random and the pretrained encoder
		for from in init pt; do
			mim-ckpt classifier $p-$from.safetensors $cls_opts --seed $s -q -o $p-ft-$from.safetensors
			rm -f $p-ft-$from.log
			tick
			finetune $p-ft-$from.safetensors $s "$ft_nomix" $p-ft-$from.log
			tock "$arch fine-tune" $((FT_STEPS * BATCH))
			tick
			a=$(score $p-ft-$from.safetensors)
			tock "$arch test (forward)" $n_ft_test
			echo "$arch	ft-$from	$s	$a" >> results.tsv
			echo "$p ft-$from top-1 $a" >&2
		done
		# (c) linear probes
		for from in init pt; do
			tick
			a=$(probe $p-$from.safetensors $p-$from)
			tock "$arch probe (features + probe)" $((n_probe_train + n_probe_test))
			echo "$arch	probe-$from	$s	$a" >> results.tsv
			echo "$p probe-$from top-1 $a" >&2
		done
	done
	# is mixup/cutmix worth it at this budget? the first seed, pretrained ViT, with it on
	if [ "$MIXAB" = 1 ] && [ $arch = vit ]; then
		s=${SEEDS%% *} p=$arch-s${SEEDS%% *}
		mim-ckpt classifier $p-pt.safetensors $cls_opts --seed $s -q -o $p-ftmix-pt.safetensors
		rm -f $p-ftmix-pt.log
		finetune $p-ftmix-pt.safetensors $s "$ft_mix" $p-ftmix-pt.log
		a=$(score $p-ftmix-pt.safetensors)
		echo "$arch	ftmix-pt	$s	$a" >> results.tsv
		echo "$p ftmix-pt top-1 $a" >&2
	fi
done
t_total=$(( $(now) - t_start ))

# ---- the table -----------------------------------------------------------------
row_desc() {
	case $1 in
	ft-init)  echo "fine-tuned from scratch|\`mim-ckpt init CFG --seed S\`; \`mim-ckpt classifier INIT $cls_opts --seed S\`; fine-tune $FT_STEPS steps (recipe below, no mixup/cutmix)" ;;
	ft-pt)    echo "SimMIM $PT_STEPS steps, then fine-tuned|pretrain: \`mim-data $norm --size 32 --batch $BATCH --shuffle 2000 | mim-mask --mask-patch 8 | mim-step --steps $PT_STEPS $pt_opts\`; then \`mim-ckpt classifier PT $cls_opts --seed S\`, fine-tune as above" ;;
	ftmix-pt) echo "SimMIM, fine-tuned with mixup/cutmix (first seed only)|as above with \`$ft_mix\`" ;;
	probe-init) echo "linear probe, random encoder|\`mim-encode --ckpt INIT --pool mean\` of $n_probe_train training images; \`mim-probe --epochs $PROBE_EPOCHS\`; scored on $n_probe_test test images" ;;
	probe-pt) echo "linear probe, SimMIM encoder|as above, \`--ckpt PT\`" ;;
	esac
}
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
{
	echo "# Fine-tuning on Fashion-MNIST: SimMIM pretraining against none"
	echo
	if [ "$QUICK" = 1 ] || [ "$FM_TEST" = 1 ]; then echo "**$mode** -- not the benchmark; see the full table when it is there."; else echo "**$mode**"; fi
	echo
	echo "- command: \`$env_set$cmdline\`"
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), wall time $((t_total / 60)) min $((t_total % 60)) s"
	echo "- machine: $cpu, \`nproc\` $(nproc) (shared with other jobs: load average $(cut -d' ' -f1-3 /proc/loadavg) at the end)"
	echo "- data: $src; training images: all of train-*.tar (shuffled, $BATCH per step); fine-tuned models scored on $n_ft_test test images, probes trained on $n_probe_train training images and scored on $n_probe_test test images"
	echo
	echo "Top-1 % (mim-eval) over seeds $(echo $SEEDS | tr ' ' ','): mean, min-max, each seed."
	echo
	echo "| model | row | top-1 mean | min | max | seeds | per seed | command / options |"
	echo "|---|---|---|---|---|---|---|---|"
	for arch in vit swin; do
		for r in ft-init ft-pt ftmix-pt probe-init probe-pt; do
			grep -q "^$arch	$r	" results.tsv || continue
			d=$(row_desc $r | sed 's/ | / \\| /g')
			awk -F'\t' -v a=$arch -v r=$r -v name="${d%%|*}" -v c="${d#*|}" '
				$1 == a && $2 == r { v = $4 + 0; s += v; n++; l = l (l == "" ? "" : " ") $4
					if (n == 1 || v < lo) lo = v; if (n == 1 || v > hi) hi = v }
				END { printf "| %s | %s | %.2f | %.2f | %.2f | %d | %s | %s |\n", a, name, s / n, lo, hi, n, l, c }' results.tsv
		done
	done
	echo
	echo "Models (\`mim-ckpt init\` CFG):"
	echo
	echo "- vit: \`$vit_cfg\` ($(mim-ckpt info vit-s${SEEDS%% *}-init.safetensors | awk '/^encoder/ { print $2 }') encoder parameters)"
	echo "- swin: \`$swin_cfg\` ($(mim-ckpt info swin-s${SEEDS%% *}-init.safetensors | awk '/^encoder/ { print $2 }') encoder parameters)"
	echo
	echo "Fine-tuning recipe (the official one of reference/simmim.md §10 scaled down):"
	echo "\`mim-data $norm --finetune --size 32 --batch $BATCH --drop-last --shuffle 2000 --seed S\`"
	echo "(RandomCrop 32 with padding 4, flip, RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25) |"
	echo "\`mim-step --steps $FT_STEPS $ft_recipe $ft_nomix --seed S\`:"
	echo "AdamW (betas 0.9, 0.999), weight decay 0.05, gradient clipping 5, linear warmup"
	echo "of $ft_warm steps then cosine to 1e-5, layer-wise lr decay 0.8, drop path 0.1,"
	echo "label smoothing 0.1. Mixup/cutmix are off in the main rows: the official 0.8/1.0"
	echo "regularise a 100-epoch run, here fine-tuning is $FT_STEPS steps ($((FT_STEPS * BATCH)) images);"
	echo "the mixup/cutmix row (when present) measures it on the first seed."
	echo "Test: \`mim-data $norm --finetune --eval --size 32 --batch 500 test-*.tar | mim-encode --ckpt FT | mim-eval\`."
	echo
	echo "Pretraining: \`mim-step $pt_opts\` (cosine to 1e-5), mask patch 8, mask ratio 0.6"
	echo "(mim-mask's default), $PT_STEPS steps of $BATCH images. Final pretraining loss (mean of the"
	echo "last 10 steps' masked L1) by model and seed:"
	for f in *-pretrain.log; do
		awk -v f=${f%-pretrain.log} -F'"loss":' 'NF > 1 { split($2, a, ","); l[++n] = a[1] }
			END { for (i = (n > 10 ? n - 9 : 1); i <= n; i++) { s += l[i]; k++ }
				printf "%s %.4f (step 1: %.4f); ", f, s / k, l[1] }' $f
	done
	echo
	echo
	echo "Measured throughput on this machine (wall time of each stage, all stages of the run):"
	echo
	echo "| stage | runs | seconds | images/s |"
	echo "|---|---|---|---|"
	awk -F'\t' '{ t[$1] += $2; n[$1] += $3; c[$1]++; if (!($1 in o)) { o[$1] = ++k; name[k] = $1 } }
		END { for (i = 1; i <= k; i++) { s = name[i]; printf "| %s | %d | %d | %.0f |\n", s, c[s], t[s], t[s] ? n[s] / t[s] : 0 } }' times.tsv
} > "$md"
echo "finetune-fashion-mnist.sh: table in $md ($((t_total / 60)) min $((t_total % 60)) s)" >&2
