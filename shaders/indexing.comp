#version 450
// Indexing kernels, one shader with a mode:
//   mode 0 gather:      out[o, j, c] = src[o, index[j], c]               (per output element)
//   mode 1 scatter_add: dst[o, index[j], c] += src[o, j, c]              (per (o, c), j in order)
//   mode 2 one_hot:     out[r, k] = index[r] == k ? on : off             (per output element)
// An index outside [0, n) is skipped (gather and one_hot write 0 and `off`) and its position
// goes to this dispatch's error slot by atomicMin; the host reads the slot after the submit
// and throws (vulkan_backend.cpp, "Index checks").
#include "common.glsl"

layout(std430, binding = 0) readonly buffer Src { uint src[]; };
layout(std430, binding = 1) readonly buffer Index { int index[]; };
layout(std430, binding = 2) buffer Dst { uint dst[]; };
layout(std430, binding = 3) buffer IndexError { uint first_bad_position; } error_slot;
layout(push_constant) uniform Params { uint mode, outer, n, inner, m; float on, off; } p;

bool valid(uint j) {
  const int v = index[j];
  if (v >= 0 && uint(v) < p.n) return true;
  atomicMin(error_slot.first_bad_position, j);
  return false;
}

void main() {
  const uint i = global_index();
  if (p.mode == 0u) {
    if (i >= p.outer * p.m * p.inner) return;
    const uint o = i / (p.m * p.inner), j = (i / p.inner) % p.m, c = i % p.inner;
    dst[i] = valid(j) ? src[(o * p.n + uint(index[j])) * p.inner + c] : 0u;
  } else if (p.mode == 1u) {
    if (i >= p.outer * p.inner) return;
    const uint o = i / p.inner, c = i % p.inner;
    for (uint j = 0u; j < p.m; ++j) {
      if (!valid(j)) continue;
      const uint d = (o * p.n + uint(index[j])) * p.inner + c;
      dst[d] = floatBitsToUint(uintBitsToFloat(dst[d]) + uintBitsToFloat(src[(o * p.m + j) * p.inner + c]));
    }
  } else {
    if (i >= p.m * p.n) return;
    const uint r = i / p.n, k = i % p.n;
    dst[i] = floatBitsToUint(valid(r) && uint(index[r]) == k ? p.on : p.off);
  }
}
