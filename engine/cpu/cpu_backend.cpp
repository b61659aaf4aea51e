// CPU memory, creation kernels and copies.
#include "engine/cpu/cpu_backend.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <unordered_map>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/random.h"

namespace sparo {

namespace cpu {

namespace {

// A size-bucketed cache of freed blocks. Training allocates the same activation sizes
// every step; handing blocks back out avoids the page faults and page zeroing that fresh
// memory from the OS costs (measured: ~12 % of a tiny CLIP step without it). Blocks are
// 64-byte aligned (a cache line, an AVX-512 vector). Under AddressSanitizer nothing is
// cached, so use-after-free stays detectable.
class BlockCache {
 public:
  BlockCache() {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0) physical_ = static_cast<size_t>(pages) * static_cast<size_t>(page);
#if !defined(__SANITIZE_ADDRESS__)
    limit_ = physical_ != kUnknown ? physical_ / 4 : (size_t{1} << 30);
    if (const char* mb = std::getenv("SPARO_CPU_CACHE_MB")) limit_ = static_cast<size_t>(std::atoll(mb)) << 20;
#endif
  }
  ~BlockCache() { release_all(); }

  // Blocks up to 4 KiB round to 64 bytes, larger ones to a 64th of their power of two: at
  // most ~3 % rounding waste (an eighth wasted up to 15 % of every activation's memory).
  static size_t bucket(size_t bytes) {
    if (bytes <= 4096) return (bytes + 63) / 64 * 64;
    // Past 2^63 there is no power of two to round to: a doubling loop wrapped to 0 there and
    // spun forever. capacity_for() keeps such requests away; this guards the arithmetic.
    if (bytes > kLargestPow2) throw Error("cpu: cannot round an allocation of " + std::to_string(bytes) + " bytes up to a bucket");
    const size_t step = std::bit_ceil(bytes) / 64;
    return (bytes + step - 1) / step * step;
  }

  // The block size for a storage of `bytes`. A single tensor larger than the machine's
  // memory is a size error (a shape mixed up, an overflowed dimension) rather than a request
  // to honour: the OS may grant it lazily and kill the process once the pages are touched.
  size_t capacity_for(size_t bytes) const {
    if (bytes > physical_)
      throw Error("cpu: cannot allocate " + std::to_string(bytes) + " bytes (" + std::to_string(bytes >> 30) +
                  " GiB) for one tensor: more than this machine's memory (" + std::to_string(physical_ >> 30) +
                  " GiB)");
    return bucket(bytes);
  }

  void* get(size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(size);
    void* p = nullptr;
    if (it != free_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      cached_ -= size;
    } else {
      p = allocate(size);
      if (!p) {  // give the cache back to the OS and try once more
        release_locked();
        p = allocate(size);
      }
      if (!p)
        throw Error("cpu: out of memory allocating " + std::to_string(size) + " bytes (" +
                    std::to_string(in_use_ >> 20) + " MiB in use)");
    }
    in_use_ += size;
    peak_ = std::max(peak_, in_use_);
    return p;
  }

  void put(void* p, size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    in_use_ -= size;
    if (cached_ + size > limit_) {
      std::free(p);
      return;
    }
    free_[size].push_back(p);
    cached_ += size;
  }

  void release_all() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_locked();
  }

  MemoryStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {in_use_, cached_, peak_};
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    peak_ = in_use_;
  }

 private:
  // Large blocks are asked for as transparent huge pages (2 MiB): activations are read
  // across their rows (a GEMM packing a [rows, 576] gradient column-block by column-block
  // touches a 4 KiB page every other row), and 4 KiB pages made those reads miss the TLB;
  // fresh memory also faults once per 2 MiB instead of once per 4 KiB.
  // Only the whole huge pages inside a block are advised: a partly used one would be
  // resident in full (inference's peak memory is weights + 150 MB, with little to spare).
  static void* allocate(size_t size) {
    if (size < kHugeFrom) return std::aligned_alloc(64, size);
    // posix_memalign, not aligned_alloc: the size need not be a multiple of the alignment.
    void* p = nullptr;
    if (posix_memalign(&p, kHugePage, size) != 0) return nullptr;
    madvise(p, size / kHugePage * kHugePage, MADV_HUGEPAGE);  // advice: failing is fine
    return p;
  }
  static constexpr size_t kHugePage = size_t{2} << 20, kHugeFrom = size_t{4} << 20;

  void release_locked() {
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) std::free(p);
    free_.clear();
    cached_ = 0;
  }

  static constexpr size_t kUnknown = std::numeric_limits<size_t>::max();
  static constexpr size_t kLargestPow2 = kUnknown / 2 + 1;
  size_t physical_ = kUnknown;  // bytes of RAM; when sysconf cannot say, no cap but the arithmetic's
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t limit_ = 0, cached_ = 0, in_use_ = 0, peak_ = 0;
};

BlockCache& block_cache() {
  static BlockCache* cache = new BlockCache();  // never destroyed: storages may outlive statics
  return *cache;
}

}  // namespace

CpuStorage::CpuStorage(size_t bytes) : Storage(Device::cpu(), bytes), capacity_(bytes ? block_cache().capacity_for(bytes) : 0) {
  data_ = capacity_ ? block_cache().get(capacity_) : nullptr;
}
CpuStorage::CpuStorage(std::shared_ptr<void> owner, void* data, size_t bytes, HostMemory kind)
    : Storage(Device::cpu(), bytes), capacity_(0), data_(data), owner_(std::move(owner)), kind_(kind) {}
CpuStorage::~CpuStorage() {
  if (data_ && capacity_) block_cache().put(data_, capacity_);
}

std::shared_ptr<const PackedB> CpuStorage::packed_operand(bool trans, int64_t K, int64_t N, bool bf16) const {
  if (!owner_ || K * N * int64_t(sizeof(float)) != int64_t(bytes())) return nullptr;
  std::lock_guard<std::mutex> lock(packed_mutex_);
  const uint64_t writes_now = writes();
  if (packed_ && packed_trans_ == trans && packed_->K == K && packed_->N == N && packed_->bf16 == bf16 &&
      packed_writes_ == writes_now)
    return packed_;
  const float* values = static_cast<const float*>(data_);
  packed_ = pack_b(trans, K, N, values, trans ? K : N, bf16);
  packed_trans_ = trans;
  packed_writes_ = writes_now;
  if (packed_ && kind_ == HostMemory::file_mapping) {
    // The pages wholly inside these values go back to the kernel: a hint that keeps the
    // mapping's contents (they are read from the file again if touched; pages written by us
    // would be swapped, never dropped), so RSS holds the panels and not the values twice.
    const uintptr_t page = uintptr_t(sysconf(_SC_PAGE_SIZE));
    const uintptr_t begin = (reinterpret_cast<uintptr_t>(data_) + page - 1) / page * page;
    const uintptr_t end = (reinterpret_cast<uintptr_t>(data_) + bytes()) / page * page;
    if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_PAGEOUT);
  }
  return packed_;
}

std::shared_ptr<Storage> CpuBackend::allocate(size_t bytes) { return std::make_shared<CpuStorage>(bytes); }
std::shared_ptr<Storage> CpuBackend::wrap_host_memory(std::shared_ptr<void> owner, void* data, size_t bytes,
                                                     HostMemory kind) {
  return std::make_shared<CpuStorage>(std::move(owner), data, bytes, kind);
}
MemoryStats CpuBackend::memory_stats() const { return block_cache().stats(); }
void CpuBackend::empty_cache() { block_cache().release_all(); }
void CpuBackend::reset_peak_memory() { block_cache().reset_peak(); }
void CpuBackend::begin_timing() { timing_start_ = std::chrono::steady_clock::now(); }
double CpuBackend::end_timing_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - timing_start_).count();
}

// The range checks subtract rather than add: offset + bytes could wrap and pass.
void CpuBackend::upload(Storage& dst, size_t offset, const void* src, size_t bytes) {
  if (bytes > dst.bytes() || offset > dst.bytes() - bytes) throw Error("cpu upload: range past the end of the storage");
  if (bytes) std::memcpy(static_cast<char*>(static_cast<CpuStorage&>(dst).data()) + offset, src, bytes);
}

void CpuBackend::download(const Storage& src, size_t offset, void* dst, size_t bytes) {
  if (bytes > src.bytes() || offset > src.bytes() - bytes) throw Error("cpu download: range past the end of the storage");
  if (bytes)
    std::memcpy(dst, static_cast<const char*>(static_cast<const CpuStorage&>(src).data()) + offset, bytes);
}

void CpuBackend::fill(Tensor& out, double value) {
  const int64_t n = out.numel();
  if (out.dtype() == DType::i32) {
    int32_t* o = data<int32_t>(out);
    const auto v = static_cast<int32_t>(value);
    parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) { std::fill(o + b, o + e, v); });
  } else if (out.dtype() == DType::f32) {
    float* o = data<float>(out);
    const auto v = static_cast<float>(value);
    parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) { std::fill(o + b, o + e, v); });
  } else {
    throw Error(std::string("fill: dtype ") + dtype_name(out.dtype()) + " is not supported on the CPU yet");
  }
}

void CpuBackend::arange(Tensor& out, double start, double step) {
  const int64_t n = out.numel();
  if (out.dtype() == DType::i32) {
    int32_t* o = data<int32_t>(out);
    for (int64_t i = 0; i < n; ++i) o[i] = static_cast<int32_t>(start + step * static_cast<double>(i));
  } else {
    float* o = data<float>(out);
    for (int64_t i = 0; i < n; ++i) o[i] = static_cast<float>(start + step * static_cast<double>(i));
  }
}

void CpuBackend::random(Tensor& out, RandomDist dist, uint64_t seed, uint64_t block_offset, float a, float b) {
  float* o = data<float>(out);
  const int64_t n = out.numel();
  const int64_t blocks = (n + 3) / 4;
  constexpr float kTwoPi = 6.28318530717958647692f;
  parallel_for(blocks, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t blk = begin; blk < end; ++blk) {
      const auto w = philox4x32(seed, block_offset + static_cast<uint64_t>(blk));
      float v[4];
      if (dist == RandomDist::uniform) {
        for (int k = 0; k < 4; ++k) v[k] = a + (b - a) * philox_uniform01(w[k]);
      } else {
        for (int pair = 0; pair < 2; ++pair) {
          const float radius = std::sqrt(-2.0f * std::log(philox_uniform01_open_low(w[2 * pair])));
          const float angle = kTwoPi * philox_uniform01(w[2 * pair + 1]);
          v[2 * pair] = a + b * radius * std::cos(angle);
          v[2 * pair + 1] = a + b * radius * std::sin(angle);
        }
      }
      const int64_t first = blk * 4;
      for (int k = 0; k < 4 && first + k < n; ++k) o[first + k] = v[k];
    }
  });
}

void CpuBackend::cast(const Tensor& x, Tensor& out) {
  const int64_t n = x.numel();
  if (x.dtype() == out.dtype()) {
    std::memcpy(data<char>(out), data<char>(x), static_cast<size_t>(n) * dtype_size(x.dtype()));
  } else if (x.dtype() == DType::f32 && out.dtype() == DType::i32) {
    const float* s = data<float>(x);
    int32_t* o = data<int32_t>(out);
    // Truncation toward zero like a C cast, saturating (NaN -> 0) instead of undefined behaviour.
    constexpr float lo = -2147483648.0f, hi = 2147483520.0f;
    parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const float v = s[i];
        o[i] = std::isnan(v) ? 0 : static_cast<int32_t>(std::fmin(std::fmax(v, lo), hi));
      }
    });
  } else if (x.dtype() == DType::i32 && out.dtype() == DType::f32) {
    const int32_t* s = data<int32_t>(x);
    float* o = data<float>(out);
    parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) o[i] = static_cast<float>(s[i]);
    });
  } else {
    throw Error(std::string("cast: ") + dtype_name(x.dtype()) + " -> " + dtype_name(out.dtype()) +
                " is not supported on the CPU yet");
  }
}

// ---- strided copy (permute, slice, concat, expand) -------------------------------------

template <typename T>
static void copy_typed(const T* src, T* dst, const CopyPlan& p) {
  if (p.rank == 0) {
    dst[p.dst_offset] = src[p.src_offset];
    return;
  }
  const int last = p.rank - 1;
  const int64_t inner = p.dims[last];
  int64_t rows = 1;
  for (int d = 0; d < last; ++d) rows *= p.dims[d];
  const int64_t ss = p.src_strides[last], ds = p.dst_strides[last];
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(inner, 1)), [&](int64_t b, int64_t e) {
    // The outer index of row b by division once, then counted up like an odometer: a
    // division per row per axis cost more than the copy itself for short rows (the ViT's
    // patch grid moves rows of 4 floats).
    std::array<int64_t, kMaxDims> index{};
    int64_t so = p.src_offset, dof = p.dst_offset, rem = b;
    for (int d = last - 1; d >= 0; --d) {
      index[static_cast<size_t>(d)] = rem % p.dims[d];
      rem /= p.dims[d];
      so += index[static_cast<size_t>(d)] * p.src_strides[d];
      dof += index[static_cast<size_t>(d)] * p.dst_strides[d];
    }
    for (int64_t r = b; r < e; ++r) {
      const T* s = src + so;
      T* o = dst + dof;
      if (ss == 1 && ds == 1) {
        if (inner >= 16) std::memcpy(o, s, static_cast<size_t>(inner) * sizeof(T));
        else for (int64_t i = 0; i < inner; ++i) o[i] = s[i];
      } else if (ss == 0 && ds == 1) {
        std::fill(o, o + inner, *s);
      } else {
        for (int64_t i = 0; i < inner; ++i) o[i * ds] = s[i * ss];
      }
      for (int d = last - 1; d >= 0; --d) {
        so += p.src_strides[d];
        dof += p.dst_strides[d];
        if (++index[static_cast<size_t>(d)] < p.dims[d]) break;
        so -= p.dims[d] * p.src_strides[d];
        dof -= p.dims[d] * p.dst_strides[d];
        index[static_cast<size_t>(d)] = 0;
      }
    }
  });
}

void CpuBackend::copy(const Tensor& src, Tensor& dst, const CopyPlan& plan) {
  if (dtype_size(src.dtype()) == 4) copy_typed(data<uint32_t>(src), data<uint32_t>(dst), plan);
  else copy_typed(data<uint16_t>(src), data<uint16_t>(dst), plan);
}

}  // namespace cpu

}  // namespace sparo
