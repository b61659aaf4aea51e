// sparo experiment: the README's main job — train CLIP / CLIP+SPARO and DINO / DINO+SPARO with
// equal budgets, evaluate them all, print the comparison table (eval/experiment.h).
// sparo eval FAMILY RUN and sparo select-concepts RUN: one evaluation of one finished run.
#include <nlohmann/json.hpp>

#include <cstdio>
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
  cmd->add_option("--clip-precision", o->clip_precision,
                  "CLIP's matmul precision: auto (bf16 where the CPU has AVX512_BF16, else f32), bf16 or f32 "
                  "(DINO trains in f32)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "bf16", "f32"}));
  cmd->add_option("--eval-scenes", o->eval_scenes, "Test scenes per CLIP evaluation")->capture_default_str();
  cmd->add_option("--dino-train", o->dino_train, "Fashion-MNIST train images for the DINO probes")->capture_default_str();
  cmd->add_option("--dino-test", o->dino_test, "Fashion-MNIST test images for the DINO probes")->capture_default_str();
  cmd->add_option("--device", o->device, "cpu or vulkan[:N]")->capture_default_str();
  cmd->add_option("--set", o->overrides, "Extra training-config override for every run (repeatable)");
  cmd->add_option("--progress", o->progress, "1: live progress line, 0: plain lines")->check(CLI::Range(0, 1));
  cmd->add_flag("--full", *full, "Longer training (CLIP 900, DINO 8000 steps) with 3 seeds (estimated at under 2 hours on 2 cores)");
  cmd->callback([o, full] {
    ExperimentOptions opts = *o;
    if (*full) {
      opts.seeds = std::max(opts.seeds, 3);
      opts.clip_steps = std::max<int64_t>(opts.clip_steps, 900);
      opts.dino_steps = std::max<int64_t>(opts.dino_steps, 8000);
    }
    run_experiment(opts, std::cout);
  });
}

namespace {

struct EvalOptions {
  std::string run;
  bool json = false;
  ExperimentOptions data;
};

void print_eval(const std::string& family, const EvalOptions& o) {
  std::string details;
  const auto rows = evaluate_run(o.run, family, o.data, &details, std::cerr);
  if (o.json) {
    nlohmann::json j = {{"run", o.run}, {"evaluation", family}, {"metrics", nlohmann::json::object()}};
    for (const auto& [name, value] : rows) j["metrics"][name] = value;
    const nlohmann::json extra = nlohmann::json::parse(details);
    if (!extra.empty()) j["details"] = extra;
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::printf("%-50s %10s\n", "metric", "value");
  for (const auto& [name, value] : rows) std::printf("%-50s %10.4f\n", name.c_str(), value);
  if (family == "select-concepts") {
    const nlohmann::json extra = nlohmann::json::parse(details);
    if (extra.contains("concept_selection")) {
      std::cout << "slots in the order chosen: " << extra["concept_selection"]["order"].dump() << "\n"
                << "drop-one change of the validation metric per slot:";
      int slot = 0;
      for (const auto& delta : extra["concept_selection"]["drop_one_val_delta"])
        std::printf("%s %d:%+.3f", slot % 8 == 0 ? "\n " : "", slot, delta.get<double>()), ++slot;
      std::cout << "\n";
    }
  }
}

CLI::App* add_eval_options(CLI::App* cmd, const std::shared_ptr<EvalOptions>& o) {
  cmd->add_option("run", o->run, "A finished run directory (sparo train --out)")->required()->check(CLI::ExistingDirectory);
  cmd->add_flag("--json", o->json, "Print one JSON object instead of the table");
  cmd->add_option("--scenes", o->data.eval_scenes, "Test scenes (CLIP evaluations)")->capture_default_str();
  cmd->add_option("--dino-train", o->data.dino_train, "Fashion-MNIST train images (DINO probes)")->capture_default_str();
  cmd->add_option("--dino-test", o->data.dino_test, "Fashion-MNIST test images (DINO probes)")->capture_default_str();
  cmd->add_option("--device", o->data.device, "cpu or vulkan[:N]")->capture_default_str();
  return cmd;
}

}  // namespace

void add_eval_commands(CLI::App& app) {
  CLI::App* eval = app.add_subcommand("eval", "Evaluate a finished run; a table, or JSON with --json");
  eval->require_subcommand(1);
  const std::vector<std::pair<std::string, std::string>> families = {
      {"zeroshot", "CLIP: item classes of single-item test scenes, prompts averaged over colours and places; top-1/5"},
      {"retrieval", "CLIP: image->text and text->image recall@1/5 on test scenes"},
      {"compose", "CLIP: hard negatives (replace/swap objects and colours, add an object), also on held-out pairs"},
      {"robustness", "CLIP: clutter, held-out colours, noise, inverted images; DINO: k-NN under noise and inversion"},
      {"knn", "DINO: weighted k-NN (k 20, T 0.07) on Fashion-MNIST"},
      {"linear", "DINO: linear probe on frozen features, lr / weight decay chosen on a validation split"}};
  for (const auto& [family, about] : families) {
    auto o = std::make_shared<EvalOptions>();
    CLI::App* cmd = add_eval_options(eval->add_subcommand(family, about), o);
    cmd->callback([o, family = family] { print_eval(family, *o); });
    if (family == "zeroshot") {
      cmd->add_option("--images", o->data.image_folder,
                      "A labelled image folder, ROOT/<class>/<image> (ImageFolder), instead of the test scenes");
      cmd->add_option("--templates", o->data.templates,
                      "Prompt templates, one per line with {} for the class name (default: the scene-caption grammar)");
    }
  }
  auto o = std::make_shared<EvalOptions>();
  add_eval_options(app.add_subcommand("select-concepts",
                                      "SPARO CLIP: greedy forward selection of slots on the validation split "
                                      "(zero-shot), scored on test, and the drop-one-slot study"),
                   o)
      ->callback([o] { print_eval("select-concepts", *o); });
}

}  // namespace sparo::cli
