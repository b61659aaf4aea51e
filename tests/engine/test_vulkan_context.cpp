// Vulkan discovery and context creation on Mesa's lavapipe (mesa-vulkan-drivers), with
// the validation layers on: any validation message fails. Device choice rules and the
// messages for a missing driver or a wrong index.
#if defined(SPARO_HAVE_VULKAN)
#include <gtest/gtest.h>

#include <dlfcn.h>

#include <cstdlib>

#include "engine/tensor.h"
#include "engine/vulkan/context.h"

namespace sparo::vk {
namespace {

const char* kLavapipe = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json";

class VulkanLavapipe : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("VK_DRIVER_FILES", kLavapipe, 1);
    // lavapipe leaks a few small allocations per instance. Keeping the driver mapped
    // (RTLD_NODELETE) lets LeakSanitizer name it, so tests/lsan_suppressions.txt can
    // suppress exactly the driver's leaks and nothing of ours.
    dlopen("/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so", RTLD_NOW | RTLD_NODELETE);
  }
  void TearDown() override { unsetenv("VK_DRIVER_FILES"); }
};

TEST_F(VulkanLavapipe, ListsTheDeviceWithItsLimits) {
  std::string why_not;
  const std::vector<DeviceInfo> devices = list_devices(&why_not);
  ASSERT_EQ(devices.size(), 1u) << why_not << " (is mesa-vulkan-drivers installed?)";
  const DeviceInfo& d = devices[0];
  EXPECT_NE(d.name.find("llvmpipe"), std::string::npos) << d.name;
  EXPECT_EQ(d.type, "CPU");
  EXPECT_TRUE(d.push_descriptors);
  EXPECT_GT(d.max_storage_buffer_range, 0u);
  EXPECT_GT(d.max_allocation_size, 0u);
  EXPECT_GT(d.subgroup_size, 0u);
  ASSERT_FALSE(d.heaps.empty());
  EXPECT_GT(d.heaps[0].size, 0u);
}

TEST_F(VulkanLavapipe, CreatesAContextWithoutValidationMessages) {
  setenv("SPARO_VULKAN_VALIDATION", "1", 1);
  clear_validation_messages();
  {
    Context context(-1);
    EXPECT_NE(context.device(), VK_NULL_HANDLE);
    EXPECT_NE(context.queue(), VK_NULL_HANDLE);
    EXPECT_NE(context.info().name.find("llvmpipe"), std::string::npos);
  }
  unsetenv("SPARO_VULKAN_VALIDATION");
  EXPECT_TRUE(validation_messages().empty()) << validation_messages()[0];
}

TEST_F(VulkanLavapipe, AWrongIndexNamesTheDevicesThatExist) {
  try {
    Context context(5);
    FAIL() << "vulkan:5 must not exist here";
  } catch (const sparo::Error& e) {
    EXPECT_NE(std::string(e.what()).find("vulkan:5 does not exist (1 Vulkan device(s): vulkan:0 .. vulkan:0)"),
              std::string::npos) << e.what();
  }
}

TEST(Vulkan, NoDriverGivesAReasonNotACrash) {
  setenv("VK_DRIVER_FILES", "/nonexistent/icd.json", 1);
  std::string why_not;
  EXPECT_TRUE(list_devices(&why_not).empty());
  EXPECT_FALSE(why_not.empty());
  EXPECT_THROW(Context(-1), sparo::Error);
  unsetenv("VK_DRIVER_FILES");
}

TEST(Vulkan, DevicePreferenceIsDiscreteThenIntegratedThenVirtualThenCpu) {
  std::vector<DeviceInfo> devices(4);
  devices[0].type = "CPU";
  devices[1].type = "integrated GPU";
  devices[2].type = "discrete GPU";
  devices[3].type = "virtual GPU";
  EXPECT_EQ(choose_device(devices, -1), 2);
  devices[2].type = "CPU";
  EXPECT_EQ(choose_device(devices, -1), 1);
  EXPECT_EQ(choose_device(devices, 3), 3);
  EXPECT_THROW(choose_device({}, -1), sparo::Error);
}

}  // namespace
}  // namespace sparo::vk
#endif
