#!/bin/sh
# benchprogs.sh -- the bench programs (bench/sgemm.c, stepbench.c,
# gemmcold.c, attnbench.c, poolbench.c, amxbench.c) linked with libmim into $MIM_BUILD/bench
# (bench/run.sh and scripts/bundle.sh call it). BENCH_OPT: the code
# generation (default -O2 -march=native; the bundle's is portable).
set -eu
cd "$(dirname "$0")/.."
BUILD=${MIM_BUILD:-build}
PKGS="vips libarchive jansson openblas"
mkdir -p "$BUILD/bench"
for p in sgemm stepbench gemmcold attnbench poolbench amxbench; do
	cc ${BENCH_OPT:--O2 -march=native} -std=c11 -D_GNU_SOURCE -Iinclude $(pkg-config --cflags $PKGS) \
		-o "$BUILD/bench/$p" "bench/$p.c" "$BUILD/lib/libmim.a" \
		$(pkg-config --libs $PKGS) $(pkg-config --libs dnnl 2>/dev/null || echo -ldnnl) -lgomp -lm -lpthread
done
