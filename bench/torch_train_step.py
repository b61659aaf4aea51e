#!/usr/bin/python3
"""The PyTorch column of bench_train_step: one training step of the tiny SPARO-CLIP and the tiny
SPARO-DINO presets, built with tools/golden/models_golden.py (the plain PyTorch implementations the
golden tests check our models against).

Usage: torch_train_step.py [--model clip|dino|all] [--threads T] [--steps N] [--warmup W] [--device cpu|cuda] [--json]

--device cuda runs the same step on the GPU (fp32, TF32 off: the arithmetic of sparo's Vulkan
kernels); the step's loss.item() waits for the GPU, and the memory figure is then
torch.cuda.max_memory_allocated, the counterpart of sparo's engine peak on a device.

The configs are read from the same preset files as bench_train_step
(models/configs/tiny-clip-sparo.json, models/configs/tiny-dino-sparo.json) and mapped onto
models_golden's config dicts: every key the preset gives overrides models_golden's defaults, and a
key the preset leaves out takes the value our config loader uses by default (mlp_ratio 4,
global_average_pool false, quick_gelu false, share_kv true, sparo_attn_dim/sparo_heads/
sparo_value_dim/bottleneck_dim unset, DINO qkv_bias true, norm_eps 1e-6, norm_last_layer true).
models_golden's DINO has no drop-path (neither does bench_train_step's step: it runs the backbone
without a generator).

The step, as in bench_train_step: zero_grad(set_to_none=True), forward, loss, backward,
optimizer.step(), loss.item(). AdamW(lr 5e-4, betas (0.9, 0.98), eps 1e-6), weight decay 0.2 on
trainable parameters with ndim >= 2 and 0 on the others; torch's default implementation choice
(foreach=None, which on the CPU is the single-tensor loop). Loss: CLIP's symmetric InfoNCE.
DINO: facebookresearch/dino's step — the teacher (a copy of the student, no gradient) on the 2
global crops, the student on the 2 global + 4 local crops (local crops at half the size, the
positional embedding resized with F.interpolate bicubic), DINOLoss (student temperature 0.1, teacher
0.04, centre momentum 0.9), clip_grad_norm_(3.0), AdamW, then the teacher EMA with momentum 0.996.

Inputs: batch 128; CLIP images [128, 3, 32, 32] torch.randn; DINO crops [256, 3, 28, 28] and
[512, 3, 14, 14] torch.randn; text [128, 32] int32: 1022 start token,
ids uniform in [1, 1000], 1023 end of text (the largest id) after n - 2 ids, then 0 padding,
with n = 2 + (7·b) mod 31 for row b >= 1 and row 0 full (n = 32).

Memory: each model runs in its own Python process (--model all starts one child per model), so
the peak RSS (resource.getrusage ru_maxrss) is that model's alone. "base_rss" is the RSS after
importing torch and before building the model, for reading the process peak as a delta.

importing models_golden sets torch.set_num_threads(1) and torch.use_deterministic_algorithms(True)
(for its fixtures); both are undone here: set_num_threads(T) and deterministic algorithms off
(torch's default).

Prints one JSON object on stdout (--json), or a short text report. When torch cannot be imported,
prints {"error": "..."} and exits with status 0.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
PRESETS = {"clip": "tiny-clip-sparo", "dino": "tiny-dino-sparo"}
BATCH = 128
LR, BETAS, EPS, WD = 5e-4, (0.9, 0.98), 1e-6, 0.2
GLOBAL_CROPS, LOCAL_CROPS = 2, 4
STUDENT_TEMP, TEACHER_TEMP, CENTER_MOMENTUM, TEACHER_MOMENTUM, DINO_CLIP = 0.1, 0.04, 0.9, 0.996, 3.0
SOT, EOT, MAX_ID = 1022, 1023, 1000


def rss_kib(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def blas_library():
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
        return ", ".join(sorted(libs)) or "unknown"
    except OSError:
        return "unknown"


def load_preset(name):
    with open(os.path.join(ROOT, "models", "configs", name + ".json")) as f:
        return json.load(f)


def clip_cfg(models_golden, preset):
    cfg = models_golden.clip_config()
    # Our loader's defaults for the keys a preset may leave out (models/config.h).
    cfg["vision_cfg"].update(mlp_ratio=4.0, global_average_pool=False)
    for key, value in preset.items():
        if key in ("vision_cfg", "text_cfg"):
            for k, v in value.items():
                if k not in cfg[key]:
                    raise KeyError("%s.%s: not a key of models_golden's CLIP config" % (key, k))
                cfg[key][k] = v
        else:
            if key not in cfg:
                raise KeyError("%s: not a key of models_golden's CLIP config" % key)
            cfg[key] = value
    return cfg


def dino_cfg(models_golden, preset):
    cfg = models_golden.dino_config(preset.get("readout", "cls"))
    for key, value in preset.items():
        if key not in cfg:
            raise KeyError("%s: not a key of models_golden's DINO config" % key)
        cfg[key] = value
    return cfg


def make_inputs(torch, kind, cfg):
    gen = torch.Generator().manual_seed(1234)
    if kind == "dino":
        S = cfg["image_size"]
        return {"globals": torch.randn(GLOBAL_CROPS * BATCH, 3, S, S, generator=gen),
                "locals": torch.randn(LOCAL_CROPS * BATCH, 3, S // 2, S // 2, generator=gen)}
    S, T = cfg["vision_cfg"]["image_size"], cfg["text_cfg"]["context_length"]
    assert cfg["text_cfg"]["vocab_size"] == EOT + 1
    text = torch.zeros(BATCH, T, dtype=torch.int32)
    for b in range(BATCH):
        n = T if b == 0 else 2 + (7 * b) % (T - 1)
        mid = torch.randint(1, MAX_ID + 1, (n - 2,), generator=gen, dtype=torch.int32)
        text[b, :n] = torch.cat([torch.tensor([SOT], dtype=torch.int32), mid,
                                 torch.tensor([EOT], dtype=torch.int32)])
    return {"images": torch.randn(BATCH, 3, S, S, generator=gen), "text": text}


def dino_head_out(torch, models_golden, model, images):
    """models_golden.DINO's forward up to the head, for any crop size (DINO's interpolate_pos_encoding)."""
    import torch.nn.functional as F
    x = model.patch_embed(images)
    pos = model.pos_embed
    grid, trained = int(x.shape[1] ** 0.5), int((pos.shape[1] - 1) ** 0.5)
    if grid != trained:
        D = pos.shape[-1]
        patch = pos[:, 1:].reshape(1, trained, trained, D).permute(0, 3, 1, 2)
        patch = F.interpolate(patch, size=(grid, grid), mode="bicubic", align_corners=False)
        pos = torch.cat([pos[:, :1], patch.permute(0, 2, 3, 1).reshape(1, grid * grid, D)], dim=1)
    x = torch.cat([model.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + pos
    for blk in model.blocks:
        x = blk(x)
    x = model.norm(x)
    if model.readout == "sparo":
        y, _ = model.sparo(x)
        feats = models_golden.normalise_slots(y, model.L, model.sparo_type)
        feats = feats * feats.shape[-1] ** 0.5  # sparo's head input scale (models/dino.h)
    else:
        feats = x[:, 0]
    return model.head(feats)


class DinoStep:
    """facebookresearch/dino's DINOLoss and teacher update around models_golden's DINO."""

    def __init__(self, torch, models_golden, student, out_dim):
        import copy
        self.torch, self.mg, self.student = torch, models_golden, student
        self.teacher = copy.deepcopy(student)
        for p in self.teacher.parameters():
            p.requires_grad = False
        self.center = torch.zeros(1, out_dim, device=next(student.parameters()).device)
        self.crops = GLOBAL_CROPS + LOCAL_CROPS

    def loss(self, inputs):
        torch, F = self.torch, self.torch.nn.functional
        with torch.no_grad():
            teacher_out = dino_head_out(torch, self.mg, self.teacher, inputs["globals"])
        student_out = torch.cat([dino_head_out(torch, self.mg, self.student, inputs["globals"]),
                                 dino_head_out(torch, self.mg, self.student, inputs["locals"])])
        student_out = (student_out / STUDENT_TEMP).chunk(self.crops)
        teacher_soft = F.softmax((teacher_out - self.center) / TEACHER_TEMP, dim=-1).detach().chunk(2)
        total, n_terms = 0, 0
        for iq, q in enumerate(teacher_soft):
            for v in range(self.crops):
                if v == iq:
                    continue
                total = total + torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1).mean()
                n_terms += 1
        with torch.no_grad():
            batch_center = torch.sum(teacher_out, dim=0, keepdim=True) / len(teacher_out)
            self.center = self.center * CENTER_MOMENTUM + batch_center * (1 - CENTER_MOMENTUM)
        return total / n_terms

    def ema(self):
        with self.torch.no_grad():
            for ps, pt in zip(self.student.parameters(), self.teacher.parameters()):
                pt.data.mul_(TEACHER_MOMENTUM).add_((1 - TEACHER_MOMENTUM) * ps.detach().data)


def run_one(kind, threads, steps, warmup, device="cpu"):
    try:
        import torch
    except Exception as e:  # missing module or a broken install
        return {"error": "cannot import torch: %s" % e}
    sys.path.insert(0, os.path.join(ROOT, "tools", "golden"))
    import models_golden
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(False)
    base_rss = rss_kib("VmRSS")

    preset = load_preset(PRESETS[kind])
    cfg = clip_cfg(models_golden, preset) if kind == "clip" else dino_cfg(models_golden, preset)
    torch.manual_seed(0)
    model = models_golden.build(cfg)
    model.train()
    inputs = make_inputs(torch, kind, cfg)
    if device == "cuda":
        if not torch.cuda.is_available():
            return {"error": "torch sees no CUDA GPU", "model": kind}
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        model = model.cuda()
        inputs = {k: v.cuda() for k, v in inputs.items()}
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=EPS)

    if kind == "dino":
        dino = DinoStep(torch, models_golden, model, cfg["head_out"])
        forward, before_update, after_update = dino.loss, lambda: torch.nn.utils.clip_grad_norm_(params, DINO_CLIP), dino.ema
    else:
        forward, before_update, after_update = (lambda x: model(x)["loss"]), (lambda: None), (lambda: None)

    clock = time.perf_counter
    rows = []
    for i in range(warmup + steps):
        t0 = clock()
        opt.zero_grad(set_to_none=True)
        loss = forward(inputs)
        t1 = clock()
        loss.backward()
        t2 = clock()
        before_update()
        opt.step()
        after_update()
        t3 = clock()
        value = loss.item()
        t4 = clock()
        if i >= warmup:
            rows.append((t4 - t0, t1 - t0, t2 - t1, t3 - t2, value))

    med = lambda k: statistics.median(r[k] for r in rows)
    return {
        "model": kind,
        "preset": PRESETS[kind],
        "torch": torch.__version__,
        "blas": blas_library(),
        "threads": torch.get_num_threads(),
        "steps": steps,
        "warmup": warmup,
        "parameters": sum(p.numel() for p in params),
        "step_s": [r[0] for r in rows],
        "median_s": med(0),
        "min_s": min(r[0] for r in rows),
        "forward_median_s": med(1),
        "backward_median_s": med(2),
        "optimizer_median_s": med(3),
        "losses": [r[4] for r in rows],
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "vmhwm_bytes": rss_kib("VmHWM") * 1024,
        "base_rss_bytes": base_rss * 1024,
        "memory": "own process, this model only",
        "device": device,
        "device_peak_bytes": torch.cuda.max_memory_allocated() if device == "cuda" else None,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["clip", "dino", "all"], default="all")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    if args.model == "all":
        # One child process per model: each peak RSS belongs to one model alone.
        out = {"results": []}
        for kind in ("clip", "dino"):
            cmd = [sys.executable, os.path.abspath(__file__), "--model", kind, "--threads", str(args.threads),
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device, "--json"]
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
            try:
                res = json.loads(proc.stdout)
            except ValueError:
                res = {"error": "child for %s failed (status %d)" % (kind, proc.returncode)}
            if "results" in res:
                out["results"].extend(res["results"])
            elif "model" in res:  # unexpected
                out["results"].append(res)
            else:  # torch missing (or the child died): the same for every model
                res.setdefault("model", kind)
                if "cannot import torch" in res.get("error", ""):
                    out = {"error": res["error"]}
                    break
                out["results"].append(res)
    else:
        try:
            res = run_one(args.model, args.threads, args.steps, args.warmup, args.device)
        except Exception as e:
            res = {"error": "%s: %s" % (type(e).__name__, e), "model": args.model}
        out = res if "error" in res and "model" not in res else {"results": [res]}

    if args.json:
        print(json.dumps(out))
        return 0
    if "error" in out:
        print(out["error"])
        return 0
    for r in out["results"]:
        if "error" in r:
            print("%s: %s" % (r.get("model"), r["error"]))
            continue
        print("%s (torch %s, %d threads): median %.4f s, min %.4f s (fwd %.4f, bwd %.4f, opt %.4f), "
              "peak RSS %.1f MiB (base %.1f MiB)" % (
                  r["preset"], r["torch"], r["threads"], r["median_s"], r["min_s"], r["forward_median_s"],
                  r["backward_median_s"], r["optimizer_median_s"], r["peak_rss_bytes"] / 2**20,
                  r["base_rss_bytes"] / 2**20))
    return 0


if __name__ == "__main__":
    sys.exit(main())
