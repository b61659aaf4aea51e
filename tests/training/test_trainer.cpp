// The trainer end to end on tiny models (seconds each): the loss falls for CLIP and DINO,
// resuming equals the uninterrupted run bit for bit, a NaN stops the run naming the last good
// checkpoint, bad configs name the key; plus the pieces: DINO's loss against a double
// reference, checkpoints, the sample order and the prefetcher.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <array>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include "engine/ops.h"
#include "models/clip.h"
#include "models/dino.h"
#include "training/checkpoint.h"
#include "training/data/batches.h"
#include "training/losses.h"
#include "training/optimizer.h"
#include "training/trainer.h"

#include "engine/vulkan/context.h"
#include "engine/vulkan/vulkan_backend.h"
#include "tests/expect_error.h"
#include "tests/temp_dir.h"
#include "tests/vulkan_env.h"

namespace sparo {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Tiny models so a run takes seconds: 2 blocks of width 64 per tower.
const char* kClipModel = R"({"embed_dim": 64, "use_sparo": true, "L": 8, "V": 8,
  "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
  "text_cfg": {"context_length": 24, "vocab_size": 600, "width": 64, "heads": 2, "layers": 2}})";
const char* kDinoModel = R"({"model": "dino", "image_size": 16, "patch_size": 4, "width": 64, "depth": 2, "heads": 2,
  "drop_path_rate": 0.1, "readout": "sparo", "L": 8, "V": 8, "head_hidden": 64, "head_bottleneck": 32, "head_out": 128})";

TrainConfig clip_config(std::vector<std::string> overrides = {}) {
  json j = {{"task", "clip"}, {"model", json::parse(kClipModel)}, {"train_size", 512}, {"steps", 40},
            {"batch_size", 32}, {"lr", 2e-3}, {"warmup_steps", 4}, {"log_every", 1}, {"checkpoint_every", 20}};
  return TrainConfig::from_json(j.dump(), "test clip config", overrides);
}

TrainConfig dino_config(std::vector<std::string> overrides = {}) {
  json j = {{"task", "dino"}, {"model", json::parse(kDinoModel)}, {"steps", 30}, {"batch_size", 16},
            {"lr", 1e-3}, {"warmup_steps", 3}, {"local_crops", 2}, {"local_crop_size", 8}, {"teacher_temp", 0.04},
            {"weight_decay", 0.04}, {"weight_decay_end", 0.4}, {"freeze_last_layer_steps", 2},
            {"log_every", 1}, {"checkpoint_every", 15}};
  return TrainConfig::from_json(j.dump(), "test dino config", overrides);
}

std::vector<double> losses(const std::string& run_dir) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::vector<double> out;
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    if (j.contains("loss")) out.push_back(j.at("loss").get<double>());  // not the monitor's lines
  }
  return out;
}

// The DINO k-NN monitor's lines of a run: (step, teacher, student).
std::vector<std::array<double, 3>> monitor_lines(const std::string& run_dir) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::vector<std::array<double, 3>> out;
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    if (j.contains("knn_teacher"))
      out.push_back({j.at("step").get<double>(), j.at("knn_teacher").get<double>(), j.at("knn_student").get<double>()});
  }
  return out;
}

double mean_of(const std::vector<double>& v, size_t from, size_t n) {
  double s = 0;
  for (size_t i = from; i < from + n; ++i) s += v[i];
  return s / static_cast<double>(n);
}

TrainOptions quiet() {
  static std::ostringstream sink;
  TrainOptions o;
  o.progress = 0;
  o.out = &sink;
  return o;
}

TEST(Trainer, TinyClipRunLossFalls) {
  TempDir dir("clip");
  const TrainResult r = train(clip_config(), dir / "run", quiet());
  EXPECT_EQ(r.last_step, 40);
  const std::vector<double> l = losses(dir / "run");
  ASSERT_EQ(l.size(), 40u);
  // ln(32) ≈ 3.47 is chance for a batch of 32; the loss must come down clearly.
  EXPECT_NEAR(l.front(), std::log(32.0), 0.5);
  EXPECT_LT(mean_of(l, 35, 5), mean_of(l, 0, 5) - 0.3) << "first " << l.front() << " last " << l.back();
  for (const char* f : {"config.json", "metrics.jsonl", "log.txt", "model.safetensors", "tokenizer.txt"})
    EXPECT_TRUE(fs::exists(dir / ("run/" + std::string(f)))) << f;
  EXPECT_EQ(list_checkpoints(dir / "run/checkpoints"), (std::vector<int64_t>{20, 40}));
  // The run directory's config reproduces the run's config (model inline).
  const TrainConfig again = TrainConfig::load(dir / "run/config.json");
  EXPECT_EQ(again.to_json(), clip_config().to_json());
}

TEST(Trainer, TinyDinoRunLossFalls) {
  TempDir dir("dino");
  // Over the first steps the student learns to match the sharpened teacher and the loss
  // falls from its start (~3.9, below ln 128 because the centre starts at 0). Longer tiny
  // runs at this batch size drift back towards ln K (the uniform collapse DINO's centring
  // and sharpening must balance); the experiment, not this test, judges the features.
  train(dino_config({"steps=16"}), dir / "run", quiet());
  const std::vector<double> l = losses(dir / "run");
  ASSERT_EQ(l.size(), 16u);
  EXPECT_LT(mean_of(l, 12, 4), mean_of(l, 0, 4) - 0.3) << "first " << l.front() << " last " << l.back();
  const std::string m = [&] {
    std::ifstream in(dir / "run/metrics.jsonl");
    std::string first;
    std::getline(in, first);
    return first;
  }();
  EXPECT_NE(m.find("teacher_temp"), std::string::npos);
}

TEST(Trainer, DinoMonitorLogsKnnWithoutChangingTheRun) {
  TempDir dir("dino_monitor");
  const std::vector<std::string> base = {"steps=6", "checkpoint_every=6"};
  std::vector<std::string> monitored = base;
  for (const char* o : {"eval_every=3", "monitor_train=200", "monitor_test=100"}) monitored.push_back(o);
  train(dino_config(base), dir / "plain", quiet());
  train(dino_config(monitored), dir / "monitored", quiet());
  // Monitoring draws no random numbers: the losses are the same to the last bit.
  EXPECT_EQ(losses(dir / "monitored"), losses(dir / "plain"));
  const auto lines = monitor_lines(dir / "monitored");
  ASSERT_EQ(lines.size(), 3u);  // steps 0, 3 and 6
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i][0], 3.0 * static_cast<double>(i));
    for (int k : {1, 2}) {
      EXPECT_GT(lines[i][k], 0.15);  // 100 queries, 10 classes: far from 0 even untrained
      EXPECT_LE(lines[i][k], 1.0);
    }
  }
  EXPECT_EQ(lines[0][1], lines[0][2]);  // at step 0 the teacher is the student
  // The other collapse signals are logged at every step.
  std::ifstream in(dir / "monitored/metrics.jsonl");
  std::string first;
  std::getline(in, first);
  std::getline(in, first);  // the first step's line follows the step-0 monitor line
  for (const char* key : {"kl_teacher_student", "center_norm", "teacher_entropy"})
    EXPECT_NE(first.find(key), std::string::npos) << key << " in " << first;
}

TEST(TrainConfig, ModelKeysAndTheBatchScaledLearningRate) {
  const TrainConfig c = dino_config({"model.head_out=256", "lr=5e-4", "lr_reference_batch=256", "batch_size=64"});
  EXPECT_EQ(json::parse(c.model_json).at("head_out"), 256);
  EXPECT_DOUBLE_EQ(c.peak_lr(), 5e-4 * 64 / 256);  // DINO: lr = base_lr × batch / 256
  EXPECT_DOUBLE_EQ(dino_config({"lr=5e-4"}).peak_lr(), 5e-4);  // 0: lr as given
  expect_error([] { dino_config({"model.head_outt=256"}); }, {"head_outt"});
  expect_error([] { dino_config({"grad_clip_mode=layer"}); }, {"grad_clip_mode", "per_parameter"});
  expect_error([] { dino_config({"blur_p_local=1.5"}); }, {"blur_p_local", "[0, 1]"});
}

// Runs `steps` steps, or stops after `stop` and resumes; returns the run's losses.
// The resumed run starts at the last checkpoint before `stop`.
std::vector<double> run_with_interruption(const TrainConfig& cfg, const std::string& dir, int64_t stop) {
  TrainOptions o = quiet();
  if (stop < 0) {
    train(cfg, dir, o);
  } else {
    o.stop_after = stop;
    EXPECT_EQ(train(cfg, dir, o).last_step, stop);
    EXPECT_FALSE(fs::exists(dir + "/model.safetensors"));
    o.stop_after = -1;
    const TrainResult r = resume_training(dir, o);
    EXPECT_EQ(r.first_step, stop / cfg.checkpoint_every * cfg.checkpoint_every);
  }
  return losses(dir);
}

TEST(Trainer, ClipResumeEqualsUninterruptedRun) {
  TempDir dir("clip_resume");
  const TrainConfig cfg = clip_config({"steps=8", "checkpoint_every=4"});
  const std::vector<double> straight = run_with_interruption(cfg, dir / "a", -1);
  // Stopping after step 6 leaves the checkpoint of step 4 and metrics of steps 5–6 that the
  // resumed run must redo (and replace).
  const std::vector<double> resumed = run_with_interruption(cfg, dir / "b", 6);
  ASSERT_EQ(straight.size(), 8u);
  EXPECT_EQ(straight, resumed);  // bitwise: doubles printed by the same code
}

TEST(Trainer, DinoResumeEqualsUninterruptedRun) {
  TempDir dir("dino_resume");
  const TrainConfig cfg = dino_config({"steps=6", "checkpoint_every=3"});
  const std::vector<double> straight = run_with_interruption(cfg, dir / "a", -1);
  const std::vector<double> resumed = run_with_interruption(cfg, dir / "b", 3);
  ASSERT_EQ(straight.size(), 6u);
  EXPECT_EQ(straight, resumed);
}

TEST(Trainer, ResumeIsRefusedWithoutARunAndANewRunDoesNotOverwriteOne) {
  TempDir dir("refuse");
  expect_error([&] { resume_training(dir / "nothing", quiet()); }, {"config.json", "not found"});
  const TrainConfig cfg = clip_config({"steps=1", "warmup_steps=0"});
  train(cfg, dir / "run", quiet());
  expect_error([&] { train(cfg, dir / "run", quiet()); }, {"already holds a run", "--resume"});
}

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(Trainer, AResumeWithABadSettingLeavesTheRunAsItWas) {
  TempDir dir("bad_resume");
  train(dino_config({"steps=4", "checkpoint_every=2"}), dir / "run", quiet());
  const std::string config = read(dir / "run/config.json");
  // A model of another width cannot load the run's checkpoints: the resume fails...
  expect_error([&] { resume_training(dir / "run", quiet(), {"model.width=32", "steps=6"}); }, {"checkpoint"});
  // ...and the run's config is untouched, so the run still resumes with its own settings.
  EXPECT_EQ(read(dir / "run/config.json"), config);
  EXPECT_EQ(resume_training(dir / "run", quiet(), {"steps=6"}).last_step, 6);
  EXPECT_NE(read(dir / "run/config.json").find("\"steps\": 6"), std::string::npos);
}

TEST(Trainer, AResumeWritesTheWeightsARunStoppedBeforeThemLacks) {
  TempDir dir("lost_weights");
  train(dino_config({"steps=4", "checkpoint_every=2"}), dir / "run", quiet());
  const std::string weights = read(dir / "run/model.safetensors");
  fs::remove(dir / "run/model.safetensors");  // as if killed between the last checkpoint and the weights
  std::ostringstream log;
  TrainOptions o = quiet();
  o.out = &log;
  resume_training(dir / "run", o);
  EXPECT_EQ(read(dir / "run/model.safetensors"), weights);  // the teacher of step 4, bit for bit
  EXPECT_NE(log.str().find("wrote its missing"), std::string::npos) << log.str();
}

TEST(Trainer, ARunThatCannotStartLeavesNoConfigBehind) {
  TempDir dir("cannot_start");
  // The data folder is checked when the task is set up, after the config has parsed.
  expect_error([&] { train(dino_config({"data_dir=" + (dir / "no-such-folder")}), dir / "run", quiet()); },
               {"no-such-folder"});
  EXPECT_FALSE(fs::exists(dir / "run/config.json"));
  // So the same --out takes the corrected run, rather than asking for a --resume that cannot work.
  EXPECT_EQ(train(dino_config({"steps=3", "checkpoint_every=3"}), dir / "run", quiet()).last_step, 3);
}

TEST(Trainer, ARunStoppedBeforeItsFirstCheckpointResumesFromStepZero) {
  TempDir dir("no_checkpoint");
  const TrainConfig cfg = clip_config({"steps=4", "checkpoint_every=4"});
  train(cfg, dir / "straight", quiet());
  TrainOptions o = quiet();
  o.stop_after = 2;  // as if killed at step 2: a config.json, metrics of steps 1–2, no checkpoint
  train(cfg, dir / "run", o);
  ASSERT_TRUE(list_checkpoints(dir / "run/checkpoints").empty());
  std::ostringstream log;
  o.stop_after = -1;
  o.out = &log;
  EXPECT_EQ(resume_training(dir / "run", o).first_step, 0);
  EXPECT_NE(log.str().find("no checkpoint yet"), std::string::npos) << log.str();
  EXPECT_EQ(losses(dir / "run"), losses(dir / "straight"));  // each step once, bit for bit
  EXPECT_EQ(read(dir / "run/model.safetensors"), read(dir / "straight/model.safetensors"));
}

TEST(Trainer, ACorruptCheckpointIsSkippedForTheOneBefore) {
  TempDir dir("corrupt_checkpoint");
  train(dino_config({"steps=4", "checkpoint_every=2"}), dir / "run", quiet());
  {  // one flipped bit in the data of the last checkpoint
    std::fstream f(checkpoint_path(dir / "run/checkpoints", 4), std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-5, std::ios::end);
    const char c = static_cast<char>(f.get() ^ 0x10);
    f.seekp(-5, std::ios::end);
    f.put(c);
  }
  std::ostringstream log;
  TrainOptions o = quiet();
  o.out = &log;
  EXPECT_EQ(resume_training(dir / "run", o, {"steps=6"}).first_step, 2);
  EXPECT_NE(log.str().find("warning: cannot resume from " + checkpoint_path(dir / "run/checkpoints", 4)), std::string::npos)
      << log.str();
  EXPECT_NE(log.str().find("corrupt"), std::string::npos) << log.str();
}

// DINO learns, as its authors watch it: the k-NN monitor of teacher and student ends clearly
// above where it starts. A model between the unit tests' and the experiment's (28 px, width
// 64, 2 blocks), which gets there in half a minute.
TEST(Trainer, DinoMonitorRisesAboveItsStepZeroValue) {
  TempDir dir("dino_learns");
  json j = {{"task", "dino"},
            {"model", {{"model", "dino"}, {"image_size", 28}, {"patch_size", 7}, {"width", 64}, {"depth", 2},
                       {"heads", 2}, {"drop_path_rate", 0.1}, {"readout", "sparo"}, {"L", 8}, {"V", 8},
                       {"head_hidden", 128}, {"head_bottleneck", 64}, {"head_out", 256}}},
            {"batch_size", 32}, {"lr", 1e-3}, {"local_crops", 2}, {"local_crop_size", 14},
            {"local_scale_min", 0.15}, {"local_scale_max", 0.4}, {"blur_sigma_max", 1.0}, {"blur_p_local", 0.0},
            {"teacher_temp", 0.04}, {"momentum_teacher", 0.99}, {"grad_clip_mode", "per_parameter"},
            {"monitor_train", 500}, {"monitor_test", 250}, {"log_every", 50}};
#ifdef NDEBUG
  const int64_t steps = 300;
#else  // the sanitizer build (Debug) is tens of times slower: it runs the code, not the claim
  const int64_t steps = 6;
#endif
  j["steps"] = steps;
  j["warmup_steps"] = steps / 10;
  j["eval_every"] = steps / 2;
  j["checkpoint_every"] = steps;
  train(TrainConfig::from_json(j.dump(), "dino learns config"), dir / "run", quiet());
  const auto lines = monitor_lines(dir / "run");
  ASSERT_EQ(lines.size(), 3u);
#ifdef NDEBUG
  // 250 test images: 0.03 is 8 more of them right. Measured: teacher 0.552 → 0.620,
  // student 0.552 → 0.660.
  EXPECT_GT(lines.back()[1], lines.front()[1] + 0.03) << "teacher";
  EXPECT_GT(lines.back()[2], lines.front()[2] + 0.03) << "student";
#endif
}

TEST(Trainer, ClipRefusesABatchLargerThanItsData) {
  TempDir dir("small_data");
  // 20 scenes in batches of 32 would put pairs in a batch twice, each the other's negative.
  expect_error([&] { train(clip_config({"train_size=20"}), dir / "run", quiet()); },
               {"20 pairs", "fewer than batch_size 32"});
}

TEST(Trainer, NonFiniteLossStopsNamingTheStepAndTheLastCheckpoint) {
  TempDir dir("nan");
  // An absurd learning rate blows the weights up within a few steps.
  const TrainConfig cfg = clip_config({"lr=1e30", "warmup_steps=0", "grad_clip=0", "checkpoint_every=1", "steps=20"});
  try {
    train(cfg, dir / "run", quiet());
    FAIL() << "expected the run to stop on a non-finite loss";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("the loss is"), std::string::npos) << m;
    EXPECT_NE(m.find("Last good checkpoint: " + (dir / "run/checkpoints/step-")), std::string::npos) << m;
  }
}

TEST(TrainConfig, BadConfigsNameTheKey) {
  expect_error([] { clip_config({"stpes=10"}); }, {"unknown key \"stpes\"", "steps"});
  expect_error([] { clip_config({"steps=ten"}); }, {".steps", "expected an integer", "\"ten\""});
  expect_error([] { clip_config({"batch_size=0"}); }, {".batch_size", "must be > 0"});
  expect_error([] { clip_config({"dataset=fashion-mnist"}); }, {".dataset", "fashion-scenes"});
  expect_error([] { clip_config({"lr=-1"}); }, {".lr", ">= 0"});
  expect_error([] { clip_config({"grad_overlap=1"}); }, {".grad_overlap", "expected true or false", "1"});
  expect_error([] { clip_config({"grad_bucket_mib=0"}); }, {".grad_bucket_mib", "(0, 1024]"});
  EXPECT_FALSE(clip_config({"grad_overlap=false"}).grad_overlap);
  EXPECT_TRUE(clip_config({}).grad_overlap);  // the default
  expect_error([] { TrainConfig::from_json(R"({"task": "clip"})", "cfg.json"); }, {"cfg.json", "missing \"model\""});
  expect_error([] { TrainConfig::from_json(R"({"task": "clip", "model": "nowhere.json"})", "cfg.json"); },
               {"cfg.json.model", "nowhere.json"});
  expect_error([] { TrainConfig::from_json("{\"steps\": 3,", "cfg.json"); }, {"cfg.json", "not valid JSON"});
  expect_error([] { clip_config({"model={\"embed_dim\": 8, \"vison_cfg\": {}}"}); }, {"vison_cfg"});
  // A number no double holds was a bare json::out_of_range that named neither key nor value.
  expect_error([] { clip_config({"lr=1e400"}); },
               {"--set lr=1e400", "value 1e400 of \"lr\" is out of range", "expected a finite number"});
  expect_error([] { TrainConfig::from_json(R"({"task": "clip", "lr": 1e400})", "cfg.json"); },
               {"cfg.json.lr:", "1e400", "expected a finite number"});
  // A key given twice kept the last value silently; now it is an error, in the model object too.
  expect_error([] { TrainConfig::from_json(R"({"steps": 3, "task": "clip", "steps": 5})", "cfg.json"); },
               {"cfg.json", "key \"steps\" appears twice"});
  expect_error([] { TrainConfig::from_json(R"({"model": {"vision_cfg": {"width": 64, "width": 32}}})", "cfg.json"); },
               {"cfg.json", "key \"model.vision_cfg.width\" appears twice"});
  expect_error([] { clip_config({"model.text_cfg={\"width\": 64, \"width\": 32}"}); },
               {"--set text_cfg", "key \"width\" appears twice"});
  // A key or value that is not UTF-8 passed and made the resolved config's JSON throw a bare
  // json::type_error (found by fuzz/fuzz_train_config.cpp).
  expect_error([] { clip_config({"csv_path=t\xe8.tsv"}).to_json(); }, {"--set csv_path=", "the value is not valid UTF-8"});
  expect_error([] { clip_config({"model.embed_dim\xe8=96"}); }, {"--set embed_dim", "the key is not valid UTF-8"});
  // The same key in two objects is no duplicate (kClipModel has "width" in both towers).
  EXPECT_NO_THROW(clip_config());
  // Numbers are used as 32-bit floats: 1e300 became inf, 1e-300 became 0 (a division by zero).
  expect_error([] { dino_config({"teacher_temp=1e-300"}); }, {".teacher_temp", "1e-300", "32-bit float"});
  expect_error([] { clip_config({"max_logit_scale=1e300"}); }, {".max_logit_scale", "1e+300", "32-bit float"});
  expect_error([] { clip_config({"lr=1e30", "lr_reference_batch=1e-30"}); }, {".lr", "beyond what a 32-bit float holds"});
  EXPECT_NO_THROW(clip_config({"min_lr=0", "lr=3e38"}));
  expect_error([] { clip_config({"scene_group_size=9"}); }, {".scene_group_size", "[1, 8]", "got 9"});
  expect_error([] { clip_config({"scene_group_size=3"}); }, {".scene_group_size", "must divide batch_size 32"});
  expect_error([] { dino_config({"scene_group_size=2"}); }, {".scene_group_size", "fashion-scenes (clip only)"});
  expect_error([] { clip_config({"scene_group_size=4", "scene_lookalike=1.5"}); }, {".scene_lookalike", "[0, 1]"});
  expect_error([] { clip_config({"scene_group_size=1", "scene_lookalike=0.5"}); },
               {".scene_lookalike", "needs scene_group_size > 1"});
  expect_error([] { clip_config({"precision=fp16"}); }, {".precision", "must be f32 or bf16", "\"fp16\""});
}

// precision=bf16 trains (finite losses that follow the f32 run's) and really multiplies in
// bf16 (the losses are not the f32 run's bits); the resolved config keeps it for --resume.
TEST(Trainer, ClipTrainsWithBf16Matmuls) {
  TempDir dir("clip-bf16");
  train(clip_config({"steps=4"}), dir / "f32", quiet());
  train(clip_config({"steps=4", "precision=bf16"}), dir / "bf16", quiet());
  const std::vector<double> f32 = losses(dir / "f32"), bf16 = losses(dir / "bf16");
  ASSERT_EQ(f32.size(), 4u);
  ASSERT_EQ(bf16.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(std::isfinite(bf16[i])) << i;
    EXPECT_NEAR(bf16[i], f32[i], 0.02 * std::fabs(f32[i])) << i;
  }
  EXPECT_NE(bf16, f32);
  std::ifstream config(dir / "bf16/config.json");
  const std::string text((std::istreambuf_iterator<char>(config)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"precision\": \"bf16\""), std::string::npos) << text;
  EXPECT_EQ(matmul_precision(), MatmulPrecision::f32) << "the run must not leave bf16 set";
}

TEST(Trainer, ClipTrainsOnSceneGroups) {
  TempDir dir("clip-groups");
  const TrainResult r = train(clip_config({"scene_group_size=4", "steps=6"}), dir / "run", quiet());
  EXPECT_EQ(r.last_step, 6);
  const std::vector<double> l = losses(dir / "run");
  ASSERT_EQ(l.size(), 6u);
  for (double v : l) EXPECT_TRUE(std::isfinite(v));
  std::ifstream log(dir / "run/log.txt");
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("in groups of 4 sharing places and colours"), std::string::npos) << text;
}

// Train configs and the model configs they name are read up to kMaxConfigBytes (16 MiB): past
// it they are refused naming the file and the cap, where /dev/zero was read until std::bad_alloc.
// (The /dev/zero read runs in a child process with 4 GiB of address space, so that a reader
// without the cap fails quickly there.)
TEST(TrainConfig, ConfigFilesAreCappedInSize) {
  expect_error_within(20, [] { limit_address_space(4ull << 30); TrainConfig::load("/dev/zero"); },
                      "train config /dev/zero: more than 16 MiB \\(16777216 bytes\\), the limit for a config file");
  const TempDir dir("train_config_cap");
  const std::string model = dir / "model.json";
  std::ofstream(model) << "{}";
  ASSERT_EQ(::truncate(model.c_str(), static_cast<off_t>(kMaxConfigBytes + 1)), 0) << model;  // sparse: no disk used
  expect_error([&] { TrainConfig::from_json(R"({"task": "dino", "model": ")" + model + "\"}", "cfg.json"); },
               {"model config " + model + ": more than 16 MiB"});
}

// An integer past int64 wrapped to a negative value, reported as that; batch_size × accum_steps
// overflowed in samples_per_step() (undefined behaviour, which UBSan reports in
// fuzz/fuzz_train_config.cpp).
TEST(TrainConfig, IntegersAndTheBatchProductStayWithin64Bits) {
  expect_error([] { clip_config({"steps=18446744073709551615"}); },
               {".steps: expected an integer (at most 2^63 - 1), got 18446744073709551615"});
  expect_error([] { clip_config({"batch_size=4611686018427387904", "accum_steps=4"}); },
               {".accum_steps: batch_size × accum_steps = 4611686018427387904 × 4 is beyond 64-bit integers"});
  EXPECT_EQ(clip_config({"steps=9223372036854775807", "warmup_steps=0"}).steps, INT64_MAX);
}

TEST(TrainConfig, PresetsLoad) {
  for (const char* name : {"clip-tiny", "clip-tiny-sparo", "dino-tiny", "dino-tiny-sparo"}) {
    const TrainConfig c = TrainConfig::load(std::string(SPARO_SOURCE_DIR) + "/training/configs/" + name + ".json");
    EXPECT_EQ(c.task, std::string(name).substr(0, 4)) << name;
  }
  // A pair differs only in its model: same data, groups, schedule and seed (a fair comparison).
  for (const char* pair : {"clip-tiny", "dino-tiny"}) {
    const std::string base = std::string(SPARO_SOURCE_DIR) + "/training/configs/" + pair;
    json baseline = json::parse(TrainConfig::load(base + ".json").to_json());
    json sparo = json::parse(TrainConfig::load(base + "-sparo.json").to_json());
    baseline.erase("model");
    sparo.erase("model");
    EXPECT_EQ(baseline, sparo) << pair;
  }
  EXPECT_EQ(TrainConfig::load(std::string(SPARO_SOURCE_DIR) + "/training/configs/clip-tiny.json").scene_group_size, 4);
}

#if defined(SPARO_HAVE_VULKAN)
// The same tiny runs on Vulkan (lavapipe, validation on) follow the CPU's losses: the whole
// step — forward, backward, clipping, AdamW, the logit-scale clamp, DINO's EMA and centre —
// runs on the device.
TEST(TrainerVulkan, TinyRunsFollowTheCpu) {
  use_lavapipe_with_validation();
  vk::clear_validation_messages();
  TempDir dir("vulkan");
  const std::vector<std::pair<std::string, TrainConfig>> runs = {
      {"clip", clip_config({"steps=3", "batch_size=8", "warmup_steps=1", "checkpoint_every=3"})},
      {"dino", dino_config({"steps=3", "batch_size=4", "warmup_steps=1", "checkpoint_every=3"})}};
  for (const auto& [name, cfg] : runs) {
    train(cfg, dir / (name + "-cpu"), quiet());
    TrainConfig on_gpu = cfg;
    on_gpu.device = "vulkan";
    std::ostringstream log;
    TrainOptions options = quiet();
    options.out = &log;
    train(on_gpu, dir / (name + "-vulkan"), options);
    // The memory report of the run: a non-zero peak of device tensors.
    const size_t at = log.str().find("memory on vulkan: peak ");
    ASSERT_NE(at, std::string::npos) << log.str();
    EXPECT_GT(std::stod(log.str().substr(at + 23)), 0.0) << log.str().substr(at);
    const std::vector<double> cpu = losses(dir / (name + "-cpu")), gpu = losses(dir / (name + "-vulkan"));
    ASSERT_EQ(cpu.size(), gpu.size()) << name;
    for (size_t i = 0; i < cpu.size(); ++i) EXPECT_NEAR(gpu[i], cpu[i], 2e-3 * std::abs(cpu[i])) << name << " step " << i + 1;
  }
  const auto messages = vk::validation_messages();
  EXPECT_TRUE(messages.empty()) << messages.size() << " validation message(s), first: " << messages[0];
}

// Forward, backward, gradient clipping and AdamW stay on the device: nothing is read back
// (token ids included: the embedding checks them on the device) until the loss is asked for.
TEST(TrainerVulkan, AClipStepReadsNothingBackUntilTheLossIsAskedFor) {
  use_lavapipe_with_validation();
  const Device gpu = Device::vulkan(0);
  auto& backend = static_cast<vk::VulkanBackend&>(backend_for(gpu));
  Clip model(ClipConfig::from_json(kClipModel, "test clip model"), 0);
  to_device(model, gpu);
  std::vector<Tensor> params;
  for (const auto& [name, p] : model.named_parameters()) params.push_back(p);
  AdamW optimizer(split_weight_decay(model.named_parameters(), 0.2f), 1e-3f);
  Generator gen(3);
  const Tensor images = Tensor::randn({4, 3, 32, 32}, gen).to(gpu);
  std::vector<int32_t> ids(4 * 24, 0);
  for (int b = 0; b < 4; ++b) ids[b * 24] = 598, ids[b * 24 + 1] = 10 + b, ids[b * 24 + 2] = 599;
  const Tensor text = Tensor::from_vector(ids, {4, 24}).to(gpu);
  backend.synchronize();
  const uint64_t reads = backend.host_reads();
  Tensor loss;
  for (int step = 0; step < 2; ++step) {
    optimizer.zero_grad();
    loss = clip_loss(model.forward(images, text).logits_per_image);
    loss.backward();
    clip_grad_norm(params, 1.0f);
    optimizer.step();
  }
  EXPECT_EQ(backend.host_reads(), reads);
  EXPECT_TRUE(std::isfinite(loss.item()));
  EXPECT_EQ(backend.host_reads(), reads + 1);
}
#endif

// DINO's loss against the formula evaluated in double.
TEST(DinoLoss, MatchesTheFormulaAndMovesTheCentre) {
  const int64_t B = 3, K = 5, crops = 4;
  Generator gen(7);
  const Tensor student = Tensor::randn({crops * B, K}, gen).requires_grad_();
  const Tensor teacher = Tensor::randn({2 * B, K}, gen);
  DinoLoss loss_fn(K, crops, 0.1f, 0.9f);
  const std::vector<float> c0 = {0.1f, -0.2f, 0.3f, 0.0f, 0.05f};
  copy_(loss_fn.center, Tensor::from_vector(c0, {1, K}));
  const float tt = 0.04f;
  const Tensor loss = loss_fn(student, teacher, tt);

  const std::vector<float> s = student.to_float_vector(), t = teacher.to_float_vector();
  const auto row_softmax = [&](const std::vector<float>& v, int64_t row, double temp, const float* shift, bool log) {
    std::vector<double> out(K);
    double mx = -1e300;
    for (int64_t k = 0; k < K; ++k) mx = std::max(mx, (v[row * K + k] - (shift ? shift[k] : 0.0)) / temp);
    double z = 0;
    for (int64_t k = 0; k < K; ++k) z += std::exp((v[row * K + k] - (shift ? shift[k] : 0.0)) / temp - mx);
    for (int64_t k = 0; k < K; ++k) {
      const double x = (v[row * K + k] - (shift ? shift[k] : 0.0)) / temp - mx;
      out[k] = log ? x - std::log(z) : std::exp(x) / z;
    }
    return out;
  };
  double expected = 0;
  for (int64_t iq = 0; iq < 2; ++iq)
    for (int64_t v = 0; v < crops; ++v) {
      if (v == iq) continue;
      for (int64_t b = 0; b < B; ++b) {
        const auto q = row_softmax(t, iq * B + b, tt, c0.data(), false);
        const auto p = row_softmax(s, v * B + b, 0.1, nullptr, true);
        for (int64_t k = 0; k < K; ++k) expected -= q[k] * p[k] / static_cast<double>(B);
      }
    }
  expected /= 2.0 * (crops - 1);
  EXPECT_NEAR(loss.item(), expected, 1e-4 * std::abs(expected));

  // The collapse signals: the teacher rows' mean entropy and the entropy of their mean.
  double row_entropy = 0;
  std::vector<double> q_mean(K, 0.0);
  for (int64_t r = 0; r < 2 * B; ++r) {
    const auto q = row_softmax(t, r, tt, c0.data(), false);
    for (int64_t k = 0; k < K; ++k) {
      row_entropy -= q[k] * std::log(q[k]) / static_cast<double>(2 * B);
      q_mean[k] += q[k] / static_cast<double>(2 * B);
    }
  }
  double batch_entropy = 0;
  for (int64_t k = 0; k < K; ++k) batch_entropy -= q_mean[k] * std::log(q_mean[k]);
  EXPECT_NEAR(loss_fn.teacher_entropy.item(), row_entropy, 1e-4);
  EXPECT_NEAR(loss_fn.teacher_batch_entropy.item(), batch_entropy, 1e-4);
  EXPECT_LT(row_entropy, batch_entropy);  // sharp rows that disagree: no collapse in this case

  const std::vector<float> c1 = loss_fn.center.to_float_vector();
  for (int64_t k = 0; k < K; ++k) {
    double m = 0;
    for (int64_t r = 0; r < 2 * B; ++r) m += t[r * K + k];
    EXPECT_NEAR(c1[k], 0.9 * c0[k] + 0.1 * m / (2 * B), 1e-6);
  }
  loss.backward();
  EXPECT_TRUE(student.grad().defined());
  expect_error([&] { loss_fn(student, Tensor::zeros({2 * B + 1, K}), tt); }, {"teacher output", "[7, 5]"});
}

TEST(DinoBackbone, PositionEmbeddingIsResampledForOtherCropSizes) {
  DinoConfig c = DinoConfig::from_json(kDinoModel);
  Dino model(c, 3);
  // At the trained size the table is used as is.
  EXPECT_EQ(model.backbone.position_embedding(4).to_float_vector(), model.backbone.pos_embed.to_float_vector());
  // A constant table stays constant (the cubic weights of each output sum to 1).
  fill_(model.backbone.pos_embed, 0.25f);
  for (float v : model.backbone.position_embedding(2).to_float_vector()) EXPECT_NEAR(v, 0.25f, 1e-6f);
  // Smaller crops run and send gradient to the table.
  Generator gen(1);
  const Tensor crops = Tensor::randn({2, 3, 8, 8}, gen);
  sum(model.backbone.forward(crops).embedding).backward();
  EXPECT_TRUE(model.backbone.pos_embed.grad().defined());
  expect_error([&] { model.backbone.forward(Tensor::zeros({1, 3, 10, 10})); }, {"multiple of the patch size 4"});
}

TEST(Checkpoint, RoundTripsAndRejectsForeignFiles) {
  TempDir dir("ckpt");
  Checkpoint c;
  c.step = 12;
  c.generator_seed = 5;
  c.generator_offset = 99;
  c.model = {{"w", Tensor::from_vector(std::vector<float>{1, 2, 3}, {3})}};
  c.optimizer = {{"adamw.step_count", Tensor::from_vector(std::vector<int32_t>{12}, {})}};
  c.extra = {{"center", Tensor::zeros({1, 2})}};
  const std::string path = checkpoint_path(dir.path(), 12);
  save_checkpoint(path, c);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  const Checkpoint back = load_checkpoint(path);
  EXPECT_EQ(back.step, 12);
  EXPECT_EQ(back.generator_offset, 99u);
  ASSERT_EQ(back.model.size(), 1u);
  EXPECT_EQ(back.model[0].second.to_float_vector(), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(list_checkpoints(dir.path()), std::vector<int64_t>{12});
  // A step number past int64 threw std::stoll's bare std::out_of_range ("stoll").
  std::ofstream(dir / "step-99999999999999999999.safetensors").put('x');
  expect_error([&] { list_checkpoints(dir.path()); },
               {dir.path(), "step-99999999999999999999.safetensors", "larger than int64", "9223372036854775807"});
  fs::remove(dir / "step-99999999999999999999.safetensors");
  save_safetensors(dir / "plain.safetensors", c.model);
  expect_error([&] { load_checkpoint(dir / "plain.safetensors"); }, {"plain.safetensors", "not a sparo training checkpoint"});
}

TEST(Trainer, AFullDiskStopsTheRunNamingTheFile) {
  TempDir dir("full_disk");
  for (const char* file : {"metrics.jsonl", "log.txt"}) {
    const fs::path run = dir / file;
    fs::create_directories(run);
    fs::create_symlink("/dev/full", run / file);  // every write fails with ENOSPC
    expect_error([&] { train(dino_config({"steps=3"}), run, quiet()); }, {(run / file).string(), "No space left"});
  }
}

TEST(Checkpoint, AFailedAtomicWriteSaysWhyAndLeavesNoTemporaryFile) {
  TempDir dir("atomic_write");
  write_text_atomic(dir / "a.txt", "one");
  write_text_atomic(dir / "a.txt", "two");
  EXPECT_EQ(read(dir / "a.txt"), "two");
  // A directory in the way: the rename fails.
  fs::create_directories(dir / "taken/inside");
  expect_error([&] { write_text_atomic(dir / "taken", "text"); }, {dir / "taken", "renaming", "directory"});
  EXPECT_FALSE(fs::exists(dir / "taken.tmp"));
}

TEST(SampleOrder, EachEpochIsAPermutationDrawnFromTheSeed) {
  SampleOrder a(10, 1), b(10, 1), c(10, 2);
  std::vector<int64_t> first, second, other;
  for (int64_t k = 0; k < 10; ++k) first.push_back(a[k]);
  for (int64_t k = 10; k < 20; ++k) second.push_back(a[k]);
  for (int64_t k = 0; k < 10; ++k) other.push_back(c[k]);
  EXPECT_EQ(std::set<int64_t>(first.begin(), first.end()).size(), 10u);
  EXPECT_EQ(std::set<int64_t>(second.begin(), second.end()).size(), 10u);
  EXPECT_NE(first, second);
  EXPECT_NE(first, other);
  EXPECT_EQ(b[15], second[5]);  // random access: position 15 without reading 0–14 first
  EXPECT_EQ(b[3], first[3]);
}

TEST(Prefetcher, GivesBatchKInAnyOrderAndReportsErrors) {
  std::atomic<int> calls{0};
  Prefetcher<int64_t> p([&](int64_t k) {
    ++calls;
    if (k == 7) throw Error("batch 7 is bad");
    return k * k;
  });
  EXPECT_EQ(p.get(0), 0);
  EXPECT_EQ(p.get(1), 1);  // prepared in the background
  EXPECT_EQ(p.get(5), 25); // a jump: prepared on the spot
  EXPECT_EQ(p.get(6), 36);
  expect_error([&] { p.get(7); }, {"batch 7 is bad"});
}

}  // namespace
}  // namespace sparo
