#include "engine/ops/op_support.h"

#include <algorithm>

namespace sparo::detail {

int64_t normalize_axis(const char* op, int64_t axis, const Shape& shape) {
  const auto rank = static_cast<int64_t>(shape.size());
  if (axis < -rank || axis >= rank)
    throw Error(std::string(op) + ": axis " + std::to_string(axis) + " is out of range for shape " +
                shape_str(shape) + " (rank " + std::to_string(rank) + ")");
  return axis < 0 ? axis + rank : axis;
}

void check_defined(const char* op, const Tensor& t, const char* name) {
  if (!t.defined()) throw Error(std::string(op) + ": argument " + name + " is an undefined tensor");
}

void check_dtype(const char* op, const Tensor& t, DType dtype, const char* name) {
  check_defined(op, t, name);
  if (t.dtype() != dtype)
    throw Error(std::string(op) + ": " + name + " has dtype " + dtype_name(t.dtype()) + " and shape " +
                shape_str(t.shape()) + ", expected " + dtype_name(dtype));
}

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  if (a.device() != b.device())
    throw Error(std::string(op) + ": tensors on different devices (" + a.device().str() + " and " +
                b.device().str() + ")");
}

Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  const size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1)
      throw Error(std::string(op) + ": shapes " + shape_str(a) + " and " + shape_str(b) +
                  " cannot be broadcast together (dimension " + std::to_string(i) + ": " + std::to_string(da) +
                  " vs " + std::to_string(db) + ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    // Checked: ops call this before creating the output (broadcasting can make a shape
    // larger than any operand's), and a wrapped stride would address out of bounds.
    if (__builtin_mul_overflow(s, shape[i], &s))
      throw Error("shape " + shape_str(shape) + ": the element count overflows int64");
  }
  return strides;
}

ElementwisePlan make_elementwise_plan(const Shape& out_shape, std::initializer_list<Shape> operands) {
  const size_t rank = out_shape.size();
  const size_t count = operands.size() + 1;
  // Per-operand strides over out's axes: 0 where the operand is broadcast.
  std::vector<Shape> strides(count, Shape(rank, 0));
  strides[0] = contiguous_strides(out_shape);
  size_t k = 1;
  for (const Shape& s : operands) {
    const Shape own = contiguous_strides(s);
    for (size_t i = 0; i < s.size(); ++i) {
      const size_t axis = rank - s.size() + i;
      strides[k][axis] = s[i] == 1 ? 0 : own[i];
    }
    ++k;
  }
  ElementwisePlan plan;
  plan.numel = numel(out_shape);
  for (size_t axis = 0; axis < rank; ++axis) {
    if (out_shape[axis] == 1) continue;  // size-1 axes add nothing
    const bool mergeable = plan.rank > 0 && [&] {
      for (size_t op = 0; op < count; ++op)
        if (plan.strides[op][plan.rank - 1] != strides[op][axis] * out_shape[axis]) return false;
      return true;
    }();
    if (mergeable) {
      plan.dims[plan.rank - 1] *= out_shape[axis];
      for (size_t op = 0; op < count; ++op) plan.strides[op][plan.rank - 1] = strides[op][axis];
    } else {
      plan.dims[plan.rank] = out_shape[axis];
      for (size_t op = 0; op < count; ++op) plan.strides[op][plan.rank] = strides[op][axis];
      ++plan.rank;
    }
  }
  if (plan.numel == 0) plan.rank = 1, plan.dims[0] = 0;
  return plan;
}

CopyPlan make_copy_plan(const Shape& dims, const Shape& src_strides, int64_t src_offset, const Shape& dst_strides,
                        int64_t dst_offset) {
  CopyPlan plan;
  plan.src_offset = src_offset;
  plan.dst_offset = dst_offset;
  for (size_t axis = 0; axis < dims.size(); ++axis) {
    if (dims[axis] == 1) continue;
    const int r = plan.rank;
    if (r > 0 && plan.src_strides[r - 1] == src_strides[axis] * dims[axis] &&
        plan.dst_strides[r - 1] == dst_strides[axis] * dims[axis]) {
      plan.dims[r - 1] *= dims[axis];
      plan.src_strides[r - 1] = src_strides[axis];
      plan.dst_strides[r - 1] = dst_strides[axis];
    } else {
      plan.dims[r] = dims[axis];
      plan.src_strides[r] = src_strides[axis];
      plan.dst_strides[r] = dst_strides[axis];
      ++plan.rank;
    }
  }
  if (numel(dims) == 0) plan.rank = 1, plan.dims[0] = 0;
  return plan;
}

}  // namespace sparo::detail

namespace sparo {

const std::vector<std::string>& differentiable_op_names() {
#define SPARO_OP_NAME(name) #name,
  static const std::vector<std::string> names{SPARO_DIFFERENTIABLE_OPS(SPARO_OP_NAME)};
#undef SPARO_OP_NAME
  return names;
}

}  // namespace sparo
