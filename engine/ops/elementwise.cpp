// Elementwise ops: broadcasting binary ops, unary maps, where / masked_fill, and the
// in-place updates used by optimisers. Forward and backward side by side.
#include <cmath>

#include "engine/ops/op_support.h"

namespace sparo {

using namespace detail;

// ---- binary --------------------------------------------------------------------------

static Tensor binary_forward(const char* op, BinaryOp kind, const Tensor& a, const Tensor& b) {
  check_dtype(op, a, DType::f32, "a");
  check_dtype(op, b, DType::f32, "b");
  check_same_device(op, a, b);
  const Shape shape = broadcast_shapes(op, a.shape(), b.shape());
  Tensor out = Tensor::empty(shape, DType::f32, a.device());
  if (out.numel() > 0)
    backend_of(a).binary(kind, a, b, out, make_elementwise_plan(shape, {a.shape(), b.shape()}));
  add_bytes({&a, &b, &out});
  return out;
}

Tensor add(const Tensor& a, const Tensor& b) {
  profiler::Scope scope("add");
  Tensor out = binary_forward("add", BinaryOp::add, a, b);
  return record("add", out, {&a, &b}, [sa = a.shape(), sb = b.shape()](const Tensor& g) {
    return std::vector<Tensor>{sum_to_shape(g, sa), sum_to_shape(g, sb)};
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  profiler::Scope scope("sub");
  Tensor out = binary_forward("sub", BinaryOp::sub, a, b);
  return record("sub", out, {&a, &b}, [sa = a.shape(), sb = b.shape()](const Tensor& g) {
    return std::vector<Tensor>{sum_to_shape(g, sa), sum_to_shape(neg(g), sb)};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  profiler::Scope scope("mul");
  Tensor out = binary_forward("mul", BinaryOp::mul, a, b);
  if (!needs_grad({&a, &b})) return out;
  return record("mul", out, {&a, &b}, [a = a.detach(), b = b.detach()](const Tensor& g) {
    return std::vector<Tensor>{sum_to_shape(mul(g, b), a.shape()), sum_to_shape(mul(g, a), b.shape())};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  profiler::Scope scope("div");
  Tensor out = binary_forward("div", BinaryOp::div, a, b);
  if (!needs_grad({&a, &b})) return out;
  return record("div", out, {&a, &b}, [a = a.detach(), b = b.detach()](const Tensor& g) {
    const Tensor ga = div(g, b);  // d(a/b)/da = 1/b,  d(a/b)/db = -a/b² = -(g/b)·(a/b)
    return std::vector<Tensor>{sum_to_shape(ga, a.shape()), sum_to_shape(neg(mul(ga, div(a, b))), b.shape())};
  });
}

Tensor maximum(const Tensor& a, const Tensor& b) {
  profiler::Scope scope("maximum");
  Tensor out = binary_forward("maximum", BinaryOp::maximum, a, b);
  if (!needs_grad({&a, &b})) return out;
  return record("maximum", out, {&a, &b}, [a = a.detach(), b = b.detach()](const Tensor& g) {
    const Tensor to_a = mul(g, step(sub(a, b), 0.0f, 1.0f));  // a >= b: the gradient goes to a
    return std::vector<Tensor>{sum_to_shape(to_a, a.shape()), sum_to_shape(sub(g, to_a), b.shape())};
  });
}

Tensor eq(const Tensor& a, const Tensor& b) {
  profiler::Scope scope("eq");
  return binary_forward("eq", BinaryOp::eq, a, b);
}

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& x) { return neg(x); }
Tensor operator+(const Tensor& a, float s) { return affine(a, 1.0f, s); }
Tensor operator-(const Tensor& a, float s) { return affine(a, 1.0f, -s); }
Tensor operator*(const Tensor& a, float s) { return affine(a, s, 0.0f); }
Tensor operator/(const Tensor& a, float s) { return affine(a, 1.0f / s, 0.0f); }
Tensor operator*(float s, const Tensor& a) { return affine(a, s, 0.0f); }

// ---- unary ---------------------------------------------------------------------------
// Every unary op saves its input; the kernel's backward recomputes what it needs from it.

static Tensor unary_op(const char* op, UnaryOp kind, const Tensor& x, UnaryParams p = {}) {
  profiler::Scope scope(op);
  check_dtype(op, x, DType::f32, "x");
  Tensor out = Tensor::empty(x.shape(), DType::f32, x.device());
  if (out.numel() > 0) backend_of(x).unary(kind, x, out, p);
  add_bytes({&x, &out});
  if (kind == UnaryOp::step || !needs_grad({&x})) return out;
  // Constant derivatives: save nothing (x may be a large activation, e.g. attention's q).
  if (kind == UnaryOp::affine || kind == UnaryOp::neg) {
    const float scale = kind == UnaryOp::neg ? -1.0f : p.a;
    return record(op, out, {&x}, [scale](const Tensor& g) { return std::vector<Tensor>{affine(g, scale, 0.0f)}; });
  }
  return record(op, out, {&x}, [x = x.detach(), kind, p](const Tensor& g) {
    Tensor dx = Tensor::empty(x.shape(), DType::f32, x.device());
    if (dx.numel() > 0) backend_of(x).unary_backward(kind, x, g, dx, p);
    add_bytes({&x, &g, &dx});
    return std::vector<Tensor>{dx};
  });
}

Tensor neg(const Tensor& x) { return unary_op("neg", UnaryOp::neg, x); }
Tensor exp(const Tensor& x) { return unary_op("exp", UnaryOp::exp, x); }
Tensor log(const Tensor& x) { return unary_op("log", UnaryOp::log, x); }
Tensor sqrt(const Tensor& x) { return unary_op("sqrt", UnaryOp::sqrt, x); }
Tensor rsqrt(const Tensor& x) { return unary_op("rsqrt", UnaryOp::rsqrt, x); }
Tensor tanh(const Tensor& x) { return unary_op("tanh", UnaryOp::tanh, x); }
Tensor sigmoid(const Tensor& x) { return unary_op("sigmoid", UnaryOp::sigmoid, x); }
Tensor relu(const Tensor& x) { return unary_op("relu", UnaryOp::relu, x); }
Tensor gelu(const Tensor& x) { return unary_op("gelu", UnaryOp::gelu_erf, x); }
Tensor gelu_tanh(const Tensor& x) { return unary_op("gelu_tanh", UnaryOp::gelu_tanh, x); }
Tensor quick_gelu(const Tensor& x) { return unary_op("quick_gelu", UnaryOp::quick_gelu, x); }
Tensor square(const Tensor& x) { return unary_op("square", UnaryOp::square, x); }
Tensor abs(const Tensor& x) { return unary_op("abs", UnaryOp::abs, x); }
Tensor pow(const Tensor& x, float exponent) { return unary_op("pow", UnaryOp::pow, x, {exponent, 0.0f}); }
Tensor affine(const Tensor& x, float scale, float shift) {
  return unary_op("affine", UnaryOp::affine, x, {scale, shift});
}
Tensor step(const Tensor& x, float threshold, float value) {
  return unary_op("step", UnaryOp::step, x, {threshold, value});
}
Tensor clamp(const Tensor& x, float min, float max) {
  if (min > max)
    throw Error("clamp: min " + std::to_string(min) + " is greater than max " + std::to_string(max));
  return unary_op("clamp", UnaryOp::clamp, x, {min, max});
}

// ---- where / masked_fill ------------------------------------------------------------------

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  profiler::Scope scope("where");
  check_defined("where", cond, "cond");
  if (cond.dtype() != DType::f32 && cond.dtype() != DType::i32)
    throw Error(std::string("where: cond has dtype ") + dtype_name(cond.dtype()) + ", expected f32 or i32");
  check_dtype("where", a, DType::f32, "a");
  check_dtype("where", b, DType::f32, "b");
  check_same_device("where", cond, a);
  check_same_device("where", a, b);
  const Shape shape = broadcast_shapes("where", broadcast_shapes("where", cond.shape(), a.shape()), b.shape());
  Tensor out = Tensor::empty(shape, DType::f32, a.device());
  if (out.numel() > 0)
    backend_of(a).where(cond, a, b, out, make_elementwise_plan(shape, {cond.shape(), a.shape(), b.shape()}));
  add_bytes({&cond, &a, &b, &out});
  if (!needs_grad({&a, &b})) return out;
  return record("where", out, {&cond, &a, &b}, [cond = cond.detach(), sa = a.shape(), sb = b.shape()](const Tensor& g) {
    const Tensor zero = Tensor::zeros({}, DType::f32, g.device());
    return std::vector<Tensor>{Tensor(), sum_to_shape(where(cond, g, zero), sa), sum_to_shape(where(cond, zero, g), sb)};
  });
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, float value) {
  check_defined("masked_fill", x, "x");
  return where(mask, Tensor::full({}, value, DType::f32, x.device()), x);
}

// ---- in place (never recorded) ---------------------------------------------------------------

static void inplace_binary(const char* op, BinaryOp kind, Tensor& dst, const Tensor& src) {
  profiler::Scope scope(op);
  check_dtype(op, dst, DType::f32, "dst");
  check_dtype(op, src, DType::f32, "src");
  check_same_device(op, dst, src);
  if (broadcast_shapes(op, dst.shape(), src.shape()) != dst.shape())
    throw Error(std::string(op) + ": src shape " + shape_str(src.shape()) + " does not broadcast to dst shape " +
                shape_str(dst.shape()));
  if (dst.numel() > 0) {
    dst.storage().note_write();
    backend_of(dst).binary(kind, dst, src, dst, make_elementwise_plan(dst.shape(), {dst.shape(), src.shape()}));
  }
  add_bytes({&dst, &src, &dst});
}

void add_(Tensor& dst, const Tensor& src) { inplace_binary("add_", BinaryOp::add, dst, src); }
void mul_(Tensor& dst, const Tensor& src) { inplace_binary("mul_", BinaryOp::mul, dst, src); }

void copy_(Tensor& dst, const Tensor& src) {
  profiler::Scope scope("copy_");
  check_defined("copy_", dst, "dst");
  check_defined("copy_", src, "src");
  check_same_device("copy_", dst, src);
  if (dst.shape() != src.shape() || dst.dtype() != src.dtype())
    throw Error("copy_: src " + shape_str(src.shape()) + " " + dtype_name(src.dtype()) + " differs from dst " +
                shape_str(dst.shape()) + " " + dtype_name(dst.dtype()));
  if (dst.numel() == 0) return;
  dst.storage().note_write();
  const Shape strides = contiguous_strides(dst.shape());
  backend_of(dst).copy(src, dst, make_copy_plan(dst.shape(), strides, 0, strides, 0));
  add_bytes({&src, &dst});
}

void ema_(Tensor& dst, const Tensor& src, float momentum) {
  profiler::Scope scope("ema_");
  check_defined("ema_", dst, "dst");
  check_defined("ema_", src, "src");
  check_dtype("ema_", dst, DType::f32, "dst");
  check_dtype("ema_", src, DType::f32, "src");
  check_same_device("ema_", dst, src);
  if (dst.shape() != src.shape())
    throw Error("ema_: src shape " + shape_str(src.shape()) + " differs from dst shape " + shape_str(dst.shape()));
  if (!std::isfinite(momentum))
    throw Error("ema_: momentum must be finite, got " + std::to_string(momentum));
  if (dst.numel() == 0) return;
  dst.storage().note_write();
  backend_of(dst).ema_step(dst, src, momentum);
  add_bytes({&dst, &src, &dst});
}

void fill_(Tensor& dst, float value) {
  profiler::Scope scope("fill_");
  check_defined("fill_", dst, "dst");
  dst.storage().note_write();
  backend_of(dst).fill(dst, value);
  add_bytes({&dst});
}

}  // namespace sparo
