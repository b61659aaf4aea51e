// OpenCLIP's VisionTransformer with the read-outs of the paper: CLS token + projection,
// global average pooling, bottleneck control, or SPARO. docs/MODELS.md has the math.
#pragma once

#include <optional>

#include "models/config.h"
#include "models/sparo_readout.h"

namespace sparo {

struct EncoderOutput {
  Tensor embedding;  // [B, E] (not yet normalised for token/gap read-outs; unit norm for SPARO)
  Tensor attention;  // SPARO slot attention [B, L, N], else undefined
};

struct VisionTransformer : Module {
  VisionConfig cfg;
  Tensor conv1_weight;          // [D, 3, P, P]
  Tensor class_embedding;       // [D]
  Tensor positional_embedding;  // [1 + (S/P)², D]
  LayerNorm ln_pre, ln_post;
  std::vector<TransformerBlock> blocks;
  Tensor proj;                  // [D, E] (undefined with SPARO)
  std::optional<SparoReadout> sparo;

  VisionTransformer() = default;
  VisionTransformer(const VisionConfig& cfg, int64_t layers, int64_t output_dim, Activation act,
                    const SparoConfig* sparo_cfg, Generator& gen);
  EncoderOutput forward(const Tensor& images) const;
  // The token sequence after the last block (before ln_post): [B, 1 + (S/P)², D].
  Tensor encode_tokens(const Tensor& images) const;
  void collect_parameters(const std::string& prefix, NamedTensors& out) const override;
};

}  // namespace sparo
