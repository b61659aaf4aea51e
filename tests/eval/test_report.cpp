// sparo report and sparo visualize: the HTML page of hand-made run directories (escaped,
// self-contained, loss curves as SVG, the results table, clear errors for corrupt files), and
// the slot pictures of a tiny SPARO CLIP model trained for two steps.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "eval/report.h"
#include "eval/visualize.h"
#include "image/image.h"
#include "tests/expect_error.h"
#include "tests/temp_dir.h"
#include "training/train_config.h"
#include "training/trainer.h"

namespace sparo {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// A run directory as sparo train leaves it, with a dataset name that needs escaping.
void make_run(const std::string& dir, const std::string& task, const std::vector<double>& losses) {
  fs::create_directories(dir);
  std::ofstream(dir + "/config.json")
      << json({{"task", task}, {"steps", 30}, {"lr", 5e-4}, {"dataset", "<b>&captions"}, {"teacher_temp", 0.04},
               {"model", {{"embed_dim", 32}, {"vision_cfg", {{"width", 48}}}}}})
             .dump();
  std::ofstream metrics(dir + "/metrics.jsonl");
  for (size_t i = 0; i < losses.size(); ++i)
    metrics << json({{"step", 10 * (i + 1)}, {"loss", losses[i]}, {"lr", 1e-4}, {"samples_per_s", 100.0}}).dump() << "\n";
}

TEST(Report, Base64AndEscaping) {
  // RFC 4648's test vectors.
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64_encode(std::string("\xff\x00\x80", 3)), "/wCA");
  EXPECT_EQ(html_escape("<b>&\"x\"'"), "&lt;b&gt;&amp;&quot;x&quot;&#39;");
}

TEST(Report, RendersRunsCurvesAndResults) {
  TempDir tmp("render");
  make_run(tmp / "clip-a", "clip", {4.0, 3.5, 3.1});
  make_run(tmp / "clip-b", "clip", {4.2, 3.9, 3.0});
  make_run(tmp / "dino-<x>", "dino", {9.0, 8.0, 7.5});
  std::ofstream(tmp / "results.json")
      << json({{"metrics", {"zero-shot <top1>", "probe"}},
               {"baseline", {{0.5, 0.7}, {0.9}}},
               {"sparo", {{0.75, 0.85}, {nullptr}}},
               {"parameters", {{"clip-sparo", 1234}}},
               {"minutes", 2.5}})
             .dump();
  const std::string html = render_report({tmp / "clip-a", tmp / "clip-b", tmp / "dino-<x>"}, tmp / "results.json");

  EXPECT_NE(html.find("<h3>clip-a</h3>"), std::string::npos);
  EXPECT_NE(html.find("dino-&lt;x&gt;"), std::string::npos);
  EXPECT_EQ(html.find("dino-<x>"), std::string::npos);
  // The dataset string comes out escaped, never as markup.
  EXPECT_NE(html.find("&lt;b&gt;&amp;captions"), std::string::npos);
  EXPECT_EQ(html.find("<b>&"), std::string::npos);
  // One chart per task; one polyline per run.
  EXPECT_EQ(count_of(html, "<svg"), 2u);
  EXPECT_EQ(count_of(html, "<polyline"), 3u);
  // The last metrics line and the config's settings, flattened.
  EXPECT_NE(html.find("model.vision_cfg.width"), std::string::npos);
  EXPECT_EQ(count_of(html, "<th>teacher_temp</th>"), 1u);  // a DINO setting, shown for the DINO run only
  EXPECT_NE(html.find("<th>step</th><td>30</td>"), std::string::npos);
  // The comparison: means, std over seeds, Δ; a missing value has no Δ.
  EXPECT_NE(html.find("zero-shot &lt;top1&gt;"), std::string::npos);
  EXPECT_NE(html.find("0.6000 ± 0.1414"), std::string::npos) << html;
  EXPECT_NE(html.find("+0.2000"), std::string::npos);
  EXPECT_NE(html.find("clip-sparo"), std::string::npos);
  // Self-contained: nothing is fetched from anywhere.
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find("src=\"/"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);

  // A picture in pictures/ is embedded as a data URI.
  fs::create_directories(tmp / "clip-a/pictures");
  Image img;
  img.width = img.height = 3;
  img.rgb.assign(27, 200);
  save_png(tmp / "clip-a/pictures/extra.png", img);
  const std::string with_picture = render_report({tmp / "clip-a"}, "");
  EXPECT_NE(with_picture.find("<img src=\"data:image/png;base64,iVBORw0KGgo"), std::string::npos);
  EXPECT_NE(with_picture.find("extra.png"), std::string::npos);

  write_report({tmp / "clip-a"}, "", tmp / "report.html");
  std::ifstream in(tmp / "report.html");
  std::stringstream written;
  written << in.rdbuf();
  EXPECT_EQ(written.str(), with_picture);
}

TEST(Report, CorruptOrMissingFilesNameTheFileAndLine) {
  TempDir tmp("errors");
  make_run(tmp / "run", "clip", {4.0, 3.5, 3.1});
  std::ofstream(tmp / "run/metrics.jsonl", std::ios::app) << "{\"step\": 40, \"loss\": 3.0\n";  // truncated
  expect_error([&] { render_report({tmp / "run"}, ""); }, {tmp / "run/metrics.jsonl:4", "not valid JSON"});

  make_run(tmp / "noloss", "clip", {4.0});
  std::ofstream(tmp / "noloss/metrics.jsonl", std::ios::app) << "{\"step\": 20, \"loss\": \"low\"}\n";
  expect_error([&] { render_report({tmp / "noloss"}, ""); }, {tmp / "noloss/metrics.jsonl:2", "\"loss\""});

  make_run(tmp / "empty", "clip", {});
  expect_error([&] { render_report({tmp / "empty"}, ""); }, {tmp / "empty/metrics.jsonl", "no metrics lines"});

  make_run(tmp / "nometrics", "clip", {1.0});
  fs::remove(tmp / "nometrics/metrics.jsonl");
  expect_error([&] { render_report({tmp / "nometrics"}, ""); }, {tmp / "nometrics/metrics.jsonl", "missing"});

  expect_error([&] { render_report({tmp / "nowhere"}, ""); }, {tmp / "nowhere", "not a directory"});

  make_run(tmp / "good", "clip", {1.0});
  std::ofstream(tmp / "results.json") << json({{"metrics", {"a", "b"}}, {"baseline", {{1.0}}}, {"sparo", {{1.0}}}}).dump();
  expect_error([&] { render_report({tmp / "good"}, tmp / "results.json"); }, {tmp / "results.json", "one array per entry"});
  expect_error([&] { render_report({tmp / "good"}, tmp / "missing.json"); }, {tmp / "missing.json"});

  // metrics.jsonl is capped (1 GiB by default; here 1024 bytes): a stray huge file is refused by name
  make_run(tmp / "long", "clip", std::vector<double>(100, 1.0));
  expect_error([&] { read_metrics_lines(tmp / "long/metrics.jsonl", 1024); },
               {tmp / "long/metrics.jsonl", "holds more than 1024 bytes"});
  EXPECT_EQ(read_metrics_lines(tmp / "long/metrics.jsonl").size(), 100u);

  fs::create_directories(tmp / "good/pictures");
  std::ofstream(tmp / "good/pictures/fake.png") << "not a png";
  expect_error([&] { render_report({tmp / "good"}, ""); }, {tmp / "good/pictures/fake.png", "not a PNG"});
}

// A tiny SPARO CLIP (L 4, V 8) trained for two steps.
TrainConfig tiny_clip(bool sparo) {
  json model = {{"embed_dim", 32},
                {"vision_cfg", {{"image_size", 32}, {"layers", 1}, {"width", 32}, {"head_width", 16}, {"patch_size", 8}}},
                {"text_cfg", {{"context_length", 24}, {"vocab_size", 600}, {"width", 32}, {"heads", 2}, {"layers", 1}}}};
  if (sparo) model.update({{"use_sparo", true}, {"L", 4}, {"V", 8}});
  const json j = {{"task", "clip"}, {"model", model}, {"train_size", 256}, {"steps", 2}, {"batch_size", 16},
                  {"warmup_steps", 1}, {"log_every", 1}, {"checkpoint_every", 2}};
  return TrainConfig::from_json(j.dump(), "test clip config");
}

TEST(Visualize, WritesSlotPicturesAndSlotsJsonThatTheReportShows) {
  TempDir tmp("visualize");
  std::ostringstream sink;
  TrainOptions quiet;
  quiet.progress = 0;
  quiet.out = &sink;
  train(tiny_clip(true), tmp / "run", quiet);

  visualize_run(tmp / "run", tmp / "run/pictures", /*scenes=*/4, /*top_slots=*/2);
  std::ifstream in(tmp / "run/pictures/slots.json");
  const json slots = json::parse(in);
  EXPECT_EQ(slots.at("scenes"), 4);
  ASSERT_EQ(slots.at("slots").size(), 2u);
  std::vector<int64_t> seen;
  for (const json& slot : slots.at("slots")) {
    const int64_t l = slot.at("slot").get<int64_t>();
    EXPECT_GE(l, 0);
    EXPECT_LT(l, 4);
    seen.push_back(l);
    const Image picture = load_image(tmp / ("run/pictures/" + slot.at("picture").get<std::string>()));
    EXPECT_EQ(picture.width, 4 * kVisualizeCell + 5 * kVisualizeGap);
    EXPECT_EQ(picture.height, 2 * kVisualizeCell + kVisualizeCaption + 4 * kVisualizeGap);
    // The caption band under the first scene: white letters, and the most attended token on red.
    bool white = false, red = false;
    for (int y = 3 * kVisualizeGap + 2 * kVisualizeCell; y < picture.height; ++y)
      for (int x = kVisualizeGap; x < kVisualizeGap + kVisualizeCell; ++x) {
        const uint8_t* p = &picture.rgb[(static_cast<size_t>(y) * picture.width + x) * 3];
        white = white || (p[0] == 255 && p[1] == 255 && p[2] == 255);
        red = red || (p[0] == 230 && p[1] == 60 && p[2] == 20);
      }
    EXPECT_TRUE(white);
    EXPECT_TRUE(red);
    // The heat-map row differs from the scene row above it.
    const size_t row = static_cast<size_t>(picture.width) * 3;
    const size_t top = static_cast<size_t>(kVisualizeGap) * row, bottom = static_cast<size_t>(2 * kVisualizeGap + kVisualizeCell) * row;
    EXPECT_FALSE(std::equal(picture.rgb.begin() + static_cast<std::ptrdiff_t>(top),
                            picture.rgb.begin() + static_cast<std::ptrdiff_t>(top + row * kVisualizeCell),
                            picture.rgb.begin() + static_cast<std::ptrdiff_t>(bottom)));
    // Four scenes, most agreeing first; each caption's token weights are one softmax (sum 1).
    ASSERT_EQ(slot.at("scenes").size(), 4u);
    double previous = 2.0;
    for (const json& scene : slot.at("scenes")) {
      const double a = scene.at("agreement").get<double>();
      EXPECT_LE(a, previous);
      previous = a;
      double sum = 0;
      for (const json& t : scene.at("tokens")) sum += t.at("weight").get<double>();
      EXPECT_NEAR(sum, 1.0, 1e-4);
      EXPECT_EQ(scene.at("tokens").front().at("token"), "<start_of_text>");
    }
    EXPECT_FALSE(slot.at("top_tokens").empty());
  }
  EXPECT_NE(seen[0], seen[1]);
  EXPECT_GE(slots["slots"][0]["agreement"].get<double>(), slots["slots"][1]["agreement"].get<double>());

  // The report shows the slots: pictures inline, tokens escaped.
  const std::string html = render_report({tmp / "run"}, "");
  EXPECT_EQ(count_of(html, "data:image/png;base64,"), 2u);
  EXPECT_NE(html.find("&lt;start_of_text&gt;"), std::string::npos);
  EXPECT_EQ(html.find("<start_of_text>"), std::string::npos);
}

TEST(Visualize, TrainingCurvesAreOnePngPerLoggedQuantity) {
  TempDir tmp("curves");
  fs::create_directories(tmp / "run");
  std::ofstream(tmp / "run/metrics.jsonl") << R"({"step": 1, "loss": 4.5, "lr": 1e-4, "grad_norm": 3.0, "elapsed_s": 1.0}
{"step": 10, "loss": null, "lr": 5e-4, "grad_norm": 2.0, "elapsed_s": 9.0}

{"step": 20, "loss": 2.5, "lr": 2e-4, "grad_norm": 1.0, "elapsed_s": 18.0, "note": "text is not plotted"}
)";
  const std::vector<std::string> written = plot_training_curves(tmp / "run", tmp / "out");
  EXPECT_EQ(written, (std::vector<std::string>{tmp / "out/curve-grad_norm.png", tmp / "out/curve-loss.png",
                                               tmp / "out/curve-lr.png"}));
  for (const std::string& path : written) {
    const Image chart = load_image(path);
    EXPECT_EQ(chart.width, 800);
    EXPECT_EQ(chart.height, 450);
  }
  // The loss curve (with its gap) differs from the lr curve.
  EXPECT_NE(load_image(written[1]).rgb, load_image(written[2]).rgb);

  // A DINO run's monitor lines (no loss) draw teacher and student on one more chart.
  std::ofstream(tmp / "run/metrics.jsonl") << R"({"step": 0, "knn_teacher": 0.5, "knn_student": 0.5}
{"step": 1, "loss": 4.5}
{"step": 10, "loss": 4.0}
{"step": 10, "knn_teacher": 0.6, "knn_student": 0.55}
)";
  const std::vector<std::string> dino = plot_training_curves(tmp / "run", tmp / "dino");
  EXPECT_EQ(dino, (std::vector<std::string>{tmp / "dino/curve-knn_student.png", tmp / "dino/curve-knn_teacher.png",
                                            tmp / "dino/curve-loss.png", tmp / "dino/curve-knn.png"}));

  std::ofstream(tmp / "run/metrics.jsonl") << "{\"step\": 1, \"loss\": 4.5}\n{\"loss\": 3}\n";
  expect_error([&] { plot_training_curves(tmp / "run", tmp / "out"); }, {"metrics.jsonl:2", "integer \"step\""});
  expect_error([&] { plot_training_curves(tmp / "missing", tmp / "out"); }, {"metrics.jsonl", "missing"});
}

TEST(Visualize, NeedsASparoClipRun) {
  TempDir tmp("not_sparo");
  fs::create_directories(tmp / "baseline");
  std::ofstream(tmp / "baseline/config.json") << tiny_clip(false).to_json();
  expect_error([&] { visualize_run(tmp / "baseline", tmp / "out", 4, 2); },
               {tmp / "baseline", "visualize needs a SPARO model"});
  expect_error([&] { visualize_run(tmp / "nothing", tmp / "out", 4, 2); }, {tmp / "nothing", "config.json"});
  expect_error([&] { visualize_run(tmp / "baseline", tmp / "out", 0, 2); }, {"scenes must be >= 1"});
}

}  // namespace
}  // namespace sparo
