// CPU kernels: multi-head attention fused (Backend::attention). Each (batch, head) is three
// products and a softmax on its own, with the heads read from and written to the [B, N, 3·D]
// and [B, N, D] buffers in place through the products' leading dimensions: no slice, permute
// or scale pass over q, k, v or the output, forward or backward. The products are sgemm
// calls, or for short heads the direct loops below.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SPARO_ATTENTION_DIRECT 1
#endif

#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/vector_math.h"

namespace sparo::cpu {

namespace {

// At least this many (batch, head) items: each runs its products on one thread.
constexpr int64_t kSerialItems = 16;

// Heads of at most this many tokens (fp32, head width a multiple of 8, a build for AVX2 +
// FMA) run their products as the loops below instead of sgemm calls, which pack both
// operands and fill 6×16 register blocks for, say, a 17×17 result. In the tiny DINO step
// (heads of 64, 17 and 5 tokens) attention took 134-140 ms instead of 169-189 per 3 steps
// (Zen 3, 3 alternated profiles); alone, 32-token heads gained 5-17 %, and at 50 and 65
// tokens the backward lost, hence the limit.
constexpr int64_t kDirectTokens = 32;

bool direct_products(const AttentionDesc& d) {
#ifdef SPARO_ATTENTION_DIRECT
  return d.precision == MatmulPrecision::f32 && d.tokens <= kDirectTokens && d.head_dim % 8 == 0;
#else
  (void)d;
  return false;
#endif
}

#ifdef SPARO_ATTENTION_DIRECT
// out[i·ldo + j] = a_i · b_j (a_i = a + i·lda, b_j = b + j·ldb, n floats, n a multiple of 8),
// for i < rows, j < cols. Each dot is 8 lanes of FMA chains over k in order, the lanes then
// added in a fixed tree: the same bits whatever the thread or the grouping of i and j.
void dots(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t rows, int64_t cols, int64_t n, float* out,
          int64_t ldo) {
  // Four dots' lanes to their four sums, ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)) each.
  const auto totals = [](__m256 d0, __m256 d1, __m256 d2, __m256 d3) {
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(d0, d1), _mm256_hadd_ps(d2, d3));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  };
  // Two rows × four columns at a time: eight chains in flight, each load used twice.
  for (int64_t i = 0; i < rows; i += 2) {
    const float* a0 = a + i * lda;
    const float* a1 = a + std::min(i + 1, rows - 1) * lda;  // an odd last row: computed twice, kept once
    for (int64_t j = 0; j < cols; j += 4) {
      const int64_t m = std::min<int64_t>(4, cols - j);
      const float* bj[4];
      for (int t = 0; t < 4; ++t) bj[t] = b + (j + std::min<int64_t>(t, m - 1)) * ldb;
      __m256 acc0[4], acc1[4];
      for (int t = 0; t < 4; ++t) acc0[t] = acc1[t] = _mm256_setzero_ps();
      for (int64_t c = 0; c < n; c += 8) {
        const __m256 x0 = _mm256_loadu_ps(a0 + c), x1 = _mm256_loadu_ps(a1 + c);
        for (int t = 0; t < 4; ++t) {
          const __m256 y = _mm256_loadu_ps(bj[t] + c);
          acc0[t] = _mm256_fmadd_ps(x0, y, acc0[t]);
          acc1[t] = _mm256_fmadd_ps(x1, y, acc1[t]);
        }
      }
      const __m128 sums0 = totals(acc0[0], acc0[1], acc0[2], acc0[3]);
      const __m128 sums1 = totals(acc1[0], acc1[1], acc1[2], acc1[3]);
      if (m == 4) {
        _mm_storeu_ps(out + i * ldo + j, sums0);
        if (i + 1 < rows) _mm_storeu_ps(out + (i + 1) * ldo + j, sums1);
      } else {
        alignas(16) float sums[2][4];
        _mm_store_ps(sums[0], sums0);
        _mm_store_ps(sums[1], sums1);
        for (int64_t t = 0; t < m; ++t) out[i * ldo + j + t] = sums[0][t];
        if (i + 1 < rows)
          for (int64_t t = 0; t < m; ++t) out[(i + 1) * ldo + j + t] = sums[1][t];
      }
    }
  }
}

// Vectors 8-float vectors of Σ_j w[j·wj]·v_j over j < terms in order (v_j = v + j·ldv), held
// in registers while j runs, stored to out.
template <int Vectors>
void weighted_sum(const float* w, int64_t wj, const float* v, int64_t ldv, int64_t terms, float* out) {
  __m256 acc[Vectors];
  for (int u = 0; u < Vectors; ++u) acc[u] = _mm256_setzero_ps();
  for (int64_t j = 0; j < terms; ++j, v += ldv) {
    const __m256 x = _mm256_broadcast_ss(w + j * wj);
    for (int u = 0; u < Vectors; ++u) acc[u] = _mm256_fmadd_ps(x, _mm256_loadu_ps(v + 8 * u), acc[u]);
  }
  for (int u = 0; u < Vectors; ++u) _mm256_storeu_ps(out + 8 * u, acc[u]);
}
#endif

// s = a·bᵀ: s[i·lds + j] = a_i · b_j for i < rows, j < cols (a_i = a + i·lda, b_j = b + j·ldb,
// n floats each).
void products_abt(bool direct, MatmulPrecision precision, const float* a, int64_t lda, const float* b, int64_t ldb,
                  int64_t rows, int64_t cols, int64_t n, float* s, int64_t lds) {
#ifdef SPARO_ATTENTION_DIRECT
  if (direct) return dots(a, lda, b, ldb, rows, cols, n, s, lds);
#endif
  (void)direct;
  if (precision == MatmulPrecision::bf16)
    sgemm_bf16(false, true, rows, cols, n, a, lda, b, ldb, s, lds, false);
  else
    sgemm(false, true, rows, cols, n, a, lda, b, ldb, s, lds, false);
}

// out_i = Σ_j w(i, j)·v_j over j < terms, for i < rows: w(i, j) = w[i·wi + j·wj] with (wi, wj)
// = (ld, 1) for w as stored or (1, ld) for its transpose; v_j = v + j·ldv and out_i = out +
// i·ldo, n floats each. One FMA chain per element, j in order from 0, in both ways: sgemm's
// order, so its bits.
void products_wv(bool direct, MatmulPrecision precision, const float* w, int64_t wi, int64_t wj, const float* v,
                 int64_t ldv, int64_t rows, int64_t terms, int64_t n, float* out, int64_t ldo) {
#ifdef SPARO_ATTENTION_DIRECT
  if (direct) {
    for (int64_t i = 0; i < rows; ++i) {
      int64_t c = 0;
      for (; c + 64 <= n; c += 64) weighted_sum<8>(w + i * wi, wj, v + c, ldv, terms, out + i * ldo + c);
      for (; c < n; c += 8) weighted_sum<1>(w + i * wi, wj, v + c, ldv, terms, out + i * ldo + c);
    }
    return;
  }
#endif
  (void)direct;
  const bool transposed = wi == 1;
  const int64_t ldw = transposed ? wj : wi;
  if (precision == MatmulPrecision::bf16)
    sgemm_bf16(transposed, false, rows, n, terms, w, ldw, v, ldv, out, ldo, false);
  else
    sgemm(transposed, false, rows, n, terms, w, ldw, v, ldv, out, ldo, false);
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
