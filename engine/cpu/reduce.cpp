// CPU kernels: sum and max over the middle axis of x viewed as [outer, n, inner].
//
// Sums accumulate in double. Each output is reduced by one task in a fixed order,
// and long single-row reductions are cut into fixed-size chunks combined in order,
// so results are bitwise identical for any thread count.
#include <cmath>
#include <limits>
#include <vector>

#include "engine/cpu/cpu_backend.h"

namespace sparo::cpu {

namespace {
constexpr int64_t kChunk = 1 << 14;  // elements per partial sum of a long row
constexpr int64_t kColumnBlock = 256;

inline double row_sum(const float* x, int64_t n) {
  double acc = 0.0;
  for (int64_t i = 0; i < n; ++i) acc += x[i];
  return acc;
}
inline float row_max(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i)
    if (!(x[i] <= m)) m = x[i];  // also takes NaN, which then sticks
  return m;
}
}  // namespace

void CpuBackend::reduce(ReduceOp op, const Tensor& xt, Tensor& outt, int64_t outer, int64_t n, int64_t inner) {
  const float* x = data<float>(xt);
  float* out = data<float>(outt);
  const bool is_sum = op == ReduceOp::sum;

  if (inner == 1 && outer == 1 && n > kChunk) {  // one long row: fixed chunks, combined in order
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    std::vector<double> partial(static_cast<size_t>(chunks));
    parallel_for(chunks, 1, [&](int64_t b, int64_t e) {
      for (int64_t c = b; c < e; ++c) {
        const int64_t len = std::min(kChunk, n - c * kChunk);
        partial[static_cast<size_t>(c)] = is_sum ? row_sum(x + c * kChunk, len) : row_max(x + c * kChunk, len);
      }
    });
    double acc = is_sum ? 0.0 : -std::numeric_limits<double>::infinity();
    for (double v : partial) acc = is_sum ? acc + v : (!(v <= acc) ? v : acc);
    out[0] = static_cast<float>(acc);
    return;
  }
  if (inner == 1) {  // contiguous rows
    parallel_for(outer, std::max<int64_t>(1, kChunk / std::max<int64_t>(n, 1)), [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o)
        out[o] = is_sum ? static_cast<float>(row_sum(x + o * n, n)) : row_max(x + o * n, n);
    });
    return;
  }
  // Strided: out[o, j] over blocks of columns j, each block accumulated row by row so the
  // inner loop runs over contiguous memory.
  const int64_t blocks_per_outer = (inner + kColumnBlock - 1) / kColumnBlock;
  parallel_for(outer * blocks_per_outer, std::max<int64_t>(1, kChunk / std::max<int64_t>(n * kColumnBlock, 1)),
               [&](int64_t b, int64_t e) {
    double acc_sum[kColumnBlock];
    float acc_max[kColumnBlock];
    for (int64_t task = b; task < e; ++task) {
      const int64_t o = task / blocks_per_outer;
      const int64_t j0 = (task % blocks_per_outer) * kColumnBlock;
      const int64_t width = std::min(kColumnBlock, inner - j0);
      const float* base = x + o * n * inner + j0;
      if (is_sum) {
        for (int64_t j = 0; j < width; ++j) acc_sum[j] = 0.0;
        for (int64_t k = 0; k < n; ++k)
          for (int64_t j = 0; j < width; ++j) acc_sum[j] += base[k * inner + j];
        for (int64_t j = 0; j < width; ++j) out[o * inner + j0 + j] = static_cast<float>(acc_sum[j]);
      } else {
        for (int64_t j = 0; j < width; ++j) acc_max[j] = -std::numeric_limits<float>::infinity();
        for (int64_t k = 0; k < n; ++k)
          for (int64_t j = 0; j < width; ++j) {
            const float v = base[k * inner + j];
            if (!(v <= acc_max[j])) acc_max[j] = v;
          }
        for (int64_t j = 0; j < width; ++j) out[o * inner + j0 + j] = acc_max[j];
      }
    }
  });
}

}  // namespace sparo::cpu
