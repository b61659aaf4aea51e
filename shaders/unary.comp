#version 450
// out = f(x) elementwise; the op codes follow engine/backend.h's UnaryOp order.
#include "common.glsl"

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Out { float y[]; };
layout(push_constant) uniform Params { uint n; uint op; float a; float b; } p;

const float kSqrt2OverPi = 0.79788456080286535588;
const float kInvSqrt2 = 0.70710678118654752440;

float sigmoid(float v) { return 1.0 / (1.0 + exp(-v)); }

// Abramowitz & Stegun 7.1.26, as the CPU backend (engine/cpu/vector_math.h).
float erf_approx(float v) {
  const float ax = abs(v);
  const float t = 1.0 / (1.0 + 0.3275911 * ax);
  float poly = 1.061405429;
  poly = poly * t - 1.453152027;
  poly = poly * t + 1.421413741;
  poly = poly * t - 0.284496736;
  poly = poly * t + 0.254829592;
  const float r = 1.0 - poly * t * exp(-ax * ax);
  return v < 0.0 ? -r : r;
}

float apply(uint op, float v) {
  switch (op) {
    case 0u: return -v;                                    // neg
    case 1u: return exp(v);                                // exp
    case 2u: return log(v);                                // log
    case 3u: return sqrt(v);                               // sqrt
    case 4u: return inversesqrt(v);                        // rsqrt
    case 5u: return tanh(v);                               // tanh
    case 6u: return sigmoid(v);                            // sigmoid
    case 7u: return max(v, 0.0);                           // relu
    case 8u: return 0.5 * v * (1.0 + erf_approx(v * kInvSqrt2));  // gelu (erf)
    case 9u: return 0.5 * v * (1.0 + tanh(kSqrt2OverPi * (v + 0.044715 * v * v * v)));  // gelu (tanh)
    case 10u: return v * sigmoid(1.702 * v);               // quick_gelu
    case 11u: {                                            // pow, with C's rules for a negative base
      const float r = pow(abs(v), p.a);
      if (v >= 0.0) return r;
      if (fract(p.a) != 0.0) return uintBitsToFloat(0x7fc00000u);  // NaN
      return mod(abs(p.a), 2.0) == 1.0 ? -r : r;
    }
    case 12u: return clamp(v, p.a, p.b);                   // clamp
    case 13u: return p.a * v + p.b;                        // affine
    case 14u: return v >= p.a ? p.b : 0.0;                 // step
    case 15u: return v * v;                                // square
    default: return abs(v);                                // abs
  }
}

void main() {
  const uint i = global_index();
  if (i < p.n) y[i] = apply(p.op, x[i]);
}
