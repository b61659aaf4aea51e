// Learning-rate and hyper-parameter schedules (schedule.h).
#include "training/schedule.h"

#include <cmath>
#include <numbers>
#include <string>

#include "engine/tensor.h"

namespace sparo {

float WarmupCosine::operator()(int64_t step) const {
  if (warmup_steps < 0 || total_steps < warmup_steps)
    throw Error("WarmupCosine: need 0 <= warmup_steps <= total_steps, got warmup_steps " +
                std::to_string(warmup_steps) + " and total_steps " + std::to_string(total_steps));
  if (step < 0) throw Error("WarmupCosine: step must be >= 0, got " + std::to_string(step));
  const double base = base_lr, final = final_lr, start = warmup_start;
  if (step < warmup_steps)
    return static_cast<float>(start + (base - start) * static_cast<double>(step + 1) /
                                          static_cast<double>(warmup_steps));
  if (step >= total_steps) return final_lr;
  const double e = static_cast<double>(step - warmup_steps);
  const double es = static_cast<double>(total_steps - warmup_steps);
  return static_cast<float>(final + 0.5 * (1.0 + std::cos(std::numbers::pi * e / es)) * (base - final));
}

double CosineSchedule::operator()(int64_t step) const {
  if (warmup_steps < 0 || total_steps <= warmup_steps)
    throw Error("CosineSchedule: need 0 <= warmup_steps < total_steps, got warmup_steps " +
                std::to_string(warmup_steps) + " and total_steps " + std::to_string(total_steps));
  if (step < 0) throw Error("CosineSchedule: step must be >= 0, got " + std::to_string(step));
  if (step < warmup_steps) {
    if (warmup_steps == 1) return warmup_start;
    // np.linspace: start + i·delta with delta = (stop - start) / (num - 1), last value exact.
    if (step == warmup_steps - 1) return start;
    const double delta = (start - warmup_start) / static_cast<double>(warmup_steps - 1);
    return warmup_start + static_cast<double>(step) * delta;
  }
  if (step >= total_steps) return end;
  const double i = static_cast<double>(step - warmup_steps);
  const double n = static_cast<double>(total_steps - warmup_steps);
  return end + 0.5 * (start - end) * (1.0 + std::cos(std::numbers::pi * i / n));
}

}  // namespace sparo
