#include "eval/report.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/tensor.h"
#include "eval/plot.h"
#include "text/text_files.h"

namespace sparo {

namespace fs = std::filesystem;
using nlohmann::json;

std::string base64_encode(const std::string& bytes) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = static_cast<uint32_t>(static_cast<uint8_t>(bytes[i])) << 16 |
                       static_cast<uint32_t>(static_cast<uint8_t>(bytes[i + 1])) << 8 |
                       static_cast<uint8_t>(bytes[i + 2]);
    for (int shift : {18, 12, 6, 0}) out += kAlphabet[(v >> shift) & 63];
  }
  const size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = static_cast<uint32_t>(static_cast<uint8_t>(bytes[i])) << 16;
    if (rest == 2) v |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[i + 1])) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::vector<json> read_metrics_lines(const std::string& path, uint64_t max_bytes) {
  if (!fs::is_regular_file(path)) throw Error(path + ": missing (has the run logged a step?)");
  std::vector<json> lines;
  int line_no = 0;
  for (const std::string& line : read_lines(path, "metrics", max_bytes)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::parse_error& e) {
      throw Error(where + ": not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object()) throw Error(where + ": expected a JSON object");
    const auto step = j.find("step");
    if (step == j.end() || !step->is_number_integer()) throw Error(where + ": expected an integer \"step\"");
    const auto loss = j.find("loss");
    // A non-finite loss is written as null: a gap in the curve, not an error. A line without a
    // loss is a monitor line (DINO's k-NN), which only trainer steps' lines precede.
    if (loss != j.end() && !(loss->is_number() || loss->is_null()))
      throw Error(where + ": expected a number (or null) \"loss\"");
    lines.push_back(std::move(j));
  }
  if (lines.empty()) throw Error(path + ": no metrics lines (has the run logged a step?)");
  return lines;
}

namespace {

std::string read_bytes(const fs::path& path) { return read_text_file(path.string(), "report input", kMaxRunFileBytes); }

json parse_json_file(const fs::path& path) {
  try {
    return json::parse(read_bytes(path));
  } catch (const json::parse_error& e) {
    throw Error(path.string() + ": not valid JSON (" + e.what() + ")");
  }
}

std::string format_value(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) return format_number(v.get<double>());
  return v.dump();  // integers, booleans, null, and anything nested as JSON
}

struct Run {
  std::string dir, name, task;
  json config;
  std::vector<std::pair<double, double>> loss;  // (step, loss) of the lines with a finite loss
  json last;                                     // the last metrics line
};

Run read_run(const std::string& dir) {
  const fs::path d(dir);
  if (!fs::is_directory(d)) throw Error(dir + ": not a directory (expected a sparo train run directory)");
  Run run;
  run.dir = dir;
  fs::path normal = d.lexically_normal();
  if (normal.filename().empty()) normal = normal.parent_path();  // "runs/a/" names "a"
  run.name = normal.filename().empty() ? dir : normal.filename().string();

  const fs::path config_path = d / "config.json";
  if (!fs::is_regular_file(config_path)) throw Error(dir + ": no config.json (is it a sparo train run?)");
  run.config = parse_json_file(config_path);
  if (!run.config.is_object()) throw Error(config_path.string() + ": expected a JSON object");
  const auto task = run.config.find("task");
  run.task = task != run.config.end() && task->is_string() ? task->get<std::string>() : "unknown task";

  const fs::path metrics_path = d / "metrics.jsonl";
  for (json& j : read_metrics_lines(metrics_path.string())) {
    if (!j.contains("loss")) {  // a monitor line: its values join the last step's
      if (run.last.is_object()) run.last.update(j);
      continue;
    }
    const json& loss = j["loss"];
    if (loss.is_number() && std::isfinite(loss.get<double>()))
      run.loss.emplace_back(static_cast<double>(j["step"].get<int64_t>()), loss.get<double>());
    run.last = std::move(j);
  }
  return run;
}

const char* const kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};
constexpr size_t kPaletteSize = sizeof kPalette / sizeof kPalette[0];

// The loss curves of runs (one polyline each) on linear axes, with ticks, grid and labels.
std::string loss_chart(const std::vector<const Run*>& runs) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const Run* r : runs)
    for (const auto& [x, y] : r->loss) {
      x0 = std::min(x0, x), x1 = std::max(x1, x);
      y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  if (!std::isfinite(x0)) return "<p class=\"note\">No finite loss values were logged.</p>\n";
  if (x1 == x0) x1 = x0 + 1;
  const double pad = y1 > y0 ? 0.05 * (y1 - y0) : std::max(0.1, 0.1 * std::abs(y0));
  y0 -= pad, y1 += pad;

  constexpr double kWidth = 720, kHeight = 360, kLeft = 70, kRight = 20, kTop = 15, kBottom = 50;
  constexpr double kPlotW = kWidth - kLeft - kRight, kPlotH = kHeight - kTop - kBottom;
  const auto px = [&](double x) { return kLeft + (x - x0) / (x1 - x0) * kPlotW; };
  const auto py = [&](double y) { return kTop + (1.0 - (y - y0) / (y1 - y0)) * kPlotH; };
  char buf[256];
  std::ostringstream svg;
  svg << "<svg class=\"chart\" viewBox=\"0 0 " << kWidth << " " << kHeight << "\" width=\"" << kWidth
      << "\" height=\"" << kHeight << "\" role=\"img\" aria-label=\"training loss by step\">\n";
  std::snprintf(buf, sizeof buf, "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" class=\"plot\"/>\n", kLeft, kTop,
                kPlotW, kPlotH);
  svg << buf;
  for (double t : nice_ticks(x0, x1, 6)) {
    std::snprintf(buf, sizeof buf,
                  "<line x1=\"%.1f\" y1=\"%g\" x2=\"%.1f\" y2=\"%g\" class=\"grid\"/>"
                  "<text x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">%s</text>\n",
                  px(t), kTop, px(t), kTop + kPlotH, px(t), kTop + kPlotH + 16, format_number(t).c_str());
    svg << buf;
  }
  for (double t : nice_ticks(y0, y1, 5)) {
    std::snprintf(buf, sizeof buf,
                  "<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\" class=\"grid\"/>"
                  "<text x=\"%g\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                  kLeft, py(t), kLeft + kPlotW, py(t), kLeft - 6, py(t) + 4, format_number(t).c_str());
    svg << buf;
  }
  std::snprintf(buf, sizeof buf,
                "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\" class=\"label\">step</text>\n"
                "<text transform=\"translate(16 %g) rotate(-90)\" text-anchor=\"middle\" class=\"label\">loss</text>\n",
                kLeft + kPlotW / 2, kHeight - 10, kTop + kPlotH / 2);
  svg << buf;
  for (size_t i = 0; i < runs.size(); ++i) {
    if (runs[i]->loss.empty()) continue;
    const char* colour = kPalette[i % kPaletteSize];
    svg << "<polyline fill=\"none\" stroke=\"" << colour << "\" stroke-width=\"1.5\" points=\"";
    for (const auto& [x, y] : runs[i]->loss) {
      std::snprintf(buf, sizeof buf, "%.1f,%.1f ", px(x), py(y));
      svg << buf;
    }
    svg << "\"><title>" << html_escape(runs[i]->name) << "</title></polyline>\n";
    // A marker on the last point, so that a one-point curve shows too.
    std::snprintf(buf, sizeof buf, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", px(runs[i]->loss.back().first),
                  py(runs[i]->loss.back().second), colour);
    svg << buf;
  }
  svg << "</svg>\n<ul class=\"legend\">\n";
  for (size_t i = 0; i < runs.size(); ++i)
    svg << "<li><span class=\"swatch\" style=\"background:" << kPalette[i % kPaletteSize] << "\"></span>"
        << html_escape(runs[i]->name) << "</li>\n";
  svg << "</ul>\n";
  return svg.str();
}

// The config's key settings: the training keys a reader compares runs by (the task's own among
// them), then every scalar of the model configuration ("model.vision_cfg.width").
std::vector<std::pair<std::string, std::string>> key_settings(const json& config) {
  static const std::vector<std::string> kCommon = {"task", "dataset", "steps", "batch_size", "accum_steps", "lr",
                                                   "min_lr", "warmup_steps", "weight_decay", "seed", "device"};
  static const std::vector<std::string> kClip = {"train_size", "scene_canvas", "max_logit_scale"};
  static const std::vector<std::string> kDino = {"local_crops", "teacher_temp", "momentum_teacher", "weight_decay_end"};
  const bool dino = config.contains("task") && config["task"] == "dino";
  std::vector<std::pair<std::string, std::string>> out;
  for (const std::vector<std::string>* keys : {&kCommon, dino ? &kDino : &kClip})
    for (const std::string& key : *keys)
      if (config.contains(key)) out.emplace_back(key, format_value(config[key]));
  const auto flatten = [&](auto&& self, const json& j, const std::string& prefix) -> void {
    for (const auto& [k, v] : j.items()) {
      if (v.is_object()) self(self, v, prefix + k + ".");
      else out.emplace_back(prefix + k, format_value(v));
    }
  };
  if (config.contains("model") && config["model"].is_object()) flatten(flatten, config["model"], "model.");
  else if (config.contains("model")) out.emplace_back("model", format_value(config["model"]));
  return out;
}

std::string kv_table(const std::string& caption, const std::vector<std::pair<std::string, std::string>>& rows) {
  std::ostringstream t;
  t << "<table class=\"kv\"><caption>" << html_escape(caption) << "</caption>\n";
  for (const auto& [k, v] : rows) t << "<tr><th>" << html_escape(k) << "</th><td>" << html_escape(v) << "</td></tr>\n";
  t << "</table>\n";
  return t.str();
}

std::string png_img(const fs::path& path) {
  const std::string bytes = read_bytes(path);
  if (bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) throw Error(path.string() + ": not a PNG file");
  return "<img src=\"data:image/png;base64," + base64_encode(bytes) + "\" alt=\"" +
         html_escape(path.filename().string()) + "\">";
}

// A caption with each token's background as strong as its weight (relative to the caption's
// largest), the weights in tooltips.
std::string weighted_tokens(const json& tokens) {
  double top = 0;
  for (const json& t : tokens) top = std::max(top, t.at("weight").get<double>());
  std::ostringstream s;
  for (const json& t : tokens) {
    const double w = t.at("weight").get<double>();
    char style[96];
    std::snprintf(style, sizeof style, "background:rgba(230,60,20,%.2f)", top > 0 ? w / top : 0.0);
    s << "<span class=\"tok\" style=\"" << style << "\" title=\"" << format_number(w) << "\">"
      << html_escape(t.at("token").get<std::string>()) << "</span> ";
  }
  return s.str();
}

// RUN_DIR/pictures/: the slots of slots.json with their pictures, then any other PNG.
std::string pictures_section(const Run& run) {
  const fs::path dir = fs::path(run.dir) / "pictures";
  if (!fs::is_directory(dir)) return "";
  std::ostringstream s;
  std::vector<std::string> shown;
  const fs::path slots_path = dir / "slots.json";
  if (fs::is_regular_file(slots_path)) {
    const json slots = parse_json_file(slots_path);
    try {
      s << "<h4>Slots with the highest image–text agreement (" << slots.at("scenes").get<int64_t>()
        << " test scenes)</h4>\n";
      for (const json& slot : slots.at("slots")) {
        s << "<div class=\"slot\"><h5>slot " << slot.at("slot").get<int64_t>() << " — rank "
          << slot.at("rank").get<int64_t>() << ", agreement " << format_number(slot.at("agreement").get<double>())
          << "</h5>\n";
        // Only the file name: slots.json cannot make the report embed files outside pictures/.
        const std::string picture = fs::path(slot.at("picture").get<std::string>()).filename().string();
        if (fs::is_regular_file(dir / picture)) {
          s << png_img(dir / picture) << "\n";
          shown.push_back(picture);
        }
        s << "<table class=\"kv\"><caption>mean attention per caption token</caption>\n";
        for (const json& t : slot.at("top_tokens"))
          s << "<tr><th>" << html_escape(t.at("token").get<std::string>()) << "</th><td>"
            << format_number(t.at("weight").get<double>()) << "</td></tr>\n";
        s << "</table>\n<ol class=\"captions\">\n";
        for (const json& scene : slot.at("scenes"))
          s << "<li>" << weighted_tokens(scene.at("tokens")) << "<span class=\"note\">(agreement "
            << format_number(scene.at("agreement").get<double>()) << ")</span></li>\n";
        s << "</ol></div>\n";
      }
    } catch (const json::exception& e) {
      throw Error(slots_path.string() + ": unexpected content (" + e.what() + ")");
    }
  }
  std::vector<fs::path> pngs;
  for (const fs::directory_entry& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".png" &&
        std::find(shown.begin(), shown.end(), e.path().filename().string()) == shown.end())
      pngs.push_back(e.path());
  std::sort(pngs.begin(), pngs.end());
  for (const fs::path& p : pngs)
    s << "<figure>" << png_img(p) << "<figcaption>" << html_escape(p.filename().string()) << "</figcaption></figure>\n";
  const std::string body = s.str();
  return body.empty() ? "" : "<h3>Pictures</h3>\n" + body;
}

std::string mean_std(const std::vector<double>& values, double* mean_out) {
  std::vector<double> v;
  for (double x : values)
    if (std::isfinite(x)) v.push_back(x);
  *mean_out = NAN;
  if (v.empty()) return "–";
  double mean = 0;
  for (double x : v) mean += x;
  mean /= static_cast<double>(v.size());
  *mean_out = mean;
  char buf[64];
  if (v.size() < 2) {
    std::snprintf(buf, sizeof buf, "%.4f", mean);
  } else {
    double var = 0;
    for (double x : v) var += (x - mean) * (x - mean);
    std::snprintf(buf, sizeof buf, "%.4f ± %.4f", mean, std::sqrt(var / static_cast<double>(v.size() - 1)));
  }
  return buf;
}

// sparo experiment's results.json: metric names, and per metric one value per seed for the
// baseline and for SPARO (null where a model has no such metric).
std::string results_section(const std::string& path) {
  if (!fs::is_regular_file(path)) throw Error(path + ": no such results file");
  const json r = parse_json_file(path);
  std::ostringstream s;
  try {
    const json& metrics = r.at("metrics");
    const json& baseline = r.at("baseline");
    const json& sparo = r.at("sparo");
    if (!metrics.is_array() || !baseline.is_array() || !sparo.is_array() || baseline.size() != metrics.size() ||
        sparo.size() != metrics.size())
      throw Error(path + ": \"baseline\" and \"sparo\" must hold one array per entry of \"metrics\" (" +
                  std::to_string(metrics.size()) + ")");
    const auto values = [&](const json& row, const std::string& field) {
      if (!row.is_array()) throw Error(path + ": every entry of \"" + field + "\" must be an array of values per seed");
      std::vector<double> out;
      for (const json& v : row) out.push_back(v.is_null() ? NAN : v.get<double>());
      return out;
    };
    s << "<h2>Baseline vs SPARO</h2>\n<table class=\"results\">\n"
      << "<tr><th>metric</th><th>baseline</th><th>SPARO</th><th>Δ</th></tr>\n";
    for (size_t i = 0; i < metrics.size(); ++i) {
      double base_mean = NAN, sparo_mean = NAN;
      const std::string base = mean_std(values(baseline[i], "baseline"), &base_mean);
      const std::string sp = mean_std(values(sparo[i], "sparo"), &sparo_mean);
      std::string delta = "–", cls;
      if (std::isfinite(base_mean) && std::isfinite(sparo_mean)) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%+.4f", sparo_mean - base_mean);
        delta = buf;
        cls = sparo_mean > base_mean ? " class=\"up\"" : sparo_mean < base_mean ? " class=\"down\"" : "";
      }
      s << "<tr><th>" << html_escape(metrics[i].get<std::string>()) << "</th><td>" << base << "</td><td>" << sp
        << "</td><td" << cls << ">" << delta << "</td></tr>\n";
    }
    s << "</table>\n";
    if (r.contains("parameters") && r["parameters"].is_object()) {
      std::vector<std::pair<std::string, std::string>> rows;
      for (const auto& [k, v] : r["parameters"].items()) rows.emplace_back(k, format_value(v));
      s << kv_table("parameters", rows);
    }
    if (r.contains("minutes") && r["minutes"].is_number())
      s << "<p class=\"note\">wall time " << format_number(r["minutes"].get<double>()) << " min</p>\n";
  } catch (const json::exception& e) {
    throw Error(path + ": unexpected content (" + e.what() + ")");
  }
  return s.str();
}

const char* kStyle = R"(body{font-family:sans-serif;margin:2em auto;max-width:1200px;color:#222}
h2{border-bottom:1px solid #ccc;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 1.5em .5em 0;font-size:90%}
th,td{border:1px solid #ddd;padding:2px 8px;text-align:left}
td{font-family:monospace}
caption{font-weight:bold;text-align:left}
.tables{display:flex;flex-wrap:wrap;align-items:flex-start}
.results td{text-align:right}
.up{color:#1a7f37}.down{color:#c62828}
.chart .plot{fill:#fafafa;stroke:#888}
.chart .grid{stroke:#e4e4e4}
.chart text{font-size:11px;fill:#444}
.chart .label{font-size:13px;fill:#222}
.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:1em}
.swatch{display:inline-block;width:14px;height:3px;margin-right:5px;vertical-align:middle}
.tok{padding:0 2px;border-radius:3px}
.note{color:#777;font-size:90%}
figure{display:inline-block;margin:.5em}
.slot{border-top:1px dashed #ccc;margin-top:1em}
img{image-rendering:pixelated;max-width:100%}
)";

}  // namespace

std::string render_report(const std::vector<std::string>& run_dirs, const std::string& results_json_path) {
  if (run_dirs.empty() && results_json_path.empty()) throw Error("report: no run directories and no results file given");
  std::vector<Run> runs;
  for (const std::string& dir : run_dirs) runs.push_back(read_run(dir));

  std::ostringstream html;
  html << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>sparo report</title>\n<style>\n"
       << kStyle << "</style>\n</head>\n<body>\n<h1>sparo report</h1>\n<p class=\"note\">" << runs.size() << " run"
       << (runs.size() == 1 ? "" : "s") << (results_json_path.empty() ? "" : ", results from " + html_escape(results_json_path))
       << "</p>\n";
  if (!results_json_path.empty()) html << results_section(results_json_path);

  if (!runs.empty()) {
    // One chart per task, in the order the tasks first appear.
    std::vector<std::string> tasks;
    for (const Run& r : runs)
      if (std::find(tasks.begin(), tasks.end(), r.task) == tasks.end()) tasks.push_back(r.task);
    html << "<h2>Training loss</h2>\n";
    for (const std::string& task : tasks) {
      std::vector<const Run*> of_task;
      for (const Run& r : runs)
        if (r.task == task) of_task.push_back(&r);
      html << "<h3>" << html_escape(task) << "</h3>\n" << loss_chart(of_task);
    }
    html << "<h2>Runs</h2>\n";
    for (const Run& r : runs) {
      std::vector<std::pair<std::string, std::string>> last;
      for (const auto& [k, v] : r.last.items()) last.emplace_back(k, format_value(v));
      html << "<section class=\"run\">\n<h3>" << html_escape(r.name) << "</h3>\n<p class=\"note\">" << html_escape(r.dir)
           << "</p>\n<div class=\"tables\">\n"
           << kv_table("settings (config.json)", key_settings(r.config))
           << kv_table("last logged step (metrics.jsonl)", last) << "</div>\n"
           << pictures_section(r) << "</section>\n";
    }
  }
  html << "</body>\n</html>\n";
  return html.str();
}

void write_report(const std::vector<std::string>& run_dirs, const std::string& results_json_path,
                  const std::string& out_path) {
  const std::string page = render_report(run_dirs, results_json_path);
  std::ofstream out(out_path, std::ios::binary);
  if (!out) throw Error(out_path + ": cannot open for writing");
  out << page;
  out.close();
  if (!out) throw Error(out_path + ": write failed");
}

}  // namespace sparo
