// Products too small for sgemm's packing: an attention head's q·kᵀ for 17 tokens, a SPARO
// read-out's 32 slot scores over an image's tokens. sgemm packs both operands into panels and
// fills 6×16 (12×32) register blocks; for a 32×17 result from 192-long rows that costs more
// than the arithmetic. These loops read the operands where they lie.
//
// Built where the compiler targets AVX2 + FMA (-march=native on x86-64); elsewhere
// small_products_available() is false and both functions call sgemm whatever `direct` says.
#pragma once

#include <cstdint>

#include "engine/backend.h"
#include "engine/cpu/gemm.h"

namespace sparo::cpu {

bool small_products_available();

// sgemm, or sgemm_bf16 for bf16 precision.
using GemmFn = decltype(&sgemm);
GemmFn gemm_for(MatmulPrecision precision);

// s = a·bᵀ: s[i·lds + j] = a_i · b_j for i < rows, j < cols (a_i = a + i·lda, b_j = b + j·ldb,
// n floats each). direct (fp32 only, n a multiple of 8): each dot is 8 lanes of FMA chains over
// k in order, the lanes added in a fixed tree; the bits differ from sgemm's but depend on
// nothing but a_i and b_j (not the thread count, nor the other rows). Otherwise sgemm's product
// in `precision`.
void products_abt(bool direct, MatmulPrecision precision, const float* a, int64_t lda, const float* b, int64_t ldb,
                  int64_t rows, int64_t cols, int64_t n, float* s, int64_t lds);

// out_i = Σ_j w(i, j)·v_j over j < terms, for i < rows: w(i, j) = w[i·wi + j·wj] with (wi, wj)
// = (ld, 1) for w as stored or (1, ld) for its transpose; v_j = v + j·ldv and out_i = out +
// i·ldo, n floats each. direct (fp32 only, n a multiple of 8): one FMA chain per element, j in
// order from 0: sgemm's order, so its bits while terms fits one of its K blocks (256).
void products_wv(bool direct, MatmulPrecision precision, const float* w, int64_t wi, int64_t wj, const float* v,
                 int64_t ldv, int64_t rows, int64_t terms, int64_t n, float* out, int64_t ldo);

}  // namespace sparo::cpu
