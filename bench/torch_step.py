"""torch_step.py -- PyTorch's side of the bench: the same SimMIM model (the
reference modules of tests/ref, vit_ref.py and swin_ref.py, loaded from the
same mim checkpoint) and the same training step as mim-step: forward, the
SimMIM loss, backward, clip_grad_norm_(5.0), torch.optim.AdamW with the
official two parameter groups (weight decay 0.05 / 0). Or the encoder
forward alone under no_grad, as mim-encode runs it. --precision bf16 runs
the forward (and the loss) under torch.autocast("cpu", dtype=torch.bfloat16),
as mim's --precision bf16 does its products.

  /usr/bin/python3 bench/torch_step.py --ckpt CKPT --stream FILE --mode step|encode
      [--threads T] [--warmup W] [--steps N] [--precision fp32|bf16]

Reads the frames of FILE (a mim stream of {image, mask}) in turn, one per
step, cycling if there are fewer. Prints one JSON line: the median and all
step times after the warm-up, images/s from the median, and the peak RSS of
this process (ru_maxrss). Set OMP_WAIT_POLICY etc. in the environment.
"""
import argparse
import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "ref"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import st  # noqa: E402


def load_model(path):
    tensors, meta = st.load(path)
    cfg = json.loads(meta["mim.config"])
    sd = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items() if not k.startswith("opt.")}
    if cfg["model"] == "vit":
        import vit_ref
        model = vit_ref.SimMIM(vit_ref.config(meta["mim.config"]))
        model.load_state_dict(sd, strict=True)
        kind = "vit"
    else:
        import swin_ref
        c = {k: v for k, v in cfg.items() if k in swin_ref.DEFAULT and k != "model"}
        model = swin_ref.SimMIMSwin(c)
        names = dict(model.named_parameters())
        model.load_state_dict({k: v for k, v in sd.items() if k in names}, strict=False)
        kind = "swin"
    return model, cfg, kind


def param_groups(model):
    """the official rule (reference §7.1): no decay for 1-d parameters,
    biases, and the skip lists (ViT: pos_embed, cls_token; Swin:
    absolute_pos_embed, mask_token; keyword relative_position_bias_table
    only for names that contain it literally at the encoder level)"""
    skip = {"encoder.pos_embed", "encoder.cls_token", "encoder.absolute_pos_embed",
            "encoder.mask_token"}
    dec, nodec = [], []
    for n, p in model.named_parameters():
        if p.ndim == 1 or n.endswith(".bias") or n in skip:
            nodec.append(p)
        else:
            dec.append(p)
    return [{"params": dec}, {"params": nodec, "weight_decay": 0.0}]


def frames(path):
    with open(path, "rb") as f:
        out = [(np.array(t["image"]), np.array(t["mask"])) for t, _ in st.read_frames(f)]
    if not out:
        sys.exit("torch_step.py: %s: no frames" % path)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--stream", required=True)
    ap.add_argument("--mode", choices=("step", "encode"), default="step")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    a = ap.parse_args()
    def auto():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16")
    torch.set_num_threads(a.threads)
    model, cfg, kind = load_model(a.ckpt)
    if a.precision == "bf16":
        # torch 1.13's CPU autocast leaves layer_norm out of its float
        # list, and a bf16 input (Swin's patch embedding: a conv, then
        # the norm) with float weights fails; cast it to float, as
        # autocast does on CUDA and as mim keeps LayerNorm
        for mod in model.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.register_forward_pre_hook(lambda m, x: tuple(t.float() for t in x))
    data = frames(a.stream)
    opt = torch.optim.AdamW(param_groups(model), lr=1e-4, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.05)
    times = []
    for s in range(a.warmup + a.steps):
        img, mask = data[s % len(data)]
        im = torch.from_numpy(img)
        mk = torch.from_numpy(mask.astype(np.int64))
        t0 = time.perf_counter()
        if a.mode == "encode":
            model.eval()
            with torch.no_grad(), auto():
                model.encoder(im, mk)
        else:
            model.train()
            opt.zero_grad(set_to_none=True)
            with auto():
                if kind == "vit":
                    loss = model(im, mk, s)
                else:
                    model.encoder.set_dp_seed(s)
                    _, _, loss = model(im, mk)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
        dt = time.perf_counter() - t0
        if s >= a.warmup:
            times.append(dt)
    med = float(np.median(times))
    B = data[0][0].shape[0]
    print(json.dumps({"mode": a.mode, "model": kind, "batch": B, "threads": a.threads,
                      "precision": a.precision,
                      "median_s": med, "times": times, "img_per_s": B / med,
                      "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
