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

std::vector<int64_t> eos_positions(const Tensor& ids) {
  const std::vector<int32_t> v = ids.to_int_vector();
  const int64_t B = ids.size(0), T = ids.size(1);
  std::vector<int64_t> eos(static_cast<size_t>(B), 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 1; t < T; ++t)
      if (v[static_cast<size_t>(b * T + t)] > v[static_cast<size_t>(b * T + eos[b])]) eos[b] = t;
  return eos;
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
  const std::vector<int64_t> eos = eos_positions(ids);
  if (sparo) {
    std::vector<float> mask(static_cast<size_t>(B * T), 0.0f);  // keys after the end of text are masked
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = eos[b] + 1; t < T; ++t) mask[static_cast<size_t>(b * T + t)] = -std::numeric_limits<float>::infinity();
    SparoOutput s = sparo->forward(x, Tensor::from_vector(mask, {B, T}, x.device()));
    return {s.embedding, s.attention};
  }
  std::vector<int32_t> rows(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) rows[b] = static_cast<int32_t>(b * T + eos[b]);
  const Tensor pooled = index_select(reshape(x, {B * T, D}), 0, Tensor::from_vector(rows, {B}, x.device()));
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
