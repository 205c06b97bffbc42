#!/bin/sh
# ablations.sh -- the SimMIM paper's ablations (masking, head, prediction
# resolution, target and loss, loss region) at small scale on real images:
# one short pretraining per row of a small Swin at 32 px on Fashion-MNIST,
# each measured by a linear probe (mim-encode --layer 2 --pool mean |
# mim-probe, trained on 10000 training images, scored by mim-eval on the
# 10000 test images), then examples/ablations.md (a table per ablation)
# and the paper's pictures under examples/ablations/.
#   examples/ablations.sh [DIR]     full: every row, STEPS=300 (about an hour
#                                   on 2 cores), a second seed for the main rows
#   QUICK=1 examples/ablations.sh   a subset of rows, STEPS=150 (about 15 min)
#   ABL_TEST=1 examples/ablations.sh DIR   two rows, 5 steps, 500 images (the
#                                   suite's check that the script still runs)
# Environment: STEPS, ABL_OUT (results file), ABL_PNG (folder of pictures),
# ABL_NOTE (a sentence for the results file's header: how the run went).
# Rows already done in DIR with the same steps (DIR/rows-STEPS/NAME-sSEED.json)
# are not run again.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cmdline="$0${1:+ $1}"
[ -n "${STEPS:-}" ] && cmdline="STEPS=$STEPS $cmdline"
[ -n "${ABL_PNG:-}" ] && cmdline="ABL_PNG=$ABL_PNG $cmdline"
[ -n "${ABL_OUT:-}" ] && cmdline="ABL_OUT=$ABL_OUT $cmdline"
mode=full
[ -n "${QUICK:-}" ] && [ "${QUICK:-}" != 0 ] && mode=quick
[ -n "${ABL_TEST:-}" ] && [ "${ABL_TEST:-}" != 0 ] && mode=test
case $mode in
full)  steps=${STEPS:-300}; pepochs=100; out=${ABL_OUT:-$here/ablations.md} ;;
quick) steps=${STEPS:-150}; pepochs=100; out=${ABL_OUT:-$here/ablations.md}
       cmdline="QUICK=1 $cmdline" ;;
test)  steps=${STEPS:-5}; pepochs=5; out=${ABL_OUT:-${1:-ablations-run}/ablations.md} ;;
esac
png=${ABL_PNG:-$here/ablations}
[ $mode = test ] && png=${ABL_PNG:-${1:-ablations-run}/pictures}
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
case $png in /*) ;; *) png=$(pwd)/$png ;; esac
# the pictures' links in the results file: relative when beside it
pics=$png; [ "$(dirname "$png")" = "$(dirname "$out")" ] && pics=$(basename "$png")
warm=$((steps / 20 + 1))
dir=${1:-ablations-run}
src=/usr/share/datasets/fashion-mnist
start=$(date +%s)
# the commit of this script, taken now (the file is written at the end)
rev=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo "?")
git -C "$here" diff --quiet HEAD -- ablations.sh ablations.jq 2>/dev/null || rev="$rev with changes"
mkdir -p "$dir/rows-$steps" "$png"
cd "$dir"
say() { printf '== %s\n' "$*" >&2; }

# --- data: Fashion-MNIST as shards (the test mode: 500 images of each) ---
be32() {	# a big-endian 32-bit number as 4 bytes
	for s in 24 16 8 0; do printf "\\$(printf %03o $(( ($1 >> s) & 255 )))"; done
}
small_idx() {	# small_idx IMAGES LABELS N PREFIX: the first N of an IDX pair
	{ be32 2051; be32 "$3"; be32 28; be32 28
	  gzip -dc "$1" | tail -c +17 | head -c $(( $3 * 784 )); } > "$4-images"
	{ be32 2049; be32 "$3"; gzip -dc "$2" | tail -c +9 | head -c "$3"; } > "$4-labels"
}
if [ $mode = test ]; then
	[ -e train-00.tar ] || { small_idx $src/train-images-idx3-ubyte.gz $src/train-labels-idx1-ubyte.gz 500 tr
		mim-data -q --idx --out 'train-%02d.tar' tr-images tr-labels; }
	[ -e test-00.tar ] || { small_idx $src/t10k-images-idx3-ubyte.gz $src/t10k-labels-idx1-ubyte.gz 500 te
		mim-data -q --idx --out 'test-%02d.tar' te-images te-labels; }
else
	[ -e train-00.tar ] || mim-data -q --idx --out 'train-%02d.tar' --per-shard 10000 \
		$src/train-images-idx3-ubyte.gz $src/train-labels-idx1-ubyte.gz
	[ -e test-00.tar ] || mim-data -q --idx --out 'test-%02d.tar' --per-shard 10000 \
		$src/t10k-images-idx3-ubyte.gz $src/t10k-labels-idx1-ubyte.gz
fi
# 2000 test images for AvgDist and the masked fraction of every mask setting,
# and the first 4 for the reconstructions
if [ ! -s avgdist.mim ]; then
	small_idx $src/t10k-images-idx3-ubyte.gz $src/t10k-labels-idx1-ubyte.gz 2000 ad
	mim-data -q --idx --out 'ad-%02d.tar' ad-images ad-labels
	mim-data -q --eval --crop-ratio 1 --size 32 --batch 250 ad-00.tar > avgdist.mim
	small_idx $src/t10k-images-idx3-ubyte.gz $src/t10k-labels-idx1-ubyte.gz 4 f4
	mim-data -q --idx --out 'f4-%02d.tar' f4-images f4-labels
	mim-data -q --eval --crop-ratio 1 --size 32 --batch 4 f4-00.tar > first4.mim
	rm -f ad-* f4-*
fi

# --- the model: a small Swin at 32 px, 4 stages (8x8, 4x4, 2x2, 1x1 tokens),
# encoder stride 32, so that every prediction resolution 1/1..1/32 fits ---
swin="--model swin --img-size 32 --patch-size 4 --embed-dim 32 --depths 2,2,2,2"
swin="$swin --num-heads 1,2,4,8 --window-size 4 --encoder-stride 32 --drop-path-rate 0"
train_cmd="mim-data --size 32 --batch 64 --drop-last --epochs 0 --shuffle 2000 --seed S train-*.tar | mim-mask --ckpt R.st --seed S MASK | mim-step --ckpt R.st --steps $steps --lr 1e-3 --warmup-steps $warm --min-lr 1e-5 STEP"
probe_cmd="mim-data --eval --crop-ratio 1 --size 32 --batch 500 {train,test}-00.tar | mim-encode --ckpt R.st --layer 2 --pool mean; mim-probe --out P.st --epochs $pepochs R-train.mim; mim-probe --ckpt P.st R-test.mim | mim-eval --json"

# the colour centres of the clusters target, fitted on training images
if [ $mode != test ] && [ ! -e c512.st ]; then
	say "mim-cluster: 512 colour centres"
	mim-data -q --size 32 --batch 64 --epochs 1 train-00.tar | mim-cluster -k 512 -o c512.st
fi

# row GROUP NAME SEED "INIT" "MASK" "STEP" "PAPER": one pretraining (none when
# STEP is "-") and its probe; appends a JSON line to rows.jsonl
row() {
	g=$1 n=$2 seed=$3 init=$4 mask=$5 step=$6 paper=$7
	r=rows-$steps/$n-s$seed
	if [ ! -s $r.json ]; then
		say "$g: $n (seed $seed)"
		t0=$(date +%s)
		# shellcheck disable=SC2086
		mim-ckpt init $swin $init --seed $seed -o $r.st
		rm -f $r.log
		loss=null ips=null
		if [ "$step" != - ]; then
			# shellcheck disable=SC2086
			mim-data -q --size 32 --batch 64 --drop-last --epochs 0 --shuffle 2000 --seed $seed train-*.tar |
				mim-mask --ckpt $r.st --seed $seed $mask |
				mim-step --ckpt $r.st --steps $steps --lr 1e-3 --warmup-steps $warm --min-lr 1e-5 \
					--save-every 0 --log $r.log $step 2> $r.err
			# the loss at the end: the mean of the last 20 steps; img/s: the mean after step 5
			loss=$(jq -s '[.[] | select(.step != null and .loss != null)] | .[-20:] | map(.loss) | add / length' $r.log)
			ips=$(jq -s '[.[] | select(.step != null and .step > 5 and .img_per_s != null) | .img_per_s] | if length > 0 then add / length else null end' $r.log)
		fi
		t1=$(date +%s)
		# AvgDist and the masked fraction of the row's masks (2000 masks)
		ad=null frac=null
		if [ "$step" != - ]; then
			# shellcheck disable=SC2086
			st=$(mim-mask -p 4 --seed $seed $mask --stats < avgdist.mim 2>&1 > /dev/null)
			frac=$(printf '%s\n' "$st" | sed -n 's/.*masked fraction \([0-9.]*\).*/\1/p')
			ad=$(printf '%s\n' "$st" | sed -n 's/.*AvgDist \([0-9.]*\) px.*/\1/p')
			[ -n "$ad" ] || ad=null
		fi
		for s in train test; do
			mim-data -q --eval --crop-ratio 1 --size 32 --batch 500 $s-00.tar |
				mim-encode --ckpt $r.st --layer 2 --pool mean > $r-$s.mim
		done
		mim-probe -q --out $r-probe.st --epochs $pepochs $r-train.mim
		mim-probe --ckpt $r-probe.st $r-test.mim | mim-eval --json > $r-eval.json
		acc=$(jq .acc1 $r-eval.json)
		rm -f $r-train.mim $r-test.mim
		t2=$(date +%s)
		jq -nc --arg g "$g" --arg n "$n" --argjson seed $seed --arg init "$init" --arg mask "$mask" \
			--arg step "$step" --arg paper "$paper" --argjson avgdist "$ad" \
			--argjson frac "${frac:-null}" --argjson loss "$loss" --argjson acc1 "$acc" \
			--argjson img_per_s "$ips" --argjson steps $([ "$step" = - ] && echo 0 || echo $steps) \
			--argjson train_s $((t1 - t0)) --argjson probe_s $((t2 - t1)) \
			'{group:$g, name:$n, seed:$seed, init:$init, mask:$mask, step:$step, paper:$paper,
			  avgdist:$avgdist, frac:$frac, loss:$loss, acc1:$acc1, img_per_s:$img_per_s,
			  steps:$steps, train_s:$train_s, probe_s:$probe_s}' > $r.json.tmp
		mv $r.json.tmp $r.json
		printf '%s: probe top-1 %s, loss %s, AvgDist %s (%ss + %ss)\n' "$n" "$acc" "$loss" "$ad" \
			$((t1 - t0)) $((t2 - t1)) >&2
	fi
	cat $r.json >> rows.jsonl
}

# the rows: those of QUICK=1 are marked q, those of ABL_TEST=1 t
rm -f rows.jsonl
want() { case $mode in full) return 0 ;; quick) case $1 in *q*) return 0 ;; esac ;;
	test) case $1 in *t*) return 0 ;; esac ;; esac; return 1; }
B="-m 8 -r 0.6"	# the baseline: random masks of 8 px cells (4x4 cells), ratio 0.6
P_RAND="random, patch 32 (of 192 px), ratio 0.6: the paper's default, stable; AvgDist 10-20 best"
want q  && row base init 0 "" "" - "(no pretraining)"
want qt && row masking random-m8-r0.6 0 "" "$B" "" "$P_RAND"
for m in 4 8 16; do
	for r in 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9; do
		# 16 px cells: 2x2 cells, ceil(4 r) of them masked: 0.1, 0.5 and 0.6 give 1, 2
		# and 3 cells; 0.8 and 0.9 mask everything, the other ratios repeat these
		[ $m = 16 ] && case $r in 0.2|0.3|0.4|0.7|0.8|0.9) continue ;; esac
		[ "$m/$r" = 8/0.6 ] && continue
		tag=f
		case $m/$r in 4/0.6|8/0.3|8/0.9|16/0.6) tag=q ;; esac
		want $tag && row masking random-m$m-r$r 0 "" "-m $m -r $r" "" \
			"random masking, patch $m, ratio $r"
	done
done
want qt && row masking central-m4-r0.6 0 "" "-s central -m 4 -r 0.6" "" "square (central) masking: worse than random"
want q  && row masking block-m4-r0.6 0 "" "-s block -m 4 -r 0.6 --block-min 4" "" "BEiT block-wise masking: worse than random patch 32"
want q  && row head mlp 0 "--head mlp" "$B" "" "2-layer MLP head: no better than linear"
want q  && row head swin-inverse 0 "--head swin-inverse" "$B" "" "inverse Swin-B head: no better, the most costly"
want f  && row head swin-inverse-light 0 "--head swin-inverse --head-depths 1,1,1,1" "$B" "" "inverse Swin-T head: no better, costly"
# a target pixel counts only when all of it is masked, so 1/16 takes 16 px
# cells (as the paper's 1/32 at 192 px has its 32 px cells) and is compared
# with random-m16-r0.6; at 1/32 the target is one pixel for the whole image,
# never all masked at ratio 0.6: that row cannot learn (loss 0), shown as such
for d in 2 4 8 16 32; do
	tag=f; case $d in 4|32) tag=q ;; esac	# div4: the reference of the targets at 1/4
	m=$B; [ $d = 16 ] && m="-m 16 -r 0.6"
	want $tag && row resolution div$d 0 "--pred-div $d" "$m" "" "target at 1/$d: similar to full resolution"
done
want q  && row target l2 0 "" "$B" "--loss l2" "l2: about equal to l1"
want f  && row target smooth-l1 0 "" "$B" "--loss smooth-l1" "smooth-l1: about equal to l1"
want q  && row target bins8 0 "--target bins --target-bins 8" "$B" "" "8-bin classification: no better than regression"
# 256 bins and 512 clusters at full resolution would take a linear head of
# 1024 x 768 or 1024 x 512 outputs per token (200M or 134M weights, 12 min for
# 150 steps here): they predict at 1/4 (8x8, 64 x 768 or 64 x 512 outputs a
# token), and are compared with l1 at 1/4, the row div4
want f  && row target bins256-div4 0 "--target bins --target-bins 256 --pred-div 4" "$B" "" \
	"256-bin classification: no better than regression"
want q  && row target clusters512-div4 0 "--target clusters --target-clusters 512 --clusters c512.st --pred-div 4" "$B" "" \
	"512 colour clusters (iGPT): no better than regression"
want q  && row region all 0 "" "$B" "--region all" "loss on all pixels: worse than masked only"
# a second seed for the main rows: the spread of a row
if [ $mode = full ]; then
	row masking random-m8-r0.6 1 "" "$B" "" "$P_RAND"
	row masking central-m4-r0.6 1 "" "-s central -m 4 -r 0.6" "" "square (central) masking: worse than random"
	row masking block-m4-r0.6 1 "" "-s block -m 4 -r 0.6 --block-min 4" "" "BEiT block-wise masking: worse than random patch 32"
	row head mlp 1 "--head mlp" "$B" "" "2-layer MLP head: no better than linear"
	row region all 1 "" "$B" "--region all" "loss on all pixels: worse than masked only"
fi
train_s=$(( $(date +%s) - start ))

# --- pictures: accuracy against AvgDist, masks on a photo, reconstructions ---
jq -c 'select(.group == "masking" and .seed == 0 and .avgdist != null) | {avgdist, acc1, name}' rows.jsonl |
	jq -s -c 'sort_by(.avgdist) | .[]' > masking.jsonl
mim-view --curve masking.jsonl --field acc1 --x avgdist -o "$png/acc-avgdist.png" \
	--title "probe top-1 (%) against AvgDist (px), masking rows, seed 0"
if [ $mode != test ]; then
	# the paper's masks on a real photo at 192 px: random patch 4..32 at 0.6, square, block-wise
	mkdir -p photo
	ln -sf /usr/share/wallpapers/Kite/contents/images/1280x800.jpg photo/kite.jpg
	mim-data -q --eval --size 192 --batch 1 photo > photo.mim
	for s in "-m 4" "-m 8" "-m 16" "-m 32" "-s central -m 4" "-s block -m 4"; do
		# shellcheck disable=SC2086
		mim-mask $s -r 0.6 --seed 3 < photo.mim
	done | mim-view -c masked -n 6 -o "$png/masks-photo.png"
	# reconstructions of test images by the rows' models, each under its own masks
	recon() {	# recon OUT.png ROW... (the first 4 test images, each row's masks, seed 7)
		o=$1; shift
		for n in "$@"; do
			mask=$(jq -r .mask rows-$steps/$n-s0.json)
			# shellcheck disable=SC2086
			mim-mask --ckpt rows-$steps/$n-s0.st --seed 7 $mask < first4.mim |
				mim-encode --ckpt rows-$steps/$n-s0.st | mim-head --ckpt rows-$steps/$n-s0.st
		done | mim-view -n $((4 * $#)) -o "$png/$o"
	}
	recon recon-masktypes.png random-m8-r0.6 central-m4-r0.6 block-m4-r0.6
	recon recon-region.png random-m8-r0.6 all
	recon recon-maskpatch.png random-m4-r0.6 random-m8-r0.6 random-m16-r0.6
fi
total_s=$(( $(date +%s) - start ))

# --- the results file ---
say "writing $out"
host_cpu=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)
{
	case $mode in
	quick) note="This is the **QUICK** run: $(wc -l < rows.jsonl) of the full run's 43 rows, $steps steps each (the full run: 300), one seed, so the spread of a row is not measured." ;;
	test)  note="This is the **ABL_TEST** run (the suite's check): 500 images, $steps steps, 2 rows; its numbers mean nothing." ;;
	full)  note="The full run: every row, $steps steps each, a second seed (1) for five rows." ;;
	esac
	cat <<EOT
# SimMIM's ablations at small scale

Written by \`$cmdline\` (examples/ablations.sh) on $(date -u '+%Y-%m-%d %H:%M UTC'), in $((total_s / 60)) min $((total_s % 60)) s
(rows already in DIR/rows-$steps from an earlier invocation of the same command are reused: the time each row
took when it was computed is in *Time per row* below), on $(nproc) cores ($host_cpu; other jobs shared them), from commit $rev. $note
${ABL_NOTE:-}
Every number below comes from that run; rerun the command to get them again (the same seed gives the same
masks, data order and initialisation; timings and img/s vary with the machine's load).

**Setting.** Fashion-MNIST (Debian's dataset-fashion-mnist, real photographs of clothes, 28 px grey
replicated to 3 channels) at 32 px with SimMIM's augmentation and ImageNet's normalisation. The model is
a small Swin (embed 32, depths 2,2,2,2, heads 1,2,4,8, window 4, patch 4: 8x8, 4x4, 2x2 and 1x1 tokens;
encoder stride 32, so every prediction resolution 1/1..1/32 of the paper fits; 2.3M parameters in the
encoder). The paper's ablations use Swin-B at 192 px for 100 epochs and score fine-tuning on ImageNet-1K.
Each row here is one pretraining of $steps steps of 64 images (AdamW, lr 1e-3 after $warm warmup steps,
cosine to 1e-5), from the same initialisation (seed 0) and the same data order. The baseline row is random masking of 8 px
cells (4x4 cells of a 32 px image, 1/4 of its side like the paper's 32 px cells of 1/6 of 192 px) at
ratio 0.6, the linear head, pixels at full resolution, l1 on the masked pixels.

**Measure.** A linear probe (MAE's: BatchNorm without affine + Linear, SGD, $pepochs epochs) on the
mean-pooled output of stage 2 of the frozen encoder (4x4 tokens of 64 channels; at this scale the stage
where pretraining changes the features most), trained on the first 10000 training images and scored
(top-1) on the 10000 test images. **Fine-tuning**, the paper's measure, is not available in mim yet (another
engineer is building it), so no row is fine-tuned, and the paper's conclusions are about fine-tuning
accuracy while ours are about a linear probe, and the two can disagree (§11: the paper's ViT-B probes at 56.7 %
but fine-tunes at 83.8 %).
The *loss* is the mean training loss of the last 20 steps, in the row's own loss: rows of another loss,
target, resolution or region are not comparable by it. AvgDist (mim-mask --stats, the mean distance in
pixels from a masked pixel to the nearest visible one) is measured on 2000 masks of 32 px; the paper's
best range, 10-20 px at 192 px, is 1.7-3.3 px at 32 px if it scales with the image side.

**The paper's column** is the finding of its ablation tables as reference/simmim.md §11 records it:
the exact cells of those tables were not available to us, so no number of the paper is quoted except where
§11 gives one. The paper's own numbers are fine-tuning top-1 on ImageNet-1K (Swin-B, 100 epochs), not
comparable in value with a probe on Fashion-MNIST; only the direction of each comparison is.

Each row runs
\`\`\`
mim-ckpt init $swin [INIT] --seed S -o R.st
$train_cmd
$probe_cmd
\`\`\`
with the options of the table's *options* column in place of INIT, MASK and STEP (the baseline: MASK =
\`$B\`, INIT and STEP empty).

EOT
	jq -rs --arg mode "$mode" -f "$here/ablations.jq" rows.jsonl
	if [ $mode != test ]; then
		cat <<EOT

## Pictures

- [accuracy against AvgDist](${pics}/acc-avgdist.png) (the paper's figure of fine-tuning accuracy
  against AvgDist; here the probe top-1 of the masking rows, seed 0, drawn by \`mim-view --curve
  masking.jsonl --field acc1 --x avgdist\`)
- [masks on a photo](${pics}/masks-photo.png): a Debian wallpaper (Kite) at 192 px, ratio 0.6, under random
  masks of 4, 8, 16 and 32 px cells, the square mask and BEiT's block-wise mask (top to bottom; \`mim-mask
  -s ... -m ... -r 0.6 --seed 3\`)
- [reconstructions under the three mask types](${pics}/recon-masktypes.png): the first 4 test images through
  the models of rows random-m8-r0.6, central-m4-r0.6 and block-m4-r0.6 (4 rows each, in that order), each
  under its own kind of mask (seed 7): original | masked | reconstruction | prediction
- [masked-only against all-pixel loss](${pics}/recon-region.png): rows random-m8-r0.6 (loss on masked pixels,
  first 4) and all (loss on all pixels, last 4)
- [mask patch sizes at ratio 0.6](${pics}/recon-maskpatch.png): rows random-m4-r0.6, random-m8-r0.6 and
  random-m16-r0.6

![probe top-1 against AvgDist](${pics}/acc-avgdist.png)
EOT
	fi
	printf '\nTime: %s s for the rows, %s s in all.\n' $train_s $total_s
} > "$out.tmp"
mv "$out.tmp" "$out"
say "done in $(( $(date +%s) - start )) s: $out"
