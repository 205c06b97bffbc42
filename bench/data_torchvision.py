"""data_torchvision.py -- SimMIM's training transform with torchvision (PIL) on
the images of tar shards: the baseline of bench/data.sh.

    data_torchvision.py [--procs N] [--epochs E] [--size S] SHARD...

Decodes every image member (PIL, from the bytes, as a DataLoader worker
would), applies Compose(convert RGB, RandomResizedCrop(S, scale=(0.67, 1),
ratio=(3/4, 4/3)), RandomHorizontalFlip(), ToTensor(), Normalize(ImageNet))
and prints one line: images, wall seconds, CPU seconds (all processes),
images/s and images per CPU second. torch runs single-threaded per process.
"""
import argparse
import io
import multiprocessing as mp
import os
import resource
import sys
import tarfile
import time

IMG = (".jpg", ".jpeg", ".png", ".webp", ".ppm", ".pgm")


def load(shards):
    out = []
    for s in shards:
        with tarfile.open(s) as t:
            for m in t.getmembers():
                if m.isfile() and m.name.lower().endswith(IMG):
                    out.append(t.extractfile(m).read())
    return out


def work(args):
    blobs, epochs, size, seed = args
    import torch
    import torchvision.transforms as T
    from PIL import Image
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    tf = T.Compose([
        T.Lambda(lambda im: im.convert("RGB") if im.mode != "RGB" else im),
        T.RandomResizedCrop(size, scale=(0.67, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0)),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    ])
    n = 0
    for _ in range(epochs):
        for b in blobs:
            x = tf(Image.open(io.BytesIO(b)))
            n += x.shape[0] > 0
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("shards", nargs="+")
    a = ap.parse_args()
    blobs = load(a.shards)
    import torch  # noqa: F401  (imported before timing, as in a DataLoader)
    import torchvision.transforms  # noqa: F401
    import PIL.Image  # noqa: F401
    parts = [(blobs[i::a.procs], a.epochs, a.size, i) for i in range(a.procs)]
    c0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if a.procs == 1:
        n = work(parts[0])
    else:
        with mp.get_context("fork").Pool(a.procs) as p:
            n = sum(p.map(work, parts))
    wall = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime) + ch.ru_utime + ch.ru_stime
    print("torchvision procs=%d images=%d wall=%.2f cpu=%.2f img/s=%.1f img/cpu-s=%.1f"
          % (a.procs, n, wall, cpu, n / wall, n / cpu))


if __name__ == "__main__":
    main()
