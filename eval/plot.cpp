#include "eval/plot.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>

#include "engine/tensor.h"

namespace sparo {

std::vector<double> nice_ticks(double lo, double hi, int target) {
  const double raw = (hi - lo) / target;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / magnitude;
  const double step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * magnitude;
  std::vector<double> ticks;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step)
    ticks.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  return ticks;
}

std::string format_number(double v) {
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

namespace {

using Colour = std::array<uint8_t, 3>;

// A 5×7 glyph: seven rows, bit 4 the leftmost pixel.
struct Glyph {
  char c;
  uint8_t rows[7];
};

// Digits, lower-case letters and the punctuation numbers and run names use.
constexpr Glyph kFont[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'a', {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F}}, {'b', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E}},
    {'c', {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E}}, {'d', {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F}},
    {'e', {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E}}, {'f', {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08}},
    {'g', {0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E}}, {'h', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11}},
    {'i', {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E}}, {'j', {0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C}},
    {'k', {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12}}, {'l', {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'m', {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11}}, {'n', {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11}},
    {'o', {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E}}, {'p', {0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10}},
    {'q', {0x00, 0x00, 0x0D, 0x13, 0x0F, 0x01, 0x01}}, {'r', {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10}},
    {'s', {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E}}, {'t', {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06}},
    {'u', {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D}}, {'v', {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'w', {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A}}, {'x', {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11}},
    {'y', {0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E}}, {'z', {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}}, {',', {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}},
    {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}}, {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}},
    {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}}, {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}}, {'/', {0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10}},
    {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}}, {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}},
    {' ', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}},
};
constexpr Glyph kMissingGlyph = {'?', {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F}};
constexpr int kAdvance = 6, kGlyphHeight = 7;

const Glyph& glyph_of(char c) {
  const char lower = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const Glyph& g : kFont)
    if (g.c == lower) return g;
  return kMissingGlyph;
}

void set_pixel(Image& image, int x, int y, Colour colour) {
  if (x < 0 || y < 0 || x >= image.width || y >= image.height) return;
  uint8_t* p = &image.rgb[(static_cast<size_t>(y) * image.width + x) * 3];
  p[0] = colour[0], p[1] = colour[1], p[2] = colour[2];
}

void fill_rect(Image& image, int left, int top, int width, int height, Colour colour) {
  for (int y = top; y < top + height; ++y)
    for (int x = left; x < left + width; ++x) set_pixel(image, x, y, colour);
}

// Bresenham, each step a thickness × thickness square.
void draw_line(Image& image, int x0, int y0, int x1, int y1, Colour colour, int thickness) {
  const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
  const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  for (;;) {
    fill_rect(image, x0 - thickness / 2, y0 - thickness / 2, thickness, thickness, colour);
    if (x0 == x1 && y0 == y1) return;
    const int e2 = 2 * err;
    if (e2 >= dy) err += dy, x0 += sx;
    if (e2 <= dx) err += dx, y0 += sy;
  }
}

int text_width(const std::string& text, int scale) { return static_cast<int>(text.size()) * kAdvance * scale; }

}  // namespace

void draw_text(Image& image, int left, int top, const std::string& text, Colour colour, int scale) {
  for (size_t i = 0; i < text.size(); ++i) {
    const Glyph& g = glyph_of(text[i]);
    const int x0 = left + static_cast<int>(i) * kAdvance * scale;
    for (int row = 0; row < kGlyphHeight; ++row)
      for (int col = 0; col < 5; ++col)
        if (g.rows[row] & (0x10 >> col)) fill_rect(image, x0 + col * scale, top + row * scale, scale, scale, colour);
  }
}

Image line_chart(const std::vector<PlotSeries>& series, const std::string& title, const std::string& x_label,
                 const std::string& y_label, int width, int height) {
  if (width < 200 || height < 150)
    throw Error("line_chart: " + std::to_string(width) + " × " + std::to_string(height) +
                " pixels is too small (at least 200 × 150)");
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const PlotSeries& s : series)
    for (const auto& [x, y] : s.points)
      if (std::isfinite(x) && std::isfinite(y)) {
        x0 = std::min(x0, x), x1 = std::max(x1, x);
        y0 = std::min(y0, y), y1 = std::max(y1, y);
      }
  if (!std::isfinite(x0)) throw Error("line_chart \"" + title + "\": no finite point to draw");
  if (x1 == x0) x1 = x0 + 1;
  const double pad = y1 > y0 ? 0.05 * (y1 - y0) : std::max(1e-3, 0.1 * std::abs(y0));
  y0 -= pad, y1 += pad;

  constexpr int kScale = 2, kText = kGlyphHeight * kScale;
  constexpr Colour kInk = {40, 40, 40}, kGrid = {225, 225, 225}, kWhite = {255, 255, 255};
  const std::vector<double> x_ticks = nice_ticks(x0, x1, 6), y_ticks = nice_ticks(y0, y1, 5);
  int label_width = 0;
  for (double t : y_ticks) label_width = std::max(label_width, text_width(format_number(t), kScale));
  const int left = label_width + 16, right = width - 32, top = 4 * kText, bottom = height - 2 * kText - 20;
  const auto px = [&](double x) { return left + static_cast<int>(std::lround((x - x0) / (x1 - x0) * (right - left))); };
  const auto py = [&](double y) { return bottom - static_cast<int>(std::lround((y - y0) / (y1 - y0) * (bottom - top))); };

  Image image;
  image.width = width, image.height = height;
  image.rgb.assign(static_cast<size_t>(width) * height * 3, 255);
  draw_text(image, left, kText / 2, title, kInk, kScale);
  draw_text(image, 8, top - kText - 10, y_label, kInk, kScale);
  draw_text(image, (left + right - text_width(x_label, kScale)) / 2, height - kText - 6, x_label, kInk, kScale);
  for (double t : x_ticks) {
    draw_line(image, px(t), top, px(t), bottom, kGrid, 1);
    const std::string s = format_number(t);
    draw_text(image, px(t) - text_width(s, kScale) / 2, bottom + 8, s, kInk, kScale);
  }
  for (double t : y_ticks) {
    draw_line(image, left, py(t), right, py(t), kGrid, 1);
    const std::string s = format_number(t);
    draw_text(image, left - 8 - text_width(s, kScale), py(t) - kText / 2, s, kInk, kScale);
  }
  draw_line(image, left, top, left, bottom, kInk, 1);
  draw_line(image, left, bottom, right, bottom, kInk, 1);

  for (const PlotSeries& s : series) {
    bool have_previous = false;
    int prev_x = 0, prev_y = 0;
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y)) {
        have_previous = false;
        continue;
      }
      const int cx = px(x), cy = py(y);
      // A lone point (first, or after a gap) still shows as a dot.
      draw_line(image, have_previous ? prev_x : cx, have_previous ? prev_y : cy, cx, cy, s.colour, 2);
      prev_x = cx, prev_y = cy, have_previous = true;
    }
  }

  // The legend, top right inside the plot, on white.
  int legend_width = 0;
  for (const PlotSeries& s : series) legend_width = std::max(legend_width, text_width(s.name, kScale));
  legend_width += 40;
  const int row_height = kText + 6;
  const int legend_left = right - legend_width - 8, legend_top = top + 8;
  fill_rect(image, legend_left - 4, legend_top - 4, legend_width + 8, row_height * static_cast<int>(series.size()) + 4,
            kWhite);
  for (size_t i = 0; i < series.size(); ++i) {
    const int y = legend_top + static_cast<int>(i) * row_height;
    fill_rect(image, legend_left, y + kText / 2 - 1, 28, 3, series[i].colour);
    draw_text(image, legend_left + 36, y, series[i].name, kInk, kScale);
  }
  return image;
}

}  // namespace sparo
