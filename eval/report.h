// `sparo report`: one self-contained HTML page about training runs — per run its key settings
// and last logged metrics, the training-loss curves (inline SVG, one chart per task with every
// run of that task), the pictures and slot table `sparo visualize` left in RUN_DIR/pictures/
// (PNGs embedded as base64 data URIs), and optionally the baseline-vs-SPARO table of
// `sparo experiment`'s results.json. The page loads nothing from anywhere: CSS and SVG are
// inline, and every string taken from a file is HTML-escaped.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace sparo {

// RFC 4648 base64 (with '=' padding) of arbitrary bytes.
std::string base64_encode(const std::string& bytes);
// Escapes & < > " ' so that text is safe in element content and in quoted attributes.
std::string html_escape(const std::string& text);

// The lines of a run's metrics.jsonl (written by sparo train), blank lines skipped; each is a
// JSON object with an integer "step" and, on a trainer step's line, a number (or null, for a
// non-finite value) "loss"; a line without "loss" is a monitor line (DINO's k-NN). Errors name
// the file and the line, or that it holds more than max_bytes.
inline constexpr uint64_t kMaxRunFileBytes = 1ull << 30;  // a metrics line per step: millions of steps
std::vector<nlohmann::json> read_metrics_lines(const std::string& path, uint64_t max_bytes = kMaxRunFileBytes);

// The page for run_dirs (each a `sparo train` run directory: config.json and metrics.jsonl are
// required) and, when results_json_path is not empty, the comparison table of that results.json.
// Errors (sparo::Error) name the file, and for metrics.jsonl the line, that is missing or corrupt.
std::string render_report(const std::vector<std::string>& run_dirs, const std::string& results_json_path);
// render_report written to out_path (its directory must exist).
void write_report(const std::vector<std::string>& run_dirs, const std::string& results_json_path,
                  const std::string& out_path);

}  // namespace sparo
