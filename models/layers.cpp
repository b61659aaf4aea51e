#include "models/layers.h"

namespace sparo {

namespace {
thread_local bool tls_skip_init = false;
}  // namespace

SkipInitGuard::SkipInitGuard() : saved_(tls_skip_init) { tls_skip_init = true; }
SkipInitGuard::~SkipInitGuard() { tls_skip_init = saved_; }

Tensor init_normal(const Shape& shape, float std, Generator& gen) {
  if (tls_skip_init) return Tensor::empty(shape).requires_grad_();
  NoGradGuard no_grad;
  return affine(Tensor::randn(shape, gen), std, 0.0f).requires_grad_();
}

Tensor init_uniform(const Shape& shape, float bound, Generator& gen) {
  if (tls_skip_init) return Tensor::empty(shape).requires_grad_();
  return Tensor::uniform(shape, -bound, bound, gen).requires_grad_();
}

Tensor init_xavier_uniform(int64_t fan_out, int64_t fan_in, Generator& gen) {
  return init_uniform({fan_out, fan_in}, std::sqrt(6.0f / static_cast<float>(fan_in + fan_out)), gen);
}

static void put(NamedTensors& out, const std::string& name, const Tensor& t) {
  if (t.defined()) out.emplace_back(name, t);
}

Linear::Linear(int64_t in, int64_t out, Generator& gen, bool with_bias) {
  const float bound = 1.0f / std::sqrt(static_cast<float>(in));
  weight = init_uniform({out, in}, bound, gen);
  if (with_bias) bias = init_uniform({out}, bound, gen);
}

void Linear::collect_parameters(const std::string& prefix, NamedTensors& out) const {
  put(out, prefix + "weight", weight);
  put(out, prefix + "bias", bias);
}

LayerNorm::LayerNorm(int64_t width, float eps_) : eps(eps_) {
  weight = Tensor::ones({width}).requires_grad_();
  bias = Tensor::zeros({width}).requires_grad_();
}

void LayerNorm::collect_parameters(const std::string& prefix, NamedTensors& out) const {
  put(out, prefix + "weight", weight);
  put(out, prefix + "bias", bias);
}

Tensor activate(const Tensor& x, Activation act) { return act == Activation::gelu ? gelu(x) : quick_gelu(x); }

TransformerBlock::TransformerBlock(int64_t width, int64_t heads_, float mlp_ratio, Activation act_, float eps,
                                   BlockNames names_, Generator& gen)
    : names(names_), heads(heads_), act(act_), ln_1(width, eps), ln_2(width, eps) {
  if (width % heads != 0)
    throw Error("transformer block: width " + std::to_string(width) + " is not divisible by " +
                std::to_string(heads) + " heads");
  const auto hidden = static_cast<int64_t>(static_cast<float>(width) * mlp_ratio);
  // OpenCLIP's text-tower init (std width^-0.5 for q/k/v); biases start at zero.
  qkv_weight = init_normal({3 * width, width}, 1.0f / std::sqrt(static_cast<float>(width)), gen);
  qkv_bias = Tensor::zeros({3 * width}).requires_grad_();
  out_proj = Linear(width, width, gen);
  fc1 = Linear(width, hidden, gen);
  fc2 = Linear(hidden, width, gen);
}

Tensor TransformerBlock::attention(const Tensor& x, const Tensor& mask) const {
  // [B, N, D] -> q, k, v side by side [B, N, 3D] -> the heads' attention [B, N, D]
  return out_proj.forward(sparo::attention(linear(x, qkv_weight, qkv_bias), heads, mask));
}

Tensor TransformerBlock::forward(const Tensor& x, const Tensor& mask, Generator* gen) const {
  auto maybe_drop = [&](const Tensor& t) {
    return gen && training_ && drop_path > 0.0f ? sparo::drop_path(t, drop_path, *gen) : t;
  };
  Tensor h = add(x, maybe_drop(attention(ln_1.forward(x), mask)));
  // GELU (erf) fused into fc1, and the MLP's backward into fewer passes, where the backend can
  // (engine/ops.h mlp_gelu).
  // ln_2's output is a temporary: held in a variable it would outlive fc1 (inference's peak
  // memory has little to spare).
  Tensor mlp;
  if (act != Activation::gelu)
    mlp = fc2.forward(activate(fc1.forward(ln_2.forward(h)), act));
  else if (fc1.bias.defined() && fc2.bias.defined())
    mlp = mlp_gelu(ln_2.forward(h), fc1.weight, fc1.bias, fc2.weight, fc2.bias);
  else
    mlp = fc2.forward(linear_gelu(ln_2.forward(h), fc1.weight, fc1.bias));
  return add(h, maybe_drop(mlp));
}

void TransformerBlock::collect_parameters(const std::string& p, NamedTensors& out) const {
  if (names == BlockNames::openclip) {
    ln_1.collect_parameters(p + "ln_1.", out);
    put(out, p + "attn.in_proj_weight", qkv_weight);
    put(out, p + "attn.in_proj_bias", qkv_bias);
    out_proj.collect_parameters(p + "attn.out_proj.", out);
    ln_2.collect_parameters(p + "ln_2.", out);
    fc1.collect_parameters(p + "mlp.c_fc.", out);
    fc2.collect_parameters(p + "mlp.c_proj.", out);
  } else {
    ln_1.collect_parameters(p + "norm1.", out);
    put(out, p + "attn.qkv.weight", qkv_weight);
    put(out, p + "attn.qkv.bias", qkv_bias);
    out_proj.collect_parameters(p + "attn.proj.", out);
    ln_2.collect_parameters(p + "norm2.", out);
    fc1.collect_parameters(p + "mlp.fc1.", out);
    fc2.collect_parameters(p + "mlp.fc2.", out);
  }
}

Tensor image_to_patches(const Tensor& images, int64_t patch) {
  if (images.dim() != 4 || images.size(2) % patch != 0 || images.size(3) % patch != 0)
    throw Error("image_to_patches: images must be [B, C, S, S] with S divisible by the patch size " +
                std::to_string(patch) + ", got " + shape_str(images.shape()));
  const int64_t B = images.size(0), C = images.size(1), gh = images.size(2) / patch, gw = images.size(3) / patch;
  const Tensor grid = permute(reshape(images, {B, C, gh, patch, gw, patch}), {0, 2, 4, 1, 3, 5});
  return reshape(grid, {B, gh * gw, C * patch * patch});
}

}  // namespace sparo
