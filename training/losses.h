// Training objectives beyond the models' own: DINO's self-distillation loss with its
// centred, sharpened teacher. (CLIP's symmetric InfoNCE is models/clip.h's clip_loss.)
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace sparo {

// facebookresearch/dino's DINOLoss:
//   q_i = softmax((teacher_i - center) / teacher_temp)     i over the 2 global crops (no gradient)
//   p_v = log_softmax(student_v / student_temp)            v over all crops
//   loss = Σ_{i, v ≠ i} mean_b(-Σ_k q_i[b, k] · p_v[b, k]) / (2 · (crops - 1))
// and after each call the centre moves towards the teacher's batch mean:
//   center = center · m + mean_b(teacher) · (1 - m).
// Rows are grouped by crop: student [crops · B, K] (the 2 global crops first, as the teacher
// sees them), teacher [2 · B, K].
//
// Each call also leaves the two collapse signals the DINO paper monitors, as scalar tensors
// on the device (read only when logged): the mean entropy of the teacher's rows q_i[b] (ln K
// when the teacher is uniform: collapse to uniform) and the entropy of their batch mean
// (0 when every row picks the same prototype: collapse to one dimension).
class DinoLoss {
 public:
  DinoLoss(int64_t out_dim, int64_t crops, float student_temp, float center_momentum, Device device = Device::cpu());
  Tensor operator()(const Tensor& student, const Tensor& teacher, float teacher_temp);

  Tensor center;  // [1, K], starts at 0; part of a checkpoint
  Tensor teacher_entropy, teacher_batch_entropy;  // [] of the last call
  // [] of the last call: the mean KL(q_i ‖ p_v) over the loss's pairs, i.e. loss − teacher
  // entropy (each teacher crop meets the same number of student crops). It falls as the
  // student learns the teacher; the loss alone also falls when the teacher merely sharpens.
  Tensor kl;
  int64_t crops;
  float student_temp, center_momentum;
};

}  // namespace sparo
