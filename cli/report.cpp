// `sparo report` (one self-contained HTML page about runs, eval/report.h) and `sparo visualize`
// (what a SPARO CLIP model's slots look at, eval/visualize.h).
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "eval/report.h"
#include "eval/visualize.h"
#include "models/config.h"
#include "training/train_config.h"

namespace sparo::cli {

void add_report_commands(CLI::App& app) {
  struct ReportArgs {
    std::vector<std::string> runs;
    std::string results, out = "report.html";
  };
  auto r = std::make_shared<ReportArgs>();
  CLI::App* report = app.add_subcommand(
      "report", "Write one self-contained HTML page: settings, loss curves and pictures of runs, and the comparison table");
  report->add_option("runs", r->runs, "Run directories of sparo train")->required();
  report->add_option("--results", r->results, "results.json of sparo experiment: adds the baseline-vs-SPARO table");
  report->add_option("--out", r->out, "The HTML file to write")->capture_default_str();
  report->callback([r] {
    write_report(r->runs, r->results, r->out);
    std::cout << "wrote " << r->out << " (" << r->runs.size() << " run" << (r->runs.size() == 1 ? "" : "s") << ")\n";
  });

  struct VisualizeArgs {
    std::string run, out;
    int scenes = 8, top = 4;
  };
  auto v = std::make_shared<VisualizeArgs>();
  CLI::App* visualize = app.add_subcommand(
      "visualize",
      "Pictures of a run: its training curves (PNG), and for a SPARO CLIP run the slots' attention heat maps on test "
      "scenes and slots.json");
  visualize->add_option("run", v->run, "Run directory of sparo train")->required();
  visualize->add_option("--scenes", v->scenes, "Fashion-scenes test images to encode")
      ->capture_default_str()->check(CLI::PositiveNumber);
  visualize->add_option("--top", v->top, "Slots to draw, those with the highest image-text agreement")
      ->capture_default_str()->check(CLI::PositiveNumber);
  visualize->add_option("--out", v->out, "Output directory (default RUN/pictures, which sparo report shows)");
  visualize->callback([v] {
    const std::string out = v->out.empty() ? (std::filesystem::path(v->run) / "pictures").string() : v->out;
    const std::vector<std::string> curves = plot_training_curves(v->run, out);
    std::cout << "wrote " << curves.size() << " training curves to " << out << "\n";
    const TrainConfig cfg = TrainConfig::load((std::filesystem::path(v->run) / "config.json").string());
    if (cfg.task == "clip" && ClipConfig::from_json(cfg.model_json, v->run + " model").sparo.enabled) {
      visualize_run(v->run, out, v->scenes, v->top);
      std::cout << "wrote the slot pictures and slots.json to " << out << "\n";
    } else {
      std::cout << "no slot pictures: " << v->run << " is not a SPARO CLIP run\n";
    }
  });
}

}  // namespace sparo::cli
