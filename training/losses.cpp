#include "training/losses.h"

#include "engine/autograd.h"
#include "engine/ops.h"
#include "training/distributed.h"

namespace sparo {

DinoLoss::DinoLoss(int64_t out_dim, int64_t crops_, float student_temp_, float center_momentum_, Device device)
    : center(Tensor::zeros({1, out_dim}, DType::f32, device)),
      crops(crops_),
      student_temp(student_temp_),
      center_momentum(center_momentum_) {
  if (crops < 2) throw Error("DINO loss: needs at least the 2 global crops, got " + std::to_string(crops));
}

Tensor DinoLoss::operator()(const Tensor& student, const Tensor& teacher, float teacher_temp) {
  const int64_t K = center.size(1);
  if (student.dim() != 2 || student.size(1) != K || student.size(0) % crops != 0)
    throw Error("DINO loss: student output must be [crops·B, " + std::to_string(K) + "] with " + std::to_string(crops) +
                " crops, got " + shape_str(student.shape()));
  const int64_t B = student.size(0) / crops;
  if (teacher.dim() != 2 || teacher.size(0) != 2 * B || teacher.size(1) != K)
    throw Error("DINO loss: teacher output must be [2·" + std::to_string(B) + ", " + std::to_string(K) + "], got " +
                shape_str(teacher.shape()));

  Tensor q;       // [2, B, K]
  Tensor q_mean;  // [K]
  {
    NoGradGuard no_grad;
    const Tensor log_q = log_softmax(affine(sub(teacher, center), 1.0f / teacher_temp, 0.0f));  // [2B, K]
    const Tensor q_rows = exp(log_q);
    teacher_entropy = neg(mean(sum(mul(q_rows, log_q), 1)));
    q_mean = mean(q_rows, 0);
    q = reshape(q_rows, {2, B, K});
  }
  const Tensor p = reshape(log_softmax(affine(student, 1.0f / student_temp, 0.0f)), {crops, B, K});
  // Σ_{v ≠ i} p_v = (Σ_v p_v) - p_i, so all pairs cost one sum instead of 2·(crops-1) products.
  const Tensor p_all = sum(p, 0, /*keepdim=*/true);                   // [1, B, K]
  const Tensor others = sub(p_all, slice(p, 0, 0, 2));                // [2, B, K]
  const float scale = -1.0f / static_cast<float>(B * 2 * (crops - 1));
  const Tensor loss = affine(sum(mul(q, others)), scale, 0.0f);

  {
    NoGradGuard no_grad;
    const Tensor batch_center = mean(teacher, 0, /*keepdim=*/true);
    Tensor loss_mean = loss.detach().clone();
    // Data parallel: the batch statistics are those of the global batch, the mean over the
    // processes of their equal-sized slices' (one bucket; nothing happens without mpirun), so
    // the centre moves the same on every process, as one process's would.
    distributed::allreduce_mean({batch_center, teacher_entropy, q_mean, loss_mean});
    // The batch mean can hold exact zeros (underflow): 0 · log(1e-30) adds nothing.
    teacher_batch_entropy = neg(sum(mul(q_mean, log(clamp(q_mean, 1e-30f, 1.0f)))));
    ema_(center, batch_center, center_momentum);
    kl = sub(loss_mean, teacher_entropy);
  }
  return loss;
}

}  // namespace sparo
