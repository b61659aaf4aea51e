// The kernel table every backend implements.
//
// Ops (engine/ops/*.cpp) check shapes, allocate outputs, call these kernels and
// record their backward; kernels only compute. Outputs are always allocated by
// the caller, contiguous, on the backend's device. A kernel never sees autograd.
//
// Each family here has one file per backend with the same name:
//   engine/ops/softmax.cpp  (op: shape checks, forward + backward)
//   engine/cpu/softmax.cpp  (CPU kernel)
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace sparo {

constexpr int kMaxDims = 8;

// Shapes and strides (in elements) of up to four operands walked together over
// one index space. Built by make_elementwise_plan (engine/ops/elementwise.cpp):
// broadcast dimensions get stride 0 and adjacent dimensions that are contiguous
// for every operand are merged, so most plans have rank 1 or 2.
struct ElementwisePlan {
  int rank = 0;
  std::array<int64_t, kMaxDims> dims{};
  std::array<std::array<int64_t, kMaxDims>, 4> strides{};  // operand k, dim d
  int64_t numel = 1;
};

// General strided copy: dst[dst_offset + Σ i_d·dst_strides[d]] = src[src_offset + Σ i_d·src_strides[d]].
// Carries permute, slice, concat, expand and their backwards.
struct CopyPlan {
  int rank = 0;
  std::array<int64_t, kMaxDims> dims{};
  std::array<int64_t, kMaxDims> src_strides{};
  std::array<int64_t, kMaxDims> dst_strides{};
  int64_t src_offset = 0;
  int64_t dst_offset = 0;
};

enum class UnaryOp {
  neg, exp, log, sqrt, rsqrt, tanh, sigmoid, relu, gelu_erf, gelu_tanh, quick_gelu,
  pow,     // x^a
  clamp,   // min(max(x, a), b)
  affine,  // a·x + b
  step,    // x >= a ? b : 0   (masks; no gradient)
  square,
  abs,
};
struct UnaryParams {
  float a = 0.0f;
  float b = 0.0f;
};

enum class BinaryOp { add, sub, mul, div, eq, maximum };

enum class ReduceOp { sum, max };

// C[b] (= or +=) op(A[b]) · op(B[b]) for b < batch; row-major; batch strides in
// elements, 0 for an operand shared by every batch entry.
struct MatmulDesc {
  int64_t batch = 1, M = 0, N = 0, K = 0;
  bool trans_a = false, trans_b = false;
  int64_t a_batch_stride = 0, b_batch_stride = 0, c_batch_stride = 0;
  bool accumulate = false;
  MatmulPrecision precision = MatmulPrecision::f32;  // bf16: inputs rounded, f32 sums
};

// Sizes of a fused multi-head attention (Backend::attention): B, N, H, dh, the scale of q·kᵀ,
// and the precision of its products.
struct AttentionDesc {
  int64_t batch = 0, tokens = 0, heads = 0, head_dim = 0;
  float scale = 1.0f;
  MatmulPrecision precision = MatmulPrecision::f32;
};

enum class RandomDist { uniform, normal };

struct MemoryStats {
  size_t in_use = 0;  // bytes held by live tensors
  size_t cached = 0;  // bytes freed by tensors, kept for reuse
  size_t peak = 0;    // highest in_use since the start (or the last reset_peak_memory)
};

struct AdamWStep {
  float lr, beta1, beta2, eps, weight_decay;
  float bias_correction1, bias_correction2;  // 1 - beta^t
};
struct SgdStep {
  float lr, momentum, dampening, weight_decay;
  bool nesterov, first_step;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual Device device() const = 0;

  // ---- memory ---------------------------------------------------------------------
  virtual std::shared_ptr<Storage> allocate(size_t bytes) = 0;
  // A storage over `bytes` of host memory that `owner` keeps alive, used in place (the CPU
  // backend; others cannot compute on host memory and refuse).
  virtual std::shared_ptr<Storage> wrap_host_memory(std::shared_ptr<void> owner, void* data, size_t bytes,
                                                    HostMemory kind) {
    (void)owner, (void)data, (void)bytes, (void)kind;
    throw Error(name() + ": cannot use host memory in place");
  }
  virtual void upload(Storage& dst, size_t offset, const void* src, size_t bytes) = 0;
  virtual void download(const Storage& src, size_t offset, void* dst, size_t bytes) = 0;
  virtual void synchronize() {}
  // Device time of the work recorded between begin_timing() and end_timing() (which waits
  // for it), in milliseconds: timestamp queries on GPUs, wall time on the CPU.
  virtual void begin_timing() = 0;
  virtual double end_timing_ms() = 0;
  virtual MemoryStats memory_stats() const = 0;
  virtual void empty_cache() = 0;  // returns cached blocks to the system
  virtual void reset_peak_memory() = 0;

  // ---- creation ---------------------------------------------------------------------
  virtual void fill(Tensor& out, double value) = 0;
  virtual void arange(Tensor& out, double start, double step) = 0;
  // Philox4x32-10 stream (random.h): element i uses counter block `block_offset + i/4`.
  virtual void random(Tensor& out, RandomDist dist, uint64_t seed, uint64_t block_offset, float a,
                      float b) = 0;
  virtual void cast(const Tensor& x, Tensor& out) = 0;  // f32 <-> i32

  // ---- elementwise ---------------------------------------------------------------
  virtual void copy(const Tensor& src, Tensor& dst, const CopyPlan& plan) = 0;
  virtual void unary(UnaryOp op, const Tensor& x, Tensor& out, UnaryParams p) = 0;
  // dx = dy · f'(x)
  virtual void unary_backward(UnaryOp op, const Tensor& x, const Tensor& dy, Tensor& dx,
                              UnaryParams p) = 0;
  // out may alias a (in-place update); operands 0,1,2 of the plan are out, a, b.
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out,
                      const ElementwisePlan& plan) = 0;
  // out = cond != 0 ? a : b; operands 0..3 of the plan are out, cond, a, b.
  virtual void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out,
                     const ElementwisePlan& plan) = 0;

  // ---- reductions: x viewed as [outer, n, inner] -> out [outer, inner] -----------------
  virtual void reduce(ReduceOp op, const Tensor& x, Tensor& out, int64_t outer, int64_t n,
                      int64_t inner) = 0;

  // ---- linear algebra --------------------------------------------------------------
  virtual void matmul(const Tensor& a, const Tensor& b, Tensor& c, const MatmulDesc& desc) = 0;
  // Whether bf16 products (MatmulPrecision::bf16) run faster than f32 ones here: the hardware
  // multiplies bf16 pairs (a CPU with AVX512_BF16). Elsewhere bf16 only rounds the inputs.
  virtual bool bf16_matmul_is_faster() const { return false; }

  // ---- linear with a bias, fused (optional) --------------------------------------------
  // y = x·wᵀ + bias (bias [N] in every row; d as for matmul with trans_b, no accumulate),
  // the bias added to each block of y as the GEMM finishes it. A backend without it
  // (has_fused_linear() false) gets the bias rows written into y and a matmul that
  // accumulates onto them: one more pass over y, and y read again by the GEMM.
  virtual bool has_fused_linear() const { return false; }
  virtual void linear(const Tensor& /*x*/, const Tensor& /*w*/, const Tensor& /*bias*/, Tensor& /*y*/,
                      const MatmulDesc& /*d*/) {
    throw Error(name() + ": no fused linear kernel");
  }

  // ---- a linear layer's weight and bias gradients, fused (optional) ---------------------
  // dw = gᵀ·x and db = the sums of g's rows (g [rows, out], x [rows, in]; d as for matmul
  // with trans_a: M = out, N = in, K = rows, no accumulate), db taken as the GEMM reads g
  // rather than in a pass over g of its own. db is summed from g's fp32 values (also with
  // bf16 precision). A backend without it (has_fused_bias_grad() false) gets a matmul and a
  // sum.
  virtual bool has_fused_bias_grad() const { return false; }
  virtual void linear_weight_bias_grad(const Tensor& /*g*/, const Tensor& /*x*/, Tensor& /*dw*/, Tensor& /*db*/,
                                       const MatmulDesc& /*d*/) {
    throw Error(name() + ": no fused weight and bias gradient kernel");
  }

  // ---- a product multiplied elementwise, fused (optional) ------------------------------
  // c = (op(a)·op(b)) ⊙ m (d as for matmul, one product, no accumulate; m [M, N] like c), each
  // block of c multiplied as the GEMM finishes it: mlp_gelu's backward takes GELU's derivative
  // into fc2's input gradient this way. A backend without it (has_fused_matmul_mul() false)
  // gets mlp_gelu composed of linear_gelu and linear.
  virtual bool has_fused_matmul_mul() const { return false; }
  virtual void matmul_mul(const Tensor& /*a*/, const Tensor& /*b*/, const Tensor& /*m*/, Tensor& /*c*/,
                          const MatmulDesc& /*d*/) {
    throw Error(name() + ": no fused matmul + mul kernel");
  }

  // ---- linear + GELU, fused (optional) ------------------------------------------------
  // z = x·wᵀ (+ bias in every row when it is defined), out = gelu(z) with the erf form, each
  // block of out computed as soon as the GEMM has finished it, while it is still in cache
  // (d as for matmul with trans_b, no accumulate). pre receives gelu'(z), all the backward
  // needs (its transcendental functions then run once, in the forward, while z is in cache);
  // or out may be pre itself: GELU in place, when there is no backward. A backend without it
  // (has_fused_linear_gelu() false) gets gelu(linear(...)) (engine/ops/matmul.cpp).
  virtual bool has_fused_linear_gelu() const { return false; }
  virtual void linear_gelu(const Tensor& /*x*/, const Tensor& /*w*/, const Tensor& /*bias*/, Tensor& /*pre*/,
                           Tensor& /*out*/, const MatmulDesc& /*d*/) {
    throw Error(name() + ": no fused linear + GELU kernel");
  }

  // ---- multi-head attention, fused (optional) ------------------------------------------
  // The core of a transformer's attention in one kernel that reads the heads in place:
  // qkv [B, N, 3·D] holds q, k, v side by side (head h in columns h·dh .. h·dh + dh of each),
  // out [B, N, D] gets softmax(scale · q·kᵀ + mask) · v with head h in columns h·dh ..;
  // probs [B, H, N, N] keeps the probabilities for the backward. mask is undefined or an
  // additive [N, N]; a row that the mask leaves empty gets probability 0 everywhere. The
  // backward writes dqkv [B, N, 3·D]. A backend without it (has_fused_attention() false)
  // gets the op composed from slices, permutes, matmuls and softmax (engine/ops/attention.cpp).
  virtual bool has_fused_attention() const { return false; }
  virtual void attention(const Tensor& /*qkv*/, const Tensor& /*mask*/, Tensor& /*probs*/, Tensor& /*out*/,
                         const AttentionDesc& /*desc*/) {
    throw Error(name() + ": no fused attention kernel");
  }
  virtual void attention_backward(const Tensor& /*qkv*/, const Tensor& /*probs*/, const Tensor& /*dout*/,
                                  Tensor& /*dqkv*/, const AttentionDesc& /*desc*/) {
    throw Error(name() + ": no fused attention kernel");
  }

  // ---- softmax over the last axis (cols) of x viewed as [rows, cols] -------------------
  // mask (optional, may be an undefined Tensor) is added before the softmax; mask_plan
  // maps x's index space onto it (operand 1 of the plan; operand 0 is x).
  virtual void softmax(const Tensor& x, const Tensor& mask, const ElementwisePlan& mask_plan,
                       Tensor& y, int64_t rows, int64_t cols, bool log) = 0;
  virtual void softmax_backward(const Tensor& y, const Tensor& dy, Tensor& dx, int64_t rows,
                                int64_t cols, bool log) = 0;

  // ---- layer norm over the last axis: x [rows, cols] --------------------------------
  // bias may be undefined. mean and rstd [rows] are saved for the backward.
  virtual void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y,
                          Tensor& mean, Tensor& rstd, int64_t rows, int64_t cols, float eps) = 0;
  // dweight/dbias may be undefined (not wanted).
  virtual void layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean,
                                   const Tensor& rstd, const Tensor& dy, Tensor& dx,
                                   Tensor& dweight, Tensor& dbias, int64_t rows, int64_t cols) = 0;

  // ---- indexing: src viewed as [outer, n, inner], index i32 [m] -------------------------
  // out [outer, m, inner] = src[:, index[j], :]
  virtual void gather(const Tensor& src, const Tensor& index, Tensor& out, int64_t outer,
                      int64_t n, int64_t inner) = 0;
  // dst [outer, n, inner] += src [outer, m, inner] at rows index[j]
  virtual void scatter_add(const Tensor& src, const Tensor& index, Tensor& dst, int64_t outer,
                           int64_t n, int64_t inner) = 0;
  // out [m, classes] = on at index[j], off elsewhere
  virtual void one_hot(const Tensor& index, Tensor& out, int64_t classes, float on, float off) = 0;

  // ---- optimiser steps, in place on param and state -------------------------------------
  virtual void adamw_step(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq,
                          const AdamWStep& step) = 0;
  virtual void sgd_step(Tensor& param, const Tensor& grad, Tensor& momentum_buffer,
                        const SgdStep& step) = 0;
  // target = momentum·target + (1 − momentum)·source, both products rounded, then added
  // (PyTorch's target.mul_(m).add_((1 − m)·source)): an EMA teacher's update.
  virtual void ema_step(Tensor& target, const Tensor& source, float momentum) = 0;
};

// The backend that owns a device's memory. Throws sparo::Error for a device that is
// not available in this build or on this machine.
Backend& backend_for(Device device);

// Backends compiled into this build, e.g. {"cpu"}.
std::vector<std::string> compiled_backends();

}  // namespace sparo
