#include "eval/image_folder.h"

#include <algorithm>
#include <filesystem>

#include "engine/tensor.h"
#include "text/text_files.h"
#include "training/data/scenes.h"

namespace sparo {

namespace fs = std::filesystem;

namespace {

bool hidden(const fs::path& p) { return !p.filename().empty() && p.filename().string()[0] == '.'; }

std::vector<fs::path> sorted_entries(const fs::path& dir, bool folders) {
  std::vector<fs::path> out;
  for (const fs::directory_entry& e : fs::directory_iterator(dir))
    if (!hidden(e.path()) && (folders ? e.is_directory() : e.is_regular_file())) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

ImageFolder load_image_folder(const std::string& root, int64_t max_per_class) {
  if (!fs::is_directory(root)) throw Error("image folder " + root + ": not a directory");
  ImageFolder folder;
  for (const fs::path& class_dir : sorted_entries(root, /*folders=*/true)) {
    std::string name = class_dir.filename().string();
    std::replace(name.begin(), name.end(), '_', ' ');
    std::vector<fs::path> files = sorted_entries(class_dir, /*folders=*/false);
    if (files.empty()) throw Error("image folder " + root + ": class folder " + class_dir.string() + " holds no images");
    if (max_per_class >= 0 && static_cast<int64_t>(files.size()) > max_per_class) files.resize(static_cast<size_t>(max_per_class));
    for (const fs::path& file : files) {
      folder.images.push_back(load_image(file.string()));  // its errors name the file
      folder.labels.push_back(static_cast<int>(folder.classes.size()));
    }
    folder.classes.push_back(name);
  }
  if (folder.classes.empty())
    throw Error("image folder " + root + ": no class folders (expected ROOT/<class>/<image>, as torchvision's ImageFolder)");
  return folder;
}

std::vector<std::string> load_templates(const std::string& path, uint64_t max_bytes) {
  std::vector<std::string> templates;
  if (path.empty()) {
    for (const char* colour : kSceneColourNames)
      for (const char* place : kSceneCellNames) templates.push_back(with_article(std::string(colour) + " {} in the " + place));
    return templates;
  }
  int line_no = 0;
  for (const std::string& line : read_lines(path, "templates", max_bytes)) {
    ++line_no;
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (line.find("{}") == std::string::npos)
      throw Error("templates " + path + ":" + std::to_string(line_no) + ": \"" + line +
                  "\" has no {} where the class name goes");
    templates.push_back(line);
  }
  if (templates.empty()) throw Error("templates " + path + ": no templates (one per line, {} for the class name)");
  return templates;
}

std::string fill_template(const std::string& tmpl, const std::string& class_name) {
  std::string out = tmpl;
  const size_t at = out.find("{}");
  if (at != std::string::npos) out.replace(at, 2, class_name);
  return out;
}

}  // namespace sparo
