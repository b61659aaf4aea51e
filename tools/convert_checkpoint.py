#!/usr/bin/env python3
"""Convert a PyTorch checkpoint (.pt / .pth / .bin) into a safetensors file sparo loads.

Usage:
    /usr/bin/python3 tools/convert_checkpoint.py CHECKPOINT.pt OUT.safetensors [--key state_dict]
                                                  [--strip-prefix module.] [--keep-dtype]

Works for OpenCLIP checkpoints (a state dict, or {"state_dict": ...} as written by its
training script, with DistributedDataParallel's "module." prefixes) and
facebookresearch/dino checkpoints ({"teacher": ..., "student": ...}; pick one with
--key teacher). Floating tensors are written as F32 (sparo computes in f32) unless
--keep-dtype; integer tensors keep their type. Non-tensor entries (epoch counters,
optimiser state, args) are skipped and listed. Needs Debian's python3-torch; the
safetensors writer is a few lines below (no extra package).

Then load the weights with the matching config, e.g.
    sparo embed --config models/configs/ViT-B-32.json --checkpoint OUT.safetensors ...
"""
import argparse
import json
import os
import struct
import sys

import torch

DTYPES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, contiguous CPU tensor). Atomic: temp file, then rename."""
    header, offset, blobs = {}, 0, []
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors:
        data = t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def select_state_dict(obj, key):
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            keys = list(obj.keys()) if isinstance(obj, dict) else type(obj).__name__
            raise SystemExit(f"convert_checkpoint: no entry {key!r} in the checkpoint (top-level keys: {keys})")
        return obj[key]
    if isinstance(obj, dict):
        for candidate in ("state_dict", "model", "teacher"):
            if candidate in obj and isinstance(obj[candidate], dict):
                print(f"convert_checkpoint: using the checkpoint's {candidate!r} entry", file=sys.stderr)
                return obj[candidate]
        return obj
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    raise SystemExit(f"convert_checkpoint: cannot find a state dict in a {type(obj).__name__}")


def convert(src, dst, key=None, strip_prefixes=("module.",), keep_dtype=False):
    obj = torch.load(src, map_location="cpu")
    state = select_state_dict(obj, key)
    tensors, skipped, seen = [], [], set()
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            skipped.append(name)
            continue
        for prefix in strip_prefixes:
            if prefix and name.startswith(prefix):
                name = name[len(prefix):]
        if name in seen:
            raise SystemExit(f"convert_checkpoint: two entries become {name!r} after stripping prefixes")
        seen.add(name)
        t = value.detach().cpu()
        if t.is_floating_point() and not keep_dtype:
            t = t.to(torch.float32)
        if t.dtype not in DTYPES:
            raise SystemExit(f"convert_checkpoint: tensor {name!r} has unsupported dtype {t.dtype}")
        tensors.append((name, t.contiguous()))
    if not tensors:
        raise SystemExit(f"convert_checkpoint: {src} holds no tensors")
    write_safetensors(dst, tensors, {"format": "pt", "source": os.path.basename(src)})
    return tensors, skipped


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--key", help="entry of the checkpoint that holds the state dict (e.g. teacher)")
    ap.add_argument("--strip-prefix", action="append", default=None,
                    help="prefix removed from every name (default: module.); repeatable")
    ap.add_argument("--keep-dtype", action="store_true", help="keep f16/bf16/f64 instead of writing f32")
    args = ap.parse_args()
    if not os.path.isfile(args.checkpoint):
        raise SystemExit(f"convert_checkpoint: {args.checkpoint}: no such file")
    prefixes = tuple(args.strip_prefix) if args.strip_prefix else ("module.",)
    tensors, skipped = convert(args.checkpoint, args.out, args.key, prefixes, args.keep_dtype)
    count = sum(t.numel() for _, t in tensors)
    print(f"wrote {args.out}: {len(tensors)} tensors, {count:,} values")
    if skipped:
        print(f"skipped {len(skipped)} non-tensor entries: {', '.join(skipped[:10])}{' ...' if len(skipped) > 10 else ''}")


if __name__ == "__main__":
    main()
