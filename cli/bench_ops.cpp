// `sparo bench ops`: time each op family on a device (timestamp queries on Vulkan, wall
// time on the CPU) and print GFLOP/s or GB/s. On lavapipe the figures say nothing about a
// GPU; run it where a real one is.
#include <algorithm>
#include <functional>
#include <iomanip>
#include <iostream>

#include "cli/commands.h"
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"

namespace sparo::cli {

namespace {

struct BenchOptions {
  std::string device = "cpu";
  int64_t size = 1024;
  int reps = 10, windows = 5;
};

void run(const BenchOptions& o) {
  const Device device = Device::parse(o.device);
  Backend& backend = backend_for(device);
  if (o.size <= 0 || o.reps <= 0 || o.reps > 200 || o.windows <= 0)
    throw Error("bench ops: --size and --windows must be positive, --reps in [1, 200]");
  NoGradGuard no_grad;
  Generator gen(0);
  const int64_t S = o.size;
  const Tensor a = Tensor::randn({S, S}, gen).to(device), b = Tensor::randn({S, S}, gen).to(device);
  const Tensor w = Tensor::ones({S}).to(device), bias = Tensor::zeros({S}).to(device);
  struct Op {
    std::string name;
    std::function<Tensor()> fn;
    double work;  // flops or bytes per call
    bool flops;
  };
  const double bytes = 4.0 * static_cast<double>(S * S);
  const std::vector<Op> ops = {
      {"matmul " + std::to_string(S) + "^3", [&] { return matmul(a, b); }, 2.0 * S * S * S, true},
      {"matmul_nt", [&] { return matmul(a, b, false, true); }, 2.0 * S * S * S, true},
      {"add", [&] { return add(a, b); }, 3 * bytes, false},
      {"gelu", [&] { return gelu(a); }, 2 * bytes, false},
      {"softmax (rows)", [&] { return softmax(a); }, 2 * bytes, false},
      {"layer_norm (rows)", [&] { return layer_norm(a, w, bias); }, 2 * bytes, false},
      {"sum (axis 0)", [&] { return sum(a, 0); }, bytes, false},
      {"transpose", [&] { return transpose(a, 0, 1); }, 2 * bytes, false},
  };
  std::cout << "device " << device.str() << " (" << backend.name() << "), size " << S << ", " << o.reps
            << " calls per timed window, median of " << o.windows << " windows\n";
  std::cout << std::left << std::setw(22) << "op" << std::right << std::setw(14) << "ms / call" << std::setw(16)
            << "throughput" << "\n";
  for (const Op& op : ops) {
    op.fn();  // warm-up: pipelines, caches
    backend.synchronize();
    std::vector<double> ms;
    for (int wdw = 0; wdw < o.windows; ++wdw) {
      backend.begin_timing();
      for (int r = 0; r < o.reps; ++r) op.fn();
      ms.push_back(backend.end_timing_ms() / o.reps);
    }
    std::sort(ms.begin(), ms.end());
    const double t = ms[ms.size() / 2];
    std::cout << std::left << std::setw(22) << op.name << std::right << std::setw(14) << std::fixed
              << std::setprecision(4) << t << std::setw(11) << std::setprecision(1)
              << op.work / (t * 1e-3) / 1e9 << (op.flops ? " GFLOP/s" : " GB/s") << "\n";
  }
  const MemoryStats m = backend.memory_stats();
  std::cout << "memory: " << (m.in_use >> 20) << " MiB in use, " << (m.cached >> 20) << " MiB cached, peak "
            << (m.peak >> 20) << " MiB\n";
}

}  // namespace

void add_bench_commands(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks of this build on this machine");
  bench->require_subcommand(1);
  auto o = std::make_shared<BenchOptions>();
  CLI::App* ops = bench->add_subcommand("ops", "Time each op family on a device (GFLOP/s, GB/s)");
  ops->add_option("--device", o->device, "cpu or vulkan[:N]")->capture_default_str();
  ops->add_option("--size", o->size, "Square size S: [S, S] tensors, S^3 matmul")->capture_default_str();
  ops->add_option("--reps", o->reps, "Calls per timed window (<= 200)")->capture_default_str();
  ops->add_option("--windows", o->windows, "Timed windows (the median is printed)")->capture_default_str();
  ops->callback([o] { run(*o); });
}

}  // namespace sparo::cli
