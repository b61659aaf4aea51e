// Concept (slot) selection for SPARO embeddings (../shared/docs/SPARO.md, section 5): a
// downstream task keeps a subset of the L slots, re-normalised. Greedy forward selection picks
// the subset on a validation split; the drop-one study shows how much each slot matters.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "engine/tensor.h"

namespace sparo {

// evaluate(mask) is the metric (higher is better) using only the slots l with mask[l] = true;
// it is never called with an empty mask. A non-finite metric is an error.
using SlotMetric = std::function<double(const std::vector<bool>&)>;

struct SelectionResult {
  std::vector<int> order;      // the slots in the order they were added
  std::vector<double> metric;  // metric[i]: with order[0..i]
  std::vector<bool> mask;      // the best prefix of order (the earliest on ties)
  double best_metric = 0;      // its metric
};

// Greedy forward selection: start with no slot; each round adds the slot whose addition gives
// the best metric (ties: the smallest slot index), until max_slots slots (-1: all `slots`) are
// in or, with stop_when_worse, the best addition does not improve on the current metric (that
// addition is then not made). The first slot is always added. 1 <= max_slots <= slots or -1.
SelectionResult greedy_forward_selection(int slots, const SlotMetric& evaluate, int max_slots = -1,
                                         bool stop_when_worse = true);

// The drop-one study: for each slot l, metric(all but l) - metric(all). slots >= 2.
std::vector<double> drop_one_slot(int slots, const SlotMetric& evaluate);

// SPARO embeddings [N, L·V] (slot-major: slot l is columns [l·V, (l+1)·V)) with the slots whose
// mask entry is false zeroed and each row re-normalised to unit L2 norm. mask has L entries, at
// least one true.
Tensor mask_slots(const Tensor& embeds, int64_t L, const std::vector<bool>& mask);

}  // namespace sparo
