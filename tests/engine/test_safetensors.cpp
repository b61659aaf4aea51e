// Tests for the strict safetensors reader/writer (engine/safetensors.h).
#include "engine/safetensors.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

namespace st = sparo::safetensors;

namespace {

using Bytes = std::vector<uint8_t>;

const char* kSrc = "bad.safetensors";

// ---- helpers -------------------------------------------------------------------------

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "sparo_st_" + std::to_string(::getpid()) + "_" + name;
}

void write_bytes(const std::string& path, const Bytes& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  ASSERT_TRUE(f.good()) << path;
}

Bytes read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// 8-byte little-endian length, the header text as given, then the data.
Bytes make_file(const std::string& header, const Bytes& data = {}) {
  Bytes b(8);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(n >> (8 * i));
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

Bytes zeros(size_t n) { return Bytes(n, 0); }

template <class T>
void append_le(Bytes& b, T v) {
  using U = std::make_unsigned_t<T>;
  const U u = static_cast<U>(v);
  for (size_t i = 0; i < sizeof(T); ++i) b.push_back(static_cast<uint8_t>(u >> (8 * i)));
}

void append_f64(Bytes& b, double d) { append_le<uint64_t>(b, std::bit_cast<uint64_t>(d)); }

// A tensor for hand-built headers: shape given as JSON text.
struct Hand {
  std::string name, dtype, shape_json;
  Bytes data;
};

// Builds a file by hand (string concatenation, not via the library's writer).
Bytes hand_build(const std::vector<Hand>& ts, const std::string& extra_header = "") {
  std::string h = "{" + extra_header;
  Bytes data;
  for (const auto& t : ts) {
    if (h.size() > 1) h += ",";
    const size_t begin = data.size();
    data.insert(data.end(), t.data.begin(), t.data.end());
    h += "\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":" + t.shape_json + ",\"data_offsets\":[" +
         std::to_string(begin) + "," + std::to_string(data.size()) + "]}";
  }
  h += "}";
  return make_file(h, data);
}

// Parses `file` expecting failure; returns the message (empty and a test
// failure if it parsed). The message must always name the source.
std::string parse_error(const Bytes& file, const st::Limits& limits = {}) {
  try {
    st::parse(file.data(), file.size(), kSrc, limits);
  } catch (const st::SafetensorsError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(kSrc), std::string::npos) << "message does not name the file: " << msg;
    return msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "parse unexpectedly succeeded";
  return "";
}

// Each word must appear in msg.
void expect_words(const std::string& msg, std::initializer_list<const char*> words) {
  for (const char* w : words) EXPECT_NE(msg.find(w), std::string::npos) << "missing \"" << w << "\" in: " << msg;
}

// Header of one valid tensor entry with the given body.
Bytes one_tensor(const std::string& entry_body, size_t data_bytes) {
  return make_file("{\"w\":{" + entry_body + "}}", zeros(data_bytes));
}

const std::string kGoodEntry = R"("dtype":"F32","shape":[2],"data_offsets":[0,8])";

// A valid file with metadata and several tensors, for truncation and fuzzing.
Bytes sample_file() {
  std::vector<st::TensorRecord> ts;
  const float f[6] = {1.0f, -2.5f, 3.25f, 0.0f, -0.0f, 1e-3f};
  const int32_t i[3] = {7, -8, 9};
  ts.push_back(st::from_f32("layer.weight", {2, 3}, f));
  ts.push_back(st::from_i32("ids", {3}, i));
  ts.push_back({"half", "F16", {2}, {0x00, 0x3C, 0x00, 0xC0}});
  ts.push_back({"empty", "I64", {0, 4}, {}});
  ts.push_back({"scalar", "BF16", {}, {0x80, 0x3F}});
  return st::serialize(ts, {{"format", "pt"}, {"note", "x"}});
}

// ---- basics ------------------------------------------------------------------------------

TEST(Safetensors, DtypeSize) {
  EXPECT_EQ(st::dtype_size("F32"), 4u);
  EXPECT_EQ(st::dtype_size("F16"), 2u);
  EXPECT_EQ(st::dtype_size("BF16"), 2u);
  EXPECT_EQ(st::dtype_size("F64"), 8u);
  EXPECT_EQ(st::dtype_size("I64"), 8u);
  EXPECT_EQ(st::dtype_size("U64"), 8u);
  EXPECT_EQ(st::dtype_size("I32"), 4u);
  EXPECT_EQ(st::dtype_size("U32"), 4u);
  EXPECT_EQ(st::dtype_size("I16"), 2u);
  EXPECT_EQ(st::dtype_size("U16"), 2u);
  EXPECT_EQ(st::dtype_size("I8"), 1u);
  EXPECT_EQ(st::dtype_size("U8"), 1u);
  EXPECT_EQ(st::dtype_size("BOOL"), 1u);
  EXPECT_EQ(st::dtype_size("F8_E4M3"), 1u);
  EXPECT_EQ(st::dtype_size("F8_E5M2"), 1u);
  EXPECT_THROW(st::dtype_size("f32"), st::SafetensorsError);
  EXPECT_THROW(st::dtype_size(""), std::runtime_error);
}

TEST(Safetensors, RoundTripSeveralDtypesAndMetadata) {
  std::vector<st::TensorRecord> ts;
  const float f[6] = {1, 2, 3, 4, 5, -6.5f};
  const int32_t i[1] = {-42};
  ts.push_back(st::from_f32("a.weight", {2, 3}, f));
  ts.push_back(st::from_i32("scalar", {}, i));
  ts.push_back({"zero", "U8", {0, 5}, {}});
  ts.push_back({"half", "F16", {2, 1}, {0x00, 0x3C, 0x00, 0xBC}});
  ts.push_back({"bf", "BF16", {1}, {0x80, 0x3F}});
  ts.push_back({"long", "I64", {2}, {1, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}});
  ts.push_back({"flags", "BOOL", {3}, {1, 0, 1}});
  ts.push_back({"dbl", "F64", {1, 1, 1}, Bytes(8, 0)});
  ts.push_back({"zero2", "F32", {3, 0}, {}});
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "gr\xC3\xBC\xC3\x9F \"quoted\""}};

  const std::string path = temp_path("roundtrip.safetensors");
  st::write_file(path, ts, meta);
  EXPECT_FALSE(file_exists(path + ".tmp"));
  const Bytes on_disk = read_bytes(path);
  EXPECT_EQ(on_disk, st::serialize(ts, meta));

  // Header padded to a multiple of 8, so data starts 8-aligned.
  uint64_t n = 0;
  for (int k = 0; k < 8; ++k) n |= static_cast<uint64_t>(on_disk[k]) << (8 * k);
  EXPECT_EQ(n % 8, 0u);

  const st::Contents c = st::read_file(path);
  EXPECT_EQ(c.metadata, meta);
  ASSERT_EQ(c.tensors.size(), ts.size());
  // Written order is data order, and zero-size tensors keep their place.
  for (size_t k = 0; k < ts.size(); ++k) {
    EXPECT_EQ(c.tensors[k].name, ts[k].name);
    EXPECT_EQ(c.tensors[k].dtype, ts[k].dtype);
    EXPECT_EQ(c.tensors[k].shape, ts[k].shape);
    EXPECT_EQ(c.tensors[k].bytes, ts[k].bytes);
  }
  ASSERT_NE(c.find("scalar"), nullptr);
  EXPECT_EQ(st::to_i32(*c.find("scalar")), std::vector<int32_t>{-42});
  EXPECT_EQ(st::to_f32(*c.find("a.weight")), std::vector<float>(f, f + 6));
  EXPECT_EQ(st::to_i32(*c.find("long")), (std::vector<int32_t>{1, -1}));
  EXPECT_EQ(c.find("nope"), nullptr);
  EXPECT_TRUE(st::to_f32(*c.find("zero2")).empty());

  // In-memory parse gives the same.
  const st::Contents m = st::parse(on_disk.data(), on_disk.size(), "mem");
  ASSERT_EQ(m.tensors.size(), c.tensors.size());
  for (size_t k = 0; k < ts.size(); ++k) EXPECT_EQ(m.tensors[k].bytes, c.tensors[k].bytes);
  std::remove(path.c_str());
}

// read_header lists what read_file reads, in the same order, with the data offsets.
TEST(Safetensors, ReadHeaderListsTheTensorsWithoutTheirData) {
  const Bytes file = sample_file();
  const std::string path = temp_path("header.safetensors");
  write_bytes(path, file);
  const st::Contents full = st::read_file(path);
  const st::HeaderInfo h = st::read_header(path);
  std::remove(path.c_str());
  EXPECT_EQ(h.metadata, full.metadata);
  ASSERT_EQ(h.tensors.size(), full.tensors.size());
  uint64_t offset = 0;
  for (size_t k = 0; k < h.tensors.size(); ++k) {
    EXPECT_EQ(h.tensors[k].name, full.tensors[k].name);
    EXPECT_EQ(h.tensors[k].dtype, full.tensors[k].dtype);
    EXPECT_EQ(h.tensors[k].shape, full.tensors[k].shape);
    EXPECT_EQ(h.tensors[k].data_begin, offset) << h.tensors[k].name;
    offset += full.tensors[k].bytes.size();
    EXPECT_EQ(h.tensors[k].data_end, offset) << h.tensors[k].name;
  }
}

// An 8 GiB tensor in a sparse file (no disk blocks behind its data): read_header validates and
// lists it while the process's peak memory grows by far less than the tensor, where read_file
// would need all 8 GiB.
TEST(Safetensors, ReadHeaderOfAHugeSparseFileStaysSmall) {
  const uint64_t nbytes = 8ull << 30;
  const Bytes head = make_file(R"({"big":{"dtype":"F32","shape":[1024,2097152],"data_offsets":[0,)" +
                               std::to_string(nbytes) + "]}}");
  const std::string path = temp_path("sparse.safetensors");
  write_bytes(path, head);
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(head.size() + nbytes)), 0) << path;
  struct rusage before {};
  ::getrusage(RUSAGE_SELF, &before);
  const st::HeaderInfo h = st::read_header(path);
  struct rusage after {};
  ::getrusage(RUSAGE_SELF, &after);
  // One byte short: the offsets are checked against the file's size as read_file checks them.
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(head.size() + nbytes - 1)), 0) << path;
  try {
    st::read_header(path);
    ADD_FAILURE() << "a truncated file was accepted";
  } catch (const st::SafetensorsError& e) {
    expect_words(e.what(), {path.c_str(), "tensor \"big\"", "past the end"});
  }
  std::remove(path.c_str());
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_EQ(h.tensors[0].name, "big");
  EXPECT_EQ(h.tensors[0].shape, (std::vector<int64_t>{1024, 2097152}));
  EXPECT_EQ(h.tensors[0].data_end, nbytes);
  EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 64 * 1024) << "peak RSS grew by " << after.ru_maxrss - before.ru_maxrss
                                                           << " KiB";
}

TEST(Safetensors, WriteOverwritesAtomicallyAndEmptyFile) {
  const std::string path = temp_path("overwrite.safetensors");
  write_bytes(path, Bytes(100, 0xAB));
  st::write_file(path, {});
  EXPECT_FALSE(file_exists(path + ".tmp"));
  const st::Contents c = st::read_file(path);
  EXPECT_TRUE(c.tensors.empty());
  EXPECT_TRUE(c.metadata.empty());
  const Bytes b = read_bytes(path);
  ASSERT_EQ(b.size(), 16u);  // "{}" padded to 8
  EXPECT_EQ(std::string(b.begin() + 8, b.end()), "{}      ");
  std::remove(path.c_str());
}

TEST(Safetensors, GoldenWriterBytes) {
  const float one = 1.0f;
  const Bytes got = st::serialize({st::from_f32("x", {1}, &one)}, {{"k", "v"}});
  const std::string header = R"({"__metadata__":{"k":"v"},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} )";
  ASSERT_EQ(header.size(), 80u);
  Bytes want = {80, 0, 0, 0, 0, 0, 0, 0};
  want.insert(want.end(), header.begin(), header.end());
  want.insert(want.end(), {0x00, 0x00, 0x80, 0x3F});
  EXPECT_EQ(got, want);
}

TEST(Safetensors, GoldenReaderBytes) {
  // Header listed out of data order, with leading/trailing whitespace padding,
  // a zero-size tensor between two others, and a scalar.
  const std::string header =
      "\n {\"b\":{\"data_offsets\":[4,12],\"shape\":[2],\"dtype\":\"I32\"},"
      "\"__metadata__\":{\"format\":\"pt\"},"
      "\"z\":{\"dtype\":\"F32\",\"shape\":[2,0,3],\"data_offsets\":[4,4]},"
      "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
      "\"s\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[12,14]}}   \t\r\n  ";
  const Bytes data = {1, 2, 3, 255, 0x05, 0, 0, 0, 0xFA, 0xFF, 0xFF, 0xFF, 0x00, 0x3E};
  const Bytes file = make_file(header, data);
  const st::Contents c = st::parse(file.data(), file.size(), "golden");
  ASSERT_EQ(c.tensors.size(), 4u);
  EXPECT_EQ(c.tensors[0].name, "a");
  EXPECT_EQ(c.tensors[1].name, "z");
  EXPECT_EQ(c.tensors[2].name, "b");
  EXPECT_EQ(c.tensors[3].name, "s");
  EXPECT_EQ(c.metadata.at("format"), "pt");
  EXPECT_EQ(c.tensors[0].dtype, "U8");
  EXPECT_EQ(st::to_i32(c.tensors[0]), (std::vector<int32_t>{1, 2, 3, 255}));
  EXPECT_EQ(c.tensors[1].shape, (std::vector<int64_t>{2, 0, 3}));
  EXPECT_TRUE(c.tensors[1].bytes.empty());
  EXPECT_EQ(st::to_i32(c.tensors[2]), (std::vector<int32_t>{5, -6}));
  EXPECT_TRUE(c.tensors[3].shape.empty());
  EXPECT_EQ(st::to_f32(c.tensors[3]), std::vector<float>{1.5f});
}

TEST(Safetensors, EmptyHeaderAndMetadataOnly) {
  const Bytes a = make_file("{}");
  EXPECT_TRUE(st::parse(a.data(), a.size(), "a").tensors.empty());
  const Bytes b = make_file(R"({"__metadata__":{}})");
  EXPECT_TRUE(st::parse(b.data(), b.size(), "b").metadata.empty());
  const Bytes c = make_file(R"({"__metadata__":{"a":"1","b":""}})");
  EXPECT_EQ(st::parse(c.data(), c.size(), "c").metadata.size(), 2u);
  // -0 is the integer 0.
  const Bytes d = one_tensor(R"("dtype":"F32","shape":[-0],"data_offsets":[0,-0])", 0);
  EXPECT_EQ(st::parse(d.data(), d.size(), "d").tensors.at(0).shape, std::vector<int64_t>{0});
  // Several zero-size tensors at one offset are legal and keep header order.
  const Bytes e = make_file(R"({"q":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                            R"("p":{"dtype":"I8","shape":[0],"data_offsets":[0,0]}})");
  const auto ce = st::parse(e.data(), e.size(), "e");
  ASSERT_EQ(ce.tensors.size(), 2u);
  EXPECT_EQ(ce.tensors[0].name, "q");
  EXPECT_EQ(ce.tensors[1].name, "p");
}

// ---- conversions ---------------------------------------------------------------------------

TEST(Safetensors, HandBuiltConversions) {
  Bytes f16, bf16, f64, i64, i16, i8, u8, b8, big, small, badbool, u32;
  for (uint16_t h : {0x3C00, 0xC000, 0x7BFF, 0x0400, 0x0001, 0x03FF, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0x3555})
    append_le<uint16_t>(f16, h);
  for (uint16_t h : {0x3F80, 0xC0A0, 0x7F80, 0xFF80, 0x7FC0, 0x8000, 0x0001}) append_le<uint16_t>(bf16, h);
  for (double d : {1.5, -0.0, HUGE_VAL, std::nan(""), 1e300, -1e300, 0x1.fffffep127, 0x1.ffffffp127,
                   0x1.fffffefp127, 0x1p-149, 0x1p-151, 0x1.8p-150, 0.1})
    append_f64(f64, d);
  for (int64_t v : {int64_t{0}, int64_t{-1}, int64_t{2147483647}, int64_t{-2147483648LL}}) append_le<int64_t>(i64, v);
  for (int16_t v : {int16_t{-32768}, int16_t{32767}}) append_le<int16_t>(i16, v);
  i8 = {0x80, 0x7F, 0xFF};
  u8 = {0, 255};
  b8 = {0, 1, 1};
  append_le<int64_t>(big, 2147483648LL);
  append_le<int64_t>(small, 0);
  append_le<int64_t>(small, -2147483649LL);
  badbool = {0, 2};
  append_le<uint32_t>(u32, 0x80000000u);

  const Bytes file = hand_build({
      {"f16", "F16", "[11]", f16},
      {"bf16", "BF16", "[7]", bf16},
      {"f64", "F64", "[13]", f64},
      {"i64", "I64", "[2,2]", i64},
      {"i16", "I16", "[2]", i16},
      {"i8", "I8", "[3]", i8},
      {"u8", "U8", "[2]", u8},
      {"bool", "BOOL", "[3]", b8},
      {"big", "I64", "[1]", big},
      {"small", "I64", "[2]", small},
      {"badbool", "BOOL", "[2]", badbool},
      {"u32", "U32", "[1]", u32},
  });
  const std::string path = temp_path("hand.safetensors");
  write_bytes(path, file);
  const st::Contents c = st::read_file(path);
  std::remove(path.c_str());
  ASSERT_EQ(c.tensors.size(), 12u);

  auto bits = [](float x) { return std::bit_cast<uint32_t>(x); };
  const float inf = std::numeric_limits<float>::infinity();
  const float fmax = std::numeric_limits<float>::max();

  const auto h = st::to_f32(*c.find("f16"));
  ASSERT_EQ(h.size(), 11u);
  EXPECT_EQ(h[0], 1.0f);
  EXPECT_EQ(h[1], -2.0f);
  EXPECT_EQ(h[2], 65504.0f);
  EXPECT_EQ(h[3], std::ldexp(1.0f, -14));      // smallest normal
  EXPECT_EQ(h[4], std::ldexp(1.0f, -24));      // smallest subnormal
  EXPECT_EQ(h[5], std::ldexp(1023.0f, -24));   // largest subnormal
  EXPECT_EQ(bits(h[6]), 0x80000000u);          // -0
  EXPECT_EQ(h[7], inf);
  EXPECT_EQ(h[8], -inf);
  EXPECT_TRUE(std::isnan(h[9]));
  EXPECT_EQ(h[10], 0.333251953125f);

  const auto b = st::to_f32(*c.find("bf16"));
  ASSERT_EQ(b.size(), 7u);
  EXPECT_EQ(b[0], 1.0f);
  EXPECT_EQ(b[1], -5.0f);
  EXPECT_EQ(b[2], inf);
  EXPECT_EQ(b[3], -inf);
  EXPECT_TRUE(std::isnan(b[4]));
  EXPECT_EQ(bits(b[5]), 0x80000000u);
  EXPECT_EQ(b[6], std::ldexp(1.0f, -133));  // f32 subnormal

  const auto d = st::to_f32(*c.find("f64"));
  ASSERT_EQ(d.size(), 13u);
  EXPECT_EQ(d[0], 1.5f);
  EXPECT_EQ(bits(d[1]), 0x80000000u);
  EXPECT_EQ(d[2], inf);
  EXPECT_TRUE(std::isnan(d[3]));
  EXPECT_EQ(d[4], inf);
  EXPECT_EQ(d[5], -inf);
  EXPECT_EQ(d[6], fmax);
  EXPECT_EQ(d[7], inf);   // exact tie above FLT_MAX rounds to even = inf
  EXPECT_EQ(d[8], fmax);  // just below the tie
  EXPECT_EQ(d[9], std::numeric_limits<float>::denorm_min());
  EXPECT_EQ(d[10], 0.0f);
  EXPECT_EQ(d[11], std::numeric_limits<float>::denorm_min());
  EXPECT_EQ(d[12], 0.1f);

  EXPECT_EQ(st::to_i32(*c.find("i64")), (std::vector<int32_t>{0, -1, 2147483647, -2147483647 - 1}));
  EXPECT_EQ(st::to_i32(*c.find("i16")), (std::vector<int32_t>{-32768, 32767}));
  EXPECT_EQ(st::to_i32(*c.find("i8")), (std::vector<int32_t>{-128, 127, -1}));
  EXPECT_EQ(st::to_i32(*c.find("u8")), (std::vector<int32_t>{0, 255}));
  EXPECT_EQ(st::to_i32(*c.find("bool")), (std::vector<int32_t>{0, 1, 1}));

  for (const char* name : {"big", "small", "u32"}) {
    try {
      st::to_i32(*c.find(name));
      ADD_FAILURE() << name << " converted";
    } catch (const st::SafetensorsError& e) {
      expect_words(e.what(), {"tensor \"", name, "int32 range"});
    }
  }
  try {
    st::to_i32(*c.find("badbool"));
    ADD_FAILURE() << "badbool converted";
  } catch (const st::SafetensorsError& e) {
    expect_words(e.what(), {"tensor \"badbool\"", "element 1", "0 or 1"});
  }
}

TEST(Safetensors, ConversionRejectsWrongDtypeAndBadRecords) {
  const int32_t v[2] = {1, 2};
  const st::TensorRecord ir = st::from_i32("ints", {2}, v);
  try {
    st::to_f32(ir);
    ADD_FAILURE();
  } catch (const st::SafetensorsError& e) {
    expect_words(e.what(), {"to_f32", "tensor \"ints\"", "I32"});
  }
  const float f[2] = {1, 2};
  const st::TensorRecord fr = st::from_f32("floats", {2}, f);
  try {
    st::to_i32(fr);
    ADD_FAILURE();
  } catch (const st::SafetensorsError& e) {
    expect_words(e.what(), {"to_i32", "tensor \"floats\"", "F32"});
  }
  st::TensorRecord wrong = fr;
  wrong.bytes.pop_back();
  try {
    st::to_f32(wrong);
    ADD_FAILURE();
  } catch (const st::SafetensorsError& e) {
    expect_words(e.what(), {"tensor \"floats\"", "7 bytes", "needs 8"});
  }
  EXPECT_THROW(st::from_f32("neg", {-1}, f), st::SafetensorsError);
  EXPECT_THROW(st::from_i32("null", {2}, nullptr), st::SafetensorsError);
  EXPECT_TRUE(st::from_f32("empty", {0, 3}, nullptr).bytes.empty());
  const st::TensorRecord r = st::from_f32("r", {2}, f);
  EXPECT_EQ(r.dtype, "F32");
  EXPECT_EQ(r.bytes, (Bytes{0, 0, 0x80, 0x3F, 0, 0, 0, 0x40}));
}

// ---- writer errors ---------------------------------------------------------------------------

std::string serialize_error(const std::vector<st::TensorRecord>& ts, const std::map<std::string, std::string>& m = {}) {
  try {
    st::serialize(ts, m);
  } catch (const st::SafetensorsError& e) {
    return e.what();
  }
  ADD_FAILURE() << "serialize unexpectedly succeeded";
  return "";
}

TEST(Safetensors, WriterRejectsInvalidRecords) {
  const float f[2] = {1, 2};
  const st::TensorRecord ok = st::from_f32("w", {2}, f);
  expect_words(serialize_error({ok, ok}), {"tensor \"w\"", "twice"});
  expect_words(serialize_error({st::from_f32("", {2}, f)}), {"empty name"});
  expect_words(serialize_error({st::from_f32("__metadata__", {2}, f)}), {"reserved"});
  expect_words(serialize_error({{"bad", "F33", {1}, {0}}}), {"tensor \"bad\"", "unknown dtype \"F33\""});
  expect_words(serialize_error({{"neg", "U8", {-1}, {}}}), {"tensor \"neg\"", "negative"});
  expect_words(serialize_error({{"short", "F32", {2}, {0, 0, 0}}}), {"tensor \"short\"", "3 bytes", "needs 8"});
  expect_words(serialize_error({{"\xFF", "U8", {1}, {0}}}), {"UTF-8"});
  expect_words(serialize_error({ok}, {{"k", "\xC0\x80"}}), {"__metadata__", "\"k\"", "UTF-8"});

  const std::string path = temp_path("never.safetensors");
  try {
    st::write_file(path, {ok, ok});
    ADD_FAILURE();
  } catch (const st::SafetensorsError& e) {
    expect_words(e.what(), {path.c_str(), "twice"});
  }
  EXPECT_FALSE(file_exists(path));
  EXPECT_FALSE(file_exists(path + ".tmp"));

  const std::string nodir = temp_path("no_such_dir/x.safetensors");
  try {
    st::write_file(nodir, {ok});
    ADD_FAILURE();
  } catch (const st::SafetensorsError& e) {
    expect_words(e.what(), {nodir.c_str(), "No such file or directory"});
  }
}

// ---- file-level corruption -------------------------------------------------------------------------

TEST(SafetensorsCorrupt, FileShorterThan8Bytes) {
  for (size_t n = 0; n < 8; ++n)
    expect_words(parse_error(Bytes(n, 0)), {"shorter than the 8-byte", std::to_string(n).c_str()});
}

TEST(SafetensorsCorrupt, HeaderLengthPastEndOfFile) {
  Bytes b = one_tensor(kGoodEntry, 8);
  b[0] = 0xE8;
  b[1] = 0x03;  // 1000
  expect_words(parse_error(b), {"header length 1000", "larger than the"});
  Bytes huge = b;
  std::fill(huge.begin(), huge.begin() + 8, 0xFF);  // 2^64 - 1: no overflow in the check
  expect_words(parse_error(huge), {"header length 18446744073709551615"});
}

TEST(SafetensorsCorrupt, HeaderLengthOverLimit) {
  st::Limits lim;
  lim.max_header_bytes = 16;
  expect_words(parse_error(one_tensor(kGoodEntry, 8), lim), {"header length", "Limits::max_header_bytes"});
}

TEST(SafetensorsCorrupt, FileLargerThanLimit) {
  st::Limits lim;
  lim.max_file_bytes = 20;
  const Bytes b = one_tensor(kGoodEntry, 8);
  expect_words(parse_error(b, lim), {"Limits::max_file_bytes", std::to_string(b.size()).c_str()});
  const std::string path = temp_path("big.safetensors");
  write_bytes(path, b);
  try {
    st::read_file(path, lim);
    ADD_FAILURE();
  } catch (const st::SafetensorsError& e) {
    expect_words(e.what(), {path.c_str(), "Limits::max_file_bytes"});
  }
  std::remove(path.c_str());
}

TEST(SafetensorsCorrupt, CannotOpenFile) {
  const std::string path = temp_path("does_not_exist.safetensors");
  try {
    st::read_file(path);
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    expect_words(e.what(), {path.c_str(), "cannot open", "No such file or directory"});
  }
  try {
    st::read_file(::testing::TempDir());
    ADD_FAILURE();
  } catch (const st::SafetensorsError& e) {
    expect_words(e.what(), {"not a regular file"});
  }
}

// ---- header-level corruption -------------------------------------------------------------------------

TEST(SafetensorsCorrupt, HeaderNotJson) {
  expect_words(parse_error(make_file("{\"w\": ")), {"not valid JSON"});
  expect_words(parse_error(make_file("")), {"not valid JSON"});
  expect_words(parse_error(make_file("{\"w\":{" + kGoodEntry + "}}x", zeros(8))), {"not valid JSON"});
  expect_words(parse_error(make_file("{/*c*/}")), {"not valid JSON"});
  // NUL padding (or a NUL hiding trailing content) is rejected.
  expect_words(parse_error(make_file(std::string("{}\0\0\0\0", 6))), {"NUL byte", "offset 2"});
  expect_words(parse_error(make_file(std::string("{}\0{\"w\":1}", 10))), {"NUL byte"});
}

TEST(SafetensorsCorrupt, HeaderNotObject) {
  expect_words(parse_error(make_file("[1,2]")), {"not a JSON object", "an array"});
  expect_words(parse_error(make_file("\"x\"")), {"not a JSON object"});
  expect_words(parse_error(make_file("null")), {"not a JSON object"});
  expect_words(parse_error(make_file("12")), {"not a JSON object"});
}

TEST(SafetensorsCorrupt, HeaderNotUtf8) {
  expect_words(parse_error(make_file("{\"\xFF\":1}")), {"not valid UTF-8", "0xff", "offset 2"});
  expect_words(parse_error(make_file("{\"\xC0\x80\":1}")), {"not valid UTF-8"});      // overlong
  expect_words(parse_error(make_file("{\"\xED\xA0\x80\":1}")), {"not valid UTF-8"});  // surrogate
  expect_words(parse_error(make_file("{\"\xF4\x90\x80\x80\":1}")), {"not valid UTF-8"});  // > U+10FFFF
  expect_words(parse_error(make_file("{\"\xE2\x82\":1}")), {"not valid UTF-8"});      // truncated
  expect_words(parse_error(make_file("\xEF\xBB\xBF{}")), {"byte-order mark"});
}

TEST(SafetensorsCorrupt, TensorEntryNotObject) {
  expect_words(parse_error(make_file(R"({"w":[0,8]})")), {"tensor \"w\"", "must be an object", "an array"});
  expect_words(parse_error(make_file(R"({"w":"F32"})")), {"tensor \"w\"", "must be an object"});
}

TEST(SafetensorsCorrupt, MissingFields) {
  expect_words(parse_error(one_tensor(R"("shape":[2],"data_offsets":[0,8])", 8)),
               {"tensor \"w\"", "missing field \"dtype\""});
  expect_words(parse_error(one_tensor(R"("dtype":"F32","data_offsets":[0,8])", 8)),
               {"tensor \"w\"", "missing field \"shape\""});
  expect_words(parse_error(one_tensor(R"("dtype":"F32","shape":[2])", 8)),
               {"tensor \"w\"", "missing field \"data_offsets\""});
  expect_words(parse_error(one_tensor("", 0)), {"tensor \"w\"", "\"dtype\", \"shape\", \"data_offsets\""});
}

TEST(SafetensorsCorrupt, UnknownField) {
  expect_words(parse_error(one_tensor(kGoodEntry + R"(,"extra":1)", 8)), {"tensor \"w\"", "unknown field \"extra\""});
}

TEST(SafetensorsCorrupt, DuplicateField) {
  expect_words(parse_error(one_tensor(kGoodEntry + R"(,"dtype":"F32")", 8)),
               {"tensor \"w\"", "field \"dtype\"", "twice"});
}

TEST(SafetensorsCorrupt, Dtype) {
  expect_words(parse_error(one_tensor(R"("dtype":"F33","shape":[2],"data_offsets":[0,8])", 8)),
               {"tensor \"w\"", "\"dtype\"", "unknown dtype \"F33\"", "F32"});
  expect_words(parse_error(one_tensor(R"("dtype":4,"shape":[2],"data_offsets":[0,8])", 8)),
               {"tensor \"w\"", "\"dtype\"", "must be a string", "integer 4"});
}

TEST(SafetensorsCorrupt, Shape) {
  expect_words(parse_error(one_tensor(R"("dtype":"F32","shape":2,"data_offsets":[0,8])", 8)),
               {"tensor \"w\"", "\"shape\"", "must be an array"});
  expect_words(parse_error(one_tensor(R"("dtype":"F32","shape":[-2],"data_offsets":[0,8])", 8)),
               {"tensor \"w\"", "\"shape\"", "negative integer -2"});
  expect_words(parse_error(one_tensor(R"("dtype":"F32","shape":[2.0],"data_offsets":[0,8])", 8)),
               {"tensor \"w\"", "\"shape\"", "non-integer number 2.0"});
  expect_words(parse_error(one_tensor(R"("dtype":"F32","shape":["2"],"data_offsets":[0,8])", 8)),
               {"tensor \"w\"", "\"shape\" element 0", "string \"2\""});
  expect_words(parse_error(one_tensor(R"("dtype":"F32","shape":[2,[1]],"data_offsets":[0,8])", 8)),
               {"tensor \"w\"", "\"shape\" element 1", "an array"});
  expect_words(parse_error(one_tensor(R"("dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,8])", 8)),
               {"tensor \"w\"", "\"shape\"", "largest supported dimension"});
  expect_words(parse_error(one_tensor(R"("dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8])", 8)),
               {"tensor \"w\"", "\"shape\"", "non-integer number"});
}

TEST(SafetensorsCorrupt, RankAboveLimit) {
  expect_words(parse_error(one_tensor(R"("dtype":"F32","shape":[1,1,1,1,1,1,1,1,2],"data_offsets":[0,8])", 8)),
               {"tensor \"w\"", "\"shape\"", "more than 8 dimensions", "Limits::max_rank"});
  st::Limits lim;
  lim.max_rank = 9;
  const Bytes ok = one_tensor(R"("dtype":"F32","shape":[1,1,1,1,1,1,1,1,2],"data_offsets":[0,8])", 8);
  EXPECT_EQ(st::parse(ok.data(), ok.size(), "ok", lim).tensors.at(0).shape.size(), 9u);
}

TEST(SafetensorsCorrupt, ElementCountOverflow) {
  expect_words(parse_error(one_tensor(R"("dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8])", 8)),
               {"tensor \"w\"", "shape", "overflows"});
  expect_words(parse_error(one_tensor(R"("dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8])", 8)),
               {"tensor \"w\"", "F64", "overflows"});
}

TEST(SafetensorsCorrupt, DataOffsetsMalformed) {
  expect_words(parse_error(one_tensor(R"("dtype":"F32","shape":[2],"data_offsets":[8])", 8)),
               {"tensor \"w\"", "\"data_offsets\"", "exactly two", "found 1"});
  expect_words(parse_error(one_tensor(R"("dtype":"F32","shape":[2],"data_offsets":[0,8,8])", 8)),
               {"tensor \"w\"", "\"data_offsets\"", "exactly two", "found more"});
  expect_words(parse_error(one_tensor(R"("dtype":"F32","shape":[2],"data_offsets":[-1,8])", 8)),
               {"tensor \"w\"", "\"data_offsets\" element 0", "negative integer -1"});
  expect_words(parse_error(one_tensor(R"("dtype":"F32","shape":[2],"data_offsets":[0,8.0])", 8)),
               {"tensor \"w\"", "\"data_offsets\" element 1", "non-integer"});
  expect_words(parse_error(one_tensor(R"("dtype":"F32","shape":[2],"data_offsets":["0",8])", 8)),
               {"tensor \"w\"", "\"data_offsets\"", "string"});
  expect_words(parse_error(one_tensor(R"("dtype":"F32","shape":[2],"data_offsets":{"b":0})", 8)),
               {"tensor \"w\"", "\"data_offsets\"", "an object"});
  expect_words(parse_error(one_tensor(R"("dtype":"F32","shape":[0],"data_offsets":[8,0])", 8)),
               {"tensor \"w\"", "\"data_offsets\" [8, 0]", "begin > end"});
}

TEST(SafetensorsCorrupt, RangePastEndOfFile) {
  expect_words(parse_error(one_tensor(R"("dtype":"F32","shape":[4],"data_offsets":[0,16])", 8)),
               {"tensor \"w\"", "\"data_offsets\" [0, 16]", "past the end", "8 bytes"});
  expect_words(parse_error(one_tensor(R"("dtype":"F32","shape":[2],"data_offsets":[18446744073709551610,18446744073709551615])", 8)),
               {"tensor \"w\"", "past the end"});
}

TEST(SafetensorsCorrupt, ByteCountInconsistentWithShape) {
  const Bytes b = make_file(R"({"visual.proj":{"dtype":"F32","shape":[4,6],"data_offsets":[0,92]}})", zeros(92));
  expect_words(parse_error(b), {"bad.safetensors: tensor \"visual.proj\": field \"data_offsets\" [0, 92] span 92 "
                                "bytes but dtype F32 with shape [4, 6] needs 96"});
}

TEST(SafetensorsCorrupt, OverlappingRanges) {
  const Bytes b = make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                            zeros(12));
  expect_words(parse_error(b), {"tensor \"b\"", "[4, 12]", "overlap", "tensor \"a\"", "[0, 8]"});
  const Bytes same = make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})",
                               zeros(8));
  expect_words(parse_error(same), {"overlap"});
  // A zero-size tensor inside another tensor's range also overlaps.
  const Bytes inside = make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                 R"("z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
                                 zeros(8));
  expect_words(parse_error(inside), {"tensor \"z\"", "overlap", "tensor \"a\""});
}

TEST(SafetensorsCorrupt, GapBetweenTensors) {
  const Bytes b = make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})",
                            zeros(20));
  expect_words(parse_error(b), {"gap", "[8, 12]", "not covered", "tensor \"b\""});
  const Bytes lead = one_tensor(R"("dtype":"F32","shape":[2],"data_offsets":[4,12])", 12);
  expect_words(parse_error(lead), {"gap", "[0, 4]", "tensor \"w\""});
}

TEST(SafetensorsCorrupt, TrailingBytes) {
  expect_words(parse_error(one_tensor(kGoodEntry, 12)), {"4 trailing bytes", "[8, 12]", "not covered"});
  expect_words(parse_error(make_file("{}", zeros(3))), {"3 trailing bytes", "lists none"});
}

TEST(SafetensorsCorrupt, DuplicateTensorNames) {
  const Bytes b = make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                            R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                            zeros(8));
  expect_words(parse_error(b), {"tensor \"w\"", "appears twice"});
}

TEST(SafetensorsCorrupt, EmptyTensorName) {
  expect_words(parse_error(make_file(R"({"":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}})")), {"empty name"});
}

TEST(SafetensorsCorrupt, Metadata) {
  expect_words(parse_error(make_file(R"({"__metadata__":"x"})")), {"__metadata__", "must be an object", "string"});
  expect_words(parse_error(make_file(R"({"__metadata__":["a"]})")), {"__metadata__", "must be an object", "array"});
  expect_words(parse_error(make_file(R"({"__metadata__":{"k":1}})")),
               {"__metadata__", "key \"k\"", "must be a string", "integer 1"});
  expect_words(parse_error(make_file(R"({"__metadata__":{"k":{"x":"y"}}})")),
               {"__metadata__", "key \"k\"", "must be a string", "an object"});
  expect_words(parse_error(make_file(R"({"__metadata__":{"k":null}})")), {"key \"k\"", "null"});
  expect_words(parse_error(make_file(R"({"__metadata__":{"k":"a","k":"b"}})")), {"__metadata__", "\"k\"", "twice"});
  expect_words(parse_error(make_file(R"({"__metadata__":{},"__metadata__":{}})")), {"__metadata__", "twice"});
}

TEST(SafetensorsCorrupt, TooManyTensors) {
  const Bytes b = make_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                            R"("b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},)"
                            R"("c":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}})",
                            zeros(3));
  st::Limits lim;
  lim.max_tensors = 2;
  expect_words(parse_error(b, lim), {"more than 2 tensors", "Limits::max_tensors"});
  lim.max_tensors = 3;
  EXPECT_EQ(st::parse(b.data(), b.size(), "ok", lim).tensors.size(), 3u);
}

TEST(SafetensorsCorrupt, MessageEscapesNames) {
  const Bytes b = make_file("{\"a\\\"b\\n\":{\"dtype\":\"X\",\"shape\":[],\"data_offsets\":[0,0]}}");
  expect_words(parse_error(b), {"tensor \"a\\\"b\\x0a\"", "unknown dtype \"X\""});
}

// ---- robustness -------------------------------------------------------------------------------------

TEST(SafetensorsRobust, EveryTruncationIsRejected) {
  const Bytes full = sample_file();
  ASSERT_NO_THROW(st::parse(full.data(), full.size(), "full"));
  const std::string path = temp_path("trunc.safetensors");
  for (size_t n = 0; n < full.size(); ++n) {
    const Bytes prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_THROW(st::parse(prefix.data(), prefix.size(), "trunc"), st::SafetensorsError) << "prefix " << n;
    write_bytes(path, prefix);
    EXPECT_THROW(st::read_file(path), st::SafetensorsError) << "file prefix " << n;
    // The header-only reader checks the offsets against the file's size just the same.
    EXPECT_THROW(st::read_header(path), st::SafetensorsError) << "file prefix " << n << " (read_header)";
  }
  std::remove(path.c_str());
}

void check_parsed_invariants(const st::Contents& c, size_t data_size) {
  size_t total = 0;
  for (const auto& t : c.tensors) {
    size_t numel = 1;
    for (int64_t d : t.shape) {
      ASSERT_GE(d, 0);
      numel *= static_cast<size_t>(d);
    }
    ASSERT_EQ(t.bytes.size(), numel * st::dtype_size(t.dtype));
    total += t.bytes.size();
    // Conversions must either succeed or throw the module's error.
    try {
      (void)st::to_f32(t);
    } catch (const st::SafetensorsError&) {
    }
    try {
      (void)st::to_i32(t);
    } catch (const st::SafetensorsError&) {
    }
  }
  ASSERT_EQ(total, data_size);
}

TEST(SafetensorsRobust, RandomMutationFuzz) {
  const Bytes base = sample_file();
  uint64_t hlen = 0;
  for (int k = 0; k < 8; ++k) hlen |= static_cast<uint64_t>(base[k]) << (8 * k);
  const size_t header_end = 8 + static_cast<size_t>(hlen);
  const std::string alphabet = "{}[]\",:0123456789-.eE ftnul\\_FIBUS";

  std::mt19937_64 rng(20240531);
  int parsed = 0, rejected = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    Bytes b = base;
    const int mutations = 1 + static_cast<int>(rng() % 3);
    for (int m = 0; m < mutations; ++m) {
      const size_t pos = rng() % b.size();
      switch (rng() % 6) {
        case 0: b[pos] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;  // bit flip anywhere
        case 1: b[pos] = static_cast<uint8_t>(rng()); break;                // random byte anywhere
        case 2: {                                                            // JSON-ish byte in the header
          const size_t hp = 8 + rng() % (header_end - 8);
          b[hp] = static_cast<uint8_t>(alphabet[rng() % alphabet.size()]);
          break;
        }
        case 3: b[rng() % 8] = static_cast<uint8_t>(rng()); break;  // header length
        case 4: b.resize(b.size() - rng() % 8); break;             // cut the tail
        case 5: b.insert(b.begin() + static_cast<std::ptrdiff_t>(8 + rng() % (header_end - 8)),
                         static_cast<uint8_t>(alphabet[rng() % alphabet.size()]));
          break;
      }
      if (b.empty()) break;
    }
    try {
      const st::Contents c = st::parse(b.data(), b.size(), "fuzz");
      uint64_t n = 0;
      for (int k = 0; k < 8; ++k) n |= static_cast<uint64_t>(b[k]) << (8 * k);
      check_parsed_invariants(c, b.size() - 8 - static_cast<size_t>(n));
      ++parsed;
    } catch (const st::SafetensorsError& e) {
      ASSERT_EQ(std::string(e.what()).rfind("fuzz: ", 0), 0u) << e.what();
      ++rejected;
    } catch (const std::exception& e) {
      FAIL() << "iteration " << iter << ": unexpected exception type: " << e.what();
    }
  }
  EXPECT_GT(parsed, 0);
  EXPECT_GT(rejected, 0);
}

}  // namespace
