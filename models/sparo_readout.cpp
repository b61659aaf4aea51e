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

// The read-out never forms the keys and values themselves. Slot l of group g has the query
// q_l (already divided by √d) and reads the tokens x_n through the group's key and value maps:
//   s_ln = q_l · (Wk_g x_n + bk_g) = (Wk_gᵀ q_l) · x_n + q_l · bk_g
//   z_l  = Σ_n a_ln (Wv_g x_n + bv_g) = Wv_g (Σ_n a_ln x_n) + bv_g Σ_n a_ln,   a_l = softmax(s_l + mask).
// So the scores are one small product of the tokens with L vectors u_l = Wk_gᵀ q_l, and the
// values are mapped after the attention has pooled the tokens, once per slot instead of once
// per token. The same function as the formulas in docs/MODELS.md, without the [B, N, G·d]
// keys (102 MB and 10 GFLOP per tiny-CLIP image batch: more than a transformer block).
SparoOutput SparoReadout::forward(const Tensor& x, const Tensor& key_mask) const {
  const int64_t B = x.size(0), N = x.size(1), W = x.size(2), per_group = L / groups;
  const Tensor q = affine(reshape(q_emb, {groups, per_group, key_dim}), 1.0f / std::sqrt(static_cast<float>(key_dim)), 0.0f);
  // u_l = Wk_gᵀ q_l [L, W] and q_l · bk_g [L] (a constant per row: it cannot change the
  // softmax, but keeps the function literal and k.bias's gradient, zero, defined as PyTorch's)
  const Tensor u = reshape(matmul(q, reshape(k.weight, {groups, key_dim, W})), {L, W});
  const Tensor c = reshape(matmul(q, reshape(k.bias, {groups, key_dim, 1})), {L, 1});
  const Tensor mask = key_mask.defined() ? reshape(key_mask, {B, 1, N}) : Tensor();
  const Tensor a = softmax(add(matmul(u, x, false, true), c), mask);  // [B, L, N]
  // Σ_n a_ln x_n [B, L, W], then each group's value map: [G, B·P, W] · Wv_gᵀ -> [B, L, dv]
  const Tensor pooled = permute(reshape(matmul(a, x), {B, groups, per_group, W}), {1, 0, 2, 3});
  const Linear& vmap = share_kv ? k : v;
  const Tensor mapped = matmul(reshape(pooled, {groups, B * per_group, W}), reshape(vmap.weight, {groups, value_dim, W}),
                               false, true);
  const Tensor bias = reshape(expand(reshape(vmap.bias, {groups, 1, value_dim}), {groups, per_group, value_dim}),
                              {L, value_dim});
  const Tensor z = add(reshape(permute(reshape(mapped, {groups, B, per_group, value_dim}), {1, 0, 2, 3}), {B, L, value_dim}),
                       mul(sum(a, -1, true), bias));  // [B, L, dv]
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
  return {reshape(out, {B, L * V}), a};
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
