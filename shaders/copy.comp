#version 450
// Strided copy (engine/backend.h CopyPlan): permute, slice, concat, expand, clone.
// dst[dst_offset + Σ i_d·dst_strides[d]] = src[src_offset + Σ i_d·src_strides[d]], 4-byte elements.
#include "common.glsl"

layout(std430, binding = 0) readonly buffer Src { uint src[]; };
layout(std430, binding = 1) writeonly buffer Dst { uint dst[]; };
layout(push_constant) uniform Params {
  uint dims[8];
  uint src_strides[8];
  uint dst_strides[8];
  uint rank, n, src_offset, dst_offset;
} p;

void main() {
  const uint i = global_index();
  if (i >= p.n) return;
  uint rem = i, s = p.src_offset, d = p.dst_offset;
  for (int axis = int(p.rank) - 1; axis >= 0; --axis) {
    const uint k = rem % p.dims[axis];
    rem /= p.dims[axis];
    s += k * p.src_strides[axis];
    d += k * p.dst_strides[axis];
  }
  dst[d] = src[s];
}
