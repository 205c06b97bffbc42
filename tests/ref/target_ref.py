"""target_ref.py -- the targets and losses of lib/model/target.c and loss.c
in PyTorch, independent of mim's C code, for the parity tests
(tests/unit/test_target.c, tests/cmd/t-targets.sh):

  resolution d   target = F.avg_pool2d(image, d) (in float64, then float32);
                 M = the patch mask upsampled to pixels, then min-pooled by
                 d (a target pixel is masked iff all its pixels are)
  norm_pix P     Swin-Transformer's _normalize_targets (reference §13):
                 avg_pool2d k P, stride 1, pad P//2, count_include_pad
                 False; unbiased variance; (x - mean) / sqrt(var + 1e-6)
  pixel          F.l1_loss / F.mse_loss / F.smooth_l1_loss (beta),
                 (loss * M).sum() / (M.sum() + 1e-5) / 3
  bins K         v = floor(255 (x std + mean) + 0.5) clamped to [0,255] (in
                 float64, mean/std the float32 ImageNet constants), label
                 floor(v K / 256); logits pred.view(B,3,K,h,w);
                 F.cross_entropy per (pixel, channel), sum * M / (M.sum()
                 + 1e-5) / 3
  clusters K     label = argmin_k |255 (x std + mean) - centre_k|^2 (first
                 on ties); F.cross_entropy per pixel, sum * M / (M.sum() +
                 1e-5)

  target_ref.py make OUT    inputs (images from random 0-255 pixels
                            normalised as mim-data does, a mask, centres,
                            predictions) and, per case, the target, the
                            labels, the mask at the target's resolution,
                            the loss and d loss / d pred; the cases in
                            __metadata__["cases"] (JSON)
  target_ref.py check-stream CKPT STREAM   every frame's 'loss' (mim-loss
                            --ckpt CKPT) against the loss of its image, mask
                            and pred under CKPT's target; exit 1 on a
                            relative error over 1e-4
"""
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

import st

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)

B, H, P = 2, 32, 4          # batch, image side, model patch

CASES = [
    # name, target, d, loss, beta, region, K, norm_pix
    ("pixel-l1-d1", "pixel", 1, "l1", 1.0, "masked", 0, 0),
    ("pixel-l1-d2", "pixel", 2, "l1", 1.0, "masked", 0, 0),
    ("pixel-l2-d4", "pixel", 4, "l2", 1.0, "masked", 0, 0),
    ("pixel-sl1-d8", "pixel", 8, "smooth-l1", 0.5, "masked", 0, 0),
    ("pixel-l1-d16", "pixel", 16, "l1", 1.0, "masked", 0, 0),
    ("pixel-l1-d32", "pixel", 32, "l1", 1.0, "masked", 0, 0),
    ("pixel-l2-d2-all", "pixel", 2, "l2", 1.0, "all", 0, 0),
    ("norm5-l1-d1", "pixel", 1, "l1", 1.0, "masked", 0, 5),
    ("norm3-l2-d2", "pixel", 2, "l2", 1.0, "masked", 0, 3),
    ("norm47-l1-d1", "pixel", 1, "l1", 1.0, "masked", 0, 47),
    ("bins4-d1", "bins", 1, "ce", 1.0, "masked", 4, 0),
    ("bins8-d4", "bins", 4, "ce", 1.0, "masked", 8, 0),
    ("bins256-d8", "bins", 8, "ce", 1.0, "masked", 256, 0),
    ("bins8-d32", "bins", 32, "ce", 1.0, "masked", 8, 0),
    ("clusters16-d2", "clusters", 2, "ce", 1.0, "masked", 16, 0),
    ("clusters16-d8", "clusters", 8, "ce", 1.0, "masked", 16, 0),
    ("clusters16-d4-all", "clusters", 4, "ce", 1.0, "all", 16, 0),
]


def pooled(img, d):
    return F.avg_pool2d(torch.from_numpy(np.array(img)).double(), d).float()


def norm_pix(x, p):
    x = x.double()
    mean = F.avg_pool2d(x, p, 1, p // 2, count_include_pad=False)
    mean2 = F.avg_pool2d(x * x, p, 1, p // 2, count_include_pad=False)
    cnt = F.avg_pool2d(torch.ones_like(x), p, 1, p // 2, count_include_pad=True) * p * p
    var = torch.clamp((mean2 - mean ** 2) * cnt / (cnt - 1), min=0)
    return ((x - mean) / torch.sqrt(var + 1e-6)).float()


def mask_at(mask, d):
    m = torch.from_numpy(mask).float()
    m = m.repeat_interleave(P, 1).repeat_interleave(P, 2).unsqueeze(1)   # (B,1,H,W)
    return -F.max_pool2d(-m, d)                                           # (B,1,h,w)


def to255(x):
    x = x.double()
    return (x * torch.from_numpy(STD.astype(np.float64)).view(1, 3, 1, 1)
            + torch.from_numpy(MEAN.astype(np.float64)).view(1, 3, 1, 1)) * 255.0


def labels(kind, x, K, centres):
    if kind == "bins":
        v = torch.clamp(torch.floor(to255(x) + 0.5), 0, 255)
        return torch.floor(v * K / 256).long()                          # (B,3,h,w)
    v = to255(x).numpy()                                                  # (B,3,h,w)
    c = centres.astype(np.float64)
    d2 = ((v[:, None] - c[None, :, :, None, None]) ** 2).sum(2)          # (B,K,h,w)
    return torch.from_numpy(np.argmin(d2, axis=1)).long()[:, None]       # (B,1,h,w)


def case(img, mask, centres, pred_np, c):
    global B, H, P
    name, kind, d, loss, beta, region, K, npix = c
    B, H, P = img.shape[0], img.shape[2], img.shape[2] // mask.shape[1]
    t = pooled(img, d)
    if npix:
        t = norm_pix(t, npix)
    M = mask_at(mask, d) if region == "masked" else torch.ones(B, 1, H // d, H // d)
    pred = torch.from_numpy(pred_np.copy()).requires_grad_(True)
    if kind == "pixel":
        if loss == "l1":
            r = F.l1_loss(t, pred, reduction="none")
        elif loss == "l2":
            r = F.mse_loss(t, pred, reduction="none")
        else:
            r = F.smooth_l1_loss(t, pred, reduction="none", beta=beta)
        lo = (r * M).sum() / (M.sum() + 1e-5) / 3
        lab = torch.zeros(0, dtype=torch.long)
    else:
        lab = labels(kind, pooled(img, d), K, centres)
        G = lab.shape[1]
        logits = pred.view(B, G, K, H // d, H // d).transpose(1, 2)          # (B,K,G,h,w)
        ce = F.cross_entropy(logits, lab, reduction="none")                  # (B,G,h,w)
        lo = (ce * M).sum() / (M.sum() + 1e-5) / (3 if kind == "bins" else 1)
    lo.backward()
    return {"target": t.numpy(), "mask": M[:, 0].numpy().astype(np.uint8),
            "labels": lab.numpy().astype(np.int32), "loss": np.array([lo.item()], np.float64),
            "dpred": pred.grad.numpy()}


def channels(kind, K):
    return 3 if kind == "pixel" else 3 * K if kind == "bins" else K


def cmd_make(out):
    g = np.random.default_rng(16)
    px = g.integers(0, 256, (B, 3, H, H)).astype(np.float32)
    img = ((px / np.float32(255) - MEAN[:, None, None]) / STD[:, None, None]).astype(np.float32)
    # mask: sample 0 all masked (so that 1/32 has a masked pixel); sample 1
    # random 16-pixel blocks, the first masked but for one 8-pixel block
    m16 = (g.random((2, 2)) < 0.5).astype(np.uint8)
    m16[0, 0] = 1
    mask = np.ones((B, H // P, H // P), np.uint8)
    mask[1] = m16.repeat(16 // P, 0).repeat(16 // P, 1)
    mask[1, :8 // P, 8 // P:16 // P] = 0
    centres = g.uniform(0, 255, (16, 3)).astype(np.float32)
    res = {"image": img, "mask": mask, "centres": centres}
    meta = []
    for c in CASES:
        name, kind, d, loss, beta, region, K, npix = c
        scale = 3.0 if kind != "pixel" else 1.0
        pred = (g.standard_normal((B, channels(kind, K), H // d, H // d)) * scale).astype(np.float32)
        r = case(img, mask, centres, pred, c)
        res[name + ".pred"] = pred
        for k, v in r.items():
            if v.size:
                res[name + "." + k] = v
        meta.append({"name": name, "target": kind, "div": d, "loss": loss, "beta": beta,
                     "region": region, "K": K, "norm_pix": npix})
    st.save(out, res, {"cases": json.dumps(meta)})
    print("target_ref.py: %d cases" % len(CASES))


def cmd_check_stream(ckpt, stream):
    t, meta = st.load(ckpt)
    cfg = json.loads(meta["mim.config"])
    kind = cfg.get("target", "pixel")
    K = cfg.get("target_bins", cfg.get("target_clusters", 0))
    centres = t.get("decoder.centres")
    worst, n = 0.0, 0
    with open(stream, "rb") as f:
        for fr, _ in st.read_frames(f):
            c = ("stream", kind, cfg.get("pred_div", 1), "ce" if kind != "pixel" else "l1", 1.0,
                 "masked", K, cfg.get("norm_pix", 0))
            r = case(fr["image"], fr["mask"].astype(np.uint8), centres, fr["pred"], c)
            want, got = r["loss"][0], float(fr["loss"])
            worst = max(worst, abs(got - want) / abs(want))
            n += 1
    print("target_ref.py: %d frames, %s target at 1/%d, max rel err %.2e"
          % (n, kind, cfg.get("pred_div", 1), worst))
    return 0 if n and worst <= 1e-4 else 1


def main(argv):
    if len(argv) == 2 and argv[0] == "make":
        return cmd_make(argv[1])
    if len(argv) == 3 and argv[0] == "check-stream":
        return cmd_check_stream(argv[1], argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
