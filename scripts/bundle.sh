#!/bin/sh
# bundle.sh -- a relocatable mim: the tools with every shared library they
# load but glibc's, and launchers that point the loader at them, so that
# mim runs on a machine without the Debian packages (a cluster node
# without root, another distribution with a glibc at least as new).
#   scripts/bundle.sh BUILD OUT.tar.gz      (make bundle)
#   scripts/bundle.sh BUILD OUT.tar.xz      xz: a third smaller (for a
#                    machine that takes 64 MiB at most: make bundle
#                    BUNDLE_OUT=build/mim-bundle.tar.xz)
# Layout of the tarball, under mim/:
#   bin/mim-*        launchers: LD_LIBRARY_PATH=../lib, then libexec/mim-*
#   libexec/mim-*    the tools as built
#   lib/             the libraries (ldd of every tool, glibc's left out)
#   share/man/       the man pages
#   bench/, tests/ref/   bench/run.sh and its PyTorch references, to
#                    measure mim against the PyTorch of that machine
#   README.bundle    what this is
# Open MPI's libraries travel (mim-step links them), its launcher and
# plugins do not: for data-parallel runs use the node's own Open MPI 4.1.
set -eu
build=$1
out=$2
top=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/mim
mkdir -p "$root/bin" "$root/libexec" "$root/lib" "$root/share/man/man1" \
	"$root/share/man/man5" "$root/share/man/man7" "$root/tests"

# glibc's own libraries stay: they must match the node's loader
glibc() {
	case $(basename "$1") in
	ld-linux*|libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libresolv.so*|\
	libutil.so*|libanl.so*|libnsl.so*|libmvec.so*|libBrokenLocale.so*|libcrypt.so*) return 0 ;;
	esac
	return 1
}

# the libraries a program loads, into lib/
take_libs() {
	ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | while read -r lib; do
		glibc "$lib" && continue
		[ -e "$root/lib/$(basename "$lib")" ] || cp -L "$lib" "$root/lib/"
	done
}

MIM_BUILD=$build "$top/scripts/benchprogs.sh"
mkdir -p "$root/libexec/bench"
for p in sgemm stepbench gemmcold poolbench; do
	cp "$build/bench/$p" "$root/libexec/bench/"
	take_libs "$build/bench/$p"
done
# GNU time (glibc alone), for bench/run.sh's peak memory where the node
# has none (a container image)
[ -x /usr/bin/time ] && cp /usr/bin/time "$root/libexec/time"
for t in "$build"/bin/mim-*; do
	name=$(basename "$t")
	cp "$t" "$root/libexec/$name"
	cat > "$root/bin/$name" <<'EOF'
#!/bin/sh
# launcher of a relocatable mim (scripts/bundle.sh)
here=$(cd "$(dirname "$0")/.." && pwd)
LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/libexec/$(basename "$0")" "$@"
EOF
	chmod +x "$root/bin/$name"
	take_libs "$t"
done
for m in "$top"/man/*.[157]; do
	cp "$m" "$root/share/man/man${m##*.}/"
done
cp -r "$top/bench" "$root/bench"
rm -rf "$root/bench/out"
# photos for the bench on a machine without the wallpapers: their 640x480
# versions (about 1 MB in all)
mkdir -p "$root/bench/images"
for f in /usr/share/wallpapers/*/contents/images/640x480.jpg; do
	[ -e "$f" ] && cp "$f" "$root/bench/images/$(echo "$f" | cut -d/ -f5).jpg"
done
cp -r "$top/tests/ref" "$root/tests/ref"
cat > "$root/README.bundle" <<EOF
mim, relocatable: $(cd "$top" && git describe --always --dirty 2>/dev/null || echo unknown)
built on $(uname -m), $(ldd --version | head -n 1)

  export PATH=\$PWD/mim/bin:\$PATH      then mim-ckpt, mim-data, ... as usual
  man -l mim/share/man/man7/mim.7
  mim-info --system                    the CPU, the BLAS kernels, threads
  PATH=\$PWD/mim/bin:\$PATH mim/bench/run.sh vit-tiny
                                       mim against this machine's PyTorch

The node needs glibc at least as new as the one above, and, for
data-parallel runs, its own Open MPI 4.1 (mpirun and plugins).
EOF
n=$(ls "$root/lib" | wc -l)
case $out in
*.tar.xz | *.txz) tar -C "$tmp" -cf - mim | xz -T0 -6 > "$out" ;;
*) tar -C "$tmp" -czf "$out" mim ;;
esac
echo "bundle.sh: $out: $(ls "$root/bin" | wc -l) tools, $n libraries, $(du -h "$out" | cut -f1)" >&2
