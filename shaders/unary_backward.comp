#version 450
// dx = dy · f'(x) for each UnaryOp (same order and formulas as engine/cpu/elementwise.cpp).
#include "common.glsl"

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer DY { float dy[]; };
layout(std430, binding = 2) writeonly buffer DX { float dx[]; };
layout(push_constant) uniform Params { uint n; uint op; float a; float b; } p;

const float kSqrt2OverPi = 0.79788456080286535588;
const float kInvSqrt2 = 0.70710678118654752440;
const float kInvSqrt2Pi = 0.39894228040143267794;

float sigmoid(float v) { return 1.0 / (1.0 + exp(-v)); }

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

float derivative(uint op, float v) {
  switch (op) {
    case 0u: return -1.0;
    case 1u: return exp(v);
    case 2u: return 1.0 / v;
    case 3u: return 0.5 / sqrt(v);
    case 4u: return -0.5 / (v * sqrt(v));
    case 5u: { const float t = tanh(v); return 1.0 - t * t; }
    case 6u: { const float s = sigmoid(v); return s * (1.0 - s); }
    case 7u: return v > 0.0 ? 1.0 : 0.0;
    case 8u: return 0.5 * (1.0 + erf_approx(v * kInvSqrt2)) + v * kInvSqrt2Pi * exp(-0.5 * v * v);
    case 9u: {
      const float t = tanh(kSqrt2OverPi * (v + 0.044715 * v * v * v));
      return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * kSqrt2OverPi * (1.0 + 3.0 * 0.044715 * v * v);
    }
    case 10u: { const float s = sigmoid(1.702 * v); return s + 1.702 * v * s * (1.0 - s); }
    case 11u: {  // a·x^(a-1), with C's rules for a negative base
      const float e = p.a - 1.0;
      float r = pow(abs(v), e);
      if (v < 0.0) r = fract(e) != 0.0 ? uintBitsToFloat(0x7fc00000u) : (mod(abs(e), 2.0) == 1.0 ? -r : r);
      return p.a * r;
    }
    case 12u: return (v >= p.a && v <= p.b) ? 1.0 : 0.0;
    case 13u: return p.a;
    case 14u: return 0.0;
    case 15u: return 2.0 * v;
    default: return v > 0.0 ? 1.0 : (v < 0.0 ? -1.0 : 0.0);
  }
}

void main() {
  const uint i = global_index();
  if (i < p.n) dx[i] = dy[i] * derivative(p.op, x[i]);
}
