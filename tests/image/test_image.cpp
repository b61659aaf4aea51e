// Image decoding and OpenCLIP's preprocessing, against pixels written by PIL
// (tools/golden/image_golden.py), plus the normalisation and error paths.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "image/image.h"
#include "tests/expect_error.h"

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

// An 8x8 grey baseline JPEG: one block whose DC difference and AC run are both the one-bit
// Huffman code "0" (category 0, end of block). `ac_counts` replaces the AC table's 16 code
// counts (and its values, all 0), for tables stb_image cannot hold.
std::string tiny_jpeg(const std::vector<int>& ac_counts = {1}) {
  std::string dht_ac = {'\x10'};
  int codes = 0;
  for (int i = 0; i < 16; ++i) {
    const int c = i < static_cast<int>(ac_counts.size()) ? ac_counts[static_cast<size_t>(i)] : 0;
    dht_ac += static_cast<char>(c);
    codes += c;
  }
  dht_ac += std::string(static_cast<size_t>(codes), '\0');
  const auto segment = [](unsigned char marker, const std::string& body) {
    const size_t length = body.size() + 2;
    return std::string{'\xFF', static_cast<char>(marker), static_cast<char>(length >> 8), static_cast<char>(length & 255)} +
           body;
  };
  std::string dht_dc = {'\x00', '\x01'};
  dht_dc += std::string(15, '\0') + '\0';
  return std::string("\xFF\xD8") + segment(0xDB, '\0' + std::string(64, '\x01')) +
         segment(0xC0, std::string("\x08\x00\x08\x00\x08\x01\x01\x11\x00", 9)) + segment(0xC4, dht_dc) +
         segment(0xC4, dht_ac) + segment(0xDA, std::string("\x01\x01\x00\x00\x3F\x00", 6)) + "\x3F\xFF\xD9";
}

std::string write_temp(const std::string& name, const std::string& bytes) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

// stb_image 2.27 writes past its Huffman tables (over the decoder's state) when a DHT table
// declares more than 256 codes; found by fuzz/fuzz_image.cpp, refused before stb reads it.
TEST(Image, AJpegHuffmanTableOfMoreThan256CodesIsRefused) {
  const std::string good = write_temp("sparo_tiny.jpg", tiny_jpeg());
  const Image img = load_image(good);
  EXPECT_EQ(img.width, 8);
  EXPECT_EQ(img.height, 8);
  const std::string bad = write_temp("sparo_bad_dht.jpg", tiny_jpeg({1, 0, 0, 0, 0, 0, 0, 255, 2}));
  expect_error([&] { load_image(bad); }, {bad, "a JPEG Huffman table declares more than 256 codes"});
  // Fill bytes before a marker are skipped, by stb as here.
  std::string filled = tiny_jpeg({1, 0, 0, 0, 0, 0, 0, 255, 2});
  filled.insert(0, "\xFF\xFF");
  const std::string bad_filled = write_temp("sparo_bad_dht_filled.jpg", filled);
  expect_error([&] { load_image(bad_filled); }, {"more than 256 codes"});
  std::filesystem::remove(good);
  std::filesystem::remove(bad);
  std::filesystem::remove(bad_filled);
}

// A 35-byte GIF claiming 10000 x 9000 pixels made stb allocate and fill about 1 GB; the
// size is now checked on the header first (found by fuzz/fuzz_image.cpp, in a BMP too).
TEST(Image, AnImageLargerThanTheLimitIsRefusedBeforeDecoding) {
  std::string gif = "GIF89a";
  const auto le16 = [&](int v) { gif += static_cast<char>(v & 255), gif += static_cast<char>(v >> 8); };
  le16(10000), le16(9000);
  gif += std::string("\x80\x00\x00\xFF\xFF\xFF\x00\x00\x00,", 10);
  le16(0), le16(0), le16(1), le16(1);
  gif += std::string("\x00\x02\x02\x44\x01\x00;", 7);
  const std::string path = write_temp("sparo_huge.gif", gif);
  expect_error([&] { load_image(path); }, {path, "it is 10000x9000 pixels, more than the limit of 89478485"});
  std::filesystem::remove(path);

  const std::string png = ::testing::TempDir() + "/sparo_2x2.png";
  Image two;
  two.width = two.height = 2;
  two.rgb.assign(12, 7);
  save_png(png, two);
  expect_error([&] { load_image(png, 3); }, {"it is 2x2 pixels, more than the limit of 3"});
  EXPECT_EQ(load_image(png, 4).rgb, two.rgb);
  std::filesystem::remove(png);
}

// stb_image 2.27 converted a 16-bit PGM to RGB as if it had 8-bit samples and then read
// twice that buffer (found by fuzz/fuzz_image.cpp: a heap-buffer-overflow read). Grey with
// alpha and RGBA become RGB as before.
TEST(Image, SixteenBitGreyAndImagesWithAlphaBecomeRgb) {
  const std::string samples("\x12\x34\xFF\x00\x00\x80", 6);
  const std::string pgm = write_temp("sparo_16bit.pgm", "P5 3 1 65535 " + samples);
  const Image grey = load_image(pgm);
  ASSERT_EQ(grey.rgb.size(), 9u);
  for (size_t p = 0; p < 3; ++p) {
    // Each pixel is grey and comes from its own sample. Which byte: stb 2.27 reads the
    // samples little-endian although PNM stores them big-endian, so either is accepted here.
    EXPECT_EQ(grey.rgb[3 * p], grey.rgb[3 * p + 1]);
    EXPECT_EQ(grey.rgb[3 * p], grey.rgb[3 * p + 2]);
    const uint8_t v = grey.rgb[3 * p];
    EXPECT_TRUE(v == static_cast<uint8_t>(samples[2 * p]) || v == static_cast<uint8_t>(samples[2 * p + 1])) << p;
  }
  std::filesystem::remove(pgm);
  // A 1x1 PNG, grey + alpha (colour type 4), then the same pixel as RGBA (colour type 6).
  const auto png = [](char colour_type, const std::string& pixel) {
    const auto be32 = [](uint32_t v) {
      return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
    };
    const auto chunk = [&](const std::string& type, const std::string& body) {
      const std::string crc_input = type + body;
      uint32_t crc = 0xFFFFFFFFu;
      for (unsigned char byte : crc_input) {
        crc ^= byte;
        for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
      }
      return be32(static_cast<uint32_t>(body.size())) + crc_input + be32(~crc);
    };
    // zlib: a stored block of the one scanline (filter byte 0, then the pixel), then its Adler-32.
    const std::string raw = std::string(1, '\0') + pixel;
    uint32_t a = 1, b = 0;
    for (unsigned char byte : raw) a = (a + byte) % 65521, b = (b + a) % 65521;
    const std::string zlib = std::string("\x78\x01\x01", 3) + static_cast<char>(raw.size()) + '\0' +
                             static_cast<char>(~raw.size()) + '\xFF' + raw + be32(b << 16 | a);
    return std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", be32(1) + be32(1) + '\x08' + colour_type + std::string(3, '\0')) +
           chunk("IDAT", zlib) + chunk("IEND", "");
  };
  const std::string grey_alpha = write_temp("sparo_ga.png", png('\x04', "\x40\x80"));
  EXPECT_EQ(load_image(grey_alpha).rgb, std::vector<uint8_t>({0x40, 0x40, 0x40}));
  const std::string rgba = write_temp("sparo_rgba.png", png('\x06', "\x01\x02\x03\x80"));
  EXPECT_EQ(load_image(rgba).rgb, std::vector<uint8_t>({1, 2, 3}));
  std::filesystem::remove(grey_alpha);
  std::filesystem::remove(rgba);
}

// stb_image 2.27 read a PNM header's numbers into an int without a bound: signed overflow
// (found by fuzz/fuzz_image.cpp, UBSan). Comments and whitespace are skipped as stb does.
TEST(Image, APnmHeaderNumberPastIntIsRefused) {
  const std::string pgm = write_temp("sparo_long.pgm", "P5\n# a comment 99999999999\n3 11111111111 255\n" + std::string(3, 'x'));
  expect_error([&] { load_image(pgm); }, {pgm, "a number in the PNM header is larger than 2^31 - 1"});
  const std::string ok = write_temp("sparo_ok.pgm", "P5\n# a comment 99999999999\n3 1 255\n" + std::string(3, 'x'));
  EXPECT_EQ(load_image(ok).width, 3);
  std::filesystem::remove(pgm);
  std::filesystem::remove(ok);
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
