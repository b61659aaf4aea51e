// The SPARO experiment in miniature (the README's main job): CLIP and CLIP+SPARO trained on
// Fashion scenes, DINO and DINO+SPARO on Fashion-MNIST, with equal budgets (same steps, batch,
// schedule and data order; parameter counts within a few percent, printed), then every
// evaluation — zero-shot, retrieval, compositional hard negatives (also on held-out colour–item
// pairs), robustness (noise, inverted images, cluttered scenes), k-NN and linear probes — and
// SPARO concept selection. Prints one comparison table and writes results.json / results.md,
// the SPARO CLIP run's slot pictures and report.html (sparo report) in out_dir.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

namespace sparo {

struct ExperimentOptions {
  std::string out_dir = "runs/experiment";
  std::string config_dir = "training/configs";  // the presets {clip,dino}-tiny[-sparo].json
  int seeds = 1;
  // CLIP's matmul precision: "auto" is bf16 inputs (f32 sums and weights) where the device
  // multiplies bf16 in hardware (a CPU with AVX512_BF16: 1.6 times the steps of f32 in the same
  // time), f32 elsewhere (bf16 would only round the inputs there, a little slower); or "bf16",
  // "f32".
  int64_t clip_steps = 760, clip_batch = 128;
  std::string clip_precision = "auto";
  int64_t dino_steps = 7000, dino_batch = 64;  // micro DINO (width 64, 2 blocks): about 0.035 s a step on 2 cores
  int64_t eval_scenes = 1000;    // test scenes per CLIP evaluation
  int64_t dino_train = 10000;    // Fashion-MNIST train images for k-NN / linear probes (8:2 train:val for the probe)
  int64_t dino_test = 5000;      // Fashion-MNIST test images
  int linear_epochs = 100;
  std::string device = "cpu";
  std::vector<std::string> overrides;  // applied to every training config (tests: tiny models)
  // sparo eval zeroshot on a labelled image folder instead of the scenes (eval/image_folder.h);
  // templates: a file of prompt templates, empty for the scene-caption grammar.
  std::string image_folder, templates;
  int progress = -1;                   // as TrainOptions::progress
};

struct ExperimentSummary {
  std::vector<std::string> metrics;                // row names
  // [metric][seed]; NaN where the arm has no such row. *_init: the same model at its random
  // initialisation (the run's seed, no training).
  std::vector<std::vector<double>> baseline, sparo, baseline_init, sparo_init;
  std::vector<double> pixels;                      // [metric]: the raw-pixel value, NaN where none
};

ExperimentSummary run_experiment(const ExperimentOptions& options, std::ostream& out);
// options.clip_precision with "auto" resolved on options.device: "bf16" or "f32". Error for
// anything else.
std::string experiment_clip_precision(const ExperimentOptions& options);

// One evaluation family of the experiment on a finished run (sparo eval, sparo select-concepts),
// on the same data as the experiment (options.eval_scenes, dino_train, dino_test, device):
//   CLIP runs: "zeroshot", "retrieval", "compose", "robustness", "select-concepts" (SPARO only)
//   DINO runs: "knn", "linear", "robustness"
// With options.image_folder set, "zeroshot" classifies that folder's images instead.
// Returns (metric, value) rows; details_json (if given) receives extra results as JSON, e.g. the
// selected slots' order and the drop-one study.
std::vector<std::pair<std::string, double>> evaluate_run(const std::string& run_dir, const std::string& family,
                                                         const ExperimentOptions& options, std::string* details_json,
                                                         std::ostream& out);

}  // namespace sparo
