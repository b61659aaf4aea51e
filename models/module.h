// Module: a model part that owns named parameters (leaf tensors) and can list them
// under the names of OpenCLIP / facebookresearch/dino state dicts.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/safetensors.h"

namespace sparo {

class Module {
 public:
  virtual ~Module() = default;
  // Appends (prefix + name, tensor) for every parameter, in a stable order.
  virtual void collect_parameters(const std::string& prefix, NamedTensors& out) const = 0;

  NamedTensors named_parameters() const {
    NamedTensors out;
    collect_parameters("", out);
    return out;
  }
  std::vector<Tensor> parameters() const;
  int64_t parameter_count() const;
  void set_training(bool training) { training_ = training; }
  bool training() const { return training_; }

 protected:
  bool training_ = true;
};

// Moves every parameter to `device` in place: each tensor keeps its identity (optimisers and
// other holders see the move), only its storage changes. Make optimisers after moving.
void to_device(Module& module, Device device);

// Extra entries a state dict carries besides the parameters: aliases such as SPARO's
// `v` = `k` when keys and values are shared. Each alias names the parameter it equals.
using StateAliases = std::map<std::string, std::string>;

// The state dict of a module: its parameters plus the aliases (written as copies).
NamedTensors state_dict(const Module& module, const StateAliases& aliases = {});

// Copies `state` into the module's parameters (tensors keep their identity, so optimisers
// holding them stay valid). Strict: every missing, unexpected and wrongly shaped key is
// listed in one error; an alias must equal its parameter.
void load_state_dict(Module& module, const NamedTensors& state, const StateAliases& aliases = {},
                     const std::string& source = "state dict");

// The same checks, but each parameter takes over the given tensor's storage where both are on
// one device, instead of a copy: loading weights this way holds them once (with
// map_safetensors, as pages of the mapped file). The parameters keep their identity; the
// caller gives up `state` (its tensors now share memory with the module).
void adopt_state_dict(Module& module, NamedTensors state, const StateAliases& aliases = {},
                      const std::string& source = "state dict");

}  // namespace sparo
