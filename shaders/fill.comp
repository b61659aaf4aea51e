#version 450
// out[i] = value (f32 or i32 bit pattern), i < n
#include "common.glsl"

layout(std430, binding = 0) writeonly buffer Out { uint out_bits[]; };
layout(push_constant) uniform Params { uint n; uint value_bits; } p;

void main() {
  const uint i = global_index();
  if (i < p.n) out_bits[i] = p.value_bits;
}
