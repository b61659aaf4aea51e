// Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 70000 grayscale 28×28 pictures of clothing in
// 10 classes, stored as IDX files (the MNIST format), usually gzipped. Debian ships them in the
// package dataset-fashion-mnist under /usr/share/datasets/fashion-mnist.
//
// IDX layout: a 4-byte magic 0x00 0x00 <type> <rank>, then `rank` big-endian uint32
// dimensions, then the elements, row-major. Only type 0x08 (unsigned bytes) is read.
//
// Errors (sparo::Error) name the file and what is wrong with it.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace sparo {

// Grayscale images with class labels.
struct LabeledImages {
  int64_t count = 0;
  int rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // count × rows × cols, row-major, 0 = black
  std::vector<uint8_t> labels;  // count

  // The rows × cols pixels of image i; i outside [0, count) is an error.
  const uint8_t* image(int64_t i) const;
};

// Class names as caption nouns, indexed by label.
extern const std::array<const char*, 10> kFashionMnistClasses;

// $SPARO_FASHION_MNIST when set and not empty, else /usr/share/datasets/fashion-mnist.
std::string default_fashion_mnist_dir();

// Reads one IDX file of unsigned bytes, gzipped or not (the gzip magic 1f 8b is detected,
// zlib inflates). Returns the elements; `dims` (if given) receives the dimensions. Checks the
// magic, the type, the rank (>= 1), that the data holds exactly the product of the dimensions
// (truncated or trailing data is an error) and that this is at most kMaxIdxBytes.
constexpr int64_t kMaxIdxBytes = int64_t{1} << 30;
std::vector<uint8_t> read_idx(const std::string& path, std::vector<int64_t>* dims = nullptr);

// split "train" (60000 images) or "test" (10000): <dir>/train-images-idx3-ubyte and
// <dir>/train-labels-idx1-ubyte (t10k-... for test), each taken as is or with ".gz" (the
// uncompressed file wins when both exist). Checks that images have rank 3 and labels rank 1,
// that the counts agree and that every label is < 10.
LabeledImages load_fashion_mnist(const std::string& dir, const std::string& split);

}  // namespace sparo
