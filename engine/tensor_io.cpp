// Tensors <-> safetensors files.
#include "engine/safetensors.h"

namespace sparo {

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<safetensors::TensorRecord> records;
  records.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) {
    if (!tensor.defined()) throw Error("save_safetensors: " + path + ": tensor \"" + name + "\" is undefined");
    if (tensor.dtype() == DType::f32) {
      const std::vector<float> values = tensor.to_float_vector();
      records.push_back(safetensors::from_f32(name, tensor.shape(), values.data()));
    } else if (tensor.dtype() == DType::i32) {
      const std::vector<int32_t> values = tensor.to_int_vector();
      records.push_back(safetensors::from_i32(name, tensor.shape(), values.data()));
    } else {
      throw Error("save_safetensors: " + path + ": tensor \"" + name + "\" has dtype " + dtype_name(tensor.dtype()) +
                  ", which cannot be saved yet");
    }
  }
  safetensors::write_file(path, records, metadata);
}

NamedTensors load_safetensors(const std::string& path, Device device, std::map<std::string, std::string>* metadata) {
  const safetensors::Contents contents = safetensors::read_file(path);
  if (metadata) *metadata = contents.metadata;
  NamedTensors out;
  out.reserve(contents.tensors.size());
  for (const safetensors::TensorRecord& r : contents.tensors) {
    const bool floating = r.dtype == "F32" || r.dtype == "F16" || r.dtype == "BF16" || r.dtype == "F64";
    try {
      if (floating) out.emplace_back(r.name, Tensor::from_vector(safetensors::to_f32(r), r.shape, device));
      else out.emplace_back(r.name, Tensor::from_vector(safetensors::to_i32(r), r.shape, device));
    } catch (const Error& e) {
      throw Error(path + ": tensor \"" + r.name + "\": " + e.what());
    }
  }
  return out;
}

}  // namespace sparo
