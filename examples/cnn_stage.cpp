// A small CNN stage with channel and spatial attention on an image read from a PNG file:
//
//   x [1, H, W, 3] -> conv2d_no_bias 3x3, stride 2, 16 filters -> batchnorm_with_activation (relu)
//     -> se_module (squeeze-and-excitation) -> cbam (channel gate, then spatial gate)
//
// It prints each stage's shape, the channel gate CBAM applies (`channel`: one weight in (0, 1) per
// channel) and the spatial gate (`spatial`: one weight per pixel of the half-resolution map) as a
// character picture, where the shapes of the image show through. The weights are seeded random ones:
// load trained ones with attn::load_weights (see examples/weights.cpp).
//
//   cnn_stage IMAGE.png        (examples/data/shapes.png: tools/make_example_image.py)
//
// The PNG is read with libpng's simplified API, converted to 8-bit RGB and scaled to [0, 1].
#include <attn/layers/batchnorm_with_activation.hpp>
#include <attn/layers/cbam.hpp>
#include <attn/layers/channel.hpp>
#include <attn/layers/conv2d_no_bias.hpp>
#include <attn/layers/se_module.hpp>
#include <attn/layers/spatial.hpp>

#include <fmt/format.h>
#include <png.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace {

using attn::Index;
using attn::Tensor;

/// The image as [1, H, W, 3] floats in [0, 1]; attn::IOError naming the file when libpng refuses it.
Tensor<float, 4> read_png_rgb(const std::string& path) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (png_image_begin_read_from_file(&image, path.c_str()) == 0)
    throw attn::IOError(fmt::format("{}: {}", path, image.message));
  image.format = PNG_FORMAT_RGB;
  std::vector<png_byte> pixels(PNG_IMAGE_SIZE(image));
  if (png_image_finish_read(&image, nullptr, pixels.data(), 0, nullptr) == 0) {
    png_image_free(&image);
    throw attn::IOError(fmt::format("{}: {}", path, image.message));
  }
  Tensor<float, 4> x(1, Index(image.height), Index(image.width), 3);
  std::transform(pixels.begin(), pixels.end(), x.data(), [](png_byte v) { return float(v) / 255.0F; });
  return x;
}

std::string shape(const Tensor<float, 4>& t) { return attn::shape_str(attn::shape_of(t)); }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: cnn_stage IMAGE.png\n");
    return 2;
  }
  try {
    const Tensor<float, 4> image = read_png_rgb(argv[1]);
    const std::uint64_t seed = 7;
    const attn::Conv2dNoBias<float> stem(
        {.channels = 3, .filters = 16, .kernel_size = {3, 3}, .strides = {2, 2}, .padding = {.mode = attn::ConvPadding::Mode::same}},
        seed);
    const attn::BatchnormWithActivation<float> bn({.channels = 16, .activation = "relu"}, seed);
    const attn::SEModule<float> se({.channels = 16}, seed);
    const attn::CBAM<float> cbam({.channels = 16, .ratio = 4}, seed);

    const Tensor<float, 4> s = stem.forward(image);
    const Tensor<float, 4> b = bn.forward(s);
    const Tensor<float, 4> e = se.forward(b);
    const Tensor<float, 4> y = cbam.forward(e);
    fmt::print("image {} -> conv {} -> bn+relu {} -> se {} -> cbam {}\n", shape(image), shape(s), shape(b),
               shape(e), shape(y));

    // CBAM's two gates, computed by a `channel` and a `spatial` layer given CBAM's weights (its
    // tensors under "channel_attention/" and "spatial_attention/"): out = F1 * Ms(F1), F1 = x * Mc(x).
    attn::ChannelAttention<float> channel_gate({.channels = 16, .ratio = 4});
    attn::SpatialAttention<float> spatial_gate({});
    for (auto& w : channel_gate.parameters()) w.data = cbam.parameters().find("channel_attention/" + w.name)->data;
    for (auto& w : spatial_gate.parameters()) w.data = cbam.parameters().find("spatial_attention/" + w.name)->data;
    const Tensor<float, 4> mc = channel_gate.forward(e);  // [1, 1, 1, 16]
    fmt::print("channel gate:");
    for (Index c = 0; c < mc.dimension(3); ++c) fmt::print(" {:.2f}", mc(0, 0, 0, c));
    fmt::print("\n");
    const Tensor<float, 4> f1 = e * mc.broadcast(std::array<Index, 4>{1, e.dimension(1), e.dimension(2), 1});
    const Tensor<float, 4> ms = spatial_gate.forward(f1);  // [1, H/2, W/2, 1]
    float lo = 1, hi = 0;
    for (Index i = 0; i < ms.size(); ++i) {
      lo = std::min(lo, ms.data()[i]);
      hi = std::max(hi, ms.data()[i]);
    }
    fmt::print("spatial gate, {} x {}, from {:.3f} (' ') to {:.3f} ('@'):\n", ms.dimension(1), ms.dimension(2), lo, hi);
    const std::string ramp = " .:-=+*#%@";
    for (Index r = 0; r < ms.dimension(1); ++r) {
      std::string line;
      for (Index c = 0; c < ms.dimension(2); ++c) {
        const float t = hi > lo ? (ms(0, r, c, 0) - lo) / (hi - lo) : 0.0F;
        line += ramp[std::min<std::size_t>(ramp.size() - 1, std::size_t(t * float(ramp.size())))];
      }
      fmt::print("  |{}|\n", line);
    }
    // The gates of CBAM's output: every value of y must be e times the two gates.
    const Tensor<float, 4> again = f1 * ms.broadcast(std::array<Index, 4>{1, 1, 1, e.dimension(3)});
    float worst = 0;
    for (Index i = 0; i < y.size(); ++i) worst = std::max(worst, std::abs(again.data()[i] - y.data()[i]));
    if (worst > 1e-5F) {
      fmt::print("CBAM's output differs from its two gates applied in turn by {}\n", worst);
      return 1;
    }
    fmt::print("CBAM's output is the input times its channel gate times its spatial gate\n");
    return 0;
  } catch (const attn::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
