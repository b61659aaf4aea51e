// "Fashion scenes": a synthetic image–caption data set for contrastive training. A scene is a
// black square canvas split into a 2×2 grid of cells; 1 to 4 cells hold a Fashion-MNIST item
// tinted in one of 8 colours, and the caption names every item's colour, class and place.
// Everything is a pure function of (seed, split, index), so any sample can be rebuilt on any
// thread, in any order.
//
// Compositional hold-out: for each item class exactly one colour is held out,
//   held-out colour of class c = (3·c + 1) mod 8
// (t-shirt green, trousers purple, pullover white, dress blue, coat orange, sandal red,
// shirt yellow, sneaker cyan, bag green, ankle boot purple). The train split never shows these
// (class, colour) pairs; val and test show them at their natural rate, and make_heldout builds
// scenes made only of them, to measure whether a model composes colour and class.
//
// Caption grammar (describe_scene), items sorted by cell (reading order: 0 top left,
// 1 top right, 2 bottom left, 3 bottom right); <item> = "a"/"an" (an before a vowel-initial
// colour), the colour name, the class noun (kFashionMnistClasses, verbatim, e.g. "ankle boot"):
//   1 item:                 "<item> in the <place>"            a red sneaker in the top left
//   2 items, same row:      "<item> to the left of <item>"     a red sneaker to the left of a blue bag
//   2 items, same column:   "<item> above <item>"              a red sneaker above a blue bag
//   2 items, diagonal:      "<item> in the <place> and <item> in the <place>"
//   3 or 4 items:           "<item> in the <place>, ..., <item> in the <place> and <item> in the <place>"
//                           a red sneaker in the top left, a blue bag in the top right and
//                           a green shirt in the bottom right
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "image/image.h"
#include "training/data/fashion_mnist.h"

namespace sparo {

constexpr int kSceneColours = 8;
constexpr int kMaxSceneCanvas = 2048;
constexpr int kMaxSceneGroup = 8;
// The palette: "red", "green", "blue", "yellow", "purple", "orange", "cyan", "white", and
// each colour's RGB.
extern const std::array<const char*, kSceneColours> kSceneColourNames;
extern const std::array<std::array<uint8_t, 3>, kSceneColours> kSceneColourRgb;
extern const std::array<const char*, 4> kSceneCellNames;  // "top left", "top right", "bottom left", "bottom right"

enum class SceneSplit { train, val, test };
const char* scene_split_name(SceneSplit split);

// One item of a scene: a Fashion-MNIST class, a palette index, a cell 0..3 (top left, top
// right, bottom left, bottom right).
struct SceneItem {
  int item = 0;
  int colour = 0;
  int cell = 0;
  bool operator==(const SceneItem&) const = default;
};

struct SceneOptions {
  int canvas = 64;                   // side in pixels, 32..kMaxSceneCanvas
  int min_items = 1, max_items = 3;  // 1 <= min_items <= max_items <= 4
  uint64_t seed = 0;
  int64_t count = 10000;             // scenes per split (indices [0, count))
  // make_group: the probability that a sibling's item is drawn from its original's look-alike
  // kind (tops: t-shirt, pullover, coat, shirt; long garments: trousers, dress; footwear:
  // sandal, sneaker, ankle boot) instead of from all 10 classes. A bag has no look-alikes.
  float sibling_lookalike = 0.0f;    // 0..1
};

struct Scene {
  Image image;                   // canvas × canvas RGB
  std::string caption;           // describe_scene(items)
  std::vector<SceneItem> items;  // in reading order (by cell)
  std::vector<int64_t> sources;  // for each item, its image's index in the generator's LabeledImages
};

// The held-out colour of each class (see the top of this file) and the test for a pair.
int heldout_colour(int item);
bool is_heldout_combination(int item, int colour);

// The caption of a set of items (grammar at the top of this file); a pure function of the
// items, whatever their order. Errors: no items, more than 4, a class, colour or cell out of
// range, two items in one cell.
std::string describe_scene(const std::vector<SceneItem>& items);

// "a " or "an " (before a vowel) + phrase: the article the captions use.
std::string with_article(const std::string& phrase);

// Renders items onto a black canvas × canvas picture (32 <= canvas <= kMaxSceneCanvas).
// sources[i] is item i's rows × cols grayscale image. A cell is canvas/2 pixels square (an odd
// canvas leaves its last row and column black). An item is drawn at its size when it fits in a
// box of cell - cell/8 pixels (28 for the default 64 canvas), else shrunk to fit that box
// (resize_bicubic, aspect kept), at an offset inside its cell drawn from
// SampleRng(jitter_seed, cell): x then y, each uniform in [0, cell - item size]. Pixels are
// tinted, rgb = round(palette_rgb · gray / 255). The items' classes are not used.
Image render_scene(const std::vector<SceneItem>& items, const std::vector<const uint8_t*>& sources, int rows, int cols,
                   int canvas, uint64_t jitter_seed);

// Draws scenes from a set of Fashion-MNIST images. Splits use disjoint source images:
// train the first 5/6 of `source` ([0, 50000) of the Fashion-MNIST train set), val the last
// 1/6 ([50000, 60000)); test all of `source`, which should be the Fashion-MNIST test set.
// Per scene, from SampleRng(seed, mix_stream(split tag, index)): the item count uniform in
// [min_items, max_items], distinct cells, per item the class uniform, the colour uniform
// (train: redrawn while the pair is held out), the source image uniform among the split's
// images of that class, then the jitter seed.
// `source` is referenced, not copied: it must outlive the generator. make and make_heldout
// are const and thread-safe.
class SceneGenerator {
 public:
  SceneGenerator(const LabeledImages& source, SceneSplit split, SceneOptions options);
  SceneGenerator(LabeledImages&&, SceneSplit, SceneOptions) = delete;  // would dangle

  int64_t size() const { return options_.count; }
  SceneSplit split() const { return split_; }
  const SceneOptions& options() const { return options_; }

  // Scene `index` of the split; index outside [0, size()) is an error.
  Scene make(int64_t index) const;
  // Scene `index` of the held-out evaluation set (val and test only): drawn as make() does
  // from its own streams, but every item has its class's held-out colour.
  Scene make_heldout(int64_t index) const;
  // Scene `index` followed by size - 1 siblings: scenes with the same cells and colours but
  // other items (class and source image redrawn; train: redrawn while the pair is held out),
  // every caption distinct from the group's earlier ones. A batch of such groups has negatives
  // that differ from their positive only in what the items are, so a contrastive loss cannot
  // tell them apart by colour and place alone. 1 <= size <= kMaxSceneGroup (with one item of a
  // given colour at least 8 classes are allowed, so 8 distinct captions always exist). With
  // options().sibling_lookalike > 0 some sibling items are their original's look-alikes, so the
  // negatives also differ only in an item's details (a shirt against a t-shirt).
  std::vector<Scene> make_group(int64_t index, int size) const;

 private:
  Scene draw(int64_t index, bool heldout) const;

  const LabeledImages* source_;
  SceneSplit split_;
  SceneOptions options_;
  std::array<std::vector<int64_t>, 10> by_class_;  // the split's source indices of each class
};

}  // namespace sparo
