// sgemm: dispatch between the SIMD kernels (gemm_simd.cpp: AVX-512, else AVX2 + FMA) and an
// Eigen fallback for other CPUs.
#include "engine/cpu/gemm.h"

// GCC 12 reports the intrinsics' deliberately undefined merge operands
// (_mm512_undefined_ps) inside Eigen's AVX-512 transposes as uninitialised; the warning
// points into the compiler's own headers, which are first included here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Core>
#pragma GCC diagnostic pop

#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace sparo::cpu {

namespace detail {
// Defined in gemm_simd.cpp. Require M, N, K > 0 and an AVX-512F (avx2: AVX2 + FMA) CPU.
void sgemm_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                  bool accumulate, const GemmEpilogue* epilogue, float* a_row_sums);
void sgemm_avx512_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                       int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                       bool accumulate, const GemmEpilogue* epilogue, float* a_row_sums);
void sgemm_avx2_kernel(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                       int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate,
                       const GemmEpilogue* epilogue, float* a_row_sums);
void sgemm_avx2_bf16_kernel(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                            int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate,
                            const GemmEpilogue* epilogue, float* a_row_sums);
std::shared_ptr<const PackedB> pack_b_avx512(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb);
std::shared_ptr<const PackedB> pack_b_avx512_bf16(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb);
std::shared_ptr<const PackedB> pack_b_avx2_kernel(bool trans_b, int64_t K, int64_t N, const float* B,
                                                  int64_t ldb, bool bf16);
void sgemm_prepacked_kernel(int64_t M, const float* A, int64_t lda, const PackedB& B, float* C, int64_t ldc,
                            bool accumulate, const GemmEpilogue* epilogue);
const char* avx512_kernel_name();
const char* avx512_bf16_kernel_name();
const char* avx2_kernel_name();
}  // namespace detail

namespace {

bool have_avx512() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return yes;
}

bool have_avx2() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0 && __builtin_cpu_supports("fma") != 0;
  }();
  return yes;
}

bool have_avx512_bf16() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return have_avx512() && __builtin_cpu_supports("avx512bf16") != 0;
  }();
  return yes;
}

// The empty cases every entry point shares: nothing to do for M or N = 0 (but A's row sums);
// C = 0 (or left as it is when accumulating) for K = 0. Returns true when it handled the call.
bool handle_empty(bool trans_a, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, float* C,
                  int64_t ldc, bool accumulate, const GemmEpilogue* epilogue, float* a_row_sums) {
  if (M <= 0) return true;
  if (N > 0 && K > 0) return false;
  if (a_row_sums) detail::row_sums_of_op_a(trans_a, M, K, A, lda, a_row_sums);
  if (N <= 0) return true;
  if (!accumulate)
    for (int64_t i = 0; i < M; ++i) std::memset(C + i * ldc, 0, size_t(N) * sizeof(float));
  if (epilogue) epilogue->apply(epilogue->context, 0, 0, M, N);
  return true;
}

thread_local int serial_gemm_depth = 0;

}  // namespace

SerialGemmScope::SerialGemmScope() { ++serial_gemm_depth; }
SerialGemmScope::~SerialGemmScope() { --serial_gemm_depth; }
bool SerialGemmScope::active() { return serial_gemm_depth > 0; }

void detail::row_sums_of_op_a(bool trans_a, int64_t M, int64_t K, const float* A, int64_t lda, float* sums) {
  // Either way each row's chain is k in order; the loops follow A's memory.
  if (!trans_a) {
    for (int64_t i = 0; i < M; ++i) {
      double acc = 0.0;
      for (int64_t k = 0; k < K; ++k) acc += A[i * lda + k];
      sums[i] = static_cast<float>(acc);
    }
    return;
  }
  std::vector<double> acc(size_t(M), 0.0);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t i = 0; i < M; ++i) acc[size_t(i)] += A[k * lda + i];
  for (int64_t i = 0; i < M; ++i) sums[i] = static_cast<float>(acc[size_t(i)]);
}

namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;
using MutMap = Eigen::Map<RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;

// Rows of C per task. Fixed (independent of the thread count) so that Eigen, whose blocking
// depends on the operand sizes, computes every row chunk the same way on any thread count.
constexpr int64_t kEigenRows = 64;

template <class OpA, class OpB>
void eigen_rows(const OpA& a, const OpB& b, MutMap& c, int64_t i0, int64_t rows, bool accumulate) {
  auto cb = c.middleRows(i0, rows);
  if (accumulate)
    cb.noalias() += a.middleRows(i0, rows) * b;
  else
    cb.noalias() = a.middleRows(i0, rows) * b;
}

template <class OpA, class OpB>
void eigen_gemm(const OpA& a, const OpB& b, MutMap& c, bool accumulate) {
  const int64_t M = c.rows();
  const int64_t chunks = (M + kEigenRows - 1) / kEigenRows;
  auto body = [&](int64_t t) {
    const int64_t i0 = t * kEigenRows;
    eigen_rows(a, b, c, i0, std::min(kEigenRows, M - i0), accumulate);
  };
  const double macs = double(c.rows()) * double(c.cols()) * double(a.cols());
  if (chunks == 1 || macs < 64.0 * 64.0 * 64.0 || SerialGemmScope::active()) {
    for (int64_t t = 0; t < chunks; ++t) body(t);
  } else {
    tbb::this_task_arena::isolate(
        [&] { tbb::parallel_for(int64_t(0), chunks, body, tbb::simple_partitioner{}); });
  }
}

}  // namespace

void detail::sgemm_eigen(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                         const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                         int64_t ldc, bool accumulate, const GemmEpilogue* epilogue, float* a_row_sums) {
  if (handle_empty(trans_a, M, N, K, A, lda, C, ldc, accumulate, epilogue, a_row_sums)) return;
  if (a_row_sums) row_sums_of_op_a(trans_a, M, K, A, lda, a_row_sums);
  MutMap c(C, M, N, Eigen::OuterStride<>(ldc));
  const ConstMap a = trans_a ? ConstMap(A, K, M, Eigen::OuterStride<>(lda))
                             : ConstMap(A, M, K, Eigen::OuterStride<>(lda));
  const ConstMap b = trans_b ? ConstMap(B, N, K, Eigen::OuterStride<>(ldb))
                             : ConstMap(B, K, N, Eigen::OuterStride<>(ldb));
  if (!trans_a && !trans_b) eigen_gemm(a, b, c, accumulate);
  if (!trans_a && trans_b) eigen_gemm(a, b.transpose(), c, accumulate);
  if (trans_a && !trans_b) eigen_gemm(a.transpose(), b, c, accumulate);
  if (trans_a && trans_b) eigen_gemm(a.transpose(), b.transpose(), c, accumulate);
  // The fallback finishes C as a whole: one block.
  if (epilogue) epilogue->apply(epilogue->context, 0, 0, M, N);
}

bool detail::cpu_has_avx2() { return have_avx2(); }

void detail::sgemm_avx2(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                        int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate,
                        const GemmEpilogue* epilogue, float* a_row_sums) {
  if (!have_avx2()) throw std::logic_error("sgemm_avx2 called on a CPU without AVX2 + FMA");
  if (handle_empty(trans_a, M, N, K, A, lda, C, ldc, accumulate, epilogue, a_row_sums)) return;
  sgemm_avx2_kernel(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, epilogue, a_row_sums);
}

void detail::sgemm_avx2_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                             int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate,
                             const GemmEpilogue* epilogue, float* a_row_sums) {
  if (!have_avx2()) throw std::logic_error("sgemm_avx2_bf16 called on a CPU without AVX2 + FMA");
  if (handle_empty(trans_a, M, N, K, A, lda, C, ldc, accumulate, epilogue, a_row_sums)) return;
  sgemm_avx2_bf16_kernel(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, epilogue, a_row_sums);
}

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
           int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate,
           const GemmEpilogue* epilogue, float* a_row_sums) {
  if (!have_avx512()) {
    if (have_avx2())
      return detail::sgemm_avx2(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, epilogue, a_row_sums);
    return detail::sgemm_eigen(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, epilogue, a_row_sums);
  }
  if (handle_empty(trans_a, M, N, K, A, lda, C, ldc, accumulate, epilogue, a_row_sums)) return;
  detail::sgemm_avx512(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, epilogue, a_row_sums);
}

const char* sgemm_kernel_name() {
  if (have_avx512()) return detail::avx512_kernel_name();
  return have_avx2() ? detail::avx2_kernel_name() : "eigen";
}

void detail::sgemm_bf16_emulated(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                                 const float* A, int64_t lda, const float* B, int64_t ldb,
                                 float* C, int64_t ldc, bool accumulate, const GemmEpilogue* epilogue,
                                 float* a_row_sums) {
  if (handle_empty(trans_a, M, N, K, A, lda, C, ldc, accumulate, epilogue, a_row_sums)) return;
  if (a_row_sums) row_sums_of_op_a(trans_a, M, K, A, lda, a_row_sums);  // of A itself, not its rounding
  // Rounded copies, stored tight (leading dimension = row length).
  auto rounded = [](const float* src, int64_t rows, int64_t cols, int64_t ld) {
    std::vector<float> out(size_t(rows * cols));
    tbb::parallel_for(int64_t(0), rows, [&](int64_t r) {
      for (int64_t c = 0; c < cols; ++c) out[size_t(r * cols + c)] = round_to_bf16(src[r * ld + c]);
    });
    return out;
  };
  const int64_t a_cols = trans_a ? M : K, b_cols = trans_b ? K : N;
  const std::vector<float> a = rounded(A, trans_a ? K : M, a_cols, lda);
  const std::vector<float> b = rounded(B, trans_b ? N : K, b_cols, ldb);
  sgemm(trans_a, trans_b, M, N, K, a.data(), a_cols, b.data(), b_cols, C, ldc, accumulate, epilogue);
}

void sgemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate,
                const GemmEpilogue* epilogue, float* a_row_sums) {
  // An AVX-512 CPU without AVX512_BF16 keeps its faster f32 kernel, on rounded copies.
  if (!have_avx512() && have_avx2())
    return detail::sgemm_avx2_bf16(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, epilogue, a_row_sums);
  if (!have_avx512_bf16())
    return detail::sgemm_bf16_emulated(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, epilogue,
                                       a_row_sums);
  if (handle_empty(trans_a, M, N, K, A, lda, C, ldc, accumulate, epilogue, a_row_sums)) return;
  detail::sgemm_avx512_bf16(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, epilogue, a_row_sums);
}

bool sgemm_bf16_is_native() { return have_avx512_bf16(); }

const char* sgemm_bf16_kernel_name() {
  if (have_avx512_bf16()) return detail::avx512_bf16_kernel_name();
  return !have_avx512() && have_avx2() ? "avx2 6x16 (rounded fp32)" : "emulated (rounded fp32)";
}

// The packed B of the kernel that sgemm (sgemm_bf16) dispatches to on this CPU.
std::shared_ptr<const PackedB> pack_b(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb, bool bf16) {
  if (K <= 0 || N <= 0) return nullptr;  // nothing to pack: sgemm handles the empty products
  if (!have_avx512()) return have_avx2() ? detail::pack_b_avx2(trans_b, K, N, B, ldb, bf16) : nullptr;
  if (!bf16) return detail::pack_b_avx512(trans_b, K, N, B, ldb);
  return have_avx512_bf16() ? detail::pack_b_avx512_bf16(trans_b, K, N, B, ldb) : nullptr;
}

std::shared_ptr<const PackedB> detail::pack_b_avx2(bool trans_b, int64_t K, int64_t N, const float* B,
                                                   int64_t ldb, bool bf16) {
  if (!have_avx2()) throw std::logic_error("pack_b_avx2 called on a CPU without AVX2 + FMA");
  return K > 0 && N > 0 ? detail::pack_b_avx2_kernel(trans_b, K, N, B, ldb, bf16) : nullptr;
}

void sgemm_prepacked(int64_t M, const float* A, int64_t lda, const PackedB& B, float* C, int64_t ldc,
                     bool accumulate, const GemmEpilogue* epilogue) {
  if (handle_empty(false, M, B.N, B.K, A, lda, C, ldc, accumulate, epilogue, nullptr)) return;
  detail::sgemm_prepacked_kernel(M, A, lda, B, C, ldc, accumulate, epilogue);
}

}  // namespace sparo::cpu
