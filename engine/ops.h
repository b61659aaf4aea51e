// Every op of the engine. Each takes and returns Tensors on one device, checks its
// shapes (an error names the op and the shapes), runs the device's kernel and, when a
// gradient is needed, records its backward (engine/ops/<family>.cpp, forward and
// backward side by side).
//
// Dimension letters used in comments: B batch, N tokens, D width, M/K/N matmul sizes.
// Axes may be negative (counted from the end), as in PyTorch.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine/random.h"
#include "engine/tensor.h"

namespace sparo {

// ---- linear algebra -------------------------------------------------------------------
// op(a)[..., M, K] · op(b)[..., K, N]; op transposes the last two axes when its flag is set.
// Batch axes broadcast (a 2-D operand is shared by every batch entry).
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
// x[..., in] · weightᵀ + bias, weight [out, in] (PyTorch's nn.Linear layout); bias may be undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());
// gelu(linear(x, weight, bias)) (erf GELU), computed as one op where the backend can (the CPU:
// GELU on each block of the product as the GEMM finishes it).
Tensor linear_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());
// A transformer's MLP, linear(linear_gelu(x, w1, b1), w2, b2), as one op where the backend can:
// its backward multiplies fc2's input gradient by GELU's derivative as the GEMM finishes each
// block of it (Backend::matmul_mul) instead of in a pass of its own. Both biases are required.
Tensor mlp_gelu(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2);

// Mixed precision: the precision of every matmul (and linear) that this thread runs from now
// on, f32 by default. With bf16 each product rounds its inputs to bfloat16 and sums in f32;
// a recorded matmul's backward uses the precision its forward ran with. Everything else
// (softmax, norms, losses, optimiser state, the tensors themselves) stays f32.
MatmulPrecision matmul_precision();
void set_matmul_precision(MatmulPrecision precision);
// Sets the precision for its lifetime and restores the previous one after.
class MatmulPrecisionScope {
 public:
  explicit MatmulPrecisionScope(MatmulPrecision precision) : saved_(matmul_precision()) {
    set_matmul_precision(precision);
  }
  ~MatmulPrecisionScope() { set_matmul_precision(saved_); }
  MatmulPrecisionScope(const MatmulPrecisionScope&) = delete;
  MatmulPrecisionScope& operator=(const MatmulPrecisionScope&) = delete;

 private:
  MatmulPrecision saved_;
};
// "f32" (or "fp32") and "bf16"; anything else is an Error naming `what` and the value.
MatmulPrecision parse_matmul_precision(const std::string& text, const std::string& what = "precision");
const char* matmul_precision_name(MatmulPrecision precision);  // "f32" or "bf16"
// The faster precision on this device: bf16 where its backend multiplies bf16 in hardware
// (Backend::bf16_matmul_is_faster: a CPU with AVX512_BF16), else f32, which is as fast there
// and exact.
MatmulPrecision fastest_matmul_precision(Device device);

// ---- elementwise, broadcasting (NumPy rules) ---------------------------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);  // gradient goes to a where a >= b
Tensor eq(const Tensor& a, const Tensor& b);       // 1.0 where equal, else 0.0; no gradient
Tensor affine(const Tensor& x, float scale, float shift);  // scale·x + shift
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x);        // exact: x·Φ(x) with erf
Tensor gelu_tanh(const Tensor& x);   // tanh approximation
Tensor quick_gelu(const Tensor& x);  // x·sigmoid(1.702·x) (OpenAI CLIP)
Tensor square(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor pow(const Tensor& x, float exponent);
Tensor clamp(const Tensor& x, float min, float max);  // gradient passes where min <= x <= max
Tensor step(const Tensor& x, float threshold, float value);  // x >= threshold ? value : 0; no gradient

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& x);
Tensor operator+(const Tensor& a, float s);
Tensor operator-(const Tensor& a, float s);
Tensor operator*(const Tensor& a, float s);
Tensor operator/(const Tensor& a, float s);
Tensor operator*(float s, const Tensor& a);

// ---- reductions ---------------------------------------------------------------------
Tensor sum(const Tensor& x, int64_t axis, bool keepdim = false);
Tensor sum(const Tensor& x);  // over everything, shape []
Tensor mean(const Tensor& x, int64_t axis, bool keepdim = false);
Tensor mean(const Tensor& x);
// Maximum; the gradient is split evenly between tied maxima (like torch.amax).
Tensor max(const Tensor& x, int64_t axis, bool keepdim = false);
Tensor max(const Tensor& x);
// Sums the broadcast axes of x away so the result has `shape` (the backward of broadcasting).
Tensor sum_to_shape(const Tensor& x, const Shape& shape);

// ---- attention ---------------------------------------------------------------------------
// Multi-head self-attention's core: qkv [B, N, 3·D] holds the projected q, k and v side by side
// (head h in columns h·dh .. h·dh + dh of each, dh = D / heads); returns [B, N, D], head h's
// softmax(q·kᵀ/√dh + mask)·v in its columns. mask: undefined or additive [N, N] (e.g. causal,
// -inf above the diagonal); a row it leaves empty attends to nothing (zeros). Its matmuls
// follow matmul_precision(). The CPU runs it fused, reading the heads in place.
Tensor attention(const Tensor& qkv, int64_t heads, const Tensor& mask = Tensor());

// ---- softmax over the last axis, with an optional additive mask broadcastable to x -------
Tensor softmax(const Tensor& x, const Tensor& mask = Tensor());
Tensor log_softmax(const Tensor& x, const Tensor& mask = Tensor());

// ---- normalisation --------------------------------------------------------------------
// Over the last axis; weight and bias [D] (bias may be undefined).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps = 1e-5f);
// x / max(‖x‖₂, eps) along axis (torch.nn.functional.normalize).
Tensor l2_normalize(const Tensor& x, int64_t axis = -1, float eps = 1e-12f);

// ---- indexing -----------------------------------------------------------------------
// table [V, D], ids i32 [...] -> [..., D]; gradient scatter-adds into the table.
Tensor embedding(const Tensor& table, const Tensor& ids);
// Picks entries along axis with i32 indices [m]: result has size m on that axis.
Tensor index_select(const Tensor& x, int64_t axis, const Tensor& index);
// cond (f32 or i32, nonzero = true), a and b broadcast together.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& x, const Tensor& mask, float value);
Tensor one_hot(const Tensor& index, int64_t classes, float on = 1.0f, float off = 0.0f);

// ---- shape --------------------------------------------------------------------------
Tensor reshape(const Tensor& x, const Shape& shape);  // one -1 allowed; shares storage
Tensor permute(const Tensor& x, const std::vector<int64_t>& axes);
Tensor transpose(const Tensor& x, int64_t axis0, int64_t axis1);
Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end);  // [start, end)
Tensor concat(const std::vector<Tensor>& xs, int64_t axis);
Tensor expand(const Tensor& x, const Shape& shape);  // broadcast to shape (copies)
Tensor cast(const Tensor& x, DType dtype);           // f32 <-> i32; no gradient

// ---- losses -------------------------------------------------------------------------
// logits [R, C], targets i32 [R]; mean over rows. With label smoothing ε the target
// distribution is (1-ε)·onehot + ε/C, as in torch.nn.functional.cross_entropy.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, float label_smoothing = 0.0f);

// ---- regularisation (identity when !training or p == 0) -----------------------------------
// Zeroes each element with probability p and scales the rest by 1/(1-p).
Tensor dropout(const Tensor& x, float p, Generator& gen, bool training = true);
// Zeroes whole samples (axis 0) with probability p and scales the rest by 1/(1-p).
Tensor drop_path(const Tensor& x, float p, Generator& gen, bool training = true);

// ---- in place, never recorded (optimisers, gradient accumulation) ----------------------------
void add_(Tensor& dst, const Tensor& src);   // dst += src (src broadcasts to dst)
void mul_(Tensor& dst, const Tensor& src);   // dst *= src
void copy_(Tensor& dst, const Tensor& src);  // same shape and dtype
void fill_(Tensor& dst, float value);
// dst = momentum·dst + (1 − momentum)·src in one pass (an EMA teacher's update; same shape).
void ema_(Tensor& dst, const Tensor& src, float momentum);

// ---- the op registry ----------------------------------------------------------------
// Every differentiable op, by the name it records in the autograd graph. The op ring
// (tests/engine/test_op_ring.cpp) fails when one of these lacks a forward test or a
// gradient test, and when an op records a name that is not listed here.
#define SPARO_DIFFERENTIABLE_OPS(X)                                                      \
  X(matmul) X(linear) X(linear_gelu) X(mlp_gelu) X(add) X(sub) X(mul) X(div) X(maximum) X(affine) X(neg) X(exp) X(log) \
  X(sqrt) X(rsqrt) X(tanh) X(sigmoid) X(relu) X(gelu) X(gelu_tanh) X(quick_gelu) X(square) \
  X(abs) X(pow) X(clamp) X(sum) X(mean) X(max) X(sum_to_shape) X(softmax) X(log_softmax)    \
  X(layer_norm) X(l2_normalize) X(embedding) X(index_select) X(where) X(masked_fill)         \
  X(attention)                                                                              \
  X(reshape) X(permute) X(transpose) X(slice) X(concat) X(expand) X(cross_entropy)          \
  X(dropout) X(drop_path)

const std::vector<std::string>& differentiable_op_names();
// Names recorded by record() in this process so far (for the registry check).
std::vector<std::string> recorded_op_names();

}  // namespace sparo
