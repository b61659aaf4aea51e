// The counter-based generator: known answers, the documented stream layout, statistics.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/ops.h"
#include "engine/random.h"

namespace sparo {
namespace {

// Known-answer vectors of Philox4x32-10 published with Random123 (kat_vectors).
TEST(Philox, KnownAnswers) {
  EXPECT_EQ(philox4x32_10({0, 0, 0, 0}, {0, 0}), (std::array<uint32_t, 4>{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}),
            (std::array<uint32_t, 4>{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}),
            (std::array<uint32_t, 4>{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

// Element i of a fill comes from word i % 4 of block first + i / 4 — the layout a GPU
// kernel reproduces.
TEST(Philox, UniformFollowsTheDocumentedStream) {
  Generator gen(42);
  gen.reserve(10);  // skip three blocks
  EXPECT_EQ(gen.offset(), 3u);
  const std::vector<float> u = Tensor::uniform({9}, 0.0, 1.0, gen).to_float_vector();
  EXPECT_EQ(gen.offset(), 6u);
  for (int i = 0; i < 9; ++i) {
    const auto w = philox4x32(42, 3 + static_cast<uint64_t>(i / 4));
    EXPECT_EQ(u[i], philox_uniform01(w[static_cast<size_t>(i % 4)])) << i;
  }
}

TEST(Philox, NormalIsBoxMullerOfTheStream) {
  Generator gen(7);
  const std::vector<float> n = Tensor::randn({4}, gen).to_float_vector();
  const auto w = philox4x32(7, 0);
  const float r0 = std::sqrt(-2.0f * std::log(philox_uniform01_open_low(w[0])));
  EXPECT_NEAR(n[0], r0 * std::cos(6.2831853f * philox_uniform01(w[1])), 1e-6);
  EXPECT_NEAR(n[1], r0 * std::sin(6.2831853f * philox_uniform01(w[1])), 1e-6);
}

TEST(Philox, SameSeedSameValuesDifferentSeedDifferentValues) {
  Generator a(1), b(1), c(2);
  const auto va = Tensor::randn({100}, a).to_float_vector();
  EXPECT_EQ(va, Tensor::randn({100}, b).to_float_vector());
  EXPECT_NE(va, Tensor::randn({100}, c).to_float_vector());
  EXPECT_NE(va, Tensor::randn({100}, a).to_float_vector());  // the generator advanced
}

TEST(Philox, Statistics) {
  Generator gen(3);
  const auto u = Tensor::uniform({100000}, -1.0, 3.0, gen).to_float_vector();
  double mean = 0;
  for (float v : u) {
    ASSERT_GE(v, -1.0f);
    ASSERT_LT(v, 3.0f);
    mean += v;
  }
  EXPECT_NEAR(mean / u.size(), 1.0, 0.02);
  const auto n = Tensor::randn({100000}, gen).to_float_vector();
  double m = 0, sq = 0;
  for (float v : n) { m += v; sq += double(v) * v; }
  m /= n.size();
  EXPECT_NEAR(m, 0.0, 0.02);
  EXPECT_NEAR(std::sqrt(sq / n.size() - m * m), 1.0, 0.02);
}

TEST(Dropout, KeepsAboutOneMinusPAndScales) {
  Generator gen(9);
  const auto y = dropout(Tensor::ones({20000}), 0.25f, gen).to_float_vector();
  int kept = 0;
  for (float v : y) {
    if (v != 0.0f) { ++kept; EXPECT_FLOAT_EQ(v, 1.0f / 0.75f); }
  }
  EXPECT_NEAR(kept / 20000.0, 0.75, 0.015);
  Generator g2(9);
  const auto p = drop_path(Tensor::ones({1000, 3}), 0.5f, g2).to_float_vector();
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(p[3 * i] == p[3 * i + 1] && p[3 * i] == p[3 * i + 2]) << "row " << i;
  Generator g3(9);
  EXPECT_EQ(dropout(Tensor::ones({5}), 1.0f, g3).to_float_vector(), std::vector<float>(5, 0.0f));
  EXPECT_THROW(dropout(Tensor::ones({5}), 1.5f, g3), Error);
}

// Data parallel (random.h's BatchShard): a process with rows [4, 8) of a batch of 8 draws the
// drop-path and dropout masks of those rows of the whole batch's draw, per group of 8 rows (DINO's
// crop-major [crop 0 of every image, crop 1, ...]), and its generator moves as one process's does.
TEST(Dropout, AShardedGeneratorDrawsItsRowsOfTheWholeBatch) {
  const Tensor whole = Tensor::ones({16, 3, 2});  // 2 groups of a global batch of 8
  Generator one(7);
  const std::vector<float> all = drop_path(whole, 0.5f, one).to_float_vector();
  const std::vector<float> all_dropout = dropout(whole, 0.5f, one).to_float_vector();
  Generator shard(7);
  shard.set_batch_shard({8, 4, 4});
  const Tensor mine = Tensor::ones({8, 3, 2});  // rows 4..7 of each group
  const std::vector<float> part = drop_path(mine, 0.5f, shard).to_float_vector();
  const std::vector<float> part_dropout = dropout(mine, 0.5f, shard).to_float_vector();
  EXPECT_EQ(shard.offset(), one.offset());
  for (int g = 0; g < 2; ++g)
    for (int i = 0; i < 4 * 6; ++i) {
      EXPECT_EQ(part[static_cast<size_t>(g * 24 + i)], all[static_cast<size_t>(g * 48 + 24 + i)]) << g << " " << i;
      EXPECT_EQ(part_dropout[static_cast<size_t>(g * 24 + i)], all_dropout[static_cast<size_t>(g * 48 + 24 + i)]);
    }
  EXPECT_THROW(drop_path(Tensor::ones({6, 3}), 0.5f, shard), Error);  // not a multiple of its 4 rows
  shard.set_batch_shard({8, 0, 8});  // the whole batch: the plain draw
  Generator plain(7);
  plain.set_state(7, shard.offset());
  EXPECT_EQ(drop_path(whole, 0.5f, shard).to_float_vector(), drop_path(whole, 0.5f, plain).to_float_vector());
}

}  // namespace
}  // namespace sparo
