// The Vulkan backend: tensors in device-local memory from a size-bucketed cache, moved
// through a staging buffer where that memory is not host-visible; dispatches and copies
// recorded into one command buffer and submitted lazily; pipelines created once per
// shader through a pipeline cache kept on disk. vulkan_backend.cpp's top comment has the
// details and what is still missing.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <span>
#include <unordered_map>
#include <unordered_set>

#include "engine/backend.h"
#include "engine/vulkan/context.h"

namespace sparo::vk {

class VulkanBackend;

struct Block {
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  void* mapped = nullptr;  // set when the memory is host-visible and coherent
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

// The tile shape of the tiled matmul (shaders/matmul_tiled.comp): workgroups of wx×wy
// invocations, each computing tm×tn outputs, so a (wy·tm)×(wx·tn) tile of C per workgroup;
// K in slices of bk; loads of vec floats (1, or 4 where the shapes allow).
struct MatmulTiles {
  uint32_t wx = 16, wy = 16, tm = 4, tn = 4, bk = 16, vec = 1;
  bool operator==(const MatmulTiles&) const = default;
};

// Parses "wx,wy,tm,tn,bk" or "wx,wy,tm,tn,bk,vec" (e.g. "16,16,8,8,8,4"); throws
// sparo::Error naming `what` and the expected form.
MatmulTiles parse_matmul_tiles(const std::string& text, const std::string& what);

class VulkanBackend final : public Backend {
 public:
  explicit VulkanBackend(int device_index);
  ~VulkanBackend() override;

  std::string name() const override { return "vulkan"; }
  Device device() const override { return Device::vulkan(index_); }
  const Context& context() const { return *context_; }
  // True when tensors live in host-visible, coherent memory that uploads and downloads
  // copy directly (integrated GPUs, lavapipe); false: through the staging buffer.
  bool tensors_mapped() const { return memory_.mapped; }
  // The pipeline cache file ("" when SPARO_PIPELINE_CACHE=off or there is no cache folder)
  // and how many bytes of it seeded this backend's cache (0: none, or the file was ignored).
  const std::string& pipeline_cache_path() const { return pipeline_cache_path_; }
  size_t pipeline_cache_seed_bytes() const { return pipeline_cache_seed_bytes_; }

  // The tiles matmul uses: SPARO_VULKAN_MATMUL_TILES when set (read at each call, so that a
  // benchmark or test can try several), else the defaults. Throws sparo::Error when they do
  // not fit this device (workgroup size, shared memory).
  MatmulTiles matmul_tiles() const;
  // SPARO_VULKAN_COOPMAT=1 (read at each call): matmul on the matrix units, fp16 inputs and
  // fp32 accumulation. Throws sparo::Error when set and the device cannot.
  bool coopmat_requested() const;

  // Downloads so far (each a wait for the device): what a training step should do only
  // when it reads its loss.
  uint64_t host_reads() const;

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
  void ema_step(Tensor& target, const Tensor& source, float momentum) override;

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
  struct Access {  // one buffer a recorded command reads or writes
    VkBuffer buffer;
    bool written;
  };
  struct MemoryType {
    uint32_t index = 0;
    uint32_t heap = 0;
    bool mapped = false;  // host-visible and coherent: kept mapped, read and written with memcpy
  };
  // The pipeline of `shader` with `spec` as its specialization constants 0, 1, … (one
  // pipeline per shader and constants, created on first use).
  const Pipeline& pipeline(const char* shader, uint32_t buffers, uint32_t push_bytes, std::span<const uint32_t> spec);
  // An index tensor a dispatch checks on the device (its last binding is then the dispatch's
  // slot of index_errors_, where the kernel leaves the first bad position).
  struct IndexCheck {
    const char* kernel;
    Tensor index;  // held until the check is read, to name the bad value
    int64_t n;     // the valid range is [0, n)
  };
  // Records one dispatch of `shader` over `invocations` threads (workgroups of 256 in x).
  void dispatch(const char* shader, std::initializer_list<Binding> bindings, const void* push, uint32_t push_bytes,
                int64_t invocations, const IndexCheck* check = nullptr);
  // Records a row kernel (softmax, layer norm and their backward passes) over `rows` rows:
  // `subgroup_shader` (one subgroup per row) where the device has subgroup arithmetic and
  // SPARO_VULKAN_SUBGROUPS is not 0 (read at each dispatch, so the tests cover both), else
  // `shader` (one invocation per row).
  void dispatch_rows(const char* shader, const char* subgroup_shader, std::initializer_list<Binding> bindings,
                     const void* push, uint32_t push_bytes, int64_t rows);
  // Records one dispatch with explicit workgroup counts.
  void dispatch_groups(const char* shader, std::initializer_list<Binding> bindings, const void* push,
                       uint32_t push_bytes, uint32_t gx, uint32_t gy, uint32_t gz, const IndexCheck* check = nullptr,
                       std::span<const uint32_t> spec = {});
  // Records a barrier when a command of `stage` making `accesses` would race with one
  // recorded since the last barrier, then notes the accesses. Starts recording if needed.
  void order_after_pending(std::span<const Access> accesses, VkPipelineStageFlags stage);
  void begin_recording();
  // The lock must be held (as for every private member). Then throws the first bad index
  // the dispatches found, unless report_index_errors is false (the destructor).
  void submit_and_wait(bool report_index_errors = true);
  // Submits the full command buffer without waiting and moves on to the next frame (waiting
  // for it first if it is still in flight).
  void submit_and_continue();
  // Waits for the oldest frame in flight and takes its first bad index (if any and none is
  // deferred yet) into deferred_index_error_.
  void retire_oldest_frame();
  void report_index_errors();
  bool busy() const { return recording_ || !in_flight_.empty(); }  // work recorded or running

  MemoryType choose_memory_type(VkBufferUsageFlags usage, bool staging) const;
  VkResult create_block(size_t bytes, const MemoryType& type, VkBufferUsageFlags usage, Block* out) const;
  void destroy_block(const Block& block) const;
  bool staged() const;  // this transfer goes through the staging buffer
  // Takes up to `wanted` bytes of the staging buffer for a copy recorded now (submitting
  // the pending work first when it is full); returns the offset, *got the bytes taken.
  size_t reserve_staging(size_t wanted, size_t* got);

  void create_handles();   // the constructor's work past the context: pool, fence, queries, pipeline cache
  void destroy_handles();  // those of them that exist
  void open_pipeline_cache();
  void save_pipeline_cache();  // when pipelines were created since the last save

  [[noreturn]] void not_implemented(const char* kernel) const;

  int index_;
  std::unique_ptr<Context> context_;
  mutable std::recursive_mutex mutex_;  // recursive: entry points call each other (empty_cache submits, ...)
  MemoryType memory_;                   // of the tensors
  MemoryType staging_memory_;
  MemoryType index_errors_memory_;      // host-visible and coherent, for storage buffers
  VkCommandPool pool_ = VK_NULL_HANDLE;
  // Command buffers in turn: a full one is submitted without waiting and recording goes on
  // in the next, so the host records while the device runs. Each has its fence, its index
  // checks and its range of index-error slots.
  struct Frame {
    VkCommandBuffer cmd = VK_NULL_HANDLE;
    VkFence fence = VK_NULL_HANDLE;
    std::vector<IndexCheck> checks;  // of its dispatches, once submitted
  };
  static constexpr int kFrames = 3;
  Frame frames_[kFrames];
  int frame_ = 0;                // the one being recorded
  std::deque<int> in_flight_;    // submitted frames not yet waited for, oldest first
  VkCommandBuffer cmd_ = VK_NULL_HANDLE;  // frames_[frame_].cmd
  // The first bad index of a frame that was waited for while recording went on: thrown at
  // the next host read or sync, as the others are.
  std::optional<std::pair<IndexCheck, uint32_t>> deferred_index_error_;
  VkQueryPool timestamps_ = VK_NULL_HANDLE;
  bool recording_ = false;
  int recorded_ = 0;
  std::unordered_set<VkBuffer> written_, read_;      // since the last barrier
  VkPipelineStageFlags pending_stages_ = 0;          // stages of the commands since the last barrier
  Block staging_;                                    // created on the first staged transfer
  size_t staging_used_ = 0;                          // bytes of it the recorded copies use
  Block index_errors_;                               // slots of the index checks (created on first use)
  std::vector<IndexCheck> index_checks_;             // of the dispatches being recorded; slot = position
  std::map<std::string, Pipeline> pipelines_;
  VkPipelineCache pipeline_cache_ = VK_NULL_HANDLE;  // null with SPARO_PIPELINE_CACHE=off
  std::string pipeline_cache_path_;
  size_t pipeline_cache_seed_bytes_ = 0;
  size_t pipeline_cache_saved_hash_ = 0;  // of the data last read or written: unchanged data is not rewritten
  bool pipeline_cache_dirty_ = false;
  std::unordered_map<size_t, std::vector<Block>> free_;
  size_t in_use_ = 0, cached_ = 0, peak_ = 0;
  uint64_t host_reads_ = 0;
};

}  // namespace sparo::vk
