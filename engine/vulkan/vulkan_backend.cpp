#include "engine/vulkan/vulkan_backend.h"

#include <bit>
#include <cstring>

#include "engine/vulkan/shaders.h"

namespace sparo::vk {

namespace {
constexpr int kMaxRecorded = 256;   // dispatches per command buffer before a submit
constexpr uint32_t kWorkgroup = 256;  // local_size_x of every shader (shaders/common.glsl)

size_t bucket(size_t bytes) {  // as the CPU cache: 1/8 power-of-two steps, at least 256 bytes
  if (bytes <= 256) return 256;
  size_t pow2 = 1;
  while (pow2 < bytes) pow2 <<= 1;
  const size_t step = pow2 / 8;
  return (bytes + step - 1) / step * step;
}

VkBuffer buffer_of(const Tensor& t) { return static_cast<const VulkanStorage&>(t.storage()).block().buffer; }
}  // namespace

VulkanStorage::~VulkanStorage() { owner_.release(block_); }

VulkanBackend::VulkanBackend(int device_index) : index_(device_index), context_(std::make_unique<Context>(device_index)) {
  const Api& a = api();
  VkDevice dev = context_->device();
  // Host-visible, coherent memory: uploads and downloads are plain copies.
  VkPhysicalDeviceMemoryProperties mem{};
  api().vkGetPhysicalDeviceMemoryProperties(context_->physical_device(), &mem);
  const VkMemoryPropertyFlags want = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  memory_type_ = UINT32_MAX;
  for (uint32_t i = 0; i < mem.memoryTypeCount && memory_type_ == UINT32_MAX; ++i)
    if ((mem.memoryTypes[i].propertyFlags & want) == want) memory_type_ = i;
  if (memory_type_ == UINT32_MAX) throw Error("vulkan: device " + context_->info().name + " has no host-visible memory");

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
  check(a.vkAllocateCommandBuffers(dev, &cai, &cmd_), "vkAllocateCommandBuffers");
  VkFenceCreateInfo fci{};
  fci.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
  check(a.vkCreateFence(dev, &fci, nullptr, &fence_), "vkCreateFence");
  VkQueryPoolCreateInfo qci{};
  qci.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO;
  qci.queryType = VK_QUERY_TYPE_TIMESTAMP;
  qci.queryCount = 2;
  check(a.vkCreateQueryPool(dev, &qci, nullptr, &timestamps_), "vkCreateQueryPool");
}

VulkanBackend::~VulkanBackend() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (recording_) submit_and_wait();
  const Api& a = api();
  VkDevice dev = context_->device();
  empty_cache();
  for (auto& [name, p] : pipelines_) {
    a.vkDestroyPipeline(dev, p.pipeline, nullptr);
    a.vkDestroyPipelineLayout(dev, p.layout, nullptr);
    a.vkDestroyDescriptorSetLayout(dev, p.set_layout, nullptr);
  }
  a.vkDestroyQueryPool(dev, timestamps_, nullptr);
  a.vkDestroyFence(dev, fence_, nullptr);
  a.vkDestroyCommandPool(dev, pool_, nullptr);
}

// ---- memory ---------------------------------------------------------------------------

std::shared_ptr<Storage> VulkanBackend::allocate(size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  const size_t size = bucket(bytes);
  if (size > context_->info().max_storage_buffer_range)
    throw Error("vulkan: a tensor of " + std::to_string(bytes) + " bytes exceeds the device's maxStorageBufferRange (" +
                std::to_string(context_->info().max_storage_buffer_range) + " bytes)");
  Block block;
  auto it = free_.find(size);
  if (it != free_.end() && !it->second.empty()) {
    block = it->second.back();
    it->second.pop_back();
    cached_ -= size;
  } else {
    const Api& a = api();
    VkDevice dev = context_->device();
    VkBufferCreateInfo bci{};
    bci.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
    bci.size = size;
    bci.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    check(a.vkCreateBuffer(dev, &bci, nullptr, &block.buffer), "vkCreateBuffer");
    VkMemoryRequirements req{};
    a.vkGetBufferMemoryRequirements(dev, block.buffer, &req);
    VkMemoryAllocateInfo mai{};
    mai.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
    mai.allocationSize = req.size;
    mai.memoryTypeIndex = memory_type_;
    const VkResult r = a.vkAllocateMemory(dev, &mai, nullptr, &block.memory);
    if (r != VK_SUCCESS) {
      a.vkDestroyBuffer(dev, block.buffer, nullptr);
      throw Error("vulkan: out of device memory allocating " + std::to_string(size) + " bytes (" +
                  std::to_string(in_use_ >> 20) + " MiB in use, " + std::to_string(cached_ >> 20) + " MiB cached; " +
                  result_name(r) + ")");
    }
    check(a.vkBindBufferMemory(dev, block.buffer, block.memory, 0), "vkBindBufferMemory");
    check(a.vkMapMemory(dev, block.memory, 0, VK_WHOLE_SIZE, 0, &block.mapped), "vkMapMemory");
    block.capacity = size;
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
  const Api& a = api();
  for (auto& [size, blocks] : free_)
    for (const Block& b : blocks) {
      a.vkUnmapMemory(context_->device(), b.memory);
      a.vkDestroyBuffer(context_->device(), b.buffer, nullptr);
      a.vkFreeMemory(context_->device(), b.memory, nullptr);
    }
  free_.clear();
  cached_ = 0;
}

MemoryStats VulkanBackend::memory_stats() const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  return {in_use_, cached_, peak_};
}

void VulkanBackend::reset_peak_memory() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  peak_ = in_use_;
}

void VulkanBackend::upload(Storage& dst, size_t offset, const void* src, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (offset + bytes > dst.bytes()) throw Error("vulkan upload: range past the end of the storage");
  if (recording_) submit_and_wait();  // pending dispatches may still read or write this buffer
  if (bytes) std::memcpy(static_cast<char*>(static_cast<VulkanStorage&>(dst).block().mapped) + offset, src, bytes);
}

void VulkanBackend::download(const Storage& src, size_t offset, void* dst, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (offset + bytes > src.bytes()) throw Error("vulkan download: range past the end of the storage");
  if (recording_) submit_and_wait();
  if (bytes) std::memcpy(dst, static_cast<const char*>(static_cast<const VulkanStorage&>(src).block().mapped) + offset, bytes);
}

void VulkanBackend::synchronize() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (recording_) submit_and_wait();
}

// ---- timing -----------------------------------------------------------------------------

void VulkanBackend::begin_timing() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (recording_) submit_and_wait();  // time only what comes next
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

const VulkanBackend::Pipeline& VulkanBackend::pipeline(const char* shader, uint32_t buffers, uint32_t push_bytes) {
  auto found = pipelines_.find(shader);
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
  cci.layout = p.layout;
  const VkResult r = a.vkCreateComputePipelines(dev, VK_NULL_HANDLE, 1, &cci, nullptr, &p.pipeline);
  a.vkDestroyShaderModule(dev, module, nullptr);
  check(r, "vkCreateComputePipelines");
  return pipelines_.emplace(shader, p).first->second;
}

void VulkanBackend::begin_recording() {
  VkCommandBufferBeginInfo bi{};
  bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  check(api().vkBeginCommandBuffer(cmd_, &bi), "vkBeginCommandBuffer");
  recording_ = true;
  recorded_ = 0;
}

void VulkanBackend::submit_and_wait() {
  const Api& a = api();
  check(a.vkEndCommandBuffer(cmd_), "vkEndCommandBuffer");
  VkSubmitInfo si{};
  si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cmd_;
  check(a.vkQueueSubmit(context_->queue(), 1, &si, fence_), "vkQueueSubmit");
  check(a.vkWaitForFences(context_->device(), 1, &fence_, VK_TRUE, UINT64_MAX), "vkWaitForFences");
  check(a.vkResetFences(context_->device(), 1, &fence_), "vkResetFences");
  check(a.vkResetCommandBuffer(cmd_, 0), "vkResetCommandBuffer");
  recording_ = false;
  written_.clear();
  read_.clear();
  std::vector<std::shared_ptr<Storage>> done;
  done.swap(in_flight_);  // storages dropped here return their blocks to the cache
}

void VulkanBackend::dispatch(const char* shader, std::initializer_list<Binding> bindings, const void* push,
                             uint32_t push_bytes, int64_t invocations) {
  const int64_t groups = (invocations + kWorkgroup - 1) / kWorkgroup;
  const uint32_t gx = static_cast<uint32_t>(std::min<int64_t>(groups, 65535));
  const uint32_t gy = static_cast<uint32_t>((groups + gx - 1) / gx);
  dispatch_groups(shader, bindings, push, push_bytes, gx, gy, 1);
}

void VulkanBackend::dispatch_groups(const char* shader, std::initializer_list<Binding> bindings, const void* push,
                                    uint32_t push_bytes, uint32_t gx, uint32_t gy, uint32_t gz) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  const Pipeline& p = pipeline(shader, static_cast<uint32_t>(bindings.size()), push_bytes);
  if (!recording_) begin_recording();
  const Api& a = api();
  // A barrier only for a real hazard: reading or writing what an earlier dispatch wrote,
  // or writing what it read.
  bool hazard = false;
  for (const Binding& b : bindings) {
    const VkBuffer buf = buffer_of(*b.tensor);
    hazard = hazard || written_.count(buf) || (b.written && read_.count(buf));
  }
  if (hazard) {
    VkMemoryBarrier mb{};
    mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
    mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_SHADER_READ_BIT;
    mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;
    a.vkCmdPipelineBarrier(cmd_, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0,
                           nullptr, 0, nullptr);
    written_.clear();
    read_.clear();
  }
  std::vector<VkDescriptorBufferInfo> infos;
  std::vector<VkWriteDescriptorSet> writes;
  infos.reserve(bindings.size());
  uint32_t slot = 0;
  for (const Binding& b : bindings) {
    const VkBuffer buf = buffer_of(*b.tensor);
    infos.push_back({buf, 0, VK_WHOLE_SIZE});
    VkWriteDescriptorSet w{};
    w.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
    w.dstBinding = slot++;
    w.descriptorCount = 1;
    w.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    w.pBufferInfo = &infos.back();
    writes.push_back(w);
    (b.written ? written_ : read_).insert(buf);
    in_flight_.push_back(b.tensor->impl()->storage);
  }
  a.vkCmdBindPipeline(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, p.pipeline);
  a.vkCmdPushDescriptorSetKHR(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, p.layout, 0, static_cast<uint32_t>(writes.size()),
                              writes.data());
  if (push_bytes) a.vkCmdPushConstants(cmd_, p.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes, push);
  a.vkCmdDispatch(cmd_, gx, gy, gz);
  if (++recorded_ >= kMaxRecorded) submit_and_wait();
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
  dispatch("reduce", {{&x, false}, {&out, true}}, &push, sizeof(push), outer * inner);
}

void VulkanBackend::matmul(const Tensor& a, const Tensor& b, Tensor& c, const MatmulDesc& d) {
  struct { uint32_t batch, M, N, K, ta, tb, as, bs, cs, acc; } push{
      narrow(d.batch, "batch"), narrow(d.M, "M"), narrow(d.N, "N"), narrow(d.K, "K"), d.trans_a ? 1u : 0u,
      d.trans_b ? 1u : 0u, narrow(d.a_batch_stride, "stride"), narrow(d.b_batch_stride, "stride"),
      narrow(d.c_batch_stride, "stride"), d.accumulate ? 1u : 0u};
  narrow(d.batch * d.M * d.N, "output size");
  // Tiles of 64×64 (shaders/matmul_tiled.comp) once both sides fill a good part of one;
  // smaller products take one output per invocation.
  if (d.M >= 32 && d.N >= 32 && d.batch <= 65535)
    dispatch_groups("matmul_tiled", {{&a, false}, {&b, false}, {&c, true}}, &push, sizeof(push),
                    static_cast<uint32_t>((d.N + 63) / 64), static_cast<uint32_t>((d.M + 63) / 64),
                    static_cast<uint32_t>(d.batch));
  else
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
  dispatch("softmax", {{&x, false}, {&m, false}, {&y, true}}, &sp, sizeof(sp), rows);
}

void VulkanBackend::softmax_backward(const Tensor& y, const Tensor& dy, Tensor& dx, int64_t rows, int64_t cols, bool log) {
  struct { uint32_t rows, cols, log; } push{narrow(rows, "rows"), narrow(cols, "columns"), log ? 1u : 0u};
  dispatch("softmax_backward", {{&y, false}, {&dy, false}, {&dx, true}}, &push, sizeof(push), rows);
}

void VulkanBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y, Tensor& mean,
                               Tensor& rstd, int64_t rows, int64_t cols, float eps) {
  struct { uint32_t rows, cols, has_bias; float eps; } push{narrow(rows, "rows"), narrow(cols, "columns"),
                                                             bias.defined() ? 1u : 0u, eps};
  const Tensor& b = bias.defined() ? bias : weight;
  dispatch("layer_norm", {{&x, false}, {&weight, false}, {&b, false}, {&y, true}, {&mean, true}, {&rstd, true}}, &push,
           sizeof(push), rows);
}

void VulkanBackend::layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                                        const Tensor& dy, Tensor& dx, Tensor& dweight, Tensor& dbias, int64_t rows,
                                        int64_t cols) {
  struct { uint32_t rows, cols; } push{narrow(rows, "rows"), narrow(cols, "columns")};
  dispatch("layer_norm_backward", {{&x, false}, {&weight, false}, {&mean, false}, {&rstd, false}, {&dy, false}, {&dx, true}},
           &push, sizeof(push), rows);
  if (!dweight.defined() && !dbias.defined()) return;
  struct { uint32_t rows, cols, want_dw, want_db; } pp{push.rows, push.cols, dweight.defined() ? 1u : 0u,
                                                        dbias.defined() ? 1u : 0u};
  Tensor& dw = dweight.defined() ? dweight : dbias;  // valid bindings; the flags say which are written
  Tensor& db = dbias.defined() ? dbias : dweight;
  dispatch("layer_norm_params_backward", {{&x, false}, {&mean, false}, {&rstd, false}, {&dy, false}, {&dw, true}, {&db, true}},
           &pp, sizeof(pp), cols);
}

// Indices come from user data; a shader cannot throw, so they are checked here (one read
// of the index tensor — a host round trip, acceptable until a device-side error flag).
static void check_indices(const Tensor& index, int64_t n) {
  const std::vector<int32_t> ids = index.to_int_vector();
  for (size_t j = 0; j < ids.size(); ++j)
    if (ids[j] < 0 || ids[j] >= n)
      throw Error("index " + std::to_string(ids[j]) + " at position " + std::to_string(j) + " is out of range [0, " +
                  std::to_string(n) + ")");
}

void VulkanBackend::gather(const Tensor& src, const Tensor& index, Tensor& out, int64_t outer, int64_t n, int64_t inner) {
  if (dtype_size(src.dtype()) != 4) not_implemented("gather (16-bit)");
  check_indices(index, n);
  struct { uint32_t mode, outer, n, inner, m; float on, off; } push{0u, narrow(outer, "outer size"), narrow(n, "size"),
                                                                   narrow(inner, "inner size"),
                                                                   narrow(index.numel(), "index count"), 0.0f, 0.0f};
  dispatch("indexing", {{&src, false}, {&index, false}, {&out, true}}, &push, sizeof(push), outer * index.numel() * inner);
}

void VulkanBackend::scatter_add(const Tensor& src, const Tensor& index, Tensor& dst, int64_t outer, int64_t n,
                                int64_t inner) {
  check_indices(index, n);
  struct { uint32_t mode, outer, n, inner, m; float on, off; } push{1u, narrow(outer, "outer size"), narrow(n, "size"),
                                                                   narrow(inner, "inner size"),
                                                                   narrow(index.numel(), "index count"), 0.0f, 0.0f};
  dispatch("indexing", {{&src, false}, {&index, false}, {&dst, true}}, &push, sizeof(push), outer * inner);
}

void VulkanBackend::one_hot(const Tensor& index, Tensor& out, int64_t classes, float on, float off) {
  check_indices(index, classes);
  struct { uint32_t mode, outer, n, inner, m; float on, off; } push{2u, 1u, narrow(classes, "classes"), 1u,
                                                                   narrow(index.numel(), "index count"), on, off};
  dispatch("indexing", {{&index, false}, {&index, false}, {&out, true}}, &push, sizeof(push), index.numel() * classes);
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

}  // namespace sparo::vk
