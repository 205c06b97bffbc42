# t-bundle.sh -- make bundle: the relocatable tarball runs the tools on its
# own libraries (not the system's), from any folder, with the same bytes as
# the build it came from.
. "$MIM_TOP/tests/lib.sh"
if [ -n "${MIM_SANITIZE:-}" ]; then
	echo "skip - the bundle of a sanitizer build"
	exit 0
fi
expect_ok 'scripts/bundle.sh' '"$MIM_TOP/scripts/bundle.sh" "$MIM_TOP/$MIM_BUILD" "$T/b.tar.gz"'
mkdir -p "$T/x"
expect_ok 'unpacks anywhere' 'tar -C "$T/x" -xzf "$T/b.tar.gz"'
B=$T/x/mim/bin
check 'a launcher for every tool, the libraries, man pages, bench' 'for t in "$MIM_TOP/$MIM_BUILD"/bin/mim-*; do test -x "$B/$(basename $t)" || exit 1; done; ls "$T/x/mim/lib" | grep -q libopenblas && test -f "$T/x/mim/share/man/man1/mim-step.1" && test -x "$T/x/mim/bench/run.sh" && test -x "$T/x/mim/libexec/bench/stepbench"'
check 'no glibc library in it' '! ls "$T/x/mim/lib" | grep -E -q "^(libc|libm|libpthread|libdl|ld-linux)[.-]"'
# which copies the loader picks, with a bare environment
(cd /; env -i PATH=/usr/bin:/bin LD_DEBUG=libs "$B/mim-data" --help) > /dev/null 2> "$T/ld-data"
(cd /; env -i PATH=/usr/bin:/bin LD_DEBUG=libs "$B/mim-step" --help) > /dev/null 2> "$T/ld-step"
check 'mim-data loads the bundle'"'"'s libvips and libarchive' 'grep -q "calling init: $T/x/mim/lib/libvips" "$T/ld-data" && grep -q "calling init: $T/x/mim/lib/libarchive" "$T/ld-data"'
check 'mim-step loads the bundle'"'"'s OpenBLAS and Open MPI' 'grep -q "calling init: $T/x/mim/lib/libopenblas" "$T/ld-step" && grep -q "calling init: $T/x/mim/lib/libmpi" "$T/ld-step"'
check 'and no copy of them from the system' '! grep -E "calling init: /(usr/)?lib/.*(libvips|libopenblas|libarchive|libmpi)" "$T/ld-data" "$T/ld-step"'
# the same training bytes as the build
$PY - "$T/in.mim" <<'PYEOF'
import sys, numpy as np, st
g = np.random.default_rng(1)
with open(sys.argv[1], "wb") as f:
    for _ in range(3):
        f.write(st.frame_bytes({"image": g.standard_normal((2, 3, 32, 32)).astype(np.float32),
                                "mask": (g.random((2, 8, 8)) < 0.6).astype(np.uint8)}))
PYEOF
expect_ok 'init and 3 steps with the bundle' '"$B/mim-ckpt" init --preset micro-vit --seed 2 -o "$T/a.st" && env -i PATH=/usr/bin:/bin MIM_THREADS=2 "$B/mim-step" -q --ckpt "$T/a.st" --steps 3 --lr 1e-3 "$T/in.mim"'
expect_ok 'the same with the build' 'mim-ckpt init --preset micro-vit --seed 2 -o "$T/b.st" && MIM_THREADS=2 mim-step -q --ckpt "$T/b.st" --steps 3 --lr 1e-3 "$T/in.mim"'
check 'byte-identical checkpoints' 'cmp "$T/a.st" "$T/b.st"'
check 'bench/run.sh finds the bundle'"'"'s tools' 'grep -q "BIN=\$TOP/bin" "$T/x/mim/bench/run.sh"'
