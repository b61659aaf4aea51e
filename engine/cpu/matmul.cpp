// CPU kernel: (batched) matmul on top of sgemm (gemm.h).
#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/vector_math.h"

namespace sparo::cpu {

bool CpuBackend::bf16_matmul_is_faster() const { return sgemm_bf16_is_native(); }

void CpuBackend::matmul(const Tensor& at, const Tensor& bt, Tensor& ct, const MatmulDesc& d) {
  const float* a = data<float>(at);
  const float* b = data<float>(bt);
  float* c = data<float>(ct);
  const int64_t lda = d.trans_a ? d.M : d.K;
  const int64_t ldb = d.trans_b ? d.K : d.N;
  const auto gemm = d.precision == MatmulPrecision::bf16 ? &sgemm_bf16 : &sgemm;
  // One product by a mapped weight (a linear layer without bias, a projection): its panels.
  if (d.batch == 1 && !d.trans_a) {
    const auto& storage = static_cast<const CpuStorage&>(bt.storage());
    if (const auto packed = storage.packed_operand(d.trans_b, d.K, d.N, d.precision == MatmulPrecision::bf16))
      return sgemm_prepacked(d.M, a, lda, *packed, c, d.N, d.accumulate);
  }
  // Batch entries run as parallel tasks; sgemm splits each further when it is large.
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
  (bf16 ? &sgemm_bf16 : &sgemm)(false, true, d.M, d.N, d.K, data<float>(xt), d.K, data<float>(wt), d.K, y, d.N,
                                false, epilogue, nullptr);
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
  const auto gemm = d.precision == MatmulPrecision::bf16 ? &sgemm_bf16 : &sgemm;
  gemm(d.trans_a, d.trans_b, d.M, d.N, d.K, data<float>(at), d.trans_a ? d.M : d.K, data<float>(bt),
       d.trans_b ? d.K : d.N, blocks.c, d.N, false, &times_m, nullptr);
}

// dW = Gᵀ·x: G is the GEMM's A, packed k-major (a row of G at a time), and db its row sums
// taken while it is packed.
void CpuBackend::linear_weight_bias_grad(const Tensor& gt, const Tensor& xt, Tensor& dwt, Tensor& dbt,
                                         const MatmulDesc& d) {
  const auto gemm = d.precision == MatmulPrecision::bf16 ? &sgemm_bf16 : &sgemm;
  gemm(true, false, d.M, d.N, d.K, data<float>(gt), d.M, data<float>(xt), d.N, data<float>(dwt), d.N, false, nullptr,
       data<float>(dbt));
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
