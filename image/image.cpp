#include "image/image.h"

#include <stb_image.h>
#include <stb_image_write.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>

namespace sparo {

namespace {

std::vector<uint8_t> read_image_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("image " + path + ": cannot be opened (" + std::strerror(errno) + ")");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw Error("image " + path + ": cannot be read (" + std::strerror(errno) + ")");
  return bytes;
}

// stb_image 2.27 (Debian 12's libstb) writes past its Huffman tables, over the decoder's own
// state, when a JPEG's DHT segment declares more than 256 codes in one table; 2.28 refuses such
// a table. Until then such a file is refused here, before stb sees it. The segments are found as
// stb finds them (a marker is FF, any fill FFs, a code; a segment starts with its length; scan
// data runs to the next marker other than FF 00 and restarts), and each table is read as stb
// reads it, bytes past the end counting as 0. Where stb would stop at an error this keeps
// looking, so it checks every table stb could build.
bool jpeg_has_oversized_huffman_table(const std::vector<uint8_t>& d) {
  const size_t n = d.size();
  const auto at = [&](size_t i) -> size_t { return i < n ? d[i] : 0; };
  size_t p = 0;
  while (p < n && d[p] == 0xFF) ++p;
  if (p == 0 || at(p) != 0xD8) return false;  // no start-of-image marker: stb does not read it as a JPEG
  ++p;
  while (p < n) {
    if (d[p] != 0xFF) {  // scan data, or bytes between segments that stb skips as well
      ++p;
      continue;
    }
    while (p < n && d[p] == 0xFF) ++p;
    if (p == n) break;
    const size_t code = d[p++];
    if (code == 0x00 || (code >= 0xD0 && code <= 0xD7)) continue;  // a stuffed FF or a restart, in scan data
    if (code == 0xD9) break;                                       // end of image: stb reads no further
    const size_t length = at(p) << 8 | at(p + 1);
    if (code == 0xC4) {  // DHT: tables of a class/id byte, 16 code counts, the codes' values
      size_t q = p + 2;
      for (int64_t left = static_cast<int64_t>(length) - 2; left > 0;) {
        if ((at(q) >> 4) > 1 || (at(q) & 15) > 3) break;  // stb refuses the table before building it
        size_t codes = 0;
        for (size_t i = 1; i <= 16; ++i) codes += at(q + i);
        if (codes > 256) return true;
        q += 17 + codes;
        left -= static_cast<int64_t>(17 + codes);
      }
    }
    p += length;
  }
  return false;
}

// stb_image 2.27 reads the width, height and maximum of a PNM header (P5, P6) into an int with
// no bound, which a long enough number overflows (undefined behaviour; 2.28 refuses it). The
// header is read here as stb reads it: whitespace and '#' comments to the end of the line
// before each number.
bool pnm_header_number_overflows(const std::vector<uint8_t>& d) {
  if (d.size() < 2 || d[0] != 'P' || (d[1] != '5' && d[1] != '6')) return false;
  const auto space = [](uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; };
  size_t p = 2;
  for (int number = 0; number < 3; ++number) {
    for (;;) {
      while (p < d.size() && space(d[p])) ++p;
      if (p == d.size() || d[p] != '#') break;
      while (p < d.size() && d[p] != '\n' && d[p] != '\r') ++p;
    }
    for (int64_t value = 0; p < d.size() && d[p] >= '0' && d[p] <= '9'; ++p)
      if ((value = value * 10 + (d[p] - '0')) > INT_MAX) return true;
  }
  return false;
}

}  // namespace

Image load_image(const std::string& path, int64_t max_pixels) {
  const std::vector<uint8_t> bytes = read_image_file(path);
  const auto fail = [&](const std::string& why) { throw Error("image " + path + ": cannot be decoded (" + why + ")"); };
  if (bytes.size() > static_cast<size_t>(INT_MAX)) fail("the file is larger than 2 GiB");
  if (jpeg_has_oversized_huffman_table(bytes))
    fail("a JPEG Huffman table declares more than 256 codes, which stb_image 2.27 would overflow");
  if (pnm_header_number_overflows(bytes)) fail("a number in the PNM header is larger than 2^31 - 1");
  const int size = static_cast<int>(bytes.size());
  int w = 0, h = 0, channels = 0;
  // The size is checked on the header, before stb allocates for it: a file of a few bytes may
  // claim 65535 x 65535 pixels, for which stb would allocate (and fill) gigabytes. And stb
  // decodes a header's zero size (a PNM "3 0") to an image that resizing would divide by.
  const auto check_size = [&] {
    if (w <= 0 || h <= 0) fail("it is " + std::to_string(w) + "x" + std::to_string(h) + " pixels");
    if (static_cast<int64_t>(w) * h > max_pixels)
      fail("it is " + std::to_string(w) + "x" + std::to_string(h) + " pixels, more than the limit of " +
           std::to_string(max_pixels));
  };
  if (!stbi_info_from_memory(bytes.data(), size, &w, &h, &channels)) fail(stbi_failure_reason());
  check_size();
  // Decoded with the file's own channels (0: no conversion asked of stb) and made RGB below as
  // stb would: stb_image 2.27 converts a 16-bit PGM to RGB as if its samples were 8-bit, then
  // reads twice the buffer it made (2.28 converts it correctly).
  const std::unique_ptr<stbi_uc, void (*)(void*)> pixels(stbi_load_from_memory(bytes.data(), size, &w, &h, &channels, 0),
                                                         stbi_image_free);
  if (!pixels) fail(stbi_failure_reason());
  check_size();  // as decoded, in case a decoder reads its header differently the second time
  if (channels < 1 || channels > 4) fail(std::to_string(channels) + " channels");
  Image img;
  img.width = w;
  img.height = h;
  const size_t count = static_cast<size_t>(w) * static_cast<size_t>(h);
  img.rgb.resize(count * 3);
  const size_t step = static_cast<size_t>(channels);
  for (size_t p = 0; p < count; ++p) {
    const stbi_uc* in = pixels.get() + p * step;  // grey, grey + alpha, RGB or RGBA: alpha is dropped
    for (size_t c = 0; c < 3; ++c) img.rgb[3 * p + c] = in[channels < 3 ? 0 : c];
  }
  return img;
}

ImageSize read_image_size(const std::string& path) {
  ImageSize size;
  int channels = 0;
  if (!stbi_info(path.c_str(), &size.width, &size.height, &channels))
    throw Error("image " + path + ": cannot be read (" + stbi_failure_reason() + ")");
  return size;
}

void save_png(const std::string& path, const Image& image) {
  if (!stbi_write_png(path.c_str(), image.width, image.height, 3, image.rgb.data(), image.width * 3))
    throw Error("image " + path + ": cannot be written");
}

namespace {

double bicubic(double x) {  // Keys' cubic with a = -0.5, as PIL
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

// Resamples `count` lines of `in_size` samples (stride `in_step` between samples, `line_step`
// between lines) to `out_size` samples each, PIL's way: the kernel support grows with the
// downscale factor, weights are normalised, results are rounded and clamped to 8 bits.
void resample_axis(const uint8_t* in, int in_size, int out_size, int count, int in_step, int line_step,
                   uint8_t* out, int out_step, int out_line_step) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = 2.0 * filter_scale;
  std::vector<double> weights;
  for (int o = 0; o < out_size; ++o) {
    const double center = (o + 0.5) * scale;
    const int first = std::max(0, static_cast<int>(std::floor(center - support + 0.5)));
    const int last = std::min(in_size, static_cast<int>(std::floor(center + support + 0.5)));
    weights.assign(static_cast<size_t>(std::max(last - first, 0)), 0.0);
    double total = 0.0;
    for (int i = first; i < last; ++i) total += weights[static_cast<size_t>(i - first)] = bicubic((i - center + 0.5) / filter_scale);
    for (double& w : weights) w /= total;
    for (int line = 0; line < count; ++line)
      for (int c = 0; c < 3; ++c) {
        double acc = 0.0;
        for (int i = first; i < last; ++i)
          acc += weights[static_cast<size_t>(i - first)] * in[static_cast<size_t>(line) * line_step + static_cast<size_t>(i) * in_step + c];
        out[static_cast<size_t>(line) * out_line_step + static_cast<size_t>(o) * out_step + c] =
            static_cast<uint8_t>(std::clamp(std::lround(acc), 0L, 255L));
      }
  }
}

}  // namespace

Image resize_bicubic(const Image& image, int width, int height) {
  if (width <= 0 || height <= 0) throw Error("resize_bicubic: target size must be positive");
  if (image.width <= 0 || image.height <= 0) throw Error("resize_bicubic: empty image");
  Image horizontal;  // width changes first, then height, as PIL does
  horizontal.width = width;
  horizontal.height = image.height;
  horizontal.rgb.resize(static_cast<size_t>(width) * image.height * 3);
  resample_axis(image.rgb.data(), image.width, width, image.height, 3, image.width * 3, horizontal.rgb.data(), 3,
                width * 3);
  Image out;
  out.width = width;
  out.height = height;
  out.rgb.resize(static_cast<size_t>(width) * height * 3);
  resample_axis(horizontal.rgb.data(), image.height, height, width, width * 3, 3, out.rgb.data(), width * 3, 3);
  return out;
}

Image center_crop(const Image& image, int width, int height) {
  if (width > image.width || height > image.height)
    throw Error("center_crop: crop " + std::to_string(width) + "x" + std::to_string(height) + " is larger than the image " +
                std::to_string(image.width) + "x" + std::to_string(image.height));
  // torchvision's CenterCrop: top = round((H - h) / 2) with Python's round (ties to even)
  const int top = static_cast<int>(std::nearbyint((image.height - height) / 2.0));
  const int left = static_cast<int>(std::nearbyint((image.width - width) / 2.0));
  Image out;
  out.width = width;
  out.height = height;
  out.rgb.resize(static_cast<size_t>(width) * height * 3);
  for (int y = 0; y < height; ++y)
    std::copy_n(image.rgb.begin() + (static_cast<size_t>(top + y) * image.width + left) * 3, static_cast<size_t>(width) * 3,
                out.rgb.begin() + static_cast<size_t>(y) * width * 3);
  return out;
}

Image clip_preprocess(const Image& image, int size) {
  // torchvision Resize(size): the shorter side becomes `size`, the longer keeps the aspect ratio.
  int w = size, h = size;
  if (image.width < image.height) h = static_cast<int>(static_cast<int64_t>(size) * image.height / image.width);
  else w = static_cast<int>(static_cast<int64_t>(size) * image.width / image.height);
  const Image resized = (w == image.width && h == image.height) ? image : resize_bicubic(image, w, h);
  return center_crop(resized, size, size);
}

Tensor images_to_tensor(const std::vector<Image>& images, const float mean[3], const float std[3], Device device) {
  if (images.empty()) throw Error("images_to_tensor: no images");
  const int w = images[0].width, h = images[0].height;
  std::vector<float> values(images.size() * 3 * static_cast<size_t>(w) * h);
  for (size_t b = 0; b < images.size(); ++b) {
    if (images[b].width != w || images[b].height != h)
      throw Error("images_to_tensor: image " + std::to_string(b) + " is " + std::to_string(images[b].width) + "x" +
                  std::to_string(images[b].height) + ", expected " + std::to_string(w) + "x" + std::to_string(h));
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < w * h; ++p)
        values[((b * 3 + c) * h * w) + p] = (images[b].rgb[static_cast<size_t>(p) * 3 + c] / 255.0f - mean[c]) / std[c];
  }
  return Tensor::from_vector(values, {static_cast<int64_t>(images.size()), 3, h, w}, device);
}

Image gray_to_rgb(const uint8_t* pixels, int rows, int cols) {
  Image img;
  img.width = cols;
  img.height = rows;
  img.rgb.resize(static_cast<size_t>(rows) * static_cast<size_t>(cols) * 3);
  for (size_t p = 0; p < static_cast<size_t>(rows) * static_cast<size_t>(cols); ++p)
    img.rgb[3 * p] = img.rgb[3 * p + 1] = img.rgb[3 * p + 2] = pixels[p];
  return img;
}

}  // namespace sparo
