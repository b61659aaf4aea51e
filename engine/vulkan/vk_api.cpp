#include "engine/vulkan/vk_api.h"

#include <dlfcn.h>

#include "engine/tensor.h"

namespace sparo::vk {

Api& api() {
  static Api table;
  return table;
}

bool load_loader(std::string* why_not) {
  Api& a = api();
  if (a.vkGetInstanceProcAddr) return true;
  void* lib = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) lib = dlopen("libvulkan.so", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    if (why_not) *why_not = std::string("the Vulkan loader libvulkan.so.1 is not installed (") + dlerror() + ")";
    return false;
  }
  a.vkGetInstanceProcAddr = reinterpret_cast<PFN_vkGetInstanceProcAddr>(dlsym(lib, "vkGetInstanceProcAddr"));
  if (!a.vkGetInstanceProcAddr) {
    if (why_not) *why_not = "libvulkan.so.1 has no vkGetInstanceProcAddr";
    return false;
  }
#define SPARO_VK_LOAD_GLOBAL(name) a.name = reinterpret_cast<PFN_##name>(a.vkGetInstanceProcAddr(nullptr, #name));
  SPARO_VK_GLOBAL_FUNCTIONS(SPARO_VK_LOAD_GLOBAL)
#undef SPARO_VK_LOAD_GLOBAL
  return true;
}

void load_instance_functions(VkInstance instance) {
  Api& a = api();
#define SPARO_VK_LOAD_INSTANCE(name) a.name = reinterpret_cast<PFN_##name>(a.vkGetInstanceProcAddr(instance, #name));
  SPARO_VK_INSTANCE_FUNCTIONS(SPARO_VK_LOAD_INSTANCE)
#undef SPARO_VK_LOAD_INSTANCE
}

void load_device_functions(VkDevice device) {
  Api& a = api();
#define SPARO_VK_LOAD_DEVICE(name) a.name = reinterpret_cast<PFN_##name>(a.vkGetDeviceProcAddr(device, #name));
  SPARO_VK_DEVICE_FUNCTIONS(SPARO_VK_LOAD_DEVICE)
#undef SPARO_VK_LOAD_DEVICE
}

const char* result_name(VkResult r) {
  switch (r) {
    case VK_SUCCESS: return "VK_SUCCESS";
    case VK_NOT_READY: return "VK_NOT_READY";
    case VK_TIMEOUT: return "VK_TIMEOUT";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
    case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
    default: return "VkResult error";
  }
}

void check(VkResult result, const char* call) {
  if (result != VK_SUCCESS)
    throw Error(std::string("vulkan: ") + call + " failed with " + result_name(result) + " (" +
                std::to_string(static_cast<int>(result)) + ")");
}

}  // namespace sparo::vk
