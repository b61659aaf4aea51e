// Tensor creation, host access, printing, devices, threads, and the clarity of errors.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/gemm.h"
#include "engine/ops.h"
#include "engine/safetensors.h"

#include "tests/expect_error.h"

namespace sparo {
namespace {

TEST(Tensor, CreationFillsValues) {
  EXPECT_EQ(Tensor::zeros({2, 3}).to_float_vector(), std::vector<float>(6, 0.0f));
  EXPECT_EQ(Tensor::ones({4}).to_float_vector(), std::vector<float>(4, 1.0f));
  EXPECT_EQ(Tensor::full({2}, 2.5).to_float_vector(), (std::vector<float>{2.5f, 2.5f}));
  EXPECT_EQ(Tensor::full({3}, 7, DType::i32).to_int_vector(), (std::vector<int32_t>{7, 7, 7}));
  EXPECT_EQ(Tensor::arange(0, 5).to_float_vector(), (std::vector<float>{0, 1, 2, 3, 4}));
  EXPECT_EQ(Tensor::arange(1, 2, 0.25).to_float_vector(), (std::vector<float>{1, 1.25f, 1.5f, 1.75f}));
  EXPECT_EQ(Tensor::arange(5, 0, -2, DType::i32).to_int_vector(), (std::vector<int32_t>{5, 3, 1}));
  EXPECT_EQ(Tensor::arange(3, 3).numel(), 0);
  const Tensor s = Tensor::scalar(3.5f);
  EXPECT_TRUE(s.shape().empty());
  EXPECT_EQ(s.numel(), 1);
  EXPECT_FLOAT_EQ(s.item(), 3.5f);
}

TEST(Tensor, FromVectorRoundTripsAndDescribes) {
  const Tensor t = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.dim(), 2);
  EXPECT_EQ(t.size(-1), 3);
  EXPECT_EQ(t.dtype(), DType::f32);
  EXPECT_EQ(t.device(), Device::cpu());
  EXPECT_EQ(t.to_float_vector(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  const Tensor ids = Tensor::from_vector(std::vector<int32_t>{3, -1}, {2});
  EXPECT_EQ(ids.to_int_vector(), (std::vector<int32_t>{3, -1}));
  EXPECT_EQ(ids.to_float_vector(), (std::vector<float>{3, -1}));
  EXPECT_EQ(cast(t, DType::i32).to_int_vector(), (std::vector<int32_t>{1, 2, 3, 4, 5, 6}));
}

TEST(Tensor, CloneOwnsItsStorageAndReshapeShares) {
  Tensor t = Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2});
  Tensor c = t.clone();
  Tensor r = reshape(t, {4});
  fill_(t, 9.0f);
  EXPECT_EQ(c.to_float_vector(), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(r.to_float_vector(), (std::vector<float>{9, 9, 9, 9}));
}

TEST(Tensor, PrintsShapeDtypeAndValues) {
  const Tensor t = Tensor::from_vector(std::vector<float>{1, 2.5f, 3, 4, 5, 6}, {2, 3});
  const std::string s = t.str();
  EXPECT_NE(s.find("shape=[2, 3]"), std::string::npos) << s;
  EXPECT_NE(s.find("dtype=f32"), std::string::npos) << s;
  EXPECT_NE(s.find("[[1, 2.5, 3],"), std::string::npos) << s;
  const std::string longer = Tensor::arange(0, 100).str();
  EXPECT_NE(longer.find("[0, 1, 2, ..., 97, 98, 99]"), std::string::npos) << longer;
  EXPECT_NE(Tensor::from_vector(std::vector<int32_t>{4, 5}, {2}).str().find("[4, 5]"), std::string::npos);
  EXPECT_EQ(Tensor().str(), "Tensor(undefined)");
}

TEST(Tensor, DeviceParsing) {
  EXPECT_EQ(Device::parse("cpu"), Device::cpu());
  EXPECT_EQ(Device::parse("vulkan:2"), Device::vulkan(2));
  EXPECT_EQ(Device::parse("vulkan"), Device::vulkan(0));
  expect_error([] { Device::parse("cuda"); }, {"cuda", "vulkan:N"});
  expect_error([] { Device::parse("vulkan:x"); }, {"vulkan:x"});
}

TEST(Tensor, ErrorsNameTheOpAndTheShapes) {
  const Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4, 3});
  expect_error([&] { add(a, b); }, {"add", "[2, 3]", "[4, 3]"});
  expect_error([&] { matmul(a, b); }, {"matmul", "[2, 3]", "[4, 3]", "K=3", "K=4"});
  expect_error([&] { reshape(a, {4, 2}); }, {"reshape", "[2, 3]", "[4, 2]"});
  expect_error([&] { sum(a, 2); }, {"sum", "axis 2", "[2, 3]"});
  expect_error([&] { concat({a, Tensor::zeros({2, 2, 1})}, 0); }, {"concat", "[2, 2, 1]", "[2, 3]"});
  expect_error([&] { layer_norm(a, Tensor::ones({2}), Tensor()); }, {"layer_norm", "[2]", "[3]"});
  expect_error([&] { softmax(a, Tensor::zeros({2})); }, {"softmax", "mask", "[2]", "[2, 3]"});
  expect_error([&] { embedding(a, Tensor::from_vector(std::vector<int32_t>{0, 2}, {2})); }, {"embedding", "index 2", "[0, 2)"});
  expect_error([&] { cross_entropy(a, Tensor::from_vector(std::vector<int32_t>{0, 3}, {2})); },
               {"cross_entropy", "index 3", "[0, 3)"});
  expect_error([&] { cross_entropy(a, Tensor::zeros({2})); }, {"cross_entropy", "targets", "f32", "expected i32"});
  expect_error([&] { expand(a, {3, 3}); }, {"expand", "[2, 3]", "[3, 3]"});
  expect_error([&] { linear(a, Tensor::zeros({4, 3}), Tensor::zeros({3})); }, {"linear", "bias", "[3]", "expected [4]"});
  expect_error([&] { attention(a, 1); }, {"attention", "[batch, tokens, 3·width]", "[2, 3]"});
  expect_error([&] { attention(Tensor::zeros({2, 5, 12}), 3); }, {"attention", "width 4", "[2, 5, 12]", "3 heads"});
  expect_error([&] { attention(Tensor::zeros({2, 5, 12}), 2, Tensor::zeros({5, 4})); },
               {"attention", "mask", "[5, 5]", "[5, 4]"});
  expect_error([&] { permute(a, {0, 0}); }, {"permute", "twice"});
  expect_error([&] { Tensor::from_vector(std::vector<float>{1, 2, 3}, {2, 2}); }, {"from_vector", "3 values", "[2, 2]"});
  expect_error([&] { Tensor::zeros({2}).item(); }, {"item", "[2]"});
#if !defined(SPARO_HAVE_VULKAN)  // with Vulkan built in: tests/engine/test_vulkan_context.cpp
  expect_error([&] { Tensor::zeros({2}, DType::f32, Device::vulkan(0)); }, {"vulkan:0", "no Vulkan backend"});
#endif
  expect_error([&] { sum(Tensor()); }, {"sum", "undefined"});
}

// Shape products and byte counts are checked: a product that wrapped sized a buffer too small
// for the tensor (2^31 x 2^31 floats: 2^64 bytes, 0 after the wrap, a null buffer that the
// first kernel wrote through; `sparo bench ops --size 2147483648` crashed so).
TEST(Tensor, SizesThatOverflowAreErrorsNamingTheShape) {
  const int64_t big = int64_t{1} << 32;
  expect_error([&] { numel({big, big}); }, {"[4294967296, 4294967296]", "element count overflows int64"});
  expect_error([&] { Tensor::empty({big, big}); }, {"[4294967296, 4294967296]", "overflows int64"});
  expect_error([] { Tensor::empty({int64_t{1} << 31, int64_t{1} << 31}); },
               {"empty", "f32", "[2147483648, 2147483648]", "4611686018427387904 x 4 bytes", "overflows 64-bit"});
  expect_error([] { Tensor::empty({int64_t{1} << 61, 2}, DType::i32); }, {"i32", "[2305843009213693952, 2]", "x 4 bytes"});
  // Broadcasting makes a shape larger than either operand's.
  expect_error([&] { add(Tensor::zeros({big, 1, 0}), Tensor::zeros({1, big, 0})); }, {"[4294967296, 4294967296, 0]", "overflows"});
  // An empty tensor reshaped to a shape whose product wrapped to 0 "fitted".
  expect_error([&] { reshape(Tensor::zeros({0}), {big, big, 0}); }, {"reshape", "[4294967296, 4294967296, 0]", "overflows int64"});
  expect_error([] { Tensor::arange(0, 1e30); }, {"arange", "more than int64 can count"});
  EXPECT_EQ(numel({0, big}), 0);  // a zero dimension with the rest in range: an empty tensor
  EXPECT_EQ(Tensor::zeros({0, big}).numel(), 0);
}

// An allocation larger than the machine's memory is an error before anything is allocated
// (the OS may grant it lazily and kill the process when its pages are touched). One past 2^63
// bytes used to spin forever rounding up to a power of two, which wrapped to 0: that call runs
// where an alarm can end it.
TEST(Tensor, AbsurdAllocationsAreErrorsNotHangsOrCrashes) {
  Backend& cpu = backend_for(Device::cpu());
  expect_error([&] { cpu.allocate(size_t{1} << 62); }, {"cpu: cannot allocate 4611686018427387904 bytes", "more than this machine's memory"});
  expect_error_within(20, [&] { cpu.allocate(SIZE_MAX); }, "cpu: cannot allocate 18446744073709551615 bytes");
  // Storage ranges are checked without adding offset and size, which could wrap and pass.
  Tensor t = Tensor::zeros({4});
  const char byte = 0;
  expect_error([&] { cpu.upload(t.storage(), SIZE_MAX, &byte, 2); }, {"cpu upload", "past the end"});
  char out[2];
  expect_error([&] { cpu.download(t.storage(), SIZE_MAX, out, 2); }, {"cpu download", "past the end"});
}

TEST(Tensor, SafetensorsRoundTrip) {
  const std::string path = ::testing::TempDir() + "/sparo_tensor_io.safetensors";
  Generator gen(5);
  const Tensor w = Tensor::randn({3, 4}, gen);
  const Tensor ids = Tensor::from_vector(std::vector<int32_t>{1, 2, 3}, {3});
  save_safetensors(path, {{"w", w}, {"ids", ids}, {"scalar", Tensor::scalar(2.0f)}}, {{"format", "pt"}});
  std::map<std::string, std::string> metadata;
  const NamedTensors loaded = load_safetensors(path, Device::cpu(), &metadata);
  ASSERT_EQ(loaded.size(), 3u);
  std::map<std::string, Tensor> by_name(loaded.begin(), loaded.end());
  EXPECT_EQ(by_name["w"].to_float_vector(), w.to_float_vector());
  EXPECT_EQ(by_name["w"].shape(), (Shape{3, 4}));
  EXPECT_EQ(by_name["ids"].to_int_vector(), ids.to_int_vector());
  EXPECT_EQ(by_name["scalar"].shape(), Shape{});
  EXPECT_EQ(metadata["format"], "pt");
  std::filesystem::remove(path);
  expect_error([&] { load_safetensors(path); }, {path});
}

TEST(Tensor, SafetensorsChecksumCatchesAFlippedByte) {
  const std::string path = ::testing::TempDir() + "/sparo_checksum.safetensors";
  Generator gen(6);
  save_safetensors(path, {{"w", Tensor::randn({64}, gen)}});
  std::map<std::string, std::string> metadata;
  load_safetensors(path, Device::cpu(), &metadata);
  EXPECT_EQ(metadata[kDataChecksumKey].size(), 8u);
  {  // flip one bit of the last value, as a bad disk or a partial copy would
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-1, std::ios::end);
    const char c = static_cast<char>(f.get() ^ 0x01);
    f.seekp(-1, std::ios::end);
    f.put(c);
  }
  expect_error([&] { load_safetensors(path); }, {path, "corrupt", "CRC-32"});
  // Files written elsewhere carry no checksum and still load.
  const std::vector<float> v = {1.0f, 2.0f};
  safetensors::write_file(path, {safetensors::from_f32("v", {2}, v.data())});
  EXPECT_EQ(load_safetensors(path).at(0).second.to_float_vector(), v);
  std::filesystem::remove(path);
}

// The address range of the mapping of `path` that holds `p` in /proc/self/maps, or false.
bool mapped_from(const void* p, const std::string& path) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  const auto address = reinterpret_cast<uintptr_t>(p);
  const std::string name = std::filesystem::canonical(path).string();
  while (std::getline(maps, line)) {
    if (line.size() < name.size() || line.compare(line.size() - name.size(), name.size(), name) != 0) continue;
    const uintptr_t begin = std::stoull(line.substr(0, line.find('-')), nullptr, 16);
    const uintptr_t end = std::stoull(line.substr(line.find('-') + 1, line.find(' ')), nullptr, 16);
    if (address >= begin && address < end) return true;
  }
  return false;
}

// map_safetensors: the f32 and i32 tensors are the file's pages (no engine memory, the
// address inside the file's mapping); writing to one changes neither the file nor a second
// mapping; other dtypes and misaligned data are converted as load_safetensors does.
TEST(Tensor, MapSafetensorsUsesTheFileInPlace) {
  const std::string path = ::testing::TempDir() + "/sparo_mapped.safetensors";
  Generator gen(8);
  const Tensor w = Tensor::randn({300, 70}, gen);
  const Tensor ids = Tensor::from_vector(std::vector<int32_t>{4, -2, 9}, {3});
  save_safetensors(path, {{"w", w}, {"ids", ids}});
  Backend& cpu = backend_for(Device::cpu());
  const size_t before = cpu.memory_stats().in_use;
  std::map<std::string, std::string> metadata;
  NamedTensors mapped = map_safetensors(path, &metadata);
  EXPECT_EQ(cpu.memory_stats().in_use, before) << "the tensors took engine memory";
  EXPECT_EQ(metadata[kDataChecksumKey].size(), 8u);
  ASSERT_EQ(mapped.size(), 2u);
  EXPECT_EQ(mapped[0].second.to_float_vector(), w.to_float_vector());
  EXPECT_EQ(mapped[1].second.to_int_vector(), ids.to_int_vector());
  EXPECT_TRUE(mapped_from(cpu::data<float>(mapped[0].second), path));
  EXPECT_TRUE(mapped_from(cpu::data<int32_t>(mapped[1].second), path));

  fill_(mapped[0].second, 7.0f);  // a private copy of the touched pages
  EXPECT_EQ(load_safetensors(path).at(0).second.to_float_vector(), w.to_float_vector());
  EXPECT_EQ(map_safetensors(path).at(0).second.to_float_vector(), w.to_float_vector());
  mapped.clear();  // unmaps
  EXPECT_FALSE(mapped_from(cpu::data<float>(w), path));

  // An F16 tensor first leaves the F32 one at byte offset 2: both are converted copies.
  const uint8_t half_one[2] = {0x00, 0x3C};  // 1.0 in IEEE half precision
  const std::vector<float> v = {1.5f, -2.0f};
  safetensors::TensorRecord h{"h", "F16", {1}, std::vector<uint8_t>(half_one, half_one + 2)};
  safetensors::write_file(path, {h, safetensors::from_f32("v", {2}, v.data())});
  const NamedTensors converted = map_safetensors(path);
  EXPECT_EQ(converted.at(0).second.to_float_vector(), std::vector<float>{1.0f});
  EXPECT_EQ(converted.at(1).second.to_float_vector(), v);
  EXPECT_FALSE(mapped_from(cpu::data<float>(converted.at(1).second), path));
  std::filesystem::remove(path);
}

// A linear layer whose weight is a mapped file's pages (inference) packs the weight for the
// GEMM once and keeps the panels: the output is the bits of the same layer on an owned copy,
// every time, and after each kind of in-place write into the weight (add_, mul_, copy_, fill_)
// the panels are made again from the new values.
TEST(Tensor, LinearOnAMappedWeightPacksItOnceAndSeesEveryWrite) {
  const std::string path = ::testing::TempDir() + "/sparo_mapped_linear.safetensors";
  Generator gen(12);
  Tensor owned = Tensor::randn({96, 200}, gen);  // [N, K]
  const Tensor bias = Tensor::randn({96}, gen);
  const Tensor x = Tensor::randn({50, 200}, gen);
  save_safetensors(path, {{"w", owned}});
  NamedTensors mapped_file = map_safetensors(path);
  Tensor mapped = mapped_file.at(0).second;
  ASSERT_TRUE(mapped_from(cpu::data<float>(mapped), path));
  const auto& storage = static_cast<const cpu::CpuStorage&>(mapped.storage());
  const bool packs = cpu::pack_b(true, 200, 96, cpu::data<float>(owned), 200, false) != nullptr;

  auto expect_same_layer = [&](const char* after) {
    SCOPED_TRACE(after);
    EXPECT_EQ(linear(x, mapped, bias).to_float_vector(), linear(x, owned, bias).to_float_vector()) << "linear";
    EXPECT_EQ(linear_gelu(x, mapped, bias).to_float_vector(), linear_gelu(x, owned, bias).to_float_vector())
        << "linear_gelu";
    EXPECT_EQ(linear(x, mapped).to_float_vector(), linear(x, owned).to_float_vector()) << "linear without bias";
    // x · w as a [K, N] operand: a projection (its panels are another packing of the storage)
    const Tensor x96 = Tensor::randn({7, 96}, gen);
    EXPECT_EQ(matmul(x96, mapped).to_float_vector(), matmul(x96, owned).to_float_vector()) << "matmul";
  };
  expect_same_layer("first use");
  const auto panels = storage.packed_operand(true, 200, 96, false);
  EXPECT_EQ(panels != nullptr, packs);
  EXPECT_EQ(storage.packed_operand(true, 200, 96, false), panels) << "packed again without a write";
  EXPECT_EQ(static_cast<const cpu::CpuStorage&>(owned.storage()).packed_operand(true, 200, 96, false), nullptr)
      << "an owned (training) weight is packed per product, not kept";
  expect_same_layer("second use");

  const Tensor other = Tensor::randn({96, 200}, gen);
  add_(owned, other);
  add_(mapped, other);
  expect_same_layer("add_");
  mul_(owned, other);
  mul_(mapped, other);
  expect_same_layer("mul_");
  copy_(owned, other);
  copy_(mapped, other);
  expect_same_layer("copy_");
  ema_(owned, other, 0.75f);
  ema_(mapped, other, 0.75f);
  expect_same_layer("ema_");
  fill_(owned, 0.25f);
  fill_(mapped, 0.25f);
  expect_same_layer("fill_");
  if (packs) {
    EXPECT_NE(storage.packed_operand(true, 200, 96, false), panels);
  }
  mapped_file.clear();
  mapped = Tensor();
  std::filesystem::remove(path);
}

// The share of the pages wholly inside [p, p + bytes) that are resident (mincore).
double resident_share(const void* p, size_t bytes) {
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGE_SIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) / page * page;
  std::vector<unsigned char> in_core((end - begin) / page);
  if (in_core.empty() || mincore(reinterpret_cast<void*>(begin), end - begin, in_core.data()) != 0) return -1;
  size_t resident = 0;
  for (unsigned char c : in_core) resident += c & 1;
  return double(resident) / double(in_core.size());
}
// A file's pages written back to disk: clean, so the kernel may drop them (dirty ones it keeps).
void write_back(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(fsync(fd), 0) << path;
  close(fd);
}

// Once a weight is packed for the GEMM, a model file's pages (map_safetensors) go back to the
// kernel, so the weights are held once, as panels; memory that the caller passed to
// from_host_memory (here its own mapping of a file, whose clean pages the kernel could drop
// too) stays as it was.
TEST(Tensor, PackingHandsBackAModelFilesPagesButNotTheCallersMemory) {
  Generator gen(13);
  const Tensor owned = Tensor::randn({256, 512}, gen);  // [N, K]: 128 pages of 4 KiB
  const Tensor x = Tensor::randn({8, 512}, gen);
  if (cpu::pack_b(true, 512, 256, cpu::data<float>(owned), 512, false) == nullptr) {
    // No packed kernel on this CPU: nothing is kept packed, so nothing is handed back.
    SUCCEED() << "this CPU multiplies without packed panels";
    return;
  }
  struct statfs fs {};
  if (statfs(::testing::TempDir().c_str(), &fs) == 0 && (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC))
    GTEST_SKIP() << ::testing::TempDir() << " is in memory (tmpfs): its files' pages cannot be dropped";
  const std::string model_path = ::testing::TempDir() + "/sparo_pageout_model.safetensors";
  save_safetensors(model_path, {{"w", owned}});
  write_back(model_path);
  NamedTensors model = map_safetensors(model_path);
  const Tensor mapped = model.at(0).second;
  const size_t bytes = 256 * 512 * sizeof(float);
  EXPECT_EQ(resident_share(cpu::data<float>(mapped), bytes), 1.0) << "the file was read to check its CRC";
  EXPECT_EQ(linear(x, mapped).to_float_vector(), linear(x, owned).to_float_vector());
  EXPECT_LT(resident_share(cpu::data<float>(mapped), bytes), 0.5) << "the model file's pages were kept";
  EXPECT_EQ(linear(x, mapped).to_float_vector(), linear(x, owned).to_float_vector()) << "from the panels";

  const std::string callers_path = ::testing::TempDir() + "/sparo_pageout_callers.bin";
  {
    const std::vector<float> values = owned.to_float_vector();
    std::ofstream(callers_path, std::ios::binary).write(reinterpret_cast<const char*>(values.data()), bytes);
  }
  write_back(callers_path);
  const int fd = open(callers_path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  void* base = mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  ASSERT_NE(base, MAP_FAILED);
  const std::shared_ptr<void> owner(base, [bytes](void* p) { munmap(p, bytes); });
  const Tensor callers = Tensor::from_host_memory(owner, base, {256, 512}, DType::f32);
  EXPECT_EQ(linear(x, callers).to_float_vector(), linear(x, owned).to_float_vector());
  EXPECT_EQ(resident_share(base, bytes), 1.0) << "the caller's pages were handed back to the kernel";
  std::filesystem::remove(model_path);
  std::filesystem::remove(callers_path);
}

TEST(Tensor, MapSafetensorsChecksAndNamesBadFiles) {
  const std::string path = ::testing::TempDir() + "/sparo_mapped_bad.safetensors";
  Generator gen(9);
  save_safetensors(path, {{"w", Tensor::randn({64}, gen)}});
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-1, std::ios::end);
    const char c = static_cast<char>(f.get() ^ 0x01);
    f.seekp(-1, std::ios::end);
    f.put(c);
  }
  expect_error([&] { map_safetensors(path); }, {path, "corrupt", "CRC-32"});
  std::filesystem::resize_file(path, 20);
  expect_error([&] { map_safetensors(path); }, {path});
  std::filesystem::remove(path);
  expect_error([&] { map_safetensors(path); }, {path, "cannot open"});
}

TEST(Threads, SetNumThreadsLimitsTheEngine) {
  set_num_threads(1);
  EXPECT_EQ(num_threads(), 1);
  set_num_threads(0);
  EXPECT_GE(num_threads(), 1);
}

// Without gradients linear_gelu writes GELU over its pre-activation in place (inference holds
// one buffer): the same bits as with gradients (two buffers), and gelu(linear) up to rounding.
TEST(Tensor, LinearGeluInPlaceWithoutGradientsMatchesTheRecordedOp) {
  Generator gen(5);
  const Tensor x = Tensor::randn({70, 33}, gen), w = Tensor::randn({37, 33}, gen), b = Tensor::randn({37}, gen);
  Tensor x_grad = x.clone();
  x_grad.requires_grad_();
  const std::vector<float> with_grad = linear_gelu(x_grad, w, b).to_float_vector();
  std::vector<float> without;
  {
    NoGradGuard no_grad;
    without = linear_gelu(x, w, b).to_float_vector();
  }
  ASSERT_EQ(with_grad.size(), without.size());
  EXPECT_EQ(0, std::memcmp(with_grad.data(), without.data(), without.size() * sizeof(float)));
  const std::vector<float> composed = gelu(linear(x, w, b)).to_float_vector();
  for (size_t i = 0; i < composed.size(); ++i) EXPECT_NEAR(without[i], composed[i], 1e-5f * (1.0f + std::fabs(composed[i])));
}

// With gradients the fused op keeps GELU's derivative from the forward instead of the
// pre-activation: its gradients are gelu(linear)'s up to rounding.
TEST(Tensor, LinearGeluGradientsMatchGeluOfLinear) {
  Generator gen(6);
  const Tensor x0 = Tensor::randn({70, 33}, gen), w0 = Tensor::randn({37, 33}, gen), b0 = Tensor::randn({37}, gen);
  const Tensor upstream = Tensor::randn({70, 37}, gen);
  auto grads = [&](bool fused) {
    Tensor x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_(), b = b0.clone().requires_grad_();
    const Tensor y = fused ? linear_gelu(x, w, b) : gelu(linear(x, w, b));
    sum(mul(y, upstream)).backward();
    return std::vector<std::vector<float>>{x.grad().to_float_vector(), w.grad().to_float_vector(),
                                           b.grad().to_float_vector()};
  };
  const auto fused = grads(true), composed = grads(false);
  for (size_t t = 0; t < fused.size(); ++t) {
    ASSERT_EQ(fused[t].size(), composed[t].size());
    for (size_t i = 0; i < fused[t].size(); ++i)
      EXPECT_NEAR(fused[t][i], composed[t][i], 1e-4f * (1.0f + std::fabs(composed[t][i]))) << "tensor " << t << " at " << i;
  }
}

// mlp_gelu runs linear_gelu's and linear's kernels, and in its backward multiplies g·W2 by GELU's
// derivative in the GEMM's epilogue: the same float operations as the composition, so the same
// bits, forward and all five gradients, in f32 and bf16.
TEST(Tensor, MlpGeluIsLinearOfLinearGeluBitwise) {
  Generator gen(9);
  const Tensor x0 = Tensor::randn({2, 150, 40}, gen), w10 = Tensor::randn({100, 40}, gen),
               b10 = Tensor::randn({100}, gen), w20 = Tensor::randn({30, 100}, gen), b20 = Tensor::randn({30}, gen);
  const Tensor upstream = Tensor::randn({2, 150, 30}, gen);
  for (MatmulPrecision precision : {MatmulPrecision::f32, MatmulPrecision::bf16}) {
    const MatmulPrecisionScope scope(precision);
    auto run = [&](bool fused) {
      std::vector<Tensor> p = {x0.clone(), w10.clone(), b10.clone(), w20.clone(), b20.clone()};
      for (Tensor& t : p) t.requires_grad_();
      const Tensor y = fused ? mlp_gelu(p[0], p[1], p[2], p[3], p[4]) : linear(linear_gelu(p[0], p[1], p[2]), p[3], p[4]);
      y.backward(upstream);
      std::vector<std::vector<float>> out = {y.to_float_vector()};
      for (const Tensor& t : p) out.push_back(t.grad().to_float_vector());
      return out;
    };
    const auto fused = run(true), composed = run(false);
    for (size_t t = 0; t < fused.size(); ++t)
      EXPECT_EQ(fused[t], composed[t]) << matmul_precision_name(precision) << (t == 0 ? " output" : " gradient ")
                                       << (t == 0 ? "" : std::to_string(t - 1));
  }
  // Inference (no gradient) is the composition itself; a w2 that does not take fc1's outputs is
  // an error naming both.
  expect_error([&] { mlp_gelu(x0, w10, b10, Tensor::randn({30, 99}, gen), b20); },
               {"mlp_gelu: w2 has shape [30, 99], expected [out, 100]"});
}

// The bias gradient comes out of the weight gradient's GEMM (Backend::linear_weight_bias_grad):
// it is the sums of the output gradient's rows, in double in row order, from its fp32 values
// in bf16 too; with 700 rows and 600 outputs the GEMM splits rows over threads and K blocks.
TEST(Tensor, LinearBiasGradientIsTheSumOfTheOutputGradientsRows) {
  Generator gen(8);
  const int64_t rows = 700, in = 40, out = 600;
  const Tensor x0 = Tensor::randn({rows, in}, gen), w0 = Tensor::randn({out, in}, gen), b0 = Tensor::randn({out}, gen);
  const Tensor upstream = Tensor::randn({rows, out}, gen);
  const std::vector<float> g = upstream.to_float_vector();
  std::vector<float> expected(static_cast<size_t>(out));
  for (int64_t j = 0; j < out; ++j) {
    double total = 0.0;
    for (int64_t r = 0; r < rows; ++r) total += g[static_cast<size_t>(r * out + j)];
    expected[static_cast<size_t>(j)] = static_cast<float>(total);
  }
  for (MatmulPrecision precision : {MatmulPrecision::f32, MatmulPrecision::bf16}) {
    const MatmulPrecisionScope scope(precision);
    Tensor x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_(), b = b0.clone().requires_grad_();
    linear(x, w, b).backward(upstream);
    EXPECT_EQ(b.grad().to_float_vector(), expected) << matmul_precision_name(precision);
    // And the weight gradient is still Gᵀ·x.
    const std::vector<float> dw = w.grad().to_float_vector(), xv = x0.to_float_vector();
    for (int64_t j : {int64_t{0}, int64_t{333}, out - 1})
      for (int64_t i : {int64_t{0}, in - 1}) {
        double ref = 0.0;
        for (int64_t r = 0; r < rows; ++r) ref += double(g[static_cast<size_t>(r * out + j)]) * xv[static_cast<size_t>(r * in + i)];
        EXPECT_NEAR(dw[static_cast<size_t>(j * in + i)], ref, (precision == MatmulPrecision::bf16 ? 0.5 : 1e-3))
            << matmul_precision_name(precision) << " dW[" << j << "," << i << "]";
      }
  }
}

// ema_ is the composed update (both products rounded, then added) in one pass: the same bits,
// over parallel chunks and a tail; and bad input is a clear error.
TEST(Tensor, EmaIsTheComposedUpdateBitwise) {
  Generator gen(9);
  const Tensor source = Tensor::randn({100003}, gen);
  Tensor target = Tensor::randn({100003}, gen);
  const float m = 0.996f;
  const std::vector<float> composed =
      add(affine(target, m, 0.0f), affine(source, 1.0f - m, 0.0f)).to_float_vector();
  ema_(target, source, m);
  const std::vector<float> fused = target.to_float_vector();
  ASSERT_EQ(fused.size(), composed.size());
  EXPECT_EQ(0, std::memcmp(fused.data(), composed.data(), fused.size() * sizeof(float)));

  expect_error([&] { ema_(target, Tensor::zeros({7}), m); }, {"ema_", "[7]", "[100003]"});
  expect_error([&] { ema_(target, Tensor::zeros({100003}, DType::i32), m); }, {"ema_", "src"});
  expect_error([&] { ema_(target, source, std::nanf("")); }, {"ema_", "momentum must be finite"});
}

// Small batched products run as direct loops on the CPU (matmul.cpp's small_product). op(A)·B
// keeps sgemm's bits; A·Bᵀ (8-lane dots) has bits of its own, so the rule must not look at the
// rows or the batch: rows alone, or one entry alone, must give the bits they get in the whole.
TEST(Tensor, SmallMatmulsKeepSgemmBitsAndDoNotDependOnTheBatch) {
  Generator gen(5);
  const Tensor a = Tensor::randn({3, 5, 9}, gen), b = Tensor::randn({3, 9, 16}, gen);
  const std::vector<float> av = a.to_float_vector(), bv = b.to_float_vector();
  const std::vector<float> c = matmul(a, b).to_float_vector();
  for (int64_t i = 0; i < 3; ++i) {
    std::vector<float> ci(5 * 16);
    sparo::cpu::sgemm(false, false, 5, 16, 9, av.data() + i * 45, 9, bv.data() + i * 144, 16, ci.data(), 16, false);
    EXPECT_EQ(0, std::memcmp(ci.data(), c.data() + i * 80, ci.size() * sizeof(float))) << "entry " << i;
  }

  const Tensor x = Tensor::randn({3, 40, 16}, gen), y = Tensor::randn({3, 3, 16}, gen);
  const std::vector<float> all = matmul(x, y, false, true).to_float_vector();  // [3, 40, 3]
  const std::vector<float> alone = matmul(slice(x, 0, 1, 2), slice(y, 0, 1, 2), false, true).to_float_vector();
  EXPECT_EQ(0, std::memcmp(alone.data(), all.data() + 120, alone.size() * sizeof(float))) << "entry 1 alone";
  const std::vector<float> rows = matmul(slice(x, 1, 33, 40), y, false, true).to_float_vector();  // [3, 7, 3]
  for (int64_t i = 0; i < 3; ++i)
    EXPECT_EQ(0, std::memcmp(rows.data() + i * 21, all.data() + i * 120 + 33 * 3, 21 * sizeof(float)))
        << "rows 33..39 of entry " << i << " alone";
}

// Kernels split work by output, never by reduction order: any thread count gives the
// same bits (the property that makes training bitwise reproducible).
TEST(Threads, ResultsAreBitwiseIdenticalForAnyThreadCount) {
  auto run = [] {
    Generator gen(11);
    Tensor x = Tensor::randn({64, 300}, gen).requires_grad_();
    Tensor w = Tensor::randn({300, 96}, gen).requires_grad_();
    Tensor g = Tensor::ones({96}).requires_grad_();
    Tensor b = Tensor::randn({96}, gen).requires_grad_();
    Tensor y = layer_norm(gelu(linear(x, transpose(w, 0, 1), b)), g, Tensor());
    // attention's (batch, head) tasks: 4 batches × 2 heads, 16 tokens of width 96 / 3 = 32.
    const Tensor att = attention(reshape(y, {4, 16, 96}), 2);
    Tensor loss = add(add(sum(softmax(y)), mean(square(y))), mean(square(att)));
    loss = add(loss, sum(Tensor::randn({40000}, gen)));
    loss.backward();
    std::vector<float> out = loss.to_float_vector();
    for (const Tensor& t : {x, w, g, b}) {
      const std::vector<float> gv = t.grad().to_float_vector();
      out.insert(out.end(), gv.begin(), gv.end());
    }
    return out;
  };
  set_num_threads(1);
  const std::vector<float> one = run();
  set_num_threads(2);
  const std::vector<float> two = run();
  set_num_threads(0);
  ASSERT_EQ(one.size(), two.size());
  EXPECT_EQ(0, std::memcmp(one.data(), two.data(), one.size() * sizeof(float)));
}

}  // namespace
}  // namespace sparo
