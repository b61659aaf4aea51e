// cross_entropy, composed from log_softmax and a (smoothed) one-hot target.
#include "engine/ops/op_support.h"

namespace sparo {

using namespace detail;

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, float label_smoothing) {
  check_dtype("cross_entropy", logits, DType::f32, "logits");
  check_dtype("cross_entropy", targets, DType::i32, "targets");
  if (logits.dim() != 2 || targets.dim() != 1 || targets.shape()[0] != logits.shape()[0])
    throw Error("cross_entropy: expected logits [R, C] and targets [R], got logits " + shape_str(logits.shape()) +
                " and targets " + shape_str(targets.shape()));
  if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f))
    throw Error("cross_entropy: label_smoothing must be in [0, 1], got " + std::to_string(label_smoothing));
  const int64_t rows = logits.shape()[0], classes = logits.shape()[1];
  if (rows == 0) throw Error("cross_entropy: no rows (logits shape " + shape_str(logits.shape()) + ")");
  // Target distribution q = (1-ε)·onehot + ε/C;  loss = -mean over rows of Σ_c q·log p.
  const float off = label_smoothing / static_cast<float>(classes);
  Tensor q;
  try {
    q = one_hot(targets, classes, 1.0f - label_smoothing + off, off);
  } catch (const Error& e) {
    throw Error(std::string("cross_entropy: target ") + e.what());
  }
  return affine(sum(mul(q, log_softmax(logits))), -1.0f / static_cast<float>(rows), 0.0f);
}

}  // namespace sparo
