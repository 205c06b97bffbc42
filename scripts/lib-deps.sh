#!/bin/sh
# lib-deps.sh -- the dependency cycles between the library's source files,
# read from the symbols of their objects: file A depends on file B when A
# uses a symbol that B defines. A cycle (two or more files that reach each
# other) means neither can be understood, tested or replaced alone.
#   scripts/lib-deps.sh [-v] [DIR]   DIR: the objects, default
#                                    ${MIM_BUILD:-build}/obj/lib
# Prints one line per cycle, "cycle: FILE FILE ...", the files of one
# strongly connected component, each followed by "#   A -> B: SYMBOLS"
# for the edges inside it; -v also prints every edge of the graph first.
# Files are named as their sources, relative to DIR's parent
# (build/obj/lib/model/vit.o is lib/model/vit.c). Exits 1 if there is a
# cycle, 2 on a usage error or when DIR holds no objects, 0 otherwise.
set -eu

verbose=0
if [ "${1:-}" = -v ]; then verbose=1; shift; fi
[ $# -le 1 ] || { echo "usage: lib-deps.sh [-v] [DIR]" >&2; exit 2; }
dir=${1:-${MIM_BUILD:-build}/obj/lib}
dir=${dir%/}
objs=$(find "$dir" -name '*.o' 2>/dev/null | sort)
[ -n "$objs" ] || { echo "lib-deps.sh: $dir: no objects" >&2; exit 2; }
top=$(dirname "$dir")

# nm -A: "FILE:ADDR TYPE SYMBOL", or "FILE: U SYMBOL" with no address;
# only the global symbols (-g) link one file to another
# shellcheck disable=SC2086
nm -A -g $objs | awk -v top="$top/" -v verbose="$verbose" '
function src(f) {
	sub(/:[0-9a-fA-F]*$/, "", f)
	if (index(f, top) == 1)
		f = substr(f, length(top) + 1)
	sub(/\.o$/, ".c", f)
	return f
}
# Tarjan: the strongly connected components of the file graph
function visit(v,    i, w) {
	idx[v] = lowl[v] = ++counter
	stack[++sp] = v
	onstack[v] = 1
	for (i = 1; i <= nout[v]; i++) {
		w = out[v, i]
		if (!(w in idx)) {
			visit(w)
			if (lowl[w] < lowl[v]) lowl[v] = lowl[w]
		} else if (onstack[w] && idx[w] < lowl[v])
			lowl[v] = idx[w]
	}
	if (lowl[v] == idx[v])
		component(v)
}
function component(v,    n, w, m, i, j, a, b) {
	n = 0
	do {
		w = stack[sp--]
		onstack[w] = 0
		member[++n] = w
	} while (w != v)
	if (n < 2)
		return
	# files in name order, so the report is stable
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && member[j - 1] > member[j]; j--) {
			w = member[j]; member[j] = member[j - 1]; member[j - 1] = w
		}
	line = "cycle:"
	for (i = 1; i <= n; i++) {
		line = line " " member[i]
		in_scc[member[i]] = 1
	}
	print line
	for (i = 1; i <= n; i++) {
		a = member[i]
		for (m = 1; m <= nout[a]; m++) {
			b = out[a, m]
			if (in_scc[b])
				print "#   " a " -> " b ":" syms[a, b]
		}
	}
	for (i = 1; i <= n; i++)
		delete in_scc[member[i]]
	cycles++
}
{
	f = src($1)
	files[f] = 1
	if ($1 ~ /:$/)		# no address: undefined here
		use[++nuse] = f SUBSEP $3
	else if (!($3 in def))
		def[$3] = f
}
END {
	for (u = 1; u <= nuse; u++) {
		split(use[u], p, SUBSEP)
		a = p[1]; s = p[2]
		if (!(s in def) || def[s] == a)
			continue	# from outside the library, or its own
		b = def[s]
		if (!((a, b) in syms)) {
			out[a, ++nout[a]] = b
			syms[a, b] = ""
		}
		syms[a, b] = syms[a, b] " " s
	}
	n = 0
	for (f in files)
		order[++n] = f
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && order[j - 1] > order[j]; j--) {
			w = order[j]; order[j] = order[j - 1]; order[j - 1] = w
		}
	if (verbose)
		for (i = 1; i <= n; i++)
			for (m = 1; m <= nout[order[i]]; m++)
				print "edge: " order[i] " -> " out[order[i], m] ":" \
				    syms[order[i], out[order[i], m]]
	cycles = 0
	for (i = 1; i <= n; i++)
		if (!(order[i] in idx))
			visit(order[i])
	exit cycles > 0
}'
