"""head_swinv_ref.py -- the "swin-inverse" prediction head in PyTorch,
written from the layout of mim-head(1) / lib/model/head_swinv.c with the
Swin block of swin_ref.py (the official block, written from the reference),
for the parity tests. head_ref.py builds it for a checkpoint whose "head" is
"swin-inverse"; its dump and make-input commands do the rest.

  stage j = 0..S-1 mirrors encoder stage e = S-1-j (dim E*2^e, side G/2^e,
  heads num_heads[e], head_depths[j] blocks or depths[e] when 0, the
  encoder's window clamped to the side), then for j < S-1 PatchExpand:
  Linear(C, 2C, bias=False), each token's 4 quarters of C/2 channels to
  2x2 tokens (quarter k to (2a + k%2, 2b + k/2), the inverse of patch
  merging), LayerNorm(C/2); at the end LayerNorm(E), Linear(E, p*p*3),
  PixelShuffle(p).
"""
import torch
from torch import nn

import swin_ref


class Expand(nn.Module):
    def __init__(self, C, res, eps):
        super().__init__()
        self.res = res
        self.expand = nn.Linear(C, 2 * C, bias=False)
        self.norm = nn.LayerNorm(C // 2, eps=eps)

    def forward(self, x):
        B, L, C = x.shape
        r, c = self.res, C // 2
        y = self.expand(x).reshape(B, r, r, 2, 2, c)   # (b, a, bcol, dcol, drow, c)
        y = y.permute(0, 1, 4, 2, 3, 5)                 # (b, a, drow, bcol, dcol, c)
        return self.norm(y.reshape(B, 4 * L, c))


class Stage(swin_ref.Stage):
    """swin_ref's stage (its blocks), then patch expanding instead of merging"""

    def __init__(self, C, res, depth, nH, ws, mlp_ratio, qkv_bias, eps, expand):
        super().__init__(C, res, depth, nH, ws, mlp_ratio, qkv_bias, eps, False)
        self.upsample = Expand(C, res, eps) if expand else None

    def forward(self, x):
        x = super().forward(x)
        return self.upsample(x) if self.upsample is not None else x


class InverseSwin(nn.Module):
    """latent (B, F, h, h) -> pred (B, 3, H, W); parameter names as
    mim's decoder.* without the prefix"""

    def __init__(self, cfg):
        super().__init__()
        S = len(cfg["depths"])
        E, p = cfg["embed_dim"], cfg["patch_size"]
        G = cfg["img_size"] // p
        eps = cfg.get("layer_norm_eps", 1e-5)
        hd = cfg.get("head_depths") or [0] * S
        layers = []
        for j in range(S):
            e = S - 1 - j
            layers.append(Stage(E << e, G >> e, hd[j] or cfg["depths"][e], cfg["num_heads"][e],
                                cfg["window_size"], cfg.get("mlp_ratio", 4.0),
                                cfg.get("qkv_bias", True), eps, j < S - 1))
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(E, eps=eps)
        self.proj = nn.Linear(E, p * p * 3)
        self.shuffle = nn.PixelShuffle(p)
        self.G = G

    def forward(self, latent):
        B, F, h, w = latent.shape
        x = latent.flatten(2).transpose(1, 2)           # (B, h*w, F)
        for layer in self.layers:
            x = layer(x)
        x = self.proj(self.norm(x))                     # (B, G*G, p*p*3)
        x = x.transpose(1, 2).reshape(B, -1, self.G, self.G)
        return self.shuffle(x)


def load_strict(model, dec):
    """every parameter from dec; each buffer dec has (mim writes them) must
    equal the module's own (relative position index, shift masks), which
    the module keeps"""
    own = dict(model.named_buffers())
    for k, v in dec.items():
        if k in own and not torch.equal(v.to(own[k].dtype), own[k]):
            raise SystemExit("head_swinv_ref.py: buffer %s differs from the module's" % k)
    params = {k: v for k, v in dec.items() if k not in own}
    missing, unexpected = model.load_state_dict(params, strict=False)
    bad = [k for k in missing if k not in own]
    if bad or unexpected:
        raise SystemExit("head_swinv_ref.py: missing %s, unexpected %s" % (bad, unexpected))
    return len(dec) - len(params)


def features(cfg):
    return cfg["embed_dim"] << (len(cfg["depths"]) - 1)


if __name__ == "__main__":
    raise SystemExit("head_swinv_ref.py: a module; run head_ref.py dump / make-input")
