// CPU kernels: unary maps and their derivatives, broadcasting binary ops, where.
#include <cmath>

#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/vector_math.h"

namespace sparo::cpu {

namespace {

constexpr float kSqrt2OverPi = 0.79788456080286535588f;  // sqrt(2/pi)
constexpr float kGeluTanhCubic = 0.044715f;
constexpr float kQuickGeluScale = 1.702f;

inline float sigmoidf(float x) { return fast_sigmoid(x); }

// Applies f elementwise over n contiguous items, in parallel chunks.
template <typename F>
void map1(const float* x, float* out, int64_t n, F f) {
  parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) out[i] = f(x[i]);
  });
}
template <typename F>
void map2(const float* x, const float* y, float* out, int64_t n, F f) {
  parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) out[i] = f(x[i], y[i]);
  });
}

// Walks a plan row by row (a row = the innermost dimension), in parallel over rows or,
// for a single long row, over chunks of it. fn(offsets, count) gets each operand's
// starting offset; inner strides are the plan's strides at the last dimension.
template <int Operands, typename RowFn>
void plan_rows(const ElementwisePlan& plan, RowFn fn) {
  std::array<int64_t, Operands> offsets{};
  if (plan.rank == 0) {
    fn(offsets, int64_t{1});
    return;
  }
  const int last = plan.rank - 1;
  const int64_t inner = plan.dims[last];
  const int64_t rows = inner ? plan.numel / inner : 0;
  if (rows == 1) {
    parallel_for(inner, 1 << 14, [&](int64_t b, int64_t e) {
      std::array<int64_t, Operands> o{};
      for (int k = 0; k < Operands; ++k) o[k] = b * plan.strides[k][last];
      fn(o, e - b);
    });
    return;
  }
  parallel_for(rows, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(inner, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      std::array<int64_t, Operands> o{};
      for (int k = 0; k < Operands; ++k) o[k] = plan_offset(plan, k, r * inner);
      fn(o, inner);
    }
  });
}

template <typename F>
void binary_typed(const float* a, const float* b, float* out, const ElementwisePlan& plan, F f) {
  const int last = plan.rank - 1;
  const int64_t sa = plan.rank ? plan.strides[1][last] : 0;
  const int64_t sb = plan.rank ? plan.strides[2][last] : 0;
  plan_rows<3>(plan, [&](const std::array<int64_t, 3>& o, int64_t n) {
    float* po = out + o[0];
    const float* pa = a + o[1];
    const float* pb = b + o[2];
    // The four stride patterns a contiguous row can have; each loop vectorises.
    if (sa == 1 && sb == 1) for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
    else if (sa == 1 && sb == 0) { const float vb = *pb; for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], vb); }
    else if (sa == 0 && sb == 1) { const float va = *pa; for (int64_t i = 0; i < n; ++i) po[i] = f(va, pb[i]); }
    else for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i * sa], pb[i * sb]);
  });
}

}  // namespace

void CpuBackend::unary(UnaryOp op, const Tensor& xt, Tensor& outt, UnaryParams p) {
  const float* x = data<float>(xt);
  float* out = data<float>(outt);
  const int64_t n = xt.numel();
  switch (op) {
    case UnaryOp::neg: return map1(x, out, n, [](float v) { return -v; });
    case UnaryOp::exp: return map1(x, out, n, [](float v) { return fast_exp(v); });
    case UnaryOp::log: return map1(x, out, n, [](float v) { return std::log(v); });
    case UnaryOp::sqrt: return map1(x, out, n, [](float v) { return std::sqrt(v); });
    case UnaryOp::rsqrt: return map1(x, out, n, [](float v) { return 1.0f / std::sqrt(v); });
    case UnaryOp::tanh: return map1(x, out, n, [](float v) { return std::tanh(v); });
    case UnaryOp::sigmoid: return map1(x, out, n, [](float v) { return sigmoidf(v); });
    case UnaryOp::relu: return map1(x, out, n, [](float v) { return v > 0.0f ? v : 0.0f; });
    case UnaryOp::gelu_erf:
      return map1(x, out, n, [](float v) { return gelu_erf(v); });
    case UnaryOp::gelu_tanh:
      return map1(x, out, n, [](float v) {
        return 0.5f * v * (1.0f + std::tanh(kSqrt2OverPi * (v + kGeluTanhCubic * v * v * v)));
      });
    case UnaryOp::quick_gelu: return map1(x, out, n, [](float v) { return v * sigmoidf(kQuickGeluScale * v); });
    case UnaryOp::pow: return map1(x, out, n, [e = p.a](float v) { return std::pow(v, e); });
    case UnaryOp::clamp:
      return map1(x, out, n, [lo = p.a, hi = p.b](float v) { return v < lo ? lo : (v > hi ? hi : v); });
    case UnaryOp::affine: return map1(x, out, n, [s = p.a, t = p.b](float v) { return s * v + t; });
    case UnaryOp::step:
      return map1(x, out, n, [th = p.a, val = p.b](float v) { return v >= th ? val : 0.0f; });
    case UnaryOp::square: return map1(x, out, n, [](float v) { return v * v; });
    case UnaryOp::abs: return map1(x, out, n, [](float v) { return std::fabs(v); });
  }
}

void CpuBackend::unary_backward(UnaryOp op, const Tensor& xt, const Tensor& dyt, Tensor& dxt, UnaryParams p) {
  const float* x = data<float>(xt);
  const float* dy = data<float>(dyt);
  float* dx = data<float>(dxt);
  const int64_t n = xt.numel();
  switch (op) {
    case UnaryOp::neg: return map2(x, dy, dx, n, [](float, float g) { return -g; });
    case UnaryOp::exp: return map2(x, dy, dx, n, [](float v, float g) { return g * fast_exp(v); });
    case UnaryOp::log: return map2(x, dy, dx, n, [](float v, float g) { return g / v; });
    case UnaryOp::sqrt: return map2(x, dy, dx, n, [](float v, float g) { return g * 0.5f / std::sqrt(v); });
    case UnaryOp::rsqrt:
      return map2(x, dy, dx, n, [](float v, float g) { return g * -0.5f / (v * std::sqrt(v)); });
    case UnaryOp::tanh:
      return map2(x, dy, dx, n, [](float v, float g) { const float t = std::tanh(v); return g * (1.0f - t * t); });
    case UnaryOp::sigmoid:
      return map2(x, dy, dx, n, [](float v, float g) { const float s = sigmoidf(v); return g * s * (1.0f - s); });
    case UnaryOp::relu: return map2(x, dy, dx, n, [](float v, float g) { return v > 0.0f ? g : 0.0f; });
    case UnaryOp::gelu_erf:
      return map2(x, dy, dx, n, [](float v, float g) { return g * gelu_erf_and_derivative(v).derivative; });
    case UnaryOp::gelu_tanh:
      return map2(x, dy, dx, n, [](float v, float g) {
        const float t = std::tanh(kSqrt2OverPi * (v + kGeluTanhCubic * v * v * v));
        const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluTanhCubic * v * v);
        return g * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
      });
    case UnaryOp::quick_gelu:
      return map2(x, dy, dx, n, [](float v, float g) {
        const float s = sigmoidf(kQuickGeluScale * v);
        return g * (s + kQuickGeluScale * v * s * (1.0f - s));
      });
    case UnaryOp::pow:
      return map2(x, dy, dx, n, [e = p.a](float v, float g) { return g * e * std::pow(v, e - 1.0f); });
    case UnaryOp::clamp:
      return map2(x, dy, dx, n, [lo = p.a, hi = p.b](float v, float g) { return v >= lo && v <= hi ? g : 0.0f; });
    case UnaryOp::affine: return map2(x, dy, dx, n, [s = p.a](float, float g) { return g * s; });
    case UnaryOp::step: return map2(x, dy, dx, n, [](float, float) { return 0.0f; });
    case UnaryOp::square: return map2(x, dy, dx, n, [](float v, float g) { return 2.0f * v * g; });
    case UnaryOp::abs:
      return map2(x, dy, dx, n, [](float v, float g) { return v > 0.0f ? g : (v < 0.0f ? -g : 0.0f); });
  }
}

void CpuBackend::binary(BinaryOp op, const Tensor& at, const Tensor& bt, Tensor& outt, const ElementwisePlan& plan) {
  const float* a = data<float>(at);
  const float* b = data<float>(bt);
  float* out = data<float>(outt);
  switch (op) {
    case BinaryOp::add: return binary_typed(a, b, out, plan, [](float x, float y) { return x + y; });
    case BinaryOp::sub: return binary_typed(a, b, out, plan, [](float x, float y) { return x - y; });
    case BinaryOp::mul: return binary_typed(a, b, out, plan, [](float x, float y) { return x * y; });
    case BinaryOp::div: return binary_typed(a, b, out, plan, [](float x, float y) { return x / y; });
    case BinaryOp::eq: return binary_typed(a, b, out, plan, [](float x, float y) { return x == y ? 1.0f : 0.0f; });
    case BinaryOp::maximum:
      return binary_typed(a, b, out, plan, [](float x, float y) { return x >= y ? x : y; });
  }
}

void CpuBackend::where(const Tensor& condt, const Tensor& at, const Tensor& bt, Tensor& outt,
                       const ElementwisePlan& plan) {
  const float* a = data<float>(at);
  const float* b = data<float>(bt);
  float* out = data<float>(outt);
  const int last = plan.rank - 1;
  auto run = [&](auto* cond) {
    plan_rows<4>(plan, [&](const std::array<int64_t, 4>& o, int64_t n) {
      const int64_t sc = plan.rank ? plan.strides[1][last] : 0;
      const int64_t sa = plan.rank ? plan.strides[2][last] : 0;
      const int64_t sb = plan.rank ? plan.strides[3][last] : 0;
      for (int64_t i = 0; i < n; ++i)
        out[o[0] + i] = cond[o[1] + i * sc] != 0 ? a[o[2] + i * sa] : b[o[3] + i * sb];
    });
  };
  if (condt.dtype() == DType::i32) run(data<int32_t>(condt));
  else run(data<float>(condt));
}

}  // namespace sparo::cpu
