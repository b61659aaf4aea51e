// The torchvision/PIL-style augmentations and DINO's multi-crop: determinism from the
// SampleRng, crop geometry, exact pixel rules (flip, grayscale, solarize, brightness), blur
// properties, the pipeline's wiring, option validation and speed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <tuple>

#include "tests/expect_error.h"
#include "training/data/augment.h"

namespace sparo {
namespace {

Image random_image(int w, int h, uint64_t seed) {
  SampleRng rng(seed, 0);
  Image img;
  img.width = w;
  img.height = h;
  img.rgb.resize(static_cast<size_t>(w) * h * 3);
  for (uint8_t& v : img.rgb) v = static_cast<uint8_t>(rng.below(256));
  return img;
}

// A smooth colourful image (crops of noise would hide resampling mistakes less well).
Image gradient_image(int w, int h) {
  Image img;
  img.width = w;
  img.height = h;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      img.rgb.insert(img.rgb.end(), {static_cast<uint8_t>(255 * x / std::max(w - 1, 1)),
                                     static_cast<uint8_t>(255 * y / std::max(h - 1, 1)),
                                     static_cast<uint8_t>((x * 7 + y * 3) % 256)});
  return img;
}

Image constant_image(int w, int h, uint8_t value) {
  Image img;
  img.width = w;
  img.height = h;
  img.rgb.assign(static_cast<size_t>(w) * h * 3, value);
  return img;
}

double mean_of(const Image& img) {
  double sum = 0;
  for (uint8_t v : img.rgb) sum += v;
  return sum / static_cast<double>(img.rgb.size());
}

double variance_of(const Image& img) {
  const double mean = mean_of(img);
  double sum = 0;
  for (uint8_t v : img.rgb) sum += (v - mean) * (v - mean);
  return sum / static_cast<double>(img.rgb.size());
}

TEST(Augment, SameStreamSameBytesOtherStreamOtherBytes) {
  const Image img = gradient_image(64, 48);
  const MultiCropOptions options;
  SampleRng a(11, 5), b(11, 5), c(11, 6);
  const std::vector<Image> first = dino_multi_crop(img, options, a);
  const std::vector<Image> again = dino_multi_crop(img, options, b);
  const std::vector<Image> other = dino_multi_crop(img, options, c);
  ASSERT_EQ(first.size(), again.size());
  bool any_difference = false;
  for (size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(first[i].rgb, again[i].rgb) << "crop " << i;
    any_difference |= first[i].rgb != other[i].rgb;
  }
  EXPECT_TRUE(any_difference);

  SampleRng d(3, 1), e(3, 1), f(3, 2);
  const Image clip = clip_train_transform(img, 24, d);
  EXPECT_EQ(clip.rgb, clip_train_transform(img, 24, e).rgb);
  EXPECT_NE(clip.rgb, clip_train_transform(img, 24, f).rgb);
}

TEST(Augment, CropBoxesStayInsideAndCoverTheScaleRange) {
  for (const auto& [width, height, lo, hi] :
       std::vector<std::tuple<int, int, float, float>>{{200, 200, 0.05f, 0.4f}, {240, 180, 0.4f, 1.0f}, {97, 61, 0.08f, 0.5f}}) {
    SampleRng rng(42, static_cast<uint64_t>(width));
    const double area = static_cast<double>(width) * height;
    double smallest = 1.0, largest = 0.0;
    bool touched_left = false, touched_right = false;
    for (int i = 0; i < 3000; ++i) {
      const CropBox box = random_resized_crop_box(width, height, lo, hi, rng);
      ASSERT_GE(box.x, 0);
      ASSERT_GE(box.y, 0);
      ASSERT_GT(box.w, 0);
      ASSERT_GT(box.h, 0);
      ASSERT_LE(box.x + box.w, width);
      ASSERT_LE(box.y + box.h, height);
      touched_left |= box.x == 0;
      touched_right |= box.x + box.w == width;
      // Only 240 x 180 can fall back (scale up to 1), to the whole image, whose ratio is 4/3.
      const bool fallback = box.w == width && box.h == height;
      if (fallback) continue;
      // w and h are rounded: the area may move by up to (w + h) / 2 + 1/4 pixels.
      const double slack = (0.5 * (box.w + box.h) + 0.25) / area;
      const double fraction = box.w * box.h / area;
      EXPECT_GE(fraction, lo - slack);
      EXPECT_LE(fraction, hi + slack);
      const double ratio = static_cast<double>(box.w) / box.h;
      // w / h = r · (w / w_exact) · (h_exact / h) with r in [3/4, 4/3] and |w − w_exact| <= 1/2.
      EXPECT_GE(ratio, 0.75 * box.w / (box.w + 0.5) * (box.h - 0.5) / box.h - 1e-9);
      EXPECT_LE(ratio, 4.0 / 3.0 * box.w / (box.w - 0.5) * (box.h + 0.5) / box.h + 1e-9);
      smallest = std::min(smallest, fraction);
      largest = std::max(largest, fraction);
    }
    EXPECT_LT(smallest, lo + 0.05 * (hi - lo)) << width << "x" << height;
    EXPECT_GT(largest, hi - 0.1 * (hi - lo)) << width << "x" << height;
    EXPECT_TRUE(touched_left && touched_right);
  }
}

TEST(Augment, CropFallsBackToTheCentreWithTheRatioClamped) {
  // The whole area at any ratio in (3/4, 4/3) never fits a 300 × 100 image: torchvision's
  // fallback keeps the full height and clamps w / h to 4/3: w = round(133.3) = 133, centred.
  SampleRng rng(1, 1);
  const CropBox wide = random_resized_crop_box(300, 100, 1.0f, 1.0f, rng);
  EXPECT_EQ(wide.w, 133);
  EXPECT_EQ(wide.h, 100);
  EXPECT_EQ(wide.x, (300 - 133) / 2);
  EXPECT_EQ(wide.y, 0);
  const CropBox tall = random_resized_crop_box(90, 400, 1.0f, 1.0f, rng);
  EXPECT_EQ(tall.w, 90);
  EXPECT_EQ(tall.h, 120);  // round(90 / (3/4))
  EXPECT_EQ(tall.y, (400 - 120) / 2);
}

TEST(Augment, CropAndResizeTakesTheBox) {
  const Image img = random_image(20, 10, 1);
  const Image same = crop_and_resize(img, {3, 2, 5, 5}, 5);
  ASSERT_EQ(same.width, 5);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 5; ++x)
      for (int c = 0; c < 3; ++c) EXPECT_EQ(same.rgb[(y * 5 + x) * 3 + c], img.rgb[((y + 2) * 20 + x + 3) * 3 + c]);
  const Image scaled = crop_and_resize(constant_image(30, 30, 77), {4, 1, 17, 23}, 8);
  EXPECT_EQ(scaled.width, 8);
  EXPECT_EQ(scaled.height, 8);
  EXPECT_TRUE(std::all_of(scaled.rgb.begin(), scaled.rgb.end(), [](uint8_t v) { return v == 77; }));
  expect_error([&] { crop_and_resize(img, {16, 0, 5, 5}, 4); }, {"crop_and_resize", "5x5 at (16, 0)", "20x10"});
  expect_error([&] { crop_and_resize(img, {0, 0, 5, 5}, 0); }, {"output size must be > 0"});
}

TEST(Augment, FlipMirrorsAndTwiceIsIdentity) {
  const Image img = random_image(7, 4, 2);
  const Image flipped = horizontal_flip(img);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 7; ++x)
      for (int c = 0; c < 3; ++c) EXPECT_EQ(flipped.rgb[(y * 7 + x) * 3 + c], img.rgb[(y * 7 + 6 - x) * 3 + c]);
  EXPECT_EQ(horizontal_flip(flipped).rgb, img.rgb);
}

TEST(Augment, GrayscaleIsTheRoundedLuma) {
  const Image img = random_image(32, 32, 3);
  const Image gray = to_grayscale(img);
  for (size_t i = 0; i < img.rgb.size(); i += 3) {
    const double luma = 0.299 * img.rgb[i] + 0.587 * img.rgb[i + 1] + 0.114 * img.rgb[i + 2];
    EXPECT_LE(std::abs(gray.rgb[i] - luma), 0.5 + 1e-3) << int(img.rgb[i]) << " " << int(img.rgb[i + 1]) << " " << int(img.rgb[i + 2]);
    EXPECT_EQ(gray.rgb[i + 1], gray.rgb[i]);
    EXPECT_EQ(gray.rgb[i + 2], gray.rgb[i]);
  }
  EXPECT_EQ(to_grayscale(constant_image(2, 2, 255)).rgb, constant_image(2, 2, 255).rgb);
}

TEST(Augment, SolarizeInvertsFromTheThreshold) {
  Image ramp;
  ramp.width = 256;
  ramp.height = 1;
  for (int v = 0; v < 256; ++v) ramp.rgb.insert(ramp.rgb.end(), {uint8_t(v), uint8_t(255 - v), uint8_t(v / 2)});
  for (int threshold : {128, 200}) {
    const Image out = solarize(ramp, threshold);
    for (size_t i = 0; i < ramp.rgb.size(); ++i) {
      const int v = ramp.rgb[i];
      EXPECT_EQ(out.rgb[i], v >= threshold ? 255 - v : v);
    }
  }
}

TEST(Augment, BlurKeepsConstantsAndTheMeanAndSmooths) {
  for (float sigma : {0.1f, 0.7f, 2.0f, 6.0f}) {
    const Image flat = constant_image(9, 13, 173);
    EXPECT_EQ(gaussian_blur(flat, sigma).rgb, flat.rgb) << sigma;
    const Image noise = random_image(40, 30, 4);
    const Image blurred = gaussian_blur(noise, sigma);
    EXPECT_NEAR(mean_of(blurred), mean_of(noise), 1.0) << sigma;
    EXPECT_LT(variance_of(blurred), variance_of(noise)) << sigma;
    // The kernel is symmetric, so blurring commutes with mirroring.
    EXPECT_EQ(gaussian_blur(horizontal_flip(noise), sigma).rgb, horizontal_flip(blurred).rgb) << sigma;
  }
  const Image noise = random_image(40, 30, 5);
  EXPECT_LT(variance_of(gaussian_blur(noise, 2.0f)), variance_of(gaussian_blur(noise, 0.5f)));
  EXPECT_EQ(gaussian_blur(noise, 0.0f).rgb, noise.rgb);
  // An impulse spreads symmetrically and keeps its peak in the middle.
  Image dot = constant_image(15, 15, 0);
  for (int c = 0; c < 3; ++c) dot.rgb[(7 * 15 + 7) * 3 + c] = 255;
  const Image spread = gaussian_blur(dot, 1.5f);
  const auto at = [&](int x, int y) { return spread.rgb[(y * 15 + x) * 3]; };
  EXPECT_GT(at(7, 7), at(8, 7));
  EXPECT_GT(at(8, 7), 0);
  EXPECT_EQ(at(6, 7), at(8, 7));
  EXPECT_EQ(at(7, 6), at(7, 8));
  expect_error([&] { gaussian_blur(noise, -1.0f); }, {"gaussian_blur", "sigma"});
  expect_error([&] { gaussian_blur(noise, 1e30f); }, {"gaussian_blur", "sigma"});
}

TEST(Augment, JitterWithZeroStrengthIsIdentity) {
  const Image img = random_image(16, 16, 6);
  SampleRng rng(9, 9);
  EXPECT_EQ(color_jitter(img, 0, 0, 0, 0, rng).rgb, img.rgb);
}

TEST(Augment, BrightnessScalesAndTruncates) {
  const Image img = random_image(16, 16, 7);
  for (float factor : {0.0f, 0.5f, 1.0f, 1.5f}) {
    const Image out = adjust_brightness(img, factor);
    for (size_t i = 0; i < img.rgb.size(); ++i)
      EXPECT_EQ(out.rgb[i], std::min(255, static_cast<int>(std::floor(factor * img.rgb[i])))) << factor;
  }
  // Brightness alone: one factor in [0.6, 1.4] explains every pixel, v' = floor(f v).
  Image ramp;
  ramp.width = 120;
  ramp.height = 1;
  for (int v = 1; v <= 120; ++v) ramp.rgb.insert(ramp.rgb.end(), {uint8_t(v), uint8_t(v), uint8_t(v)});
  for (uint64_t stream = 0; stream < 20; ++stream) {
    SampleRng rng(5, stream);
    const Image out = color_jitter(ramp, 0.4f, 0, 0, 0, rng);
    double lo = 0.6, hi = 1.4 + 1e-6;
    for (size_t i = 0; i < ramp.rgb.size(); ++i) {
      lo = std::max(lo, out.rgb[i] / static_cast<double>(ramp.rgb[i]));
      hi = std::min(hi, (out.rgb[i] + 1) / static_cast<double>(ramp.rgb[i]));
    }
    EXPECT_LT(lo, hi) << "stream " << stream;
  }
}

TEST(Augment, ContrastSaturationAndHueFollowPil) {
  const Image img = random_image(12, 10, 8);
  EXPECT_EQ(adjust_contrast(img, 1.0f).rgb, img.rgb);
  EXPECT_EQ(adjust_saturation(img, 1.0f).rgb, img.rgb);
  EXPECT_EQ(adjust_saturation(img, 0.0f).rgb, to_grayscale(img).rgb);
  // Contrast 0: every channel becomes the mean luma, rounded.
  const Image gray = to_grayscale(img);
  double luma_sum = 0;
  for (size_t i = 0; i < gray.rgb.size(); i += 3) luma_sum += gray.rgb[i];
  const int mean = static_cast<int>(luma_sum / (gray.rgb.size() / 3) + 0.5);
  for (uint8_t v : adjust_contrast(img, 0.0f).rgb) EXPECT_EQ(v, mean);

  Image red = constant_image(1, 1, 0);
  red.rgb[0] = 255;
  EXPECT_EQ(adjust_hue(red, 1.0f / 3).rgb, (std::vector<uint8_t>{0, 255, 0}));  // a third of the circle: green
  const Image minus = adjust_hue(red, -1.0f / 3);  // H = 256 − 85 = 171, just past blue
  EXPECT_LE(minus.rgb[0], 8);
  EXPECT_EQ(minus.rgb[1], 0);
  EXPECT_EQ(minus.rgb[2], 255);
  const Image cyan = adjust_hue(red, 0.5f);
  EXPECT_EQ(cyan.rgb[0], 0);
  EXPECT_EQ(cyan.rgb[1], 255);
  EXPECT_GE(cyan.rgb[2], 245);
  const Image grey = constant_image(3, 3, 90);  // no saturation: no hue to turn
  EXPECT_EQ(adjust_hue(grey, 0.3f).rgb, grey.rgb);
  expect_error([&] { adjust_hue(red, 0.6f); }, {"adjust_hue", "[-0.5, 0.5]"});
  SampleRng rng(1, 1);
  expect_error([&] { color_jitter(red, -0.1f, 0, 0, 0, rng); }, {"color_jitter", "brightness"});
  expect_error([&] { color_jitter(red, 0, 0, 0, 0.7f, rng); }, {"color_jitter", "hue"});
}

uint64_t fnv1a(const Image& img) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (uint8_t v : img.rgb) hash = (hash ^ v) * 0x100000001b3ull;
  return hash;
}

// FNV-1a hashes of Pillow 9.4's output (Debian 12's python3-pil) for the same image:
//   a = [[[(x*53 + y*97 + c*31 + (x*y) % 7 * 40) % 256 for c in range(3)] for x in range(40)] for y in range(30)]
//   im = Image.fromarray(np.array(a, np.uint8), "RGB")
//   im.filter(ImageFilter.GaussianBlur(0.7)), ImageEnhance.Contrast(im).enhance(0.6), ...
//   hue: h, s, v = im.convert("HSV").split(); h += np.uint8(int(f * 255) % 256); merge, convert("RGB")
//   crop: im.crop((3, 4, 32, 25)).resize((16, 16), Image.BICUBIC)
TEST(Augment, MatchesPillowBitForBit) {
  Image img;
  img.width = 40;
  img.height = 30;
  for (int y = 0; y < 30; ++y)
    for (int x = 0; x < 40; ++x)
      for (int c = 0; c < 3; ++c) img.rgb.push_back(static_cast<uint8_t>((x * 53 + y * 97 + c * 31 + (x * y) % 7 * 40) % 256));
  EXPECT_EQ(fnv1a(gaussian_blur(img, 0.7f)), 0xc71fa3af796a7d0eull);
  EXPECT_EQ(fnv1a(gaussian_blur(img, 2.0f)), 0x7f31a9a35ef929f5ull);
  EXPECT_EQ(fnv1a(adjust_contrast(img, 0.6f)), 0x9d7d967814bf6f2bull);
  EXPECT_EQ(fnv1a(adjust_saturation(img, 0.6f)), 0xc002211bc22b13eaull);
  EXPECT_EQ(fnv1a(adjust_saturation(img, 1.3f)), 0xc0a676f2be91be9aull);
  EXPECT_EQ(fnv1a(adjust_hue(img, -0.2f)), 0x038cf2a09757dfb9ull);
  EXPECT_EQ(fnv1a(crop_and_resize(img, {3, 4, 29, 21}, 16)), 0x84dcde42bc87eaecull);
}

TEST(Augment, MultiCropShapesAndWiring) {
  const Image img = gradient_image(50, 30);
  MultiCropOptions options;
  SampleRng rng(1, 2);
  std::vector<Image> crops = dino_multi_crop(img, options, rng);
  ASSERT_EQ(crops.size(), 6u);
  for (size_t i = 0; i < crops.size(); ++i) {
    const int size = i < 2 ? options.global_size : options.local_size;
    EXPECT_EQ(crops[i].width, size);
    EXPECT_EQ(crops[i].height, size);
    EXPECT_EQ(crops[i].rgb.size(), static_cast<size_t>(size) * size * 3);
  }
  options.local_crops = 0;
  EXPECT_EQ(dino_multi_crop(img, options, rng).size(), 2u);

  // Every random step off: a constant image stays constant; solarize only on global crop 2.
  MultiCropOptions plain;
  plain.flip = false;
  plain.jitter_p = plain.grayscale_p = plain.solarize_p = 0;
  plain.global1_blur_p = plain.global2_blur_p = plain.local_blur_p = 0;
  const Image flat = constant_image(40, 40, 200);
  for (const Image& crop : dino_multi_crop(flat, plain, rng)) EXPECT_EQ(crop.rgb, constant_image(crop.width, crop.width, 200).rgb);
  plain.solarize_p = 1;
  crops = dino_multi_crop(flat, plain, rng);
  for (size_t i = 0; i < crops.size(); ++i)
    EXPECT_EQ(crops[i].rgb, constant_image(crops[i].width, crops[i].width, i == 1 ? 55 : 200).rgb) << i;

  // Grayscale always: every crop has equal channels, whatever else happens.
  MultiCropOptions gray;
  gray.grayscale_p = 1;
  for (int round = 0; round < 5; ++round)
    for (const Image& crop : dino_multi_crop(img, gray, rng))
      for (size_t i = 0; i < crop.rgb.size(); i += 3) {
        ASSERT_EQ(crop.rgb[i], crop.rgb[i + 1]);
        ASSERT_EQ(crop.rgb[i], crop.rgb[i + 2]);
      }
}

TEST(Augment, ValidateNamesTheField) {
  const auto expect_invalid = [](auto change, const std::string& field) {
    MultiCropOptions options;
    change(options);
    expect_error([&] { validate(options); }, {"MultiCropOptions." + field});
    SampleRng rng(0, 0);
    expect_error([&] { dino_multi_crop(constant_image(8, 8, 1), options, rng); }, {field});
  };
  EXPECT_NO_THROW(validate(MultiCropOptions{}));
  expect_invalid([](MultiCropOptions& o) { o.global_size = 0; }, "global_size");
  expect_invalid([](MultiCropOptions& o) { o.local_size = -3; }, "local_size");
  expect_invalid([](MultiCropOptions& o) { o.local_crops = -1; }, "local_crops");
  expect_invalid([](MultiCropOptions& o) { o.global_scale_lo = 0; }, "global_scale");
  expect_invalid([](MultiCropOptions& o) { o.local_scale_lo = 0.5f; }, "local_scale");  // lo > hi
  expect_invalid([](MultiCropOptions& o) { o.global_scale_hi = 1.5f; }, "global_scale");
  expect_invalid([](MultiCropOptions& o) { o.jitter_p = 1.2f; }, "jitter_p");
  expect_invalid([](MultiCropOptions& o) { o.grayscale_p = -0.1f; }, "grayscale_p");
  expect_invalid([](MultiCropOptions& o) { o.solarize_p = NAN; }, "solarize_p");
  expect_invalid([](MultiCropOptions& o) { o.local_blur_p = 2; }, "local_blur_p");
  expect_invalid([](MultiCropOptions& o) { o.hue = 0.6f; }, "hue");
  expect_invalid([](MultiCropOptions& o) { o.contrast = -1; }, "contrast");
  expect_invalid([](MultiCropOptions& o) { o.blur_sigma_lo = 3; }, "blur_sigma");
  expect_invalid([](MultiCropOptions& o) { o.blur_sigma_hi = INFINITY; }, "blur_sigma");
  SampleRng rng(0, 0);
  expect_error([&] { dino_multi_crop(Image{}, MultiCropOptions{}, rng); }, {"dino_multi_crop", "empty image"});
  expect_error([&] { random_resized_crop_box(10, 10, 0.5f, 0.2f, rng); }, {"random_resized_crop", "scale"});
  expect_error([&] { random_resized_crop_box(10, 10, 0.2f, 0.5f, rng, 2.0f, 1.0f); }, {"aspect-ratio"});
}

}  // namespace
}  // namespace sparo
