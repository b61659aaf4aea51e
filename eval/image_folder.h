// Zero-shot evaluation data beyond Fashion scenes: a labelled image folder in torchvision's
// ImageFolder layout, and the prompt templates its class names are put into.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "image/image.h"

namespace sparo {

// ROOT/<class>/<image>: the class folders in sorted name order are labels 0..C-1 (as
// ImageFolder), the images of a class in sorted name order, at most max_per_class of them
// (< 0: all). A class's name is its folder's with '_' read as a space ("ankle_boot" →
// "ankle boot"). Hidden files and folders are skipped. Errors name the folder or file: ROOT
// missing, no class folders, a class folder without images, an image that cannot be decoded.
struct ImageFolder {
  std::vector<std::string> classes;
  std::vector<Image> images;
  std::vector<int> labels;  // one per image
};
ImageFolder load_image_folder(const std::string& root, int64_t max_per_class = -1);

// Prompt templates, "{}" standing for the class name: one per non-blank line of `path`; an
// empty path gives the Fashion-scenes caption grammar over every colour and place ("a red {}
// in the top left", ...: 32 templates), the language the tiny models learned. Errors: the file
// is missing or empty, holds more than max_bytes, a template without "{}".
inline constexpr uint64_t kMaxTemplateFileBytes = 16ull << 20;
std::vector<std::string> load_templates(const std::string& path, uint64_t max_bytes = kMaxTemplateFileBytes);
// The template with its first "{}" replaced by the class name.
std::string fill_template(const std::string& tmpl, const std::string& class_name);

}  // namespace sparo
