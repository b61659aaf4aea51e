// Images: decoding (stb_image: PNG, JPEG, BMP, ...), PIL-style bicubic resizing,
// cropping, and conversion to normalised tensors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace sparo {

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // height × width × 3, row-major
};

// PIL's Image.MAX_IMAGE_PIXELS (OpenCLIP decodes with PIL): above it PIL warns of a possible
// decompression bomb, about 0.25 GiB of RGB.
constexpr int64_t kMaxImagePixels = 89478485;

// Decodes any format stb_image reads, converted to RGB. Errors name the file and the reason;
// an image of more than max_pixels pixels (by its header, before anything is allocated) is one.
Image load_image(const std::string& path, int64_t max_pixels = kMaxImagePixels);

// The size a file declares, read from its header alone (stb_image's info call: a few bytes
// are read, no pixel is decoded), for checking many images cheaply. Errors name the file and
// the reason. A file whose header reads may still fail to decode (a corrupt or cut body).
struct ImageSize {
  int width = 0, height = 0;
};
ImageSize read_image_size(const std::string& path);

void save_png(const std::string& path, const Image& image);

// Bicubic (a = -0.5) resampling with the filter widened by the scale when shrinking
// (antialiasing), separable, rounding to 8 bits after each pass — PIL's Image.resize
// with BICUBIC, which OpenCLIP's preprocessing uses.
Image resize_bicubic(const Image& image, int width, int height);
Image center_crop(const Image& image, int width, int height);

// OpenCLIP's evaluation preprocessing: the shorter side resized to `size` (bicubic), then
// a centred size × size crop.
Image clip_preprocess(const Image& image, int size);

// CLIP's normalisation constants (OpenAI's dataset mean/std).
constexpr float kClipMean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
constexpr float kClipStd[3] = {0.26862954f, 0.26130258f, 0.27577711f};
// ImageNet's, which DINO normalises with.
constexpr float kImageNetMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kImageNetStd[3] = {0.229f, 0.224f, 0.225f};

// A grey image (rows × cols bytes, e.g. Fashion-MNIST) as RGB.
Image gray_to_rgb(const uint8_t* pixels, int rows, int cols);

// [B, 3, H, W] floats: (pixel / 255 - mean[c]) / std[c]. All images must share one size.
Tensor images_to_tensor(const std::vector<Image>& images, const float mean[3] = kClipMean,
                        const float std[3] = kClipStd, Device device = Device::cpu());

}  // namespace sparo
