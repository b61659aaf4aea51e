// load_image (stb_image: PNG, JPEG, BMP, GIF, PSD, PIC, PNM, TGA, HDR) on arbitrary file
// contents. A decoded image must hold width × height RGB pixels, and a small one then goes
// through the evaluation preprocessing every decoded image meets (clip_preprocess: bicubic
// resize and centre crop), which must take any size the decoder returns.
#include "fuzz/fuzz_support.h"
#include "image/image.h"

using sparo::fuzz::check;

// A smaller limit than load_image's default: the check is the same, and each decode stays
// short under the sanitizers (a 64-byte BMP may claim its full size in pixels).
constexpr int64_t kMaxPixels = int64_t{1} << 22;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = sparo::fuzz::write_file("image", data, size);
  sparo::Image image;
  try {
    image = sparo::load_image(path, kMaxPixels);
  } catch (const sparo::Error&) {
    return 0;
  }
  check(image.width > 0 && image.height > 0, "an image without pixels");
  check(image.rgb.size() == static_cast<size_t>(image.width) * static_cast<size_t>(image.height) * 3,
        "the pixels are not width × height × 3 bytes");
  if (static_cast<int64_t>(image.width) * image.height <= 4096) {
    const sparo::Image small = sparo::clip_preprocess(image, 7);
    check(small.width == 7 && small.height == 7 && small.rgb.size() == 7 * 7 * 3, "clip_preprocess: not 7 × 7");
  }
  return 0;
}
