// Shared by the op files: argument checks with clear messages, broadcasting plans.
#pragma once

#include <string>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/profiler.h"

namespace sparo::detail {

inline Backend& backend_of(const Tensor& t) { return backend_for(t.device()); }

// For the profiler's GB/s column: the tensors a kernel reads and writes, each listed once per
// pass (an undefined one counts 0). Sizes are computed only when the profiler is on, so the off
// path stays one flag check.
inline void add_bytes(std::initializer_list<const Tensor*> tensors) {
  if (!profiler::enabled()) return;
  double bytes = 0.0;
  for (const Tensor* t : tensors)
    if (t->defined()) bytes += static_cast<double>(t->numel()) * static_cast<double>(dtype_size(t->dtype()));
  profiler::add_work(0.0, bytes);
}

// Axis in [-rank, rank) -> [0, rank); error names the op and the shape.
int64_t normalize_axis(const char* op, int64_t axis, const Shape& shape);

void check_defined(const char* op, const Tensor& t, const char* name);
void check_dtype(const char* op, const Tensor& t, DType dtype, const char* name);
void check_same_device(const char* op, const Tensor& a, const Tensor& b);

// NumPy broadcasting of two shapes; the error names the op and both shapes.
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);

// Plan over out_shape for out (operand 0) and the given operand shapes (each
// broadcastable to out_shape).
ElementwisePlan make_elementwise_plan(const Shape& out_shape, std::initializer_list<Shape> operands);

// Copy plan for the region of src given by per-axis strides/offset into dst likewise;
// dims of size 1 are dropped and contiguous runs merged.
CopyPlan make_copy_plan(const Shape& dims, const Shape& src_strides, int64_t src_offset,
                        const Shape& dst_strides, int64_t dst_offset);

Shape contiguous_strides(const Shape& shape);

}  // namespace sparo::detail
