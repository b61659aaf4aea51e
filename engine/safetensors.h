// Strict reader and writer for the safetensors file format, independent of the
// Tensor class.
//
// File layout:
//   [8 bytes]  N, little-endian uint64: length of the JSON header
//   [N bytes]  UTF-8 JSON object. Each key is a tensor name mapped to
//              {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
//              (offsets relative to the first byte after the header); the
//              optional key "__metadata__" maps to an object of string -> string.
//              The header may be padded at the end with JSON whitespace.
//   [rest]     the data buffer.
//
// Strictness (the reader rejects, with a SafetensorsError naming the file and,
// where relevant, the tensor and field):
//   * a header that is not UTF-8, starts with a byte-order mark, is not valid
//     JSON, or is not a JSON object; duplicate keys at any level;
//   * tensor entries that are not objects, lack dtype/shape/data_offsets, or
//     carry any other field; unknown dtypes; empty tensor names;
//   * shapes that are not arrays of non-negative integers (floats such as 2.0
//     are rejected), ranks above Limits::max_rank, dimensions above INT64_MAX,
//     shapes whose non-zero dimensions multiply past INT64_MAX, and byte sizes
//     that overflow;
//   * data_offsets that are not exactly two non-negative integers with
//     begin <= end, ranges past the end of the file, and ranges whose length is
//     not numel * itemsize;
//   * any overlap, any gap between tensors and any trailing bytes after the
//     last tensor: the ranges must tile the data buffer exactly, which is what
//     the reference writer produces and what the reference reader demands.
//     (A zero-size tensor must sit on a tensor boundary, not inside a range.)
//   * __metadata__ that is not an object of strings;
//   * more than Limits::max_tensors tensors, headers above
//     Limits::max_header_bytes, files above Limits::max_file_bytes.
// Zero-element tensors (a 0 in the shape, begin == end) and scalars (shape [],
// one element) are legal; a header with no tensors is legal.
//
// The writer emits "__metadata__" first (only when metadata is non-empty),
// then the tensors in the order given, packed back to back from offset 0, and
// pads the header with spaces to a multiple of 8 bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace sparo::safetensors {

// Every error raised by this module. The message always starts with the file
// (or source) name.
struct SafetensorsError : Error {
  using Error::Error;
};

struct TensorRecord {
  std::string name;
  std::string dtype;            // as in the file: "F32", "F16", "BF16", "I64", "I32", ...
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;   // raw little-endian data, numel * itemsize bytes
};

struct Contents {
  std::vector<TensorRecord> tensors;              // in file order of data offsets
  std::map<std::string, std::string> metadata;
  const TensorRecord* find(const std::string& name) const;   // nullptr if absent
};

// A tensor's entry in the header, without its data (what read_header returns).
struct TensorInfo {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t data_begin = 0, data_end = 0;  // data_offsets, relative to the first byte after the header
};

struct HeaderInfo {
  std::vector<TensorInfo> tensors;                // in file order of data offsets
  std::map<std::string, std::string> metadata;
};

struct Limits {
  uint64_t max_header_bytes = 100ull << 20;   // 100 MiB
  uint64_t max_file_bytes = 64ull << 30;
  uint64_t max_tensors = 1u << 20;
  int max_rank = 8;
};

// Reads and validates a whole file. The header is parsed before any tensor data
// is read, and each tensor is read straight into its record.
Contents read_file(const std::string& path, const Limits& limits = {});

// Reads and validates only the header: the same checks as read_file, the data offsets
// included (against the file's size), but no tensor data is read. Memory stays bounded by
// the header (Limits::max_header_bytes) whatever the size of the tensors, so listing a
// many-gigabyte checkpoint costs what its header costs.
HeaderInfo read_header(const std::string& path, const Limits& limits = {});

// A validated file mapped into memory (mmap, MAP_PRIVATE: a page written to becomes this
// process's own copy; the file never changes). Pages are read on first touch and shared with
// the page cache. The file must not be truncated while the mapping lives: touching a page
// past its new end raises SIGBUS (files replaced by rename, as sparo writes them, are safe).
struct MappedFile {
  HeaderInfo header;
  std::shared_ptr<uint8_t> data;  // the data buffer (first byte after the header), keeps the mapping
  uint64_t data_offset = 0;       // where the data buffer starts in the file (8 + header length)
  uint64_t data_bytes = 0;
};
// The same checks as read_header, on the file that is then mapped (one open).
MappedFile map_file(const std::string& path, const Limits& limits = {});

// Parses and validates an in-memory file. source_name is used in messages.
Contents parse(const uint8_t* data, size_t size, const std::string& source_name,
               const Limits& limits = {});

// Writes atomically: to "<path>.tmp", then rename over path. Tensors are
// written in the given order; names must be unique, non-empty, valid UTF-8 and
// not "__metadata__"; each record's bytes must hold exactly numel * itemsize.
void write_file(const std::string& path, const std::vector<TensorRecord>& tensors,
                const std::map<std::string, std::string>& metadata = {});

// The exact bytes write_file would write.
std::vector<uint8_t> serialize(const std::vector<TensorRecord>& tensors,
                               const std::map<std::string, std::string>& metadata = {});

// Bytes per element. Known dtypes: BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16,
// F16, BF16, I32, U32, F32, I64, U64, F64. Throws SafetensorsError otherwise.
size_t dtype_size(const std::string& dtype);

// Conversions for the engine (which stores f32 and i32).
// to_f32: from F32, F16, BF16, F64 (exact IEEE conversions incl. subnormals,
// inf, nan; F64 rounds to nearest-even and overflows to +-inf).
std::vector<float> to_f32(const TensorRecord&);
// to_i32: from I32, I64, U32, U64 (range-checked), I16, U16, I8, U8, BOOL
// (bytes must be 0 or 1).
std::vector<int32_t> to_i32(const TensorRecord&);

// Records holding a copy of numel(shape) values from data.
TensorRecord from_f32(std::string name, std::vector<int64_t> shape, const float* data);
TensorRecord from_i32(std::string name, std::vector<int64_t> shape, const int32_t* data);

}  // namespace sparo::safetensors

namespace sparo {

// Flushes a directory's entries to the disk, so a file renamed into it survives a power loss.
void sync_directory(const std::string& dir);

// save_safetensors records the CRC-32 of the data under this metadata key; load_safetensors
// verifies it where present (files written elsewhere have none).
inline constexpr const char* kDataChecksumKey = "sparo_data_crc32";

// Writes f32 tensors as F32 and i32 tensors as I32 (copied to the host), atomically.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});
// Reads every tensor onto `device`: F32/F16/BF16/F64 become f32, integer types i32
// (range-checked). Errors name the file and the tensor.
NamedTensors load_safetensors(const std::string& path, Device device = Device::cpu(),
                              std::map<std::string, std::string>* metadata = nullptr);
// The same tensors on the CPU, read without a copy where the file allows: F32 and I32 tensors
// whose data are 4-byte aligned in the file use a private mapping of it in place
// (safetensors::map_file; writing to them never changes the file); other dtypes are converted
// as load_safetensors does. The checksum, where present, is verified over the mapped data.
NamedTensors map_safetensors(const std::string& path, std::map<std::string, std::string>* metadata = nullptr);

}  // namespace sparo
