#!/bin/sh
# demo.sh -- what `make demo` runs: SimMIM pretraining on real photos from
# the shell, then pictures of what the model learned.
#   1. Debian's Plasma wallpapers (real photos) into WebDataset tar shards,
#      eight themes held out;
#   2. a small Swin (3 stages, 1.4M parameters) at 96 px, initialised
#      with the official scheme;
#   3. mim-data | mim-mask | mim-step: pretraining with a progress bar;
#   4. held-out photos through mim-encode | mim-head | mim-loss | mim-view,
#      before and after training, and the loss curve.
# Environment: STEPS (default 300), MIM_DEMO_OUT (default demo-out).
set -eu
out=${MIM_DEMO_OUT:-demo-out}
steps=${STEPS:-300}
walls=/usr/share/wallpapers
say() { printf '\n== %s\n' "$*" >&2; }

[ -d $walls ] || { echo "demo.sh: $walls missing (apt-get install plasma-workspace-wallpapers)" >&2; exit 1; }
rm -rf "$out/photos"
mkdir -p "$out/photos/train" "$out/photos/held"
cd "$out"

say "1. real photos to tar shards"
# a theme holds one photo at several sizes: train on every size of most
# themes, hold out the largest photo of eight others
held="Altai Kite Opal Volna Path ColorfulCups Canopee IceCold"
for d in $walls/*/; do
	theme=$(basename "$d")
	case " $held " in
	*" $theme "*)
		f=$(ls -S "$d"contents/images/*.jpg "$d"contents/images/*.png 2>/dev/null | head -n 1)
		[ -n "$f" ] && ln -sf "$f" "photos/held/${theme}_$(basename "$f")" ;;
	*)
		for f in "$d"contents/images/*.jpg "$d"contents/images/*.png; do
			[ -e "$f" ] && ln -sf "$f" "photos/train/${theme}_$(basename "$f")"
		done ;;
	esac
done
echo "$(ls photos/train | wc -l) training photos, $(ls photos/held | wc -l) held out ($held)" >&2
mim-data -q --out 'train-%02d.tar' --keep-aspect --size 160 --format jpg photos/train
mim-data -q --out 'held-%02d.tar' --keep-aspect --size 160 --format jpg photos/held
ls -l train-*.tar held-*.tar >&2

say "2. a small Swin, official initialisation"
mim-ckpt init --preset swin-tiny --img-size 96 --embed-dim 48 --depths 2,2,2 \
	--num-heads 3,6,12 --window-size 6 --encoder-stride 16 -o init.safetensors
mim-ckpt info init.safetensors | tail -n 1 >&2
cp init.safetensors run.safetensors
rm -f train.log

# the held-out batch: eval transform, fixed masks, the same for both models
mim-data -q --eval --size 96 --batch 8 held-*.tar |
	mim-mask --ckpt init.safetensors --mask-patch 16 --seed 7 > held.mim

say "3. pretraining: $steps steps of 16 photos (mim-data | mim-mask | mim-step)"
mim-data -q --size 96 --batch 16 --drop-last --epochs 0 --shuffle 200 train-*.tar |
	mim-mask --ckpt run.safetensors --mask-patch 16 |
	mim-step --ckpt run.safetensors --steps "$steps" --lr 1e-3 --warmup-steps 20 \
		--min-lr 1e-5 --save-every 100 --log train.log

say "4. reconstructions of held-out photos"
for m in init run; do
	mim-encode --ckpt $m.safetensors held.mim | mim-head --ckpt $m.safetensors |
		mim-loss > $m-recon.mim 2> $m-loss.txt
	mim-view --max 8 -o recon-$m.png $m-recon.mim
	# mim-loss prints "frame K: loss X, mean Y" per frame: keep the last mean
	printf '%s: held-out masked l1 loss %s\n' $m "$(sed -n '$s/.*mean //p' $m-loss.txt)" >&2
done
mim-view --curve train.log -o loss.png --title "SimMIM pretraining, Swin 96 px, $steps steps"

cat >&2 <<EOT

Done. Open these pictures:
  $(pwd)/recon-run.png    held-out photos: original | masked | reconstruction | prediction
  $(pwd)/recon-init.png   the same before training
  $(pwd)/loss.png         the training loss
The trained model is $(pwd)/run.safetensors (mim-ckpt info, mim-ckpt export).
EOT
