#!/usr/bin/python3
"""Times torch.matmul on the shapes given, for the reference column of bench_gemm.

Usage: torch_gemm.py --shapes 256x256x256,8320x192x576 --threads 1,2 --reps 9 [--min-time 0.05]

Shapes are M x K x N: C[M,N] = A[M,K] @ B[K,N] (row-major fp32, written into a preallocated
C with out=, like sparo's sgemm with accumulate=false). Prints one JSON object on stdout:
  {"torch": "1.13.0", "blas": "<library mapped into the process>", "results": [
     {"m": .., "k": .., "n": .., "threads": .., "median_s": .., "gflops": ..}, ...]}
or {"error": "..."} (exit status 0) when torch cannot be imported.

bench_gemm runs it with LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp and
OPENBLAS_CORETYPE=Cooperlake: Debian's OpenBLAS 0.3.21 does not recognise Zen 4 and would
otherwise fall back to its SSE3 kernels.
"""
import argparse
import json
import statistics
import sys
import time


def blas_library():
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
        return ", ".join(sorted(libs)) or "unknown"
    except OSError:
        return "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", required=True)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--min-time", type=float, default=0.05,
                    help="each repetition repeats the call until it lasts this long (s)")
    args = ap.parse_args()

    try:
        import torch
    except Exception as e:  # missing module or a broken install
        print(json.dumps({"error": f"cannot import torch: {e}"}))
        return 0

    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",") if s]
    threads = [int(t) for t in args.threads.split(",") if t]
    torch.manual_seed(0)
    results = []
    with torch.no_grad():
        for t in threads:
            torch.set_num_threads(t)
            for (m, k, n) in shapes:
                a = torch.randn(m, k, dtype=torch.float32)
                b = torch.randn(k, n, dtype=torch.float32)
                c = torch.empty(m, n, dtype=torch.float32)
                # Warm-up, and the number of calls per repetition.
                t0 = time.perf_counter()
                torch.matmul(a, b, out=c)
                torch.matmul(a, b, out=c)
                one = max((time.perf_counter() - t0) / 2, 1e-9)
                calls = max(1, int(args.min_time / one))
                samples = []
                for _ in range(args.reps):
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        torch.matmul(a, b, out=c)
                    samples.append((time.perf_counter() - t0) / calls)
                med = statistics.median(samples)
                results.append({"m": m, "k": k, "n": n, "threads": t, "median_s": med,
                                "gflops": 2.0 * m * n * k / med / 1e9})
    print(json.dumps({"torch": torch.__version__, "blas": blas_library(),
                      "num_threads_used": threads, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
