// The CLIP text transformer (causal), pooled at the end-of-text token or read out by SPARO.
#pragma once

#include <optional>

#include "models/vision_transformer.h"

namespace sparo {

struct TextTransformer : Module {
  TextConfig cfg;
  Tensor token_embedding;       // [vocab, D]
  Tensor positional_embedding;  // [T, D]
  std::vector<TransformerBlock> blocks;
  LayerNorm ln_final;
  Tensor text_projection;       // [D, E] (undefined with SPARO)
  std::optional<SparoReadout> sparo;
  Tensor causal_mask;           // [T, T]: -inf above the diagonal

  TextTransformer() = default;
  TextTransformer(const TextConfig& cfg, int64_t layers, int64_t output_dim, Activation act,
                  const SparoConfig* sparo_cfg, Generator& gen);
  // ids i32 [B, T]; the end-of-text token is the largest id of each row.
  EncoderOutput forward(const Tensor& ids) const;
  // Names at the top level, as in OpenCLIP's CLIP (the SPARO read-out is "text_sparo.").
  void collect_parameters(const std::string& prefix, NamedTensors& out) const override;
};

// Position of the first largest id of each row (the end-of-text token), as OpenCLIP's
// ids.argmax(-1): f32 [B] on the ids' device, computed there (no read back to the host).
Tensor eos_positions(const Tensor& ids);

}  // namespace sparo
