#!/usr/bin/python3
"""pth_ref.py -- PyTorch-side references for mim-ckpt import/export/diff.

  pth_ref.py fixtures DIR     tiny torch.save files (zip, legacy, protocol 4, a
                              bare state dict) and the state they hold, written
                              directly as DIR/tiny.safetensors (committed)
  pth_ref.py relpos FILE      relative position tables and their resampling by
                              the official fine-tune procedure, which uses
                              scipy's interp2d (committed; needs scipy < 1.14)
  pth_ref.py hostile DIR      malformed torch.save files (made at test time)
  pth_ref.py official CKPT.safetensors OUT
                              training checkpoints in the official SimMIM
                              layout (utils.py save_checkpoint): {'model',
                              'optimizer', 'lr_scheduler', 'max_accuracy',
                              'epoch', 'config'} with the model's state dict
                              (official buffers included) taken from CKPT, as
                              OUT.pth (zip) and OUT.legacy.pth, and that state
                              dict written directly as OUT.state.safetensors
  pth_ref.py latent CKPT.pth CONFIG.safetensors IN OUT
                              PyTorch's encoder output: torch.load(CKPT)['model']
                              loaded with strict=True into the reference module
                              (vit_ref.py / swin_ref.py) of CONFIG's mim.config,
                              run in eval mode on IN's image and mask; OUT holds
                              'latent'
  pth_ref.py resize CKPT.safetensors OUT.safetensors IMG [WINDOW]
                              the official pretrain->finetune remap of CKPT's
                              state dict for a fine-tuning model of image size
                              IMG (and Swin window WINDOW), written without the
                              keys the fine-tuning model ignores
"""
import argparse
import collections
import io
import json
import os
import struct
import sys
import types
import warnings
import zipfile

import numpy as np
import torch

import st

warnings.filterwarnings("ignore")


def fake_yacs():
    """A stand-in for yacs.config.CfgNode (a dict subclass), so that pickles
    name the class exactly as the official checkpoints do."""
    if "yacs.config" in sys.modules:
        return sys.modules["yacs.config"].CfgNode
    yacs = types.ModuleType("yacs")
    cfg = types.ModuleType("yacs.config")

    class CfgNode(dict):
        def __init__(self, init=None, new_allowed=False):
            super().__init__(init or {})
            self.__dict__["__immutable__"] = False
            self.__dict__["__new_allowed__"] = new_allowed
    CfgNode.__module__ = "yacs.config"
    CfgNode.__qualname__ = "CfgNode"
    cfg.CfgNode = CfgNode
    yacs.config = cfg
    sys.modules["yacs"] = yacs
    sys.modules["yacs.config"] = cfg
    return CfgNode


def to_numpy(t):
    """A contiguous NumPy copy; bf16 as its raw uint16 bits."""
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16).copy(), "BF16"
    return t.numpy().copy(), None


NAMES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.float64): "F64",
         np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.int16): "I16",
         np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL"}


def save_state(path, sd, meta=None):
    """A safetensors file of sd, written here rather than with st.save,
    whose np.ascontiguousarray turns 0-d tensors into shape [1]."""
    hdr, blobs, off = {}, [], 0
    if meta:
        hdr["__metadata__"] = meta
    for k, v in sd.items():
        a, dt = to_numpy(v) if isinstance(v, torch.Tensor) else (np.asarray(v), None)
        b = a.tobytes()
        hdr[k] = {"dtype": dt or NAMES[a.dtype], "shape": list(a.shape),
                  "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    js = json.dumps(hdr).encode()
    js += b" " * (-len(js) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)) + js + b"".join(blobs))


# ---- fixtures ----------------------------------------------------------------

def tiny_state():
    g = torch.Generator().manual_seed(1)
    big = torch.randn(10, generator=g)
    base = torch.randn(3, 4, generator=g)
    sd = collections.OrderedDict()
    sd["w"] = torch.randn(3, 4, generator=g)
    sd["wt"] = base.t()                         # strided view (4,3), strides (1,4)
    sd["big"] = big
    sd["slice"] = big[2:5]                      # storage offset 2, shared storage
    sd["every2"] = big[1::2]                    # stride 2
    sd["expand"] = torch.arange(3.0).expand(2, 3)   # stride 0
    sd["idx"] = torch.arange(6, dtype=torch.int64).reshape(2, 3) - 2
    sd["half"] = torch.tensor([0.5, -2, 65504, 1e-3, 3], dtype=torch.float16)
    sd["bf"] = torch.tensor([1.5, -0.25, 3e38, 7], dtype=torch.bfloat16)
    sd["f64"] = torch.tensor([1 / 3, -1e300], dtype=torch.float64)
    sd["i32"] = torch.tensor([-7, 2**31 - 1], dtype=torch.int32)
    sd["i16"] = torch.tensor([-300, 300], dtype=torch.int16)
    sd["i8"] = torch.tensor([-128, 127], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 255, 7], dtype=torch.uint8)
    sd["flag"] = torch.tensor([True, False, True])
    sd["scalar"] = torch.tensor(2.5)
    sd["empty"] = torch.zeros(0, 3)
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    sd["encoder.layers.0.blocks.0.attn.relative_position_index"] = torch.arange(4).reshape(2, 2)
    return sd


def tiny_ckpt(sd):
    CfgNode = fake_yacs()
    cfg = CfgNode({"MODEL": CfgNode({"TYPE": "swin", "NAME": "tiny"}), "SEED": 0})
    opt = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2, 2),
                         "exp_avg_sq": torch.zeros(2, 2)}},
           "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8,
                             "weight_decay": 0.05, "params": [0]}]}
    return {"model": sd, "optimizer": opt,
            "lr_scheduler": {"t_initial": 100, "base_values": [1e-3]},
            "max_accuracy": 0.0, "epoch": 7, "config": cfg,
            "args": argparse.Namespace(lr=0.1, name="x"),
            "np": np.float64(0.25), "npi": np.int64(3)}


def fixtures(d):
    os.makedirs(d, exist_ok=True)
    sd = tiny_state()
    ck = tiny_ckpt(sd)
    torch.save(ck, os.path.join(d, "tiny.zip.pth"))
    torch.save(ck, os.path.join(d, "tiny.legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save(ck, os.path.join(d, "tiny.p4.pth"), pickle_protocol=4)
    torch.save(ck, os.path.join(d, "tiny.p4legacy.pth"), pickle_protocol=4,
               _use_new_zipfile_serialization=False)
    # a bare state dict, written to a stream (top folder "archive")
    buf = io.BytesIO()
    torch.save(sd, buf)
    with open(os.path.join(d, "tiny.sd.pth"), "wb") as f:
        f.write(buf.getvalue())
    save_state(os.path.join(d, "tiny.safetensors"), sd)


# ---- the official relative position table resampling ---------------------------

def official_resize(table, dst_size):
    """remap_pretrained_keys_swin's geometric resampling of one table
    (L1, nH) to (dst_size**2, nH), as in microsoft/SimMIM utils.py."""
    from scipy import interpolate
    L1, nH = table.shape
    src_size = int(L1 ** 0.5)
    left, right = 1.01, 1.5
    while right - left > 1e-6:
        q = (left + right) / 2.0
        gp = (1.0 - q ** (src_size // 2)) / (1.0 - q)
        if gp > dst_size // 2:
            right = q
        else:
            left = q
    dis, cur = [], 1
    for i in range(src_size // 2):
        dis.append(cur)
        cur += q ** (i + 1)
    x = [-v for v in reversed(dis)] + [0] + dis
    t = dst_size // 2.0
    dx = np.arange(-t, t + 0.1, 1.0)
    cols = []
    for i in range(nH):
        z = torch.from_numpy(np.ascontiguousarray(table[:, i])).view(src_size, src_size).float().numpy()
        f = interpolate.interp2d(x, x, z, kind="cubic")
        cols.append(torch.Tensor(f(dx, dx)).contiguous().view(-1, 1))
    return torch.cat(cols, dim=-1).numpy()


def official_resize_vit(table, dst_grid, extra=3):
    """remap_pretrained_keys_vit: resample the first rows, keep the cls rows."""
    body, tail = table[:-extra], table[-extra:]
    return np.concatenate([official_resize(body, 2 * dst_grid - 1), tail], 0)


def relpos(path):
    rng = np.random.default_rng(7)
    out = {}
    for name, S, D, nH in [("w6to7", 11, 13, 4), ("w7to6", 13, 11, 2), ("w12to14", 23, 27, 1)]:
        src = (rng.standard_normal((S * S, nH)) * 0.02).astype(np.float32)
        out[name + ".src"] = src
        out[name + ".dst"] = official_resize(src, D)
    src = (rng.standard_normal((13 * 13 + 3, 2)) * 0.02).astype(np.float32)
    out["vit7to9.src"] = src
    out["vit7to9.dst"] = official_resize_vit(src, 9)
    save_state(path, out, {"made_by": "tests/ref/pth_ref.py relpos (scipy interp2d)"})


# ---- hostile files -------------------------------------------------------------

class Stor:
    def __init__(self, cls, key, numel):
        self.pid = ("storage", cls, key, "cpu", numel)


class FakeTensor:
    def __init__(self, stor, off, size, stride):
        self.args = (stor, off, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class PidPickler:
    @staticmethod
    def dumps(obj, protocol=2):
        import pickle
        buf = io.BytesIO()
        p = pickle.Pickler(buf, protocol=protocol)
        p.persistent_id = lambda o: o.pid if isinstance(o, Stor) else None
        p.dump(obj)
        return buf.getvalue()


def zip_of(entries, top="archive"):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries:
            z.writestr(top + "/" + name, data)
    return buf.getvalue()


def crafted(tensors, storages, top="archive", extra=()):
    """A zip torch.save file from fake tensors and {key: bytes} storages."""
    return zip_of([("data.pkl", PidPickler.dumps({"model": tensors}))] +
                  [("data/" + k, v) for k, v in storages.items()] + [("version", b"3\n")] +
                  list(extra), top)


def hostile(d):
    os.makedirs(d, exist_ok=True)
    F = torch.FloatStorage
    s4 = Stor(F, "0", 4)
    good = crafted({"a": FakeTensor(s4, 0, (2, 2), (2, 1))}, {"0": np.arange(4, dtype=np.float32).tobytes()},
                   top="any-name_here")
    files = {
        "good.pth": good,
        "truncated.pth": good[: len(good) // 2],
        "truncated-end.pth": good[:-10],
        "offset-past-end.pth": crafted({"a": FakeTensor(s4, 3, (2,), (1,))}, {"0": bytes(16)}),
        "stride-past-end.pth": crafted({"a": FakeTensor(s4, 0, (2, 2), (3, 1))}, {"0": bytes(16)}),
        "huge-size.pth": crafted({"a": FakeTensor(s4, 0, (2**40, 2**40), (2**40, 1))}, {"0": bytes(16)}),
        "huge-numel.pth": crafted({"a": FakeTensor(Stor(F, "0", 2**60), 0, (2,), (1,))}, {"0": bytes(16)}),
        "short-record.pth": crafted({"a": FakeTensor(s4, 0, (4,), (1,))}, {"0": bytes(8)}),
        "missing-record.pth": crafted({"a": FakeTensor(s4, 0, (4,), (1,))}, {}),
        "negative-stride.pth": crafted({"a": FakeTensor(s4, 3, (4,), (-1,))}, {"0": bytes(16)}),
        "bad-storage-type.pth": crafted({"a": FakeTensor(Stor(torch.ComplexFloatStorage, "0", 2), 0, (2,), (1,))},
                                        {"0": bytes(16)}),
        "too-many-dims.pth": crafted({"a": FakeTensor(s4, 0, (1,) * 9, (1,) * 9)}, {"0": bytes(16)}),
        "no-tensors.pth": crafted({}, {}),
        "not-a-dict.pth": zip_of([("data.pkl", PidPickler.dumps([1, 2, 3]))]),
        "bad-pickle.pth": zip_of([("data.pkl", b"\x80\x02}q\x00(X\x05\x00\x00\x00model\xff.")]),
        "unknown-opcode.pth": zip_of([("data.pkl", b"\x80\x02\xf0.")]),
        "no-data-pkl.pth": zip_of([("data/0", bytes(16))]),
        # deeply nested lists, then an unterminated mark bomb
        "nest-bomb.pth": zip_of([("data.pkl", b"\x80\x02" + b"]" * 200000 + b"a" * 199999 + b".")]),
        "mark-bomb.pth": zip_of([("data.pkl", b"\x80\x02" + b"(" * 500000 + b".")]),
        # a list that contains itself
        "cycle.pth": zip_of([("data.pkl", b"\x80\x02]q\x00h\x00a.")]),
        "memo-missing.pth": zip_of([("data.pkl", b"\x80\x02h\x07.")]),
        "huge-string.pth": zip_of([("data.pkl", b"\x80\x04\x8d" + struct.pack("<Q", 2**62) + b"abc.")]),
        "legacy-truncated.pth": None,
        "garbage.pth": b"PK\x03\x04" + bytes(100),
        "bad-byteorder.pth": crafted({"a": FakeTensor(s4, 0, (4,), (1,))}, {"0": bytes(16)},
                                     extra=[("byteorder", b"middle")]),
        "text.pth": b"hello, this is not a checkpoint\n",
    }
    # a legacy file cut inside the raw storages
    buf = io.BytesIO()
    torch.save({"model": {"a": torch.arange(100.0)}}, buf, _use_new_zipfile_serialization=False)
    files["legacy-truncated.pth"] = buf.getvalue()[:-50]
    # well-formed: a big-endian file (torch >= 2.1 writes 'byteorder')
    files["big-endian.pth"] = crafted({"a": FakeTensor(s4, 0, (2, 2), (1, 2)),
                                       "b": FakeTensor(Stor(torch.LongStorage, "1", 2), 0, (2,), (1,))},
                                      {"0": np.arange(4, dtype=">f4").tobytes(),
                                       "1": np.array([1, -2], dtype=">i8").tobytes()},
                                      extra=[("byteorder", b"big")])
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


# ---- the official checkpoint layout ---------------------------------------------

def rel_index(ws):
    """Swin relative_position_index for a ws x ws window."""
    c = np.stack(np.meshgrid(np.arange(ws), np.arange(ws), indexing="ij")).reshape(2, -1)
    r = (c[:, :, None] - c[:, None, :]).transpose(1, 2, 0) + (ws - 1)
    return torch.from_numpy(r[:, :, 0] * (2 * ws - 1) + r[:, :, 1]).long()


def vit_rel_index(P):
    ri = rel_index(P)
    n = P * P + 1
    idx = torch.zeros(n, n, dtype=torch.long)
    idx[1:, 1:] = ri
    idx[0, :] = (2 * P - 1) ** 2
    idx[:, 0] = (2 * P - 1) ** 2 + 1
    idx[0, 0] = (2 * P - 1) ** 2 + 2
    return idx


def swin_attn_mask(res, ws, shift):
    img = torch.zeros(1, res, res, 1)
    cnt = 0
    sl = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    for h in sl:
        for w in sl:
            img[:, h, w, :] = cnt
            cnt += 1
    x = img.view(1, res // ws, ws, res // ws, ws, 1).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws)
    m = x.unsqueeze(1) - x.unsqueeze(2)
    return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)


def official_state(frame, cfg):
    """The official model's state_dict from mim's parameters: parameters in
    mim's (official) order, plus the buffers the official modules register."""
    sd = collections.OrderedDict()
    for k, v in frame.items():
        sd[k] = torch.from_numpy(np.array(v, dtype=np.float32))
    out = collections.OrderedDict()
    if cfg["model"] == "vit":
        P = cfg["img_size"] // cfg["patch_size"]
        for k, v in sd.items():
            out[k] = v
            if k == "encoder.rel_pos_bias.relative_position_bias_table":
                out["encoder.rel_pos_bias.relative_position_index"] = vit_rel_index(P)
        return out
    res0 = cfg["img_size"] // cfg["patch_size"]
    for k, v in sd.items():
        parts = k.split(".")
        if k.endswith("norm1.weight") and parts[1] == "layers":
            s, b = int(parts[2]), int(parts[4])
            res = res0 >> s
            ws, shift = cfg["window_size"], (0 if b % 2 == 0 else cfg["window_size"] // 2)
            if res <= ws:
                ws, shift = res, 0
            if shift:
                out[k.replace("norm1.weight", "attn_mask")] = swin_attn_mask(res, ws, shift)
        out[k] = v
        if k.endswith("relative_position_bias_table"):
            S = int(round(v.shape[0] ** 0.5))
            out[k.replace("bias_table", "index")] = rel_index((S + 1) // 2)
    return out


def official(src, out):
    tensors, meta = st.load(src)
    cfg = json.loads(meta["mim.config"])
    sd = official_state({k: v for k, v in tensors.items() if not k.startswith("opt.")}, cfg)
    params = [torch.nn.Parameter(v.clone()) for k, v in sd.items() if v.dtype == torch.float32
              and "attn_mask" not in k]
    opt = torch.optim.AdamW(params, lr=1e-3)
    for p in params:
        p.grad = torch.ones_like(p) * 1e-3
    opt.step()
    CfgNode = fake_yacs()
    config = CfgNode({"MODEL": CfgNode({"TYPE": cfg["model"], "NAME": "simmim_pretrain"}),
                      "DATA": CfgNode({"IMG_SIZE": cfg["img_size"], "MASK_RATIO": 0.6}),
                      "TRAIN": CfgNode({"BASE_LR": 1e-4, "EPOCHS": 100}), "SEED": 0})
    sched = {"t_initial": 100, "warmup_t": 10, "base_values": [1e-4, 1e-4], "metric": None,
             "noise_range_t": None, "t_in_epochs": False}
    ckpt = {"model": sd, "optimizer": opt.state_dict(), "lr_scheduler": sched,
            "max_accuracy": 0.0, "epoch": 99, "config": config}
    torch.save(ckpt, out + ".pth")
    torch.save(ckpt, out + ".legacy.pth", _use_new_zipfile_serialization=False)
    # the state written directly, for mim-ckpt diff
    save_state(out + ".state.safetensors", sd)


def resize(src, dst, img, window):
    tensors, meta = st.load(src)
    cfg = json.loads(meta["mim.config"])
    sd = collections.OrderedDict((k[len("encoder."):], torch.from_numpy(np.array(v)))
                                 for k, v in tensors.items() if k.startswith("encoder."))
    sd.pop("mask_token", None)
    out = collections.OrderedDict()
    if cfg["model"] == "swin":
        res0 = img // cfg["patch_size"]
        for k, v in sd.items():
            if "relative_position_index" in k or "attn_mask" in k:
                continue
            if k.endswith("relative_position_bias_table"):
                s = int(k.split(".")[1])
                ws = (res0 >> s) if (res0 >> s) <= window else window
                D = 2 * ws - 1
                if v.shape[0] != D * D:
                    v = torch.from_numpy(official_resize(v.numpy(), D))
            out[k] = v
    else:
        P = img // cfg["patch_size"]
        shared = sd.pop("rel_pos_bias.relative_position_bias_table")
        sd.pop("rel_pos_bias.relative_position_index", None)
        depth = cfg["depth"]
        for i in range(depth):
            sd["blocks.%d.attn.relative_position_bias_table" % i] = shared.clone()
        for k, v in sd.items():
            if k.startswith("norm."):
                continue
            if k.endswith("relative_position_bias_table") and v.shape[0] != (2 * P - 1) ** 2 + 3:
                v = torch.from_numpy(official_resize_vit(v.numpy(), P))
            out[k] = v
    save_state(dst, out)


def latent(pth, cfgfile, inp, out):
    fake_yacs()                 # the checkpoint's config is a yacs CfgNode
    _, meta = st.load(cfgfile)
    cfg = json.loads(meta["mim.config"])
    if cfg["model"] == "vit":
        import vit_ref
        model = vit_ref.SimMIM(vit_ref.config(meta["mim.config"]))
    else:
        import swin_ref
        model = swin_ref.SimMIMSwin({k: v for k, v in cfg.items() if k in swin_ref.DEFAULT and k != "model"})
    sd = torch.load(pth, map_location="cpu")["model"]
    model.load_state_dict(sd, strict=True)
    model.eval()
    t, _ = st.load(inp)
    img = torch.from_numpy(np.array(t["image"]))
    mask = torch.from_numpy(np.array(t["mask"]).astype(np.int64))
    with torch.no_grad():
        z = model.encoder(img, mask)
    save_state(out, {"latent": z})


def main():
    cmd = sys.argv[1]
    if cmd == "fixtures":
        fixtures(sys.argv[2])
    elif cmd == "relpos":
        relpos(sys.argv[2])
    elif cmd == "hostile":
        hostile(sys.argv[2])
    elif cmd == "official":
        official(sys.argv[2], sys.argv[3])
    elif cmd == "latent":
        latent(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    elif cmd == "resize":
        resize(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else 0)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
