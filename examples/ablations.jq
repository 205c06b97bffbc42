# ablations.jq -- the tables of examples/ablations.md from the rows of
# examples/ablations.sh (jq -rs -f ablations.jq rows.jsonl; one JSON object a
# row: group, name, seed, init, mask, step, paper, avgdist, frac, loss, acc1,
# img_per_s, steps, train_s, probe_s).
def r(x; n): if x == null then "–" else (x * pow(10; n) | round / pow(10; n) | tostring) end;
def code(x): if x == "" then "" else "`" + x + "`" end;
def opts(x): [ (if x.init != "" then "INIT " + code(x.init) else empty end),
	(if x.mask != "" then "MASK " + code(x.mask) else empty end),
	(if x.step != "" and x.step != "-" then "STEP " + code(x.step) else empty end),
	(if x.step == "-" then "no pretraining" else empty end) ] | join(", ");

. as $all
| [ $all[] | select(.seed == 0) ] as $s0
| def other(x): x as $x | ($x.key // $x.name) as $k | [ $all[] | select(.name == $k and .seed != $x.seed) ][0];
# the spread: the largest difference of top-1 between the two seeds of a row
[ $s0[] | other(.) as $o | select($o != null) | (.acc1 - $o.acc1 | fabs) ] as $diffs
| (if ($diffs | length) > 0 then ($diffs | max) else null end) as $spread
| (if $spread == null then 0.5 else ([$spread, 0.1] | max) end) as $tol
| ([ $s0[] | select(.name == "random-m8-r0.6") ][0]) as $base
| ([ $s0[] | select(.name == "init") ][0]) as $init
| def top1(x): r(x.acc1; 2) + (other(x) as $o | if $o == null then "" else " / " + r($o.acc1; 2) end);
def cmp(a; b): if a == null or b == null then "not measured"
	elif (a - b) > $tol then "higher" elif (b - a) > $tol then "lower" else "within noise" end;
def verdict(ok): if ok then "**agrees**" else "**does not agree**" end;
def table(rows; lab; extra):
	"| row | options (differing from the baseline pipeline) | AvgDist px | masked | loss | probe top-1 % | "
	+ (if extra then "img/s | " else "" end) + "paper (§11) |\n"
	+ "|---|---|---|---|---|---|" + (if extra then "---|" else "" end) + "---|\n"
	+ ([ rows[] | "| " + lab + " | " + opts(.) + " | " + r(.avgdist; 2) + " | " + r(.frac; 3)
		+ " | " + r(.loss; 4) + " | " + top1(.) + " | "
		+ (if extra then r(.img_per_s; 0) + " | " else "" end) + .paper + " |" ] | join("\n"));
def with_base(g; name; paper): ([ $base | select(. != null) | .key = .name | .name = name | .paper = paper ]
	+ [ $s0[] | select(.group == g) ]);

"*Noise.* "
+ (if $spread == null then "No row ran with a second seed, so the spread is not measured; differences of up to 0.5 points are called *within noise* below (a guess, not a measurement)."
   else "The largest difference between the two seeds of a row is " + r($spread; 2) + " points of top-1 (rows with two seeds show both: seed 0 / seed 1); differences up to that are called *within noise* below." end)
+ (if $init != null then " Without pretraining (the initialisation of seed 0, probed the same way) the probe scores " + r($init.acc1; 2) + " %." else "" end)
+ "\n\n## Masking strategy, mask patch and ratio\n\n"
+ table([ $s0[] | select(.group == "masking")
		| if (.name | startswith("random")) and .name != "random-m8-r0.6"
		  then .paper = "random masking: patch 32 best and robust to the ratio; smaller patches want higher ratios" else . end ]
	| (map(select(.name | startswith("random"))) | sort_by(.name | capture("m(?<m>[0-9]+)-r(?<r>[0-9.]+)") | [(.m | tonumber), (.r | tonumber)]))
	  + map(select(.name | startswith("random") | not)); .name; false)
+ "\n\n"
+ ([ $s0[] | select(.group == "masking") ] as $m
   | if ($m | length) < 2 then "" else
	($m | max_by(.acc1)) as $best
	| ([ $m[] | select(.name | startswith("random")) ] | max_by(.acc1)) as $bestr
	| ([ $m[] | select(.name | startswith("random") | not) ]) as $others
	| "Best row: " + $best.name + " (" + r($best.acc1; 2) + " %, AvgDist " + r($best.avgdist; 2) + " px). "
	+ "Paper: random masking beats square and block-wise masking; "
	+ (if ($others | length) > 0 then
		"here the best random row against " + ([ $others[] | .name + " " + r(.acc1; 2) + " % (" + cmp($bestr.acc1; .acc1) + ")" ] | join(", "))
		+ " (the best random row is " + $bestr.name + ", " + r($bestr.acc1; 2) + " %; \"higher\" means random is better): "
		+ verdict(all($others[]; $bestr.acc1 - .acc1 > $tol)) + ". " else "" end)
	+ "Paper: accuracy peaks for AvgDist of 10-20 px at 192 px (1.7-3.3 px at 32 px if it scales with the side); "
	+ "here the best random row has AvgDist " + r($bestr.avgdist; 2) + " px: "
	+ verdict($bestr.avgdist >= 1.7 and $bestr.avgdist <= 3.3) + ". "
	+ "The figure of top-1 against AvgDist is ablations/acc-avgdist.png (below)."
   end)
+ "\n\n## Prediction head\n\n"
+ table(with_base("head"; "linear"; "linear (1x1 conv): as good or better, the cheapest")
	| map(.name |= if . == "linear" then "linear (= random-m8-r0.6)" else . end); .name; true)
+ "\n\n"
+ ([ $s0[] | select(.group == "head") ] as $h
   | if ($h | length) == 0 or $base == null then "" else
	"img/s is mim-step's throughput (images per second of training, the mean of the steps after the 5th, from its --log), measured on a shared machine; "
	+ ([ $h[] | .name + " " + r($base.img_per_s / .img_per_s; 2) + "x the linear head's time per image" ] | join(", ")) + ". "
	+ "Paper: the linear head is as good as heavier heads or better, at the lowest cost; here the linear head against "
	+ ([ $h[] | .name + " (" + cmp($base.acc1; .acc1) + ")" ] | join(", ")) + ": "
	+ verdict(all($h[]; $base.acc1 - .acc1 >= -$tol)) + "."
   end)
+ "\n\n## Prediction resolution\n\n"
+ table(with_base("resolution"; "div1"; "full resolution: the paper's default; lower resolutions similar")
	| sort_by(.name | ltrimstr("div") | tonumber); (.name | ltrimstr("div") | tonumber) as $d
	| "1/" + ($d | tostring) + " (" + ((32 / $d) | tostring) + "x" + ((32 / $d) | tostring) + " target)"; false)
+ "\n\n"
+ ([ $s0[] | select(.group == "resolution") ] as $d
   | if ($d | length) == 0 or $base == null then "" else
	([ $d[] | select(.mask == $base.mask and .loss > 0) ]) as $same
	| ([ $d[] | select(.mask != $base.mask) ]) as $other
	| ([ $d[] | select(.loss == 0) ]) as $dead
	| ([ $s0[] | select(.name == "random-m16-r0.6") ][0]) as $b16
	| "Against full resolution (\"higher\" means full resolution is better): "
	+ ([ $same[] | .name + " " + cmp($base.acc1; .acc1) ] | join(", "))
	+ ([ $other[] | "; " + .name + " (16 px mask cells) against random-m16-r0.6 at full resolution "
		+ (if $b16 == null then "not measured" else cmp($b16.acc1; .acc1) end) ] | join(""))
	+ ". "
	+ (if ($dead | length) > 0 then ([ $dead[] | .name ] | join(", "))
		+ ": the target pixel is larger than a mask cell and is scored only when all of it is masked, which never"
		+ " happens at ratio 0.6, so the loss is 0, nothing trains and the probe is the initialisation's (the paper's"
		+ " lowest resolution, 6x6 at 192 px, has target pixels of its 32 px mask cell: it never meets this). " else "" end)
	+ "Paper: predicting at lower resolutions performs about like full resolution: "
	+ verdict(all($same[]; ($base.acc1 - .acc1 | fabs) <= $tol)
		and ($b16 == null or all($other[]; ($b16.acc1 - .acc1 | fabs) <= $tol))) + "."
   end)
+ "\n\n## Target and loss\n\n"
+ table(with_base("target"; "l1"; "l1: the default; l1, smooth-l1 and l2 about equal") | map(.); .name; false)
+ "\n\n"
+ ([ $s0[] | select(.group == "target") ] as $t
   | if ($t | length) == 0 or $base == null then "" else
	([ $t[] | select(.step | startswith("--loss")) ]) as $reg
	| ([ $t[] | select(.step | startswith("--loss") | not) ]) as $cls
	| "The loss column is each row's own loss (l1, l2, smooth-l1, or the cross-entropy of the bins and clusters), not comparable across rows. "
	+ (if ($reg | length) > 0 then "Paper: l1, smooth-l1 and l2 perform about equally; here l1 against "
		+ ([ $reg[] | .name + " " + cmp($base.acc1; .acc1) ] | join(", ")) + ": "
		+ verdict(all($reg[]; ($base.acc1 - .acc1 | fabs) <= $tol)) + ". " else "" end)
	+ (if ($cls | length) > 0 then
		([ $s0[] | select(.name == "div4") ][0]) as $d4
		| def ref(x): if (x.init | test("--pred-div 4")) then $d4 else $base end;
		"Paper: the classification targets (8 or 256 bins, 512 colour clusters) are no better than regression; here, against l1 at the same resolution ("
		+ ([ $cls[] | .name + " " + (ref(.) as $ref | if $ref == null then "not measured" else cmp($ref.acc1; .acc1) + " (l1: " + $ref.name + ")" end) ] | join(", "))
		+ "; \"higher\" means l1 is better): "
		+ verdict(all($cls[]; ref(.) as $ref | $ref == null or $ref.acc1 - .acc1 >= -$tol)) + "." else "" end)
   end)
+ "\n\n## Loss region: masked pixels against all pixels\n\n"
+ table(with_base("region"; "masked"; "masked only: better") | map(.); .name; false)
+ "\n\n"
+ ([ $s0[] | select(.group == "region") ] as $g
   | if ($g | length) == 0 or $base == null then "" else
	"Paper: the loss on the masked pixels only is better than reconstructing all pixels; here masked against "
	+ ([ $g[] | .name + " " + cmp($base.acc1; .acc1) ] | join(", ")) + " (\"higher\" means masked-only is better): "
	+ verdict(all($g[]; $base.acc1 - .acc1 > $tol)) + "."
   end)
+ "\n\nTime per row: " + ([ $all[] | .train_s ] | add | tostring) + " s of pretraining and "
+ ([ $all[] | .probe_s ] | add | tostring) + " s of probing (encoding included) in all, for " + ($all | length | tostring) + " rows."
