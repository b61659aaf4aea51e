#include "eval/compose.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "eval/metrics.h"

namespace sparo {

const char* negative_kind_name(NegativeKind kind) {
  switch (kind) {
    case NegativeKind::replace_object: return "replace-object";
    case NegativeKind::replace_colour: return "replace-colour";
    case NegativeKind::swap_objects: return "swap-objects";
    case NegativeKind::swap_colours: return "swap-colours";
    case NegativeKind::add_object: return "add-object";
  }
  throw Error("negative_kind_name: unknown kind " + std::to_string(static_cast<int>(kind)));
}

namespace {

// The pairs (a, b), a < b, of items that differ in `field`, in order.
std::vector<std::pair<size_t, size_t>> differing_pairs(const std::vector<SceneItem>& items, int SceneItem::*field) {
  std::vector<std::pair<size_t, size_t>> pairs;
  for (size_t a = 0; a < items.size(); ++a)
    for (size_t b = a + 1; b < items.size(); ++b)
      if (items[a].*field != items[b].*field) pairs.emplace_back(a, b);
  return pairs;
}

std::optional<std::vector<SceneItem>> swap_field(std::vector<SceneItem> items, int SceneItem::*field, SampleRng& rng) {
  const auto pairs = differing_pairs(items, field);
  if (pairs.empty()) return std::nullopt;
  const auto [a, b] = pairs[static_cast<size_t>(rng.below(static_cast<int64_t>(pairs.size())))];
  std::swap(items[a].*field, items[b].*field);
  return items;
}

// Moves one item's `field` to one of the other `values` - 1 values.
std::vector<SceneItem> replace_field(std::vector<SceneItem> items, int SceneItem::*field, int values, SampleRng& rng) {
  SceneItem& item = items[static_cast<size_t>(rng.below(static_cast<int64_t>(items.size())))];
  item.*field = (item.*field + 1 + static_cast<int>(rng.below(values - 1))) % values;
  return items;
}

}  // namespace

std::optional<std::vector<SceneItem>> make_negative(const std::vector<SceneItem>& items, NegativeKind kind, SampleRng& rng) {
  try {
    describe_scene(items);
  } catch (const Error& e) {
    throw Error(std::string("make_negative: the items are not a valid scene: ") + e.what());
  }
  std::vector<SceneItem> sorted = items;
  std::sort(sorted.begin(), sorted.end(), [](const SceneItem& a, const SceneItem& b) { return a.cell < b.cell; });
  switch (kind) {
    case NegativeKind::replace_object:
      return replace_field(sorted, &SceneItem::item, static_cast<int>(kFashionMnistClasses.size()), rng);
    case NegativeKind::replace_colour: return replace_field(sorted, &SceneItem::colour, kSceneColours, rng);
    case NegativeKind::swap_objects: return swap_field(sorted, &SceneItem::item, rng);
    case NegativeKind::swap_colours: return swap_field(sorted, &SceneItem::colour, rng);
    case NegativeKind::add_object: {
      std::vector<int> free_cells;
      for (int cell = 0; cell < static_cast<int>(kSceneCellNames.size()); ++cell)
        if (std::none_of(sorted.begin(), sorted.end(), [cell](const SceneItem& s) { return s.cell == cell; }))
          free_cells.push_back(cell);
      if (free_cells.empty()) return std::nullopt;
      SceneItem added;
      added.cell = free_cells[static_cast<size_t>(rng.below(static_cast<int64_t>(free_cells.size())))];
      added.item = static_cast<int>(rng.below(static_cast<int64_t>(kFashionMnistClasses.size())));
      added.colour = static_cast<int>(rng.below(kSceneColours));
      sorted.push_back(added);
      std::sort(sorted.begin(), sorted.end(), [](const SceneItem& a, const SceneItem& b) { return a.cell < b.cell; });
      return sorted;
    }
  }
  throw Error("make_negative: unknown kind " + std::to_string(static_cast<int>(kind)));
}

double pairwise_accuracy(const Tensor& image_embeds, const Tensor& positive_embeds, const Tensor& negative_embeds) {
  check_embeddings("pairwise_accuracy", "image_embeds", image_embeds);
  check_embeddings("pairwise_accuracy", "positive_embeds", positive_embeds);
  check_embeddings("pairwise_accuracy", "negative_embeds", negative_embeds);
  if (positive_embeds.shape() != image_embeds.shape() || negative_embeds.shape() != image_embeds.shape())
    throw Error("pairwise_accuracy: image_embeds " + shape_str(image_embeds.shape()) + ", positive_embeds " +
                shape_str(positive_embeds.shape()) + " and negative_embeds " + shape_str(negative_embeds.shape()) +
                " must have the same shape");
  NoGradGuard no_grad;
  const Device device = image_embeds.device();
  // The image's norm scales both of its similarities alike; the captions' norms do not.
  const Tensor pos = l2_normalize(positive_embeds.to(device), -1);
  const Tensor neg = l2_normalize(negative_embeds.to(device), -1);
  const std::vector<float> pos_sim = sum(mul(image_embeds, pos), 1).to_float_vector();
  const std::vector<float> neg_sim = sum(mul(image_embeds, neg), 1).to_float_vector();
  int64_t correct = 0;
  for (size_t i = 0; i < pos_sim.size(); ++i) {
    if (!std::isfinite(pos_sim[i]) || !std::isfinite(neg_sim[i]))
      throw Error("pairwise_accuracy: row " + std::to_string(i) + " has a non-finite similarity");
    correct += pos_sim[i] > neg_sim[i];
  }
  return static_cast<double>(correct) / static_cast<double>(pos_sim.size());
}

}  // namespace sparo
