// Image decoding and OpenCLIP's preprocessing, against pixels written by PIL
// (tools/golden/image_golden.py), plus the normalisation and error paths.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "training/image.h"

namespace sparo {
namespace {

const std::string kDir = std::string(SPARO_SOURCE_DIR) + "/tests/fixtures/image/";

// Largest per-channel difference between two images of one size.
int max_difference(const Image& a, const Image& b) {
  EXPECT_EQ(a.width, b.width);
  EXPECT_EQ(a.height, b.height);
  int worst = 0;
  for (size_t i = 0; i < std::min(a.rgb.size(), b.rgb.size()); ++i) worst = std::max(worst, std::abs(a.rgb[i] - b.rgb[i]));
  return worst;
}

TEST(Image, BicubicMatchesPil) {
  const Image input = load_image(kDir + "input.png");
  ASSERT_EQ(input.width, 37);
  ASSERT_EQ(input.height, 23);
  EXPECT_LE(max_difference(resize_bicubic(input, 16, 10), load_image(kDir + "down_16x10.png")), 1);
  EXPECT_LE(max_difference(resize_bicubic(input, 80, 50), load_image(kDir + "up_80x50.png")), 1);
}

TEST(Image, ClipPreprocessMatchesPil) {
  const Image out = clip_preprocess(load_image(kDir + "input.png"), 16);
  EXPECT_LE(max_difference(out, load_image(kDir + "clip_16.png")), 1);
}

TEST(Image, CenterCropTakesTheMiddle) {
  Image img;
  img.width = 5, img.height = 3;
  for (int i = 0; i < 15; ++i) img.rgb.insert(img.rgb.end(), {uint8_t(i), uint8_t(i), uint8_t(i)});
  const Image c = center_crop(img, 3, 1);
  EXPECT_EQ(c.rgb[0], 6);  // row 1, columns 1..3
  EXPECT_EQ(c.rgb[6], 8);
  EXPECT_THROW(center_crop(img, 6, 1), Error);
}

TEST(Image, NormalisesWithClipMeanAndStd) {
  Image img;
  img.width = 1, img.height = 1;
  img.rgb = {255, 0, 128};
  const std::vector<float> v = images_to_tensor({img}).to_float_vector();
  EXPECT_NEAR(v[0], (1.0f - kClipMean[0]) / kClipStd[0], 1e-6);
  EXPECT_NEAR(v[1], (0.0f - kClipMean[1]) / kClipStd[1], 1e-6);
  EXPECT_NEAR(v[2], (128 / 255.0f - kClipMean[2]) / kClipStd[2], 1e-6);
}

TEST(Image, CorruptOrMissingFilesNameThePath) {
  const std::string path = ::testing::TempDir() + "/sparo_corrupt.png";
  std::ofstream(path) << "\x89PNG\r\n\x1a\n not really a png";
  try {
    load_image(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
  EXPECT_THROW(load_image("/nonexistent/image.png"), Error);
}

TEST(Image, AnImageWithoutPixelsIsAnError) {
  // stb_image decodes a PNM header of height 0 to an image of no pixels, which clip_preprocess
  // then divided by (found by fuzz/fuzz_image.cpp).
  const std::string path = ::testing::TempDir() + "/sparo_empty.pgm";
  std::ofstream(path, std::ios::binary) << "P5 3 0 255 ";
  try {
    load_image(path);
    ADD_FAILURE() << "an image of 3x0 pixels was decoded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ": cannot be decoded (it is 3x0 pixels)"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}

TEST(Image, PngRoundTrip) {
  const Image input = load_image(kDir + "input.png");
  const std::string path = ::testing::TempDir() + "/sparo_roundtrip.png";
  save_png(path, input);
  EXPECT_EQ(load_image(path).rgb, input.rgb);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace sparo
