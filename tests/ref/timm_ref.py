#!/usr/bin/python3
"""timm_ref.py -- the official fine-tuning crops (timm 0.4.12's
RandomResizedCropAndInterpolation.get_params, torchvision's RandomCrop with
padding), re-implemented here from their Python sources, driven by the
draws mim-data makes for a sample: its generator (lib/data/image.c
mim_drng_key: splitmix64 keyed by seed, rank, epoch, index; xoshiro256**)
is re-implemented too, so the boxes must agree exactly, not only in
distribution. timm itself is not installed; the code below follows
timm/data/transforms.py (v0.4.12) line by line, with random.uniform(a, b)
= a + (b - a) * u and random.randint(a, b) = a + below(b - a + 1).
    timm_ref.py rrc SEED EPOCH INDEX W H [LO HI]   print "x y w h flip"
    timm_ref.py pad SEED EPOCH INDEX W H S P       print "x y S S flip"
"""
import math
import sys

M64 = (1 << 64) - 1


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return x, z ^ (z >> 31)


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


class Drng:
    """mim_drng: keyed state, xoshiro256** draws"""

    def __init__(self, a, b, c, d):
        x, h = splitmix64(a)
        x, h = splitmix64(h ^ b)
        x, h = splitmix64(h ^ c)
        x = h ^ d
        self.s = []
        for _ in range(4):
            x, v = splitmix64(x)
            self.s.append(v)

    def u64(self):
        s = self.s
        out = (rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return out

    def double(self):
        return (self.u64() >> 11) * 2.0 ** -53

    def below(self, n):
        lim = M64 - M64 % n
        while True:
            x = self.u64()
            if x < lim:
                return x % n


def timm_get_params(W, H, scale, ratio, rng):
    """timm 0.4.12 RandomResizedCropAndInterpolation.get_params(img, scale,
    ratio), img.size = (W, H); returns i, j, h, w"""
    uniform = lambda a, b: a + (b - a) * rng.double()
    randint = lambda a, b: a + rng.below(b - a + 1)
    area = W * H
    for attempt in range(10):
        target_area = uniform(*scale) * area
        log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        aspect_ratio = math.exp(uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if w <= W and h <= H:
            i = randint(0, H - h)
            j = randint(0, W - w)
            return i, j, h, w
    # Fallback to central crop
    in_ratio = W / H
    if in_ratio < min(ratio):
        w = W
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = H
        w = int(round(h * max(ratio)))
    else:  # whole image
        w = W
        h = H
    i = (H - h) // 2
    j = (W - w) // 2
    return i, j, h, w


def randomcrop_get_params(W, H, S, P, rng):
    """torchvision RandomCrop(S, padding=P).get_params on the padded image:
    i = randint(0, h - th + 1) (torch.randint's exclusive end); returns the
    window's origin in the unpadded image"""
    i = rng.below(H + 2 * P - S + 1)
    j = rng.below(W + 2 * P - S + 1)
    return i - P, j - P


def timm_erase(img, rng, probability=0.25):
    """timm 0.4.12 RandomErasing(probability, mode='pixel', max_count=1)._erase
    on img (C,H,W) float32 in place; per-pixel normals by Box-Muller in
    pairs, as mim-data draws them (timm: torch's normal_). Returns the box
    (left, top, w, h) or None."""
    random = rng.double
    uniform = lambda a, b: a + (b - a) * rng.double()
    randint = lambda a, b: a + rng.below(b - a + 1)
    min_area, max_area, count = 0.02, 1 / 3, 1
    log_aspect_ratio = (math.log(0.3), math.log(1 / 0.3))
    chan, img_h, img_w = img.shape
    if random() > probability:
        return None
    area = img_h * img_w
    for attempt in range(10):
        target_area = uniform(min_area, max_area) * area / count
        aspect_ratio = math.exp(uniform(*log_aspect_ratio))
        h = int(round(math.sqrt(target_area * aspect_ratio)))
        w = int(round(math.sqrt(target_area / aspect_ratio)))
        if w < img_w and h < img_h:
            top = randint(0, img_h - h)
            left = randint(0, img_w - w)
            n = chan * h * w
            z = []
            while len(z) < n:
                rad = math.sqrt(-2 * math.log(1 - rng.double()))
                th = 2 * math.pi * rng.double()
                z += [rad * math.cos(th), rad * math.sin(th)]
            import numpy as np
            img[:, top:top + h, left:left + w] = np.array(z[:n], np.float64).reshape(chan, h, w)
            return left, top, w, h
    return None


if __name__ == "__main__":
    mode, seed, epoch, index, W, H = sys.argv[1], *map(int, sys.argv[2:7])
    rng = Drng(seed, 0, epoch, index)       # rank 0
    if mode == "rrc":
        lo, hi = (float(v) for v in sys.argv[7:9]) if len(sys.argv) > 7 else (0.08, 1.0)
        i, j, h, w = timm_get_params(W, H, (lo, hi), (3 / 4, 4 / 3), rng)
        print(j, i, w, h, int(rng.double() < 0.5))   # then RandomHorizontalFlip(0.5)
    else:
        S, P = int(sys.argv[7]), int(sys.argv[8])
        y, x = randomcrop_get_params(W, H, S, P, rng)
        print(x, y, S, S, int(rng.double() < 0.5))
