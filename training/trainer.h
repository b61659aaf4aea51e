// The training loop shared by CLIP and DINO, the run directory, checkpoints and resume.
//
// A run directory holds:
//   config.json        the resolved configuration (model inline)
//   metrics.jsonl      one JSON object per logged step: step, loss, lr, samples/s, ...
//   log.txt            the progress lines, as printed
//   checkpoints/       step-NNNNNNNN.safetensors (the last keep_checkpoints are kept)
//   model.safetensors  the trained weights (state-dict names), at the end; DINO: the teacher
//   plus what the task adds (CLIP: tokenizer.txt, the merges its text tower reads).
//
// One step = accum_steps micro-batches (forward + backward of loss / accum_steps each),
// gradient clipping, the lr (and weight-decay) schedules, one AdamW update, then the task's
// post-update work (CLIP: logit-scale clamp; DINO: teacher EMA). On the CPU a run is
// bitwise deterministic for a seed and a thread count; resuming from a checkpoint gives the
// same losses as the uninterrupted run.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "models/module.h"
#include "training/optimizer.h"
#include "training/train_config.h"

namespace sparo {

// What one objective adds to the loop (implemented in clip_task.cpp and dino_task.cpp).
class TrainTask {
 public:
  virtual ~TrainTask() = default;
  virtual Module& model() = 0;                             // the trained model (--resume loads into it)
  // What model.safetensors holds at the end (DINO: the teacher, which DINO evaluates).
  virtual const Module& exported_model() { return model(); }
  virtual StateAliases aliases() const { return {}; }      // for model.safetensors
  virtual std::vector<ParamGroup> param_groups() const = 0;
  virtual Generator& generator() = 0;                      // drop-path / dropout randomness
  // The loss of micro-batch `micro` of optimiser step `step` (graph recorded).
  virtual Tensor loss(int64_t step, int64_t micro) = 0;
  // Between backward and the update (DINO: freeze the last layer, weight-decay schedule).
  virtual void before_update(int64_t /*step*/, Optimizer& /*optimizer*/) {}
  // After the update (CLIP: clamp the logit scale; DINO: teacher EMA).
  virtual void after_update(int64_t /*step*/) {}
  // Task state beyond the model and optimiser, for checkpoints.
  virtual NamedTensors extra_state() const { return {}; }
  virtual void load_extra_state(const NamedTensors& state, const std::string& source);
  // Extra metrics for a logged step (e.g. the logit scale), as "key": number.
  virtual std::vector<std::pair<std::string, double>> metrics(int64_t /*step*/) const { return {}; }
  virtual void describe(std::ostream& /*out*/) const {}  // one-time lines at the start
  // Slower measurements of the model (DINO: k-NN of teacher and student), taken at step 0 and
  // every eval_every steps; empty when the task has none.
  virtual std::vector<std::pair<std::string, double>> monitor() { return {}; }
};

// The tasks. run_dir holds task files such as CLIP's tokenizer (learned on a fresh start,
// read back on resume).
std::unique_ptr<TrainTask> make_clip_task(const TrainConfig& config, const std::string& run_dir, bool resuming);
std::unique_ptr<TrainTask> make_dino_task(const TrainConfig& config);

struct TrainOptions {
  bool resume = false;         // continue the run in run_dir from its latest checkpoint
  int progress = -1;           // 1: live progress line; 0: plain lines; -1: line if stderr is a terminal
  int64_t stop_after = -1;     // stop (as if interrupted) after this step, without the final files; tests
  std::ostream* out = nullptr; // progress output (default std::cerr)
  bool profile = false;        // per-op time table (engine/profiler.h) after the last step
};

// Thrown when SIGINT or SIGTERM stopped a run: it stops at the end of the step under way, saves
// a checkpoint there and logs how to continue (the command exits with 128 + signal).
struct Interrupted : Error {
  Interrupted(const std::string& message, int signal_number) : Error(message), signal(signal_number) {}
  int signal;
};

struct TrainResult {
  int64_t first_step = 0, last_step = 0;  // steps done in this call: [first_step, last_step)
  double last_loss = 0.0;
};

// train: trains config in run_dir (new, or one a failed start left without config.json);
// config.json is written once the data, device and model are set up. resume_training continues
// the run there from its latest loadable checkpoint (from step 0 if it stopped before the
// first), with run_dir/config.json and the overrides.
TrainResult train(const TrainConfig& config, const std::string& run_dir, const TrainOptions& options = {});
TrainResult resume_training(const std::string& run_dir, const TrainOptions& options = {},
                            const std::vector<std::string>& overrides = {});

}  // namespace sparo
