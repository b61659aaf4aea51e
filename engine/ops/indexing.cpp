// Indexing ops: embedding, index_select, one_hot. Forward and backward side by side.
#include "engine/ops/op_support.h"

namespace sparo {

using namespace detail;

// Runs a kernel that checks indices, prefixing its error with the op and shapes.
template <typename F>
static void with_op_context(const char* op, const Tensor& x, const Tensor& index, F kernel) {
  try {
    kernel();
  } catch (const Error& e) {
    throw Error(std::string(op) + ": " + e.what() + " (input shape " + shape_str(x.shape()) + ", index shape " +
                shape_str(index.shape()) + ")");
  }
}

static void check_index_tensor(const char* op, const Tensor& x, const Tensor& index) {
  check_dtype(op, index, DType::i32, "index");
  check_same_device(op, x, index);
}

Tensor index_select(const Tensor& x, int64_t axis, const Tensor& index) {
  profiler::Scope scope("index_select");
  check_defined("index_select", x, "x");
  check_index_tensor("index_select", x, index);
  if (index.dim() != 1)
    throw Error("index_select: index must be 1-D, got shape " + shape_str(index.shape()));
  axis = normalize_axis("index_select", axis, x.shape());
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d < axis) outer *= x.shape()[static_cast<size_t>(d)];
    if (d > axis) inner *= x.shape()[static_cast<size_t>(d)];
  }
  const int64_t n = x.shape()[static_cast<size_t>(axis)];
  Shape out_shape = x.shape();
  out_shape[static_cast<size_t>(axis)] = index.numel();
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  if (out.numel() > 0)
    with_op_context("index_select", x, index, [&] { backend_of(x).gather(x, index, out, outer, n, inner); });
  if (!needs_grad({&x})) return out;
  return record("index_select", out, {&x, &index},
                [index = index.detach(), xs = x.shape(), outer, n, inner](const Tensor& g) {
    Tensor dx = Tensor::zeros(xs, DType::f32, g.device());
    if (g.numel() > 0) backend_of(g).scatter_add(g, index, dx, outer, n, inner);
    return std::vector<Tensor>{dx, Tensor()};
  });
}

Tensor embedding(const Tensor& table, const Tensor& ids) {
  profiler::Scope scope("embedding");
  check_dtype("embedding", table, DType::f32, "table");
  check_index_tensor("embedding", table, ids);
  if (table.dim() != 2)
    throw Error("embedding: table must be [V, D], got shape " + shape_str(table.shape()));
  Shape out_shape = ids.shape();
  out_shape.push_back(table.shape()[1]);
  Tensor out = Tensor::empty(out_shape, DType::f32, table.device());
  const int64_t vocab = table.shape()[0], width = table.shape()[1];
  if (out.numel() > 0)
    with_op_context("embedding", table, ids, [&] { backend_of(table).gather(table, ids, out, 1, vocab, width); });
  if (!needs_grad({&table})) return out;
  return record("embedding", out, {&table, &ids}, [ids = ids.detach(), ts = table.shape()](const Tensor& g) {
    Tensor dtable = Tensor::zeros(ts, DType::f32, g.device());
    if (g.numel() > 0) backend_of(g).scatter_add(g, ids, dtable, 1, ts[0], ts[1]);
    return std::vector<Tensor>{dtable, Tensor()};
  });
}

Tensor one_hot(const Tensor& index, int64_t classes, float on, float off) {
  profiler::Scope scope("one_hot");
  check_dtype("one_hot", index, DType::i32, "index");
  if (classes <= 0) throw Error("one_hot: classes must be positive, got " + std::to_string(classes));
  Shape out_shape = index.shape();
  out_shape.push_back(classes);
  Tensor out = Tensor::empty(out_shape, DType::f32, index.device());
  if (out.numel() > 0)
    with_op_context("one_hot", out, index, [&] { backend_of(index).one_hot(index, out, classes, on, off); });
  return out;
}

}  // namespace sparo
