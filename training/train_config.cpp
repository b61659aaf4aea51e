#include "training/train_config.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <sstream>
#include <tuple>

#include "engine/tensor.h"
#include "models/config.h"
#include "training/data/scenes.h"

namespace sparo {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Binds each key to its field once, so reading, writing and the list of known keys agree.
template <typename Config>
struct Fields {
  std::map<std::string, std::string*> strings;
  std::map<std::string, int64_t*> ints;
  std::map<std::string, double*> doubles;
  std::map<std::string, uint64_t*> unsigneds;
  std::map<std::string, bool*> bools;

  explicit Fields(Config& c) {
    strings = {{"task", &c.task}, {"dataset", &c.dataset}, {"data_dir", &c.data_dir}, {"csv_path", &c.csv_path},
               {"csv_image_key", &c.csv_image_key}, {"csv_caption_key", &c.csv_caption_key},
               {"csv_separator", &c.csv_separator}, {"device", &c.device}, {"precision", &c.precision},
               {"grad_clip_mode", &c.grad_clip_mode}};
    ints = {{"train_size", &c.train_size}, {"scene_canvas", &c.scene_canvas}, {"scene_min_items", &c.scene_min_items},
            {"scene_max_items", &c.scene_max_items}, {"scene_group_size", &c.scene_group_size}, {"steps", &c.steps},
            {"batch_size", &c.batch_size}, {"accum_steps", &c.accum_steps}, {"warmup_steps", &c.warmup_steps}, {"local_crops", &c.local_crops},
            {"local_crop_size", &c.local_crop_size}, {"warmup_teacher_temp_steps", &c.warmup_teacher_temp_steps},
            {"freeze_last_layer_steps", &c.freeze_last_layer_steps}, {"log_every", &c.log_every},
            {"checkpoint_every", &c.checkpoint_every}, {"keep_checkpoints", &c.keep_checkpoints},
            {"eval_every", &c.eval_every}, {"monitor_train", &c.monitor_train}, {"monitor_test", &c.monitor_test}};
    doubles = {{"lr", &c.lr}, {"min_lr", &c.min_lr}, {"weight_decay", &c.weight_decay},
               {"weight_decay_end", &c.weight_decay_end}, {"beta1", &c.beta1}, {"beta2", &c.beta2}, {"eps", &c.eps},
               {"grad_clip", &c.grad_clip}, {"max_logit_scale", &c.max_logit_scale}, {"scene_lookalike", &c.scene_lookalike},
               {"global_scale_min", &c.global_scale_min}, {"global_scale_max", &c.global_scale_max},
               {"local_scale_min", &c.local_scale_min}, {"local_scale_max", &c.local_scale_max},
               {"student_temp", &c.student_temp}, {"teacher_temp", &c.teacher_temp},
               {"warmup_teacher_temp", &c.warmup_teacher_temp}, {"center_momentum", &c.center_momentum},
               {"momentum_teacher", &c.momentum_teacher}, {"momentum_teacher_end", &c.momentum_teacher_end},
               {"lr_reference_batch", &c.lr_reference_batch}, {"blur_p_global1", &c.blur_p_global1},
               {"blur_p_global2", &c.blur_p_global2}, {"blur_p_local", &c.blur_p_local},
               {"blur_sigma_max", &c.blur_sigma_max}, {"solarize_p", &c.solarize_p}, {"grad_bucket_mib", &c.grad_bucket_mib}};
    unsigneds = {{"seed", &c.seed}};
    bools = {{"grad_overlap", &c.grad_overlap}};
  }
  std::string known() const {
    std::vector<std::string> names = {"model"};
    for (const auto& m : strings) names.push_back(m.first);
    for (const auto& m : ints) names.push_back(m.first);
    for (const auto& m : doubles) names.push_back(m.first);
    for (const auto& m : unsigneds) names.push_back(m.first);
    for (const auto& m : bools) names.push_back(m.first);
    std::sort(names.begin(), names.end());
    std::string out;
    for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
    return out;
  }
};

// "key=value": value parsed as JSON when it is JSON (numbers, true, quoted strings, objects),
// otherwise taken as a bare string (paths, names).
void apply_override(json& j, const std::string& item) {
  const size_t eq = item.find('=');
  if (eq == std::string::npos || eq == 0) throw Error("--set " + item + ": expected key=value");
  const std::string key = item.substr(0, eq), text = item.substr(eq + 1);
  // A key or bare value that is not UTF-8 would pass here and fail later, as a bare
  // json::type_error naming neither, when the resolved config is written (JSON holds UTF-8).
  for (const std::string* part : {&key, &text}) {
    try {
      (void)json(*part).dump();
    } catch (const json::type_error&) {
      throw Error("--set " + item + ": the " + (part == &key ? "key" : "value") + " is not valid UTF-8");
    }
  }
  json value;
  try {
    value = json::parse(text);
  } catch (const json::parse_error&) {
    value = text;
  } catch (const json::out_of_range&) {  // JSON, but a number no double holds: not a bare string either
    throw Error("--set " + item + ": the value " + text + " of \"" + key +
                "\" is out of range (expected a finite number, at most about 1.8e308 in magnitude)");
  }
  // An object value gets a config file's checks too (no key given twice).
  if (value.is_structured()) value = parse_json_config(text, "--set " + key);
  j[key] = value;
}

std::string resolve_model(const json& m, const std::string& source, const std::string& base_dir) {
  if (m.is_object()) return m.dump();
  if (!m.is_string()) throw Error(source + ".model: expected a path to a model config or the config object");
  const std::string name = m.get<std::string>();
  for (const fs::path& candidate : {fs::path(name), fs::path(base_dir) / name})
    if (fs::is_regular_file(candidate)) return read_config_file(candidate.string(), "model config");
  throw Error(source + ".model: no model config at \"" + name + "\" (looked relative to the current directory and to " +
              base_dir + ")");
}

}  // namespace

TrainConfig TrainConfig::from_json(const std::string& text, const std::string& source,
                                   const std::vector<std::string>& overrides, const std::string& base_dir) {
  json j = parse_json_config(text, source);
  if (!j.is_object()) throw Error(source + ": expected a JSON object at the top level");
  // "model.key=value" sets a key of the model config (applied once the model is resolved).
  json model_overrides = json::object();
  for (const std::string& o : overrides) {
    if (o.rfind("model.", 0) == 0)
      apply_override(model_overrides, o.substr(6));
    else
      apply_override(j, o);
  }

  TrainConfig c;
  Fields<TrainConfig> f(c);
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    const std::string where = source + "." + key;
    if (key == "model") continue;
    if (auto s = f.strings.find(key); s != f.strings.end()) {
      if (!v.is_string()) throw Error(where + ": expected a string, got " + v.dump());
      *s->second = v.get<std::string>();
    } else if (auto i = f.ints.find(key); i != f.ints.end()) {
      // An unsigned beyond int64 would wrap to a negative value and be reported as one.
      if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t{INT64_MAX}))
        throw Error(where + ": expected an integer (at most 2^63 - 1), got " + v.dump());
      *i->second = v.get<int64_t>();
    } else if (auto d = f.doubles.find(key); d != f.doubles.end()) {
      if (!v.is_number()) throw Error(where + ": expected a number, got " + v.dump());
      *d->second = v.get<double>();
    } else if (auto u = f.unsigneds.find(key); u != f.unsigneds.end()) {
      if (!v.is_number_unsigned()) throw Error(where + ": expected a non-negative integer, got " + v.dump());
      *u->second = v.get<uint64_t>();
    } else if (auto b = f.bools.find(key); b != f.bools.end()) {
      if (!v.is_boolean()) throw Error(where + ": expected true or false, got " + v.dump());
      *b->second = v.get<bool>();
    } else {
      throw Error(source + ": unknown key \"" + key + "\" (known keys: " + f.known() + ")");
    }
  }
  if (!j.contains("model")) throw Error(source + ": missing \"model\" (a model config path or object)");
  c.model_json = resolve_model(j.at("model"), source, base_dir);
  if (!model_overrides.empty()) {
    json model = json::parse(c.model_json, nullptr, /*allow_exceptions=*/false);
    if (!model.is_object()) throw Error(source + ".model: not a JSON object, so --set model.KEY cannot apply");
    model.update(model_overrides);
    c.model_json = model.dump();
  }
  c.validate(source);
  return c;
}

TrainConfig TrainConfig::load(const std::string& path, const std::vector<std::string>& overrides) {
  const std::string base = fs::path(path).parent_path().string();
  return from_json(read_config_file(path, "train config"), path, overrides, base.empty() ? "." : base);
}

std::string TrainConfig::to_json() const {
  TrainConfig copy = *this;
  Fields<TrainConfig> f(copy);
  json j = json::object();
  for (const auto& [k, v] : f.strings) j[k] = *v;
  for (const auto& [k, v] : f.ints) j[k] = *v;
  for (const auto& [k, v] : f.doubles) j[k] = *v;
  for (const auto& [k, v] : f.unsigneds) j[k] = *v;
  for (const auto& [k, v] : f.bools) j[k] = *v;
  j["model"] = json::parse(model_json);
  return j.dump(2) + "\n";
}

CaptionTableOptions TrainConfig::caption_table_options() const {
  CaptionTableOptions o;
  o.image_key = csv_image_key;
  o.caption_key = csv_caption_key;
  o.separator = csv_separator[0];
  return o;
}

std::string TrainConfig::resolved_dataset() const {
  if (!dataset.empty()) return dataset;
  return task == "clip" ? "fashion-scenes" : "fashion-mnist";
}

void TrainConfig::validate(const std::string& source) const {
  const auto fail = [&](const std::string& key, const std::string& what) { throw Error(source + "." + key + ": " + what); };
  if (task != "clip" && task != "dino") fail("task", "must be \"clip\" or \"dino\", got \"" + task + "\"");
  const std::string ds = resolved_dataset();
  if (task == "clip" && ds != "fashion-scenes" && ds != "csv")
    fail("dataset", "clip trains on \"fashion-scenes\" or \"csv\", got \"" + ds + "\"");
  if (task == "dino" && ds != "fashion-mnist" && ds != "csv")
    fail("dataset", "dino trains on \"fashion-mnist\" or \"csv\", got \"" + ds + "\"");
  if (ds == "csv" && csv_path.empty()) fail("csv_path", "is required with dataset \"csv\"");
  if (csv_separator != "\t" && csv_separator != ",") fail("csv_separator", "must be \"\\t\" or \",\"");
  const auto positive = [&](const char* key, int64_t v) {
    if (v <= 0) fail(key, "must be > 0, got " + std::to_string(v));
  };
  positive("steps", steps);
  positive("batch_size", batch_size);
  positive("accum_steps", accum_steps);
  // samples_per_step() multiplies them; the trainer logs and schedules with the product.
  if (int64_t product = 0; __builtin_mul_overflow(batch_size, accum_steps, &product))
    fail("accum_steps", "batch_size × accum_steps = " + std::to_string(batch_size) + " × " + std::to_string(accum_steps) +
                            " is beyond 64-bit integers");
  positive("train_size", train_size);
  positive("log_every", log_every);
  positive("checkpoint_every", checkpoint_every);
  positive("keep_checkpoints", keep_checkpoints);
  positive("local_crop_size", local_crop_size);
  if (local_crops < 0) fail("local_crops", "must be >= 0");
  if (warmup_steps < 0 || warmup_steps > steps) fail("warmup_steps", "must be in [0, steps]");
  if (task == "clip" && batch_size < 2) fail("batch_size", "a contrastive batch needs at least 2 pairs");
  if (scene_group_size < 1 || scene_group_size > kMaxSceneGroup)
    fail("scene_group_size", "must be in [1, " + std::to_string(kMaxSceneGroup) + "], got " + std::to_string(scene_group_size));
  if (scene_group_size > 1 && (task != "clip" || ds != "fashion-scenes"))
    fail("scene_group_size", "groups are drawn from fashion-scenes (clip only); must be 1 here");
  if (batch_size % scene_group_size != 0)
    fail("scene_group_size", "must divide batch_size " + std::to_string(batch_size) + ", got " + std::to_string(scene_group_size));
  if (!(scene_lookalike >= 0 && scene_lookalike <= 1)) fail("scene_lookalike", "must be in [0, 1]");
  if (scene_lookalike > 0 && scene_group_size == 1)
    fail("scene_lookalike", "chooses the items of scene groups; needs scene_group_size > 1");
  const auto finite_nonneg = [&](const char* key, double v) {
    if (!std::isfinite(v) || v < 0) fail(key, "must be finite and >= 0");
  };
  finite_nonneg("lr", lr);
  finite_nonneg("min_lr", min_lr);
  finite_nonneg("weight_decay", weight_decay);
  finite_nonneg("grad_clip", grad_clip);
  finite_nonneg("eps", eps);
  if (!(beta1 >= 0 && beta1 < 1)) fail("beta1", "must be in [0, 1)");
  if (!(beta2 >= 0 && beta2 < 1)) fail("beta2", "must be in [0, 1)");
  if (!(max_logit_scale >= 1)) fail("max_logit_scale", "must be >= 1");
  for (auto [key, lo, hi] : {std::tuple{"global_scale", global_scale_min, global_scale_max},
                             std::tuple{"local_scale", local_scale_min, local_scale_max}})
    if (!(lo > 0 && lo <= hi && hi <= 1)) fail(std::string(key) + "_min/max", "need 0 < min <= max <= 1");
  for (auto [key, v] : {std::pair{"student_temp", student_temp}, std::pair{"teacher_temp", teacher_temp},
                        std::pair{"warmup_teacher_temp", warmup_teacher_temp}})
    if (!(v > 0)) fail(key, "must be > 0");
  if (!(center_momentum >= 0 && center_momentum <= 1)) fail("center_momentum", "must be in [0, 1]");
  if (!(momentum_teacher >= 0 && momentum_teacher <= 1)) fail("momentum_teacher", "must be in [0, 1]");
  if (!(momentum_teacher_end >= 0 && momentum_teacher_end <= 1)) fail("momentum_teacher_end", "must be in [0, 1]");
  finite_nonneg("lr_reference_batch", lr_reference_batch);
  if (grad_clip_mode != "global" && grad_clip_mode != "per_parameter")
    fail("grad_clip_mode", "must be \"global\" or \"per_parameter\", got \"" + grad_clip_mode + "\"");
  for (auto [key, v] : {std::pair{"blur_p_global1", blur_p_global1}, std::pair{"blur_p_global2", blur_p_global2},
                        std::pair{"blur_p_local", blur_p_local}, std::pair{"solarize_p", solarize_p}})
    if (!(v >= 0 && v <= 1)) fail(key, "is a probability: must be in [0, 1]");
  if (!(blur_sigma_max >= 0.1 && blur_sigma_max <= 10)) fail("blur_sigma_max", "must be in [0.1, 10]");
  if (!(grad_bucket_mib > 0 && grad_bucket_mib <= 1024)) fail("grad_bucket_mib", "must be in (0, 1024] MiB");
  // Every number here is used as a 32-bit float: past its range it became inf, and a nonzero
  // value below its smallest normal rounded toward 0 (a temperature of 1e-300 divided by 0).
  TrainConfig copy = *this;
  for (const auto& [key, v] : Fields<TrainConfig>(copy).doubles)
    if (!std::isfinite(*v) || std::fabs(*v) > FLT_MAX || (*v != 0 && std::fabs(*v) < FLT_MIN)) {
      std::ostringstream value;
      value << *v;
      fail(key, "is " + value.str() + ", outside what a 32-bit float holds (0, or 1.2e-38 to 3.4e38 in magnitude)");
    }
  if (!(peak_lr() <= FLT_MAX))
    fail("lr", "lr × batch / lr_reference_batch is beyond what a 32-bit float holds (3.4e38)");
  if (eval_every < 0) fail("eval_every", "must be >= 0 (0 = no k-NN monitor)");
  positive("monitor_train", monitor_train);
  positive("monitor_test", monitor_test);
  if (device != "cpu" && device.rfind("vulkan", 0) != 0) fail("device", "must be cpu, vulkan or vulkan:N");
  if (precision != "f32" && precision != "bf16") fail("precision", "must be f32 or bf16, got \"" + precision + "\"");
  // The model config must parse for the task (its own errors name the field).
  if (task == "clip")
    ClipConfig::from_json(model_json, source + ".model");
  else
    DinoConfig::from_json(model_json, source + ".model");
}

}  // namespace sparo
