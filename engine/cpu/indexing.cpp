// CPU kernels: gather / scatter-add along an axis, one-hot. Indices are checked by the op.
#include <cstring>

#include "engine/cpu/cpu_backend.h"

namespace sparo::cpu {

// Indices come from user data (token ids, labels): check them all before any write.
static void check_indices(const int32_t* index, int64_t m, int64_t n) {
  for (int64_t j = 0; j < m; ++j)
    if (index[j] < 0 || index[j] >= n)
      throw Error("index " + std::to_string(index[j]) + " at position " + std::to_string(j) +
                  " is out of range [0, " + std::to_string(n) + ")");
}

void CpuBackend::gather(const Tensor& srct, const Tensor& indext, Tensor& outt, int64_t outer, int64_t n,
                        int64_t inner) {
  const int32_t* index = data<int32_t>(indext);
  const int64_t m = indext.numel();
  check_indices(index, m, n);
  const size_t elem = dtype_size(srct.dtype());
  const char* src = data<char>(srct);
  char* out = data<char>(outt);
  const size_t row_bytes = static_cast<size_t>(inner) * elem;
  parallel_for(outer * m, std::max<int64_t>(1, 16384 / std::max<int64_t>(inner, 1)), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / m, j = t % m;
      std::memcpy(out + static_cast<size_t>(t) * row_bytes,
                  src + static_cast<size_t>(o * n + index[j]) * row_bytes, row_bytes);
    }
  });
}

void CpuBackend::scatter_add(const Tensor& srct, const Tensor& indext, Tensor& dstt, int64_t outer, int64_t n,
                             int64_t inner) {
  const int32_t* index = data<int32_t>(indext);
  const int64_t m = indext.numel();
  check_indices(index, m, n);
  const float* src = data<float>(srct);
  float* dst = data<float>(dstt);
  // Tasks own disjoint (outer, column-block) pairs and walk j in order: deterministic.
  constexpr int64_t kColumnBlock = 64;
  const int64_t blocks = (inner + kColumnBlock - 1) / kColumnBlock;
  parallel_for(outer * blocks, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / blocks, c0 = (t % blocks) * kColumnBlock;
      const int64_t width = std::min(kColumnBlock, inner - c0);
      for (int64_t j = 0; j < m; ++j) {
        const float* s = src + (o * m + j) * inner + c0;
        float* d = dst + (o * n + index[j]) * inner + c0;
        for (int64_t c = 0; c < width; ++c) d[c] += s[c];
      }
    }
  });
}

void CpuBackend::one_hot(const Tensor& indext, Tensor& outt, int64_t classes, float on, float off) {
  const int32_t* index = data<int32_t>(indext);
  float* out = data<float>(outt);
  check_indices(index, indext.numel(), classes);
  parallel_for(indext.numel(), std::max<int64_t>(1, 16384 / std::max<int64_t>(classes, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      float* row = out + r * classes;
      std::fill(row, row + classes, off);
      row[index[r]] = on;
    }
  });
}

}  // namespace sparo::cpu
