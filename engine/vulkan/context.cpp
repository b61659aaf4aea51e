#include "engine/vulkan/context.h"

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>

#include "engine/tensor.h"

namespace sparo::vk {

namespace {

std::mutex messages_mutex;
std::vector<std::string> messages;

VKAPI_ATTR VkBool32 VKAPI_CALL on_validation_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                                     VkDebugUtilsMessageTypeFlagsEXT,
                                                     const VkDebugUtilsMessengerCallbackDataEXT* data, void*) {
  const std::string text = std::string(severity >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT ? "error: " : "warning: ") +
                           (data && data->pMessage ? data->pMessage : "(no message)");
  std::cerr << "vulkan validation " << text << "\n";
  std::lock_guard<std::mutex> lock(messages_mutex);
  messages.push_back(text);
  return VK_FALSE;
}

bool validation_requested() {
  const char* v = std::getenv("SPARO_VULKAN_VALIDATION");
  return v && std::strcmp(v, "0") != 0;
}

bool has_layer(const char* name) {
  uint32_t count = 0;
  api().vkEnumerateInstanceLayerProperties(&count, nullptr);
  std::vector<VkLayerProperties> layers(count);
  api().vkEnumerateInstanceLayerProperties(&count, layers.data());
  for (const auto& l : layers)
    if (std::strcmp(l.layerName, name) == 0) return true;
  return false;
}

bool has_layer_extension(const char* layer, const char* extension) {
  uint32_t count = 0;
  api().vkEnumerateInstanceExtensionProperties(layer, &count, nullptr);
  std::vector<VkExtensionProperties> exts(count);
  api().vkEnumerateInstanceExtensionProperties(layer, &count, exts.data());
  for (const auto& e : exts)
    if (std::strcmp(e.extensionName, extension) == 0) return true;
  return false;
}

// An instance (with validation when asked for); throws with the reason.
VkInstance create_instance(bool validation, bool* debug_utils) {
  VkApplicationInfo app{};
  app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
  app.pApplicationName = "sparo";
  app.pEngineName = "sparo";
  app.apiVersion = VK_API_VERSION_1_2;
  std::vector<const char*> layers, extensions;
  *debug_utils = false;
  if (validation) {
    if (!has_layer("VK_LAYER_KHRONOS_validation"))
      throw Error("vulkan: SPARO_VULKAN_VALIDATION is set but VK_LAYER_KHRONOS_validation is not installed "
                  "(Debian: vulkan-validationlayers)");
    layers.push_back("VK_LAYER_KHRONOS_validation");
    extensions.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
    *debug_utils = true;
  }
  // Synchronization validation as well: it reports missing or wrong barriers, which the
  // other checks do not (and which a CPU driver such as lavapipe rarely shows as wrong results).
  const VkValidationFeatureEnableEXT enabled_features[] = {VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT};
  VkValidationFeaturesEXT features{};
  features.sType = VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT;
  features.enabledValidationFeatureCount = 1;
  features.pEnabledValidationFeatures = enabled_features;
  const bool sync_validation = validation && has_layer_extension("VK_LAYER_KHRONOS_validation",
                                                                 VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME);
  if (sync_validation) extensions.push_back(VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME);
  VkInstanceCreateInfo ci{};
  ci.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
  ci.pNext = sync_validation ? &features : nullptr;
  ci.pApplicationInfo = &app;
  ci.enabledLayerCount = static_cast<uint32_t>(layers.size());
  ci.ppEnabledLayerNames = layers.data();
  ci.enabledExtensionCount = static_cast<uint32_t>(extensions.size());
  ci.ppEnabledExtensionNames = extensions.data();
  VkInstance instance = VK_NULL_HANDLE;
  check(api().vkCreateInstance(&ci, nullptr, &instance), "vkCreateInstance");
  load_instance_functions(instance);
  return instance;
}

bool has_extension(VkPhysicalDevice device, const char* name) {
  uint32_t count = 0;
  api().vkEnumerateDeviceExtensionProperties(device, nullptr, &count, nullptr);
  std::vector<VkExtensionProperties> exts(count);
  api().vkEnumerateDeviceExtensionProperties(device, nullptr, &count, exts.data());
  for (const auto& e : exts)
    if (std::strcmp(e.extensionName, name) == 0) return true;
  return false;
}

// VK_NV_cooperative_matrix with the feature on and the 16×16×16 fp16 → fp32 subgroup shape listed.
bool has_nv_coopmat_f16(VkPhysicalDevice device) {
  if (!has_extension(device, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME) ||
      !api().vkGetPhysicalDeviceCooperativeMatrixPropertiesNV)
    return false;
  VkPhysicalDeviceCooperativeMatrixFeaturesNV coop{};
  coop.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV;
  VkPhysicalDeviceFeatures2 features{};
  features.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
  features.pNext = &coop;
  api().vkGetPhysicalDeviceFeatures2(device, &features);
  if (!coop.cooperativeMatrix) return false;
  uint32_t count = 0;
  if (api().vkGetPhysicalDeviceCooperativeMatrixPropertiesNV(device, &count, nullptr) != VK_SUCCESS) return false;
  std::vector<VkCooperativeMatrixPropertiesNV> shapes(count);
  for (VkCooperativeMatrixPropertiesNV& s : shapes) s.sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV;
  if (api().vkGetPhysicalDeviceCooperativeMatrixPropertiesNV(device, &count, shapes.data()) != VK_SUCCESS) return false;
  for (const VkCooperativeMatrixPropertiesNV& s : shapes)
    if (s.MSize == 16 && s.NSize == 16 && s.KSize == 16 && s.AType == VK_COMPONENT_TYPE_FLOAT16_NV &&
        s.BType == VK_COMPONENT_TYPE_FLOAT16_NV && s.CType == VK_COMPONENT_TYPE_FLOAT32_NV &&
        s.DType == VK_COMPONENT_TYPE_FLOAT32_NV && s.scope == VK_SCOPE_SUBGROUP_NV)
      return true;
  return false;
}

const char* type_name(VkPhysicalDeviceType type) {
  switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete GPU";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated GPU";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual GPU";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "CPU";
    default: return "other";
  }
}

DeviceInfo describe(VkPhysicalDevice device, int index) {
  DeviceInfo info;
  info.index = index;
  VkPhysicalDeviceSubgroupProperties subgroup{};
  subgroup.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES;
  VkPhysicalDeviceMaintenance3Properties maintenance3{};
  maintenance3.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES;
  VkPhysicalDeviceDriverProperties driver{};
  driver.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES;
  subgroup.pNext = &maintenance3;
  maintenance3.pNext = &driver;
  VkPhysicalDeviceProperties2 props{};
  props.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
  props.pNext = &subgroup;
  api().vkGetPhysicalDeviceProperties2(device, &props);
  const VkPhysicalDeviceProperties& p = props.properties;
  info.name = p.deviceName;
  info.type = type_name(p.deviceType);
  info.driver = std::string(driver.driverName) + " " + driver.driverInfo;
  info.api_version = std::to_string(VK_API_VERSION_MAJOR(p.apiVersion)) + "." +
                     std::to_string(VK_API_VERSION_MINOR(p.apiVersion)) + "." +
                     std::to_string(VK_API_VERSION_PATCH(p.apiVersion));
  info.subgroup_size = subgroup.subgroupSize;
  info.subgroup_arithmetic = (subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                             (subgroup.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT);
  info.max_shared_memory = p.limits.maxComputeSharedMemorySize;
  info.max_workgroup_invocations = p.limits.maxComputeWorkGroupInvocations;
  info.max_storage_buffer_range = p.limits.maxStorageBufferRange;
  info.max_allocation_size = maintenance3.maxMemoryAllocationSize;
  info.timestamp_period_ns = p.limits.timestampPeriod;

  VkPhysicalDeviceVulkan12Features features12{};

  features12.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES;
  VkPhysicalDeviceVulkan11Features features11{};
  features11.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES;
  features12.pNext = &features11;
  VkPhysicalDeviceFeatures2 features{};
  features.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
  features.pNext = &features12;
  api().vkGetPhysicalDeviceFeatures2(device, &features);
  info.fp16 = features12.shaderFloat16 && features11.storageBuffer16BitAccess;
  info.cooperative_matrix = has_extension(device, "VK_KHR_cooperative_matrix");
  info.coopmat_nv_f16 = features12.shaderFloat16 && has_nv_coopmat_f16(device);
  info.push_descriptors = has_extension(device, VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME);

  VkPhysicalDeviceMemoryProperties memory;
  api().vkGetPhysicalDeviceMemoryProperties(device, &memory);
  for (uint32_t h = 0; h < memory.memoryHeapCount; ++h)
    info.heaps.push_back({memory.memoryHeaps[h].size, (memory.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) != 0});
  return info;
}

std::vector<VkPhysicalDevice> physical_devices(VkInstance instance) {
  uint32_t count = 0;
  check(api().vkEnumeratePhysicalDevices(instance, &count, nullptr), "vkEnumeratePhysicalDevices");
  std::vector<VkPhysicalDevice> devices(count);
  check(api().vkEnumeratePhysicalDevices(instance, &count, devices.data()), "vkEnumeratePhysicalDevices");
  return devices;
}

}  // namespace

std::vector<DeviceInfo> list_devices(std::string* why_not) {
  std::string reason;
  if (!load_loader(&reason)) {
    if (why_not) *why_not = reason;
    return {};
  }
  VkInstance instance = VK_NULL_HANDLE;
  try {
    bool debug_utils = false;
    instance = create_instance(false, &debug_utils);
    std::vector<DeviceInfo> out;
    const std::vector<VkPhysicalDevice> devices = physical_devices(instance);
    for (size_t i = 0; i < devices.size(); ++i) out.push_back(describe(devices[i], static_cast<int>(i)));
    api().vkDestroyInstance(instance, nullptr);
    if (out.empty() && why_not) *why_not = "the Vulkan loader found no device (no driver installed?)";
    return out;
  } catch (const Error& e) {
    if (instance) api().vkDestroyInstance(instance, nullptr);
    if (why_not) *why_not = e.what();
    return {};
  }
}

int choose_device(const std::vector<DeviceInfo>& devices, int requested_index) {
  if (devices.empty()) throw Error("vulkan: no device available");
  if (requested_index >= 0) {
    if (requested_index >= static_cast<int>(devices.size()))
      throw Error("vulkan: device vulkan:" + std::to_string(requested_index) + " does not exist (" +
                  std::to_string(devices.size()) + " Vulkan device(s): vulkan:0 .. vulkan:" +
                  std::to_string(devices.size() - 1) + ")");
    return requested_index;
  }
  auto rank = [](const std::string& type) {
    if (type == "discrete GPU") return 0;
    if (type == "integrated GPU") return 1;
    if (type == "virtual GPU") return 2;
    if (type == "CPU") return 3;
    return 4;
  };
  int best = 0;
  for (size_t i = 1; i < devices.size(); ++i)
    if (rank(devices[i].type) < rank(devices[static_cast<size_t>(best)].type)) best = static_cast<int>(i);
  return best;
}

Context::Context(int requested_index) {
  try {
    create(requested_index);
  } catch (...) {
    release();  // a constructor that throws runs no destructor
    throw;
  }
}

void Context::create(int requested_index) {
  std::string why_not;
  const std::vector<DeviceInfo> devices = list_devices(&why_not);
  if (devices.empty()) throw Error("vulkan: not available: " + why_not);
  const int index = choose_device(devices, requested_index);
  info_ = devices[static_cast<size_t>(index)];
  if (!info_.push_descriptors)
    throw Error("vulkan: device " + info_.name + " lacks VK_KHR_push_descriptor, which sparo needs");

  bool debug_utils = false;
  instance_ = create_instance(validation_requested(), &debug_utils);
  if (debug_utils) {
    VkDebugUtilsMessengerCreateInfoEXT mi{};
    mi.sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT;
    mi.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
    mi.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                     VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
    mi.pfnUserCallback = on_validation_message;
    check(api().vkCreateDebugUtilsMessengerEXT(instance_, &mi, nullptr, &messenger_), "vkCreateDebugUtilsMessengerEXT");
  }
  physical_ = physical_devices(instance_)[static_cast<size_t>(index)];

  uint32_t family_count = 0;
  api().vkGetPhysicalDeviceQueueFamilyProperties(physical_, &family_count, nullptr);
  std::vector<VkQueueFamilyProperties> families(family_count);
  api().vkGetPhysicalDeviceQueueFamilyProperties(physical_, &family_count, families.data());
  bool found = false;
  for (uint32_t f = 0; f < family_count && !found; ++f)  // prefer a compute queue without graphics
    if ((families[f].queueFlags & VK_QUEUE_COMPUTE_BIT) && !(families[f].queueFlags & VK_QUEUE_GRAPHICS_BIT))
      queue_family_ = f, found = true;
  for (uint32_t f = 0; f < family_count && !found; ++f)
    if (families[f].queueFlags & VK_QUEUE_COMPUTE_BIT) queue_family_ = f, found = true;
  if (!found) throw Error("vulkan: device " + info_.name + " has no compute queue");

  const float priority = 1.0f;
  VkDeviceQueueCreateInfo qi{};
  qi.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
  qi.queueFamilyIndex = queue_family_;
  qi.queueCount = 1;
  qi.pQueuePriorities = &priority;
  std::vector<const char*> extensions = {VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME};
  VkDeviceCreateInfo di{};
  di.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
  di.queueCreateInfoCount = 1;
  di.pQueueCreateInfos = &qi;
  // The cooperative-matrix shader needs its extension, its feature and fp16 arithmetic.
  VkPhysicalDeviceCooperativeMatrixFeaturesNV coop{};
  coop.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV;
  coop.cooperativeMatrix = VK_TRUE;
  VkPhysicalDeviceVulkan12Features features12{};
  features12.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES;
  features12.shaderFloat16 = VK_TRUE;
  features12.pNext = &coop;
  if (info_.coopmat_nv_f16) {
    extensions.push_back(VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME);
    di.pNext = &features12;
  }
  di.enabledExtensionCount = static_cast<uint32_t>(extensions.size());
  di.ppEnabledExtensionNames = extensions.data();
  check(api().vkCreateDevice(physical_, &di, nullptr, &device_), "vkCreateDevice");
  load_device_functions(device_);
  api().vkGetDeviceQueue(device_, queue_family_, 0, &queue_);
}

Context::~Context() { release(); }

void Context::release() {
  if (device_) {
    api().vkDeviceWaitIdle(device_);
    api().vkDestroyDevice(device_, nullptr);
  }
  if (messenger_) api().vkDestroyDebugUtilsMessengerEXT(instance_, messenger_, nullptr);
  if (instance_) api().vkDestroyInstance(instance_, nullptr);
  device_ = VK_NULL_HANDLE, messenger_ = VK_NULL_HANDLE, instance_ = VK_NULL_HANDLE;
}

std::vector<std::string> validation_messages() {
  std::lock_guard<std::mutex> lock(messages_mutex);
  return messages;
}

void clear_validation_messages() {
  std::lock_guard<std::mutex> lock(messages_mutex);
  messages.clear();
}

}  // namespace sparo::vk
