#include "training/data/augment.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <utility>

namespace sparo {

namespace {

void check_image(const Image& img, const char* op) {
  if (img.width <= 0 || img.height <= 0)
    throw Error(std::string(op) + ": empty image (" + std::to_string(img.width) + "x" + std::to_string(img.height) + ")");
  const size_t expected = static_cast<size_t>(img.width) * img.height * 3;
  if (img.rgb.size() != expected)
    throw Error(std::string(op) + ": the image's pixel buffer holds " + std::to_string(img.rgb.size()) + " bytes, expected " +
                std::to_string(img.width) + "x" + std::to_string(img.height) + "x3 = " + std::to_string(expected));
}

// PIL's convert("L"), fixed point with rounding; the weights are 0.299, 0.587, 0.114 in 1/65536.
inline uint8_t luma(const uint8_t* p) {
  return static_cast<uint8_t>((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
}

// PIL's Image.blend(degenerate, image, factor) for one channel: d + f · (x − d) in float,
// clipped, truncated towards zero. Each step is exact in double and rounded to float by a
// cast, which reproduces PIL's two float roundings and keeps the compiler from fusing them
// into one multiply-add (a fused result truncates differently now and then).
inline uint8_t blend(int degenerate, int value, float factor) {
  const float product = static_cast<float>(static_cast<double>(factor) * (value - degenerate));
  const float t = static_cast<float>(degenerate + static_cast<double>(product));
  if (t <= 0.0f) return 0;
  if (t >= 255.0f) return 255;
  return static_cast<uint8_t>(t);
}

// ---- in-place versions, so a pipeline does not copy the image at every step -------------

void flip_in_place(Image& img) {
  for (int y = 0; y < img.height; ++y) {
    uint8_t* row = img.rgb.data() + static_cast<size_t>(y) * img.width * 3;
    for (int l = 0, r = img.width - 1; l < r; ++l, --r)
      for (int c = 0; c < 3; ++c) std::swap(row[l * 3 + c], row[r * 3 + c]);
  }
}

void brightness_in_place(Image& img, float factor) {  // ImageEnhance.Brightness: blend with black
  for (uint8_t& v : img.rgb) v = blend(0, v, factor);
}

void contrast_in_place(Image& img, float factor) {  // ImageEnhance.Contrast: blend with the mean luma
  const size_t pixels = img.rgb.size() / 3;
  uint64_t sum = 0;
  for (size_t i = 0; i < pixels; ++i) sum += luma(&img.rgb[i * 3]);
  const int mean = static_cast<int>(static_cast<double>(sum) / static_cast<double>(pixels) + 0.5);
  for (uint8_t& v : img.rgb) v = blend(mean, v, factor);
}

void saturation_in_place(Image& img, float factor) {  // ImageEnhance.Color: blend with the luma
  for (size_t i = 0; i < img.rgb.size(); i += 3) {
    uint8_t* p = &img.rgb[i];
    const int gray = luma(p);
    for (int c = 0; c < 3; ++c) p[c] = blend(gray, p[c], factor);
  }
}

inline uint8_t clip8(int v) { return static_cast<uint8_t>(std::clamp(v, 0, 255)); }

// PIL's rgb2hsv / hsv2rgb (libImaging/Convert.c, after Python's colorsys) with 8-bit H, S, V;
// the float/double mix follows PIL's so that the quantisation is the same.
void rgb_to_hsv(const uint8_t* rgb, uint8_t& h, uint8_t& s, uint8_t& v) {
  const int r = rgb[0], g = rgb[1], b = rgb[2];
  const int maxc = std::max({r, g, b}), minc = std::min({r, g, b});
  v = static_cast<uint8_t>(maxc);
  if (maxc == minc) {
    h = s = 0;
    return;
  }
  const float range = static_cast<float>(maxc - minc);
  const float sat = range / static_cast<float>(maxc);
  const float rc = static_cast<float>(maxc - r) / range, gc = static_cast<float>(maxc - g) / range,
              bc = static_cast<float>(maxc - b) / range;
  float hue;
  if (r == maxc) hue = bc - gc;
  else if (g == maxc) hue = static_cast<float>(2.0 + rc - bc);
  else hue = static_cast<float>(4.0 + gc - rc);
  const double turns = hue / 6.0 + 1.0;  // in [0, 2): PIL's fmod(turns, 1), exactly
  hue = static_cast<float>(turns >= 1.0 ? turns - 1.0 : turns);
  h = clip8(static_cast<int>(hue * 255.0));
  s = clip8(static_cast<int>(sat * 255.0));
}

void hsv_to_rgb(uint8_t h, uint8_t s, uint8_t v, uint8_t* rgb) {
  if (s == 0) {
    rgb[0] = rgb[1] = rgb[2] = v;
    return;
  }
  const double sector = static_cast<float>(h) * 6.0 / 255.0;
  const int i = static_cast<int>(std::floor(sector));
  const float f = static_cast<float>(sector - i);
  const float fs = f * static_cast<float>(s);
  const uint8_t p = clip8(static_cast<int>(std::round(static_cast<float>(v) * (255.0 - s) / 255.0)));
  const uint8_t q = clip8(static_cast<int>(std::round(static_cast<float>(v) * (255.0 - fs) / 255.0)));
  const uint8_t t = clip8(static_cast<int>(std::round(static_cast<float>(v) * (255.0 - s + fs) / 255.0)));
  const std::array<uint8_t, 3> out[6] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
  std::copy_n(out[i % 6].begin(), 3, rgb);
}

void hue_in_place(Image& img, float shift) {
  // torchvision: H (uint8) += int(hue_factor * 255) (a Python double), wrapping around the circle.
  const int delta = static_cast<int>(static_cast<double>(shift) * 255.0);
  for (size_t i = 0; i < img.rgb.size(); i += 3) {
    uint8_t h, s, v;
    rgb_to_hsv(&img.rgb[i], h, s, v);
    hsv_to_rgb(static_cast<uint8_t>((h + delta) & 255), s, v, &img.rgb[i]);
  }
}

void grayscale_in_place(Image& img) {
  for (size_t i = 0; i < img.rgb.size(); i += 3) {
    const uint8_t gray = luma(&img.rgb[i]);
    img.rgb[i] = img.rgb[i + 1] = img.rgb[i + 2] = gray;
  }
}

void solarize_in_place(Image& img, int threshold) {
  for (uint8_t& v : img.rgb)
    if (v >= threshold) v = static_cast<uint8_t>(255 - v);
}

void check_factor(float factor, const char* op) {
  if (!(factor >= 0.0f) || !std::isfinite(factor))
    throw Error(std::string(op) + ": the factor must be a finite value >= 0, got " + std::to_string(factor));
}

void check_jitter(float brightness, float contrast, float saturation, float hue) {
  const std::pair<const char*, float> strengths[] = {{"brightness", brightness}, {"contrast", contrast}, {"saturation", saturation}};
  for (const auto& [name, value] : strengths)
    if (!(value >= 0.0f) || !std::isfinite(value))
      throw Error(std::string("color_jitter: ") + name + " must be a finite value >= 0, got " + std::to_string(value));
  if (!(hue >= 0.0f && hue <= 0.5f)) throw Error("color_jitter: hue must lie in [0, 0.5], got " + std::to_string(hue));
}

void jitter_in_place(Image& img, float brightness, float contrast, float saturation, float hue, SampleRng& rng) {
  std::array<int, 4> order = {0, 1, 2, 3};
  for (int i = 3; i > 0; --i) std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(rng.below(i + 1))]);
  // Strength 0 means "neither drawn nor applied" (torchvision's None).
  const std::array<float, 4> strength = {brightness, contrast, saturation, hue};
  std::array<float, 4> factor{};
  for (size_t k = 0; k < 3; ++k)
    if (strength[k] > 0.0f) factor[k] = rng.uniform(std::max(0.0f, 1.0f - strength[k]), 1.0f + strength[k]);
  if (hue > 0.0f) factor[3] = rng.uniform(-hue, hue);
  for (const int op : order) {
    const size_t k = static_cast<size_t>(op);
    if (strength[k] == 0.0f) continue;
    if (op == 0) brightness_in_place(img, factor[k]);
    if (op == 1) contrast_in_place(img, factor[k]);
    if (op == 2) saturation_in_place(img, factor[k]);
    if (op == 3) hue_in_place(img, factor[k]);
  }
}

// ---- PIL's Gaussian blur: an extended box blur, three passes per axis -----------------------

// The box radius l + a (integer part l, fractional edge weight a) whose three passes have the
// variance sigma² (Gwosdek et al., "Theoretical foundations of Gaussian convolution by extended
// box filtering", 2011), computed in PIL's float precision.
float extended_box_radius(float sigma) {
  constexpr int kPasses = 3;
  const float sigma2 = sigma * sigma / kPasses;
  const float length = static_cast<float>(std::sqrt(12.0 * sigma2 + 1.0));
  const float l = static_cast<float>(std::floor((length - 1.0) / 2.0));
  float a = (2 * l + 1) * (l * (l + 1) - 3 * sigma2);
  a /= 6 * (sigma2 - (l + 1) * (l + 1));
  return l + a;
}

// PIL's fixed-point weights, in units of 2^-24: the 2l + 1 inner pixels weigh `inner` (1 / (2r + 1),
// truncated), the two pixels just outside share what is left of 2^24 (the fractional part a).
struct BoxWeights {
  int radius;  // the integer part l
  uint32_t inner, edge;
};

BoxWeights box_weights(float radius) {
  BoxWeights w;
  w.radius = static_cast<int>(radius);
  w.inner = static_cast<uint32_t>(static_cast<float>(1u << 24) / (radius * 2 + 1));
  w.edge = ((1u << 24) - static_cast<uint32_t>(w.radius * 2 + 1) * w.inner) / 2;
  return w;
}

// One box pass down the columns of a rows × row_len buffer of 8-bit samples (every sample
// is its own column, so the inner loops run over contiguous memory and vectorise); rows
// beyond the top and bottom repeat the edge rows.
void box_pass_down(const uint8_t* __restrict in, uint8_t* __restrict out, int rows, int row_len, const BoxWeights& w,
                   std::vector<uint32_t>& window_scratch) {
  const auto row = [&](int y) { return in + static_cast<size_t>(std::clamp(y, 0, rows - 1)) * row_len; };
  window_scratch.assign(static_cast<size_t>(row_len), 0);
  uint32_t* __restrict window = window_scratch.data();  // per column: the sum of the 2l + 1 inner rows around y
  for (int k = -w.radius; k <= w.radius; ++k) {
    const uint8_t* r = row(k);
    for (int j = 0; j < row_len; ++j) window[j] += r[j];
  }
  const uint32_t inner = w.inner, edge = w.edge;
  for (int y = 0; y < rows; ++y) {
    const uint8_t *before = row(y - w.radius - 1), *after = row(y + w.radius + 1), *leaving = row(y - w.radius);
    uint8_t* o = out + static_cast<size_t>(y) * row_len;
    for (int j = 0; j < row_len; ++j) {
      // (2l + 1) inner + 2 edge <= 2^24, so bulk <= 255 · 2^24 and the rounded result <= 255.
      const uint32_t bulk = window[j] * inner + static_cast<uint32_t>(before[j] + after[j]) * edge;
      o[j] = static_cast<uint8_t>((bulk + (1u << 23)) >> 24);
      window[j] += static_cast<uint32_t>(after[j]) - leaving[j];
    }
  }
}

// Transposes a height × width RGB image into width × height.
void transpose(const uint8_t* in, int width, int height, uint8_t* out) {
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      std::copy_n(in + (static_cast<size_t>(y) * width + x) * 3, 3, out + (static_cast<size_t>(x) * height + y) * 3);
}

void blur_in_place(Image& img, float sigma) {
  const float radius = extended_box_radius(sigma);
  if (radius <= 0.0f) return;
  const BoxWeights w = box_weights(radius);
  std::vector<uint8_t> a(img.rgb.size()), b(img.rgb.size());
  std::vector<uint32_t> window;
  // PIL blurs along x first (three passes), then along y; each pass rounds to 8 bits, so the
  // order matters. Along x = down the columns of the transposed image.
  transpose(img.rgb.data(), img.width, img.height, a.data());
  box_pass_down(a.data(), b.data(), img.width, img.height * 3, w, window);
  box_pass_down(b.data(), a.data(), img.width, img.height * 3, w, window);
  box_pass_down(a.data(), b.data(), img.width, img.height * 3, w, window);
  transpose(b.data(), img.height, img.width, a.data());
  box_pass_down(a.data(), b.data(), img.height, img.width * 3, w, window);
  box_pass_down(b.data(), a.data(), img.height, img.width * 3, w, window);
  box_pass_down(a.data(), img.rgb.data(), img.height, img.width * 3, w, window);
}

void check_scale(float lo, float hi, const std::string& what) {
  if (!(lo > 0.0f && lo <= hi && hi <= 1.0f))
    throw Error(what + ": the scale range must satisfy 0 < lo <= hi <= 1, got (" + std::to_string(lo) + ", " +
                std::to_string(hi) + ")");
}

// DINO's flip_and_color_jitter, then its GaussianBlur(p).
void dino_photometric(Image& crop, const MultiCropOptions& o, float blur_p, SampleRng& rng) {
  if (o.flip && rng.bernoulli(0.5f)) flip_in_place(crop);
  if (rng.bernoulli(o.jitter_p)) jitter_in_place(crop, o.brightness, o.contrast, o.saturation, o.hue, rng);
  if (rng.bernoulli(o.grayscale_p)) grayscale_in_place(crop);
  if (rng.bernoulli(blur_p)) blur_in_place(crop, rng.uniform(o.blur_sigma_lo, o.blur_sigma_hi));
}

}  // namespace

CropBox random_resized_crop_box(int width, int height, float scale_lo, float scale_hi, SampleRng& rng, float ratio_lo,
                                float ratio_hi) {
  if (width <= 0 || height <= 0)
    throw Error("random_resized_crop: empty image (" + std::to_string(width) + "x" + std::to_string(height) + ")");
  check_scale(scale_lo, scale_hi, "random_resized_crop");
  if (!(ratio_lo > 0.0f && ratio_lo <= ratio_hi && std::isfinite(ratio_hi)))
    throw Error("random_resized_crop: the aspect-ratio range must satisfy 0 < lo <= hi, got (" + std::to_string(ratio_lo) +
                ", " + std::to_string(ratio_hi) + ")");
  const double area = static_cast<double>(width) * height;
  const float log_lo = std::log(ratio_lo), log_hi = std::log(ratio_hi);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * rng.uniform(scale_lo, scale_hi);
    const double ratio = std::exp(static_cast<double>(rng.uniform(log_lo, log_hi)));
    // Python's round() rounds ties to even, as nearbyint does in the default rounding mode.
    const int w = static_cast<int>(std::nearbyint(std::sqrt(target_area * ratio)));
    const int h = static_cast<int>(std::nearbyint(std::sqrt(target_area / ratio)));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const int y = static_cast<int>(rng.below(height - h + 1));
      const int x = static_cast<int>(rng.below(width - w + 1));
      return {x, y, w, h};
    }
  }
  const double in_ratio = static_cast<double>(width) / height;
  int w = width, h = height;
  if (in_ratio < ratio_lo) h = std::max(1, static_cast<int>(std::nearbyint(w / static_cast<double>(ratio_lo))));
  else if (in_ratio > ratio_hi) w = std::max(1, static_cast<int>(std::nearbyint(h * static_cast<double>(ratio_hi))));
  return {(width - w) / 2, (height - h) / 2, w, h};
}

Image crop_and_resize(const Image& img, CropBox box, int size) {
  check_image(img, "crop_and_resize");
  if (size <= 0) throw Error("crop_and_resize: the output size must be > 0, got " + std::to_string(size));
  if (box.w <= 0 || box.h <= 0 || box.x < 0 || box.y < 0 || box.x + box.w > img.width || box.y + box.h > img.height)
    throw Error("crop_and_resize: the box " + std::to_string(box.w) + "x" + std::to_string(box.h) + " at (" +
                std::to_string(box.x) + ", " + std::to_string(box.y) + ") does not lie inside the " +
                std::to_string(img.width) + "x" + std::to_string(img.height) + " image");
  Image crop;
  crop.width = box.w;
  crop.height = box.h;
  crop.rgb.resize(static_cast<size_t>(box.w) * box.h * 3);
  for (int y = 0; y < box.h; ++y)
    std::copy_n(img.rgb.begin() + (static_cast<size_t>(box.y + y) * img.width + box.x) * 3, static_cast<size_t>(box.w) * 3,
                crop.rgb.begin() + static_cast<size_t>(y) * box.w * 3);
  if (box.w == size && box.h == size) return crop;  // PIL's resize to the same size is a copy
  return resize_bicubic(crop, size, size);
}

Image horizontal_flip(const Image& img) {
  check_image(img, "horizontal_flip");
  Image out = img;
  flip_in_place(out);
  return out;
}

Image color_jitter(const Image& img, float brightness, float contrast, float saturation, float hue, SampleRng& rng) {
  check_image(img, "color_jitter");
  check_jitter(brightness, contrast, saturation, hue);
  Image out = img;
  jitter_in_place(out, brightness, contrast, saturation, hue, rng);
  return out;
}

Image adjust_brightness(const Image& img, float factor) {
  check_image(img, "adjust_brightness");
  check_factor(factor, "adjust_brightness");
  Image out = img;
  brightness_in_place(out, factor);
  return out;
}

Image adjust_contrast(const Image& img, float factor) {
  check_image(img, "adjust_contrast");
  check_factor(factor, "adjust_contrast");
  Image out = img;
  contrast_in_place(out, factor);
  return out;
}

Image adjust_saturation(const Image& img, float factor) {
  check_image(img, "adjust_saturation");
  check_factor(factor, "adjust_saturation");
  Image out = img;
  saturation_in_place(out, factor);
  return out;
}

Image adjust_hue(const Image& img, float shift) {
  check_image(img, "adjust_hue");
  if (!(shift >= -0.5f && shift <= 0.5f)) throw Error("adjust_hue: the shift must lie in [-0.5, 0.5], got " + std::to_string(shift));
  Image out = img;
  hue_in_place(out, shift);
  return out;
}

Image to_grayscale(const Image& img) {
  check_image(img, "to_grayscale");
  Image out = img;
  grayscale_in_place(out);
  return out;
}

Image gaussian_blur(const Image& img, float sigma) {
  check_image(img, "gaussian_blur");
  if (!(sigma >= 0.0f && sigma <= kMaxBlurSigma))
    throw Error("gaussian_blur: sigma must lie in [0, " + std::to_string(kMaxBlurSigma) + "], got " + std::to_string(sigma));
  Image out = img;
  blur_in_place(out, sigma);
  return out;
}

Image solarize(const Image& img, int threshold) {
  check_image(img, "solarize");
  Image out = img;
  solarize_in_place(out, threshold);
  return out;
}

void validate(const MultiCropOptions& o) {
  const auto fail = [](const std::string& field, const std::string& expected, const std::string& got) {
    throw Error("MultiCropOptions." + field + " must be " + expected + ", got " + got);
  };
  if (o.global_size <= 0) fail("global_size", "> 0", std::to_string(o.global_size));
  if (o.local_size <= 0) fail("local_size", "> 0", std::to_string(o.local_size));
  if (o.local_crops < 0) fail("local_crops", ">= 0", std::to_string(o.local_crops));
  const auto check_range = [&](const char* name, float lo, float hi) {
    if (!(lo > 0.0f && lo <= hi && hi <= 1.0f))
      fail(std::string(name) + "_lo/_hi", "0 < lo <= hi <= 1", "(" + std::to_string(lo) + ", " + std::to_string(hi) + ")");
  };
  check_range("global_scale", o.global_scale_lo, o.global_scale_hi);
  check_range("local_scale", o.local_scale_lo, o.local_scale_hi);
  const std::pair<const char*, float> probabilities[] = {{"jitter_p", o.jitter_p},
                                                         {"grayscale_p", o.grayscale_p},
                                                         {"global1_blur_p", o.global1_blur_p},
                                                         {"global2_blur_p", o.global2_blur_p},
                                                         {"local_blur_p", o.local_blur_p},
                                                         {"solarize_p", o.solarize_p}};
  for (const auto& [name, p] : probabilities)
    if (!(p >= 0.0f && p <= 1.0f)) fail(name, "a probability in [0, 1]", std::to_string(p));
  const std::pair<const char*, float> strengths[] = {{"brightness", o.brightness}, {"contrast", o.contrast}, {"saturation", o.saturation}};
  for (const auto& [name, value] : strengths)
    if (!(value >= 0.0f) || !std::isfinite(value)) fail(name, "a finite value >= 0", std::to_string(value));
  if (!(o.hue >= 0.0f && o.hue <= 0.5f)) fail("hue", "in [0, 0.5]", std::to_string(o.hue));
  if (!(o.blur_sigma_lo >= 0.0f && o.blur_sigma_lo <= o.blur_sigma_hi && o.blur_sigma_hi <= kMaxBlurSigma))
    fail("blur_sigma_lo/_hi", "0 <= lo <= hi <= " + std::to_string(kMaxBlurSigma),
         "(" + std::to_string(o.blur_sigma_lo) + ", " + std::to_string(o.blur_sigma_hi) + ")");
}

std::vector<Image> dino_multi_crop(const Image& img, const MultiCropOptions& o, SampleRng& rng) {
  validate(o);
  check_image(img, "dino_multi_crop");
  std::vector<Image> crops;
  crops.reserve(static_cast<size_t>(2 + o.local_crops));
  for (int i = 0; i < 2 + o.local_crops; ++i) {
    const bool global = i < 2;
    const CropBox box = global ? random_resized_crop_box(img.width, img.height, o.global_scale_lo, o.global_scale_hi, rng)
                               : random_resized_crop_box(img.width, img.height, o.local_scale_lo, o.local_scale_hi, rng);
    Image crop = crop_and_resize(img, box, global ? o.global_size : o.local_size);
    dino_photometric(crop, o, i == 0 ? o.global1_blur_p : i == 1 ? o.global2_blur_p : o.local_blur_p, rng);
    if (i == 1 && rng.bernoulli(o.solarize_p)) solarize_in_place(crop, 128);
    crops.push_back(std::move(crop));
  }
  return crops;
}

Image clip_train_transform(const Image& img, int size, SampleRng& rng) {
  check_image(img, "clip_train_transform");
  if (size <= 0) throw Error("clip_train_transform: the size must be > 0, got " + std::to_string(size));
  return crop_and_resize(img, random_resized_crop_box(img.width, img.height, 0.9f, 1.0f, rng), size);
}

}  // namespace sparo
