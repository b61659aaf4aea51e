#include "eval/visualize.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>

#include "eval/encode.h"
#include "eval/plot.h"
#include "eval/report.h"
#include "training/data/scenes.h"

namespace sparo {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

double cosine(const float* a, const float* b, int64_t n) {
  double dot = 0, na = 0, nb = 0;
  for (int64_t i = 0; i < n; ++i) {
    dot += static_cast<double>(a[i]) * b[i];
    na += static_cast<double>(a[i]) * a[i];
    nb += static_cast<double>(b[i]) * b[i];
  }
  const double denom = std::sqrt(na * nb);
  return denom > 1e-12 ? dot / denom : 0.0;  // an all-zero slot agrees with nothing
}

// black → red → yellow for t in [0, 1].
std::array<double, 3> heat_colour(double t) {
  return {255.0 * std::min(1.0, 2.0 * t), 255.0 * std::max(0.0, 2.0 * t - 1.0), 0.0};
}

// The patch weights (grid × grid, row-major) scaled to their maximum, bilinearly upsampled to
// the image's size, coloured and blended over the image.
Image heat_overlay(const Image& image, const std::vector<float>& patches, int grid) {
  const float top = *std::max_element(patches.begin(), patches.end());
  const auto at = [&](int gy, int gx) {
    gy = std::clamp(gy, 0, grid - 1), gx = std::clamp(gx, 0, grid - 1);
    return top > 0 ? patches[static_cast<size_t>(gy * grid + gx)] / top : 0.0f;
  };
  constexpr double kHeatAlpha = 0.6;
  Image out = image;
  for (int y = 0; y < image.height; ++y) {
    const double gy = (y + 0.5) * grid / image.height - 0.5;
    const int y0 = static_cast<int>(std::floor(gy));
    const double fy = gy - y0;
    for (int x = 0; x < image.width; ++x) {
      const double gx = (x + 0.5) * grid / image.width - 0.5;
      const int x0 = static_cast<int>(std::floor(gx));
      const double fx = gx - x0;
      const double t = (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1)) +
                       fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1));
      const std::array<double, 3> heat = heat_colour(std::clamp(t, 0.0, 1.0));
      uint8_t* p = &out.rgb[(static_cast<size_t>(y) * image.width + x) * 3];
      for (int c = 0; c < 3; ++c) p[c] = static_cast<uint8_t>(std::lround((1 - kHeatAlpha) * p[c] + kHeatAlpha * heat[c]));
    }
  }
  return out;
}

// The caption's tokens as words on backgrounds from the picture's grey (no attention) to red
// (the caption's most attended token), wrapped to `width`; lines past `height` are left out.
void draw_weighted_caption(Image& picture, int left, int top, int width, int height,
                           const std::vector<std::string>& tokens, const std::vector<double>& weights) {
  constexpr int kAdvance = 6, kLine = 10;  // the plot font at scale 1, 3 pixels between lines
  const auto shown = [&](size_t t) { return !tokens[t].empty() && tokens[t].front() != '<'; };  // not <start_of_text> ...
  double most = 0;
  for (size_t t = 0; t < tokens.size(); ++t)
    if (shown(t)) most = std::max(most, weights[t]);
  int x = 0, y = 0;
  for (size_t t = 0; t < tokens.size(); ++t) {
    if (!shown(t)) continue;
    const int w = static_cast<int>(tokens[t].size()) * kAdvance;
    if (x > 0 && x + w > width) x = 0, y += kLine;
    if (y + kLine > height) return;
    const double strength = most > 0 ? weights[t] / most : 0.0;
    const std::array<uint8_t, 3> background = {static_cast<uint8_t>(std::lround(48 + strength * (230 - 48))),
                                               static_cast<uint8_t>(std::lround(48 + strength * (60 - 48))),
                                               static_cast<uint8_t>(std::lround(48 - strength * (48 - 20)))};
    for (int py = top + y; py < top + y + kLine - 1; ++py)
      for (int px = left + x; px < std::min(left + x + w, left + width); ++px) {
        uint8_t* p = &picture.rgb[(static_cast<size_t>(py) * picture.width + px) * 3];
        p[0] = background[0], p[1] = background[1], p[2] = background[2];
      }
    draw_text(picture, left + x + 1, top + y + 1, tokens[t], {255, 255, 255});
    x += w + kAdvance;
  }
}

void paste(Image& canvas, const Image& tile, int left, int top) {
  for (int y = 0; y < tile.height; ++y)
    std::copy_n(&tile.rgb[static_cast<size_t>(y) * tile.width * 3], static_cast<size_t>(tile.width) * 3,
                &canvas.rgb[(static_cast<size_t>(top + y) * canvas.width + left) * 3]);
}

}  // namespace

std::vector<std::string> plot_training_curves(const std::string& run_dir, const std::string& out_dir) {
  const std::vector<json> lines = read_metrics_lines((fs::path(run_dir) / "metrics.jsonl").string());
  std::map<std::string, std::vector<std::pair<double, double>>> curves;  // key → (step, value)
  for (const json& line : lines) {
    const double step = static_cast<double>(line.at("step").get<int64_t>());
    for (const auto& [key, value] : line.items()) {
      if (key == "step" || key == "elapsed_s") continue;
      // null is a non-finite value the trainer logged: a gap in the curve.
      if (value.is_number()) curves[key].emplace_back(step, value.get<double>());
      else if (value.is_null()) curves[key].emplace_back(step, NAN);
    }
  }
  fs::path name = fs::path(run_dir).lexically_normal();
  if (name.filename().empty()) name = name.parent_path();
  fs::create_directories(out_dir);
  std::vector<std::string> written;
  for (const auto& [key, points] : curves) {
    if (std::none_of(points.begin(), points.end(), [](const auto& p) { return std::isfinite(p.second); })) continue;
    const std::string path = (fs::path(out_dir) / ("curve-" + key + ".png")).string();
    save_png(path, line_chart({{key, points, {31, 119, 180}}}, name.filename().string() + ": " + key, "step", key));
    written.push_back(path);
  }
  // DINO's k-NN monitor: teacher and student on one chart, as DINO's authors compare them.
  if (curves.count("knn_teacher") && curves.count("knn_student")) {
    const std::string path = (fs::path(out_dir) / "curve-knn.png").string();
    save_png(path, line_chart({{"teacher", curves["knn_teacher"], {31, 119, 180}}, {"student", curves["knn_student"], {214, 39, 40}}},
                              name.filename().string() + ": k-NN top-1 (monitor subset)", "step", "k-NN top-1"));
    written.push_back(path);
  }
  return written;
}

void visualize_run(const std::string& run_dir, const std::string& out_dir, int scenes, int top_slots) {
  if (scenes < 1) throw Error("visualize: scenes must be >= 1, got " + std::to_string(scenes));
  if (top_slots < 1) throw Error("visualize: top slots must be >= 1, got " + std::to_string(top_slots));
  // The config first: a run of the wrong kind is named before any weights are read.
  const fs::path config_path = fs::path(run_dir) / "config.json";
  if (!fs::is_regular_file(config_path)) throw Error(run_dir + ": no config.json (is it a sparo train run?)");
  const TrainConfig cfg = TrainConfig::load(config_path.string());
  if (cfg.task != "clip")
    throw Error(run_dir + ": visualize needs a SPARO model trained with CLIP, this is a \"" + cfg.task + "\" run");
  if (!ClipConfig::from_json(cfg.model_json, config_path.string() + " model").sparo.enabled)
    throw Error(run_dir + ": visualize needs a SPARO model (use_sparo), this CLIP model has none");
  const auto clip = TrainedClip::load(run_dir);
  const ClipConfig& model = clip->config();
  const int64_t L = model.sparo.L;

  const LabeledImages source = load_fashion_mnist(cfg.data_dir.empty() ? default_fashion_mnist_dir() : cfg.data_dir, "test");
  SceneOptions options;
  options.canvas = static_cast<int>(cfg.scene_canvas);
  options.min_items = static_cast<int>(cfg.scene_min_items);
  options.max_items = static_cast<int>(cfg.scene_max_items);
  options.count = scenes;
  const SceneGenerator generator(source, SceneSplit::test, options);
  std::vector<Image> images;
  std::vector<std::string> captions;
  for (int64_t i = 0; i < scenes; ++i) {
    Scene s = generator.make(i);
    images.push_back(std::move(s.image));
    captions.push_back(std::move(s.caption));
  }

  const Embeddings image_out = clip->encode_images(images, 64, /*attention=*/true);
  const Embeddings text_out = clip->encode_texts(captions, 64, /*attention=*/true);
  const int64_t grid = model.vision.image_size / model.vision.patch_size;
  const int64_t image_tokens = 1 + grid * grid, T = model.text.context_length;
  if (image_out.embeds.size(1) % L != 0 || !image_out.attention.defined() || !text_out.attention.defined() ||
      image_out.attention.size(2) != image_tokens || text_out.attention.size(2) != T)
    throw Error(run_dir + ": the model's outputs do not have the SPARO shapes (embedding " +
                shape_str(image_out.embeds.shape()) + " for " + std::to_string(L) + " slots, image attention over " +
                std::to_string(image_tokens) + " tokens expected)");
  const int64_t V = image_out.embeds.size(1) / L;
  const std::vector<float> img = image_out.embeds.to_float_vector(), txt = text_out.embeds.to_float_vector();
  const std::vector<float> img_att = image_out.attention.to_float_vector(), txt_att = text_out.attention.to_float_vector();

  // cos[n][l]: scene n's image and caption agreement in slot l; a slot's agreement is its mean.
  std::vector<std::vector<double>> cos(static_cast<size_t>(scenes), std::vector<double>(static_cast<size_t>(L)));
  std::vector<double> agreement(static_cast<size_t>(L), 0.0);
  for (int64_t n = 0; n < scenes; ++n)
    for (int64_t l = 0; l < L; ++l) {
      const size_t offset = static_cast<size_t>(n * L * V + l * V);
      cos[n][l] = cosine(&img[offset], &txt[offset], V);
      agreement[l] += cos[n][l] / static_cast<double>(scenes);
    }
  std::vector<int64_t> slots(static_cast<size_t>(L));
  std::iota(slots.begin(), slots.end(), 0);
  std::stable_sort(slots.begin(), slots.end(), [&](int64_t a, int64_t b) { return agreement[a] > agreement[b]; });
  slots.resize(static_cast<size_t>(std::min<int64_t>(top_slots, L)));

  // Each caption's tokens up to its end-of-text, decoded one id at a time.
  const Tokenizer& tokenizer = clip->tokenizer();
  const std::vector<int32_t> ids = tokenizer.tokenize(captions, static_cast<int>(T));
  std::vector<std::vector<std::string>> tokens(static_cast<size_t>(scenes));
  for (int64_t n = 0; n < scenes; ++n)
    for (int64_t t = 0; t < T; ++t) {
      const int32_t id = ids[static_cast<size_t>(n * T + t)];
      std::string word = tokenizer.decode({id});
      while (!word.empty() && word.back() == ' ') word.pop_back();
      tokens[n].push_back(word);
      if (id == tokenizer.eot_token()) break;
    }
  const auto text_weight = [&](int64_t n, int64_t l, size_t t) {
    return static_cast<double>(txt_att[static_cast<size_t>((n * L + l) * T) + t]);
  };

  fs::create_directories(out_dir);
  const int columns = std::min(scenes, kVisualizeColumns);
  json slots_json = json::array();
  for (size_t rank = 0; rank < slots.size(); ++rank) {
    const int64_t l = slots[rank];
    std::vector<int64_t> order(static_cast<size_t>(scenes));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return cos[a][l] > cos[b][l]; });
    order.resize(static_cast<size_t>(columns));

    Image picture;
    picture.width = columns * kVisualizeCell + (columns + 1) * kVisualizeGap;
    picture.height = 2 * kVisualizeCell + kVisualizeCaption + 4 * kVisualizeGap;
    picture.rgb.assign(static_cast<size_t>(picture.width) * picture.height * 3, 48);
    json scene_rows = json::array();
    for (int c = 0; c < columns; ++c) {
      const int64_t n = order[static_cast<size_t>(c)];
      const Image tile = resize_bicubic(images[n], kVisualizeCell, kVisualizeCell);
      // The CLS token (index 0) has no place in the picture: only the patch weights are drawn.
      const auto first = img_att.begin() + static_cast<std::ptrdiff_t>((n * L + l) * image_tokens + 1);
      const std::vector<float> patches(first, first + grid * grid);
      const int left = kVisualizeGap + c * (kVisualizeCell + kVisualizeGap);
      paste(picture, tile, left, kVisualizeGap);
      paste(picture, heat_overlay(tile, patches, static_cast<int>(grid)), left, 2 * kVisualizeGap + kVisualizeCell);
      json words = json::array();
      std::vector<double> weights;
      for (size_t t = 0; t < tokens[n].size(); ++t) {
        weights.push_back(text_weight(n, l, t));
        words.push_back({{"token", tokens[n][t]}, {"weight", weights.back()}});
      }
      draw_weighted_caption(picture, left, 3 * kVisualizeGap + 2 * kVisualizeCell, kVisualizeCell, kVisualizeCaption,
                            tokens[n], weights);
      scene_rows.push_back({{"index", n}, {"agreement", cos[n][l]}, {"caption", captions[n]}, {"tokens", words}});
    }
    char name[64];
    std::snprintf(name, sizeof name, "rank%zu-slot%02lld.png", rank + 1, static_cast<long long>(l));
    save_png((fs::path(out_dir) / name).string(), picture);

    // The slot's mean weight per distinct token over every occurrence in all the captions.
    std::map<std::string, std::pair<double, int>> per_token;
    for (int64_t n = 0; n < scenes; ++n)
      for (size_t t = 0; t < tokens[n].size(); ++t) {
        auto& [sum, count] = per_token[tokens[n][t]];
        sum += text_weight(n, l, t);
        ++count;
      }
    std::vector<std::pair<std::string, double>> means;
    for (const auto& [token, sum_count] : per_token) means.emplace_back(token, sum_count.first / sum_count.second);
    std::stable_sort(means.begin(), means.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    constexpr size_t kTopTokens = 10;
    json top_tokens = json::array();
    for (size_t i = 0; i < std::min(kTopTokens, means.size()); ++i)
      top_tokens.push_back({{"token", means[i].first}, {"weight", means[i].second}});
    slots_json.push_back({{"rank", rank + 1}, {"slot", l}, {"agreement", agreement[l]}, {"picture", name},
                          {"top_tokens", top_tokens}, {"scenes", scene_rows}});
  }
  const fs::path slots_path = fs::path(out_dir) / "slots.json";
  std::ofstream out(slots_path);
  if (!out) throw Error(slots_path.string() + ": cannot open for writing");
  out << json({{"run", run_dir}, {"scenes", scenes}, {"slots", slots_json}}).dump(2) << "\n";
  if (!out) throw Error(slots_path.string() + ": write failed");
}

}  // namespace sparo
