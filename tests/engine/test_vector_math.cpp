// The vectorisable exp / erf used by the CPU kernels, against libm in double, over
// their whole range (including the overflow / underflow edges and special values).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>

#include "engine/cpu/vector_math.h"

namespace sparo::cpu {
namespace {

TEST(VectorMath, ExpWithinTwoUlp) {
  double worst = 0;
  for (float x = -87.3f; x < 88.72f; x += 1e-3f) {
    const double e = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::fabs(fast_exp(x) - e) / e);
  }
  EXPECT_LT(worst, 2 * 5.96e-8) << "worst relative error";
  EXPECT_EQ(fast_exp(-INFINITY), 0.0f);
  EXPECT_EQ(fast_exp(-100.0f), 0.0f);
  EXPECT_EQ(fast_exp(INFINITY), INFINITY);
  EXPECT_EQ(fast_exp(100.0f), INFINITY);
  EXPECT_TRUE(std::isnan(fast_exp(NAN)));
  EXPECT_EQ(fast_exp(0.0f), 1.0f);
}

// erf's exp of -x² is fast_exp with its overflow and NaN selects dropped: the same bits over
// every non-positive float (a stride through their bit patterns), the same edges.
TEST(VectorMath, ExpNonPositiveIsFastExpBitForBit) {
  int64_t differ = 0, tried = 0;
  for (uint32_t bits = 0x80000000u; bits <= 0xff800000u && bits >= 0x80000000u; bits += 101) {
    const float x = std::bit_cast<float>(bits);
    ++tried;
    if (std::bit_cast<uint32_t>(fast_exp_nonpositive(x)) != std::bit_cast<uint32_t>(fast_exp(x))) ++differ;
  }
  EXPECT_EQ(differ, 0) << "of " << tried;
  EXPECT_EQ(fast_exp_nonpositive(-INFINITY), 0.0f);
  EXPECT_EQ(fast_exp_nonpositive(-0.0f), 1.0f);
  EXPECT_TRUE(std::isnan(fast_exp_nonpositive(NAN)));
  EXPECT_TRUE(std::isnan(fast_erf(NAN)));
}

TEST(VectorMath, ErfWithin6e7AbsoluteAndOdd) {
  double worst = 0;
  for (float x = -8.0f; x < 8.0f; x += 1e-4f)
    worst = std::max(worst, std::fabs(fast_erf(x) - std::erf(static_cast<double>(x))));
  EXPECT_LT(worst, 6e-7);
  EXPECT_EQ(fast_erf(0.7f), -fast_erf(-0.7f));
  EXPECT_EQ(fast_erf(INFINITY), 1.0f);
  EXPECT_EQ(fast_erf(-INFINITY), -1.0f);
}

TEST(VectorMath, SigmoidSaturatesCleanly) {
  EXPECT_EQ(fast_sigmoid(-200.0f), 0.0f);
  EXPECT_EQ(fast_sigmoid(200.0f), 1.0f);
  EXPECT_NEAR(fast_sigmoid(0.3f), 1.0 / (1.0 + std::exp(-0.3)), 1e-7);
}

}  // namespace
}  // namespace sparo::cpu
