#version 450
// out = cond != 0 ? a : b with broadcasting (operands 1..3 of the plan; rank <= 6).
#include "common.glsl"

layout(std430, binding = 0) readonly buffer Cond { uint cond[]; };
layout(std430, binding = 1) readonly buffer A { float a[]; };
layout(std430, binding = 2) readonly buffer B { float b[]; };
layout(std430, binding = 3) writeonly buffer Out { float y[]; };
layout(push_constant) uniform Params {
  uint dims[6];
  uint cond_strides[6];
  uint a_strides[6];
  uint b_strides[6];
  uint rank, n;
} p;

void main() {
  const uint i = global_index();
  if (i >= p.n) return;
  uint rem = i, ic = 0u, ia = 0u, ib = 0u;
  for (int axis = int(p.rank) - 1; axis >= 0; --axis) {
    const uint k = rem % p.dims[axis];
    rem /= p.dims[axis];
    ic += k * p.cond_strides[axis];
    ia += k * p.a_strides[axis];
    ib += k * p.b_strides[axis];
  }
  // f32 and i32 conditions alike: nonzero bits other than the sign (so -0.0 is false)
  y[i] = (cond[ic] & 0x7fffffffu) != 0u ? a[ia] : b[ib];
}
