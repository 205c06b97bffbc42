# t-ablations.sh -- examples/ablations.sh still runs: ABL_TEST=1 (500
# Fashion-MNIST images, two rows of 5 steps, a 5-epoch probe) writes a
# results file with the masking table's two rows, numbers in every numeric
# column, the tables of the other ablations, and the AvgDist plot; a second
# run reuses the rows and writes the same tables.
. "$MIM_TOP/tests/lib.sh"
FM=/usr/share/datasets/fashion-mnist
if [ ! -r $FM/t10k-images-idx3-ubyte.gz ] || ! command -v jq > /dev/null; then
	echo "skip - Fashion-MNIST ($FM) or jq missing"
	exit 0
fi
export ABL_TEST=1
expect_ok 'ABL_TEST=1 examples/ablations.sh runs' 'sh "$MIM_TOP/examples/ablations.sh" "$T/run"'
md=$T/run/ablations.md
check 'the results file names its mode and has a table per ablation' '
	grep -q "This is the \*\*ABL_TEST\*\* run" "$md" &&
	for h in "Masking strategy" "Prediction head" "Prediction resolution" "Target and loss" "Loss region"; do
		grep -q "^## $h" "$md" || exit 1; done'
# | row | options | AvgDist | masked | loss | top-1 | paper |
num='[0-9][0-9]*\.*[0-9]*'
check 'the masking table: both rows, AvgDist, masked fraction, loss and top-1 are numbers' '
	for r in random-m8-r0.6 central-m4-r0.6; do
		grep -Eq "^\| $r \| MASK \`[^|]*\` \| $num \| $num \| $num \| $num \| [^|]+ \|\$" "$md" || exit 1
	done'
check 'rows.jsonl: two rows with numeric loss, acc1, AvgDist and steps 5' '
	[ $(wc -l < "$T/run/rows.jsonl") -eq 2 ] &&
	jq -se "all(.[]; (.loss | type) == \"number\" and (.acc1 | type) == \"number\" and .acc1 >= 0 and .acc1 <= 100
		and (.avgdist | type) == \"number\" and .avgdist > 0 and .steps == 5)" "$T/run/rows.jsonl" > /dev/null'
check 'the central square masks more contiguously than random cells (AvgDist)' '
	jq -se "(.[] | select(.name == \"central-m4-r0.6\") | .avgdist) > (.[] | select(.name == \"random-m8-r0.6\") | .avgdist)" "$T/run/rows.jsonl" > /dev/null'
check 'the plot of top-1 against AvgDist is a PNG' '
	head -c 8 "$T/run/pictures/acc-avgdist.png" | od -An -tx1 | grep -q "89 50 4e 47 0d 0a 1a 0a"'
sed -n '/^\*Noise/,/^Time per row/p' "$md" > "$T/tables1"
expect_ok 'a second run reuses the rows' 'sh "$MIM_TOP/examples/ablations.sh" "$T/run" && ! grep -q "probe top-1" "$T/.err"'
check 'and writes the same tables' 'sed -n "/^\*Noise/,/^Time per row/p" "$md" | cmp - "$T/tables1"'
