// The Vulkan backend (declared in vulkan_backend.h).
//
// Memory. Tensors live in device-local memory: on a discrete GPU the device-local type
// that is not host-visible (VRAM proper; the host-visible window onto it, where there is
// one, is small or slow), elsewhere (integrated GPUs, lavapipe) device-local memory that
// is also host-visible. Buffers come from a cache of size buckets (1/8 power-of-two steps)
// and go back to it when their tensor dies, at once, even while
// recorded commands still use them: a later command that reuses the buffer is ordered after
// those by the barrier tracking below, which goes by VkBuffer, not by tensor (so a step's
// intermediates are reused within the step, as on the CPU); only destroying buffers
// (empty_cache) waits for the pending work. memory_stats() reports
// the bytes in use by tensors, cached for reuse, and the peak. empty_cache() frees the
// cached buffers and the staging buffer. When an allocation fails, the cache is emptied and
// the allocation tried once more; then the error names the request, the bytes in use and
// cached, and the memory heap.
//
// Transfers. When tensor memory is host-visible and coherent, upload and download are a
// memcpy into the mapped buffer (after waiting for the pending work). Otherwise, or with
// SPARO_VULKAN_STAGING=1 (read at each transfer, so that the tests run the staging path on
// lavapipe), they go through one staging buffer of 16 MiB (host-visible, coherent, cached
// where there is such memory; created on first use, then reused). An upload copies into it
// and records vkCmdCopyBuffer in order with the dispatches, without waiting until the
// staging buffer is full (a larger upload goes in pieces, a submit between them). A
// download records a copy into it, submits, waits and copies out, 16 MiB at a time.
//
// Execution. Dispatches and copies are recorded into a command buffer. The 256th dispatch
// submits it without waiting, and recording goes on in the next of a ring of three (waiting
// for that one first if it is still running), so the host records while the device works. A
// host read, synchronize(), a full staging buffer or empty_cache() submits and waits for
// everything. The hazard tracking below carries on across submits (a barrier orders every
// command earlier in submission order, other command buffers' too). A barrier goes
// only where a command would race with one recorded since the last barrier (reads or
// writes a buffer written since, or writes one read since). That barrier is global: it
// orders all earlier compute and transfer work before all later compute and transfer work,
// so the tracking starts afresh after it. A submit that waits ends with a barrier that makes
// the writes visible to the host. The tests run with synchronization validation on
// (SPARO_VULKAN_VALIDATION, context.h), which checks these barriers.
//
// Pipeline cache. Pipelines are created once per shader, through a VkPipelineCache seeded
// from a file: SPARO_PIPELINE_CACHE=path, else $XDG_CACHE_HOME/sparo/ (or ~/.cache/sparo/)
// vulkan-pipelines-<vendor>-<device>-<driver version>-<cache UUID>.bin;
// SPARO_PIPELINE_CACHE=off: no cache at all. A file whose header
// (VkPipelineCacheHeaderVersionOne: length, version, vendor, device, UUID) does not fit the
// device, or whose data the driver refuses, is ignored with a warning on stderr (once per
// process), never an error. The cache is written back (temporary file + rename, so that a
// concurrent process never reads a partial file) after the first submit that follows the
// creation of new pipelines, and when the backend is destroyed; the backends of
// backend_for() never are, hence the write at the submit. Unchanged data is not rewritten.
//
// Index checks. Indices come from user data and a shader cannot throw, yet reading them on
// the host would cost a round trip per embedding lookup. So the indexing kernels check them:
// a bad index is skipped (nothing read or written out of bounds) and its position goes,
// by atomicMin, into the dispatch's own slot of a small host-visible buffer (one slot per
// dispatch of each command buffer of the ring, 256 bytes apart, so no two dispatches touch
// the same bytes). When a command buffer has been waited for, its slots are read; the first
// bad index is thrown, naming the kernel, the value, its position and the range, at the next
// host read or sync.
//
// Row kernels. Softmax, layer norm and their backward passes give each row to one subgroup
// where the device has subgroup arithmetic (lanes stride over the columns, partials combine
// with subgroupAdd/Max), else to one invocation. Reductions into few long outputs give each
// output a workgroup (reduce_wide.comp); layer norm's weight and bias gradients (sums over
// the rows) give 32 columns a workgroup with 8 lanes of rows.
//
// Matmul is tiled with register blocks; the tile shape and the load width (scalar or vec4)
// are specialization constants (MatmulTiles, SPARO_VULKAN_MATMUL_TILES) so that they can be
// tuned per device without a rebuild. SPARO_VULKAN_COOPMAT=1 (read at each matmul) sends every matmul to the
// device's matrix units instead: fp16 inputs, fp32 accumulation, through
// VK_NV_cooperative_matrix (shaders/matmul_coopmat_nv.comp) — off by default, since it
// trades precision (about 1e-3 relative) for speed, and an error where the device lacks it.
// VK_KHR_cooperative_matrix is listed by `sparo info` but not used: Debian 12's glslang
// cannot compile it. No subgroup operations in the fp32 kernel: its products already
// share operands through shared memory and registers.
#include "engine/vulkan/vulkan_backend.h"

#include <bit>
#include <cctype>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string_view>

#include "engine/vulkan/pipeline_cache.h"
#include "engine/vulkan/shaders.h"

namespace sparo::vk {

namespace {
constexpr int kMaxRecorded = 256;     // dispatches per command buffer before a submit
// A dispatch's index-error slot: the largest minStorageBufferOffsetAlignment the spec allows.
constexpr size_t kIndexSlotBytes = 256;
constexpr uint32_t kNoBadIndex = 0xFFFFFFFFu;
constexpr uint32_t kWorkgroup = 256;  // local_size_x of every shader (shaders/common.glsl)
// 16 MiB: a piece takes about a millisecond over PCIe 4, next to which the submit between
// pieces is noise, and the host memory it holds stays small.
constexpr size_t kStagingBytes = size_t{16} << 20;
constexpr size_t kStagingAlign = 256;  // pieces start at this alignment in the staging buffer
constexpr VkBufferUsageFlags kTensorUsage =
    VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
constexpr VkBufferUsageFlags kStagingUsage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
constexpr VkPipelineStageFlags kWorkStages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;

// 1/8 power-of-two steps, at least 256 bytes: coarser than the CPU cache's 1/64, since every
// size is its own vkAllocateMemory and drivers cap the number of allocations.
size_t bucket(size_t bytes) {
  if (bytes <= 256) return 256;
  // Past 2^63 there is no power of two to round to: a doubling loop wrapped to 0 there and
  // spun forever. allocate() checks the device's limit first; this guards the arithmetic.
  if (bytes > SIZE_MAX / 2 + 1)
    throw Error("vulkan: cannot round an allocation of " + std::to_string(bytes) + " bytes up to a bucket");
  const size_t step = std::bit_ceil(bytes) / 8;
  return (bytes + step - 1) / step * step;
}

VkBuffer buffer_of(const Tensor& t) { return static_cast<const VulkanStorage&>(t.storage()).block().buffer; }

std::string mib(uint64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

size_t hash_of(const std::vector<uint8_t>& data) {
  return std::hash<std::string_view>{}(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
}
}  // namespace

VulkanStorage::~VulkanStorage() { owner_.release(block_); }

VulkanBackend::VulkanBackend(int device_index) : index_(device_index), context_(std::make_unique<Context>(device_index)) {
  try {
    create_handles();
  } catch (...) {
    destroy_handles();  // a constructor that throws runs no destructor
    throw;
  }
}

void VulkanBackend::create_handles() {
  const Api& a = api();
  VkDevice dev = context_->device();
  memory_ = choose_memory_type(kTensorUsage, false);
  staging_memory_ = choose_memory_type(kStagingUsage, true);
  index_errors_memory_ = choose_memory_type(kTensorUsage, true);

  VkCommandPoolCreateInfo pci{};
  pci.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
  pci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pci.queueFamilyIndex = context_->queue_family();
  check(a.vkCreateCommandPool(dev, &pci, nullptr, &pool_), "vkCreateCommandPool");
  VkCommandBufferAllocateInfo cai{};
  cai.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
  cai.commandPool = pool_;
  cai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  cai.commandBufferCount = 1;
  VkFenceCreateInfo fci{};
  fci.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
  for (Frame& f : frames_) {
    check(a.vkAllocateCommandBuffers(dev, &cai, &f.cmd), "vkAllocateCommandBuffers");
    check(a.vkCreateFence(dev, &fci, nullptr, &f.fence), "vkCreateFence");
  }
  cmd_ = frames_[0].cmd;
  VkQueryPoolCreateInfo qci{};
  qci.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO;
  qci.queryType = VK_QUERY_TYPE_TIMESTAMP;
  qci.queryCount = 2;
  check(a.vkCreateQueryPool(dev, &qci, nullptr, &timestamps_), "vkCreateQueryPool");
  open_pipeline_cache();
}

VulkanBackend::~VulkanBackend() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (busy()) submit_and_wait(/*report_index_errors=*/false);
  save_pipeline_cache();
  const Api& a = api();
  VkDevice dev = context_->device();
  empty_cache();
  for (auto& [name, p] : pipelines_) {
    a.vkDestroyPipeline(dev, p.pipeline, nullptr);
    a.vkDestroyPipelineLayout(dev, p.layout, nullptr);
    a.vkDestroyDescriptorSetLayout(dev, p.set_layout, nullptr);
  }
  if (index_errors_.buffer) destroy_block(index_errors_);
  destroy_handles();
}

void VulkanBackend::destroy_handles() {
  const Api& a = api();
  VkDevice dev = context_->device();
  // Destroying VK_NULL_HANDLE does nothing: safe after a constructor that threw halfway.
  a.vkDestroyPipelineCache(dev, pipeline_cache_, nullptr);
  a.vkDestroyQueryPool(dev, timestamps_, nullptr);
  for (Frame& f : frames_) {
    a.vkDestroyFence(dev, f.fence, nullptr);
    f.fence = VK_NULL_HANDLE;
  }
  a.vkDestroyCommandPool(dev, pool_, nullptr);  // frees the command buffers too
  pipeline_cache_ = VK_NULL_HANDLE, timestamps_ = VK_NULL_HANDLE, pool_ = VK_NULL_HANDLE;
}

// ---- memory ---------------------------------------------------------------------------

VulkanBackend::MemoryType VulkanBackend::choose_memory_type(VkBufferUsageFlags usage, bool staging) const {
  const Api& a = api();
  VkDevice dev = context_->device();
  // Buffers of the same usage accept the same memory types (Vulkan spec), so one probe
  // buffer answers for all of them.
  VkBufferCreateInfo bci{};
  bci.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
  bci.size = 256;
  bci.usage = usage;
  bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  VkBuffer probe = VK_NULL_HANDLE;
  check(a.vkCreateBuffer(dev, &bci, nullptr, &probe), "vkCreateBuffer");
  VkMemoryRequirements req{};
  a.vkGetBufferMemoryRequirements(dev, probe, &req);
  a.vkDestroyBuffer(dev, probe, nullptr);
  VkPhysicalDeviceMemoryProperties mem{};
  a.vkGetPhysicalDeviceMemoryProperties(context_->physical_device(), &mem);
  int best_rank = INT_MAX;
  MemoryType best;
  for (uint32_t i = 0; i < mem.memoryTypeCount; ++i) {
    const VkMemoryPropertyFlags flags = mem.memoryTypes[i].propertyFlags;
    // Protected, lazily allocated and AMD device-coherent memory need features sparo does not enable.
    const VkMemoryPropertyFlags unusable = VK_MEMORY_PROPERTY_PROTECTED_BIT | VK_MEMORY_PROPERTY_LAZILY_ALLOCATED_BIT |
                                           VK_MEMORY_PROPERTY_DEVICE_COHERENT_BIT_AMD;
    if (!(req.memoryTypeBits & (1u << i)) || (flags & unusable)) continue;
    const bool local = flags & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
    const bool mappable =
        (flags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) && (flags & VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
    int rank = 0;
    if (staging) {
      // Coherent (no flushes); cached, so that the host reads downloads back fast; best in
      // system memory, leaving the device-local host-visible window to others.
      if (!mappable) continue;
      rank = ((flags & VK_MEMORY_PROPERTY_HOST_CACHED_BIT) ? 0 : 2) + (local ? 1 : 0);
    } else {
      rank = !local ? 2 : (flags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) ? 1 : 0;
    }
    if (rank < best_rank) best_rank = rank, best = {i, mem.memoryTypes[i].heapIndex, mappable};
  }
  if (best_rank == INT_MAX)
    throw Error("vulkan: device " + context_->info().name + " has no memory type for " +
                (staging ? "staging buffers (host-visible and coherent)" : "storage buffers"));
  return best;
}

VkResult VulkanBackend::create_block(size_t bytes, const MemoryType& type, VkBufferUsageFlags usage, Block* out) const {
  const Api& a = api();
  VkDevice dev = context_->device();
  Block block;
  block.capacity = bytes;
  VkBufferCreateInfo bci{};
  bci.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
  bci.size = bytes;
  bci.usage = usage;
  bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  VkResult r = a.vkCreateBuffer(dev, &bci, nullptr, &block.buffer);
  if (r != VK_SUCCESS) return r;
  VkMemoryRequirements req{};
  a.vkGetBufferMemoryRequirements(dev, block.buffer, &req);
  VkMemoryAllocateInfo mai{};
  mai.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
  mai.allocationSize = req.size;
  mai.memoryTypeIndex = type.index;
  r = a.vkAllocateMemory(dev, &mai, nullptr, &block.memory);
  if (r == VK_SUCCESS) r = a.vkBindBufferMemory(dev, block.buffer, block.memory, 0);
  if (r == VK_SUCCESS && type.mapped) r = a.vkMapMemory(dev, block.memory, 0, VK_WHOLE_SIZE, 0, &block.mapped);
  if (r != VK_SUCCESS) {
    destroy_block(block);
    return r;
  }
  *out = block;
  return VK_SUCCESS;
}

void VulkanBackend::destroy_block(const Block& block) const {
  const Api& a = api();
  VkDevice dev = context_->device();
  if (block.mapped) a.vkUnmapMemory(dev, block.memory);
  a.vkDestroyBuffer(dev, block.buffer, nullptr);
  a.vkFreeMemory(dev, block.memory, nullptr);
}

std::shared_ptr<Storage> VulkanBackend::allocate(size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  const uint64_t range = context_->info().max_storage_buffer_range;
  const auto too_large = [&] {
    return Error("vulkan: a tensor of " + std::to_string(bytes) + " bytes exceeds the device's maxStorageBufferRange (" +
                 std::to_string(range) + " bytes)");
  };
  if (bytes > range) throw too_large();  // before the rounding, which an absurd size would overflow
  const size_t size = bucket(bytes);
  if (size > range) throw too_large();
  Block block;
  auto it = free_.find(size);
  if (it != free_.end() && !it->second.empty()) {
    block = it->second.back();
    it->second.pop_back();
    cached_ -= size;
  } else {
    VkResult r = create_block(size, memory_, kTensorUsage, &block);
    if (r != VK_SUCCESS && cached_ > 0) {  // the cached blocks of other sizes may hold what is missing
      empty_cache();
      r = create_block(size, memory_, kTensorUsage, &block);
    }
    if (r != VK_SUCCESS) {
      const MemoryHeap& heap = context_->info().heaps.at(memory_.heap);
      throw Error("vulkan: out of device memory allocating " + std::to_string(size) + " bytes for a tensor of " +
                  std::to_string(bytes) + " bytes (" + mib(in_use_) + " in use by tensors, " + mib(cached_) +
                  " cached, memory heap " + std::to_string(memory_.heap) + " of " + mib(heap.size) + "; " +
                  result_name(r) + ")");
    }
  }
  in_use_ += size;
  peak_ = std::max(peak_, in_use_);
  return std::make_shared<VulkanStorage>(*this, device(), bytes, block);
}

void VulkanBackend::release(const Block& block) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  in_use_ -= block.capacity;
  free_[block.capacity].push_back(block);
  cached_ += block.capacity;
}

void VulkanBackend::empty_cache() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (busy()) submit_and_wait();  // recorded commands may still use cached buffers (and the staging buffer)
  for (auto& [size, blocks] : free_)
    for (const Block& b : blocks) destroy_block(b);
  free_.clear();
  cached_ = 0;
  if (staging_.buffer) {
    destroy_block(staging_);
    staging_ = {};
  }
}

MemoryStats VulkanBackend::memory_stats() const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  return {in_use_, cached_, peak_};
}

void VulkanBackend::reset_peak_memory() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  peak_ = in_use_;
}

// ---- transfers ------------------------------------------------------------------------

bool VulkanBackend::staged() const {
  if (!memory_.mapped) return true;
  const char* forced = std::getenv("SPARO_VULKAN_STAGING");
  return forced && *forced && std::strcmp(forced, "0") != 0;
}

size_t VulkanBackend::reserve_staging(size_t wanted, size_t* got) {
  if (!staging_.buffer) {
    const size_t bytes = static_cast<size_t>(std::min<uint64_t>(kStagingBytes, context_->info().max_allocation_size));
    const VkResult r = create_block(bytes, staging_memory_, kStagingUsage, &staging_);
    if (r != VK_SUCCESS)
      throw Error("vulkan: cannot allocate the " + std::to_string(bytes) +
                  "-byte staging buffer that transfers go through (" + mib(in_use_) + " in use by tensors, " +
                  mib(cached_) + " cached; " + result_name(r) + ")");
  }
  if (staging_used_ == staging_.capacity) submit_and_wait();  // its copies have run: all of it is free again
  if (!recording_) begin_recording();
  const size_t offset = staging_used_;
  *got = std::min(wanted, staging_.capacity - offset);
  staging_used_ = std::min(staging_.capacity, (offset + *got + kStagingAlign - 1) / kStagingAlign * kStagingAlign);
  return offset;
}

void VulkanBackend::upload(Storage& dst, size_t offset, const void* src, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (bytes > dst.bytes() || offset > dst.bytes() - bytes)  // not offset + bytes, which could wrap and pass
    throw Error("vulkan upload: bytes [" + std::to_string(offset) + ", " + std::to_string(offset + bytes) +
                ") run past the end of a " + std::to_string(dst.bytes()) + "-byte storage");
  if (!bytes) return;
  VulkanStorage& storage = static_cast<VulkanStorage&>(dst);
  if (!staged()) {
    if (busy()) submit_and_wait();  // pending dispatches may still read or write this buffer
    std::memcpy(static_cast<char*>(storage.block().mapped) + offset, src, bytes);
    return;
  }
  const VkBuffer buffer = storage.block().buffer;
  for (size_t done = 0; done < bytes;) {
    size_t piece = 0;
    const size_t at = reserve_staging(bytes - done, &piece);
    std::memcpy(static_cast<char*>(staging_.mapped) + at, static_cast<const char*>(src) + done, piece);
    const Access write{buffer, true};
    order_after_pending({&write, 1}, VK_PIPELINE_STAGE_TRANSFER_BIT);
    const VkBufferCopy region{at, offset + done, piece};
    api().vkCmdCopyBuffer(cmd_, staging_.buffer, buffer, 1, &region);
    done += piece;
  }
}

uint64_t VulkanBackend::host_reads() const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  return host_reads_;
}

void VulkanBackend::download(const Storage& src, size_t offset, void* dst, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  ++host_reads_;
  if (bytes > src.bytes() || offset > src.bytes() - bytes)  // not offset + bytes, which could wrap and pass
    throw Error("vulkan download: bytes [" + std::to_string(offset) + ", " + std::to_string(offset + bytes) +
                ") run past the end of a " + std::to_string(src.bytes()) + "-byte storage");
  if (!bytes) return;
  const Block& block = static_cast<const VulkanStorage&>(src).block();
  if (!staged()) {
    if (busy()) submit_and_wait();
    std::memcpy(dst, static_cast<const char*>(block.mapped) + offset, bytes);
    return;
  }
  for (size_t done = 0; done < bytes;) {
    size_t piece = 0;
    const size_t at = reserve_staging(bytes - done, &piece);
    const Access read{block.buffer, false};
    order_after_pending({&read, 1}, VK_PIPELINE_STAGE_TRANSFER_BIT);
    const VkBufferCopy region{offset + done, at, piece};
    api().vkCmdCopyBuffer(cmd_, block.buffer, staging_.buffer, 1, &region);
    submit_and_wait();
    std::memcpy(static_cast<char*>(dst) + done, static_cast<const char*>(staging_.mapped) + at, piece);
    done += piece;
  }
}

void VulkanBackend::synchronize() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (busy()) submit_and_wait();
}

// ---- timing -----------------------------------------------------------------------------

void VulkanBackend::begin_timing() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (busy()) submit_and_wait();  // time only what comes next
  begin_recording();
  api().vkCmdResetQueryPool(cmd_, timestamps_, 0, 2);
  api().vkCmdWriteTimestamp(cmd_, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, timestamps_, 0);
}

double VulkanBackend::end_timing_ms() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (!recording_) throw Error("vulkan: end_timing_ms without begin_timing (or the work was submitted in between)");
  api().vkCmdWriteTimestamp(cmd_, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, timestamps_, 1);
  submit_and_wait();
  uint64_t ticks[2] = {0, 0};
  check(api().vkGetQueryPoolResults(context_->device(), timestamps_, 0, 2, sizeof(ticks), ticks, sizeof(uint64_t),
                                    VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT),
        "vkGetQueryPoolResults");
  return static_cast<double>(ticks[1] - ticks[0]) * context_->info().timestamp_period_ns * 1e-6;
}

// ---- execution --------------------------------------------------------------------------

const VulkanBackend::Pipeline& VulkanBackend::pipeline(const char* shader, uint32_t buffers, uint32_t push_bytes,
                                                        std::span<const uint32_t> spec) {
  std::string key = shader;
  for (uint32_t v : spec) key += "/" + std::to_string(v);
  auto found = pipelines_.find(key);
  if (found != pipelines_.end()) return found->second;
  const EmbeddedShader* code = nullptr;
  for (const EmbeddedShader& s : embedded_shaders())
    if (std::strcmp(s.name, shader) == 0) code = &s;
  if (!code) throw Error(std::string("vulkan: no embedded shader named ") + shader);
  const Api& a = api();
  VkDevice dev = context_->device();
  Pipeline p;
  p.buffers = buffers;
  p.push_bytes = push_bytes;
  std::vector<VkDescriptorSetLayoutBinding> bindings(buffers);
  for (uint32_t i = 0; i < buffers; ++i) {
    bindings[i] = {};
    bindings[i].binding = i;
    bindings[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    bindings[i].descriptorCount = 1;
    bindings[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
  }
  VkDescriptorSetLayoutCreateInfo dci{};
  dci.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO;
  dci.flags = VK_DESCRIPTOR_SET_LAYOUT_CREATE_PUSH_DESCRIPTOR_BIT_KHR;
  dci.bindingCount = buffers;
  dci.pBindings = bindings.data();
  check(a.vkCreateDescriptorSetLayout(dev, &dci, nullptr, &p.set_layout), "vkCreateDescriptorSetLayout");
  VkPushConstantRange range{VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes};
  VkPipelineLayoutCreateInfo lci{};
  lci.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO;
  lci.setLayoutCount = 1;
  lci.pSetLayouts = &p.set_layout;
  lci.pushConstantRangeCount = push_bytes ? 1 : 0;
  lci.pPushConstantRanges = &range;
  check(a.vkCreatePipelineLayout(dev, &lci, nullptr, &p.layout), "vkCreatePipelineLayout");
  VkShaderModuleCreateInfo sci{};
  sci.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO;
  sci.codeSize = code->words * 4;
  sci.pCode = code->spirv;
  VkShaderModule module = VK_NULL_HANDLE;
  check(a.vkCreateShaderModule(dev, &sci, nullptr, &module), "vkCreateShaderModule");
  VkComputePipelineCreateInfo cci{};
  cci.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO;
  cci.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
  cci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  cci.stage.module = module;
  cci.stage.pName = "main";
  std::vector<VkSpecializationMapEntry> entries(spec.size());
  for (uint32_t i = 0; i < spec.size(); ++i) entries[i] = {i, i * 4u, 4u};
  const VkSpecializationInfo specialization{static_cast<uint32_t>(entries.size()), entries.data(), spec.size_bytes(),
                                            spec.data()};
  if (!spec.empty()) cci.stage.pSpecializationInfo = &specialization;
  cci.layout = p.layout;
  const VkResult r = a.vkCreateComputePipelines(dev, pipeline_cache_, 1, &cci, nullptr, &p.pipeline);
  a.vkDestroyShaderModule(dev, module, nullptr);
  check(r, "vkCreateComputePipelines");
  pipeline_cache_dirty_ = pipeline_cache_ != VK_NULL_HANDLE;
  return pipelines_.emplace(key, p).first->second;
}

void VulkanBackend::open_pipeline_cache() {
  VkPhysicalDeviceProperties props{};
  api().vkGetPhysicalDeviceProperties(context_->physical_device(), &props);
  pipeline_cache_path_ = pipeline_cache_file(props);
  if (pipeline_cache_path_.empty()) return;
  std::vector<uint8_t> seed = read_file_bytes(pipeline_cache_path_);  // empty on the first run
  if (std::error_code ec; seed.empty() && std::filesystem::file_size(pipeline_cache_path_, ec) > 0 && !ec)
    warn_once("ignoring the Vulkan pipeline cache " + pipeline_cache_path_ + " (unreadable, or more than " +
              std::to_string(kMaxPipelineCacheBytes >> 20) + " MiB); it will be rewritten");
  if (!seed.empty()) {
    const std::string mismatch = pipeline_cache_mismatch(seed, props);
    if (!mismatch.empty()) {
      warn_once("ignoring the Vulkan pipeline cache " + pipeline_cache_path_ + " (" + mismatch +
                "); it will be rewritten");
      seed.clear();
    }
  }
  VkPipelineCacheCreateInfo ci{};
  ci.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO;
  ci.initialDataSize = seed.size();
  ci.pInitialData = seed.data();
  VkResult r = api().vkCreatePipelineCache(context_->device(), &ci, nullptr, &pipeline_cache_);
  if (r != VK_SUCCESS && !seed.empty()) {
    warn_once("ignoring the Vulkan pipeline cache " + pipeline_cache_path_ + " (the driver refused its data: " +
              result_name(r) + "); it will be rewritten");
    seed.clear();
    ci.initialDataSize = 0;
    ci.pInitialData = nullptr;
    r = api().vkCreatePipelineCache(context_->device(), &ci, nullptr, &pipeline_cache_);
  }
  check(r, "vkCreatePipelineCache");
  pipeline_cache_seed_bytes_ = seed.size();
  pipeline_cache_saved_hash_ = hash_of(seed);
}

void VulkanBackend::save_pipeline_cache() {
  if (!pipeline_cache_dirty_) return;
  pipeline_cache_dirty_ = false;
  VkDevice dev = context_->device();
  size_t size = 0;
  VkResult r = api().vkGetPipelineCacheData(dev, pipeline_cache_, &size, nullptr);
  std::vector<uint8_t> data(size);
  if (r == VK_SUCCESS) r = api().vkGetPipelineCacheData(dev, pipeline_cache_, &size, data.data());
  if (r != VK_SUCCESS) {
    warn_once(std::string("cannot read the Vulkan pipeline cache back from the driver (") + result_name(r) +
              "); it is not saved");
    return;
  }
  data.resize(size);
  const size_t hash = hash_of(data);
  if (hash == pipeline_cache_saved_hash_) return;
  try {
    write_file_atomically(pipeline_cache_path_, data);
    pipeline_cache_saved_hash_ = hash;
  } catch (const Error& e) {
    warn_once(std::string("cannot save the Vulkan pipeline cache: ") + e.what());
  }
}

void VulkanBackend::begin_recording() {
  VkCommandBufferBeginInfo bi{};
  bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  check(api().vkBeginCommandBuffer(cmd_, &bi), "vkBeginCommandBuffer");
  recording_ = true;
  recorded_ = 0;
}

void VulkanBackend::submit_and_continue() {
  const Api& a = api();
  Frame& f = frames_[frame_];
  check(a.vkEndCommandBuffer(cmd_), "vkEndCommandBuffer");
  VkSubmitInfo si{};
  si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cmd_;
  check(a.vkQueueSubmit(context_->queue(), 1, &si, f.fence), "vkQueueSubmit");
  f.checks.swap(index_checks_);
  index_checks_.clear();
  in_flight_.push_back(frame_);
  recording_ = false;
  // The hazard tracking goes on across the submit: a barrier recorded in the next command
  // buffer orders everything earlier in submission order, this buffer's commands included.
  frame_ = (frame_ + 1) % kFrames;
  cmd_ = frames_[frame_].cmd;
  if (!in_flight_.empty() && in_flight_.front() == frame_) retire_oldest_frame();
}

void VulkanBackend::retire_oldest_frame() {
  const Api& a = api();
  Frame& f = frames_[in_flight_.front()];
  check(a.vkWaitForFences(context_->device(), 1, &f.fence, VK_TRUE, UINT64_MAX), "vkWaitForFences");
  check(a.vkResetFences(context_->device(), 1, &f.fence), "vkResetFences");
  check(a.vkResetCommandBuffer(f.cmd, 0), "vkResetCommandBuffer");
  for (size_t c = 0; c < f.checks.size(); ++c) {  // (no checks: the slots may not exist yet)
    const size_t slot = (size_t(in_flight_.front()) * kMaxRecorded + c) * kIndexSlotBytes;
    uint32_t& position = *reinterpret_cast<uint32_t*>(static_cast<char*>(index_errors_.mapped) + slot);
    if (position != kNoBadIndex && !deferred_index_error_) deferred_index_error_.emplace(f.checks[c], position);
    position = kNoBadIndex;  // ready for the frame's next use
  }
  f.checks.clear();
  in_flight_.pop_front();
}

void VulkanBackend::submit_and_wait(bool report) {
  const Api& a = api();
  if (recording_) {
    VkMemoryBarrier to_host{};  // the writes of this and every earlier batch, visible to the host's reads
    to_host.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
    to_host.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
    to_host.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
    a.vkCmdPipelineBarrier(cmd_, kWorkStages, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &to_host, 0, nullptr, 0, nullptr);
    submit_and_continue();
  }
  // In submission order: the last fence also covers everything submitted before it.
  while (!in_flight_.empty()) retire_oldest_frame();
  written_.clear();
  read_.clear();
  pending_stages_ = 0;
  staging_used_ = 0;
  save_pipeline_cache();  // here rather than at exit: backend_for()'s backends are never destroyed
  if (report) report_index_errors();
  else deferred_index_error_.reset();
}

void VulkanBackend::report_index_errors() {
  if (!deferred_index_error_) return;
  const auto [bad, position] = *deferred_index_error_;
  deferred_index_error_.reset();
  // The kernel has run; reading its index tensor now is one download on the error path only.
  const std::vector<int32_t> ids = bad.index.to_int_vector();
  throw Error(std::string("vulkan ") + bad.kernel + ": index " + std::to_string(ids.at(position)) +
              " at position " + std::to_string(position) + " is out of range [0, " + std::to_string(bad.n) +
              ") (found by the kernel on the device, reported at the next host read or sync)");
}

void VulkanBackend::order_after_pending(std::span<const Access> accesses, VkPipelineStageFlags stage) {
  if (!recording_) begin_recording();
  bool hazard = false;
  for (const Access& x : accesses) hazard = hazard || written_.count(x.buffer) || (x.written && read_.count(x.buffer));
  if (hazard) {
    // Global: everything recorded so far before everything after, in both stages, so
    // that the tracking can start afresh.
    VkMemoryBarrier mb{};
    mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
    mb.srcAccessMask = ((pending_stages_ & VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT) ? VK_ACCESS_SHADER_WRITE_BIT : 0) |
                       ((pending_stages_ & VK_PIPELINE_STAGE_TRANSFER_BIT) ? VK_ACCESS_TRANSFER_WRITE_BIT : 0);
    mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                       VK_ACCESS_TRANSFER_WRITE_BIT;
    api().vkCmdPipelineBarrier(cmd_, pending_stages_, kWorkStages, 0, 1, &mb, 0, nullptr, 0, nullptr);
    written_.clear();
    read_.clear();
    pending_stages_ = 0;
  }
  for (const Access& x : accesses) (x.written ? written_ : read_).insert(x.buffer);
  pending_stages_ |= stage;
}

void VulkanBackend::dispatch(const char* shader, std::initializer_list<Binding> bindings, const void* push,
                             uint32_t push_bytes, int64_t invocations, const IndexCheck* check) {
  const int64_t groups = (invocations + kWorkgroup - 1) / kWorkgroup;
  const uint32_t gx = static_cast<uint32_t>(std::min<int64_t>(groups, 65535));
  const uint32_t gy = static_cast<uint32_t>((groups + gx - 1) / gx);
  dispatch_groups(shader, bindings, push, push_bytes, gx, gy, 1, check);
}

void VulkanBackend::dispatch_rows(const char* shader, const char* subgroup_shader, std::initializer_list<Binding> bindings,
                                  const void* push, uint32_t push_bytes, int64_t rows) {
  const DeviceInfo& info = context_->info();
  const char* forced = std::getenv("SPARO_VULKAN_SUBGROUPS");
  const bool off = forced && std::strcmp(forced, "0") == 0;
  if (off || !info.subgroup_arithmetic || info.subgroup_size < 1 || info.subgroup_size > kWorkgroup) {
    dispatch(shader, bindings, push, push_bytes, rows);
    return;
  }
  // SPIR-V before 1.6 runs compute subgroups of the device's subgroupSize: 256 / size rows
  // per workgroup.
  const int64_t rows_per_group = kWorkgroup / info.subgroup_size;
  const int64_t groups = (rows + rows_per_group - 1) / rows_per_group;
  const uint32_t gx = static_cast<uint32_t>(std::min<int64_t>(groups, 65535));
  dispatch_groups(subgroup_shader, bindings, push, push_bytes, gx, static_cast<uint32_t>((groups + gx - 1) / gx), 1);
}

void VulkanBackend::dispatch_groups(const char* shader, std::initializer_list<Binding> bindings, const void* push,
                                    uint32_t push_bytes, uint32_t gx, uint32_t gy, uint32_t gz, const IndexCheck* index_check,
                                    std::span<const uint32_t> spec) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  const Pipeline& p = pipeline(shader, static_cast<uint32_t>(bindings.size() + (index_check ? 1 : 0)), push_bytes, spec);
  const Api& a = api();
  std::vector<Access> accesses;
  for (const Binding& b : bindings) accesses.push_back({buffer_of(*b.tensor), b.written});
  order_after_pending(accesses, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT);
  std::vector<VkDescriptorBufferInfo> infos;
  for (const Binding& b : bindings) infos.push_back({buffer_of(*b.tensor), 0, VK_WHOLE_SIZE});
  if (index_check) {
    // Not in the hazard tracking: no other command touches this dispatch's slot, and the
    // host reads it after the submit's final barrier.
    if (!index_errors_.buffer) {
      check(create_block(kFrames * kMaxRecorded * kIndexSlotBytes, index_errors_memory_, kTensorUsage, &index_errors_),
            "vkAllocateMemory (index-error slots)");
      std::memset(index_errors_.mapped, 0xFF, index_errors_.capacity);  // kNoBadIndex everywhere
    }
    infos.push_back({index_errors_.buffer, (frame_ * kMaxRecorded + index_checks_.size()) * kIndexSlotBytes,
                     sizeof(uint32_t)});
    index_checks_.push_back(*index_check);
  }
  std::vector<VkWriteDescriptorSet> writes(infos.size());
  for (size_t i = 0; i < infos.size(); ++i) {
    VkWriteDescriptorSet& w = writes[i];
    w = {};
    w.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
    w.dstBinding = static_cast<uint32_t>(i);
    w.descriptorCount = 1;
    w.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    w.pBufferInfo = &infos[i];
  }
  a.vkCmdBindPipeline(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, p.pipeline);
  a.vkCmdPushDescriptorSetKHR(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, p.layout, 0, static_cast<uint32_t>(writes.size()),
                              writes.data());
  if (push_bytes) a.vkCmdPushConstants(cmd_, p.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes, push);
  a.vkCmdDispatch(cmd_, gx, gy, gz);
  if (++recorded_ >= kMaxRecorded) submit_and_continue();
}

[[noreturn]] void VulkanBackend::not_implemented(const char* kernel) const {
  throw Error(std::string("vulkan: the ") + kernel +
              " kernel is not implemented yet (the Vulkan backend is in progress); run on the cpu device");
}

// ---- kernels ----------------------------------------------------------------------------

void VulkanBackend::fill(Tensor& out, double value) {
  if (out.dtype() != DType::f32 && out.dtype() != DType::i32) not_implemented("fill (16-bit)");
  struct { uint32_t n, bits; } push{static_cast<uint32_t>(out.numel()),
                                    out.dtype() == DType::f32 ? std::bit_cast<uint32_t>(static_cast<float>(value))
                                                              : static_cast<uint32_t>(static_cast<int32_t>(value))};
  if (push.n) dispatch("fill", {{&out, true}}, &push, sizeof(push), out.numel());
}

void VulkanBackend::unary(UnaryOp op, const Tensor& x, Tensor& out, UnaryParams p) {
  struct { uint32_t n, op; float a, b; } push{static_cast<uint32_t>(x.numel()), static_cast<uint32_t>(op), p.a, p.b};
  dispatch("unary", {{&x, false}, {&out, true}}, &push, sizeof(push), x.numel());
}

namespace {
// Push constants of the strided shaders: 8 dims and two stride arrays in 32-bit words.
struct StridedPush {
  uint32_t dims[8], first_strides[8], second_strides[8];
  uint32_t rank, n, x, y;
};
static_assert(sizeof(StridedPush) <= 128, "push constants are limited to 128 bytes");

uint32_t narrow(int64_t v, const char* what) {
  if (v < 0 || v > static_cast<int64_t>(UINT32_MAX))
    throw Error(std::string("vulkan: ") + what + " " + std::to_string(v) + " does not fit the shaders' 32-bit indices");
  return static_cast<uint32_t>(v);
}
}  // namespace

void VulkanBackend::copy(const Tensor& src, Tensor& dst, const CopyPlan& plan) {
  if (dtype_size(src.dtype()) != 4) not_implemented("copy (16-bit)");
  StridedPush push{};
  int64_t n = 1;
  for (int d = 0; d < plan.rank; ++d) {
    push.dims[d] = narrow(plan.dims[d], "dimension");
    push.first_strides[d] = narrow(plan.src_strides[d], "stride");
    push.second_strides[d] = narrow(plan.dst_strides[d], "stride");
    n *= plan.dims[d];
  }
  push.rank = static_cast<uint32_t>(plan.rank);
  push.n = narrow(n, "element count");
  push.x = narrow(plan.src_offset, "offset");
  push.y = narrow(plan.dst_offset, "offset");
  if (n) dispatch("copy", {{&src, false}, {&dst, true}}, &push, sizeof(push), n);
}

void VulkanBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out, const ElementwisePlan& plan) {
  StridedPush push{};
  for (int d = 0; d < plan.rank; ++d) {
    push.dims[d] = narrow(plan.dims[d], "dimension");
    push.first_strides[d] = narrow(plan.strides[1][d], "stride");
    push.second_strides[d] = narrow(plan.strides[2][d], "stride");
  }
  push.rank = static_cast<uint32_t>(plan.rank);
  push.n = narrow(plan.numel, "element count");
  push.x = static_cast<uint32_t>(op);
  // out may alias a (in-place updates: add_, mul_): each invocation reads its element
  // before writing it, and the shaders declare no `restrict`, so the aliasing is safe.
  dispatch("binary", {{&a, false}, {&b, false}, {&out, true}}, &push, sizeof(push) - sizeof(uint32_t), plan.numel);
}

void VulkanBackend::unary_backward(UnaryOp op, const Tensor& x, const Tensor& dy, Tensor& dx, UnaryParams p) {
  struct { uint32_t n, op; float a, b; } push{static_cast<uint32_t>(x.numel()), static_cast<uint32_t>(op), p.a, p.b};
  dispatch("unary_backward", {{&x, false}, {&dy, false}, {&dx, true}}, &push, sizeof(push), x.numel());
}

void VulkanBackend::arange(Tensor& out, double start, double step) {
  struct { uint32_t n, mode; float start, step; } push{narrow(out.numel(), "element count"),
                                                       out.dtype() == DType::f32 ? 2u : 3u, static_cast<float>(start),
                                                       static_cast<float>(step)};
  if (push.n) dispatch("convert", {{&out, false}, {&out, true}}, &push, sizeof(push), out.numel());
}

void VulkanBackend::cast(const Tensor& x, Tensor& out) {
  if (x.dtype() == out.dtype()) {
    CopyPlan plan;
    plan.rank = 1;
    plan.dims[0] = x.numel();
    plan.src_strides[0] = plan.dst_strides[0] = 1;
    return copy(x, out, plan);
  }
  uint32_t mode = 0;
  if (x.dtype() == DType::f32 && out.dtype() == DType::i32) mode = 0;
  else if (x.dtype() == DType::i32 && out.dtype() == DType::f32) mode = 1;
  else not_implemented("cast (16-bit)");
  struct { uint32_t n, mode; float start, step; } push{narrow(x.numel(), "element count"), mode, 0.0f, 0.0f};
  if (push.n) dispatch("convert", {{&x, false}, {&out, true}}, &push, sizeof(push), x.numel());
}

void VulkanBackend::random(Tensor& out, RandomDist dist, uint64_t seed, uint64_t block_offset, float a, float b) {
  struct { uint32_t n, seed_lo, seed_hi, first_lo, first_hi, normal; float a, b; } push{
      narrow(out.numel(), "element count"), static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
      static_cast<uint32_t>(block_offset), static_cast<uint32_t>(block_offset >> 32),
      dist == RandomDist::normal ? 1u : 0u, a, b};
  if (push.n) dispatch("random", {{&out, true}}, &push, sizeof(push), (out.numel() + 3) / 4);
}

void VulkanBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out, const ElementwisePlan& plan) {
  if (plan.rank > 6) not_implemented("where over more than 6 merged dimensions");
  struct { uint32_t dims[6], c[6], a[6], b[6], rank, n; } push{};
  for (int d = 0; d < plan.rank; ++d) {
    push.dims[d] = narrow(plan.dims[d], "dimension");
    push.c[d] = narrow(plan.strides[1][d], "stride");
    push.a[d] = narrow(plan.strides[2][d], "stride");
    push.b[d] = narrow(plan.strides[3][d], "stride");
  }
  push.rank = static_cast<uint32_t>(plan.rank);
  push.n = narrow(plan.numel, "element count");
  dispatch("where", {{&cond, false}, {&a, false}, {&b, false}, {&out, true}}, &push, sizeof(push), plan.numel);
}

void VulkanBackend::reduce(ReduceOp op, const Tensor& x, Tensor& out, int64_t outer, int64_t n, int64_t inner) {
  struct { uint32_t outer, n, inner, op; } push{narrow(outer, "outer size"), narrow(n, "reduced size"),
                                                 narrow(inner, "inner size"), op == ReduceOp::sum ? 0u : 1u};
  // Long reductions into few outputs (a whole-tensor sum, a row of a wide matrix) get a
  // workgroup each; otherwise one invocation per output, whose neighbours read neighbouring
  // memory when inner > 1.
  const int64_t outputs = outer * inner;
  if (n >= 256 && (inner == 1 || outputs < 2048)) {
    const uint32_t gx = static_cast<uint32_t>(std::min<int64_t>(outputs, 65535));
    dispatch_groups("reduce_wide", {{&x, false}, {&out, true}}, &push, sizeof(push), gx,
                    static_cast<uint32_t>((outputs + gx - 1) / gx), 1);
    return;
  }
  dispatch("reduce", {{&x, false}, {&out, true}}, &push, sizeof(push), outputs);
}

MatmulTiles parse_matmul_tiles(const std::string& text, const std::string& what) {
  const auto bad = [&](const std::string& why) {
    return Error(what + "=\"" + text + "\": " + why +
                 " (expected wx,wy,tm,tn,bk[,vec]: five positive integers, e.g. 16,16,8,8,8, and optionally "
                 "vec, 1 or 4)");
  };
  std::vector<uint32_t> v;
  size_t at = 0;
  while (true) {
    const size_t i = v.size() + 1;
    size_t used = 0;
    unsigned long x = 0;
    if (at >= text.size() || !std::isdigit(static_cast<unsigned char>(text[at])))
      throw bad("value " + std::to_string(i) + " is not a number");
    try {
      x = std::stoul(text.substr(at), &used);
    } catch (const std::exception&) {
      throw bad("value " + std::to_string(i) + " is not a number");
    }
    if (x == 0 || x > 1024) throw bad("value " + std::to_string(i) + " is not in [1, 1024]");
    v.push_back(static_cast<uint32_t>(x));
    at += used;
    if (at == text.size()) break;
    if (text[at] != ',' || v.size() == 6) throw bad(v.size() == 6 ? "too many values" : "values are separated by commas");
    ++at;
  }
  if (v.size() < 5) throw bad("too few values");
  if (v.size() == 6 && v[5] != 1 && v[5] != 4) throw bad("vec is " + std::to_string(v[5]) + ", not 1 or 4");
  return {v[0], v[1], v[2], v[3], v[4], v.size() == 6 ? v[5] : 1u};
}

MatmulTiles VulkanBackend::matmul_tiles() const {
  const char* env = std::getenv("SPARO_VULKAN_MATMUL_TILES");
  if (!env || !*env) return {};
  const MatmulTiles t = parse_matmul_tiles(env, "SPARO_VULKAN_MATMUL_TILES");
  const DeviceInfo& info = context_->info();
  const uint64_t threads = uint64_t{t.wx} * t.wy;
  // tile_a and tile_b of the shader: bk rows of the tile's side plus one padding column.
  const uint64_t shared = 4ull * t.bk * (t.wy * t.tm + 1 + t.wx * t.tn + 1);
  std::string why;
  if (threads > info.max_workgroup_invocations)
    why = std::to_string(threads) + " invocations per workgroup, the device allows " +
          std::to_string(info.max_workgroup_invocations);
  else if (t.tm * t.tn > 256)
    why = std::to_string(t.tm * t.tn) + " outputs per invocation, at most 256 are allowed";
  else if (shared > info.max_shared_memory)
    why = std::to_string(shared) + " bytes of shared memory, the device has " + std::to_string(info.max_shared_memory);
  if (!why.empty()) throw Error(std::string("SPARO_VULKAN_MATMUL_TILES=\"") + env + "\" does not fit " + info.name + ": " + why);
  return t;
}

bool VulkanBackend::coopmat_requested() const {
  const char* env = std::getenv("SPARO_VULKAN_COOPMAT");
  if (!env || std::strcmp(env, "1") != 0) return false;
  const DeviceInfo& info = context_->info();
  if (!info.coopmat_nv_f16)
    throw Error("SPARO_VULKAN_COOPMAT=1, but " + info.name +
                " has no VK_NV_cooperative_matrix with 16x16x16 fp16 fragments (see `sparo info`); unset it");
  return true;
}

void VulkanBackend::matmul(const Tensor& a, const Tensor& b, Tensor& c, const MatmulDesc& d) {
  // flags (shaders/bf16.glsl): bit 0 adds to C, bit 1 rounds the inputs to bf16.
  const uint32_t flags = (d.accumulate ? 1u : 0u) | (d.precision == MatmulPrecision::bf16 ? 2u : 0u);
  struct { uint32_t batch, M, N, K, ta, tb, as, bs, cs, flags; } push{
      narrow(d.batch, "batch"), narrow(d.M, "M"), narrow(d.N, "N"), narrow(d.K, "K"), d.trans_a ? 1u : 0u,
      d.trans_b ? 1u : 0u, narrow(d.a_batch_stride, "stride"), narrow(d.b_batch_stride, "stride"),
      narrow(d.c_batch_stride, "stride"), flags};
  narrow(d.batch * d.M * d.N, "output size");
  // Tiles (shaders/matmul_tiled.comp) once both sides are at least 32; smaller products
  // take one output per invocation. SPARO_VULKAN_COOPMAT=1: the matrix units, fp16 inputs
  // (for f32 matmuls only: a bf16 request keeps bf16's rounding).
  if (coopmat_requested() && d.precision == MatmulPrecision::f32 && d.batch <= 65535) {
    const uint32_t spec[] = {4 * context_->info().subgroup_size};  // 4 subgroups
    dispatch_groups("matmul_coopmat_nv", {{&a, false}, {&b, false}, {&c, true}}, &push, sizeof(push),
                    narrow((d.N + 63) / 64, "column tiles"), narrow((d.M + 63) / 64, "row tiles"),
                    static_cast<uint32_t>(d.batch), nullptr, spec);
  } else if (d.M >= 32 && d.N >= 32 && d.batch <= 65535) {
    const MatmulTiles t = matmul_tiles();
    const uint32_t spec[] = {t.wx, t.wy, t.tm, t.tn, t.bk, t.vec};
    const int64_t bm = int64_t{t.wy} * t.tm, bn = int64_t{t.wx} * t.tn;
    dispatch_groups("matmul_tiled", {{&a, false}, {&b, false}, {&c, true}}, &push, sizeof(push),
                    narrow((d.N + bn - 1) / bn, "column tiles"), narrow((d.M + bm - 1) / bm, "row tiles"),
                    static_cast<uint32_t>(d.batch), nullptr, spec);
  } else
    dispatch("matmul", {{&a, false}, {&b, false}, {&c, true}}, &push, sizeof(push), d.batch * d.M * d.N);
}

void VulkanBackend::softmax(const Tensor& x, const Tensor& mask, const ElementwisePlan& mask_plan, Tensor& y,
                            int64_t rows, int64_t cols, bool log) {
  StridedPush push{};
  for (int d = 0; d < mask_plan.rank; ++d) {
    push.dims[d] = narrow(mask_plan.dims[d], "dimension");
    push.first_strides[d] = narrow(mask_plan.strides[1][d], "stride");
  }
  // The shader's block is dims, mask strides, then rank, rows, cols, flags.
  struct { uint32_t dims[8], strides[8], rank, rows, cols, flags; } sp{};
  std::memcpy(sp.dims, push.dims, sizeof(sp.dims));
  std::memcpy(sp.strides, push.first_strides, sizeof(sp.strides));
  sp.rank = static_cast<uint32_t>(mask_plan.rank);
  sp.rows = narrow(rows, "rows");
  sp.cols = narrow(cols, "columns");
  sp.flags = (log ? 1u : 0u) | (mask.defined() ? 2u : 0u);
  const Tensor& m = mask.defined() ? mask : x;  // a valid binding even without a mask
  dispatch_rows("softmax", "softmax_subgroup", {{&x, false}, {&m, false}, {&y, true}}, &sp, sizeof(sp), rows);
}

void VulkanBackend::softmax_backward(const Tensor& y, const Tensor& dy, Tensor& dx, int64_t rows, int64_t cols, bool log) {
  struct { uint32_t rows, cols, log; } push{narrow(rows, "rows"), narrow(cols, "columns"), log ? 1u : 0u};
  dispatch_rows("softmax_backward", "softmax_backward_subgroup", {{&y, false}, {&dy, false}, {&dx, true}}, &push,
                sizeof(push), rows);
}

void VulkanBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y, Tensor& mean,
                               Tensor& rstd, int64_t rows, int64_t cols, float eps) {
  struct { uint32_t rows, cols, has_bias; float eps; } push{narrow(rows, "rows"), narrow(cols, "columns"),
                                                             bias.defined() ? 1u : 0u, eps};
  const Tensor& b = bias.defined() ? bias : weight;
  dispatch_rows("layer_norm", "layer_norm_subgroup",
                {{&x, false}, {&weight, false}, {&b, false}, {&y, true}, {&mean, true}, {&rstd, true}}, &push,
                sizeof(push), rows);
}

void VulkanBackend::layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                                        const Tensor& dy, Tensor& dx, Tensor& dweight, Tensor& dbias, int64_t rows,
                                        int64_t cols) {
  struct { uint32_t rows, cols; } push{narrow(rows, "rows"), narrow(cols, "columns")};
  dispatch_rows("layer_norm_backward", "layer_norm_backward_subgroup",
                {{&x, false}, {&weight, false}, {&mean, false}, {&rstd, false}, {&dy, false}, {&dx, true}}, &push,
                sizeof(push), rows);
  if (!dweight.defined() && !dbias.defined()) return;
  struct { uint32_t rows, cols, want_dw, want_db; } pp{push.rows, push.cols, dweight.defined() ? 1u : 0u,
                                                        dbias.defined() ? 1u : 0u};
  Tensor& dw = dweight.defined() ? dweight : dbias;  // valid bindings; the flags say which are written
  Tensor& db = dbias.defined() ? dbias : dweight;
  // 32 columns per workgroup, 8 lanes of rows each (shaders/layer_norm_params_backward.comp).
  if (cols > int64_t{65535} * 32)
    throw Error("vulkan layer_norm backward: " + std::to_string(cols) + " columns, at most " +
                std::to_string(65535 * 32) + " are supported (one workgroup per 32)");
  dispatch_groups("layer_norm_params_backward",
                  {{&x, false}, {&mean, false}, {&rstd, false}, {&dy, false}, {&dw, true}, {&db, true}}, &pp, sizeof(pp),
                  narrow((cols + 31) / 32, "column groups"), 1, 1);
}

void VulkanBackend::gather(const Tensor& src, const Tensor& index, Tensor& out, int64_t outer, int64_t n, int64_t inner) {
  if (dtype_size(src.dtype()) != 4) not_implemented("gather (16-bit)");
  const IndexCheck check{"gather", index, n};
  struct { uint32_t mode, outer, n, inner, m; float on, off; } push{0u, narrow(outer, "outer size"), narrow(n, "size"),
                                                                   narrow(inner, "inner size"),
                                                                   narrow(index.numel(), "index count"), 0.0f, 0.0f};
  dispatch("indexing", {{&src, false}, {&index, false}, {&out, true}}, &push, sizeof(push), outer * index.numel() * inner,
           &check);
}

void VulkanBackend::scatter_add(const Tensor& src, const Tensor& index, Tensor& dst, int64_t outer, int64_t n,
                                int64_t inner) {
  const IndexCheck check{"scatter_add", index, n};
  struct { uint32_t mode, outer, n, inner, m; float on, off; } push{1u, narrow(outer, "outer size"), narrow(n, "size"),
                                                                   narrow(inner, "inner size"),
                                                                   narrow(index.numel(), "index count"), 0.0f, 0.0f};
  dispatch("indexing", {{&src, false}, {&index, false}, {&dst, true}}, &push, sizeof(push), outer * inner, &check);
}

void VulkanBackend::one_hot(const Tensor& index, Tensor& out, int64_t classes, float on, float off) {
  const IndexCheck check{"one_hot", index, classes};
  struct { uint32_t mode, outer, n, inner, m; float on, off; } push{2u, 1u, narrow(classes, "classes"), 1u,
                                                                   narrow(index.numel(), "index count"), on, off};
  dispatch("indexing", {{&index, false}, {&index, false}, {&out, true}}, &push, sizeof(push), index.numel() * classes,
           &check);
}

namespace {
struct OptimizerPush {
  uint32_t n, mode, first_step, nesterov;
  float lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2, momentum, dampening;
};
}  // namespace

void VulkanBackend::adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWStep& s) {
  const OptimizerPush push{narrow(param.numel(), "element count"), 0u, 0u, 0u, s.lr, s.beta1, s.beta2, s.eps,
                           s.weight_decay, s.bias_correction1, s.bias_correction2, 0.0f, 0.0f};
  dispatch("optimizer", {{&param, true}, {&grad, false}, {&m, true}, {&v, true}}, &push, sizeof(push), param.numel());
}

void VulkanBackend::sgd_step(Tensor& param, const Tensor& grad, Tensor& buffer, const SgdStep& s) {
  const OptimizerPush push{narrow(param.numel(), "element count"), 1u, s.first_step ? 1u : 0u, s.nesterov ? 1u : 0u,
                           s.lr, 0.0f, 0.0f, 0.0f, s.weight_decay, 1.0f, 1.0f, s.momentum, s.dampening};
  Tensor& m = s.momentum != 0.0f ? buffer : param;  // without momentum there is no buffer: bind something valid
  dispatch("optimizer", {{&param, true}, {&grad, false}, {&m, s.momentum != 0.0f}, {&m, false}}, &push, sizeof(push),
           param.numel());
}

void VulkanBackend::ema_step(Tensor& target, const Tensor& source, float momentum) {
  const OptimizerPush push{narrow(target.numel(), "element count"), 2u, 0u, 0u, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 1.0f,
                           1.0f, momentum, 1.0f - momentum};
  dispatch("optimizer", {{&target, true}, {&source, false}, {&target, false}, {&target, false}}, &push, sizeof(push),
           target.numel());
}

}  // namespace sparo::vk
