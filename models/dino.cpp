#include "models/dino.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace sparo {

DinoBackbone::DinoBackbone(const DinoConfig& c, Generator& gen) : cfg(c), norm(c.width, c.norm_eps) {
  const int64_t D = c.width, P = c.patch_size, grid = c.image_size / P;
  const float fan_in_bound = 1.0f / std::sqrt(static_cast<float>(3 * P * P));
  patch_weight = init_uniform({D, 3, P, P}, fan_in_bound, gen);
  patch_bias = init_uniform({D}, fan_in_bound, gen);
  cls_token = init_normal({1, 1, D}, 0.02f, gen);
  pos_embed = init_normal({1, grid * grid + 1, D}, 0.02f, gen);
  for (int64_t i = 0; i < c.depth; ++i) {
    blocks.emplace_back(D, c.heads, c.mlp_ratio, Activation::gelu, c.norm_eps, BlockNames::dino, gen);
    // DINO's _init_weights: every Linear trunc_normal(std .02) with zero bias. (timm truncates
    // at ±2 in absolute units, i.e. at 100 σ: a plain normal draw is the same distribution.)
    TransformerBlock& b = blocks.back();
    b.qkv_weight = init_normal(b.qkv_weight.shape(), 0.02f, gen);
    b.qkv_bias = Tensor::zeros(b.qkv_bias.shape()).requires_grad_();
    for (Linear* l : {&b.out_proj, &b.fc1, &b.fc2}) {
      l->weight = init_normal(l->weight.shape(), 0.02f, gen);
      l->bias = Tensor::zeros(l->bias.shape()).requires_grad_();
    }
    // DINO's stochastic depth rises linearly over the blocks.
    blocks.back().drop_path = c.depth > 1 ? c.drop_path_rate * static_cast<float>(i) / static_cast<float>(c.depth - 1) : c.drop_path_rate;
  }
  if (c.readout == "sparo") sparo.emplace(D, D / c.heads, c.sparo, gen);
}

namespace {

// Cubic convolution weights (a = -0.75, PyTorch's bicubic) of 1-D resampling from `from`
// to `to` points with align_corners=False, borders clamped: a [to, from] matrix.
std::vector<float> bicubic_matrix_1d(int64_t from, int64_t to) {
  const auto cubic = [](double x) {
    constexpr double a = -0.75;
    x = std::abs(x);
    if (x <= 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
    return 0.0;
  };
  std::vector<float> m(static_cast<size_t>(to * from), 0.0f);
  const double scale = static_cast<double>(from) / static_cast<double>(to);
  for (int64_t i = 0; i < to; ++i) {
    const double src = (static_cast<double>(i) + 0.5) * scale - 0.5;
    const int64_t base = static_cast<int64_t>(std::floor(src));
    for (int64_t k = -1; k <= 2; ++k) {
      const int64_t j = std::clamp<int64_t>(base + k, 0, from - 1);
      m[static_cast<size_t>(i * from + j)] += static_cast<float>(cubic(src - static_cast<double>(base + k)));
    }
  }
  return m;
}

}  // namespace

Tensor DinoBackbone::position_embedding(int64_t grid) const {
  const int64_t trained = cfg.image_size / cfg.patch_size, D = cfg.width;
  if (grid == trained) return pos_embed;
  // DINO's interpolate_pos_encoding resizes the patch grid of the embedding bicubically; the
  // resampling is linear, so it is one constant matrix [grid², trained²] (the Kronecker
  // product of the 1-D matrices) applied with matmul, which keeps it differentiable.
  const std::vector<float> m1 = bicubic_matrix_1d(trained, grid);
  std::vector<float> m2(static_cast<size_t>(grid * grid * trained * trained));
  for (int64_t y = 0; y < grid; ++y)
    for (int64_t x = 0; x < grid; ++x)
      for (int64_t v = 0; v < trained; ++v)
        for (int64_t u = 0; u < trained; ++u)
          m2[static_cast<size_t>(((y * grid + x) * trained + v) * trained + u)] =
              m1[static_cast<size_t>(y * trained + v)] * m1[static_cast<size_t>(x * trained + u)];
  const Tensor resample = Tensor::from_vector(m2, {grid * grid, trained * trained}, pos_embed.device());
  const Tensor table = reshape(pos_embed, {1 + trained * trained, D});
  const Tensor patches = matmul(resample, slice(table, 0, 1, 1 + trained * trained));
  return reshape(concat({slice(table, 0, 0, 1), patches}, 0), {1, 1 + grid * grid, D});
}

EncoderOutput DinoBackbone::forward(const Tensor& images, Generator* gen) const {
  const int64_t P = cfg.patch_size;
  if (images.dim() != 4 || images.size(1) != 3 || images.size(2) != images.size(3) || images.size(2) % P != 0)
    throw Error("dino backbone: images must be [B, 3, S, S] with S a multiple of the patch size " + std::to_string(P) +
                " (trained at " + std::to_string(cfg.image_size) + "), got " + shape_str(images.shape()));
  const int64_t B = images.size(0), D = cfg.width;
  const Tensor patches = linear(image_to_patches(images, P), reshape(patch_weight, {D, -1}), patch_bias);
  Tensor x = add(concat({expand(cls_token, {B, 1, D}), patches}, 1), position_embedding(images.size(2) / P));
  for (const TransformerBlock& block : blocks) x = block.forward(x, Tensor(), training_ ? gen : nullptr);
  x = norm.forward(x);
  if (sparo) {
    SparoOutput s = sparo->forward(x, Tensor());
    return {s.embedding, s.attention};
  }
  return {reshape(slice(x, 1, 0, 1), {B, D}), Tensor()};
}

void DinoBackbone::collect_parameters(const std::string& p, NamedTensors& out) const {
  out.emplace_back(p + "cls_token", cls_token);
  out.emplace_back(p + "pos_embed", pos_embed);
  out.emplace_back(p + "patch_embed.proj.weight", patch_weight);
  out.emplace_back(p + "patch_embed.proj.bias", patch_bias);
  for (size_t i = 0; i < blocks.size(); ++i) blocks[i].collect_parameters(p + "blocks." + std::to_string(i) + ".", out);
  norm.collect_parameters(p + "norm.", out);
  if (sparo) sparo->collect_parameters(p + "sparo.", out);
}

DinoHead::DinoHead(int64_t in, int64_t hidden, int64_t bottleneck, int64_t out, Generator& gen)
    : mlp0(in, hidden, gen), mlp2(hidden, hidden, gen), mlp4(hidden, bottleneck, gen) {
  for (Linear* l : {&mlp0, &mlp2, &mlp4}) {  // DINO: trunc_normal(std .02) weights, zero biases
    l->weight = init_normal(l->weight.shape(), 0.02f, gen);
    l->bias = Tensor::zeros(l->bias.shape()).requires_grad_();
  }
  weight_g = Tensor::ones({out, 1});
  weight_v = init_uniform({out, bottleneck}, 1.0f / std::sqrt(static_cast<float>(bottleneck)), gen);
}

Tensor DinoHead::forward(const Tensor& x) const {
  const Tensor in = input_scale == 1.0f ? x : affine(x, input_scale, 0.0f);
  const Tensor h = mlp4.forward(gelu(mlp2.forward(gelu(mlp0.forward(in)))));
  const Tensor weight = mul(l2_normalize(weight_v, 1), weight_g);  // weight norm, one norm per prototype
  return linear(l2_normalize(h, -1), weight);
}

void DinoHead::collect_parameters(const std::string& p, NamedTensors& out) const {
  mlp0.collect_parameters(p + "mlp.0.", out);
  mlp2.collect_parameters(p + "mlp.2.", out);
  mlp4.collect_parameters(p + "mlp.4.", out);
  out.emplace_back(p + "last_layer.weight_g", weight_g);
  out.emplace_back(p + "last_layer.weight_v", weight_v);
}

Dino::Dino(const DinoConfig& c, uint64_t seed) : cfg(c) {
  c.validate("dino config");
  Generator gen(seed);
  backbone = DinoBackbone(c, gen);
  head = DinoHead(backbone.output_dim(), c.head_hidden, c.head_bottleneck, c.head_out, gen);
  // The CLS feature is a LayerNorm output, about 1 per coordinate (norm ≈ √D); the SPARO
  // embedding has norm 1. Scaled by √(L·V) it is about 1 per coordinate too, so both heads start
  // from inputs of the same size under the same init (the representation itself is unchanged).
  if (backbone.sparo) head.input_scale = std::sqrt(static_cast<float>(backbone.output_dim()));
  if (!c.norm_last_layer) head.weight_g.requires_grad_();
}

void Dino::collect_parameters(const std::string& p, NamedTensors& out) const {
  backbone.collect_parameters(p, out);
  head.collect_parameters(p + "head.", out);
}

StateAliases Dino::aliases() const {
  StateAliases a;
  if (backbone.sparo) backbone.sparo->add_aliases("sparo.", a);
  return a;
}

}  // namespace sparo
