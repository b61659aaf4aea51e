// dropout and drop_path: a seeded uniform draw turned into a scaled keep-mask.
#include "engine/ops/op_support.h"

namespace sparo {

using namespace detail;

static Tensor keep_mask(const char* op, const Shape& shape, float p, Generator& gen, Device device) {
  if (!(p >= 0.0f && p <= 1.0f)) throw Error(std::string(op) + ": p must be in [0, 1], got " + std::to_string(p));
  // u >= p keeps the element (probability 1-p); kept elements are scaled by 1/(1-p).
  const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  const BatchShard& shard = gen.batch_shard();
  if (!shard.active()) return step(Tensor::uniform(shape, 0.0, 1.0, gen, device), p, scale);
  // A data-parallel slice of a batch (random.h): draw for the whole batch, keep this process's
  // rows of each group of `global` rows (DINO's student sees [crop 0 of its images, crop 1, ...]).
  if (shape.empty() || shape[0] % shard.local != 0)
    throw Error(std::string(op) + ": the generator draws for rows [" + std::to_string(shard.first) + ", " +
                std::to_string(shard.first + shard.local) + ") of a batch of " + std::to_string(shard.global) +
                ", so the tensor needs a multiple of " + std::to_string(shard.local) + " rows, got " + shape_str(shape));
  const int64_t groups = shape[0] / shard.local;
  Shape whole = shape;
  whole[0] = groups * shard.global;
  const Tensor u = Tensor::uniform(whole, 0.0, 1.0, gen, device);
  std::vector<Tensor> rows;
  for (int64_t g = 0; g < groups; ++g)
    rows.push_back(slice(u, 0, g * shard.global + shard.first, g * shard.global + shard.first + shard.local));
  return step(groups == 1 ? rows[0] : concat(rows, 0), p, scale);
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
