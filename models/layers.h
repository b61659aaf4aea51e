// Building blocks shared by the models: Linear, LayerNorm, the pre-LN transformer
// block with packed q/k/v, and parameter initialisers. docs/MODELS.md has the math.
#pragma once

#include <cmath>

#include "models/module.h"

namespace sparo {

// ---- initialisers (seeded, reproducible) ----------------------------------------------
// While a SkipInitGuard lives on this thread, the init_* functions below allocate parameters
// without writing them (the memory stays untouched, so it costs no resident pages), for a
// model whose weights are about to be loaded in place (load_clip): a random init would only
// be replaced, and would double the peak memory of loading.
class SkipInitGuard {
 public:
  SkipInitGuard();
  ~SkipInitGuard();
  SkipInitGuard(const SkipInitGuard&) = delete;
  SkipInitGuard& operator=(const SkipInitGuard&) = delete;

 private:
  bool saved_;
};

Tensor init_normal(const Shape& shape, float std, Generator& gen);
Tensor init_uniform(const Shape& shape, float bound, Generator& gen);  // U(-bound, bound)
Tensor init_xavier_uniform(int64_t fan_out, int64_t fan_in, Generator& gen);

struct Linear : Module {
  Tensor weight, bias;  // [out, in], [out] (bias may be undefined)
  Linear() = default;
  // nn.Linear's default init: U(±1/sqrt(in)) for weight and bias.
  Linear(int64_t in, int64_t out, Generator& gen, bool with_bias = true);
  Tensor forward(const Tensor& x) const { return linear(x, weight, bias); }
  void collect_parameters(const std::string& prefix, NamedTensors& out) const override;
};

struct LayerNorm : Module {
  Tensor weight, bias;
  float eps = 1e-5f;
  LayerNorm() = default;
  LayerNorm(int64_t width, float eps);
  Tensor forward(const Tensor& x) const { return layer_norm(x, weight, bias, eps); }
  void collect_parameters(const std::string& prefix, NamedTensors& out) const override;
};

enum class Activation { gelu, quick_gelu };
Tensor activate(const Tensor& x, Activation act);

// State-dict naming of a transformer block: OpenCLIP's ResidualAttentionBlock or DINO's Block.
enum class BlockNames { openclip, dino };

// x = x + drop_path(attn(ln_1(x), mask));  x = x + drop_path(mlp(ln_2(x)))
struct TransformerBlock : Module {
  BlockNames names = BlockNames::openclip;
  int64_t heads = 1;
  Activation act = Activation::gelu;
  float drop_path = 0.0f;
  LayerNorm ln_1, ln_2;
  Tensor qkv_weight, qkv_bias;  // [3D, D], [3D]: q, k, v blocks, heads major
  Linear out_proj, fc1, fc2;

  TransformerBlock() = default;
  TransformerBlock(int64_t width, int64_t heads, float mlp_ratio, Activation act, float eps, BlockNames names,
                   Generator& gen);
  // x [B, N, D]; mask additive, broadcastable to [B, H, N, N] (may be undefined).
  Tensor forward(const Tensor& x, const Tensor& mask, Generator* gen = nullptr) const;
  Tensor attention(const Tensor& x, const Tensor& mask) const;
  void collect_parameters(const std::string& prefix, NamedTensors& out) const override;
};

// Patches of images [B, C, S, S] -> [B, (S/P)², C·P·P], each flattened in (c, ky, kx)
// order: a stride-P convolution becomes one matmul.
Tensor image_to_patches(const Tensor& images, int64_t patch);

}  // namespace sparo
