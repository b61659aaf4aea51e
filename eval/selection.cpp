#include "eval/selection.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "engine/ops.h"

namespace sparo {

namespace {

double checked_metric(const char* function, const SlotMetric& evaluate, const std::vector<bool>& mask) {
  const double value = evaluate(mask);
  if (!std::isfinite(value)) {
    std::string slots;
    for (size_t l = 0; l < mask.size(); ++l)
      if (mask[l]) slots += (slots.empty() ? "" : ", ") + std::to_string(l);
    throw Error(std::string(function) + ": the metric with slots {" + slots + "} is not finite (" + std::to_string(value) + ")");
  }
  return value;
}

}  // namespace

SelectionResult greedy_forward_selection(int slots, const SlotMetric& evaluate, int max_slots, bool stop_when_worse) {
  if (slots < 1) throw Error("greedy_forward_selection: slots = " + std::to_string(slots) + ", expected >= 1");
  if (max_slots == -1) max_slots = slots;
  if (max_slots < 1 || max_slots > slots)
    throw Error("greedy_forward_selection: max_slots = " + std::to_string(max_slots) + " must be -1 or in [1, " +
                std::to_string(slots) + "]");
  if (!evaluate) throw Error("greedy_forward_selection: no metric function given");

  SelectionResult result;
  std::vector<bool> mask(static_cast<size_t>(slots), false);
  while (static_cast<int>(result.order.size()) < max_slots) {
    int best_slot = -1;
    double best = 0;
    for (int l = 0; l < slots; ++l) {
      if (mask[static_cast<size_t>(l)]) continue;
      mask[static_cast<size_t>(l)] = true;
      const double value = checked_metric("greedy_forward_selection", evaluate, mask);
      mask[static_cast<size_t>(l)] = false;
      if (best_slot < 0 || value > best) {
        best_slot = l;
        best = value;
      }
    }
    if (stop_when_worse && !result.metric.empty() && !(best > result.metric.back())) break;
    mask[static_cast<size_t>(best_slot)] = true;
    result.order.push_back(best_slot);
    result.metric.push_back(best);
  }

  size_t best_prefix = 0;
  for (size_t i = 1; i < result.metric.size(); ++i)
    if (result.metric[i] > result.metric[best_prefix]) best_prefix = i;
  result.mask.assign(static_cast<size_t>(slots), false);
  for (size_t i = 0; i <= best_prefix; ++i) result.mask[static_cast<size_t>(result.order[i])] = true;
  result.best_metric = result.metric[best_prefix];
  return result;
}

std::vector<double> drop_one_slot(int slots, const SlotMetric& evaluate) {
  if (slots < 2) throw Error("drop_one_slot: slots = " + std::to_string(slots) + ", expected >= 2 (dropping the only slot leaves none)");
  if (!evaluate) throw Error("drop_one_slot: no metric function given");
  std::vector<bool> mask(static_cast<size_t>(slots), true);
  const double all = checked_metric("drop_one_slot", evaluate, mask);
  std::vector<double> change;
  for (size_t l = 0; l < mask.size(); ++l) {
    mask[l] = false;
    change.push_back(checked_metric("drop_one_slot", evaluate, mask) - all);
    mask[l] = true;
  }
  return change;
}

Tensor mask_slots(const Tensor& embeds, int64_t L, const std::vector<bool>& mask) {
  if (!embeds.defined() || embeds.dtype() != DType::f32 || embeds.dim() != 2 || L < 1 || embeds.size(1) % L != 0 ||
      embeds.size(1) == 0)
    throw Error("mask_slots: embeds must be f32 [N, L·V] with L = " + std::to_string(L) + " >= 1 and V >= 1, got " +
                (embeds.defined() ? std::string(dtype_name(embeds.dtype())) + " " + shape_str(embeds.shape()) : "undefined"));
  if (static_cast<int64_t>(mask.size()) != L)
    throw Error("mask_slots: mask has " + std::to_string(mask.size()) + " entries, expected L = " + std::to_string(L));
  if (std::find(mask.begin(), mask.end(), true) == mask.end()) throw Error("mask_slots: the mask selects no slot");
  std::vector<float> keep(mask.size());
  for (size_t l = 0; l < mask.size(); ++l) keep[l] = mask[l] ? 1.0f : 0.0f;
  const int64_t n = embeds.size(0), v = embeds.size(1) / L;
  const Tensor kept = mul(reshape(embeds, {n, L, v}), Tensor::from_vector(keep, {1, L, 1}, embeds.device()));
  return l2_normalize(reshape(kept, {n, L * v}), -1);
}

}  // namespace sparo
