// sparo train clip|dino: one command from a config file to a run directory with metrics,
// checkpoints and the trained weights; --resume continues an interrupted run.
#include <nlohmann/json.hpp>

#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "engine/profiler.h"
#include "models/config.h"
#include "training/trainer.h"

namespace sparo::cli {

namespace {

struct TrainCommandOptions {
  std::string config, out, resume, device, precision;
  std::vector<std::string> overrides;
  int progress = -1;
  bool profile = false;
};

void run(const std::string& task, const TrainCommandOptions& o) {
  std::vector<std::string> overrides = o.overrides;
  if (!o.device.empty()) overrides.push_back("device=" + o.device);
  if (!o.precision.empty()) overrides.push_back("precision=" + o.precision);
  TrainOptions options;
  options.progress = o.progress;
  options.profile = profiler::requested(o.profile);
  if (!o.resume.empty()) {
    if (!o.config.empty()) throw Error("train: --resume takes the config from " + o.resume + "/config.json; drop --config");
    resume_training(o.resume, options, overrides);
    return;
  }
  if (o.config.empty()) throw Error("train " + task + ": --config is required (presets: training/configs/*.json)");
  if (o.out.empty()) throw Error("train " + task + ": --out RUN_DIR is required");
  // A config without "task" takes the subcommand's; one with another task is an error below.
  const nlohmann::json file =
      nlohmann::json::parse(read_config_file(o.config, "train config"), nullptr, /*allow_exceptions=*/false);
  if (file.is_object() && !file.contains("task")) overrides.insert(overrides.begin(), "task=" + task);
  const TrainConfig cfg = TrainConfig::load(o.config, overrides);
  if (cfg.task != task)
    throw Error("train " + task + ": " + o.config + " is a \"" + cfg.task + "\" config; run 'sparo train " + cfg.task + "'");
  train(cfg, o.out, options);
}

void add_task(CLI::App* train, const std::string& task, const std::string& about) {
  auto o = std::make_shared<TrainCommandOptions>();
  CLI::App* cmd = train->add_subcommand(task, about);
  cmd->add_option("--config", o->config, "Training config (JSON), e.g. training/configs/" + task + "-tiny-sparo.json")
      ->check(CLI::ExistingFile);
  cmd->add_option("--set", o->overrides, "Override a config key: --set steps=500 --set lr=1e-3 (repeatable)");
  cmd->add_option("--out", o->out, "Run directory (new): config.json, metrics.jsonl, log.txt, checkpoints/, weights");
  cmd->add_option("--resume", o->resume, "Continue the run in this directory from its latest checkpoint")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--device", o->device, "cpu or vulkan[:N] (overrides the config's device)");
  cmd->add_option("--precision", o->precision,
                  "Matmul precision, f32 or bf16 (bf16 inputs, f32 sums, f32 weights; overrides the config's)");
  cmd->add_option("--progress", o->progress,
                  "1: live progress line, 0: plain lines (default: a live line when stderr is a terminal)")
      ->check(CLI::Range(0, 1));
  cmd->add_flag("--profile", o->profile, "Print a per-op time table after the last step (also: env SPARO_PROFILE=1)");
  cmd->callback([o, task] { run(task, *o); });
}

}  // namespace

void add_train_commands(CLI::App& app) {
  CLI::App* train = app.add_subcommand("train", "Train a model: CLIP on image–caption pairs, DINO on images");
  train->require_subcommand(1);
  add_task(train, "clip", "Contrastive image–text training (Fashion scenes or a CSV/TSV caption table)");
  add_task(train, "dino", "Self-distillation with multi-crop (Fashion-MNIST or a CSV/TSV image table)");
}

}  // namespace sparo::cli
