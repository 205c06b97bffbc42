#!/usr/bin/python3
"""step_ref.py -- the official SimMIM optimizer step in PyTorch, for parity
tests of mim-step (reference/simmim.md section 7): the two parameter groups
of optimizer.py::get_pretrain_param_groups (with their quirks),
torch.nn.utils.clip_grad_norm_, torch.optim.AdamW(betas (0.9, 0.999),
eps 1e-8), applied in the order of main_simmim.py::train_one_epoch.

  step_ref.py adamw OUT
        a small synthetic case (6 tensors, 4 steps, clipping on some) for
        tests/unit/test_optim.c: w0/*, g<k>/*, w<k+1>/*, m<k+1>/*, v<k+1>/*
        and metadata lrs, clip, weight_decay, decay, norms
  step_ref.py opt CKPT GRADS OUT [--lr X] [--wd X] [--clip X]
        one official step from the weights of CKPT (a mim checkpoint) and
        the gradients grad.<name> of GRADS (mim-step --grad-out); writes
        <name>, opt.exp_avg.<name>, opt.exp_avg_sq.<name> (the names of a
        mim-step checkpoint) and metadata grad_norm, decay
  step_ref.py full CKPT BATCHES OUT [--lr X|LIST] [--wd X] [--clip X] [--steps K]
                 [--seed S] [--accum A]
        K official steps (one batch each, cycling through the frames of
        BATCHES: image F32, mask U8) with the PyTorch models of swin_ref.py
        / vit_ref.py doing forward and backward; --lr a number or a comma
        list (one per step); writes as opt, plus grad.<name> and loss of
        the first step and metadata losses. --accum A: A batches a step,
        in the official loop's way (loss / A, clipping after each). vit_ref
        draws drop path as libmim does, from mim-step's seed of batch k:
        train_seed(S, k, 0)
  step_ref.py data OUT [--img S] [--patch P] [--batch B] [--frames N] [--seed S]
                 [--nan K]
        a stream of N frames: image F32 [B,3,S,S] ~ N(0,1), mask U8
        [B,S/P,S/P] (60% of 8x8-pixel cells); --nan K puts a NaN in frame K
  step_ref.py golden GOLDEN INIT CKPT DATA
        from an official golden file (shared/golden/<model>.s7.b2): a mim
        checkpoint CKPT with its weights (mim.config taken from INIT, made by
        mim-ckpt init --preset <model>) and a one-frame stream DATA with its
        batch (mask as U8)
  step_ref.py golden-cmp GOLDEN CKPT [--what step|final] [--lr X] [--tol T]
                 [--mtol T] [--atol T]
        compare a checkpoint after the step(s) with the official step/*,
        step/exp_avg/*, step/exp_avg_sq/* (or train/final/*): moments within
        mtol (1e-5) relative, params within tol (1e-5) relative where the
        official gradient is >= 100 eps, every param within atol (2e-3) lr
        (see step_errors: Adam turns float noise in near-zero gradients
        into a part of lr)
  step_ref.py step-cmp CKPT REF [--lr X] [--tol T] [--mtol T] [--atol T]
        the same against the output of full (its grad.* as the gradient)
  step_ref.py multi MODE ARGS... [+ MODE ARGS...]...
        several of the above in one process (PyTorch loads once)
  step_ref.py cmp A B [--tol T] [--prefix P]
        compare the tensors of B (all, or those starting with P) with the
        same names in A: print the worst max relative error (relative to
        max |B| per tensor) and exit 1 if it exceeds T (default 1e-5)
Not the official code: written from the reference text.
"""
import json
import os
import sys

import numpy as np

import st

torch = None     # imported by the modes that need it (cmp and data do not)


def need_torch():
    global torch
    import torch as t
    torch = t
    torch.set_num_threads(int(os.environ.get("MIM_THREADS", "1")))

M64 = (1 << 64) - 1
SKIP = {"swin": {"encoder.absolute_pos_embed", "encoder.mask_token"},
        "vit": {"encoder.pos_embed", "encoder.cls_token"}}
KEYWORDS = {"swin": {"encoder.relative_position_bias_table"}, "vit": set()}


def no_decay(name, shape, arch):
    """get_pretrain_param_groups: 1-D, *.bias, the skip set, or a keyword
    as a plain substring (which never matches Swin's real table names)."""
    return (len(shape) == 1 or name.endswith(".bias") or name in SKIP[arch]
            or any(k in name for k in KEYWORDS[arch]))


def official_optimizer(named, arch, lr, wd):
    decay = [p for n, p in named if not no_decay(n, p.shape, arch)]
    rest = [p for n, p in named if no_decay(n, p.shape, arch)]
    groups = [{"params": decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)


def clip(params, max_norm):
    """clip_grad_norm_ when clipping is on; the plain norm when it is off
    (the official get_grad_norm)."""
    if max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    return float(torch.norm(torch.stack([p.grad.detach().norm(2) for p in params]), 2))


def opt_tensors(named, opt):
    out = {}
    for n, p in named:
        s = opt.state[p]
        out[n] = p.detach().numpy().copy()
        out["opt.exp_avg." + n] = s["exp_avg"].numpy().copy()
        out["opt.exp_avg_sq." + n] = s["exp_avg_sq"].numpy().copy()
    return out


def parse(argv, **defaults):
    o = dict(defaults)
    i = 0
    while i < len(argv):
        k = argv[i].lstrip("-").replace("-", "_")
        if k not in o:
            raise SystemExit("step_ref.py: unknown option " + argv[i])
        o[k] = type(o[k])(argv[i + 1]) if not isinstance(o[k], str) else argv[i + 1]
        i += 2
    return o


# ---- modes -----------------------------------------------------------------

def adamw(out):
    g = torch.Generator().manual_seed(11)
    shapes = [("encoder.mask_token", (1, 1, 8)), ("encoder.cls_token", (1, 1, 8)),
              ("encoder.blocks.0.attn.qkv.weight", (24, 8)),
              ("encoder.blocks.0.attn.proj.bias", (8,)),
              ("encoder.blocks.0.gamma_1", (8,)), ("decoder.0.weight", (12, 8, 1, 1))]
    named = [(n, torch.nn.Parameter(torch.randn(s, generator=g) * 0.1)) for n, s in shapes]
    lrs, wd, max_norm = [1e-3, 5e-4, 2e-3, 1e-3], 0.05, 1.0
    # gradient scales: step 0 clips (norm ~ 3), step 1 does not (~0.3), tiny
    # elements exercise eps, step 3 is large again
    scales = [0.2, 0.02, 0.05, 0.4]
    t = {}
    for n, p in named:
        t["w0/" + n] = p.detach().numpy().copy()
    opt = official_optimizer(named, "vit", lrs[0], wd)
    norms = []
    for k, lr in enumerate(lrs):
        for n, p in named:
            x = torch.randn(p.shape, generator=g) * scales[k]
            x.view(-1)[0] = 3e-9            # below eps
            p.grad = x
            t["g%d/%s" % (k, n)] = x.numpy().copy()
        for grp in opt.param_groups:
            grp["lr"] = lr
        norms.append(clip([p for _, p in named], max_norm))
        opt.step()
        for n, p in named:
            t["w%d/%s" % (k + 1, n)] = p.detach().numpy().copy()
            t["m%d/%s" % (k + 1, n)] = opt.state[p]["exp_avg"].numpy().copy()
            t["v%d/%s" % (k + 1, n)] = opt.state[p]["exp_avg_sq"].numpy().copy()
    meta = {"lrs": json.dumps(lrs), "clip": repr(max_norm), "weight_decay": repr(wd),
            "decay": json.dumps([n for n, p in named if not no_decay(n, p.shape, "vit")]),
            "names": json.dumps([n for n, _ in named]), "norms": json.dumps(norms)}
    st.save(out, t, meta)
    return 0


def load_model_params(ckpt):
    w, meta = st.load(ckpt)
    cfg = json.loads(meta["mim.config"])
    return w, cfg


def opt(argv):
    ckpt, grads, out = argv[:3]
    o = parse(argv[3:], lr=1e-3, wd=0.05, clip=5.0)
    w, cfg = load_model_params(ckpt)
    gt, _ = st.load(grads)
    names = [k[len("grad."):] for k in gt if k.startswith("grad.")]
    named = []
    for n in names:
        p = torch.nn.Parameter(torch.from_numpy(np.array(w[n], np.float32)))
        p.grad = torch.from_numpy(np.array(gt["grad." + n], np.float32))
        named.append((n, p))
    optim = official_optimizer(named, cfg["model"], o["lr"], o["wd"])
    norm = clip([p for _, p in named], o["clip"])
    optim.step()
    meta = {"grad_norm": repr(norm),
            "decay": json.dumps([n for n, p in named if not no_decay(n, p.shape, cfg["model"])])}
    st.save(out, opt_tensors(named, optim), meta)
    return 0


def mix64(x):
    """splitmix64 of x (lib/train/train.c)"""
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def train_seed(seed, index, rank):
    """mim_train_seed: the drop path seed of input batch `index`"""
    return mix64(mix64(mix64(seed) ^ (index & M64)) ^ (rank & M64))


def ref_model(cfg, w):
    """The PyTorch model of tests/ref for this config, with CKPT's weights."""
    if cfg["model"] == "swin":
        import swin_ref
        keep = {k: v for k, v in cfg.items() if k in swin_ref.DEFAULT and k != "model"}
        model = swin_ref.SimMIMSwin(keep)
    else:
        import vit_ref
        model = vit_ref.SimMIM(vit_ref.config(json.dumps(cfg)))
    params = dict(model.named_parameters())
    sd = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in w.items() if k in params}
    missing = set(params) - set(sd)
    assert not missing, sorted(missing)[:5]
    model.load_state_dict(sd, strict=False)
    return model


def full(argv):
    ckpt, batches, out = argv[:3]
    o = parse(argv[3:], lr="1e-3", wd=0.05, clip=5.0, steps=1, seed=0, accum=1)
    w, cfg = load_model_params(ckpt)
    model = ref_model(cfg, w)
    model.train()
    with open(batches, "rb") as f:
        frames = [t for t, _ in st.read_frames(f)]
    lrs = [float(x) for x in o["lr"].split(",")]
    lrs = lrs + [lrs[-1]] * (o["steps"] - len(lrs))
    named = list(model.named_parameters())
    optim = official_optimizer(named, cfg["model"], lrs[0], o["wd"])
    losses, norms, first = [], [], {}
    A = o["accum"]
    for k in range(o["steps"]):
        for grp in optim.param_groups:
            grp["lr"] = lrs[k]
        optim.zero_grad()
        # ACCUMULATION_STEPS = A as main_simmim.py runs it: loss / A,
        # backward into the running .grad, clip_grad_norm_ after every
        # micro-batch, the optimizer step after the last
        step_loss = 0.0
        for a in range(A):
            idx = k * A + a     # the input batch: mim-step's drop path seed
            fr = frames[idx % len(frames)]
            img = torch.from_numpy(np.array(fr["image"], np.float32))
            mask = torch.from_numpy(np.array(fr["mask"]).astype(np.int64))
            if cfg["model"] == "vit":
                res = model(img, mask, train_seed(o["seed"], idx, 0))
            else:
                res = model(img, mask)     # swin_ref: (z, pred, loss)
            loss = res[-1] if isinstance(res, tuple) else res
            step_loss += loss.item() / A
            (loss / A if A > 1 else loss).backward()
            if k == 0 and a == A - 1:
                first = {"grad." + n: p.grad.numpy().copy() for n, p in named}
                first["loss"] = np.array(step_loss, np.float32)
            norm = clip([p for _, p in named], o["clip"])
        norms.append(norm)
        optim.step()
        losses.append(step_loss)
    t = opt_tensors(named, optim)
    t.update(first)
    st.save(out, t, {"losses": json.dumps(losses), "grad_norms": json.dumps(norms)})
    return 0


def data(argv):
    out = argv[0]
    o = parse(argv[1:], img=32, patch=4, batch=2, frames=4, seed=0, nan=-1)
    rng = np.random.default_rng(o["seed"])
    S, P, B = o["img"], o["patch"], o["batch"]
    cell = max(8 // P, 1)
    n = S // P // cell
    with open(out, "wb") as f:
        for k in range(o["frames"]):
            img = rng.standard_normal((B, 3, S, S)).astype(np.float32)
            if k == o["nan"]:
                img[0, 0, 0, 0] = np.nan
            mask = np.zeros((B, n * n), np.uint8)
            for b in range(B):
                mask[b, rng.permutation(n * n)[:int(np.ceil(n * n * 0.6))]] = 1
            mask = mask.reshape(B, n, n).repeat(cell, 1).repeat(cell, 2)
            f.write(st.frame_bytes({"image": img, "mask": mask}, {"mim.batch": str(k)}))
    return 0


def golden(argv):
    gold, init, ckpt, dat = argv[:4]
    t, _ = st.load(gold + ".safetensors")
    w, _ = st.load(gold + ".weights.safetensors")
    _, imeta = st.load(init)
    params = {k[len("param/"):]: np.array(v) for k, v in t.items() if k.startswith("param/")}
    assert set(params) <= set(w)
    st.save(ckpt, params, {"mim.config": imeta["mim.config"]})
    with open(dat, "wb") as f:
        f.write(st.frame_bytes({"image": np.array(t["input/images"]),
                                "mask": np.array(t["input/mask"]).astype(np.uint8)}))
    return 0


def step_errors(ours, ref, grad, lr):
    """Errors of a step taken by mim against a reference step (dicts of
    <name>, opt.exp_avg.<name>, opt.exp_avg_sq.<name>; grad: the
    reference's first gradient by name). Three numbers:
    - moments: max |diff| relative to the tensor's max |value|, floored at
      1e-3 of the largest tensor's (a tensor whose gradient nearly cancels,
      like the relative position table of a Swin block with one window,
      holds float noise only);
    - params where the reference |g| >= 100 eps: max relative error;
    - all params: max |diff| / lr. AdamW moves a weight by about
      lr * g/(|g| + eps), so where |g| is near eps, float noise in g (Swin's
      key bias has a true gradient of 0) moves the update by a visible part
      of lr."""
    ep = ea = 0.0
    mom = {}
    for n, g in grad.items():
        b = np.asarray(ref[n], np.float64)
        d = np.abs(np.asarray(ours[n], np.float64) - b)
        sel = np.abs(np.asarray(g)) >= 1e-6
        if sel.any():
            ep = max(ep, d[sel].max() / np.abs(b).max())
        ea = max(ea, d.max() / lr)
        for k in ("opt.exp_avg.", "opt.exp_avg_sq."):
            if k + n in ref:
                bm = np.asarray(ref[k + n], np.float64)
                dm = np.abs(np.asarray(ours[k + n], np.float64) - bm).max()
                mom.setdefault(k, []).append((dm, np.abs(bm).max()))
    em = 0.0
    for k, v in mom.items():
        floor = 1e-3 * max(s for _, s in v)
        em = max(em, max(d / max(s, floor) for d, s in v))
    return em, ep, ea


def golden_cmp(argv):
    gold, ckpt = argv[:2]
    o = parse(argv[2:], what="step", tol=1e-5, lr=1e-3, mtol=1e-5, atol=2e-3)
    t, _ = st.load(gold + ".safetensors")
    c, _ = st.load(ckpt)
    grad = {k[len("grad/"):]: v for k, v in t.items() if k.startswith("grad/")}
    if o["what"] == "step":
        ref = {}
        for k, v in t.items():
            for gp, cp in (("step/exp_avg/", "opt.exp_avg."), ("step/exp_avg_sq/", "opt.exp_avg_sq."),
                           ("step/", "")):
                if k.startswith(gp) and "/" not in k[len(gp):]:
                    ref[cp + k[len(gp):]] = v
    else:
        ref = {k[len("train/final/"):]: v for k, v in t.items() if k.startswith("train/final/")}
    return report(step_errors(c, ref, grad, o["lr"]), o)


def report(errs, o):
    em, ep, ea = errs
    print("moments max rel %.3g, params max rel %.3g (where |g| >= 1e-6), "
          "all params max |diff| %.3g lr" % (em, ep, ea))
    return 0 if em <= o["mtol"] and ep <= o["tol"] and ea <= o["atol"] else 1


def step_cmp(argv):
    ours, ref = argv[:2]
    o = parse(argv[2:], tol=1e-5, lr=1e-3, mtol=1e-5, atol=2e-3)
    a, _ = st.load(ours)
    b, _ = st.load(ref)
    grad = {k[len("grad."):]: v for k, v in b.items() if k.startswith("grad.")}
    return report(step_errors(a, b, grad, o["lr"]), o)


def cmp(argv):
    a, b = argv[:2]
    o = parse(argv[2:], tol=1e-5, prefix="")
    ta, _ = st.load(a)
    tb, _ = st.load(b)
    worst, wname, n = 0.0, "", 0
    for k, vb in tb.items():
        if not k.startswith(o["prefix"]):
            continue
        if k not in ta:
            print("missing in %s: %s" % (a, k))
            return 1
        va = np.asarray(ta[k], np.float64)
        vb = np.asarray(vb, np.float64)
        if va.shape != vb.shape:
            print("shape of %s: %s vs %s" % (k, va.shape, vb.shape))
            return 1
        s = np.abs(vb).max() if vb.size else 0
        d = np.abs(va - vb).max() if vb.size else 0
        e = d / s if s > 0 else d
        n += 1
        if e > worst or not np.isfinite(e):
            worst, wname = e, k
    print("%d tensors, worst max relative error %.3g (%s)" % (n, worst, wname))
    return 0 if n > 0 and worst <= o["tol"] else 1


def multi(argv):
    jobs, cur = [], []
    for a in argv + ["+"]:
        if a == "+":
            if cur:
                jobs.append(cur)
            cur = []
        else:
            cur.append(a)
    rc = 0
    for j in jobs:
        rc = max(rc, main(j) or 0)
    return rc


def main(argv):
    if argv and argv[0] in ("adamw", "opt", "full", "multi"):
        need_torch()
    modes = {"multi": multi, "adamw": lambda a: adamw(a[0]), "opt": opt, "full": full, "cmp": cmp,
             "data": data, "golden": golden, "golden-cmp": golden_cmp, "step-cmp": step_cmp}
    if argv and argv[0] in modes:
        return modes[argv[0]](argv[1:])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
