// Tests for sparo::cpu::sgemm (its AVX-512 and AVX2 kernels and its Eigen fallback) against a
// double-precision reference.
#include "engine/cpu/gemm.h"

#include <gtest/gtest.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <random>
#include <string>
#include <vector>

namespace {

using sparo::cpu::round_to_bf16;
using sparo::cpu::sgemm;
using sparo::cpu::sgemm_bf16;
using sparo::cpu::detail::sgemm_bf16_emulated;

using sparo::cpu::GemmEpilogue;
using GemmFn = void (*)(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t,
                        const float*, int64_t, float*, int64_t, bool, const GemmEpilogue*, float*);

// Every entry point this CPU can run: sgemm (whichever kernel it dispatches to), the Eigen
// fallback, the AVX2 kernel where the CPU has AVX2 (on an AVX-512 CPU sgemm does not take it),
// and the two bf16 paths.
std::vector<GemmFn> every_path() {
  std::vector<GemmFn> paths{&sgemm, &sparo::cpu::detail::sgemm_eigen, &sgemm_bf16, &sgemm_bf16_emulated};
  if (sparo::cpu::detail::cpu_has_avx2()) {
    paths.push_back(&sparo::cpu::detail::sgemm_avx2);
    paths.push_back(&sparo::cpu::detail::sgemm_avx2_bf16);
  }
  return paths;
}

// The bf16 entry points this CPU can run (see every_path).
std::vector<GemmFn> bf16_paths() {
  std::vector<GemmFn> paths{&sgemm_bf16, &sgemm_bf16_emulated};
  if (sparo::cpu::detail::cpu_has_avx2()) paths.push_back(&sparo::cpu::detail::sgemm_avx2_bf16);
  return paths;
}

struct Operands {
  int64_t M, N, K, lda, ldb, ldc;
  bool ta, tb;
  std::vector<float> A, B, C;
};

// Random operands with leading dimensions padded by `pad` (the padding holds garbage that
// must never be read into the result: it is filled with huge values).
Operands make(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t pad, uint32_t seed) {
  Operands o;
  o.M = M, o.N = N, o.K = K, o.ta = ta, o.tb = tb;
  const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K;
  const int64_t b_rows = tb ? N : K, b_cols = tb ? K : N;
  o.lda = a_cols + pad;
  o.ldb = b_cols + pad;
  o.ldc = N + pad;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const float junk = 1e30f;
  o.A.assign(size_t(std::max<int64_t>(a_rows * o.lda, 1)), junk);
  o.B.assign(size_t(std::max<int64_t>(b_rows * o.ldb, 1)), junk);
  for (int64_t r = 0; r < a_rows; ++r)
    for (int64_t c = 0; c < a_cols; ++c) o.A[size_t(r * o.lda + c)] = dist(rng);
  for (int64_t r = 0; r < b_rows; ++r)
    for (int64_t c = 0; c < b_cols; ++c) o.B[size_t(r * o.ldb + c)] = dist(rng);
  o.C.assign(size_t(std::max<int64_t>(M * o.ldc, 1)), 0.0f);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) o.C[size_t(i * o.ldc + j)] = dist(rng);
  return o;
}

float a_at(const Operands& o, int64_t i, int64_t k) {
  return o.ta ? o.A[size_t(k * o.lda + i)] : o.A[size_t(i * o.lda + k)];
}
float b_at(const Operands& o, int64_t k, int64_t j) {
  return o.tb ? o.B[size_t(j * o.ldb + k)] : o.B[size_t(k * o.ldb + j)];
}

// Runs `fn` and compares with a double-precision reference. With accumulate=false, C is
// pre-filled with NaN (and the padding of each row with a sentinel that must survive).
// bf16: the reference multiplies the operands rounded to bf16 (sgemm_bf16's contract:
// exact products of the rounded values, fp32 sums), with the fp32 tolerance.
void check(GemmFn fn, bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t pad,
           bool accumulate, uint32_t seed = 1, bool bf16 = false) {
  SCOPED_TRACE(::testing::Message() << "ta=" << ta << " tb=" << tb << " M=" << M << " N=" << N
                                    << " K=" << K << " pad=" << pad << " acc=" << accumulate);
  Operands o = make(ta, tb, M, N, K, pad, seed);
  const float sentinel = -12345.0f;
  std::vector<float> c0 = o.C;
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j)
      if (!accumulate) o.C[size_t(i * o.ldc + j)] = std::numeric_limits<float>::quiet_NaN();
    for (int64_t j = N; j < o.ldc; ++j) o.C[size_t(i * o.ldc + j)] = sentinel;
  }
  std::vector<float> row_sums(size_t(M + 1), sentinel);  // one past the end must survive
  fn(ta, tb, M, N, K, o.A.data(), o.lda, o.B.data(), o.ldb, o.C.data(), o.ldc, accumulate, nullptr,
     row_sums.data());
  // op(A)'s row sums: exactly the chain k in order in double (whatever the path and split).
  for (int64_t i = 0; i < M; ++i) {
    double sum = 0.0;
    for (int64_t k = 0; k < K; ++k) sum += a_at(o, i, k);
    EXPECT_EQ(row_sums[size_t(i)], static_cast<float>(sum)) << "row sum " << i;
  }
  EXPECT_EQ(row_sums[size_t(M)], sentinel) << "row sums written past M";

  const double tol = 1e-5 * std::sqrt(double(std::max<int64_t>(K, 1)));
  int failures = 0;
  for (int64_t i = 0; i < M && failures < 5; ++i) {
    for (int64_t j = 0; j < N && failures < 5; ++j) {
      double ref = accumulate ? double(c0[size_t(i * o.ldc + j)]) : 0.0;
      double mag = std::fabs(ref);
      for (int64_t k = 0; k < K; ++k) {
        const float a = a_at(o, i, k), b = b_at(o, k, j);
        const double p = bf16 ? double(round_to_bf16(a)) * double(round_to_bf16(b)) : double(a) * double(b);
        ref += p;
        mag += std::fabs(p);
      }
      const double got = o.C[size_t(i * o.ldc + j)];
      if (!(std::fabs(got - ref) <= tol * std::max(mag, 1.0))) {
        ++failures;
        ADD_FAILURE() << "C[" << i << "," << j << "] = " << got << ", expected " << ref;
      }
    }
    for (int64_t j = N; j < o.ldc; ++j)
      if (o.C[size_t(i * o.ldc + j)] != sentinel) {
        ++failures;
        ADD_FAILURE() << "wrote past row end at C[" << i << "," << j << "]";
      }
  }
}

const int64_t kSizes[] = {1, 2, 3, 7, 13, 16, 31, 32, 33, 47, 64, 65, 100, 129, 257};
constexpr int kNumSizes = int(sizeof(kSizes) / sizeof(kSizes[0]));

// A deterministic mix of (M, N, K) triples from kSizes: every size appears in every
// position, with small and large sizes crossed, without running all 15^3 combinations.
std::vector<std::array<int64_t, 3>> shape_mix() {
  std::vector<std::array<int64_t, 3>> shapes;
  for (int a = 0; a < kNumSizes; ++a) {
    shapes.push_back({kSizes[a], kSizes[(a * 7 + 3) % kNumSizes], kSizes[(a * 11 + 5) % kNumSizes]});
    shapes.push_back({kSizes[(a * 4 + 1) % kNumSizes], kSizes[a], kSizes[(a * 2 + 9) % kNumSizes]});
    shapes.push_back({kSizes[(a * 13 + 6) % kNumSizes], kSizes[(a * 8 + 2) % kNumSizes], kSizes[a]});
  }
  return shapes;
}

void check_all_shapes(GemmFn fn, bool bf16 = false) {
  uint32_t seed = 7;
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    for (const auto& s : shape_mix()) {
      const bool acc = (seed % 2) == 0;
      const int64_t pad = (seed % 3) == 0 ? 0 : int64_t(seed % 5 + 1);
      check(fn, ta, tb, s[0], s[1], s[2], pad, acc, seed++, bf16);
    }
  }
}

TEST(Gemm, KernelName) {
  const std::string name = sparo::cpu::sgemm_kernel_name();
  EXPECT_FALSE(name.empty());
  if (__builtin_cpu_supports("avx512f"))
    EXPECT_EQ(name.rfind("avx512", 0), 0u) << name;
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    EXPECT_EQ(name, "avx2 6x16");
  else
    EXPECT_EQ(name, "eigen");
}

TEST(Gemm, MixedShapesAllTransposes) { check_all_shapes(&sgemm); }

TEST(Gemm, EigenFallbackMixedShapes) { check_all_shapes(&sparo::cpu::detail::sgemm_eigen); }

// The AVX2 kernel, also on AVX-512 CPUs (where sgemm does not take it): mixed shapes, and the
// blocking's boundaries (several K blocks of 256, NB of 256, the column split, the row split).
TEST(Gemm, Avx2KernelMixedShapesAndBlockBoundaries) {
  if (!sparo::cpu::detail::cpu_has_avx2()) GTEST_SKIP() << "this CPU has no AVX2 + FMA";
  const GemmFn avx2 = &sparo::cpu::detail::sgemm_avx2;
  check_all_shapes(avx2);
  check(avx2, false, false, 300, 45, 600, 5, false);
  check(avx2, true, true, 150, 70, 513, 2, true);
  check(avx2, false, true, 50, 700, 520, 1, false);
  check(avx2, true, false, 2, 4133, 97, 0, true);
  check(avx2, true, false, 600, 40, 1000, 3, false);
}

// On the SIMD kernels a row of C is the same chain of FMAs whatever the other rows: one image
// or text alone gives the same bits as in a batch (the Eigen fallback does not promise this:
// its edge rows take other code paths).
TEST(Gemm, ARowDoesNotDependOnTheOtherRows) {
  std::vector<GemmFn> paths;  // sgemm_bf16 without AVX512_BF16 rounds and calls sgemm
  if (std::string(sparo::cpu::sgemm_kernel_name()) != "eigen") paths = {&sgemm, &sgemm_bf16};
  if (sparo::cpu::detail::cpu_has_avx2()) paths.push_back(&sparo::cpu::detail::sgemm_avx2);
  for (GemmFn fn : paths)
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      const int64_t M = 50, N = 300, K = 200;
      SCOPED_TRACE(::testing::Message() << "ta=" << ta << " tb=" << tb);
      Operands o = make(ta, tb, M, N, K, 0, 21);
      std::vector<float> all(size_t(M * N));
      fn(ta, tb, M, N, K, o.A.data(), o.lda, o.B.data(), o.ldb, all.data(), N, false, nullptr, nullptr);
      for (int64_t i0 : {0, 7, 49})
        for (int64_t rows : {1, 2, 5}) {
          if (i0 + rows > M) continue;
          // Rows i0.. of op(A) on their own: a copy, so that no pointer offset can help.
          std::vector<float> a(size_t(rows * K));
          for (int64_t i = 0; i < rows; ++i)
            for (int64_t k = 0; k < K; ++k)
              a[size_t(i * K + k)] = ta ? o.A[size_t(k * o.lda + i0 + i)] : o.A[size_t((i0 + i) * o.lda + k)];
          std::vector<float> part(size_t(rows * N));
          fn(false, tb, rows, N, K, a.data(), K, o.B.data(), o.ldb, part.data(), N, false, nullptr, nullptr);
          EXPECT_EQ(std::memcmp(part.data(), all.data() + i0 * N, part.size() * sizeof(float)), 0)
              << "rows " << i0 << ".." << i0 + rows - 1;
        }
    }
}

// The AVX2 kernel reads a row-major A in place when its micro-panels sweep at most 256
// columns, and packs it otherwise or when A's rows lie a multiple of 4 KiB apart: the same
// FMAs either way, so the same bits. Here the same product with A's rows 1024 floats apart
// (packed) and 300 + pad apart (in place), row counts with and without an edge panel, one
// and three K blocks, both B layouts, overwriting and accumulating.
TEST(Gemm, Avx2ARowMajorInPlaceOrPackedSameBits) {
  if (!sparo::cpu::detail::cpu_has_avx2()) GTEST_SKIP() << "this CPU has no AVX2 + FMA";
  const GemmFn avx2 = &sparo::cpu::detail::sgemm_avx2;
  for (const auto& [M, N, K] : std::vector<std::array<int64_t, 3>>{{53, 192, 300}, {300, 40, 700}, {1200, 256, 96}})
    for (bool tb : {false, true})
      for (bool accumulate : {false, true}) {
        SCOPED_TRACE(::testing::Message() << M << "x" << N << "x" << K << " tb=" << tb << " acc=" << accumulate);
        const Operands o = make(false, tb, M, N, K, 3, 5);
        std::vector<float> far(size_t(M * 1024), 1e30f);  // the same A, rows 4 KiB apart
        for (int64_t i = 0; i < M; ++i) std::copy_n(o.A.data() + i * o.lda, K, far.data() + i * 1024);
        std::vector<float> in_place = o.C, packed = o.C;
        avx2(false, tb, M, N, K, o.A.data(), o.lda, o.B.data(), o.ldb, in_place.data(), o.ldc, accumulate, nullptr,
             nullptr);
        avx2(false, tb, M, N, K, far.data(), 1024, o.B.data(), o.ldb, packed.data(), o.ldc, accumulate, nullptr,
             nullptr);
        EXPECT_EQ(std::memcmp(in_place.data(), packed.data(), packed.size() * sizeof(float)), 0);
        check(avx2, false, tb, M, N, K, 3, accumulate, 5);
      }
}

TEST(Gemm, EveryTransposeAccumulateAndPadding) {
  for (int t = 0; t < 4; ++t)
    for (bool acc : {false, true})
      for (int64_t pad : {0, 3, 16}) {
        check(&sgemm, t & 1, t & 2, 33, 47, 65, pad, acc);
        check(&sgemm, t & 1, t & 2, 13, 100, 257, pad, acc);
      }
}

TEST(Gemm, TinyAndDegenerate) {
  for (int t = 0; t < 4; ++t)
    for (int64_t M : {1, 2, 3})
      for (int64_t N : {1, 2, 17})
        for (int64_t K : {1, 2, 3}) {
          check(&sgemm, t & 1, t & 2, M, N, K, 1, false);
          check(&sgemm, t & 1, t & 2, M, N, K, 0, true);
        }
}

TEST(Gemm, LargeBlocksCrossBoundaries) {
  // Several packed depth blocks (K), row blocks (M) and a column block boundary (N > 4096),
  // with edges everywhere, plain and with both operands transposed.
  check(&sgemm, false, false, 300, 45, 600, 5, false);
  check(&sgemm, true, true, 150, 70, 513, 2, true);
  check(&sgemm, false, true, 3, 4200, 300, 1, false);
  check(&sgemm, true, false, 2, 4133, 97, 0, true);
  // A weight gradient's shape (Gᵀ·x): row split over a transposed A, three K blocks, whose
  // row sums (the bias gradient) check() compares too.
  check(&sgemm, true, false, 600, 40, 1000, 3, false);
}

TEST(Gemm, KZero) {
  for (bool acc : {false, true}) {
    for (GemmFn fn : every_path()) {
      const int64_t M = 5, N = 7, ldc = 9;
      std::vector<float> C(size_t(M * ldc), std::numeric_limits<float>::quiet_NaN());
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) C[size_t(i * ldc + j)] = acc ? 2.5f : NAN;
      const float a = 1.0f, b = 1.0f;
      std::vector<float> row_sums(size_t(M), NAN);
      fn(false, false, M, N, 0, &a, 1, &b, N, C.data(), ldc, acc, nullptr, row_sums.data());
      for (float s : row_sums) EXPECT_EQ(s, 0.0f);
      for (int64_t i = 0; i < M; ++i) {
        for (int64_t j = 0; j < N; ++j) EXPECT_EQ(C[size_t(i * ldc + j)], acc ? 2.5f : 0.0f);
        for (int64_t j = N; j < ldc; ++j) EXPECT_TRUE(std::isnan(C[size_t(i * ldc + j)]));
      }
    }
  }
}

TEST(Gemm, EmptyMOrNIsNoOp) {
  float a = 1.0f, b = 1.0f, c = 42.0f;
  sgemm(false, false, 0, 1, 1, &a, 1, &b, 1, &c, 1, false);
  sgemm(false, false, 1, 0, 1, &a, 1, &b, 1, &c, 1, false);
  // N = 0 still sums A's rows when asked.
  const float a2[2] = {1.5f, 2.0f};
  float sum = 0.0f;
  sgemm(true, false, 1, 0, 2, a2, 1, &b, 1, &c, 1, false, nullptr, &sum);
  EXPECT_EQ(sum, 3.5f);
  sgemm(true, true, 0, 0, 0, &a, 1, &b, 1, &c, 1, false);
  EXPECT_EQ(c, 42.0f);
}

// `n` floats whose last element is immediately followed by an inaccessible page, so any
// read past the end of an operand faults (masked-off vector lanes do not).
class GuardedFloats {
 public:
  explicit GuardedFloats(size_t n) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    const size_t bytes = n * sizeof(float);
    const size_t data_pages = (bytes + page - 1) / page;
    total_ = (data_pages + 1) * page;
    void* p = mmap(nullptr, total_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    base_ = static_cast<char*>(p);
    if (mprotect(base_ + data_pages * page, page, PROT_NONE) != 0) throw std::bad_alloc();
    data_ = reinterpret_cast<float*>(base_ + data_pages * page - bytes);
  }
  ~GuardedFloats() { munmap(base_, total_); }
  GuardedFloats(const GuardedFloats&) = delete;
  GuardedFloats& operator=(const GuardedFloats&) = delete;
  float* data() { return data_; }

 private:
  char* base_ = nullptr;
  size_t total_ = 0;
  float* data_ = nullptr;
};

// Operands packed tight (ld = row length) and ending exactly at a guard page: no packing
// or edge path may read (or, for C, write) beyond the last element.
TEST(Gemm, NoAccessPastTheEnd) {
  const int64_t shapes[][3] = {{1, 1, 1},  {13, 37, 29}, {31, 17, 3},
                               {5, 100, 40}, {12, 32, 16}, {40, 70, 400}};
  for (GemmFn fn : every_path())
    for (int t = 0; t < 4; ++t)
      for (const auto& s : shapes) {
        const bool ta = t & 1, tb = t & 2;
        const int64_t M = s[0], N = s[1], K = s[2];
        SCOPED_TRACE(::testing::Message() << "ta=" << ta << " tb=" << tb << " " << M << "x" << N
                                          << "x" << K);
        Operands o = make(ta, tb, M, N, K, 0, 11);
        GuardedFloats A(o.A.size()), B(o.B.size()), C(o.C.size());
        std::memcpy(A.data(), o.A.data(), o.A.size() * sizeof(float));
        std::memcpy(B.data(), o.B.data(), o.B.size() * sizeof(float));
        std::memcpy(C.data(), o.C.data(), o.C.size() * sizeof(float));
        fn(ta, tb, M, N, K, A.data(), o.lda, B.data(), o.ldb, C.data(), o.ldc, true, nullptr, nullptr);
        // Same call on ordinary memory must give the same bits.
        fn(ta, tb, M, N, K, o.A.data(), o.lda, o.B.data(), o.ldb, o.C.data(), o.ldc, true, nullptr, nullptr);
        EXPECT_EQ(std::memcmp(C.data(), o.C.data(), o.C.size() * sizeof(float)), 0);
      }
}

// The split over tasks is along M and N only, so any thread count gives the same bits.
TEST(Gemm, BitwiseIdenticalAcrossThreadCounts) {
  struct Case {
    bool ta, tb;
    int64_t M, N, K;
  };
  // Between them these take every way of dividing the work: columns split (one task per
  // thread, each packing its own B), rows split with B packed by one or several tasks,
  // several K blocks, thin and wide operands.
  const Case cases[] = {{false, false, 257, 300, 700}, {true, false, 520, 96, 129},
                        {false, true, 16, 1000, 300},  {true, true, 129, 257, 33},
                        {false, false, 2000, 64, 64},  {false, true, 600, 200, 800}};
  for (GemmFn fn : every_path()) {
    for (const Case& c : cases) {
      SCOPED_TRACE(::testing::Message() << c.M << "x" << c.N << "x" << c.K);
      Operands o = make(c.ta, c.tb, c.M, c.N, c.K, 1, 3);
      std::vector<float> results[3];
      int idx = 0;
      for (int threads : {1, 2, 2}) {
        tbb::global_control limit(tbb::global_control::max_allowed_parallelism, size_t(threads));
        std::vector<float> C = o.C;
        fn(c.ta, c.tb, c.M, c.N, c.K, o.A.data(), o.lda, o.B.data(), o.ldb, C.data(), o.ldc,
           idx == 2, nullptr, nullptr);
        results[idx++] = std::move(C);
      }
      ASSERT_EQ(results[0].size(), results[1].size());
      EXPECT_EQ(std::memcmp(results[0].data(), results[1].data(), results[0].size() * sizeof(float)), 0);
      // Accumulate on 2 threads from the original C, then compare with 1-thread accumulate.
      tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 1);
      std::vector<float> C1 = o.C;
      fn(c.ta, c.tb, c.M, c.N, c.K, o.A.data(), o.lda, o.B.data(), o.ldb, C1.data(), o.ldc, true, nullptr, nullptr);
      EXPECT_EQ(std::memcmp(results[2].data(), C1.data(), C1.size() * sizeof(float)), 0);
    }
  }
}

// Batched use (as in the matmul kernel): sgemm called from inside parallel tasks, itself
// running parallel tasks, must give the same bits as the same calls made one by one.
TEST(Gemm, NestedInsideParallelTasks) {
  const int batch = 6;
  const int64_t M = 150, N = 170, K = 200;  // large enough for sgemm to split the work
  std::vector<Operands> ops;
  for (int b = 0; b < batch; ++b) ops.push_back(make(b % 2, b % 3 == 0, M, N, K, 1, 100 + b));
  std::vector<std::vector<float>> serial(batch), nested(batch);
  for (int b = 0; b < batch; ++b) {
    Operands& o = ops[size_t(b)];
    serial[size_t(b)] = o.C;
    sgemm(o.ta, o.tb, M, N, K, o.A.data(), o.lda, o.B.data(), o.ldb, serial[size_t(b)].data(),
          o.ldc, b % 2 == 1);
    nested[size_t(b)] = o.C;
  }
  tbb::parallel_for(0, batch, [&](int b) {
    Operands& o = ops[size_t(b)];
    sgemm(o.ta, o.tb, M, N, K, o.A.data(), o.lda, o.B.data(), o.ldb, nested[size_t(b)].data(),
          o.ldc, b % 2 == 1);
  });
  for (int b = 0; b < batch; ++b)
    EXPECT_EQ(std::memcmp(serial[size_t(b)].data(), nested[size_t(b)].data(),
                          serial[size_t(b)].size() * sizeof(float)),
              0)
        << "batch entry " << b;
}

// The epilogue sees every element of C exactly once, and only after its last product: here it
// copies each block it is given into a second matrix and counts the visits. Shapes that split
// the work every way (columns, rows, several K blocks), K = 0 (C zeroed or kept), and every
// entry point, on 1 and 2 threads.
TEST(Gemm, EpilogueSeesEveryFinishedElementOnce) {
  struct Copy {
    const float* C;
    int64_t ldc;
    float* seen;
    std::atomic<int>* visits;
  };
  const GemmEpilogue copy{[](const void* context, int64_t row0, int64_t col0, int64_t rows, int64_t cols) {
                            const Copy& c = *static_cast<const Copy*>(context);
                            for (int64_t i = row0; i < row0 + rows; ++i)
                              for (int64_t j = col0; j < col0 + cols; ++j) {
                                c.seen[i * c.ldc + j] = c.C[i * c.ldc + j];
                                c.visits[i * c.ldc + j].fetch_add(1);
                              }
                          },
                          nullptr};
  const int64_t shapes[][3] = {{257, 300, 700}, {16, 1000, 300}, {2000, 64, 64}, {13, 37, 29}, {5, 7, 0}};
  for (GemmFn fn : every_path())
    for (int threads : {1, 2})
      for (const auto& s : shapes)
        for (bool acc : {false, true}) {
          const int64_t M = s[0], N = s[1], K = s[2];
          SCOPED_TRACE(::testing::Message() << M << "x" << N << "x" << K << " threads " << threads << " acc " << acc);
          tbb::global_control limit(tbb::global_control::max_allowed_parallelism, size_t(threads));
          Operands o = make(false, true, M, N, K, 1, 5);
          std::vector<float> seen(o.C.size(), std::numeric_limits<float>::quiet_NaN());
          std::vector<std::atomic<int>> visits(o.C.size());
          const Copy context{o.C.data(), o.ldc, seen.data(), visits.data()};
          GemmEpilogue e = copy;
          e.context = &context;
          fn(false, true, M, N, K, o.A.data(), o.lda, o.B.data(), o.ldb, o.C.data(), o.ldc, acc, &e, nullptr);
          int wrong = 0;
          for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j) {
              const size_t at = size_t(i * o.ldc + j);
              if ((visits[at].load() != 1 || std::memcmp(&seen[at], &o.C[at], sizeof(float)) != 0) && ++wrong <= 3)
                ADD_FAILURE() << "C[" << i << "][" << j << "]: " << visits[at].load() << " visits, saw " << seen[at]
                              << ", final " << o.C[at];
            }
          for (int64_t i = 0; i < M; ++i)  // the padding is not C
            EXPECT_EQ(visits[size_t(i * o.ldc + N)].load(), 0) << "row " << i;
        }
}

}  // namespace

// ---- bf16 inputs, fp32 accumulation -------------------------------------------------------

float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

TEST(GemmBf16, RoundsToNearestEven) {
  EXPECT_EQ(round_to_bf16(1.0f), 1.0f);
  EXPECT_EQ(round_to_bf16(from_bits(0x3F808000u)), 1.0f);                   // tie, down to even
  EXPECT_EQ(round_to_bf16(from_bits(0x3F818000u)), from_bits(0x3F820000u));  // tie, up to even
  EXPECT_EQ(round_to_bf16(from_bits(0x3F808001u)), from_bits(0x3F810000u));  // above the tie
  EXPECT_EQ(round_to_bf16(-from_bits(0x3F80FFFFu)), -from_bits(0x3F810000u));
  EXPECT_EQ(round_to_bf16(std::numeric_limits<float>::max()), std::numeric_limits<float>::infinity());
  EXPECT_EQ(round_to_bf16(-std::numeric_limits<float>::infinity()), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(round_to_bf16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(std::isnan(round_to_bf16(from_bits(0x7F800001u))));  // a NaN whose payload is all low bits
}

TEST(GemmBf16, KernelName) {
  const std::string name = sparo::cpu::sgemm_bf16_kernel_name();
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16"))
    EXPECT_EQ(name.rfind("avx512_bf16", 0), 0u) << name;
  else if (!__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    EXPECT_EQ(name, "avx2 6x16 (rounded fp32)");
  else
    EXPECT_EQ(name, "emulated (rounded fp32)");
}

TEST(GemmBf16, MixedShapesAllTransposes) {
  for (GemmFn fn : bf16_paths()) check_all_shapes(fn, true);
}

// The AVX2 path rounds while it packs: exactly the AVX2 kernel on rounded copies (the same
// rounding, the same chain of FMAs), including NaN, infinities, ties and a value that rounds
// up into infinity, on every transpose and across K blocks and edges.
TEST(GemmBf16, Avx2RoundingWhilePackingIsTheKernelOnRoundedCopies) {
  if (!sparo::cpu::detail::cpu_has_avx2()) GTEST_SKIP() << "this CPU has no AVX2 + FMA";
  for (int t = 0; t < 4; ++t)
    for (const auto& s : std::vector<std::array<int64_t, 3>>{{13, 47, 33}, {50, 300, 520}, {7, 17, 3}}) {
      const bool ta = t & 1, tb = t & 2;
      const int64_t M = s[0], N = s[1], K = s[2];
      SCOPED_TRACE(::testing::Message() << "ta=" << ta << " tb=" << tb << " " << M << "x" << N << "x" << K);
      Operands o = make(ta, tb, M, N, K, 2, 31);
      o.A[0] = from_bits(0x3F808000u);             // a tie, rounds down to even
      o.A[1] = from_bits(0x3F818000u);             // a tie, rounds up to even
      o.B[0] = std::numeric_limits<float>::max();  // rounds up into infinity
      o.B[1] = std::numeric_limits<float>::quiet_NaN();
      o.A[size_t(o.lda)] = -std::numeric_limits<float>::infinity();
      std::vector<float> a = o.A, b = o.B, expected = o.C, got = o.C;
      for (float& x : a) x = round_to_bf16(x);
      for (float& x : b) x = round_to_bf16(x);
      sparo::cpu::detail::sgemm_avx2(ta, tb, M, N, K, a.data(), o.lda, b.data(), o.ldb, expected.data(), o.ldc, true);
      sparo::cpu::detail::sgemm_avx2_bf16(ta, tb, M, N, K, o.A.data(), o.lda, o.B.data(), o.ldb, got.data(), o.ldc,
                                          true);
      EXPECT_EQ(std::memcmp(expected.data(), got.data(), got.size() * sizeof(float)), 0);
    }
}

TEST(GemmBf16, EdgesAndLargeBlocks) {
  for (GemmFn fn : bf16_paths()) {
    for (int t = 0; t < 4; ++t)
      for (bool acc : {false, true})
        for (int64_t K : {1, 2, 3, 31, 32, 33, 65}) check(fn, t & 1, t & 2, 13, 47, K, 3, acc, 5, true);
    // Several depth blocks (768 for bf16) with an odd remainder, a column block boundary.
    check(fn, false, false, 300, 45, 1601, 5, false, 9, true);
    check(fn, true, true, 150, 70, 771, 2, true, 9, true);
    check(fn, false, true, 3, 4200, 301, 1, false, 9, true);
    check(fn, true, false, 2, 4133, 97, 0, true, 9, true);
    check(fn, true, false, 600, 40, 1601, 3, false, 9, true);  // row split, A transposed, odd K
  }
}

// The products really are of bf16 values: against the unrounded operands the error is of
// bf16's size (8 significant bits), far above what fp32 inputs would give.
TEST(GemmBf16, ErrorIsOfBf16SizeAgainstUnroundedInputs) {
  const int64_t M = 40, N = 50, K = 300;
  Operands o = make(false, false, M, N, K, 0, 21);
  for (GemmFn fn : bf16_paths()) {
    std::vector<float> C(size_t(M * N));
    fn(false, false, M, N, K, o.A.data(), o.lda, o.B.data(), o.ldb, C.data(), N, false, nullptr, nullptr);
    double worst = 0.0;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double ref = 0.0, mag = 0.0;
        for (int64_t k = 0; k < K; ++k) {
          ref += double(a_at(o, i, k)) * double(b_at(o, k, j));
          mag += std::fabs(double(a_at(o, i, k)) * double(b_at(o, k, j)));
        }
        worst = std::max(worst, std::fabs(double(C[size_t(i * N + j)]) - ref) / mag);
      }
    EXPECT_GT(worst, 1e-4) << "no sign of bf16 rounding";
    EXPECT_LT(worst, 1.0 / 128) << "more than bf16's rounding";
  }
}

TEST(GemmBf16, NanAndInfPropagate) {
  for (GemmFn fn : bf16_paths()) {
    Operands o = make(false, false, 20, 40, 37, 0, 4);
    o.A[size_t(3 * o.lda + 5)] = std::numeric_limits<float>::quiet_NaN();  // row 3
    o.B[size_t(7 * o.ldb + 9)] = std::numeric_limits<float>::infinity();   // column 9
    std::vector<float> C(size_t(20 * 40));
    fn(false, false, 20, 40, 37, o.A.data(), o.lda, o.B.data(), o.ldb, C.data(), 40, false, nullptr, nullptr);
    for (int64_t i = 0; i < 20; ++i)
      for (int64_t j = 0; j < 40; ++j) {
        const float c = C[size_t(i * 40 + j)];
        if (i == 3) EXPECT_TRUE(std::isnan(c)) << i << "," << j;
        else if (j == 9) EXPECT_TRUE(std::isinf(c) || std::isnan(c)) << i << "," << j;
        else EXPECT_TRUE(std::isfinite(c)) << i << "," << j;
      }
  }
}

// ---- B packed once (sgemm_prepacked) ------------------------------------------------------

namespace {

// A packer and the product whose bits its panels must reproduce.
struct PackedPath {
  const char* name;
  std::shared_ptr<const sparo::cpu::PackedB> (*pack)(bool, int64_t, int64_t, const float*, int64_t);
  GemmFn reference;
};

std::vector<PackedPath> packed_paths() {
  std::vector<PackedPath> paths{
      {"pack_b f32", [](bool tb, int64_t K, int64_t N, const float* B, int64_t ldb) {
         return sparo::cpu::pack_b(tb, K, N, B, ldb, false);
       }, &sgemm},
      {"pack_b bf16", [](bool tb, int64_t K, int64_t N, const float* B, int64_t ldb) {
         return sparo::cpu::pack_b(tb, K, N, B, ldb, true);
       }, &sgemm_bf16}};
  if (sparo::cpu::detail::cpu_has_avx2()) {
    paths.push_back({"pack_b_avx2 f32", [](bool tb, int64_t K, int64_t N, const float* B, int64_t ldb) {
                       return sparo::cpu::detail::pack_b_avx2(tb, K, N, B, ldb, false);
                     }, &sparo::cpu::detail::sgemm_avx2});
    paths.push_back({"pack_b_avx2 bf16", [](bool tb, int64_t K, int64_t N, const float* B, int64_t ldb) {
                       return sparo::cpu::detail::pack_b_avx2(tb, K, N, B, ldb, true);
                     }, &sparo::cpu::detail::sgemm_avx2_bf16});
  }
  return paths;
}

}  // namespace

// The panels are the ones sgemm packs per call, so the product is sgemm's to the bit: for
// both layouts of B, shapes that take the column split (small M) and the row split, several
// K blocks and several column blocks (N > 4096), ragged edges, padded leading dimensions,
// accumulate or not, an epilogue, 1 and 2 threads. B is overwritten with NaN after packing:
// the product must not read it again.
TEST(GemmPrepacked, SameBitsAsSgemmWithoutReadingBAgain) {
  struct Case {
    int64_t M, N, K;
  };
  const Case cases[] = {{50, 2304, 768}, {1, 17, 3}, {13, 37, 29}, {257, 300, 700}, {600, 200, 800},
                        {7, 4200, 40},   {300, 4111, 65}};
  const GemmEpilogue times_two{[](const void* context, int64_t row0, int64_t col0, int64_t rows, int64_t cols) {
                                 const auto& [C, ldc] = *static_cast<const std::pair<float*, int64_t>*>(context);
                                 for (int64_t i = row0; i < row0 + rows; ++i)
                                   for (int64_t j = col0; j < col0 + cols; ++j) C[i * ldc + j] *= 2.0f;
                               },
                               nullptr};
  int packed_any = 0;
  for (const PackedPath& path : packed_paths())
    for (bool tb : {true, false})
      for (const Case& c : cases) {
        SCOPED_TRACE(::testing::Message() << path.name << " tb=" << tb << " " << c.M << "x" << c.N << "x" << c.K);
        Operands o = make(false, tb, c.M, c.N, c.K, 3, 17);
        std::vector<float> B = o.B;
        const auto packed = path.pack(tb, c.K, c.N, B.data(), o.ldb);
        if (!packed) continue;  // this CPU's path packs per call (bf16 without AVX512_BF16)
        ++packed_any;
        EXPECT_EQ(packed->K, c.K);
        EXPECT_EQ(packed->N, c.N);
        std::fill(B.begin(), B.end(), std::numeric_limits<float>::quiet_NaN());
        for (int threads : {1, 2})
          for (bool acc : {false, true}) {
            tbb::global_control limit(tbb::global_control::max_allowed_parallelism, size_t(threads));
            std::vector<float> expected = o.C, got = o.C;
            std::pair<float*, int64_t> e_context{expected.data(), o.ldc}, g_context{got.data(), o.ldc};
            GemmEpilogue e = times_two, g = times_two;
            e.context = &e_context;
            g.context = &g_context;
            path.reference(false, tb, c.M, c.N, c.K, o.A.data(), o.lda, o.B.data(), o.ldb, expected.data(), o.ldc,
                           acc, &e, nullptr);
            sparo::cpu::sgemm_prepacked(c.M, o.A.data(), o.lda, *packed, got.data(), o.ldc, acc, &g);
            EXPECT_EQ(std::memcmp(expected.data(), got.data(), got.size() * sizeof(float)), 0)
                << "threads " << threads << " acc " << acc;
          }
      }
  if (sparo::cpu::detail::cpu_has_avx2()) {
    EXPECT_GT(packed_any, 0);
  }
}

TEST(GemmPrepacked, EmptyProductsPackNothing) {
  const float b[4] = {1, 2, 3, 4};
  EXPECT_EQ(sparo::cpu::pack_b(true, 0, 4, b, 1, false), nullptr);
  EXPECT_EQ(sparo::cpu::pack_b(true, 4, 0, b, 4, false), nullptr);
}
