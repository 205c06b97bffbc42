#!/usr/bin/env python3
"""image_seeds.py -- small images whose headers lie about their size, for
fuzz_image.c and the hostile-input tests.

    image_seeds.py DIR           fuzz seeds: one mode byte (see fuzz_image.c),
                                 then the image (the committed
                                 tests/fuzz/image_seeds/ is this output)
    image_seeds.py --plain DIR   the images alone, named NAME.EXT

Every format mim-data decodes claims a size from its header: a PNG's IHDR,
a JPEG's SOF, a WebP's VP8X canvas or VP8 frame, a TIFF's ImageWidth and
ImageLength, a GIF's logical screen and image descriptor. Each lie is
written onto a tiny valid image, so a decoder gets past the signature and
reads the claim; the few real pixels that follow run out long before the
claimed size. Beside them, the same tiny images unpatched, so that the
fuzzer starts from each format's valid path too. Python's standard library
only (the bytes are exact, whatever the PIL version)."""
import os
import struct
import sys
import zlib


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(w, h, depth=8, colour=2, rows=2):
    """A PNG of w x h (IHDR) with the pixels of `rows` rows of 2 pixels."""
    bpp = {0: 1, 2: 3, 6: 4}[colour] * depth // 8
    raw = b"".join(b"\0" + bytes(range(i, i + 2 * bpp)) for i in range(rows))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# An 8x8 grey JPEG (PIL, quality 50): the SOF marker's height and width
# are patched below, and its type for a progressive one.
JPEG_GREY = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300100b0c0e0c0a100e0d0e1211101318"
    "281a181616183123251d283a333d3c3933383740485c4e404457453738506d51575f626768673e4d"
    "71797064785c656763ffc0000b080008000801011100ffc4001f0000010501010101010100000000"
    "000000000102030405060708090a0bffc400b5100002010303020403050504040000017d01020300"
    "041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a"
    "25262728292a3435363738393a434445464748494a535455565758595a636465666768696a737475"
    "767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9ba"
    "c2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda"
    "0008010100003f002bffd9")


def jpeg(w, h, progressive=False):
    """The grey JPEG claiming w x h (SOF0, or SOF2 with progressive)."""
    b = bytearray(JPEG_GREY)
    at = b.index(b"\xff\xc0")
    if progressive:
        b[at + 1] = 0xC2
    b[at + 5:at + 9] = struct.pack(">HH", h, w)
    return bytes(b)


# A 1x1 lossless WebP's VP8L bitstream (PIL): 0x2f, then 14 bits of
# width - 1, 14 of height - 1, alpha and version, then the image.
VP8L_1X1 = bytes.fromhex("2f0000000007508a2ad4a3ff8188e87f00")


def riff(chunks):
    body = b"WEBP"
    for kind, data in chunks:
        body += kind + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_vp8x(w, h):
    """A VP8X canvas of w x h (24-bit fields, up to 2^24) around the 1x1
    image."""
    vp8x = struct.pack("<I", 0) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    return riff([(b"VP8X", vp8x), (b"VP8L", VP8L_1X1)])


def webp_vp8l(w, h):
    """The 1x1 image's VP8L header claiming w x h (14-bit fields)."""
    bits = (w - 1) | (h - 1) << 14
    return riff([(b"VP8L", b"\x2f" + struct.pack("<I", bits) + VP8L_1X1[5:])])


def tiff(w, h, rows_per_strip=1):
    """An uncompressed RGB TIFF (little-endian) claiming w x h, with 6 bytes
    of pixel data in one strip."""
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 2), (273, 4, 1, 0), (277, 3, 1, 3),
               (278, 4, 1, rows_per_strip), (279, 4, 1, 6)]
    ifd_at = 8
    data_at = ifd_at + 2 + 12 * len(entries) + 4
    entries = [(t, k, n, data_at if t == 273 else v) for t, k, n, v in entries]
    ifd = struct.pack("<H", len(entries))
    for t, k, n, v in entries:
        ifd += struct.pack("<HHI", t, k, n) + (struct.pack("<HH", v, 0) if k == 3 else struct.pack("<I", v))
    ifd += struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", ifd_at) + ifd + bytes(range(10, 16))


def gif(w, h):
    """A GIF whose logical screen and one image are w x h (16-bit fields),
    with a 2-colour table and a few LZW codes."""
    out = b"GIF89a" + struct.pack("<HHBBB", w, h, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    out += b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0)
    out += b"\x02\x02\x44\x01\x00" + b"\x3b"
    return out


# name, extension, bytes
SEEDS = [
    ("png-ok", "png", png(2, 2)),
    ("png-999999", "png", png(999999, 999999)),
    ("png-100000", "png", png(100000, 100000)),
    ("png-thin", "png", png(2, 100000)),
    ("png-rgba16-huge", "png", png(70000, 70000, depth=16, colour=6)),
    ("jpeg-ok", "jpg", JPEG_GREY),
    ("jpeg-65500", "jpg", jpeg(65500, 65500)),
    ("jpeg-prog-65500", "jpg", jpeg(65500, 65500, progressive=True)),
    ("jpeg-prog-20000", "jpg", jpeg(20000, 20000, progressive=True)),
    ("webp-ok", "webp", webp_vp8x(1, 1)),
    ("webp-vp8x-16m", "webp", webp_vp8x(1 << 24, 1 << 24)),
    ("webp-vp8x-16383", "webp", webp_vp8x(16383, 16383)),
    ("webp-vp8l-16383", "webp", webp_vp8l(16383, 16383)),
    ("tiff-ok", "tif", tiff(2, 1)),
    ("tiff-999999", "tif", tiff(999999, 999999)),
    ("tiff-onestrip", "tif", tiff(60000, 60000, rows_per_strip=60000)),
    ("gif-ok", "gif", gif(2, 2)),
    ("gif-65535", "gif", gif(65535, 65535)),
]


def main():
    args = sys.argv[1:]
    plain = args[:1] == ["--plain"]
    if plain:
        args = args[1:]
    if len(args) != 1:
        sys.exit("usage: image_seeds.py [--plain] DIR")
    os.makedirs(args[0], exist_ok=True)
    for name, ext, data in SEEDS:
        if plain:
            open(os.path.join(args[0], "%s.%s" % (name, ext)), "wb").write(data)
        else:
            # mode byte 0x21: size 9, the training transform; 0xa0: size
            # 8, shrink-on-load up to 1/8 (JPEG's scaled paths)
            for mode in (0x21, 0xA0):
                open(os.path.join(args[0], "%s-%02x" % (name, mode)), "wb").write(bytes([mode]) + data)


main()
