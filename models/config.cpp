#include "models/config.h"

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <type_traits>
#include <vector>

#include "engine/tensor.h"

namespace sparo {

using nlohmann::json;

namespace {

json parse(const std::string& text, const std::string& source) {
  json j = parse_json_config(text, source);
  if (!j.is_object()) throw Error(source + ": expected a JSON object at the top level");
  return j;
}

std::string number(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// Reads optional fields of one JSON object, rejecting keys it was not asked about.
class Reader {
 public:
  Reader(const json& j, std::string where) : j_(j), where_(std::move(where)) {}
  template <typename T>
  void get(const char* key, T& value) {
    seen_.insert(key);
    if (!j_.contains(key) || j_.at(key).is_null()) return;
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      // json converts a float (2.5, 1e300) to an integer by a cast, which truncates, and is
      // undefined beyond the integer's range; an unsigned beyond it would wrap to negative.
      const json& v = j_.at(key);
      if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t{INT64_MAX}))
        throw Error(where_ + "." + key + ": expected an integer (at most 2^63 - 1), got " + v.dump());
    }
    if constexpr (std::is_floating_point_v<T>) {
      // json reads doubles: one past a float's range became inf (the cast is undefined besides),
      // which to_json writes as null; one below its smallest normal rounded toward 0.
      const json& v = j_.at(key);
      if (v.is_number()) {
        const double d = v.get<double>();
        if (std::fabs(d) > FLT_MAX || (d != 0 && std::fabs(d) < FLT_MIN))
          throw Error(where_ + "." + key + ": " + number(d) +
                      " is outside what a 32-bit float holds (0, or 1.2e-38 to 3.4e38 in magnitude)");
      }
    }
    try {
      value = j_.at(key).get<T>();
    } catch (const json::exception&) {
      throw Error(where_ + "." + key + ": has the wrong type (" + j_.at(key).dump() + ")");
    }
  }
  const json& object(const char* key) {
    seen_.insert(key);
    static const json empty = json::object();
    if (!j_.contains(key)) return empty;
    if (!j_.at(key).is_object()) throw Error(where_ + "." + key + ": expected an object");
    return j_.at(key);
  }
  void finish() const {
    for (auto it = j_.begin(); it != j_.end(); ++it)
      if (!seen_.count(it.key())) {
        std::string known;
        for (const std::string& k : seen_) known += (known.empty() ? "" : ", ") + k;
        throw Error(where_ + ": unknown key \"" + it.key() + "\" (known keys: " + known + ")");
      }
  }

 private:
  const json& j_;
  std::string where_;
  std::set<std::string> seen_;
};

void read_sparo(Reader& r, SparoConfig& s) {
  r.get("use_sparo", s.enabled);
  r.get("L", s.L);
  r.get("V", s.V);
  r.get("sparo_attn_dim", s.attn_dim);
  r.get("sparo_value_dim", s.value_dim);
  r.get("sparo_heads", s.heads);
  r.get("share_kv", s.share_kv);
  r.get("share_queries", s.share_queries);
  r.get("sparo_type", s.type);
}

void write_sparo(json& j, const SparoConfig& s) {
  j["use_sparo"] = s.enabled;
  j["L"] = s.L;
  j["V"] = s.V;
  j["sparo_attn_dim"] = s.attn_dim ? json(s.attn_dim) : json(nullptr);
  j["sparo_value_dim"] = s.value_dim ? json(s.value_dim) : json(nullptr);
  j["sparo_heads"] = s.heads ? json(s.heads) : json(nullptr);
  j["share_kv"] = s.share_kv;
  j["share_queries"] = s.share_queries;
  j["sparo_type"] = s.type;
}

void positive(const std::string& source, const char* name, int64_t v) {
  if (v <= 0) throw Error(source + ": " + name + " must be positive, got " + std::to_string(v));
}

// For sizes where 0 (or null) picks a default.
void positive_or_default(const std::string& source, const char* name, int64_t v, const char* default_is) {
  if (v < 0)
    throw Error(source + ": " + name + " must be positive (or 0 / null: " + default_is + "), got " + std::to_string(v));
}

// The MLP has static_cast<int64_t>(width * mlp_ratio) hidden units (layers.cpp): at least one,
// and few enough that the conversion is defined.
void check_mlp_ratio(const std::string& source, const char* name, float ratio, int64_t width) {
  if (!(ratio > 0.0f) || !std::isfinite(ratio))
    throw Error(source + ": " + name + " must be a positive finite number, got " + number(ratio));
  const float units = static_cast<float>(width) * ratio;
  if (!(units >= 1.0f && units < std::ldexp(1.0f, 63)))
    throw Error(source + ": " + name + " " + number(ratio) + " with width " + std::to_string(width) + " gives " +
                number(units) + " MLP units; expected at least 1 (and fewer than 2^63)");
}

void validate_sparo(const SparoConfig& s, const std::string& source) {
  if (!s.enabled) return;
  positive(source, "L", s.L);
  positive(source, "V", s.V);
  positive_or_default(source, "sparo_attn_dim", s.attn_dim, "the encoder's head width");
  positive_or_default(source, "sparo_value_dim", s.value_dim, "sparo_attn_dim");
  positive_or_default(source, "sparo_heads", s.heads, "L");
  const int64_t heads = s.heads ? s.heads : s.L;
  if (heads <= 0 || s.L % heads != 0)
    throw Error(source + ": sparo_heads " + std::to_string(heads) + " must divide L " + std::to_string(s.L));
  if (s.type != "cont:const" && s.type != "cont:norm" && s.type != "cont:softmax")
    throw Error(source + ": sparo_type \"" + s.type + "\" is not one of cont:const, cont:norm, cont:softmax");
  if (s.share_kv && s.value_dim && s.attn_dim && s.value_dim != s.attn_dim)
    throw Error(source + ": share_kv needs sparo_value_dim == sparo_attn_dim");
}

}  // namespace

std::string read_config_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(what + " " + path + ": cannot be opened");
  std::string text;
  std::vector<char> buf(1 << 16);
  // In chunks, checking the cap after each, so a file without end (/dev/zero) stops there.
  while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
    text.append(buf.data(), static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxConfigBytes)
      throw Error(what + " " + path + ": more than " + std::to_string(kMaxConfigBytes >> 20) + " MiB (" +
                  std::to_string(kMaxConfigBytes) +
                  " bytes), the limit for a config file; a config is a few KiB of JSON (is this the right file?)");
  }
  if (in.bad()) throw Error(what + " " + path + ": cannot be read");
  return text;
}

nlohmann::json parse_json_config(const std::string& text, const std::string& source) {
  // The objects being read, outermost first: where each is, its keys so far and the last one
  // (the key of the value being parsed, named when that value is out of range).
  struct Object {
    std::string where;
    std::set<std::string> keys;
    std::string last;
  };
  std::vector<Object> open;
  const auto path = [&](const std::string& key) {
    return open.empty() || open.back().where.empty() ? key : open.back().where + "." + key;
  };
  const json::parser_callback_t check_keys = [&](int depth, json::parse_event_t event, json& parsed) {
    // json parses any depth, but dumps (the model's text, error messages quoting a value)
    // recurse: 200000 nested arrays overflowed the stack. Configs nest 3 levels deep.
    constexpr int kMaxDepth = 64;
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) && depth >= kMaxDepth)
      throw Error(source + ": nested more than " + std::to_string(kMaxDepth) + " levels deep");
    if (event == json::parse_event_t::object_start) {
      open.push_back({open.empty() ? "" : path(open.back().last), {}, ""});
    } else if (event == json::parse_event_t::object_end) {
      open.pop_back();
    } else if (event == json::parse_event_t::key) {
      const std::string key = parsed.get<std::string>();
      if (!open.back().keys.insert(key).second)
        throw Error(source + ": key \"" + path(key) + "\" appears twice; each key may be given once");
      open.back().last = key;
    }
    return true;
  };
  try {
    return json::parse(text, check_keys);
  } catch (const json::parse_error& e) {
    throw Error(source + ": not valid JSON: " + e.what());
  } catch (const json::out_of_range& e) {  // a number beyond a double's range, e.g. 1e400
    const std::string key = open.empty() ? "" : path(open.back().last);
    throw Error(source + (key.empty() ? "" : "." + key) + ": " + e.what() +
                " (expected a finite number, at most about 1.8e308 in magnitude)");
  }
}

ClipConfig ClipConfig::from_json(const std::string& text, const std::string& source) {
  const json j = parse(text, source);
  ClipConfig c;
  Reader top(j, source);
  top.get("embed_dim", c.embed_dim);
  top.get("quick_gelu", c.quick_gelu);
  top.get("reduce_depth", c.reduce_depth);
  top.get("bottleneck_dim", c.bottleneck_dim);
  read_sparo(top, c.sparo);
  Reader vision(top.object("vision_cfg"), source + ".vision_cfg");
  vision.get("image_size", c.vision.image_size);
  vision.get("patch_size", c.vision.patch_size);
  vision.get("width", c.vision.width);
  vision.get("layers", c.vision.layers);
  vision.get("head_width", c.vision.head_width);
  vision.get("mlp_ratio", c.vision.mlp_ratio);
  vision.get("global_average_pool", c.vision.global_average_pool);
  vision.finish();
  Reader textr(top.object("text_cfg"), source + ".text_cfg");
  textr.get("context_length", c.text.context_length);
  textr.get("vocab_size", c.text.vocab_size);
  textr.get("width", c.text.width);
  textr.get("heads", c.text.heads);
  textr.get("layers", c.text.layers);
  textr.finish();
  top.finish();
  c.validate(source);
  return c;
}

ClipConfig ClipConfig::load(const std::string& path) { return from_json(read_config_file(path, "config"), path); }

void ClipConfig::validate(const std::string& source) const {
  positive(source, "embed_dim", embed_dim);
  positive(source, "vision_cfg.image_size", vision.image_size);
  positive(source, "vision_cfg.patch_size", vision.patch_size);
  positive(source, "vision_cfg.width", vision.width);
  positive(source, "vision_cfg.layers", vision.layers);
  positive(source, "vision_cfg.head_width", vision.head_width);
  check_mlp_ratio(source, "vision_cfg.mlp_ratio", vision.mlp_ratio, vision.width);
  positive(source, "text_cfg.context_length", text.context_length);
  positive(source, "text_cfg.vocab_size", text.vocab_size);
  positive(source, "text_cfg.width", text.width);
  positive(source, "text_cfg.heads", text.heads);
  positive(source, "text_cfg.layers", text.layers);
  positive_or_default(source, "bottleneck_dim", bottleneck_dim, "no bottleneck");
  if (vision.image_size % vision.patch_size != 0)
    throw Error(source + ": vision_cfg.image_size " + std::to_string(vision.image_size) +
                " is not a multiple of patch_size " + std::to_string(vision.patch_size));
  if (vision.width % vision.head_width != 0)
    throw Error(source + ": vision_cfg.width must be a multiple of head_width");
  if (text.width % text.heads != 0) throw Error(source + ": text_cfg.width must be a multiple of heads");
  if (reduce_depth < 0 || vision.layers - reduce_depth < 1 || text.layers - reduce_depth < 1)
    throw Error(source + ": reduce_depth " + std::to_string(reduce_depth) + " leaves no transformer block");
  if (sparo.enabled && bottleneck_dim) throw Error(source + ": use_sparo and bottleneck_dim exclude each other");
  validate_sparo(sparo, source);
}

std::string ClipConfig::to_json() const {
  json j;
  j["embed_dim"] = embed_dim;
  j["quick_gelu"] = quick_gelu;
  j["vision_cfg"] = {{"image_size", vision.image_size}, {"patch_size", vision.patch_size}, {"width", vision.width},
                     {"layers", vision.layers}, {"head_width", vision.head_width}, {"mlp_ratio", vision.mlp_ratio},
                     {"global_average_pool", vision.global_average_pool}};
  j["text_cfg"] = {{"context_length", text.context_length}, {"vocab_size", text.vocab_size}, {"width", text.width},
                   {"heads", text.heads}, {"layers", text.layers}};
  j["reduce_depth"] = reduce_depth;
  j["bottleneck_dim"] = bottleneck_dim ? json(bottleneck_dim) : json(nullptr);
  write_sparo(j, sparo);
  return j.dump(2);
}

DinoConfig DinoConfig::from_json(const std::string& text, const std::string& source) {
  const json j = parse(text, source);
  DinoConfig c;
  Reader r(j, source);
  std::string model = "dino";
  r.get("model", model);
  if (model != "dino") throw Error(source + ": model is \"" + model + "\", expected \"dino\"");
  r.get("image_size", c.image_size);
  r.get("patch_size", c.patch_size);
  r.get("width", c.width);
  r.get("depth", c.depth);
  r.get("heads", c.heads);
  r.get("mlp_ratio", c.mlp_ratio);
  r.get("drop_path_rate", c.drop_path_rate);
  r.get("norm_eps", c.norm_eps);
  r.get("qkv_bias", c.qkv_bias);
  r.get("norm_last_layer", c.norm_last_layer);
  r.get("readout", c.readout);
  r.get("head_hidden", c.head_hidden);
  r.get("head_bottleneck", c.head_bottleneck);
  r.get("head_out", c.head_out);
  read_sparo(r, c.sparo);
  r.finish();
  if (c.readout == "sparo") c.sparo.enabled = true;
  c.validate(source);
  return c;
}

DinoConfig DinoConfig::load(const std::string& path) { return from_json(read_config_file(path, "config"), path); }

void DinoConfig::validate(const std::string& source) const {
  positive(source, "image_size", image_size);
  positive(source, "patch_size", patch_size);
  positive(source, "width", width);
  positive(source, "depth", depth);
  positive(source, "heads", heads);
  check_mlp_ratio(source, "mlp_ratio", mlp_ratio, width);
  if (!(drop_path_rate >= 0.0f && drop_path_rate <= 1.0f))
    throw Error(source + ": drop_path_rate must be in [0, 1], got " + number(drop_path_rate));
  positive(source, "head_hidden", head_hidden);
  positive(source, "head_bottleneck", head_bottleneck);
  positive(source, "head_out", head_out);
  if (image_size % patch_size != 0) throw Error(source + ": image_size is not a multiple of patch_size");
  if (width % heads != 0) throw Error(source + ": width must be a multiple of heads");
  if (!qkv_bias) throw Error(source + ": qkv_bias false is not supported");
  if (!(norm_eps > 0.0f)) throw Error(source + ": norm_eps must be positive");
  if (readout != "cls" && readout != "sparo")
    throw Error(source + ": readout \"" + readout + "\" is not one of cls, sparo");
  validate_sparo(sparo, source);
}

std::string DinoConfig::to_json() const {
  json j = {{"model", "dino"}, {"image_size", image_size}, {"patch_size", patch_size}, {"width", width},
            {"depth", depth}, {"heads", heads}, {"mlp_ratio", mlp_ratio}, {"drop_path_rate", drop_path_rate},
            {"norm_eps", norm_eps}, {"qkv_bias", qkv_bias}, {"norm_last_layer", norm_last_layer},
            {"readout", readout}, {"head_hidden", head_hidden}, {"head_bottleneck", head_bottleneck},
            {"head_out", head_out}};
  write_sparo(j, sparo);
  return j.dump(2);
}

}  // namespace sparo
