#include "training/data/scenes.h"

#include <algorithm>
#include <string_view>

#include "engine/tensor.h"  // sparo::Error
#include "training/data/sample_rng.h"

namespace sparo {

const std::array<const char*, kSceneColours> kSceneColourNames = {"red",    "green",  "blue", "yellow",
                                                                  "purple", "orange", "cyan", "white"};
// Bright, far-apart hues: a tinted item keeps its colour's direction in RGB space even where
// the source is dark.
const std::array<std::array<uint8_t, 3>, kSceneColours> kSceneColourRgb = {{{230, 30, 30},
                                                                            {40, 200, 40},
                                                                            {40, 80, 255},
                                                                            {240, 220, 30},
                                                                            {160, 50, 220},
                                                                            {255, 140, 20},
                                                                            {30, 220, 220},
                                                                            {255, 255, 255}}};
const std::array<const char*, 4> kSceneCellNames = {"top left", "top right", "bottom left", "bottom right"};

const char* scene_split_name(SceneSplit split) {
  switch (split) {
    case SceneSplit::train: return "train";
    case SceneSplit::val: return "val";
    case SceneSplit::test: return "test";
  }
  return "?";
}

namespace {

constexpr int kClasses = static_cast<int>(kFashionMnistClasses.size());
constexpr int kCells = 4;

void check_item(const SceneItem& it, size_t i, const char* who) {
  if (it.item < 0 || it.item >= kClasses)
    throw Error(std::string(who) + ": item " + std::to_string(i) + " has class " + std::to_string(it.item) +
                ", expected 0..9");
  if (it.colour < 0 || it.colour >= kSceneColours)
    throw Error(std::string(who) + ": item " + std::to_string(i) + " has colour " + std::to_string(it.colour) +
                ", expected 0.." + std::to_string(kSceneColours - 1));
  if (it.cell < 0 || it.cell >= kCells)
    throw Error(std::string(who) + ": item " + std::to_string(i) + " has cell " + std::to_string(it.cell) +
                ", expected 0..3");
}

void check_items(const std::vector<SceneItem>& items, const char* who) {
  if (items.size() > kCells)
    throw Error(std::string(who) + ": " + std::to_string(items.size()) + " items, at most 4 fit (one per cell)");
  std::array<bool, kCells> taken{};
  for (size_t i = 0; i < items.size(); ++i) {
    check_item(items[i], i, who);
    if (taken[static_cast<size_t>(items[i].cell)])
      throw Error(std::string(who) + ": two items in cell " + std::to_string(items[i].cell) + " (" +
                  kSceneCellNames[static_cast<size_t>(items[i].cell)] + ")");
    taken[static_cast<size_t>(items[i].cell)] = true;
  }
}

// "trousers" is a plural noun: "cyan trousers", not "a cyan trousers" (every other class
// name is singular, "dress" included).
std::string noun_phrase(const SceneItem& it) {
  const std::string phrase = std::string(kSceneColourNames[static_cast<size_t>(it.colour)]) + " " +
                             kFashionMnistClasses[static_cast<size_t>(it.item)];
  return std::string_view(kFashionMnistClasses[static_cast<size_t>(it.item)]) == "trousers" ? phrase
                                                                                           : with_article(phrase);
}

std::string placed_phrase(const SceneItem& it) {
  return noun_phrase(it) + " in the " + kSceneCellNames[static_cast<size_t>(it.cell)];
}

}  // namespace

std::string with_article(const std::string& phrase) {
  const bool vowel = !phrase.empty() && std::string_view("aeiou").find(phrase[0]) != std::string_view::npos;
  return (vowel ? "an " : "a ") + phrase;
}

int heldout_colour(int item) {
  if (item < 0 || item >= kClasses) throw Error("heldout_colour: class " + std::to_string(item) + ", expected 0..9");
  return (3 * item + 1) % kSceneColours;
}

bool is_heldout_combination(int item, int colour) {
  return item >= 0 && item < kClasses && colour == heldout_colour(item);
}

std::string describe_scene(const std::vector<SceneItem>& items) {
  check_items(items, "describe_scene");
  if (items.empty()) throw Error("describe_scene: no items");
  std::vector<SceneItem> sorted = items;
  std::sort(sorted.begin(), sorted.end(), [](const SceneItem& a, const SceneItem& b) { return a.cell < b.cell; });
  if (sorted.size() == 1) return placed_phrase(sorted[0]);
  if (sorted.size() == 2) {
    const SceneItem& a = sorted[0];
    const SceneItem& b = sorted[1];
    if (a.cell / 2 == b.cell / 2) return noun_phrase(a) + " to the left of " + noun_phrase(b);
    if (a.cell % 2 == b.cell % 2) return noun_phrase(a) + " above " + noun_phrase(b);
    return placed_phrase(a) + " and " + placed_phrase(b);
  }
  std::string caption;
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (i > 0) caption += i + 1 == sorted.size() ? " and " : ", ";
    caption += placed_phrase(sorted[i]);
  }
  return caption;
}

Image render_scene(const std::vector<SceneItem>& items, const std::vector<const uint8_t*>& sources, int rows, int cols,
                   int canvas, uint64_t jitter_seed) {
  check_items(items, "render_scene");
  if (sources.size() != items.size())
    throw Error("render_scene: " + std::to_string(items.size()) + " items but " + std::to_string(sources.size()) +
                " source images");
  if (rows < 1 || cols < 1)
    throw Error("render_scene: source images are " + std::to_string(rows) + "×" + std::to_string(cols) +
                ", expected at least 1×1");
  if (canvas < 32 || canvas > kMaxSceneCanvas)
    throw Error("render_scene: canvas " + std::to_string(canvas) + ", expected 32.." + std::to_string(kMaxSceneCanvas));
  for (size_t i = 0; i < sources.size(); ++i)
    if (!sources[i]) throw Error("render_scene: source image of item " + std::to_string(i) + " is null");

  const int cell = canvas / 2;
  const int box = cell - cell / 8;
  int width = cols, height = rows;
  if (std::max(rows, cols) > box) {
    const int64_t longest = std::max(rows, cols);
    width = std::max(1, static_cast<int>(int64_t{cols} * box / longest));
    height = std::max(1, static_cast<int>(int64_t{rows} * box / longest));
  }

  Image out;
  out.width = out.height = canvas;
  out.rgb.assign(static_cast<size_t>(canvas) * canvas * 3, 0);
  std::vector<uint8_t> shrunk;
  for (size_t i = 0; i < items.size(); ++i) {
    const uint8_t* gray = sources[i];
    if (width != cols || height != rows) {
      Image source;
      source.width = cols;
      source.height = rows;
      source.rgb.resize(static_cast<size_t>(rows) * cols * 3);
      for (size_t p = 0; p < static_cast<size_t>(rows) * cols; ++p)
        source.rgb[3 * p] = source.rgb[3 * p + 1] = source.rgb[3 * p + 2] = gray[p];
      const Image resized = resize_bicubic(source, width, height);
      shrunk.resize(static_cast<size_t>(width) * height);
      for (size_t p = 0; p < shrunk.size(); ++p) shrunk[p] = resized.rgb[3 * p];
      gray = shrunk.data();
    }
    const SceneItem& it = items[i];
    SampleRng jitter(jitter_seed, static_cast<uint64_t>(it.cell));
    const int left = (it.cell % 2) * cell + static_cast<int>(jitter.below(cell - width + 1));
    const int top = (it.cell / 2) * cell + static_cast<int>(jitter.below(cell - height + 1));
    const std::array<uint8_t, 3>& rgb = kSceneColourRgb[static_cast<size_t>(it.colour)];
    for (int y = 0; y < height; ++y) {
      uint8_t* row = out.rgb.data() + (static_cast<size_t>(top + y) * canvas + left) * 3;
      for (int x = 0; x < width; ++x) {
        const unsigned g = gray[static_cast<size_t>(y) * width + x];
        // (v·g + 127) / 255 rounds v·g/255 to nearest (v·g/255 never ends in exactly .5)
        for (size_t c = 0; c < 3; ++c) row[3 * x + c] = static_cast<uint8_t>((rgb[c] * g + 127) / 255);
      }
    }
  }
  return out;
}

SceneGenerator::SceneGenerator(const LabeledImages& source, SceneSplit split, SceneOptions options)
    : source_(&source), split_(split), options_(options) {
  const std::string who = std::string("SceneGenerator (") + scene_split_name(split) + "): ";
  if (options.canvas < 32 || options.canvas > kMaxSceneCanvas)
    throw Error(who + "canvas " + std::to_string(options.canvas) + ", expected 32.." + std::to_string(kMaxSceneCanvas));
  if (options.min_items < 1 || options.max_items > kCells || options.min_items > options.max_items)
    throw Error(who + "min_items " + std::to_string(options.min_items) + ", max_items " +
                std::to_string(options.max_items) + ", expected 1 <= min_items <= max_items <= 4");
  if (options.count <= 0) throw Error(who + "count " + std::to_string(options.count) + ", expected at least 1");
  if (!(options.sibling_lookalike >= 0 && options.sibling_lookalike <= 1))
    throw Error(who + "sibling_lookalike " + std::to_string(options.sibling_lookalike) + ", expected 0..1");
  if (source.count <= 0 || source.rows <= 0 || source.cols <= 0 ||
      source.pixels.size() != static_cast<size_t>(source.count) * source.rows * source.cols ||
      source.labels.size() != static_cast<size_t>(source.count))
    throw Error(who + "the source images are empty or inconsistent (" + std::to_string(source.count) + " images of " +
                std::to_string(source.rows) + "×" + std::to_string(source.cols) + ", " +
                std::to_string(source.pixels.size()) + " pixels, " + std::to_string(source.labels.size()) + " labels)");

  // Disjoint source ranges: train the first 5/6, val the rest (50000 / 10000 of the
  // Fashion-MNIST train set); test uses a separate set whole.
  const int64_t boundary = source.count * 5 / 6;
  const int64_t begin = split == SceneSplit::val ? boundary : 0;
  const int64_t end = split == SceneSplit::train ? boundary : source.count;
  for (int64_t i = begin; i < end; ++i) {
    const uint8_t label = source.labels[static_cast<size_t>(i)];
    if (label >= kClasses)
      throw Error(who + "label " + std::to_string(label) + " of source image " + std::to_string(i) +
                  " is out of range, expected 0..9");
    by_class_[label].push_back(i);
  }
  for (int c = 0; c < kClasses; ++c)
    if (by_class_[static_cast<size_t>(c)].empty())
      throw Error(who + "no source image of class " + std::to_string(c) + " (" +
                  kFashionMnistClasses[static_cast<size_t>(c)] + ") among source images [" + std::to_string(begin) +
                  ", " + std::to_string(end) + ")");
}

Scene SceneGenerator::make(int64_t index) const { return draw(index, false); }

Scene SceneGenerator::make_heldout(int64_t index) const {
  if (split_ == SceneSplit::train)
    throw Error("SceneGenerator::make_heldout: the train split has no held-out scenes (use val or test)");
  return draw(index, true);
}

Scene SceneGenerator::draw(int64_t index, bool heldout) const {
  if (index < 0 || index >= options_.count)
    throw Error(std::string("SceneGenerator (") + scene_split_name(split_) + "): scene index " + std::to_string(index) +
                " out of range [0, " + std::to_string(options_.count) + ")");
  // One stream per (split, held-out or not, index); the tag keeps these streams apart from
  // other users of the same seed.
  constexpr uint64_t kSceneTag = 0x5343454E45000000ull;  // "SCENE"
  const uint64_t tag = kSceneTag + 2 * static_cast<uint64_t>(split_) + (heldout ? 1 : 0);
  SampleRng rng(options_.seed, mix_stream(tag, static_cast<uint64_t>(index)));

  const int n = options_.min_items + static_cast<int>(rng.below(options_.max_items - options_.min_items + 1));
  std::array<int, kCells> cells = {0, 1, 2, 3};
  for (int i = 0; i < n; ++i)
    std::swap(cells[static_cast<size_t>(i)], cells[static_cast<size_t>(i + rng.below(kCells - i))]);
  std::sort(cells.begin(), cells.begin() + n);

  Scene scene;
  std::vector<const uint8_t*> pixels;
  for (int i = 0; i < n; ++i) {
    SceneItem it;
    it.cell = cells[static_cast<size_t>(i)];
    it.item = static_cast<int>(rng.below(kClasses));
    if (heldout) {
      it.colour = heldout_colour(it.item);
    } else {
      do {
        it.colour = static_cast<int>(rng.below(kSceneColours));
      } while (split_ == SceneSplit::train && is_heldout_combination(it.item, it.colour));
    }
    const std::vector<int64_t>& candidates = by_class_[static_cast<size_t>(it.item)];
    const int64_t src = candidates[static_cast<size_t>(rng.below(static_cast<int64_t>(candidates.size())))];
    scene.items.push_back(it);
    scene.sources.push_back(src);
    pixels.push_back(source_->image(src));
  }
  const uint64_t jitter_seed = (static_cast<uint64_t>(rng.next_u32()) << 32) | rng.next_u32();
  scene.image = render_scene(scene.items, pixels, source_->rows, source_->cols, options_.canvas, jitter_seed);
  scene.caption = describe_scene(scene.items);
  return scene;
}

namespace {

// The classes that look alike at 14 pixels (the confusions of a trained tiny CLIP): an item's
// kind, itself included. The original's class is in its kind and allowed with its colour, so
// the held-out redraw below ends. A bag's "kind" is all classes.
const std::vector<int>& lookalike_kind(int item) {
  static const std::vector<int> tops = {0, 2, 4, 6}, long_garments = {1, 3}, footwear = {5, 7, 9},
                                anything = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  switch (item) {
    case 0: case 2: case 4: case 6: return tops;
    case 1: case 3: return long_garments;
    case 5: case 7: case 9: return footwear;
    default: return anything;
  }
}

}  // namespace

std::vector<Scene> SceneGenerator::make_group(int64_t index, int size) const {
  if (size < 1 || size > kMaxSceneGroup)
    throw Error("SceneGenerator::make_group: group size " + std::to_string(size) + ", expected 1.." +
                std::to_string(kMaxSceneGroup));
  std::vector<Scene> group;
  group.push_back(make(index));
  // The siblings' own stream, apart from make()'s streams of the same index.
  constexpr uint64_t kSiblingTag = 0x5349424C00000000ull;  // "SIBL"
  SampleRng rng(options_.seed, mix_stream(kSiblingTag + static_cast<uint64_t>(split_), static_cast<uint64_t>(index)));
  while (static_cast<int>(group.size()) < size) {
    Scene sibling;
    // With at most 2 held-out classes per colour, a draw repeats an earlier caption with
    // probability <= 7/8 even in the worst case (one item, 7 captions taken); 1000 draws all
    // failing is < 1e-57.
    for (int attempt = 0;; ++attempt) {
      if (attempt == 1000) throw Error("SceneGenerator::make_group: no distinct sibling caption after 1000 draws");
      sibling.items = group.front().items;
      for (SceneItem& it : sibling.items) {
        // Drawn only when asked for, so that groups without look-alikes keep their streams.
        // After 100 failed attempts (a one-item scene whose kind is used up) any class goes.
        const std::vector<int>* kind = options_.sibling_lookalike > 0 && attempt < 100 &&
                                               rng.bernoulli(options_.sibling_lookalike)
                                           ? &lookalike_kind(it.item)
                                           : nullptr;
        do {
          it.item = kind ? (*kind)[static_cast<size_t>(rng.below(static_cast<int64_t>(kind->size())))]
                         : static_cast<int>(rng.below(kClasses));
        } while (split_ == SceneSplit::train && is_heldout_combination(it.item, it.colour));
      }
      sibling.caption = describe_scene(sibling.items);
      bool repeated = false;
      for (const Scene& s : group) repeated = repeated || s.caption == sibling.caption;
      if (!repeated) break;
    }
    std::vector<const uint8_t*> pixels;
    for (const SceneItem& it : sibling.items) {
      const std::vector<int64_t>& candidates = by_class_[static_cast<size_t>(it.item)];
      sibling.sources.push_back(candidates[static_cast<size_t>(rng.below(static_cast<int64_t>(candidates.size())))]);
      pixels.push_back(source_->image(sibling.sources.back()));
    }
    const uint64_t jitter_seed = (static_cast<uint64_t>(rng.next_u32()) << 32) | rng.next_u32();
    sibling.image = render_scene(sibling.items, pixels, source_->rows, source_->cols, options_.canvas, jitter_seed);
    group.push_back(std::move(sibling));
  }
  return group;
}

}  // namespace sparo
