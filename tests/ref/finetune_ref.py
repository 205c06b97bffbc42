#!/usr/bin/python3
"""finetune_ref.py -- the official fine-tuning step in PyTorch, the
reference for mim-step on a classifier checkpoint (lib/train: mixup.c,
train.c mim_train_batch_cls; lib/model/classify.c).

Written from reference/simmim.md §3.2, §4.2, §10 and from the semantics of
the official optimizer.py and timm 0.4.12 (Mixup in mode 'batch',
mixup_target, SoftTargetCrossEntropy, LabelSmoothingCrossEntropy), not
copied. The encoders are tests/ref's (vit_ref.Encoder, swin_ref.Encoder)
with the classification head of the official fine-tuning models:
  ViT:  fc_norm(x[:, 1:].mean(1)) -> head      (norm is Identity)
  Swin: avgpool(norm(x)) -> head
Parameter names are the fine-tuning model's (no "encoder."); the mask token
of tests/ref's encoders is left out of every comparison and of the
optimizer (the fine-tuning model has none).

RNG. mim draws lambda, the choice of cutmix and the box with its own
generator (documented in mim/optim.h); they are not numpy's. So the
reference is fed mim's draws (mim.mix of --grad-out, or "lam"/"box" of the
log line) and applies timm's mixing to them: what is compared is the
mixing, targets, logits, loss, every gradient and the AdamW step. The
sampler's distribution has a test of its own (test_finetune).

Usage (/usr/bin/python3; PYTHONPATH=tests/ref):
  finetune_ref.py grad CKPT FRAME GRAD [--seed S] [--smoothing E]
        GRAD is mim-step --grad-out's frame: compare loss, logits and every
        gradient (relative to the tensor's largest value); exit 1 above 1e-4
  finetune_ref.py step CKPT FRAME AFTER LOG --lr X [--seed S] [--smoothing E]
        [--layer-decay D] [--weight-decay W] [--clip C] [--grad GRAD]
        AFTER is the checkpoint after mim-step's first step (LOG its log):
        compare the parameters and the moments as step_ref.step_errors
        does; exit 1 above 1e-5 (moments; parameters where |g| >= 1e-6),
        or a move off by more than 2e-3 of lr. --grad GRAD: grad's check
        first (one process for both). --steps N (FRAME N times, mim-step
        --official-sched): timm's cosine over the layer-decay groups, with
        --warmup W --warmup-lr X --min-lr Y unscaled
  finetune_ref.py groups PRESET[,PRESET..] [--layer-decay D] [--out PREFIX]
        the official param groups of the classifier of a preset as mim-ckpt
        groups prints them (name, layer_id, weight_decay, lr_scale)
  finetune_ref.py perturb CKPT OUT [CKPT OUT...]
        CKPT with every 1-D parameter (biases, LayerNorm, gammas) and the
        head moved by N(0, 0.1^2): no zero tensor (a first AdamW step on a
        zero bias is lr * g / (|g| + eps), which a last-bit difference in
        a gradient of 1e-8 moves by its whole size), stronger gradients
  finetune_ref.py run CKPT TRAIN VAL --lr X --steps N [--seed S] [...]
        fine-tune on the frames of TRAIN (in order, no mixing) as mim-step
        does (constant lr, layer decay, clipping, AdamW) and print the top-1
        accuracy (%) on the frames of VAL
"""
import json
import math
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import st
import swin_ref
import vit_ref
from step_ref import step_errors, train_seed

PRESETS = {
    "vit-base": {"model": "vit", "img_size": 224},
    "swin-base": {"model": "swin", "img_size": 224, "window_size": 7},
}


# ---- the classifier ------------------------------------------------------------

class Classifier(nn.Module):
    """The fine-tuning model around a tests/ref encoder, official names."""

    def __init__(self, cfg):
        super().__init__()
        self.vit = cfg["model"] == "vit"
        if self.vit:
            c = vit_ref.config(json.dumps(cfg))
            enc = vit_ref.Encoder(c)
            dim = c["embed_dim"]
        else:
            c = swin_ref.full_config(cfg)
            enc = swin_ref.Encoder(c)
            dim = enc.num_features
        self.cfg = c
        # the encoder's modules and parameters as our own: official names
        for name, p in list(enc._parameters.items()):
            if p is not None and name != "mask_token":
                self.register_parameter(name, p)
        for name, mod in enc._modules.items():
            self.add_module(name, mod)
        self.enc = [enc]            # (not a child: no "enc." names)
        self.head = nn.Linear(dim, cfg["num_classes"])

    def forward(self, img, seed=0):
        enc = self.enc[0]
        if self.vit:
            z = enc(img, None, seed)                      # (B,C,G,G), no norm
            pooled = z.flatten(2).transpose(1, 2).mean(1)  # x[:, 1:].mean(1)
            return self.head(self.fc_norm(pooled))
        enc.set_dp_seed(seed)
        B, _, H, _ = img.shape
        p = self.cfg["patch_size"]
        mask = torch.zeros(B, H // p, H // p, dtype=torch.uint8)  # nothing masked
        z = enc(img, mask)                                 # norm(x) as (B,F,r,r)
        return self.head(z.flatten(2).mean(-1))            # AdaptiveAvgPool1d


def load(ckpt):
    t, meta = st.load(ckpt)
    cfg = json.loads(meta["mim.config"])
    model = Classifier(cfg)
    sd = {k: torch.from_numpy(np.array(v)) for k, v in t.items() if not k.startswith("opt.")}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    bad = [k for k in missing if not k.endswith("mask_token")]
    assert not bad and not unexpected, (bad, unexpected)
    return model, cfg


def named(model):
    return [(n, p) for n, p in model.named_parameters() if not n.endswith("mask_token")]


# ---- timm 0.4.12 Mixup (mode 'batch') with given draws -------------------------

def mix_images(x, lam, box):
    """_mix_batch after _params_per_batch chose (lam, box)"""
    x = x.clone()
    if lam == 1.0:
        return x
    if box is not None:
        yl, yh, xl, xh = box
        x[:, :, yl:yh, xl:xh] = x.flip(0)[:, :, yl:yh, xl:xh]
    else:
        x_flipped = x.flip(0).mul_(1.0 - lam)
        x.mul_(lam).add_(x_flipped)
    return x


def one_hot(y, k, on, off):
    return torch.full((y.size(0), k), off).scatter_(1, y.long().view(-1, 1), on)


def mixup_target(y, k, lam, smoothing):
    off = smoothing / k
    on = 1.0 - smoothing + off
    return one_hot(y, k, on, off) * lam + one_hot(y.flip(0), k, on, off) * (1.0 - lam)


def soft_ce(logits, target):
    """timm SoftTargetCrossEntropy"""
    return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()


# ---- the official fine-tuning optimizer (optimizer.py) ------------------------

def layer_id(name, arch, cfg):
    """get_vit_layer / get_swin_layer, num_layers + 2 ids"""
    if arch == "vit":
        L = cfg["depth"]
        if name in ("cls_token", "mask_token", "pos_embed") or name.startswith("patch_embed"):
            return 0, L
        if name.startswith("blocks"):
            return int(name.split(".")[1]) + 1, L
        return L + 1, L
    depths = cfg["depths"]
    L = sum(depths)
    if name in ("mask_token",) or name.startswith("patch_embed"):
        return 0, L
    if name.startswith("layers"):
        s, b = int(name.split(".")[1]), name.split(".")[3]
        if b in ("reduction", "norm"):
            return sum(depths[:s + 1]), L
        return sum(depths[:s]) + int(b) + 1, L
    return L + 1, L


def no_decay(name, shape, arch):
    """the fine-tuning models' no_weight_decay() / _keywords() and the rule"""
    skip = {"pos_embed", "cls_token"} if arch == "vit" else {"absolute_pos_embed"}
    kw = () if arch == "vit" else ("relative_position_bias_table",)
    return len(shape) == 1 or name.endswith(".bias") or name in skip or any(k in name for k in kw)


def groups(named_params, cfg, decay, wd):
    """get_finetune_param_groups: [(group dict, names)] in creation order"""
    out = {}
    for n, p in named_params:
        lid, L = layer_id(n, cfg["model"], cfg)
        nd = no_decay(n, p.shape, cfg["model"])
        key = "layer_%d_%s" % (lid, "no_decay" if nd else "decay")
        if key not in out:
            scale = decay ** (L + 1 - lid)
            out[key] = {"params": [], "names": [], "weight_decay": 0.0 if nd else wd,
                        "lr_scale": scale, "layer_id": lid}
        out[key]["params"].append(p)
        out[key]["names"].append(n)
    return list(out.values())


def optimizer(model, cfg, lr, decay, wd):
    gs = groups(named(model), cfg, decay, wd)
    return torch.optim.AdamW([{"params": g["params"], "lr": lr * g["lr_scale"],
                               "weight_decay": g["weight_decay"]} for g in gs],
                             lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)


# ---- commands ------------------------------------------------------------------

def opts(argv, **d):
    o = dict(d)
    i = 0
    while i < len(argv):
        k = argv[i][2:].replace("-", "_")
        o[k] = type(d[k])(argv[i + 1]) if k in d else argv[i + 1]
        i += 2
    return o


def relerr(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    s = np.abs(b).max()
    return float(np.abs(a - b).max() / s) if s > 0 else float(np.abs(a - b).max())


def frame(path):
    with open(path, "rb") as f:
        t, _ = next(st.read_frames(f))
    return torch.from_numpy(np.array(t["image"])), torch.from_numpy(np.array(t["label"])).long()


def forward_loss(model, cfg, img, label, lam, box, seed, smoothing, index=0):
    model.train()
    model.zero_grad(set_to_none=False)
    x = mix_images(img, lam, box)
    target = mixup_target(label, cfg["num_classes"], lam, smoothing)
    logits = model(x, train_seed(seed, index, 0))
    loss = soft_ce(logits, target)
    loss.backward()
    return loss, logits


def cmd_grad(argv):
    ckpt, fr, gp = argv[:3]
    o = opts(argv[3:], seed=0, smoothing=0.1)
    model, cfg = load(ckpt)
    img, label = frame(fr)
    g, meta = st.load(gp)
    mix = json.loads(meta["mim.mix"])
    loss, logits = forward_loss(model, cfg, img, label, mix["lam"], mix.get("box"), o["seed"],
                                o["smoothing"])
    worst, where = 0.0, ""
    errs = {"loss": relerr(g["loss"], loss.item()), "logits": relerr(g["logits"], logits.detach())}
    for n, p in named(model):
        errs["grad." + n] = relerr(g["grad." + n], p.grad)
    for k, e in errs.items():
        if e > worst:
            worst, where = e, k
    print("loss %.9g (mim %.9g)  lam %s%s  worst %.3g at %s  (%d gradients)" % (
        loss.item(), float(g["loss"]), mix["lam"], "  box %s" % mix["box"] if "box" in mix else "",
        worst, where, len(named(model))))
    return 0 if worst <= 1e-4 else 1


def log_mix(log, step=1):
    with open(log) as f:
        for line in f:
            d = json.loads(line)
            if d.get("step") == step and "lam" in d:
                return d["lam"], d.get("box")
    raise SystemExit("no step %d with lam in %s" % (step, log))


def cmd_step(argv):
    ckpt, fr, after, log = argv[:4]
    o = opts(argv[4:], seed=0, smoothing=0.1, layer_decay=0.65, weight_decay=0.05, clip=5.0,
             lr=1e-3, grad="", steps=1, warmup=0, warmup_lr=0.0, min_lr=0.0)
    if o["grad"] and cmd_grad([ckpt, fr, o["grad"], "--seed", str(o["seed"]),
                               "--smoothing", str(o["smoothing"])]):
        return 1
    model, cfg = load(ckpt)
    img, label = frame(fr)
    opt = optimizer(model, cfg, o["lr"], o["layer_decay"], o["weight_decay"])
    sched = None
    if o["steps"] > 1:
        # timm's CosineLRScheduler over the groups (sched_ref.Cosine: each
        # group from its initial lr, warmup_lr and min_lr unscaled), driven
        # as main_finetune.py does: step_update(g) after optimizer step g
        from sched_ref import Cosine
        sched = Cosine(opt, o["steps"], o["min_lr"], o["warmup_lr"], o["warmup"])
    for k in range(o["steps"]):
        lam, box = log_mix(log, k + 1)
        forward_loss(model, cfg, img, label, lam, box, o["seed"], o["smoothing"], k)
        torch.nn.utils.clip_grad_norm_([p for _, p in named(model)], o["clip"])
        opt.step()
        if sched:
            sched.step_update(k)
    t, _ = st.load(after)
    ref, grad = {}, {}
    for n, p in named(model):
        s = opt.state[p]
        ref[n] = p.detach().numpy()
        ref["opt.exp_avg." + n] = s["exp_avg"].numpy()
        ref["opt.exp_avg_sq." + n] = s["exp_avg_sq"].numpy()
        grad[n] = p.grad.numpy()
    # step_ref's measure: moments relative (floored), parameters relative
    # where |g| >= 1e-6, and every parameter's move within 2e-3 of lr
    em, ep, ea = step_errors(t, ref, grad, o["lr"])
    print("lam %s%s  moments %.3g  params %.3g  |diff|/lr %.3g" % (
        lam, "  box %s" % box if box else "", em, ep, ea))
    return 0 if em <= 1e-5 and ep <= 1e-5 and ea <= 2e-3 else 1


def cmd_groups(argv):
    """groups PRESET[,PRESET...] [options] [--out PREFIX]: with --out, the
    lines of each preset to PREFIX.PRESET"""
    o = opts(argv[1:], layer_decay=-1.0, weight_decay=0.05, classes=1000, out="")
    for p in argv[0].split(","):
        if o["out"]:
            with open(o["out"] + "." + p, "w") as f:
                sys.stdout, old = f, sys.stdout
                try:
                    groups_of(p, o)
                finally:
                    sys.stdout = old
        else:
            groups_of(p, o)
    return 0


def groups_of(preset, o):
    cfg = dict(PRESETS[preset])
    cfg["num_classes"] = o["classes"]
    if cfg["model"] == "vit":
        cfg.update(use_rel_pos_bias=True, use_shared_rel_pos_bias=False, use_mean_pooling=True)
    model = Classifier(cfg)
    d = o["layer_decay"] if o["layer_decay"] > 0 else (0.65 if cfg["model"] == "vit" else 0.8)
    by = {}
    for g in groups(named(model), model.cfg, d, o["weight_decay"]):
        for n in g["names"]:
            by[n] = g
    for n, _ in named(model):
        g = by[n]
        print(json.dumps({"name": n, "layer_id": g["layer_id"], "weight_decay": g["weight_decay"],
                          "lr_scale": g["lr_scale"]}, separators=(",", ":")))


def cmd_run(argv):
    ckpt, train, val = argv[:3]
    o = opts(argv[3:], seed=0, smoothing=0.0, layer_decay=0.65, weight_decay=0.05, clip=5.0,
             lr=1e-3, steps=10)
    model, cfg = load(ckpt)
    opt = optimizer(model, cfg, o["lr"], o["layer_decay"], o["weight_decay"])
    params = [p for _, p in named(model)]
    k = 0
    with open(train, "rb") as f:
        for t, _ in st.read_frames(f):
            if k >= o["steps"]:
                break
            img = torch.from_numpy(np.array(t["image"]))
            label = torch.from_numpy(np.array(t["label"])).long()
            model.train()
            opt.zero_grad(set_to_none=False)
            target = mixup_target(label, cfg["num_classes"], 1.0, o["smoothing"])
            loss = soft_ce(model(img, train_seed(o["seed"], k, 0)), target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, o["clip"])
            opt.step()
            k += 1
    model.eval()
    hit = n = 0
    with torch.no_grad(), open(val, "rb") as f:
        for t, _ in st.read_frames(f):
            z = model(torch.from_numpy(np.array(t["image"])))
            hit += int((z.argmax(1) == torch.from_numpy(np.array(t["label"])).long()).sum())
            n += z.shape[0]
    print("%.4f" % (100.0 * hit / n))
    return 0


def cmd_perturb(argv):
    g = np.random.default_rng(0)
    for ckpt, out in zip(argv[0::2], argv[1::2]):
        t, meta = st.load(ckpt)
        t = dict(t)
        for k, v in t.items():
            if v.dtype == np.float32 and (v.ndim == 1 or k.startswith("head.")):
                t[k] = (v + 0.1 * g.standard_normal(v.shape)).astype(np.float32)
        st.save(out, t, meta)
    return 0


def main(argv):
    cmds = {"grad": cmd_grad, "step": cmd_step, "groups": cmd_groups, "run": cmd_run,
            "perturb": cmd_perturb}
    if len(argv) < 2 or argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    return cmds[argv[1]](argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
