"""flops.py -- analytic FLOPs per image of a SimMIM model (mim.config JSON):
the matrix products only (2 FLOPs per multiply-add; LayerNorm, GELU,
softmax and the optimizer are left out, as is usual).

  encode   the encoder forward (what mim-encode runs)
  forward  encoder + prediction head (the 1x1 conv)
  step     forward + backward: every product's weight gradient and input
           gradient, except the patch embedding's input gradient (the
           image needs none): about 3x forward

  /usr/bin/python3 bench/flops.py CKPT|CONFIG_JSON   -> one JSON line
(CKPT: a mim checkpoint; only its header is read, for mim.config)
"""
import json
import struct
import sys


def vit_products(c):
    """[(macs, needs_input_grad)] for one image"""
    p, C = c["patch_size"], c["embed_dim"]
    G = c["img_size"] // p
    T, N = G * G, G * G + 1
    F = int(C * c["mlp_ratio"])
    enc = [(T * C * c["in_chans"] * p * p, False)]          # patch embedding
    for _ in range(c["depth"]):
        enc += [(N * 3 * C * C, True), (N * C * C, True), (N * F * C, True),
                (N * C * F, True), (2 * N * N * C, True)]    # qkv proj fc1 fc2 attention
    s = c["encoder_stride"]
    head = [((c["img_size"] // s) ** 2 * s * s * 3 * C, True)]
    return enc, head


def swin_products(c):
    p, E = c["patch_size"], c["embed_dim"]
    G = c["img_size"] // p
    enc = [(G * G * E * c["in_chans"] * p * p, False)]
    n = len(c["depths"])
    for s in range(n):
        C, res = E << s, G >> s
        T = res * res
        ws = min(c["window_size"], res)
        Nw = ws * ws
        Hd = int(C * c["mlp_ratio"])
        for _ in range(c["depths"][s]):
            enc += [(T * 3 * C * C, True), (T * C * C, True), (T * Hd * C, True),
                    (T * C * Hd, True), (2 * T * Nw * C, True)]
        if s < n - 1:
            enc.append(((T // 4) * 2 * C * 4 * C, True))      # patch merging reduction
    F = E << (n - 1)
    st = c["encoder_stride"]
    head = [((c["img_size"] // st) ** 2 * st * st * 3 * F, True)]
    return enc, head


def flops(c):
    enc, head = (vit_products if c["model"] == "vit" else swin_products)(c)
    fe = 2 * sum(m for m, _ in enc)
    fh = 2 * sum(m for m, _ in head)
    bwd = 2 * sum(m * (2 if g else 1) for m, g in enc + head)
    return {"encode": fe, "forward": fe + fh, "step": fe + fh + bwd}


def main(argv):
    if len(argv) != 1:
        sys.stderr.write(__doc__)
        return 2
    if argv[0].lstrip().startswith("{"):
        c = json.loads(argv[0])
    else:
        with open(argv[0], "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            c = json.loads(json.loads(f.read(n))["__metadata__"]["mim.config"])
    defaults = {"in_chans": 3, "mlp_ratio": 4.0}
    for k, v in defaults.items():
        c.setdefault(k, v)
    print(json.dumps(flops(c)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
