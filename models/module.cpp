#include "models/module.h"

#include <algorithm>
#include <cmath>
#include <set>

namespace sparo {

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

int64_t Module::parameter_count() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void to_device(Module& module, Device device) {
  NoGradGuard no_grad;
  for (const auto& [name, p] : module.named_parameters())
    if (p.device() != device) p.impl()->storage = p.to(device).impl()->storage;
}

NamedTensors state_dict(const Module& module, const StateAliases& aliases) {
  NamedTensors out = module.named_parameters();
  std::map<std::string, Tensor> by_name(out.begin(), out.end());
  for (const auto& [alias, target] : aliases) out.emplace_back(alias, by_name.at(target));
  return out;
}

namespace {

enum class LoadMode { copy, adopt };

void load_into(Module& module, const NamedTensors& state, const StateAliases& aliases, const std::string& source,
               LoadMode mode) {
  std::map<std::string, Tensor> given;
  std::vector<std::string> duplicates;
  for (const auto& [name, t] : state)
    if (!given.emplace(name, t).second) duplicates.push_back(name);
  const NamedTensors params = module.named_parameters();
  std::vector<std::string> missing, wrong_shape, unexpected;
  std::set<std::string> expected;
  for (const auto& [name, p] : params) {
    expected.insert(name);
    auto it = given.find(name);
    if (it == given.end()) missing.push_back(name);
    else if (it->second.shape() != p.shape() || it->second.dtype() != p.dtype())
      wrong_shape.push_back(name + ": " + shape_str(it->second.shape()) + " " + dtype_name(it->second.dtype()) +
                            " in the file, the model needs " + shape_str(p.shape()) + " " + dtype_name(p.dtype()));
  }
  for (const auto& [alias, target] : aliases) expected.insert(alias);
  for (const auto& [name, t] : given)
    if (!expected.count(name)) unexpected.push_back(name);
  if (!missing.empty() || !wrong_shape.empty() || !unexpected.empty() || !duplicates.empty()) {
    std::string msg = source + ": does not match the model (" + std::to_string(params.size()) + " parameters)";
    auto list = [&](const char* title, const std::vector<std::string>& names) {
      if (names.empty()) return;
      msg += "\n  " + std::string(title) + " (" + std::to_string(names.size()) + "):";
      for (const std::string& n : names) msg += "\n    " + n;
    };
    list("missing keys", missing);
    list("unexpected keys", unexpected);
    list("wrong shape or dtype", wrong_shape);
    list("duplicate keys", duplicates);
    throw Error(msg);
  }
  // Weights with NaN or infinity (a diverged run) would give NaN outputs without a word.
  std::vector<std::string> non_finite;
  for (const auto& [name, p] : params) {
    const Tensor& t = given.at(name);
    if (t.dtype() != DType::f32) continue;
    const std::vector<float> values = t.to_float_vector();
    const auto bad = std::count_if(values.begin(), values.end(), [](float v) { return !std::isfinite(v); });
    if (bad > 0) non_finite.push_back(name + " (" + std::to_string(bad) + " of " + std::to_string(values.size()) + ")");
  }
  if (!non_finite.empty()) {
    std::string msg = source + ": " + std::to_string(non_finite.size()) + " tensor(s) hold NaN or infinite values:";
    for (const std::string& n : non_finite) msg += "\n    " + n;
    throw Error(msg);
  }
  for (const auto& [alias, target] : aliases) {
    auto a = given.find(alias);
    if (a == given.end()) continue;  // aliases are optional on load
    const Tensor& t = given.at(target);
    if (a->second.shape() != t.shape() || a->second.to_float_vector() != t.to_float_vector())
      throw Error(source + ": \"" + alias + "\" must equal \"" + target + "\" (they are one shared tensor)");
  }
  NoGradGuard no_grad;
  for (const auto& [name, p] : params) {
    Tensor dst = p;
    const Tensor& src = given.at(name);
    if (mode == LoadMode::adopt && src.device() == p.device())
      p.impl()->storage = src.impl()->storage;  // same shape and dtype, checked above
    else
      copy_(dst, src.to(p.device()));
  }
}

}  // namespace

void load_state_dict(Module& module, const NamedTensors& state, const StateAliases& aliases,
                     const std::string& source) {
  load_into(module, state, aliases, source, LoadMode::copy);
}

void adopt_state_dict(Module& module, NamedTensors state, const StateAliases& aliases, const std::string& source) {
  load_into(module, state, aliases, source, LoadMode::adopt);
}

}  // namespace sparo
