// bench_gemm: sparo's CPU sgemm against the machine's fp32 FMA peak and PyTorch.
//
//   bench_gemm [--quick] [--threads 1,2] [--reps N] [--json out.json] [--no-torch]
//
// Shapes are M×K×N: C[M,N] = A[M,K]·B[K,N], row-major fp32, no transposes, C overwritten
// (accumulate=false). GFLOP/s = 2·M·N·K / median seconds per call; every number is the
// median of the repetitions after a warm-up, one repetition being as many calls as fill
// ~50 ms. The PyTorch column comes from bench/torch_gemm.py, started in the same run as a
// subprocess with Debian's OpenBLAS (see kTorchEnv); the peak column divides by the FMA peak
// measured at the start for that thread count.
#include "engine/cpu/gemm.h"

#include <immintrin.h>
#include <oneapi/tbb/global_control.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#ifndef SPARO_SOURCE_DIR
#define SPARO_SOURCE_DIR "."
#endif

namespace {

using Clock = std::chrono::steady_clock;

const char* const kPython = "/usr/bin/python3";
const char* const kTorchEnv =
    "LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp OPENBLAS_CORETYPE=Cooperlake";

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---- fp32 FMA peak ------------------------------------------------------------------------
// 12 independent accumulators (3x the FMA latency of Zen 4 / Intel at one zmm FMA per
// cycle and port). The empty asm keeps them in registers and stops the compiler from
// folding the loop; it clobbers no memory, so nothing is spilled.
__attribute__((target("avx512f,fma"))) double fma_loop_avx512(int64_t iters) {
  __m512 a0 = _mm512_set1_ps(1.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
         a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
  const __m512 x = _mm512_set1_ps(0.9999999f), y = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
    a0 = _mm512_fmadd_ps(a0, x, y);
    a1 = _mm512_fmadd_ps(a1, x, y);
    a2 = _mm512_fmadd_ps(a2, x, y);
    a3 = _mm512_fmadd_ps(a3, x, y);
    a4 = _mm512_fmadd_ps(a4, x, y);
    a5 = _mm512_fmadd_ps(a5, x, y);
    a6 = _mm512_fmadd_ps(a6, x, y);
    a7 = _mm512_fmadd_ps(a7, x, y);
    a8 = _mm512_fmadd_ps(a8, x, y);
    a9 = _mm512_fmadd_ps(a9, x, y);
    a10 = _mm512_fmadd_ps(a10, x, y);
    a11 = _mm512_fmadd_ps(a11, x, y);
    asm volatile(""
                 : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6),
                   "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
  }
  const __m512 s = _mm512_add_ps(
      _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                    _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7))),
      _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
  float out[16];
  _mm512_storeu_ps(out, s);
  return double(out[0]);
}
constexpr double kFlopsPerIterAvx512 = 12.0 * 16 * 2;

__attribute__((target("avx2,fma"))) double fma_loop_avx2(int64_t iters) {
  __m256 a0 = _mm256_set1_ps(1.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
         a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
  const __m256 x = _mm256_set1_ps(0.9999999f), y = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
    a0 = _mm256_fmadd_ps(a0, x, y);
    a1 = _mm256_fmadd_ps(a1, x, y);
    a2 = _mm256_fmadd_ps(a2, x, y);
    a3 = _mm256_fmadd_ps(a3, x, y);
    a4 = _mm256_fmadd_ps(a4, x, y);
    a5 = _mm256_fmadd_ps(a5, x, y);
    a6 = _mm256_fmadd_ps(a6, x, y);
    a7 = _mm256_fmadd_ps(a7, x, y);
    a8 = _mm256_fmadd_ps(a8, x, y);
    a9 = _mm256_fmadd_ps(a9, x, y);
    a10 = _mm256_fmadd_ps(a10, x, y);
    a11 = _mm256_fmadd_ps(a11, x, y);
    asm volatile(""
                 : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6),
                   "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
  }
  const __m256 s = _mm256_add_ps(
      _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                    _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7))),
      _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
  float out[8];
  _mm256_storeu_ps(out, s);
  return double(out[0]);
}
constexpr double kFlopsPerIterAvx2 = 12.0 * 8 * 2;

struct PeakKind {
  const char* name;
  double (*loop)(int64_t);
  double flops_per_iter;
};

PeakKind peak_kind() {
  if (__builtin_cpu_supports("avx512f")) return {"zmm FMA", &fma_loop_avx512, kFlopsPerIterAvx512};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return {"ymm FMA", &fma_loop_avx2, kFlopsPerIterAvx2};
  return {"none", nullptr, 0.0};
}

// GFLOP/s of `threads` threads each running the FMA loop; best of `trials` (a peak is the
// best the machine does, and other load only ever lowers it).
double measure_peak(const PeakKind& kind, int threads, int trials) {
  if (!kind.loop) return 0.0;
  const int64_t iters = 40'000'000;  // ~0.1 s at 3.5 GHz
  double best = 0.0;
  for (int trial = 0; trial < trials; ++trial) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> pool;
    std::vector<double> sink(size_t(threads), 0.0);
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        ready.fetch_add(1);
        while (!go.load()) std::this_thread::yield();
        sink[size_t(t)] = kind.loop(iters);
      });
    while (ready.load() < threads) std::this_thread::yield();
    const auto t0 = Clock::now();
    go.store(true);
    for (auto& th : pool) th.join();
    const double s = seconds_since(t0);
    best = std::max(best, double(threads) * double(iters) * kind.flops_per_iter / s / 1e9);
    if (sink[0] == 12345.0) std::puts("");  // keep the results alive
  }
  return best;
}

// ---- our sgemm ----------------------------------------------------------------------------
struct Shape {
  int64_t m, k, n;
  std::string str() const {
    return std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n);
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

// Median seconds per call of sgemm on `shape` with at most `threads` threads.
double time_sgemm(const Shape& s, int threads, int reps, double min_time) {
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, size_t(threads));
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> A(size_t(s.m * s.k)), B(size_t(s.k * s.n)), C(size_t(s.m * s.n), 0.0f);
  for (auto& x : A) x = dist(rng);
  for (auto& x : B) x = dist(rng);
  auto call = [&] {
    sparo::cpu::sgemm(false, false, s.m, s.n, s.k, A.data(), s.k, B.data(), s.n, C.data(), s.n,
                      false);
  };
  auto t0 = Clock::now();
  call();
  call();
  const double one = std::max(seconds_since(t0) / 2, 1e-9);
  const int calls = std::max(1, int(min_time / one));
  std::vector<double> samples;
  for (int r = 0; r < reps; ++r) {
    t0 = Clock::now();
    for (int c = 0; c < calls; ++c) call();
    samples.push_back(seconds_since(t0) / calls);
  }
  return median(samples);
}

// ---- PyTorch via subprocess ---------------------------------------------------------------
struct TorchRun {
  bool ok = false;
  std::string note;  // version and BLAS, or why there are no numbers
  std::map<std::tuple<int64_t, int64_t, int64_t, int>, double> gflops;
};

bool executable(const char* path) { return std::ifstream(path).good(); }

TorchRun run_torch(const std::vector<Shape>& shapes, const std::vector<int>& threads, int reps,
                   double min_time) {
  TorchRun out;
  const std::string script = std::string(SPARO_SOURCE_DIR) + "/bench/torch_gemm.py";
  if (!executable(kPython)) {
    out.note = std::string(kPython) + " not found";
    return out;
  }
  if (!std::ifstream(script).good()) {
    out.note = script + " not found";
    return out;
  }
  std::string shape_arg, thread_arg;
  for (const auto& s : shapes) shape_arg += (shape_arg.empty() ? "" : ",") + s.str();
  for (int t : threads) thread_arg += (thread_arg.empty() ? "" : ",") + std::to_string(t);
  const std::string cmd = std::string("env ") + kTorchEnv + " " + kPython + " '" + script +
                          "' --shapes " + shape_arg + " --threads " + thread_arg + " --reps " +
                          std::to_string(reps) + " --min-time " + std::to_string(min_time);
  std::FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) {
    out.note = "could not start " + std::string(kPython);
    return out;
  }
  std::string text;
  char buf[4096];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, pipe)) > 0) text.append(buf, got);
  const int status = pclose(pipe);
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    out.note = "torch_gemm.py failed (status " + std::to_string(status) + ")";
    return out;
  }
  if (j.contains("error")) {
    out.note = j["error"].get<std::string>();
    return out;
  }
  out.ok = true;
  out.note = "torch " + j.value("torch", std::string("?")) + ", BLAS " +
             j.value("blas", std::string("?"));
  for (const auto& r : j["results"])
    out.gflops[{r["m"].get<int64_t>(), r["k"].get<int64_t>(), r["n"].get<int64_t>(),
                r["threads"].get<int>()}] = r["gflops"].get<double>();
  return out;
}

// ---- misc ---------------------------------------------------------------------------------
std::string cpu_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  return "unknown CPU";
}

std::vector<int> parse_threads(const std::string& s) {
  std::vector<int> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t comma = s.find(',', pos);
    if (comma == std::string::npos) comma = s.size();
    const int t = std::atoi(s.substr(pos, comma - pos).c_str());
    if (t > 0) out.push_back(t);
    pos = comma + 1;
  }
  return out;
}

void usage() {
  std::puts(
      "usage: bench_gemm [--quick] [--threads 1,2] [--reps N] [--json FILE] [--no-torch]\n"
      "  --quick     fewer shapes and repetitions\n"
      "  --threads   thread counts to measure (default 1,2)\n"
      "  --reps      repetitions per measurement, median reported (default 9, quick 7)\n"
      "  --json      also write the results as JSON to FILE\n"
      "  --no-torch  skip the PyTorch reference");
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, torch = true;
  std::vector<int> threads = {1, 2};
  int reps = 0;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a == "--no-torch") {
      torch = false;
    } else if (a == "--threads" && i + 1 < argc) {
      threads = parse_threads(argv[++i]);
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      usage();
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  if (threads.empty()) {
    usage();
    return 2;
  }
  if (reps == 0) reps = quick ? 7 : 9;
  const double min_time = quick ? 0.02 : 0.05;

  std::vector<Shape> shapes;
  if (quick)
    shapes = {{256, 256, 256}, {1024, 1024, 1024}, {8320, 192, 576}};
  else
    shapes = {{256, 256, 256},   {512, 512, 512},   {1024, 1024, 1024}, {2048, 2048, 2048},
              {8320, 192, 576},  {8320, 768, 192},  {8320, 192, 768}};

  // 1. Peak.
  const PeakKind kind = peak_kind();
  std::map<int, double> peak;
  for (int t : threads) peak[t] = measure_peak(kind, t, quick ? 3 : 5);

  // 2. Ours (before the subprocess, so the two never overlap).
  std::map<std::pair<size_t, int>, double> ours;
  for (int t : threads)
    for (size_t i = 0; i < shapes.size(); ++i) {
      const Shape& s = shapes[i];
      ours[{i, t}] = 2.0 * double(s.m * s.n * s.k) / time_sgemm(s, t, reps, min_time) / 1e9;
    }

  // 3. PyTorch.
  TorchRun tr;
  if (torch)
    tr = run_torch(shapes, threads, reps, min_time);
  else
    tr.note = "skipped (--no-torch)";

  // 4. Table.
  std::printf("CPU: %s (%u logical CPUs) | sparo sgemm kernel: %s | peak: %s loop\n",
              cpu_name().c_str(), std::thread::hardware_concurrency(),
              sparo::cpu::sgemm_kernel_name(), kind.name);
  std::printf("PyTorch: %s %s via %s | %s\n", kTorchEnv, kPython, "bench/torch_gemm.py",
              tr.note.c_str());
  std::printf("shape M×K×N: C[M,N] = A[M,K]·B[K,N], fp32 row-major, no transposes, C overwritten;"
              " GFLOP/s = 2MNK / median of %d reps\n",
              reps);
  for (int t : threads) std::printf("measured fp32 peak, %d thread%s: %.1f GFLOP/s\n", t,
                                    t == 1 ? "" : "s", peak[t]);
  std::printf("\n%-16s %7s %12s %14s %12s %10s\n", "shape (MxKxN)", "threads", "ours GF/s",
              "PyTorch GF/s", "ours/torch", "% of peak");
  nlohmann::json rows = nlohmann::json::array();
  for (int t : threads)
    for (size_t i = 0; i < shapes.size(); ++i) {
      const Shape& s = shapes[i];
      const double g = ours[{i, t}];
      const auto it = tr.gflops.find({s.m, s.k, s.n, t});
      const bool have = it != tr.gflops.end();
      char torch_col[32] = "n/a", ratio_col[32] = "n/a", peak_col[32] = "n/a";
      if (have) {
        std::snprintf(torch_col, sizeof torch_col, "%.1f", it->second);
        std::snprintf(ratio_col, sizeof ratio_col, "%.2f", g / it->second);
      }
      if (peak[t] > 0) std::snprintf(peak_col, sizeof peak_col, "%.1f %%", 100.0 * g / peak[t]);
      std::printf("%-16s %7d %12.1f %14s %12s %10s\n", s.str().c_str(), t, g, torch_col,
                  ratio_col, peak_col);
      nlohmann::json row = {{"m", s.m}, {"k", s.k}, {"n", s.n}, {"threads", t},
                            {"ours_gflops", g}, {"peak_gflops", peak[t]}};
      row["torch_gflops"] = have ? nlohmann::json(it->second) : nlohmann::json(nullptr);
      rows.push_back(row);
    }
  if (!tr.ok) std::printf("(no PyTorch numbers: %s)\n", tr.note.c_str());

  if (!json_path.empty()) {
    nlohmann::json j = {{"cpu", cpu_name()},
                        {"kernel", sparo::cpu::sgemm_kernel_name()},
                        {"torch", tr.note},
                        {"torch_env", kTorchEnv},
                        {"reps", reps},
                        {"results", rows}};
    std::ofstream(json_path) << j.dump(2) << "\n";
  }
  return 0;
}
