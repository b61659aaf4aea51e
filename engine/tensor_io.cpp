// Tensors <-> safetensors files, with a checksum of the data in the metadata.
#include "engine/safetensors.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>

namespace sparo {

namespace {

// CRC-32 of every tensor's bytes in file order, as 8 hex digits: flipped bytes in a checkpoint
// or weights file are caught on load instead of resuming (or embedding) silently from garbage.
std::string data_crc32(const std::vector<safetensors::TensorRecord>& records) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (const safetensors::TensorRecord& r : records) {
    const uint8_t* p = r.bytes.data();
    for (size_t left = r.bytes.size(); left > 0;) {  // zlib takes 32-bit lengths
      const uInt n = static_cast<uInt>(std::min<size_t>(left, 1u << 30));
      crc = crc32(crc, p, n);
      p += n;
      left -= n;
    }
  }
  char hex[16];
  std::snprintf(hex, sizeof hex, "%08lx", static_cast<unsigned long>(crc));
  return hex;
}

}  // namespace

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
  std::map<std::string, std::string> with_checksum = metadata;
  with_checksum[kDataChecksumKey] = data_crc32(records);
  safetensors::write_file(path, records, with_checksum);
}

NamedTensors load_safetensors(const std::string& path, Device device, std::map<std::string, std::string>* metadata) {
  const safetensors::Contents contents = safetensors::read_file(path);
  // Files from elsewhere carry no checksum; ours must match theirs.
  if (const auto it = contents.metadata.find(kDataChecksumKey); it != contents.metadata.end()) {
    const std::string actual = data_crc32(contents.tensors);
    if (actual != it->second)
      throw Error(path + ": the tensor data is corrupt (CRC-32 " + actual + ", the file's metadata \"" +
                  kDataChecksumKey + "\" says " + it->second + ")");
  }
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
