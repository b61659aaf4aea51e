// Line charts drawn straight into pixels, for the training-curve PNGs of `sparo visualize`
// (no plotting library: a 5×7 bitmap font, Bresenham lines). The same tick and number rules
// serve the SVG charts of the HTML report.
#pragma once

#include <array>
#include <string>
#include <utility>
#include <vector>

#include "image/image.h"

namespace sparo {

// About `target` round tick values (1, 2 or 5 × 10^k apart) covering [lo, hi] (lo < hi).
std::vector<double> nice_ticks(double lo, double hi, int target);
// A number in at most 4 significant digits ("%.4g"); "nan", "inf", "-inf" for the others.
std::string format_number(double v);

struct PlotSeries {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y); non-finite points leave a gap
  std::array<uint8_t, 3> colour = {31, 119, 180};
};

// The text in the bitmap font, `scale` pixels per font pixel: letters are drawn lower-case,
// characters the font lacks as a box. Each character advances 6·scale pixels; a line is 7·scale tall.
void draw_text(Image& image, int left, int top, const std::string& text, std::array<uint8_t, 3> colour, int scale = 1);

// A width × height white picture: the title on top, the series as 2-pixel lines on linear axes
// with grid, tick labels, axis labels and a legend (series names, top right). Errors: a size
// under 200 × 150, or no finite point at all.
Image line_chart(const std::vector<PlotSeries>& series, const std::string& title, const std::string& x_label,
                 const std::string& y_label, int width = 800, int height = 450);

}  // namespace sparo
