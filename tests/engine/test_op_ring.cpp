// The op ring: every differentiable op, several shapes each (broadcast edge cases,
// size-1 axes, sizes that are not a multiple of the SIMD width), checked
//   (a) forward against the double-precision reference in reference.h, and
//   (b) gradients (our f32 backward) against central finite differences of that
//       reference in double, for the loss L = Σ out ⊙ R with a fixed random R.
//   (c) when the Vulkan backend is built: every case again on Vulkan (lavapipe in CI, the
//       validation layers on), forward and gradients against the CPU backend.
// A registry check fails when an op of SPARO_DIFFERENTIABLE_OPS has no forward test
// or no gradient test, or when an op records a name that the registry lacks; since every
// case also runs on Vulkan, an op whose kernel is missing there fails its Vulkan case.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/engine/reference.h"
#if defined(SPARO_HAVE_VULKAN)
#include "engine/vulkan/context.h"
#include "tests/vulkan_env.h"
#endif

namespace sparo {
namespace {

using ref::Ref;

enum class Kind {
  normal,     // N(0, 1)
  positive,   // U[0.5, 2): log, sqrt, pow with fractional exponents, divisors
  away,       // N(0, 1) pushed at least 0.1 away from 0: kinks of relu/abs stay far from x ± h
  index,      // i32 in [0, range)
  binary,     // f32 0/1 (masks, conditions), no gradient
  causal,     // f32 additive mask: 0 on and below the diagonal, -inf above; no gradient
};

struct Input {
  Shape shape;
  Kind kind = Kind::normal;
  int64_t range = 0;
};

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;
using RefFn = std::function<Ref(const std::vector<Ref>&)>;

struct Case {
  std::string op;     // name in the registry
  std::string label;  // unique test name
  std::vector<Input> inputs;
  OpFn fn;
  RefFn ref;
  bool check_grad = true;
  double rtol = 1e-4, atol = 1e-5;  // forward tolerances (f32 result vs double reference)
  double grad_tol = 1e-4;           // gradient vs finite differences, relative to the largest
};

bool differentiable(Kind k) { return k == Kind::normal || k == Kind::positive || k == Kind::away; }

// ---- the cases -----------------------------------------------------------------------

std::vector<Case> make_cases() {
  std::vector<Case> cases;
  auto add_case = [&](std::string op, std::string label, std::vector<Input> inputs, OpFn fn, RefFn rf) -> Case& {
    cases.push_back(Case{op, op + "_" + label, std::move(inputs), std::move(fn), std::move(rf)});
    return cases.back();
  };

  // matmul: every transpose combination, batched, broadcast batches, odd sizes.
  for (auto [ta, tb] : {std::pair{false, false}, {true, false}, {false, true}, {true, true}}) {
    const std::string label = std::string(ta ? "T" : "N") + (tb ? "T" : "N");
    add_case("matmul", label + "_7x5x3", {{ta ? Shape{5, 7} : Shape{7, 5}}, {tb ? Shape{3, 5} : Shape{5, 3}}},
             [=](auto& x) { return matmul(x[0], x[1], ta, tb); },
             [=](auto& r) { return ref::matmul(r[0], r[1], ta, tb); });
    add_case("matmul", label + "_batched", {{ta ? Shape{2, 3, 5, 4} : Shape{2, 3, 4, 5}}, {tb ? Shape{2, 3, 6, 5} : Shape{2, 3, 5, 6}}},
             [=](auto& x) { return matmul(x[0], x[1], ta, tb); },
             [=](auto& r) { return ref::matmul(r[0], r[1], ta, tb); });
  }
  add_case("matmul", "odd_33x17x19", {{{33, 17}}, {{17, 19}}}, [](auto& x) { return matmul(x[0], x[1]); },
           [](auto& r) { return ref::matmul(r[0], r[1], false, false); });
  add_case("matmul", "fold_batch_into_M", {{{2, 5, 17}}, {{3, 17}}}, [](auto& x) { return matmul(x[0], x[1], false, true); },
           [](auto& r) { return ref::matmul(r[0], r[1], false, true); });
  add_case("matmul", "shared_a_2d", {{{4, 5}}, {{3, 5, 2}}}, [](auto& x) { return matmul(x[0], x[1]); },
           [](auto& r) { return ref::matmul(r[0], r[1], false, false); });
  add_case("matmul", "partial_broadcast", {{{1, 3, 4, 2}}, {{2, 1, 2, 5}}}, [](auto& x) { return matmul(x[0], x[1]); },
           [](auto& r) { return ref::matmul(r[0], r[1], false, false); });
  // Shapes the CPU computes with small_products.h's loops (a SPARO read-out's scores and
  // pooling), forward and backward: op(A)·B with 16-float rows, A·Bᵀ with 16-long dots, 40 rows
  // (two row slices), and one A shared by the batch.
  add_case("matmul", "small_NN_2x5x9x16", {{{2, 5, 9}}, {{2, 9, 16}}}, [](auto& x) { return matmul(x[0], x[1]); },
           [](auto& r) { return ref::matmul(r[0], r[1], false, false); });
  add_case("matmul", "small_NT_2x40x16x3", {{{2, 40, 16}}, {{2, 3, 16}}},
           [](auto& x) { return matmul(x[0], x[1], false, true); },
           [](auto& r) { return ref::matmul(r[0], r[1], false, true); });
  add_case("matmul", "small_NT_shared_a", {{{6, 8}}, {{3, 5, 8}}}, [](auto& x) { return matmul(x[0], x[1], false, true); },
           [](auto& r) { return ref::matmul(r[0], r[1], false, true); });

  // matmul with bf16 inputs and f32 sums (MatmulPrecision::bf16), forward and the backward
  // it records (run outside the scope: it must keep the forward's precision), against the f32
  // reference with bf16's tolerance (8 significant bits). Sides of 32 and more take the tiled
  // Vulkan shader, the batched case the simple one. The GemmBf16 tests check the rounding
  // itself; the Vulkan ring (NMSE 1e-9) that both backends round alike.
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    const std::string label = std::string("bf16_") + (ta ? "T" : "N") + (tb ? "T" : "N");
    for (const bool batched : {false, true}) {
      const Shape a = batched ? (ta ? Shape{2, 3, 5, 4} : Shape{2, 3, 4, 5}) : (ta ? Shape{33, 40} : Shape{40, 33});
      const Shape b = batched ? (tb ? Shape{2, 3, 6, 5} : Shape{2, 3, 5, 6}) : (tb ? Shape{37, 33} : Shape{33, 37});
      Case& c = add_case("matmul", label + (batched ? "_batched" : "_40x33x37"), {{a}, {b}},
                         [=](auto& x) {
                           const MatmulPrecisionScope bf16(MatmulPrecision::bf16);
                           return matmul(x[0], x[1], ta, tb);
                         },
                         [=](auto& r) { return ref::matmul(r[0], r[1], ta, tb); });
      c.rtol = 2e-2, c.atol = 0.1, c.grad_tol = 2e-2;
    }
  }

  // linear: PyTorch layout weight [out, in].
  add_case("linear", "bias_3d", {{{2, 3, 5}}, {{4, 5}}, {{4}}}, [](auto& x) { return linear(x[0], x[1], x[2]); },
           [](auto& r) { return ref::zip(ref::matmul(r[0], r[1], false, true), r[2], std::plus<double>()); });
  add_case("linear", "no_bias", {{{6, 5}}, {{3, 5}}}, [](auto& x) { return linear(x[0], x[1]); },
           [](auto& r) { return ref::matmul(r[0], r[1], false, true); });
  add_case("linear", "vector_input", {{{5}}, {{2, 5}}, {{2}}}, [](auto& x) { return linear(x[0], x[1], x[2]); },
           [](auto& r) {
             Ref x2 = r[0];
             x2.shape = {1, 5};
             Ref y = ref::zip(ref::matmul(x2, r[1], false, true), r[2], std::plus<double>());
             y.shape = {2};
             return y;
           });
  // The bias is the GEMM's starting value (accumulate): sides of 32 and more take Vulkan's tiled
  // shader, and bf16 inputs must keep the bias and the sums in f32.
  add_case("linear", "bias_2x20x33_to_37", {{{2, 20, 33}}, {{37, 33}}, {{37}}},
           [](auto& x) { return linear(x[0], x[1], x[2]); },
           [](auto& r) { return ref::zip(ref::matmul(r[0], r[1], false, true), r[2], std::plus<double>()); });
  Case& linear_bf16 = add_case("linear", "bf16_bias_40x33_to_37", {{{40, 33}}, {{37, 33}}, {{37}}},
                               [](auto& x) {
                                 const MatmulPrecisionScope bf16(MatmulPrecision::bf16);
                                 return linear(x[0], x[1], x[2]);
                               },
                               [](auto& r) {
                                 return ref::zip(ref::matmul(r[0], r[1], false, true), r[2], std::plus<double>());
                               });
  linear_bf16.rtol = 2e-2, linear_bf16.atol = 0.1, linear_bf16.grad_tol = 2e-2;

  // linear_gelu: GELU on each block of the product as the GEMM finishes it (CPU), composed on
  // Vulkan. Sides past the GEMM's blocking (70 rows, 33 → 37) so several blocks meet; no bias;
  // a vector; bf16.
  const auto gelu_ref = [](Ref y) {
    for (double& v : y.v) v = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    return y;
  };
  add_case("linear_gelu", "bias_2x35x33_to_37", {{{2, 35, 33}}, {{37, 33}}, {{37}}},
           [](auto& x) { return linear_gelu(x[0], x[1], x[2]); },
           [=](auto& r) { return gelu_ref(ref::zip(ref::matmul(r[0], r[1], false, true), r[2], std::plus<double>())); });
  add_case("linear_gelu", "no_bias", {{{6, 5}}, {{3, 5}}}, [](auto& x) { return linear_gelu(x[0], x[1]); },
           [=](auto& r) { return gelu_ref(ref::matmul(r[0], r[1], false, true)); });
  add_case("linear_gelu", "vector_input", {{{5}}, {{2, 5}}, {{2}}}, [](auto& x) { return linear_gelu(x[0], x[1], x[2]); },
           [=](auto& r) {
             Ref x2 = r[0];
             x2.shape = {1, 5};
             Ref y = gelu_ref(ref::zip(ref::matmul(x2, r[1], false, true), r[2], std::plus<double>()));
             y.shape = {2};
             return y;
           });
  Case& linear_gelu_bf16 = add_case("linear_gelu", "bf16_bias_40x33_to_37", {{{40, 33}}, {{37, 33}}, {{37}}},
                                    [](auto& x) {
                                      const MatmulPrecisionScope bf16(MatmulPrecision::bf16);
                                      return linear_gelu(x[0], x[1], x[2]);
                                    },
                                    [=](auto& r) {
                                      return gelu_ref(ref::zip(ref::matmul(r[0], r[1], false, true), r[2],
                                                               std::plus<double>()));
                                    });
  linear_gelu_bf16.rtol = 2e-2, linear_gelu_bf16.atol = 0.1, linear_gelu_bf16.grad_tol = 2e-2;

  // mlp_gelu: fc1 + GELU + fc2 as one op (CPU; its backward multiplies g·W2 by GELU's derivative
  // in the GEMM's epilogue), composed on Vulkan. 70 rows, 33 → 37 → 29 (edges of the blocking).
  const auto mlp_ref = [=](auto& r) {
    const Ref hidden = gelu_ref(ref::zip(ref::matmul(r[0], r[1], false, true), r[2], std::plus<double>()));
    return ref::zip(ref::matmul(hidden, r[3], false, true), r[4], std::plus<double>());
  };
  add_case("mlp_gelu", "2x35x33_to_37_to_29", {{{2, 35, 33}}, {{37, 33}}, {{37}}, {{29, 37}}, {{29}}},
           [](auto& x) { return mlp_gelu(x[0], x[1], x[2], x[3], x[4]); }, mlp_ref);
  Case& mlp_gelu_bf16 = add_case("mlp_gelu", "bf16_40x33_to_37_to_29", {{{40, 33}}, {{37, 33}}, {{37}}, {{29, 37}}, {{29}}},
                                 [](auto& x) {
                                   const MatmulPrecisionScope bf16(MatmulPrecision::bf16);
                                   return mlp_gelu(x[0], x[1], x[2], x[3], x[4]);
                                 },
                                 mlp_ref);
  // Two bf16 products in a chain, the second over hidden values of ~6 (unscaled random weights):
  // its rounding errors reach ~0.2. Tensor.MlpGeluIsLinearOfLinearGeluBitwise pins it exactly.
  mlp_gelu_bf16.rtol = 2e-2, mlp_gelu_bf16.atol = 0.4, mlp_gelu_bf16.grad_tol = 2e-2;

  // binary ops with broadcasting edge cases.
  const std::vector<std::pair<std::string, std::pair<Shape, Shape>>> broadcasts = {
      {"same", {{3, 4}, {3, 4}}},         {"row", {{3, 4}, {4}}},           {"column", {{3, 1}, {3, 4}}},
      {"outer", {{3, 1}, {1, 4}}},        {"scalar", {{}, {2, 3}}},         {"size1", {{1, 5, 1}, {2, 1, 3}}},
      {"odd", {{17, 33}, {33}}},
  };
  struct BinarySpec {
    const char* op;
    Tensor (*fn)(const Tensor&, const Tensor&);
    std::function<double(double, double)> f;
    Kind b_kind;
  };
  const std::vector<BinarySpec> binaries = {
      {"add", add, std::plus<double>(), Kind::normal},
      {"sub", sub, std::minus<double>(), Kind::normal},
      {"mul", mul, std::multiplies<double>(), Kind::normal},
      {"div", div, std::divides<double>(), Kind::positive},
      {"maximum", maximum, [](double a, double b) { return a >= b ? a : b; }, Kind::normal},
  };
  for (const BinarySpec& spec : binaries)
    for (const auto& [label, shapes] : broadcasts)
      add_case(spec.op, label, {{shapes.first}, {shapes.second, spec.b_kind}},
               [fn = spec.fn](auto& x) { return fn(x[0], x[1]); },
               [f = spec.f](auto& r) { return ref::zip(r[0], r[1], f); });

  // unary ops.
  struct UnarySpec {
    std::string tag;
    std::function<Tensor(const Tensor&)> fn;
    std::function<double(double)> f;
    Kind kind;
  };
  auto sigmoid_d = [](double v) { return 1 / (1 + std::exp(-v)); };
  const std::vector<UnarySpec> unaries = {
      {"neg", [](const Tensor& t) { return neg(t); }, [](double v) { return -v; }, Kind::normal},
      {"exp", [](const Tensor& t) { return exp(t); }, [](double v) { return std::exp(v); }, Kind::normal},
      {"log", [](const Tensor& t) { return log(t); }, [](double v) { return std::log(v); }, Kind::positive},
      {"sqrt", [](const Tensor& t) { return sqrt(t); }, [](double v) { return std::sqrt(v); }, Kind::positive},
      {"rsqrt", [](const Tensor& t) { return rsqrt(t); }, [](double v) { return 1 / std::sqrt(v); }, Kind::positive},
      {"tanh", [](const Tensor& t) { return tanh(t); }, [](double v) { return std::tanh(v); }, Kind::normal},
      {"sigmoid", [](const Tensor& t) { return sigmoid(t); }, sigmoid_d, Kind::normal},
      {"relu", [](const Tensor& t) { return relu(t); }, [](double v) { return v > 0 ? v : 0; }, Kind::away},
      {"gelu", [](const Tensor& t) { return gelu(t); },
       [](double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); }, Kind::normal},
      {"gelu_tanh", [](const Tensor& t) { return gelu_tanh(t); },
       [](double v) { return 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))); }, Kind::normal},
      {"quick_gelu", [](const Tensor& t) { return quick_gelu(t); },
       [=](double v) { return v * sigmoid_d(1.702 * v); }, Kind::normal},
      {"square", [](const Tensor& t) { return square(t); }, [](double v) { return v * v; }, Kind::normal},
      {"abs", [](const Tensor& t) { return abs(t); }, [](double v) { return std::fabs(v); }, Kind::away},
      {"affine", [](const Tensor& t) { return affine(t, 2.5f, -1.0f); }, [](double v) { return 2.5 * v - 1; }, Kind::normal},
      {"pow:cube", [](const Tensor& t) { return pow(t, 3.0f); }, [](double v) { return v * v * v; }, Kind::normal},
      {"pow:half", [](const Tensor& t) { return pow(t, 0.5f); }, [](double v) { return std::sqrt(v); }, Kind::positive},
      {"pow:minus1_5", [](const Tensor& t) { return pow(t, -1.5f); }, [](double v) { return std::pow(v, -1.5); }, Kind::positive},
      {"clamp", [](const Tensor& t) { return clamp(t, -0.5f, 0.7f); },
       [](double v) { return std::min(std::max(v, -0.5), 0.7); }, Kind::normal},
  };
  auto dims_label = [](const Shape& shape) {
    std::string s;
    for (int64_t d : shape) s += (s.empty() ? "" : "x") + std::to_string(d);
    return s.empty() ? std::string("scalar") : s;
  };
  for (const UnarySpec& spec : unaries)
    for (const Shape& shape : {Shape{3, 5}, Shape{17}, Shape{2, 1, 33}})
      add_case(spec.tag.substr(0, spec.tag.find(':')),
               (spec.tag.find(':') == std::string::npos ? "" : spec.tag.substr(spec.tag.find(':') + 1) + "_") + dims_label(shape),
               {{shape, spec.kind}},
               [fn = spec.fn](auto& x) { return fn(x[0]); }, [f = spec.f](auto& r) { return ref::map(r[0], f); });

  // reductions.
  for (auto [axis, keep] : {std::pair<int64_t, bool>{0, false}, {1, true}, {-1, false}, {2, true}}) {
    const std::string label = "axis" + (axis < 0 ? "m" + std::to_string(-axis) : std::to_string(axis)) + (keep ? "_keep" : "");
    add_case("sum", label, {{{2, 3, 5}}}, [=](auto& x) { return sum(x[0], axis, keep); },
             [=](auto& r) { return ref::sum(r[0], axis, keep); });
    add_case("mean", label, {{{2, 3, 5}}}, [=](auto& x) { return mean(x[0], axis, keep); },
             [=](auto& r) {
               const double n = static_cast<double>(r[0].shape[static_cast<size_t>(ref::axis_of(axis, 3))]);
               return ref::map(ref::sum(r[0], axis, keep), [n](double v) { return v / n; });
             });
    add_case("max", label, {{{2, 3, 5}}}, [=](auto& x) { return max(x[0], axis, keep); },
             [=](auto& r) { return ref::max(r[0], axis, keep); });
  }
  add_case("sum", "size1_axis", {{{4, 1, 3}}}, [](auto& x) { return sum(x[0], 1); }, [](auto& r) { return ref::sum(r[0], 1, false); });
  add_case("sum", "all", {{{3, 7}}}, [](auto& x) { return sum(x[0]); }, [](auto& r) { return ref::sum_all(r[0]); });
  add_case("sum", "strided_long", {{{300, 1, 20}}}, [](auto& x) { return sum(x[0], 0); }, [](auto& r) { return ref::sum(r[0], 0, false); })
      .check_grad = false;  // 6000 inputs: forward only (the path matters, the gradient is covered above)
  add_case("sum", "all_long_chunked", {{{40000}}}, [](auto& x) { return sum(x[0]); }, [](auto& r) { return ref::sum_all(r[0]); })
      .check_grad = false;
  add_case("mean", "all", {{{3, 7}}}, [](auto& x) { return mean(x[0]); },
           [](auto& r) { return ref::map(ref::sum_all(r[0]), [](double v) { return v / 21; }); });
  add_case("max", "all", {{{3, 7}}}, [](auto& x) { return max(x[0]); }, [](auto& r) { return ref::max_all(r[0]); });
  add_case("max", "odd_rows", {{{5, 33}}}, [](auto& x) { return max(x[0], -1); }, [](auto& r) { return ref::max(r[0], -1, false); });
  // Long rows (Vulkan: a workgroup per output, partials combined in a tree).
  add_case("max", "all_long", {{{3001}}}, [](auto& x) { return max(x[0]); }, [](auto& r) { return ref::max_all(r[0]); });
  add_case("max", "wide_rows", {{{3, 1000}}}, [](auto& x) { return max(x[0], 1); }, [](auto& r) { return ref::max(r[0], 1, false); });
  add_case("sum", "wide_rows", {{{4, 700}}}, [](auto& x) { return sum(x[0], -1); }, [](auto& r) { return ref::sum(r[0], -1, false); });
  add_case("sum", "long_few_columns", {{{600, 3}}}, [](auto& x) { return sum(x[0], 0); }, [](auto& r) { return ref::sum(r[0], 0, false); });
  for (const Shape& target : {Shape{3, 1}, Shape{4}, Shape{1, 1, 1}, Shape{2, 1, 4}, Shape{2, 3, 4}})
    add_case("sum_to_shape", "to" + std::to_string(numel(target)) + "_r" + std::to_string(target.size()), {{{2, 3, 4}}},
             [=](auto& x) { return sum_to_shape(x[0], target); }, [=](auto& r) { return ref::sum_to_shape(r[0], target); });

  // softmax / log_softmax, with and without masks.
  for (bool log : {false, true}) {
    const char* op = log ? "log_softmax" : "softmax";
    auto fn = [log](const Tensor& x, const Tensor& m) { return log ? log_softmax(x, m) : softmax(x, m); };
    add_case(op, "plain", {{{3, 7}}}, [=](auto& x) { return fn(x[0], Tensor()); },
             [=](auto& r) { return ref::softmax(r[0], nullptr, log); });
    add_case(op, "odd_cols", {{{2, 3, 17}}}, [=](auto& x) { return fn(x[0], Tensor()); },
             [=](auto& r) { return ref::softmax(r[0], nullptr, log); });
    add_case(op, "mask_row", {{{2, 3, 17}}, {{17}}}, [=](auto& x) { return fn(x[0], x[1]); },
             [=](auto& r) { return ref::softmax(r[0], &r[1], log); });
    add_case(op, "mask_2d", {{{2, 3, 5}}, {{3, 5}}}, [=](auto& x) { return fn(x[0], x[1]); },
             [=](auto& r) { return ref::softmax(r[0], &r[1], log); });
    add_case(op, "mask_per_sample", {{{2, 3, 5}}, {{2, 1, 5}}}, [=](auto& x) { return fn(x[0], x[1]); },
             [=](auto& r) { return ref::softmax(r[0], &r[1], log); });
    add_case(op, "causal", {{{2, 5, 5}}, {{5, 5}, Kind::causal}}, [=](auto& x) { return fn(x[0], x[1]); },
             [=](auto& r) { return ref::softmax(r[0], &r[1], log); });
  }

  // attention: q, k, v side by side, heads read in place on the CPU (fused), composed from
  // slices, permutes, matmuls and softmax on Vulkan. 1, 2 and 3 heads of dh 4, 6 and 16, 17
  // tokens (not a multiple of the SIMD width), a causal mask, and bf16 products. The CPU's
  // direct products (fp32, at most 32 tokens, dh a multiple of 8) take dh 16, 64 and 72 (a
  // whole 64-float chunk and one vector more), odd token counts and 32 tokens, their limit. The bf16 case
  // has dh 16, a power-of-two scale (1/4): the fused path rounds q to bf16 and scales the
  // product, the composed one scales q and rounds that, and only with a power-of-two scale are
  // those the same values, as the ring's Vulkan-against-CPU check needs. At other dh each path is
  // within bf16's tolerance of the reference, not of the other.
  add_case("attention", "2x5_2heads", {{{2, 5, 24}}}, [](auto& x) { return attention(x[0], 2); },
           [](auto& r) { return ref::attention(r[0], 2, nullptr); });
  add_case("attention", "1x17_3heads_dh16", {{{1, 17, 144}}}, [](auto& x) { return attention(x[0], 3); },
           [](auto& r) { return ref::attention(r[0], 3, nullptr); });
  add_case("attention", "causal", {{{2, 6, 18}}, {{6, 6}, Kind::causal}}, [](auto& x) { return attention(x[0], 1, x[1]); },
           [](auto& r) { return ref::attention(r[0], 1, &r[1]); });
  add_case("attention", "2x7_2heads_dh72_causal", {{{2, 7, 432}}, {{7, 7}, Kind::causal}},
           [](auto& x) { return attention(x[0], 2, x[1]); }, [](auto& r) { return ref::attention(r[0], 2, &r[1]); });
  add_case("attention", "1x32_1head_dh64", {{{1, 32, 192}}}, [](auto& x) { return attention(x[0], 1); },
           [](auto& r) { return ref::attention(r[0], 1, nullptr); });
  // 16 (batch, head) items: the CPU runs each item's GEMMs on the item's thread.
  add_case("attention", "8x5_2heads_items_serial", {{{8, 5, 24}}}, [](auto& x) { return attention(x[0], 2); },
           [](auto& r) { return ref::attention(r[0], 2, nullptr); });
  Case& attention_bf16 = add_case("attention", "bf16_2x9_2heads_dh16", {{{2, 9, 96}}},
                                  [](auto& x) {
                                    const MatmulPrecisionScope bf16(MatmulPrecision::bf16);
                                    return attention(x[0], 2);
                                  },
                                  [](auto& r) { return ref::attention(r[0], 2, nullptr); });
  attention_bf16.rtol = 2e-2, attention_bf16.atol = 0.05, attention_bf16.grad_tol = 2e-2;

  // normalisation.
  add_case("layer_norm", "bias", {{{4, 7}}, {{7}}, {{7}}}, [](auto& x) { return layer_norm(x[0], x[1], x[2], 1e-5f); },
           [](auto& r) { return ref::layer_norm(r[0], r[1], &r[2], 1e-5); });
  add_case("layer_norm", "no_bias_odd", {{{2, 3, 33}}, {{33}}}, [](auto& x) { return layer_norm(x[0], x[1], Tensor(), 1e-6f); },
           [](auto& r) { return ref::layer_norm(r[0], r[1], nullptr, 1e-6); });
  add_case("layer_norm", "many_rows", {{{70, 5}}, {{5}}, {{5}}}, [](auto& x) { return layer_norm(x[0], x[1], x[2], 1e-5f); },
           [](auto& r) { return ref::layer_norm(r[0], r[1], &r[2], 1e-5); });
  add_case("l2_normalize", "last", {{{4, 6}}}, [](auto& x) { return l2_normalize(x[0]); },
           [](auto& r) { return ref::l2_normalize(r[0], -1, 1e-12); });
  add_case("l2_normalize", "middle", {{{3, 5, 2}}}, [](auto& x) { return l2_normalize(x[0], 1); },
           [](auto& r) { return ref::l2_normalize(r[0], 1, 1e-12); });

  // indexing.
  add_case("embedding", "2d_ids", {{{10, 6}}, {{2, 3}, Kind::index, 10}}, [](auto& x) { return embedding(x[0], x[1]); },
           [](auto& r) { return ref::embedding(r[0], r[1]); });
  add_case("embedding", "repeats", {{{4, 17}}, {{9}, Kind::index, 4}}, [](auto& x) { return embedding(x[0], x[1]); },
           [](auto& r) { return ref::embedding(r[0], r[1]); });
  add_case("index_select", "axis0", {{{5, 4}}, {{7}, Kind::index, 5}}, [](auto& x) { return index_select(x[0], 0, x[1]); },
           [](auto& r) { return ref::index_select(r[0], 0, r[1]); });
  add_case("index_select", "axis1", {{{2, 6, 3}}, {{4}, Kind::index, 6}}, [](auto& x) { return index_select(x[0], 1, x[1]); },
           [](auto& r) { return ref::index_select(r[0], 1, r[1]); });
  add_case("index_select", "last_axis", {{{3, 5}}, {{2}, Kind::index, 5}}, [](auto& x) { return index_select(x[0], -1, x[1]); },
           [](auto& r) { return ref::index_select(r[0], -1, r[1]); });
  add_case("where", "broadcast_b", {{{3, 4}, Kind::binary}, {{3, 4}}, {{4}}}, [](auto& x) { return where(x[0], x[1], x[2]); },
           [](auto& r) { return ref::where(r[0], r[1], r[2]); });
  add_case("where", "broadcast_all", {{{3, 1}, Kind::binary}, {{}}, {{2, 3, 4}}}, [](auto& x) { return where(x[0], x[1], x[2]); },
           [](auto& r) { return ref::where(r[0], r[1], r[2]); });
  add_case("masked_fill", "row_mask", {{{3, 4}}, {{4}, Kind::binary}}, [](auto& x) { return masked_fill(x[0], x[1], -2.5f); },
           [](auto& r) { return ref::where(r[1], Ref(Shape{}, -2.5), r[0]); });

  // shape ops.
  add_case("reshape", "merge", {{{2, 3, 4}}}, [](auto& x) { return reshape(x[0], {6, 4}); },
           [](auto& r) { Ref o = r[0]; o.shape = {6, 4}; return o; });
  add_case("reshape", "infer", {{{2, 3, 4}}}, [](auto& x) { return reshape(x[0], {4, -1}); },
           [](auto& r) { Ref o = r[0]; o.shape = {4, 6}; return o; });
  add_case("permute", "rotate", {{{2, 3, 4}}}, [](auto& x) { return permute(x[0], {2, 0, 1}); },
           [](auto& r) { return ref::permute(r[0], {2, 0, 1}); });
  add_case("permute", "heads", {{{2, 1, 3, 5}}}, [](auto& x) { return permute(x[0], {0, 2, 1, 3}); },
           [](auto& r) { return ref::permute(r[0], {0, 2, 1, 3}); });
  add_case("transpose", "2d", {{{3, 5}}}, [](auto& x) { return transpose(x[0], 0, 1); },
           [](auto& r) { return ref::permute(r[0], {1, 0}); });
  add_case("transpose", "negative", {{{2, 3, 4}}}, [](auto& x) { return transpose(x[0], -1, 0); },
           [](auto& r) { return ref::permute(r[0], {2, 1, 0}); });
  add_case("slice", "rows", {{{5, 4}}}, [](auto& x) { return slice(x[0], 0, 1, 4); }, [](auto& r) { return ref::slice(r[0], 0, 1, 4); });
  add_case("slice", "middle_to_end", {{{2, 7, 3}}}, [](auto& x) { return slice(x[0], 1, 2, 7); },
           [](auto& r) { return ref::slice(r[0], 1, 2, 7); });
  add_case("slice", "negative_start", {{{3, 6}}}, [](auto& x) { return slice(x[0], -1, -4, 100); },
           [](auto& r) { return ref::slice(r[0], 1, 2, 6); });
  add_case("concat", "axis1", {{{2, 3}}, {{2, 5}}}, [](auto& x) { return concat({x[0], x[1]}, 1); },
           [](auto& r) { return ref::concat({r[0], r[1]}, 1); });
  add_case("concat", "three_axis0", {{{1, 4}}, {{3, 4}}, {{2, 4}}}, [](auto& x) { return concat({x[0], x[1], x[2]}, 0); },
           [](auto& r) { return ref::concat({r[0], r[1], r[2]}, 0); });
  add_case("expand", "new_axes", {{{3, 1}}}, [](auto& x) { return expand(x[0], {2, 3, 4}); },
           [](auto& r) { return ref::expand(r[0], {2, 3, 4}); });
  add_case("expand", "row", {{{4}}}, [](auto& x) { return expand(x[0], {3, 4}); }, [](auto& r) { return ref::expand(r[0], {3, 4}); });

  // losses.
  add_case("cross_entropy", "plain", {{{6, 5}}, {{6}, Kind::index, 5}}, [](auto& x) { return cross_entropy(x[0], x[1]); },
           [](auto& r) { return ref::cross_entropy(r[0], r[1], 0.0); });
  add_case("cross_entropy", "smoothing", {{{6, 17}}, {{6}, Kind::index, 17}},
           [](auto& x) { return cross_entropy(x[0], x[1], 0.1f); }, [](auto& r) { return ref::cross_entropy(r[0], r[1], 0.1); });
  add_case("cross_entropy", "one_row", {{{1, 3}}, {{1}, Kind::index, 3}}, [](auto& x) { return cross_entropy(x[0], x[1]); },
           [](auto& r) { return ref::cross_entropy(r[0], r[1], 0.0); });

  // dropout / drop_path: the reference redraws the same Philox stream.
  auto masked = [](const Ref& x, float p, int64_t group) {
    Ref out(x.shape);
    for (int64_t i = 0; i < x.size(); ++i) {
      const double u = ref::philox_uniform(1234, 0, i / group);
      out.v[i] = u >= p ? x.v[i] / (1.0 - p) : 0.0;
    }
    return out;
  };
  add_case("dropout", "p03", {{{4, 33}}}, [](auto& x) { Generator g(1234); return dropout(x[0], 0.3f, g); },
           [=](auto& r) { return masked(r[0], 0.3f, 1); });
  add_case("dropout", "eval_identity", {{{3, 4}}}, [](auto& x) { Generator g(1234); return dropout(x[0], 0.5f, g, false); },
           [](auto& r) { return r[0]; });
  add_case("drop_path", "p05", {{{6, 3, 4}}}, [](auto& x) { Generator g(1234); return drop_path(x[0], 0.5f, g); },
           [=](auto& r) { return masked(r[0], 0.5f, 12); });
  return cases;
}

const std::vector<Case>& all_cases() {
  static const std::vector<Case> cases = make_cases();
  return cases;
}

// ---- inputs ------------------------------------------------------------------------------

struct Inputs {
  std::vector<Tensor> tensors;
  std::vector<Ref> refs;
};

Inputs make_inputs(const Case& c) {
  std::mt19937 rng(static_cast<uint32_t>(std::hash<std::string>()(c.label)));
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform(0.5, 2.0);
  Inputs in;
  for (const Input& spec : c.inputs) {
    Ref r(spec.shape);
    for (int64_t i = 0; i < r.size(); ++i) {
      double v = 0;
      switch (spec.kind) {
        case Kind::normal: v = normal(rng); break;
        case Kind::positive: v = uniform(rng); break;
        case Kind::away: v = normal(rng); v += v < 0 ? -0.1 : 0.1; break;
        case Kind::index: v = static_cast<double>(rng() % static_cast<uint32_t>(spec.range)); break;
        case Kind::binary: v = rng() % 2; break;
        case Kind::causal: {
          const Shape idx = ref::unravel(i, spec.shape);
          v = idx[idx.size() - 1] > idx[idx.size() - 2] ? -INFINITY : 0.0;
          break;
        }
      }
      r.v[i] = static_cast<double>(static_cast<float>(v));  // exactly what the f32 tensor holds
    }
    if (spec.kind == Kind::index) {
      std::vector<int32_t> ids(r.v.begin(), r.v.end());
      in.tensors.push_back(Tensor::from_vector(ids, spec.shape));
    } else {
      in.tensors.push_back(Tensor::from_vector(std::vector<float>(r.v.begin(), r.v.end()), spec.shape));
    }
    in.refs.push_back(std::move(r));
  }
  return in;
}

// ---- the checks ------------------------------------------------------------------------------

class OpRingForward : public ::testing::TestWithParam<size_t> {};
class OpRingGradient : public ::testing::TestWithParam<size_t> {};

TEST_P(OpRingForward, MatchesDoubleReference) {
  const Case& c = all_cases()[GetParam()];
  Inputs in = make_inputs(c);
  const Tensor out = c.fn(in.tensors);
  const Ref expected = c.ref(in.refs);
  ASSERT_EQ(out.shape(), expected.shape) << c.label;
  const std::vector<float> got = out.to_float_vector();
  for (int64_t i = 0; i < expected.size(); ++i) {
    const double e = expected.v[i], g = got[static_cast<size_t>(i)];
    if (std::isinf(e)) {
      EXPECT_EQ(g, e) << c.label << " element " << i;
      continue;
    }
    EXPECT_NEAR(g, e, c.atol + c.rtol * std::fabs(e)) << c.label << " element " << i;
  }
}

TEST_P(OpRingGradient, MatchesFiniteDifferences) {
  const Case& c = all_cases()[GetParam()];
  Inputs in = make_inputs(c);
  for (size_t k = 0; k < c.inputs.size(); ++k)
    if (differentiable(c.inputs[k].kind)) in.tensors[k].requires_grad_();

  // L = Σ out ⊙ R; R is zero where the reference output is infinite (fully masked entries).
  const Ref base = c.ref(in.refs);
  std::mt19937 rng(7);
  std::normal_distribution<double> normal;
  Ref weights(base.shape);
  for (int64_t i = 0; i < weights.size(); ++i)
    weights.v[i] = std::isfinite(base.v[i]) ? static_cast<double>(static_cast<float>(normal(rng))) : 0.0;
  const Tensor out = c.fn(in.tensors);
  out.backward(Tensor::from_vector(std::vector<float>(weights.v.begin(), weights.v.end()), base.shape));

  auto loss = [&](const std::vector<Ref>& refs) {
    const Ref o = c.ref(refs);
    double l = 0;
    for (int64_t i = 0; i < o.size(); ++i) if (weights.v[i] != 0) l += o.v[i] * weights.v[i];
    return l;
  };
  for (size_t k = 0; k < c.inputs.size(); ++k) {
    if (!differentiable(c.inputs[k].kind)) continue;
    const Tensor grad = in.tensors[k].grad();
    ASSERT_TRUE(grad.defined()) << c.label << ": no gradient for input " << k;
    const std::vector<float> analytic = grad.to_float_vector();
    std::vector<double> numeric(analytic.size());
    double scale = 1.0;
    for (size_t i = 0; i < numeric.size(); ++i) {
      std::vector<Ref> plus = in.refs, minus = in.refs;
      const double h = 1e-6 * std::max(1.0, std::fabs(in.refs[k].v[i]));
      plus[k].v[i] += h;
      minus[k].v[i] -= h;
      numeric[i] = (loss(plus) - loss(minus)) / (2 * h);
      scale = std::max(scale, std::fabs(numeric[i]));
    }
    for (size_t i = 0; i < numeric.size(); ++i)
      EXPECT_NEAR(analytic[i], numeric[i], c.grad_tol * scale + 10 * c.grad_tol * std::fabs(numeric[i]))
          << c.label << ": d/d input " << k << " element " << i;
  }
}

std::string case_name(const ::testing::TestParamInfo<size_t>& info) { return all_cases()[info.param].label; }

std::vector<size_t> gradient_cases() {
  std::vector<size_t> ids;
  for (size_t i = 0; i < all_cases().size(); ++i)
    if (all_cases()[i].check_grad) ids.push_back(i);
  return ids;
}

INSTANTIATE_TEST_SUITE_P(Cpu, OpRingForward, ::testing::Range<size_t>(0, all_cases().size()), case_name);
INSTANTIATE_TEST_SUITE_P(Cpu, OpRingGradient, ::testing::ValuesIn(gradient_cases()), case_name);

// ---- every case on Vulkan against the CPU backend ---------------------------------------------
#if defined(SPARO_HAVE_VULKAN)

struct DeviceRun {
  std::vector<float> out;
  std::vector<std::vector<float>> grads;
};

DeviceRun run_on(const Case& c, const Inputs& in, Device device) {
  std::vector<Tensor> xs;
  for (size_t k = 0; k < c.inputs.size(); ++k) {
    Tensor t = in.tensors[k].to(device).clone();
    if (c.check_grad && differentiable(c.inputs[k].kind)) t.requires_grad_();
    xs.push_back(t);
  }
  DeviceRun run;
  const Tensor out = c.fn(xs);
  run.out = out.to_float_vector();
  if (!c.check_grad) return run;
  std::vector<float> weights(run.out.size());
  for (size_t i = 0; i < weights.size(); ++i) weights[i] = std::isfinite(run.out[i]) ? std::sin(float(i) + 0.5f) : 0.0f;
  out.backward(Tensor::from_vector(weights, out.shape(), device));
  for (size_t k = 0; k < xs.size(); ++k)
    if (differentiable(c.inputs[k].kind)) run.grads.push_back(xs[k].grad().to_float_vector());
  return run;
}

// Normalised mean squared error; infinities must match exactly.
double nmse(const std::vector<float>& got, const std::vector<float>& want, bool* inf_mismatch) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isinf(want[i]) || std::isinf(got[i])) {
      if (got[i] != want[i]) *inf_mismatch = true;
      continue;
    }
    err += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    norm += double(want[i]) * want[i];
  }
  return err / std::max(norm, 1e-30);
}

class OpRingVulkan : public ::testing::TestWithParam<size_t> {
 protected:
  static void SetUpTestSuite() { use_lavapipe_with_validation(); }
};

// 1e-9: float results computed in another order (GPU sums and FMAs, lavapipe's exp) differ
// by a few ulp, an NMSE around 1e-13; a wrong kernel is off by order 1.
TEST_P(OpRingVulkan, MatchesTheCpuBackend) {
  const Case& c = all_cases()[GetParam()];
  vk::clear_validation_messages();
  const Inputs in = make_inputs(c);
  const DeviceRun cpu = run_on(c, in, Device::cpu());
  const DeviceRun gpu = run_on(c, in, Device::vulkan(0));
  bool inf_mismatch = false;
  EXPECT_LT(nmse(gpu.out, cpu.out, &inf_mismatch), 1e-9) << c.label << " forward";
  ASSERT_EQ(gpu.grads.size(), cpu.grads.size());
  for (size_t k = 0; k < cpu.grads.size(); ++k)
    EXPECT_LT(nmse(gpu.grads[k], cpu.grads[k], &inf_mismatch), 1e-9) << c.label << " gradient " << k;
  EXPECT_FALSE(inf_mismatch) << c.label;
  const auto messages = vk::validation_messages();
  EXPECT_TRUE(messages.empty()) << c.label << ": " << messages.size() << " validation message(s): " << messages[0];
}

INSTANTIATE_TEST_SUITE_P(Lavapipe, OpRingVulkan, ::testing::Range<size_t>(0, all_cases().size()), case_name);

#endif

// ---- the registry check -------------------------------------------------------------------

TEST(OpRegistry, EveryOpHasForwardAndGradientTests) {
  std::map<std::string, int> forward, gradient;
  for (const Case& c : all_cases()) {
    forward[c.op]++;
    if (c.check_grad) gradient[c.op]++;
  }
  for (const std::string& op : differentiable_op_names()) {
    EXPECT_GT(forward[op], 0) << "op \"" << op << "\" has no forward test in the op ring";
    EXPECT_GT(gradient[op], 0) << "op \"" << op << "\" has no gradient test in the op ring";
  }
  for (const auto& [op, count] : forward)
    EXPECT_NE(std::find(differentiable_op_names().begin(), differentiable_op_names().end(), op),
              differentiable_op_names().end())
        << "the op ring tests \"" << op << "\", which is not in SPARO_DIFFERENTIABLE_OPS";
  std::cout << "[ op ring ] " << differentiable_op_names().size() << " differentiable ops, " << all_cases().size()
            << " forward checks, " << std::count_if(all_cases().begin(), all_cases().end(), [](const Case& c) { return c.check_grad; })
            << " gradient checks\n";
}

TEST(OpRegistry, EveryRecordedOpIsRegistered) {
  for (const Case& c : all_cases()) {  // run each case so every op records its node
    Inputs in = make_inputs(c);
    for (size_t k = 0; k < c.inputs.size(); ++k)
      if (differentiable(c.inputs[k].kind)) in.tensors[k].requires_grad_();
    c.fn(in.tensors);
  }
  const std::set<std::string> registry(differentiable_op_names().begin(), differentiable_op_names().end());
  const std::vector<std::string> recorded = recorded_op_names();
  EXPECT_GT(recorded.size(), 20u);
  for (const std::string& op : recorded)
    EXPECT_TRUE(registry.count(op)) << "op \"" << op << "\" records a graph node but is not in SPARO_DIFFERENTIABLE_OPS";
}

}  // namespace
}  // namespace sparo
