// The SPARO read-out: L slots, each one single-head attention with a learned query
// over all tokens, a Linear shared by all slots, each slot normalised on its own.
// Exact equations: docs/MODELS.md ("SPARO read-out"), ../shared/docs/SPARO.md.
#pragma once

#include "models/config.h"
#include "models/layers.h"

namespace sparo {

struct SparoOutput {
  Tensor embedding;  // [B, L·V], unit norm
  Tensor attention;  // [B, L, N]: slot l's weights over the tokens
};

struct SparoReadout : Module {
  int64_t L = 0, V = 0, groups = 0, key_dim = 0, value_dim = 0;
  bool share_kv = true;
  std::string type;
  Tensor q_emb;        // [1, G, L/G, 1, d]; with shared queries, the image tower's tensor
  bool owns_queries = true;
  Linear k, v, proj;   // v unused when share_kv

  SparoReadout() = default;
  SparoReadout(int64_t width, int64_t encoder_head_width, const SparoConfig& cfg, Generator& gen);
  // x [B, N, D] (after the encoder's final LayerNorm); key_mask [B, N] additive or undefined.
  SparoOutput forward(const Tensor& x, const Tensor& key_mask) const;
  void collect_parameters(const std::string& prefix, NamedTensors& out) const override;
  // With share_kv, `prefix + v.*` are aliases of `prefix + k.*` in state dicts.
  void add_aliases(const std::string& prefix, StateAliases& aliases) const;
};

}  // namespace sparo
