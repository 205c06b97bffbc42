# t-hostile.sh -- inputs made to exhaust memory or time: images whose
# headers claim billions of pixels, frames that claim gigabytes, endless
# streams of zeros. Each must end quickly, in bounded memory, with a
# clear message.
. "$MIM_TOP/tests/lib.sh"

# peak resident memory of a command, in KiB (GNU time), into $T/rss
rss() {
	/usr/bin/time -f %M -o "$T/rss.t" "$@"
	set -- $?
	tail -n 1 "$T/rss.t" > "$T/rss"
	return "$1"
}

# ---- images: the pixel limit ---------------------------------------------------
$PY "$MIM_TOP/tests/fuzz/image_seeds.py" --plain "$T/seeds"
mkdir -p "$T/huge" "$T/small"
# every format's lie, and one honest image so that the run is not empty
for f in png-999999.png png-100000.png png-rgba16-huge.png jpeg-65500.jpg jpeg-prog-65500.jpg \
    jpeg-prog-20000.jpg tiff-999999.tif tiff-onestrip.tif gif-65535.gif webp-vp8l-16383.webp \
    png-ok.png; do
	cp "$T/seeds/$f" "$T/huge/"
done
cp "$T/seeds/png-ok.png" "$T/seeds/jpeg-ok.jpg" "$T/small/"
expect_ok 'crafted headers of 2e8 to 1e12 pixels: exit 0' \
	'rss mim-data -s 16 -b 64 "$T/huge" > "$T/h" 2> "$T/herr"'
check 'each refused from its header, counted as a bad image' \
	'test "$(grep -c "is over the limit of 178956970 pixels" "$T/herr")" = 10 &&
	grep -q "1 images in 1 batch.*skipped 10 bad images" "$T/herr"'
check 'peak memory under 512 MB (was 24 GB for the 999999x999999 PNG)' \
	'test "$(cat "$T/rss")" -lt 524288 || { echo "max RSS $(cat "$T/rss") KiB" >&2; false; }'
check '--max-pixels: at the limit decoded, one over refused (libjpeg and libvips paths)' \
	'mim-data -q -s 8 --max-pixels 64 "$T/small" > /dev/null 2> "$T/m1" && ! test -s "$T/m1" &&
	mim-data -s 8 --max-pixels 63 "$T/small" 2>&1 > /dev/null | grep -q "jpeg-ok.jpg: image of 8x8 pixels is over the limit of 63" &&
	mim-data -s 8 --max-pixels 3 "$T/small" 2>&1 > /dev/null | grep -q "png-ok.png: image of 2x2 pixels is over the limit of 3"'
expect_fail '--max-pixels 0' 2 'mim-data --max-pixels 0 "$T/small"'
check '--max-pixels 0: the range in the message' 'mim-data --max-pixels 0 "$T/small" 2>&1 | grep -q "max-pixels: 0 is out of range"'

# ---- frames: the cap on streams ----------------------------------------------------
# a frame header claiming 12 GiB of data, then (below) zeros from /dev/zero
$PY - "$T" <<'PYEOF'
import json, struct, sys
def frame(n, data=b""):
    h = json.dumps({"x": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data
open(sys.argv[1] + "/claim12g", "wb").write(frame(12 << 30))
open(sys.argv[1] + "/f2k", "wb").write(frame(2048, bytes(2048)))
PYEOF
expect_fail 'a pipe frame claiming 12 GiB, fed zeros: refused' 1 \
	'cat "$T/claim12g" /dev/zero | rss timeout 20 mim-info > /dev/null'
check 'refused from the header, naming the limit, in little memory; MIM_MAX_FRAME=16G reads on' \
	'cat "$T/claim12g" /dev/zero | rss timeout 20 mim-info 2>&1 > /dev/null |
	grep -q "<stdin>: frame 0: frame of 128849019[0-9][0-9] bytes is over the limit of 4294967296 for a stream (raise it with MIM_MAX_FRAME)" &&
	test "$(cat "$T/rss")" -lt 65536 &&
	{ cat "$T/claim12g"; head -c 1000000 /dev/zero; } | MIM_MAX_FRAME=16G timeout 20 mim-info 2>&1 > /dev/null |
	grep -q "truncated data (1000000 of 12884901888 bytes)"'
check 'MIM_MAX_FRAME=1K: a 2 KiB frame from a pipe refused, from a file read' \
	'cat "$T/f2k" | MIM_MAX_FRAME=1K mim-info 2>&1 > /dev/null | grep -q "over the limit of 1024" &&
	MIM_MAX_FRAME=1K mim-info "$T/f2k" > /dev/null'
expect_fail 'MIM_MAX_FRAME not a size' 1 'MIM_MAX_FRAME=12X mim-info < "$T/f2k"'

# ---- tar streams of zeros --------------------------------------------------------
# (libarchive reads on through zero blocks for a concatenated archive)
(cd "$T/small" && tar -cf "$T/small.tar" png-ok.png jpeg-ok.jpg)
expect_fail 'zeros on stdin: not a tar archive, at once' 1 \
	'head -c 256M /dev/zero | timeout 20 mim-data -s 8 > /dev/null'
check 'zeros on stdin: the message says why' \
	'head -c 256M /dev/zero | timeout 20 mim-data -s 8 2>&1 > /dev/null |
	grep -q "<stdin>: not a readable tar archive: 64 MiB of zero blocks and no member header"'
expect_ok 'a tar, then endless zeros: its images, then the end of the shard' \
	'cat "$T/small.tar" /dev/zero | timeout 20 mim-data -s 8 > "$T/z" 2> "$T/zerr"'
check 'a tar, then endless zeros: two images, one bad shard' \
	'grep -q "<stdin>: truncated or damaged: 64 MiB of zero blocks" "$T/zerr" &&
	grep -q "2 images in 1 batch.* 1 bad shard" "$T/zerr"'

# ---- the decode ring's memory budget -------------------------------------------
# 40 samples of a tiny image and a 2 MiB member: with --out the ring (32
# jobs at -j 2) holds whole samples until they are written
$PY - "$T/seeds/png-ok.png" "$T/fat.tar" <<'PYEOF'
import io, sys, tarfile
png = open(sys.argv[1], "rb").read()
with tarfile.open(sys.argv[2], "w") as t:
    for i in range(40):
        for ext, d in (("png", png), ("bin", bytes(2 << 20))):
            ti = tarfile.TarInfo("s%03d.%s" % (i, ext)); ti.size = len(d); t.addfile(ti, io.BytesIO(d))
PYEOF
mkdir -p "$T/o1" "$T/o2"
# (AddressSanitizer would keep what is freed, 256 MB of it, in quarantine)
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0"
export ASAN_OPTIONS
expect_ok '--max-inflight 1G and 4M' \
	'rss mim-data -q -j 2 --eval -s 16 --out "$T/o1/x-%d.tar" --max-inflight 1G "$T/fat.tar" && cp "$T/rss" "$T/rss1" &&
	rss mim-data -q -j 2 --eval -s 16 --out "$T/o2/x-%d.tar" --max-inflight 4M "$T/fat.tar" && cp "$T/rss" "$T/rss2"'
check '--max-inflight 4M: 40 MB less at the peak, the same shard' \
	'test "$(cat "$T/rss2")" -lt $(($(cat "$T/rss1") - 40000)) && cmp "$T/o1/x-0.tar" "$T/o2/x-0.tar" ||
	{ echo "max RSS $(cat "$T/rss1") and $(cat "$T/rss2") KiB" >&2; false; }'
expect_fail '--max-inflight: not a size' 2 'mim-data --max-inflight 3X "$T/fat.tar"'
