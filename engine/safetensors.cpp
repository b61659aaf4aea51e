#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <string_view>
#include <system_error>
#include <unordered_set>
#include <utility>

namespace sparo::safetensors {
namespace {

constexpr uint64_t kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
constexpr const char* kMetadataKey = "__metadata__";

// ---- messages -------------------------------------------------------------------

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw SafetensorsError(source + ": " + what);
}

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

// A string in double quotes, with quotes, backslashes and control characters
// escaped and very long strings cut (on a UTF-8 boundary), safe to put in logs.
std::string quote(std::string_view s) {
  constexpr size_t kMaxShown = 200;
  size_t n = s.size();
  if (n > kMaxShown) {
    n = kMaxShown;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0u) == 0x80u) --n;
  }
  std::string out = "\"";
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (n < s.size()) out += "...";
  out += '"';
  return out;
}

std::string tensor_ctx(std::string_view name) { return "tensor " + quote(name); }

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string range_str(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

// ---- dtypes -----------------------------------------------------------------------

struct DtypeInfo {
  std::string_view name;
  size_t size;
};

// Byte-sized and larger dtypes of the format. Sub-byte dtypes (F4, F6_*) are not
// supported: their byte count is not numel * itemsize.
constexpr DtypeInfo kDtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
    {"U32", 4},  {"F32", 4}, {"I64", 8}, {"U64", 8},     {"F64", 8},
};

size_t lookup_dtype(std::string_view name) {
  for (const auto& d : kDtypes)
    if (d.name == name) return d.size;
  return 0;
}

std::string known_dtypes() {
  std::string s;
  for (const auto& d : kDtypes) {
    if (!s.empty()) s += ", ";
    s += d.name;
  }
  return s;
}

// ---- UTF-8 --------------------------------------------------------------------------

// Offset of the first byte that is not part of a well-formed UTF-8 sequence
// (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF), or npos.
size_t find_invalid_utf8(const unsigned char* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (n - i < len) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k)
      if ((p[i + k] & 0xC0u) != 0x80u) return i;
    i += len;
  }
  return std::string_view::npos;
}

bool valid_utf8(std::string_view s) {
  return find_invalid_utf8(reinterpret_cast<const unsigned char*>(s.data()), s.size()) ==
         std::string_view::npos;
}

// ---- arithmetic and byte order ----------------------------------------------------------

template <class U>
U load_le(const uint8_t* p) {
  U v = 0;
  for (size_t i = 0; i < sizeof(U); ++i) v |= static_cast<U>(static_cast<U>(p[i]) << (8 * i));
  return v;
}

template <class U>
void store_le(uint8_t* p, U v) {
  for (size_t i = 0; i < sizeof(U); ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Bytes needed by a tensor of this shape and item size. The dimensions must be
// non-negative; the product of the non-zero dimensions must fit in int64 (so
// that strides are representable), and so must the byte count. Throws with
// `ctx` (already prefixed with the source) on violation.
uint64_t checked_nbytes(const std::vector<int64_t>& shape, size_t itemsize, const std::string& source,
                        const std::string& ctx, const std::string& dtype) {
  uint64_t nominal = 1;
  bool has_zero = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    const int64_t d = shape[i];
    if (d < 0)
      fail(source, ctx + ": field \"shape\" " + shape_str(shape) + " has negative dimension " +
                       std::to_string(d) + " at index " + std::to_string(i));
    if (d == 0) {
      has_zero = true;
      continue;
    }
    uint64_t next;
    if (__builtin_mul_overflow(nominal, static_cast<uint64_t>(d), &next) || next > kInt64Max)
      fail(source, ctx + ": field \"shape\" " + shape_str(shape) +
                       ": element count overflows 64-bit arithmetic");
    nominal = next;
  }
  const uint64_t numel = has_zero ? 0 : nominal;
  uint64_t nbytes;
  if (__builtin_mul_overflow(numel, static_cast<uint64_t>(itemsize), &nbytes) || nbytes > kInt64Max)
    fail(source, ctx + ": dtype " + dtype + " with shape " + shape_str(shape) + " needs " +
                     std::to_string(numel) + " x " + std::to_string(itemsize) +
                     " bytes, which overflows 64-bit arithmetic");
  return nbytes;
}

// ---- header parsing ---------------------------------------------------------------------

struct Entry {
  std::string name;
  std::string dtype;
  size_t itemsize = 0;
  std::vector<int64_t> shape;
  uint64_t offsets[2] = {0, 0};
  uint64_t nbytes = 0;
};

struct Header {
  std::vector<Entry> entries;  // sorted by data offsets after validation
  std::map<std::string, std::string> metadata;
};

using json = nlohmann::json;

// SAX handler that checks the header's structure while it is parsed, without
// building a DOM: every event that does not fit the schema stops the parse
// with a message. Since unknown fields are rejected, no value ever needs to be
// skipped, so the handler never sees deeper nesting than the schema allows.
class HeaderSax {
 public:
  explicit HeaderSax(const Limits& limits) : limits_(limits) {}

  // events -------------------------------------------------------------------
  bool null() { return unexpected("null"); }
  bool boolean(bool b) { return unexpected(b ? "true" : "false"); }
  bool number_integer(json::number_integer_t v) {
    if (v >= 0) return unsigned_value(static_cast<uint64_t>(v));
    return unexpected("negative integer " + std::to_string(v));
  }
  bool number_unsigned(json::number_unsigned_t v) { return unsigned_value(v); }
  bool number_float(json::number_float_t, const json::string_t& text) {
    return unexpected("non-integer number " + text);
  }
  bool string(json::string_t& s) {
    switch (state_) {
      case State::DtypeValue: {
        const size_t size = lookup_dtype(s);
        if (size == 0)
          return error(tensor_ctx(cur().name) + ": field \"dtype\": unknown dtype " + quote(s) +
                       " (known: " + known_dtypes() + ")");
        cur().dtype = s;
        cur().itemsize = size;
        state_ = State::InTensor;
        return true;
      }
      case State::MetaEntryValue:
        metadata_.emplace(std::move(meta_key_), std::move(s));
        state_ = State::InMeta;
        return true;
      default:
        return unexpected("string " + quote(s));
    }
  }
  bool binary(json::binary_t&) { return unexpected("binary data"); }

  bool start_object(std::size_t) {
    switch (state_) {
      case State::Root:
        state_ = State::Top;
        return true;
      case State::TensorValue:
        state_ = State::InTensor;
        return true;
      case State::MetaValue:
        state_ = State::InMeta;
        return true;
      default:
        return unexpected("an object");
    }
  }

  bool key(json::string_t& k) {
    switch (state_) {
      case State::Top:
        if (k == kMetadataKey) {
          if (seen_metadata_) return error("key \"__metadata__\" appears twice in the header");
          seen_metadata_ = true;
          state_ = State::MetaValue;
          return true;
        }
        if (k.empty()) return error("a tensor has an empty name");
        if (!names_.insert(k).second)
          return error(tensor_ctx(k) + " appears twice in the header (duplicate key)");
        if (entries_.size() >= limits_.max_tensors)
          return error("header lists more than " + std::to_string(limits_.max_tensors) +
                       " tensors (Limits::max_tensors)");
        entries_.emplace_back();
        entries_.back().name = std::move(k);
        fields_seen_ = 0;
        state_ = State::TensorValue;
        return true;
      case State::InTensor: {
        unsigned bit;
        State next;
        if (k == "dtype") {
          bit = 1;
          next = State::DtypeValue;
        } else if (k == "shape") {
          bit = 2;
          next = State::ShapeValue;
        } else if (k == "data_offsets") {
          bit = 4;
          next = State::OffsetsValue;
        } else {
          return error(tensor_ctx(cur().name) + ": unknown field " + quote(k) +
                       " (allowed: dtype, shape, data_offsets)");
        }
        if (fields_seen_ & bit)
          return error(tensor_ctx(cur().name) + ": field " + quote(k) + " appears twice");
        fields_seen_ |= bit;
        state_ = next;
        return true;
      }
      case State::InMeta:
        if (metadata_.count(k)) return error("__metadata__: key " + quote(k) + " appears twice");
        meta_key_ = std::move(k);
        state_ = State::MetaEntryValue;
        return true;
      default:
        return error("internal: unexpected key " + quote(k));
    }
  }

  bool end_object() {
    switch (state_) {
      case State::Top:
        state_ = State::Done;
        return true;
      case State::InMeta:
        state_ = State::Top;
        return true;
      case State::InTensor: {
        if (fields_seen_ != 7) {
          std::string missing;
          const char* names[] = {"dtype", "shape", "data_offsets"};
          for (unsigned i = 0; i < 3; ++i) {
            if (fields_seen_ & (1u << i)) continue;
            if (!missing.empty()) missing += ", ";
            missing += std::string("\"") + names[i] + "\"";
          }
          return error(tensor_ctx(cur().name) + ": missing field " + missing +
                       " (each tensor needs dtype, shape and data_offsets)");
        }
        state_ = State::Top;
        return true;
      }
      default:
        return error("internal: unexpected end of object");
    }
  }

  bool start_array(std::size_t) {
    switch (state_) {
      case State::ShapeValue:
        state_ = State::InShape;
        return true;
      case State::OffsetsValue:
        offsets_count_ = 0;
        state_ = State::InOffsets;
        return true;
      default:
        return unexpected("an array");
    }
  }

  bool end_array() {
    switch (state_) {
      case State::InShape:
        state_ = State::InTensor;
        return true;
      case State::InOffsets:
        if (offsets_count_ != 2)
          return error(tensor_ctx(cur().name) +
                       ": field \"data_offsets\" must hold exactly two integers [begin, end], found " +
                       std::to_string(offsets_count_));
        state_ = State::InTensor;
        return true;
      default:
        return error("internal: unexpected end of array");
    }
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) {
    std::string what = ex.what();
    // Drop nlohmann's "[json.exception.parse_error.101] " tag.
    if (!what.empty() && what[0] == '[') {
      const size_t close = what.find("] ");
      if (close != std::string::npos) what.erase(0, close + 2);
    }
    return error("header is not valid JSON: " + what);
  }

  // results ------------------------------------------------------------------
  const std::string& message() const { return message_; }
  std::vector<Entry>& entries() { return entries_; }
  std::map<std::string, std::string>& metadata() { return metadata_; }

 private:
  enum class State {
    Root,            // before the top-level value
    Top,             // inside the top-level object, expecting a key
    TensorValue,     // after a tensor name
    InTensor,        // inside a tensor entry, expecting a field name
    DtypeValue,      // after "dtype"
    ShapeValue,      // after "shape"
    InShape,         // inside the shape array
    OffsetsValue,    // after "data_offsets"
    InOffsets,       // inside the data_offsets array
    MetaValue,       // after "__metadata__"
    InMeta,          // inside __metadata__, expecting a key
    MetaEntryValue,  // after a metadata key
    Done,            // after the top-level object
  };

  Entry& cur() { return entries_.back(); }

  bool error(std::string msg) {
    if (message_.empty()) message_ = std::move(msg);
    return false;
  }

  bool unsigned_value(uint64_t v) {
    switch (state_) {
      case State::InShape: {
        auto& shape = cur().shape;
        if (static_cast<int64_t>(shape.size()) >= limits_.max_rank)
          return error(tensor_ctx(cur().name) + ": field \"shape\" has more than " +
                       std::to_string(limits_.max_rank) + " dimensions (Limits::max_rank)");
        if (v > kInt64Max)
          return error(tensor_ctx(cur().name) + ": field \"shape\" element " + std::to_string(shape.size()) +
                       " is " + std::to_string(v) + ", larger than the largest supported dimension " +
                       std::to_string(kInt64Max));
        shape.push_back(static_cast<int64_t>(v));
        return true;
      }
      case State::InOffsets:
        if (offsets_count_ >= 2)
          return error(tensor_ctx(cur().name) +
                       ": field \"data_offsets\" must hold exactly two integers [begin, end], found more");
        cur().offsets[offsets_count_++] = v;
        return true;
      default:
        return unexpected("integer " + std::to_string(v));
    }
  }

  // A value event that the schema does not allow here.
  bool unexpected(const std::string& found) {
    switch (state_) {
      case State::Root:
        return error("header is not a JSON object (found " + found + ")");
      case State::TensorValue:
        return error(tensor_ctx(cur().name) +
                     ": entry must be an object with fields dtype, shape and data_offsets, found " + found);
      case State::DtypeValue:
        return error(tensor_ctx(cur().name) + ": field \"dtype\" must be a string, found " + found);
      case State::ShapeValue:
        return error(tensor_ctx(cur().name) +
                     ": field \"shape\" must be an array of non-negative integers, found " + found);
      case State::InShape:
        return error(tensor_ctx(cur().name) + ": field \"shape\" element " +
                     std::to_string(cur().shape.size()) + " must be a non-negative integer, found " + found);
      case State::OffsetsValue:
        return error(tensor_ctx(cur().name) +
                     ": field \"data_offsets\" must be an array of two non-negative integers "
                     "[begin, end], found " +
                     found);
      case State::InOffsets:
        return error(tensor_ctx(cur().name) + ": field \"data_offsets\" element " +
                     std::to_string(offsets_count_) + " must be a non-negative integer, found " + found);
      case State::MetaValue:
        return error("\"__metadata__\" must be an object mapping strings to strings, found " + found);
      case State::MetaEntryValue:
        return error("__metadata__: value of key " + quote(meta_key_) + " must be a string, found " + found);
      default:
        return error("internal: unexpected " + found + " in header");
    }
  }

  const Limits& limits_;
  State state_ = State::Root;
  std::vector<Entry> entries_;
  std::unordered_set<std::string> names_;
  std::map<std::string, std::string> metadata_;
  std::string meta_key_;
  bool seen_metadata_ = false;
  unsigned fields_seen_ = 0;
  unsigned offsets_count_ = 0;
  std::string message_;
};

// Checks the size of the whole file.
void check_file_size(uint64_t size, const std::string& source, const Limits& limits) {
  if (size > limits.max_file_bytes)
    fail(source, "file is " + std::to_string(size) + " bytes, larger than the limit of " +
                     std::to_string(limits.max_file_bytes) + " bytes (Limits::max_file_bytes)");
  if (size < 8)
    fail(source, "file is " + std::to_string(size) +
                     " bytes, shorter than the 8-byte header length prefix (not a safetensors file?)");
}

// Decodes and checks the header length from the first 8 bytes.
uint64_t check_header_length(const uint8_t* prefix, uint64_t size, const std::string& source,
                             const Limits& limits) {
  const uint64_t n = load_le<uint64_t>(prefix);
  if (n > size - 8)
    fail(source, "header length " + std::to_string(n) + " (from the first 8 bytes) is larger than the " +
                     std::to_string(size - 8) + " bytes that follow in the file (truncated or not a safetensors file?)");
  if (n > limits.max_header_bytes)
    fail(source, "header length " + std::to_string(n) + " exceeds the limit of " +
                     std::to_string(limits.max_header_bytes) + " bytes (Limits::max_header_bytes)");
  return n;
}

// Parses and validates the JSON header against a data buffer of data_size
// bytes. On return the entries are sorted by offset and tile the buffer.
Header parse_header(const char* text, size_t n, uint64_t data_size, const std::string& source,
                    const Limits& limits) {
  const size_t bad = find_invalid_utf8(reinterpret_cast<const unsigned char*>(text), n);
  if (bad != std::string_view::npos)
    fail(source, "header is not valid UTF-8 (bad byte 0x" + [&] {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%02x", static_cast<unsigned char>(text[bad]));
      return std::string(buf);
    }() + " at header offset " + std::to_string(bad) + ")");
  // JSON never allows a raw NUL, and nlohmann's lexer would take one as the end
  // of input, silently accepting whatever follows it.
  if (const void* nul = std::memchr(text, 0, n))
    fail(source, "header contains a NUL byte at header offset " +
                     std::to_string(static_cast<const char*>(nul) - text) +
                     ", which JSON does not allow (padding must be spaces)");
  if (n >= 3 && static_cast<unsigned char>(text[0]) == 0xEF && static_cast<unsigned char>(text[1]) == 0xBB &&
      static_cast<unsigned char>(text[2]) == 0xBF)
    fail(source, "header starts with a UTF-8 byte-order mark, which JSON does not allow here");

  HeaderSax sax(limits);
  bool ok;
  try {
    ok = json::sax_parse(text, text + n, &sax, json::input_format_t::json, /*strict=*/true,
                         /*ignore_comments=*/false);
  } catch (const json::exception& ex) {
    fail(source, std::string("header is not valid JSON: ") + ex.what());
  }
  if (!ok) fail(source, sax.message().empty() ? "header is not valid JSON" : sax.message());

  Header h;
  h.entries = std::move(sax.entries());
  h.metadata = std::move(sax.metadata());

  for (auto& e : h.entries) {
    const std::string ctx = tensor_ctx(e.name);
    e.nbytes = checked_nbytes(e.shape, e.itemsize, source, ctx, e.dtype);
    const uint64_t begin = e.offsets[0], end = e.offsets[1];
    if (begin > end)
      fail(source, ctx + ": field \"data_offsets\" " + range_str(begin, end) + " has begin > end");
    if (end > data_size)
      fail(source, ctx + ": field \"data_offsets\" " + range_str(begin, end) +
                       " extend past the end of the data buffer, which holds " + std::to_string(data_size) +
                       " bytes (file truncated?)");
    if (end - begin != e.nbytes)
      fail(source, ctx + ": field \"data_offsets\" " + range_str(begin, end) + " span " +
                       std::to_string(end - begin) + " bytes but dtype " + e.dtype + " with shape " +
                       shape_str(e.shape) + " needs " + std::to_string(e.nbytes) + " (" +
                       std::to_string(e.nbytes / e.itemsize) + " elements x " + std::to_string(e.itemsize) +
                       " bytes)");
  }

  // Ties (zero-size tensors at one offset) keep header order.
  std::stable_sort(h.entries.begin(), h.entries.end(), [](const Entry& a, const Entry& b) {
    if (a.offsets[0] != b.offsets[0]) return a.offsets[0] < b.offsets[0];
    return a.offsets[1] < b.offsets[1];
  });
  uint64_t cursor = 0;
  const Entry* last_nonempty = nullptr;
  for (const auto& e : h.entries) {
    const uint64_t begin = e.offsets[0], end = e.offsets[1];
    if (begin < cursor) {
      fail(source, tensor_ctx(e.name) + ": field \"data_offsets\" " + range_str(begin, end) + " overlap " +
                       (last_nonempty ? tensor_ctx(last_nonempty->name) + " at " +
                                            range_str(last_nonempty->offsets[0], last_nonempty->offsets[1])
                                      : std::string("another tensor")));
    }
    if (begin > cursor)
      fail(source, "gap in the data buffer: bytes " + range_str(cursor, begin) +
                       " are not covered by any tensor (the next one, " + tensor_ctx(e.name) +
                       ", has data_offsets " + range_str(begin, end) + "); tensors must be packed back to back");
    cursor = end;
    if (end > begin) last_nonempty = &e;
  }
  if (cursor != data_size)
    fail(source, std::to_string(data_size - cursor) + " trailing bytes in the data buffer: bytes " +
                     range_str(cursor, data_size) + " are not covered by any tensor" +
                     (h.entries.empty() ? std::string(" (the header lists none)")
                                        : " (the last tensor ends at offset " + std::to_string(cursor) + ")"));
  return h;
}

// ---- file descriptors ------------------------------------------------------------------

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void read_exact(int fd, uint64_t offset, void* dst, size_t n, const std::string& path, const char* what) {
  auto* p = static_cast<uint8_t*>(dst);
  size_t done = 0;
  while (done < n) {
    const size_t chunk = std::min<size_t>(n - done, size_t{1} << 30);
    const ssize_t r = ::pread(fd, p + done, chunk, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      fail(path, std::string("cannot read ") + what + ": " + errno_text(errno));
    }
    if (r == 0)
      fail(path, std::string("unexpected end of file at byte ") + std::to_string(offset + done) + " while reading " +
                     what + " (file changed while reading?)");
    done += static_cast<size_t>(r);
  }
}

void write_all(int fd, const void* src, size_t n, const std::string& path, const std::string& tmp) {
  const auto* p = static_cast<const uint8_t*>(src);
  while (n > 0) {
    const size_t chunk = std::min<size_t>(n, size_t{1} << 30);
    const ssize_t r = ::write(fd, p, chunk);
    if (r < 0) {
      if (errno == EINTR) continue;
      fail(path, "cannot write temporary file " + quote(tmp) + ": " + errno_text(errno));
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
}

// ---- writing -----------------------------------------------------------------------------

// Validates the records and returns the padded JSON header.
std::string build_header(const std::vector<TensorRecord>& tensors,
                         const std::map<std::string, std::string>& metadata, const std::string& source) {
  nlohmann::ordered_json root = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) {
      if (!valid_utf8(k)) fail(source, "__metadata__: key " + quote(k) + " is not valid UTF-8");
      if (!valid_utf8(v)) fail(source, "__metadata__: value of key " + quote(k) + " is not valid UTF-8");
      meta[k] = v;
    }
    root[kMetadataKey] = std::move(meta);
  }
  std::unordered_set<std::string_view> names;
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorRecord& t = tensors[i];
    if (t.name.empty()) fail(source, "tensor #" + std::to_string(i) + " has an empty name");
    const std::string ctx = tensor_ctx(t.name);
    if (t.name == kMetadataKey) fail(source, ctx + ": the name \"__metadata__\" is reserved");
    if (!valid_utf8(t.name)) fail(source, ctx + ": name is not valid UTF-8");
    if (!names.insert(t.name).second) fail(source, ctx + ": name appears twice (tensor names must be unique)");
    const size_t itemsize = lookup_dtype(t.dtype);
    if (itemsize == 0)
      fail(source, ctx + ": field \"dtype\": unknown dtype " + quote(t.dtype) + " (known: " + known_dtypes() + ")");
    const uint64_t nbytes = checked_nbytes(t.shape, itemsize, source, ctx, t.dtype);
    if (t.bytes.size() != nbytes)
      fail(source, ctx + ": holds " + std::to_string(t.bytes.size()) + " bytes but dtype " + t.dtype +
                       " with shape " + shape_str(t.shape) + " needs " + std::to_string(nbytes));
    uint64_t end;
    if (__builtin_add_overflow(offset, nbytes, &end) || end > kInt64Max)
      fail(source, ctx + ": total data size overflows 64-bit arithmetic");
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = t.dtype;
    entry["shape"] = t.shape;
    entry["data_offsets"] = {offset, end};
    root[t.name] = std::move(entry);
    offset = end;
  }
  std::string header = root.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  return header;
}

void check_convertible(const TensorRecord& r, const char* fn, uint64_t& numel) {
  const std::string source = fn;
  const std::string ctx = tensor_ctx(r.name);
  const size_t itemsize = lookup_dtype(r.dtype);
  if (itemsize == 0) fail(source, ctx + ": field \"dtype\": unknown dtype " + quote(r.dtype));
  const uint64_t nbytes = checked_nbytes(r.shape, itemsize, source, ctx, r.dtype);
  if (r.bytes.size() != nbytes)
    fail(source, ctx + ": holds " + std::to_string(r.bytes.size()) + " bytes but dtype " + r.dtype +
                     " with shape " + shape_str(r.shape) + " needs " + std::to_string(nbytes));
  numel = nbytes / itemsize;
}

// ---- float conversions ------------------------------------------------------------------

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;  // +-0
    } else {
      // Subnormal: mant * 2^-24. Normalise so the leading 1 sits at bit 10.
      int shift = 0;
      while (!(mant & 0x400u)) {
        mant <<= 1;
        ++shift;
      }
      mant &= 0x3FFu;
      bits = sign | (static_cast<uint32_t>(127 - 14 - shift) << 23) | (mant << 13);
    }
  } else if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);  // inf, or NaN with its payload
  } else {
    bits = sign | ((exp + (127 - 15)) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

// Round to nearest even, overflowing to +-inf, written out so that no
// out-of-range floating conversion is ever performed.
float f64_to_f32(double d) {
  const uint64_t bits = std::bit_cast<uint64_t>(d);
  const uint32_t sign = static_cast<uint32_t>(bits >> 32) & 0x80000000u;
  if (std::isnan(d))  // quiet NaN keeping the top payload bits, like the hardware
    return std::bit_cast<float>(sign | 0x7FC00000u | static_cast<uint32_t>((bits >> 29) & 0x3FFFFFu));
  const double a = std::fabs(d);
  if (a >= 0x1.ffffffp+127)  // FLT_MAX + half an ulp and above (incl. inf) round to inf
    return std::bit_cast<float>(sign | 0x7F800000u);
  if (a > static_cast<double>(std::numeric_limits<float>::max()))
    return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(std::numeric_limits<float>::max()));
  return static_cast<float>(d);
}

}  // namespace

// ---- public API -------------------------------------------------------------------------

const TensorRecord* Contents::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

size_t dtype_size(const std::string& dtype) {
  const size_t s = lookup_dtype(dtype);
  if (s == 0) fail("dtype_size", "unknown dtype " + quote(dtype) + " (known: " + known_dtypes() + ")");
  return s;
}

Contents parse(const uint8_t* data, size_t size, const std::string& source_name, const Limits& limits) {
  if (data == nullptr && size != 0) fail(source_name, "null data pointer");
  check_file_size(size, source_name, limits);
  const uint64_t n = check_header_length(data, size, source_name, limits);
  const uint64_t data_size = size - 8 - n;
  Header h = parse_header(reinterpret_cast<const char*>(data + 8), static_cast<size_t>(n), data_size,
                          source_name, limits);
  Contents c;
  c.metadata = std::move(h.metadata);
  c.tensors.reserve(h.entries.size());
  const uint8_t* buffer = data + 8 + n;
  for (auto& e : h.entries) {
    TensorRecord r;
    r.name = std::move(e.name);
    r.dtype = std::move(e.dtype);
    r.shape = std::move(e.shape);
    r.bytes.assign(buffer + e.offsets[0], buffer + e.offsets[1]);
    c.tensors.push_back(std::move(r));
  }
  return c;
}

namespace {

// Opens `path` and reads and validates its header; tensor data is left unread.
struct OpenedFile {
  Fd f;
  uint64_t data_start = 0;  // 8 + header length: where the data buffer begins
  Header header;
  explicit OpenedFile(const std::string& path, const Limits& limits)
      : f(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (f.fd < 0) fail(path, "cannot open file: " + errno_text(errno));
    struct stat st {};
    if (::fstat(f.fd, &st) != 0) fail(path, "cannot stat file: " + errno_text(errno));
    if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
    const auto size = static_cast<uint64_t>(st.st_size);
    check_file_size(size, path, limits);
    uint8_t prefix[8];
    read_exact(f.fd, 0, prefix, 8, path, "the header length");
    const uint64_t n = check_header_length(prefix, size, path, limits);
    std::string text(static_cast<size_t>(n), '\0');
    read_exact(f.fd, 8, text.data(), text.size(), path, "the header");
    header = parse_header(text.data(), text.size(), size - 8 - n, path, limits);
    data_start = 8 + n;
  }
};

}  // namespace

HeaderInfo read_header(const std::string& path, const Limits& limits) {
  OpenedFile file(path, limits);
  HeaderInfo info;
  info.metadata = std::move(file.header.metadata);
  info.tensors.reserve(file.header.entries.size());
  for (auto& e : file.header.entries)
    info.tensors.push_back({std::move(e.name), std::move(e.dtype), std::move(e.shape), e.offsets[0], e.offsets[1]});
  return info;
}

MappedFile map_file(const std::string& path, const Limits& limits) {
  OpenedFile file(path, limits);
  MappedFile m;
  m.header.metadata = std::move(file.header.metadata);
  m.header.tensors.reserve(file.header.entries.size());
  for (auto& e : file.header.entries)
    m.header.tensors.push_back({std::move(e.name), std::move(e.dtype), std::move(e.shape), e.offsets[0], e.offsets[1]});
  m.data_offset = file.data_start;
  struct stat st {};
  if (::fstat(file.f.fd, &st) != 0) fail(path, "cannot stat file: " + errno_text(errno));
  const auto size = static_cast<size_t>(st.st_size);
  m.data_bytes = size - file.data_start;
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, file.f.fd, 0);
  if (base == MAP_FAILED) fail(path, "cannot map file: " + errno_text(errno));
  // The mapping outlives the descriptor (closed when `file` goes); it goes with the last tensor.
  const std::shared_ptr<uint8_t> owner(static_cast<uint8_t*>(base), [size](uint8_t* p) { ::munmap(p, size); });
  m.data = std::shared_ptr<uint8_t>(owner, owner.get() + file.data_start);
  return m;
}

Contents read_file(const std::string& path, const Limits& limits) {
  OpenedFile file(path, limits);
  Contents c;
  c.metadata = std::move(file.header.metadata);
  c.tensors.reserve(file.header.entries.size());
  for (auto& e : file.header.entries) {
    TensorRecord r;
    r.name = std::move(e.name);
    r.dtype = std::move(e.dtype);
    r.shape = std::move(e.shape);
    r.bytes.resize(static_cast<size_t>(e.nbytes));
    read_exact(file.f.fd, file.data_start + e.offsets[0], r.bytes.data(), r.bytes.size(), path,
               ("the data of " + tensor_ctx(r.name)).c_str());
    c.tensors.push_back(std::move(r));
  }
  return c;
}

std::vector<uint8_t> serialize(const std::vector<TensorRecord>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  const std::string header = build_header(tensors, metadata, "safetensors::serialize");
  size_t total = 8 + header.size();
  for (const auto& t : tensors) total += t.bytes.size();
  std::vector<uint8_t> out(total);
  store_le<uint64_t>(out.data(), header.size());
  std::memcpy(out.data() + 8, header.data(), header.size());
  size_t pos = 8 + header.size();
  for (const auto& t : tensors) {
    if (!t.bytes.empty()) std::memcpy(out.data() + pos, t.bytes.data(), t.bytes.size());
    pos += t.bytes.size();
  }
  return out;
}

void write_file(const std::string& path, const std::vector<TensorRecord>& tensors,
                const std::map<std::string, std::string>& metadata) {
  const std::string header = build_header(tensors, metadata, path);
  const std::string tmp = path + ".tmp";
  {
    Fd f(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (f.fd < 0) fail(path, "cannot create temporary file " + quote(tmp) + ": " + errno_text(errno));
    try {
      uint8_t prefix[8];
      store_le<uint64_t>(prefix, header.size());
      write_all(f.fd, prefix, sizeof prefix, path, tmp);
      write_all(f.fd, header.data(), header.size(), path, tmp);
      for (const auto& t : tensors) write_all(f.fd, t.bytes.data(), t.bytes.size(), path, tmp);
      // On the disk before the rename: otherwise a power loss can leave the new name on
      // unwritten data, and the caller may already have deleted the older file.
      if (::fsync(f.fd) != 0) fail(path, "cannot flush temporary file " + quote(tmp) + ": " + errno_text(errno));
      const int fd = f.fd;
      f.fd = -1;
      if (::close(fd) != 0) fail(path, "cannot close temporary file " + quote(tmp) + ": " + errno_text(errno));
    } catch (...) {
      ::unlink(tmp.c_str());
      throw;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail(path, "cannot rename " + quote(tmp) + " over the file: " + errno_text(err));
  }
  const std::string dir = std::filesystem::path(path).parent_path().string();
  sync_directory(dir.empty() ? "." : dir);
}

std::vector<float> to_f32(const TensorRecord& r) {
  uint64_t numel;
  check_convertible(r, "to_f32", numel);
  std::vector<float> out(static_cast<size_t>(numel));
  const uint8_t* p = r.bytes.data();
  if (r.dtype == "F32") {
    for (size_t i = 0; i < out.size(); ++i) out[i] = std::bit_cast<float>(load_le<uint32_t>(p + 4 * i));
  } else if (r.dtype == "F16") {
    for (size_t i = 0; i < out.size(); ++i) out[i] = f16_to_f32(load_le<uint16_t>(p + 2 * i));
  } else if (r.dtype == "BF16") {
    for (size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_f32(load_le<uint16_t>(p + 2 * i));
  } else if (r.dtype == "F64") {
    for (size_t i = 0; i < out.size(); ++i) out[i] = f64_to_f32(std::bit_cast<double>(load_le<uint64_t>(p + 8 * i)));
  } else {
    fail("to_f32", tensor_ctx(r.name) + ": cannot convert dtype " + r.dtype + " to f32 (expected F32, F16, BF16 or F64)");
  }
  return out;
}

std::vector<int32_t> to_i32(const TensorRecord& r) {
  uint64_t numel;
  check_convertible(r, "to_i32", numel);
  std::vector<int32_t> out(static_cast<size_t>(numel));
  const uint8_t* p = r.bytes.data();
  constexpr int64_t lo = std::numeric_limits<int32_t>::min(), hi = std::numeric_limits<int32_t>::max();
  auto out_of_range = [&](size_t i, const std::string& value) {
    fail("to_i32", tensor_ctx(r.name) + ": element " + std::to_string(i) + " = " + value + " (dtype " + r.dtype +
                       ") is outside the int32 range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  };
  const std::string& dt = r.dtype;
  if (dt == "I32") {
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<int32_t>(load_le<uint32_t>(p + 4 * i));
  } else if (dt == "I64") {
    for (size_t i = 0; i < out.size(); ++i) {
      const auto v = static_cast<int64_t>(load_le<uint64_t>(p + 8 * i));
      if (v < lo || v > hi) out_of_range(i, std::to_string(v));
      out[i] = static_cast<int32_t>(v);
    }
  } else if (dt == "U32") {
    for (size_t i = 0; i < out.size(); ++i) {
      const uint32_t v = load_le<uint32_t>(p + 4 * i);
      if (v > static_cast<uint32_t>(hi)) out_of_range(i, std::to_string(v));
      out[i] = static_cast<int32_t>(v);
    }
  } else if (dt == "U64") {
    for (size_t i = 0; i < out.size(); ++i) {
      const uint64_t v = load_le<uint64_t>(p + 8 * i);
      if (v > static_cast<uint64_t>(hi)) out_of_range(i, std::to_string(v));
      out[i] = static_cast<int32_t>(v);
    }
  } else if (dt == "I16") {
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<int16_t>(load_le<uint16_t>(p + 2 * i));
  } else if (dt == "U16") {
    for (size_t i = 0; i < out.size(); ++i) out[i] = load_le<uint16_t>(p + 2 * i);
  } else if (dt == "I8") {
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<int8_t>(p[i]);
  } else if (dt == "U8") {
    for (size_t i = 0; i < out.size(); ++i) out[i] = p[i];
  } else if (dt == "BOOL") {
    for (size_t i = 0; i < out.size(); ++i) {
      if (p[i] > 1)
        fail("to_i32", tensor_ctx(r.name) + ": element " + std::to_string(i) + " of BOOL tensor is byte " +
                           std::to_string(p[i]) + ", expected 0 or 1");
      out[i] = p[i];
    }
  } else {
    fail("to_i32", tensor_ctx(r.name) + ": cannot convert dtype " + dt +
                       " to i32 (expected I32, I64, U32, U64, I16, U16, I8, U8 or BOOL)");
  }
  return out;
}

TensorRecord from_f32(std::string name, std::vector<int64_t> shape, const float* data) {
  TensorRecord r;
  const uint64_t nbytes = checked_nbytes(shape, 4, "from_f32", tensor_ctx(name), "F32");
  if (nbytes > 0 && data == nullptr) fail("from_f32", tensor_ctx(name) + ": null data pointer");
  r.bytes.resize(static_cast<size_t>(nbytes));
  for (size_t i = 0; i < nbytes / 4; ++i) store_le<uint32_t>(r.bytes.data() + 4 * i, std::bit_cast<uint32_t>(data[i]));
  r.name = std::move(name);
  r.dtype = "F32";
  r.shape = std::move(shape);
  return r;
}

TensorRecord from_i32(std::string name, std::vector<int64_t> shape, const int32_t* data) {
  TensorRecord r;
  const uint64_t nbytes = checked_nbytes(shape, 4, "from_i32", tensor_ctx(name), "I32");
  if (nbytes > 0 && data == nullptr) fail("from_i32", tensor_ctx(name) + ": null data pointer");
  r.bytes.resize(static_cast<size_t>(nbytes));
  for (size_t i = 0; i < nbytes / 4; ++i) store_le<uint32_t>(r.bytes.data() + 4 * i, static_cast<uint32_t>(data[i]));
  r.name = std::move(name);
  r.dtype = "I32";
  r.shape = std::move(shape);
  return r;
}

}  // namespace sparo::safetensors

namespace sparo {

void sync_directory(const std::string& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw Error("cannot open directory " + dir + " to flush it: " + std::strerror(errno));
  const int rc = ::fsync(fd), err = errno;
  ::close(fd);
  if (rc != 0) throw Error("cannot flush directory " + dir + ": " + std::strerror(err));
}

}  // namespace sparo
