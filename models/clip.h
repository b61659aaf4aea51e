// CLIP: an image tower and a text tower trained to agree, with a learnable logit scale.
// Baseline (token + projection), global average pooling, bottleneck control, or SPARO
// on both towers. State-dict names follow OpenCLIP.
#pragma once

#include <optional>

#include "models/text_transformer.h"

namespace sparo {

struct ClipOutput {
  Tensor image_embeds;      // [B, E], unit norm
  Tensor text_embeds;       // [B, E], unit norm
  Tensor logits_per_image;  // [B, B] = exp(logit_scale) · image_embeds · text_embedsᵀ
  Tensor image_attention;   // SPARO only: [B, L, N_image]
  Tensor text_attention;    // SPARO only: [B, L, T]
};

struct Clip : Module {
  ClipConfig cfg;
  VisionTransformer visual;
  TextTransformer text;
  Tensor logit_scale;  // [], starts at log(1/0.07)
  std::optional<Linear> vision_bottleproj, text_bottleproj;

  explicit Clip(const ClipConfig& cfg, uint64_t seed = 0);
  EncoderOutput encode_image(const Tensor& images) const;  // normalised embedding (+ attention)
  EncoderOutput encode_text(const Tensor& ids) const;
  ClipOutput forward(const Tensor& images, const Tensor& ids) const;
  // exp(logit_scale) · image_embeds · text_embedsᵀ: [B_image, B_text] (forward's logits; the
  // trainer also calls it on the embeddings of every process's batch)
  Tensor logits(const Tensor& image_embeds, const Tensor& text_embeds) const;
  void collect_parameters(const std::string& prefix, NamedTensors& out) const override;
  StateAliases aliases() const;  // SPARO's v = k with share_kv
};

// Symmetric InfoNCE: the mean of the cross-entropies over rows and over columns of the
// logits, pair i matching pair i.
Tensor clip_loss(const Tensor& logits_per_image);

}  // namespace sparo
