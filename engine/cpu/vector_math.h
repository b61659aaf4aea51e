// Branch-free float versions of exp, sigmoid and erf that the compiler vectorises (the
// libm calls do not, and were ~10 % of a training step), and row sums that vectorise too. Accuracy, checked over their
// whole range in tests/engine/test_vector_math.cpp: exp within 2 ulp; erf within 6e-7
// absolute (the formula PyTorch's vectorised erf also uses). Inputs that are NaN give NaN.
#pragma once

#include <bit>
#include <cstdint>

namespace sparo::cpu {

// exp: x = n·ln2 + r with |r| <= ln2/2, exp(r) by a degree-6 polynomial (Cephes expf
// coefficients); exp_reduced gives n and exp(r) for an x already clamped to the float range,
// and the callers put 2^n straight into the exponent bits.
struct ExpReduced {
  float n, exp_r;
};
inline ExpReduced exp_reduced(float clamped) {
  const float n = __builtin_rintf(clamped * 1.44269504088896341f);
  float r = clamped - n * 0.693359375f;  // ln2 split in a high part exact in float and a low part
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return {n, p * r * r + r + 1.0f};
}
inline float fast_exp(float x) {
  constexpr float kMax = 88.7228391f, kMin = -87.3365447505531f;  // ln(FLT_MAX), ln(FLT_MIN)
  const ExpReduced e = exp_reduced(x > kMax ? kMax : (x < kMin ? kMin : x));
  // 2^n as two factors so that n in [-126, 128] stays inside the exponent range.
  const int32_t half = static_cast<int32_t>(e.n) >> 1;
  const float scale1 = std::bit_cast<float>((half + 127) << 23);
  const float scale2 = std::bit_cast<float>((static_cast<int32_t>(e.n) - half + 127) << 23);
  float out = e.exp_r * scale1 * scale2;
  out = x > kMax ? __builtin_inff() : out;
  out = x < kMin ? 0.0f : out;
  return x != x ? x : out;
}

// exp(x) for x <= 0 (erf's exp(-x²), softmax's exp(x - max)): fast_exp's bits there, without
// its overflow and NaN selects (a NaN in still gives a NaN out), and with 2^n as one factor
// since n >= -126 here. Those selects were a third of the GELU epilogue's time.
inline float fast_exp_nonpositive(float x) {
  constexpr float kMin = -87.3365447505531f;  // ln(FLT_MIN)
  const ExpReduced e = exp_reduced(x < kMin ? kMin : x);
  const float out = e.exp_r * std::bit_cast<float>((static_cast<int32_t>(e.n) + 127) << 23);
  return x < kMin ? 0.0f : out;
}

inline float fast_sigmoid(float x) { return 1.0f / (1.0f + fast_exp(-x)); }

// erf (Abramowitz & Stegun 7.1.26 refined): erf(|x|) = 1 - t·P(t)·exp(-x²), t = 1/(1 + p|x|).
// Also gives the exp(-x²) it computes on the way (GELU's derivative needs it too). |x| and the
// sign are bit operations (fabs, copysign), not compares and selects.
inline float fast_erf(float x, float& exp_minus_x2) {
  const float ax = __builtin_fabsf(x);
  const float t = 1.0f / (1.0f + 0.3275911f * ax);
  float poly = 1.061405429f;
  poly = poly * t - 1.453152027f;
  poly = poly * t + 1.421413741f;
  poly = poly * t - 0.284496736f;
  poly = poly * t + 0.254829592f;
  exp_minus_x2 = fast_exp_nonpositive(-ax * ax);
  return __builtin_copysignf(1.0f - poly * t * exp_minus_x2, x);
}
inline float fast_erf(float x) {
  float unused;
  return fast_erf(x, unused);
}

// GELU with the exact (erf) form, PyTorch's nn.GELU(): v · Φ(v).
inline float gelu_erf(float v) { return 0.5f * v * (1.0f + fast_erf(v * 0.70710678118654752440f)); }
// GELU and its derivative Φ(v) + v·φ(v) together, from one erf and one exp (φ(v) is
// exp(-(v/√2)²)/√(2π), the exp erf computes anyway). value has gelu_erf's bits.
struct GeluErf {
  float value, derivative;
};
inline GeluErf gelu_erf_and_derivative(float v) {
  float e;
  const float erf = fast_erf(v * 0.70710678118654752440f, e);
  return {0.5f * v * (1.0f + erf), 0.5f * (1.0f + erf) + v * (0.39894228040143267794f * e)};
}

// Sums over a row in 16 float lanes (vectorised), the lanes then added in double in a fixed
// order: accurate, and the same bits for any thread count. A plain double accumulator is one
// dependent add per element, which no compiler may reorder; these run 16 at a time.
inline double lane_sum(const float* x, int64_t n) {
  float lanes[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 16; ++k) lanes[k] += x[i + k];
  double total = 0.0;
  for (; i < n; ++i) total += x[i];
  for (float v : lanes) total += v;
  return total;
}
inline double lane_dot(const float* x, const float* y, int64_t n) {
  float lanes[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 16; ++k) lanes[k] += x[i + k] * y[i + k];
  double total = 0.0;
  for (; i < n; ++i) total += static_cast<double>(x[i]) * y[i];
  for (float v : lanes) total += v;
  return total;
}
// Σ (x - mean)², for a variance that does not cancel when the mean is large.
inline double lane_squared_deviation(const float* x, float mean, int64_t n) {
  float lanes[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 16; ++k) {
      const float d = x[i + k] - mean;
      lanes[k] += d * d;
    }
  double total = 0.0;
  for (; i < n; ++i) {
    const double d = static_cast<double>(x[i]) - mean;
    total += d * d;
  }
  for (float v : lanes) total += v;
  return total;
}

}  // namespace sparo::cpu
