// bench_embed: inference of OpenCLIP's ViT-B/32 image tower (random weights) at batch 32 and
// batch 1, sparo against PyTorch 1.13 and onnxruntime (Node, onnxruntime-node), side by side in
// one run.
//
//   bench_embed [--rounds R] [--threads T] [--precision f32|bf16] [--no-torch] [--no-ort]
//               [--reps32 N] [--reps1 N] [--cache DIR] [--profile]
//
// The model and inputs come from bench/make_vit_b32.py (run here when DIR/meta.json is missing;
// DIR defaults to bench_embed_cache beside this binary, i.e. build/bench_embed_cache): the image
// tower of tools/golden/models_golden.py's CLIP with OpenCLIP's ViT-B-32 vision config (224,
// patch 32, width 768, 12 layers, 12 heads, embed 512), weights written as a safetensors state
// dict under OpenCLIP's names (what `sparo embed` loads; a tiny text tower rides along because
// sparo loads whole CLIP models, and is never run), the same module exported to ONNX (opset 17),
// 32 random uint8 images at 224×224 and PyTorch's embeddings of them (reference.f32).
//
// What is timed: the image tower's forward from a float tensor to unit-norm embeddings, on each
// side (ours: Clip::encode_image under NoGradGuard, then a host copy of the embeddings; PyTorch:
// the module under torch.no_grad(); onnxruntime: session.run). Not timed: decoding and resizing
// (the images are already 224×224) and the uint8 → float conversion, done once before timing
// in the same float32 arithmetic on every side ((x / 255 − CLIP mean) / CLIP std).
//
// Per side and per round, in one process of its own: load the model, run batch 32 once and
// compare the embeddings with PyTorch's reference (max |diff| and the smallest row cosine,
// printed; a side whose cosine falls below 0.9999 in f32 or 0.99 in bf16 is reported as failed,
// not timed) — that run is also the warm-up — then --reps32 timed runs of batch 32
// (images/s = 32 / time), 2 warm-up runs of batch 1 (image 0), --reps1 timed runs of batch 1
// (latency). The sides alternate in rounds (ours, PyTorch, onnxruntime, ours, ...; --rounds
// times), and the median and minimum are over all rounds' runs, so a burst of load from
// elsewhere lands on every side. Peak RSS: each side's process peak (getrusage ru_maxrss; Node:
// process.resourceUsage().maxRSS), the largest over its rounds; ours runs in a forked child that
// did no engine work before the fork. The load average is printed at the start and the end, with
// a warning when the machine was not quiet.
//
// --precision bf16 sets our matmul precision (bf16 inputs, f32 sums); PyTorch and onnxruntime
// stay f32. The onnxruntime column needs `node` and `npm install --no-save --ignore-scripts
// onnxruntime-node` in bench/ (git-ignored); without them it is skipped with a message.
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bench/bench_paths.h"
#include "engine/profiler.h"
#include "models/clip.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
using sparo::bench::python_path;
using sparo::bench::source_path;

const char* const kTorchEnv =
    "LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp OPENBLAS_CORETYPE=Cooperlake";
constexpr float kMean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
constexpr float kStd[3] = {0.26862954f, 0.26130258f, 0.27577711f};

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

using sparo::bench::median;

int64_t peak_rss_bytes() {
  rusage ru{};
  return getrusage(RUSAGE_SELF, &ru) == 0 ? int64_t(ru.ru_maxrss) * 1024 : -1;
}

int64_t current_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  return -1;
}

std::vector<char> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw sparo::Error("bench_embed: cannot open " + path);
  return std::vector<char>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

struct Settings {
  std::string cache;
  int threads = 2, reps32 = 3, reps1 = 10, rounds = 3;
  sparo::MatmulPrecision precision = sparo::MatmulPrecision::f32;
};

// Our side, in the forked child.
json run_ours(const Settings& s, bool profile) {
  sparo::set_num_threads(s.threads);
  const sparo::MatmulPrecisionScope precision(s.precision);
  const json meta = json::parse(read_file(s.cache + "/meta.json"));
  const int64_t B = meta["batch"].get<int64_t>(), S = meta["image_size"].get<int64_t>(),
                E = meta["embed_dim"].get<int64_t>();
  const int64_t base_rss = current_rss_bytes();
  const auto t0 = Clock::now();
  const std::unique_ptr<sparo::Clip> model =
      sparo::load_clip(s.cache + "/vit-b32.json", s.cache + "/vit-b32.safetensors", sparo::Device::cpu());
  const double load_s = seconds(t0, Clock::now());

  const std::vector<char> u8 = read_file(s.cache + "/images.u8");
  const size_t plane = size_t(S * S), per_image = 3 * plane;
  if (u8.size() != size_t(B) * per_image) throw sparo::Error("bench_embed: images.u8 has the wrong size");
  std::vector<float> pixels(u8.size());
  for (size_t i = 0; i < pixels.size(); ++i) {
    const size_t c = (i / plane) % 3;
    pixels[i] = (float(static_cast<unsigned char>(u8[i])) / 255.0f - kMean[c]) / kStd[c];
  }
  const sparo::Tensor x32 = sparo::Tensor::from_vector(pixels, {B, 3, S, S});
  const sparo::Tensor x1 =
      sparo::Tensor::from_vector(std::vector<float>(pixels.begin(), pixels.begin() + long(per_image)), {1, 3, S, S});
  const std::vector<char> ref_bytes = read_file(s.cache + "/reference.f32");
  if (ref_bytes.size() != size_t(B * E) * sizeof(float)) throw sparo::Error("bench_embed: reference.f32 has the wrong size");
  std::vector<float> ref(size_t(B * E));
  std::copy(ref_bytes.begin(), ref_bytes.end(), reinterpret_cast<char*>(ref.data()));

  auto run = [&](const sparo::Tensor& x, std::vector<float>* out) {
    const auto a = Clock::now();
    sparo::NoGradGuard no_grad;
    std::vector<float> y = model->encode_image(x).embedding.to_float_vector();
    const double t = seconds(a, Clock::now());
    if (out) *out = std::move(y);
    return t;
  };
  std::vector<float> got;
  const double check_s = run(x32, &got);
  double max_abs = 0.0, min_cos = 1.0;
  for (int64_t b = 0; b < B; ++b) {
    double dot = 0, na = 0, nb = 0;
    for (int64_t e = 0; e < E; ++e) {
      const double p = got[size_t(b * E + e)], q = ref[size_t(b * E + e)];
      max_abs = std::max(max_abs, std::abs(p - q));
      dot += p * q;
      na += p * p;
      nb += q * q;
    }
    min_cos = std::min(min_cos, dot / std::sqrt(na * nb));
  }
  if (profile) sparo::profiler::set_enabled(true);
  std::vector<double> t32, t1;
  for (int i = 0; i < s.reps32; ++i) t32.push_back(run(x32, nullptr));
  for (int i = 0; i < 2; ++i) run(x1, nullptr);
  for (int i = 0; i < s.reps1; ++i) t1.push_back(run(x1, nullptr));
  if (profile) {
    std::fprintf(stderr, "%s",
                 sparo::profiler::format(sparo::profiler::report(),
                                         "bench_embed, ours, ViT-B/32 image tower, " + std::to_string(s.reps32) +
                                             " × batch 32 + " + std::to_string(s.reps1) + " × batch 1 (+2 warm-up)")
                     .c_str());
    sparo::profiler::set_enabled(false);
  }
  return {{"side", "ours"},     {"threads", sparo::num_threads()}, {"load_s", load_s},   {"check_s", check_s},
          {"max_abs_diff", max_abs}, {"min_cosine", min_cos},     {"batch32_s", t32},   {"batch1_s", t1},
          {"peak_rss_bytes", peak_rss_bytes()}, {"base_rss_bytes", base_rss}};
}

json run_ours_in_child(const Settings& s, bool profile) {
  int fds[2];
  if (pipe(fds) != 0) return {{"error", "pipe failed"}};
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return {{"error", "fork failed"}};
  if (pid == 0) {
    close(fds[0]);
    std::string text;
    try {
      text = run_ours(s, profile).dump();
    } catch (const std::exception& e) {
      text = json{{"error", e.what()}}.dump();
    }
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = write(fds[1], text.data() + done, text.size() - done);
      if (n <= 0) break;
      done += size_t(n);
    }
    close(fds[1]);
    _exit(0);
  }
  close(fds[1]);
  std::string text;
  char buf[4096];
  ssize_t got;
  while ((got = read(fds[0], buf, sizeof buf)) > 0) text.append(buf, size_t(got));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return {{"error", "the benchmark child died (status " + std::to_string(status) + ")"}};
  return j;
}

// Runs a command whose stdout is one JSON object; {"error": ...} when it is not.
json run_json(const std::string& cmd, const std::string& what) {
  std::fflush(nullptr);
  std::FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {{"error", "could not start " + what}};
  std::string text;
  char buf[4096];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, got);
  const int status = pclose(p);
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return {{"error", what + " failed (status " + std::to_string(status) + ")"}};
  return j;
}

std::string quote(const std::string& s) { return "'" + s + "'"; }

std::string reps_args(const Settings& s) {
  return " --cache " + quote(s.cache) + " --threads " + std::to_string(s.threads) + " --reps32 " +
         std::to_string(s.reps32) + " --reps1 " + std::to_string(s.reps1);
}

json run_torch(const Settings& s) {
  const std::string script = source_path("bench/torch_embed.py"), python = python_path();
  if (!std::ifstream(python).good()) return {{"error", python + " not found"}};
  return run_json(std::string("env ") + kTorchEnv + " " + python + " " + quote(script) + reps_args(s),
                  "torch_embed.py");
}

bool have_node() { return std::system("command -v node >/dev/null 2>&1") == 0; }

json run_ort(const Settings& s) {
  return run_json("node " + quote(source_path("bench/ort_embed.js")) + reps_args(s), "ort_embed.js");
}

// One side's rounds as one result: times pooled, peak RSS the largest, check the worst.
json merge_rounds(const std::vector<json>& rounds) {
  if (rounds.empty()) return {{"error", "no round ran"}};
  for (const json& r : rounds)
    if (!r.is_object() || r.contains("error")) return r;
  json out = rounds.front();
  std::vector<double> t32, t1;
  double rss = 0, max_abs = 0, min_cos = 1;
  for (const json& r : rounds) {
    for (const json& t : r["batch32_s"]) t32.push_back(t.get<double>());
    for (const json& t : r["batch1_s"]) t1.push_back(t.get<double>());
    rss = std::max(rss, r["peak_rss_bytes"].get<double>());
    max_abs = std::max(max_abs, r["max_abs_diff"].get<double>());
    min_cos = std::min(min_cos, r["min_cosine"].get<double>());
  }
  out["batch32_s"] = t32;
  out["batch1_s"] = t1;
  out["peak_rss_bytes"] = rss;
  out["max_abs_diff"] = max_abs;
  out["min_cosine"] = min_cos;
  out["rounds"] = rounds.size();
  return out;
}

bool ok(const json& j) { return j.is_object() && !j.contains("error"); }

// A failed check makes the side's round an error (its times are not used).
json checked(json r, double min_cosine) {
  if (ok(r) && r["min_cosine"].get<double>() < min_cosine) {
    char msg[200];
    std::snprintf(msg, sizeof msg, "embeddings differ from PyTorch's reference: min cosine %.6f < %.4f, max |diff| %.3g",
                  r["min_cosine"].get<double>(), min_cosine, r["max_abs_diff"].get<double>());
    return {{"error", msg}};
  }
  return r;
}

void print_round(const char* who, int round, int rounds, const json& r) {
  if (!ok(r)) {
    std::fprintf(stderr, "  round %d/%d %-12s %s\n", round, rounds, who, r.value("error", "?").c_str());
    return;
  }
  std::fprintf(stderr,
               "  round %d/%d %-12s load %.1f s; check vs PyTorch: max |diff| %.2e, min cosine %.7f; batch 32 median "
               "%.3f s; batch 1 median %.1f ms; peak RSS %.1f MiB\n",
               round, rounds, who, r["load_s"].get<double>(), r["max_abs_diff"].get<double>(),
               r["min_cosine"].get<double>(), median(r["batch32_s"].get<std::vector<double>>()),
               1e3 * median(r["batch1_s"].get<std::vector<double>>()), r["peak_rss_bytes"].get<double>() / 1048576.0);
}

using sparo::bench::load_1min;
using sparo::bench::load_average;

std::string default_cache() {
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "build/bench_embed_cache";
  return (exe.parent_path() / "bench_embed_cache").string();
}

int usage(int status) {
  std::fprintf(status ? stderr : stdout,
               "usage: bench_embed [--rounds R] [--threads T] [--precision f32|bf16] [--no-torch] [--no-ort]\n"
               "                   [--reps32 N] [--reps1 N] [--cache DIR] [--profile]\n"
               "  --rounds R     rounds per side, alternating ours, PyTorch, onnxruntime (default 3)\n"
               "  --threads T    threads for every side (default 2)\n"
               "  --precision    our matmul precision: f32 (default) or bf16 (bf16 inputs, f32 sums); the others: f32\n"
               "  --reps32 N     timed batch-32 runs per round (default 3)\n"
               "  --reps1 N      timed batch-1 runs per round (default 10)\n"
               "  --cache DIR    model, ONNX file and inputs from bench/make_vit_b32.py (default: bench_embed_cache\n"
               "                 beside this binary; written by the script when missing)\n"
               "  --no-torch     skip the PyTorch column; --no-ort: skip the onnxruntime column\n"
               "  --profile      print our side's per-op time table (first round) to stderr (also: SPARO_PROFILE=1)\n");
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  s.cache = default_cache();
  bool torch = true, ort = true, profile = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(usage(2));
      }
      return argv[++i];
    };
    auto positive = [&](int* out) {
      *out = std::atoi(value().c_str());
      if (*out < 1) std::exit(usage(2));
    };
    if (a == "--rounds") {
      positive(&s.rounds);
    } else if (a == "--threads") {
      positive(&s.threads);
    } else if (a == "--reps32") {
      positive(&s.reps32);
    } else if (a == "--reps1") {
      positive(&s.reps1);
    } else if (a == "--cache") {
      s.cache = value();
    } else if (a == "--precision") {
      try {
        s.precision = sparo::parse_matmul_precision(value(), "--precision");
      } catch (const sparo::Error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return usage(2);
      }
    } else if (a == "--no-torch") {
      torch = false;
    } else if (a == "--no-ort") {
      ort = false;
    } else if (a == "--profile") {
      profile = true;
    } else if (a == "--help" || a == "-h") {
      return usage(0);
    } else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return usage(2);
    }
  }

  if (!std::ifstream(s.cache + "/meta.json").good()) {
    const std::string cmd = python_path() + " " + quote(source_path("bench/make_vit_b32.py")) + " --out " + quote(s.cache);
    std::fprintf(stderr, "bench_embed: no model in %s; writing it: %s\n", s.cache.c_str(), cmd.c_str());
    if (std::system(cmd.c_str()) != 0 || !std::ifstream(s.cache + "/meta.json").good()) {
      std::fprintf(stderr, "bench_embed: %s failed (it needs PyTorch)\n", cmd.c_str());
      return 1;
    }
  }
  const json meta = json::parse(read_file(s.cache + "/meta.json"));
  const double weight_bytes = meta["vision_weight_bytes"].get<double>();

  std::string ort_skipped;
  if (!ort) ort_skipped = "skipped (--no-ort)";
  else if (!have_node()) ort_skipped = "skipped: node is not installed";

  const double load_start = load_1min();
  std::printf("bench_embed: OpenCLIP ViT-B/32 image tower (random weights, %lld parameters = %.1f MiB f32), "
              "%d threads, ours %s matmuls, PyTorch and onnxruntime f32\n",
              static_cast<long long>(meta["vision_parameters"].get<int64_t>()), weight_bytes / 1048576.0, s.threads,
              sparo::matmul_precision_name(s.precision));
  std::printf("input: %lld random uint8 images already at 224x224, turned into floats before timing (decode, "
              "resize and normalisation not timed)\n",
              static_cast<long long>(meta["batch"].get<int64_t>()));
  std::printf("per round and side: load, 1 checked batch-32 run (warm-up), %d × batch 32, 2 + %d × batch 1; "
              "%d round(s), ABAB (ours, PyTorch, onnxruntime, ...)\n",
              s.reps32, s.reps1, s.rounds);
  std::printf("PyTorch: %s %s bench/torch_embed.py | onnxruntime: node bench/ort_embed.js | model: %s\n", kTorchEnv,
              python_path().c_str(), s.cache.c_str());
  std::printf("load average at the start: %s\n", load_average().c_str());
  std::fflush(stdout);

  const double min_cos = s.precision == sparo::MatmulPrecision::f32 ? 0.9999 : 0.99;
  std::vector<json> ours_r, torch_r, ort_r;
  for (int r = 0; r < s.rounds; ++r) {
    ours_r.push_back(checked(run_ours_in_child(s, sparo::profiler::requested(profile) && r == 0), min_cos));
    print_round("ours", r + 1, s.rounds, ours_r.back());
    if (torch) {
      torch_r.push_back(checked(run_torch(s), 0.9999));
      print_round("PyTorch", r + 1, s.rounds, torch_r.back());
    }
    if (ort_skipped.empty()) {
      ort_r.push_back(checked(run_ort(s), 0.9999));
      print_round("onnxruntime", r + 1, s.rounds, ort_r.back());
      if (!ok(ort_r.back())) {  // not installed: no use retrying
        ort_skipped = "skipped: " + ort_r.back().value("error", std::string("?"));
        ort_r.clear();
      }
    }
  }
  const double load_stop = load_1min();
  const std::string load_end = load_average();

  struct Side {
    std::string name;
    json result;
  };
  std::vector<Side> sides = {{"ours (" + std::string(sparo::matmul_precision_name(s.precision)) + ")", merge_rounds(ours_r)},
                             {"PyTorch (f32)", torch ? merge_rounds(torch_r) : json{{"error", "skipped (--no-torch)"}}},
                             {"onnxruntime (f32)", ort_skipped.empty() ? merge_rounds(ort_r) : json{{"error", ort_skipped}}}};

  std::printf("\nimages/s at batch 32 (32 / time of one run) and latency at batch 1: median and best over all rounds\n");
  std::printf("%-18s %11s %11s %11s %11s %13s %12s %12s\n", "side", "img/s med", "img/s best", "b1 ms med",
              "b1 ms min", "peak RSS", "max |diff|", "min cosine");
  for (const Side& side : sides) {
    const json& r = side.result;
    if (!ok(r)) {
      std::printf("%-18s %s\n", side.name.c_str(), r.value("error", "?").c_str());
      continue;
    }
    const auto t32 = r["batch32_s"].get<std::vector<double>>(), t1 = r["batch1_s"].get<std::vector<double>>();
    const double B = meta["batch"].get<double>();
    std::printf("%-18s %11.2f %11.2f %11.1f %11.1f %9.1f MiB %12.2e %12.7f\n", side.name.c_str(), B / median(t32),
                B / *std::min_element(t32.begin(), t32.end()), 1e3 * median(t1),
                1e3 * *std::min_element(t1.begin(), t1.end()), r["peak_rss_bytes"].get<double>() / 1048576.0,
                r["max_abs_diff"].get<double>(), r["min_cosine"].get<double>());
  }
  const json& o = sides[0].result;
  if (ok(o)) {
    for (size_t i = 1; i < sides.size(); ++i) {
      const json& p = sides[i].result;
      if (!ok(p)) continue;
      std::printf("ours vs %-18s img/s %.2f×, batch-1 latency %.2f× (median; < 1 is faster), peak RSS %.2f×\n",
                  sides[i].name.c_str(),
                  median(p["batch32_s"].get<std::vector<double>>()) / median(o["batch32_s"].get<std::vector<double>>()),
                  median(o["batch1_s"].get<std::vector<double>>()) / median(p["batch1_s"].get<std::vector<double>>()),
                  o["peak_rss_bytes"].get<double>() / p["peak_rss_bytes"].get<double>());
    }
    const double target = weight_bytes + 150e6;
    std::printf("ours: peak RSS %.1f MiB against the target weights + 150 MB = %.1f MiB (%s)\n",
                o["peak_rss_bytes"].get<double>() / 1048576.0, target / 1048576.0,
                o["peak_rss_bytes"].get<double>() <= target ? "met" : "missed");
  }
  for (const Side& side : sides)
    if (ok(side.result) && side.result.contains("torch"))
      std::printf("PyTorch %s, BLAS %s\n", side.result["torch"].get<std::string>().c_str(),
                  side.result.value("blas", std::string("?")).c_str());
    else if (ok(side.result) && side.result.contains("version"))
      std::printf("onnxruntime-node %s on Node %s\n", side.result["version"].get<std::string>().c_str(),
                  side.result.value("node", std::string("?")).c_str());
  std::printf("max |diff| and min cosine: each side's batch-32 embeddings against PyTorch's (make_vit_b32.py), "
              "worst over the rounds\npeak RSS: getrusage ru_maxrss of each side's own process (largest over the "
              "rounds); PyTorch's includes ~230 MiB of libtorch + Python\n");
  std::printf("load average at the end: %s\n", load_end.c_str());
  const double own = static_cast<double>(s.threads);
  if (load_start > 0.5 || load_stop > own + 0.5)
    std::printf("warning: the machine was not quiet (1-minute load %.2f at the start, %.2f at the end, against 0 "
                "and %.0f from this bench): rerun when it is, or compare only sides measured together\n",
                load_start, load_stop, own);
  return 0;
}
