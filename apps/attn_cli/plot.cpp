// See plot.hpp.
#include "plot.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <png.h>

#include <attn/core/error.hpp>

namespace attn_cli {

namespace {

// The 9-colour viridis palette, evenly spaced over [0, 1].
constexpr std::array<Rgb, 9> viridis_anchors{{{0x44, 0x01, 0x54},
                                              {0x47, 0x2D, 0x7B},
                                              {0x3B, 0x52, 0x8B},
                                              {0x2C, 0x72, 0x8E},
                                              {0x21, 0x90, 0x8C},
                                              {0x27, 0xAD, 0x81},
                                              {0x5D, 0xC8, 0x63},
                                              {0xAA, 0xDC, 0x32},
                                              {0xFD, 0xE7, 0x25}}};

// 5x7 glyphs: seven rows of five pixels, '#' set.
struct Glyph {
  char c;
  std::array<const char*, 7> rows;
};
// clang-format off
constexpr std::array<Glyph, 52> glyphs{{
  {'0', {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}},
  {'1', {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}},
  {'2', {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}},
  {'3', {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."}},
  {'4', {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}},
  {'5', {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}},
  {'6', {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}},
  {'7', {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}},
  {'8', {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}},
  {'9', {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}},
  {'a', {".....", ".....", ".###.", "....#", ".####", "#...#", ".####"}},
  {'b', {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "####."}},
  {'c', {".....", ".....", ".###.", "#....", "#....", "#...#", ".###."}},
  {'d', {"....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####"}},
  {'e', {".....", ".....", ".###.", "#...#", "#####", "#....", ".###."}},
  {'f', {"..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."}},
  {'g', {".....", ".####", "#...#", "#...#", ".####", "....#", ".###."}},
  {'h', {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"}},
  {'i', {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."}},
  {'j', {"...#.", ".....", "..##.", "...#.", "...#.", "#..#.", ".##.."}},
  {'k', {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."}},
  {'l', {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}},
  {'m', {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#"}},
  {'n', {".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"}},
  {'o', {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."}},
  {'p', {".....", ".....", "####.", "#...#", "####.", "#....", "#...."}},
  {'q', {".....", ".....", ".##.#", "#..##", ".####", "....#", "....#"}},
  {'r', {".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."}},
  {'s', {".....", ".....", ".###.", "#....", ".###.", "....#", "####."}},
  {'t', {".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."}},
  {'u', {".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"}},
  {'v', {".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."}},
  {'w', {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."}},
  {'x', {".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"}},
  {'y', {".....", ".....", "#...#", "#...#", ".####", "....#", ".###."}},
  {'z', {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"}},
  {'.', {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."}},
  {',', {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."}},
  {'-', {".....", ".....", ".....", "#####", ".....", ".....", "....."}},
  {'+', {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."}},
  {':', {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."}},
  {'=', {".....", ".....", "#####", ".....", "#####", ".....", "....."}},
  {'(', {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."}},
  {')', {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."}},
  {'[', {".###.", ".#...", ".#...", ".#...", ".#...", ".#...", ".###."}},
  {']', {".###.", "...#.", "...#.", "...#.", "...#.", "...#.", ".###."}},
  {'/', {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."}},
  {'_', {".....", ".....", ".....", ".....", ".....", ".....", "#####"}},
  {'\'', {"..#..", "..#..", ".#...", ".....", ".....", ".....", "....."}},
  {'%', {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"}},
  {'#', {".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."}},
  {'?', {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."}},
}};
// clang-format on

const Glyph* glyph_of(char c) {
  const char lower = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& g : glyphs)
    if (g.c == lower) return &g;
  return nullptr;
}

const Rgb black{0, 0, 0};
const Rgb grey{90, 90, 90};

}  // namespace

Rgb viridis(double t) {
  if (!(t > 0)) t = 0;  // NaN too
  if (t > 1) t = 1;
  const double x = t * static_cast<double>(viridis_anchors.size() - 1);
  const auto i = std::min(static_cast<std::size_t>(x), viridis_anchors.size() - 2);
  const double f = x - static_cast<double>(i);
  const Rgb a = viridis_anchors[i], b = viridis_anchors[i + 1];
  auto mix = [f](std::uint8_t u, std::uint8_t v) {
    return static_cast<std::uint8_t>(std::lround((1 - f) * u + f * v));
  };
  return {mix(a.r, b.r), mix(a.g, b.g), mix(a.b, b.b)};
}

Image::Image(int width, int height)
    : w_(width), h_(height), px_(static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 3, 255) {}

Rgb Image::at(int x, int y) const {
  const std::size_t i = (static_cast<std::size_t>(y) * static_cast<std::size_t>(w_) + static_cast<std::size_t>(x)) * 3;
  return {px_[i], px_[i + 1], px_[i + 2]};
}

void Image::set(int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
  const std::size_t i = (static_cast<std::size_t>(y) * static_cast<std::size_t>(w_) + static_cast<std::size_t>(x)) * 3;
  px_[i] = c.r;
  px_[i + 1] = c.g;
  px_[i + 2] = c.b;
}

void Image::fill(int x, int y, int w, int h, Rgb c) {
  for (int j = y; j < y + h; ++j)
    for (int i = x; i < x + w; ++i) set(i, j, c);
}

int text_width(std::string_view s, int scale) { return static_cast<int>(s.size()) * 6 * scale; }

void Image::text(int x, int y, std::string_view s, Rgb c, int scale) {
  for (std::size_t k = 0; k < s.size(); ++k) {
    const int gx = x + static_cast<int>(k) * 6 * scale;
    if (s[k] == ' ') continue;
    const Glyph* g = glyph_of(s[k]);
    for (int r = 0; r < 7; ++r)
      for (int col = 0; col < 5; ++col) {
        // a character without a glyph is drawn as a hollow box, never dropped silently
        const bool on = g != nullptr ? g->rows[static_cast<std::size_t>(r)][col] == '#'
                                     : (r == 0 || r == 6 || col == 0 || col == 4);
        if (on) fill(gx + col * scale, y + r * scale, scale, scale, c);
      }
  }
}

void Image::write_png(const std::string& path) const {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) throw attn::IOError(fmt::format("png '{}': cannot open the file for writing", path));
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png != nullptr ? png_create_info_struct(png) : nullptr;
  if (png == nullptr || info == nullptr) {
    png_destroy_write_struct(&png, nullptr);
    std::fclose(f);
    throw attn::IOError(fmt::format("png '{}': libpng could not be initialised", path));
  }
  std::vector<png_const_bytep> rows(static_cast<std::size_t>(h_));
  for (int y = 0; y < h_; ++y) rows[static_cast<std::size_t>(y)] = px_.data() + static_cast<std::size_t>(y) * static_cast<std::size_t>(w_) * 3;
  bool failed = false;
  // libpng reports errors by longjmp; nothing with a destructor is created between here and the end
  if (setjmp(png_jmpbuf(png))) {
    failed = true;
  } else {
    png_init_io(png, f);
    png_set_IHDR(png, info, static_cast<png_uint_32>(w_), static_cast<png_uint_32>(h_), 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_rows(png, const_cast<png_bytepp>(rows.data()), static_cast<png_uint_32>(h_));
    png_write_end(png, nullptr);
  }
  png_destroy_write_struct(&png, &info);
  const bool closed = std::fclose(f) == 0;
  if (failed || !closed) throw attn::IOError(fmt::format("png '{}': writing the image failed", path));
}

std::vector<int> ticks(int n, int max_ticks) {
  std::vector<int> out;
  if (n <= 0) return out;
  int step = 1;
  for (int mag = 1;; mag *= 10) {
    bool found = false;
    for (int m : {1, 2, 5}) {
      step = m * mag;
      if ((n - 1) / step + 1 <= max_ticks) {
        found = true;
        break;
      }
    }
    if (found || mag > 100'000'000) break;
  }
  for (int i = 0; i < n; i += step) out.push_back(i);
  return out;
}

Image render_panels(const std::vector<Panel>& panels, double vmin, double vmax, std::string_view title,
                    int columns) {
  int max_rows = 1, max_cols = 1;
  for (const auto& p : panels) {
    max_rows = std::max(max_rows, p.rows);
    max_cols = std::max(max_cols, p.cols);
  }
  const int cell = std::clamp(240 / std::max(max_rows, max_cols), 1, 32);
  const int digits = static_cast<int>(std::to_string(std::max(max_rows, max_cols)).size());
  const int left = 14 + text_width(std::string(static_cast<std::size_t>(digits), '0')) + 8;  // label + ticks
  const int top = 16;                                                                         // panel title
  const int bottom = 30;                                                                      // ticks + label
  const int pw = left + max_cols * cell + 12;
  const int ph = top + max_rows * cell + bottom;
  const int n = static_cast<int>(panels.size());
  const int cols = std::max(1, std::min(columns, n));
  const int grid_rows = (n + cols - 1) / cols;
  const int title_h = 20;
  const int bar_w = 90;
  const int width = 8 + cols * pw + bar_w;
  const int height = title_h + grid_rows * ph + 8;
  Image img(width, height);
  img.text(8, 6, title, black);
  const double span = vmax > vmin ? vmax - vmin : 1.0;

  for (int k = 0; k < n; ++k) {
    const Panel& p = panels[static_cast<std::size_t>(k)];
    const int ox = 8 + (k % cols) * pw + left;
    const int oy = title_h + (k / cols) * ph + top;
    img.text(ox, oy - 12, p.title, black);
    for (int r = 0; r < p.rows; ++r)
      for (int c = 0; c < p.cols; ++c)
        img.fill(ox + c * cell, oy + r * cell, cell, cell,
                 viridis((p.values[static_cast<std::size_t>(r) * static_cast<std::size_t>(p.cols) +
                                   static_cast<std::size_t>(c)] -
                          vmin) /
                         span));
    // frame, ticks at cell centres, tick labels, axis labels
    img.fill(ox - 1, oy - 1, p.cols * cell + 2, 1, grey);
    img.fill(ox - 1, oy + p.rows * cell, p.cols * cell + 2, 1, grey);
    img.fill(ox - 1, oy - 1, 1, p.rows * cell + 2, grey);
    img.fill(ox + p.cols * cell, oy - 1, 1, p.rows * cell + 2, grey);
    for (int t : ticks(p.rows)) {
      const int y = oy + t * cell + cell / 2;
      img.fill(ox - 4, y, 3, 1, black);
      const std::string s = std::to_string(t);
      img.text(ox - 6 - text_width(s), y - 3, s, black);
    }
    for (int t : ticks(p.cols)) {
      const int x = ox + t * cell + cell / 2;
      img.fill(x, oy + p.rows * cell + 1, 1, 3, black);
      const std::string s = std::to_string(t);
      img.text(x - text_width(s) / 2, oy + p.rows * cell + 6, s, black);
    }
    img.text(ox + (p.cols * cell - text_width(p.col_label)) / 2, oy + p.rows * cell + 18, p.col_label, grey);
    // the row label, one character per line down the left edge
    const int label_x = ox - left + 2;
    for (std::size_t i = 0; i < p.row_label.size(); ++i)
      img.text(label_x, oy + static_cast<int>(i) * 8, std::string_view(&p.row_label[i], 1), grey);
  }

  // the colour bar: vmax at the top, vmin at the bottom, three labelled ticks
  const int bx = 8 + cols * pw + 6;
  const int by = title_h + top;
  const int bh = std::max(64, max_rows * cell);
  for (int y = 0; y < bh; ++y) img.fill(bx, by + y, 14, 1, viridis(1.0 - static_cast<double>(y) / (bh - 1)));
  img.fill(bx - 1, by - 1, 16, 1, grey);
  img.fill(bx - 1, by + bh, 16, 1, grey);
  img.fill(bx - 1, by - 1, 1, bh + 2, grey);
  img.fill(bx + 14, by - 1, 1, bh + 2, grey);
  for (int i = 0; i <= 2; ++i) {
    const int y = by + (bh - 1) * i / 2;
    img.fill(bx + 15, y, 3, 1, black);
    img.text(bx + 20, y - 3, fmt::format("{:.3g}", vmax - (vmax - vmin) * i / 2.0), black);
  }
  return img;
}

}  // namespace attn_cli
