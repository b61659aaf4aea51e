// Tensor: shape + dtype + device + opaque shared storage, and the autograd hooks.
//
// Every API here is written as if the data lived on a GPU, because it will: there
// is no raw pointer to a tensor's memory in this header. The host sees data only
// through explicit copies (from_vector, to_vector, item, to(Device::cpu())).
//
// Tensors are always contiguous and row-major. Ops that "view" (reshape) share
// storage; ops that rearrange (permute, slice, concat) copy. That keeps every
// kernel simple and every backend identical.
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/error.h"

namespace sparo {

enum class DType : uint8_t { f32, i32, f16, bf16 };  // f16/bf16: storage types for GPUs, later
size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);

// What matmul multiplies: f32 values, or (mixed precision) its inputs rounded to bf16 with the
// products summed in f32. Tensors stay f32 either way (engine/ops.h: set_matmul_precision).
enum class MatmulPrecision : uint8_t { f32, bf16 };

struct Device {
  enum class Kind : uint8_t { cpu, vulkan };
  Kind kind = Kind::cpu;
  int index = 0;

  static Device cpu() { return {}; }
  static Device vulkan(int index = 0) { return {Kind::vulkan, index}; }
  static Device parse(const std::string& text);  // "cpu", "vulkan", "vulkan:1"
  bool operator==(const Device&) const = default;
  std::string str() const;
};

// Whose host memory a tensor made by Tensor::from_host_memory uses, and so what the engine may
// do with its pages. A file mapping's unwritten pages can be dropped and read back from the
// file, so the CPU backend hands them back to the kernel once it holds them packed for its GEMM
// (one copy of a model's weights in memory). The caller's own memory is never touched that way.
enum class HostMemory : uint8_t { callers, file_mapping };

using Shape = std::vector<int64_t>;
int64_t numel(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[2, 3]"

// A block of memory owned by a backend. Its contents are reachable only through
// that backend (upload/download and kernels); the engine above never sees a pointer.
class Storage {
 public:
  Storage(Device device, size_t bytes) : device_(device), bytes_(bytes) {}
  virtual ~Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  Device device() const { return device_; }
  size_t bytes() const { return bytes_; }
  // Writes into this storage after it was made, counted by the in-place ops and the optimiser
  // steps (the only ops that write into a storage they did not just allocate): what a backend
  // derives from the contents and keeps (the CPU's packed weights) is stale once it changes.
  uint64_t writes() const { return writes_.load(std::memory_order_acquire); }
  void note_write() { writes_.fetch_add(1, std::memory_order_acq_rel); }

 private:
  Device device_;
  size_t bytes_;
  std::atomic<uint64_t> writes_{0};
};

struct Node;  // autograd.h
class Generator;  // random.h

struct TensorImpl {
  Shape shape;
  DType dtype = DType::f32;
  std::shared_ptr<Storage> storage;
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;  // accumulated by backward() on leaves
  std::shared_ptr<Node> grad_fn;     // the op that produced this tensor (non-leaf)
};

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor (e.g. a gradient not computed yet)
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- creation ---------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32,
                     Device device = Device::cpu());
  static Tensor scalar(float value, Device device = Device::cpu());  // shape []
  // [start, start+step, ...) strictly below end (f32 or i32).
  static Tensor arange(double start, double end, double step = 1.0, DType dtype = DType::f32,
                       Device device = Device::cpu());
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape,
                            Device device = Device::cpu());
  static Tensor from_vector(const std::vector<int32_t>& values, const Shape& shape,
                            Device device = Device::cpu());
  // A CPU tensor over memory it does not own (f32 or i32, 4-byte aligned, numel(shape) values):
  // no copy is made, and `owner` stays alive as long as any tensor uses the memory. For
  // weights used in place from a mapped file (map_safetensors passes HostMemory::file_mapping).
  static Tensor from_host_memory(std::shared_ptr<void> owner, void* data, const Shape& shape, DType dtype,
                                 HostMemory kind = HostMemory::callers);
  // Standard normal / uniform [low, high) from a counter-based generator (random.h).
  static Tensor randn(const Shape& shape, Generator& gen, Device device = Device::cpu());
  static Tensor uniform(const Shape& shape, double low, double high, Generator& gen,
                        Device device = Device::cpu());

  // ---- description -------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  int64_t size(int64_t axis) const;  // negative axes count from the end
  int64_t numel() const { return sparo::numel(shape()); }
  DType dtype() const;
  Device device() const;
  std::string str() const;  // shape, dtype, device and (summarised) values

  // ---- host access: always an explicit copy -----------------------------------------
  std::vector<float> to_float_vector() const;  // f32 tensors (i32 converted)
  std::vector<int32_t> to_int_vector() const;  // i32 tensors
  float item() const;                          // one-element tensors
  Tensor to(Device device) const;              // a copy on another device (or this tensor)
  Tensor clone() const;                        // a copy with its own storage, not in the graph

  // ---- autograd -------------------------------------------------------------------
  bool requires_grad() const;
  Tensor& requires_grad_(bool value = true);  // leaves only
  bool is_leaf() const;
  Tensor grad() const;  // undefined until a backward pass reaches this leaf
  void set_grad(const Tensor& grad);
  void zero_grad();                           // drops the gradient (set to undefined)
  void backward() const;                      // one-element tensors: upstream gradient 1
  void backward(const Tensor& upstream) const;
  Tensor detach() const;  // same storage, cut from the graph

  // ---- engine internals ----------------------------------------------------------------
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  Storage& storage() const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// ---- threads -------------------------------------------------------------------
// Limits every parallel loop of the engine to n threads (n <= 0: all cores).
void set_num_threads(int n);
int num_threads();

// Tensors by name, in a stable order: a module's parameters and state dict (models/module.h),
// what a safetensors file holds (engine/safetensors.h). Here rather than beside Module because
// the engine's file I/O reads and writes it too, and the engine cannot see models/.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

}  // namespace sparo
