#version 450
// Fused optimiser steps, as engine/cpu/optim.cpp. mode 0 AdamW (decoupled weight decay),
// mode 1 SGD (momentum buffer in `m` when momentum != 0), mode 2 an EMA of `grad` into `param`
// (momentum, and dampening = 1 - momentum).
#include "common.glsl"

layout(std430, binding = 0) buffer Param { float param[]; };
layout(std430, binding = 1) readonly buffer Grad { float grad[]; };
layout(std430, binding = 2) buffer M { float m[]; };
layout(std430, binding = 3) buffer V { float v[]; };
layout(push_constant) uniform Params {
  uint n, mode, first_step, nesterov;
  float lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2, momentum, dampening;
} p;

void main() {
  const uint i = global_index();
  if (i >= p.n) return;
  if (p.mode == 0u) {
    param[i] *= 1.0 - p.lr * p.weight_decay;
    m[i] = m[i] * p.beta1 + grad[i] * (1.0 - p.beta1);
    v[i] = v[i] * p.beta2 + grad[i] * grad[i] * (1.0 - p.beta2);
    const float denom = sqrt(v[i]) / sqrt(p.bias_correction2) + p.eps;
    param[i] -= (p.lr / p.bias_correction1) * m[i] / denom;
  } else if (p.mode == 2u) {
    // Both products rounded before the sum, as on the CPU: no fused multiply-add.
    precise const float kept = param[i] * p.momentum;
    precise const float taken = grad[i] * p.dampening;
    param[i] = kept + taken;
  } else {
    float d = grad[i] + p.weight_decay * param[i];
    if (p.momentum != 0.0) {
      m[i] = p.first_step != 0u ? d : m[i] * p.momentum + (1.0 - p.dampening) * d;
      d = p.nesterov != 0u ? d + p.momentum * m[i] : m[i];
    }
    param[i] -= p.lr * d;
  }
}
