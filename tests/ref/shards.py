"""shards.py -- small WebDataset tar shards of synthetic pictures for the
shell tests of mim-data's transforms (t-mim-data-ft.sh, t-randaug.sh)."""
import io
import tarfile

import numpy as np
from PIL import Image


def add(t, name, data):
    """one member of the open tar t"""
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    t.addfile(ti, io.BytesIO(data))


def gradient_shard(path, sizes, rs, grey=()):
    """a shard of PNGs s00.png, s01.png, ... of the (w, h) sizes with labels
    k % 3 (.cls): smooth pictures plus noise from rs (a RandomState), so
    that every pixel tells where it came from; the k in grey as L images.
    Each picture also goes to path minus .tar + "-KK.npy" for the checks."""
    with tarfile.open(path, "w") as t:
        for k, (w, h) in enumerate(sizes):
            y, x = np.mgrid[0:h, 0:w]
            a = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1),
                          (x * 7 + y * 3) % 256], -1)
            a = np.clip(a + rs.randint(-20, 21, a.shape), 0, 255).astype(np.uint8)
            im = Image.fromarray(a)
            if k in grey:
                im = im.convert("L")
            b = io.BytesIO()
            im.save(b, "PNG")
            np.save("%s-%02d.npy" % (path[:-4], k), np.asarray(im))
            add(t, "s%02d.png" % k, b.getvalue())
            add(t, "s%02d.cls" % k, str(k % 3).encode())
