// The autograd tape: accumulation, explicit upstream gradients, grad mode, freeing.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"

namespace sparo {
namespace {

Tensor vec(std::vector<float> v) {
  const auto n = static_cast<int64_t>(v.size());
  return Tensor::from_vector(std::move(v), {n});
}

TEST(Autograd, ScalarBackwardGivesAnalyticGradient) {
  Tensor x = vec({1, 2, 3}).requires_grad_();
  sum(mul(x, x)).backward();  // d/dx Σ x² = 2x
  EXPECT_EQ(x.grad().to_float_vector(), (std::vector<float>{2, 4, 6}));
  EXPECT_TRUE(x.is_leaf());
}

TEST(Autograd, TensorUsedTwiceAccumulates) {
  Tensor x = vec({1, -2}).requires_grad_();
  Tensor y = add(mul(x, x), mul(exp(x), x));  // x used four times
  sum(y).backward();
  const std::vector<float> g = x.grad().to_float_vector();
  for (int i = 0; i < 2; ++i) {
    const float v = i == 0 ? 1.0f : -2.0f;
    EXPECT_NEAR(g[i], 2 * v + std::exp(v) * (1 + v), 1e-5);
  }
}

TEST(Autograd, GradientsAccumulateAcrossBackwardCallsUntilZeroed) {
  Tensor x = vec({1, 2}).requires_grad_();
  sum(affine(x, 3.0f, 0.0f)).backward();
  sum(affine(x, 3.0f, 0.0f)).backward();
  EXPECT_EQ(x.grad().to_float_vector(), (std::vector<float>{6, 6}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
  sum(x).backward();
  EXPECT_EQ(x.grad().to_float_vector(), (std::vector<float>{1, 1}));
}

// Data-parallel training starts averaging a parameter's gradient as soon as it is final
// (GradReadyScope): the hook fires once per leaf and pass, while backward still runs (the first
// layer's weight has no gradient yet when the last layer's is reported), and sees the final
// .grad: every use of the leaf summed, plus what an earlier pass left there.
TEST(Autograd, GradReadyHookFiresOncePerLeafAsSoonAsItsGradientIsFinal) {
  Tensor w1 = vec({1, 2}).requires_grad_();   // first layer, used three times
  Tensor w2 = vec({3, -1}).requires_grad_();  // last layer
  const Tensor unused = vec({5}).requires_grad_();
  std::vector<std::string> order;
  std::vector<std::vector<float>> seen;
  const auto pass = [&] {
    const Tensor h = add(mul(w1, w1), affine(w1, 2.0f, 0.0f));  // w1² + 2 w1
    sum(mul(h, w2)).backward();
  };
  {
    const GradReadyScope scope([&](const Tensor& leaf) {
      const bool first_pass = order.size() < 2;
      if (leaf.impl() == w2.impl()) {
        order.push_back("w2");
        if (first_pass) {
          EXPECT_FALSE(w1.grad().defined()) << "reported after the whole backward pass";
        }
      } else {
        order.push_back(leaf.impl() == w1.impl() ? "w1" : "other");
      }
      seen.push_back(leaf.grad().to_float_vector());
    });
    pass();
    pass();  // accumulates: the hook sees the sums
  }
  ASSERT_EQ(order, (std::vector<std::string>{"w2", "w1", "w2", "w1"}));
  EXPECT_EQ(seen[0], (std::vector<float>{3, 8}));    // ∂/∂w2 = h
  EXPECT_EQ(seen[1], (std::vector<float>{12, -6}));  // ∂/∂w1 = w2 (2 w1 + 2)
  EXPECT_EQ(seen[2], (std::vector<float>{6, 16}));
  EXPECT_EQ(seen[3], (std::vector<float>{24, -12}));
  pass();  // the scope has ended: no hook
  EXPECT_EQ(order.size(), 4u);
  EXPECT_EQ(w1.grad().to_float_vector(), (std::vector<float>{36, -18}));
  EXPECT_FALSE(unused.grad().defined());
}

TEST(Autograd, ExplicitUpstreamGradient) {
  Tensor x = vec({1, 2, 3}).requires_grad_();
  Tensor y = affine(x, 2.0f, 1.0f);
  y.backward(vec({1, 0, -1}));
  EXPECT_EQ(x.grad().to_float_vector(), (std::vector<float>{2, 0, -2}));
  Tensor z = affine(x, 2.0f, 1.0f);
  EXPECT_THROW(z.backward(), Error);                   // non-scalar needs an upstream gradient
  EXPECT_THROW(z.backward(Tensor::ones({2})), Error);  // of the right shape
}

TEST(Autograd, NoGradGuardRecordsNothing) {
  Tensor x = vec({1, 2}).requires_grad_();
  {
    NoGradGuard guard;
    EXPECT_FALSE(grad_enabled());
    Tensor y = mul(x, x);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_THROW(sum(y).backward(), Error);
  }
  EXPECT_TRUE(grad_enabled());
  EXPECT_TRUE(mul(x, x).requires_grad());
}

TEST(Autograd, OnlyRequestedLeavesGetGradients) {
  Tensor x = vec({1, 2}).requires_grad_();
  Tensor c = vec({3, 4});
  sum(mul(x, c)).backward();
  EXPECT_EQ(x.grad().to_float_vector(), (std::vector<float>{3, 4}));
  EXPECT_FALSE(c.grad().defined());
  Tensor detached = mul(x, c).detach();
  EXPECT_FALSE(detached.requires_grad());
}

TEST(Autograd, GraphIsFreedAfterBackward) {
  Tensor x = vec({1, 2}).requires_grad_();
  Tensor y = exp(x);
  Tensor loss = sum(exp(y));  // exp saves its input: y's storage lives in the graph
  std::weak_ptr<Storage> y_storage = y.impl()->storage;
  y = Tensor();  // only the graph holds y's storage now
  EXPECT_FALSE(y_storage.expired());
  loss.backward();
  EXPECT_TRUE(y_storage.expired()) << "backward must release what the nodes it ran saved";
  EXPECT_THROW(loss.backward(), Error);  // the graph is gone
}

TEST(Autograd, GraphKeepsOnlyWhatBackwardNeeds) {
  // add needs neither input for its gradient, so an intermediate that only feeds adds must be
  // freed as soon as the caller drops it, graph or not.
  Tensor x = vec({1, 2}).requires_grad_();
  Tensor y = exp(x);
  Tensor loss = sum(add(y, y));
  std::weak_ptr<Storage> y_storage = y.impl()->storage;
  y = Tensor();
  EXPECT_TRUE(y_storage.expired()) << "the graph must not hold tensors its closures did not save";
  loss.backward();
  const std::vector<float> g = x.grad().to_float_vector();
  EXPECT_FLOAT_EQ(g[0], 2 * std::exp(1.0f));
  EXPECT_FLOAT_EQ(g[1], 2 * std::exp(2.0f));
}

TEST(Autograd, DeepGraphDoesNotOverflowTheStack) {
  Tensor x = Tensor::ones({1}).requires_grad_();
  Tensor y = x;
  for (int i = 0; i < 100000; ++i) y = affine(y, 1.0f, 0.0f);
  sum(y).backward();
  EXPECT_EQ(x.grad().to_float_vector(), (std::vector<float>{1}));
}

TEST(Autograd, RequiresGradOnlyOnFloatLeaves) {
  Tensor ids = Tensor::from_vector(std::vector<int32_t>{1}, {1});
  EXPECT_THROW(ids.requires_grad_(), Error);
  Tensor x = vec({1}).requires_grad_();
  Tensor y = mul(x, x);
  EXPECT_THROW(y.requires_grad_(false), Error);
  EXPECT_FALSE(y.is_leaf());
}

TEST(Autograd, SetGradChecksTheShape) {
  Tensor x = vec({1, 2});
  x.set_grad(vec({3, 4}));
  EXPECT_EQ(x.grad().to_float_vector(), (std::vector<float>{3, 4}));
  EXPECT_THROW(x.set_grad(vec({1})), Error);
}


// ---- mixed precision ---------------------------------------------------------------------

std::vector<float> ramp(int64_t n, float phase) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = std::sin(0.37f * static_cast<float>(i) + phase);
  return v;
}

// A matmul recorded under bf16 runs its backward in bf16 too, even when backward() is called
// after the scope ended; and bf16 really differs from f32 on these values.
TEST(MatmulPrecision, BackwardKeepsTheForwardsPrecision) {
  const Tensor g = Tensor::from_vector(ramp(6 * 5, 0.3f), {6, 5});
  const Tensor w = Tensor::from_vector(ramp(4 * 5, 1.1f), {4, 5});
  Tensor x = Tensor::from_vector(ramp(6 * 4, 2.0f), {6, 4});
  x.requires_grad_();
  EXPECT_EQ(matmul_precision(), MatmulPrecision::f32);
  {
    const MatmulPrecisionScope bf16(MatmulPrecision::bf16);
    EXPECT_EQ(matmul_precision(), MatmulPrecision::bf16);
    matmul(x, w).backward(g);
  }
  EXPECT_EQ(matmul_precision(), MatmulPrecision::f32);  // restored
  Tensor expected_bf16, expected_f32;
  {
    const MatmulPrecisionScope bf16(MatmulPrecision::bf16);
    expected_bf16 = matmul(g, w, false, true);  // dX = G·Wᵀ
  }
  expected_f32 = matmul(g, w, false, true);
  EXPECT_EQ(x.grad().to_float_vector(), expected_bf16.to_float_vector());
  EXPECT_NE(x.grad().to_float_vector(), expected_f32.to_float_vector());
}

TEST(MatmulPrecision, ParsesNamesAndRejectsOthers) {
  EXPECT_EQ(parse_matmul_precision("f32"), MatmulPrecision::f32);
  EXPECT_EQ(parse_matmul_precision("fp32"), MatmulPrecision::f32);
  EXPECT_EQ(parse_matmul_precision("bf16"), MatmulPrecision::bf16);
  EXPECT_STREQ(matmul_precision_name(MatmulPrecision::bf16), "bf16");
  try {
    parse_matmul_precision("fp16", "--precision");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "--precision: expected \"f32\" or \"bf16\", got \"fp16\"");
  }
}

}  // namespace
}  // namespace sparo
