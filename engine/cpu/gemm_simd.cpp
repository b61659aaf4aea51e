// SIMD GEMM: BLIS-style packing + register-blocked micro-kernel, in formats sharing one
// driver: AVX-512 f32 (FMA), AVX-512 bf16 inputs with f32 sums (AVX512_BF16: operands rounded
// to bf16 while packed, pairs of k multiplied by vdpbf16ps; see Bf16Format), and AVX2 + FMA for
// CPUs without AVX-512 (6x16 on ymm registers, optionally rounding to bf16 while packing; see
// Avx2Format).
//
// Only the functions marked SPARO_AVX512 (SPARO_AVX2) contain AVX-512 (AVX2) instructions; they
// are compiled for that target whatever the project's -march is, and sgemm() (gemm.cpp) calls
// into them only after __builtin_cpu_supports said yes. The AVX-512 functions use no
// header templates that would be instantiated for that target (such instantiations are
// shared with other translation units under the ODR and could put AVX-512 code on a CPU
// without it); the driver (blocking, threading, buffers) is ordinary code.
//
// Loop structure, for C[M,N] (+)= op(A)[M,K] · op(B)[K,N]:
//
//   for jc in N step NC                      packed B block, in L3, shared by all threads
//     for pc in K step KC                    KC depends on K only -> bitwise reproducible
//       pack op(B)[pc:+kc, jc:+nc]           NR-wide k-major panels (parallel over panels;
//                                            with one row chunk, inside the tile tasks);
//                                            sgemm_prepacked: made once by pack_whole_b
//       parallel over tiles (rows i0..i1) x (cols n0..n1) of the block:
//         for is in i0..i1 step MC
//           pack op(A)[is:+mc, pc:+kc]       MR-tall k-major panels (per task, L2)
//           for jb in n0..n1 step NB         B sub-block (kc x NB) stays in L2
//             for ir in is..is+mc step MR    A micro-panel (kc x MR) stays in L1
//               for jr in jb..jb+NB step NR  B micro-panels stream from L2
//                 micro-kernel MR x NR       24 zmm accumulators, masked edge stores
//                                            (AVX2: 12 ymm accumulators)
//
// Every element of C is produced by the same chain of FMAs (k in order, block by block of
// KC) whatever the tiling along M and N, so the result depends neither on the thread count nor
// on the other rows of the product (one image alone gives the bits it gets in a batch).
//
// Parameters, measured on this project's Zen 4 machine (2 cores, L1d 32 KiB, L2 1 MiB,
// L3 32 MiB; peak 112 GFLOP/s per core): see the tuning notes next to the constants.
#include "engine/cpu/gemm.h"

#include <immintrin.h>

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#define SPARO_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
// The bf16 path's functions (vcvtne2ps2bf16, vdpbf16ps) are called only after
// __builtin_cpu_supports("avx512bf16") said yes.
#define SPARO_AVX512_BF16 \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,fma")))

namespace sparo::cpu::detail {

namespace {

// ---- blocking parameters ------------------------------------------------------------------
// Chosen by measurement on the project's machine (GFLOP/s, best of interleaved rounds of
// medians, 1 thread unless noted; "mean" = mean over the 7 bench_gemm shapes):
//  - register block: alone in L1, 12x32 and 16x16 run at 112 (= peak), 6x64 and 8x48 at
//    109, 14x32 at 106; as whole GEMMs (mean) 12x32 106.5, 14x32 105.5, 16x16 105.4,
//    6x64 104.4, 8x48 103.9. 12x32 uses 24 accumulators + 2 B vectors + 1 A broadcast.
//  - loop order: A micro-panel in L1 with B micro-panels streaming from L2 (below) beat the
//    classic B-micro-panel-in-L1 order: mean 106.5 vs 105.4, 2 threads 207.9 vs 204.4.
//  - KC 384 (A micro-panel 18 KiB): KC 256 / 384 / 512 gave mean 106.0 / 106.5 / 106.7 and
//    96.7 / 103.1 / 101.8 on 8320x768x192 (fewer passes over C); 2 threads 205 / 208 / 208.
//  - MC 72 / 144 / 240 / 384: 106.8 / 106.4 / 105.8 / 105.7 (noise level); NB 512 vs
//    unlimited: no measurable difference up to N = 2048, kept so wide N stays in L2.
//  - prefetching the C tile at kernel entry: +8-12 % with the classic order, +1 % now.
// The overrides exist for re-tuning on another machine: -DSPARO_GEMM_KC=... etc.
#ifndef SPARO_GEMM_MR
#define SPARO_GEMM_MR 12
#endif
#ifndef SPARO_GEMM_NV
#define SPARO_GEMM_NV 2
#endif
#ifndef SPARO_GEMM_KC
#define SPARO_GEMM_KC 384
#endif
#ifndef SPARO_GEMM_MC
#define SPARO_GEMM_MC 144
#endif
#ifndef SPARO_GEMM_NB
#define SPARO_GEMM_NB 512
#endif
#ifndef SPARO_GEMM_NC
#define SPARO_GEMM_NC 4096
#endif

constexpr int kMR = SPARO_GEMM_MR;       // rows of the register block
constexpr int kNV = SPARO_GEMM_NV;       // zmm vectors per row of the register block
constexpr int kNR = 16 * kNV;            // columns of the register block
constexpr int64_t kKC = SPARO_GEMM_KC;   // depth of a packed block
constexpr int64_t kMC = SPARO_GEMM_MC;   // rows of a packed A block (multiple of kMR)
constexpr int64_t kNB = SPARO_GEMM_NB;   // columns of B swept per A micro-panel (L2)
constexpr int64_t kNC = SPARO_GEMM_NC;   // columns of a packed B block (multiple of kNR)
static_assert(kMR <= 16, "A panels are packed with one 16x16 transpose");
static_assert(kMC % kMR == 0 && kNB % kNR == 0 && kNC % kNR == 0,
              "blocks must hold whole panels");

// The AVX2 + FMA format, for x86-64 CPUs without AVX-512 (AMD Zen 1-3, Intel's client cores
// before and after AVX-512). 16 ymm registers: the 6x16 block (12 accumulators, 2 B vectors,
// 1 A broadcast). Zen 3's L2 is 512 KiB (Zen 4's 1 MiB): KC 256 and NB 256 keep the packed A
// block (144 x 256) and a B sub-block (256 x 256) in it together.
constexpr int kAvx2MR = 6;
constexpr int kAvx2NV = 2;  // ymm vectors per row
constexpr int kAvx2NR = 8 * kAvx2NV;
#ifndef SPARO_GEMM_AVX2_KC
#define SPARO_GEMM_AVX2_KC 256
#endif
#ifndef SPARO_GEMM_AVX2_NB
#define SPARO_GEMM_AVX2_NB 256
#endif
constexpr int64_t kAvx2KC = SPARO_GEMM_AVX2_KC;
constexpr int64_t kAvx2NB = SPARO_GEMM_AVX2_NB;
static_assert(kAvx2MR <= 8, "A panels are packed with one 8x8 transpose");
static_assert(kMC % kAvx2MR == 0 && kAvx2NB % kAvx2NR == 0 && kNC % kAvx2NR == 0,
              "blocks must hold whole panels");

// Column split threshold for the packed A block (rows x kc), see run().
constexpr double kSplitColumnsBelow = 2e5;
// A packed B block (kc x nc) at least this big is packed by several tasks: 186 vs 149
// GFLOP/s at 256^3 on 2 threads (row split).
constexpr double kParallelPackB = 32768.0;

// Below this many multiply-adds the call runs on the calling thread (no task overhead):
// measured on 2 threads, 64^3 broke even and 96^3 gained 20 %.
constexpr double kInlineMacs = 64.0 * 64.0 * 64.0;

// ------------------------------------------------------------------------------------------
// Shuffle helpers. The plain intrinsics pass _mm512_undefined_ps() as the merge source,
// which GCC 12 reports as -Wmaybe-uninitialized once inlined; the zero-masking forms with
// an all-ones mask compile to the same unmasked instructions without that noise.
SPARO_AVX512 inline __m512 unpacklo_ps(__m512 a, __m512 b) {
  return _mm512_maskz_unpacklo_ps(__mmask16(0xFFFF), a, b);
}
SPARO_AVX512 inline __m512 unpackhi_ps(__m512 a, __m512 b) {
  return _mm512_maskz_unpackhi_ps(__mmask16(0xFFFF), a, b);
}
SPARO_AVX512 inline __m512 unpacklo_pd(__m512 a, __m512 b) {
  return _mm512_castpd_ps(
      _mm512_maskz_unpacklo_pd(__mmask8(0xFF), _mm512_castps_pd(a), _mm512_castps_pd(b)));
}
SPARO_AVX512 inline __m512 unpackhi_pd(__m512 a, __m512 b) {
  return _mm512_castpd_ps(
      _mm512_maskz_unpackhi_pd(__mmask8(0xFF), _mm512_castps_pd(a), _mm512_castps_pd(b)));
}
template <int IMM>
SPARO_AVX512 inline __m512 shuffle_f32x4(__m512 a, __m512 b) {
  return _mm512_maskz_shuffle_f32x4(__mmask16(0xFFFF), a, b, IMM);
}

// 16x16 transpose of zmm rows: out[j] lane i = in[i] lane j.
SPARO_AVX512 inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4g + j]: per 128-bit lane L, column 4L + j of rows 4g..4g+3.
  __m512 u[16];
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = unpacklo_pd(t[4 * g], t[4 * g + 2]);
    u[4 * g + 1] = unpackhi_pd(t[4 * g], t[4 * g + 2]);
    u[4 * g + 2] = unpacklo_pd(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = unpackhi_pd(t[4 * g + 1], t[4 * g + 3]);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512 lo0 = shuffle_f32x4<0x88>(u[j], u[4 + j]);      // cols j, j+8 (rows 0-7)
    const __m512 hi0 = shuffle_f32x4<0xDD>(u[j], u[4 + j]);      // cols j+4, j+12
    const __m512 lo1 = shuffle_f32x4<0x88>(u[8 + j], u[12 + j]); // same, rows 8-15
    const __m512 hi1 = shuffle_f32x4<0xDD>(u[8 + j], u[12 + j]);
    r[j] = shuffle_f32x4<0x88>(lo0, lo1);
    r[j + 8] = shuffle_f32x4<0xDD>(lo0, lo1);
    r[j + 4] = shuffle_f32x4<0x88>(hi0, hi1);
    r[j + 12] = shuffle_f32x4<0xDD>(hi0, hi1);
  }
}

SPARO_AVX512 inline __mmask16 lane_mask(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u);
}

// Pack `rows` (<= 16) source rows that are contiguous along k (row r starts at src + r*ld)
// into a k-major panel: dst[k*width + col0 + r] = src[r*ld + k] for k < kc, r < rows;
// lanes rows..min(16, width-col0) are written as zeros. Reads never go past row r's kc
// elements (masked loads).
SPARO_AVX512 void pack_transposed(const float* src, int64_t ld, int rows, int64_t kc, float* dst,
                                  int width, int col0) {
  const __mmask16 store_mask = lane_mask(std::min(16, width - col0));
  __m512 r[16];
  for (int64_t k0 = 0; k0 < kc; k0 += 16) {
    const int64_t kk = std::min<int64_t>(16, kc - k0);
    const __mmask16 load_mask = lane_mask(kk);
    for (int i = 0; i < 16; ++i)
      r[i] = i < rows ? _mm512_maskz_loadu_ps(load_mask, src + i * ld + k0) : _mm512_setzero_ps();
    transpose16(r);
    float* d = dst + k0 * width + col0;
    for (int j = 0; j < kk; ++j) _mm512_mask_storeu_ps(d + j * width, store_mask, r[j]);
  }
}

// How many word rows (pairs of k) ahead the k-major packs fetch their source.
#ifndef SPARO_PACK_AHEAD
#define SPARO_PACK_AHEAD 4
#endif
constexpr int64_t kPackAhead = SPARO_PACK_AHEAD;

// Pack an operand that is already k-major into consecutive panels of `width` columns:
// panel q holds dst[q*width*kc + k*width + c] = src[k*ld + q*width + c] for
// q*width + c < cols, zeros past that. Each source row is read from start to end once
// (sequential streams prefetch well; reading panel by panel would stride over the rows).
// sums (when not null): sums[c] += src[k*ld + c] for every k in order (see Problem::a_sums).
SPARO_AVX512 void pack_direct(const float* src, int64_t ld, int64_t cols, int64_t kc, float* dst,
                              int width, double* sums) {
  const int64_t panels = (cols + width - 1) / width;
  for (int64_t k = 0; k < kc; ++k) {
    const float* s = src + k * ld;
    float* d = dst + k * width;
    if (sums)
      for (int64_t c = 0; c < cols; ++c) sums[c] += s[c];
    if (k + 2 * kPackAhead < kc)
      for (int64_t c = 0; c < cols; c += 16) __builtin_prefetch(s + 2 * kPackAhead * ld + c, 0, 3);
    for (int64_t q = 0; q < panels; ++q) {
      const int64_t left = cols - q * width;
      for (int c0 = 0; c0 < width; c0 += 16) {
        const __mmask16 load_mask = lane_mask(std::max<int64_t>(0, std::min<int64_t>(left, width) - c0));
        const __mmask16 store_mask = lane_mask(width - c0);
        _mm512_mask_storeu_ps(d + q * width * kc + c0, store_mask,
                              _mm512_maskz_loadu_ps(load_mask, s + q * width + c0));
      }
    }
  }
}

// ---- bf16 packing: a 32-bit word holds two consecutive k (bf16, the lower k in the low
// half), the pair vdpbf16ps multiplies and adds; a panel of kc values has ceil(kc/2) words
// per lane, an odd kc's last word padded with a zero. Rounding is to nearest even
// (vcvtne2ps2bf16, which also treats denormal inputs as zero).

// Like pack_transposed: `rows` (<= 16) rows contiguous along k, into word panels:
// word w of lane col0 + r = (src[r*ld + 2w], src[r*ld + 2w + 1]).
SPARO_AVX512_BF16 void pack_pairs_transposed(const float* src, int64_t ld, int rows, int64_t kc,
                                             float* dst, int width, int col0) {
  const __mmask16 store_mask = lane_mask(std::min(16, width - col0));
  __m512 r[16];
  for (int64_t k0 = 0; k0 < kc; k0 += 32) {
    const int64_t kk = std::min<int64_t>(32, kc - k0);
    const __mmask16 lo_mask = lane_mask(std::min<int64_t>(16, kk));
    const __mmask16 hi_mask = lane_mask(std::max<int64_t>(0, kk - 16));
    for (int i = 0; i < 16; ++i) {
      if (i < rows) {
        const float* s = src + i * ld + k0;
        const __m512 lo = _mm512_maskz_loadu_ps(lo_mask, s);
        const __m512 hi = _mm512_maskz_loadu_ps(hi_mask, s + 16);
        r[i] = _mm512_castsi512_ps(__m512i(_mm512_cvtne2ps_pbh(hi, lo)));  // k0..k0+31 in order
      } else {
        r[i] = _mm512_setzero_ps();
      }
    }
    transpose16(r);  // r[w] lane i = word w of row i
    float* d = dst + (k0 / 2) * width + col0;
    for (int w = 0; w < (kk + 1) / 2; ++w) _mm512_mask_storeu_ps(d + w * width, store_mask, r[w]);
  }
}

// Like pack_direct for an operand that is k-major: rows 2w and 2w+1 of the source become
// word row w, interleaved column by column.
SPARO_AVX512_BF16 void pack_pairs_direct(const float* src, int64_t ld, int64_t cols, int64_t kc,
                                         float* dst, int width, double* sums) {
  // 16-bit lanes: out[2c] = in[c] (row 2w, column c), out[2c + 1] = in[16 + c] (row 2w + 1).
  alignas(64) static const uint16_t interleave[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,
                                                      21, 6, 22, 7, 23, 8,  24, 9,  25, 10, 26,
                                                      11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i index = _mm512_load_si512(interleave);
  const int64_t words = (kc + 1) / 2;
  const int64_t panels = (cols + width - 1) / width;
  for (int64_t w = 0; w < words; ++w) {
    const float* s0 = src + 2 * w * ld;
    const bool has_odd = 2 * w + 1 < kc;
    if (sums) {  // the fp32 values, k in order
      for (int64_t c = 0; c < cols; ++c) sums[c] += s0[c];
      if (has_odd)
        for (int64_t c = 0; c < cols; ++c) sums[c] += s0[ld + c];
    }
    if (2 * (w + kPackAhead) + 1 < kc)
      for (int64_t c = 0; c < cols; c += 16) {
        __builtin_prefetch(s0 + 2 * kPackAhead * ld + c, 0, 3);
        __builtin_prefetch(s0 + (2 * kPackAhead + 1) * ld + c, 0, 3);
      }
    float* d = dst + w * width;
    for (int64_t q = 0; q < panels; ++q) {
      const int64_t left = cols - q * width;
      for (int c0 = 0; c0 < width; c0 += 16) {
        const __mmask16 load_mask = lane_mask(std::max<int64_t>(0, std::min<int64_t>(left, width) - c0));
        const __mmask16 store_mask = lane_mask(width - c0);
        const __m512 even = _mm512_maskz_loadu_ps(load_mask, s0 + q * width + c0);
        const __m512 odd = has_odd ? _mm512_maskz_loadu_ps(load_mask, s0 + ld + q * width + c0)
                                   : _mm512_setzero_ps();
        const __m512i both = __m512i(_mm512_cvtne2ps_pbh(odd, even));
        _mm512_mask_storeu_ps(d + q * width * words + c0, store_mask,
                              _mm512_castsi512_ps(_mm512_permutexvar_epi16(index, both)));
      }
    }
  }
}

// ------------------------------------------------------------------------------------------
// Micro-kernels: C[0:ROWS, 0:cols] (+)= Ap[kw x MR panel] · Bp[kw x NR panel], NV vectors
// used; kw is the panel depth in 32-bit words (= kc for f32, ceil(kc/2) for bf16 pairs).

// Fetch the C tile (for writing) while the k loop runs: it is touched only at the end, its
// rows are ldc apart and usually not in cache. (Prefetches never fault.)
template <int ROWS, int NV>
SPARO_AVX512 inline void prefetch_tile(const float* C, int64_t ldc) {
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; ++r) {
    __builtin_prefetch(C + r * ldc, 1, 3);
    __builtin_prefetch(C + r * ldc + 16 * NV - 1, 1, 3);
  }
}

template <int ROWS, int NV>
SPARO_AVX512 inline void store_tile(__m512 (&acc)[ROWS][NV], float* C, int64_t ldc, int cols,
                                    bool beta) {
  __mmask16 mask[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) mask[v] = lane_mask(std::max(0, cols - 16 * v));
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; ++r) {
    float* c = C + r * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      __m512 x = acc[r][v];
      if (beta) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask[v], c + 16 * v));
      _mm512_mask_storeu_ps(c + 16 * v, mask[v], x);
    }
  }
}

template <int ROWS, int NV>
SPARO_AVX512 void micro_kernel(int64_t kw, const float* __restrict Ap, const float* __restrict Bp,
                               float* __restrict C, int64_t ldc, int cols, bool beta) {
  prefetch_tile<ROWS, NV>(C, ldc);
  __m512 acc[ROWS][NV];
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();

#pragma GCC unroll 4
  for (int64_t k = 0; k < kw; ++k) {
    __m512 b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = _mm512_load_ps(Bp + 16 * v);
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) {
      const __m512 a = _mm512_set1_ps(Ap[r]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
    }
    Ap += kMR;
    Bp += kNR;
  }
  store_tile<ROWS, NV>(acc, C, ldc, cols, beta);
}

// The same on bf16 pairs: each vdpbf16ps adds a[2w]·b[2w] + a[2w+1]·b[2w+1] (exact products)
// to an fp32 accumulator, twice the multiply-adds of an fp32 FMA per instruction.
template <int ROWS, int NV>
SPARO_AVX512_BF16 void micro_kernel_bf16(int64_t kw, const float* __restrict Ap,
                                         const float* __restrict Bp, float* __restrict C,
                                         int64_t ldc, int cols, bool beta) {
  prefetch_tile<ROWS, NV>(C, ldc);
  __m512 acc[ROWS][NV];
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();

#pragma GCC unroll 4
  for (int64_t k = 0; k < kw; ++k) {
    __m512bh b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = __m512bh(_mm512_load_si512(Bp + 16 * v));
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) {
      // A word of two bf16, broadcast (a move: the bits are not read as a float).
      const __m512bh a = __m512bh(_mm512_castps_si512(_mm512_set1_ps(Ap[r])));
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a, b[v]);
    }
    Ap += kMR;
    Bp += kNR;
  }
  store_tile<ROWS, NV>(acc, C, ldc, cols, beta);
}

// ---- AVX2 + FMA: the f32 format for CPUs without AVX-512 (ymm registers, 8 floats) -------
#define SPARO_AVX2 __attribute__((target("avx2,fma")))

// 8x8 transpose of ymm rows: out[j] lane i = in[i] lane j.
SPARO_AVX2 inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4g + j]: per 128-bit lane L, column 4L + j of rows 4g..4g+3.
  for (int g = 0; g < 2; ++g) {
    u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
    r[j + 4] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
  }
}

// Each lane rounded to the nearest bfloat16, ties to even (round_to_bf16's bits, NaN kept).
SPARO_AVX2 inline __m256 round_to_bf16_avx2(__m256 x) {
  const __m256i bits = _mm256_castps_si256(x);
  const __m256i magnitude = _mm256_and_si256(bits, _mm256_set1_epi32(0x7FFFFFFF));
  const __m256i nan = _mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x7F800000));
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), odd));
  const __m256i quiet = _mm256_or_si256(bits, _mm256_set1_epi32(0x00400000));
  const __m256i out = _mm256_blendv_epi8(rounded, quiet, nan);
  return _mm256_castsi256_ps(_mm256_and_si256(out, _mm256_set1_epi32(int(0xFFFF0000u))));
}

// How far ahead (floats along k) pack_transposed_avx2 fetches each source row. Its reads are
// `rows` short streams at once (a row's kc elements: 1 KiB), too short for the hardware
// prefetcher to pick up; a ViT-B/32 at batch 1 (M = 50, a weight packed for 9 row panels)
// waited on memory: its four products went from 100-107 to 106-112 GFLOP/s on 2 Zen 3 cores
// (medians of 30, interleaved; 32: +2-6 %, 64-256 alike).
constexpr int64_t kTransposeAhead = 128;

// pack_transposed for 8-float vectors: `rows` (<= 8) source rows contiguous along k into lanes
// col0.. of a k-major panel of `width` columns; lanes rows..min(8, width-col0) become zeros.
// Reads never go past row r's kc elements. Round: each value rounded to bf16 on the way.
// Past a row's end the fetch ahead moves to the rows `rows` further on, which is where the
// callers' next panel starts (prefetches never fault, even past the matrix).
template <bool Round>
SPARO_AVX2 void pack_transposed_avx2(const float* src, int64_t ld, int rows, int64_t kc, float* dst,
                                     int width, int col0) {
  const int store_lanes = std::min(8, width - col0);
  __m256 r[8];
  for (int64_t k0 = 0; k0 < kc; k0 += 8) {
    const int kk = int(std::min<int64_t>(8, kc - k0));
    if (k0 % 16 == 0) {  // one fetch per 64-byte line of each row
      const int64_t ahead = k0 + kTransposeAhead;
      for (int i = 0; i < rows; ++i)
        __builtin_prefetch(ahead < kc ? src + i * ld + ahead : src + (i + rows) * ld + (ahead - kc), 0, 3);
    }
    for (int i = 0; i < 8; ++i) {
      if (i >= rows) {
        r[i] = _mm256_setzero_ps();
      } else if (kk == 8) {
        r[i] = _mm256_loadu_ps(src + i * ld + k0);
      } else {  // the last k: a row's tail, zero-padded
        alignas(32) float tail[8] = {};
        std::memcpy(tail, src + i * ld + k0, size_t(kk) * sizeof(float));
        r[i] = _mm256_load_ps(tail);
      }
    }
    if constexpr (Round)
      for (int i = 0; i < rows; ++i) r[i] = round_to_bf16_avx2(r[i]);
    transpose8(r);
    float* d = dst + k0 * width + col0;
    for (int j = 0; j < kk; ++j) {
      if (store_lanes == 8) {
        _mm256_storeu_ps(d + j * width, r[j]);
      } else {  // A's 6-row panels
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, r[j]);
        std::memcpy(d + j * width, lanes, size_t(store_lanes) * sizeof(float));
      }
    }
  }
}

// pack_direct for this format (an operand already k-major), left to the compiler's AVX2
// vectorisation: the same layout, zeros past `cols`, the same row sums (of the values before
// any rounding).
template <bool Round>
SPARO_AVX2 void pack_direct_avx2(const float* src, int64_t ld, int64_t cols, int64_t kc, float* dst,
                                 int width, double* sums) {
  const int64_t panels = (cols + width - 1) / width;
  for (int64_t k = 0; k < kc; ++k) {
    const float* s = src + k * ld;
    float* d = dst + k * width;
    if (sums)
      for (int64_t c = 0; c < cols; ++c) sums[c] += s[c];
    if (k + 2 * kPackAhead < kc)
      for (int64_t c = 0; c < cols; c += 16) __builtin_prefetch(s + 2 * kPackAhead * ld + c, 0, 3);
    for (int64_t q = 0; q < panels; ++q) {
      const int64_t n = std::min<int64_t>(width, cols - q * width);
      float* o = d + q * width * kc;
      if constexpr (Round)
        for (int64_t c = 0; c < n; ++c) o[c] = round_to_bf16(s[q * width + c]);
      else
        for (int64_t c = 0; c < n; ++c) o[c] = s[q * width + c];
      for (int64_t c = n; c < width; ++c) o[c] = 0.0f;
    }
  }
}

// InPlaceA: A's rows read where they lie (row r at Ap + r·lda, k contiguous) instead of from
// a packed panel (Ap[k·MR + r]); the same FMAs in the same order, so the same bits.
template <int ROWS, int NV, bool InPlaceA>
SPARO_AVX2 void micro_kernel_avx2(int64_t kw, const float* __restrict Ap, int64_t lda, const float* __restrict Bp,
                                  float* __restrict C, int64_t ldc, int cols, bool beta) {
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r) __builtin_prefetch(C + r * ldc, 1, 3);
  __m256 acc[ROWS][NV];
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();

#pragma GCC unroll 4
  for (int64_t k = 0; k < kw; ++k) {
    __m256 b[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) b[v] = _mm256_load_ps(Bp + 8 * v);
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; ++r) {
      const __m256 a = _mm256_broadcast_ss(InPlaceA ? Ap + r * lda : Ap + r);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(a, b[v], acc[r][v]);
    }
    Ap += InPlaceA ? 1 : kAvx2MR;
    Bp += kAvx2NR;
  }
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r) {
    float* c = C + r * ldc;
    if (cols == 8 * NV) {
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) {
        __m256 x = acc[r][v];
        if (beta) x = _mm256_add_ps(x, _mm256_loadu_ps(c + 8 * v));
        _mm256_storeu_ps(c + 8 * v, x);
      }
    } else {  // a right edge: through a buffer, never touching C past `cols`
      alignas(32) float row[8 * NV];
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) _mm256_store_ps(row + 8 * v, acc[r][v]);
      for (int j = 0; j < cols; ++j) c[j] = beta ? c[j] + row[j] : row[j];
    }
  }
}

// kernels[nv-1][rows-1] of one micro-kernel template, for register blocks of up to MaxRows
// rows and MaxVectors vectors.
template <template <int, int> class Kernel, int MaxRows, int MaxVectors>
struct KernelTable {
  using KernelFn = std::remove_const_t<decltype(Kernel<1, 1>::run)>;
  KernelFn fn[MaxVectors][MaxRows];
  constexpr KernelTable() : fn{} { fill<0>(); }
  template <int V>
  constexpr void fill() {
    if constexpr (V < MaxVectors) {
      fill_row<V + 1>(fn[V], std::make_integer_sequence<int, MaxRows>{});
      fill<V + 1>();
    }
  }
  template <int NV, int... R>
  constexpr void fill_row(KernelFn* t, std::integer_sequence<int, R...>) {
    ((t[R] = Kernel<R + 1, NV>::run), ...);
  }
};
template <int ROWS, int NV>
struct F32Kernel {
  static constexpr auto run = &micro_kernel<ROWS, NV>;
};
template <int ROWS, int NV>
struct Bf16Kernel {
  static constexpr auto run = &micro_kernel_bf16<ROWS, NV>;
};

// What differs between the formats: the register block (MR x NR, NR = NV vectors of `lanes`
// floats), the depth of a packed block and the columns of B swept per A micro-panel, how a
// block is packed, how many 32-bit words a depth of kc takes, and the micro-kernels.
// Everything else (blocking along M and N, threading) is shared.
struct F32Format {
  static constexpr int MR = kMR, NR = kNR, lanes = 16;
  static constexpr int64_t NB = kNB;
  static constexpr int64_t kc_max = kKC;
  static int64_t words(int64_t kc) { return kc; }
  static void transposed(const float* src, int64_t ld, int rows, int64_t kc, float* dst, int width,
                         int col0) {
    pack_transposed(src, ld, rows, kc, dst, width, col0);
  }
  static void direct(const float* src, int64_t ld, int64_t cols, int64_t kc, float* dst, int width,
                     double* sums) {
    pack_direct(src, ld, cols, kc, dst, width, sums);
  }
  static constexpr KernelTable<F32Kernel, kMR, kNV> kernels{};
  static constexpr bool reads_a_in_place = false;
  static void micro(int nv, int rows, int64_t kw, const float* Ap, int64_t /*a_ld: 0, packed*/, const float* Bp,
                    float* C, int64_t ldc, int cols, bool beta) {
    kernels.fn[nv - 1][rows - 1](kw, Ap, Bp, C, ldc, cols, beta);
  }
};
struct Bf16Format {
  static constexpr int MR = kMR, NR = kNR, lanes = 16;
  static constexpr int64_t NB = kNB;
  // The same panel bytes as f32's KC (a word holds two k).
  static constexpr int64_t kc_max = 2 * kKC;
  static int64_t words(int64_t kc) { return (kc + 1) / 2; }
  static void transposed(const float* src, int64_t ld, int rows, int64_t kc, float* dst, int width,
                         int col0) {
    pack_pairs_transposed(src, ld, rows, kc, dst, width, col0);
  }
  static void direct(const float* src, int64_t ld, int64_t cols, int64_t kc, float* dst, int width,
                     double* sums) {
    pack_pairs_direct(src, ld, cols, kc, dst, width, sums);
  }
  static constexpr KernelTable<Bf16Kernel, kMR, kNV> kernels{};
  static constexpr bool reads_a_in_place = false;
  static void micro(int nv, int rows, int64_t kw, const float* Ap, int64_t /*a_ld: 0, packed*/, const float* Bp,
                    float* C, int64_t ldc, int cols, bool beta) {
    kernels.fn[nv - 1][rows - 1](kw, Ap, Bp, C, ldc, cols, beta);
  }
};

template <int ROWS, int NV>
struct Avx2Kernel {
  static constexpr auto run = &micro_kernel_avx2<ROWS, NV, false>;
};
template <int ROWS, int NV>
struct Avx2InPlaceKernel {
  static constexpr auto run = &micro_kernel_avx2<ROWS, NV, true>;
};
// Round: sgemm_bf16's format on AVX2 CPUs (operands rounded to bf16 while packed, fp32 FMAs).
template <bool Round>
struct Avx2Format {
  static constexpr int MR = kAvx2MR, NR = kAvx2NR, lanes = 8;
  static constexpr int64_t NB = kAvx2NB;
  static constexpr int64_t kc_max = kAvx2KC;
  static int64_t words(int64_t kc) { return kc; }
  static void transposed(const float* src, int64_t ld, int rows, int64_t kc, float* dst, int width,
                         int col0) {
    pack_transposed_avx2<Round>(src, ld, rows, kc, dst, width, col0);
  }
  static void direct(const float* src, int64_t ld, int64_t cols, int64_t kc, float* dst, int width,
                     double* sums) {
    pack_direct_avx2<Round>(src, ld, cols, kc, dst, width, sums);
  }
  static constexpr KernelTable<Avx2Kernel, kAvx2MR, kAvx2NV> kernels{};
  static constexpr KernelTable<Avx2InPlaceKernel, kAvx2MR, kAvx2NV> kernels_in_place{};
  // A row-major A needs no packing in f32: its rows are streams along k already (rounding to
  // bf16 still needs the pack).
  static constexpr bool reads_a_in_place = !Round;
  // a_ld: 0 for a packed A panel, else A's row stride (A read in place).
  static void micro(int nv, int rows, int64_t kw, const float* Ap, int64_t a_ld, const float* Bp, float* C,
                    int64_t ldc, int cols, bool beta) {
    (a_ld ? kernels_in_place.fn : kernels.fn)[nv - 1][rows - 1](kw, Ap, a_ld, Bp, C, ldc, cols, beta);
  }
};

// op(A)[i0:i0+mc, p0:p0+kc] -> ceil(mc/MR) panels of words(kc)*MR words; with sums (only
// for a transposed A), also sums[i0 + i] += op(A)[i0 + i, k] over the block's k in order.
template <class F>
void pack_a(bool trans, const float* A, int64_t lda, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
            float* dst, double* sums = nullptr) {
  if (trans) {  // A stored [K,M]: k-major already
    F::direct(A + p0 * lda + i0, lda, mc, kc, dst, F::MR, sums ? sums + i0 : nullptr);
    return;
  }
  for (int64_t ip = 0; ip < mc; ip += F::MR) {  // A[M,K]: row i contiguous along k
    const int rows = int(std::min<int64_t>(F::MR, mc - ip));
    F::transposed(A + (i0 + ip) * lda + p0, lda, rows, kc, dst + ip * F::words(kc), F::MR, 0);
  }
}

// op(B)[p0:p0+kc, j0:j0+nc] -> ceil(nc/NR) panels of words(kc)*NR words, panels [jp0, jp1).
template <class F>
void pack_b(bool trans, const float* B, int64_t ldb, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
            int64_t jp0, int64_t jp1, float* dst) {
  const int64_t kw = F::words(kc);
  if (!trans) {  // B[K,N]: k-major already
    const int64_t j = jp0 * F::NR;
    F::direct(B + p0 * ldb + j0 + j, ldb, std::min(nc, jp1 * F::NR) - j, kc, dst + j * kw, F::NR, nullptr);
    return;
  }
  for (int64_t jp = jp0; jp < jp1; ++jp) {  // B stored [N,K]: op(B) column contiguous along k
    const int64_t j = jp * F::NR;
    const int cols = int(std::min<int64_t>(F::NR, nc - j));
    for (int c0 = 0; c0 < F::NR; c0 += F::lanes)
      F::transposed(B + (j0 + j + c0) * ldb + p0, ldb, std::max(0, std::min(F::lanes, cols - c0)), kc,
                    dst + j * kw, F::NR, c0);
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// C tile block: rows [0, mc) x cols [n0, n1) of the current (jc, pc) block, A's rows packed
// (a_ld 0) or read in place with row stride a_ld (Ablock: row 0 at the block's depth). With `ahead`, the
// next ahead_floats of memory that the caller will use are fetched into L2 a slice after
// each micro-kernel, so they arrive while this block computes (prepacked panels come from
// memory, not from a pack that just wrote them: at batch 1 of a ViT-B/32 that gave +2-4 %
// on 2 threads, +4-12 % on 1, interleaved medians of 40 on Zen 3).
template <class F>
void macro_kernel(int64_t mc, int64_t n0, int64_t n1, int64_t kc, const float* Ablock, int64_t a_ld,
                  const float* Bblock, float* C, int64_t ldc, bool beta, const float* ahead = nullptr,
                  int64_t ahead_floats = 0) {
  const int64_t kw = F::words(kc);
  const char* fetch = reinterpret_cast<const char*>(ahead);
  const char* const fetch_end = fetch + ahead_floats * int64_t(sizeof(float));
  const int64_t calls = (mc + F::MR - 1) / F::MR * ((n1 - n0 + F::NR - 1) / F::NR);
  const int64_t lines = (fetch_end - fetch + 63) / 64;
  const int64_t per_call = calls ? (lines + calls - 1) / calls * 64 : 0;
  for (int64_t jb = n0; jb < n1; jb += F::NB) {
    const int64_t jb1 = std::min(n1, jb + F::NB);
    for (int64_t i = 0; i < mc; i += F::MR) {
      const int rows = int(std::min<int64_t>(F::MR, mc - i));
      const float* Ap = Ablock + i * (a_ld ? a_ld : kw);
      float* Crow = C + i * ldc;
      // A read in place: the next row panel's rows are fetched while this one sweeps the
      // columns, a share after each micro-kernel (on the first sweep they come from memory,
      // which a pack would have streamed).
      const float* next = a_ld && i + F::MR < mc ? Ap + F::MR * a_ld : nullptr;
      const int64_t next_rows = next ? std::min<int64_t>(F::MR, mc - i - F::MR) : 0;
      const int64_t row_lines = (kc + 15) / 16 + 1;  // + 1: a row need not start on a line
      const int64_t a_per_call = next ? ceil_div(next_rows * row_lines, ceil_div(jb1 - jb, F::NR)) : 0;
      int64_t fetch_row = 0, fetch_line = 0;
      for (int64_t j = jb; j < jb1; j += F::NR) {
        const int cols = int(std::min<int64_t>(F::NR, jb1 - j));
        F::micro((cols + F::lanes - 1) / F::lanes, rows, kw, Ap, a_ld, Bblock + j * kw, Crow + j, ldc, cols, beta);
        for (const char* stop = std::min(fetch_end, fetch + per_call); fetch < stop; fetch += 64)
          __builtin_prefetch(fetch, 0, 2);
        for (int64_t q = 0; q < a_per_call && fetch_row < next_rows; ++q) {
          __builtin_prefetch(next + fetch_row * a_ld + fetch_line * 16, 0, 3);
          if (++fetch_line == row_lines) fetch_line = 0, ++fetch_row;
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------------
// Buffers: one per thread, grown on demand, 64-byte aligned.
struct Buffer {
  float* ptr = nullptr;
  size_t cap = 0;
  bool busy = false;
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { ::operator delete[](ptr, std::align_val_t(64)); }
  float* get(size_t n) {
    if (n > cap) {
      ::operator delete[](ptr, std::align_val_t(64));
      ptr = nullptr;
      cap = 0;
      ptr = static_cast<float*>(::operator new[](n * sizeof(float), std::align_val_t(64)));
      cap = n;
    }
    return ptr;
  }
};

thread_local Buffer tls_a;        // packed A block, used only inside one task body
thread_local Buffer tls_b;        // packed B block of the calling thread
thread_local Buffer tls_b_group;  // a group of packed B panels, used only inside one task body

int current_threads() {
  const int arena = tbb::this_task_arena::max_concurrency();
  const auto allowed = tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism);
  return int(std::max<int64_t>(1, std::min<int64_t>(arena, int64_t(allowed))));
}

struct Problem {
  bool ta, tb;
  int64_t M, N, K;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float* C;
  int64_t ldc;
  bool accumulate;
  const GemmEpilogue* epilogue;
  // Row sums of a transposed A in double (null: not asked for), added to as A is packed: by
  // the one task whose columns start at 0, so that each row's chain is k in order whatever
  // the split (the row split's K blocks follow each other; run_columns loops them in order).
  double* a_sums;
  // op(B) packed beforehand (sgemm_prepacked), in this format's panels with this blocking;
  // null: pack it here.
  const PackedB* packed = nullptr;
};

// A's row stride when op(A) is read in place rather than packed (0: packed): a row-major A,
// in a format whose kernels can (its rows are streams along k already), swept over at most
// NB columns (each A micro-panel used for one pass over B: with more, the packed panels
// re-read from L2 won, 3-7 % at 1600 x 768 x 768..3072), and not rows a multiple of 4 KiB
// apart, where all MR of them would fall into the same L1 sets. In place, the tiny DINO
// step's ten N = 192 shapes (2560 and 4352 rows) ran 0.945-0.998x the time, median 0.971
// (old and new alternated call by call in one process, 40 pairs each, Zen 3).
template <class F>
int64_t a_in_place_stride(const Problem& p, int64_t columns) {
  return F::reads_a_in_place && !p.ta && columns <= F::NB && p.lda % 1024 != 0 ? p.lda : 0;
}

// How a product is cut into blocks: K into blocks of kc_step (of near-equal size, the last
// one shorter), N into blocks of nc_step columns. A function of K and N only
// (reproducibility); pack_whole_b uses it too.
struct Blocking {
  int64_t kc_step, nc_step;
};
template <class F>
Blocking blocking(int64_t K, int64_t N) {
  const int64_t nkb = ceil_div(K, F::kc_max);
  const int64_t nnb = ceil_div(N, kNC);
  return {ceil_div(K, nkb), ceil_div(ceil_div(N, nnb), F::NR) * F::NR};
}

// The packed B block of columns [jc, ...) and depth [pc, ...) in p.packed.
const float* packed_block(const Problem& p, int64_t jc, int64_t pc) {
  const PackedB& b = *p.packed;
  return b.panels.get() + b.block_offset[size_t((jc / b.nc_step) * ceil_div(b.K, b.kc_step) + pc / b.kc_step)];
}

// The whole product for columns [n0, n1) of C, on one thread, for a small A (the column
// split below): for every K block, all of op(A) is packed once, then the B panels are packed
// a group at a time, kBGroupBytes of them, just before the row panels use them, so they go
// from memory into L2 and are consumed there (packing the task's whole B block first sent
// 1.8 MB through L3 at M = 50, a ViT-B/32 at batch 1).
// Within a group the order is macro_kernel's: an A micro-panel in L1, the B panels from L2.
// K blocks loop inside the task: one fork-join per product, not one per K block. Each C
// element still gets the same chain of FMAs (k in order, block by block).
constexpr int64_t kBGroupBytes = 256 * 1024;

// Columns [n0, n1) lie in the column block that starts at jc.
template <class F>
void run_columns(const Problem& p, int64_t kc_step, int64_t jc, int64_t n0, int64_t n1, bool take_sums) {
  const int64_t kw_max = F::words(std::min(kc_step, p.K));
  const int64_t group = std::max<int64_t>(1, kBGroupBytes / int64_t(sizeof(float) * F::NR * kw_max)) * F::NR;
  const int64_t a_ld = a_in_place_stride<F>(p, n1 - n0);
  float* Abuf = a_ld ? nullptr : tls_a.get(size_t(ceil_div(p.M, F::MR) * F::MR * kw_max));
  float* Bgroup = p.packed ? nullptr : tls_b_group.get(size_t(group * kw_max));
  for (int64_t pc = 0; pc < p.K; pc += kc_step) {
    const int64_t kc = std::min(kc_step, p.K - pc);
    const bool beta = p.accumulate || pc > 0;
    if (a_ld == 0) pack_a<F>(p.ta, p.A, p.lda, 0, p.M, pc, kc, Abuf, take_sums ? p.a_sums : nullptr);
    const float* Ablock = a_ld ? p.A + pc : Abuf;
    for (int64_t j = n0; j < n1; j += group) {
      const int64_t cols = std::min(group, n1 - j);
      const float* Bpanels = Bgroup;
      const float* ahead = nullptr;
      int64_t ahead_floats = 0;
      if (p.packed) {  // the group's panels, in place (j - jc is a whole number of panels)
        Bpanels = packed_block(p, jc, pc) + (j - jc) * F::words(kc);
        // and the next group's fetched meanwhile: the one after it, or the first of the next K block
        if (j + group < n1) {
          ahead = Bpanels + cols * F::words(kc);
          ahead_floats = ceil_div(std::min(group, n1 - j - group), F::NR) * F::NR * F::words(kc);
        } else if (pc + kc < p.K) {
          const int64_t kw_next = F::words(std::min(kc_step, p.K - pc - kc));
          ahead = packed_block(p, jc, pc + kc) + (n0 - jc) * kw_next;
          ahead_floats = ceil_div(std::min(group, n1 - n0), F::NR) * F::NR * kw_next;
        }
      } else {
        pack_b<F>(p.tb, p.B, p.ldb, pc, kc, j, cols, 0, ceil_div(cols, F::NR), Bgroup);
      }
      macro_kernel<F>(p.M, 0, cols, kc, Ablock, a_ld, Bpanels, p.C + j, p.ldc, beta, ahead, ahead_floats);
      if (p.epilogue && pc + kc == p.K) p.epilogue->apply(p.epilogue->context, 0, j, p.M, cols);
    }
  }
}

template <class F>
// b_buffer holds the shared packed B block of the row split, b_elems floats; taken only there
// (run_columns packs into buffers of its own).
void run(const Problem& p, int threads, Buffer& b_buffer, size_t b_elems) {
  const auto [kc_step, nc_step] = blocking<F>(p.K, p.N);
  const int64_t m_panels = ceil_div(p.M, F::MR);

  for (int64_t jc = 0; jc < p.N; jc += nc_step) {
    const int64_t nc = std::min(nc_step, p.N - jc);
    const int64_t n_panels = ceil_div(nc, F::NR);

    // Task grid over this block: mt row chunks x nt column chunks.
    //  - The packed A block is small (M x kc below kSplitColumnsBelow, M <= 2 nc): split
    //    the columns, one chunk per thread (run_columns): each task packs all of A (cheap)
    //    and its own B panels, one fork-join per product, and equal chunks. On 2 threads
    //    (then with a fork-join per K block): 128^3 170 vs 130 GFLOP/s, 192^3 190 vs 178,
    //    256^3 197 vs 191; without the M <= 2 nc condition 4096x16x64 fell from 165 to 99.
    //  - Otherwise split the rows into a multiple of `threads` chunks (2x more chunks lost
    //    14 % at 192^3..256^3); the tasks share the B block packed beforehand. Splitting
    //    columns there lost up to 10 % on the 8320-row shapes (every task re-packs A).
    //  - Few row panels but A too large for the first rule: columns too.
    int64_t mt = ceil_div(p.M, kMC), nt = 1;
    if (threads > 1) {
      if (double(p.M) * double(F::words(kc_step)) < kSplitColumnsBelow && p.M <= 2 * nc &&
          n_panels >= threads) {
        mt = 1;
        nt = threads;
      } else if (m_panels >= 4 * threads) {
        mt = std::min(m_panels, ceil_div(std::max<int64_t>(mt, threads), threads) * threads);
      } else {
        nt = std::min(n_panels, ceil_div(2 * threads, mt));
      }
    }
    const int64_t panels_per_mt = ceil_div(m_panels, mt);
    mt = ceil_div(m_panels, panels_per_mt);
    const int64_t panels_per_nt = ceil_div(n_panels, nt);
    nt = ceil_div(n_panels, panels_per_nt);
    // With a single row chunk every B panel is used by one task only: the task packs it,
    // and runs all K blocks.
    if (mt == 1) {
      auto columns = [&](int64_t tj) {
        const int64_t c0 = tj * panels_per_nt * F::NR, c1 = std::min(nc, c0 + panels_per_nt * F::NR);
        if (c0 < c1) run_columns<F>(p, kc_step, jc, jc + c0, jc + c1, jc == 0 && c0 == 0);
      };
      if (threads == 1 || nt == 1) {
        for (int64_t tj = 0; tj < nt; ++tj) columns(tj);
      } else {
        tbb::parallel_for(int64_t(0), nt, [&](int64_t tj) { columns(tj); },
                          tbb::simple_partitioner{});
      }
      continue;
    }

    float* Bbuf = p.packed ? nullptr : b_buffer.get(b_elems);
    for (int64_t pc = 0; pc < p.K; pc += kc_step) {
      const int64_t kc = std::min(kc_step, p.K - pc);
      const bool beta = p.accumulate || pc > 0;

      // Pack the B block (shared by the row chunks), in parallel when it is big enough.
      const float* Bblock = p.packed ? packed_block(p, jc, pc) : Bbuf;
      const int64_t pack_tasks = p.packed ? 0
                                 : threads > 1 && double(F::words(kc)) * double(nc) >= kParallelPackB
                                     ? std::min<int64_t>(n_panels, 2 * threads)
                                     : 1;
      auto pack = [&](int64_t t) {
        const int64_t jp0 = n_panels * t / pack_tasks, jp1 = n_panels * (t + 1) / pack_tasks;
        pack_b<F>(p.tb, p.B, p.ldb, pc, kc, jc, nc, jp0, jp1, Bbuf);
      };
      if (pack_tasks == 1) {
        pack(0);
      } else if (pack_tasks > 1) {
        tbb::parallel_for(int64_t(0), pack_tasks, [&](int64_t t) { pack(t); },
                          tbb::simple_partitioner{});
      }

      auto tile = [&](int64_t t) {
        const int64_t ti = t / nt, tj = t % nt;
        const int64_t i0 = ti * panels_per_mt * F::MR;
        const int64_t i1 = std::min(p.M, i0 + panels_per_mt * F::MR);
        const int64_t n0 = tj * panels_per_nt * F::NR;
        const int64_t n1 = std::min(nc, n0 + panels_per_nt * F::NR);
        if (i0 >= i1 || n0 >= n1) return;
        const int64_t a_ld = a_in_place_stride<F>(p, n1 - n0);
        float* Abuf =
            a_ld ? nullptr : tls_a.get(size_t(ceil_div(std::min(kMC, i1 - i0), F::MR) * F::MR * F::words(kc)));
        // Rows are processed in slices of at most kMC so the (packed) A slice stays in L2.
        for (int64_t is = i0; is < i1; is += kMC) {
          const int64_t mc = std::min(kMC, i1 - is);
          if (a_ld == 0) pack_a<F>(p.ta, p.A, p.lda, is, mc, pc, kc, Abuf, jc == 0 && n0 == 0 ? p.a_sums : nullptr);
          const float* Ablock = a_ld ? p.A + is * a_ld + pc : Abuf;
          macro_kernel<F>(mc, n0, n1, kc, Ablock, a_ld, Bblock, p.C + is * p.ldc + jc, p.ldc, beta);
          // The last K block finished these rows × columns: hand them on while in L2.
          if (p.epilogue && pc + kc == p.K) p.epilogue->apply(p.epilogue->context, is, jc + n0, mc, n1 - n0);
        }
      };
      const int64_t tasks = mt * nt;
      if (threads == 1 || tasks == 1) {
        for (int64_t t = 0; t < tasks; ++t) tile(t);
      } else {
        tbb::parallel_for(int64_t(0), tasks, [&](int64_t t) { tile(t); },
                          tbb::simple_partitioner{});
      }
    }
  }
}

template <class F>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
          const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate, const GemmEpilogue* epilogue,
          float* a_row_sums, const PackedB* packed = nullptr) {
  // A row-major A's rows are packed by 16x16 transposes: its sums are a loop of their own.
  if (a_row_sums && !trans_a) row_sums_of_op_a(trans_a, M, K, A, lda, a_row_sums);
  std::vector<double> a_sums(a_row_sums && trans_a ? size_t(M) : 0, 0.0);
  const Problem p{trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, epilogue,
                  a_sums.empty() ? nullptr : a_sums.data(), packed};
  const bool small = double(M) * double(N) * double(K) < kInlineMacs;
  const int threads = small || SerialGemmScope::active() ? 1 : current_threads();

  const int64_t kc_max = blocking<F>(K, N).kc_step;
  const int64_t nc_max = std::min(ceil_div(N, F::NR) * F::NR, kNC);
  const size_t b_elems = size_t(F::words(kc_max) * nc_max);

  Buffer local;
  Buffer& bb = tls_b.busy ? local : tls_b;
  struct Claim {
    Buffer& b;
    explicit Claim(Buffer& x) : b(x) { b.busy = true; }
    ~Claim() { b.busy = false; }
  } claim(bb);
  if (threads == 1) {
    run<F>(p, 1, bb, b_elems);
  } else {
    // Isolation: while this thread waits for our tasks it must not pick up unrelated work
    // (which might call sgemm again and reuse this thread's buffers).
    tbb::this_task_arena::isolate([&] { run<F>(p, threads, bb, b_elems); });
  }
  for (size_t i = 0; i < a_sums.size(); ++i) a_row_sums[i] = static_cast<float>(a_sums[i]);
}

// Every block of op(B) as run() would pack it, one after the other: column block by column
// block, K block by K block, in parallel over the blocks' panels.
template <class F>
std::shared_ptr<const PackedB> pack_whole_b(int format, bool bf16, bool trans_b, int64_t K, int64_t N,
                                            const float* B, int64_t ldb) {
  auto out = std::make_shared<PackedB>();
  const Blocking bl = blocking<F>(K, N);
  out->format = format;
  out->bf16 = bf16;
  out->K = K;
  out->N = N;
  out->kc_step = bl.kc_step;
  out->nc_step = bl.nc_step;
  struct Block {
    int64_t jc, nc, pc, kc;
  };
  std::vector<Block> blocks;
  size_t floats = 0;
  for (int64_t jc = 0; jc < N; jc += bl.nc_step)
    for (int64_t pc = 0; pc < K; pc += bl.kc_step) {
      const Block b{jc, std::min(bl.nc_step, N - jc), pc, std::min(bl.kc_step, K - pc)};
      blocks.push_back(b);
      out->block_offset.push_back(int64_t(floats));
      floats += size_t(ceil_div(b.nc, F::NR) * F::NR * F::words(b.kc));
    }
  out->panels = std::shared_ptr<float[]>(static_cast<float*>(::operator new[](floats * sizeof(float), std::align_val_t(64))),
                                         [](float* q) { ::operator delete[](q, std::align_val_t(64)); });
  float* base = out->panels.get();
  // A task per (block, run of 16 panels): enough tasks for the threads, each a long stream.
  constexpr int64_t kPanelsPerTask = 16;
  std::vector<std::pair<size_t, int64_t>> tasks;
  for (size_t i = 0; i < blocks.size(); ++i)
    for (int64_t jp = 0; jp < ceil_div(blocks[i].nc, F::NR); jp += kPanelsPerTask) tasks.emplace_back(i, jp);
  tbb::this_task_arena::isolate([&] {
    tbb::parallel_for(size_t(0), tasks.size(), [&](size_t t) {
      const Block& b = blocks[tasks[t].first];
      const int64_t jp0 = tasks[t].second, jp1 = std::min(ceil_div(b.nc, F::NR), jp0 + kPanelsPerTask);
      pack_b<F>(trans_b, B, ldb, b.pc, b.kc, b.jc, b.nc, jp0, jp1, base + out->block_offset[tasks[t].first]);
    });
  });
  return out;
}

}  // namespace

// Entry points used by gemm.cpp once it has checked the CPU and handled the empty cases
// (M, N, K all > 0 here).
void sgemm_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                  bool accumulate, const GemmEpilogue* epilogue, float* a_row_sums) {
  gemm<F32Format>(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, epilogue, a_row_sums);
}

void sgemm_avx512_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                       int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                       bool accumulate, const GemmEpilogue* epilogue, float* a_row_sums) {
  gemm<Bf16Format>(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, epilogue, a_row_sums);
}

void sgemm_avx2_kernel(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                       int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate,
                       const GemmEpilogue* epilogue, float* a_row_sums) {
  gemm<Avx2Format<false>>(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, epilogue, a_row_sums);
}

void sgemm_avx2_bf16_kernel(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                            int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate,
                            const GemmEpilogue* epilogue, float* a_row_sums) {
  gemm<Avx2Format<true>>(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, epilogue, a_row_sums);
}

// The packed formats (PackedB::format).
enum PackedFormat : int { kPackedAvx512 = 1, kPackedAvx512Bf16, kPackedAvx2, kPackedAvx2Bf16 };

std::shared_ptr<const PackedB> pack_b_avx512(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb) {
  return pack_whole_b<F32Format>(kPackedAvx512, false, trans_b, K, N, B, ldb);
}
std::shared_ptr<const PackedB> pack_b_avx512_bf16(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb) {
  return pack_whole_b<Bf16Format>(kPackedAvx512Bf16, true, trans_b, K, N, B, ldb);
}
std::shared_ptr<const PackedB> pack_b_avx2_kernel(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb,
                                           bool bf16) {
  return bf16 ? pack_whole_b<Avx2Format<true>>(kPackedAvx2Bf16, true, trans_b, K, N, B, ldb)
              : pack_whole_b<Avx2Format<false>>(kPackedAvx2, false, trans_b, K, N, B, ldb);
}

// The product with B's panels in place, by the kernel that packed them.
void sgemm_prepacked_kernel(int64_t M, const float* A, int64_t lda, const PackedB& B, float* C, int64_t ldc,
                            bool accumulate, const GemmEpilogue* epilogue) {
  switch (B.format) {
    case kPackedAvx512:
      return gemm<F32Format>(false, false, M, B.N, B.K, A, lda, nullptr, 0, C, ldc, accumulate, epilogue, nullptr, &B);
    case kPackedAvx512Bf16:
      return gemm<Bf16Format>(false, false, M, B.N, B.K, A, lda, nullptr, 0, C, ldc, accumulate, epilogue, nullptr,
                              &B);
    case kPackedAvx2:
      return gemm<Avx2Format<false>>(false, false, M, B.N, B.K, A, lda, nullptr, 0, C, ldc, accumulate, epilogue,
                                     nullptr, &B);
    case kPackedAvx2Bf16:
      return gemm<Avx2Format<true>>(false, false, M, B.N, B.K, A, lda, nullptr, 0, C, ldc, accumulate, epilogue,
                                    nullptr, &B);
  }
  throw std::logic_error("sgemm_prepacked: unknown panel format " + std::to_string(B.format));
}

namespace {
// "<isa> MRxNR", formatted into buf (once: the callers keep the result in a static).
const char* kernel_name(char (&buf)[32], const char* isa, int mr, int nr) {
  std::snprintf(buf, sizeof buf, "%s %dx%d", isa, mr, nr);
  return buf;
}
}  // namespace

const char* avx2_kernel_name() {
  static char buf[32];
  static const char* const name = kernel_name(buf, "avx2", kAvx2MR, kAvx2NR);
  return name;
}

const char* avx512_kernel_name() {
  static char buf[32];
  static const char* const name = kernel_name(buf, "avx512", kMR, kNR);
  return name;
}

const char* avx512_bf16_kernel_name() {
  static char buf[32];
  static const char* const name = kernel_name(buf, "avx512_bf16", kMR, kNR);
  return name;
}

}  // namespace sparo::cpu::detail
