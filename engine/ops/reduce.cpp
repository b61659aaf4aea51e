// Reductions: sum / mean / max over an axis or everything, and sum_to_shape (the
// backward of broadcasting). Forward and backward side by side.
#include "engine/ops/op_support.h"

namespace sparo {

using namespace detail;

namespace {

struct AxisSplit {
  int64_t outer = 1, n = 1, inner = 1;
};
AxisSplit split_at(const Shape& shape, int64_t axis) {
  AxisSplit s;
  for (int64_t i = 0; i < static_cast<int64_t>(shape.size()); ++i) {
    if (i < axis) s.outer *= shape[static_cast<size_t>(i)];
    else if (i == axis) s.n = shape[static_cast<size_t>(i)];
    else s.inner *= shape[static_cast<size_t>(i)];
  }
  return s;
}

Shape reduced_shape(const Shape& shape, int64_t axis, bool keepdim) {
  Shape out = shape;
  if (keepdim) out[static_cast<size_t>(axis)] = 1;
  else out.erase(out.begin() + axis);
  return out;
}

Tensor reduce_kernel(const char* op, ReduceOp kind, const Tensor& x, const Shape& out_shape, AxisSplit s) {
  check_dtype(op, x, DType::f32, "x");
  if (kind == ReduceOp::max && s.n == 0)
    throw Error(std::string(op) + ": cannot take the maximum over an empty axis of shape " + shape_str(x.shape()));
  Tensor out = Tensor::empty(out_shape, DType::f32, x.device());
  if (out.numel() == 0) return out;
  if (s.n == 0) fill_(out, 0.0f);
  else backend_of(x).reduce(kind, x, out, s.outer, s.n, s.inner);
  add_bytes({&x, &out});
  return out;
}

// The gradient of a keepdim-reduction, broadcast back to the input's shape.
Tensor expand_reduced(const Tensor& g, const Shape& keep_shape, const Shape& full_shape) {
  return expand(reshape(g, keep_shape), full_shape);
}

}  // namespace

Tensor sum(const Tensor& x, int64_t axis, bool keepdim) {
  profiler::Scope scope("sum");
  check_defined("sum", x, "x");
  axis = normalize_axis("sum", axis, x.shape());
  Tensor out = reduce_kernel("sum", ReduceOp::sum, x, reduced_shape(x.shape(), axis, keepdim), split_at(x.shape(), axis));
  return record("sum", out, {&x}, [xs = x.shape(), ks = reduced_shape(x.shape(), axis, true)](const Tensor& g) {
    return std::vector<Tensor>{expand_reduced(g, ks, xs)};
  });
}

Tensor sum(const Tensor& x) {
  profiler::Scope scope("sum");
  check_defined("sum", x, "x");
  Tensor out = reduce_kernel("sum", ReduceOp::sum, x, {}, AxisSplit{1, x.numel(), 1});
  return record("sum", out, {&x}, [xs = x.shape()](const Tensor& g) {
    return std::vector<Tensor>{expand_reduced(g, Shape(xs.size(), 1), xs)};
  });
}

// mean opens no profiler scope: it records sum and affine nodes, which are its rows.
Tensor mean(const Tensor& x, int64_t axis, bool keepdim) {
  check_defined("mean", x, "x");
  const int64_t n = x.size(axis);
  if (n == 0) throw Error("mean: cannot average over an empty axis of shape " + shape_str(x.shape()));
  return affine(sum(x, axis, keepdim), 1.0f / static_cast<float>(n), 0.0f);
}

Tensor mean(const Tensor& x) {
  check_defined("mean", x, "x");
  if (x.numel() == 0) throw Error("mean: cannot average an empty tensor of shape " + shape_str(x.shape()));
  return affine(sum(x), 1.0f / static_cast<float>(x.numel()), 0.0f);
}

// Gradient of max: split evenly between every element equal to the maximum.
static Tensor max_backward(const Tensor& x, const Tensor& max_keep, const Tensor& g_keep, int64_t axis) {
  const Tensor is_max = eq(x, max_keep);
  const Tensor ties = axis < 0 ? reshape(sum(is_max), max_keep.shape()) : sum(is_max, axis, true);
  return mul(is_max, div(g_keep, ties));
}

Tensor max(const Tensor& x, int64_t axis, bool keepdim) {
  profiler::Scope scope("max");
  check_defined("max", x, "x");
  axis = normalize_axis("max", axis, x.shape());
  const Shape keep_shape = reduced_shape(x.shape(), axis, true);
  Tensor out = reduce_kernel("max", ReduceOp::max, x, reduced_shape(x.shape(), axis, keepdim), split_at(x.shape(), axis));
  if (!needs_grad({&x})) return out;
  return record("max", out, {&x}, [x = x.detach(), m = out.detach(), keep_shape, axis](const Tensor& g) {
    return std::vector<Tensor>{max_backward(x, reshape(m, keep_shape), reshape(g, keep_shape), axis)};
  });
}

Tensor max(const Tensor& x) {
  profiler::Scope scope("max");
  check_defined("max", x, "x");
  Tensor out = reduce_kernel("max", ReduceOp::max, x, {}, AxisSplit{1, x.numel(), 1});
  if (!needs_grad({&x})) return out;
  return record("max", out, {&x}, [x = x.detach(), m = out.detach()](const Tensor& g) {
    const Shape ones(x.shape().size(), 1);
    return std::vector<Tensor>{max_backward(x, reshape(m, ones), reshape(g, ones), -1)};
  });
}

Tensor sum_to_shape(const Tensor& x, const Shape& shape) {
  profiler::Scope scope("sum_to_shape");
  check_defined("sum_to_shape", x, "x");
  if (x.shape() == shape) return x;
  if (shape.size() > x.shape().size() || broadcast_shapes("sum_to_shape", shape, x.shape()) != x.shape())
    throw Error("sum_to_shape: shape " + shape_str(x.shape()) + " cannot be summed to " + shape_str(shape) +
                " (the target must broadcast to the source)");
  // Align ranks, then reduce each run of consecutive summed axes in one kernel call.
  const size_t rank = x.shape().size();
  Shape target(rank - shape.size(), 1);
  target.insert(target.end(), shape.begin(), shape.end());
  Tensor current = x.detach();
  Shape current_shape = x.shape();
  size_t axis = 0;
  while (axis < rank) {
    if (target[axis] == current_shape[axis]) { ++axis; continue; }
    size_t end = axis;
    AxisSplit s;
    s.n = 1;
    while (end < rank && target[end] != current_shape[end]) s.n *= current_shape[end++];
    for (size_t i = 0; i < axis; ++i) s.outer *= current_shape[i];
    for (size_t i = end; i < rank; ++i) s.inner *= current_shape[i];
    for (size_t i = axis; i < end; ++i) current_shape[i] = 1;
    current = reduce_kernel("sum_to_shape", ReduceOp::sum, current, current_shape, s);
    axis = end;
  }
  Tensor out = reshape(current, shape);
  return record("sum_to_shape", out, {&x}, [xs = x.shape()](const Tensor& g) {
    return std::vector<Tensor>{expand(g, xs)};
  });
}

}  // namespace sparo
