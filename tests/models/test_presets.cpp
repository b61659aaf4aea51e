// The model presets in models/configs/: every one parses; the tiny ones build and run;
// ViT-B-32 has exactly OpenCLIP's parameter count.
#include <gtest/gtest.h>

#include <cfloat>
#include <filesystem>

#include "models/clip.h"
#include "models/dino.h"
#include "tests/expect_error.h"

namespace sparo {
namespace {

const std::string kConfigs = std::string(SPARO_SOURCE_DIR) + "/models/configs/";

TEST(Presets, EveryPresetParses) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kConfigs)) {
    const std::string path = entry.path().string();
    if (path.find("DINO") != std::string::npos || path.find("dino") != std::string::npos) DinoConfig::load(path);
    else ClipConfig::load(path);
    ++count;
  }
  EXPECT_GE(count, 9);
}

TEST(Presets, ViTB32HasOpenClipsParameterCount) {
  const Clip model(ClipConfig::load(kConfigs + "ViT-B-32.json"));
  EXPECT_EQ(model.parameter_count(), 151277313);  // OpenCLIP ViT-B-32
}

TEST(Presets, TinyModelsRun) {
  Generator gen(0);
  const Tensor images = Tensor::randn({2, 3, 32, 32}, gen);
  std::vector<int32_t> ids(64, 0);
  ids[0] = 1022, ids[1] = 5, ids[2] = 1023;  // start, a token, end of text (the largest id)
  ids[32] = 1022, ids[33] = 1023;
  const Tensor text = Tensor::from_vector(ids, {2, 32});
  // SPARO's embedding is its L·V slot values (48 · 16); the baseline projects to embed_dim.
  for (const auto& [name, dim] : {std::pair{"tiny-clip.json", 512}, std::pair{"tiny-clip-sparo.json", 768}}) {
    const Clip model(ClipConfig::load(kConfigs + name));
    const ClipOutput out = model.forward(images, text);
    EXPECT_EQ(out.image_embeds.shape(), (Shape{2, dim})) << name;
    EXPECT_NEAR(sum(square(out.text_embeds)).item(), 2.0f, 1e-4) << name << ": unit-norm embeddings";
    std::cout << "[ preset ] " << name << ": " << model.parameter_count() << " parameters\n";
  }
  for (const char* name : {"tiny-dino.json", "tiny-dino-sparo.json", "micro-dino.json", "micro-dino-sparo.json"}) {
    const Dino model(DinoConfig::load(kConfigs + name));
    const int64_t S = model.cfg.image_size;  // Fashion-MNIST's own 28 pixels
    const Tensor head = model.head.forward(model.backbone.forward(Tensor::randn({2, 3, S, S}, gen)).embedding);
    EXPECT_EQ(head.shape(), (Shape{2, model.cfg.head_out})) << name;
    std::cout << "[ preset ] " << name << ": " << model.parameter_count() << " parameters\n";
  }
}

TEST(Presets, BadConfigsGiveClearErrors) {
  EXPECT_THROW(ClipConfig::from_json("{\"embed_dim\": 8, \"vision_cfg\": {\"widht\": 3}}"), Error);
  try {
    ClipConfig::from_json("{\"embed_dim\": 8, \"vision_cfg\": {\"widht\": 3}}", "my.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("my.json.vision_cfg: unknown key \"widht\""), std::string::npos) << e.what();
  }
  try {
    ClipConfig::from_json("{\"use_sparo\": true, \"L\": 6, \"sparo_heads\": 4}", "s.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sparo_heads 4 must divide L 6"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ClipConfig::from_json("{\"embed_dim\": \"big\"}"), Error);
  EXPECT_THROW(ClipConfig::from_json("[1, 2]"), Error);
  EXPECT_THROW(ClipConfig::load("/nonexistent.json"), Error);
  EXPECT_THROW(DinoConfig::from_json("{\"readout\": \"mean\"}"), Error);
}

// A config file is read up to kMaxConfigBytes (16 MiB): /dev/zero given as a config is refused
// naming it and the cap, where the reader ran until std::bad_alloc. (In a child process with
// 4 GiB of address space, so that a reader without the cap fails quickly there.)
TEST(Presets, ConfigFilesAreCappedInSize) {
  expect_error_within(20, [] { limit_address_space(4ull << 30); ClipConfig::load("/dev/zero"); },
                      "config /dev/zero: more than 16 MiB \\(16777216 bytes\\), the limit for a config file");
  expect_error_within(20, [] { limit_address_space(4ull << 30); DinoConfig::load("/dev/zero"); },
                      "config /dev/zero: more than 16 MiB");
}

// Every size is checked when the config is read, naming the file and the field: these passed
// the old checks (0 is a multiple of everything) and failed later inside a reshape, or not at all.
TEST(Presets, NonPositiveSizesAreErrorsNamingTheField) {
  const auto clip = [](const std::string& fields, std::initializer_list<std::string> fragments) {
    expect_error([&] { ClipConfig::from_json("{" + fields + "}", "c.json"); }, fragments);
  };
  clip(R"("vision_cfg": {"image_size": 0})", {"c.json: vision_cfg.image_size must be positive, got 0"});
  clip(R"("vision_cfg": {"layers": 0})", {"c.json: vision_cfg.layers must be positive, got 0"});
  clip(R"("vision_cfg": {"mlp_ratio": 0})", {"c.json: vision_cfg.mlp_ratio must be a positive finite number, got 0"});
  clip(R"("vision_cfg": {"mlp_ratio": -2})", {"vision_cfg.mlp_ratio", "got -2"});
  clip(R"("vision_cfg": {"width": 64, "head_width": 32, "mlp_ratio": 0.01})",
       {"vision_cfg.mlp_ratio 0.01 with width 64 gives 0.64 MLP units; expected at least 1"});
  clip(R"("text_cfg": {"width": 0})", {"c.json: text_cfg.width must be positive, got 0"});
  clip(R"("text_cfg": {"width": -8})", {"text_cfg.width", "got -8"});
  clip(R"("text_cfg": {"layers": 0})", {"text_cfg.layers must be positive"});
  clip(R"("bottleneck_dim": -1)", {"c.json: bottleneck_dim must be positive (or 0 / null: no bottleneck), got -1"});
  clip(R"("use_sparo": true, "sparo_attn_dim": -4)",
       {"c.json: sparo_attn_dim must be positive (or 0 / null: the encoder's head width), got -4"});
  clip(R"("use_sparo": true, "share_kv": false, "sparo_value_dim": -1)", {"sparo_value_dim", "got -1"});
  clip(R"("use_sparo": true, "V": 0)", {"c.json: V must be positive, got 0"});
  const auto dino = [](const std::string& fields, std::initializer_list<std::string> fragments) {
    expect_error([&] { DinoConfig::from_json("{" + fields + "}", "d.json"); }, fragments);
  };
  dino(R"("image_size": 0)", {"d.json: image_size must be positive, got 0"});
  dino(R"("mlp_ratio": 0)", {"d.json: mlp_ratio must be a positive finite number"});
  dino(R"("head_out": 0)", {"d.json: head_out must be positive, got 0"});
  dino(R"("head_hidden": -1)", {"head_hidden", "got -1"});
  dino(R"("head_bottleneck": 0)", {"head_bottleneck"});
  dino(R"("drop_path_rate": 1.5)", {"d.json: drop_path_rate must be in [0, 1], got 1.5"});
  dino(R"("readout": "sparo", "sparo_heads": -2)", {"sparo_heads", "got -2"});
  // 0 (or null) keeps meaning "the default" where it did.
  EXPECT_NO_THROW(ClipConfig::from_json(R"({"use_sparo": true, "sparo_attn_dim": 0, "bottleneck_dim": null})"));
}

// A key given twice silently kept the last value; a number no double holds threw json's own error.
TEST(Presets, DuplicateKeysAndOutOfRangeNumbersAreErrorsNamingTheKey) {
  expect_error([] { ClipConfig::from_json(R"({"embed_dim": 8, "embed_dim": 16})", "c.json"); },
               {"c.json: key \"embed_dim\" appears twice"});
  expect_error([] { ClipConfig::from_json(R"({"text_cfg": {"heads": 2, "width": 64, "heads": 4}})", "c.json"); },
               {"c.json: key \"text_cfg.heads\" appears twice"});
  expect_error([] { DinoConfig::from_json(R"({"width": 64, "norm_eps": -1e400})", "d.json"); },
               {"d.json.norm_eps:", "1e400", "expected a finite number"});
}

// A float field's number past a 32-bit float's range became inf (converting it is undefined
// behaviour besides): norm_eps 1e39 passed the "positive" check and was written back by
// to_json as null, so the config changed through to_json + from_json (fuzz_model_config).
TEST(Presets, FloatFieldsRefuseNumbersPastAFloatsRange) {
  expect_error([] { DinoConfig::from_json(R"({"norm_eps": 1e39})", "d.json"); },
               {"d.json.norm_eps: 1e+39 is outside what a 32-bit float holds"});
  expect_error([] { DinoConfig::from_json(R"({"norm_eps": 1e-300})", "d.json"); }, {"d.json.norm_eps: 1e-300 is outside"});
  expect_error([] { ClipConfig::from_json(R"({"vision_cfg": {"mlp_ratio": -4e38}})", "c.json"); },
               {"c.json.vision_cfg.mlp_ratio: -4e+38 is outside"});
  // The largest float and 0 still read (0 then fails where the field must be positive).
  EXPECT_EQ(DinoConfig::from_json(R"({"norm_eps": 3.4028234663852886e38})").norm_eps, FLT_MAX);
  EXPECT_EQ(DinoConfig::from_json(R"({"drop_path_rate": 0})").drop_path_rate, 0.0f);
  const DinoConfig big = DinoConfig::from_json(R"({"norm_eps": 3e38})");
  EXPECT_EQ(DinoConfig::from_json(big.to_json()).to_json(), big.to_json());
}

// json cast a float given for an integer field to the integer (1e300: undefined behaviour,
// which UBSan reports in fuzz/fuzz_model_config.cpp; 2.5: silently 2) and wrapped an
// unsigned past int64 to a negative value.
TEST(Presets, IntegerFieldsRefuseFloatsAndValuesPast64Bits) {
  expect_error([] { ClipConfig::from_json(R"({"embed_dim": 1e300})", "c.json"); },
               {"c.json.embed_dim: expected an integer (at most 2^63 - 1), got 1e+300"});
  expect_error([] { ClipConfig::from_json(R"({"vision_cfg": {"layers": 18446744073709551615}})", "c.json"); },
               {"c.json.vision_cfg.layers: expected an integer", "18446744073709551615"});
  expect_error([] { DinoConfig::from_json(R"({"width": 2.5})", "d.json"); }, {"d.json.width: expected an integer", "2.5"});
  expect_error([] { DinoConfig::from_json(R"({"readout": "sparo", "L": 4.0})", "d.json"); }, {"d.json.L: expected an integer"});
  // Integers still do for float fields.
  EXPECT_EQ(DinoConfig::from_json(R"({"mlp_ratio": 2})").mlp_ratio, 2.0f);
}

// json dumps recursively: a model config nested 200000 levels deep overflowed the stack in
// the error message quoting it (and in a train config's model text); found with the config
// harnesses of fuzz/, which the fuzzer's 4 KB inputs do not reach.
TEST(Presets, DeeplyNestedJsonIsAnError) {
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  expect_error_within(60, [&] { ClipConfig::from_json("{\"embed_dim\": " + deep + "}", "c.json"); },
                      "c.json: nested more than 64 levels deep");
  expect_error_within(60, [&] { DinoConfig::from_json("{\"readout\": " + deep + "}", "d.json"); },
                      "d.json: nested more than 64 levels deep");
  const std::string ok = std::string(60, '[') + std::string(60, ']');
  expect_error([&] { ClipConfig::from_json("{\"embed_dim\": " + ok + "}", "c.json"); }, {"c.json.embed_dim: expected an integer"});
}

// The experiment compares each SPARO preset with its baseline at (nearly) equal parameter
// counts: SPARO's read-out is paid for with one block fewer (docs/RESULTS.md).
TEST(Presets, SparoPresetsMatchTheirBaselinesInParameters) {
  const double clip = static_cast<double>(Clip(ClipConfig::load(kConfigs + "tiny-clip.json")).parameter_count());
  const double clip_sparo = static_cast<double>(Clip(ClipConfig::load(kConfigs + "tiny-clip-sparo.json")).parameter_count());
  const double dino = static_cast<double>(Dino(DinoConfig::load(kConfigs + "tiny-dino.json")).parameter_count());
  const double dino_sparo = static_cast<double>(Dino(DinoConfig::load(kConfigs + "tiny-dino-sparo.json")).parameter_count());
  EXPECT_LT(std::abs(clip_sparo / clip - 1.0), 0.01);
  EXPECT_LT(std::abs(dino_sparo / dino - 1.0), 0.05);
  // The main job's DINO pair: the CLS baseline is 4 units wider instead of a block deeper.
  const double micro = static_cast<double>(Dino(DinoConfig::load(kConfigs + "micro-dino.json")).parameter_count());
  const double micro_sparo = static_cast<double>(Dino(DinoConfig::load(kConfigs + "micro-dino-sparo.json")).parameter_count());
  EXPECT_LT(std::abs(micro_sparo / micro - 1.0), 0.05);
}

}  // namespace
}  // namespace sparo
