#!/usr/bin/python3
"""How much can the tiny CLIP's image tower learn about items in the CLIP run's budget?

A calibration for docs/RESULTS.md, not part of the engine: the same vision transformer as
models/configs/tiny-clip.json's image tower (32 px, patch 4, width 192, 6 blocks, 3 heads,
pre-norm, GELU, class token) trained *with the item labels* (cross-entropy) on single-item
scenes, with the CLIP run's optimiser and schedule (AdamW lr 5e-4, betas 0.9/0.98, weight decay
0.2, linear warm-up then cosine, batch 128). Its test accuracy after N steps bounds from above
what a contrastive run of N steps can give in zero-shot item classification, where the labels
come only through captions.

The scenes are approximated in NumPy, not drawn by SceneGenerator: a Fashion-MNIST item shrunk
to 14 px by 2×2 averaging (the 64-px canvas's 28-px item after the resize to 32), tinted with
the scene palette, at a random cell of the 32-px canvas with 0–2 px of jitter, normalised with
one mean and std. Test: 1000 such scenes from the Fashion-MNIST test images.

usage: /usr/bin/python3 tools/supervised_ceiling.py [--steps 300] [--warmup 100] [--threads 1]
"""
import argparse
import gzip
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FASHION = os.environ.get("SPARO_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
PALETTE = np.array([[230, 30, 30], [40, 200, 40], [40, 80, 255], [240, 220, 30], [160, 50, 220], [255, 140, 20],
                    [30, 220, 220], [255, 255, 255]], np.float32) / 255  # training/data/scenes.cpp


def load(split):
    def read(kind, offset):
        name = next(f for f in os.listdir(FASHION) if f.startswith(split) and kind in f)
        opener = gzip.open if name.endswith(".gz") else open
        with opener(os.path.join(FASHION, name), "rb") as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)
    images = read("images", 16).reshape(-1, 28, 28)
    # 28 -> 14 px by 2x2 averaging
    return images.reshape(-1, 14, 2, 14, 2).mean((2, 4)) / 255.0, read("labels", 8).astype(np.int64)


def scenes(items, labels, n, rng):
    pick = rng.integers(0, len(items), n)
    out = np.zeros((n, 3, 32, 32), np.float32)
    cell, colour = rng.integers(0, 4, n), rng.integers(0, len(PALETTE), n)
    jx, jy = rng.integers(0, 3, n), rng.integers(0, 3, n)
    for k in range(n):
        x, y = (cell[k] % 2) * 16 + jx[k], (cell[k] // 2) * 16 + jy[k]
        out[k, :, y:y + 14, x:x + 14] = PALETTE[colour[k]][:, None, None] * items[pick[k]][None]
    return torch.tensor((out - 0.45) / 0.27), torch.tensor(labels[pick])


class VisionTransformer(nn.Module):
    def __init__(self, width=192, layers=6, heads=3, patch=4, image=32, classes=10):
        super().__init__()
        tokens = (image // patch) ** 2 + 1
        self.patch = nn.Conv2d(3, width, patch, patch, bias=False)
        self.cls = nn.Parameter(torch.randn(1, 1, width) * width ** -0.5)
        self.pos = nn.Parameter(torch.randn(1, tokens, width) * width ** -0.5)
        self.ln_pre, self.ln_post = nn.LayerNorm(width), nn.LayerNorm(width)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, 0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], 1) + self.pos
        return self.head(self.ln_post(self.blocks(self.ln_pre(t))[:, 0]))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    train_items, train_labels = load("train")
    test_x, test_y = scenes(*load("t10k"), 1000, rng)
    model = VisionTransformer()
    opt = torch.optim.AdamW(model.parameters(), a.lr, betas=(0.9, 0.98), weight_decay=0.2)
    start = time.time()
    for step in range(a.steps):
        warm = min(1.0, (step + 1) / max(1, a.warmup))
        cosine = 0.5 * (1 + np.cos(np.pi * max(0, step - a.warmup) / max(1, a.steps - a.warmup)))
        for g in opt.param_groups:
            g["lr"] = a.lr * (warm if step < a.warmup else cosine)
        x, y = scenes(train_items, train_labels, a.batch, rng)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % 50 == 0 or step + 1 == a.steps:
            with torch.no_grad():
                acc = (model(test_x).argmax(1) == test_y).float().mean().item()
            print(f"step {step + 1}  loss {loss.item():.3f}  test item top-1 {acc:.3f}  {time.time() - start:.0f} s",
                  flush=True)


if __name__ == "__main__":
    main()
