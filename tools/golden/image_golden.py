#!/usr/bin/env python3
"""Writes tests/fixtures/image/: a small random RGB image and what PIL (Debian's python3-pil)
makes of it with Image.resize(..., BICUBIC) and OpenCLIP's evaluation preprocessing
(shorter side to 16 with bicubic, centre crop 16x16). tests/training/test_image.cpp checks
that sparo's resize/crop match these pixels (±1 per channel: PIL computes in fixed point).

Regenerate: /usr/bin/python3 tools/golden/image_golden.py
"""
import os

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "image")


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(7)
    # smooth structure plus noise, so resampling has something to get wrong
    y, x = np.mgrid[0:23, 0:37]
    base = np.stack([x * 6, y * 10, (x + y) * 4], axis=-1)
    pixels = np.clip(base + rng.integers(-40, 40, size=(23, 37, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels, "RGB")
    img.save(os.path.join(OUT, "input.png"))
    img.resize((16, 10), Image.BICUBIC).save(os.path.join(OUT, "down_16x10.png"))
    img.resize((80, 50), Image.BICUBIC).save(os.path.join(OUT, "up_80x50.png"))
    # OpenCLIP eval: Resize(16) (shorter side) then CenterCrop(16)
    w, h = img.size
    short = 16
    size = (int(short * w / h), short) if w >= h else (short, int(short * h / w))
    r = img.resize(size, Image.BICUBIC)
    left, top = round((r.size[0] - 16) / 2.0), round((r.size[1] - 16) / 2.0)
    r.crop((left, top, left + 16, top + 16)).save(os.path.join(OUT, "clip_16.png"))


if __name__ == "__main__":
    main()
