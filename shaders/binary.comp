#version 450
// out[i] = a[...] op b[...] with broadcasting (engine/backend.h ElementwisePlan, operands
// 1 and 2; out is contiguous). Op codes follow BinaryOp's order.
#include "common.glsl"

layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) buffer Out { float y[]; };
layout(push_constant) uniform Params {
  uint dims[8];
  uint a_strides[8];
  uint b_strides[8];
  uint rank, n, op;
} p;

void main() {
  const uint i = global_index();
  if (i >= p.n) return;
  uint rem = i, ia = 0, ib = 0;
  for (int axis = int(p.rank) - 1; axis >= 0; --axis) {
    const uint k = rem % p.dims[axis];
    rem /= p.dims[axis];
    ia += k * p.a_strides[axis];
    ib += k * p.b_strides[axis];
  }
  const float x = a[ia], z = b[ib];
  float r;
  switch (p.op) {
    case 0u: r = x + z; break;                   // add
    case 1u: r = x - z; break;                   // sub
    case 2u: r = x * z; break;                   // mul
    case 3u: r = x / z; break;                   // div
    case 4u: r = x == z ? 1.0 : 0.0; break;      // eq
    default: r = x >= z ? x : z; break;          // maximum
  }
  y[i] = r;
}
