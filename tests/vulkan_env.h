// Test environment for the Vulkan tests: Mesa's lavapipe pinned (VK_DRIVER_FILES), the
// validation layers on. The driver library is kept mapped (RTLD_NODELETE) so that
// LeakSanitizer can name its own small leaks, which tests/lsan_suppressions.txt lists.
// SPARO_TEST_VULKAN_ICD=path/to/icd.json runs the same tests on another driver, a real
// GPU's (scripts/gpu_check.sh).
#pragma once

#include <dlfcn.h>

#include <cstdlib>

namespace sparo {

inline void use_lavapipe_with_validation() {
  const char* other = std::getenv("SPARO_TEST_VULKAN_ICD");
  setenv("VK_DRIVER_FILES", other && *other ? other : "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json", 1);
  setenv("SPARO_VULKAN_VALIDATION", "1", 1);
  // Tests do not write a pipeline cache into the user's ~/.cache (the pipeline-cache tests
  // point SPARO_PIPELINE_CACHE at their own files).
  setenv("SPARO_PIPELINE_CACHE", "off", 0);
  if (!other || !*other) dlopen("/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so", RTLD_NOW | RTLD_NODELETE);
}

}  // namespace sparo
