"""vit_ref.py -- an independent PyTorch SimMIM ViT (VisionTransformerForSimMIM
+ the SimMIM linear head and loss), written from reference/simmim.md §4.2,
§5, §6 and §9.3, used as the reference for libmim's ViT.

Module and parameter names are the official ones, so that state_dict() has
the official keys in the official order and load_state_dict(strict=True)
takes official dumps and mim checkpoints (which carry the
relative_position_index buffers).

Drop path: timm's per-sample DropPath, x.div(keep) * floor(keep + u), but u
is not torch.rand: it is libmim's hash of (seed, call, sample) (lib/model/
rng.c, mim_droppath), so a training step can be compared bit-for-bit in its
randomness with mim_model_grad. Call 2*i and 2*i+1 are block i's attention
and MLP branches (the official Block calls its one DropPath twice).

Usage (/usr/bin/python3; PYTHONPATH=tests/ref):
  vit_ref.py golden DIR            reproduce shared/golden/micro-vit.*: report
                                   the errors of latent, pred, loss and every
                                   gradient; exit 1 if any exceeds 1e-5
  vit_ref.py make-micro OUT        the committed micro dumps (OUT.<variant>.*)
  vit_ref.py dump CKPT IN OUT [--seed S] [--quick]
                                   reference outputs and gradients for the
                                   checkpoint and the frame IN (image, mask);
                                   --quick: layer 1 and the l1 step only
  vit_ref.py strict CKPT           load_state_dict(strict=True) of a mim
                                   checkpoint into this module
"""
import json
import math
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import st

M64 = (1 << 64) - 1


def splitmix64(state):
    """one splitmix64 step: (new state, output)"""
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def droppath_kept(batch, rate, seed, call):
    """libmim's drop path draw: kept[b] in {0,1} and keep, as float32"""
    if rate <= 0:
        return np.ones(batch, np.float32), 1.0
    keep = 1.0 - rate
    out = np.zeros(batch, np.float32)
    for b in range(batch):
        _, k = splitmix64(seed ^ 0x243F6A8885A308D3)
        k ^= ((call & 0xFFFFFFFF) << 32) | b
        _, h = splitmix64(k)
        u = np.float32((h >> 40) * 2.0 ** -24)
        out[b] = np.floor(np.float32(keep) + u)
    return out, keep


class DropPath(nn.Module):
    def __init__(self, rate):
        super().__init__()
        self.rate = rate
        self.seed = 0
        self.call = 0

    def forward(self, x):
        if not self.training or self.rate == 0:
            return x
        kept, keep = droppath_kept(x.shape[0], self.rate, self.seed, self.call)
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x.div(keep) * torch.from_numpy(kept).view(shape)


def rel_index(grid):
    """(N,N) index into a table of (2G-1)^2 + 3 rows; the last 3 serve cls"""
    n = grid * grid
    rows = (2 * grid - 1) ** 2 + 3
    ys, xs = np.divmod(np.arange(n), grid)
    dy = ys[:, None] - ys[None, :] + grid - 1
    dx = xs[:, None] - xs[None, :] + grid - 1
    idx = np.zeros((n + 1, n + 1), np.int64)
    idx[1:, 1:] = dy * (2 * grid - 1) + dx
    idx[0, :] = rows - 3          # cls query
    idx[:, 0] = rows - 2          # cls key
    idx[0, 0] = rows - 1
    return torch.from_numpy(idx)


class RelPosBias(nn.Module):
    def __init__(self, grid, heads):
        super().__init__()
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * grid - 1) ** 2 + 3, heads))
        self.register_buffer("relative_position_index", rel_index(grid))

    def forward(self):
        n = self.relative_position_index.shape[0]
        t = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return t.reshape(n, n, -1).permute(2, 0, 1).contiguous()


class Attention(nn.Module):
    def __init__(self, dim, heads, qkv_bias, grid):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        if grid:       # per-block table (use_rel_pos_bias)
            self.relative_position_bias_table = nn.Parameter(
                torch.zeros((2 * grid - 1) ** 2 + 3, heads))
            self.register_buffer("relative_position_index", rel_index(grid))
        else:
            self.relative_position_bias_table = None
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, shared_bias):
        B, N, C = x.shape
        bias = None
        if self.q_bias is not None:   # k gets no bias
            bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(B, N, 3, self.heads, C // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        q = q * self.scale                      # scaled before the product
        a = q @ k.transpose(-2, -1)
        if self.relative_position_bias_table is not None:
            t = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
            a = a + t.reshape(N, N, -1).permute(2, 0, 1).unsqueeze(0)
        if shared_bias is not None:
            a = a + shared_bias
        a = a.softmax(dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg, rate, grid):
        super().__init__()
        dim, eps = cfg["embed_dim"], cfg["layer_norm_eps"]
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, cfg["num_heads"], cfg["qkv_bias"],
                              grid if cfg["use_rel_pos_bias"] else 0)
        self.drop_path = DropPath(rate)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * cfg["mlp_ratio"]))
        if cfg["init_values"] is not None:
            self.gamma_1 = nn.Parameter(cfg["init_values"] * torch.ones(dim))
            self.gamma_2 = nn.Parameter(cfg["init_values"] * torch.ones(dim))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x, shared_bias, seed, i):
        self.drop_path.seed = seed
        y = self.attn(self.norm1(x), shared_bias)
        self.drop_path.call = 2 * i
        x = x + self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.mlp(self.norm2(x))
        self.drop_path.call = 2 * i + 1
        return x + self.drop_path(y if self.gamma_2 is None else self.gamma_2 * y)


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        dim, p = cfg["embed_dim"], cfg["patch_size"]
        self.grid = cfg["img_size"] // p
        # own parameters in the official registration order
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = (nn.Parameter(torch.zeros(1, self.grid ** 2 + 1, dim))
                          if cfg["use_abs_pos_emb"] else None)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(cfg["in_chans"], dim, p, p)
        self.rel_pos_bias = (RelPosBias(self.grid, cfg["num_heads"])
                             if cfg["use_shared_rel_pos_bias"] else None)
        depth = cfg["depth"]
        rates = [r.item() for r in torch.linspace(0, cfg["drop_path_rate"], depth)]
        self.blocks = nn.ModuleList(Block(cfg, rates[i], self.grid) for i in range(depth))
        if cfg["use_mean_pooling"]:
            self.norm = None
            self.fc_norm = nn.LayerNorm(dim, eps=cfg["layer_norm_eps"])   # unused here
        else:
            self.norm = nn.LayerNorm(dim, eps=cfg["layer_norm_eps"])

    def forward(self, img, mask, seed=0, layer=0):
        x = self.patch_embed.proj(img).flatten(2).transpose(1, 2)
        B, L, C = x.shape
        if mask is not None:
            w = mask.flatten(1).unsqueeze(-1).to(x.dtype)
            x = x * (1 - w) + self.mask_token.expand(B, L, -1) * w
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        shared = self.rel_pos_bias() if self.rel_pos_bias is not None else None
        for i, blk in enumerate(self.blocks):
            x = blk(x, shared, seed, i)
            if layer and i + 1 == layer:
                break
        if self.norm is not None and not layer:
            x = self.norm(x)
        x = x[:, 1:]
        return x.permute(0, 2, 1).reshape(B, C, self.grid, self.grid)


class SimMIM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        assert cfg["model"] == "vit"
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        s = cfg["encoder_stride"]
        self.decoder = nn.Sequential(nn.Conv2d(cfg["embed_dim"], s * s * 3, 1),
                                     nn.PixelShuffle(s))

    def forward(self, img, mask, seed=0, kind="l1", region="masked", beta=1.0):
        self.z = self.encoder(img, mask, seed)
        self.z.retain_grad()
        self.x_rec = self.decoder(self.z)
        self.x_rec.retain_grad()
        return simmim_loss(img, self.x_rec, mask, self.cfg["patch_size"], kind, region, beta)


def simmim_loss(img, rec, mask, p, kind="l1", region="masked", beta=1.0):
    """the official normalisation: sum(f * M) / (sum(M) + 1e-5) / in_chans"""
    if region == "all":
        m = torch.ones_like(img[:, :1], dtype=torch.int64)
    else:
        m = mask.repeat_interleave(p, 1).repeat_interleave(p, 2).unsqueeze(1).contiguous()
    if kind == "l1":
        f = F.l1_loss(img, rec, reduction="none")
    elif kind == "l2":
        f = F.mse_loss(img, rec, reduction="none")
    else:
        f = F.smooth_l1_loss(img, rec, reduction="none", beta=beta)
    return (f * m).sum() / (m.sum() + 1e-5) / img.shape[1]


DEFAULTS = {"model": "vit", "img_size": 224, "in_chans": 3, "patch_size": 16,
            "embed_dim": 768, "depth": 12, "num_heads": 12, "mlp_ratio": 4.0,
            "qkv_bias": True, "init_values": 0.1, "use_abs_pos_emb": False,
            "use_rel_pos_bias": False, "use_shared_rel_pos_bias": True,
            "use_mean_pooling": False, "drop_path_rate": 0.1,
            "layer_norm_eps": 1e-6, "encoder_stride": 16}


def config(js):
    cfg = dict(DEFAULTS)
    cfg.update(json.loads(js))
    return cfg


def load_ckpt(path):
    """(module, metadata) of a mim checkpoint, loaded with strict=True"""
    t, meta = st.load(path)
    model = SimMIM(config(meta["mim.config"]))
    sd = {k: torch.from_numpy(np.array(v)) for k, v in t.items() if not k.startswith("opt.")}
    model.load_state_dict(sd, strict=True)
    return model, meta


def relerr(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    s = np.abs(b).max()
    return float(np.abs(a - b).max() / s) if s > 0 else float(np.abs(a - b).max())


def step(model, img, mask, seed=0, kind="l1", region="masked", beta=1.0):
    """forward + backward in train mode; returns (loss, z, x_rec, grads)"""
    model.train()
    model.zero_grad(set_to_none=False)
    loss = model(img, mask, seed, kind, region, beta)
    loss.backward()
    grads = {n: p.grad.detach().numpy().copy() if p.grad is not None
             else np.zeros(tuple(p.shape), np.float32)
             for n, p in model.named_parameters()}
    return loss.item(), model.z.detach().numpy(), model.x_rec.detach().numpy(), grads


def cmd_golden(d):
    torch.set_num_threads(1)
    w, _ = st.load(d + "/micro-vit.s7.b2.weights.safetensors")
    g, meta = st.load(d + "/micro-vit.s7.b2.safetensors")
    cfg = config(json.dumps({"img_size": 32, "patch_size": 4, "embed_dim": 32, "depth": 2,
                             "num_heads": 2, "drop_path_rate": 0.0, "encoder_stride": 4}))
    model = SimMIM(cfg)
    keys = list(model.state_dict().keys())
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in w.items()}, strict=True)
    order = [n for n, _ in model.named_parameters()]
    official = json.loads(meta["decay_params"]) + json.loads(meta["no_decay_params"])
    ok = sorted(order) == sorted(official) and len(keys) == len(w)
    print("state_dict: %d keys, strict load ok, parameter names %s" % (len(keys), "match" if ok else "DIFFER"))
    img = torch.from_numpy(np.array(g["input/images"]))
    mask = torch.from_numpy(np.array(g["input/mask"]))
    loss, z, xr, grads = step(model, img, mask)
    errs = {"latent": relerr(z, g["out/z"]), "pred": relerr(xr, g["out/x_rec"]),
            "loss": abs(loss - float(g["out/loss"][0])) / float(g["out/loss"][0]),
            "grad_z": relerr(model.z.grad.numpy(), g["out/grad_z"])}
    for n, v in grads.items():
        errs["grad/" + n] = relerr(v, g["grad/" + n])
    worst = max((v, k) for k, v in errs.items() if k.startswith("grad/"))
    for k in ("latent", "pred", "loss", "grad_z"):
        print("%-8s max rel err %.2e" % (k, errs[k]))
    print("gradients: %d, worst max rel err %.2e (%s)" % (len(grads), worst[0], worst[1]))
    bad = [k for k, v in errs.items() if v > 1e-5]
    if bad or not ok:
        print("FAIL:", bad)
        return 1
    return 0


def make_input(batch, img_size, patch, seed, ratio=0.6):
    r = np.random.default_rng(seed)
    g = img_size // patch
    img = r.standard_normal((batch, 3, img_size, img_size)).astype(np.float32)
    mask = (r.random((batch, g, g)) < ratio).astype(np.uint8)
    return img, mask


def dump(model, meta, img, mask, seed, out, quick=False):
    """reference outputs and training steps as a safetensors file; quick:
    only layer 1 and the l1/masked step"""
    cfg = model.cfg
    t = {"image": img, "mask": mask}
    im, mk = torch.from_numpy(img), torch.from_numpy(mask.astype(np.int64))
    model.eval()
    with torch.no_grad():
        t["latent"] = model.encoder(im, mk).numpy()
        t["pred"] = model.decoder(torch.from_numpy(t["latent"])).numpy()
        for layer in (1,) if quick else (1, cfg["depth"]):
            t["layer%d" % layer] = model.encoder(im, mk, layer=layer).numpy()
        for kind in ("l1", "l2", "smooth-l1"):
            for region in ("masked", "all"):
                t["loss/%s/%s" % (kind, region)] = np.float32(simmim_loss(
                    im, torch.from_numpy(t["pred"]), mk, cfg["patch_size"], kind, region).item())
    t["loss"] = t["loss/l1/masked"]
    for kind, region in (("l1", "masked"),) + ((("smooth-l1", "all"),) if not quick else ()):
        loss, _, _, grads = step(model, im, mk, seed, kind, region)
        t["train_loss/%s/%s" % (kind, region)] = np.float32(loss)
        for n, v in grads.items():
            t["grad/%s/%s/%s" % (kind, region, n)] = v
    meta = {"mim.config": meta["mim.config"], "seed": str(seed)}
    st.save(out, t, meta)


def cmd_dump(ckpt, inp, out, seed, quick):
    torch.set_num_threads(2)
    model, meta = load_ckpt(ckpt)
    t, _ = st.load(inp)
    dump(model, meta, np.array(t["image"]), np.array(t["mask"]), seed, out, quick)
    return 0


VARIANTS = {
    # the golden model, with weights away from their init
    "default": {},
    # every other branch of the official module
    "variants": {"use_abs_pos_emb": True, "use_rel_pos_bias": True, "qkv_bias": False,
                 "init_values": None, "drop_path_rate": 0.3, "mlp_ratio": 3.0,
                 "num_heads": 4},
    "meanpool": {"use_mean_pooling": True, "use_shared_rel_pos_bias": False,
                 "init_values": 0.5, "drop_path_rate": 0.2},
}


def cmd_make_micro(out):
    """micro ViT checkpoints with perturbed weights, inputs and references"""
    torch.manual_seed(11)
    base = {"img_size": 32, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2,
            "drop_path_rate": 0.0, "encoder_stride": 4}
    for name, over in VARIANTS.items():
        cfg = dict(DEFAULTS)
        cfg.update(base)
        cfg.update(over)
        model = SimMIM(cfg)
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.add_(torch.randn_like(p) * (0.05 if "norm" not in n else 0.2))
        js = json.dumps(cfg, separators=(",", ":"))
        sd = {k: v.numpy() for k, v in model.state_dict().items()}
        st.save("%s.%s.ckpt.safetensors" % (out, name), sd, {"mim.config": js})
        img, mask = make_input(2, 32, 4, 5)
        dump(model, {"mim.config": js}, img, mask, 1234, "%s.%s.ref.safetensors" % (out, name))
    return 0


def cmd_strict(ckpt):
    model, meta = load_ckpt(ckpt)
    n = sum(p.numel() for p in model.parameters())
    print("strict load ok: %d tensors, %d parameters" % (len(model.state_dict()), n))
    return 0


def main(argv):
    if len(argv) >= 2 and argv[0] == "golden":
        return cmd_golden(argv[1])
    if len(argv) >= 2 and argv[0] == "make-micro":
        return cmd_make_micro(argv[1])
    if len(argv) >= 4 and argv[0] == "dump":
        seed = int(argv[argv.index("--seed") + 1]) if "--seed" in argv else 0
        return cmd_dump(argv[1], argv[2], argv[3], seed, "--quick" in argv)
    if len(argv) >= 2 and argv[0] == "strict":
        return cmd_strict(argv[1])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
