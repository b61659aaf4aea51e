// Compositional hard negatives (eval/compose.h): every kind makes exactly its edit and a
// different caption, refuses when it cannot apply, is deterministic in its random source and
// reaches every alternative; pairwise accuracy on hand-made vectors.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "eval/compose.h"
#include "tests/expect_error.h"

namespace sparo {
namespace {

// A random valid scene of 1..4 items, in reading order.
std::vector<SceneItem> random_scene(SampleRng& rng) {
  std::vector<int> cells = {0, 1, 2, 3};
  for (int i = 3; i > 0; --i) std::swap(cells[static_cast<size_t>(i)], cells[static_cast<size_t>(rng.below(i + 1))]);
  const int count = 1 + static_cast<int>(rng.below(4));
  std::vector<SceneItem> items;
  for (int i = 0; i < count; ++i)
    items.push_back({static_cast<int>(rng.below(10)), static_cast<int>(rng.below(kSceneColours)), cells[static_cast<size_t>(i)]});
  std::sort(items.begin(), items.end(), [](const SceneItem& a, const SceneItem& b) { return a.cell < b.cell; });
  return items;
}

bool any_pair_differs(const std::vector<SceneItem>& items, int SceneItem::*field) {
  for (const SceneItem& a : items)
    for (const SceneItem& b : items)
      if (a.*field != b.*field) return true;
  return false;
}

// The indices where the two scenes (same cells, same order) differ in `field`, checking that
// they agree in every other field.
std::vector<size_t> changed(const std::vector<SceneItem>& a, const std::vector<SceneItem>& b, int SceneItem::*field) {
  std::vector<size_t> out;
  EXPECT_EQ(a.size(), b.size());
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    EXPECT_EQ(a[i].cell, b[i].cell);
    if (field != &SceneItem::item) {
      EXPECT_EQ(a[i].item, b[i].item);
    }
    if (field != &SceneItem::colour) {
      EXPECT_EQ(a[i].colour, b[i].colour);
    }
    if (a[i].*field != b[i].*field) out.push_back(i);
  }
  return out;
}

TEST(EvalCompose, KindNames) {
  std::vector<std::string> names;
  for (NegativeKind kind : kNegativeKinds) names.emplace_back(negative_kind_name(kind));
  EXPECT_EQ(names, (std::vector<std::string>{"replace-object", "replace-colour", "swap-objects", "swap-colours", "add-object"}));
}

TEST(EvalCompose, EveryKindMakesItsEditAndADifferentCaption) {
  SampleRng scenes(1, 0), rng(2, 0);
  int made[5] = {};
  for (int trial = 0; trial < 300; ++trial) {
    const std::vector<SceneItem> items = random_scene(scenes);
    const std::string caption = describe_scene(items);
    for (NegativeKind kind : kNegativeKinds) {
      const auto neg = make_negative(items, kind, rng);
      const bool applies = kind == NegativeKind::swap_objects   ? any_pair_differs(items, &SceneItem::item)
                           : kind == NegativeKind::swap_colours ? any_pair_differs(items, &SceneItem::colour)
                           : kind == NegativeKind::add_object   ? items.size() < 4
                                                                : true;
      ASSERT_EQ(neg.has_value(), applies) << negative_kind_name(kind) << " on " << caption;
      if (!neg) continue;
      ++made[static_cast<int>(kind)];
      EXPECT_NE(describe_scene(*neg), caption) << negative_kind_name(kind);
      EXPECT_TRUE(std::is_sorted(neg->begin(), neg->end(), [](const SceneItem& a, const SceneItem& b) { return a.cell < b.cell; }));
      switch (kind) {
        case NegativeKind::replace_object: EXPECT_EQ(changed(items, *neg, &SceneItem::item).size(), 1u); break;
        case NegativeKind::replace_colour: EXPECT_EQ(changed(items, *neg, &SceneItem::colour).size(), 1u); break;
        case NegativeKind::swap_objects:
        case NegativeKind::swap_colours: {
          const auto field = kind == NegativeKind::swap_objects ? &SceneItem::item : &SceneItem::colour;
          const auto idx = changed(items, *neg, field);
          ASSERT_EQ(idx.size(), 2u);
          EXPECT_EQ(items[idx[0]].*field, (*neg)[idx[1]].*field);
          EXPECT_EQ(items[idx[1]].*field, (*neg)[idx[0]].*field);
          break;
        }
        case NegativeKind::add_object: {
          ASSERT_EQ(neg->size(), items.size() + 1);
          std::vector<SceneItem> kept;
          for (const SceneItem& s : *neg)
            if (std::find(items.begin(), items.end(), s) != items.end()) kept.push_back(s);
          EXPECT_EQ(kept, items);  // every original item is still there, unchanged
          break;
        }
      }
    }
  }
  for (int k = 0; k < 5; ++k) EXPECT_GT(made[k], 50) << negative_kind_name(kNegativeKinds[static_cast<size_t>(k)]);
}

TEST(EvalCompose, NotApplicableGivesNullopt) {
  SampleRng rng(0, 0);
  const std::vector<SceneItem> one = {{3, 2, 1}};
  EXPECT_FALSE(make_negative(one, NegativeKind::swap_objects, rng));
  EXPECT_FALSE(make_negative(one, NegativeKind::swap_colours, rng));
  const std::vector<SceneItem> same_class = {{4, 0, 0}, {4, 5, 3}};
  EXPECT_FALSE(make_negative(same_class, NegativeKind::swap_objects, rng));
  EXPECT_TRUE(make_negative(same_class, NegativeKind::swap_colours, rng));
  const std::vector<SceneItem> same_colour = {{4, 6, 0}, {7, 6, 3}};
  EXPECT_FALSE(make_negative(same_colour, NegativeKind::swap_colours, rng));
  EXPECT_TRUE(make_negative(same_colour, NegativeKind::swap_objects, rng));
  const std::vector<SceneItem> full = {{0, 0, 0}, {1, 1, 1}, {2, 2, 2}, {3, 3, 3}};
  EXPECT_FALSE(make_negative(full, NegativeKind::add_object, rng));
  // With one free cell, the new item goes there.
  const auto added = make_negative(std::vector<SceneItem>(full.begin(), full.begin() + 3), NegativeKind::add_object, rng);
  ASSERT_TRUE(added);
  EXPECT_EQ(added->back().cell, 3);
}

TEST(EvalCompose, DeterministicAndReachesEveryAlternative) {
  const std::vector<SceneItem> items = {{9, 1, 2}};
  std::set<int> classes, colours;
  for (uint64_t stream = 0; stream < 200; ++stream) {
    SampleRng a(4, stream), b(4, stream);
    const auto x = make_negative(items, NegativeKind::replace_object, a);
    EXPECT_EQ(x, make_negative(items, NegativeKind::replace_object, b));
    classes.insert(x->front().item);
    colours.insert(make_negative(items, NegativeKind::replace_colour, a)->front().colour);
  }
  EXPECT_EQ(classes, (std::set<int>{0, 1, 2, 3, 4, 5, 6, 7, 8}));  // all but 9
  EXPECT_EQ(colours, (std::set<int>{0, 2, 3, 4, 5, 6, 7}));        // all but 1
}

TEST(EvalCompose, RejectsInvalidScenes) {
  SampleRng rng(0, 0);
  expect_error([&] { make_negative({}, NegativeKind::add_object, rng); }, {"make_negative", "not a valid scene"});
  expect_error([&] { make_negative({{0, 0, 1}, {2, 3, 1}}, NegativeKind::swap_objects, rng); }, {"make_negative"});
  expect_error([&] { make_negative({{10, 0, 0}}, NegativeKind::replace_object, rng); }, {"make_negative"});
}

TEST(EvalCompose, PairwiseAccuracyOnHandMadeVectors) {
  // Row 0: the positive is closer. Row 1: the negative is. Row 2: a tie (wrong). Row 3: the
  // positive is aligned but short, the negative long and less aligned: right only because the
  // captions are normalised. Expected 2 of 4.
  const Tensor images = Tensor::from_vector(std::vector<float>{1, 0, 0, 1, 1, 0, 0.6f, 0.8f}, {4, 2});
  const Tensor pos = Tensor::from_vector(std::vector<float>{0.9f, 0.1f, 1, 0, 1, 1, 0.06f, 0.08f}, {4, 2});
  const Tensor neg = Tensor::from_vector(std::vector<float>{0.1f, 0.9f, 0, 1, 1, 1, 10, 0}, {4, 2});
  EXPECT_DOUBLE_EQ(pairwise_accuracy(images, pos, neg), 0.5);
  EXPECT_DOUBLE_EQ(pairwise_accuracy(images, pos, pos), 0.0);  // all ties
  // With the images as positives only row 1 (negative (0, 1) equal to its image) is a tie.
  EXPECT_DOUBLE_EQ(pairwise_accuracy(images, images, neg), 0.75);
  expect_error([&] { pairwise_accuracy(images, pos, Tensor::ones({3, 2})); },
               {"pairwise_accuracy", "[4, 2]", "[3, 2]", "same shape"});
}

}  // namespace
}  // namespace sparo
