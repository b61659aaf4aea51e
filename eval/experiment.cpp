#include "eval/experiment.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <sstream>

#include "engine/ops.h"
#include "eval/compose.h"
#include "eval/encode.h"
#include "eval/image_folder.h"
#include "eval/metrics.h"
#include "eval/report.h"
#include "eval/selection.h"
#include "eval/stats.h"
#include "eval/visualize.h"
#include "training/data/fashion_mnist.h"
#include "training/data/scenes.h"
#include "training/trainer.h"

namespace sparo {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using Metrics = std::vector<std::pair<std::string, double>>;  // in table order

// A run directory from an earlier call is reused (finished) or resumed only if it was started
// with the config this call asks for: a run of other steps, precision or data would otherwise
// land in a table that names this call's budget. Keys the older config lacks are not compared.
void check_same_config(const TrainConfig& wanted, const std::string& run_dir) {
  const fs::path path = fs::path(run_dir) / "config.json";
  std::ifstream in(path);
  json had;
  try {
    had = json::parse(in);
  } catch (const json::exception& e) {
    throw Error("experiment: " + path.string() + " is not a readable config (" + e.what() +
                "): remove " + run_dir + " or choose another --out");
  }
  const json want = json::parse(wanted.to_json());
  std::string differences;
  for (const auto& [key, value] : want.items())
    if (had.contains(key) && had[key] != value)
      differences += (differences.empty() ? "" : ", ") + key + " " + had[key].dump() + " there, " + value.dump() + " now";
  if (!differences.empty())
    throw Error("experiment: " + run_dir + " was started with another config (" + differences +
                "): remove it or choose another --out");
}

// Trains (or reuses / resumes) one run.
void ensure_trained(const std::string& preset, const std::string& run_dir, const std::vector<std::string>& overrides,
                    int progress, std::ostream& out) {
  TrainOptions o;
  o.progress = progress;
  const TrainConfig config = TrainConfig::load(preset, overrides);
  if (fs::exists(fs::path(run_dir) / "config.json")) check_same_config(config, run_dir);
  if (fs::exists(fs::path(run_dir) / "model.safetensors")) {
    out << "reusing the finished run " << run_dir << "\n";
    return;
  }
  if (fs::exists(fs::path(run_dir) / "config.json")) {
    resume_training(run_dir, o);
    return;
  }
  out << "training " << run_dir << " (" << preset << ")\n" << std::flush;
  train(config, run_dir, o);
}

std::vector<Image> images_of(const std::vector<Scene>& scenes) {
  std::vector<Image> out;
  for (const Scene& s : scenes) out.push_back(s.image);
  return out;
}

std::vector<std::string> captions_of(const std::vector<Scene>& scenes) {
  std::vector<std::string> out;
  for (const Scene& s : scenes) out.push_back(s.caption);
  return out;
}

// Gaussian noise (σ in pixel levels) and inversion, the robustness variants.
Image with_noise(const Image& img, float sigma, uint64_t stream) {
  SampleRng rng(0xA015Eull, stream);
  Image out = img;
  for (uint8_t& v : out.rgb) {
    // Box–Muller from two uniforms of the sample's own stream.
    const float u1 = std::max(rng.uniform(), 1e-7f), u2 = rng.uniform();
    const float n = std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853f * u2);
    v = static_cast<uint8_t>(std::clamp(std::lround(static_cast<float>(v) + sigma * n), 0L, 255L));
  }
  return out;
}
Image inverted(const Image& img) {
  Image out = img;
  for (uint8_t& v : out.rgb) v = static_cast<uint8_t>(255 - v);
  return out;
}

// Class weights for zero-shot item classification: every caption of a single item of the class
// (8 colours × 4 places) as a prompt template, averaged (zero_shot_weights).
Tensor item_class_weights(const TrainedClip& clip) {
  std::vector<std::string> prompts;
  for (int c = 0; c < 10; ++c)
    for (int colour = 0; colour < kSceneColours; ++colour)
      for (int cell = 0; cell < 4; ++cell) prompts.push_back(describe_scene({{c, colour, cell}}));
  return zero_shot_weights(clip.encode_texts(prompts).embeds, 10, kSceneColours * 4);
}

// Class weights for zero-shot classification of the item at one place: for each cell, every
// caption of a single item of the class in that cell (8 colours) as a template. Used where
// other items share the picture, so the question names the place.
std::vector<Tensor> placed_class_weights(const TrainedClip& clip) {
  std::vector<Tensor> per_cell;
  for (int cell = 0; cell < 4; ++cell) {
    std::vector<std::string> prompts;
    for (int c = 0; c < 10; ++c)
      for (int colour = 0; colour < kSceneColours; ++colour) prompts.push_back(describe_scene({{c, colour, cell}}));
    per_cell.push_back(zero_shot_weights(clip.encode_texts(prompts).embeds, 10, kSceneColours));
  }
  return per_cell;
}

// Top-1 of naming the item at a place: scene i (embedded as row i of `embeds`) asks about its
// item i mod (items), with the weights of that item's cell.
double placed_zero_shot(const Tensor& embeds, const std::vector<Tensor>& weights, const std::vector<Scene>& scenes) {
  std::vector<int> cells, labels;
  for (size_t i = 0; i < scenes.size(); ++i) {
    const SceneItem& target = scenes[i].items[i % scenes[i].items.size()];
    cells.push_back(target.cell);
    labels.push_back(target.item);
  }
  return grouped_zero_shot_accuracy(embeds, weights, cells, labels).top1;
}

// Zero-shot top-1/5 on a labelled image folder: each class's prompts (every template)
// averaged and re-normalised, as OpenCLIP's zero-shot classifier.
Metrics zero_shot_on_folder(const TrainedClip& clip, const std::string& root, const std::string& templates_path) {
  const ImageFolder folder = load_image_folder(root);
  const std::vector<std::string> templates = load_templates(templates_path);
  std::vector<std::string> prompts;
  for (const std::string& name : folder.classes)
    for (const std::string& t : templates) prompts.push_back(fill_template(t, name));
  const Tensor weights = zero_shot_weights(clip.encode_texts(prompts).embeds, static_cast<int64_t>(folder.classes.size()),
                                           static_cast<int64_t>(templates.size()));
  const TopK acc = zero_shot_accuracy(clip.encode_images(folder.images).embeds, weights, folder.labels);
  const std::string what = " (" + std::to_string(folder.classes.size()) + " classes, " +
                           std::to_string(folder.images.size()) + " images)";
  return {{"CLIP zero-shot top-1" + what, acc.top1}, {"CLIP zero-shot top-5" + what, acc.top5}};
}

struct SceneSets {
  std::vector<Scene> single, single_val, single_heldout, mixed, mixed_val, cluttered, heldout;
};

SceneSets make_scene_sets(const LabeledImages& train_source, const LabeledImages& test_source, int64_t n) {
  SceneSets s;
  SceneOptions one;
  one.min_items = one.max_items = 1;
  one.seed = 1000;
  one.count = n;
  SceneOptions many;
  many.seed = 2000;
  many.count = n;
  SceneOptions three = many;
  three.min_items = three.max_items = 3;
  three.seed = 3000;
  const SceneGenerator single(test_source, SceneSplit::test, one), single_val(train_source, SceneSplit::val, one);
  const SceneGenerator mixed(test_source, SceneSplit::test, many), cluttered(test_source, SceneSplit::test, three);
  const SceneGenerator mixed_val(train_source, SceneSplit::val, many);
  for (int64_t i = 0; i < n; ++i) {
    s.single.push_back(single.make(i));
    s.single_val.push_back(single_val.make(i));
    s.single_heldout.push_back(single.make_heldout(i));
    s.mixed.push_back(mixed.make(i));
    s.mixed_val.push_back(mixed_val.make(i));
    s.cluttered.push_back(cluttered.make(i));
    s.heldout.push_back(mixed.make_heldout(i));
  }
  return s;
}

std::vector<int> item_labels(const std::vector<Scene>& scenes) {
  std::vector<int> out;
  for (const Scene& s : scenes) out.push_back(s.items.at(0).item);
  return out;
}

// The compose test of a scene set: for each negative kind, the scenes it applies to and the
// text embeddings of their true and negative captions, encoded once so that slot selection can
// score many masks without encoding again.
struct ComposeSuite {
  struct Kind {
    NegativeKind kind;
    Tensor rows;  // i32 [n]: the scenes it applies to
    Tensor positives, negatives;
  };
  std::vector<Kind> kinds;

  ComposeSuite(const TrainedClip& clip, const std::vector<Scene>& scenes) {
    for (NegativeKind kind : kNegativeKinds) {
      std::vector<int32_t> rows;
      std::vector<std::string> positives, negatives;
      for (size_t i = 0; i < scenes.size(); ++i) {
        SampleRng rng(77, mix_stream(static_cast<uint64_t>(kind), i));
        const auto negative = make_negative(scenes[i].items, kind, rng);
        if (!negative) continue;
        rows.push_back(static_cast<int32_t>(i));
        positives.push_back(scenes[i].caption);
        negatives.push_back(describe_scene(*negative));
      }
      if (rows.empty()) continue;
      kinds.push_back({kind, Tensor::from_vector(rows, {static_cast<int64_t>(rows.size())}),
                       clip.encode_texts(positives).embeds, clip.encode_texts(negatives).embeds});
    }
  }

  // Mean accuracy over the kinds (and per kind into `metrics`); `view` maps every embedding
  // before the test (identity, or a SPARO slot mask).
  double accuracy(const Tensor& image_embeds, const std::string& prefix = "", Metrics* metrics = nullptr,
                  const std::function<Tensor(const Tensor&)>& view = {}) const {
    const auto v = [&](const Tensor& t) { return view ? view(t) : t; };
    double total = 0;
    for (const Kind& k : kinds) {
      const double acc = pairwise_accuracy(v(index_select(image_embeds, 0, k.rows)), v(k.positives), v(k.negatives));
      if (metrics) metrics->emplace_back(prefix + " " + negative_kind_name(k.kind), acc);
      total += acc;
    }
    return kinds.empty() ? 0.0 : total / static_cast<double>(kinds.size());
  }
};

// Scenes with the same caption are one group (retrieval counts a caption-identical scene as a
// hit: the caption cannot tell them apart); the group id is the first such scene's index.
std::vector<int64_t> caption_groups(const std::vector<Scene>& scenes) {
  std::map<std::string, int64_t> first;
  std::vector<int64_t> group;
  for (size_t i = 0; i < scenes.size(); ++i) group.push_back(first.emplace(scenes[i].caption, static_cast<int64_t>(i)).first->second);
  return group;
}

// `want(family)` picks the evaluation families to run (all of them in the experiment).
using Want = std::function<bool(const std::string&)>;

Metrics evaluate_clip(const TrainedClip& clip, const SceneSets& sets, const Want& want, std::ostream& out,
                      json* extra) {
  Metrics m;
  const Tensor weights = item_class_weights(clip);
  const auto zero_shot = [&](const std::vector<Image>& images, const std::vector<int>& labels) {
    return zero_shot_accuracy(clip.encode_images(images).embeds, weights, labels);
  };
  const std::vector<int> labels = item_labels(sets.single);
  const std::vector<Image> single = images_of(sets.single);
  const bool select = want("select-concepts") && clip.config().sparo.enabled;
  Tensor single_embeds;
  // Each scene set is encoded once and shared by the metrics that read it.
  if (want("zeroshot") || want("robustness") || select) single_embeds = clip.encode_images(single).embeds;
  Tensor val_embeds;
  const std::vector<int> val_labels = item_labels(sets.single_val);
  if (want("zeroshot") || select) val_embeds = clip.encode_images(images_of(sets.single_val)).embeds;
  if (want("zeroshot")) {
    const TopK zs = zero_shot_accuracy(single_embeds, weights, labels);
    m.emplace_back("CLIP zero-shot item top-1", zs.top1);
    m.emplace_back("CLIP zero-shot item top-5", zs.top5);
    // What the image embeddings know about the item, without the text tower: a linear probe
    // fit on the validation scenes (4/5 to fit, 1/5 to choose its lr and decay) and scored on
    // the zero-shot test scenes. Zero-shot far below it points at the alignment; both low, at
    // the image tower.
    const int64_t n_fit = val_embeds.size(0) * 4 / 5;
    const LinearProbeResult probe = linear_probe(
        slice(val_embeds, 0, 0, n_fit), std::vector<int>(val_labels.begin(), val_labels.begin() + n_fit),
        slice(val_embeds, 0, n_fit, val_embeds.size(0)), std::vector<int>(val_labels.begin() + n_fit, val_labels.end()),
        single_embeds, labels, 10);
    m.emplace_back("CLIP linear probe item top-1 (image embeddings)", probe.test.top1);
  }
  Tensor mixed_embeds;
  if (want("retrieval") || want("compose") || select) mixed_embeds = clip.encode_images(images_of(sets.mixed)).embeds;
  if (want("retrieval")) {
    std::vector<int64_t> text_image(sets.mixed.size());
    for (size_t i = 0; i < text_image.size(); ++i) text_image[i] = static_cast<int64_t>(i);
    const Recall r = retrieval_recall(mixed_embeds, clip.encode_texts(captions_of(sets.mixed)).embeds, text_image,
                                      caption_groups(sets.mixed));
    m.emplace_back("CLIP retrieval image->text R@1", r.i2t_r1);
    m.emplace_back("CLIP retrieval image->text R@5", r.i2t_r5);
    m.emplace_back("CLIP retrieval text->image R@1", r.t2i_r1);
    m.emplace_back("CLIP retrieval text->image R@5", r.t2i_r5);
  }
  std::optional<ComposeSuite> compose_test;
  if (want("compose") || select) compose_test.emplace(clip, sets.mixed);
  if (want("compose")) {
    Metrics per_kind;
    m.emplace_back("CLIP compose mean", compose_test->accuracy(mixed_embeds, "CLIP compose", &per_kind));
    m.insert(m.end(), per_kind.begin(), per_kind.end());
    m.emplace_back("CLIP compose mean, held-out colour-item pairs",
                   ComposeSuite(clip, sets.heldout).accuracy(clip.encode_images(images_of(sets.heldout)).embeds));
  }
  if (want("robustness")) {
    const Tensor cluttered_embeds = clip.encode_images(images_of(sets.cluttered)).embeds;
    m.emplace_back("CLIP compose mean, 3-item scenes (clutter)", ComposeSuite(clip, sets.cluttered).accuracy(cluttered_embeds));
    const std::vector<Tensor> placed = placed_class_weights(clip);
    m.emplace_back("CLIP zero-shot top-1, item at a named place", placed_zero_shot(single_embeds, placed, sets.single));
    m.emplace_back("CLIP zero-shot top-1, named place, 2 distractors",
                   placed_zero_shot(cluttered_embeds, placed, sets.cluttered));
    m.emplace_back("CLIP zero-shot top-1, held-out colours",
                   zero_shot(images_of(sets.single_heldout), item_labels(sets.single_heldout)).top1);
    std::vector<Image> noisy, inv;
    for (size_t i = 0; i < single.size(); ++i) {
      noisy.push_back(with_noise(single[i], 40.0f, i));
      inv.push_back(inverted(single[i]));
    }
    m.emplace_back("CLIP zero-shot top-1, Gaussian noise sigma=40", zero_shot(noisy, labels).top1);
    m.emplace_back("CLIP zero-shot top-1, inverted images", zero_shot(inv, labels).top1);
  }

  if (select) {
    // Greedy forward selection of SPARO slots, chosen on the validation split and scored on the
    // test split: once for zero-shot item classification (single-item scenes), once for the
    // compose test (the paper's claim: selection raises the compositional gain).
    const int64_t L = clip.config().sparo.L;
    const auto t0 = std::chrono::steady_clock::now();
    const auto masked = [L](const std::vector<bool>& mask) {
      return [L, &mask](const Tensor& t) { return mask_slots(t, L, mask); };
    };
    const auto zero_shot_on = [&](const Tensor& embeds, const std::vector<int>& y, const std::vector<bool>& mask) {
      return zero_shot_accuracy(mask_slots(embeds, L, mask), mask_slots(weights, L, mask), y).top1;
    };
    const auto zero_shot_val = [&](const std::vector<bool>& mask) { return zero_shot_on(val_embeds, val_labels, mask); };
    const SelectionResult sel = greedy_forward_selection(static_cast<int>(L), zero_shot_val);
    const std::vector<double> drop = drop_one_slot(static_cast<int>(L), zero_shot_val);
    const ComposeSuite compose_val(clip, sets.mixed_val);
    const Tensor mixed_val_embeds = clip.encode_images(images_of(sets.mixed_val)).embeds;
    const SelectionResult sel_compose = greedy_forward_selection(static_cast<int>(L), [&](const std::vector<bool>& mask) {
      return compose_val.accuracy(mixed_val_embeds, "", nullptr, masked(mask));
    });
    const auto count = [](const std::vector<bool>& mask) { return static_cast<double>(std::count(mask.begin(), mask.end(), true)); };
    m.emplace_back("CLIP zero-shot top-1, selected slots (test)", zero_shot_on(single_embeds, labels, sel.mask));
    m.emplace_back("CLIP slots selected for zero-shot (of L)", count(sel.mask));
    m.emplace_back("CLIP compose mean, selected slots (test)",
                   compose_test->accuracy(mixed_embeds, "", nullptr, masked(sel_compose.mask)));
    m.emplace_back("CLIP slots selected for compose (of L)", count(sel_compose.mask));
    (*extra)["concept_selection"] = {{"order", sel.order}, {"val_metric", sel.metric}, {"selected", count(sel.mask)},
                                     {"drop_one_val_delta", drop}};
    (*extra)["concept_selection_compose"] = {
        {"order", sel_compose.order}, {"val_metric", sel_compose.metric}, {"selected", count(sel_compose.mask)}};
    out << "concept selection: " << count(sel.mask) << " of " << L << " slots for zero-shot, " << count(sel_compose.mask)
        << " for compose, chosen on val in " << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
        << " s\n";
  }
  return m;
}

// Features of a list of images: a model's embeddings, or the pixels themselves.
using Encoder = std::function<Tensor(const std::vector<Image>&)>;

Encoder dino_encoder(const TrainedDino& dino) {
  return [&dino](const std::vector<Image>& images) { return dino.encode_images(images).embeds; };
}

// The raw-pixel baseline: each grey image as its rows × cols pixels, normalised as the DINO
// input is ((v / 255 − mean) / std with ImageNet's first channel), one row per image.
Tensor pixel_features(const std::vector<Image>& images) {
  if (images.empty()) throw Error("pixel features: no images");
  const int64_t n = static_cast<int64_t>(images.size()), e = static_cast<int64_t>(images[0].width) * images[0].height;
  std::vector<float> host(static_cast<size_t>(n * e));
  for (int64_t i = 0; i < n; ++i) {
    const Image& img = images[static_cast<size_t>(i)];
    if (static_cast<int64_t>(img.width) * img.height != e) throw Error("pixel features: images differ in size");
    for (int64_t p = 0; p < e; ++p)
      host[static_cast<size_t>(i * e + p)] =
          (static_cast<float>(img.rgb[static_cast<size_t>(p * 3)]) / 255.0f - kImageNetMean[0]) / kImageNetStd[0];
  }
  return Tensor::from_vector(host, {n, e});
}

Metrics evaluate_dino(const Encoder& encode, const LabeledImages& train, const LabeledImages& test,
                      const ExperimentOptions& o, const Want& want) {
  const auto images = [](const LabeledImages& set, int64_t n, const std::function<Image(const Image&, size_t)>& f) {
    std::vector<Image> out;
    for (int64_t i = 0; i < std::min(n, set.count); ++i)
      out.push_back(f(gray_to_rgb(set.image(i), set.rows, set.cols), static_cast<size_t>(i)));
    return out;
  };
  const auto same = [](const Image& img, size_t) { return img; };
  const auto labels = [](const LabeledImages& set, int64_t n) {
    return std::vector<int>(set.labels.begin(), set.labels.begin() + std::min(n, set.count));
  };
  const Tensor train_x = encode(images(train, o.dino_train, same));
  const std::vector<int> train_y = labels(train, o.dino_train);
  const Tensor test_x = encode(images(test, o.dino_test, same));
  const std::vector<int> test_y = labels(test, o.dino_test);
  Metrics m;
  if (want("knn")) m.emplace_back("DINO k-NN top-1 (k=20, T=0.07)", knn_accuracy(train_x, train_y, test_x, test_y, 10).top1);
  if (want("linear")) {
    const int64_t n_fit = train_x.size(0) * 4 / 5;
    LinearProbeOptions lp;
    lp.epochs = o.linear_epochs;
    const LinearProbeResult lin = linear_probe(
        slice(train_x, 0, 0, n_fit), std::vector<int>(train_y.begin(), train_y.begin() + n_fit),
        slice(train_x, 0, n_fit, train_x.size(0)), std::vector<int>(train_y.begin() + n_fit, train_y.end()), test_x,
        test_y, 10, lp);
    m.emplace_back("DINO linear probe top-1", lin.test.top1);
  }
  if (want("robustness")) {
    const Tensor noisy_x = encode(images(test, o.dino_test, [](const Image& img, size_t i) { return with_noise(img, 40.0f, i); }));
    m.emplace_back("DINO k-NN top-1, Gaussian noise sigma=40", knn_accuracy(train_x, train_y, noisy_x, test_y, 10).top1);
    const Tensor inv_x = encode(images(test, o.dino_test, [](const Image& img, size_t) { return inverted(img); }));
    m.emplace_back("DINO k-NN top-1, inverted images", knn_accuracy(train_x, train_y, inv_x, test_y, 10).top1);
  }
  return m;
}

std::string mean_std_text(const std::vector<double>& v) {
  if (v.empty() || std::isnan(v[0])) return "-";
  const MeanStd m = mean_std(v);
  char buf[64];
  if (m.n < 2)
    std::snprintf(buf, sizeof buf, "%.3f", m.mean);
  else
    std::snprintf(buf, sizeof buf, "%.3f ± %.3f", m.mean, m.std);
  return buf;
}

bool is_accuracy_row(const std::string& metric) { return metric.find("(of L)") == std::string::npos; }

// The model arms of the table, in column order: trained and random-init for each read-out.
constexpr std::array<const char*, 4> kArms = {"baseline", "baseline@init", "sparo", "sparo@init"};

std::vector<double>& arm_values(ExperimentSummary& s, size_t arm, size_t row) {
  return arm == 0 ? s.baseline[row] : arm == 1 ? s.baseline_init[row] : arm == 2 ? s.sparo[row] : s.sparo_init[row];
}

}  // namespace

std::string experiment_clip_precision(const ExperimentOptions& o) {
  if (o.clip_precision == "auto") return matmul_precision_name(fastest_matmul_precision(Device::parse(o.device)));
  if (o.clip_precision == "bf16" || o.clip_precision == "f32") return o.clip_precision;
  throw Error("experiment: clip precision \"" + o.clip_precision + "\", expected auto, bf16 or f32");
}

ExperimentSummary run_experiment(const ExperimentOptions& o, std::ostream& out) {
  if (o.seeds < 1) throw Error("experiment: seeds must be >= 1");
  const std::string clip_precision = experiment_clip_precision(o);
  const auto t0 = std::chrono::steady_clock::now();
  fs::create_directories(o.out_dir);
  const LabeledImages fashion_train = load_fashion_mnist(default_fashion_mnist_dir(), "train");
  const LabeledImages fashion_test = load_fashion_mnist(default_fashion_mnist_dir(), "test");
  const SceneSets scenes = make_scene_sets(fashion_train, fashion_test, o.eval_scenes);
  const Device device = Device::parse(o.device);

  const Want everything = [](const std::string&) { return true; };
  // The raw-pixel rows: the DINO evaluations on the normalised pixels themselves.
  const Metrics pixels = evaluate_dino(pixel_features, fashion_train, fashion_test, o, everything);
  ExperimentSummary summary;
  json runs = json::array();
  std::map<std::string, int64_t> params;
  const auto row_of = [&](const std::string& metric) {
    auto it = std::find(summary.metrics.begin(), summary.metrics.end(), metric);
    if (it != summary.metrics.end()) return static_cast<size_t>(it - summary.metrics.begin());
    summary.metrics.push_back(metric);
    for (auto* v : {&summary.baseline, &summary.baseline_init, &summary.sparo, &summary.sparo_init}) v->emplace_back();
    summary.pixels.push_back(NAN);
    return summary.metrics.size() - 1;
  };
  for (int seed = 0; seed < o.seeds; ++seed) {
    std::map<std::string, Metrics> by_arm;  // "clip-baseline", "clip-baseline@init", ...
    for (const char* task : {"clip", "dino"}) {
      for (const char* variant : {"", "-sparo"}) {
        const std::string name = std::string(task) + (*variant ? "-sparo" : "-baseline");
        const std::string run_dir = (fs::path(o.out_dir) / (name + "-seed" + std::to_string(seed))).string();
        const std::string preset = (fs::path(o.config_dir) / (std::string(task) + "-tiny" + variant + ".json")).string();
        const bool clip = std::string(task) == "clip";
        std::vector<std::string> ov = {"seed=" + std::to_string(seed), "device=" + o.device,
                                       "steps=" + std::to_string(clip ? o.clip_steps : o.dino_steps),
                                       "batch_size=" + std::to_string(clip ? o.clip_batch : o.dino_batch),
                                       "warmup_steps=" + std::to_string(clip ? o.clip_steps / 3 : o.dino_steps / 10),
                                       "checkpoint_every=" + std::to_string(std::max<int64_t>(1, (clip ? o.clip_steps : o.dino_steps) / 2))};
        // CLIP warms up over a third of its steps: after 300 steps the tiny CLIP's zero-shot item
        // top-1 was 0.04–0.06 higher with a 100-step warm-up than with 30 (docs/RESULTS.md, "CLIP
        // attempts"). The prototypes' last layer stays frozen for the first tenth of a DINO run
        // (DINO: the first of 100 epochs); the presets' default of one epoch would outlast a short run.
        if (clip) ov.push_back("precision=" + clip_precision);
        else ov.push_back("freeze_last_layer_steps=" + std::to_string(o.dino_steps / 10));
        ov.insert(ov.end(), o.overrides.begin(), o.overrides.end());
        ensure_trained(preset, run_dir, ov, o.progress, out);
        for (const Weights weights : {Weights::trained, Weights::initial}) {
          const bool initial = weights == Weights::initial;
          const auto t_eval = std::chrono::steady_clock::now();
          out << "evaluating " << run_dir << (initial ? " at its random initialisation" : "") << "\n" << std::flush;
          json extra = json::object();
          Metrics m;
          if (clip) {
            const auto model = TrainedClip::load(run_dir, device, weights);
            params[name] = model->model().parameter_count();
            m = evaluate_clip(*model, scenes, everything, out, &extra);
          } else {
            const auto model = TrainedDino::load(run_dir, device, weights);
            params[name] = model->model().parameter_count();
            m = evaluate_dino(dino_encoder(*model), fashion_train, fashion_test, o, everything);
          }
          out << "evaluated in " << std::lround(std::chrono::duration<double>(std::chrono::steady_clock::now() - t_eval).count())
              << " s\n" << std::flush;
          by_arm[name + (initial ? "@init" : "")] = m;
          runs.push_back({{"run", run_dir}, {"weights", initial ? "initial" : "trained"}, {"metrics", json(m)}, {"extra", extra}});
        }
      }
    }
    // Rows: every metric of the baseline, then the SPARO model's own; each arm's value per seed.
    for (const char* task : {"clip", "dino"}) {
      for (const char* variant : {"-baseline", "-sparo"})
        for (const auto& [k, v] : by_arm[std::string(task) + variant]) row_of(k);
      for (size_t arm = 0; arm < kArms.size(); ++arm) {
        const std::string arm_name(kArms[arm]);
        const std::string key = std::string(task) + "-" + arm_name;
        std::map<std::string, double> values(by_arm[key].begin(), by_arm[key].end());
        for (size_t row = 0; row < summary.metrics.size(); ++row) {
          const std::string& metric = summary.metrics[row];
          if ((metric.rfind("CLIP", 0) == 0) != (std::string(task) == "clip")) continue;
          arm_values(summary, arm, row).push_back(values.count(metric) ? values[metric] : NAN);
        }
      }
    }
  }
  for (const auto& [k, v] : pixels) summary.pixels[row_of(k)] = v;

  const double minutes = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 60.0;
  std::ostringstream table;
  char line[320];
  std::snprintf(line, sizeof line, "%-48s %7s %15s %15s %15s %15s %8s %19s\n", "metric", "pixels", "baseline",
                "baseline init", "SPARO", "SPARO init", "Δ", "Δ 95% CI");
  table << line;
  json differences = json::array();
  for (size_t i = 0; i < summary.metrics.size(); ++i) {
    const bool paired = !summary.baseline[i].empty() && !std::isnan(summary.baseline[i][0]) && !summary.sparo[i].empty() &&
                        !std::isnan(summary.sparo[i][0]);
    char d[32] = "", ci[48] = "";
    if (paired) {
      const PairedDifference diff = paired_difference(summary.baseline[i], summary.sparo[i]);
      std::snprintf(d, sizeof d, "%+.3f", diff.mean);
      if (diff.n >= 2) std::snprintf(ci, sizeof ci, "[%+.3f, %+.3f]%s", diff.lo, diff.hi, diff.excludes_zero() ? "*" : "");
      differences.push_back({{"metric", summary.metrics[i]}, {"mean", diff.mean}, {"lo", diff.n >= 2 ? json(diff.lo) : json()},
                             {"hi", diff.n >= 2 ? json(diff.hi) : json()}, {"seeds", diff.n}});
    }
    char px[16] = "-";
    if (!std::isnan(summary.pixels[i])) std::snprintf(px, sizeof px, "%.3f", summary.pixels[i]);
    std::snprintf(line, sizeof line, "%-48s %7s %15s %15s %15s %15s %8s %19s\n", summary.metrics[i].c_str(), px,
                  mean_std_text(summary.baseline[i]).c_str(), mean_std_text(summary.baseline_init[i]).c_str(),
                  mean_std_text(summary.sparo[i]).c_str(), mean_std_text(summary.sparo_init[i]).c_str(), d, ci);
    table << line;
  }
  // Loudly: every accuracy row where a trained model is not above its own random init.
  std::ostringstream verdict;
  for (size_t arm : {size_t{0}, size_t{2}}) {
    for (size_t i = 0; i < summary.metrics.size(); ++i) {
      const std::vector<double>& trained = arm_values(summary, arm, i);
      const std::vector<double>& init = arm_values(summary, arm + 1, i);
      if (!is_accuracy_row(summary.metrics[i]) || trained.empty() || std::isnan(trained[0]) || init.empty() ||
          std::isnan(init[0]))
        continue;
      const double gain = mean_std(trained).mean - mean_std(init).mean;
      if (gain <= 0) {
        char text[256];
        std::snprintf(text, sizeof text, "NOT ABOVE ITS RANDOM INIT: %s, %s: %.3f trained vs %.3f at init\n",
                      arm == 0 ? "baseline" : "SPARO", summary.metrics[i].c_str(), mean_std(trained).mean,
                      mean_std(init).mean);
        verdict << text;
      }
    }
  }
  if (verdict.str().empty()) verdict << "every trained model is above its random init on every accuracy row\n";
  std::ostringstream head;
  head << "parameters: CLIP " << params["clip-baseline"] << " vs CLIP+SPARO " << params["clip-sparo"] << ", DINO "
       << params["dino-baseline"] << " vs DINO+SPARO " << params["dino-sparo"] << "\n"
       << "budget per pair: CLIP " << o.clip_steps << " steps × batch " << o.clip_batch << " (" << clip_precision
       << (o.clip_precision == "auto" ? " matmuls, the faster here" : " matmuls") << "), DINO " << o.dino_steps
       << " steps × batch " << o.dino_batch << ", same schedule, data order and seed(s); " << o.seeds << " seed(s)\n"
       << "columns: pixels = the normalised pixels themselves (DINO rows); init = the same model at its random\n"
       << "initialisation (the run's seed); Δ = SPARO − baseline (trained), paired by seed, with its 95% t interval\n"
       << "(* where it excludes 0); retrieval counts a scene with the identical caption as a hit\n";
  for (const std::string& ov : o.overrides) head << "override for every run: " << ov << "\n";
  out << "\n" << head.str() << "\n" << table.str() << "\n" << verdict.str();
  char wall[64];
  std::snprintf(wall, sizeof wall, "wall time %.1f min\n", minutes);
  out << wall;
  std::ofstream(fs::path(o.out_dir) / "results.md") << "```\n" << head.str() << "\n" << table.str() << "\n" << verdict.str() << wall << "```\n";
  std::ofstream(fs::path(o.out_dir) / "results.json")
      << json({{"metrics", summary.metrics}, {"baseline", summary.baseline}, {"sparo", summary.sparo},
               {"baseline_init", summary.baseline_init}, {"sparo_init", summary.sparo_init},
               {"pixels", summary.pixels}, {"differences", differences}, {"runs", runs},
               {"parameters", params}, {"minutes", minutes}})
             .dump(2)
      << "\n";

  // The pictures of the (first) SPARO CLIP run and one HTML page with everything.
  std::vector<std::string> run_dirs;
  for (const auto& r : runs)
    if (r.at("weights") == "trained") run_dirs.push_back(r.at("run").get<std::string>());
  const std::string sparo_clip = (fs::path(o.out_dir) / "clip-sparo-seed0").string();
  for (const std::string& dir : run_dirs) plot_training_curves(dir, (fs::path(dir) / "pictures").string());
  visualize_run(sparo_clip, (fs::path(sparo_clip) / "pictures").string());
  const std::string report = (fs::path(o.out_dir) / "report.html").string();
  write_report(run_dirs, (fs::path(o.out_dir) / "results.json").string(), report);
  out << "report: " << report << " (training curves in each run's pictures/, slot pictures in " << sparo_clip << "/pictures)\n";
  return summary;
}

std::vector<std::pair<std::string, double>> evaluate_run(const std::string& run_dir, const std::string& family,
                                                         const ExperimentOptions& o, std::string* details_json,
                                                         std::ostream& out) {
  const std::vector<std::string> clip_families = {"zeroshot", "retrieval", "compose", "robustness", "select-concepts"};
  const std::vector<std::string> dino_families = {"knn", "linear", "robustness"};
  const TrainConfig cfg = TrainConfig::load((fs::path(run_dir) / "config.json").string());
  const auto& allowed = cfg.task == "clip" ? clip_families : dino_families;
  if (std::find(allowed.begin(), allowed.end(), family) == allowed.end()) {
    std::string list;
    for (const std::string& f : allowed) list += (list.empty() ? "" : ", ") + f;
    throw Error("eval " + family + ": not an evaluation of a " + cfg.task + " run (" + run_dir + "); those are: " + list);
  }
  if (!o.templates.empty() && o.image_folder.empty())
    throw Error("eval " + family + ": prompt templates are for an image folder (--images); the scenes have their own");
  const Want only = [&](const std::string& f) { return f == family; };
  const Device device = Device::parse(o.device);
  const LabeledImages fashion_train = load_fashion_mnist(default_fashion_mnist_dir(), "train");
  const LabeledImages fashion_test = load_fashion_mnist(default_fashion_mnist_dir(), "test");
  json extra = json::object();
  Metrics m;
  if (cfg.task == "clip") {
    const auto model = TrainedClip::load(run_dir, device);
    if (family == "select-concepts" && !model->config().sparo.enabled)
      throw Error("select-concepts: " + run_dir + " is not a SPARO model (no slots to select)");
    if (family == "zeroshot" && !o.image_folder.empty()) {
      if (details_json) *details_json = extra.dump();
      return zero_shot_on_folder(*model, o.image_folder, o.templates);
    }
    m = evaluate_clip(*model, make_scene_sets(fashion_train, fashion_test, o.eval_scenes), only, out, &extra);
  } else {
    m = evaluate_dino(dino_encoder(*TrainedDino::load(run_dir, device)), fashion_train, fashion_test, o, only);
  }
  if (details_json) *details_json = extra.dump();
  return m;
}

}  // namespace sparo
