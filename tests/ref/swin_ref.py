#!/usr/bin/python3
"""swin_ref.py -- SimMIM with a Swin encoder in plain PyTorch, written from
reference/simmim.md (sections 4.1, 4.3, 5, 6, 9.2), as the test-time
reference for lib/model/swin.c. Parameter and buffer names are the official
state_dict names, so it loads the official weights and its dumps load into mim.

  swin_ref.py golden [DIR]       reproduce the official micro-swin step in
                                 DIR ($MIM_GOLDEN, else shared/golden beside
                                 the checkout) and print the max
                                 errors of latent, pred, loss, every gradient
  swin_ref.py gen OUT [options] [+ OUT [options]...]
                                 one forward/backward of a Swin config on a
                                 random batch, written to OUT (safetensors):
                                 weights (official names), input/image (F32),
                                 input/mask (U8), out/latent, out/pred,
                                 out/loss, out/grad_latent, out/layer<K>
                                 (stage K's output, before merging),
                                 grad/<name>;
                                 __metadata__ mim.config
      --config JSON   mim.config keys (model swin, img_size, patch_size,
                      embed_dim, depths, num_heads, window_size, ...)
      --preset NAME   swin-tiny | swin-small | swin-base | swin-large
      --batch B --seed S --mask-patch P --ratio R
      --perturb       give LN weights/biases, linear biases, and the mask
                      token random values (init has 1/0 there), so their
                      gradients are a stronger test
      --weights FILE  take the model (mim.config) and the weights from a
                      mim checkpoint instead
      --dp-seed S     drop path seed (as mim_model_grad's seed); the
                      rate is the config's drop_path_rate
      --double        compute in float64 (weights and inputs are float32
                      values; results are rounded to float32 at the end):
                      the exact value a float32 implementation is judged
                      against. Without it, PyTorch's float32 result.

Not the official code: every line is written from the reference text.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import st

# the golden data: shared/golden beside the checkout (tests/ref/ is two down)
GOLDEN = os.environ.get("MIM_GOLDEN") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "golden")

PRESETS = {
    "swin-tiny": dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24]),
    "swin-small": dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24]),
    "swin-base": dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32]),
    "swin-large": dict(embed_dim=192, depths=[2, 2, 18, 2], num_heads=[6, 12, 24, 48],
                       window_size=12),
}
DEFAULT = dict(model="swin", img_size=192, in_chans=3, patch_size=4, embed_dim=128,
               depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=6,
               mlp_ratio=4.0, qkv_bias=True, layer_norm_eps=1e-5, ape=False,
               patch_norm=True, drop_path_rate=0.0)


def full_config(cfg):
    c = dict(DEFAULT)
    c.update(cfg)
    n = len(c["depths"])
    c["encoder_stride"] = c["patch_size"] * 2 ** (n - 1)
    return c


# ---- window helpers --------------------------------------------------------

def to_windows(x, ws):
    """(B,H,W,C) -> (B*nW, ws*ws, C); windows batch-major, then row-major."""
    B, H, W, C = x.shape
    x = x.reshape(B, H // ws, ws, W // ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, C)


def from_windows(w, ws, B, H, W):
    """Inverse of to_windows: (B*nW, ws*ws, C) -> (B,H,W,C)."""
    C = w.shape[-1]
    x = w.reshape(B, H // ws, W // ws, ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, H, W, C)


def rel_index(ws):
    """idx[p,q] = (hp-hq+ws-1)*(2ws-1) + (wp-wq+ws-1), tokens row-major."""
    hs = torch.arange(ws).repeat_interleave(ws)
    wd = torch.arange(ws).repeat(ws)
    dh = hs[:, None] - hs[None, :] + ws - 1
    dw = wd[:, None] - wd[None, :] + ws - 1
    return dh * (2 * ws - 1) + dw


def shift_mask(H, W, ws, s):
    """(nW, N, N): -100 between tokens of different roll regions, else 0."""
    def region(n):
        r = torch.zeros(n, dtype=torch.long)
        r[n - ws:] = 1
        r[n - s:] = 2
        return r
    ids = region(H)[:, None] * 3 + region(W)[None, :]          # (H,W)
    win = to_windows(ids.reshape(1, H, W, 1).float(), ws)[..., 0]  # (nW,N)
    diff = win[:, :, None] - win[:, None, :]
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


# ---- modules (state_dict names as the official ones) -----------------------

class Attn(nn.Module):
    def __init__(self, C, nH, ws, qkv_bias):
        super().__init__()
        self.nH, self.ws = nH, ws
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, nH))
        self.register_buffer("relative_position_index", rel_index(ws))
        self.qkv = nn.Linear(C, 3 * C, bias=qkv_bias)
        self.proj = nn.Linear(C, C)

    def forward(self, x, mask):
        Bw, N, C = x.shape
        hd = C // self.nH
        t = self.qkv(x).reshape(Bw, N, 3, self.nH, hd).permute(2, 0, 3, 1, 4)
        q = t[0] * hd ** -0.5
        k, v = t[1], t[2]
        a = q @ k.transpose(-2, -1)                      # (Bw,nH,N,N)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        a = a + bias.reshape(N, N, self.nH).permute(2, 0, 1)[None]
        if mask is not None:
            nW = mask.shape[0]
            a = a.reshape(Bw // nW, nW, self.nH, N, N) + mask[None, :, None]
            a = a.reshape(Bw, self.nH, N, N)
        a = a.softmax(-1)
        o = (a @ v).transpose(1, 2).reshape(Bw, N, C)
        return self.proj(o)


class Mlp(nn.Module):
    def __init__(self, C, hidden):
        super().__init__()
        self.fc1 = nn.Linear(C, hidden)
        self.fc2 = nn.Linear(hidden, C)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


def drop_path(x, rate, seed, call, training):
    """timm's DropPath, per sample: x / keep * kept[b], with libmim's draw
    (vit_ref.droppath_kept) so that a step can be compared exactly"""
    if not training or rate <= 0:
        return x
    from vit_ref import droppath_kept
    kept, keep = droppath_kept(x.shape[0], rate, seed, call)
    return x.div(keep) * torch.from_numpy(kept).to(x.dtype).view(-1, 1, 1)


class Block(nn.Module):
    def __init__(self, C, res, nH, ws, shift, mlp_ratio, qkv_bias, eps):
        super().__init__()
        self.dp_rate, self.dp_seed, self.gi = 0.0, 0, 0  # set by Encoder
        if res <= ws:          # window clamp: the whole map is one window
            ws, shift = res, 0
        self.res, self.ws, self.shift = res, ws, shift
        if shift > 0:
            self.register_buffer("attn_mask", shift_mask(res, res, ws, shift))
        else:
            self.attn_mask = None
        self.norm1 = nn.LayerNorm(C, eps=eps)
        self.attn = Attn(C, nH, ws, qkv_bias)
        self.norm2 = nn.LayerNorm(C, eps=eps)
        self.mlp = Mlp(C, int(C * mlp_ratio))

    def forward(self, x):
        B, L, C = x.shape
        H = W = self.res
        y = self.norm1(x).reshape(B, H, W, C)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
        y = self.attn(to_windows(y, self.ws), self.attn_mask)
        y = from_windows(y, self.ws, B, H, W)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), (1, 2))
        # the block's DropPath draws anew on each of its two calls
        x = x + drop_path(y.reshape(B, L, C), self.dp_rate, self.dp_seed, 2 * self.gi,
                          self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.dp_rate, self.dp_seed,
                             2 * self.gi + 1, self.training)


class Merge(nn.Module):
    def __init__(self, C, res, eps):
        super().__init__()
        self.res = res
        self.reduction = nn.Linear(4 * C, 2 * C, bias=False)
        self.norm = nn.LayerNorm(4 * C, eps=eps)

    def forward(self, x):
        B, L, C = x.shape
        x = x.reshape(B, self.res, self.res, C)
        # official order: (even row, even col), (odd row, even col),
        # (even row, odd col), (odd row, odd col)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2],
                       x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        x = x.reshape(B, -1, 4 * C)
        return self.reduction(self.norm(x))


class Stage(nn.Module):
    def __init__(self, C, res, depth, nH, ws, mlp_ratio, qkv_bias, eps, merge):
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(C, res, nH, ws, 0 if b % 2 == 0 else ws // 2, mlp_ratio, qkv_bias, eps)
            for b in range(depth))
        self.downsample = Merge(C, res, eps) if merge else None

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        self.out = x            # the stage's output before merging (mim --layer)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed(nn.Module):
    def __init__(self, p, cin, C, eps, norm):
        super().__init__()
        self.proj = nn.Conv2d(cin, C, p, p)
        self.norm = nn.LayerNorm(C, eps=eps) if norm else None


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        C, eps, n = c["embed_dim"], c["layer_norm_eps"], len(c["depths"])
        r0 = c["img_size"] // c["patch_size"]
        if c["ape"]:            # registered before mask_token, as the official
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, r0 * r0, C))
        else:
            self.absolute_pos_embed = None
        self.mask_token = nn.Parameter(torch.zeros(1, 1, C))
        self.patch_embed = PatchEmbed(c["patch_size"], c["in_chans"], C, eps, c["patch_norm"])
        self.layers = nn.ModuleList(
            Stage(C * 2 ** s, r0 >> s, c["depths"][s], c["num_heads"][s], c["window_size"],
                  c["mlp_ratio"], c["qkv_bias"], eps, s < n - 1) for s in range(n))
        self.num_features = C * 2 ** (n - 1)
        self.norm = nn.LayerNorm(self.num_features, eps=eps)
        blocks = [b for s in self.layers for b in s.blocks]
        rates = torch.linspace(0, c["drop_path_rate"], len(blocks))   # float32
        for i, b in enumerate(blocks):
            b.gi, b.dp_rate = i, float(rates[i])

    def set_dp_seed(self, seed):
        for s in self.layers:
            for b in s.blocks:
                b.dp_seed = seed

    def forward(self, img, mask):
        x = self.patch_embed.proj(img)                   # (B,C,h,w)
        B, C, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        if self.patch_embed.norm is not None:
            x = self.patch_embed.norm(x)
        m = mask.flatten(1).unsqueeze(-1).to(x.dtype)    # (B,L,1), 1 = masked
        x = x * (1 - m) + self.mask_token * m
        if self.absolute_pos_embed is not None:
            x = x + self.absolute_pos_embed
        for s in self.layers:
            x = s(x)
        x = self.norm(x)
        r = int(round(x.shape[1] ** 0.5))
        return x.transpose(1, 2).reshape(B, self.num_features, r, r)


class SimMIMSwin(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c = self.cfg = full_config(cfg)
        self.encoder = Encoder(c)
        s = c["encoder_stride"]
        self.decoder = nn.Sequential(nn.Conv2d(self.encoder.num_features, s * s * 3, 1),
                                     nn.PixelShuffle(s))

    def forward(self, img, mask):
        z = self.encoder(img, mask)
        pred = self.decoder(z)
        p = self.cfg["patch_size"]
        M = mask.repeat_interleave(p, 1).repeat_interleave(p, 2).unsqueeze(1).to(img.dtype)
        l1 = (img - pred).abs()
        loss = (l1 * M).sum() / (M.sum() + 1e-5) / self.cfg["in_chans"]
        return z, pred, loss

    def official_init(self, gen):
        """reference §4.1: linear trunc-normal .02 (bounds +-2 absolute),
        bias 0; LN 1/0; tables and mask token trunc-normal .02; convs
        PyTorch's default uniform(+-1/sqrt(fan_in))."""
        def tn(t):
            with torch.no_grad():
                v = torch.randn(t.shape, generator=gen) * 0.02
                t.copy_(v.clamp(-2, 2))
        for name, mod in self.named_modules():
            if isinstance(mod, nn.Linear):
                tn(mod.weight)
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)
            elif isinstance(mod, nn.LayerNorm):
                nn.init.ones_(mod.weight)
                nn.init.zeros_(mod.bias)
            elif isinstance(mod, nn.Conv2d):
                fan = mod.weight[0].numel()
                bound = 1 / math.sqrt(fan)
                with torch.no_grad():
                    mod.weight.copy_((torch.rand(mod.weight.shape, generator=gen) * 2 - 1) * bound)
                    mod.bias.copy_((torch.rand(mod.bias.shape, generator=gen) * 2 - 1) * bound)
            elif isinstance(mod, Attn):
                tn(mod.relative_position_bias_table)
        tn(self.encoder.mask_token)
        if self.encoder.absolute_pos_embed is not None:
            tn(self.encoder.absolute_pos_embed)


def params_np(model):
    return {k: v.detach().numpy().copy() for k, v in model.named_parameters()}


def buffers_np(model):
    return {k: v.detach().numpy().copy() for k, v in model.named_buffers()}


def maxrel(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    s = np.abs(b).max() if b.size else 0
    d = np.abs(a - b).max() if b.size else 0
    return d / s if s > 0 else d


def step(model, img, mask):
    model.zero_grad()
    z, pred, loss = model(img, mask)
    z.retain_grad()
    loss.backward()
    return z, pred, loss


# ---- modes -----------------------------------------------------------------

def golden(d):
    t, meta = st.load(d + "/micro-swin.s7.b2.safetensors")
    w, _ = st.load(d + "/micro-swin.s7.b2.weights.safetensors")
    # micro-swin: img32 p2 win4 dim16 depths[2,2] heads[1,2]
    cfg = dict(img_size=32, patch_size=2, embed_dim=16, depths=[2, 2], num_heads=[1, 2],
               window_size=4)
    model = SimMIMSwin(cfg)
    sd = model.state_dict()
    assert set(sd) == set(w), sorted(set(sd) ^ set(w))
    bufs = buffers_np(model)
    worst = 0.0
    for k, v in bufs.items():     # our index and -100 masks equal the official buffers
        e = maxrel(v, w[k])
        worst = max(worst, e)
        print("buffer %-60s %.3g" % (k, e))
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in w.items()})
    assert int(model.cfg["encoder_stride"]) == int(meta["encoder_stride"])
    img = torch.from_numpy(np.array(t["input/images"]))
    mask = torch.from_numpy(np.array(t["input/mask"]))
    z, pred, loss = step(model, img, mask)
    rows = [("latent", z.detach().numpy(), t["out/z"]),
            ("pred", pred.detach().numpy(), t["out/x_rec"]),
            ("loss", loss.detach().numpy().reshape(1), t["out/loss"])]
    for k, p in model.named_parameters():
        rows.append(("grad " + k, p.grad.numpy(), t["grad/" + k]))
    for name, a, b in rows:
        e = maxrel(a, b)
        worst = max(worst, e)
        print("%-66s %.3g" % (name, e))
    print("worst max relative error %.3g" % worst)
    return 0 if worst < 1e-4 else 1


def parse_args(argv):
    o = dict(config={}, batch=2, seed=0, mask_patch=None, ratio=0.6, perturb=False,
             weights=None, double=False, dp_seed=0)
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--config":
            o["config"].update(json.loads(argv[i + 1])); i += 1
        elif a == "--preset":
            o["config"].update(PRESETS[argv[i + 1]]); i += 1
        elif a == "--batch":
            o["batch"] = int(argv[i + 1]); i += 1
        elif a == "--seed":
            o["seed"] = int(argv[i + 1]); i += 1
        elif a == "--mask-patch":
            o["mask_patch"] = int(argv[i + 1]); i += 1
        elif a == "--ratio":
            o["ratio"] = float(argv[i + 1]); i += 1
        elif a == "--perturb":
            o["perturb"] = True
        elif a == "--double":
            o["double"] = True
        elif a == "--dp-seed":
            o["dp_seed"] = int(argv[i + 1]); i += 1
        elif a == "--weights":
            o["weights"] = argv[i + 1]; i += 1
        else:
            raise SystemExit("swin_ref.py: unknown option " + a)
        i += 1
    return o


def random_mask(gen, B, res, scale, ratio):
    """SimMIM MaskGenerator: ceil(n*ratio) of n coarse cells, upsampled."""
    n = (res // scale) ** 2
    k = int(math.ceil(n * ratio))
    out = np.zeros((B, res, res), np.uint8)
    for b in range(B):
        idx = torch.randperm(n, generator=gen)[:k].numpy()
        m = np.zeros(n, np.uint8)
        m[idx] = 1
        m = m.reshape(res // scale, res // scale)
        out[b] = m.repeat(scale, 0).repeat(scale, 1)
    return out


def gen(out, argv):
    o = parse_args(argv)
    torch.manual_seed(o["seed"])
    g = torch.Generator().manual_seed(o["seed"])
    cfg = {}
    if o["weights"]:            # the checkpoint's own config first
        w, wmeta = st.load(o["weights"])
        cfg.update(json.loads(wmeta["mim.config"]))
    cfg.update(o["config"])
    cfg.pop("model", None)
    for k in list(cfg):
        if k not in DEFAULT:
            cfg.pop(k)          # other mim.config keys (depth, init_values...) are ViT's
    model = SimMIMSwin(cfg)
    c = model.cfg
    if o["weights"]:
        sd = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in w.items()
              if k in dict(model.named_parameters())}
        missing = set(dict(model.named_parameters())) - set(sd)
        assert not missing, sorted(missing)[:5]
        model.load_state_dict(sd, strict=False)
    else:
        model.official_init(g)
    if o["perturb"]:
        with torch.no_grad():
            for k, p in model.named_parameters():
                if p.dim() == 1 or k.endswith("mask_token"):
                    base = 1.0 if k.endswith("norm.weight") or ".norm1.weight" in k \
                        or ".norm2.weight" in k else 0.0
                    p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))
                elif k.endswith("relative_position_bias_table"):
                    p.copy_(0.5 * torch.randn(p.shape, generator=g))
    B, S, P = o["batch"], c["img_size"], c["patch_size"]
    img = torch.randn(B, c["in_chans"], S, S, generator=g)
    res = S // P
    mp = o["mask_patch"] or min(32, S // 2)
    mask = torch.from_numpy(random_mask(g, B, res, max(mp // P, 1), o["ratio"]))
    tens = dict(params_np(model))
    tens["input/image"] = img.numpy()
    tens["input/mask"] = mask.numpy()
    if o["double"]:
        model = model.double()
        img = img.double()
    model.encoder.set_dp_seed(o["dp_seed"])
    z, pred, loss = step(model, img, mask)

    def f32(t):
        return t.detach().float().numpy()
    tens["out/latent"] = f32(z)
    tens["out/pred"] = f32(pred)
    tens["out/loss"] = np.array(loss.item(), np.float32)
    tens["out/grad_latent"] = f32(z.grad)
    for i, stage in enumerate(model.encoder.layers):   # features of layer i+1
        so = stage.out
        r = int(round(so.shape[1] ** 0.5))
        tens["out/layer%d" % (i + 1)] = f32(so.transpose(1, 2).reshape(B, -1, r, r))
    for k, p in model.named_parameters():
        tens["grad/" + k] = f32(p.grad)
    mc = {"model": "swin", "img_size": S, "in_chans": c["in_chans"], "patch_size": P,
          "embed_dim": c["embed_dim"], "depths": c["depths"], "num_heads": c["num_heads"],
          "window_size": c["window_size"], "mlp_ratio": c["mlp_ratio"],
          "qkv_bias": bool(c["qkv_bias"]), "layer_norm_eps": c["layer_norm_eps"],
          "ape": bool(c["ape"]), "patch_norm": bool(c["patch_norm"]),
          "encoder_stride": c["encoder_stride"], "drop_path_rate": c["drop_path_rate"]}
    st.save(out, tens, {"mim.config": json.dumps(mc), "swin_ref.seed": str(o["seed"]),
                        "swin_ref.dtype": "float64" if o["double"] else "float32",
                        "swin_ref.dp_seed": str(o["dp_seed"])})
    n = sum(p.numel() for p in model.parameters())
    print("%s: %d parameters, loss %.6f" % (out, n, loss.item()), file=sys.stderr)
    return 0


def main(argv):
    torch.set_num_threads(int(os.environ.get("MIM_THREADS", "1")))
    if len(argv) >= 1 and argv[0] == "golden":
        return golden(argv[1] if len(argv) > 1 else GOLDEN)
    if len(argv) >= 2 and argv[0] == "gen":
        # several dumps in one process (torch imports slowly): OUT opts + OUT opts
        jobs, cur = [], []
        for a in argv[1:] + ["+"]:
            if a == "+":
                if cur:
                    jobs.append(cur)
                cur = []
            else:
                cur.append(a)
        for j in jobs:
            if gen(j[0], j[1:]):
                return 1
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
