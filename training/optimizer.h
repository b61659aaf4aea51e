// Optimisers (SGD, AdamW), parameter groups with per-group weight decay, and gradient
// clipping by global norm: torch.optim.SGD, torch.optim.AdamW and
// torch.nn.utils.clip_grad_norm_, checked against PyTorch by tests/training/test_optim.cpp
// (fixture: tools/golden/optim_fixture.py).
//
// Every update runs as the fused kernel of the parameter's backend (Backend::sgd_step,
// Backend::adamw_step), so a step never leaves the parameter's device; the optimiser state
// (moments, momentum buffers) lives on that device too.
//
// Semantics shared with PyTorch:
//   * a parameter whose .grad() is undefined at step() is skipped: neither it nor its state
//     changes, and its own step count does not advance;
//   * the step count used for AdamW's bias correction, and "is this the first momentum
//     update" for SGD, is per parameter (torch's state["step"] / momentum_buffer is None);
//   * a group's lr is the optimiser's lr times the group's lr_scale; set_lr() changes it for
//     every group (an LR schedule calls set_lr before each step).
//
// State for checkpoints: state() returns a snapshot (copies) of every state tensor under a
// stable name, load_state() restores one strictly (see Optimizer::state). Hyper-parameters
// are not part of the state: they come from the configuration.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace sparo {

struct ParamGroup {
  std::vector<Tensor> params;  // leaf f32 tensors with requires_grad, each in one group only
  float weight_decay = 0.0f;   // 0 for gains, biases, embeddings, logit scale
  float lr_scale = 1.0f;       // the group's lr = optimiser lr * lr_scale
  std::string name;            // for messages
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // Applies one update to every parameter that has a gradient. All gradients are checked
  // (shape, dtype, device) before any parameter changes.
  virtual void step() = 0;
  void zero_grad();  // drops every parameter's gradient (set to undefined)

  void set_lr(float lr);  // lr >= 0 and finite
  // Changes one group's weight decay (DINO's weight-decay schedule); wd >= 0 and finite.
  void set_weight_decay(size_t group, float weight_decay);
  float lr() const { return lr_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  int64_t step_count() const { return step_count_; }  // calls of step() so far

  // A snapshot of the optimiser state, in a stable order, by stable names:
  //   "<kind>.step_count"            i32 []   calls of step()
  //   "<kind>.step.<g>.<i>"          i32 []   updates applied to parameter i of group g (on the CPU)
  //   "<kind>.<slot>.<g>.<i>"        f32, the parameter's shape, on its device; slots:
  //       adamw: exp_avg, exp_avg_sq        sgd (momentum != 0 only): momentum_buffer
  // where <kind> is "adamw" or "sgd" and <g>, <i> are the group index and the index in the
  // group. Every tensor is f32 or i32, so the list can go to save_safetensors as is.
  virtual std::vector<std::pair<std::string, Tensor>> state() const;
  // Restores a state() of an optimiser of the same kind over parameters of the same
  // shapes. Strict: the names must be exactly those state() gives (none missing, none
  // unknown, no duplicates), with matching shapes and dtypes; step counts >= 0. Nothing is
  // changed unless everything checks. Tensors may be on any device (they are copied).
  virtual void load_state(const std::vector<std::pair<std::string, Tensor>>& state);

 protected:
  // kind: "sgd" / "adamw" (state names); display: "SGD" / "AdamW" (messages).
  // slots: the per-parameter state tensors, created as zeros on the parameter's device.
  Optimizer(std::vector<ParamGroup> groups, float lr, std::string kind, std::string display,
            std::vector<std::string> slots);

  // Per parameter: its state tensors (one per slot) and its own update count.
  struct ParamState {
    std::vector<Tensor> slots;
    int64_t steps = 0;
  };

  // Each parameter's gradient (undefined: skip it), checked against the parameter.
  std::vector<std::vector<Tensor>> checked_grads() const;
  // The group's lr: lr() * lr_scale.
  float group_lr(size_t group) const;
  // "parameter 2 of group 1 ('no_decay')", for messages.
  std::string param_label(size_t group, size_t index) const;
  [[noreturn]] void fail(const std::string& message) const;  // "<display>: message"

  std::vector<ParamGroup> groups_;
  std::vector<std::vector<ParamState>> state_;  // [group][index]
  std::vector<std::string> slots_;
  std::string kind_, display_;
  float lr_ = 0.0f;
  int64_t step_count_ = 0;
};

// torch.optim.SGD: weight decay is coupled (wd·p is added to the gradient), momentum buffer
// starts as the first (decayed) gradient, then buf = momentum·buf + (1 - dampening)·d;
// nesterov uses d + momentum·buf.
class SGD : public Optimizer {
 public:
  SGD(std::vector<ParamGroup> groups, float lr, float momentum = 0.0f, float dampening = 0.0f,
      bool nesterov = false);
  void step() override;

  float momentum() const { return momentum_; }
  float dampening() const { return dampening_; }
  bool nesterov() const { return nesterov_; }

 private:
  float momentum_, dampening_;
  bool nesterov_;
};

// torch.optim.AdamW: decoupled weight decay p *= 1 - lr·wd, then the Adam update with bias
// correction (amsgrad and maximize are not supported).
class AdamW : public Optimizer {
 public:
  AdamW(std::vector<ParamGroup> groups, float lr, float beta1 = 0.9f, float beta2 = 0.999f,
        float eps = 1e-8f);
  void step() override;

  float beta1() const { return beta1_; }
  float beta2() const { return beta2_; }
  float eps() const { return eps_; }

 private:
  float beta1_, beta2_, eps_;
};

// Splits named parameters into two groups, always in this order and both present (possibly
// empty), so state names stay stable:
//   0 "decay":    rank >= 2 and not excluded; weight_decay as given
//   1 "no_decay": rank < 2 (gains, biases, scalars) or exclude(name) (embeddings,
//                 logit_scale, ...); weight_decay 0
// Parameters that do not require a gradient (frozen) are left out, as OpenCLIP does. Order
// within each group follows `named`.
std::vector<ParamGroup> split_weight_decay(const std::vector<std::pair<std::string, Tensor>>& named,
                                           float weight_decay,
                                           const std::function<bool(const std::string&)>& exclude = {});

// torch.nn.utils.clip_grad_norm_ (L2): total = ‖(‖g₁‖, ‖g₂‖, …)‖ over the parameters that
// have a gradient, then every such gradient *= min(1, max_norm / (total + 1e-6)). Returns
// the total before clipping as a one-element tensor [] on the gradients' device; the whole
// computation stays there (engine ops, no host round trip). Parameters without a gradient
// are skipped; with none at all the result is 0 (on the first parameter's device, or the
// CPU). All gradients must be f32 on one device; max_norm >= 0. A non-finite total gives
// non-finite gradients, as in PyTorch (error_if_nonfinite=False).
Tensor clip_grad_norm(const std::vector<Tensor>& params, float max_norm);

// DINO's clip_gradients: each gradient on its own, g *= min(1, max_norm / (‖g‖ + 1e-6)), so
// one exploding parameter does not shrink the others' steps. Returns the global norm before
// clipping (as clip_grad_norm, for the log). Same requirements as clip_grad_norm.
Tensor clip_grad_norm_per_parameter(const std::vector<Tensor>& params, float max_norm);

}  // namespace sparo
