// sparo experiment: the README's main job — train CLIP / CLIP+SPARO and DINO / DINO+SPARO with
// equal budgets, evaluate them all, print the comparison table (eval/experiment.h).
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "eval/experiment.h"

namespace sparo::cli {

void add_experiment_command(CLI::App& app) {
  auto o = std::make_shared<ExperimentOptions>();
  auto full = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand(
      "experiment", "The SPARO experiment in miniature: train the 4 tiny models, evaluate, print the comparison");
  cmd->add_option("--out", o->out_dir, "Directory for the runs and results.{md,json}")->capture_default_str();
  cmd->add_option("--configs", o->config_dir, "Folder with {clip,dino}-tiny[-sparo].json")->capture_default_str();
  cmd->add_option("--seeds", o->seeds, "Seeds per model (mean ± std)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--clip-steps", o->clip_steps, "CLIP training steps")->capture_default_str();
  cmd->add_option("--dino-steps", o->dino_steps, "DINO training steps")->capture_default_str();
  cmd->add_option("--eval-scenes", o->eval_scenes, "Test scenes per CLIP evaluation")->capture_default_str();
  cmd->add_option("--dino-train", o->dino_train, "Fashion-MNIST train images for the DINO probes")->capture_default_str();
  cmd->add_option("--dino-test", o->dino_test, "Fashion-MNIST test images for the DINO probes")->capture_default_str();
  cmd->add_option("--device", o->device, "cpu or vulkan[:N]")->capture_default_str();
  cmd->add_option("--set", o->overrides, "Extra training-config override for every run (repeatable)");
  cmd->add_option("--progress", o->progress, "1: live progress line, 0: plain lines")->check(CLI::Range(0, 1));
  cmd->add_flag("--full", *full, "Longer training (CLIP 1500, DINO 600 steps) with 3 seeds");
  cmd->callback([o, full] {
    ExperimentOptions opts = *o;
    if (*full) {
      opts.seeds = std::max(opts.seeds, 3);
      opts.clip_steps = std::max<int64_t>(opts.clip_steps, 1500);
      opts.dino_steps = std::max<int64_t>(opts.dino_steps, 600);
    }
    run_experiment(opts, std::cout);
  });
}

}  // namespace sparo::cli
