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
constexpr int64_t kColumnBlock = 64;   // columns of a strided tile (its sums fit in registers)
constexpr int64_t kRowChunk = 1024;    // rows of a strided tile

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
  // Strided: out[o, j] over tiles of (column block, row chunk): a tile sums (or maxes) its
  // rows of its columns in row order, with the 64 accumulators in registers and the rows read
  // as contiguous runs; the chunks' partial results are then combined in chunk order. The
  // tiles depend on the shape only, so the result is the same for any thread count. (Rows are
  // chunked so that a [8320, 192] bias gradient is more than the 3 tasks of its column blocks.)
  const int64_t blocks = (inner + kColumnBlock - 1) / kColumnBlock;
  const int64_t chunks = (n + kRowChunk - 1) / kRowChunk;
  const bool direct = chunks == 1;  // one chunk: tiles write the output
  std::vector<double> partial_sum(direct || !is_sum ? 0 : static_cast<size_t>(outer * chunks * inner));
  std::vector<float> partial_max(direct || is_sum ? 0 : static_cast<size_t>(outer * chunks * inner));
  parallel_for(outer * blocks * chunks, std::max<int64_t>(1, kChunk / (std::min(n, kRowChunk) * kColumnBlock)),
               [&](int64_t b, int64_t e) {
    for (int64_t task = b; task < e; ++task) {
      const int64_t o = task / (blocks * chunks), block = task / chunks % blocks, chunk = task % chunks;
      const int64_t j0 = block * kColumnBlock, width = std::min(kColumnBlock, inner - j0);
      const int64_t k0 = chunk * kRowChunk, rows = std::min(kRowChunk, n - k0);
      const float* base = x + (o * n + k0) * inner + j0;
      const int64_t at = (o * chunks + chunk) * inner + j0;  // this tile's partial results
      if (is_sum) {
        double acc[kColumnBlock] = {};
        if (width == kColumnBlock) {  // constant bounds: the accumulators stay in registers
          for (int64_t k = 0; k < rows; ++k)
            for (int64_t j = 0; j < kColumnBlock; ++j) acc[j] += base[k * inner + j];
        } else {
          for (int64_t k = 0; k < rows; ++k)
            for (int64_t j = 0; j < width; ++j) acc[j] += base[k * inner + j];
        }
        for (int64_t j = 0; j < width; ++j) {
          if (direct)
            out[o * inner + j0 + j] = static_cast<float>(acc[j]);
          else
            partial_sum[static_cast<size_t>(at + j)] = acc[j];
        }
      } else {
        float acc[kColumnBlock];
        for (int64_t j = 0; j < width; ++j) acc[j] = -std::numeric_limits<float>::infinity();
        for (int64_t k = 0; k < rows; ++k)
          for (int64_t j = 0; j < width; ++j) {
            const float v = base[k * inner + j];
            if (!(v <= acc[j])) acc[j] = v;
          }
        for (int64_t j = 0; j < width; ++j) (direct ? out[o * inner + j0 + j] : partial_max[static_cast<size_t>(at + j)]) = acc[j];
      }
    }
  });
  if (direct) return;
  parallel_for(outer, 1, [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o)
      for (int64_t j = 0; j < inner; ++j) {
        if (is_sum) {
          double total = 0.0;
          for (int64_t c = 0; c < chunks; ++c) total += partial_sum[static_cast<size_t>((o * chunks + c) * inner + j)];
          out[o * inner + j] = static_cast<float>(total);
        } else {
          float m = -std::numeric_limits<float>::infinity();
          for (int64_t c = 0; c < chunks; ++c) {
            const float v = partial_max[static_cast<size_t>((o * chunks + c) * inner + j)];
            if (!(v <= m)) m = v;
          }
          out[o * inner + j] = m;
        }
      }
  });
}

}  // namespace sparo::cpu
