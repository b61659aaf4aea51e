// softmax / log_softmax over the last axis, with an optional additive mask.
#include "engine/ops/op_support.h"

namespace sparo {

using namespace detail;

static Tensor softmax_op(const char* op, const Tensor& x, const Tensor& mask, bool log) {
  profiler::Scope scope(op);
  check_dtype(op, x, DType::f32, "x");
  if (x.dim() == 0) throw Error(std::string(op) + ": needs at least one axis, got a scalar");
  ElementwisePlan mask_plan;
  if (mask.defined()) {
    check_dtype(op, mask, DType::f32, "mask");
    check_same_device(op, x, mask);
    bool broadcasts = mask.dim() <= x.dim();
    for (int64_t i = 1; broadcasts && i <= mask.dim(); ++i) {
      const int64_t m = mask.shape()[static_cast<size_t>(mask.dim() - i)];
      broadcasts = m == 1 || m == x.shape()[static_cast<size_t>(x.dim() - i)];
    }
    if (!broadcasts)
      throw Error(std::string(op) + ": mask of shape " + shape_str(mask.shape()) +
                  " does not broadcast to the input's shape " + shape_str(x.shape()));
    mask_plan = make_elementwise_plan(x.shape(), {mask.shape()});
  }
  const int64_t cols = x.shape().back();
  const int64_t rows = cols ? x.numel() / cols : 0;
  Tensor y = Tensor::empty(x.shape(), DType::f32, x.device());
  if (y.numel() > 0) backend_of(x).softmax(x, mask, mask_plan, y, rows, cols, log);
  add_bytes({&x, &mask, &y});
  if (!needs_grad({&x, &mask})) return y;
  return record(op, y, {&x, &mask},
                [y = y.detach(), rows, cols, log, mask_grad = mask.defined() && mask.requires_grad(),
                 ms = mask.defined() ? mask.shape() : Shape{}](const Tensor& g) {
    Tensor dx = Tensor::empty(y.shape(), DType::f32, y.device());
    if (dx.numel() > 0) backend_of(y).softmax_backward(y, g, dx, rows, cols, log);
    add_bytes({&y, &g, &dx});
    // softmax(x + m): the mask receives the same gradient as x, summed over its broadcast.
    return std::vector<Tensor>{dx, mask_grad ? sum_to_shape(dx, ms) : Tensor()};
  });
}

Tensor softmax(const Tensor& x, const Tensor& mask) { return softmax_op("softmax", x, mask, false); }
Tensor log_softmax(const Tensor& x, const Tensor& mask) { return softmax_op("log_softmax", x, mask, true); }

}  // namespace sparo
