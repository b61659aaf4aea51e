// Optimisers, parameter groups and gradient clipping (optimizer.h).
#include "training/optimizer.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/profiler.h"

namespace sparo {

namespace {

// Shortest decimal that reads back as the same float: "0.9", "1e-08", "-inf", "nan".
std::string num(float v) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

std::string index_name(const std::string& prefix, size_t group, size_t index) {
  return prefix + "." + std::to_string(group) + "." + std::to_string(index);
}

Tensor i32_scalar(int64_t value, const std::string& what) {
  if (value > std::numeric_limits<int32_t>::max())
    throw Error("optimizer state: " + what + " = " + std::to_string(value) + " does not fit in i32");
  return Tensor::from_vector(std::vector<int32_t>{static_cast<int32_t>(value)}, Shape{});
}

}  // namespace

// ---- Optimizer ------------------------------------------------------------------------------

Optimizer::Optimizer(std::vector<ParamGroup> groups, float lr, std::string kind, std::string display,
                     std::vector<std::string> slots)
    : groups_(std::move(groups)), slots_(std::move(slots)), kind_(std::move(kind)), display_(std::move(display)) {
  set_lr(lr);
  std::set<const TensorImpl*> seen;
  size_t total = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const ParamGroup& group = groups_[g];
    const std::string gname = "group " + std::to_string(g) + (group.name.empty() ? "" : " ('" + group.name + "')");
    if (!(group.weight_decay >= 0.0f) || !std::isfinite(group.weight_decay))
      fail(gname + ": weight_decay must be >= 0 and finite, got " + num(group.weight_decay));
    if (!(group.lr_scale >= 0.0f) || !std::isfinite(group.lr_scale))
      fail(gname + ": lr_scale must be >= 0 and finite, got " + num(group.lr_scale));
    for (size_t i = 0; i < group.params.size(); ++i) {
      const Tensor& p = group.params[i];
      if (!p.defined()) fail(param_label(g, i) + " is undefined");
      if (p.dtype() != DType::f32)
        fail(param_label(g, i) + " has dtype " + dtype_name(p.dtype()) + ", expected f32");
      if (!p.is_leaf() || !p.requires_grad())
        fail(param_label(g, i) + " must be a leaf tensor with requires_grad (shape " + shape_str(p.shape()) + ")");
      if (!seen.insert(p.impl()).second)
        fail(param_label(g, i) + " appears more than once among the parameter groups");
    }
    total += group.params.size();
  }
  if (total == 0) fail("no parameters to optimise");

  state_.resize(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (const Tensor& p : groups_[g].params) {
      ParamState st;
      for (size_t k = 0; k < slots_.size(); ++k) st.slots.push_back(Tensor::zeros(p.shape(), DType::f32, p.device()));
      state_[g].push_back(std::move(st));
    }
  }
}

void Optimizer::fail(const std::string& message) const { throw Error(display_ + ": " + message); }

std::string Optimizer::param_label(size_t group, size_t index) const {
  const std::string& name = groups_[group].name;
  return "parameter " + std::to_string(index) + " of group " + std::to_string(group) +
         (name.empty() ? "" : " ('" + name + "')");
}

void Optimizer::zero_grad() {
  for (ParamGroup& group : groups_)
    for (Tensor& p : group.params) p.zero_grad();
}

void Optimizer::set_lr(float lr) {
  if (!(lr >= 0.0f) || !std::isfinite(lr)) fail("lr must be >= 0 and finite, got " + num(lr));
  lr_ = lr;
}

void Optimizer::set_weight_decay(size_t group, float weight_decay) {
  if (group >= groups_.size()) fail("no parameter group " + std::to_string(group) + " (" + std::to_string(groups_.size()) + " groups)");
  if (!(weight_decay >= 0.0f) || !std::isfinite(weight_decay))
    fail("weight decay must be >= 0 and finite, got " + num(weight_decay));
  groups_[group].weight_decay = weight_decay;
}

float Optimizer::group_lr(size_t group) const {
  return static_cast<float>(static_cast<double>(lr_) * static_cast<double>(groups_[group].lr_scale));
}

std::vector<std::vector<Tensor>> Optimizer::checked_grads() const {
  std::vector<std::vector<Tensor>> grads(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const Tensor& p = groups_[g].params[i];
      Tensor grad = p.grad();
      if (grad.defined()) {
        if (grad.shape() != p.shape())
          fail("the gradient of " + param_label(g, i) + " has shape " + shape_str(grad.shape()) +
               " but the parameter has shape " + shape_str(p.shape()));
        if (grad.dtype() != DType::f32)
          fail("the gradient of " + param_label(g, i) + " has dtype " + dtype_name(grad.dtype()) + ", expected f32");
        if (!(grad.device() == p.device()))
          fail("the gradient of " + param_label(g, i) + " is on " + grad.device().str() + " but the parameter is on " +
               p.device().str());
      }
      grads[g].push_back(std::move(grad));
    }
  }
  return grads;
}

std::vector<std::pair<std::string, Tensor>> Optimizer::state() const {
  std::vector<std::pair<std::string, Tensor>> out;
  out.emplace_back(kind_ + ".step_count", i32_scalar(step_count_, kind_ + ".step_count"));
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const ParamState& st = state_[g][i];
      const std::string step_name = index_name(kind_ + ".step", g, i);
      out.emplace_back(step_name, i32_scalar(st.steps, step_name));
      for (size_t k = 0; k < slots_.size(); ++k)
        out.emplace_back(index_name(kind_ + "." + slots_[k], g, i), st.slots[k].clone());
    }
  }
  return out;
}

void Optimizer::load_state(const std::vector<std::pair<std::string, Tensor>>& state) {
  const std::string op = "load_state: ";
  std::map<std::string, const Tensor*> given;
  for (const auto& [name, t] : state) {
    if (!given.emplace(name, &t).second) fail(op + "state tensor '" + name + "' appears more than once");
    if (!t.defined()) fail(op + "state tensor '" + name + "' is undefined");
  }
  size_t matched = 0;
  // Checks that `name` is present with this shape and dtype; returns it.
  auto expect = [&](const std::string& name, const Shape& shape, DType dtype,
                    const std::string& owner) -> const Tensor& {
    const auto it = given.find(name);
    if (it == given.end()) fail(op + "missing state tensor '" + name + "' (" + owner + ")");
    const Tensor& t = *it->second;
    if (t.shape() != shape)
      fail(op + "state tensor '" + name + "' has shape " + shape_str(t.shape()) + ", expected " + shape_str(shape) +
           " (" + owner + ")");
    if (t.dtype() != dtype)
      fail(op + "state tensor '" + name + "' has dtype " + dtype_name(t.dtype()) + ", expected " + dtype_name(dtype));
    ++matched;
    return t;
  };
  auto count = [&](const Tensor& t, const std::string& name) -> int64_t {
    const int64_t v = t.to_int_vector().at(0);
    if (v < 0) fail(op + "state tensor '" + name + "' holds a negative step count " + std::to_string(v));
    return v;
  };

  // Check everything first, then apply.
  const int64_t step_count = count(expect(kind_ + ".step_count", Shape{}, DType::i32, "the step count"),
                                   kind_ + ".step_count");
  std::vector<std::vector<int64_t>> steps(groups_.size());
  std::vector<std::vector<std::vector<const Tensor*>>> slots(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const Tensor& p = groups_[g].params[i];
      const std::string owner = param_label(g, i);
      const std::string step_name = index_name(kind_ + ".step", g, i);
      steps[g].push_back(count(expect(step_name, Shape{}, DType::i32, owner), step_name));
      slots[g].emplace_back();
      for (const std::string& slot : slots_)
        slots[g].back().push_back(&expect(index_name(kind_ + "." + slot, g, i), p.shape(), DType::f32, owner));
    }
  }
  if (matched != given.size()) {
    std::set<std::string> known{kind_ + ".step_count"};
    for (size_t g = 0; g < groups_.size(); ++g)
      for (size_t i = 0; i < groups_[g].params.size(); ++i) {
        known.insert(index_name(kind_ + ".step", g, i));
        for (const std::string& slot : slots_) known.insert(index_name(kind_ + "." + slot, g, i));
      }
    for (const auto& [name, t] : given)
      if (!known.count(name))
        fail(op + "unexpected state tensor '" + name + "' (not a state of this " + display_ + " over " +
             std::to_string(known.size()) + " state tensors)");
  }

  NoGradGuard no_grad;
  step_count_ = step_count;
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      ParamState& st = state_[g][i];
      st.steps = steps[g][i];
      for (size_t k = 0; k < slots_.size(); ++k) {
        const Tensor& src = *slots[g][i][k];
        copy_(st.slots[k], src.device() == st.slots[k].device() ? src : src.to(st.slots[k].device()));
      }
    }
  }
}

// ---- SGD ----------------------------------------------------------------------------------------

namespace {

std::vector<std::string> sgd_slots(float momentum, float dampening, bool nesterov) {
  if (!(momentum >= 0.0f) || !std::isfinite(momentum))
    throw Error("SGD: momentum must be >= 0 and finite, got " + num(momentum));
  if (!std::isfinite(dampening)) throw Error("SGD: dampening must be finite, got " + num(dampening));
  if (nesterov && (momentum <= 0.0f || dampening != 0.0f))
    throw Error("SGD: nesterov momentum requires momentum > 0 and dampening 0, got momentum " + num(momentum) +
                " and dampening " + num(dampening));
  if (momentum == 0.0f) return {};
  return {"momentum_buffer"};
}

std::vector<std::string> adamw_slots(float beta1, float beta2, float eps) {
  if (!(beta1 >= 0.0f && beta1 < 1.0f)) throw Error("AdamW: beta1 must be in [0, 1), got " + num(beta1));
  if (!(beta2 >= 0.0f && beta2 < 1.0f)) throw Error("AdamW: beta2 must be in [0, 1), got " + num(beta2));
  if (!(eps > 0.0f) || !std::isfinite(eps)) throw Error("AdamW: eps must be > 0 and finite, got " + num(eps));
  return {"exp_avg", "exp_avg_sq"};
}

}  // namespace

SGD::SGD(std::vector<ParamGroup> groups, float lr, float momentum, float dampening, bool nesterov)
    : Optimizer(std::move(groups), lr, "sgd", "SGD", sgd_slots(momentum, dampening, nesterov)),
      momentum_(momentum),
      dampening_(dampening),
      nesterov_(nesterov) {}

void SGD::step() {
  NoGradGuard no_grad;
  const auto grads = checked_grads();
  for (size_t g = 0; g < groups_.size(); ++g) {
    const float lr = group_lr(g);
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const Tensor& grad = grads[g][i];
      if (!grad.defined()) continue;
      ParamState& st = state_[g][i];
      Tensor param = groups_[g].params[i];
      // With momentum 0 there is no buffer: the kernel does not touch the (undefined) tensor.
      Tensor buffer = slots_.empty() ? Tensor() : st.slots[0];
      const SgdStep s{lr, momentum_, dampening_, groups_[g].weight_decay, nesterov_, st.steps == 0};
      profiler::Scope scope("sgd_step");
      param.storage().note_write();
      backend_for(param.device()).sgd_step(param, grad, buffer, s);
      // param read and written, grad read, the momentum buffer (when there is one) read and written
      if (profiler::enabled())
        profiler::add_work(0.0, static_cast<double>(param.numel()) * sizeof(float) * (buffer.defined() ? 5.0 : 3.0));
      ++st.steps;
    }
  }
  ++step_count_;
}

// ---- AdamW -------------------------------------------------------------------------------------

AdamW::AdamW(std::vector<ParamGroup> groups, float lr, float beta1, float beta2, float eps)
    : Optimizer(std::move(groups), lr, "adamw", "AdamW", adamw_slots(beta1, beta2, eps)),
      beta1_(beta1),
      beta2_(beta2),
      eps_(eps) {}

void AdamW::step() {
  NoGradGuard no_grad;
  const auto grads = checked_grads();
  for (size_t g = 0; g < groups_.size(); ++g) {
    const float lr = group_lr(g);
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const Tensor& grad = grads[g][i];
      if (!grad.defined()) continue;
      ParamState& st = state_[g][i];
      Tensor param = groups_[g].params[i];
      const double t = static_cast<double>(st.steps + 1);
      // Bias corrections in double from the same float betas the kernel's moving averages
      // use, so that v̂ = v / (1 - β₂ᵗ) is exactly unbiased for a constant gradient.
      const AdamWStep s{lr,
                        beta1_,
                        beta2_,
                        eps_,
                        groups_[g].weight_decay,
                        static_cast<float>(1.0 - std::pow(static_cast<double>(beta1_), t)),
                        static_cast<float>(1.0 - std::pow(static_cast<double>(beta2_), t))};
      profiler::Scope scope("adamw_step");
      param.storage().note_write();
      backend_for(param.device()).adamw_step(param, grad, st.slots[0], st.slots[1], s);
      // param, exp_avg and exp_avg_sq read and written, grad read
      if (profiler::enabled()) profiler::add_work(0.0, static_cast<double>(param.numel()) * sizeof(float) * 7.0);
      ++st.steps;
    }
  }
  ++step_count_;
}

// ---- parameter groups and clipping --------------------------------------------------------------

std::vector<ParamGroup> split_weight_decay(const std::vector<std::pair<std::string, Tensor>>& named,
                                           float weight_decay,
                                           const std::function<bool(const std::string&)>& exclude) {
  if (!(weight_decay >= 0.0f) || !std::isfinite(weight_decay))
    throw Error("split_weight_decay: weight_decay must be >= 0 and finite, got " + num(weight_decay));
  ParamGroup decay{{}, weight_decay, 1.0f, "decay"};
  ParamGroup no_decay{{}, 0.0f, 1.0f, "no_decay"};
  for (const auto& [name, p] : named) {
    if (!p.defined()) throw Error("split_weight_decay: parameter '" + name + "' is undefined");
    if (!p.requires_grad()) continue;
    const bool excluded = p.dim() < 2 || (exclude && exclude(name));
    (excluded ? no_decay : decay).params.push_back(p);
  }
  return {std::move(decay), std::move(no_decay)};
}

namespace {

// The parameters' gradients (those that have one), checked to be f32 on one device.
std::vector<Tensor> gradients_to_clip(const char* function, const std::vector<Tensor>& params, float max_norm) {
  if (!(max_norm >= 0.0f)) throw Error(std::string(function) + ": max_norm must be >= 0, got " + num(max_norm));
  std::vector<Tensor> grads;
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].defined()) throw Error(std::string(function) + ": parameter " + std::to_string(i) + " is undefined");
    Tensor g = params[i].grad();
    if (!g.defined()) continue;
    if (g.dtype() != DType::f32)
      throw Error(std::string(function) + ": the gradient of parameter " + std::to_string(i) + " has dtype " +
                  dtype_name(g.dtype()) + ", expected f32");
    if (!grads.empty() && !(g.device() == grads[0].device()))
      throw Error(std::string(function) + ": the gradient of parameter " + std::to_string(i) + " is on " +
                  g.device().str() + " but an earlier one is on " + grads[0].device().str());
    grads.push_back(std::move(g));
  }
  return grads;
}

// min(1, max_norm / (norm + 1e-6)) as a device scalar: every gradient is scaled, by exactly 1
// when it is not clipped (no data-dependent branch, no host round trip).
Tensor clip_coefficient(const Tensor& norm, float max_norm) {
  return clamp(div(Tensor::full(Shape{}, max_norm, DType::f32, norm.device()), affine(norm, 1.0f, 1e-6f)), 0.0f, 1.0f);
}

}  // namespace

Tensor clip_grad_norm(const std::vector<Tensor>& params, float max_norm) {
  NoGradGuard no_grad;
  std::vector<Tensor> grads = gradients_to_clip("clip_grad_norm", params, max_norm);
  if (grads.empty()) return Tensor::zeros(Shape{}, DType::f32, params.empty() ? Device::cpu() : params[0].device());
  Tensor total_sq;
  for (const Tensor& g : grads) {
    const Tensor s = sum(square(g));
    total_sq = total_sq.defined() ? add(total_sq, s) : s;
  }
  const Tensor total = sqrt(total_sq);
  const Tensor coef = clip_coefficient(total, max_norm);
  for (Tensor& g : grads) mul_(g, coef);
  return total;
}

Tensor clip_grad_norm_per_parameter(const std::vector<Tensor>& params, float max_norm) {
  NoGradGuard no_grad;
  std::vector<Tensor> grads = gradients_to_clip("clip_grad_norm_per_parameter", params, max_norm);
  if (grads.empty()) return Tensor::zeros(Shape{}, DType::f32, params.empty() ? Device::cpu() : params[0].device());
  Tensor total_sq;
  for (Tensor& g : grads) {
    const Tensor s = sum(square(g));
    total_sq = total_sq.defined() ? add(total_sq, s) : s;
    mul_(g, clip_coefficient(sqrt(s), max_norm));
  }
  return sqrt(total_sq);
}

}  // namespace sparo
