// bench_vulkan_gemm: sparo's fp32 matmul on a Vulkan device, for each candidate tile shape,
// and on its matrix units (SPARO_VULKAN_COOPMAT=1: fp16 inputs, fp32 accumulation, where the
// device has them), side by side with PyTorch's fp32 (TF32 off) and fp16 GEMM on the same
// GPU (CUDA).
//
//   bench_vulkan_gemm [--device vulkan:N] [--sizes 1024,2048,4096] [--tiles "16,16,4,4,16;16,16,8,8,8,4"]
//                     [--reps N] [--windows W] [--no-torch]
//
// C[S,S] = A[S,S]·B[S,S], random normal inputs. Each figure is the median over W windows of
// the mean device time of N back-to-back products (Vulkan timestamp queries; CUDA events on
// the PyTorch side), GFLOP/s = 2·S³ / time. Every product is also checked: 64 entries of C
// against a double-precision dot product on the host (max relative error printed), so a
// fast wrong kernel cannot win. Tile shapes are MatmulTiles (engine/vulkan/vulkan_backend.h),
// set through SPARO_VULKAN_MATMUL_TILES. The PyTorch column comes from
// bench/torch_gpu_gemm.py run by `python3` on PATH (SPARO_BENCH_PYTHON overrides it); without
// torch or a CUDA GPU the column says why. On lavapipe (no GPU) the figures mean nothing.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench_paths.h"
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"


using namespace sparo;
using json = nlohmann::json;

namespace {

// 64×64 (the default), then larger tiles and more outputs per invocation, with scalar and
// vec4 loads: what to try first on a discrete GPU.
const char* const kDefaultTiles =
    "16,16,4,4,16;16,16,4,4,16,4;16,16,8,8,8;16,16,8,8,8,4;16,16,8,8,16,4;16,16,8,4,16,4;16,8,8,8,16,4;32,8,4,8,8,4";

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, sep);)
    if (!item.empty()) out.push_back(item);
  return out;
}

// size -> the script's line for it, or {"error": …} under key 0.
std::map<int64_t, json> run_torch(const std::string& sizes, int reps, int windows) {
  const std::string cmd = bench::python_path("python3") + " '" + bench::source_path("bench/torch_gpu_gemm.py") +
                          "' --sizes " + sizes +
                          " --reps " + std::to_string(reps) + " --windows " + std::to_string(windows);
  std::fflush(nullptr);
  std::map<int64_t, json> out;
  std::FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {{0, {{"error", "could not run " + cmd}}}};
  char line[4096];
  while (std::fgets(line, sizeof line, p)) {
    const json j = json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    out[j.contains("error") ? 0 : j.value("size", int64_t{0})] = j;
  }
  const int status = pclose(p);
  if (out.empty()) out[0] = {{"error", "torch_gpu_gemm.py printed nothing (status " + std::to_string(status) + ")"}};
  return out;
}

// Largest |C - A·B| / (|A|·|B| row-column norm) over 64 sampled entries.
double sampled_error(const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& c, int64_t S) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int64_t> pick(0, S - 1);
  double worst = 0;
  for (int s = 0; s < 64; ++s) {
    const int64_t i = pick(rng), j = pick(rng);
    double dot = 0, scale = 0;
    for (int64_t k = 0; k < S; ++k) {
      const double x = a[size_t(i * S + k)], y = b[size_t(k * S + j)];
      dot += x * y;
      scale += std::abs(x * y);
    }
    worst = std::max(worst, std::abs(c[size_t(i * S + j)] - dot) / std::max(scale, 1e-30));
  }
  return worst;
}

int usage(int status) {
  std::fprintf(status ? stderr : stdout,
               "usage: bench_vulkan_gemm [--device vulkan:N] [--sizes 1024,2048,4096] [--tiles \"wx,wy,tm,tn,bk[,vec];...\"]\n"
               "                         [--reps N] [--windows W] [--no-torch]\n");
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  std::string device_name = "vulkan", sizes_arg = "1024,2048,4096", tiles_arg = kDefaultTiles;
  int reps = 10, windows = 5;
  bool torch = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) std::exit(usage(2));
      return argv[++i];
    };
    if (arg == "--device") device_name = value();
    else if (arg == "--sizes") sizes_arg = value();
    else if (arg == "--tiles") tiles_arg = value();
    else if (arg == "--reps") reps = std::atoi(value().c_str());
    else if (arg == "--windows") windows = std::atoi(value().c_str());
    else if (arg == "--no-torch") torch = false;
    else if (arg == "--help" || arg == "-h") return usage(0);
    else return usage(2);
  }
  if (reps < 1 || reps > 200 || windows < 1) {
    std::fprintf(stderr, "bench_vulkan_gemm: --reps must be in [1, 200] and --windows positive\n");
    return 2;
  }
  try {
    const Device device = Device::parse(device_name);
    Backend& backend = backend_for(device);
    NoGradGuard no_grad;
    std::printf("device %s (%s); median of %d windows of %d products\n", device.str().c_str(), backend.name().c_str(),
                windows, reps);
    std::map<int64_t, double> best, coopmat;  // size -> best fp32 GFLOP/s over the tile shapes; fp16 matrix units
    std::map<int64_t, std::string> best_tiles;
    // Times one configuration (set through the environment) at every size; a result with a
    // larger error than `tolerance` is marked WRONG and not kept.
    const auto measure = [&](const std::string& label, double tolerance, std::map<int64_t, double>& keep) {
      for (const std::string& s : split(sizes_arg, ',')) {
        const int64_t S = std::stoll(s);
        Generator gen(1);
        const Tensor a_host = Tensor::randn({S, S}, gen), b_host = Tensor::randn({S, S}, gen);
        const Tensor a = a_host.to(device), b = b_host.to(device);
        const double err = sampled_error(a_host.to_float_vector(), b_host.to_float_vector(),
                                         matmul(a, b).to_float_vector(), S);  // also the warm-up
        std::vector<double> ms;
        for (int w = 0; w < windows; ++w) {
          backend.begin_timing();
          for (int r = 0; r < reps; ++r) matmul(a, b);
          ms.push_back(backend.end_timing_ms() / reps);
        }
        std::sort(ms.begin(), ms.end());
        const double t = ms[ms.size() / 2], gflops = 2.0 * S * S * S / (t * 1e-3) / 1e9;
        std::printf("%-16s %6lld %12.3f %12.1f %12.2e%s\n", label.c_str(), static_cast<long long>(S), t, gflops, err,
                    err > tolerance ? "  WRONG" : "");
        std::fflush(stdout);
        if (err <= tolerance && gflops > keep[S]) {
          keep[S] = gflops;
          if (&keep == &best) best_tiles[S] = label;
        }
      }
    };
    std::printf("%-16s %6s %12s %12s %12s\n", "tiles", "size", "ms", "GFLOP/s", "max rel err");
    for (const std::string& tiles : split(tiles_arg, ';')) {
      setenv("SPARO_VULKAN_MATMUL_TILES", tiles.c_str(), 1);
      try {
        measure(tiles, 1e-4, best);
      } catch (const Error& e) {  // a shape this device cannot run: say so, try the next
        std::printf("%-16s (%s)\n", tiles.c_str(), e.what());
      }
    }
    unsetenv("SPARO_VULKAN_MATMUL_TILES");
    setenv("SPARO_VULKAN_COOPMAT", "1", 1);
    try {
      measure("coopmat fp16", 1e-2, coopmat);  // fp16 inputs: about 1e-3 relative
    } catch (const Error& e) {
      std::printf("%-16s (%s)\n", "coopmat fp16", e.what());
    }
    unsetenv("SPARO_VULKAN_COOPMAT");

    std::printf("\nbest tiles against PyTorch on the same GPU (fp32: TF32 off)\n");
    const std::map<int64_t, json> theirs = torch ? run_torch(sizes_arg, reps, windows) : std::map<int64_t, json>{};
    if (!torch) std::printf("(PyTorch column skipped: --no-torch)\n");
    else if (theirs.count(0)) std::printf("(no PyTorch column: %s)\n", theirs.at(0)["error"].get<std::string>().c_str());
    else std::printf("PyTorch on %s\n", theirs.begin()->second.value("device", std::string("?")).c_str());
    std::printf("%6s %-16s %10s %12s %9s %14s %12s %9s\n", "size", "best tiles", "ours fp32", "torch fp32",
                "ours/fp32", "ours coopmat16", "torch fp16", "ours/fp16");
    const auto cell = [](double v, const char* fmt) {
      char text[32];
      if (v > 0) std::snprintf(text, sizeof text, fmt, v);
      else std::snprintf(text, sizeof text, "-");
      return std::string(text);
    };
    for (const auto& [S, g] : best) {
      const double flop = 2.0 * S * S * S;
      const double t32 = theirs.count(S) ? flop / (theirs.at(S)["fp32_ms"].get<double>() * 1e-3) / 1e9 : 0;
      const double t16 = theirs.count(S) ? flop / (theirs.at(S)["fp16_ms"].get<double>() * 1e-3) / 1e9 : 0;
      const double c16 = coopmat.count(S) ? coopmat.at(S) : 0;
      std::printf("%6lld %-16s %10s %12s %9s %14s %12s %9s\n", static_cast<long long>(S), best_tiles[S].c_str(),
                  cell(g, "%.1f").c_str(), cell(t32, "%.1f").c_str(), cell(t32 > 0 ? g / t32 : 0, "%.2f").c_str(),
                  cell(c16, "%.1f").c_str(), cell(t16, "%.1f").c_str(),
                  cell(t16 > 0 && c16 > 0 ? c16 / t16 : 0, "%.2f").c_str());
    }
    std::printf("(GFLOP/s; ratios: ours / PyTorch on the same GPU)\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_vulkan_gemm: %s\n", e.what());
    return 1;
  }
  return 0;
}
