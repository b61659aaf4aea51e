// CPU kernels: fused optimiser steps, following torch.optim's single-tensor code paths.
#include <cmath>

#include "engine/cpu/cpu_backend.h"

namespace sparo::cpu {

void CpuBackend::adamw_step(Tensor& paramt, const Tensor& gradt, Tensor& mt, Tensor& vt, const AdamWStep& s) {
  float* p = data<float>(paramt);
  const float* g = data<float>(gradt);
  float* m = data<float>(mt);
  float* v = data<float>(vt);
  const float decay = 1.0f - s.lr * s.weight_decay;
  const float step_size = s.lr / s.bias_correction1;
  const float bc2_sqrt = std::sqrt(s.bias_correction2);
  parallel_for(paramt.numel(), 1 << 14, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      p[i] *= decay;  // decoupled weight decay
      m[i] = m[i] * s.beta1 + g[i] * (1.0f - s.beta1);
      v[i] = v[i] * s.beta2 + g[i] * g[i] * (1.0f - s.beta2);
      const float denom = std::sqrt(v[i]) / bc2_sqrt + s.eps;
      p[i] -= step_size * m[i] / denom;
    }
  });
}

void CpuBackend::sgd_step(Tensor& paramt, const Tensor& gradt, Tensor& buft, const SgdStep& s) {
  float* p = data<float>(paramt);
  const float* g = data<float>(gradt);
  float* buf = s.momentum != 0.0f ? data<float>(buft) : nullptr;
  parallel_for(paramt.numel(), 1 << 14, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float d = g[i] + s.weight_decay * p[i];
      if (buf) {
        buf[i] = s.first_step ? d : buf[i] * s.momentum + (1.0f - s.dampening) * d;
        d = s.nesterov ? d + s.momentum * buf[i] : buf[i];
      }
      p[i] -= s.lr * d;
    }
  });
}

}  // namespace sparo::cpu
