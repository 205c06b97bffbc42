#!/usr/bin/python3
"""linear_probe.py -- measure features: a linear classifier (ridge regression
onto one-hot labels, closed form) fitted on the pooled features of one mim
stream and scored on another. Each stream holds `latent` [B,C] (mim-encode
--pool mean) and `label` [B] (mim-data on labelled shards).
    usage: linear_probe.py TRAIN.mim TEST.mim [RIDGE]"""
import json
import struct
import sys

import numpy as np

DT = {"F32": "<f4", "I64": "<i8", "U8": "u1"}


def load(path):
    feats, labels = [], []
    with open(path, "rb") as f:
        while (h := f.read(8)):
            hdr = json.loads(f.read(struct.unpack("<Q", h)[0]))
            hdr.pop("__metadata__", None)
            buf = f.read(max(v["data_offsets"][1] for v in hdr.values()))
            get = lambda k: np.frombuffer(buf[hdr[k]["data_offsets"][0]:hdr[k]["data_offsets"][1]],
                                          DT[hdr[k]["dtype"]]).reshape(hdr[k]["shape"])
            feats.append(get("latent").reshape(len(get("label")), -1))
            labels.append(get("label"))
    return np.concatenate(feats).astype(np.float64), np.concatenate(labels)


xtr, ytr = load(sys.argv[1])
xte, yte = load(sys.argv[2])
lam = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-2
mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
xtr = np.hstack([xtr, np.ones((len(xtr), 1))])
xte = np.hstack([xte, np.ones((len(xte), 1))])
k = int(max(ytr.max(), yte.max())) + 1
Y = np.eye(k)[ytr]
W = np.linalg.solve(xtr.T @ xtr + lam * len(xtr) * np.eye(xtr.shape[1]), xtr.T @ Y)
acc = lambda x, y: float((np.argmax(x @ W, 1) == y).mean())
print(json.dumps({"train": len(ytr), "test": len(yte), "dim": xtr.shape[1] - 1,
                  "train_acc": round(acc(xtr, ytr), 4), "test_acc": round(acc(xte, yte), 4)}))
