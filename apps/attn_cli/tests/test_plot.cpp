// The attn tool's plotting module: the colormap, ticks, where a panel's cells land and the PNG file.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <random>
#include <set>
#include <string>

#include <png.h>

#include <attn/core/error.hpp>

#include "plot.hpp"

using attn_cli::Rgb;

namespace {
// Relative luminance (sRGB coefficients on the 8-bit values; monotone ordering is all we need).
double luminance(Rgb c) { return 0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b; }
}  // namespace

TEST_CASE("viridis: the published ends, clamped outside [0, 1], lightness increasing throughout", "[plot]") {
  CHECK(attn_cli::viridis(0.0) == Rgb{0x44, 0x01, 0x54});
  CHECK(attn_cli::viridis(1.0) == Rgb{0xFD, 0xE7, 0x25});
  CHECK(attn_cli::viridis(0.5) == Rgb{0x21, 0x90, 0x8C});
  CHECK(attn_cli::viridis(-3.0) == attn_cli::viridis(0.0));
  CHECK(attn_cli::viridis(7.0) == attn_cli::viridis(1.0));
  CHECK(attn_cli::viridis(std::nan("")) == attn_cli::viridis(0.0));
  // strictly increasing in steps of 1/32; in steps of 1/256 up to the rounding to 8 bits (at most
  // half a unit per channel, so 1 unit of luminance between neighbours)
  double last = -1;
  for (int i = 0; i <= 32; ++i) {
    const double l = luminance(attn_cli::viridis(i / 32.0));
    INFO("t = " << i << "/32");
    CHECK(l > last);
    last = l;
  }
  last = -1;
  for (int i = 0; i <= 256; ++i) {
    const double l = luminance(attn_cli::viridis(i / 256.0));
    INFO("t = " << i << "/256");
    CHECK(l >= last - 1.0);
    last = l;
  }
}

TEST_CASE("ticks: steps of 1, 2, 5 times a power of ten, at most the count asked", "[plot]") {
  CHECK(attn_cli::ticks(5) == std::vector<int>{0, 1, 2, 3, 4});
  CHECK(attn_cli::ticks(16) == std::vector<int>{0, 2, 4, 6, 8, 10, 12, 14});
  CHECK(attn_cli::ticks(16, 4) == std::vector<int>{0, 5, 10, 15});
  CHECK(attn_cli::ticks(9) == std::vector<int>{0, 2, 4, 6, 8});
  CHECK(attn_cli::ticks(1) == std::vector<int>{0});
  CHECK(attn_cli::ticks(0).empty());
  CHECK(attn_cli::ticks(1000).size() <= 8);
  CHECK(attn_cli::ticks(1000)[1] == 200);
}

TEST_CASE("render_panels: each value's cell has its colour on the shared scale", "[plot]") {
  attn_cli::Panel p{"head 0", 2, 3, {0.0, 0.5, 1.0, 0.25, 0.75, 0.125}, "query", "key"};
  const auto img = attn_cli::render_panels({p, p}, 0.0, 1.0, "title", 2);
  // find the panel's top-left cell by its colour, then walk the cells at the cell size
  const Rgb c00 = attn_cli::viridis(0.0);
  int x0 = -1, y0 = -1;
  for (int y = 0; y < img.height() && x0 < 0; ++y)
    for (int x = 0; x < img.width(); ++x)
      if (img.at(x, y) == c00 && img.at(x + 1, y + 1) == c00) {
        x0 = x;
        y0 = y;
        break;
      }
  REQUIRE(x0 >= 0);
  int cell = 0;
  while (img.at(x0 + cell, y0) == c00) ++cell;
  CHECK(cell == 32);  // 240 / max(2, 3), at most 32
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 3; ++c) {
      INFO("cell " << r << ", " << c);
      CHECK(img.at(x0 + c * cell + cell / 2, y0 + r * cell + cell / 2) ==
            attn_cli::viridis(p.values[static_cast<std::size_t>(r * 3 + c)]));
    }
  // the second panel is to the right on the same row, with the same colours
  bool second = false;
  for (int x = x0 + 3 * cell + 1; x < img.width() - cell && !second; ++x)
    second = img.at(x, y0 + cell / 2) == c00 && img.at(x + cell / 2, y0 + cell + cell / 2) == attn_cli::viridis(0.25);
  CHECK(second);
}

TEST_CASE("text: glyphs are drawn, unknown characters as boxes, nothing outside the image", "[plot]") {
  attn_cli::Image img(40, 10);
  img.text(1, 1, "7", Rgb{0, 0, 0});
  CHECK(img.at(1, 1) == Rgb{0, 0, 0});      // the bar of the 7
  CHECK(img.at(1, 7) == Rgb{255, 255, 255});  // below-left of it is empty
  img.text(20, 1, "\x01", Rgb{0, 0, 0});
  CHECK(img.at(20, 4) == Rgb{0, 0, 0});  // the box's left side
  img.text(38, 8, "88", Rgb{0, 0, 0});    // clipped, not written out of bounds
  CHECK(attn_cli::text_width("abc") == 18);
}

TEST_CASE("write_png: libpng reads back the size and pixels, an unwritable path is an IOError", "[plot]") {
  attn_cli::Image img(7, 3);
  img.set(2, 1, Rgb{10, 20, 30});
  // a name of its own: another run of the suite may be writing at the same time
  const auto path =
      (std::filesystem::temp_directory_path() / ("attn_cli_plot_" + std::to_string(std::random_device{}()) + ".png"))
          .string();
  img.write_png(path);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  REQUIRE(f != nullptr);
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_init_io(png, f);
  png_read_png(png, info, PNG_TRANSFORM_IDENTITY, nullptr);
  const auto w = png_get_image_width(png, info);
  const auto h = png_get_image_height(png, info);
  png_bytepp rows = png_get_rows(png, info);
  const Rgb px{rows[1][6], rows[1][7], rows[1][8]};
  const Rgb other{rows[0][0], rows[0][1], rows[0][2]};
  png_destroy_read_struct(&png, &info, nullptr);
  std::fclose(f);
  std::filesystem::remove(path);
  CHECK(w == 7);
  CHECK(h == 3);
  CHECK(px == Rgb{10, 20, 30});
  CHECK(other == Rgb{255, 255, 255});
  CHECK_THROWS_AS(img.write_png("/nonexistent/dir/x.png"), attn::IOError);
}
