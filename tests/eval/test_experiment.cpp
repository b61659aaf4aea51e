// The experiment end to end on tiny models and tiny budgets: every run is trained, every
// metric lands in the table and in results.json, a second call reuses the finished runs, and a
// call with another config refuses them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/cpu/gemm.h"
#include "engine/error.h"
#include "eval/experiment.h"

namespace sparo {
namespace {

namespace fs = std::filesystem;

TEST(Experiment, TrainsEvaluatesAndReusesRuns) {
  const fs::path dir = fs::temp_directory_path() / ("sparo_experiment_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "configs");
  const std::string clip_model = R"({"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32,
      "head_width": 16, "patch_size": 8}, "text_cfg": {"context_length": 24, "vocab_size": 600, "width": 32, "heads": 2, "layers": 1}})";
  const std::string clip_sparo = R"({"embed_dim": 32, "use_sparo": true, "L": 4, "V": 8, "vision_cfg": {"image_size": 32,
      "layers": 1, "width": 32, "head_width": 16, "patch_size": 8}, "text_cfg": {"context_length": 24, "vocab_size": 600,
      "width": 32, "heads": 2, "layers": 1}})";
  const std::string dino_model = R"({"model": "dino", "image_size": 16, "patch_size": 4, "width": 32, "depth": 1, "heads": 2,
      "head_hidden": 32, "head_bottleneck": 16, "head_out": 64)";
  std::ofstream(dir / "configs/clip-tiny.json") << R"({"task": "clip", "train_size": 200, "model": )" << clip_model << "}";
  std::ofstream(dir / "configs/clip-tiny-sparo.json") << R"({"task": "clip", "train_size": 200, "model": )" << clip_sparo << "}";
  std::ofstream(dir / "configs/dino-tiny.json") << R"({"task": "dino", "local_crop_size": 8, "local_crops": 2, "model": )"
                                                << dino_model << "}}";
  std::ofstream(dir / "configs/dino-tiny-sparo.json")
      << R"({"task": "dino", "local_crop_size": 8, "local_crops": 2, "model": )" << dino_model
      << R"(, "readout": "sparo", "L": 4, "V": 4}})";

  ExperimentOptions o;
  o.out_dir = (dir / "out").string();
  o.config_dir = (dir / "configs").string();
  o.clip_steps = 2;
  o.clip_batch = 16;
  o.dino_steps = 2;
  o.dino_batch = 8;
  o.eval_scenes = 40;
  o.dino_train = 200;
  o.dino_test = 50;
  o.linear_epochs = 3;
  o.progress = 0;
  std::ostringstream log;
  const ExperimentSummary s = run_experiment(o, log);

  ASSERT_EQ(s.metrics.size(), s.baseline.size());
  ASSERT_EQ(s.metrics.size(), s.sparo.size());
  ASSERT_EQ(s.metrics.size(), s.baseline_init.size());
  ASSERT_EQ(s.metrics.size(), s.sparo_init.size());
  ASSERT_EQ(s.metrics.size(), s.pixels.size());
  for (const char* needed : {"CLIP zero-shot item top-1", "CLIP linear probe item top-1 (image embeddings)",
                             "CLIP retrieval image->text R@1", "CLIP compose mean",
                             "CLIP compose swap-colours", "CLIP compose mean, held-out colour-item pairs",
                             "CLIP zero-shot top-1, inverted images", "CLIP zero-shot top-1, selected slots (test)",
                             "CLIP zero-shot top-1, named place, 2 distractors",
                             "CLIP compose mean, selected slots (test)", "CLIP slots selected for compose (of L)",
                             "DINO k-NN top-1 (k=20, T=0.07)", "DINO linear probe top-1"})
    EXPECT_NE(std::find(s.metrics.begin(), s.metrics.end(), needed), s.metrics.end()) << needed;
  for (size_t i = 0; i < s.metrics.size(); ++i) {
    const double v = s.sparo[i][0];
    // Every row has its random-init value on each side that has the row; the raw pixels only
    // in DINO's rows.
    EXPECT_EQ(std::isnan(s.sparo_init[i][0]), std::isnan(v)) << s.metrics[i];
    EXPECT_EQ(std::isnan(s.baseline_init[i][0]), std::isnan(s.baseline[i][0])) << s.metrics[i];
    EXPECT_EQ(std::isnan(s.pixels[i]), s.metrics[i].rfind("DINO", 0) != 0) << s.metrics[i];
    if (s.metrics[i].find("(of L)") != std::string::npos) {
      EXPECT_GE(v, 1);
      EXPECT_LE(v, 4);
      EXPECT_TRUE(std::isnan(s.baseline[i][0]));  // the baseline has no slots
      continue;
    }
    EXPECT_GE(v, 0.0) << s.metrics[i];
    EXPECT_LE(v, 1.0) << s.metrics[i];
  }
  EXPECT_NE(log.str().find("parameters: CLIP "), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("baseline init"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("at its random initialisation"), std::string::npos) << log.str();
  // Raw pixels on Fashion-MNIST are far above chance even on 200 train images.
  const auto knn_row = std::find(s.metrics.begin(), s.metrics.end(), "DINO k-NN top-1 (k=20, T=0.07)") - s.metrics.begin();
  EXPECT_GT(s.pixels[static_cast<size_t>(knn_row)], 0.5);
  EXPECT_TRUE(fs::exists(dir / "out/results.md"));
  EXPECT_TRUE(fs::exists(dir / "out/report.html"));
  EXPECT_TRUE(fs::exists(dir / "out/clip-sparo-seed0/pictures/slots.json"));
  const nlohmann::json results = nlohmann::json::parse(std::ifstream(dir / "out/results.json"));
  EXPECT_EQ(results.at("metrics").size(), s.metrics.size());
  EXPECT_EQ(results.at("runs").size(), 8u);  // 4 trained + the same 4 at their random init
  EXPECT_EQ(results.at("pixels").size(), s.metrics.size());
  // CLIP trains in the experiment's CLIP precision (by default the faster one on this CPU),
  // DINO in f32.
  const auto precision = [&](const char* run) {
    return nlohmann::json::parse(std::ifstream(dir / "out" / run / "config.json")).at("precision").get<std::string>();
  };
  const std::string clip_precision = experiment_clip_precision(o);
  EXPECT_EQ(precision("clip-baseline-seed0"), clip_precision);
  EXPECT_EQ(precision("clip-sparo-seed0"), clip_precision);
  EXPECT_EQ(precision("dino-baseline-seed0"), "f32");
  EXPECT_NE(log.str().find("(" + clip_precision + " matmuls, the faster here)"), std::string::npos) << log.str();

  // A second call evaluates the finished runs again instead of retraining them.
  std::ostringstream again;
  const ExperimentSummary s2 = run_experiment(o, again);
  EXPECT_NE(again.str().find("reusing the finished run"), std::string::npos);
  EXPECT_EQ(s2.sparo, s.sparo);

  // A call with another budget or precision refuses the runs there (their numbers would be
  // reported under this call's budget) and names what differs.
  const auto refused = [&](const ExperimentOptions& other, const std::string& difference) {
    std::ostringstream ignored;
    try {
      run_experiment(other, ignored);
      ADD_FAILURE() << "reused runs of another config (" << difference << ")";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("clip-baseline-seed0 was started with another config"), std::string::npos) << what;
      EXPECT_NE(what.find(difference), std::string::npos) << what;
    }
  };
  ExperimentOptions more_steps = o;
  more_steps.clip_steps = 3;
  refused(more_steps, "steps 2 there, 3 now");
  ExperimentOptions other_precision = o;
  other_precision.clip_precision = clip_precision == "f32" ? "bf16" : "f32";
  refused(other_precision, "precision \"" + clip_precision + "\" there, \"" + other_precision.clip_precision + "\" now");
  fs::remove_all(dir);
}

// "auto" is bf16 only where the CPU multiplies bf16 pairs itself (AVX512_BF16); elsewhere bf16
// would round the inputs for nothing, so f32. Explicit choices pass through; others are refused.
TEST(Experiment, ClipPrecisionAutoIsBf16OnlyWithHardwareBf16) {
  ExperimentOptions o;
  EXPECT_EQ(o.clip_precision, "auto");
  const bool hardware_bf16 = std::string(cpu::sgemm_bf16_kernel_name()).rfind("avx512_bf16", 0) == 0;
  EXPECT_EQ(experiment_clip_precision(o), hardware_bf16 ? "bf16" : "f32") << cpu::sgemm_bf16_kernel_name();
  o.clip_precision = "bf16";
  EXPECT_EQ(experiment_clip_precision(o), "bf16");
  o.clip_precision = "f32";
  EXPECT_EQ(experiment_clip_precision(o), "f32");
  o.clip_precision = "fp16";
  try {
    experiment_clip_precision(o);
    ADD_FAILURE() << "fp16 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"fp16\", expected auto, bf16 or f32"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sparo
