// The backend registry: which backend owns a device's memory. The one place that knows every
// backend, so that the backends themselves need not know each other.
#include <map>
#include <mutex>

#include "engine/backend.h"
#include "engine/cpu/cpu_backend.h"
#if defined(SPARO_HAVE_VULKAN)
#include "engine/vulkan/vulkan_backend.h"
#endif

namespace sparo {

Backend& backend_for(Device device) {
  static cpu::CpuBackend cpu_backend;
  if (device.kind == Device::Kind::cpu) return cpu_backend;
#if defined(SPARO_HAVE_VULKAN)
  // One backend per Vulkan device, created on first use and kept for the whole process
  // (tensors may outlive any scope that could own it).
  static std::mutex vulkan_mutex;
  static auto* vulkan_backends = new std::map<int, vk::VulkanBackend*>();  // never destroyed, like the backends
  std::lock_guard<std::mutex> lock(vulkan_mutex);
  auto it = vulkan_backends->find(device.index);
  if (it == vulkan_backends->end()) it = vulkan_backends->emplace(device.index, new vk::VulkanBackend(device.index)).first;
  return *it->second;
#else
  throw Error("device " + device.str() + ": this build has no Vulkan backend (configured with SPARO_VULKAN=OFF)");
#endif
}

std::vector<std::string> compiled_backends() {
#if defined(SPARO_HAVE_VULKAN)
  return {"cpu", "vulkan (validated on lavapipe; not yet benchmarked on a GPU)"};
#else
  return {"cpu"};
#endif
}

}  // namespace sparo
