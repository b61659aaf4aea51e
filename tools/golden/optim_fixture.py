#!/usr/bin/python3
"""Golden values for sparo's optimisers, gradient clipping and LR schedules, from PyTorch.

Writes tests/fixtures/optim_torch.json, which tests/training/test_optim.cpp replays with
training/optimizer.h and training/schedule.h.

Regenerate (from the repository root, with Debian's python3, which has torch and numpy;
the pyenv python3 on PATH has no torch):

    /usr/bin/python3 tools/golden/optim_fixture.py

The script is deterministic: it uses fixed seeds, single-tensor (foreach=False) code paths
on the CPU, and prints every float32 value with its shortest round-trip decimal, so a rerun
rewrites the identical file (checked by comparing with `git diff`).

What the fixture holds
----------------------
* "params": four parameters with fixed values: A [3, 4], b [4], C [2, 2, 3], s [] (a logit
  scale). "grads": six steps of gradients, one list per parameter, drawn once with a fixed
  seed and written out, so the C++ side never needs PyTorch's RNG.
* "optim": scenarios for torch.optim.SGD and torch.optim.AdamW. Each names its
  hyper-parameters, its parameter groups (indices into "params", a weight decay and an lr
  scale: the group's lr is lr * lr_scale), optional gradients that are missing (None in
  PyTorch: the parameter is skipped at that step), an optional lr per step (set on every
  group before the step, times its lr scale), and "after": the parameters after each step.
* "clip": torch.nn.utils.clip_grad_norm_ cases (clipping and not clipping, one with a
  parameter that has no gradient): the returned total norm and the gradients afterwards.
* "schedules":
  - "warmup_cosine": OpenCLIP's cosine_lr convention (open_clip/training/scheduler.py),
    step counted from 0:
        step <  warmup:          lr = base_lr * (step + 1) / warmup
        warmup <= step < steps:  lr = 0.5 * (1 + cos(pi * e / es)) * base_lr,
                                 e = step - warmup, es = steps - warmup
    generalised (and reducing to it when both are 0) with a warm-up start value and a final lr:
        step <  warmup:          lr = start + (base_lr - start) * (step + 1) / warmup
        warmup <= step < steps:  lr = final + 0.5 * (1 + cos(pi * e / es)) * (base_lr - final)
    "values" come from this formula; "lambda_lr" are the lrs a torch.optim.lr_scheduler.LambdaLR
    driven by the same formula hands out at each step (asserted equal here).
  - "cosine": DINO's cosine_scheduler convention (dino/utils.py), used for weight decay and
    teacher momentum schedules: warm-up is np.linspace(start_warmup_value, base_value,
    warmup_iters) (the first step is exactly the start value, the last warm-up step exactly
    the base value), then final + 0.5 * (base - final) * (1 + cos(pi * i / n)) for
    i = 0 .. n-1, n = total - warmup.
"""

import json
import math
import os
import re
import sys

import numpy as np
import torch

STEPS = 6
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures",
                   "optim_torch.json")


def f32(x):
    """A float32 value as the Python float of its shortest round-trip decimal."""
    x32 = np.float32(x)
    v = float(repr(float(x32)) if not np.isfinite(x32) else str(x32))
    # The decimal must come back to the same float32 after double parsing (what the C++ side does).
    assert np.float32(v) == x32 or (np.isnan(x32) and math.isnan(v)), (x, v)
    return v


def flat(t):
    return [f32(v) for v in t.detach().reshape(-1).tolist()]


# ---- parameters and gradients ------------------------------------------------------------------

torch.manual_seed(1234)
PARAMS0 = [
    ("A", torch.randn(3, 4)),
    ("b", torch.randn(4) * 0.1),
    ("C", torch.randn(2, 2, 3)),
    ("s", torch.tensor(math.log(1 / 0.07))),
]
# Round the initial values through their decimals once so both sides start from the same bits.
PARAMS0 = [(n, torch.tensor(flat(t), dtype=torch.float32).reshape(t.shape)) for n, t in PARAMS0]

gen = torch.Generator().manual_seed(5678)
GRADS = []
for step in range(STEPS):
    # Gradients of varied scale per parameter (and a slowly changing mean) so that the moments matter.
    row = []
    for k, (_, p) in enumerate(PARAMS0):
        g = torch.randn(p.shape, generator=gen) * (0.5 + 0.25 * k) + 0.1 * (step - 2)
        row.append(torch.tensor(flat(g), dtype=torch.float32).reshape(p.shape))
    GRADS.append(row)


def fresh_params():
    return [t.clone().requires_grad_(True) for _, t in PARAMS0]


# ---- optimiser scenarios -----------------------------------------------------------------------

def run_optim(sc):
    params = fresh_params()
    groups = []
    for g in sc["groups"]:
        groups.append({"params": [params[i] for i in g["params"]], "weight_decay": g["weight_decay"],
                       "lr": sc["lr"] * g["lr_scale"]})
    if sc["type"] == "sgd":
        opt = torch.optim.SGD(groups, lr=sc["lr"], momentum=sc["momentum"], dampening=sc["dampening"],
                              nesterov=sc["nesterov"], foreach=False)
    else:
        opt = torch.optim.AdamW(groups, lr=sc["lr"], betas=(sc["beta1"], sc["beta2"]), eps=sc["eps"],
                                foreach=False)
    missing = {tuple(m) for m in sc.get("missing_grads", [])}
    after = []
    for step in range(STEPS):
        if "lr_per_step" in sc:
            for pg, g in zip(opt.param_groups, sc["groups"]):
                pg["lr"] = sc["lr_per_step"][step] * g["lr_scale"]
        for i, p in enumerate(params):
            p.grad = None if (step, i) in missing else GRADS[step][i].clone()
        opt.step()
        after.append([flat(p) for p in params])
    sc = dict(sc)
    sc["after"] = after
    return sc


def warmup_cosine(step, base_lr, warmup, steps, final_lr=0.0, warmup_start=0.0):
    if step < warmup:
        return warmup_start + (base_lr - warmup_start) * (step + 1) / warmup
    e = step - warmup
    es = steps - warmup
    return final_lr + 0.5 * (1 + np.cos(np.pi * e / es)) * (base_lr - final_lr)


def group(params, wd, lr_scale=1.0):
    return {"params": params, "weight_decay": wd, "lr_scale": lr_scale}


SCHEDULED_LRS = [float(warmup_cosine(s, 1e-2, 2, STEPS, final_lr=1e-3)) for s in range(STEPS)]

OPTIM = [
    {"name": "sgd_plain", "type": "sgd", "lr": 0.1, "momentum": 0.0, "dampening": 0.0, "nesterov": False,
     "groups": [group([0, 1, 2, 3], 0.0)]},
    {"name": "sgd_weight_decay", "type": "sgd", "lr": 0.05, "momentum": 0.0, "dampening": 0.0, "nesterov": False,
     "groups": [group([0, 2], 0.1), group([1, 3], 0.0)]},
    {"name": "sgd_momentum", "type": "sgd", "lr": 0.05, "momentum": 0.9, "dampening": 0.0, "nesterov": False,
     "groups": [group([0, 1, 2, 3], 0.0)]},
    {"name": "sgd_momentum_dampening_wd", "type": "sgd", "lr": 0.05, "momentum": 0.9, "dampening": 0.1,
     "nesterov": False, "groups": [group([0, 2], 0.01), group([1, 3], 0.0, 0.5)],
     "missing_grads": [[0, 1], [1, 1], [3, 2]]},
    {"name": "sgd_nesterov", "type": "sgd", "lr": 0.02, "momentum": 0.9, "dampening": 0.0, "nesterov": True,
     "groups": [group([0, 2], 0.001), group([1, 3], 0.0)], "missing_grads": [[0, 3], [2, 0]]},
    {"name": "adamw_lr5e-4", "type": "adamw", "lr": 5e-4, "beta1": 0.9, "beta2": 0.98, "eps": 1e-6,
     "groups": [group([0, 2], 0.1), group([1, 3], 0.0)]},
    {"name": "adamw_lr1e-2_groups", "type": "adamw", "lr": 1e-2, "beta1": 0.9, "beta2": 0.98, "eps": 1e-6,
     "groups": [group([0], 0.05), group([2], 0.2, 0.5), group([1, 3], 0.0)],
     "missing_grads": [[0, 3], [1, 3], [3, 1]]},
    {"name": "adamw_defaults", "type": "adamw", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
     "groups": [group([0, 1, 2, 3], 0.01)]},
    {"name": "adamw_scheduled", "type": "adamw", "lr": 1e-2, "beta1": 0.9, "beta2": 0.98, "eps": 1e-6,
     "groups": [group([0, 2], 0.1), group([1, 3], 0.0, 2.0)], "lr_per_step": SCHEDULED_LRS,
     "schedule": {"base_lr": 1e-2, "final_lr": 1e-3, "warmup_steps": 2, "total_steps": STEPS}},
]


# ---- gradient clipping -----------------------------------------------------------------------

def run_clip(name, max_norm, step, with_grad):
    params = fresh_params()
    for i, p in enumerate(params):
        p.grad = GRADS[step][i].clone() if i in with_grad else None
    total = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return {"name": name, "max_norm": max_norm, "grad_step": step, "with_grad": with_grad,
            "total_norm": f32(total.item()),
            "grads_after": [flat(p.grad) if p.grad is not None else None for p in params]}


CLIP = [
    run_clip("clips", 1.0, 0, [0, 1, 2, 3]),
    run_clip("clips_hard", 0.05, 4, [0, 1, 2, 3]),
    run_clip("no_clip", 100.0, 1, [0, 1, 2, 3]),
    run_clip("clips_missing_grad", 2.0, 2, [0, 2, 3]),
]


# ---- schedules -------------------------------------------------------------------------------

def run_warmup_cosine(base_lr, warmup, steps, final_lr=0.0, warmup_start=0.0):
    values = [float(warmup_cosine(s, base_lr, warmup, steps, final_lr, warmup_start)) for s in range(steps)]
    # The same schedule through PyTorch's LambdaLR: the lr it hands out before each scheduler.step().
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, base_lr, warmup, steps, final_lr, warmup_start) / base_lr)
    lambda_lr = []
    for _ in range(steps):
        lambda_lr.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        sched.step()
    for a, b in zip(values, lambda_lr):
        assert abs(a - b) <= 1e-15 + 1e-12 * abs(a), (a, b)
    return {"base_lr": base_lr, "final_lr": final_lr, "warmup_steps": warmup, "total_steps": steps,
            "warmup_start": warmup_start, "values": values, "lambda_lr": lambda_lr}


def dino_cosine_scheduler(base_value, final_value, total, warmup=0, start_warmup_value=0.0):
    warmup_schedule = np.array([])
    if warmup > 0:
        warmup_schedule = np.linspace(start_warmup_value, base_value, warmup)
    iters = np.arange(total - warmup)
    schedule = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * iters / len(iters)))
    schedule = np.concatenate((warmup_schedule, schedule))
    assert len(schedule) == total
    return {"start": base_value, "end": final_value, "total_steps": total, "warmup_steps": warmup,
            "warmup_start": start_warmup_value, "values": [float(v) for v in schedule]}


SCHEDULES = {
    "warmup_cosine": [
        run_warmup_cosine(5e-4, 10, 50),
        run_warmup_cosine(1e-3, 0, 20),
        run_warmup_cosine(1e-2, 1, 7),
        run_warmup_cosine(3e-4, 4, 25, final_lr=1e-5, warmup_start=1e-6),
        run_warmup_cosine(1e-2, 2, STEPS, final_lr=1e-3),
    ],
    "cosine": [
        dino_cosine_scheduler(0.04, 0.4, 30),              # DINO weight decay
        dino_cosine_scheduler(0.996, 1.0, 30),             # DINO teacher momentum
        dino_cosine_scheduler(5e-4, 1e-6, 30, 5, 1e-6),    # DINO lr with linear warm-up
        dino_cosine_scheduler(0.1, 0.0, 6, 1, 0.05),       # a one-step warm-up: linspace(a, b, 1) == [a]
    ],
}
assert SCHEDULES["warmup_cosine"][-1]["values"] == SCHEDULED_LRS


def main():
    fixture = {
        "about": "Generated by tools/golden/optim_fixture.py with torch " + torch.__version__.split("+")[0] +
                 "; do not edit by hand.",
        "steps": STEPS,
        "params": [{"name": n, "shape": list(t.shape), "values": flat(t)} for n, t in PARAMS0],
        "grads": [[flat(g) for g in row] for row in GRADS],
        "optim": [run_optim(sc) for sc in OPTIM],
        "clip": CLIP,
        "schedules": SCHEDULES,
    }
    text = json.dumps(fixture, indent=1) + "\n"
    # One line per innermost list of numbers: readable diffs, small file.
    text = re.sub(r"\[[^\[\]{}\"]*\]", lambda m: "[" + ", ".join(m.group(0)[1:-1].split()).replace(",,", ",") + "]",
                  text)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write(text)
    print("wrote %s (%d bytes)" % (os.path.relpath(OUT), len(text)), file=sys.stderr)


if __name__ == "__main__":
    main()
