// bench_train_step: one training step of the tiny SPARO-CLIP and the tiny SPARO-DINO presets,
// sparo against PyTorch, side by side in one run.
//
//   bench_train_step [--model clip|dino|all] [--steps N] [--threads T] [--quick] [--no-torch] [--precision bf16]
//                    [--device vulkan[:N]] [--profile]
//
// --device vulkan runs our step on a Vulkan GPU and PyTorch's on CUDA (fp32, TF32 off), for
// a GPU machine that has both (scripts/gpu_check.sh); the memory columns then compare our
// engine's peak device bytes with torch.cuda.max_memory_allocated. Without it, both run on
// the CPU.
//
// Step = zero_grad, forward, loss, backward, AdamW step, loss.item() (the item makes sure the
// work is complete). AdamW(lr 5e-4, betas 0.9/0.98, eps 1e-6), weight decay 0.2 on trainable
// parameters with ndim >= 2, 0 on the others. Batch 128:
//   tiny-clip-sparo  images [128, 3, 32, 32] N(0, 1); token ids [128, 32] i32: start 1022, ids
//                    uniform in [1, 1000], end of text 1023 (the largest id) after n - 2 ids, then
//                    0 padding, n = 2 + (7·b) mod 31 for row b >= 1, row 0 full; loss clip_loss.
//   tiny-dino-sparo  DINO's step: 2 global crops [2·128, 3, 28, 28] and 4 local crops
//                    [4·128, 3, 14, 14] N(0, 1) (the positional embedding resampled bicubically
//                    for the local crops); the EMA teacher (a copy of the student, no gradient) on
//                    the global crops; the student on all crops; DINO's loss (student temperature
//                    0.1, teacher 0.04, centre momentum 0.9); gradient clipping at global norm 3;
//                    AdamW; teacher EMA with momentum 0.996. No drop-path on either side
//                    (models_golden's DINO has none), so the preset's drop_path_rate is set to 0.
// Warm-up steps (2, or 1 with --quick) then N timed steps (7, or 3 with --quick), in R rounds
// (--rounds; 3, or 1 with --quick) that alternate the sides, ours then PyTorch, R times per
// model (ABAB...): a burst of load from elsewhere then hits both sides rather than one. The
// median and minimum of the R·N step times are reported, plus per-phase medians (forward =
// zero_grad + forward + loss, backward, optimizer; the median of the rounds' medians) on both
// sides. The load average is printed at the start and the end, with a warning when the machine
// was not quiet (a 1-minute load above 0.5 beyond what the bench itself adds).
//
// --contend: the bench starts one single-threaded busy process for the whole run, so both
// sides are measured beside a competitor (a parallel loop that waits on one descheduled thread
// shows it here).
//
// Each of our models runs in a forked child process (the parent does no engine work before
// forking), and each PyTorch model in its own Python process, so every peak RSS belongs to one
// model alone. Memory reported for ours: the engine's peak bytes (Backend::memory_stats().peak,
// reset after the warm-up: live tensors only, no allocator cache, no code) and the process peak
// RSS (getrusage ru_maxrss, as the Python side). The table compares process peak RSS with process peak
// RSS: that is the only number PyTorch gives for the CPU. Note that PyTorch's RSS includes
// ~230 MiB of libtorch/Python before any model exists (printed as "base RSS").
//
// The PyTorch column comes from bench/torch_train_step.py (models from
// tools/golden/models_golden.py, configs read from the same preset files), started in the same
// run with Debian's OpenBLAS (see kTorchEnv).
//
// --profile (or SPARO_PROFILE=1): our side prints its per-op time table (engine/profiler.h) to
// stderr, over its timed steps of the first round (the warm-up left out). The step times then include the
// profiler's own cost (a clock read and a lock per op).
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_paths.h"
#include "engine/backend.h"
#include "engine/profiler.h"
#include "models/clip.h"
#include "models/dino.h"
#include "training/losses.h"
#include "training/optimizer.h"


namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

using sparo::bench::python_path;
using sparo::bench::source_path;
const char* const kTorchEnv =
    "LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp OPENBLAS_CORETYPE=Cooperlake";

constexpr int64_t kBatch = 128;
constexpr float kLr = 5e-4f, kBeta1 = 0.9f, kBeta2 = 0.98f, kEps = 1e-6f, kWeightDecay = 0.2f;
constexpr int32_t kSot = 1022, kEot = 1023, kMaxId = 1000;
// DINO's step: 2 global crops at the model's size, 4 local crops at half of it.
constexpr int64_t kGlobalCrops = 2, kLocalCrops = 4;
constexpr float kStudentTemp = 0.1f, kTeacherTemp = 0.04f, kCenterMomentum = 0.9f, kTeacherMomentum = 0.996f,
                kDinoClip = 3.0f;

double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

using sparo::bench::median;

// A field of /proc/self/status in bytes ("VmHWM", "VmRSS"); -1 when unreadable.
int64_t proc_status_bytes(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string key = std::string(field) + ":";
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::atoll(line.c_str() + key.size()) * 1024;
  return -1;
}

// getrusage's ru_maxrss (what torch_train_step.py reports too); VmHWM if that fails.
int64_t peak_rss_bytes() {
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) == 0 && ru.ru_maxrss > 0) return int64_t(ru.ru_maxrss) * 1024;
  return proc_status_bytes("VmHWM");
}

std::string preset_path(const std::string& kind) {
  return source_path(std::string("models/configs/") + (kind == "clip" ? "tiny-clip-sparo" : "tiny-dino-sparo") +
                     ".json");
}

// Weight decay on ndim >= 2, none on the rest; frozen parameters (DINO's weight_g) left out.
std::vector<sparo::ParamGroup> adamw_groups(const sparo::Module& m, int64_t* count) {
  std::vector<sparo::ParamGroup> groups(2);
  groups[0].name = "decay";
  groups[0].weight_decay = kWeightDecay;
  groups[1].name = "no_decay";
  *count = 0;
  for (const auto& [name, p] : m.named_parameters()) {
    if (!p.requires_grad()) continue;
    groups[p.dim() >= 2 ? 0 : 1].params.push_back(p);
    *count += p.numel();
  }
  return groups;
}

struct StepTimes {
  std::vector<double> step, forward, backward, optimizer;
  float last_loss = 0.0f;
};

// Runs warm-up + timed steps with the optimiser: forward() returns the loss, then backward,
// before_update() (gradient clipping), the AdamW step and after_update() (DINO's teacher EMA);
// the optimizer phase times all three. Resets the engine's peak after the warm-up.
template <typename Forward, typename BeforeUpdate, typename AfterUpdate>
StepTimes time_steps(sparo::Device device, sparo::Optimizer& opt, int warmup, int steps, const std::string& profile,
                     Forward&& forward, BeforeUpdate&& before_update, AfterUpdate&& after_update) {
  StepTimes t;
  auto& backend = sparo::backend_for(device);
  for (int i = 0; i < warmup + steps; ++i) {
    if (i == warmup) {
      backend.reset_peak_memory();
      if (!profile.empty()) sparo::profiler::set_enabled(true);
    }
    const auto t0 = Clock::now();
    opt.zero_grad();
    const sparo::Tensor loss = forward();
    const auto t1 = Clock::now();
    loss.backward();
    const auto t2 = Clock::now();
    before_update();
    opt.step();
    after_update();
    const auto t3 = Clock::now();
    const float value = loss.item();
    const auto t4 = Clock::now();
    if (i >= warmup) {
      t.step.push_back(seconds(t0, t4));
      t.forward.push_back(seconds(t0, t1));
      t.backward.push_back(seconds(t1, t2));
      t.optimizer.push_back(seconds(t2, t3));
      t.last_loss = value;
    }
  }
  if (!profile.empty()) {
    std::fprintf(stderr, "%s", sparo::profiler::format(sparo::profiler::report(), profile).c_str());
    sparo::profiler::set_enabled(false);
  }
  return t;
}

// Our matmul precision (--precision); PyTorch's side stays f32.
sparo::MatmulPrecision our_precision = sparo::MatmulPrecision::f32;

// Our side of one model; runs in the forked child.
json run_ours(const std::string& kind, int threads, int warmup, int steps, const std::string& device_name,
              bool profile) {
  // The profile's title; empty: no profile.
  const std::string title = profile ? "bench_train_step, ours, tiny-" + kind + "-sparo on " + device_name + ", " +
                                          std::to_string(steps) + " timed steps"
                                    : "";
  sparo::set_num_threads(threads);
  const sparo::MatmulPrecisionScope precision(our_precision);
  const sparo::Device device = sparo::Device::parse(device_name);
  const int64_t base_rss = proc_status_bytes("VmRSS");
  sparo::Generator gen(1234);
  std::mt19937 rng(1234);
  int64_t params = 0;
  StepTimes t;
  if (kind == "clip") {
    const sparo::ClipConfig cfg = sparo::ClipConfig::load(preset_path(kind));
    if (cfg.text.vocab_size != kEot + 1)
      throw sparo::Error("tiny-clip-sparo: expected vocab_size 1024 (end of text 1023)");
    sparo::Clip model(cfg, 0);
    sparo::to_device(model, device);
    const int64_t S = cfg.vision.image_size, T = cfg.text.context_length;
    const sparo::Tensor images = sparo::Tensor::randn({kBatch, 3, S, S}, gen).to(device);
    std::vector<int32_t> ids(size_t(kBatch * T), 0);
    std::uniform_int_distribution<int32_t> id(1, kMaxId);
    for (int64_t b = 0; b < kBatch; ++b) {
      const int64_t n = b == 0 ? T : 2 + (7 * b) % (T - 1);
      int32_t* row = ids.data() + b * T;
      row[0] = kSot;
      for (int64_t j = 1; j < n - 1; ++j) row[j] = id(rng);
      row[n - 1] = kEot;
    }
    const sparo::Tensor text = sparo::Tensor::from_vector(ids, {kBatch, T}).to(device);
    sparo::AdamW opt(adamw_groups(model, &params), kLr, kBeta1, kBeta2, kEps);
    t = time_steps(
        device, opt, warmup, steps, title, [&] { return sparo::clip_loss(model.forward(images, text).logits_per_image); }, [] {},
        [] {});
  } else {
    sparo::DinoConfig cfg = sparo::DinoConfig::load(preset_path(kind));
    cfg.drop_path_rate = 0.0f;
    sparo::Dino student(cfg, 0), teacher(cfg, 0);
    sparo::load_state_dict(teacher, sparo::state_dict(student));
    sparo::to_device(student, device);
    sparo::to_device(teacher, device);
    for (sparo::Tensor p : teacher.parameters()) p.requires_grad_(false);
    const int64_t S = cfg.image_size;
    const sparo::Tensor globals = sparo::Tensor::randn({kGlobalCrops * kBatch, 3, S, S}, gen).to(device);
    const sparo::Tensor locals = sparo::Tensor::randn({kLocalCrops * kBatch, 3, S / 2, S / 2}, gen).to(device);
    sparo::DinoLoss dino_loss(cfg.head_out, kGlobalCrops + kLocalCrops, kStudentTemp, kCenterMomentum, device);
    sparo::AdamW opt(adamw_groups(student, &params), kLr, kBeta1, kBeta2, kEps);
    std::vector<sparo::Tensor> trainable;
    for (const sparo::ParamGroup& g : opt.groups()) trainable.insert(trainable.end(), g.params.begin(), g.params.end());
    const sparo::NamedTensors student_params = student.named_parameters(), teacher_params = teacher.named_parameters();
    t = time_steps(
        device, opt, warmup, steps, title,
        [&] {
          sparo::Tensor teacher_out;
          {
            sparo::NoGradGuard no_grad;
            teacher_out = teacher.head.forward(teacher.backbone.forward(globals).embedding);
          }
          const sparo::Tensor features = sparo::concat(
              {student.backbone.forward(globals).embedding, student.backbone.forward(locals).embedding}, 0);
          return dino_loss(student.head.forward(features), teacher_out, kTeacherTemp);
        },
        [&] { sparo::clip_grad_norm(trainable, kDinoClip); },
        [&] {
          sparo::NoGradGuard no_grad;
          for (size_t i = 0; i < student_params.size(); ++i) {
            sparo::Tensor target = teacher_params[i].second;
            sparo::ema_(target, student_params[i].second, kTeacherMomentum);
          }
        });
  }
  const sparo::MemoryStats mem = sparo::backend_for(device).memory_stats();
  return {{"model", kind},
          {"threads", sparo::num_threads()},
          {"parameters", params},
          {"step_s", t.step},
          {"median_s", median(t.step)},
          {"min_s", *std::min_element(t.step.begin(), t.step.end())},
          {"forward_median_s", median(t.forward)},
          {"backward_median_s", median(t.backward)},
          {"optimizer_median_s", median(t.optimizer)},
          {"last_loss", t.last_loss},
          {"engine_peak_bytes", mem.peak},
          {"engine_cached_bytes", mem.cached},
          {"peak_rss_bytes", peak_rss_bytes()},
          {"base_rss_bytes", base_rss}};
}

// Forks, runs run_ours in the child and returns its JSON (or {"error": ...}).
json run_ours_in_child(const std::string& kind, int threads, int warmup, int steps, const std::string& device,
                       bool profile) {
  int fds[2];
  if (pipe(fds) != 0) return {{"error", "pipe failed"}};
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return {{"error", "fork failed"}};
  if (pid == 0) {
    close(fds[0]);
    std::string text;
    try {
      text = run_ours(kind, threads, warmup, steps, device, profile).dump();
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

json run_torch(const std::string& kind, int threads, int warmup, int steps, bool cuda) {
  const std::string script = source_path("bench/torch_train_step.py"), python = python_path();
  if (!std::ifstream(python).good()) return {{"error", python + " not found"}};
  if (!std::ifstream(script).good()) return {{"error", script + " not found"}};
  const std::string cmd = std::string("env ") + kTorchEnv + " " + python + " '" + script +
                          "' --model " + kind + " --threads " + std::to_string(threads) +
                          " --steps " + std::to_string(steps) + " --warmup " +
                          std::to_string(warmup) + (cuda ? " --device cuda" : "") + " --json";
  std::fflush(nullptr);
  std::FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {{"error", "could not start " + python}};
  std::string text;
  char buf[4096];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, got);
  const int status = pclose(p);
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return {{"error", "torch_train_step.py failed (status " + std::to_string(status) + ")"}};
  if (j.contains("error")) return {{"error", j["error"]}};
  if (!j.contains("results") || j["results"].empty()) return {{"error", "no result"}};
  return j["results"][0];
}

// One side's rounds as one result: step times pooled (median and minimum over all of them),
// per-phase medians the median of the rounds' medians, memory the largest of the rounds'.
json merge_rounds(const std::vector<json>& rounds) {
  for (const json& r : rounds)
    if (!r.is_object() || r.contains("error")) return r;
  json out = rounds.front();
  std::vector<double> steps;
  for (const json& r : rounds)
    for (const json& t : r["step_s"]) steps.push_back(t.get<double>());
  out["step_s"] = steps;
  out["median_s"] = median(steps);
  out["min_s"] = *std::min_element(steps.begin(), steps.end());
  out["rounds"] = rounds.size();
  for (const char* k : {"forward_median_s", "backward_median_s", "optimizer_median_s"}) {
    std::vector<double> v;
    for (const json& r : rounds) v.push_back(r[k].get<double>());
    out[k] = median(v);
  }
  for (const char* k : {"peak_rss_bytes", "engine_peak_bytes", "device_peak_bytes"}) {
    if (!out.contains(k) || !out[k].is_number()) continue;
    double m = 0;
    for (const json& r : rounds) m = std::max(m, r[k].get<double>());
    out[k] = m;
  }
  return out;
}

// A busy loop in a child process, until the bench kills it (--contend).
pid_t start_contender() {
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    volatile uint64_t x = 0;
    for (;;) x = x + 1;
  }
  return pid;
}

using sparo::bench::load_1min;
using sparo::bench::load_average;

std::string mib(double bytes) {
  char s[32];
  std::snprintf(s, sizeof s, "%.1f MiB", bytes / (1024.0 * 1024.0));
  return s;
}

int usage(int status) {
  std::fprintf(status ? stderr : stdout,
               "usage: bench_train_step [--model clip|dino|all] [--steps N] [--threads T] [--quick] "
               "[--no-torch] [--profile] [--rounds R] [--contend] [--precision f32|bf16]\n"
               "  --steps N    timed steps per round (default 7; --quick: 3)\n"
               "  --rounds R   rounds per side, alternating ours and PyTorch (default 3; --quick: 1)\n"
               "  --contend    run beside one single-threaded busy process started by the bench\n"
               "  --threads T  threads for both engines (default 2)\n"
               "  --quick      1 warm-up step and 3 timed steps unless --steps is given\n"
               "  --no-torch   skip the PyTorch column\n"
               "  --precision  our matmul precision: f32 (default) or bf16 (bf16 inputs, f32 sums); PyTorch: f32\n"
               "  --profile    print our side's per-op time table to stderr (also: env SPARO_PROFILE=1)\n");
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "all", device = "cpu";
  int steps = -1, threads = 2, rounds = -1;
  bool quick = false, torch = true, profile = false, contend = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(usage(2));
      }
      return argv[++i];
    };
    if (a == "--model") {
      model = value();
      if (model != "clip" && model != "dino" && model != "all") return usage(2);
    } else if (a == "--steps") {
      steps = std::atoi(value().c_str());
      if (steps < 1) return usage(2);
    } else if (a == "--threads") {
      threads = std::atoi(value().c_str());
      if (threads < 1) return usage(2);
    } else if (a == "--rounds") {
      rounds = std::atoi(value().c_str());
      if (rounds < 1) return usage(2);
    } else if (a == "--contend") {
      contend = true;
    } else if (a == "--quick") {
      quick = true;
    } else if (a == "--device") {
      device = value();
    } else if (a == "--precision") {
      try {
        our_precision = sparo::parse_matmul_precision(value(), "--precision");
      } catch (const sparo::Error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return usage(2);
      }
    } else if (a == "--no-torch") {
      torch = false;
    } else if (a == "--profile") {
      profile = true;
    } else if (a == "--help" || a == "-h") {
      return usage(0);
    } else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return usage(2);
    }
  }
  const int warmup = quick ? 1 : 2;
  if (steps < 0) steps = quick ? 3 : 7;
  if (rounds < 0) rounds = quick ? 1 : 3;
  std::vector<std::string> kinds;
  if (model == "all" || model == "clip") kinds.push_back("clip");
  if (model == "all" || model == "dino") kinds.push_back("dino");

  const bool on_gpu = device != "cpu";
  const double load_start = load_1min();
  std::printf("bench_train_step: batch %lld, %d threads, %d warm-up + %d timed steps × %d rounds per side (ABAB), "
              "ours on %s (%s matmuls), PyTorch on %s (f32)%s; load average %s at the start\n",
              static_cast<long long>(kBatch), threads, warmup, steps, rounds, device.c_str(),
              sparo::matmul_precision_name(our_precision), on_gpu ? "cuda" : "cpu",
              contend ? ", beside one busy process (--contend)" : "", load_average().c_str());
  std::printf("PyTorch: %s %s bench/torch_train_step.py (models_golden)\n", kTorchEnv, python_path().c_str());
  std::fflush(stdout);

  const pid_t contender = contend ? start_contender() : -1;
  std::vector<json> ours, theirs;
  for (const std::string& kind : kinds) {  // interleaved: ours, PyTorch, ours, PyTorch, ... per model
    std::vector<json> our_rounds, their_rounds;
    for (int r = 0; r < rounds; ++r) {
      std::fprintf(stderr, "[%s] round %d/%d: ours...\n", kind.c_str(), r + 1, rounds);
      our_rounds.push_back(
          run_ours_in_child(kind, threads, warmup, steps, device, sparo::profiler::requested(profile) && r == 0));
      if (torch) {
        std::fprintf(stderr, "[%s] round %d/%d: PyTorch...\n", kind.c_str(), r + 1, rounds);
        their_rounds.push_back(run_torch(kind, threads, warmup, steps, on_gpu));
      }
    }
    ours.push_back(merge_rounds(our_rounds));
    theirs.push_back(torch ? merge_rounds(their_rounds) : json{{"error", "skipped (--no-torch)"}});
  }
  const double load_stop = load_1min();
  const std::string load_end = load_average();
  if (contender > 0) {
    kill(contender, SIGKILL);
    waitpid(contender, nullptr, 0);
  }

  auto name = [](const std::string& kind) {
    return kind == "clip" ? "tiny-clip-sparo" : "tiny-dino-sparo";
  };
  auto ok = [](const json& j) { return j.is_object() && !j.contains("error"); };

  // Memory compared: process peak RSS on the CPU; on a GPU, the peak device bytes held by
  // tensors (our engine's peak, torch.cuda.max_memory_allocated).
  const char* ours_mem = on_gpu ? "engine_peak_bytes" : "peak_rss_bytes";
  const char* their_mem = on_gpu ? "device_peak_bytes" : "peak_rss_bytes";
  std::printf("\nstep time: median of %d steps (%d rounds × %d); memory: %s (ours vs PyTorch)\n", steps * rounds,
              rounds, steps,
              on_gpu ? "peak device memory in tensors" : "process peak RSS");
  std::printf("%-24s %12s %14s %12s %13s %15s %11s\n", "model", "ours med(s)", "PyTorch med(s)",
              "ours/PyTorch", on_gpu ? "ours peak dev" : "ours peak RSS", on_gpu ? "PyTorch pk dev" : "PyTorch pk RSS",
              "ours/PyT mem");
  bool torch_missing = false;
  for (size_t i = 0; i < kinds.size(); ++i) {
    const json& o = ours[i];
    const json& p = theirs[i];
    if (!ok(o)) {
      std::printf("%-24s ours failed: %s\n", name(kinds[i]), o.value("error", "?").c_str());
      continue;
    }
    char tmed[32] = "n/a", tratio[32] = "n/a", tmem[32] = "n/a", mratio[32] = "n/a";
    if (ok(p)) {
      std::snprintf(tmed, sizeof tmed, "%.3f", p["median_s"].get<double>());
      std::snprintf(tratio, sizeof tratio, "%.2f",
                    o["median_s"].get<double>() / p["median_s"].get<double>());
      std::snprintf(tmem, sizeof tmem, "%s", mib(p[their_mem].get<double>()).c_str());
      std::snprintf(mratio, sizeof mratio, "%.2f", o[ours_mem].get<double>() / p[their_mem].get<double>());
    } else {
      torch_missing = true;
    }
    std::printf("%-24s %12.3f %14s %12s %13s %15s %11s\n", name(kinds[i]),
                o["median_s"].get<double>(), tmed, tratio,
                mib(o[ours_mem].get<double>()).c_str(), tmem, mratio);
  }

  std::printf("\ndetails (medians in s; fwd = zero_grad + forward + loss, opt = AdamW step)\n");
  std::printf("%-24s %-7s %8s %8s %8s %8s %8s %11s %13s %11s %9s\n", "model", "side", "median",
              "min", "fwd", "bwd", "opt", "params", "engine peak", "base RSS", "loss");
  for (size_t i = 0; i < kinds.size(); ++i) {
    for (int side = 0; side < 2; ++side) {
      const json& r = side == 0 ? ours[i] : theirs[i];
      const char* who = side == 0 ? "ours" : "PyTorch";
      if (!ok(r)) {
        std::printf("%-24s %-7s %s\n", name(kinds[i]), who, r.value("error", "?").c_str());
        continue;
      }
      const double last_loss =
          side == 0 ? r["last_loss"].get<double>() : r["losses"].back().get<double>();
      std::printf("%-24s %-7s %8.3f %8.3f %8.3f %8.3f %8.3f %11lld %13s %11s %9.4f\n",
                  name(kinds[i]), who, r["median_s"].get<double>(), r["min_s"].get<double>(),
                  r["forward_median_s"].get<double>(), r["backward_median_s"].get<double>(),
                  r["optimizer_median_s"].get<double>(),
                  static_cast<long long>(r["parameters"].get<int64_t>()),
                  side == 0 ? mib(r["engine_peak_bytes"].get<double>()).c_str() : "n/a",
                  mib(r["base_rss_bytes"].get<double>()).c_str(), last_loss);
    }
  }
  for (size_t i = 0; i < kinds.size(); ++i)
    if (ok(theirs[i]) && theirs[i].contains("torch")) {
      std::printf("\nPyTorch %s, threads %d, BLAS %s\n",
                  theirs[i]["torch"].get<std::string>().c_str(), theirs[i]["threads"].get<int>(),
                  theirs[i].value("blas", std::string("?")).c_str());
      break;
    }
  std::printf(
      "memory: 'peak RSS' = getrusage ru_maxrss of the process (each model in its own process on both sides);\n"
      "'engine peak' = our live-tensor peak (memory_stats().peak, reset after warm-up), not "
      "compared;\n'base RSS' = RSS before the model was built (PyTorch: libtorch + Python).\n");
  if (on_gpu)
    std::printf("on the GPU: the table compares peak device bytes in tensors; the phases (fwd, bwd, opt) are host\n"
                "time, as the work runs asynchronously: only the whole step, which ends in loss.item(), waits for it.\n");
  if (torch_missing)
    for (const json& p : theirs)
      if (!ok(p)) {
        std::printf("PyTorch column missing, ours alone: %s\n", p.value("error", "?").c_str());
        break;
      }
  std::printf("load average at the end: %s\n", load_end.c_str());
  // Quiet: before the run nothing else ran; at its end the 1-minute average holds the bench's own
  // threads (and the contender), so only what is beyond them counts.
  const double own = static_cast<double>(threads) + (contend ? 1.0 : 0.0);
  if (load_start > 0.5 || load_stop > own + 0.5)
    std::printf("warning: the machine was not quiet (1-minute load %.2f at the start, %.2f at the end, against "
                "0 and %.0f from this bench): rerun when it is, or compare only sides measured together\n",
                load_start, load_stop, own);
  return 0;
}
