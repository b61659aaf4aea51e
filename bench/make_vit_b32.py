#!/usr/bin/python3
"""The model and inputs of bench_embed: OpenCLIP's ViT-B/32 image tower with random weights,
written for all three sides of the benchmark (sparo, PyTorch, onnxruntime).

Usage: /usr/bin/python3 bench/make_vit_b32.py [--out build/bench_embed_cache] [--seed 13] [--force]

build/bench_embed runs it itself when the cache is missing; it takes a minute or two (most of
it torch.onnx.export).

The model is tools/golden/models_golden.py's CLIP (plain PyTorch, OpenCLIP's state-dict names,
proven equal to sparo's CLIP by the golden tests), with OpenCLIP's ViT-B-32 image tower
(models/configs/ViT-B-32.json: image 224, patch 32, width 768, 12 layers, 12 heads of 64,
MLP 3072, GELU (erf), embed_dim 512). sparo loads only whole CLIP models (load_clip: a config
in OpenCLIP's schema + a safetensors state dict), so the text tower is there too, but tiny
(width 64, 1 layer, 2 heads, context 8, vocabulary 64: ~0.1 M of the ~88 M parameters); the
benchmark runs the image tower alone on every side. Weights: models_golden.make_model (OpenCLIP's
inits plus N(0, 0.02²) on biases and LayerNorms), seed --seed.

Files written to --out:
  vit-b32.json          the config, OpenCLIP's schema (sparo's ClipConfig reads it)
  vit-b32.safetensors   the state dict under OpenCLIP's names, F32, written by
                        tools/convert_checkpoint.py's writer (the layout `sparo embed` loads)
  vit-b32-image.onnx    image tower: images [batch, 3, 224, 224] f32 -> embeds [batch, 512]
                        (unit norm), torch.onnx.export, opset 17, dynamic batch
  images.u8             32 random images, uint8 [32, 3, 224, 224] (already at the model's size:
                        decode and resize are not part of the benchmark)
  reference.f32         the PyTorch module's embeddings of those 32 images, f32 [32, 512]: every
                        side checks its own output against it before timing
  meta.json             shapes, seed, sizes, torch version

Every side turns images.u8 into the model's input once, before timing, in the same way:
x / 255, minus CLIP's mean, divided by CLIP's std, per channel (CLIP_MEAN / CLIP_STD below;
float32 arithmetic in that order).
"""
import argparse
import json
import os
import sys
import time
import warnings

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "golden"))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import models_golden  # noqa: E402  (sets 1 thread and deterministic algorithms: undone below)
from convert_checkpoint import write_safetensors  # noqa: E402

torch.use_deterministic_algorithms(False)

BATCH = 32
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

VISION = {"image_size": 224, "patch_size": 32, "width": 768, "layers": 12, "head_width": 64,
          "mlp_ratio": 4.0, "global_average_pool": False}
TEXT = {"context_length": 8, "vocab_size": 64, "width": 64, "heads": 2, "layers": 1}
EMBED_DIM = 512


def golden_config():
    cfg = models_golden.clip_config(embed_dim=EMBED_DIM)
    cfg["vision_cfg"].update(VISION)
    cfg["text_cfg"].update(TEXT)
    return cfg


def our_config():
    return {"embed_dim": EMBED_DIM, "quick_gelu": False, "vision_cfg": VISION, "text_cfg": TEXT}


class ImageTower(nn.Module):
    """CLIP.encode_image: the ViT, its projection, l2 normalisation."""

    def __init__(self, clip):
        super().__init__()
        self.visual = clip.visual

    def forward(self, images):
        pooled, _ = self.visual(images)
        return F.normalize(pooled, dim=-1)


def build_model(seed):
    model = models_golden.make_model(golden_config(), seed)
    model.eval()
    return model


def preprocess(u8):
    """uint8 [B, 3, S, S] -> the model's float input, as every side does it."""
    x = torch.from_numpy(u8).float() / 255.0
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


def read_images(path):
    S = VISION["image_size"]
    return np.fromfile(path, dtype=np.uint8).reshape(-1, 3, S, S)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench_embed_cache"))
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--force", action="store_true", help="rewrite even when meta.json exists")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if os.path.exists(os.path.join(args.out, "meta.json")) and not args.force:
        print(f"make_vit_b32: {args.out} is complete (meta.json exists); --force rewrites it")
        return
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    t0 = time.time()
    model = build_model(args.seed)
    state = [(k, v.detach().float().contiguous()) for k, v in model.state_dict().items()]
    write_safetensors(os.path.join(args.out, "vit-b32.safetensors"), state,
                      {"format": "pt", "source": "bench/make_vit_b32.py seed %d" % args.seed})
    with open(os.path.join(args.out, "vit-b32.json"), "w") as f:
        json.dump(our_config(), f, indent=2)
        f.write("\n")

    S = VISION["image_size"]
    rng = np.random.default_rng(args.seed)
    images = rng.integers(0, 256, size=(BATCH, 3, S, S), dtype=np.uint8)
    images.tofile(os.path.join(args.out, "images.u8"))

    tower = ImageTower(model).eval()
    with torch.no_grad():
        ref = tower(preprocess(images)).contiguous()
    ref.numpy().astype("<f4").tofile(os.path.join(args.out, "reference.f32"))

    onnx_path = os.path.join(args.out, "vit-b32-image.onnx")
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer's notes on math.sqrt(head width) and shape inference: constants here.
        warnings.simplefilter("ignore")
        torch.onnx.export(tower, (preprocess(images[:1]),), onnx_path + ".tmp", opset_version=17,
                          input_names=["images"], output_names=["embeds"],
                          dynamic_axes={"images": {0: "batch"}, "embeds": {0: "batch"}},
                          do_constant_folding=True)
    os.replace(onnx_path + ".tmp", onnx_path)

    vision_params = sum(v.numel() for k, v in state if k.startswith("visual."))
    all_params = sum(v.numel() for _, v in state)
    meta = {"seed": args.seed, "batch": BATCH, "image_size": S, "embed_dim": EMBED_DIM,
            "clip_mean": CLIP_MEAN, "clip_std": CLIP_STD,
            "vision_parameters": vision_params, "all_parameters": all_params,
            "vision_weight_bytes": 4 * vision_params,
            "safetensors_bytes": os.path.getsize(os.path.join(args.out, "vit-b32.safetensors")),
            "onnx_bytes": os.path.getsize(onnx_path), "torch": torch.__version__}
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(f"make_vit_b32: wrote {args.out} in {time.time() - t0:.0f} s: {vision_params:,} image-tower parameters "
          f"({all_params:,} with the tiny text tower), safetensors {meta['safetensors_bytes'] / 2**20:.1f} MiB, "
          f"onnx {meta['onnx_bytes'] / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
