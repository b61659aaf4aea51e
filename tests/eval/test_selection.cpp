// Slot selection (eval/selection.h): greedy forward selection on metrics whose best subsets and
// stopping points are known, the drop-one study, and masking SPARO embeddings, together with
// pairwise_accuracy on a case where one slot helps and the other hurts.
#include <gtest/gtest.h>

#include <cmath>

#include "eval/compose.h"
#include "eval/selection.h"
#include "tests/expect_error.h"

namespace sparo {
namespace {

// Σ weight[l] over the selected slots; fails the test if called with no slot.
SlotMetric additive(const std::vector<double>& weight, int* calls = nullptr) {
  return [weight, calls](const std::vector<bool>& mask) {
    EXPECT_EQ(mask.size(), weight.size());
    if (calls) ++*calls;
    double total = 0;
    bool any = false;
    for (size_t l = 0; l < mask.size(); ++l)
      if (mask[l]) {
        total += weight[l];
        any = true;
      }
    EXPECT_TRUE(any) << "evaluated with an empty mask";
    return total;
  };
}

TEST(EvalSelection, GreedyFindsTheBestSubsetOfAnAdditiveMetric) {
  const std::vector<double> w = {3, -2, 5, 1, -4, 0};
  const SelectionResult r = greedy_forward_selection(6, additive(w));
  EXPECT_EQ(r.order, (std::vector<int>{2, 0, 3}));  // then slot 5 adds 0: no improvement
  EXPECT_EQ(r.metric, (std::vector<double>{5, 8, 9}));
  EXPECT_EQ(r.mask, (std::vector<bool>{true, false, true, true, false, false}));
  EXPECT_EQ(r.best_metric, 9);
  // The brute-force optimum over all non-empty subsets.
  double best = -1e9;
  for (int bits = 1; bits < 64; ++bits) {
    std::vector<bool> mask(6);
    for (int l = 0; l < 6; ++l) mask[static_cast<size_t>(l)] = (bits >> l) & 1;
    best = std::max(best, additive(w)(mask));
  }
  EXPECT_EQ(r.best_metric, best);
}

TEST(EvalSelection, TiesGoToTheSmallestSlot) {
  const SelectionResult r = greedy_forward_selection(4, additive({1, 2, 2, 0}));
  EXPECT_EQ(r.order, (std::vector<int>{1, 2, 0}));
  EXPECT_EQ(r.metric, (std::vector<double>{2, 4, 5}));
}

TEST(EvalSelection, BudgetStopsEarly) {
  const SelectionResult r = greedy_forward_selection(6, additive({3, -2, 5, 1, -4, 0}), 2);
  EXPECT_EQ(r.order, (std::vector<int>{2, 0}));
  EXPECT_EQ(r.best_metric, 8);
}

TEST(EvalSelection, KnownStoppingPointAndTheFullPath) {
  // metric = -10·(|S| - 3)² + Σ_{l ∈ S} (l + 1): the slots are taken from the top, three is best.
  const SlotMetric peaked = [](const std::vector<bool>& mask) {
    double count = 0, bonus = 0;
    for (size_t l = 0; l < mask.size(); ++l)
      if (mask[l]) {
        count += 1;
        bonus += static_cast<double>(l + 1);
      }
    return -10.0 * (count - 3) * (count - 3) + bonus;
  };
  const SelectionResult stop = greedy_forward_selection(6, peaked);
  EXPECT_EQ(stop.order, (std::vector<int>{5, 4, 3}));
  EXPECT_EQ(stop.metric, (std::vector<double>{-34, 1, 15}));  // adding slot 2 next would give 8

  const SelectionResult full = greedy_forward_selection(6, peaked, -1, /*stop_when_worse=*/false);
  EXPECT_EQ(full.order, (std::vector<int>{5, 4, 3, 2, 1, 0}));
  EXPECT_EQ(full.metric, (std::vector<double>{-34, 1, 15, 8, -20, -69}));
  EXPECT_EQ(full.mask, (std::vector<bool>{false, false, false, true, true, true}));  // the best prefix
  EXPECT_EQ(full.best_metric, 15);

  int calls = 0;
  greedy_forward_selection(4, additive({1, 1, 1, 1}, &calls), -1, false);
  EXPECT_EQ(calls, 4 + 3 + 2 + 1);
}

TEST(EvalSelection, DropOneIsExact) {
  // Additive weights plus a bonus of 10 when slots 0 and 1 are both in.
  const std::vector<double> w = {1, 2, 4, 8};
  const SlotMetric metric = [w](const std::vector<bool>& mask) {
    double total = mask[0] && mask[1] ? 10 : 0;
    for (size_t l = 0; l < mask.size(); ++l) total += mask[l] ? w[l] : 0;
    return total;
  };
  EXPECT_EQ(drop_one_slot(4, metric), (std::vector<double>{-11, -12, -4, -8}));
}

TEST(EvalSelection, RejectsBadArguments) {
  const SlotMetric one = additive({1, 1, 1});
  expect_error([&] { greedy_forward_selection(0, one); }, {"greedy_forward_selection", "slots = 0"});
  expect_error([&] { greedy_forward_selection(3, one, 4); }, {"greedy_forward_selection", "max_slots = 4", "[1, 3]"});
  expect_error([&] { greedy_forward_selection(3, one, 0); }, {"greedy_forward_selection", "max_slots = 0"});
  expect_error([&] { greedy_forward_selection(3, [](const std::vector<bool>& m) { return m[1] ? NAN : 1.0; }); },
               {"greedy_forward_selection", "slots {1}", "not finite"});
  expect_error([&] { drop_one_slot(1, additive({1})); }, {"drop_one_slot", "slots = 1"});
}

TEST(EvalMaskSlots, ZeroesAndRenormalises) {
  // L = 3 slots of V = 2. Keeping slots 0 and 2: row 0 -> (3,0 | 0,0 | 0,4)/5, row 1 -> halves.
  const Tensor e = Tensor::from_vector(std::vector<float>{3, 0, 7, 7, 0, 4, 1, 1, 1, 1, 1, 1}, {2, 6});
  const std::vector<float> got = mask_slots(e, 3, {true, false, true}).to_float_vector();
  const std::vector<float> want = {0.6f, 0, 0, 0, 0, 0.8f, 0.5f, 0.5f, 0, 0, 0.5f, 0.5f};
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6f) << i;
  // Everything kept: just the normalisation.
  const std::vector<float> all = mask_slots(e, 3, {true, true, true}).to_float_vector();
  EXPECT_NEAR(all[0], 3.0f / std::sqrt(123.0f), 1e-6f);

  expect_error([&] { mask_slots(e, 4, {true, true, true, true}); }, {"mask_slots", "L = 4", "[2, 6]"});
  expect_error([&] { mask_slots(e, 3, {true, true}); }, {"mask_slots", "2 entries", "L = 3"});
  expect_error([&] { mask_slots(e, 3, {false, false, false}); }, {"mask_slots", "no slot"});
}

TEST(EvalMaskSlots, SelectionKeepsTheHelpfulSlot) {
  // Two slots of V = 2. Slot 0 of every image matches its true caption, slot 1 matches the
  // negative; with both, the two similarities tie (counted wrong). Greedy keeps slot 0 alone.
  const Tensor images = Tensor::from_vector(std::vector<float>{1, 0, 1, 0, 0, 1, 0, 1}, {2, 4});
  const Tensor pos = Tensor::from_vector(std::vector<float>{1, 0, 0, 1, 0, 1, 1, 0}, {2, 4});
  const Tensor neg = Tensor::from_vector(std::vector<float>{0, 1, 1, 0, 1, 0, 0, 1}, {2, 4});
  const SlotMetric metric = [&](const std::vector<bool>& mask) {
    return pairwise_accuracy(mask_slots(images, 2, mask), mask_slots(pos, 2, mask), mask_slots(neg, 2, mask));
  };
  EXPECT_EQ(metric({true, true}), 0.0);
  const SelectionResult r = greedy_forward_selection(2, metric);
  EXPECT_EQ(r.order, (std::vector<int>{0}));
  EXPECT_EQ(r.best_metric, 1.0);
  EXPECT_EQ(drop_one_slot(2, metric), (std::vector<double>{0.0, 1.0}));
}

}  // namespace
}  // namespace sparo
