#version 450
// softmax / log-softmax over each row of x [rows, cols], with an optional additive mask
// mapped by a broadcast plan (dims and the mask's strides over x's index space).
#include "common.glsl"

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer M { float mask[]; };
layout(std430, binding = 2) writeonly buffer Out { float y[]; };
layout(push_constant) uniform Params {
  uint dims[8];
  uint mask_strides[8];
  uint rank, rows, cols, flags;  // flags: 1 = log, 2 = has mask
} p;

float shifted(uint r, uint c) {
  const uint index = r * p.cols + c;
  if ((p.flags & 2u) == 0u) return x[index];
  uint rem = index, off = 0u;
  for (int axis = int(p.rank) - 1; axis >= 0; --axis) {
    off += (rem % p.dims[axis]) * p.mask_strides[axis];
    rem /= p.dims[axis];
  }
  return x[index] + mask[off];
}

void main() {
  const uint r = global_index();
  if (r >= p.rows) return;
  const bool log_out = (p.flags & 1u) != 0u;
  float m = uintBitsToFloat(0xff800000u);
  for (uint c = 0u; c < p.cols; ++c) m = max(m, shifted(r, c));
  if (isinf(m) && m < 0.0) {  // everything masked: no probability mass
    for (uint c = 0u; c < p.cols; ++c) y[r * p.cols + c] = log_out ? uintBitsToFloat(0xff800000u) : 0.0;
    return;
  }
  float total = 0.0;
  for (uint c = 0u; c < p.cols; ++c) total += exp(shifted(r, c) - m);
  const float log_total = log(total);
  for (uint c = 0u; c < p.cols; ++c) {
    const float s = shifted(r, c) - m;
    y[r * p.cols + c] = log_out ? s - log_total : exp(s) / total;
  }
}
