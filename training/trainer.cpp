#include "training/trainer.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "engine/backend.h"
#include "engine/profiler.h"
#include "training/checkpoint.h"
#include "training/distributed.h"
#include "training/schedule.h"

namespace sparo {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

void TrainTask::load_extra_state(const NamedTensors& state, const std::string& source) {
  if (!state.empty()) throw Error(source + ": unexpected task state \"" + state.front().first + "\"");
}

namespace {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

// SIGINT (Ctrl-C) and SIGTERM while a run is under way: noted here, acted on at the end of
// the step. The handler resets itself, so a second signal stops the process at once.
volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void note_stop_signal(int signal_number) { g_stop_signal = signal_number; }

class StopSignals {
 public:
  StopSignals() {
    g_stop_signal = 0;
    struct sigaction action {};
    action.sa_handler = note_stop_signal;
    action.sa_flags = SA_RESETHAND;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, &old_int_);
    sigaction(SIGTERM, &action, &old_term_);
  }
  ~StopSignals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  int received() const { return g_stop_signal; }

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

// Metrics and log lines must not vanish quietly (a full disk): a failed write stops the run.
void check_written(const std::ostream& out, const fs::path& path) {
  if (!out) throw Error("cannot write " + path.string() + ": " + std::strerror(errno));
}

// Keeps the metrics lines of steps <= last_step: after a crash the file may hold lines of
// steps the resumed run will do again.
void truncate_metrics(const fs::path& path, int64_t last_step) {
  std::ifstream in(path);
  if (!in) return;
  std::string line, kept;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() <= last_step)
      kept += line + "\n";
  }
  in.close();
  write_text_atomic(path, kept);
}

// Under mpirun only the first process prints and logs (silent = true on the others).
class Progress {
 public:
  Progress(std::ostream& out, bool live, std::ofstream& log, fs::path log_path, bool silent)
      : out_(out), live_(live), log_(log), log_path_(std::move(log_path)), silent_(silent) {}
  void line(const std::string& text, bool final_line) {
    if (silent_) return;
    if (live_) {
      out_ << "\r" << text << "\x1b[K";
      if (final_line) out_ << "\n";
      out_.flush();
    } else if (final_line) {
      out_ << text << "\n";
    }
    if (final_line) write_log(text);
  }
  void message(const std::string& text) {
    if (silent_) return;
    if (live_) out_ << "\r\x1b[K";
    out_ << text << "\n" << std::flush;
    write_log(text);
  }

 private:
  void write_log(const std::string& text) {
    log_ << text << "\n" << std::flush;
    check_written(log_, log_path_);
  }
  std::ostream& out_;
  bool live_;
  std::ofstream& log_;
  fs::path log_path_;
  bool silent_;
};

// resuming: continue from the latest loadable checkpoint, or from step 0 where the run stopped
// before its first one. save_config: write the settings to config.json, but only once the task
// is set up (data, device, model) and, when resuming, a checkpoint has loaded with them, so a bad
// setting leaves the directory as it was: never a config.json that nothing can continue.
//
// Data parallel (training/distributed.h): every process runs this loop on its slice of each
// batch; the first ("root") alone writes the run directory (config, metrics, log, checkpoints,
// weights), which the others read when resuming (a shared folder on several machines).
TrainResult run(const TrainConfig& cfg, const fs::path& dir, const TrainOptions& options, bool resuming,
                bool save_config) {
  const bool root = distributed::is_root();
  const int ranks = distributed::size();
  const fs::path ckpt_dir = dir / "checkpoints";
  if (root) fs::create_directories(ckpt_dir);
  std::ostream& out = options.out ? *options.out : std::cerr;
  const bool live = options.progress >= 0 ? options.progress == 1 : (options.out == nullptr && isatty(STDERR_FILENO));
  std::ofstream log;
  if (root) {
    log.open(dir / "log.txt", std::ios::app);
    if (!log) throw Error("cannot open " + (dir / "log.txt").string() + " for writing: " + std::strerror(errno));
  }
  Progress progress(out, live, log, dir / "log.txt", /*silent=*/!root);

  // A process killed while writing leaves its temporary files (name.tmp, name.tmp.tmp);
  // the finished files never depend on them.
  for (const fs::path& folder : {dir, ckpt_dir}) {
    if (!root) break;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(folder, ec))
      if (entry.is_regular_file(ec) && entry.path().extension() == ".tmp") fs::remove(entry.path(), ec);
  }
  if (resuming && list_checkpoints(ckpt_dir.string()).empty()) {
    // Stopped (killed, disk full) before its first checkpoint: nothing was kept, so the run
    // starts again from step 0, which gives exactly what an uninterrupted run would have.
    progress.message("no checkpoint yet in " + ckpt_dir.string() + ": starting " + dir.string() +
                     " from step 0 with its config.json");
    resuming = false;
    if (root) truncate_metrics(dir / "metrics.jsonl", -1);  // the step-0 monitor comes again
  }
  std::unique_ptr<TrainTask> task =
      cfg.task == "clip" ? make_clip_task(cfg, dir.string(), resuming) : make_dino_task(cfg);
  AdamW optimizer(task->param_groups(), static_cast<float>(cfg.peak_lr()), static_cast<float>(cfg.beta1),
                  static_cast<float>(cfg.beta2), static_cast<float>(cfg.eps));
  const WarmupCosine lr_at{static_cast<float>(cfg.peak_lr()), static_cast<float>(cfg.min_lr), cfg.warmup_steps, cfg.steps};
  std::vector<Tensor> params;
  for (const ParamGroup& g : optimizer.groups()) params.insert(params.end(), g.params.begin(), g.params.end());

  int64_t start = 0;
  std::string last_checkpoint = "none yet";
  if (resuming) {
    const std::vector<int64_t> steps = list_checkpoints(ckpt_dir.string());
    for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
      const std::string path = checkpoint_path(ckpt_dir.string(), *it);
      try {
        Checkpoint c = load_checkpoint(path);
        load_state_dict(task->model(), c.model, {}, path);
        optimizer.load_state(c.optimizer);
        task->load_extra_state(c.extra, path);
        task->generator().set_state(c.generator_seed, c.generator_offset);
        start = c.step;
        last_checkpoint = path;
        break;
      } catch (const Error& e) {
        if (std::next(it) == steps.rend()) throw;
        progress.message("warning: cannot resume from " + path + " (" + e.what() + "); trying the one before");
      }
    }
    // Every process must continue from the same checkpoint (one that failed to load on one
    // of them would split the run).
    const std::vector<int64_t> starts = distributed::allgather(start);
    for (int r = 0; r < ranks; ++r)
      if (starts[static_cast<size_t>(r)] != start)
        throw Error("resume: rank " + std::to_string(r) + " loaded the checkpoint of step " +
                    std::to_string(starts[static_cast<size_t>(r)]) + ", this rank (" + std::to_string(distributed::rank()) +
                    ") that of step " + std::to_string(start) + " from " + last_checkpoint);
    distributed::check_identical(task->model().parameters(), "parameters loaded from " + last_checkpoint);
    if (root) truncate_metrics(dir / "metrics.jsonl", start);
    if (save_config && root) write_text_atomic(dir / "config.json", cfg.to_json());
    progress.message("resuming " + dir.string() + " at step " + std::to_string(start) + " from " + last_checkpoint);
  } else {
    if (save_config && root) write_text_atomic(dir / "config.json", cfg.to_json());
    std::ostringstream head;
    task->describe(head);
    std::istringstream lines(head.str());
    for (std::string l; std::getline(lines, l);) progress.message(l);
  }
  // Data parallel: the gradients averaged over the processes in buckets, on a CPU device each
  // started during the last micro-batch's backward as soon as it is full (grad_overlap); on
  // Vulkan packing a bucket reads the device, which would stall backward's queue, so there they
  // all start after it.
  distributed::GradientReducer reducer(params, static_cast<size_t>(cfg.grad_bucket_mib * 1024.0 * 1024.0));
  const bool overlap = ranks > 1 && cfg.grad_overlap && Device::parse(cfg.device).kind == Device::Kind::cpu;
  if (ranks > 1)
    progress.message("data parallel: " + std::to_string(ranks) + " processes, each " +
                     std::to_string(cfg.batch_size / ranks) + " of every batch of " + std::to_string(cfg.batch_size) +
                     "; gradients averaged in " + std::to_string(reducer.buckets()) + " buckets " +
                     (overlap ? "as backward fills them" : "after backward"));
  if (start >= cfg.steps) {
    // A run stopped between its last checkpoint and model.safetensors: the weights come from
    // that checkpoint, so the run ends as the uninterrupted one would have.
    if (!root) return {start, start, 0.0};
    if (!fs::exists(dir / "model.safetensors")) {
      save_safetensors_atomic((dir / "model.safetensors").string(), state_dict(task->exported_model(), task->aliases()));
      progress.message("the run is at step " + std::to_string(start) + " of " + std::to_string(cfg.steps) +
                       "; wrote its missing " + (dir / "model.safetensors").string() + " from " + last_checkpoint);
    } else {
      progress.message("nothing to do: the run is at step " + std::to_string(start) + " of " + std::to_string(cfg.steps));
    }
    return {start, start, 0.0};
  }

  std::ofstream metrics;
  if (root) metrics.open(dir / "metrics.jsonl", std::ios::app);
  // The task's monitor (DINO: k-NN of teacher and student) as a line of its own, at step 0 of
  // a fresh run and every eval_every steps; on the first process only (it changes nothing).
  const auto monitor = [&](int64_t step) {
    if (!root) return;
    const auto values = task->monitor();
    if (values.empty()) return;
    json m = {{"step", step}};
    std::string text = "monitor at step " + std::to_string(step) + ":";
    for (const auto& [k, v] : values) {
      m[k] = v;
      char item[96];
      std::snprintf(item, sizeof item, " %s %.4f", k.c_str(), v);
      text += item;
    }
    metrics << m.dump() << "\n" << std::flush;
    check_written(metrics, dir / "metrics.jsonl");
    progress.message(text);
  };
  if (start == 0 && cfg.eval_every > 0) monitor(0);
  const auto save_checkpoint_at = [&](int64_t done) {
    // Every process holds the same weights after every update, or the run has gone wrong:
    // checked where a checkpoint keeps them (a mismatch names the ranks).
    std::vector<Tensor> state = task->model().parameters();
    for (const auto& [name, t] : task->extra_state()) state.push_back(t);
    distributed::check_identical(state, "weights at step " + std::to_string(done));
    last_checkpoint = checkpoint_path(ckpt_dir.string(), done);
    if (!root) return;
    Checkpoint c;
    c.step = done;
    c.generator_seed = task->generator().seed();
    c.generator_offset = task->generator().offset();
    c.model = task->model().named_parameters();
    c.optimizer = optimizer.state();
    c.extra = task->extra_state();
    save_checkpoint(last_checkpoint, c);  // on the disk before the older ones go
    const std::vector<int64_t> kept = list_checkpoints(ckpt_dir.string());
    for (size_t i = 0; i + static_cast<size_t>(cfg.keep_checkpoints) < kept.size(); ++i)
      fs::remove(checkpoint_path(ckpt_dir.string(), kept[i]));
  };
  const StopSignals stop_signals;
  Backend& backend = backend_for(Device::parse(cfg.device));
  backend.reset_peak_memory();  // the report at the end is about this run
  // Every matmul of the steps, monitors included, and the backward each one records.
  const MatmulPrecisionScope precision(parse_matmul_precision(cfg.precision, "precision"));
  TrainResult result{start, start, 0.0};
  // The table covers the steps (with their logging, monitors and checkpoints), not the setup.
  if (options.profile) profiler::set_enabled(true);
  // Off again however the run ends (a NaN loss, Ctrl-C), so a later run in this process is not profiled.
  struct ProfilerOff {
    bool on;
    ~ProfilerOff() {
      if (on) profiler::set_enabled(false);
    }
  } profiler_off{options.profile};
  const auto print_profile = [&] {
    if (!options.profile) return;
    std::string table = profiler::format(profiler::report(), "sparo train " + cfg.task + ", steps " +
                                                                 std::to_string(start) + ".." +
                                                                 std::to_string(result.last_step));
    table.pop_back();  // message() ends the line; the table goes to log.txt too
    progress.message(table);
  };
  const auto t_begin = Clock::now();
  auto t_interval = t_begin;
  int64_t interval_steps = 0;
  double comm_at_interval = distributed::comm_stats().total_s();
  for (int64_t step = start; step < cfg.steps; ++step) {
    optimizer.zero_grad();
    double loss_value = 0.0;
    for (int64_t micro = 0; micro < cfg.accum_steps; ++micro) {
      Tensor loss = task->loss(step, micro);
      if (cfg.accum_steps > 1) loss = affine(loss, 1.0f / static_cast<float>(cfg.accum_steps), 0.0f);
      const bool last_micro = micro + 1 == cfg.accum_steps;
      const GradReadyScope grad_ready(overlap && last_micro ? reducer.hook() : GradReadyHook{});
      loss.backward();
      loss_value += static_cast<double>(loss.item());
    }
    // Data parallel: the loss of the global batch (the mean of the processes' equal slices; CLIP's
    // is already the same everywhere), so every process takes the same decisions below, and the
    // gradients averaged in rank order (bit for bit the same on every process).
    loss_value = distributed::allreduce_mean(loss_value);
    reducer.finish();
    if (!std::isfinite(loss_value)) {
      const std::string message = "step " + std::to_string(step + 1) + ": the loss is " +
                                  (std::isnan(loss_value) ? "NaN" : "infinite") +
                                  "; stopping. Last good checkpoint: " + last_checkpoint +
                                  " (lower lr, or resume from it with --resume " + dir.string() + ")";
      progress.message("error: " + message);
      throw Error(message);
    }
    task->before_update(step, optimizer);
    Tensor grad_norm;
    if (cfg.grad_clip > 0)
      grad_norm = cfg.grad_clip_mode == "per_parameter"
                      ? clip_grad_norm_per_parameter(params, static_cast<float>(cfg.grad_clip))
                      : clip_grad_norm(params, static_cast<float>(cfg.grad_clip));
    optimizer.set_lr(lr_at(step));
    optimizer.step();
    task->after_update(step);

    const int64_t done = step + 1;
    ++interval_steps;
    result.last_step = done;
    result.last_loss = loss_value;
    if (done % cfg.log_every == 0 || done == cfg.steps || done == start + 1) {
      const auto now = Clock::now();
      const double interval_s = std::chrono::duration<double>(now - t_interval).count();
      const double elapsed_s = std::chrono::duration<double>(now - t_begin).count();
      const double samples_per_s = static_cast<double>(interval_steps) * static_cast<double>(cfg.samples_per_step()) / std::max(interval_s, 1e-9);
      const double eta_s = elapsed_s / static_cast<double>(done - start) * static_cast<double>(cfg.steps - done);
      json m = {{"step", done}, {"loss", loss_value}, {"lr", lr_at(step)}, {"samples_per_s", samples_per_s},
                {"elapsed_s", elapsed_s}};
      if (grad_norm.defined()) m["grad_norm"] = grad_norm.item();
      if (ranks > 1) {  // this process's time in communication, per step over the interval
        const double comm_total = distributed::comm_stats().total_s();
        m["comm_s"] = (comm_total - comm_at_interval) / static_cast<double>(interval_steps);
        m["grad_buckets_in_backward"] = reducer.started_during_backward();  // of this step's buckets
        comm_at_interval = comm_total;
      }
      if (root) {
        for (const auto& [k, v] : task->metrics(step)) m[k] = v;
        metrics << m.dump() << "\n" << std::flush;
        check_written(metrics, dir / "metrics.jsonl");
      }
      char text[256];
      std::snprintf(text, sizeof text, "[%s] step %lld/%lld  loss %.4f  lr %.2e  %.0f samples/s  ETA %s", cfg.task.c_str(),
                    static_cast<long long>(done), static_cast<long long>(cfg.steps), loss_value, lr_at(step),
                    samples_per_s, format_duration(eta_s).c_str());
      progress.line(text, !live || done == cfg.steps || done % (cfg.log_every * 10) == 0);
      t_interval = now;
      interval_steps = 0;
    }
    if (cfg.eval_every > 0 && (done % cfg.eval_every == 0 || done == cfg.steps)) monitor(done);
    const bool checkpoint_due = done % cfg.checkpoint_every == 0 || done == cfg.steps;
    if (checkpoint_due) save_checkpoint_at(done);
    // mpirun hands a signal to every process, but not necessarily within the same step: all stop
    // after the first step by which any of them got one.
    if (const int signal_number = distributed::allreduce_max(stop_signals.received()); signal_number != 0 && done < cfg.steps) {
      // The step is complete, so a checkpoint here resumes exactly like any other.
      if (!checkpoint_due) save_checkpoint_at(done);
      const std::string message = std::string("interrupted by ") + (signal_number == SIGINT ? "SIGINT" : "SIGTERM") +
                                  " after step " + std::to_string(done) + " of " + std::to_string(cfg.steps) +
                                  "; saved " + last_checkpoint + ". Continue with: " +
                                  (ranks > 1 ? "mpirun -np " + std::to_string(ranks) + " " : std::string()) + "sparo train " +
                                  cfg.task + " --resume " + dir.string();
      progress.message(message);
      throw Interrupted(message, signal_number);
    }
    if (options.stop_after >= 0 && done >= options.stop_after && done < cfg.steps) {
      print_profile();
      return result;
    }
  }
  print_profile();  // the first process's table (the others print nothing)
  if (!root) return result;
  save_safetensors_atomic((dir / "model.safetensors").string(), state_dict(task->exported_model(), task->aliases()));
  const double total_s = std::chrono::duration<double>(Clock::now() - t_begin).count();
  progress.message("done: " + std::to_string(cfg.steps) + " steps, last loss " + std::to_string(result.last_loss) + ", " +
                   format_duration(total_s) + "; weights in " + (dir / "model.safetensors").string());
  const MemoryStats memory = backend.memory_stats();
  const auto mib = [](size_t bytes) {
    char text[32];
    std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
    return std::string(text);
  };
  progress.message("memory on " + cfg.device + ": peak " + mib(memory.peak) + " in tensors, " + mib(memory.in_use) +
                   " still in use, " + mib(memory.cached) + " cached for reuse");
  return result;
}

}  // namespace

TrainResult train(const TrainConfig& config, const std::string& run_dir, const TrainOptions& options) {
  if (options.resume) throw Error("train: use resume_training to continue a run");
  const fs::path dir(run_dir);
  if (distributed::is_root()) {
    std::error_code ec;
    if (fs::exists(dir / "config.json", ec) || !list_checkpoints((dir / "checkpoints").string()).empty())
      throw Error("train: " + run_dir + " already holds a run; continue it with --resume " + run_dir +
                  " or choose another --out");
    fs::create_directories(dir);
  }
  distributed::barrier();  // no process looks at the directory before the first has made it
  return run(config, dir, options, /*resuming=*/false, /*save_config=*/true);
}

TrainResult resume_training(const std::string& run_dir, const TrainOptions& options,
                            const std::vector<std::string>& overrides) {
  const fs::path config_path = fs::path(run_dir) / "config.json";
  if (!fs::is_regular_file(config_path))
    throw Error("resume: " + config_path.string() + " not found (is " + run_dir + " a run directory?)");
  const TrainConfig cfg = TrainConfig::load(config_path.string(), overrides);
  return run(cfg, fs::path(run_dir), options, true, /*save_config=*/!overrides.empty());
}

}  // namespace sparo
