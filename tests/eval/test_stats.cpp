// The experiment's statistics on hand-made inputs with known answers.
#include <gtest/gtest.h>

#include <cmath>

#include "eval/stats.h"
#include "tests/expect_error.h"

namespace sparo {
namespace {

TEST(Stats, MeanAndSampleStandardDeviation) {
  const MeanStd m = mean_std({2, 4, 4, 4, 5, 5, 7, 9});
  EXPECT_DOUBLE_EQ(m.mean, 5.0);
  EXPECT_NEAR(m.std, std::sqrt(32.0 / 7.0), 1e-12);  // n − 1 in the denominator
  EXPECT_EQ(mean_std({0.25}).std, 0.0);
  expect_error([] { mean_std({}); }, {"mean_std", "no values"});
}

TEST(Stats, StudentQuantilesMatchTheTables) {
  EXPECT_DOUBLE_EQ(t_quantile_975(1), 12.706);
  EXPECT_DOUBLE_EQ(t_quantile_975(2), 4.303);
  EXPECT_DOUBLE_EQ(t_quantile_975(9), 2.262);
  EXPECT_DOUBLE_EQ(t_quantile_975(30), 2.042);
  EXPECT_NEAR(t_quantile_975(60), 2.000, 0.002);   // scipy: 2.0003
  EXPECT_NEAR(t_quantile_975(120), 1.980, 0.002);  // scipy: 1.9799
  expect_error([] { t_quantile_975(0); }, {"t_quantile_975", ">= 1"});
}

TEST(Stats, PairedDifferenceIntervalOverThreeSeeds) {
  // Differences 1, 2, 3: mean 2, sd 1, se 1/√3, t(2) = 4.303 → 2 ± 2.4843.
  const PairedDifference d = paired_difference({0.5, 0.5, 0.5}, {1.5, 2.5, 3.5});
  EXPECT_DOUBLE_EQ(d.mean, 2.0);
  EXPECT_NEAR(d.lo, 2.0 - 4.303 / std::sqrt(3.0), 1e-12);
  EXPECT_NEAR(d.hi, 2.0 + 4.303 / std::sqrt(3.0), 1e-12);
  EXPECT_FALSE(d.excludes_zero());  // the interval [-0.48, 4.48] contains 0
  // The same mean with less spread: 1.9, 2, 2.1 → 2 ± 0.248, which excludes 0.
  const PairedDifference tight = paired_difference({0, 0, 0}, {1.9, 2.0, 2.1});
  EXPECT_NEAR(tight.hi - tight.lo, 2 * 4.303 * 0.1 / std::sqrt(3.0), 1e-9);
  EXPECT_TRUE(tight.excludes_zero());
  // One seed: a difference without an interval.
  const PairedDifference one = paired_difference({0.3}, {0.5});
  EXPECT_NEAR(one.mean, 0.2, 1e-15);
  EXPECT_TRUE(std::isnan(one.lo) && std::isnan(one.hi));
  EXPECT_FALSE(one.excludes_zero());
  expect_error([] { paired_difference({1, 2}, {1}); }, {"paired_difference", "2 and 1 values"});
}

}  // namespace
}  // namespace sparo
