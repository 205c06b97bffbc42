#!/usr/bin/python3
"""randaug_ref.py -- timm 0.4.12's RandAugment (timm/data/auto_augment.py,
rand_augment_transform), re-written here on PIL for the tests of
lib/data/randaug.c. timm itself is not installed: the level functions
(magnitude to argument) and the op calls below follow auto_augment.py
v0.4.12, and every pixel is PIL's (Debian's Pillow 9.4), so PIL is the
reference for the C code's arithmetic.

    randaug_ref.py dump OUT.safetensors
        a few small RGB images, each op of both lists at fixed magnitudes
        and signs (and the geometric ops with bilinear too), inputs and
        outputs, for tests/unit/test_randaug.c

As a module (tests/cmd/t-randaug.sh): draw(rng, m, mstd, inc, n) draws a
picture's ops from mim-data's generator (timm_ref.Drng) in mim's order, and
apply(img, steps) applies them as timm does.
"""
import math
import sys

from PIL import Image, ImageEnhance, ImageOps

MAX_LEVEL = 10.0
# timm's img_mean hparam: round(255 * IMAGENET_DEFAULT_MEAN)
FILL = tuple(min(255, round(255 * x)) for x in (0.485, 0.456, 0.406))

PLAIN = ["AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
         "SolarizeAdd", "Color", "Contrast", "Brightness", "Sharpness", "ShearX",
         "ShearY", "TranslateXRel", "TranslateYRel"]
INCREASING = ["AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
              "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
              "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
              "TranslateXRel", "TranslateYRel"]
# mim's enum mim_ra_op order
ALL = PLAIN + ["PosterizeIncreasing", "SolarizeIncreasing", "ColorIncreasing",
               "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing"]
SIGNED = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel", "ColorIncreasing",
          "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing"}
GEOMETRIC = ["Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"]


def level_arg(name, m, neg):
    """timm's LEVEL_TO_ARG[name](m) with _randomly_negate's coin given"""
    sign = (lambda v: -v) if neg else (lambda v: v)
    lv = m / MAX_LEVEL
    if name == "Rotate":
        return sign(lv * 30.)
    if name == "Posterize":
        return int(lv * 4)
    if name == "PosterizeIncreasing":
        return 4 - int(lv * 4)
    if name == "Solarize":
        return int(lv * 256)
    if name == "SolarizeIncreasing":
        return 256 - int(lv * 256)
    if name == "SolarizeAdd":
        return int(lv * 110)
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return lv * 1.8 + 0.1
    if name.endswith("Increasing"):   # Color, Contrast, Brightness, Sharpness
        return 1.0 + sign(lv * .9)
    if name in ("ShearX", "ShearY"):
        return sign(lv * 0.3)
    if name in ("TranslateXRel", "TranslateYRel"):
        return sign(lv * 0.45)
    return None


def op(img, name, m, neg, fill=FILL, resample=Image.BICUBIC):
    """timm's NAME_TO_OP[name](img, *level_args, fillcolor=fill, resample=...)"""
    a = level_arg(name, m, neg)
    kw = dict(fillcolor=fill, resample=resample)
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name == "Invert":
        return ImageOps.invert(img)
    if name == "Rotate":
        return img.rotate(a, **kw)
    if name.startswith("Posterize"):
        return img if a >= 8 else ImageOps.posterize(img, a)
    if name.startswith("Solarize") and name != "SolarizeAdd":
        return ImageOps.solarize(img, a)
    if name == "SolarizeAdd":
        lut = [min(255, i + a) if i < 128 else i for i in range(256)]
        return img.point(lut * 3)
    for e in ("Color", "Contrast", "Brightness", "Sharpness"):
        if name.startswith(e):
            return getattr(ImageEnhance, e)(img).enhance(a)
    if name == "ShearX":
        return img.transform(img.size, Image.AFFINE, (1, a, 0, 0, 1, 0), **kw)
    if name == "ShearY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, a, 1, 0), **kw)
    if name == "TranslateXRel":
        return img.transform(img.size, Image.AFFINE, (1, 0, a * img.size[0], 0, 1, 0), **kw)
    if name == "TranslateYRel":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, a * img.size[1]), **kw)
    raise ValueError(name)


def draw(rng, m, mstd, inc, n):
    """A picture's ops as mim draws them (lib/data/randaug.c): timm's
    np.random.choice(ops, n) as n uniform indices, then per op timm's
    AugmentOp coin (skip if random() > 0.5), random.gauss(m, mstd) (Python's
    formula on a fresh pair of uniforms) clipped to [0, 10], and
    _randomly_negate's coin. Steps (name, magnitude or None, negated)."""
    names = INCREASING if inc else PLAIN
    ops = [names[rng.below(len(names))] for _ in range(n)]
    steps = []
    for name in ops:
        if rng.double() > 0.5:
            steps.append((name, None, False))
            continue
        mag = m
        if mstd > 0:
            x2pi = rng.double() * (2.0 * math.pi)
            g2rad = math.sqrt(-2.0 * math.log(1.0 - rng.double()))
            z = math.cos(x2pi) * g2rad
            mag = m + z * mstd
        mag = min(MAX_LEVEL, max(0, mag))
        neg = rng.double() > 0.5 if name in SIGNED else False
        steps.append((name, mag, neg))
    return steps


def finetune_draws(seed, n, per_epoch, W, H, m=9, mstd=0.5, inc=1, layers=2):
    """the draws of sample n of mim-data --finetune's stream (in input
    order, rank 0, per_epoch samples an epoch, a W x H picture): the crop
    and flip (timm_ref), then RandAugment's. Returns (steps, rng), rng
    where the random erasing draws next."""
    import timm_ref
    e, i = divmod(n, per_epoch)
    rng = timm_ref.Drng(seed, 0, e, i)
    timm_ref.timm_get_params(W, H, (0.08, 1.0), (3 / 4, 4 / 3), rng)
    rng.double()
    return draw(rng, m, mstd, inc, layers), rng


def printed(r):
    """the steps of a mim-data --print-boxes line, r its fields after "box":
    "Name:M" applied (M negative: negated), "(Name)" not"""
    steps = []
    for tok in r[r.index("ra") + 1:]:
        if tok.startswith("("):
            steps.append((tok[1:-1], None, False))
        else:
            name, mag = tok.split(":")
            steps.append((name, abs(float(mag)), mag.startswith("-")))
    return steps


def apply(img, steps, fill=FILL, resample=Image.BICUBIC):
    for name, mag, neg in steps:
        if mag is not None:
            img = op(img, name, mag, neg, fill, resample)
    return img


def images(H=16, W=24):
    """three small RGB pictures: a noisy gradient, flat blocks with a
    constant and a two-valued channel, a real photo shrunk (when the Debian
    wallpapers are there)"""
    import numpy as np
    rs = np.random.RandomState(1)
    y, x = np.mgrid[0:H, 0:W]
    a = np.stack([x * 255 // (W - 1), y * 255 // (H - 1), (x * 7 + y * 13) % 256], -1)
    a = np.clip(a + rs.randint(-30, 31, a.shape), 0, 255).astype(np.uint8)
    b = np.zeros((H, W, 3), np.uint8)
    b[..., 0] = np.where((x // 6 + y // 4) % 2, 200, 40) + rs.randint(0, 3, (H, W))
    b[..., 1] = 77
    b[..., 2] = np.where(x < W // 3, 10, 250)
    src = "synthetic"
    try:
        p = Image.open("/usr/share/wallpapers/Autumn/contents/images/640x480.jpg").convert("RGB")
        c = np.asarray(p.resize((W, H), Image.BICUBIC))
        src = "Autumn 640x480.jpg resized"
    except OSError:
        c = rs.randint(0, 256, (H, W, 3)).astype(np.uint8)
    return np.stack([a, b, c]), src


def dump(path):
    import numpy as np
    import st
    ims, src = images()
    cases = []
    for i in range(len(ims)):
        for name in ALL:
            if name in ("AutoContrast", "Equalize", "Invert"):
                cases.append((i, name, 0.0, 0, 1))
                continue
            for mag, neg in ((2.9, 0), (9.0, 1), (10.0, 0), (6.3, 1)):
                cases.append((i, name, mag, neg, 1))
            if name in ("Color", "Contrast", "Brightness", "Sharpness"):
                cases.append((i, name, 5.0, 0, 1))   # factor 1: the copy
        for name in GEOMETRIC:
            for mag, neg in ((7.1, 0), (9.0, 1)):
                cases.append((i, name, mag, neg, 0))   # bilinear
    out = []
    for i, name, mag, neg, cubic in cases:
        img = Image.fromarray(ims[i])
        res = op(img, name, mag, neg, FILL, Image.BICUBIC if cubic else Image.BILINEAR)
        assert res.mode == "RGB" and res.size == img.size
        out.append(np.asarray(res))
    tab = np.array([(i, ALL.index(name), mag, neg, cubic) for i, name, mag, neg, cubic in cases],
                   np.float64)
    st.save(path, {"in": ims, "out": np.stack(out), "cases": tab},
            {"ops": ",".join(ALL), "fill": ",".join(map(str, FILL)),
             "images": src, "pil": Image.__version__,
             "cases": "image, op (index into ops), magnitude, negated, bicubic (0: bilinear)"})
    print("%s: %d cases, PIL %s, %s" % (path, len(cases), Image.__version__, src), file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "dump":
        dump(sys.argv[2])
    else:
        sys.exit(__doc__)
