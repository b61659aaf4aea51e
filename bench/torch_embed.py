#!/usr/bin/python3
"""The PyTorch column of bench_embed: the ViT-B/32 image tower of bench/make_vit_b32.py on the
CPU, eval mode, torch.no_grad(), fp32.

Usage: torch_embed.py --cache DIR [--threads 2] [--reps32 3] [--reps1 10]

The model is the module make_vit_b32.py exported (tools/golden/models_golden.py's CLIP image
tower + l2 normalisation), its weights read from DIR/vit-b32.safetensors straight into the
parameters' storage one tensor at a time (no second copy of the weights: a fair peak RSS).
Input: DIR/images.u8 preprocessed once, before timing (make_vit_b32.preprocess, the same
arithmetic as the other sides). Then batch 32 once, checked against DIR/reference.f32 (also the
warm-up), --reps32 timed runs of batch 32, 2 warm-up runs of batch 1 (image 0), --reps1 timed
runs of it. Prints one JSON object; peak RSS = resource.getrusage ru_maxrss. When torch cannot be
imported, prints {"error": ...} and exits 0.
"""
import argparse
import json
import os
import resource
import struct
import sys
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "bench"))


def rss_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
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


def load_safetensors_into(model, path):
    """Reads each tensor of the file straight into the matching parameter's memory."""
    import numpy as np
    params = dict(model.state_dict(keep_vars=True))
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        start = 8 + n
        header.pop("__metadata__", None)
        if set(header) != set(params):
            raise SystemExit(f"torch_embed: names differ: {sorted(set(header) ^ set(params))[:5]}")
        for name, info in header.items():
            p = params[name]
            if info["dtype"] != "F32" or list(info["shape"]) != list(p.shape):
                raise SystemExit(f"torch_embed: {name}: {info['dtype']} {info['shape']} vs {list(p.shape)}")
            a, b = info["data_offsets"]
            f.seek(start + a)
            view = p.detach().numpy().reshape(-1).view(np.uint8)
            if f.readinto(view) != b - a:
                raise SystemExit(f"torch_embed: {name}: short read")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=os.path.join(ROOT, "build", "bench_embed_cache"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps32", type=int, default=3)
    ap.add_argument("--reps1", type=int, default=10)
    args = ap.parse_args()
    try:
        import numpy as np
        import torch
        import make_vit_b32 as mk  # imports models_golden (1 thread, deterministic): undone here
    except Exception as e:  # noqa: BLE001
        print(json.dumps({"error": f"cannot import torch: {e}"}))
        return
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(False)
    base_rss = rss_bytes()
    t0 = time.perf_counter()
    with torch.no_grad():
        model = mk.build_model(0)  # random init, overwritten below
        load_safetensors_into(model, os.path.join(args.cache, "vit-b32.safetensors"))
        tower = mk.ImageTower(model).eval()
    load_s = time.perf_counter() - t0
    with open(os.path.join(args.cache, "meta.json")) as f:
        meta = json.load(f)
    B, E = meta["batch"], meta["embed_dim"]
    images = mk.read_images(os.path.join(args.cache, "images.u8"))
    x32 = mk.preprocess(images)
    x1 = x32[:1].clone()
    ref = torch.from_numpy(np.fromfile(os.path.join(args.cache, "reference.f32"), dtype="<f4").reshape(B, E))

    def run(x):
        a = time.perf_counter()
        with torch.no_grad():
            y = tower(x)
        return time.perf_counter() - a, y

    check_s, got = run(x32)
    max_abs = float((got - ref).abs().max())
    min_cos = float(torch.nn.functional.cosine_similarity(got.double(), ref.double(), dim=-1).min())
    t32 = [run(x32)[0] for _ in range(args.reps32)]
    for _ in range(2):
        run(x1)
    t1 = [run(x1)[0] for _ in range(args.reps1)]
    print(json.dumps({
        "side": "pytorch", "torch": torch.__version__, "blas": blas_library(), "threads": torch.get_num_threads(),
        "load_s": load_s, "check_s": check_s, "max_abs_diff": max_abs, "min_cosine": min_cos,
        "batch32_s": t32, "batch1_s": t1,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "base_rss_bytes": base_rss,
    }))


if __name__ == "__main__":
    main()
