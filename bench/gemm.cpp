// bench_gemm: sparo's CPU sgemm against the machine's fp32 FMA peak and PyTorch.
//
//   bench_gemm [--quick] [--threads 1,2] [--reps N] [--rounds R] [--json out.json] [--no-torch] [--bf16]
//   (SPARO_BENCH_PYTHON=/path/to/python3 replaces /usr/bin/python3 for the PyTorch column)
//
// Shapes are M×K×N: C[M,N] = A[M,K]·B[K,N], row-major fp32, no transposes, C overwritten
// (accumulate=false). GFLOP/s = 2·M·N·K / median seconds per call; every number is the
// median of the repetitions after a warm-up, one repetition being as many calls as fill
// ~50 ms; the whole set is measured `--rounds` times (3) and each cell shows its best round,
// for ours and PyTorch alike: on this shared 2-core VM other work can halve a 2-thread
// number for seconds at a time. The PyTorch column comes from bench/torch_gemm.py --serve, started in the same run
// as a subprocess with Debian's OpenBLAS (see kTorchEnv) and run on each shape right after
// ours (so slow drifts in the load of this shared machine hit both columns alike). The peak
// column divides by the FMA peak measured at the start for that thread count.
#include "bench/bench_paths.h"
#include "engine/cpu/gemm.h"

#include <immintrin.h>
#include <oneapi/tbb/global_control.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <csignal>
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

extern char** environ;


namespace {

using Clock = std::chrono::steady_clock;

using sparo::bench::python_path;
const char* const kTorchEnv =
    "LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp OPENBLAS_CORETYPE=Cooperlake";

const auto kSwitchPause = std::chrono::milliseconds(200);

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

// sgemm on one shape: operands, warm-up, and one repetition at a time.
class OurGemm {
 public:
  OurGemm(const Shape& s, bool bf16)
      : s_(s), bf16_(bf16), A_(size_t(s.m * s.k)), B_(size_t(s.k * s.n)), C_(size_t(s.m * s.n), 0.0f) {
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (auto& x : A_) x = dist(rng);
    for (auto& x : B_) x = dist(rng);
  }
  // Warm-up (two calls); returns seconds per call.
  double setup() {
    const auto t0 = Clock::now();
    call();
    call();
    return seconds_since(t0) / 2;
  }
  // One repetition of `calls` calls; returns seconds per call.
  double rep(int calls) {
    const auto t0 = Clock::now();
    for (int c = 0; c < calls; ++c) call();
    return seconds_since(t0) / calls;
  }

 private:
  void call() {
    (bf16_ ? sparo::cpu::sgemm_bf16 : sparo::cpu::sgemm)(false, false, s_.m, s_.n, s_.k, A_.data(), s_.k,
                                                         B_.data(), s_.n, C_.data(), s_.n, false, nullptr, nullptr);
  }
  Shape s_;
  bool bf16_;
  std::vector<float> A_, B_, C_;
};

int calls_for(double seconds_per_call, double min_time) {
  return std::max(1, int(min_time / std::max(seconds_per_call, 1e-9)));
}

// ---- PyTorch via subprocess ---------------------------------------------------------------
// bench/torch_gemm.py --serve, started once with kTorchEnv added to our environment; it
// keeps torch's operands for the current shape and runs one repetition per request.
class TorchProcess {
 public:
  // Starts the script; false (with the reason in note()) when there will be no numbers.
  bool start(const std::string& script) {
    const std::string python = python_path();
    if (!std::ifstream(python).good()) return fail(python + " not found");
    if (!std::ifstream(script).good()) return fail(script + " not found");
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0) return fail("pipe() failed");
    if (pipe(from_child) != 0) {
      close(to_child[0]);
      close(to_child[1]);
      return fail("pipe() failed");
    }
    std::vector<std::string> env_strings;
    for (char** e = environ; *e; ++e) {
      const std::string kv = *e;
      if (kv.rfind("LD_LIBRARY_PATH=", 0) == 0 || kv.rfind("OPENBLAS_CORETYPE=", 0) == 0) continue;
      env_strings.push_back(kv);
    }
    {
      std::string extra = kTorchEnv;
      size_t pos = 0;
      while (pos < extra.size()) {
        size_t space = extra.find(' ', pos);
        if (space == std::string::npos) space = extra.size();
        env_strings.push_back(extra.substr(pos, space - pos));
        pos = space + 1;
      }
    }
    std::vector<char*> envp;
    for (auto& kv : env_strings) envp.push_back(kv.data());
    envp.push_back(nullptr);
    std::string arg0 = python, arg1 = script, arg2 = "--serve";
    char* argv[] = {arg0.data(), arg1.data(), arg2.data(), nullptr};

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, to_child[0], 0);
    posix_spawn_file_actions_adddup2(&actions, from_child[1], 1);
    posix_spawn_file_actions_addclose(&actions, to_child[1]);
    posix_spawn_file_actions_addclose(&actions, from_child[0]);
    const int rc = posix_spawn(&pid_, python.c_str(), &actions, nullptr, argv, envp.data());
    posix_spawn_file_actions_destroy(&actions);
    close(to_child[0]);
    close(from_child[1]);
    if (rc != 0) {
      close(to_child[1]);
      close(from_child[0]);
      pid_ = -1;
      return fail("cannot start " + python + ": " + std::strerror(rc));
    }
    in_ = fdopen(to_child[1], "w");
    out_ = fdopen(from_child[0], "r");
    if (!in_ || !out_) return fail("fdopen() failed");

    const nlohmann::json hello = read_json();
    if (!hello.is_object()) return fail("torch_gemm.py did not answer");
    if (hello.contains("error")) return fail(hello["error"].get<std::string>());
    note_ = "torch " + hello.value("torch", std::string("?")) + ", BLAS " +
            hello.value("blas", std::string("?"));
    ok_ = true;
    return true;
  }

  // Allocates and warms up torch's operands for `s`; seconds per call, or negative.
  double setup(const Shape& s, int threads) {
    return ask("setup " + std::to_string(s.m) + " " + std::to_string(s.k) + " " +
                   std::to_string(s.n) + " " + std::to_string(threads),
               "one");
  }
  // One repetition of `calls` calls; seconds per call, or negative.
  double rep(int calls) { return ask("rep " + std::to_string(calls), "s"); }

  bool ok() const { return ok_; }
  const std::string& note() const { return note_; }

  ~TorchProcess() {
    if (in_) std::fclose(in_);  // EOF on its stdin ends the serve loop
    if (out_) std::fclose(out_);
    if (pid_ > 0) {
      int status = 0;
      waitpid(pid_, &status, 0);
    }
  }

 private:
  bool fail(const std::string& why) {
    ok_ = false;
    note_ = why;
    return false;
  }
  double ask(const std::string& request, const char* key) {
    if (!ok_) return -1.0;
    std::fprintf(in_, "%s\n", request.c_str());
    std::fflush(in_);
    const nlohmann::json r = read_json();
    if (!r.is_object() || !r.contains(key) || !r[key].is_number()) {
      fail("torch_gemm.py stopped answering");
      return -1.0;
    }
    return r[key].get<double>();
  }
  nlohmann::json read_json() {
    std::string line;
    char buf[4096];
    while (std::fgets(buf, sizeof buf, out_)) {
      line += buf;
      if (!line.empty() && line.back() == '\n') break;
    }
    return nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  }

  pid_t pid_ = -1;
  std::FILE* in_ = nullptr;
  std::FILE* out_ = nullptr;
  bool ok_ = false;
  std::string note_;
};

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

// 1-minute load average: other work on the machine lowers every number here.
std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string one;
  return (f >> one) ? one : "?";
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
      "usage: bench_gemm [--quick] [--threads 1,2] [--reps N] [--rounds R] [--json FILE]\n"
      "                  [--no-torch] [--bf16]\n"
      "  --quick     fewer shapes and repetitions, one round\n"
      "  --threads   thread counts to measure (default 1,2)\n"
      "  --reps      repetitions per measurement, median taken (default 9, quick 7)\n"
      "  --rounds    measure everything R times, show the best median (default 3, quick 1)\n"
      "  --json      also write the results as JSON to FILE\n"
      "  --no-torch  skip the PyTorch reference\n"
      "  --bf16      ours with bf16 inputs and fp32 sums (sgemm_bf16; PyTorch stays fp32,\n"
      "              % of peak stays of the fp32 peak: 200 % is bf16's ceiling)\n"
      "environment: SPARO_BENCH_PYTHON replaces /usr/bin/python3 for the PyTorch column");
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, torch = true, bf16 = false;
  std::vector<int> threads = {1, 2};
  int reps = 0, rounds = 0;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a == "--bf16") {
      bf16 = true;
    } else if (a == "--no-torch") {
      torch = false;
    } else if (a == "--threads" && i + 1 < argc) {
      threads = parse_threads(argv[++i]);
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::max(1, std::atoi(argv[++i]));
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
  if (rounds == 0) rounds = quick ? 1 : 3;
  const double min_time = quick ? 0.02 : 0.05;

  std::vector<Shape> shapes;
  if (quick)
    shapes = {{256, 256, 256}, {1024, 1024, 1024}, {8320, 192, 576}};
  else
    shapes = {{256, 256, 256},   {512, 512, 512},   {1024, 1024, 1024}, {2048, 2048, 2048},
              {8320, 192, 576},  {8320, 768, 192},  {8320, 192, 768}};

  const std::string load_at_start = load_average();

  // 1. Peak (measured again before every round; the best is kept).
  const PeakKind kind = peak_kind();
  std::map<int, double> peak;
  auto measure_peaks = [&] {
    for (int t : threads) peak[t] = std::max(peak[t], measure_peak(kind, t, quick ? 3 : 5));
  };

  // 2. Ours and PyTorch, shape by shape.
  std::signal(SIGPIPE, SIG_IGN);  // a dead subprocess must not kill the benchmark
  TorchProcess tp;
  std::string torch_note = "skipped (--no-torch)";
  if (torch) {
    tp.start(sparo::bench::source_path("bench/torch_gemm.py"));
    torch_note = tp.note();
  }
  // Per (shape, threads): the median of each round; the table shows the best round.
  std::map<std::pair<size_t, int>, std::vector<double>> ours_rounds, theirs_rounds;
  for (int round = 0; round < rounds; ++round) {
    measure_peaks();
    for (int t : threads) {
      tbb::global_control limit(tbb::global_control::max_allowed_parallelism, size_t(t));
      for (size_t i = 0; i < shapes.size(); ++i) {
        const Shape& s = shapes[i];
        std::fprintf(stderr, "\r%-60s", ("round " + std::to_string(round + 1) + ": " + s.str() +
                                         " on " + std::to_string(t) + " thread(s)...")
                                            .c_str());
        // Ours and PyTorch on the same shape one right after the other, ours first in even
        // rounds and second in odd ones. The pauses let the other side's idle workers
        // (OpenMP there, TBB here), which spin for a few milliseconds after their last
        // job, go to sleep first.
        std::vector<double> my_samples, torch_samples;
        auto run_ours = [&] {
          std::this_thread::sleep_for(kSwitchPause);
          OurGemm mine(s, bf16);
          const int my_calls = calls_for(mine.setup(), min_time);
          for (int r = 0; r < reps; ++r) my_samples.push_back(mine.rep(my_calls));
        };
        auto run_torch = [&] {
          if (!tp.ok()) return;
          std::this_thread::sleep_for(kSwitchPause);
          const int torch_calls = calls_for(tp.setup(s, t), min_time);
          for (int r = 0; r < reps && tp.ok(); ++r) {
            const double x = tp.rep(torch_calls);
            if (x > 0) torch_samples.push_back(x);
          }
        };
        if (round % 2 == 0) {
          run_ours();
          run_torch();
        } else {
          run_torch();
          run_ours();
        }
        const double flop = 2.0 * double(s.m * s.n * s.k);
        ours_rounds[{i, t}].push_back(flop / median(my_samples) / 1e9);
        if (int(torch_samples.size()) == reps)
          theirs_rounds[{i, t}].push_back(flop / median(torch_samples) / 1e9);
      }
    }
  }
  std::map<std::pair<size_t, int>, double> ours, theirs;
  for (const auto& [key, v] : ours_rounds) ours[key] = *std::max_element(v.begin(), v.end());
  for (const auto& [key, v] : theirs_rounds)
    if (int(v.size()) == rounds) theirs[key] = *std::max_element(v.begin(), v.end());
  std::fprintf(stderr, "\r%-60s\r", "");
  if (torch && !tp.ok()) torch_note = tp.note() + (theirs.empty() ? "" : " (stopped part-way)");

  // 3. Table.
  std::printf("CPU: %s (%u logical CPUs) | sparo sgemm kernel: %s | peak: %s loop | load avg"
              " %s at start, %s at end\n",
              cpu_name().c_str(), std::thread::hardware_concurrency(),
              bf16 ? sparo::cpu::sgemm_bf16_kernel_name() : sparo::cpu::sgemm_kernel_name(), kind.name, load_at_start.c_str(),
              load_average().c_str());
  std::printf("PyTorch: %s %s bench/torch_gemm.py | %s\n", kTorchEnv, python_path().c_str(),
              torch_note.c_str());
  std::printf("shape M×K×N: C[M,N] = A[M,K]·B[K,N], fp32 row-major, no transposes, C overwritten;"
              " GFLOP/s = 2MNK / median of %d reps (best of %d round%s, both columns)%s\n",
              reps, rounds, rounds == 1 ? "" : "s",
              bf16 ? "; ours: bf16 inputs, fp32 sums (--bf16), PyTorch: fp32" : "");
  for (int t : threads)
    std::printf("measured fp32 peak (%s, best of the rounds), %d thread%s: %.1f GFLOP/s\n",
                kind.name, t, t == 1 ? "" : "s", peak[t]);
  std::printf("\n%-16s %7s %12s %14s %12s %10s\n", "shape (MxKxN)", "threads", "ours GF/s",
              "PyTorch GF/s", "ours/torch", "% of peak");
  nlohmann::json rows = nlohmann::json::array();
  for (int t : threads)
    for (size_t i = 0; i < shapes.size(); ++i) {
      const Shape& s = shapes[i];
      const double g = ours[{i, t}];
      const auto it = theirs.find({i, t});
      const bool have = it != theirs.end();
      char torch_col[32] = "n/a", ratio_col[32] = "n/a", peak_col[32] = "n/a";
      if (have) {
        std::snprintf(torch_col, sizeof torch_col, "%.1f", it->second);
        std::snprintf(ratio_col, sizeof ratio_col, "%.2f", g / it->second);
      }
      if (peak[t] > 0) std::snprintf(peak_col, sizeof peak_col, "%.1f %%", 100.0 * g / peak[t]);
      std::printf("%-16s %7d %12.1f %14s %12s %10s\n", s.str().c_str(), t, g, torch_col,
                  ratio_col, peak_col);
      nlohmann::json row = {{"m", s.m}, {"k", s.k}, {"n", s.n}, {"threads", t},
                            {"ours_gflops", g}, {"peak_gflops", peak[t]},
                            {"ours_rounds", ours_rounds[{i, t}]},
                            {"torch_rounds", theirs_rounds[{i, t}]}};
      row["torch_gflops"] = have ? nlohmann::json(it->second) : nlohmann::json(nullptr);
      rows.push_back(row);
    }
  if (theirs.empty()) std::printf("(no PyTorch numbers: %s)\n", torch_note.c_str());

  if (!json_path.empty()) {
    nlohmann::json j = {{"cpu", cpu_name()},
                        {"kernel", bf16 ? sparo::cpu::sgemm_bf16_kernel_name() : sparo::cpu::sgemm_kernel_name()},
                        {"ours_precision", bf16 ? "bf16" : "fp32"},
                        {"torch", torch_note},
                        {"torch_env", kTorchEnv},
                        {"reps", reps},
                        {"rounds", rounds},
                        {"results", rows}};
    std::ofstream(json_path) << j.dump(2) << "\n";
  }
  return 0;
}
