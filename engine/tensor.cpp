#include "engine/tensor.h"

#include <tbb/global_control.h>
#include <tbb/info.h>

#include <cmath>
#include <cstring>
#include <iomanip>
#include <limits>
#include <mutex>
#include <ostream>
#include <sstream>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/profiler.h"
#include "engine/random.h"

namespace sparo {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::i32: return 4;
    case DType::f16: return 2;
    case DType::bf16: return 2;
  }
  throw Error("dtype_size: unknown dtype");
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::i32: return "i32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
  }
  return "?";
}

Device Device::parse(const std::string& text) {
  if (text == "cpu") return cpu();
  const std::string prefix = "vulkan";
  if (text.rfind(prefix, 0) == 0) {
    if (text.size() == prefix.size()) return vulkan(0);
    if (text[prefix.size()] == ':') {
      const std::string number = text.substr(prefix.size() + 1);
      if (!number.empty() && number.find_first_not_of("0123456789") == std::string::npos &&
          number.size() < 6)
        return vulkan(std::stoi(number));
    }
  }
  throw Error("device \"" + text + "\": expected \"cpu\", \"vulkan\" or \"vulkan:N\"");
}

std::string Device::str() const {
  return kind == Kind::cpu ? "cpu" : "vulkan:" + std::to_string(index);
}

int64_t numel(const Shape& shape) {
  // Checked: a product that wraps would size a buffer far smaller than the tensor (or of 0
  // bytes: no buffer at all) that every kernel then writes past. As in the safetensors
  // reader, the non-zero dimensions must multiply within int64, so that strides fit too.
  int64_t n = 1;
  bool zero = false;
  for (int64_t d : shape) {
    if (d == 0) zero = true;
    else if (__builtin_mul_overflow(n, d, &n))
      throw Error("shape " + shape_str(shape) + ": the element count overflows int64 (at most " +
                  std::to_string(std::numeric_limits<int64_t>::max()) + ")");
  }
  return zero ? 0 : n;
}

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// ---- creation -------------------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape)
    if (d < 0) throw Error("empty: negative dimension in shape " + shape_str(shape));
  if (shape.size() > static_cast<size_t>(kMaxDims))
    throw Error("empty: shape " + shape_str(shape) + " has more than " +
                std::to_string(kMaxDims) + " dimensions");
  // Checked like numel: a byte count that wrapped (2^31 x 2^31 floats: 2^64 bytes, 0 after
  // the wrap) allocated nothing, and the first kernel stored through a null pointer.
  const int64_t n = sparo::numel(shape);
  int64_t bytes;
  if (__builtin_mul_overflow(n, static_cast<int64_t>(dtype_size(dtype)), &bytes))
    throw Error("empty: a " + std::string(dtype_name(dtype)) + " tensor of shape " + shape_str(shape) + " needs " +
                std::to_string(n) + " x " + std::to_string(dtype_size(dtype)) +
                " bytes, which overflows 64-bit arithmetic (at most " +
                std::to_string(std::numeric_limits<int64_t>::max()) + " bytes)");
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->dtype = dtype;
  impl->storage = backend_for(device).allocate(static_cast<size_t>(bytes));
  return Tensor(std::move(impl));
}

// Factories and host copies get profiler rows of their own: zero gradients, dropout masks and
// uploads are real work, and on Vulkan a download is where the host waits for the GPU.
Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  profiler::Scope scope("full");
  Tensor t = empty(shape, dtype, device);
  backend_for(device).fill(t, value);
  return t;
}
Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor Tensor::scalar(float value, Device device) { return full({}, value, DType::f32, device); }

Tensor Tensor::arange(double start, double end, double step, DType dtype, Device device) {
  if (step == 0 || !std::isfinite(start) || !std::isfinite(end) || !std::isfinite(step))
    throw Error("arange: start, end and step must be finite and step non-zero");
  const double count = std::ceil((end - start) / step);
  // 2^63 as a double: the first count that does not convert to int64 (undefined behaviour).
  if (!(count < std::ldexp(1.0, 63)))
    throw Error("arange: [" + std::to_string(start) + ", " + std::to_string(end) + ") in steps of " +
                std::to_string(step) + " has " + std::to_string(count) + " elements, more than int64 can count");
  Tensor t = empty({count > 0 ? static_cast<int64_t>(count) : 0}, dtype, device);
  backend_for(device).arange(t, start, step);
  return t;
}

template <typename T>
static Tensor from_host(const std::vector<T>& values, const Shape& shape, DType dtype, Device device) {
  if (static_cast<int64_t>(values.size()) != sparo::numel(shape))
    throw Error("from_vector: " + std::to_string(values.size()) + " values do not fill shape " +
                shape_str(shape) + " (" + std::to_string(sparo::numel(shape)) + " elements)");
  profiler::Scope scope("from_vector");
  Tensor t = Tensor::empty(shape, dtype, device);
  backend_for(device).upload(t.storage(), 0, values.data(), values.size() * sizeof(T));
  return t;
}
Tensor Tensor::from_vector(const std::vector<float>& v, const Shape& s, Device d) { return from_host(v, s, DType::f32, d); }
Tensor Tensor::from_vector(const std::vector<int32_t>& v, const Shape& s, Device d) { return from_host(v, s, DType::i32, d); }

Tensor Tensor::from_host_memory(std::shared_ptr<void> owner, void* data, const Shape& shape, DType dtype,
                                HostMemory kind) {
  if (dtype != DType::f32 && dtype != DType::i32)
    throw Error("from_host_memory: dtype " + std::string(dtype_name(dtype)) + ", expected f32 or i32");
  if (reinterpret_cast<uintptr_t>(data) % 4 != 0) throw Error("from_host_memory: data is not 4-byte aligned");
  const int64_t n = sparo::numel(shape);
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->dtype = dtype;
  impl->storage = backend_for(Device::cpu()).wrap_host_memory(std::move(owner), data, static_cast<size_t>(n) * 4, kind);
  return Tensor(std::move(impl));
}

Tensor Tensor::randn(const Shape& shape, Generator& gen, Device device) {
  profiler::Scope scope("randn");
  Tensor t = empty(shape, DType::f32, device);
  backend_for(device).random(t, RandomDist::normal, gen.seed(), gen.reserve(t.numel()), 0.f, 1.f);
  return t;
}

Tensor Tensor::uniform(const Shape& shape, double low, double high, Generator& gen, Device device) {
  profiler::Scope scope("uniform");
  if (!(low < high)) throw Error("uniform: need low < high, got [" + std::to_string(low) + ", " + std::to_string(high) + ")");
  Tensor t = empty(shape, DType::f32, device);
  backend_for(device).random(t, RandomDist::uniform, gen.seed(), gen.reserve(t.numel()),
                             static_cast<float>(low), static_cast<float>(high));
  return t;
}

// ---- description ----------------------------------------------------------------

static const TensorImpl& checked(const std::shared_ptr<TensorImpl>& impl, const char* what) {
  if (!impl) throw Error(std::string(what) + ": the tensor is undefined");
  return *impl;
}

const Shape& Tensor::shape() const { return checked(impl_, "shape").shape; }
DType Tensor::dtype() const { return checked(impl_, "dtype").dtype; }
Device Tensor::device() const { return checked(impl_, "device").storage->device(); }
Storage& Tensor::storage() const { return *checked(impl_, "storage").storage; }

int64_t Tensor::size(int64_t axis) const {
  const int64_t rank = dim();
  if (axis < -rank || axis >= rank)
    throw Error("size: axis " + std::to_string(axis) + " is out of range for shape " + shape_str(shape()));
  return shape()[static_cast<size_t>(axis < 0 ? axis + rank : axis)];
}

// ---- host access ----------------------------------------------------------------

std::vector<float> Tensor::to_float_vector() const {
  profiler::Scope scope("to_host");
  const Tensor t = dtype() == DType::f32 ? *this : cast(detach(), DType::f32);
  std::vector<float> out(static_cast<size_t>(t.numel()));
  backend_for(t.device()).download(t.storage(), 0, out.data(), out.size() * sizeof(float));
  return out;
}

std::vector<int32_t> Tensor::to_int_vector() const {
  if (dtype() != DType::i32)
    throw Error(std::string("to_int_vector: tensor has dtype ") + dtype_name(dtype()) + ", expected i32");
  profiler::Scope scope("to_host");
  std::vector<int32_t> out(static_cast<size_t>(numel()));
  backend_for(device()).download(storage(), 0, out.data(), out.size() * sizeof(int32_t));
  return out;
}

float Tensor::item() const {
  if (numel() != 1) throw Error("item: tensor of shape " + shape_str(shape()) + " has " + std::to_string(numel()) + " elements, expected 1");
  return to_float_vector()[0];
}

Tensor Tensor::to(Device target) const {
  if (device() == target) return *this;
  profiler::Scope scope("to_device");
  Tensor out = empty(shape(), dtype(), target);
  std::vector<uint8_t> host(storage().bytes());
  backend_for(device()).download(storage(), 0, host.data(), host.size());
  backend_for(target).upload(out.storage(), 0, host.data(), host.size());
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  Tensor src = detach();
  copy_(out, src);
  return out;
}

// ---- autograd ---------------------------------------------------------------------

bool Tensor::requires_grad() const { return checked(impl_, "requires_grad").requires_grad; }

Tensor& Tensor::requires_grad_(bool value) {
  checked(impl_, "requires_grad_");
  if (impl_->grad_fn)
    throw Error("requires_grad_: only leaf tensors can change requires_grad (this one comes from op \"" +
                impl_->grad_fn->op + "\")");
  if (value && dtype() != DType::f32)
    throw Error(std::string("requires_grad_: only f32 tensors can require gradients, this one is ") + dtype_name(dtype()));
  impl_->requires_grad = value;
  return *this;
}

bool Tensor::is_leaf() const { return checked(impl_, "is_leaf").grad_fn == nullptr; }
Tensor Tensor::grad() const { return Tensor(checked(impl_, "grad").grad); }

void Tensor::set_grad(const Tensor& grad) {
  checked(impl_, "set_grad");
  if (grad.defined() && grad.shape() != shape())
    throw Error("set_grad: gradient shape " + shape_str(grad.shape()) + " differs from tensor shape " + shape_str(shape()));
  impl_->grad = grad.impl_ptr();
}

void Tensor::zero_grad() { checked(impl_, "zero_grad"); impl_->grad.reset(); }

void Tensor::backward() const {
  if (numel() != 1)
    throw Error("backward: implicit upstream gradient needs a one-element tensor, this one has shape " +
                shape_str(shape()) + "; pass the upstream gradient explicitly");
  run_backward(*this, Tensor::ones(shape(), DType::f32, device()));
}

void Tensor::backward(const Tensor& upstream) const { run_backward(*this, upstream); }

Tensor Tensor::detach() const {
  const TensorImpl& self = checked(impl_, "detach");
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = self.shape;
  impl->dtype = self.dtype;
  impl->storage = self.storage;
  return Tensor(std::move(impl));
}

// ---- printing -------------------------------------------------------------------------

namespace {
void print_values(std::ostream& os, const Shape& shape, size_t axis, int64_t offset,
                  const std::vector<float>& v, bool integer, int indent) {
  const int64_t n = shape[axis];
  int64_t inner = 1;
  for (size_t d = axis + 1; d < shape.size(); ++d) inner *= shape[d];
  const int64_t edge = 3;  // show the first and last `edge` entries of long axes
  os << "[";
  for (int64_t i = 0; i < n; ++i) {
    if (n > 2 * edge && i == edge) {
      os << (axis + 1 == shape.size() ? "..., " : "...,\n" + std::string(indent + 1, ' '));
      i = n - edge;
    }
    if (axis + 1 == shape.size()) {
      const float x = v[static_cast<size_t>(offset + i)];
      if (integer) os << static_cast<int64_t>(x);
      else os << std::setprecision(5) << x;
    } else {
      print_values(os, shape, axis + 1, offset + i * inner, v, integer, indent + 1);
    }
    if (i + 1 < n) os << (axis + 1 == shape.size() ? ", " : ",\n" + std::string(indent + 1, ' '));
  }
  os << "]";
}
}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << "Tensor(shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype())
     << ", device=" << device().str() << (requires_grad() ? ", requires_grad" : "") << ")\n";
  if (dtype() != DType::f32 && dtype() != DType::i32) return os.str() + "<values not printable>";
  const std::vector<float> values = to_float_vector();
  if (shape().empty()) os << values[0];
  else if (numel() == 0) os << "[]";
  else print_values(os, shape(), 0, 0, values, dtype() == DType::i32, 0);
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

// ---- threads ----------------------------------------------------------------------------

namespace {
std::mutex thread_limit_mutex;
std::unique_ptr<tbb::global_control> thread_limit;
}  // namespace

void set_num_threads(int n) {
  std::lock_guard<std::mutex> lock(thread_limit_mutex);
  thread_limit.reset();
  if (n > 0)
    thread_limit = std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism,
                                                         static_cast<size_t>(n));
}

int num_threads() {
  return static_cast<int>(tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism));
}

}  // namespace sparo
