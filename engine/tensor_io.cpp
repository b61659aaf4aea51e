// Tensors <-> safetensors files, with a checksum of the data in the metadata.
#include "engine/safetensors.h"

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdio>

namespace sparo {

namespace {

// CRC-32 of every tensor's bytes in file order, as 8 hex digits: flipped bytes in a checkpoint
// or weights file are caught on load instead of resuming (or embedding) silently from garbage.
uLong crc32_of(uLong crc, const uint8_t* p, size_t size) {
  for (size_t left = size; left > 0;) {  // zlib takes 32-bit lengths
    const uInt n = static_cast<uInt>(std::min<size_t>(left, 1u << 30));
    crc = crc32(crc, p, n);
    p += n;
    left -= n;
  }
  return crc;
}

std::string crc_hex(uLong crc) {
  char hex[16];
  std::snprintf(hex, sizeof hex, "%08lx", static_cast<unsigned long>(crc));
  return hex;
}

// The records tile the data buffer in order, so this is the CRC-32 of the whole buffer.
std::string data_crc32(const std::vector<safetensors::TensorRecord>& records) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (const safetensors::TensorRecord& r : records) crc = crc32_of(crc, r.bytes.data(), r.bytes.size());
  return crc_hex(crc);
}

void check_crc(const std::string& path, const std::map<std::string, std::string>& metadata, const std::string& actual) {
  // Files from elsewhere carry no checksum; ours must match theirs.
  if (const auto it = metadata.find(kDataChecksumKey); it != metadata.end() && actual != it->second)
    throw Error(path + ": the tensor data is corrupt (CRC-32 " + actual + ", the file's metadata \"" + kDataChecksumKey +
                "\" says " + it->second + ")");
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

namespace {
// F32/F16/BF16/F64 as f32, integer types as i32 (range-checked).
Tensor converted(const std::string& path, const safetensors::TensorRecord& r, Device device) {
  const bool floating = r.dtype == "F32" || r.dtype == "F16" || r.dtype == "BF16" || r.dtype == "F64";
  try {
    if (floating) return Tensor::from_vector(safetensors::to_f32(r), r.shape, device);
    return Tensor::from_vector(safetensors::to_i32(r), r.shape, device);
  } catch (const Error& e) {
    throw Error(path + ": tensor \"" + r.name + "\": " + e.what());
  }
}
}  // namespace

NamedTensors load_safetensors(const std::string& path, Device device, std::map<std::string, std::string>* metadata) {
  const safetensors::Contents contents = safetensors::read_file(path);
  if (contents.metadata.count(kDataChecksumKey)) check_crc(path, contents.metadata, data_crc32(contents.tensors));
  if (metadata) *metadata = contents.metadata;
  NamedTensors out;
  out.reserve(contents.tensors.size());
  for (const safetensors::TensorRecord& r : contents.tensors) out.emplace_back(r.name, converted(path, r, device));
  return out;
}

NamedTensors map_safetensors(const std::string& path, std::map<std::string, std::string>* metadata) {
  const safetensors::MappedFile file = safetensors::map_file(path);
  uint8_t* const data = file.data.get();
  for (const safetensors::TensorInfo& t : file.header.tensors)
    if (t.data_end > file.data_bytes) throw Error(path + ": the file changed while it was being opened");
  if (file.header.metadata.count(kDataChecksumKey))
    check_crc(path, file.header.metadata, crc_hex(crc32_of(crc32(0L, Z_NULL, 0), data, file.data_bytes)));
  if (metadata) *metadata = file.header.metadata;
  NamedTensors out;
  out.reserve(file.header.tensors.size());
  for (const safetensors::TensorInfo& t : file.header.tensors) {
    uint8_t* const bytes = data + t.data_begin;
    const bool in_place = (t.dtype == "F32" || t.dtype == "I32") && std::endian::native == std::endian::little &&
                          reinterpret_cast<uintptr_t>(bytes) % 4 == 0;
    if (in_place) {
      out.emplace_back(t.name, Tensor::from_host_memory(file.data, bytes, t.shape, t.dtype == "F32" ? DType::f32 : DType::i32,
                                                              HostMemory::file_mapping));
    } else {
      safetensors::TensorRecord r{t.name, t.dtype, t.shape, std::vector<uint8_t>(bytes, data + t.data_end)};
      out.emplace_back(t.name, converted(path, r, Device::cpu()));
    }
  }
  return out;
}

}  // namespace sparo
