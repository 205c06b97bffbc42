#!/usr/bin/python3
"""numpy_loss.py -- a pipeline stage written in NumPy: reads mim frames on
stdin, adds `loss` (the SimMIM loss, l1 or l2, on masked pixels) and writes
the frames on stdout. It stands in for mim-loss in examples/swap-a-stage.sh.
    usage: numpy_loss.py [l1|l2]"""
import json
import struct
import sys

import numpy as np

DT = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "U8": "u1", "I8": "i1", "I16": "<i2",
      "I32": "<i4", "I64": "<i8", "BOOL": "?", "BF16": "<u2"}
NAME = {np.dtype(v).str: k for k, v in DT.items() if k != "BF16"}


def frames(f):
    while (h := f.read(8)):
        hdr = json.loads(f.read(struct.unpack("<Q", h)[0]))
        meta = hdr.pop("__metadata__", {})
        buf = f.read(max([v["data_offsets"][1] for v in hdr.values()], default=0))
        yield {k: np.frombuffer(buf[v["data_offsets"][0]:v["data_offsets"][1]],
                                DT[v["dtype"]]).reshape(v["shape"]) for k, v in hdr.items()}, meta


def write(f, tensors, meta):
    hdr, off, blobs = ({"__metadata__": meta} if meta else {}), 0, []
    for k, a in tensors.items():
        a = np.require(a, requirements="C")   # keeps 0-d arrays 0-d
        hdr[k] = {"dtype": NAME[a.dtype.str], "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
        blobs.append(a.tobytes())
    js = json.dumps(hdr).encode()
    js += b" " * (-len(js) % 8)
    f.write(struct.pack("<Q", len(js)) + js + b"".join(blobs))


kind = sys.argv[1] if len(sys.argv) > 1 else "l1"
for t, meta in frames(sys.stdin.buffer):
    x, rec, mask = t["image"], t["pred"], t["mask"].astype(np.float64)
    p = x.shape[2] // mask.shape[1]
    m = np.kron(mask, np.ones((p, p)))[:, None]          # (B,1,H,W) pixel mask
    d = np.abs(x - rec) if kind == "l1" else (x - rec) ** 2
    loss = (d * m).sum() / (m.sum() + 1e-5) / x.shape[1]  # the official normalisation
    t = dict(t)
    t["loss"] = np.array(loss, np.float32)
    write(sys.stdout.buffer, t, meta)
    sys.stdout.buffer.flush()
