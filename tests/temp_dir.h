// A scratch folder for tests: a new empty folder under the system's temporary directory, made
// with mkdtemp (so parallel test processes never share one), removed with everything in it
// when the object goes.
#pragma once

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace sparo {

class TempDir {
 public:
  // `label` appears in the folder's name, to tell test folders apart when one is left behind.
  explicit TempDir(const std::string& label = "test") {
    std::string pattern = (std::filesystem::temp_directory_path() / ("sparo_" + label + "_XXXXXX")).string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp " + pattern + ": " + std::strerror(errno));
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // A path inside the folder (nothing is created).
  std::string operator/(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }
  // A fresh empty sub-folder.
  std::string dir(const std::string& name) const {
    const std::filesystem::path d = std::filesystem::path(path_) / name;
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    return d.string();
  }

 private:
  std::string path_;
};

}  // namespace sparo
