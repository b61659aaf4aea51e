// attention: the core of multi-head self-attention, softmax(q·kᵀ/√dh + mask)·v for every head,
// from the [B, N, 3·D] output of the q/k/v projection to the [B, N, D] input of the output
// projection. Where the backend has the fused kernel (the CPU), one op that reads the heads
// in place; elsewhere the same function composed from slice, permute, matmul and softmax.
#include <cmath>

#include "engine/ops/op_support.h"

namespace sparo {

using namespace detail;

namespace {

Tensor composed_attention(const Tensor& qkv, int64_t heads, const Tensor& mask, float scale) {
  const int64_t B = qkv.size(0), N = qkv.size(1), D = qkv.size(2) / 3, dh = D / heads;
  // [B, N, 3D] -> [3, B, H, N, dh]
  const Tensor split = permute(reshape(qkv, {B, N, 3, heads, dh}), {2, 0, 3, 1, 4});
  const Tensor q = affine(reshape(slice(split, 0, 0, 1), {B, heads, N, dh}), scale, 0.0f);
  const Tensor k = reshape(slice(split, 0, 1, 2), {B, heads, N, dh});
  const Tensor v = reshape(slice(split, 0, 2, 3), {B, heads, N, dh});
  const Tensor a = softmax(matmul(q, k, false, true), mask);  // [B, H, N, N]
  return reshape(permute(matmul(a, v), {0, 2, 1, 3}), {B, N, D});
}

}  // namespace

Tensor attention(const Tensor& qkv, int64_t heads, const Tensor& mask) {
  check_defined("attention", qkv, "qkv");
  check_dtype("attention", qkv, DType::f32, "qkv");
  if (qkv.dim() != 3 || qkv.size(2) % 3 != 0)
    throw Error("attention: qkv must be [batch, tokens, 3·width] (q, k, v side by side), got shape " +
                shape_str(qkv.shape()));
  const int64_t B = qkv.size(0), N = qkv.size(1), D = qkv.size(2) / 3;
  if (heads < 1 || D % heads != 0)
    throw Error("attention: width " + std::to_string(D) + " (qkv shape " + shape_str(qkv.shape()) +
                ") is not divisible into " + std::to_string(heads) + " heads");
  if (mask.defined()) {
    check_dtype("attention", mask, DType::f32, "mask");
    check_same_device("attention", qkv, mask);
    if (mask.shape() != Shape{N, N})
      throw Error("attention: mask must be [tokens, tokens] = [" + std::to_string(N) + ", " + std::to_string(N) +
                  "], got shape " + shape_str(mask.shape()));
  }
  const int64_t dh = D / heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  Backend& backend = backend_of(qkv);
  // A mask that wants a gradient takes the composed path, whose softmax gives it one.
  if (!backend.has_fused_attention() || (mask.defined() && mask.requires_grad()))
    return composed_attention(qkv, heads, mask, scale);

  profiler::Scope scope("attention");
  AttentionDesc d;
  d.batch = B, d.tokens = N, d.heads = heads, d.head_dim = dh;
  d.scale = scale;
  d.precision = matmul_precision();
  Tensor probs = Tensor::empty({B, heads, N, N}, DType::f32, qkv.device());
  Tensor out = Tensor::empty({B, N, D}, DType::f32, qkv.device());
  if (out.numel() > 0) {
    backend.attention(qkv, mask, probs, out, d);
    // q·kᵀ and p·v: 2 · 2·N·N·dh FLOPs per (batch, head).
    profiler::add_work(4.0 * static_cast<double>(B * heads) * static_cast<double>(N * N) * static_cast<double>(dh), 0.0);
  }
  if (!needs_grad({&qkv})) return out;
  return record("attention", out, {&qkv}, [qkv = qkv.detach(), probs, d](const Tensor& g) {
    Tensor dqkv = Tensor::empty(qkv.shape(), DType::f32, qkv.device());
    if (dqkv.numel() > 0) {
      backend_of(qkv).attention_backward(qkv, probs, g, dqkv, d);
      // do·vᵀ, pᵀ·do, ds·k, dsᵀ·q
      profiler::add_work(8.0 * static_cast<double>(d.batch * d.heads) * static_cast<double>(d.tokens * d.tokens) *
                             static_cast<double>(d.head_dim),
                         0.0);
    }
    return std::vector<Tensor>{dqkv};
  });
}

}  // namespace sparo
