// Single-precision GEMM for the CPU backend.
//
//   C[M,N] (= or +=) op(A)[M,K] · op(B)[K,N]
//
// op(A) = A when trans_a is false (A stored row-major [M,K], leading dimension lda),
//       = Aᵀ when trans_a is true  (A stored row-major [K,M], leading dimension lda);
// likewise for B. C is row-major [M,N] with leading dimension ldc.
// accumulate=false overwrites C (C may hold garbage, even NaN); accumulate=true adds to it.
//
// The work is split over oneTBB tasks; results are bitwise identical for any thread
// count (the split is along M and N only, never along K).
#pragma once
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace sparo::cpu {

// Work on C's blocks as they are finished, while they are still in cache (e.g. an activation
// that would otherwise be a pass of its own over memory): apply(context, row0, col0, rows,
// cols) is called once for every block of C, rows [row0, row0 + rows) × columns [col0,
// col0 + cols), after its last product was added, from the thread that computed it. The
// blocks tile C exactly once; they may run in any order and at the same time.
struct GemmEpilogue {
  void (*apply)(const void* context, int64_t row0, int64_t col0, int64_t rows, int64_t cols);
  const void* context;
};

// a_row_sums (optional, M floats) also receives Σ_k op(A)[i, k] for every row i of op(A),
// summed in double in k order and rounded to float once: a linear layer's bias gradient is the
// row sums of the A of its weight gradient dW = Gᵀ·x, taken here while A is packed instead of
// in a pass over G of its own. From A's fp32 values (in sgemm_bf16 too); the same bits on every
// path and thread count.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
           const float* A, int64_t lda, const float* B, int64_t ldb,
           float* C, int64_t ldc, bool accumulate, const GemmEpilogue* epilogue = nullptr,
           float* a_row_sums = nullptr);

// While one lives, the GEMMs that its thread calls run on that thread alone: for callers that
// already spread many small products over the threads (attention's heads), where splitting
// each product again only adds task overhead.
class SerialGemmScope {
 public:
  SerialGemmScope();
  ~SerialGemmScope();
  SerialGemmScope(const SerialGemmScope&) = delete;
  SerialGemmScope& operator=(const SerialGemmScope&) = delete;
  static bool active();
};

// Name of the kernel sgemm dispatches to on this CPU ("avx512 12x32", "avx2 6x16" on x86-64
// CPUs without AVX-512, "eigen" elsewhere).
const char* sgemm_kernel_name();

// The same product with bf16 inputs and fp32 accumulation (mixed precision): every element
// of A and B is rounded to bfloat16 (to nearest even), products are exact, sums are fp32.
// AVX512_BF16's vdpbf16ps where the CPU has it (which also treats denormal inputs as zero);
// on AVX2 CPUs without AVX-512 the AVX2 kernel, rounding the operands as it packs them (as fast
// as fp32, not faster); elsewhere the rounded operands are copied and multiplied by sgemm: the
// same rounding, a different summation order, slower. Bitwise identical for any thread count on a given CPU.
void sgemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                const float* A, int64_t lda, const float* B, int64_t ldb,
                float* C, int64_t ldc, bool accumulate, const GemmEpilogue* epilogue = nullptr,
                float* a_row_sums = nullptr);
const char* sgemm_bf16_kernel_name();  // "avx512_bf16 12x32", "avx2 6x16 (rounded fp32)" or "emulated (rounded fp32)"
// True where sgemm_bf16 multiplies bf16 pairs in hardware (AVX512_BF16), the one case where it
// is faster than sgemm.
bool sgemm_bf16_is_native();

// ---- op(B) packed once ---------------------------------------------------------------------
// sgemm copies op(B) into the kernel's panels on every call. For a B that many products use
// unchanged (a layer's weight at inference) pack it once: sgemm_prepacked then reads the
// panels in place. At small M that pass is much of the work: a ViT-B/32 at batch 1 (M = 50)
// packs each weight for 50 rows of output. The product is sgemm's (sgemm_bf16's) to the bit.
struct PackedB {
  int format = 0;      // the kernel whose panels these are (gemm_simd.cpp)
  bool bf16 = false;   // made for sgemm_bf16
  int64_t K = 0, N = 0;
  int64_t kc_step = 0, nc_step = 0;   // the blocking sgemm uses for this K and N
  std::vector<int64_t> block_offset;  // [column block * K blocks + K block], in floats
  std::shared_ptr<float[]> panels;    // 64-byte aligned
};
// Null where this CPU's sgemm (sgemm_bf16 with bf16) has no packed kernel (the Eigen and the
// emulated bf16 paths): call sgemm there.
std::shared_ptr<const PackedB> pack_b(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb,
                                      bool bf16);
// C[M,N] (+)= A[M,K] · op(B) for A row-major (not transposed); N and K are B's.
void sgemm_prepacked(int64_t M, const float* A, int64_t lda, const PackedB& B, float* C, int64_t ldc,
                     bool accumulate, const GemmEpilogue* epilogue = nullptr);

// x rounded to the nearest bfloat16 (ties to even), returned as the float it represents;
// NaN stays NaN, values beyond bf16's range become ±inf. Inline: the AVX2 packs call it per
// element.
inline float round_to_bf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) {
    bits |= 0x00400000u;  // NaN: keep it a (quiet) NaN once the low half is cut
  } else {
    bits += 0x7FFFu + ((bits >> 16) & 1u);  // ties to even; overflows into inf as it should
  }
  bits &= 0xFFFF0000u;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

namespace detail {
// The portable fallback (Eigen, split over oneTBB tasks along M), callable directly so the
// tests cover it on AVX-512 machines too. Same contract as sgemm.
void sgemm_eigen(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                 const float* A, int64_t lda, const float* B, int64_t ldb,
                 float* C, int64_t ldc, bool accumulate, const GemmEpilogue* epilogue = nullptr,
                 float* a_row_sums = nullptr);
// The AVX2 + FMA kernel that sgemm uses on CPUs without AVX-512, callable directly so the tests
// cover it on AVX-512 machines too; same contract as sgemm. Throws std::logic_error where
// cpu_has_avx2() is false.
bool cpu_has_avx2();
void sgemm_avx2(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                const float* A, int64_t lda, const float* B, int64_t ldb,
                float* C, int64_t ldc, bool accumulate, const GemmEpilogue* epilogue = nullptr,
                float* a_row_sums = nullptr);
// sgemm_bf16 on AVX2 CPUs without AVX-512: the same kernel on operands rounded to bf16 as
// they are packed; the bits of sgemm_avx2 on rounded copies, without the copies.
void sgemm_avx2_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                     const float* A, int64_t lda, const float* B, int64_t ldb,
                     float* C, int64_t ldc, bool accumulate, const GemmEpilogue* epilogue = nullptr,
                     float* a_row_sums = nullptr);
// pack_b for the AVX2 kernel (sgemm_avx2, or sgemm_avx2_bf16 with bf16), for the tests on
// AVX-512 machines; sgemm_prepacked multiplies with it. Throws std::logic_error where
// cpu_has_avx2() is false.
std::shared_ptr<const PackedB> pack_b_avx2(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb,
                                           bool bf16);
// sgemm_bf16's path for CPUs without AVX512_BF16, callable directly for the tests.
void sgemm_bf16_emulated(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                         const float* A, int64_t lda, const float* B, int64_t ldb,
                         float* C, int64_t ldc, bool accumulate, const GemmEpilogue* epilogue = nullptr,
                         float* a_row_sums = nullptr);
// a_row_sums on its own (the chain every path computes: k in order, in double).
void row_sums_of_op_a(bool trans_a, int64_t M, int64_t K, const float* A, int64_t lda, float* sums);
}  // namespace detail

}  // namespace sparo::cpu
