#!/usr/bin/env python3
"""PyTorch's GEMM on the CUDA GPU, the column bench_vulkan_gemm compares against.

    torch_gpu_gemm.py --sizes 1024,2048,4096 [--reps 10] [--windows 5]

For each size S: C = A·B with A, B of S×S, fp32 with TF32 off (true fp32 arithmetic, as
sparo's fp32 kernel does) and fp16 (tensor cores). One JSON object per line on stdout:
{"size": S, "fp32_ms": …, "fp16_ms": …}, each the median over `windows` of the mean time
of `reps` back-to-back products, measured with CUDA events. Without a CUDA GPU, one line
{"error": "…"}.
"""
import argparse
import json
import statistics
import sys


def median_ms(fn, reps, windows):
    import torch
    fn()  # warm-up: kernel choice, allocations
    torch.cuda.synchronize()
    times = []
    for _ in range(windows):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / reps)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1024,2048,4096")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--windows", type=int, default=5)
    args = parser.parse_args()
    try:
        import torch
    except ImportError as e:
        print(json.dumps({"error": f"no torch: {e}"}))
        return 0
    if not torch.cuda.is_available():
        print(json.dumps({"error": "torch sees no CUDA GPU"}))
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    for size in (int(s) for s in args.sizes.split(",")):
        gen = torch.Generator(device="cuda").manual_seed(0)
        a = torch.randn(size, size, device="cuda", generator=gen)
        b = torch.randn(size, size, device="cuda", generator=gen)
        fp32 = median_ms(lambda: torch.matmul(a, b), args.reps, args.windows)
        a16, b16 = a.half(), b.half()
        fp16 = median_ms(lambda: torch.matmul(a16, b16), args.reps, args.windows)
        print(json.dumps({"size": size, "fp32_ms": fp32, "fp16_ms": fp16,
                          "device": torch.cuda.get_device_name()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
