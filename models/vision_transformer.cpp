#include "models/vision_transformer.h"

#include <cmath>

namespace sparo {

VisionTransformer::VisionTransformer(const VisionConfig& c, int64_t layers, int64_t output_dim, Activation act,
                                     const SparoConfig* sparo_cfg, Generator& gen)
    : cfg(c), ln_pre(c.width, 1e-5f), ln_post(c.width, 1e-5f) {
  const int64_t D = c.width, P = c.patch_size, grid = c.image_size / P;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  conv1_weight = init_uniform({D, 3, P, P}, 1.0f / std::sqrt(static_cast<float>(3 * P * P)), gen);
  class_embedding = init_normal({D}, scale, gen);
  positional_embedding = init_normal({grid * grid + 1, D}, scale, gen);
  for (int64_t i = 0; i < layers; ++i)
    blocks.emplace_back(D, c.heads(), c.mlp_ratio, act, 1e-5f, BlockNames::openclip, gen);
  if (sparo_cfg && sparo_cfg->enabled) sparo.emplace(D, c.head_width, *sparo_cfg, gen);
  else proj = init_normal({D, output_dim}, scale, gen);
}

Tensor VisionTransformer::encode_tokens(const Tensor& images) const {
  const int64_t S = cfg.image_size;
  if (images.dim() != 4 || images.size(1) != 3 || images.size(2) != S || images.size(3) != S)
    throw Error("vision transformer: images must be [B, 3, " + std::to_string(S) + ", " + std::to_string(S) +
                "], got " + shape_str(images.shape()));
  const int64_t B = images.size(0), D = cfg.width;
  const Tensor patches = matmul(image_to_patches(images, cfg.patch_size), reshape(conv1_weight, {D, -1}), false, true);
  const Tensor cls = expand(reshape(class_embedding, {1, 1, D}), {B, 1, D});
  Tensor x = ln_pre.forward(add(concat({cls, patches}, 1), positional_embedding));
  for (const TransformerBlock& block : blocks) x = block.forward(x, Tensor());
  return x;
}

EncoderOutput VisionTransformer::forward(const Tensor& images) const {
  const Tensor x = encode_tokens(images);
  if (sparo) {
    SparoOutput s = sparo->forward(ln_post.forward(x), Tensor());
    return {s.embedding, s.attention};
  }
  const Tensor pooled = cfg.global_average_pool ? mean(x, 1) : reshape(slice(x, 1, 0, 1), {x.size(0), cfg.width});
  return {matmul(ln_post.forward(pooled), proj), Tensor()};
}

void VisionTransformer::collect_parameters(const std::string& p, NamedTensors& out) const {
  out.emplace_back(p + "conv1.weight", conv1_weight);
  out.emplace_back(p + "class_embedding", class_embedding);
  out.emplace_back(p + "positional_embedding", positional_embedding);
  ln_pre.collect_parameters(p + "ln_pre.", out);
  for (size_t i = 0; i < blocks.size(); ++i)
    blocks[i].collect_parameters(p + "transformer.resblocks." + std::to_string(i) + ".", out);
  ln_post.collect_parameters(p + "ln_post.", out);
  if (proj.defined()) out.emplace_back(p + "proj", proj);
  if (sparo) sparo->collect_parameters(p + "sparo.", out);
}

}  // namespace sparo
