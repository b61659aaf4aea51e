// The CPU backend: host memory, oneTBB parallel loops, Eigen/AVX-512 GEMM.
// Kernels of one family live in the file of that family's name (softmax.cpp, ...).
#pragma once

#include <tbb/blocked_range.h>

#include <chrono>
#include <mutex>
#include <tbb/parallel_for.h>

#include "engine/backend.h"
#include "engine/cpu/gemm.h"

namespace sparo::cpu {

class CpuStorage final : public Storage {
 public:
  explicit CpuStorage(size_t bytes);
  // Memory from elsewhere (a mapped file, the caller's), kept alive by `owner`; not from the
  // block cache.
  CpuStorage(std::shared_ptr<void> owner, void* data, size_t bytes, HostMemory kind);
  ~CpuStorage() override;
  void* data() const { return data_; }

  // For memory from elsewhere (a model's weights in a mapped file, which inference multiplies
  // by over and over): op(B) = this storage as a [K,N] operand, packed once for the GEMM, and
  // kept while writes() stays as it was. Once packed, a file mapping's pages are handed back to
  // the kernel (madvise MADV_PAGEOUT), so the weights are held once, as panels; the caller's
  // own memory is left as it is. Null for storage of our own (training's weights change every
  // step) and where the CPU has no packed kernel: multiply with sgemm then.
  std::shared_ptr<const PackedB> packed_operand(bool trans, int64_t K, int64_t N, bool bf16) const;

 private:
  size_t capacity_;  // the cached block's size (bytes rounded up to its bucket); 0 when not ours
  void* data_;
  std::shared_ptr<void> owner_;
  HostMemory kind_ = HostMemory::callers;
  mutable std::mutex packed_mutex_;
  mutable std::shared_ptr<const PackedB> packed_;
  mutable bool packed_trans_ = false;
  mutable uint64_t packed_writes_ = 0;
};

// Raw access for CPU kernels only: this header is not part of the public API.
template <typename T>
T* data(const Tensor& t) {
  return static_cast<T*>(static_cast<CpuStorage&>(t.storage()).data());
}

// Runs f(begin, end) over [0, n) in chunks of at least `grain` items, inline when the
// work is small. Each item is processed by exactly one call, so kernels that write
// disjoint outputs per item are deterministic for any thread count.
template <typename F>
void parallel_for(int64_t n, int64_t grain, F&& f) {
  if (n <= 0) return;
  if (n <= grain) {
    f(int64_t{0}, n);
    return;
  }
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, n, grain),
                    [&](const tbb::blocked_range<int64_t>& r) { f(r.begin(), r.end()); });
}

// Offset of operand k at flat index `index` of a plan, and the plan's innermost run.
inline int64_t plan_offset(const ElementwisePlan& plan, int k, int64_t index) {
  int64_t offset = 0;
  for (int d = plan.rank - 1; d >= 0; --d) {
    const int64_t i = index % plan.dims[d];
    index /= plan.dims[d];
    offset += i * plan.strides[k][d];
  }
  return offset;
}

class CpuBackend final : public Backend {
 private:
  std::chrono::steady_clock::time_point timing_start_;

 public:
  std::string name() const override { return "cpu"; }
  Device device() const override { return Device::cpu(); }

  std::shared_ptr<Storage> allocate(size_t bytes) override;
  std::shared_ptr<Storage> wrap_host_memory(std::shared_ptr<void> owner, void* data, size_t bytes,
                                            HostMemory kind) override;
  MemoryStats memory_stats() const override;
  void empty_cache() override;
  void reset_peak_memory() override;
  void begin_timing() override;
  double end_timing_ms() override;
  void upload(Storage& dst, size_t offset, const void* src, size_t bytes) override;
  void download(const Storage& src, size_t offset, void* dst, size_t bytes) override;

  void fill(Tensor& out, double value) override;
  void arange(Tensor& out, double start, double step) override;
  void random(Tensor& out, RandomDist dist, uint64_t seed, uint64_t block_offset, float a, float b) override;
  void cast(const Tensor& x, Tensor& out) override;

  void copy(const Tensor& src, Tensor& dst, const CopyPlan& plan) override;
  void unary(UnaryOp op, const Tensor& x, Tensor& out, UnaryParams p) override;
  void unary_backward(UnaryOp op, const Tensor& x, const Tensor& dy, Tensor& dx, UnaryParams p) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out, const ElementwisePlan& plan) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out, const ElementwisePlan& plan) override;

  void reduce(ReduceOp op, const Tensor& x, Tensor& out, int64_t outer, int64_t n, int64_t inner) override;
  void matmul(const Tensor& a, const Tensor& b, Tensor& c, const MatmulDesc& desc) override;
  bool bf16_matmul_is_faster() const override;

  bool has_fused_linear() const override { return true; }
  void linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y, const MatmulDesc& d) override;
  bool has_fused_matmul_mul() const override { return true; }
  void matmul_mul(const Tensor& a, const Tensor& b, const Tensor& m, Tensor& c, const MatmulDesc& d) override;
  bool has_fused_bias_grad() const override { return true; }
  void linear_weight_bias_grad(const Tensor& g, const Tensor& x, Tensor& dw, Tensor& db, const MatmulDesc& d) override;
  bool has_fused_linear_gelu() const override { return true; }
  void linear_gelu(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& pre, Tensor& out,
                   const MatmulDesc& d) override;
  bool has_fused_attention() const override { return true; }
  void attention(const Tensor& qkv, const Tensor& mask, Tensor& probs, Tensor& out, const AttentionDesc& d) override;
  void attention_backward(const Tensor& qkv, const Tensor& probs, const Tensor& dout, Tensor& dqkv,
                          const AttentionDesc& d) override;
  void softmax(const Tensor& x, const Tensor& mask, const ElementwisePlan& mask_plan, Tensor& y,
               int64_t rows, int64_t cols, bool log) override;
  void softmax_backward(const Tensor& y, const Tensor& dy, Tensor& dx, int64_t rows, int64_t cols,
                        bool log) override;
  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y, Tensor& mean,
                  Tensor& rstd, int64_t rows, int64_t cols, float eps) override;
  void layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                           const Tensor& dy, Tensor& dx, Tensor& dweight, Tensor& dbias, int64_t rows,
                           int64_t cols) override;

  void gather(const Tensor& src, const Tensor& index, Tensor& out, int64_t outer, int64_t n, int64_t inner) override;
  void scatter_add(const Tensor& src, const Tensor& index, Tensor& dst, int64_t outer, int64_t n,
                   int64_t inner) override;
  void one_hot(const Tensor& index, Tensor& out, int64_t classes, float on, float off) override;

  void adamw_step(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq,
                  const AdamWStep& step) override;
  void sgd_step(Tensor& param, const Tensor& grad, Tensor& momentum_buffer, const SgdStep& step) override;
  void ema_step(Tensor& target, const Tensor& source, float momentum) override;
};

}  // namespace sparo::cpu
