// The golden ring: tiny models written by PyTorch (tools/golden/models_golden.py) with
// their weights, inputs, outputs, every parameter gradient and a 5-step AdamW loss
// trajectory. Our models load the same weights and must reproduce them:
// outputs within 1e-4 relative, gradients within 1e-3, losses within 1e-4.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "engine/cpu/cpu_backend.h"
#include "models/clip.h"
#include "models/dino.h"
#include "training/optimizer.h"
#if defined(SPARO_HAVE_VULKAN)
#include "engine/vulkan/context.h"
#include "tests/expect_error.h"
#include "tests/vulkan_env.h"
#endif

namespace sparo {
namespace {

const std::string kFixtureDir = std::string(SPARO_SOURCE_DIR) + "/tests/fixtures/golden";

struct Fixture {
  std::string name;
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;
  const Tensor& at(const std::string& key) const {
    auto it = tensors.find(key);
    if (it == tensors.end()) throw Error("fixture " + name + " has no tensor " + key);
    return it->second;
  }
  NamedTensors weights() const {
    NamedTensors out;
    for (const auto& [k, t] : tensors)
      if (k.rfind("input.", 0) && k.rfind("output.", 0) && k.rfind("grad.", 0) && k.rfind("trajectory.", 0))
        out.emplace_back(k, t);
    return out;
  }
};

Fixture load_fixture(const std::string& name) {
  Fixture f;
  f.name = name;
  const NamedTensors all = load_safetensors(kFixtureDir + "/" + name + ".safetensors", Device::cpu(), &f.metadata);
  for (const auto& [k, t] : all) f.tensors.emplace(k, t);
  return f;
}

std::vector<std::string> fixture_names() {
  std::vector<std::string> names;
  if (!std::filesystem::exists(kFixtureDir)) return names;
  for (const auto& entry : std::filesystem::directory_iterator(kFixtureDir))
    if (entry.path().extension() == ".safetensors") names.push_back(entry.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

// |ours - theirs| <= rtol · max|theirs| + rtol · |theirs| + atol: relative to the tensor's scale,
// so entries near zero do not demand more digits than float32 has. atol covers gradients that
// are zero in exact arithmetic (softmax ignores a shift shared by all keys, so key biases get
// none) and hold only rounding noise (~1e-8) on both sides.
void expect_close(const Tensor& ours, const Tensor& theirs, double rtol, const std::string& what, double atol = 0.0) {
  ASSERT_EQ(ours.shape(), theirs.shape()) << what;
  const std::vector<float> a = ours.to_float_vector(), b = theirs.to_float_vector();
  double scale = 0;
  for (float v : b) scale = std::max(scale, static_cast<double>(std::fabs(v)));
  size_t bad = 0;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double err = std::fabs(static_cast<double>(a[i]) - b[i]);
    worst = std::max(worst, err / std::max(scale, 1e-30));
    if (!(err <= rtol * scale + rtol * std::fabs(b[i]) + atol)) ++bad;
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << a.size() << " entries off; worst error " << worst
                     << " of the tensor's scale " << scale;
}

bool is_dino(const Fixture& f) {
  return nlohmann::json::parse(f.metadata.at("config")).value("model", "") == "dino";
}

// One model of either kind behind one interface for the checks below.
struct Model {
  std::unique_ptr<Clip> clip;
  std::unique_ptr<Dino> dino;
  Module& module() { return clip ? static_cast<Module&>(*clip) : *dino; }
  const Module& module() const { return clip ? static_cast<const Module&>(*clip) : *dino; }
  StateAliases aliases() const { return clip ? clip->aliases() : dino->aliases(); }
};

Model build(const Fixture& f, Device device = Device::cpu()) {
  Model m;
  if (is_dino(f)) {
    DinoConfig cfg = DinoConfig::from_json(f.metadata.at("config"), f.name);
    cfg.drop_path_rate = 0.0f;
    m.dino = std::make_unique<Dino>(cfg, 1);
  } else {
    m.clip = std::make_unique<Clip>(ClipConfig::from_json(f.metadata.at("config"), f.name), 1);
  }
  load_state_dict(m.module(), f.weights(), m.aliases(), f.name);
  to_device(m.module(), device);
  return m;
}

// Runs the model on the fixture's inputs; returns the loss and checks outputs.
Tensor run_and_check(const Model& m, const Fixture& f, bool check, Device device = Device::cpu()) {
  if (m.clip) {
    const ClipOutput out = m.clip->forward(f.at("input.images").to(device), f.at("input.text").to(device));
    if (check) {
      expect_close(out.image_embeds, f.at("output.image_embeds"), 1e-4, f.name + " image_embeds");
      expect_close(out.text_embeds, f.at("output.text_embeds"), 1e-4, f.name + " text_embeds");
      expect_close(out.logits_per_image, f.at("output.logits_per_image"), 1e-4, f.name + " logits");
      if (f.tensors.count("output.image_attn")) {
        expect_close(out.image_attention, f.at("output.image_attn"), 1e-4, f.name + " image attention");
        expect_close(out.text_attention, f.at("output.text_attn"), 1e-4, f.name + " text attention");
      }
    }
    return clip_loss(out.logits_per_image);
  }
  const EncoderOutput features = m.dino->backbone.forward(f.at("input.images").to(device));
  const Tensor head = m.dino->head.forward(features.embedding);
  if (check) {
    expect_close(features.embedding, f.at("output.features"), 1e-4, f.name + " features");
    expect_close(head, f.at("output.head"), 1e-4, f.name + " head");
  }
  return mean(mul(head, f.at("input.head_weights").to(device)));
}

// The same checks on the CPU and, when built, on Vulkan (lavapipe in CI, validation on).
class GoldenRing : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {
 protected:
  static void SetUpTestSuite() {
#if defined(SPARO_HAVE_VULKAN)
    use_lavapipe_with_validation();
#endif
  }
  Device device() const { return Device::parse(std::get<1>(GetParam())); }
#if defined(SPARO_HAVE_VULKAN)
  void SetUp() override { vk::clear_validation_messages(); }
  void TearDown() override {
    const auto messages = vk::validation_messages();
    EXPECT_TRUE(messages.empty()) << messages.size() << " validation message(s), first: " << messages[0];
  }
#endif
};

TEST_P(GoldenRing, OutputsAndGradientsMatchPyTorch) {
  const Fixture f = load_fixture(std::get<0>(GetParam()));
  const Model m = build(f, device());
  const Tensor loss = run_and_check(m, f, true, device());
  expect_close(loss, f.at("output.loss"), 1e-4, f.name + " loss");
  loss.backward();
  int checked = 0;
  for (const auto& [name, p] : m.module().named_parameters()) {
    auto g = f.tensors.find("grad." + name);
    if (!p.requires_grad()) continue;
    ASSERT_NE(g, f.tensors.end()) << f.name << ": fixture lacks grad." << name;
    ASSERT_TRUE(p.grad().defined()) << f.name << ": no gradient reached " << name;
    expect_close(p.grad(), g->second, 1e-3, f.name + " grad " + name, 1e-6);
    ++checked;
  }
  EXPECT_GT(checked, 10) << f.name;
}

TEST_P(GoldenRing, AdamWTrajectoryMatchesPyTorch) {
  const Fixture f = load_fixture(std::get<0>(GetParam()));
  const Model m = build(f, device());
  const nlohmann::json hp = nlohmann::json::parse(f.metadata.at("adamw"));
  std::vector<ParamGroup> groups(2);
  groups[0].weight_decay = hp.at("weight_decay").get<float>();
  groups[0].name = "decay";
  groups[1].name = "no_decay";
  for (const auto& [name, p] : m.module().named_parameters())
    if (p.requires_grad()) groups[p.dim() >= 2 ? 0 : 1].params.push_back(p);
  AdamW opt(groups, hp.at("lr").get<float>(), hp.at("betas")[0].get<float>(), hp.at("betas")[1].get<float>(),
            hp.at("eps").get<float>());
  const std::vector<float> expected = f.at("trajectory.loss").to_float_vector();
  for (size_t step = 0; step < expected.size(); ++step) {
    opt.zero_grad();
    const Tensor loss = run_and_check(m, f, false, device());
    EXPECT_NEAR(loss.item(), expected[step], 1e-4 * std::max(1.0f, std::fabs(expected[step])))
        << f.name << " step " << step;
    if (step + 1 < expected.size()) {
      loss.backward();
      opt.step();
    }
  }
}

std::string test_name(const ::testing::TestParamInfo<std::tuple<std::string, std::string>>& info) {
  return std::get<0>(info.param) + (std::get<1>(info.param) == "cpu" ? "" : "_vulkan");
}

std::vector<std::string> devices() {
#if defined(SPARO_HAVE_VULKAN)
  return {"cpu", "vulkan:0"};
#else
  return {"cpu"};
#endif
}

INSTANTIATE_TEST_SUITE_P(Models, GoldenRing, ::testing::Combine(::testing::ValuesIn(fixture_names()), ::testing::ValuesIn(devices())),
                         test_name);

TEST(GoldenRingFixtures, ArePresent) {
  // The fixtures are committed; an empty list would make the ring above vacuous.
  EXPECT_GE(fixture_names().size(), 8u) << "expected the golden fixtures in " << kFixtureDir;
}

TEST(StrictLoading, ListsMissingUnexpectedAndWronglyShapedKeys) {
  const Fixture f = load_fixture("sparo_const");
  Clip model(ClipConfig::from_json(f.metadata.at("config"), f.name));
  NamedTensors state = f.weights();
  state.erase(std::remove_if(state.begin(), state.end(), [](auto& kv) { return kv.first == "visual.ln_post.bias"; }),
              state.end());
  for (auto& [name, t] : state)
    if (name == "visual.sparo.q_emb") t = Tensor::zeros({1, 2, 2, 1, 12});
  state.emplace_back("visual.proj", Tensor::zeros({24, 16}));
  try {
    load_state_dict(model, state, model.aliases(), "wrong.safetensors");
    FAIL() << "a mismatched checkpoint must not load";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("wrong.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("missing keys (1):\n    visual.ln_post.bias"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected keys (1):\n    visual.proj"), std::string::npos) << msg;
    EXPECT_NE(msg.find("visual.sparo.q_emb: [1, 2, 2, 1, 12] f32 in the file, the model needs [1, 4, 1, 1, 12]"),
              std::string::npos) << msg;
  }
}

TEST(StrictLoading, RefusesWeightsWithNaNOrInfinity) {
  const Fixture f = load_fixture("sparo_const");
  Clip model(ClipConfig::from_json(f.metadata.at("config"), f.name));
  NamedTensors state = f.weights();
  for (auto& [name, t] : state) {
    if (name != "visual.ln_post.bias") continue;
    std::vector<float> v = t.to_float_vector();
    v[0] = std::nanf("");
    v[1] = INFINITY;
    t = Tensor::from_vector(v, t.shape());
  }
  expect_error([&] { load_state_dict(model, state, model.aliases(), "diverged.safetensors"); },
               {"diverged.safetensors", "NaN or infinite", "visual.ln_post.bias (2 of "});
}

TEST(StrictLoading, SharedKeyValueAliasMustEqualTheKeys) {
  const Fixture f = load_fixture("sparo_const");
  Clip model(ClipConfig::from_json(f.metadata.at("config"), f.name));
  NamedTensors state = f.weights();
  for (auto& [name, t] : state)
    if (name == "visual.sparo.v.bias") t = affine(t, 1.0f, 1.0f);
  EXPECT_THROW(load_state_dict(model, state, model.aliases(), "alias.safetensors"), Error);
}

// adopt_state_dict: the parameters take the mapped file's storage (same values, the given
// tensors' memory), with load_state_dict's checks; load_state_dict still copies.
TEST(StateDict, AdoptTakesTheGivenStorageAndChecksLikeLoad) {
  const Fixture f = load_fixture("sparo_const");
  Clip a(ClipConfig::from_json(f.metadata.at("config"), f.name), 1);
  load_state_dict(a, f.weights(), a.aliases(), f.name);
  const std::string path = ::testing::TempDir() + "/sparo_adopt.safetensors";
  save_safetensors(path, state_dict(a, a.aliases()));
  Clip b(ClipConfig::from_json(f.metadata.at("config"), f.name), 2);
  const NamedTensors mapped = map_safetensors(path);
  std::map<std::string, const void*> memory;
  for (const auto& [name, t] : mapped) memory[name] = cpu::data<float>(t);
  adopt_state_dict(b, mapped, b.aliases(), path);
  const NamedTensors sa = a.named_parameters(), sb = b.named_parameters();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].second.to_float_vector(), sb[i].second.to_float_vector()) << sa[i].first;
    EXPECT_EQ(cpu::data<float>(sb[i].second), memory.at(sb[i].first)) << sb[i].first;
  }
  Clip c(ClipConfig::from_json(f.metadata.at("config"), f.name), 3);
  load_state_dict(c, mapped, c.aliases(), path);
  EXPECT_NE(cpu::data<float>(c.named_parameters()[0].second), memory.at(c.named_parameters()[0].first));
  NamedTensors wrong = map_safetensors(path);
  wrong.erase(wrong.begin());  // a parameter (aliases come last and are optional)
  expect_error([&] { adopt_state_dict(c, wrong, c.aliases(), "short.safetensors"); }, {"short.safetensors", "missing keys"});
  std::filesystem::remove(path);
}

TEST(StateDict, SavedStateRoundTripsThroughSafetensors) {
  const Fixture f = load_fixture("sparo_const");
  Clip a(ClipConfig::from_json(f.metadata.at("config"), f.name), 1);
  load_state_dict(a, f.weights(), a.aliases(), f.name);
  const std::string path = ::testing::TempDir() + "/sparo_state.safetensors";
  save_safetensors(path, state_dict(a, a.aliases()));
  Clip b(ClipConfig::from_json(f.metadata.at("config"), f.name), 2);
  load_state_dict(b, load_safetensors(path), b.aliases(), path);
  const NamedTensors sa = a.named_parameters(), sb = b.named_parameters();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_EQ(sa[i].second.to_float_vector(), sb[i].second.to_float_vector()) << sa[i].first;
  // the alias is written, so OpenCLIP-side loaders find v next to k
  bool has_alias = false;
  for (const auto& [name, t] : load_safetensors(path)) has_alias = has_alias || name == "visual.sparo.v.weight";
  EXPECT_TRUE(has_alias);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace sparo
