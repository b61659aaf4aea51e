#version 450
// Creation and conversion kernels, one shader with a mode:
//   mode 0 cast f32 -> i32 (toward zero, saturating, NaN -> 0)   mode 1 cast i32 -> f32
//   mode 2 arange f32: start + step·i                               mode 3 arange i32
#include "common.glsl"

layout(std430, binding = 0) readonly buffer Src { uint src[]; };
layout(std430, binding = 1) writeonly buffer Dst { uint dst[]; };
layout(push_constant) uniform Params { uint n, mode; float start, step; } p;

void main() {
  const uint i = global_index();
  if (i >= p.n) return;
  if (p.mode == 0u) {
    const float v = uintBitsToFloat(src[i]);
    dst[i] = uint(isnan(v) ? 0 : int(clamp(v, -2147483648.0, 2147483520.0)));
  } else if (p.mode == 1u) {
    dst[i] = floatBitsToUint(float(int(src[i])));
  } else if (p.mode == 2u) {
    dst[i] = floatBitsToUint(p.start + p.step * float(i));
  } else {
    dst[i] = uint(int(p.start) + int(p.step) * int(i));
  }
}
