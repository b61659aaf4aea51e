// Model configurations in OpenCLIP's JSON schema (plus the SPARO keys of the reference)
// and a small schema for DINO. Unknown keys are errors: a typo must not silently
// train the wrong model.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>

namespace sparo {

// Parses the text of a JSON config (model or training); errors name `source`. Stricter than
// json::parse: a key given twice in one object is an error, not the last value silently
// kept (a stale line would quietly override the one being edited), and a number out of a
// double's range names its key.
nlohmann::json parse_json_config(const std::string& text, const std::string& source);

// A config is a few KiB of JSON. Reading stops past this cap, so /dev/zero or a
// multi-gigabyte file given by mistake is refused at once instead of filling memory.
inline constexpr uint64_t kMaxConfigBytes = 16ull << 20;  // 16 MiB

// The text of a JSON config file. Errors start with `what` and the path ("train config
// PATH: ..."): the file cannot be opened or read, or it holds more than kMaxConfigBytes.
std::string read_config_file(const std::string& path, const std::string& what);

struct SparoConfig {
  bool enabled = false;        // use_sparo
  int64_t L = 64, V = 64;
  int64_t attn_dim = 0;        // sparo_attn_dim; 0: the encoder's head width
  int64_t value_dim = 0;       // sparo_value_dim; 0: attn_dim (only used when !share_kv)
  int64_t heads = 0;           // sparo_heads; 0: L (one group per slot)
  bool share_kv = true;
  bool share_queries = false;
  std::string type = "cont:const";  // cont:const | cont:norm | cont:softmax
};

struct VisionConfig {
  int64_t image_size = 224, patch_size = 16, width = 768, layers = 12, head_width = 64;
  float mlp_ratio = 4.0f;
  bool global_average_pool = false;
  int64_t heads() const { return width / head_width; }
};

struct TextConfig {
  int64_t context_length = 77, vocab_size = 49408, width = 512, heads = 8, layers = 12;
};

struct ClipConfig {
  int64_t embed_dim = 512;
  // The width of the towers' unit-norm embeddings: SPARO's L·V slots concatenated, else embed_dim.
  int64_t output_dim() const { return sparo.enabled ? sparo.L * sparo.V : embed_dim; }
  bool quick_gelu = false;
  VisionConfig vision;
  TextConfig text;
  SparoConfig sparo;
  int64_t reduce_depth = 0;    // blocks removed from both towers
  int64_t bottleneck_dim = 0;  // 0: off; else the towers project to it, then up to embed_dim

  static ClipConfig from_json(const std::string& json_text, const std::string& source = "config");
  static ClipConfig load(const std::string& path);
  std::string to_json() const;
  void validate(const std::string& source) const;
};

struct DinoConfig {
  int64_t image_size = 224, patch_size = 16, width = 384, depth = 12, heads = 6;
  float mlp_ratio = 4.0f;
  float drop_path_rate = 0.1f;   // stochastic depth of the last block (linear from 0)
  float norm_eps = 1e-6f;
  bool qkv_bias = true;          // only true is supported (DINO's default)
  bool norm_last_layer = true;   // head.last_layer.weight_g fixed to 1
  std::string readout = "cls";  // cls | sparo
  SparoConfig sparo;            // used when readout == "sparo"
  int64_t head_hidden = 2048, head_bottleneck = 256, head_out = 65536;

  static DinoConfig from_json(const std::string& json_text, const std::string& source = "config");
  static DinoConfig load(const std::string& path);
  std::string to_json() const;
  void validate(const std::string& source) const;
};

}  // namespace sparo
