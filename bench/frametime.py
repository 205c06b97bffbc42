"""frametime.py -- time the frames of a mim stream as they arrive on stdin
(from a tool such as mim-encode): prints one JSON line with the batch size
(the first dimension of 'image') and the times between the ends of
consecutive frames, the tool's time per frame in steady state.

  mim-encode --ckpt C stream | /usr/bin/python3 bench/frametime.py
  /usr/bin/python3 bench/frametime.py --count FILE   (frames in FILE, if
                                                    they are all the size
                                                    of the first)
"""
import os
import json
import struct
import sys
import time


def readn(f, n):
    buf = bytearray()
    while len(buf) < n:
        b = f.read(n - len(buf))
        if not b:
            return None
        buf += b
    return bytes(buf)


def count(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        hdr = json.loads(f.read(n))
    size = 8 + n + max(v["data_offsets"][1] for k, v in hdr.items() if k != "__metadata__")
    print(os.path.getsize(path) // size)
    return 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--count":
        return count(sys.argv[2])
    f = sys.stdin.buffer
    ends, batch = [], 0
    while True:
        head = readn(f, 8)
        if head is None:
            break
        (n,) = struct.unpack("<Q", head)
        hdr = json.loads(readn(f, n))
        size = max([v["data_offsets"][1] for k, v in hdr.items() if k != "__metadata__"],
                   default=0)
        left = size
        while left > 0:
            b = f.read(min(left, 1 << 22))
            if not b:
                sys.exit("frametime.py: stream ends inside a frame")
            left -= len(b)
        ends.append(time.perf_counter())
        if not batch and "image" in hdr:
            batch = hdr["image"]["shape"][0]
    gaps = [b - a for a, b in zip(ends, ends[1:])]
    print(json.dumps({"frames": len(ends), "batch": batch, "gaps": gaps}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
