// The Vulkan pipeline cache on disk: which file, whether a file fits this device, and an
// atomic write. VulkanBackend seeds its VkPipelineCache from the file and writes it back
// (vulkan_backend.cpp's top comment has the policy).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/vulkan/vk_api.h"

namespace sparo::vk {

// The cache file for `device`: SPARO_PIPELINE_CACHE when set ("off": none, returns ""), else
// $XDG_CACHE_HOME/sparo/ (or ~/.cache/sparo/) plus a name made of the vendor ID, device ID,
// driver version and pipeline cache UUID. "" when neither XDG_CACHE_HOME nor HOME is set.
std::string pipeline_cache_file(const VkPhysicalDeviceProperties& device);

// Empty when `data` starts with a VkPipelineCacheHeaderVersionOne written for `device`
// (length, version, vendor, device, UUID); otherwise what does not match.
std::string pipeline_cache_mismatch(const std::vector<uint8_t>& data, const VkPhysicalDeviceProperties& device);

// The file's bytes; an empty vector when it does not exist, cannot be read or holds more than
// max_bytes (read in chunks, so /dev/zero stops at the cap). Drivers' caches of our few dozen
// pipelines are well under a megabyte.
inline constexpr size_t kMaxPipelineCacheBytes = 256u << 20;
std::vector<uint8_t> read_file_bytes(const std::string& path, size_t max_bytes = kMaxPipelineCacheBytes);

// Writes `data` to a temporary file beside `path` and renames it over `path` (creating the
// folder), so that readers, other processes included, see the old file or the new one,
// never a partial one. Throws sparo::Error naming the path and the reason.
void write_file_atomically(const std::string& path, const std::vector<uint8_t>& data);

// Prints "sparo: <message>" on stderr, each distinct message once per process.
void warn_once(const std::string& message);

}  // namespace sparo::vk
