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
  // Everything by value, nothing read through a reference: a store through p, m or v might
  // change a float or a pointer read through one, so the loop reloaded them every element and
  // stayed scalar (vectorised, the step runs at memory speed; the values are the same).
  const float beta1 = s.beta1, beta2 = s.beta2, eps = s.eps;
  parallel_for(paramt.numel(), 1 << 14, [=](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      p[i] *= decay;  // decoupled weight decay
      m[i] = m[i] * beta1 + g[i] * (1.0f - beta1);
      v[i] = v[i] * beta2 + g[i] * g[i] * (1.0f - beta2);
      const float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
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

namespace {
// Without fp-contract=off GCC fuses kept + taken into an FMA (its default is -ffp-contract=fast):
// other bits than two rounded products added, which PyTorch's mul_ then add_ give.
__attribute__((optimize("fp-contract=off"))) void ema_chunk(float* t, const float* s, int64_t n, float keep,
                                                            float take) {
  for (int64_t i = 0; i < n; ++i) {
    const float kept = t[i] * keep, taken = s[i] * take;
    t[i] = kept + taken;
  }
}
}  // namespace

void CpuBackend::ema_step(Tensor& targett, const Tensor& sourcet, float momentum) {
  float* t = data<float>(targett);
  const float* s = data<float>(sourcet);
  const float keep = momentum, take = 1.0f - momentum;
  parallel_for(targett.numel(), 1 << 14, [=](int64_t b, int64_t e) { ema_chunk(t + b, s + b, e - b, keep, take); });
}

}  // namespace sparo::cpu
