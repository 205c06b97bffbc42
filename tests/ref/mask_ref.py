"""mask_ref.py -- NumPy reference for mim-mask: the official SimMIM
MaskGenerator (reference/simmim.md section 2) on numpy's legacy global
RandomState, the central-square and BEiT block-wise strategies with the same
numpy draws that `mim-mask --rng numpy` documents, and a brute-force AvgDist.
Written from the algorithm descriptions, independent of the C code.

  mask_ref.py perm SEED N            print np.random.seed(SEED); permutation(N)
  mask_ref.py check STREAM OPTS...   regenerate every mask of a mim-mask
                                     --rng numpy output stream and compare
  mask_ref.py table OPTS...          mean brute-force AvgDist per (patch, ratio),
                                     the first SAMPLES masks of a fresh stream
  mask_ref.py avg FILE.npy S         brute-force AvgDist of one mask of S x S px cells

OPTS: --strategy S --mask-patch M (list for table) --model-patch P
      --ratio R (list for table) --seed N --size N --samples N
      --block-min N --block-max N --block-aspect A
"""
import argparse
import math
import sys

import numpy as np

import st


class MaskGenerator:
    """The official generator: data/data_simmim.py, re-written."""

    def __init__(self, input_size=192, mask_patch_size=32, model_patch_size=4, mask_ratio=0.6):
        assert input_size % mask_patch_size == 0
        assert mask_patch_size % model_patch_size == 0
        self.rand_size = input_size // mask_patch_size
        self.scale = mask_patch_size // model_patch_size
        self.token_count = self.rand_size ** 2
        self.mask_count = int(np.ceil(self.token_count * mask_ratio))

    def cells(self):
        idx = np.random.permutation(self.token_count)[:self.mask_count]
        m = np.zeros(self.token_count, dtype=np.int64)
        m[idx] = 1
        return m.reshape(self.rand_size, self.rand_size)

    def __call__(self):
        return upsample(self.cells(), self.scale)


def upsample(cells, s):
    return cells.repeat(s, axis=0).repeat(s, axis=1)


def central_cells(g, ratio):
    """One s x s square, s the side whose area is nearest g*g*ratio."""
    t = g * g * ratio
    s = int(math.floor(math.sqrt(t)))
    if abs((s + 1) ** 2 - t) < abs(s * s - t):
        s += 1
    s = max(1, min(s, g))
    top = np.random.randint(0, g - s + 1)
    left = np.random.randint(0, g - s + 1)
    m = np.zeros((g, g), np.int64)
    m[top:top + s, left:left + s] = 1
    return m


def block_cells(g, ratio, min_num=16, max_num=0, min_aspect=0.3):
    """BEiT's MaskingGenerator with np.random in place of Python's random."""
    target = int(np.ceil(g * g * ratio))
    max_num = max_num or target
    log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
    mask = np.zeros((g, g), np.int64)

    def one(max_mask):
        delta = 0
        for _ in range(10):
            area = np.random.uniform(min_num, max_mask)
            aspect = math.exp(np.random.uniform(*log_aspect))
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if w < g and h < g:
                top = np.random.randint(0, g - h + 1)
                left = np.random.randint(0, g - w + 1)
                num = mask[top:top + h, left:left + w].sum()
                if 0 < h * w - num <= max_mask:
                    for i in range(top, top + h):
                        for j in range(left, left + w):
                            if mask[i, j] == 0:
                                mask[i, j] = 1
                                delta += 1
                if delta > 0:
                    break
        return delta

    count = 0
    while count < target:
        d = one(min(target - count, max_num))
        if d == 0:
            break
        count += d
    return mask


def next_cells(a, g, ratio):
    if a.strategy == "random":
        return MaskGenerator(g, 1, 1, ratio).cells()
    if a.strategy == "central":
        return central_cells(g, ratio)
    return block_cells(g, ratio, a.block_min, a.block_max, a.block_aspect)


def avgdist(cells, s=1):
    """Brute force AvgDist of a mask of cells of s x s pixels: for every
    masked pixel, the smallest distance between pixel centres to any pixel of
    any visible cell, then the mean. The distance from a pixel centre (py,px)
    to the nearest pixel of a cell covering rows y0..y1, columns x0..x1 is
    sqrt(dy^2 + dx^2) with dx = max(x0-px, 0, px-x1), dy likewise; with s = 1
    this is the plain search over all visible pixels."""
    cells = np.asarray(cells, bool)
    if cells.all() or not cells.any():
        return float("nan")
    cy, cx = (a.astype(np.int32) for a in np.nonzero(~cells))
    y0, x0 = cy * s, cx * s
    y1, x1 = y0 + s - 1, x0 + s - 1
    my, mx = (a.astype(np.int32) for a in np.nonzero(upsample(cells, s)))
    total = 0.0
    step = max(1, 32768 // len(cy))   # small temporaries: stay in cache
    for i in range(0, len(my), step):
        py, px = my[i:i + step, None], mx[i:i + step, None]
        dy = np.maximum(np.maximum(y0[None] - py, py - y1[None]), 0)
        dx = np.maximum(np.maximum(x0[None] - px, px - x1[None]), 0)
        total += np.sqrt((dy * dy + dx * dx).min(axis=1)).sum()
    return total / len(my)


def opts(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--strategy", default="random")
    p.add_argument("--mask-patch", default="32")
    p.add_argument("--model-patch", type=int, default=4)
    p.add_argument("--ratio", default="0.6")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--block-min", type=int, default=16)
    p.add_argument("--block-max", type=int, default=0)
    p.add_argument("--block-aspect", type=float, default=0.3)
    return p.parse_args(argv)


def check(path, a):
    """Every mask of the stream equals the next numpy mask; returns count."""
    np.random.seed(a.seed)
    m, p, ratio, n = int(a.mask_patch), a.model_patch, float(a.ratio), 0
    with open(path, "rb") as f:
        for k, (t, meta) in enumerate(st.read_frames(f)):
            img, mask = t["image"], t["mask"]
            B, _, H, W = img.shape
            assert H == W, "the official generator is square only"
            assert mask.dtype == np.uint8 and mask.shape == (B, H // p, W // p), mask.shape
            for b in range(B):
                want = upsample(next_cells(a, H // m, ratio), m // p)
                if not np.array_equal(mask[b], want):
                    sys.exit("frame %d image %d differs:\n%s\nwant\n%s" % (k, b, mask[b], want))
                n += 1
    return n


def main():
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd == "perm":
        np.random.seed(int(rest[0]))
        print(",".join(str(x) for x in np.random.permutation(int(rest[1]))))
    elif cmd == "check":
        n = check(rest[0], opts(rest[1:]))
        print("%d masks equal" % n)
    elif cmd == "table":
        a = opts(rest)
        for m in (int(x) for x in a.mask_patch.split(",")):
            for r in (float(x) for x in a.ratio.split(",")):
                np.random.seed(a.seed)
                v = [avgdist(next_cells(a, a.size // m, r), m) for _ in range(a.samples)]
                v = [x for x in v if not math.isnan(x)]
                print("%d %g %.6f %d" % (m, r, float(np.mean(v)) if v else float("nan"), len(v)))
    elif cmd == "avg":
        print("%.9f" % avgdist(np.load(rest[0]), int(rest[1])))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
