// SugarCrepe-style compositional hard negatives for Fashion scenes (training/data/scenes.h):
// a caption that differs from the true one by one edit of the scene's items, and the pairwise
// test "is the image closer to its true caption than to the negative?".
#pragma once

#include <array>
#include <optional>
#include <vector>

#include "engine/tensor.h"
#include "training/data/sample_rng.h"
#include "training/data/scenes.h"

namespace sparo {

enum class NegativeKind { replace_object, replace_colour, swap_objects, swap_colours, add_object };
constexpr std::array<NegativeKind, 5> kNegativeKinds = {NegativeKind::replace_object, NegativeKind::replace_colour,
                                                         NegativeKind::swap_objects, NegativeKind::swap_colours,
                                                         NegativeKind::add_object};
// "replace-object", "replace-colour", "swap-objects", "swap-colours", "add-object".
const char* negative_kind_name(NegativeKind kind);

// The items of a negative caption (describe_scene of them differs from describe_scene(items)),
// in reading order (by cell), or nullopt when the kind does not apply. Each choice is uniform,
// drawn from rng:
//   replace-object: one item's class becomes one of the 9 other classes;
//   replace-colour: one item's colour becomes one of the 7 other colours;
//   swap-objects:   two items with different classes exchange classes (colours and cells stay);
//                   nullopt when no two items differ in class;
//   swap-colours:   two items with different colours exchange colours; nullopt likewise;
//   add-object:     a new item of any class and colour in a free cell; nullopt with 4 items.
// items must be a valid scene (describe_scene's rules: 1 to 4 items, classes, colours and cells
// in range, one item per cell); otherwise an error.
std::optional<std::vector<SceneItem>> make_negative(const std::vector<SceneItem>& items, NegativeKind kind, SampleRng& rng);

// The fraction of rows i where cos(image_i, positive_i) > cos(image_i, negative_i) (a tie counts
// as wrong). All three f32 [N, E] with the same shape (the texts are moved to the images' device).
double pairwise_accuracy(const Tensor& image_embeds, const Tensor& positive_embeds, const Tensor& negative_embeds);

}  // namespace sparo
