// CPU kernels: multi-head attention fused (Backend::attention). Each (batch, head) is three
// products and a softmax on its own, with the heads read from and written to the [B, N, 3·D]
// and [B, N, D] buffers in place through the products' leading dimensions: no slice, permute
// or scale pass over q, k, v or the output, forward or backward. The products are sgemm
// calls, or for short heads small_products.h's direct loops.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/small_products.h"
#include "engine/cpu/vector_math.h"

namespace sparo::cpu {

namespace {

// At least this many (batch, head) items: each runs its products on one thread.
constexpr int64_t kSerialItems = 16;

// Heads of at most this many tokens (fp32, head width a multiple of 8, a build for AVX2 +
// FMA) run their products as small_products.h's loops instead of sgemm calls, which pack both
// operands and fill 6×16 register blocks for, say, a 17×17 result. In the tiny DINO step
// (heads of 64, 17 and 5 tokens) attention took 134-140 ms instead of 169-189 per 3 steps
// (Zen 3, 3 alternated profiles); alone, 32-token heads gained 5-17 %, and at 50 and 65
// tokens the backward lost, hence the limit.
constexpr int64_t kDirectTokens = 32;

bool direct_products(const AttentionDesc& d) {
  return small_products_available() && d.precision == MatmulPrecision::f32 && d.tokens <= kDirectTokens &&
         d.head_dim % 8 == 0;
}

}  // namespace

void CpuBackend::attention(const Tensor& qkv_t, const Tensor& mask_t, Tensor& probs_t, Tensor& out_t,
                           const AttentionDesc& d) {
  const int64_t N = d.tokens, H = d.heads, dh = d.head_dim, D = H * dh;
  const float* qkv = data<float>(qkv_t);
  const float* mask = mask_t.defined() ? data<float>(mask_t) : nullptr;
  float* probs = data<float>(probs_t);
  float* out = data<float>(out_t);
  // One (batch, head) per item, its products on the item's thread when the items alone can
  // keep the threads busy (a 65-token head's products are too small to split again).
  const bool serial = d.batch * H >= kSerialItems;
  const bool direct = direct_products(d);
  parallel_for(d.batch * H, 1, [&](int64_t begin, int64_t end) {
    std::optional<SerialGemmScope> one_thread;
    if (serial) one_thread.emplace();
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / H, h = item % H;
      const float* q = qkv + b * N * 3 * D + h * dh;
      const float* k = q + D;
      const float* v = q + 2 * D;
      float* p = probs + item * N * N;
      products_abt(direct, d.precision, q, 3 * D, k, 3 * D, N, N, dh, p, N);  // q·kᵀ
      for (int64_t i = 0; i < N; ++i) {
        float* row = p + i * N;
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < N; ++j) {
          row[j] = row[j] * d.scale + (mask ? mask[i * N + j] : 0.0f);
          m = std::max(m, row[j]);
        }
        if (m == -std::numeric_limits<float>::infinity()) {  // everything masked: no probability mass
          for (int64_t j = 0; j < N; ++j) row[j] = 0.0f;
          continue;
        }
        for (int64_t j = 0; j < N; ++j) row[j] = fast_exp_nonpositive(row[j] - m);
        const double total = lane_sum(row, N);
        const float inv = static_cast<float>(1.0 / total);
        for (int64_t j = 0; j < N; ++j) row[j] *= inv;
      }
      products_wv(direct, d.precision, p, N, 1, v, 3 * D, N, N, dh, out + b * N * D + h * dh, D);  // p·v
    }
  });
}

void CpuBackend::attention_backward(const Tensor& qkv_t, const Tensor& probs_t, const Tensor& dout_t, Tensor& dqkv_t,
                                    const AttentionDesc& d) {
  const int64_t N = d.tokens, H = d.heads, dh = d.head_dim, D = H * dh;
  const float* qkv = data<float>(qkv_t);
  const float* probs = data<float>(probs_t);
  const float* dout = data<float>(dout_t);
  float* dqkv = data<float>(dqkv_t);
  const bool serial = d.batch * H >= kSerialItems;
  const bool direct = direct_products(d);
  parallel_for(d.batch * H, 1, [&](int64_t begin, int64_t end) {
    std::optional<SerialGemmScope> one_thread;
    if (serial) one_thread.emplace();
    std::vector<float> ds(static_cast<size_t>(N * N));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / H, h = item % H;
      const float* q = qkv + b * N * 3 * D + h * dh;
      const float* k = q + D;
      const float* v = q + 2 * D;
      const float* p = probs + item * N * N;
      const float* go = dout + b * N * D + h * dh;
      float* dq = dqkv + b * N * 3 * D + h * dh;
      float* dk = dq + D;
      float* dv = dq + 2 * D;
      // o = p·v:  dp = do·vᵀ,  dv = pᵀ·do
      products_abt(direct, d.precision, go, D, v, 3 * D, N, N, dh, ds.data(), N);
      products_wv(direct, d.precision, p, 1, N, go, D, N, N, dh, dv, 3 * D);
      // p = softmax(s):  ds = p ⊙ (dp − Σ dp⊙p), times the scale of s = scale · q·kᵀ
      for (int64_t i = 0; i < N; ++i) {
        float* row = ds.data() + i * N;
        const float* pr = p + i * N;
        const float total = static_cast<float>(lane_dot(row, pr, N));
        for (int64_t j = 0; j < N; ++j) row[j] = pr[j] * (row[j] - total) * d.scale;
      }
      // s = q·kᵀ:  dq = ds·k,  dk = dsᵀ·q
      products_wv(direct, d.precision, ds.data(), N, 1, k, 3 * D, N, N, dh, dq, 3 * D);
      products_wv(direct, d.precision, ds.data(), 1, N, q, 3 * D, N, N, dh, dk, 3 * D);
    }
  });
}

}  // namespace sparo::cpu
