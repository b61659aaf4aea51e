// TrainConfig::from_json: the input up to its first NUL byte is the config text, each later
// NUL-separated piece a --set override (model.KEY=value ones included). A config it accepts
// must come back the same through to_json and from_json, and the values the trainer derives
// from it must be defined.
#include "fuzz/fuzz_support.h"
#include "training/train_config.h"

using sparo::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> pieces(1);
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == '\0')
      pieces.emplace_back();
    else
      pieces.back() += static_cast<char>(data[i]);
  }
  const std::vector<std::string> overrides(pieces.begin() + 1, pieces.end());
  // Model paths resolve against this empty folder (and the working directory).
  static const std::string base_dir = sparo::fuzz::scratch().dir("base");
  sparo::TrainConfig config;
  try {
    config = sparo::TrainConfig::from_json(pieces[0], "fuzz", overrides, base_dir);
  } catch (const sparo::Error&) {
    return 0;
  }
  const std::string json = config.to_json();
  check(sparo::TrainConfig::from_json(json, "fuzz, rewritten", {}, base_dir).to_json() == json,
        "the config changed through to_json + from_json");
  (void)config.samples_per_step();
  (void)config.peak_lr();
  (void)config.resolved_dataset();
  (void)config.caption_table_options();
  return 0;
}
