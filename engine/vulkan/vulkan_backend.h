// The Vulkan backend: buffers from a size-bucketed cache, dispatches recorded into a
// command buffer and submitted lazily (on a host read, a synchronize, or a full buffer),
// a barrier only where a dispatch touches what an earlier unsynchronised one wrote (or
// writes what it read), pipelines created once per shader.
//
// State of this first version: every kernel of the table exists and the op ring runs on
// it (tests/engine/test_op_ring.cpp, lavapipe), but it is written for correctness, not
// speed: memory is host-visible (device-local memory with staging comes next), matmul
// is tiled (64×64 tiles, 4×4 register blocks) but has no subgroup or cooperative-matrix
// path yet, reductions and
// softmax/layer-norm give one row to one invocation, and index tensors are checked on the
// host (a round trip).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "engine/backend.h"
#include "engine/vulkan/context.h"

namespace sparo::vk {

class VulkanBackend;

struct Block {
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  void* mapped = nullptr;
  size_t capacity = 0;
};

class VulkanStorage final : public Storage {
 public:
  VulkanStorage(VulkanBackend& owner, Device device, size_t bytes, Block block)
      : Storage(device, bytes), owner_(owner), block_(block) {}
  ~VulkanStorage() override;
  const Block& block() const { return block_; }

 private:
  VulkanBackend& owner_;
  Block block_;
};

class VulkanBackend final : public Backend {
 public:
  explicit VulkanBackend(int device_index);
  ~VulkanBackend() override;

  std::string name() const override { return "vulkan"; }
  Device device() const override { return Device::vulkan(index_); }
  const Context& context() const { return *context_; }

  std::shared_ptr<Storage> allocate(size_t bytes) override;
  void upload(Storage& dst, size_t offset, const void* src, size_t bytes) override;
  void download(const Storage& src, size_t offset, void* dst, size_t bytes) override;
  void synchronize() override;
  MemoryStats memory_stats() const override;
  void empty_cache() override;
  void reset_peak_memory() override;
  void begin_timing() override;
  double end_timing_ms() override;

  void fill(Tensor& out, double value) override;
  void arange(Tensor& out, double start, double step) override;
  void random(Tensor& out, RandomDist dist, uint64_t seed, uint64_t block_offset, float a, float b) override;
  void cast(const Tensor& x, Tensor& out) override;
  void copy(const Tensor& src, Tensor& dst, const CopyPlan& plan) override;
  void unary(UnaryOp op, const Tensor& x, Tensor& out, UnaryParams p) override;
  void unary_backward(UnaryOp op, const Tensor& x, const Tensor& dy, Tensor& dx, UnaryParams p) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out, const ElementwisePlan& plan) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out, const ElementwisePlan& plan) override;
  void reduce(ReduceOp op, const Tensor& x, Tensor& out, int64_t outer, int64_t n, int64_t inner) override;
  void matmul(const Tensor& a, const Tensor& b, Tensor& c, const MatmulDesc& desc) override;
  void softmax(const Tensor& x, const Tensor& mask, const ElementwisePlan& mask_plan, Tensor& y, int64_t rows,
               int64_t cols, bool log) override;
  void softmax_backward(const Tensor& y, const Tensor& dy, Tensor& dx, int64_t rows, int64_t cols, bool log) override;
  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y, Tensor& mean, Tensor& rstd,
                  int64_t rows, int64_t cols, float eps) override;
  void layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                           const Tensor& dy, Tensor& dx, Tensor& dweight, Tensor& dbias, int64_t rows,
                           int64_t cols) override;
  void gather(const Tensor& src, const Tensor& index, Tensor& out, int64_t outer, int64_t n, int64_t inner) override;
  void scatter_add(const Tensor& src, const Tensor& index, Tensor& dst, int64_t outer, int64_t n, int64_t inner) override;
  void one_hot(const Tensor& index, Tensor& out, int64_t classes, float on, float off) override;
  void adamw_step(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, const AdamWStep& step) override;
  void sgd_step(Tensor& param, const Tensor& grad, Tensor& momentum_buffer, const SgdStep& step) override;

  void release(const Block& block);  // called by VulkanStorage

 private:
  struct Pipeline {
    VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
    VkPipelineLayout layout = VK_NULL_HANDLE;
    VkPipeline pipeline = VK_NULL_HANDLE;
    uint32_t buffers = 0;
    uint32_t push_bytes = 0;
  };
  struct Binding {
    const Tensor* tensor;
    bool written;
  };
  const Pipeline& pipeline(const char* shader, uint32_t buffers, uint32_t push_bytes);
  // Records one dispatch of `shader` over `invocations` threads (workgroups of 256 in x).
  void dispatch(const char* shader, std::initializer_list<Binding> bindings, const void* push, uint32_t push_bytes,
                int64_t invocations);
  // Records one dispatch with explicit workgroup counts.
  void dispatch_groups(const char* shader, std::initializer_list<Binding> bindings, const void* push,
                       uint32_t push_bytes, uint32_t gx, uint32_t gy, uint32_t gz);
  void begin_recording();
  void submit_and_wait();  // the lock must be held
  [[noreturn]] void not_implemented(const char* kernel) const;
  uint32_t memory_type_;

  int index_;
  std::unique_ptr<Context> context_;
  mutable std::recursive_mutex mutex_;  // recursive: dropping in-flight storages re-enters release()
  VkCommandPool pool_ = VK_NULL_HANDLE;
  VkCommandBuffer cmd_ = VK_NULL_HANDLE;
  VkFence fence_ = VK_NULL_HANDLE;
  VkQueryPool timestamps_ = VK_NULL_HANDLE;
  bool recording_ = false;
  int recorded_ = 0;
  std::vector<std::shared_ptr<Storage>> in_flight_;  // kept alive until their dispatches completed
  std::unordered_set<VkBuffer> written_, read_;      // since the last barrier
  std::map<std::string, Pipeline> pipelines_;
  std::unordered_map<size_t, std::vector<Block>> free_;
  size_t in_use_ = 0, cached_ = 0, peak_ = 0;
};

}  // namespace sparo::vk
