#include "models/sparo_readout.h"

#include <cmath>

namespace sparo {

SparoReadout::SparoReadout(int64_t width, int64_t encoder_head_width, const SparoConfig& cfg, Generator& gen)
    : L(cfg.L), V(cfg.V), groups(cfg.heads ? cfg.heads : cfg.L),
      key_dim(cfg.attn_dim ? cfg.attn_dim : encoder_head_width), share_kv(cfg.share_kv), type(cfg.type) {
  value_dim = share_kv ? key_dim : (cfg.value_dim ? cfg.value_dim : key_dim);
  q_emb = Tensor::randn({1, groups, L / groups, 1, key_dim}, gen).requires_grad_();
  k = Linear(width, groups * key_dim, gen);
  k.weight = init_xavier_uniform(groups * key_dim, width, gen);
  k.bias = Tensor::zeros({groups * key_dim}).requires_grad_();
  if (!share_kv) {
    v = Linear(width, groups * value_dim, gen);
    v.weight = init_xavier_uniform(groups * value_dim, width, gen);
    v.bias = Tensor::zeros({groups * value_dim}).requires_grad_();
  }
  // cont:softmax: each slot emits one extra number, its weight logit (the first entry).
  proj = Linear(value_dim, type == "cont:softmax" ? V + 1 : V, gen);
  proj.bias = Tensor::zeros({proj.weight.size(0)}).requires_grad_();
}

SparoOutput SparoReadout::forward(const Tensor& x, const Tensor& key_mask) const {
  const int64_t B = x.size(0), N = x.size(1), per_group = L / groups;
  // Keys and values per group: [B, G, N, d]
  const Tensor keys = permute(reshape(k.forward(x), {B, N, groups, key_dim}), {0, 2, 1, 3});
  const Tensor values =
      share_kv ? keys : permute(reshape(v.forward(x), {B, N, groups, value_dim}), {0, 2, 1, 3});
  // s = (q / sqrt(d)) · Kᵀ: [1, G, L/G, d] x [B, G, N, d]ᵀ -> [B, G, L/G, N]
  const Tensor q = affine(reshape(q_emb, {1, groups, per_group, key_dim}), 1.0f / std::sqrt(static_cast<float>(key_dim)), 0.0f);
  const Tensor mask = key_mask.defined() ? reshape(key_mask, {B, 1, 1, N}) : Tensor();
  const Tensor a = softmax(matmul(q, keys, false, true), mask);
  const Tensor z = reshape(matmul(a, values), {B, L, value_dim});
  const Tensor y = proj.forward(z);  // [B, L, V']

  Tensor out;
  if (type == "cont:const") {
    out = affine(l2_normalize(y, -1), std::sqrt(1.0f / static_cast<float>(L)), 0.0f);
  } else if (type == "cont:norm") {
    out = l2_normalize(reshape(y, {B, L * V}), -1);
  } else {  // cont:softmax
    const Tensor logits = reshape(slice(y, 2, 0, 1), {B, L});
    const Tensor weights = reshape(l2_normalize(softmax(logits), -1), {B, L, 1});
    out = mul(l2_normalize(slice(y, 2, 1, V + 1), -1), weights);
  }
  return {reshape(out, {B, L * V}), reshape(a, {B, L, N})};
}

void SparoReadout::collect_parameters(const std::string& p, NamedTensors& out) const {
  if (owns_queries) out.emplace_back(p + "q_emb", q_emb);
  k.collect_parameters(p + "k.", out);
  if (!share_kv) v.collect_parameters(p + "v.", out);
  proj.collect_parameters(p + "proj.", out);
}

void SparoReadout::add_aliases(const std::string& p, StateAliases& aliases) const {
  if (!share_kv) return;
  aliases[p + "v.weight"] = p + "k.weight";
  aliases[p + "v.bias"] = p + "k.bias";
}

}  // namespace sparo
