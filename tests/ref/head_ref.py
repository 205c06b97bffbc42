"""head_ref.py -- the prediction heads of mim in PyTorch, independent of
mim's C code, for the parity tests (tests/cmd/t-head-ref.sh):

  linear  nn.Sequential(Conv2d(F, s*s*3, 1), PixelShuffle(s))    (SimMIM's)
  mlp     nn.Sequential(Conv2d(F, D, 1), GELU(), Conv2d(D, s*s*3, 1),
                        PixelShuffle(s))                         D = head_hidden or F
  swin-inverse  head_swinv_ref.InverseSwin (the Swin encoder's stages mirrored)

The weights come from a mim checkpoint (decoder.* under the same names,
strict), the latent and the upstream gradient dpred from an input file.

  head_ref.py dump CKPT IN OUT   IN: latent (B,F,h,w), dpred (B,3,H,W);
                                 OUT: pred, dlatent, grad.<decoder param>
  head_ref.py make-input CKPT B SEED OUT   a random latent and dpred
"""
import json
import sys

import numpy as np
import torch
from torch import nn

import head_swinv_ref
import st


def build(cfg, features):
    s = cfg["encoder_stride"]
    head = cfg.get("head", "linear")
    if head == "linear":
        return nn.Sequential(nn.Conv2d(features, s * s * 3, 1), nn.PixelShuffle(s))
    if head == "mlp":
        d = cfg.get("head_hidden") or features
        return nn.Sequential(nn.Conv2d(features, d, 1), nn.GELU(), nn.Conv2d(d, s * s * 3, 1),
                             nn.PixelShuffle(s))
    if head == "swin-inverse":
        return head_swinv_ref.InverseSwin(cfg)
    raise SystemExit("head_ref.py: no reference for head %r" % head)


def load(ckpt):
    t, meta = st.load(ckpt)
    cfg = json.loads(meta["mim.config"])
    dec = {k[len("decoder."):]: torch.from_numpy(v.copy()) for k, v in t.items()
           if k.startswith("decoder.")}
    if cfg.get("head") == "swin-inverse":
        features = head_swinv_ref.features(cfg)
        model = build(cfg, features)
        head_swinv_ref.load_strict(model, dec)
    else:
        features = dec["0.weight"].shape[1]
        model = build(cfg, features)
        model.load_state_dict(dec, strict=True)
    return model, cfg, features


def cmd_make_input(ckpt, batch, seed, out):
    _, cfg, features = load(ckpt)
    g = np.random.default_rng(seed)
    h = cfg["img_size"] // cfg["encoder_stride"]
    lat = g.standard_normal((batch, features, h, h)).astype(np.float32)
    dpred = g.standard_normal((batch, 3, cfg["img_size"], cfg["img_size"])).astype(np.float32)
    st.save(out, {"latent": lat, "dpred": dpred})


def cmd_dump(ckpt, inp, out):
    model, _, _ = load(ckpt)
    t, _ = st.load(inp)
    lat = torch.from_numpy(t["latent"].copy()).requires_grad_(True)
    pred = model(lat)
    pred.backward(torch.from_numpy(t["dpred"].copy()))
    res = {"pred": pred.detach().numpy(), "dlatent": lat.grad.numpy()}
    for k, p in model.named_parameters():
        res["grad.decoder." + k] = p.grad.numpy()
    st.save(out, res)
    print("head_ref.py: %d tensors, pred %s" % (len(res), tuple(pred.shape)))


def main(argv):
    if len(argv) == 4 and argv[0] == "dump":
        return cmd_dump(argv[1], argv[2], argv[3])
    if len(argv) == 5 and argv[0] == "make-input":
        return cmd_make_input(argv[1], int(argv[2]), int(argv[3]), argv[4])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
