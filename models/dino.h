// DINO: facebookresearch/dino's ViT (state-dict names and LayerNorm eps 1e-6) with a
// CLS or SPARO read-out, and the DINO head (3-layer MLP, bottleneck, L2 normalise,
// weight-normalised prototypes).
#pragma once

#include <optional>

#include "models/sparo_readout.h"
#include "models/vision_transformer.h"

namespace sparo {

struct DinoBackbone : Module {
  DinoConfig cfg;
  Tensor patch_weight, patch_bias;  // patch_embed.proj: [D, 3, P, P], [D]
  Tensor cls_token;                 // [1, 1, D]
  Tensor pos_embed;                 // [1, 1 + (S/P)², D]
  std::vector<TransformerBlock> blocks;
  LayerNorm norm;
  std::optional<SparoReadout> sparo;

  DinoBackbone() = default;
  DinoBackbone(const DinoConfig& cfg, Generator& gen);
  // The representation: norm(x)[:, 0] (cls) or the SPARO embedding. `gen` drives drop-path
  // when training (nullptr: no drop-path).
  // Images may be of any square size that is a multiple of the patch size (DINO's local
  // crops): the positional embedding is then resampled bicubically (position_embedding).
  EncoderOutput forward(const Tensor& images, Generator* gen = nullptr) const;
  // pos_embed for a grid × grid patch grid: as is at the trained size, else the patch part
  // resized bicubically (PyTorch's a = -0.75, align_corners=False), the CLS entry unchanged.
  Tensor position_embedding(int64_t grid) const;
  int64_t output_dim() const { return sparo ? sparo->L * sparo->V : cfg.width; }
  void collect_parameters(const std::string& prefix, NamedTensors& out) const override;
};

struct DinoHead : Module {
  Linear mlp0, mlp2, mlp4;
  Tensor weight_g;  // [K, 1], fixed to 1 (norm_last_layer)
  Tensor weight_v;  // [K, bottleneck]
  float input_scale = 1.0f;  // multiplies the input (√(L·V) for a SPARO backbone: see Dino::Dino)

  DinoHead() = default;
  DinoHead(int64_t in, int64_t hidden, int64_t bottleneck, int64_t out, Generator& gen);
  Tensor forward(const Tensor& x) const;  // [B, in] -> [B, K]
  void collect_parameters(const std::string& prefix, NamedTensors& out) const override;
};

struct Dino : Module {
  DinoConfig cfg;
  DinoBackbone backbone;
  DinoHead head;
  explicit Dino(const DinoConfig& cfg, uint64_t seed = 0);
  void collect_parameters(const std::string& prefix, NamedTensors& out) const override;
  StateAliases aliases() const;
};

}  // namespace sparo
