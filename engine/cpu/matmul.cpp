// CPU kernel: (batched) matmul on top of sgemm (gemm.h).
#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/gemm.h"

namespace sparo::cpu {

void CpuBackend::matmul(const Tensor& at, const Tensor& bt, Tensor& ct, const MatmulDesc& d) {
  const float* a = data<float>(at);
  const float* b = data<float>(bt);
  float* c = data<float>(ct);
  const int64_t lda = d.trans_a ? d.M : d.K;
  const int64_t ldb = d.trans_b ? d.K : d.N;
  const auto gemm = d.precision == MatmulPrecision::bf16 ? &sgemm_bf16 : &sgemm;
  // Batch entries run as parallel tasks; sgemm splits each further when it is large.
  parallel_for(d.batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      gemm(d.trans_a, d.trans_b, d.M, d.N, d.K, a + i * d.a_batch_stride, lda, b + i * d.b_batch_stride, ldb,
            c + i * d.c_batch_stride, d.N, d.accumulate);
  });
}

}  // namespace sparo::cpu
