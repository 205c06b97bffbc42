#!/usr/bin/awk -f
# fcjoin.awk -- a step's profile measured on T threads beside its forecast
# for T (stepbench --profile, and --forecast T --profile), kernel by
# kernel: what the machine costs beyond the work's division (shared
# memory bandwidth and caches, waking threads, the cores' clocks).
#
#   bench/fcjoin.awk MEASURED.txt FORECAST.txt
#
# Prints a markdown table, the kernels that lose the most first:
# measured ms a step, the forecast's ms, their ratio and difference.
function name(s) { s = substr(s, 1, 22); sub(/ +$/, "", s); return s }
FNR == 1 { f++; next }
{
	k = name($0); split(substr($0, 23), v, " ")
	if (f == 1) { meas[k] = v[1]; order[++n] = k }
	else if (k == "step (mean)" || k == "(untimed)") fc[k] = v[4]
	else fc[k] = v[6]
}
END {
	print "| kernel | measured ms | forecast ms | measured / forecast | lost ms |"
	print "|---|---|---|---|---|"
	for (i = 1; i <= n; i++) {
		k = order[i]
		if (!(k in fc) || fc[k] == "") continue
		lost[i] = meas[k] - fc[k]
	}
	for (;;) {	# the largest loss first, the step last
		b = 0
		for (i = 1; i <= n; i++)
			if ((i in lost) && order[i] != "step (mean)" && (!b || lost[i] > lost[b])) b = i
		if (!b) break
		row(order[b]); delete lost[b]
	}
	row("step (mean)")
}
function row(k) {
	printf "| %s | %.2f | %.2f | %.2f | %.2f |\n", k, meas[k], fc[k],
	    (fc[k] > 0 ? meas[k] / fc[k] : 0), meas[k] - fc[k]
}
