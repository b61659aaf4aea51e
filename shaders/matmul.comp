#version 450
// C[b] (= or +=) op(A[b])·op(B[b]), one output element per invocation (correctness first;
// the tiled, register-blocked kernel is still to come).
#include "common.glsl"
#include "bf16.glsl"

layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) buffer C { float c[]; };
layout(push_constant) uniform Params {
  uint batch, M, N, K, trans_a, trans_b, a_stride, b_stride, c_stride, flags;
} p;

void main() {
  const uint i = global_index();
  if (i >= p.batch * p.M * p.N) return;
  const uint bi = i / (p.M * p.N), m = (i / p.N) % p.M, n = i % p.N;
  const uint ao = bi * p.a_stride, bo = bi * p.b_stride;
  const bool bf16 = (p.flags & kMatmulBf16) != 0u;
  float acc = 0.0;
  for (uint k = 0u; k < p.K; ++k) {
    float av = a[ao + (p.trans_a != 0u ? k * p.M + m : m * p.K + k)];
    float bv = b[bo + (p.trans_b != 0u ? n * p.K + k : k * p.N + n)];
    if (bf16) {
      av = round_bf16(av);
      bv = round_bf16(bv);
    }
    acc = fma(av, bv, acc);
  }
  const uint ci = bi * p.c_stride + m * p.N + n;
  c[ci] = (p.flags & kMatmulAccumulate) != 0u ? c[ci] + acc : acc;
}
