#version 450
// The reduction of reduce.comp for few, long outputs: one workgroup per output
// out[o, j] = Σ_k x[o, k, j] (op 0) or max_k (op 1), x viewed as [outer, n, inner]. Each of
// the 256 invocations folds k = l, l + 256, ... in order, then a tree in shared memory
// combines the partials: a fixed order, so the result is deterministic. A NaN sticks (max),
// as on the CPU.
#include "common.glsl"

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Out { float y[]; };
layout(push_constant) uniform Params { uint outer, n, inner, op; } p;

shared float partial[256];

float combine(float a, float b) {
  if (p.op == 0u) return a + b;
  return isnan(a) || b <= a ? a : b;  // b wins when larger or NaN
}

void main() {
  const uint i = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;  // the output
  const uint l = gl_LocalInvocationID.x;
  const bool has_output = i < p.outer * p.inner;  // whole workgroups only: every invocation reaches the barriers
  float acc = p.op == 0u ? 0.0 : uintBitsToFloat(0xff800000u);  // 0 or -inf
  if (has_output) {
    const uint o = i / p.inner, j = i % p.inner;
    const uint base = o * p.n * p.inner + j;
    for (uint k = l; k < p.n; k += 256u) acc = combine(acc, x[base + k * p.inner]);
  }
  partial[l] = acc;
  barrier();
  [[unroll]] for (uint width = 128u; width > 0u; width >>= 1u) {
    if (l < width) partial[l] = combine(partial[l], partial[l + width]);
    barrier();
  }
  if (has_output && l == 0u) y[i] = partial[0];
}
