// layer_norm (a kernel pair) and l2_normalize (composed from other ops).
#include <cfloat>

#include "engine/ops/op_support.h"

namespace sparo {

using namespace detail;

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
  profiler::Scope scope("layer_norm");
  check_dtype("layer_norm", x, DType::f32, "x");
  check_dtype("layer_norm", weight, DType::f32, "weight");
  if (x.dim() == 0) throw Error("layer_norm: needs at least one axis, got a scalar");
  const int64_t cols = x.shape().back();
  if (weight.shape() != Shape{cols})
    throw Error("layer_norm: weight has shape " + shape_str(weight.shape()) + ", expected [" + std::to_string(cols) +
                "] for input of shape " + shape_str(x.shape()));
  if (bias.defined()) {
    check_dtype("layer_norm", bias, DType::f32, "bias");
    if (bias.shape() != Shape{cols})
      throw Error("layer_norm: bias has shape " + shape_str(bias.shape()) + ", expected [" + std::to_string(cols) +
                  "] for input of shape " + shape_str(x.shape()));
  }
  if (!(eps > 0.0f)) throw Error("layer_norm: eps must be positive, got " + std::to_string(eps));
  const int64_t rows = cols ? x.numel() / cols : 0;
  Tensor y = Tensor::empty(x.shape(), DType::f32, x.device());
  Tensor mean = Tensor::empty({rows}, DType::f32, x.device());
  Tensor rstd = Tensor::empty({rows}, DType::f32, x.device());
  if (y.numel() > 0) backend_of(x).layer_norm(x, weight, bias, y, mean, rstd, rows, cols, eps);
  add_bytes({&x, &y});  // the [rows, cols] tensors; the rest is small
  if (!needs_grad({&x, &weight, &bias})) return y;
  const bool want_dw = weight.requires_grad(), want_db = bias.defined() && bias.requires_grad();
  return record("layer_norm", y, {&x, &weight, &bias},
                [x = x.detach(), w = weight.detach(), mean, rstd, rows, cols, want_dw, want_db](const Tensor& g) {
    Tensor dx = Tensor::empty(x.shape(), DType::f32, x.device());
    Tensor dw = want_dw ? Tensor::empty({cols}, DType::f32, x.device()) : Tensor();
    Tensor db = want_db ? Tensor::empty({cols}, DType::f32, x.device()) : Tensor();
    if (rows > 0 && cols > 0) backend_of(x).layer_norm_backward(x, w, mean, rstd, g, dx, dw, db, rows, cols);
    else { if (dw.defined()) fill_(dw, 0.0f); if (db.defined()) fill_(db, 0.0f); }
    add_bytes({&x, &g, &dx});
    return std::vector<Tensor>{dx, dw, db};
  });
}

// No profiler scope: composed from ops whose nodes (square, sum, clamp, sqrt, div) are its rows.
Tensor l2_normalize(const Tensor& x, int64_t axis, float eps) {
  check_dtype("l2_normalize", x, DType::f32, "x");
  axis = normalize_axis("l2_normalize", axis, x.shape());
  // max(‖x‖, eps) computed as sqrt(max(‖x‖², eps²)): the same value, and a zero vector
  // gets a zero gradient instead of 0·∞.
  const Tensor norm = sqrt(clamp(sum(square(x), axis, true), eps * eps, FLT_MAX));
  return div(x, norm);
}

}  // namespace sparo
