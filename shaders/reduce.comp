#version 450
// out[o, j] = Σ_k x[o, k, j] (op 0) or max_k (op 1); x viewed as [outer, n, inner].
// One invocation per output, in a fixed order: deterministic.
#include "common.glsl"

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Out { float y[]; };
layout(push_constant) uniform Params { uint outer, n, inner, op; } p;

void main() {
  const uint i = global_index();
  if (i >= p.outer * p.inner) return;
  const uint o = i / p.inner, j = i % p.inner;
  const uint base = o * p.n * p.inner + j;
  if (p.op == 0u) {
    float acc = 0.0;
    for (uint k = 0u; k < p.n; ++k) acc += x[base + k * p.inner];
    y[i] = acc;
  } else {
    float m = uintBitsToFloat(0xff800000u);  // -inf
    for (uint k = 0u; k < p.n; ++k) {
      const float v = x[base + k * p.inner];
      if (!isnan(m) && !(v <= m)) m = v;  // v wins when larger or NaN; then NaN sticks, as on the CPU
    }
    y[i] = m;
  }
}
