// The Vulkan entry points sparo uses, loaded at run time from libvulkan.so.1.
//
// The loader is opened with dlopen rather than linked, so a machine without Vulkan runs
// the sparo binary unchanged (on the CPU) instead of failing to start.
#pragma once

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include <string>

namespace sparo::vk {

#define SPARO_VK_GLOBAL_FUNCTIONS(X) \
  X(vkCreateInstance) X(vkEnumerateInstanceLayerProperties) X(vkEnumerateInstanceExtensionProperties)

#define SPARO_VK_INSTANCE_FUNCTIONS(X)                                                                        \
  X(vkDestroyInstance) X(vkEnumeratePhysicalDevices) X(vkGetPhysicalDeviceProperties)                        \
  X(vkGetPhysicalDeviceProperties2) X(vkGetPhysicalDeviceFeatures2) X(vkGetPhysicalDeviceMemoryProperties)  \
  X(vkGetPhysicalDeviceQueueFamilyProperties) X(vkEnumerateDeviceExtensionProperties) X(vkCreateDevice)     \
  X(vkGetDeviceProcAddr) X(vkCreateDebugUtilsMessengerEXT) X(vkDestroyDebugUtilsMessengerEXT)              \
  X(vkGetPhysicalDeviceCooperativeMatrixPropertiesNV)

#define SPARO_VK_DEVICE_FUNCTIONS(X)                                                                           \
  X(vkDestroyDevice) X(vkGetDeviceQueue) X(vkCreateBuffer) X(vkDestroyBuffer) X(vkGetBufferMemoryRequirements) \
  X(vkAllocateMemory) X(vkFreeMemory) X(vkBindBufferMemory) X(vkMapMemory) X(vkUnmapMemory)                   \
  X(vkCreateCommandPool) X(vkDestroyCommandPool) X(vkAllocateCommandBuffers) X(vkFreeCommandBuffers)          \
  X(vkBeginCommandBuffer) X(vkEndCommandBuffer) X(vkResetCommandBuffer) X(vkQueueSubmit) X(vkQueueWaitIdle)   \
  X(vkCreateFence) X(vkDestroyFence) X(vkWaitForFences) X(vkResetFences) X(vkCreateShaderModule)              \
  X(vkDestroyShaderModule) X(vkCreateDescriptorSetLayout) X(vkDestroyDescriptorSetLayout)                     \
  X(vkCreatePipelineLayout) X(vkDestroyPipelineLayout) X(vkCreateComputePipelines) X(vkDestroyPipeline)       \
  X(vkCreatePipelineCache) X(vkDestroyPipelineCache) X(vkGetPipelineCacheData) X(vkCmdBindPipeline)           \
  X(vkCmdPushConstants) X(vkCmdDispatch) X(vkCmdPipelineBarrier) X(vkCmdCopyBuffer) X(vkCmdFillBuffer)        \
  X(vkCmdPushDescriptorSetKHR) X(vkDeviceWaitIdle) X(vkCreateQueryPool) X(vkDestroyQueryPool)              \
  X(vkCmdResetQueryPool) X(vkCmdWriteTimestamp) X(vkGetQueryPoolResults)

struct Api {
#define SPARO_VK_DECLARE(name) PFN_##name name = nullptr;
  SPARO_VK_GLOBAL_FUNCTIONS(SPARO_VK_DECLARE)
  SPARO_VK_INSTANCE_FUNCTIONS(SPARO_VK_DECLARE)
  SPARO_VK_DEVICE_FUNCTIONS(SPARO_VK_DECLARE)
#undef SPARO_VK_DECLARE
  PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr = nullptr;
};

// The process-wide table. load_loader() fills the global functions (false, with a reason,
// when libvulkan.so.1 cannot be opened); the instance and device functions are filled by
// load_instance_functions / load_device_functions. An extension's function is null when no
// driver provides it.
Api& api();
bool load_loader(std::string* why_not);
void load_instance_functions(VkInstance instance);
void load_device_functions(VkDevice device);

// Throws sparo::Error naming the call and the VkResult when `result` is an error.
void check(VkResult result, const char* call);
const char* result_name(VkResult result);

}  // namespace sparo::vk
