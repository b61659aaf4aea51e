#include "training/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <regex>

namespace sparo {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "sparo-checkpoint-1";

uint64_t parse_u64(const std::map<std::string, std::string>& meta, const std::string& key, const std::string& path) {
  const auto it = meta.find(key);
  if (it == meta.end()) throw Error("checkpoint " + path + ": metadata lacks \"" + key + "\"");
  try {
    size_t used = 0;
    const unsigned long long v = std::stoull(it->second, &used);
    if (used != it->second.size() || it->second.empty() || it->second[0] == '-') throw std::invalid_argument("");
    return v;
  } catch (const std::exception&) {
    throw Error("checkpoint " + path + ": metadata \"" + key + "\" is not a non-negative integer: \"" + it->second + "\"");
  }
}

}  // namespace

void save_safetensors_atomic(const std::string& path, const NamedTensors& tensors,
                             const std::map<std::string, std::string>& metadata) {
  const std::string tmp = path + ".tmp";
  save_safetensors(tmp, tensors, metadata);
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw Error("cannot move " + tmp + " to " + path + ": " + ec.message());
  }
}

void save_checkpoint(const std::string& path, const Checkpoint& c) {
  NamedTensors all;
  all.reserve(c.model.size() + c.optimizer.size() + c.extra.size());
  for (const auto& [n, t] : c.model) all.emplace_back("model." + n, t);
  for (const auto& [n, t] : c.optimizer) all.emplace_back("optimizer." + n, t);
  for (const auto& [n, t] : c.extra) all.emplace_back("extra." + n, t);
  save_safetensors_atomic(path, all,
                          {{"format", kFormat},
                           {"step", std::to_string(c.step)},
                           {"generator_seed", std::to_string(c.generator_seed)},
                           {"generator_offset", std::to_string(c.generator_offset)}});
}

Checkpoint load_checkpoint(const std::string& path) {
  std::map<std::string, std::string> meta;
  NamedTensors all = load_safetensors(path, Device::cpu(), &meta);
  if (meta["format"] != kFormat)
    throw Error("checkpoint " + path + ": not a sparo training checkpoint (format \"" + meta["format"] + "\", expected \"" +
                kFormat + "\")");
  Checkpoint c;
  c.step = static_cast<int64_t>(parse_u64(meta, "step", path));
  c.generator_seed = parse_u64(meta, "generator_seed", path);
  c.generator_offset = parse_u64(meta, "generator_offset", path);
  for (auto& [name, t] : all) {
    const size_t dot = name.find('.');
    const std::string section = name.substr(0, dot == std::string::npos ? 0 : dot);
    const std::string rest = dot == std::string::npos ? "" : name.substr(dot + 1);
    if (section == "model")
      c.model.emplace_back(rest, t);
    else if (section == "optimizer")
      c.optimizer.emplace_back(rest, t);
    else if (section == "extra")
      c.extra.emplace_back(rest, t);
    else
      throw Error("checkpoint " + path + ": unexpected tensor \"" + name + "\" (expected model.*, optimizer.* or extra.*)");
  }
  return c;
}

void write_text_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  const auto fail = [&](const std::string& what) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw Error("cannot write " + path + ": " + what + ": " + std::strerror(err));
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create " + tmp);
  for (size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      errno = err;
      fail("writing " + tmp);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    errno = err;
    fail("flushing " + tmp);
  }
  if (::close(fd) != 0) fail("closing " + tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("renaming " + tmp + " over it");
  const std::string dir = fs::path(path).parent_path().string();
  sync_directory(dir.empty() ? "." : dir);
}

std::string checkpoint_path(const std::string& dir, int64_t step) {
  char name[64];
  std::snprintf(name, sizeof name, "step-%08lld.safetensors", static_cast<long long>(step));
  return (fs::path(dir) / name).string();
}

std::vector<int64_t> list_checkpoints(const std::string& dir) {
  std::vector<int64_t> steps;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return steps;
  static const std::regex pattern(R"(step-(\d{8,})\.safetensors)");
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (!std::regex_match(name, m, pattern)) continue;
    // \d{8,} has no upper bound: a step past int64 is no checkpoint sparo wrote, and an
    // error naming the file beats std::stoll's bare "stoll" (std::out_of_range).
    const std::string digits = m[1].str();
    int64_t step = 0;
    if (std::from_chars(digits.data(), digits.data() + digits.size(), step).ec != std::errc())
      throw Error("checkpoints " + dir + ": the step number of " + name + " is larger than int64 allows (at most " +
                  std::to_string(std::numeric_limits<int64_t>::max()) +
                  "); it is not a sparo checkpoint: rename or remove it");
    steps.push_back(step);
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

}  // namespace sparo
