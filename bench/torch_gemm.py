#!/usr/bin/python3
"""Times torch.matmul, for the reference column of bench_gemm.

Shapes are M x K x N: C[M,N] = A[M,K] @ B[K,N] (row-major fp32, written into a preallocated
C with out=, like sparo's sgemm with accumulate=false). Each number is the median over
--reps repetitions after a warm-up; a repetition repeats the call until it lasts
--min-time seconds.

Two modes:
  torch_gemm.py --shapes 256x256x256,8320x192x576 --threads 1,2 [--reps 9] [--min-time 0.05]
      prints one JSON object: {"torch": .., "blas": .., "results": [{"m", "k", "n",
      "threads", "median_s", "gflops"}, ...]}
  torch_gemm.py --serve
      prints a JSON hello line {"torch": .., "blas": ..}, then answers each stdin line with
      one JSON line:
        "setup M K N THREADS" -> allocates the operands, warms up: {"one": s per call}
        "rep CALLS"           -> one repetition of CALLS calls: {"s": s per call}
      bench_gemm alternates its own repetitions with these, so that a busy spell on the
      shared machine hits both columns alike.
When torch cannot be imported, both modes print {"error": "..."} and exit with status 0.

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
        # Prefer the implementation (libopenblas*) over the libblas.so.3 / liblapack shims.
        impl = sorted(l for l in libs if "/libopenblas" in l or "/libmkl" in l)
        return ", ".join(impl or sorted(libs)) or "unknown"
    except OSError:
        return "unknown"


def measure(torch, m, k, n, threads, reps, min_time):
    torch.set_num_threads(threads)
    with torch.no_grad():
        a = torch.randn(m, k, dtype=torch.float32)
        b = torch.randn(k, n, dtype=torch.float32)
        c = torch.empty(m, n, dtype=torch.float32)
        # Warm-up, and the number of calls per repetition.
        t0 = time.perf_counter()
        torch.matmul(a, b, out=c)
        torch.matmul(a, b, out=c)
        one = max((time.perf_counter() - t0) / 2, 1e-9)
        calls = max(1, int(min_time / one))
        samples = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(calls):
                torch.matmul(a, b, out=c)
            samples.append((time.perf_counter() - t0) / calls)
    med = statistics.median(samples)
    return {"m": m, "k": k, "n": n, "threads": threads, "median_s": med,
            "gflops": 2.0 * m * n * k / med / 1e9}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--min-time", type=float, default=0.05)
    ap.add_argument("--serve", action="store_true")
    args = ap.parse_args()

    try:
        import torch
    except Exception as e:  # missing module or a broken install
        print(json.dumps({"error": f"cannot import torch: {e}"}), flush=True)
        return 0
    torch.manual_seed(0)
    about = {"torch": torch.__version__, "blas": blas_library()}

    if args.serve:
        print(json.dumps(about), flush=True)
        a = b = c = None
        with torch.no_grad():
            for line in sys.stdin:
                f = line.split()
                if len(f) == 5 and f[0] == "setup":
                    m, k, n, t = (int(x) for x in f[1:])
                    torch.set_num_threads(t)
                    a = torch.randn(m, k, dtype=torch.float32)
                    b = torch.randn(k, n, dtype=torch.float32)
                    c = torch.empty(m, n, dtype=torch.float32)
                    t0 = time.perf_counter()
                    torch.matmul(a, b, out=c)
                    torch.matmul(a, b, out=c)
                    reply = {"one": (time.perf_counter() - t0) / 2}
                elif len(f) == 2 and f[0] == "rep" and a is not None:
                    calls = max(1, int(f[1]))
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        torch.matmul(a, b, out=c)
                    reply = {"s": (time.perf_counter() - t0) / calls}
                else:
                    reply = {"error": "bad request: " + line.strip()}
                print(json.dumps(reply), flush=True)
        return 0

    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",") if s]
    threads = [int(t) for t in args.threads.split(",") if t]
    results = [measure(torch, m, k, n, t, args.reps, args.min_time)
               for t in threads for (m, k, n) in shapes]
    print(json.dumps({**about, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
