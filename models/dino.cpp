#include "models/dino.h"

#include <cmath>

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
    // DINO's stochastic depth rises linearly over the blocks.
    blocks.back().drop_path = c.depth > 1 ? c.drop_path_rate * static_cast<float>(i) / static_cast<float>(c.depth - 1) : c.drop_path_rate;
  }
  if (c.readout == "sparo") sparo.emplace(D, D / c.heads, c.sparo, gen);
}

EncoderOutput DinoBackbone::forward(const Tensor& images, Generator* gen) const {
  const int64_t S = cfg.image_size;
  if (images.dim() != 4 || images.size(1) != 3 || images.size(2) != S || images.size(3) != S)
    throw Error("dino backbone: images must be [B, 3, " + std::to_string(S) + ", " + std::to_string(S) + "], got " +
                shape_str(images.shape()));
  const int64_t B = images.size(0), D = cfg.width;
  const Tensor patches = linear(image_to_patches(images, cfg.patch_size), reshape(patch_weight, {D, -1}), patch_bias);
  Tensor x = add(concat({expand(cls_token, {B, 1, D}), patches}, 1), pos_embed);
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
  const Tensor h = mlp4.forward(gelu(mlp2.forward(gelu(mlp0.forward(x)))));
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
