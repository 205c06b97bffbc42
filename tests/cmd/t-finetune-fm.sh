# t-finetune-fm.sh -- examples/finetune-fashion-mnist.sh end to end in its
# FM_TEST=1 mode (issue #15 part 6): 200-image shards of the Fashion-MNIST
# test set, 3 pretraining and 3 fine-tuning steps, one seed; the table has
# every row, each with numeric columns, and the header says what it is.
. "$MIM_TOP/tests/lib.sh"
FM=/usr/share/datasets/fashion-mnist
if [ ! -r "$FM/t10k-images-idx3-ubyte.gz" ]; then
	echo "skip - no Fashion-MNIST in $FM"
	exit 0
fi
S="$MIM_TOP/examples/finetune-fashion-mnist.sh"
expect_ok 'FM_TEST=1 finetune-fashion-mnist.sh runs end to end' 'FM_TEST=1 sh "$S" "$T/run"'
MD="$T/run/finetune-fashion-mnist.md"
check 'it writes the table' '[ -s "$MD" ]'
check 'the header: the mode, the command, the date, the CPU and nproc' 'grep -q "^\*\*FM_TEST run" "$MD" && grep -q "^- command: .*FM_TEST=.1. .*finetune-fashion-mnist.sh" "$MD" && grep -q "^- date: 20[0-9-]* [0-9:]* UTC" "$MD" && grep -q "^- machine: .*, .nproc. [0-9]" "$MD"'
for arch in vit swin; do
	for row in 'fine-tuned from scratch' 'SimMIM 3 steps, then fine-tuned' 'linear probe, random encoder' 'linear probe, SimMIM encoder'; do
		check "$arch: the row '$row' with numeric mean, min, max, count and per-seed value" \
			'grep -q "^| $arch | $row | [0-9][0-9]*\.[0-9][0-9] | [0-9][0-9]*\.[0-9][0-9] | [0-9][0-9]*\.[0-9][0-9] | 1 | [0-9][0-9]*\.[0-9][0-9] | .*[a-z].* |$" "$MD"'
	done
done
check 'the mixup/cutmix row (vit, first seed)' 'grep -q "^| vit | SimMIM, fine-tuned with mixup/cutmix (first seed only) | [0-9.]* | [0-9.]* | [0-9.]* | 1 | [0-9.]* | " "$MD"'
check 'exactly 9 result rows, top-1 within [0, 100]' '[ "$(grep -c "^| \(vit\|swin\) |" "$MD")" = 9 ] && awk -F" [|] " "/^[|] (vit|swin) [|]/ { if (\$3 < 0 || \$3 > 100) exit 1 }" "$MD"'
check 'the recipe and the measured throughput of each stage' 'grep -q "label smoothing 0.1" "$MD" && grep -q "^| vit fine-tune | 2 | [0-9]* | [0-9]* |$" "$MD" && grep -q "^| swin pretrain | 1 | " "$MD"'
