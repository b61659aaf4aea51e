#!/usr/bin/env python3
"""Tests tools/convert_checkpoint.py: a PyTorch checkpoint in, a safetensors file that
sparo's strict reader accepts out, with names, shapes, dtypes and values preserved.
Run by ctest; exits 77 (ctest: skipped) when torch is missing."""
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

try:
    import torch
except ImportError:
    print("SKIP: python3-torch is not installed (scripts/setup.sh installs it)")
    sys.exit(77)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tools", "convert_checkpoint.py")
SPARO = os.environ.get("SPARO_BIN")  # the sparo executable, to check that our C++ reader accepts the file


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        out[name] = (e["dtype"], e["shape"], data[b:end])
    return out, meta


class ConvertCheckpoint(unittest.TestCase):
    def run_script(self, *args):
        return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)

    def test_openclip_style_checkpoint(self):
        torch.manual_seed(0)
        base = torch.randn(4, 6)
        state = {
            "module.visual.proj": torch.randn(3, 5),
            "module.token_embedding.weight": torch.randn(10, 4).half(),
            "module.visual.sparo.k.weight": base,
            "module.visual.sparo.v.weight": base,          # shared storage (share_kv alias)
            "module.transposed": torch.randn(5, 3).t(),    # non-contiguous
            "module.positions": torch.arange(7),           # int64
            "module.logit_scale": torch.tensor(2.5),       # scalar
        }
        with tempfile.TemporaryDirectory() as d:
            src, dst = os.path.join(d, "epoch_1.pt"), os.path.join(d, "out.safetensors")
            torch.save({"epoch": 1, "state_dict": state, "optimizer": {"lr": 0.1}}, src)
            r = self.run_script(src, dst)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("7 tensors", r.stdout)
            tensors, meta = read_safetensors(dst)
            self.assertEqual(meta["format"], "pt")
            self.assertEqual(sorted(tensors), sorted(k[len("module."):] for k in state))
            dtype, shape, raw = tensors["token_embedding.weight"]
            self.assertEqual((dtype, shape), ("F32", [10, 4]))
            got = torch.frombuffer(bytearray(raw), dtype=torch.float32).view(10, 4)
            self.assertTrue(torch.equal(got, state["module.token_embedding.weight"].float()))
            dtype, shape, raw = tensors["transposed"]
            got = torch.frombuffer(bytearray(raw), dtype=torch.float32).view(3, 5)
            self.assertTrue(torch.equal(got, state["module.transposed"]))
            self.assertEqual(tensors["positions"][0], "I64")
            self.assertEqual(tensors["logit_scale"][1], [])
            self.assertEqual(tensors["visual.sparo.v.weight"][2], tensors["visual.sparo.k.weight"][2])
            if SPARO:
                check = subprocess.run([SPARO, "inspect", dst], capture_output=True, text=True)
                self.assertEqual(check.returncode, 0, check.stderr)
                self.assertIn("visual.sparo.k.weight", check.stdout)

    def test_dino_checkpoint_with_key(self):
        with tempfile.TemporaryDirectory() as d:
            src, dst = os.path.join(d, "dino.pth"), os.path.join(d, "out.safetensors")
            torch.save({"student": {"module.cls_token": torch.zeros(1, 1, 4)},
                        "teacher": {"cls_token": torch.ones(1, 1, 4), "head.last_layer.weight_g": torch.ones(3, 1)}}, src)
            r = self.run_script(src, dst, "--key", "teacher")
            self.assertEqual(r.returncode, 0, r.stderr)
            tensors, _ = read_safetensors(dst)
            self.assertEqual(sorted(tensors), ["cls_token", "head.last_layer.weight_g"])
            r = self.run_script(src, dst, "--key", "nope")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("no entry 'nope'", r.stderr)

    def test_errors(self):
        with tempfile.TemporaryDirectory() as d:
            r = self.run_script(os.path.join(d, "missing.pt"), os.path.join(d, "o.safetensors"))
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("no such file", r.stderr)
            src = os.path.join(d, "empty.pt")
            torch.save({"epoch": 3}, src)
            r = self.run_script(src, os.path.join(d, "o.safetensors"))
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("holds no tensors", r.stderr)
            src = os.path.join(d, "clash.pt")
            torch.save({"module.a": torch.zeros(1), "a": torch.zeros(1)}, src)
            r = self.run_script(src, os.path.join(d, "o.safetensors"))
            self.assertIn("two entries become 'a'", r.stderr)


if __name__ == "__main__":
    unittest.main()
