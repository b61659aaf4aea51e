// CPU kernels: products too small for sgemm (attention's heads, SPARO's per-image scores and
// pooling), as direct loops; see small_products.h.
#include "engine/cpu/small_products.h"

#include <algorithm>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SPARO_SMALL_PRODUCTS 1
#endif

namespace sparo::cpu {

namespace {

#ifdef SPARO_SMALL_PRODUCTS
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


}  // namespace

bool small_products_available() {
#ifdef SPARO_SMALL_PRODUCTS
  return true;
#else
  return false;
#endif
}

GemmFn gemm_for(MatmulPrecision precision) { return precision == MatmulPrecision::bf16 ? &sgemm_bf16 : &sgemm; }

void products_abt(bool direct, MatmulPrecision precision, const float* a, int64_t lda, const float* b, int64_t ldb,
                  int64_t rows, int64_t cols, int64_t n, float* s, int64_t lds) {
#ifdef SPARO_SMALL_PRODUCTS
  if (direct) return dots(a, lda, b, ldb, rows, cols, n, s, lds);
#endif
  (void)direct;
  gemm_for(precision)(false, true, rows, cols, n, a, lda, b, ldb, s, lds, false, nullptr, nullptr);
}

void products_wv(bool direct, MatmulPrecision precision, const float* w, int64_t wi, int64_t wj, const float* v,
                 int64_t ldv, int64_t rows, int64_t terms, int64_t n, float* out, int64_t ldo) {
#ifdef SPARO_SMALL_PRODUCTS
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
  gemm_for(precision)(transposed, false, rows, n, terms, w, transposed ? wj : wi, v, ldv, out, ldo, false, nullptr,
                      nullptr);
}

}  // namespace sparo::cpu
