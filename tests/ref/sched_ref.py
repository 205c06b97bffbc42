#!/usr/bin/python3
"""sched_ref.py -- the learning rate of every optimizer step of a SimMIM run,
from a small re-implementation of the official scheduler semantics
(reference/simmim.md section 7.3): timm 0.4.12's CosineLRScheduler and
Scheduler base class, SimMIM's MultiStepLRScheduler, driven the way
main_simmim.py drives them (constructor sets the warmup lr, then
step_update(g) after optimizer step g). Also the clean schedule of mim-step
(cosine after the warmup, step g at t = g), written independently.

  sched_ref.py                    print the committed cases as JSON
  sched_ref.py case KIND OFFICIAL LR WARMUP_LR MIN_LR STEPS WARMUP [MILESTONES GAMMA [ACCUM]]
                                  one vector, one lr per line (repr)
Not the official code: written from the reference text.
"""
import json
import math
import sys
from bisect import bisect_right


class Optimizer:
    """Just the param_groups a scheduler touches."""
    def __init__(self, lr, ngroups=2):
        self.param_groups = [{"lr": lr} for _ in range(ngroups)]


class Scheduler:
    """timm 0.4.12 scheduler.Scheduler: base values from each group's
    initial lr; update_groups writes a value per group; no noise."""
    def __init__(self, optimizer):
        self.optimizer = optimizer
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.base_values = [g["initial_lr"] for g in optimizer.param_groups]

    def update_groups(self, values):
        if not isinstance(values, (list, tuple)):
            values = [values] * len(self.optimizer.param_groups)
        for g, v in zip(self.optimizer.param_groups, values):
            g["lr"] = v

    def step_update(self, num_updates):
        values = self._get_lr(num_updates)     # t_in_epochs=False
        if values is not None:
            self.update_groups(values)


class Cosine(Scheduler):
    """timm 0.4.12 CosineLRScheduler with t_mul=1, decay_rate=1,
    warmup_prefix=False, cycle_limit=1 (the SimMIM call)."""
    def __init__(self, opt, t_initial, lr_min, warmup_lr_init, warmup_t):
        super().__init__(opt)
        self.t_initial, self.lr_min = t_initial, lr_min
        self.warmup_t, self.warmup_lr_init = warmup_t, warmup_lr_init
        self.cycle_limit = 1
        if warmup_t:
            self.warmup_steps = [(v - warmup_lr_init) / warmup_t for v in self.base_values]
            self.update_groups(warmup_lr_init)
        else:
            self.warmup_steps = [1 for _ in self.base_values]

    def _get_lr(self, t):
        if t < self.warmup_t:
            return [self.warmup_lr_init + t * s for s in self.warmup_steps]
        i = t // self.t_initial
        t_i = self.t_initial
        t_curr = t - (self.t_initial * i)
        gamma = 1.0 ** i
        lr_min = self.lr_min * gamma
        lr_max_values = [v * gamma for v in self.base_values]
        if i < self.cycle_limit:
            return [lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * t_curr / t_i))
                    for lr_max in lr_max_values]
        return [self.lr_min for _ in self.base_values]


class MultiStep(Scheduler):
    """SimMIM lr_scheduler.MultiStepLRScheduler."""
    def __init__(self, opt, milestones, gamma, warmup_t, warmup_lr_init):
        super().__init__(opt)
        self.milestones, self.gamma = milestones, gamma
        self.warmup_t, self.warmup_lr_init = warmup_t, warmup_lr_init
        if warmup_t:
            self.warmup_steps = [(v - warmup_lr_init) / warmup_t for v in self.base_values]
            self.update_groups(warmup_lr_init)
        else:
            self.warmup_steps = [1 for _ in self.base_values]
        assert warmup_t <= min(milestones)

    def _get_lr(self, t):
        if t < self.warmup_t:
            return [self.warmup_lr_init + t * s for s in self.warmup_steps]
        return [v * (self.gamma ** bisect_right(self.milestones, t)) for v in self.base_values]


def official(kind, lr, warmup_lr, min_lr, steps, warmup, milestones=(), gamma=0.1, accum=1):
    """The lr each optimizer step of the official loop runs with. The loop
    is main_simmim.py's over micro-batches idx: the scheduler is built on
    the loader's length (micro-batches), so with ACCUMULATION_STEPS = A a
    run of `steps` optimizer steps is steps*A long, its warmup warmup*A and
    its milestones m*A; optimizer.step() and step_update(idx) run when
    (idx + 1) % A == 0."""
    A = max(accum, 1)
    opt = Optimizer(lr)
    if kind == "cosine":
        s = Cosine(opt, steps * A, min_lr, warmup_lr, warmup * A)
    elif kind == "multistep":
        s = MultiStep(opt, [m * A for m in milestones], gamma, warmup * A, warmup_lr)
    else:
        raise ValueError(kind)
    out = []
    for idx in range(steps * A):
        if (idx + 1) % A == 0:
            out.append(opt.param_groups[0]["lr"])   # optimizer.step() uses this
            s.step_update(idx)                       # then the loop updates
    return out


def clean(kind, lr, warmup_lr, min_lr, steps, warmup, milestones=(), gamma=0.1):
    """mim-step's default: step g at t = g, cosine over the steps after
    the warmup."""
    out = []
    for g in range(steps):
        if g < warmup:
            v = warmup_lr + g * ((lr - warmup_lr) / warmup)
        elif kind == "cosine":
            t, T = g - warmup, steps - warmup
            v = min_lr if t >= T else min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t / T))
        elif kind == "multistep":
            v = lr * gamma ** sum(1 for m in milestones if m <= g)
        else:
            v = lr
        out.append(v)
    return out


# The cases the tests compare against (lrs already scaled, as mim-step's
# --lr gives them; the scaling is checked separately).
CASES = [
    dict(kind="cosine", lr=8e-4, warmup_lr=4e-6, min_lr=4e-5, steps=40, warmup=6),
    dict(kind="cosine", lr=1e-3, warmup_lr=0.0, min_lr=1e-5, steps=25, warmup=0),
    dict(kind="multistep", lr=4e-4, warmup_lr=2e-6, min_lr=0.0, steps=30, warmup=5,
         milestones=[12, 20], gamma=0.1),
    dict(kind="multistep", lr=1e-3, warmup_lr=1e-6, min_lr=0.0, steps=12, warmup=0,
         milestones=[7], gamma=0.5),
    # gradient accumulation: the official loop counts micro-batches (the
    # clean schedule ignores accum)
    dict(kind="cosine", lr=8e-4, warmup_lr=4e-6, min_lr=4e-5, steps=40, warmup=6, accum=3),
    dict(kind="cosine", lr=1e-3, warmup_lr=0.0, min_lr=1e-5, steps=25, warmup=0, accum=2),
    dict(kind="multistep", lr=4e-4, warmup_lr=2e-6, min_lr=0.0, steps=30, warmup=5,
         milestones=[12, 20], gamma=0.1, accum=4),
]


def main(argv):
    if len(argv) >= 2 and argv[1] == "case":
        kind, off = argv[2], argv[3] == "1"
        lr, wlr, mlr = (float(x) for x in argv[4:7])
        steps, warm = int(argv[7]), int(argv[8])
        ms = [int(x) for x in argv[9].split(",") if x] if len(argv) > 9 else []
        gamma = float(argv[10]) if len(argv) > 10 else 0.1
        accum = int(argv[11]) if len(argv) > 11 else 1
        vs = (official(kind, lr, wlr, mlr, steps, warm, ms, gamma, accum) if off
              else clean(kind, lr, wlr, mlr, steps, warm, ms, gamma))
        for v in vs:
            print(repr(v))
        return
    out = []
    for c in CASES:
        args = (c["kind"], c["lr"], c["warmup_lr"], c["min_lr"], c["steps"], c["warmup"],
                c.get("milestones", ()), c.get("gamma", 0.1))
        for off in (1, 0):
            lrs = official(*args, c.get("accum", 1)) if off else clean(*args)
            out.append(dict(c, official=off, lrs=lrs))
    json.dump(out, sys.stdout, indent=0)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv)
