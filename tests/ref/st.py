"""st.py -- a minimal safetensors / mim-stream reader and writer on NumPy,
independent of mim's C code (tests check the C library against it)."""
import json
import struct

import numpy as np

DT = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "U8": np.uint8,
      "I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64,
      "BOOL": np.bool_, "BF16": np.uint16}   # BF16 kept as raw uint16 bits
NAME = {np.dtype(v).str: k for k, v in DT.items() if k != "BF16"}


def read_frames(f):
    """Yield (tensors, metadata) for each frame of a binary stream f."""
    while True:
        head = f.read(8)
        if not head:
            return
        (n,) = struct.unpack("<Q", head)
        hdr = json.loads(f.read(n))
        meta = hdr.pop("__metadata__", {})
        size = max([v["data_offsets"][1] for v in hdr.values()], default=0)
        buf = f.read(size)
        out = {}
        for k, v in hdr.items():
            b, e = v["data_offsets"]
            out[k] = np.frombuffer(buf[b:e], DT[v["dtype"]]).reshape(v["shape"])
        yield out, meta


def load(path):
    with open(path, "rb") as f:
        frames = list(read_frames(f))
    assert len(frames) == 1, path
    return frames[0]


def frame_bytes(tensors, metadata=None, dtypes=None):
    """One frame as bytes. dtypes may name 'BF16' for uint16 arrays."""
    hdr, off, blobs = {}, 0, []
    if metadata:
        hdr["__metadata__"] = metadata
    for k, a in tensors.items():
        a = np.require(a, requirements="C")   # keeps 0-d arrays 0-d
        dt = (dtypes or {}).get(k) or NAME[a.dtype.str if a.dtype != np.bool_ else np.dtype(np.bool_).str]
        hdr[k] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
        blobs.append(a.tobytes())
    js = json.dumps(hdr).encode()
    js += b" " * (-len(js) % 8)
    return struct.pack("<Q", len(js)) + js + b"".join(blobs)


def save(path, tensors, metadata=None, dtypes=None):
    with open(path, "wb") as f:
        f.write(frame_bytes(tensors, metadata, dtypes))
