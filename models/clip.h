// CLIP: an image tower and a text tower trained to agree, with a learnable logit scale.
// Baseline (token + projection), global average pooling, bottleneck control, or SPARO
// on both towers. State-dict names follow OpenCLIP.
#pragma once

#include <memory>
#include <optional>
#include <string>

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

// A CLIP model for inference, read from files: the config (OpenCLIP's JSON schema) and the
// weights (safetensors, read on the CPU and checked key by key and shape by shape against the
// config), in evaluation mode, moved to `device` (an error when it is not available). One
// function so that `sparo embed`, the evaluations and the C API embed with the same model.
std::unique_ptr<Clip> load_clip(const std::string& config_path, const std::string& checkpoint_path, Device device);

// Symmetric InfoNCE: the mean of the cross-entropies over rows and over columns of the
// logits, pair i matching pair i.
Tensor clip_loss(const Tensor& logits_per_image);

}  // namespace sparo
