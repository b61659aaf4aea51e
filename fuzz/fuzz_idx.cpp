// The Fashion-MNIST loader (load_fashion_mnist, which reads both files with read_idx) on
// arbitrary files. The input holds the two: a 2-byte big-endian length, the labels file of
// that length, then the images file (either plain IDX or gzip). A set it accepts must hold
// count images of rows × cols pixels and count labels.
#include "fuzz/fuzz_support.h"
#include "training/data/fashion_mnist.h"

#include <algorithm>

using sparo::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t labels = std::min<size_t>(size - 2, size_t{data[0]} << 8 | data[1]);
  sparo::fuzz::write_file("train-labels-idx1-ubyte", data + 2, labels);
  sparo::fuzz::write_file("train-images-idx3-ubyte", data + 2 + labels, size - 2 - labels);
  sparo::LabeledImages set;
  try {
    set = sparo::load_fashion_mnist(sparo::fuzz::scratch().path(), "train");
  } catch (const sparo::Error&) {
    return 0;
  }
  check(set.count > 0 && set.rows > 0 && set.cols > 0, "an empty set was accepted");
  check(set.labels.size() == static_cast<size_t>(set.count), "label count differs from the image count");
  check(set.pixels.size() == static_cast<size_t>(set.count) * static_cast<size_t>(set.rows) * static_cast<size_t>(set.cols),
        "pixel count differs from count × rows × cols");
  check(set.image(set.count - 1) + set.rows * set.cols == set.pixels.data() + set.pixels.size(),
        "the last image does not end the pixels");
  return 0;
}
