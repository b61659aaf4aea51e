// `sparo visualize`: what the slots of a SPARO CLIP model look at. Fashion scenes from the
// Fashion-MNIST test set (split test) are encoded with attention; each slot's image–text
// agreement is the mean over the scenes of the cosine between the image's and its caption's
// slot vectors (each slot's V-dim part of the embedding, L2-normalised on its own). For the
// top slots by agreement, one PNG each: the scenes where that slot agrees most, the scene in
// the top row and below it the slot's attention over the patch grid, upsampled (bilinear),
// coloured black → red → yellow and blended over the scene. slots.json holds, per top slot,
// its attention over the caption tokens (tokens decoded one id at a time), for the report.
//
// plot_training_curves draws, for any run, one PNG per logged quantity of metrics.jsonl.
#pragma once

#include <string>
#include <vector>

namespace sparo {

// Picture layout: columns = min(scenes, kVisualizeColumns); each scene's column holds the
// scene, its heat map and its caption (kVisualizeCaption pixels tall: the caption's words on
// backgrounds as strong as the slot's attention to them, start and end tokens left out), each
// kVisualizeCell pixels wide with kVisualizeGap pixels around, so a picture is
// columns·cell + (columns+1)·gap wide and 2·cell + caption + 4·gap tall.
constexpr int kVisualizeColumns = 8;
constexpr int kVisualizeCell = 128;
constexpr int kVisualizeCaption = 64;
constexpr int kVisualizeGap = 4;

// Writes out_dir/rank<R>-slot<NN>.png for the top_slots best-agreeing slots (clamped to the
// model's L) and out_dir/slots.json:
//   {"run": run_dir, "scenes": N, "slots": [{"rank", "slot", "agreement", "picture",
//     "top_tokens": [{"token", "weight"}...],      mean weight per distinct token, highest first
//     "scenes": [{"index", "agreement", "caption", "tokens": [{"token", "weight"}...]}...]}]}
// The scenes are scenes 0..N-1 of the test split with seed 0, drawn with the run's scene
// settings (canvas, items per scene) from its Fashion-MNIST directory's test set. A run that is not a SPARO CLIP run is an error.
// Writes out_dir/curve-<key>.png for every numeric key of the run's metrics.jsonl except
// "step" and "elapsed_s" (loss, lr, grad_norm, ...): the value against the step, titled with
// the run's directory name; a DINO run's k-NN monitor also gets curve-knn.png, teacher and
// student together. Returns the files written, in key order (curve-knn.png last). Errors: as
// read_metrics_lines (eval/report.h).
std::vector<std::string> plot_training_curves(const std::string& run_dir, const std::string& out_dir);

void visualize_run(const std::string& run_dir, const std::string& out_dir, int scenes = 8, int top_slots = 4);

}  // namespace sparo
