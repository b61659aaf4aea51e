// Shape ops: reshape (shares storage), and permute / slice / concat / expand, which
// copy through the backend's strided copy. Forward and backward side by side.
#include <numeric>

#include "engine/ops/op_support.h"

namespace sparo {

using namespace detail;

Tensor reshape(const Tensor& x, const Shape& shape) {
  profiler::Scope scope("reshape");
  check_defined("reshape", x, "x");
  Shape resolved = shape;
  int64_t known = 1, inferred = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (inferred >= 0) throw Error("reshape: more than one -1 in target shape " + shape_str(shape));
      inferred = static_cast<int64_t>(i);
    } else if (shape[i] < 0) {
      throw Error("reshape: negative dimension in target shape " + shape_str(shape));
    } else if (__builtin_mul_overflow(known, shape[i], &known)) {  // a wrapped product could "fit" x
      throw Error("reshape: the element count of target shape " + shape_str(shape) + " overflows int64");
    }
  }
  if (inferred >= 0) {
    if (known == 0 || x.numel() % known != 0)
      throw Error("reshape: cannot infer the -1 in " + shape_str(shape) + " for a tensor of shape " +
                  shape_str(x.shape()) + " (" + std::to_string(x.numel()) + " elements)");
    resolved[static_cast<size_t>(inferred)] = x.numel() / known;
  }
  if (numel(resolved) != x.numel())
    throw Error("reshape: shape " + shape_str(x.shape()) + " (" + std::to_string(x.numel()) +
                " elements) cannot become " + shape_str(shape) + " (" + std::to_string(numel(resolved)) + " elements)");
  if (resolved.size() > static_cast<size_t>(kMaxDims))
    throw Error("reshape: target shape " + shape_str(resolved) + " has more than " + std::to_string(kMaxDims) + " dimensions");
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = resolved;
  impl->dtype = x.dtype();
  impl->storage = x.impl()->storage;
  return record("reshape", Tensor(std::move(impl)), {&x}, [xs = x.shape()](const Tensor& g) {
    return std::vector<Tensor>{reshape(g, xs)};
  });
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& axes) {
  profiler::Scope scope("permute");
  check_defined("permute", x, "x");
  const Shape& xs = x.shape();
  if (axes.size() != xs.size())
    throw Error("permute: " + std::to_string(axes.size()) + " axes given for shape " + shape_str(xs));
  std::vector<int64_t> perm(axes.size());
  std::vector<bool> seen(axes.size(), false);
  for (size_t i = 0; i < axes.size(); ++i) {
    perm[i] = normalize_axis("permute", axes[i], xs);
    if (seen[static_cast<size_t>(perm[i])])
      throw Error("permute: axis " + std::to_string(axes[i]) + " appears twice for shape " + shape_str(xs));
    seen[static_cast<size_t>(perm[i])] = true;
  }
  Shape out_shape(xs.size()), src_strides(xs.size());
  const Shape x_strides = contiguous_strides(xs);
  for (size_t i = 0; i < perm.size(); ++i) {
    out_shape[i] = xs[static_cast<size_t>(perm[i])];
    src_strides[i] = x_strides[static_cast<size_t>(perm[i])];
  }
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  if (out.numel() > 0)
    backend_of(x).copy(x, out, make_copy_plan(out_shape, src_strides, 0, contiguous_strides(out_shape), 0));
  add_bytes({&x, &out});
  std::vector<int64_t> inverse(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inverse[static_cast<size_t>(perm[i])] = static_cast<int64_t>(i);
  return record("permute", out, {&x}, [inverse](const Tensor& g) {
    return std::vector<Tensor>{permute(g, inverse)};
  });
}

// No profiler scope: permute is the row (and the node it records).
Tensor transpose(const Tensor& x, int64_t axis0, int64_t axis1) {
  check_defined("transpose", x, "x");
  std::vector<int64_t> perm(x.shape().size());
  std::iota(perm.begin(), perm.end(), 0);
  std::swap(perm[static_cast<size_t>(normalize_axis("transpose", axis0, x.shape()))],
            perm[static_cast<size_t>(normalize_axis("transpose", axis1, x.shape()))]);
  return permute(x, perm);
}

// Copies src (whole) into a region of dst that starts at `start` along `axis`.
static void copy_into(const Tensor& src, Tensor& dst, int64_t axis, int64_t start) {
  if (src.numel() == 0) return;
  const Shape dst_strides = contiguous_strides(dst.shape());
  backend_of(src).copy(src, dst, make_copy_plan(src.shape(), contiguous_strides(src.shape()), 0, dst_strides,
                                                start * dst_strides[static_cast<size_t>(axis)]));
  add_bytes({&src, &src});  // reads src, writes as much into dst
}

Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end) {
  profiler::Scope scope("slice");
  check_defined("slice", x, "x");
  axis = normalize_axis("slice", axis, x.shape());
  const int64_t size = x.shape()[static_cast<size_t>(axis)];
  // Python semantics: negative positions count from the end, out-of-range positions clamp.
  auto clamp_pos = [size](int64_t p) { return std::min(std::max(p < 0 ? p + size : p, int64_t{0}), size); };
  start = clamp_pos(start);
  end = std::max(clamp_pos(end), start);
  Shape out_shape = x.shape();
  out_shape[static_cast<size_t>(axis)] = end - start;
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  if (out.numel() > 0) {
    const Shape x_strides = contiguous_strides(x.shape());
    backend_of(x).copy(x, out, make_copy_plan(out_shape, x_strides, start * x_strides[static_cast<size_t>(axis)],
                                              contiguous_strides(out_shape), 0));
    add_bytes({&out, &out});  // reads a region of x as large as out, writes out
  }
  return record("slice", out, {&x}, [xs = x.shape(), axis, start](const Tensor& g) {
    Tensor dx = Tensor::zeros(xs, DType::f32, g.device());
    copy_into(g, dx, axis, start);
    return std::vector<Tensor>{dx};
  });
}

Tensor concat(const std::vector<Tensor>& xs, int64_t axis) {
  profiler::Scope scope("concat");
  if (xs.empty()) throw Error("concat: no tensors given");
  for (size_t i = 0; i < xs.size(); ++i) check_defined("concat", xs[i], "xs[i]");
  const Shape& first = xs[0].shape();
  axis = normalize_axis("concat", axis, first);
  Shape out_shape = first;
  out_shape[static_cast<size_t>(axis)] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Shape& s = xs[i].shape();
    bool compatible = s.size() == first.size() && xs[i].dtype() == xs[0].dtype();
    for (size_t d = 0; compatible && d < s.size(); ++d)
      compatible = d == static_cast<size_t>(axis) || s[d] == first[d];
    if (!compatible)
      throw Error("concat: tensor " + std::to_string(i) + " has shape " + shape_str(s) + " " + dtype_name(xs[i].dtype()) +
                  ", incompatible with tensor 0 of shape " + shape_str(first) + " " + dtype_name(xs[0].dtype()) +
                  " along axis " + std::to_string(axis));
    check_same_device("concat", xs[0], xs[i]);
    out_shape[static_cast<size_t>(axis)] += s[static_cast<size_t>(axis)];
  }
  Tensor out = Tensor::empty(out_shape, xs[0].dtype(), xs[0].device());
  std::vector<int64_t> starts;
  int64_t offset = 0;
  for (const Tensor& x : xs) {
    starts.push_back(offset);
    copy_into(x, out, axis, offset);
    offset += x.shape()[static_cast<size_t>(axis)];
  }
  return record("concat", out, xs, [xs_shapes = [&] {
    std::vector<Shape> v;
    for (const Tensor& x : xs) v.push_back(x.shape());
    return v;
  }(), starts, axis](const Tensor& g) {
    std::vector<Tensor> grads;
    for (size_t i = 0; i < xs_shapes.size(); ++i)
      grads.push_back(slice(g, axis, starts[i], starts[i] + xs_shapes[i][static_cast<size_t>(axis)]));
    return grads;
  });
}

Tensor expand(const Tensor& x, const Shape& shape) {
  profiler::Scope scope("expand");
  check_defined("expand", x, "x");
  const Shape& xs = x.shape();
  if (xs.size() > shape.size() || broadcast_shapes("expand", xs, shape) != shape)
    throw Error("expand: shape " + shape_str(xs) + " cannot be broadcast to " + shape_str(shape));
  if (xs == shape) return x;
  Shape src_strides(shape.size(), 0);
  const Shape own = contiguous_strides(xs);
  for (size_t i = 0; i < xs.size(); ++i) {
    const size_t axis = shape.size() - xs.size() + i;
    src_strides[axis] = xs[i] == 1 ? 0 : own[i];
  }
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  if (out.numel() > 0)
    backend_of(x).copy(x, out, make_copy_plan(shape, src_strides, 0, contiguous_strides(shape), 0));
  add_bytes({&out, &out});  // reads x (broadcast) once per element of out, writes out
  return record("expand", out, {&x}, [xs](const Tensor& g) { return std::vector<Tensor>{sum_to_shape(g, xs)}; });
}

Tensor cast(const Tensor& x, DType dtype) {
  profiler::Scope scope("cast");
  check_defined("cast", x, "x");
  Tensor out = Tensor::empty(x.shape(), dtype, x.device());
  if (out.numel() > 0) backend_of(x).cast(x, out);
  return out;
}

}  // namespace sparo
