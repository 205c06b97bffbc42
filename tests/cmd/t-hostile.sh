# t-hostile.sh -- inputs made to exhaust memory or time: images whose
# headers claim billions of pixels, frames that claim gigabytes, endless
# streams of zeros. Each must end quickly, in bounded memory, with a
# clear message.
. "$MIM_TOP/tests/lib.sh"

# peak resident memory of a command, in KiB (GNU time), into $T/rss
rss() { /usr/bin/time -f %M -o "$T/rss" "$@"; }

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
