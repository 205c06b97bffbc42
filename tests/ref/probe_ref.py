#!/usr/bin/python3
"""probe_ref.py -- the linear probe's reference in PyTorch: MAE's head,
Sequential(BatchNorm1d(C, affine=False, eps=1e-6), Linear(C, K)), two
training steps (BatchNorm in train mode, cross-entropy, torch.optim.SGD
with momentum 0.9 and weight decay, a different lr each step), then the
eval-mode logits of other features. Writes tests/ref/probe_ref.safetensors,
which tests/unit/test_probe.c checks lib/eval/probe.c against.
    usage: probe_ref.py [OUT]"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

B, C, K = 8, 6, 4
rs = np.random.RandomState(7)
scale = rs.uniform(0.5, 4, C).astype(np.float32)   # channels on different scales
shift = rs.uniform(-3, 3, C).astype(np.float32)
feats = lambda n: (rs.randn(n, C).astype(np.float32) * scale + shift)
x1, x2, xt = feats(B), feats(B), feats(5)
y1, y2 = rs.randint(0, K, B).astype(np.int64), rs.randint(0, K, B).astype(np.int64)
w0 = (rs.randn(K, C) * 0.01).astype(np.float32)
b0 = (rs.randn(K) * 0.01).astype(np.float32)
lrs, momentum, wd = [0.1, 0.05], 0.9, 1e-3

head = torch.nn.Sequential(torch.nn.BatchNorm1d(C, affine=False, eps=1e-6), torch.nn.Linear(C, K))
with torch.no_grad():
    head[1].weight.copy_(torch.from_numpy(w0))
    head[1].bias.copy_(torch.from_numpy(b0))
opt = torch.optim.SGD(head.parameters(), lr=lrs[0], momentum=momentum, weight_decay=wd)
out = {"x1": x1, "y1": y1, "x2": x2, "y2": y2, "xt": xt, "w0": w0, "b0": b0,
       "lr": np.array(lrs, np.float64), "momentum": np.array(momentum, np.float64),
       "wd": np.array(wd, np.float64)}
head.train()
for s, (x, y) in enumerate([(x1, y1), (x2, y2)], 1):
    for g in opt.param_groups:
        g["lr"] = lrs[s - 1]
    opt.zero_grad()
    logits = head(torch.from_numpy(x))
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y))
    loss.backward()
    out[f"loss{s}"] = np.array(loss.item(), np.float64)
    out[f"logits{s}"] = logits.detach().numpy()
    out[f"dw{s}"] = head[1].weight.grad.numpy().copy()
    out[f"db{s}"] = head[1].bias.grad.numpy().copy()
    opt.step()
    out[f"w{s}"] = head[1].weight.detach().numpy().copy()
    out[f"b{s}"] = head[1].bias.detach().numpy().copy()
    out[f"mean{s}"] = head[0].running_mean.numpy().copy()
    out[f"var{s}"] = head[0].running_var.numpy().copy()
head.eval()
with torch.no_grad():
    out["logits_eval"] = head(torch.from_numpy(xt)).numpy()
assert head[0].num_batches_tracked.item() == 2
st.save(sys.argv[1] if len(sys.argv) > 1 else
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe_ref.safetensors"), out)
