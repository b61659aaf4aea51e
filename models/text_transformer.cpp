#include "models/text_transformer.h"

#include <cmath>
#include <limits>

namespace sparo {

TextTransformer::TextTransformer(const TextConfig& c, int64_t layers, int64_t output_dim, Activation act,
                                 const SparoConfig* sparo_cfg, Generator& gen)
    : cfg(c), ln_final(c.width, 1e-5f) {
  const int64_t D = c.width, T = c.context_length;
  token_embedding = init_normal({c.vocab_size, D}, 0.02f, gen);
  positional_embedding = init_normal({T, D}, 0.01f, gen);
  for (int64_t i = 0; i < layers; ++i)
    blocks.emplace_back(D, c.heads, 4.0f, act, 1e-5f, BlockNames::openclip, gen);
  if (sparo_cfg && sparo_cfg->enabled) sparo.emplace(D, D / c.heads, *sparo_cfg, gen);
  else text_projection = init_normal({D, output_dim}, 1.0f / std::sqrt(static_cast<float>(D)), gen);
  std::vector<float> mask(static_cast<size_t>(T * T), 0.0f);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = i + 1; j < T; ++j) mask[static_cast<size_t>(i * T + j)] = -std::numeric_limits<float>::infinity();
  causal_mask = Tensor::from_vector(mask, {T, T});
}

Tensor eos_positions(const Tensor& ids) {
  // With weights w[t] = T - t, T - max_t(w[t] · [id_t is the row's largest]) is the first
  // position of the largest id. Ids and positions are below 2^24: exact in f32.
  const int64_t T = ids.size(1);
  NoGradGuard no_grad;
  const Tensor id = cast(ids, DType::f32);
  std::vector<float> weights(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) weights[static_cast<size_t>(t)] = static_cast<float>(T - t);
  const Tensor first = max(mul(eq(id, max(id, 1, true)), Tensor::from_vector(weights, {1, T}, ids.device())), 1);
  return affine(first, -1.0f, static_cast<float>(T));
}

EncoderOutput TextTransformer::forward(const Tensor& ids) const {
  const int64_t T = cfg.context_length;
  if (ids.dtype() != DType::i32 || ids.dim() != 2 || ids.size(1) != T)
    throw Error("text transformer: token ids must be i32 [B, " + std::to_string(T) + "], got " + dtype_name(ids.dtype()) +
                " " + shape_str(ids.shape()));
  const int64_t B = ids.size(0), D = cfg.width;
  Tensor x = add(embedding(token_embedding, ids), positional_embedding);
  const Tensor mask = causal_mask.device() == x.device() ? causal_mask : causal_mask.to(x.device());
  for (const TransformerBlock& block : blocks) x = block.forward(x, mask);
  x = ln_final.forward(x);
  const Tensor eos = eos_positions(ids);
  if (sparo) {
    // Keys after the end of text are masked: -inf where t > eos[b].
    std::vector<float> positions(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) positions[static_cast<size_t>(t)] = static_cast<float>(t);
    const Tensor after_eos =
        step(sub(Tensor::from_vector(positions, {1, T}, x.device()), reshape(eos, {B, 1})), 0.5f, 1.0f);
    const Tensor mask = masked_fill(Tensor::zeros({B, T}, DType::f32, x.device()), after_eos,
                                    -std::numeric_limits<float>::infinity());
    SparoOutput s = sparo->forward(x, mask);
    return {s.embedding, s.attention};
  }
  // Row b·T + eos[b] of the [B·T, D] tokens.
  std::vector<float> row_starts(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) row_starts[static_cast<size_t>(b)] = static_cast<float>(b * T);
  const Tensor rows = cast(add(eos, Tensor::from_vector(row_starts, {B}, x.device())), DType::i32);
  const Tensor pooled = index_select(reshape(x, {B * T, D}), 0, rows);
  return {matmul(pooled, text_projection), Tensor()};
}

void TextTransformer::collect_parameters(const std::string& p, NamedTensors& out) const {
  out.emplace_back(p + "token_embedding.weight", token_embedding);
  out.emplace_back(p + "positional_embedding", positional_embedding);
  for (size_t i = 0; i < blocks.size(); ++i)
    blocks[i].collect_parameters(p + "transformer.resblocks." + std::to_string(i) + ".", out);
  ln_final.collect_parameters(p + "ln_final.", out);
  if (text_projection.defined()) out.emplace_back(p + "text_projection", text_projection);
  if (sparo) sparo->collect_parameters(p + "text_sparo.", out);
}

}  // namespace sparo
