// Vulkan instance, device choice and queue; the device list `sparo info` prints.
//
// Device choice: an explicit index (vulkan:N), else discrete > integrated > virtual >
// CPU (e.g. Mesa's lavapipe). Validation layers: SPARO_VULKAN_VALIDATION=1 enables
// VK_LAYER_KHRONOS_validation (when installed) with synchronization validation; every
// message it sends is kept and can be read with validation_messages() (the tests fail on any).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/vulkan/vk_api.h"

namespace sparo::vk {

struct MemoryHeap {
  uint64_t size = 0;
  bool device_local = false;
};

struct DeviceInfo {
  int index = 0;
  std::string name, type, driver, api_version;
  std::vector<MemoryHeap> heaps;
  uint32_t subgroup_size = 0;
  bool subgroup_arithmetic = false;  // subgroupAdd/Max in compute shaders
  uint32_t max_shared_memory = 0;
  uint32_t max_workgroup_invocations = 0;
  uint64_t max_storage_buffer_range = 0;
  uint64_t max_allocation_size = 0;
  bool fp16 = false;                // shaderFloat16 + 16-bit storage buffers
  bool cooperative_matrix = false;  // VK_KHR_cooperative_matrix (listed; sparo's shader uses the NV one)
  // VK_NV_cooperative_matrix with 16×16×16 fragments of fp16 A, B and fp32 C, D in subgroup
  // scope, plus shaderFloat16: what shaders/matmul_coopmat_nv.comp needs. Enabled on the
  // device when true.
  bool coopmat_nv_f16 = false;
  bool push_descriptors = false;    // VK_KHR_push_descriptor (required by sparo)
  float timestamp_period_ns = 0;
};

// Every Vulkan device the loader sees. Empty, with `why_not` set, when there is no loader,
// no driver or no device.
std::vector<DeviceInfo> list_devices(std::string* why_not);

// Picks the device for `requested_index` (-1: the preferred one) from `devices`.
int choose_device(const std::vector<DeviceInfo>& devices, int requested_index);

class Context {
 public:
  // Throws sparo::Error with the reason when Vulkan or the device is not available.
  explicit Context(int requested_index);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  const DeviceInfo& info() const { return info_; }
  VkDevice device() const { return device_; }
  VkPhysicalDevice physical_device() const { return physical_; }
  VkQueue queue() const { return queue_; }
  uint32_t queue_family() const { return queue_family_; }

 private:
  void create(int requested_index);
  void release();  // what exists of the instance, messenger and device

  VkInstance instance_ = VK_NULL_HANDLE;
  VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
  VkPhysicalDevice physical_ = VK_NULL_HANDLE;
  VkDevice device_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  uint32_t queue_family_ = 0;
  DeviceInfo info_;
};

// Messages the validation layers sent in this process (when enabled).
std::vector<std::string> validation_messages();
void clear_validation_messages();

}  // namespace sparo::vk
