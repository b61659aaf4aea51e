// CPU kernels: softmax / log-softmax over the last axis, with an additive mask.
#include <cmath>
#include <limits>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/vector_math.h"

namespace sparo::cpu {

void CpuBackend::softmax(const Tensor& xt, const Tensor& maskt, const ElementwisePlan& mask_plan, Tensor& yt,
                         int64_t rows, int64_t cols, bool log) {
  const float* x = data<float>(xt);
  const float* mask = maskt.defined() ? data<float>(maskt) : nullptr;
  float* y = data<float>(yt);
  const int last = mask_plan.rank - 1;
  const int64_t mask_col_stride = mask && mask_plan.rank ? mask_plan.strides[1][last] : 0;
  parallel_for(rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(cols, 1)), [&](int64_t b, int64_t e) {
    std::vector<float> shifted(static_cast<size_t>(cols));
    for (int64_t r = b; r < e; ++r) {
      const float* xr = x + r * cols;
      float* yr = y + r * cols;
      float* s = shifted.data();
      if (mask) {
        const float* mr = mask + plan_offset(mask_plan, 1, r * cols);
        for (int64_t c = 0; c < cols; ++c) s[c] = xr[c] + mr[c * mask_col_stride];
      } else {
        for (int64_t c = 0; c < cols; ++c) s[c] = xr[c];
      }
      float m = -std::numeric_limits<float>::infinity();
      for (int64_t c = 0; c < cols; ++c) m = std::max(m, s[c]);
      if (m == -std::numeric_limits<float>::infinity()) {  // everything masked: no probability mass
        for (int64_t c = 0; c < cols; ++c) yr[c] = log ? -std::numeric_limits<float>::infinity() : 0.0f;
        continue;
      }
      float* ex = log ? s : yr;  // log-softmax keeps the shifted inputs: exponentiate into s only after
      if (log) {
        for (int64_t c = 0; c < cols; ++c) yr[c] = s[c] - m;
        for (int64_t c = 0; c < cols; ++c) ex[c] = fast_exp_nonpositive(yr[c]);
      } else {
        for (int64_t c = 0; c < cols; ++c) ex[c] = fast_exp_nonpositive(s[c] - m);
      }
      const double total = lane_sum(ex, cols);
      if (log) {
        const float log_total = static_cast<float>(std::log(total));
        for (int64_t c = 0; c < cols; ++c) yr[c] -= log_total;
      } else {
        const float inv = static_cast<float>(1.0 / total);
        for (int64_t c = 0; c < cols; ++c) yr[c] *= inv;
      }
    }
  });
}

void CpuBackend::softmax_backward(const Tensor& yt, const Tensor& dyt, Tensor& dxt, int64_t rows, int64_t cols,
                                  bool log) {
  const float* y = data<float>(yt);
  const float* dy = data<float>(dyt);
  float* dx = data<float>(dxt);
  parallel_for(rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(cols, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* yr = y + r * cols;
      const float* gr = dy + r * cols;
      float* dr = dx + r * cols;
      if (log) {  // dx = dy - softmax · Σ dy
        const float total = static_cast<float>(lane_sum(gr, cols));
        for (int64_t c = 0; c < cols; ++c) dr[c] = gr[c] - fast_exp_nonpositive(yr[c]) * total;
      } else {    // dx = y · (dy - Σ dy·y)
        const float total = static_cast<float>(lane_dot(gr, yr, cols));
        for (int64_t c = 0; c < cols; ++c) dr[c] = yr[c] * (gr[c] - total);
      }
    }
  });
}

}  // namespace sparo::cpu
