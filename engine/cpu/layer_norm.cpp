// CPU kernels: layer norm over the last axis and its backward.
#include <cmath>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/vector_math.h"

namespace sparo::cpu {

void CpuBackend::layer_norm(const Tensor& xt, const Tensor& wt, const Tensor& bt, Tensor& yt, Tensor& meant,
                            Tensor& rstdt, int64_t rows, int64_t cols, float eps) {
  const float* x = data<float>(xt);
  const float* w = data<float>(wt);
  const float* bias = bt.defined() ? data<float>(bt) : nullptr;
  float* y = data<float>(yt);
  float* mean = data<float>(meant);
  float* rstd = data<float>(rstdt);
  parallel_for(rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(cols, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* xr = x + r * cols;
      const float mu = static_cast<float>(lane_sum(xr, cols) / static_cast<double>(cols));
      // Two passes: no cancellation for rows with a large mean.
      const double sq = lane_squared_deviation(xr, mu, cols);
      const float inv = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(cols) + eps));
      mean[r] = mu;
      rstd[r] = inv;
      float* yr = y + r * cols;
      if (bias) for (int64_t c = 0; c < cols; ++c) yr[c] = (xr[c] - mu) * inv * w[c] + bias[c];
      else for (int64_t c = 0; c < cols; ++c) yr[c] = (xr[c] - mu) * inv * w[c];
    }
  });
}

void CpuBackend::layer_norm_backward(const Tensor& xt, const Tensor& wt, const Tensor& meant, const Tensor& rstdt,
                                     const Tensor& dyt, Tensor& dxt, Tensor& dwt, Tensor& dbt, int64_t rows,
                                     int64_t cols) {
  const float* x = data<float>(xt);
  const float* w = data<float>(wt);
  const float* mean = data<float>(meant);
  const float* rstd = data<float>(rstdt);
  const float* dy = data<float>(dyt);
  float* dx = data<float>(dxt);
  const bool want_dw = dwt.defined(), want_db = dbt.defined();

  // Weight and bias gradients sum over rows: fixed blocks of rows give partial sums that
  // are added in block order, so the result does not depend on the thread count.
  constexpr int64_t kRowBlock = 64;
  const int64_t blocks = (rows + kRowBlock - 1) / kRowBlock;
  std::vector<float> partial_dw(want_dw ? static_cast<size_t>(blocks * cols) : 0);
  std::vector<float> partial_db(want_db ? static_cast<size_t>(blocks * cols) : 0);

  parallel_for(blocks, 1, [&](int64_t b, int64_t e) {
    std::vector<float> scratch(static_cast<size_t>(2 * cols));
    for (int64_t blk = b; blk < e; ++blk) {
      float* pdw = want_dw ? partial_dw.data() + blk * cols : nullptr;
      float* pdb = want_db ? partial_db.data() + blk * cols : nullptr;
      if (pdw) std::fill(pdw, pdw + cols, 0.0f);
      if (pdb) std::fill(pdb, pdb + cols, 0.0f);
      for (int64_t r = blk * kRowBlock; r < std::min(rows, (blk + 1) * kRowBlock); ++r) {
        const float* xr = x + r * cols;
        const float* gr = dy + r * cols;
        const float mu = mean[r], inv = rstd[r];
        // dx = rstd · (g - mean(g) - x̂ · mean(g · x̂)), g = dy · w; x̂ and g into the row's
        // scratch so that the sums are vectorised lane sums.
        float* xhat = scratch.data();
        float* g = xhat + cols;
        for (int64_t c = 0; c < cols; ++c) {
          xhat[c] = (xr[c] - mu) * inv;
          g[c] = gr[c] * w[c];
        }
        if (pdw) for (int64_t c = 0; c < cols; ++c) pdw[c] += gr[c] * xhat[c];
        if (pdb) for (int64_t c = 0; c < cols; ++c) pdb[c] += gr[c];
        const float mean_g = static_cast<float>(lane_sum(g, cols) / static_cast<double>(cols));
        const float mean_gx = static_cast<float>(lane_dot(g, xhat, cols) / static_cast<double>(cols));
        float* dr = dx + r * cols;
        for (int64_t c = 0; c < cols; ++c) dr[c] = inv * (g[c] - mean_g - xhat[c] * mean_gx);
      }
    }
  });
  auto combine = [&](const std::vector<float>& partial, Tensor& outt) {
    float* out = data<float>(outt);
    parallel_for(cols, 256, [&](int64_t b, int64_t e) {
      for (int64_t c = b; c < e; ++c) {
        double acc = 0.0;
        for (int64_t blk = 0; blk < blocks; ++blk) acc += partial[static_cast<size_t>(blk * cols + c)];
        out[c] = static_cast<float>(acc);
      }
    });
  };
  if (want_dw) combine(partial_dw, dwt);
  if (want_db) combine(partial_db, dbt);
}

}  // namespace sparo::cpu
