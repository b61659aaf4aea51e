// The Fashion-MNIST reader: the real data set (Debian's dataset-fashion-mnist), IDX files
// written here (raw and gzipped), and every kind of damage giving its own clear error.
#include <gtest/gtest.h>

#include <unistd.h>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tests/expect_error.h"
#include "tests/temp_dir.h"
#include "training/data/fashion_mnist.h"

namespace sparo {
namespace {

namespace fs = std::filesystem;

const TempDir& tmp() {
  static const TempDir dir("fashion_mnist");
  return dir;
}

std::string idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data, uint8_t type = 0x08) {
  std::string out = {'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((d >> shift) & 0xFF);
  out.append(data.begin(), data.end());
  return out;
}

void write_raw(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

std::string read_raw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// n images of rows × cols with a position-dependent pattern, and labels i % 10.
struct Small {
  int64_t n = 0;
  int rows = 0, cols = 0;
  std::vector<uint8_t> pixels, labels;
};

Small small_set(int64_t n, int rows, int cols) {
  Small s{n, rows, cols, {}, {}};
  for (int64_t i = 0; i < n * rows * cols; ++i) s.pixels.push_back(static_cast<uint8_t>((i * 37 + i / 7) % 256));
  for (int64_t i = 0; i < n; ++i) s.labels.push_back(static_cast<uint8_t>(i % 10));
  return s;
}

void write_split(const std::string& dir, const std::string& prefix, const Small& s, bool gz) {
  const std::string images = dir + "/" + prefix + "-images-idx3-ubyte";
  const std::string labels = dir + "/" + prefix + "-labels-idx1-ubyte";
  const std::string image_bytes =
      idx_bytes({static_cast<uint32_t>(s.n), static_cast<uint32_t>(s.rows), static_cast<uint32_t>(s.cols)}, s.pixels);
  const std::string label_bytes = idx_bytes({static_cast<uint32_t>(s.n)}, s.labels);
  if (gz) {
    write_gz(images + ".gz", image_bytes);
    write_gz(labels + ".gz", label_bytes);
  } else {
    write_raw(images, image_bytes);
    write_raw(labels, label_bytes);
  }
}

TEST(FashionMnist, RealTrainAndTestSets) {
  const LabeledImages train = load_fashion_mnist(default_fashion_mnist_dir(), "train");
  ASSERT_EQ(train.count, 60000);
  EXPECT_EQ(train.rows, 28);
  EXPECT_EQ(train.cols, 28);
  ASSERT_EQ(train.pixels.size(), 60000u * 28 * 28);
  ASSERT_EQ(train.labels.size(), 60000u);
  std::array<int, 10> per_class{};
  for (uint8_t l : train.labels) ++per_class[l];  // load checked l < 10
  for (int c = 0; c < 10; ++c) EXPECT_EQ(per_class[static_cast<size_t>(c)], 6000) << "class " << c;
  EXPECT_EQ(train.labels[0], 9);  // the first training image is an ankle boot
  EXPECT_EQ(train.labels[1], 0);  // then a t-shirt
  // the mean pixel 0.2860 (× 255) that Fashion-MNIST normalisation constants quote
  double sum = 0.0;
  for (uint8_t p : train.pixels) sum += p;
  EXPECT_NEAR(sum / static_cast<double>(train.pixels.size()) / 255.0, 0.2860, 0.0005);
  EXPECT_EQ(train.image(1), train.pixels.data() + 784);

  const LabeledImages test = load_fashion_mnist(default_fashion_mnist_dir(), "test");
  ASSERT_EQ(test.count, 10000);
  EXPECT_EQ(test.rows, 28);
  EXPECT_EQ(test.cols, 28);
  per_class = {};
  for (uint8_t l : test.labels) ++per_class[l];
  for (int c = 0; c < 10; ++c) EXPECT_EQ(per_class[static_cast<size_t>(c)], 1000) << "class " << c;
  EXPECT_EQ(test.labels[0], 9);
  EXPECT_NE(test.pixels, std::vector<uint8_t>(train.pixels.begin(), train.pixels.begin() + 10000 * 784));
  expect_error([&] { test.image(10000); }, {"image 10000 out of range [0, 10000)"});
  expect_error([&] { test.image(-1); }, {"out of range"});
}

TEST(FashionMnist, ClassNamesAndDefaultDir) {
  EXPECT_STREQ(kFashionMnistClasses[0], "t-shirt");
  EXPECT_STREQ(kFashionMnistClasses[9], "ankle boot");
  const char* old = std::getenv("SPARO_FASHION_MNIST");
  const std::string saved = old ? old : "";
  ::setenv("SPARO_FASHION_MNIST", "/somewhere/else", 1);
  EXPECT_EQ(default_fashion_mnist_dir(), "/somewhere/else");
  ::setenv("SPARO_FASHION_MNIST", "", 1);
  EXPECT_EQ(default_fashion_mnist_dir(), "/usr/share/datasets/fashion-mnist");
  ::unsetenv("SPARO_FASHION_MNIST");
  EXPECT_EQ(default_fashion_mnist_dir(), "/usr/share/datasets/fashion-mnist");
  if (old) ::setenv("SPARO_FASHION_MNIST", saved.c_str(), 1);
}

TEST(FashionMnist, HandMadeRawAndGzippedFilesLoad) {
  const Small s = small_set(13, 5, 7);
  for (bool gz : {false, true}) {
    const std::string dir = tmp().dir(gz ? "handmade_gz" : "handmade_raw");
    write_split(dir, "t10k", s, gz);
    const LabeledImages got = load_fashion_mnist(dir, "test");
    EXPECT_EQ(got.count, 13);
    EXPECT_EQ(got.rows, 5);
    EXPECT_EQ(got.cols, 7);
    EXPECT_EQ(got.pixels, s.pixels);
    EXPECT_EQ(got.labels, s.labels);
    EXPECT_EQ(got.image(12)[0], s.pixels[12 * 35]);
    // the train files are missing here
    expect_error([&] { load_fashion_mnist(dir, "train"); },
                 {dir + "/train-images-idx3-ubyte", dir + "/train-images-idx3-ubyte.gz", "dataset-fashion-mnist"});
  }
  // read_idx reports the dimensions, gzipped or not
  const std::string dir = tmp().dir("read_idx");
  const std::string bytes = idx_bytes({2, 3, 4, 5}, std::vector<uint8_t>(120, 7));
  write_raw(dir + "/a.idx", bytes);
  write_gz(dir + "/a.idx.gz", bytes);
  EXPECT_EQ(read_raw(dir + "/a.idx.gz").substr(0, 2), "\x1f\x8b");
  for (const std::string& p : {dir + "/a.idx", dir + "/a.idx.gz"}) {
    std::vector<int64_t> dims;
    const std::vector<uint8_t> data = read_idx(p, &dims);
    EXPECT_EQ(dims, (std::vector<int64_t>{2, 3, 4, 5}));
    EXPECT_EQ(data, std::vector<uint8_t>(120, 7));
  }
}

TEST(FashionMnist, UncompressedFileWinsOverGzipped) {
  const std::string dir = tmp().dir("both");
  Small a = small_set(4, 2, 2), b = small_set(4, 2, 2);
  b.pixels[0] ^= 0xFF;
  write_split(dir, "train", a, false);
  write_split(dir, "train", b, true);
  EXPECT_EQ(load_fashion_mnist(dir, "train").pixels, a.pixels);
}

TEST(FashionMnist, DamagedIdxFilesGiveClearErrors) {
  const std::string dir = tmp().dir("damaged");
  const std::vector<uint8_t> body(24, 1);
  const std::string good = idx_bytes({3, 2, 4}, body);
  auto check = [&](const std::string& name, const std::string& bytes, std::initializer_list<std::string> fragments,
                   bool gz = false) {
    const std::string path = dir + "/" + name;
    if (gz)
      write_gz(path, bytes);
    else
      write_raw(path, bytes);
    std::vector<std::string> all = {path};
    all.insert(all.end(), fragments.begin(), fragments.end());
    try {
      read_idx(path);
      ADD_FAILURE() << name << ": expected an error";
    } catch (const Error& e) {
      for (const std::string& f : all)
        EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << name << ": " << e.what();
    }
  };
  check("png", "\x89PNG\r\n\x1a\n........", {"bad magic 0x89504E47", "not an IDX file"});
  check("float", idx_bytes({3, 2, 4}, std::vector<uint8_t>(96), 0x0D), {"data type 0x0D (32-bit floats)", "only 0x08"});
  std::string floats = good;
  floats[2] = 0x0D;
  check("float_gz", floats, {"data type 0x0D", "not supported"}, true);
  check("rank0", std::string("\0\0\x08\0", 4), {"rank 0"});
  check("short", std::string("\0\0", 2), {"holds 2 bytes", "too short for an IDX header"});
  check("empty", "", {"holds 0 bytes"});
  check("short_header", good.substr(0, 9), {"truncated header", "rank 3 needs 12 bytes", "holds 5"});
  const std::string cut = good.substr(0, good.size() - 3);
  check("truncated", cut, {"truncated: header says 3×2×4 = 24 bytes, file holds 21 after the 16-byte header"});
  check("truncated_gz", cut, {"truncated", "file holds 21", "after gzip decompression"}, true);
  check("trailing", good + "xy", {"trailing data: header says 3×2×4 = 24 bytes, file holds more"});
  check("trailing_gz", good + "x", {"trailing data", "after gzip decompression"}, true);
  check("huge", idx_bytes({60000, 60000, 784}, {}), {"header says 60000×60000×784 bytes", "1 GiB limit"});
  std::filesystem::create_directories(dir + "/a_directory");
  expect_error([&] { read_idx(dir + "/a_directory"); }, {dir + "/a_directory", "not a regular file"});
  expect_error([&] { read_idx(dir + "/absent"); }, {dir + "/absent", "not found"});

  // damage to the gzip stream itself: flipped bytes in the deflate data (pseudo-random data,
  // so the stream is stored nearly verbatim and the CRC catches the change) and a cut-off stream
  std::vector<uint8_t> noise(4000);
  for (size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<uint8_t>((i * 2654435761u) >> 13);
  const std::string noisy = idx_bytes({4000}, noise);
  write_gz(dir + "/noise.gz", noisy);
  const std::string zipped = read_raw(dir + "/noise.gz");
  std::string flipped = zipped;
  for (size_t i = zipped.size() / 2; i < zipped.size() / 2 + 8; ++i) flipped[i] = static_cast<char>(flipped[i] ^ 0x5A);
  write_raw(dir + "/flipped.gz", flipped);
  expect_error([&] { read_idx(dir + "/flipped.gz"); }, {dir + "/flipped.gz", "corrupt gzip stream"});
  write_raw(dir + "/cut.gz", zipped.substr(0, zipped.size() / 2));
  expect_error([&] { read_idx(dir + "/cut.gz"); }, {dir + "/cut.gz", "corrupt gzip stream (truncated"});
  write_raw(dir + "/cut_trailer.gz", zipped.substr(0, zipped.size() - 4));  // the data is whole, the size field is not
  expect_error([&] { read_idx(dir + "/cut_trailer.gz"); }, {"corrupt gzip stream"});
  write_raw(dir + "/not_deflate.gz", std::string("\x1f\x8b\x08\x00garbage that is not deflate", 31));
  expect_error([&] { read_idx(dir + "/not_deflate.gz"); }, {"corrupt gzip stream"});
  EXPECT_EQ(read_idx(dir + "/noise.gz"), noise);  // the undamaged file reads back
}

TEST(FashionMnist, InconsistentSplitsGiveClearErrors) {
  const Small s = small_set(6, 3, 3);
  const std::string dir = tmp().dir("inconsistent");
  const std::string images = dir + "/train-images-idx3-ubyte";
  const std::string labels = dir + "/train-labels-idx1-ubyte";
  auto reset = [&] { write_split(dir, "train", s, false); };

  reset();
  write_raw(labels, idx_bytes({5}, std::vector<uint8_t>(5, 1)));
  expect_error([&] { load_fashion_mnist(dir, "train"); }, {"6 images in " + images, "5 labels in " + labels});

  reset();
  std::vector<uint8_t> bad_labels = s.labels;
  bad_labels[4] = 10;
  write_raw(labels, idx_bytes({6}, bad_labels));
  expect_error([&] { load_fashion_mnist(dir, "train"); }, {labels, "label 10 of image 4 is out of range"});

  reset();
  write_raw(labels, idx_bytes({6, 1, 1}, s.labels));  // an images file where the labels should be
  expect_error([&] { load_fashion_mnist(dir, "train"); },
               {"fashion-mnist: IDX file " + labels +
                ": bad magic 0x00000803, expected 0x00000801 (IDX labels, unsigned bytes, rank 1)"});

  reset();
  write_raw(images, idx_bytes({6, 9}, s.pixels));
  expect_error([&] { load_fashion_mnist(dir, "train"); }, {images, "bad magic 0x00000802, expected 0x00000803"});

  reset();
  write_raw(images, idx_bytes({0, 3, 3}, {}));
  write_raw(labels, idx_bytes({0}, {}));
  expect_error([&] { load_fashion_mnist(dir, "train"); }, {images, "holds no pixels (0×3×3)"});

  reset();
  write_raw(images, read_raw(images) + "!");
  expect_error([&] { load_fashion_mnist(dir, "train"); }, {"fashion-mnist: IDX file " + images, "trailing data"});

  expect_error([&] { load_fashion_mnist(dir, "validation"); }, {"split 'validation'", "'train' or 'test'"});
}

}  // namespace
}  // namespace sparo
