// Vulkan memory and transfers on lavapipe with SPARO_VULKAN_STAGING=1, the path a discrete
// GPU takes: round trips larger than the 16 MiB staging buffer, partial uploads and
// downloads across its piece boundary, transfers recorded between dispatches in one command
// buffer (the barriers are checked by synchronization validation: any message fails), and
// the memory report. test_vulkan_ops.cpp runs every kernel check on this path as well.
#if defined(SPARO_HAVE_VULKAN)
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/vulkan/context.h"
#include "engine/vulkan/vulkan_backend.h"
#include "tests/expect_error.h"
#include "tests/vulkan_env.h"

namespace sparo {
namespace {

constexpr size_t kStagingBytes = size_t{16} << 20;  // the backend's staging buffer

class VulkanStaging : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { use_lavapipe_with_validation(); }
  void SetUp() override {
    setenv("SPARO_VULKAN_STAGING", "1", 1);
    vk::clear_validation_messages();
  }
  void TearDown() override {
    unsetenv("SPARO_VULKAN_STAGING");
    const auto messages = vk::validation_messages();
    EXPECT_TRUE(messages.empty()) << messages.size() << " validation message(s), first: " << messages[0];
  }
  vk::VulkanBackend& backend() { return static_cast<vk::VulkanBackend&>(backend_for(gpu)); }
  const Device gpu = Device::vulkan(0);
};

std::vector<int32_t> pattern(size_t n, uint32_t seed) {  // distinct words: a misplaced piece shows
  std::vector<int32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<int32_t>((i + seed) * 2654435761u);
  return v;
}

TEST_F(VulkanStaging, LavapipeMemoryIsHostVisibleSoTheDefaultPathIsDirect) {
  // Only the switch sends lavapipe's transfers through the staging buffer.
  EXPECT_TRUE(backend().tensors_mapped());
}

TEST_F(VulkanStaging, RoundTripLargerThanTheStagingBuffer) {
  // A small upload first, so that the large one starts in the middle of the staging buffer.
  const std::vector<int32_t> small = pattern(1000, 7);
  const Tensor s = Tensor::from_vector(small, {1000}, gpu);
  const size_t n = (kStagingBytes + (4 << 20)) / 4 + 123;
  const std::vector<int32_t> big = pattern(n, 1);
  const Tensor t = Tensor::from_vector(big, {static_cast<int64_t>(n)}, gpu);
  EXPECT_EQ(t.to_int_vector(), big);
  EXPECT_EQ(s.to_int_vector(), small);
}

TEST_F(VulkanStaging, PartialTransfersAcrossAPieceBoundary) {
  const size_t n = (kStagingBytes + (1 << 20)) / 4;
  std::vector<int32_t> host = pattern(n, 3);
  const Tensor t = Tensor::from_vector(host, {static_cast<int64_t>(n)}, gpu);
  // Odd offsets and lengths, across the first 16 MiB piece of a download.
  const size_t at = kStagingBytes - 7, length = 29;
  std::vector<char> got(length);
  backend().download(t.storage(), at, got.data(), length);
  EXPECT_EQ(std::memcmp(got.data(), reinterpret_cast<const char*>(host.data()) + at, length), 0);
  // A partial upload changes those bytes only.
  const std::vector<char> patch(length, '\x5a');
  backend().upload(t.storage(), at, patch.data(), length);
  std::memcpy(reinterpret_cast<char*>(host.data()) + at, patch.data(), length);
  EXPECT_EQ(t.to_int_vector(), host);
}

TEST_F(VulkanStaging, TransfersAndDispatchesInOneCommandBufferKeepTheirOrder) {
  const std::vector<float> v = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<float> w = {-1, -2, -3, -4, -5, -6, -7, -8};
  Tensor x = Tensor::from_vector(v, {8}, gpu);  // an upload recorded, not run
  const Tensor y = affine(x, 2.0f, 1.0f);       // reads the upload (read after write)
  backend().upload(x.storage(), 0, w.data(), w.size() * 4);  // overwrites what y reads (write after read)
  Tensor f = Tensor::full({8}, 3.0, DType::f32, gpu);
  backend().upload(f.storage(), 8, w.data(), 16);  // over the fill's result (write after write)
  const Tensor z = affine(x, 1.0f, 10.0f);          // reads the second upload
  // Downloads right after the dispatches (the first submits all of the above).
  std::vector<float> want_y, want_z;
  for (float e : v) want_y.push_back(2 * e + 1);
  for (float e : w) want_z.push_back(e + 10);
  EXPECT_EQ(y.to_float_vector(), want_y);
  EXPECT_EQ(z.to_float_vector(), want_z);
  EXPECT_EQ(x.to_float_vector(), w);
  EXPECT_EQ(f.to_float_vector(), (std::vector<float>{3, 3, -1, -2, -3, -4, 3, 3}));
}

TEST_F(VulkanStaging, ADownloadRightAfterADispatchSeesItsResult) {
  for (int round = 0; round < 3; ++round) {  // the second and later rounds reuse cached buffers
    const Tensor x = Tensor::full({5000}, 1.0 + round, DType::f32, gpu);
    EXPECT_EQ(affine(x, 1.0f, 1.0f).to_float_vector(), std::vector<float>(5000, 2.0f + round));
  }
}

TEST_F(VulkanStaging, MemoryReportCountsTensorsNotTheStagingBuffer) {
  vk::VulkanBackend& b = backend();
  b.synchronize();
  b.empty_cache();
  const MemoryStats before = b.memory_stats();
  EXPECT_EQ(before.cached, 0u);
  const size_t block = 4096;  // 4000 bytes in buckets of 1/8 power-of-two steps
  {
    const Tensor t = Tensor::from_vector(std::vector<float>(1000, 1.0f), {1000}, gpu);
    EXPECT_EQ(b.memory_stats().in_use, before.in_use + block);  // the staging buffer is not a tensor
    EXPECT_EQ(t.to_float_vector(), std::vector<float>(1000, 1.0f));
  }
  b.synchronize();
  MemoryStats now = b.memory_stats();
  EXPECT_EQ(now.in_use, before.in_use);
  EXPECT_EQ(now.cached, block);
  EXPECT_GE(now.peak, before.in_use + block);
  {
    const Tensor reused = Tensor::from_vector(std::vector<float>(1000, 2.0f), {1000}, gpu);
    EXPECT_EQ(b.memory_stats().cached, 0u);
    EXPECT_EQ(reused.to_float_vector(), std::vector<float>(1000, 2.0f));
  }
  b.synchronize();
  b.empty_cache();  // frees the staging buffer too; the next transfer makes a new one
  EXPECT_EQ(b.memory_stats().cached, 0u);
  const std::vector<int32_t> v = pattern(300, 9);
  EXPECT_EQ(Tensor::from_vector(v, {300}, gpu).to_int_vector(), v);
}

TEST_F(VulkanStaging, ADeadTensorsBufferIsReusedBeforeTheCommandsThatUsedItHaveRun) {
  vk::VulkanBackend& b = backend();
  const Tensor x = Tensor::full({5000}, 1.0, DType::f32, gpu);
  Tensor acc = affine(x, 1.0f, 0.0f);
  b.synchronize();
  b.reset_peak_memory();
  const size_t start = b.memory_stats().in_use;
  // Ten steps recorded into one command buffer, each making and dropping a temporary: its
  // buffer serves the next step's temporary (ordered by a barrier), so the peak stays at
  // two temporaries' worth instead of ten.
  for (int i = 0; i < 10; ++i) {
    const Tensor temporary = affine(acc, 1.0f, 1.0f);
    acc = add(acc, temporary);
  }
  const size_t block = 20480;  // 20000 bytes in 1/8 power-of-two buckets
  EXPECT_LE(b.memory_stats().peak, start + 2 * block);
  // acc doubles and adds one each step: a reused buffer read too early would show here.
  double want = 1.0;
  for (int i = 0; i < 10; ++i) want = 2 * want + 1;
  EXPECT_EQ(acc.to_float_vector(), std::vector<float>(5000, static_cast<float>(want)));
}

TEST_F(VulkanStaging, OutOfRangeTransfersAreClearErrors) {
  const Tensor t = Tensor::zeros({10}, DType::f32, gpu);
  char buf[8] = {};
  try {
    backend().download(t.storage(), 36, buf, 8);
    FAIL() << "a download past the end must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bytes [36, 44) run past the end of a 40-byte storage"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(backend().upload(t.storage(), 40, buf, 1), Error);
  // offset + bytes wraps to 1 here: the check must not add them.
  EXPECT_THROW(backend().upload(t.storage(), SIZE_MAX, buf, 2), Error);
  EXPECT_THROW(backend().download(t.storage(), SIZE_MAX, buf, 2), Error);
}

// An allocation beyond the device's limit is an error before the size is rounded to a bucket:
// one past 2^63 bytes used to spin forever there (the power of two wrapped to 0), so that
// call runs where an alarm can end it.
TEST_F(VulkanStaging, AbsurdAllocationsAreErrorsNotHangs) {
  expect_error([&] { backend().allocate(size_t{1} << 62); }, {"4611686018427387904 bytes", "maxStorageBufferRange"});
  expect_error_within(20, [&] { backend().allocate(SIZE_MAX); },
                      "a tensor of 18446744073709551615 bytes exceeds the device's maxStorageBufferRange");
}

}  // namespace
}  // namespace sparo
#endif
