// Training-time image augmentations: torchvision's transforms as DINO and OpenCLIP apply them
// to PIL images, on sparo::Image (RGB, 8 bits). Every random draw comes from the SampleRng
// passed in, so the same rng state always gives the same bytes.
//
// Where torchvision delegates to PIL, PIL's arithmetic is reproduced: blur, brightness,
// contrast, saturation, hue, grayscale and solarize match Pillow 9.4 bit for bit (checked in
// tests/training/test_augment.cpp); the crop-resize is as exact as resize_bicubic:
//   * resizing is PIL's bicubic (resize_bicubic) — DINO and OpenCLIP both ask for BICUBIC;
//   * grayscale is PIL's convert("L"): (19595 R + 38470 G + 7471 B + 2^15) >> 16, i.e. the
//     ITU-R 601-2 luma 0.299 R + 0.587 G + 0.114 B rounded;
//   * brightness / contrast / saturation are ImageEnhance blends, out = d + f · (x − d) in
//     float, truncated to [0, 255], with the degenerate image d black / the rounded mean
//     luma / the luma;
//   * hue is PIL's RGB → HSV (8-bit H) → H + trunc(255 · hue) mod 256 → RGB (torchvision);
//   * the Gaussian blur is ImageFilter.GaussianBlur(radius = sigma), as DINO's GaussianBlur
//     uses it: three passes per axis (x first) of an extended box blur (Gwosdek et al. 2011)
//     in PIL's 2^-24 fixed point, edges replicated, rounded to 8 bits after each pass.
//     torchvision's GaussianBlur (a sampled Gaussian kernel) is not what DINO runs.
#pragma once

#include <vector>

#include "image/image.h"
#include "training/data/sample_rng.h"

namespace sparo {

struct CropBox {
  int x = 0, y = 0, w = 0, h = 0;  // left, top, width, height in pixels
};

// torchvision's RandomResizedCrop.get_params: up to 10 tries of an area fraction drawn from
// U(scale_lo, scale_hi) and an aspect ratio w/h drawn log-uniformly from (ratio_lo, ratio_hi),
// w and h rounded (ties to even, as Python's round); the first box that fits is placed
// uniformly. If none fits: the centred box of the whole image with its ratio clamped to the
// range. Draws: 2 per try, then 2 for the position.
CropBox random_resized_crop_box(int width, int height, float scale_lo, float scale_hi, SampleRng& rng,
                                float ratio_lo = 3.f / 4, float ratio_hi = 4.f / 3);
// The box cut out of the image and resized to size × size (PIL bicubic).
Image crop_and_resize(const Image& img, CropBox box, int size);

Image horizontal_flip(const Image& img);

// torchvision's ColorJitter: a random order of the four adjustments (a uniform permutation),
// factors brightness ∈ U(max(0, 1 − b), 1 + b), contrast and saturation likewise, hue shift
// ∈ U(−h, h). An adjustment whose strength is 0 is neither drawn nor applied (torchvision sets
// it to None), so all zeros is the identity. Draws: 3 for the order, then one per nonzero
// strength in the order brightness, contrast, saturation, hue. hue must lie in [0, 0.5].
Image color_jitter(const Image& img, float brightness, float contrast, float saturation, float hue, SampleRng& rng);
// The single adjustments (factor 1 / shift 0 changes nothing except for hue, whose HSV round
// trip is PIL's and may move a pixel by one).
Image adjust_brightness(const Image& img, float factor);
Image adjust_contrast(const Image& img, float factor);
Image adjust_saturation(const Image& img, float factor);
Image adjust_hue(const Image& img, float shift);  // shift ∈ [−0.5, 0.5], in turns of the hue circle

Image to_grayscale(const Image& img);  // luma replicated to the three channels
// sigma in [0, kMaxBlurSigma]; 0 is the identity. The bound keeps the box radius and the
// fixed-point sums in range (a sigma of 1000 pixels is already far beyond any use).
constexpr float kMaxBlurSigma = 1000.0f;
Image gaussian_blur(const Image& img, float sigma);
Image solarize(const Image& img, int threshold = 128);  // channels >= threshold become 255 − value

// DINO's DataAugmentationDINO, parameterised (DINO's ImageNet values: global_size 224,
// local_size 96, local_crops 8, global scale (0.4, 1), local scale (0.05, 0.4)).
struct MultiCropOptions {
  int global_size = 32;
  float global_scale_lo = 0.4f, global_scale_hi = 1.0f;
  int local_crops = 4;
  int local_size = 16;
  float local_scale_lo = 0.05f, local_scale_hi = 0.4f;
  bool flip = true;  // RandomHorizontalFlip(0.5)
  float jitter_p = 0.8f, brightness = 0.4f, contrast = 0.4f, saturation = 0.2f, hue = 0.1f;
  float grayscale_p = 0.2f;
  float blur_sigma_lo = 0.1f, blur_sigma_hi = 2.0f;
  float global1_blur_p = 1.0f, global2_blur_p = 0.1f, local_blur_p = 0.5f;
  float solarize_p = 0.2f;  // second global crop only
};

// Errors name the field: sizes > 0, 0 < scale_lo <= scale_hi <= 1, probabilities in [0, 1],
// local_crops >= 0, jitter strengths >= 0 with hue <= 0.5,
// 0 <= blur_sigma_lo <= blur_sigma_hi <= kMaxBlurSigma.
void validate(const MultiCropOptions& options);

// [global 1, global 2, local 1, ..., local n] (2 + local_crops images):
//   global 1: RRC(global) → flip(0.5) → jitter(jitter_p) → gray(grayscale_p) → blur(global1_blur_p)
//   global 2: the same with blur(global2_blur_p) → solarize(solarize_p)
//   local:    RRC(local)  → flip → jitter → gray → blur(local_blur_p)
// Validates the options first.
std::vector<Image> dino_multi_crop(const Image& img, const MultiCropOptions& options, SampleRng& rng);

// OpenCLIP's training transform (image_transform with is_train=True and default augmentation):
// RandomResizedCrop(size, scale = (0.9, 1.0), bicubic); no flip.
Image clip_train_transform(const Image& img, int size, SampleRng& rng);

}  // namespace sparo
