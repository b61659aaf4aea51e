#include "engine/vulkan/pipeline_cache.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <mutex>
#include <set>

#include "engine/tensor.h"

namespace sparo::vk {

namespace {

std::string hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%x", v);
  return buf;
}

std::string hex(const uint8_t* bytes, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    char buf[4];
    std::snprintf(buf, sizeof buf, "%02x", bytes[i]);
    out += buf;
  }
  return out;
}

// The header's fields are little-endian whatever the host's byte order (Vulkan spec).
uint32_t read_le32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

}  // namespace

std::string pipeline_cache_file(const VkPhysicalDeviceProperties& device) {
  if (const char* chosen = std::getenv("SPARO_PIPELINE_CACHE"); chosen && *chosen)
    return std::strcmp(chosen, "off") == 0 ? "" : chosen;
  std::string dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) dir = std::string(xdg) + "/sparo";
  else if (const char* home = std::getenv("HOME"); home && *home) dir = std::string(home) + "/.cache/sparo";
  else return "";
  // Every field that decides whether the driver can reuse the data is in the name, so
  // two GPUs (or a driver update) keep separate files instead of overwriting each other's.
  return dir + "/vulkan-pipelines-" + hex(device.vendorID) + "-" + hex(device.deviceID) + "-" +
         hex(device.driverVersion) + "-" + hex(device.pipelineCacheUUID, VK_UUID_SIZE) + ".bin";
}

std::string pipeline_cache_mismatch(const std::vector<uint8_t>& data, const VkPhysicalDeviceProperties& device) {
  constexpr size_t kHeaderBytes = 16 + VK_UUID_SIZE;  // VkPipelineCacheHeaderVersionOne as stored
  if (data.size() < kHeaderBytes)
    return std::to_string(data.size()) + " bytes, shorter than a pipeline cache header (" +
           std::to_string(kHeaderBytes) + " bytes)";
  const uint32_t length = read_le32(&data[0]), version = read_le32(&data[4]);
  const uint32_t vendor = read_le32(&data[8]), device_id = read_le32(&data[12]);
  if (length != kHeaderBytes)
    return "header length " + std::to_string(length) + ", expected " + std::to_string(kHeaderBytes);
  if (version != VK_PIPELINE_CACHE_HEADER_VERSION_ONE)
    return "header version " + std::to_string(version) + ", expected " +
           std::to_string(VK_PIPELINE_CACHE_HEADER_VERSION_ONE);
  if (vendor != device.vendorID) return "vendor ID 0x" + hex(vendor) + ", this device's is 0x" + hex(device.vendorID);
  if (device_id != device.deviceID)
    return "device ID 0x" + hex(device_id) + ", this device's is 0x" + hex(device.deviceID);
  if (std::memcmp(&data[16], device.pipelineCacheUUID, VK_UUID_SIZE) != 0)
    return "pipeline cache UUID " + hex(&data[16], VK_UUID_SIZE) + ", this driver's is " +
           hex(device.pipelineCacheUUID, VK_UUID_SIZE);
  return "";
}

std::vector<uint8_t> read_file_bytes(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::vector<uint8_t> data;
  std::vector<char> chunk(1 << 16);
  while (in) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    data.insert(data.end(), chunk.data(), chunk.data() + in.gcount());
    if (data.size() > max_bytes) return {};
  }
  if (in.bad()) return {};
  return data;
}

void write_file_atomically(const std::string& path, const std::vector<uint8_t>& data) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path target(path);
  if (target.has_parent_path()) {
    fs::create_directories(target.parent_path(), ec);
    if (ec) throw Error("cannot create the folder " + target.parent_path().string() + ": " + ec.message());
  }
  // Unique per process and call: concurrent writers never share a temporary file.
  static std::atomic<unsigned> counter{0};
  const std::string temp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
    out.close();
    if (!out) {
      fs::remove(temp, ec);
      throw Error("cannot write " + temp + ": " + std::strerror(errno));
    }
  }
  fs::rename(temp, target, ec);
  if (ec) {
    const std::string reason = ec.message();
    fs::remove(temp, ec);
    throw Error("cannot rename " + temp + " to " + path + ": " + reason);
  }
}

void warn_once(const std::string& message) {
  static std::mutex mutex;
  static std::set<std::string> said;
  std::lock_guard<std::mutex> lock(mutex);
  if (said.insert(message).second) std::cerr << "sparo: " << message << "\n";
}

}  // namespace sparo::vk
