// Plotting for the attn command-line tool: an RGB raster, a 5x7 bitmap font, the viridis colormap,
// heatmap panels with axis ticks and a colour bar, and PNG files written through libpng. It knows
// nothing of attention layers (the tool's main.cpp hands it matrices).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace attn_cli {

struct Rgb {
  std::uint8_t r = 0, g = 0, b = 0;
  friend bool operator==(const Rgb&, const Rgb&) = default;
};

/// Viridis (Smith and van der Walt, 2015; matplotlib's default colormap): perceptually uniform,
/// dark violet at 0 to yellow at 1, lightness increasing throughout. `t` is clamped to [0, 1].
/// Interpolated linearly between 17 anchors sampled from the published colormap.
Rgb viridis(double t);

/// An 8-bit RGB image, row-major, white when created.
class Image {
public:
  Image(int width, int height);
  [[nodiscard]] int width() const noexcept { return w_; }
  [[nodiscard]] int height() const noexcept { return h_; }
  [[nodiscard]] Rgb at(int x, int y) const;
  void set(int x, int y, Rgb c);  // outside the image: ignored (clipped drawing)
  void fill(int x, int y, int w, int h, Rgb c);
  /// Text in the 5x7 font, each glyph 6 x 8 pixels times `scale`, top-left at (x, y).
  void text(int x, int y, std::string_view s, Rgb c, int scale = 1);
  /// Writes the image as an 8-bit RGB PNG (libpng); attn::IOError naming the file on failure.
  void write_png(const std::string& path) const;
  [[nodiscard]] const std::vector<std::uint8_t>& pixels() const noexcept { return px_; }

private:
  int w_, h_;
  std::vector<std::uint8_t> px_;
};

/// Width in pixels of `s` in the 5x7 font at `scale`.
int text_width(std::string_view s, int scale = 1);

/// One heatmap: `rows` x `cols` values, row-major; row r is drawn at the top for r = 0.
struct Panel {
  std::string title;
  int rows = 0, cols = 0;
  std::vector<double> values;
  std::string row_label;  // e.g. "query"
  std::string col_label;  // e.g. "key"
};

/// Tick positions 0, step, 2 step, ... below n, with step 1, 2, 5, 10, 20, 50, ... chosen so that
/// at most `max_ticks` ticks fit.
std::vector<int> ticks(int n, int max_ticks = 8);

/// Panels on a grid (up to `columns` per row), every panel with the same colour scale [vmin, vmax]
/// through viridis, axis ticks and labels, a title line on top and one colour bar on the right.
/// Each value cell is a square of an integer number of pixels chosen so a panel is about 240
/// pixels on its longer side (at least 1 and at most 32 pixels per cell).
Image render_panels(const std::vector<Panel>& panels, double vmin, double vmax, std::string_view title,
                    int columns);

}  // namespace attn_cli
