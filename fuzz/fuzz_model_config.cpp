// ClipConfig::from_json and DinoConfig::from_json, both on each input (the schemas share the
// JSON reader and the SPARO keys). A config either accepts must come back the same through
// to_json and from_json.
#include "fuzz/fuzz_support.h"
#include "models/config.h"

using sparo::fuzz::check;

namespace {

template <typename Config>
void round_trip(const std::string& text) {
  Config config;
  try {
    config = Config::from_json(text, "fuzz");
  } catch (const sparo::Error&) {
    return;
  }
  const std::string json = config.to_json();
  check(Config::from_json(json, "fuzz, rewritten").to_json() == json, "the config changed through to_json + from_json");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  round_trip<sparo::ClipConfig>(text);
  round_trip<sparo::DinoConfig>(text);
  return 0;
}
