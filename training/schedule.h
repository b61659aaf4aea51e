// Learning-rate and hyper-parameter schedules, as functions of the optimiser step
// (counted from 0: the value for the update that step() is about to make). Both are
// checked against Python references by tests/training/test_optim.cpp (fixture:
// tools/golden/optim_fixture.py). Values are computed in double.
#pragma once

#include <cstdint>

namespace sparo {

// Linear warm-up then cosine decay, in OpenCLIP's convention (open_clip's cosine_lr):
//   step <  W:          warmup_start + (base_lr - warmup_start) · (step + 1) / W
//   W <= step < T:      final_lr + ½ · (1 + cos(π · (step - W) / (T - W))) · (base_lr - final_lr)
//   step >= T:          final_lr
// with W = warmup_steps, T = total_steps. With warmup_start = final_lr = 0 this is exactly
// OpenCLIP's formula: the warm-up reaches base_lr at step W - 1 (never 0 at step 0), the
// cosine starts again from base_lr at step W and comes down towards final_lr, which it
// would reach at step T. OpenCLIP lets the cosine run on (and rise) past T; here the value
// stays at final_lr. Requires 0 <= W <= T and step >= 0 (sparo::Error otherwise).
struct WarmupCosine {
  float base_lr, final_lr = 0.0f;
  int64_t warmup_steps, total_steps;
  float warmup_start = 0.0f;
  float operator()(int64_t step) const;
};

// A cosine schedule for any hyper-parameter, in DINO's convention (dino's cosine_scheduler,
// used for the weight-decay, teacher-momentum and lr schedules):
//   step <  W:          linear from warmup_start (at step 0) to start (at step W - 1),
//                       i.e. np.linspace(warmup_start, start, W); W = 1 gives warmup_start
//   W <= step < T:      end + ½ · (start - end) · (1 + cos(π · (step - W) / (T - W)))
//   step >= T:          end (DINO's table simply ends at T - 1)
// Returns double: a teacher momentum such as 0.9995 → 1 needs the precision near 1.
// Requires 0 <= W < T and step >= 0.
struct CosineSchedule {
  double start, end;
  int64_t total_steps;
  int64_t warmup_steps = 0;
  double warmup_start = 0.0;
  double operator()(int64_t step) const;
};

}  // namespace sparo
