// The "Fashion scenes" generator: the caption grammar, the held-out rule, determinism, the
// split discipline (disjoint sources, no held-out pairs in train), and that a scene's picture
// shows what its caption says: each item's class (its exact source image), colour and cell.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <thread>

#include "tests/expect_error.h"
#include "training/data/scenes.h"

namespace sparo {
namespace {

// The real data, loaded once for the whole suite.
const LabeledImages& fashion_train() {
  static const LabeledImages data = load_fashion_mnist(default_fashion_mnist_dir(), "train");
  return data;
}
const LabeledImages& fashion_test() {
  static const LabeledImages data = load_fashion_mnist(default_fashion_mnist_dir(), "test");
  return data;
}

SceneOptions options(uint64_t seed, int canvas = 64, int min_items = 1, int max_items = 3) {
  SceneOptions o;
  o.seed = seed;
  o.canvas = canvas;
  o.min_items = min_items;
  o.max_items = max_items;
  o.count = 100000;
  return o;
}

const uint8_t* pixel(const Image& img, int x, int y) {
  return img.rgb.data() + (static_cast<size_t>(y) * img.width + x) * 3;
}

bool region_is_black(const Image& img, int x0, int y0, int w, int h) {
  for (int y = y0; y < y0 + h; ++y)
    for (int x = x0; x < x0 + w; ++x)
      if (pixel(img, x, y)[0] || pixel(img, x, y)[1] || pixel(img, x, y)[2]) return false;
  return true;
}

// Whether the cell shows `gray` (size × size) tinted with `colour` at some offset inside it,
// and nothing else: every channel within 1 of round(palette · gray / 255), black around it.
bool cell_shows(const Image& img, int cell_index, int cell, const std::vector<uint8_t>& gray, int size, int colour) {
  const int x0 = (cell_index % 2) * cell, y0 = (cell_index / 2) * cell;
  const auto& rgb = kSceneColourRgb[static_cast<size_t>(colour)];
  for (int dy = 0; dy + size <= cell; ++dy)
    for (int dx = 0; dx + size <= cell; ++dx) {
      bool ok = true;
      for (int y = 0; y < cell && ok; ++y)
        for (int x = 0; x < cell && ok; ++x) {
          const bool inside = x >= dx && x < dx + size && y >= dy && y < dy + size;
          const int g = inside ? gray[static_cast<size_t>((y - dy) * size + (x - dx))] : 0;
          for (size_t c = 0; c < 3; ++c)
            ok = ok && std::abs(pixel(img, x0 + x, y0 + y)[c] - std::lround(rgb[c] * g / 255.0)) <= 1;
        }
      if (ok) return true;
    }
  return false;
}

// The palette entry whose direction is closest to the cell's summed colour.
int dominant_colour(const Image& img, int cell_index, int cell) {
  double sum[3] = {0, 0, 0};
  for (int y = 0; y < cell; ++y)
    for (int x = 0; x < cell; ++x)
      for (int c = 0; c < 3; ++c) sum[c] += pixel(img, (cell_index % 2) * cell + x, (cell_index / 2) * cell + y)[c];
  int best = -1;
  double best_cos = -1.0;
  for (int k = 0; k < kSceneColours; ++k) {
    const auto& p = kSceneColourRgb[static_cast<size_t>(k)];
    const double dot = sum[0] * p[0] + sum[1] * p[1] + sum[2] * p[2];
    const double norm = static_cast<double>(p[0] * p[0] + p[1] * p[1] + p[2] * p[2]);
    const double cos = dot / std::sqrt((sum[0] * sum[0] + sum[1] * sum[1] + sum[2] * sum[2]) * norm);
    if (cos > best_cos) best_cos = cos, best = k;
  }
  return best;
}

// The source image as the renderer should draw it: as is when it fits a cell's box,
// else shrunk with resize_bicubic.
std::vector<uint8_t> expected_gray(const uint8_t* src, int canvas, int* size) {
  const int cell = canvas / 2;
  *size = std::min(28, cell - cell / 8);
  if (*size == 28) return std::vector<uint8_t>(src, src + 784);
  Image rgb;
  rgb.width = rgb.height = 28;
  for (int i = 0; i < 784; ++i) rgb.rgb.insert(rgb.rgb.end(), {src[i], src[i], src[i]});
  const Image small = resize_bicubic(rgb, *size, *size);
  std::vector<uint8_t> out;
  for (size_t i = 0; i < small.rgb.size(); i += 3) out.push_back(small.rgb[i]);
  return out;
}

// The picture agrees with the items and the caption: every item's cell shows its source image
// (of its class) in its colour, empty cells and the margins are black.
void expect_scene_matches(const Scene& s, const LabeledImages& source, int canvas) {
  ASSERT_EQ(s.image.width, canvas);
  ASSERT_EQ(s.image.height, canvas);
  ASSERT_EQ(s.image.rgb.size(), static_cast<size_t>(canvas) * canvas * 3);
  ASSERT_EQ(s.items.size(), s.sources.size());
  ASSERT_FALSE(s.items.empty());
  EXPECT_EQ(s.caption, describe_scene(s.items));
  const int cell = canvas / 2;
  std::array<bool, 4> used{};
  for (size_t k = 0; k < s.items.size(); ++k) {
    const SceneItem& it = s.items[k];
    if (k > 0) {
      EXPECT_LT(s.items[k - 1].cell, it.cell) << "items not in reading order";
    }
    used[static_cast<size_t>(it.cell)] = true;
    ASSERT_GE(s.sources[k], 0);
    ASSERT_LT(s.sources[k], source.count);
    EXPECT_EQ(source.labels[static_cast<size_t>(s.sources[k])], it.item) << "source image of another class";
    const std::string noun = std::string(kSceneColourNames[static_cast<size_t>(it.colour)]) + " " +
                             kFashionMnistClasses[static_cast<size_t>(it.item)];
    EXPECT_NE(s.caption.find(noun), std::string::npos) << s.caption << " lacks " << noun;
    int size = 0;
    const std::vector<uint8_t> gray = expected_gray(source.image(s.sources[k]), canvas, &size);
    EXPECT_TRUE(cell_shows(s.image, it.cell, cell, gray, size, it.colour))
        << "cell " << it.cell << " does not show source " << s.sources[k] << " in " << noun << " (" << s.caption << ")";
    EXPECT_EQ(dominant_colour(s.image, it.cell, cell), it.colour) << s.caption;
  }
  for (int c = 0; c < 4; ++c) {
    if (!used[static_cast<size_t>(c)]) {
      EXPECT_TRUE(region_is_black(s.image, (c % 2) * cell, (c / 2) * cell, cell, cell)) << "empty cell " << c;
    }
  }
  if (canvas % 2) {
    EXPECT_TRUE(region_is_black(s.image, canvas - 1, 0, 1, canvas));
    EXPECT_TRUE(region_is_black(s.image, 0, canvas - 1, canvas, 1));
  }
}

bool same_scene(const Scene& a, const Scene& b) {
  return a.caption == b.caption && a.items == b.items && a.sources == b.sources && a.image.rgb == b.image.rgb &&
         a.image.width == b.image.width;
}

TEST(SceneCaption, FollowsTheGrammar) {
  EXPECT_EQ(describe_scene({{7, 0, 0}}), "a red sneaker in the top left");
  EXPECT_EQ(describe_scene({{8, 5, 3}}), "an orange bag in the bottom right");
  EXPECT_EQ(describe_scene({{7, 0, 0}, {8, 2, 1}}), "a red sneaker to the left of a blue bag");
  EXPECT_EQ(describe_scene({{9, 5, 2}, {0, 3, 3}}), "an orange ankle boot to the left of a yellow t-shirt");
  EXPECT_EQ(describe_scene({{7, 0, 0}, {8, 2, 2}}), "a red sneaker above a blue bag");
  EXPECT_EQ(describe_scene({{9, 7, 1}, {9, 4, 3}}), "a white ankle boot above a purple ankle boot");
  EXPECT_EQ(describe_scene({{7, 0, 0}, {8, 2, 3}}), "a red sneaker in the top left and a blue bag in the bottom right");
  EXPECT_EQ(describe_scene({{8, 2, 1}, {7, 0, 2}}), "a blue bag in the top right and a red sneaker in the bottom left");
  EXPECT_EQ(describe_scene({{7, 0, 0}, {8, 2, 1}, {6, 1, 3}}),
            "a red sneaker in the top left, a blue bag in the top right and a green shirt in the bottom right");
  EXPECT_EQ(describe_scene({{1, 6, 0}, {2, 4, 1}, {3, 5, 2}, {4, 7, 3}}),
            "cyan trousers in the top left, a purple pullover in the top right, an orange dress in the bottom left "
            "and a white coat in the bottom right");
  // a pure function of the set of items: the order they come in does not matter
  EXPECT_EQ(describe_scene({{6, 1, 3}, {7, 0, 0}, {8, 2, 1}}), describe_scene({{7, 0, 0}, {8, 2, 1}, {6, 1, 3}}));
  EXPECT_EQ(describe_scene({{8, 2, 1}, {7, 0, 0}}), "a red sneaker to the left of a blue bag");
}

TEST(SceneCaption, RejectsImpossibleItems) {
  expect_error([] { describe_scene({}); }, {"describe_scene", "no items"});
  expect_error([] { describe_scene({{1, 1, 2}, {3, 3, 2}}); }, {"two items in cell 2 (bottom left)"});
  expect_error([] { describe_scene({{1, 8, 0}}); }, {"item 0 has colour 8, expected 0..7"});
  expect_error([] { describe_scene({{0, 0, 0}, {10, 1, 1}}); }, {"item 1 has class 10, expected 0..9"});
  expect_error([] { describe_scene({{0, 0, 4}}); }, {"has cell 4, expected 0..3"});
  expect_error([] { describe_scene({{0, 0, 0}, {0, 0, 1}, {0, 0, 2}, {0, 0, 3}, {0, 0, 0}}); }, {"5 items, at most 4"});
}

TEST(SceneHeldout, ExactlyOneColourPerClass) {
  std::array<int, kSceneColours> classes_per_colour{};
  for (int item = 0; item < 10; ++item) {
    int held = 0;
    for (int colour = 0; colour < kSceneColours; ++colour)
      if (is_heldout_combination(item, colour)) {
        ++held;
        ++classes_per_colour[static_cast<size_t>(colour)];
        EXPECT_EQ(colour, (3 * item + 1) % 8);
        EXPECT_EQ(heldout_colour(item), colour);
      }
    EXPECT_EQ(held, 1) << "class " << item;
  }
  // every colour stays in training with most classes
  for (int n : classes_per_colour) EXPECT_LE(n, 2);
  EXPECT_FALSE(is_heldout_combination(10, 7));
  EXPECT_FALSE(is_heldout_combination(-1, 0));
}

TEST(SceneRender, DrawsTintedItemsInTheirCells) {
  // a 28 × 28 source: a bright 20 × 24 block with a gradient, black border
  std::vector<uint8_t> src(784, 0);
  for (int y = 2; y < 26; ++y)
    for (int x = 4; x < 24; ++x) src[static_cast<size_t>(y * 28 + x)] = static_cast<uint8_t>(100 + 6 * x);
  const std::vector<SceneItem> items = {{3, 5, 1}, {0, 7, 2}};
  const std::vector<const uint8_t*> sources = {src.data(), src.data()};
  const Image img = render_scene(items, sources, 28, 28, 64, 42);
  ASSERT_EQ(img.width, 64);
  ASSERT_EQ(img.height, 64);
  EXPECT_TRUE(region_is_black(img, 0, 0, 32, 32));
  EXPECT_TRUE(region_is_black(img, 32, 32, 32, 32));
  EXPECT_TRUE(cell_shows(img, 1, 32, src, 28, 5));
  EXPECT_TRUE(cell_shows(img, 2, 32, src, 28, 7));
  EXPECT_FALSE(cell_shows(img, 1, 32, src, 28, 0));  // the check can tell colours apart
  int lit = 0;  // exactly the source's bright block, twice
  for (size_t i = 0; i < img.rgb.size(); i += 3) lit += img.rgb[i] || img.rgb[i + 1] || img.rgb[i + 2];
  EXPECT_EQ(lit, 2 * 20 * 24);
  // deterministic in the jitter seed; other seeds move the items
  EXPECT_EQ(render_scene(items, sources, 28, 28, 64, 42).rgb, img.rgb);
  int moved = 0;
  for (uint64_t seed = 0; seed < 20; ++seed) moved += render_scene(items, sources, 28, 28, 64, seed).rgb != img.rgb;
  EXPECT_GE(moved, 15);
}

TEST(SceneRender, ShrinksItemsThatDoNotFit) {
  const std::vector<uint8_t> full(28 * 28, 255);
  // canvas 32: cells of 16, items shrunk to 16 - 2 = 14
  const Image img = render_scene({{0, 7, 0}, {0, 0, 3}}, {full.data(), full.data()}, 28, 28, 32, 7);
  // width and height of the lit pixels' bounding box in a cell
  auto bright_box = [&](int cell_index, int cell) {
    int min_x = 1 << 20, max_x = -1, min_y = 1 << 20, max_y = -1;
    for (int y = (cell_index / 2) * cell; y < (cell_index / 2 + 1) * cell; ++y)
      for (int x = (cell_index % 2) * cell; x < (cell_index % 2 + 1) * cell; ++x) {
        if (!pixel(img, x, y)[0]) continue;
        min_x = std::min(min_x, x), max_x = std::max(max_x, x);
        min_y = std::min(min_y, y), max_y = std::max(max_y, y);
      }
    return std::array<int, 2>{max_x - min_x + 1, max_y - min_y + 1};
  };
  EXPECT_EQ(bright_box(0, 16), (std::array<int, 2>{14, 14}));
  EXPECT_EQ(bright_box(3, 16), (std::array<int, 2>{14, 14}));
  EXPECT_EQ(pixel(img, 8, 8)[1], 255);  // the middle of a white item
  EXPECT_TRUE(region_is_black(img, 16, 0, 16, 16));
  EXPECT_TRUE(region_is_black(img, 0, 16, 16, 16));
  // a wide 10 × 20 source keeps its aspect: 14 × 7
  const std::vector<uint8_t> wide(200, 255);
  const Image w = render_scene({{0, 7, 0}}, {wide.data()}, 10, 20, 32, 7);
  int count = 0;
  for (size_t i = 0; i < w.rgb.size(); i += 3) count += w.rgb[i] != 0;
  EXPECT_EQ(count, 14 * 7);
}

TEST(SceneRender, RejectsBadInput) {
  const std::vector<uint8_t> src(784, 1);
  expect_error([&] { render_scene({{0, 0, 0}}, {}, 28, 28, 64, 0); }, {"1 items but 0 source images"});
  const std::vector<const uint8_t*> two = {src.data(), src.data()};
  expect_error([&] { render_scene({{0, 0, 0}, {1, 1, 0}}, two, 28, 28, 64, 0); }, {"two items in cell 0"});
  expect_error([&] { render_scene({{0, 0, 0}}, {src.data()}, 28, 28, 31, 0); }, {"canvas 31, expected 32..2048"});
  expect_error([&] { render_scene({{0, 0, 0}}, {src.data()}, 0, 28, 64, 0); }, {"0×28"});
  expect_error([&] { render_scene({{0, 0, 0}}, {nullptr}, 28, 28, 64, 0); }, {"source image of item 0 is null"});
  expect_error([&] { render_scene({{0, 9, 0}}, {src.data()}, 28, 28, 64, 0); }, {"colour 9"});
}

TEST(SceneGenerator, IsDeterministic) {
  const SceneGenerator a(fashion_train(), SceneSplit::train, options(1));
  const SceneGenerator b(fashion_train(), SceneSplit::train, options(1));
  const SceneGenerator other_seed(fashion_train(), SceneSplit::train, options(2));
  const SceneGenerator val(fashion_train(), SceneSplit::val, options(1));
  EXPECT_EQ(a.size(), 100000);
  int seed_differs = 0, split_differs = 0;
  for (int64_t i = 0; i < 50; ++i) {
    const Scene s = a.make(i);
    EXPECT_TRUE(same_scene(s, a.make(i)));
    EXPECT_TRUE(same_scene(s, b.make(i)));
    seed_differs += !same_scene(s, other_seed.make(i));
    split_differs += !same_scene(s, val.make(i));
  }
  EXPECT_GE(seed_differs, 48);
  EXPECT_GE(split_differs, 48);
  EXPECT_FALSE(same_scene(a.make(0), a.make(1)));
  const SceneGenerator held(fashion_train(), SceneSplit::val, options(1));
  EXPECT_TRUE(same_scene(held.make_heldout(3), val.make_heldout(3)));
  EXPECT_FALSE(same_scene(val.make_heldout(3), val.make(3)));

  // thread-safe: two threads building interleaved indices get the serial results
  std::vector<Scene> parallel(200);
  auto work = [&](int first) {
    for (int i = first; i < 200; i += 2) parallel[static_cast<size_t>(i)] = a.make(i);
  };
  std::thread t0(work, 0), t1(work, 1);
  t0.join();
  t1.join();
  for (int i = 0; i < 200; ++i) EXPECT_TRUE(same_scene(parallel[static_cast<size_t>(i)], a.make(i))) << i;
}

TEST(SceneGenerator, TrainNeverShowsHeldOutPairs) {
  const SceneGenerator gen(fashion_train(), SceneSplit::train, options(3));
  std::set<std::pair<int, int>> seen;
  std::array<int, 4> per_count{}, per_cell{};
  std::array<int, 10> per_class{};
  constexpr int kScenes = 3000;
  for (int64_t i = 0; i < kScenes; ++i) {
    const Scene s = gen.make(i);
    ASSERT_GE(s.items.size(), 1u);
    ASSERT_LE(s.items.size(), 3u);
    ++per_count[s.items.size()];
    for (const SceneItem& it : s.items) {
      EXPECT_FALSE(is_heldout_combination(it.item, it.colour)) << "scene " << i << ": " << s.caption;
      seen.insert({it.item, it.colour});
      ++per_cell[static_cast<size_t>(it.cell)];
      ++per_class[static_cast<size_t>(it.item)];
    }
  }
  EXPECT_EQ(seen.size(), 70u);  // every other pair shows up
  for (size_t n = 1; n <= 3; ++n) EXPECT_NEAR(per_count[n], kScenes / 3, kScenes / 15) << n << " items";
  const int items = per_count[1] + 2 * per_count[2] + 3 * per_count[3];
  for (int c : per_cell) EXPECT_NEAR(c, items / 4, items / 20);
  for (int c : per_class) EXPECT_NEAR(c, items / 10, items / 25);
}

TEST(SceneGenerator, ValAndTestShowHeldOutPairsAndHeldOutScenesAreAllHeldOut) {
  const SceneGenerator val(fashion_train(), SceneSplit::val, options(4));
  const SceneGenerator test(fashion_test(), SceneSplit::test, options(4, 64, 2, 4));
  int held = 0, items = 0;
  for (int64_t i = 0; i < 1000; ++i)
    for (const SceneItem& it : val.make(i).items) held += is_heldout_combination(it.item, it.colour), ++items;
  EXPECT_NEAR(held, items / 8, items / 30);  // colours uniform over all 8 outside train
  for (const SceneGenerator* gen : {&val, &test})
    for (int64_t i = 0; i < 300; ++i) {
      const Scene s = gen->make_heldout(i);
      ASSERT_FALSE(s.items.empty());
      for (const SceneItem& it : s.items) EXPECT_TRUE(is_heldout_combination(it.item, it.colour)) << s.caption;
    }
  EXPECT_GE(test.make_heldout(0).items.size(), 2u);
  const SceneGenerator train(fashion_train(), SceneSplit::train, options(4));
  expect_error([&] { train.make_heldout(0); }, {"train split has no held-out scenes"});
}

TEST(SceneGenerator, SplitsUseDisjointSourceImages) {
  const SceneGenerator train(fashion_train(), SceneSplit::train, options(5, 64, 3, 4));
  const SceneGenerator val(fashion_train(), SceneSplit::val, options(5, 64, 3, 4));
  const SceneGenerator test(fashion_test(), SceneSplit::test, options(5, 64, 3, 4));
  int64_t train_max = 0, val_min = 1 << 30, test_max = 0;
  for (int64_t i = 0; i < 1000; ++i) {
    for (int64_t src : train.make(i).sources) train_max = std::max(train_max, src);
    for (int64_t src : val.make(i).sources) val_min = std::min(val_min, src);
    for (int64_t src : val.make_heldout(i).sources) val_min = std::min(val_min, src);
    for (int64_t src : test.make(i).sources) test_max = std::max(test_max, src);
  }
  EXPECT_LT(train_max, 50000);
  EXPECT_GT(train_max, 49000);  // the whole range is used
  EXPECT_GE(val_min, 50000);
  EXPECT_LT(val_min, 51000);
  EXPECT_LT(test_max, 10000);
  EXPECT_GT(test_max, 9000);
}

TEST(SceneGenerator, PicturesShowWhatCaptionsSay) {
  const SceneGenerator train(fashion_train(), SceneSplit::train, options(6));
  const SceneGenerator val(fashion_train(), SceneSplit::val, options(6, 64, 1, 4));
  const SceneGenerator test(fashion_test(), SceneSplit::test, options(6, 64, 2, 4));
  for (int64_t i = 0; i < 60; ++i) {
    expect_scene_matches(train.make(i), fashion_train(), 64);
    expect_scene_matches(val.make(i), fashion_train(), 64);
    expect_scene_matches(val.make_heldout(i), fashion_train(), 64);
    expect_scene_matches(test.make(i), fashion_test(), 64);
    expect_scene_matches(test.make_heldout(i), fashion_test(), 64);
  }
  // other canvases: items drawn at their size (96), shrunk (45, odd: a black margin; 32)
  for (int canvas : {96, 45, 32}) {
    const SceneGenerator gen(fashion_train(), SceneSplit::train, options(7, canvas, 1, 4));
    for (int64_t i = 0; i < 20; ++i) expect_scene_matches(gen.make(i), fashion_train(), canvas);
  }
}

TEST(SceneGenerator, GroupsShareCellsAndColoursWithDistinctItemsAndCaptions) {
  const SceneGenerator train(fashion_train(), SceneSplit::train, options(8));
  const SceneGenerator val(fashion_train(), SceneSplit::val, options(8, 64, 1, 1));
  int items_changed = 0, items_total = 0;
  for (int64_t i = 0; i < 100; ++i) {
    // one-item val scenes are the tightest case: 8 siblings with one colour fixed
    for (const SceneGenerator* gen : {&train, &val}) {
      const std::vector<Scene> group = gen->make_group(i, kMaxSceneGroup);
      ASSERT_EQ(group.size(), static_cast<size_t>(kMaxSceneGroup));
      EXPECT_TRUE(same_scene(group[0], gen->make(i)));  // the group starts with the scene itself
      std::set<std::string> captions;
      for (const Scene& s : group) {
        captions.insert(s.caption);
        ASSERT_EQ(s.items.size(), group[0].items.size()) << s.caption;
        for (size_t k = 0; k < s.items.size(); ++k) {
          EXPECT_EQ(s.items[k].cell, group[0].items[k].cell) << s.caption;
          EXPECT_EQ(s.items[k].colour, group[0].items[k].colour) << s.caption;
          items_changed += s.items[k].item != group[0].items[k].item;
          ++items_total;
          if (gen == &train) {
            EXPECT_FALSE(is_heldout_combination(s.items[k].item, s.items[k].colour)) << s.caption;
          }
        }
        expect_scene_matches(s, fashion_train(), 64);  // the picture shows the sibling's own items
      }
      EXPECT_EQ(captions.size(), group.size()) << "captions repeat in group " << i;
    }
  }
  EXPECT_GT(items_changed, items_total / 2);
  // deterministic, and a smaller group is a prefix of a larger one
  const std::vector<Scene> a = train.make_group(5, 3), b = train.make_group(5, 6);
  for (size_t k = 0; k < a.size(); ++k) EXPECT_TRUE(same_scene(a[k], b[k])) << k;
  EXPECT_EQ(train.make_group(5, 1).size(), 1u);
  expect_error([&] { train.make_group(0, 0); }, {"group size 0, expected 1..8"});
  expect_error([&] { train.make_group(0, 9); }, {"group size 9"});
  expect_error([&] { train.make_group(100000, 2); }, {"scene index 100000 out of range"});
}

TEST(SceneGenerator, LookalikeSiblingsKeepTheirOriginalsKind) {
  // kind of each class: tops 0, long garments 1, footwear 2, bag 3
  const std::array<int, 10> kind = {0, 1, 0, 1, 0, 2, 0, 2, 3, 2};
  SceneOptions o = options(8, 64, 1, 1);
  o.sibling_lookalike = 1.0f;
  const SceneGenerator lookalike(fashion_train(), SceneSplit::train, o);
  o.sibling_lookalike = 0.0f;
  const SceneGenerator any(fashion_train(), SceneSplit::train, o);
  int same_kind_lookalike = 0, same_kind_any = 0, siblings = 0;
  for (int64_t i = 0; i < 200; ++i) {
    const std::vector<Scene> a = lookalike.make_group(i, 2), b = any.make_group(i, 2);
    EXPECT_TRUE(same_scene(a[0], b[0]));  // the original does not depend on the option
    EXPECT_NE(a[0].caption, a[1].caption);
    EXPECT_EQ(a[1].items[0].colour, a[0].items[0].colour);
    EXPECT_FALSE(is_heldout_combination(a[1].items[0].item, a[1].items[0].colour)) << a[1].caption;
    expect_scene_matches(a[1], fashion_train(), 64);
    // a look-alike exists unless the kind is a bag, or its only other class is held out in this
    // colour (trousers and dress); then any class goes
    const int item = a[0].items[0].item, colour = a[0].items[0].colour;
    bool has_lookalike = false;
    for (int c = 0; c < 10; ++c)
      has_lookalike = has_lookalike || (c != item && kind[static_cast<size_t>(c)] == kind[static_cast<size_t>(item)] &&
                                        item != 8 && !is_heldout_combination(c, colour));
    if (!has_lookalike) continue;
    ++siblings;
    same_kind_lookalike += kind[static_cast<size_t>(a[1].items[0].item)] == kind[static_cast<size_t>(a[0].items[0].item)];
    same_kind_any += kind[static_cast<size_t>(b[1].items[0].item)] == kind[static_cast<size_t>(b[0].items[0].item)];
  }
  EXPECT_EQ(same_kind_lookalike, siblings);      // every sibling of a non-bag is a look-alike
  EXPECT_LT(same_kind_any, siblings / 2);        // which drawing from all classes is not
  // groups larger than a kind still fill with distinct captions (from other kinds)
  for (int64_t i = 0; i < 20; ++i) {
    std::set<std::string> captions;
    for (const Scene& s : lookalike.make_group(i, kMaxSceneGroup)) captions.insert(s.caption);
    EXPECT_EQ(captions.size(), static_cast<size_t>(kMaxSceneGroup));
  }
  o.sibling_lookalike = 1.5f;
  expect_error([&] { SceneGenerator(fashion_train(), SceneSplit::train, o); }, {"sibling_lookalike 1.5", "0..1"});
}

TEST(SceneGenerator, RejectsBadOptionsAndIndices) {
  auto make_gen = [](SceneOptions o) { SceneGenerator(fashion_test(), SceneSplit::test, o); };
  SceneOptions o = options(0);
  o.canvas = 31;
  expect_error([&] { make_gen(o); }, {"SceneGenerator (test)", "canvas 31, expected 32..2048"});
  o = options(0, 4096);
  expect_error([&] { make_gen(o); }, {"canvas 4096"});
  o = options(0, 64, 0, 3);
  expect_error([&] { make_gen(o); }, {"min_items 0, max_items 3, expected 1 <= min_items <= max_items <= 4"});
  o = options(0, 64, 1, 5);
  expect_error([&] { make_gen(o); }, {"max_items 5"});
  o = options(0, 64, 3, 2);
  expect_error([&] { make_gen(o); }, {"min_items 3, max_items 2"});
  o = options(0);
  o.count = 0;
  expect_error([&] { make_gen(o); }, {"count 0, expected at least 1"});

  o = options(0);
  o.count = 10;
  const SceneGenerator gen(fashion_test(), SceneSplit::test, o);
  EXPECT_EQ(gen.size(), 10);
  expect_error([&] { gen.make(10); }, {"scene index 10 out of range [0, 10)"});
  expect_error([&] { gen.make(-1); }, {"scene index -1 out of range"});
  expect_error([&] { gen.make_heldout(10); }, {"scene index 10 out of range"});

  // hand-made sources: a class with no image in the split, a bad label, inconsistent sizes
  LabeledImages small;
  small.count = 12;
  small.rows = small.cols = 28;
  small.pixels.assign(12 * 784, 9);
  for (int i = 0; i < 12; ++i) small.labels.push_back(static_cast<uint8_t>(i % 10));
  EXPECT_NO_THROW(SceneGenerator(small, SceneSplit::test, o));
  // train takes images [0, 10): all classes; val [10, 12): classes 0 and 1 only
  EXPECT_NO_THROW(SceneGenerator(small, SceneSplit::train, o));
  expect_error([&] { SceneGenerator(small, SceneSplit::val, o); },
               {"SceneGenerator (val)", "no source image of class 2 (pullover) among source images [10, 12)"});
  small.labels[3] = 10;
  expect_error([&] { SceneGenerator(small, SceneSplit::test, o); }, {"label 10 of source image 3 is out of range"});
  small.labels[3] = 3;
  small.pixels.pop_back();
  expect_error([&] { SceneGenerator(small, SceneSplit::test, o); }, {"source images are empty or inconsistent"});
  const LabeledImages empty;
  expect_error([&] { SceneGenerator(empty, SceneSplit::test, o); }, {"empty or inconsistent (0 images"});
}

}  // namespace
}  // namespace sparo
