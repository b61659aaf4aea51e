// The per-op profiler (engine/profiler.h): exact call counts, FLOPs and rows per op and phase,
// nested ops counted once, nothing recorded when it is off, ops on several threads.
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "engine/ops.h"
#include "engine/profiler.h"

namespace sparo {
namespace {

// The profiler is process-wide: every test leaves it off.
class Profiler : public ::testing::Test {
 protected:
  void TearDown() override { profiler::set_enabled(false); }
};

std::set<std::string> row_names(const profiler::Report& r) {
  std::set<std::string> names;
  for (const profiler::Row& row : r.rows) names.insert(row.op);
  return names;
}

// loss = Σ softmax(x·Wᵀ + b) ⊙ t: a linear layer, softmax, a product and a sum, forward and backward.
TEST_F(Profiler, LinearSoftmaxForwardAndBackwardGiveExactRows) {
  constexpr int64_t M = 4, K = 3, N = 5;
  Generator gen(7);
  // Made before profiling starts: randn would be a row of its own.
  Tensor x = Tensor::randn({M, K}, gen).requires_grad_();
  Tensor w = Tensor::randn({N, K}, gen).requires_grad_();
  Tensor b = Tensor::randn({N}, gen).requires_grad_();
  const Tensor t = Tensor::randn({M, N}, gen);

  profiler::set_enabled(true);
  Tensor loss = sum(mul(softmax(linear(x, w, b)), t));
  loss.backward();
  const profiler::Report r = profiler::report();
  profiler::set_enabled(false);

  // linear with a bias is one op (the GEMM accumulates onto the bias); full is backward()'s seed
  // gradient of ones; grad_accumulate stores the gradients of the three leaves. Nothing nested
  // (linear's backward's GEMMs, sum's expand) has a row of its own.
  EXPECT_EQ(row_names(r), (std::set<std::string>{"linear", "softmax", "mul", "sum", "full", "grad_accumulate"}));
  for (const char* op : {"linear", "softmax", "mul", "sum"}) {
    const profiler::Row* row = r.find(op);
    ASSERT_NE(row, nullptr) << op;
    EXPECT_EQ(row->forward.calls, 1) << op;
    EXPECT_EQ(row->backward.calls, 1) << op;
    EXPECT_GT(row->forward.seconds, 0.0) << op;
    EXPECT_GT(row->backward.seconds, 0.0) << op;
  }
  const profiler::Row& linear_row = *r.find("linear");
  EXPECT_EQ(linear_row.forward.flops, 2.0 * M * N * K);
  // Backward: dx = G·W and dW = Gᵀ·x, one GEMM of 2·M·N·K each.
  EXPECT_EQ(linear_row.backward.flops, 2 * 2.0 * M * N * K);
  const profiler::Row* full = r.find("full");
  const profiler::Row* accumulate = r.find("grad_accumulate");
  ASSERT_NE(full, nullptr);
  ASSERT_NE(accumulate, nullptr);
  EXPECT_EQ(full->forward.calls, 1);
  EXPECT_EQ(full->backward.calls, 0);
  EXPECT_EQ(accumulate->backward.calls, 3);
  EXPECT_EQ(accumulate->forward.calls, 0);
  // Elementwise rows state their bytes: mul reads [M, N] twice, writes [M, N].
  EXPECT_EQ(r.find("mul")->forward.bytes, 4.0 * (3 * M * N));
  // Sorted by total time, and no row holds more than the wall time.
  double tracked = 0.0;
  for (size_t i = 0; i < r.rows.size(); ++i) {
    if (i > 0) {
      EXPECT_GE(r.rows[i - 1].seconds(), r.rows[i].seconds());
    }
    tracked += r.rows[i].seconds();
  }
  EXPECT_LE(tracked, r.wall_seconds);
}

TEST_F(Profiler, NestedOpsCountOnceAndGiveTheirFlopsToTheOuterOne) {
  // A 3-D operand times a 2-D one: matmul reshapes and calls itself on the folded batch.
  constexpr int64_t B = 2, M = 3, K = 4, N = 5;
  Generator gen(1);
  const Tensor a = Tensor::randn({B, M, K}, gen), w = Tensor::randn({K, N}, gen);
  profiler::set_enabled(true);
  const Tensor y = matmul(a, w);
  const profiler::Report r = profiler::report();
  EXPECT_EQ(row_names(r), (std::set<std::string>{"matmul"}));
  const profiler::Row* matmul = r.find("matmul");
  ASSERT_NE(matmul, nullptr);
  EXPECT_EQ(matmul->forward.calls, 1);
  EXPECT_EQ(matmul->forward.flops, 2.0 * B * M * N * K);
}

TEST_F(Profiler, RecordsNothingWhenOff) {
  Generator gen(3);
  Tensor x = Tensor::randn({4, 3}, gen).requires_grad_();
  const Tensor w = Tensor::randn({5, 3}, gen);
  profiler::set_enabled(true);  // a fresh, empty table...
  profiler::set_enabled(false);  // ...that nothing fills while the profiler is off
  EXPECT_FALSE(profiler::enabled());
  sum(softmax(linear(x, w))).backward();
  const profiler::Report r = profiler::report();
  EXPECT_TRUE(r.rows.empty()) << r.rows.front().op;
}

TEST_F(Profiler, OpsOnSeveralThreadsAreAllCounted) {
  Generator gen(5);
  const Tensor x = Tensor::randn({64, 64}, gen);
  profiler::set_enabled(true);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&x] {
      for (int j = 0; j < 25; ++j) (void)exp(x);
    });
  for (std::thread& th : threads) th.join();
  const profiler::Report r = profiler::report();
  ASSERT_NE(r.find("exp"), nullptr);
  EXPECT_EQ(r.find("exp")->forward.calls, 100);
  EXPECT_EQ(r.find("exp")->forward.bytes, 100 * 2.0 * 4 * 64 * 64);
}

TEST_F(Profiler, TableAddsUpToTheWallTime) {
  Generator gen(2);
  const Tensor a = Tensor::randn({32, 32}, gen);
  profiler::set_enabled(true);
  (void)gelu(matmul(a, a));
  const std::string table = profiler::format(profiler::report(), "a test");
  for (const char* text : {"profile: a test; wall ", "fwd calls", "bwd calls", "forward ms", "backward ms", "total ms",
                           "% wall", "matmul", "GFLOP/s", "gelu", "GB/s", "other/untracked", "wall"})
    EXPECT_NE(table.find(text), std::string::npos) << text << "\n" << table;
  // matmul, gelu, other/untracked: their shares sum to the wall's 100 %.
  EXPECT_NE(table.find("100.0"), std::string::npos) << table;
}

}  // namespace
}  // namespace sparo
