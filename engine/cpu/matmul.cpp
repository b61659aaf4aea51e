// CPU kernel: (batched) matmul on top of sgemm (gemm.h).
#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/small_products.h"
#include "engine/cpu/vector_math.h"

namespace sparo::cpu {

bool CpuBackend::bf16_matmul_is_faster() const { return sgemm_bf16_is_native(); }

namespace {

// Per-entry products small enough for small_products.h's loops, decided by an entry's shape
// alone, never by the batch, so that an image alone gets the bits it gets in a batch. In the
// tiny DINO step these are the SPARO read-out's scores (32 slots · 17 or 5 tokens from
// 192-long rows), its pooling (32 × 192 from 17 or 5 terms) and their gradients: one packing
// sgemm per image each, at 14-70 GFLOP/s.
//  - op(A)·B (w·v rows): at most kSmallRows × kSmallTerms, B's rows a multiple of 8 floats.
//    The bits are sgemm's (one FMA chain per element, k in order, within one of its K blocks).
//  - A·Bᵀ (dots): at most kSmallColumns columns, dots of a multiple of 8 terms, any number of
//    rows. The dots sum 8 lanes in a fixed tree: other bits than sgemm's, which is why the
//    rule does not look at the rows (the batch, for a product like logits = images·textsᵀ).
constexpr int64_t kSmallRows = 64, kSmallTerms = 64, kSmallColumns = 32;

bool small_product(const MatmulDesc& d) {
  if (!small_products_available() || d.precision != MatmulPrecision::f32 || d.accumulate) return false;
  if (d.trans_b) return !d.trans_a && d.N <= kSmallColumns && d.K % 8 == 0;
  return d.M <= kSmallRows && d.K <= kSmallTerms && d.N % 8 == 0;
}

}  // namespace

void CpuBackend::matmul(const Tensor& at, const Tensor& bt, Tensor& ct, const MatmulDesc& d) {
  const float* a = data<float>(at);
  const float* b = data<float>(bt);
  float* c = data<float>(ct);
  const int64_t lda = d.trans_a ? d.M : d.K;
  const int64_t ldb = d.trans_b ? d.K : d.N;
  // One product by a mapped weight (a linear layer without bias, a projection): its panels.
  if (d.batch == 1 && !d.trans_a) {
    const auto& storage = static_cast<const CpuStorage&>(bt.storage());
    if (const auto packed = storage.packed_operand(d.trans_b, d.K, d.N, d.precision == MatmulPrecision::bf16))
      return sgemm_prepacked(d.M, a, lda, *packed, c, d.N, d.accumulate);
  }
  if (small_product(d)) {
    // Tasks of whole entries, or of kSmallColumns-row slices of one (a long A·Bᵀ).
    const int64_t slices = (d.M + kSmallColumns - 1) / kSmallColumns;
    parallel_for(d.batch * slices, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t i = t / slices, r0 = t % slices * kSmallColumns, rows = std::min(kSmallColumns, d.M - r0);
        const float* ai = a + i * d.a_batch_stride;
        const float* bi = b + i * d.b_batch_stride;
        float* ci = c + i * d.c_batch_stride + r0 * d.N;
        if (d.trans_b)
          products_abt(true, d.precision, ai + r0 * lda, lda, bi, ldb, rows, d.N, d.K, ci, d.N);
        else if (d.trans_a)
          products_wv(true, d.precision, ai + r0, 1, lda, bi, ldb, rows, d.K, d.N, ci, d.N);
        else
          products_wv(true, d.precision, ai + r0 * lda, lda, 1, bi, ldb, rows, d.K, d.N, ci, d.N);
      }
    });
    return;
  }
  // Batch entries run as parallel tasks; sgemm splits each further when it is large.
  const GemmFn gemm = gemm_for(d.precision);
  parallel_for(d.batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      gemm(d.trans_a, d.trans_b, d.M, d.N, d.K, a + i * d.a_batch_stride, lda, b + i * d.b_batch_stride, ldb,
           c + i * d.c_batch_stride, d.N, d.accumulate, nullptr, nullptr);
  });
}

namespace {

// y = x · wᵀ (x [M,K], w [N,K]) with w's panels packed once where its storage keeps them
// (a mapped model's weights: CpuStorage::packed_operand), else packed by this call.
void linear_product(const Tensor& xt, const Tensor& wt, float* y, const MatmulDesc& d, const GemmEpilogue* epilogue) {
  const bool bf16 = d.precision == MatmulPrecision::bf16;
  const auto& storage = static_cast<const CpuStorage&>(wt.storage());
  if (const auto packed = storage.packed_operand(true, d.K, d.N, bf16))
    return sgemm_prepacked(d.M, data<float>(xt), d.K, *packed, y, d.N, false, epilogue);
  gemm_for(d.precision)(false, true, d.M, d.N, d.K, data<float>(xt), d.K, data<float>(wt), d.K, y, d.N, false,
                        epilogue, nullptr);
}

}  // namespace

void CpuBackend::linear(const Tensor& xt, const Tensor& wt, const Tensor& biast, Tensor& yt, const MatmulDesc& d) {
  struct Blocks {
    const float* bias;
    float* y;
    int64_t ld;
  } blocks{data<float>(biast), data<float>(yt), d.N};
  const GemmEpilogue add_bias{[](const void* context, int64_t row0, int64_t col0, int64_t rows, int64_t cols) {
                                const Blocks& b = *static_cast<const Blocks*>(context);
                                const float* bias = b.bias + col0;
                                for (int64_t r = row0; r < row0 + rows; ++r) {
                                  float* y = b.y + r * b.ld + col0;
                                  for (int64_t c = 0; c < cols; ++c) y[c] += bias[c];
                                }
                              },
                              &blocks};
  linear_product(xt, wt, blocks.y, d, &add_bias);
}

void CpuBackend::matmul_mul(const Tensor& at, const Tensor& bt, const Tensor& mt, Tensor& ct, const MatmulDesc& d) {
  struct Blocks {
    const float* m;
    float* c;
    int64_t ld;
  } blocks{data<float>(mt), data<float>(ct), d.N};
  const GemmEpilogue times_m{[](const void* context, int64_t row0, int64_t col0, int64_t rows, int64_t cols) {
                               const Blocks& b = *static_cast<const Blocks*>(context);
                               for (int64_t r = row0; r < row0 + rows; ++r) {
                                 float* c = b.c + r * b.ld + col0;
                                 const float* m = b.m + r * b.ld + col0;
                                 for (int64_t j = 0; j < cols; ++j) c[j] *= m[j];
                               }
                             },
                             &blocks};
  gemm_for(d.precision)(d.trans_a, d.trans_b, d.M, d.N, d.K, data<float>(at), d.trans_a ? d.M : d.K, data<float>(bt),
                        d.trans_b ? d.K : d.N, blocks.c, d.N, false, &times_m, nullptr);
}

// dW = Gᵀ·x: G is the GEMM's A, packed k-major (a row of G at a time), and db its row sums
// taken while it is packed.
void CpuBackend::linear_weight_bias_grad(const Tensor& gt, const Tensor& xt, Tensor& dwt, Tensor& dbt,
                                         const MatmulDesc& d) {
  gemm_for(d.precision)(true, false, d.M, d.N, d.K, data<float>(gt), d.M, data<float>(xt), d.N, data<float>(dwt), d.N,
                        false, nullptr, data<float>(dbt));
}

void CpuBackend::linear_gelu(const Tensor& xt, const Tensor& wt, const Tensor& biast, Tensor& pret, Tensor& outt,
                             const MatmulDesc& d) {
  struct Blocks {
    const float* bias;  // null: none
    float* pre;
    float* out;
    int64_t ld;
  } blocks{biast.defined() ? data<float>(biast) : nullptr, data<float>(pret), data<float>(outt), d.N};
  // In place: out = gelu(z) over z. Otherwise out = gelu(z) and pre = gelu'(z), with the
  // gelu and unary_backward kernels' functions (elementwise.cpp).
  const GemmEpilogue gelu_in_place{[](const void* context, int64_t row0, int64_t col0, int64_t rows, int64_t cols) {
                                     const Blocks& b = *static_cast<const Blocks*>(context);
                                     for (int64_t r = row0; r < row0 + rows; ++r) {
                                       float* z = b.out + r * b.ld + col0;
                                       if (b.bias)
                                         for (int64_t c = 0; c < cols; ++c) z[c] = gelu_erf(z[c] + b.bias[col0 + c]);
                                       else
                                         for (int64_t c = 0; c < cols; ++c) z[c] = gelu_erf(z[c]);
                                     }
                                   },
                                   &blocks};
  const GemmEpilogue gelu_and_derivative{
      [](const void* context, int64_t row0, int64_t col0, int64_t rows, int64_t cols) {
        const Blocks& b = *static_cast<const Blocks*>(context);
        for (int64_t r = row0; r < row0 + rows; ++r) {
          float* z = b.pre + r * b.ld + col0;
          float* out = b.out + r * b.ld + col0;
          for (int64_t c = 0; c < cols; ++c) {
            const GeluErf g = gelu_erf_and_derivative(b.bias ? z[c] + b.bias[col0 + c] : z[c]);
            out[c] = g.value;
            z[c] = g.derivative;
          }
        }
      },
      &blocks};
  linear_product(xt, wt, blocks.pre, d, blocks.pre == blocks.out ? &gelu_in_place : &gelu_and_derivative);
}

}  // namespace sparo::cpu
