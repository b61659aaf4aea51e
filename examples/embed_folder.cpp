// embed_folder: CLIP image embeddings of every image in a folder, written as one safetensors
// file, through the C++ layers of an installed sparo (find_package(sparo CONFIG COMPONENTS cxx),
// target sparo::eval; tests/install/find_package builds it).
//
//   embed_folder CONFIG CHECKPOINT FOLDER OUT.safetensors [DEVICE]
//
// Images are the folder's files ending in .png, .jpg, .jpeg, .bmp, .gif, .tga, .ppm or .pgm
// (any case), in name order, not recursing. OUT holds "image_embeds", [N, E] unit rows in that
// order, and the metadata "files" (the file names, one a line). A progress line goes to stderr.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/safetensors.h"
#include "eval/encode.h"
#include "image/image.h"

namespace fs = std::filesystem;

static bool is_image(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* known : {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tga", ".ppm", ".pgm"})
    if (ext == known) return true;
  return false;
}

int main(int argc, char** argv) try {
  if (argc != 5 && argc != 6) {
    std::fprintf(stderr, "usage: %s CONFIG CHECKPOINT FOLDER OUT.safetensors [cpu|vulkan[:N]]\n", argv[0]);
    return 2;
  }
  const sparo::Device device = sparo::Device::parse(argc == 6 ? argv[5] : "cpu");

  std::vector<fs::path> files;
  for (const fs::directory_entry& entry : fs::directory_iterator(argv[3]))
    if (entry.is_regular_file() && is_image(entry.path())) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "embed_folder: no image files in %s\n", argv[3]);
    return 1;
  }

  // No vocabulary: an image-only model.
  const auto model = sparo::TrainedClip::from_files(argv[1], argv[2], "", device);
  const size_t n = files.size(), batch = 32;  // decoded images held at once
  std::vector<float> embeds;
  std::string names;
  for (size_t start = 0; start < n; start += batch) {
    std::vector<sparo::Image> images;
    for (size_t i = start; i < std::min(n, start + batch); ++i) {
      images.push_back(sparo::load_image(files[i].string()));
      names += files[i].filename().string() + "\n";
    }
    const std::vector<float> rows = model->encode_images(images).embeds.to_float_vector();
    embeds.insert(embeds.end(), rows.begin(), rows.end());
    std::fprintf(stderr, "\rembed_folder: %zu/%zu images", start + images.size(), n);
    std::fflush(stderr);
  }
  std::fprintf(stderr, "\n");

  const int64_t rows = static_cast<int64_t>(n), dim = static_cast<int64_t>(embeds.size() / n);
  sparo::save_safetensors(argv[4], {{"image_embeds", sparo::Tensor::from_vector(embeds, {rows, dim})}},
                          {{"files", names}});
  std::printf("%s: %lld images, %lld floats each\n", argv[4], static_cast<long long>(rows),
              static_cast<long long>(dim));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "\nembed_folder: %s\n", e.what());
  return 1;
}
