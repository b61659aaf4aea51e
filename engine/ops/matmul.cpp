// matmul (batched, broadcasting, transpose flags) and linear.
#include "engine/ops/op_support.h"

namespace sparo {

using namespace detail;

namespace {
thread_local MatmulPrecision tls_matmul_precision = MatmulPrecision::f32;
}  // namespace

MatmulPrecision matmul_precision() { return tls_matmul_precision; }
void set_matmul_precision(MatmulPrecision precision) { tls_matmul_precision = precision; }

MatmulPrecision parse_matmul_precision(const std::string& text, const std::string& what) {
  if (text == "f32" || text == "fp32") return MatmulPrecision::f32;
  if (text == "bf16") return MatmulPrecision::bf16;
  throw Error(what + ": expected \"f32\" or \"bf16\", got \"" + text + "\"");
}

const char* matmul_precision_name(MatmulPrecision precision) {
  return precision == MatmulPrecision::bf16 ? "bf16" : "f32";
}

MatmulPrecision fastest_matmul_precision(Device device) {
  return backend_for(device).bf16_matmul_is_faster() ? MatmulPrecision::bf16 : MatmulPrecision::f32;
}

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  profiler::Scope scope("matmul");
  check_dtype("matmul", a, DType::f32, "a");
  check_dtype("matmul", b, DType::f32, "b");
  check_same_device("matmul", a, b);
  if (a.dim() < 2 || b.dim() < 2)
    throw Error("matmul: both operands need at least 2 axes, got a " + shape_str(a.shape()) + " and b " +
                shape_str(b.shape()));
  // x[..., M, K] · W[K, N]: fold the batch into M, one large GEMM instead of many.
  if (b.dim() == 2 && a.dim() > 2 && !trans_a) {
    Shape out_shape(a.shape().begin(), a.shape().end() - 1);
    out_shape.push_back(trans_b ? b.shape()[0] : b.shape()[1]);
    return reshape(matmul(reshape(a, {-1, a.shape().back()}), b, false, trans_b), out_shape);
  }
  const int64_t ra = a.dim(), rb = b.dim();
  const int64_t M = a.shape()[static_cast<size_t>(trans_a ? ra - 1 : ra - 2)];
  const int64_t Ka = a.shape()[static_cast<size_t>(trans_a ? ra - 2 : ra - 1)];
  const int64_t Kb = b.shape()[static_cast<size_t>(trans_b ? rb - 1 : rb - 2)];
  const int64_t N = b.shape()[static_cast<size_t>(trans_b ? rb - 2 : rb - 1)];
  if (Ka != Kb)
    throw Error("matmul: inner dimensions differ: a " + shape_str(a.shape()) + (trans_a ? " (transposed)" : "") +
                " has K=" + std::to_string(Ka) + ", b " + shape_str(b.shape()) + (trans_b ? " (transposed)" : "") +
                " has K=" + std::to_string(Kb));
  const Shape a_batch(a.shape().begin(), a.shape().end() - 2), b_batch(b.shape().begin(), b.shape().end() - 2);
  const Shape batch = broadcast_shapes("matmul", a_batch, b_batch);
  // An operand whose batch is neither complete nor a single matrix is expanded first.
  auto batched = [&](const Tensor& t, const Shape& own) {
    if (own == batch || numel(own) == 1) return t;
    Shape full = batch;
    full.insert(full.end(), t.shape().end() - 2, t.shape().end());
    return expand(t, full);
  };
  const Tensor A = batched(a, a_batch), B = batched(b, b_batch);
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor out = Tensor::empty(out_shape, DType::f32, a.device());
  MatmulDesc d;
  d.batch = numel(batch);
  d.M = M, d.N = N, d.K = Ka;
  d.trans_a = trans_a, d.trans_b = trans_b;
  d.a_batch_stride = numel(a_batch) == 1 && a_batch != batch ? 0 : M * Ka;
  d.b_batch_stride = numel(b_batch) == 1 && b_batch != batch ? 0 : Ka * N;
  d.c_batch_stride = M * N;
  const MatmulPrecision precision = matmul_precision();
  d.precision = precision;
  if (out.numel() > 0) {
    if (Ka == 0) fill_(out, 0.0f);
    else backend_of(a).matmul(A, B, out, d);
    // A GEMM does M·N·K multiply-adds: 2·M·N·K FLOPs per product of the batch.
    profiler::add_work(2.0 * static_cast<double>(d.batch) * static_cast<double>(M) * static_cast<double>(N) *
                           static_cast<double>(Ka), 0.0);
  }
  if (!needs_grad({&a, &b})) return out;
  return record("matmul", out, {&a, &b}, [a = a.detach(), b = b.detach(), trans_a, trans_b, precision,
                                         need_a = a.requires_grad(), need_b = b.requires_grad()](const Tensor& g) {
    // C = op(A)·op(B):  d op(A) = G·op(B)ᵀ,  d op(B) = op(A)ᵀ·G, transposed back when stored transposed.
    const MatmulPrecisionScope same_as_forward(precision);
    Tensor da, db;
    if (need_a)
      da = sum_to_shape(trans_a ? matmul(b, g, trans_b, true) : matmul(g, b, false, !trans_b), a.shape());
    if (need_b)
      db = sum_to_shape(trans_b ? matmul(g, a, true, trans_a) : matmul(a, g, !trans_a, false), b.shape());
    return std::vector<Tensor>{da, db};
  });
}

namespace {

// linear's and linear_gelu's argument checks; x2 is x as a matrix of rows when it is a vector.
struct LinearShapes {
  Tensor x2;
  int64_t in = 0, out_features = 0, rows = 0;
  Shape out_shape;
};

LinearShapes check_linear(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_defined(op, x, "x");
  check_defined(op, weight, "weight");
  if (weight.dim() != 2)
    throw Error(std::string(op) + ": weight must be [out, in], got shape " + shape_str(weight.shape()));
  if (x.dim() < 1 || x.shape().back() != weight.shape()[1])
    throw Error(std::string(op) + ": input of shape " + shape_str(x.shape()) + " does not match weight of shape " +
                shape_str(weight.shape()) + " (expected last input axis " + std::to_string(weight.shape()[1]) + ")");
  LinearShapes s;
  s.in = weight.shape()[1], s.out_features = weight.shape()[0];
  s.x2 = x.dim() == 1 ? reshape(x, {1, s.in}) : x;
  s.rows = numel(Shape(s.x2.shape().begin(), s.x2.shape().end() - 1));
  s.out_shape = s.x2.shape();
  s.out_shape.back() = s.out_features;
  if (bias.defined()) {
    if (bias.shape() != Shape{s.out_features})
      throw Error(std::string(op) + ": bias has shape " + shape_str(bias.shape()) + ", expected [" +
                  std::to_string(s.out_features) + "]");
    check_dtype(op, bias, DType::f32, "bias");
    check_same_device(op, x, bias);
  }
  check_dtype(op, x, DType::f32, "x");
  check_dtype(op, weight, DType::f32, "weight");
  check_same_device(op, x, weight);
  return s;
}

// The product's output before anything is added: the bias in every row (then accumulated
// onto), or uninitialised.
Tensor bias_rows(const LinearShapes& s, const Tensor& bias, Device device) {
  if (!bias.defined()) return Tensor::empty({s.rows, s.out_features}, DType::f32, device);
  NoGradGuard no_grad;
  return expand(bias.detach(), {s.rows, s.out_features});
}

MatmulDesc linear_desc(const LinearShapes& s, bool accumulate, MatmulPrecision precision) {
  MatmulDesc d;
  d.M = s.rows, d.N = s.out_features, d.K = s.in;
  d.trans_b = true;
  d.c_batch_stride = s.rows * s.out_features;
  d.accumulate = accumulate;
  d.precision = precision;
  return d;
}

// y = x·Wᵀ + b:  dx = G·W,  dW = Gᵀ·x,  db = Σ_rows G  (G [rows, out] as a matrix).
// Where the backend can, db comes out of dW's GEMM (Backend::linear_weight_bias_grad).
std::vector<Tensor> linear_backward(const Tensor& g2, const Tensor& x, const Tensor& w, bool need_x, bool need_w,
                                    bool need_b) {
  Tensor dx, dw, db;
  if (need_x) dx = reshape(matmul(g2, w), x.shape());
  const Tensor x2 = reshape(x, {g2.size(0), w.shape()[1]});
  Backend& backend = backend_of(g2);
  if (need_w && need_b && backend.has_fused_bias_grad() && g2.size(0) > 0) {
    dw = Tensor::empty(w.shape(), DType::f32, g2.device());
    db = Tensor::empty({w.shape()[0]}, DType::f32, g2.device());
    MatmulDesc d;
    d.M = w.shape()[0], d.N = w.shape()[1], d.K = g2.size(0);
    d.trans_a = true;
    d.c_batch_stride = d.M * d.N;
    d.precision = matmul_precision();
    backend.linear_weight_bias_grad(g2, x2, dw, db, d);
    profiler::add_work(2.0 * static_cast<double>(d.M) * static_cast<double>(d.N) * static_cast<double>(d.K), 0.0);
    return {dx, dw, db};
  }
  if (need_w) dw = matmul(g2, x2, true, false);
  if (need_b) db = sum(g2, 0);
  return {dx, dw, db};
}

}  // namespace

// With a bias, one op of its own. Where the backend fuses it (the CPU), the GEMM adds the bias
// to each block of the output as it finishes it; elsewhere the output starts as the bias in
// every row and the GEMM adds x·Wᵀ into it (MatmulDesc::accumulate). Either way no separate
// add (read the product, read the bias, write the sum) and no second output.
// Without a bias, it is matmul alone.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const LinearShapes s = check_linear("linear", x, weight, bias);
  if (!bias.defined()) {
    const Tensor y = matmul(s.x2, weight, false, true);
    return x.dim() == 1 ? reshape(y, {s.out_features}) : y;
  }
  profiler::Scope scope("linear");
  Backend& backend = backend_of(x);
  const MatmulPrecision precision = matmul_precision();
  Tensor y;
  if (backend.has_fused_linear() && s.rows > 0) {
    y = Tensor::empty({s.rows, s.out_features}, DType::f32, x.device());
    backend.linear(reshape(s.x2.detach(), {s.rows, s.in}), weight.detach(), bias.detach(), y,
                   linear_desc(s, false, precision));
  } else {
    y = bias_rows(s, bias, x.device());
    if (s.rows > 0 && s.in > 0)
      backend.matmul(reshape(s.x2.detach(), {s.rows, s.in}), weight.detach(), y, linear_desc(s, true, precision));
  }
  if (s.rows > 0 && s.in > 0) {
    profiler::add_work(2.0 * static_cast<double>(s.rows) * static_cast<double>(s.out_features) * static_cast<double>(s.in),
                       0.0);
  }
  y = reshape(y, s.out_shape);
  if (needs_grad({&s.x2, &weight, &bias}))
    y = record("linear", y, {&s.x2, &weight, &bias},
               [x = s.x2.detach(), w = weight.detach(), precision, rows = s.rows, need_x = s.x2.requires_grad(),
                need_w = weight.requires_grad(), need_b = bias.requires_grad()](const Tensor& g) {
                 const MatmulPrecisionScope same_as_forward(precision);
                 return linear_backward(reshape(g, {rows, g.shape().back()}), x, w, need_x, need_w, need_b);
               });
  return x.dim() == 1 ? reshape(y, {s.out_features}) : y;
}

// gelu(linear(x, weight, bias)), with GELU applied to each block of the product as the GEMM
// finishes it (Backend::linear_gelu): the separate pass of GELU over the whole activation
// (e.g. [B·N, 4·width] in a transformer's MLP) is gone from the forward. For the backward
// the same pass keeps GELU's derivative at the pre-activation (where gelu would keep its
// input and evaluate the derivative in the backward): the backward multiplies by it.
Tensor linear_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const LinearShapes s = check_linear("linear_gelu", x, weight, bias);
  Backend& backend = backend_of(x);
  if (!backend.has_fused_linear_gelu()) return gelu(linear(x, weight, bias));
  profiler::Scope scope("linear_gelu");
  // The product, then gelu' of it (or GELU itself, in place).
  Tensor pre = Tensor::empty({s.rows, s.out_features}, DType::f32, x.device());
  // Without a backward to keep the derivative for, the pre-activation is overwritten by its
  // GELU: inference holds one [rows, out] buffer instead of two.
  const bool keep_pre = needs_grad({&s.x2, &weight, &bias});
  Tensor out = keep_pre ? Tensor::empty({s.rows, s.out_features}, DType::f32, x.device()) : pre;
  const MatmulPrecision precision = matmul_precision();
  if (s.rows > 0 && s.out_features > 0) {
    backend.linear_gelu(reshape(s.x2.detach(), {s.rows, s.in}), weight.detach(),
                        bias.defined() ? bias.detach() : Tensor(), pre, out, linear_desc(s, false, precision));
    profiler::add_work(2.0 * static_cast<double>(s.rows) * static_cast<double>(s.out_features) * static_cast<double>(s.in),
                       0.0);
  }
  out = reshape(out, s.out_shape);
  if (keep_pre)
    out = record("linear_gelu", out, {&s.x2, &weight, &bias},
                 [x = s.x2.detach(), w = weight.detach(), derivative = pre, precision, rows = s.rows,
                  need_x = s.x2.requires_grad(), need_w = weight.requires_grad(),
                  need_b = bias.defined() && bias.requires_grad()](const Tensor& g) {
                   // Through GELU (times its kept derivative), then linear's backward.
                   const Tensor dpre = mul(reshape(g, derivative.shape()), derivative);
                   const MatmulPrecisionScope same_as_forward(precision);
                   return linear_backward(dpre, x, w, need_x, need_w, need_b);
                 });
  return x.dim() == 1 ? reshape(out, {s.out_features}) : out;
}

// The forward is linear_gelu's and linear's kernels one after the other (GELU's derivative kept
// for the backward, as linear_gelu keeps it); the backward is fc2's, then fc1's, with the hidden
// layer's gradient (g·W2) multiplied by that derivative in the GEMM's epilogue: no pass of
// g·W2 ⊙ gelu' over the [rows, hidden] activation, which linear_gelu's backward makes.
// Without a backward (inference) it is linear_gelu and linear, GELU in place.
Tensor mlp_gelu(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2) {
  const LinearShapes s1 = check_linear("mlp_gelu", x, w1, b1);
  check_defined("mlp_gelu", b1, "b1");
  check_defined("mlp_gelu", w2, "w2");
  check_defined("mlp_gelu", b2, "b2");
  if (w2.dim() != 2 || w2.shape()[1] != s1.out_features)
    throw Error("mlp_gelu: w2 has shape " + shape_str(w2.shape()) + ", expected [out, " +
                std::to_string(s1.out_features) + "] (fc1's " + std::to_string(s1.out_features) + " outputs)");
  Backend& backend = backend_of(x);
  const bool fused = backend.has_fused_linear_gelu() && backend.has_fused_linear() && backend.has_fused_matmul_mul();
  if (!fused || s1.rows == 0 || s1.in == 0 || !needs_grad({&s1.x2, &w1, &b1, &w2, &b2}))
    return linear(linear_gelu(x, w1, b1), w2, b2);
  Tensor hidden = Tensor::empty({s1.rows, s1.out_features}, DType::f32, x.device());
  const LinearShapes s2 = check_linear("mlp_gelu", hidden, w2, b2);
  profiler::Scope scope("mlp_gelu");
  const MatmulPrecision precision = matmul_precision();
  Tensor derivative = Tensor::empty({s1.rows, s1.out_features}, DType::f32, x.device());
  backend.linear_gelu(reshape(s1.x2.detach(), {s1.rows, s1.in}), w1.detach(), b1.detach(), derivative, hidden,
                      linear_desc(s1, false, precision));
  Tensor y = Tensor::empty({s2.rows, s2.out_features}, DType::f32, x.device());
  backend.linear(hidden, w2.detach(), b2.detach(), y, linear_desc(s2, false, precision));
  profiler::add_work(2.0 * static_cast<double>(s1.rows) * static_cast<double>(s1.out_features) *
                         (static_cast<double>(s1.in) + static_cast<double>(s2.out_features)),
                     0.0);
  Shape out_shape = s1.out_shape;
  out_shape.back() = s2.out_features;
  y = record("mlp_gelu", reshape(y, out_shape), {&s1.x2, &w1, &b1, &w2, &b2},
             [x = s1.x2.detach(), w1 = w1.detach(), w2 = w2.detach(), hidden, derivative, precision,
              rows = s1.rows, need_x = s1.x2.requires_grad(), need_w1 = w1.requires_grad(),
              need_b1 = b1.requires_grad(), need_w2 = w2.requires_grad(),
              need_b2 = b2.requires_grad()](const Tensor& g) {
               const MatmulPrecisionScope same_as_forward(precision);
               const Tensor g2 = reshape(g, {rows, g.shape().back()});
               std::vector<Tensor> fc2 = linear_backward(g2, hidden, w2, false, need_w2, need_b2);
               std::vector<Tensor> fc1(3);
               if (need_x || need_w1 || need_b1) {
                 // d pre-activation = (g·W2) ⊙ gelu'(pre), the product finished block by block.
                 Tensor dpre = Tensor::empty(derivative.shape(), DType::f32, g.device());
                 MatmulDesc d;
                 d.M = rows, d.N = w2.shape()[1], d.K = w2.shape()[0];
                 d.c_batch_stride = d.M * d.N;
                 d.precision = precision;
                 backend_of(g).matmul_mul(g2, w2, derivative, dpre, d);
                 profiler::add_work(2.0 * static_cast<double>(d.M) * static_cast<double>(d.N) * static_cast<double>(d.K),
                                    0.0);
                 fc1 = linear_backward(dpre, x, w1, need_x, need_w1, need_b1);
               }
               return std::vector<Tensor>{fc1[0], fc1[1], fc1[2], fc2[1], fc2[2]};
             });
  return x.dim() == 1 ? reshape(y, {s2.out_features}) : y;
}

}  // namespace sparo
