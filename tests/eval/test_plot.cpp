// The pixel line charts of sparo visualize: the series lands where its values say, text is
// drawn in the bitmap font, and bad sizes or empty data give clear errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "eval/plot.h"
#include "tests/expect_error.h"

namespace sparo {
namespace {

constexpr std::array<uint8_t, 3> kRed = {220, 20, 20};

bool is(const Image& image, int x, int y, std::array<uint8_t, 3> colour) {
  const uint8_t* p = &image.rgb[(static_cast<size_t>(y) * image.width + x) * 3];
  return p[0] == colour[0] && p[1] == colour[1] && p[2] == colour[2];
}

Image white(int width, int height) {
  Image image;
  image.width = width, image.height = height;
  image.rgb.assign(static_cast<size_t>(width) * height * 3, 255);
  return image;
}

TEST(Plot, TextIsDrawnInTheBitmapFontWithinItsAdvance) {
  Image a = white(60, 20), b = white(60, 20);
  draw_text(a, 2, 2, "0.5e-3", kRed, 1);
  draw_text(b, 2, 2, "0.8e-3", kRed, 1);
  EXPECT_NE(a.rgb, b.rgb);  // different digits, different pixels
  int lit = 0;
  for (int y = 0; y < 20; ++y)
    for (int x = 0; x < 60; ++x)
      if (is(a, x, y, kRed)) {
        ++lit;
        EXPECT_GE(x, 2);
        EXPECT_LT(x, 2 + 6 * 6);  // six characters, 6 pixels each
        EXPECT_GE(y, 2);
        EXPECT_LT(y, 2 + 7);
      }
  EXPECT_GT(lit, 30);
  // Upper case is drawn as lower case.
  Image upper = white(20, 12), lower = white(20, 12);
  draw_text(upper, 0, 0, "Loss", kRed);
  draw_text(lower, 0, 0, "loss", kRed);
  EXPECT_EQ(upper.rgb, lower.rgb);
}

TEST(Plot, AFallingSeriesRunsFromTopLeftToBottomRight) {
  PlotSeries falling{"loss", {}, kRed};
  for (int x = 0; x <= 100; ++x) falling.points.emplace_back(x, 10.0 - 0.1 * x);
  falling.points.insert(falling.points.begin() + 50, {50.5, NAN});  // a gap is skipped, not drawn
  const Image chart = line_chart({falling}, "run: loss", "step", "loss", 400, 300);
  ASSERT_EQ(chart.width, 400);
  ASSERT_EQ(chart.height, 300);
  int top_x = -1, top_y = 1 << 30, bottom_x = -1, bottom_y = -1, min_x = 1 << 30, max_x = -1;
  for (int y = 0; y < chart.height; ++y)
    for (int x = 0; x < chart.width; ++x) {
      if (!is(chart, x, y, kRed)) continue;
      // The legend swatch sits top right, inside the first rows of the plot: skip its band.
      if (y < 4 * 14 + 8 + 14 + 6) continue;
      if (y < top_y) top_y = y, top_x = x;
      if (y > bottom_y) bottom_y = y, bottom_x = x;
      min_x = std::min(min_x, x), max_x = std::max(max_x, x);
    }
  ASSERT_GE(top_x, 0);
  EXPECT_LT(top_x, chart.width / 3) << "the highest value (10 at step 0) is at the left";
  EXPECT_GT(bottom_x, 2 * chart.width / 3) << "the lowest value (0 at step 100) is at the right";
  EXPECT_GT(bottom_y - top_y, chart.height / 2);
  EXPECT_GT(max_x - min_x, chart.width / 2);
}

TEST(Plot, BadSizesAndEmptySeriesAreErrors) {
  PlotSeries empty{"loss", {{0, NAN}, {1, INFINITY}}, kRed};
  expect_error([&] { line_chart({empty}, "run: loss", "step", "loss"); }, {"line_chart", "run: loss", "no finite point"});
  PlotSeries one{"loss", {{3, 1.5}}, kRed};
  expect_error([&] { line_chart({one}, "t", "x", "y", 100, 100); }, {"line_chart", "100 × 100", "200 × 150"});
  const Image dot = line_chart({one}, "t", "x", "y");  // one point: a dot, equal ranges widened
  EXPECT_TRUE(std::any_of(dot.rgb.begin(), dot.rgb.end(), [](uint8_t v) { return v == 220; }));
}

TEST(Plot, TicksAreRoundAndCoverTheRange) {
  EXPECT_EQ(nice_ticks(0, 10, 5), (std::vector<double>{0, 2, 4, 6, 8, 10}));
  const std::vector<double> ticks = nice_ticks(0.13, 0.61, 5), expected = {0.2, 0.3, 0.4, 0.5, 0.6};
  ASSERT_EQ(ticks.size(), expected.size());
  for (size_t i = 0; i < ticks.size(); ++i) EXPECT_NEAR(ticks[i], expected[i], 1e-12);
  EXPECT_EQ(format_number(0.00049999), "0.0005");
  EXPECT_EQ(format_number(NAN), "nan");
}

}  // namespace
}  // namespace sparo
