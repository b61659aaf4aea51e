// dropout and drop_path: a seeded uniform draw turned into a scaled keep-mask.
#include "engine/ops/op_support.h"

namespace sparo {

using namespace detail;

static Tensor keep_mask(const char* op, const Shape& shape, float p, Generator& gen, Device device) {
  if (!(p >= 0.0f && p <= 1.0f)) throw Error(std::string(op) + ": p must be in [0, 1], got " + std::to_string(p));
  // u >= p keeps the element (probability 1-p); kept elements are scaled by 1/(1-p).
  const Tensor u = Tensor::uniform(shape, 0.0, 1.0, gen, device);
  return step(u, p, p < 1.0f ? 1.0f / (1.0f - p) : 0.0f);
}

Tensor dropout(const Tensor& x, float p, Generator& gen, bool training) {
  check_dtype("dropout", x, DType::f32, "x");
  if (!training || p == 0.0f) return x;
  return mul(x, keep_mask("dropout", x.shape(), p, gen, x.device()));
}

Tensor drop_path(const Tensor& x, float p, Generator& gen, bool training) {
  check_dtype("drop_path", x, DType::f32, "x");
  if (x.dim() == 0) throw Error("drop_path: needs a batch axis, got a scalar");
  if (!training || p == 0.0f) return x;
  Shape per_sample(x.shape().size(), 1);
  per_sample[0] = x.shape()[0];
  return mul(x, keep_mask("drop_path", per_sample, p, gen, x.device()));
}

}  // namespace sparo
