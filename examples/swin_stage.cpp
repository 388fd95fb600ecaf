// A Swin Transformer stage of two blocks on a feature map whose sides are not multiples of the
// window: window attention, then shifted-window attention, each block pre-norm with an MLP:
//
//   x = x + window.forward_map(LN1(x), shift)      (shift 0, then window_size / 2)
//   x = x + mlp(LN2(x))
//
// `window.forward_map` pads the map to whole windows, rolls it by the shift, attends within each
// window (with Swin's mask for windows that the roll wrapped around), and undoes all of it.
// The example shows what the shift is for: a change to one input pixel reaches only the pixels of its
// own window after the first block, and crosses into neighbouring windows after the shifted one.
// Weights are seeded random ones; attn::load_weights loads trained ones by their Keras names.
//
//   swin_stage
#include <attn/layers/layer_norm.hpp>
#include <attn/layers/mlp_block.hpp>
#include <attn/layers/window.hpp>

#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <cstdint>

namespace {

using attn::Index;
using attn::Tensor;

struct SwinBlock {
  attn::LayerNorm<float> norm1, norm2;
  attn::WindowAttention<float> attention;
  attn::MlpBlock<float> mlp;
  Index shift;

  SwinBlock(int dim, int window, int heads, Index shift_size, std::uint64_t seed)
      : norm1({.channels = dim}, seed),
        norm2({.channels = dim}, seed + 1),
        attention({.dim = dim, .window_size = window, .num_heads = heads}, seed + 2),
        mlp({.channels = dim, .hidden_dim = 4 * dim}, seed + 3),
        shift(shift_size) {}

  [[nodiscard]] Tensor<float, 4> forward(const Tensor<float, 4>& x) const {
    const Tensor<float, 4> h = x + attention.forward_map(norm1.forward(x), shift);
    return h + mlp.forward(norm2.forward(h));
  }
};

/// The pixels where a and b differ, and how many of them lie outside the rows [r0, r1) x cols [c0, c1).
struct Changed {
  Index count = 0, outside = 0;
};
Changed changed(const Tensor<float, 4>& a, const Tensor<float, 4>& b, Index r0, Index r1, Index c0, Index c1) {
  Changed out;
  for (Index r = 0; r < a.dimension(1); ++r)
    for (Index c = 0; c < a.dimension(2); ++c) {
      bool differs = false;
      for (Index k = 0; k < a.dimension(3); ++k) differs = differs || a(0, r, c, k) != b(0, r, c, k);
      if (!differs) continue;
      ++out.count;
      if (r < r0 || r >= r1 || c < c0 || c >= c1) ++out.outside;
    }
  return out;
}

}  // namespace

int main() {
  try {
    const int dim = 32, window = 7, heads = 4;
    const Index H = 15, W = 17;  // padded to 21 x 21: 9 windows
    const SwinBlock block1(dim, window, heads, 0, 1);
    const SwinBlock block2(dim, window, heads, window / 2, 11);

    Tensor<float, 4> x(1, H, W, dim);
    x.setRandom();
    Tensor<float, 4> x2 = x;  // the same map with one pixel changed, in the first window
    for (Index k = 0; k < dim; ++k) x2(0, 2, 3, k) += 1.0F;

    const Tensor<float, 4> y1 = block1.forward(x), y1b = block1.forward(x2);
    const Tensor<float, 4> y2 = block2.forward(y1), y2b = block2.forward(y1b);
    fmt::print("feature map [1, {}, {}, {}], window {}, {} heads: block 1 (shift 0) -> block 2 (shift {})\n", H, W,
               dim, window, heads, window / 2);

    const Changed c1 = changed(y1, y1b, 0, window, 0, window);
    const Changed c2 = changed(y2, y2b, 0, window, 0, window);
    fmt::print("pixel (2, 3) changed: after block 1, {} pixels differ, {} outside its 7 x 7 window\n", c1.count,
               c1.outside);
    fmt::print("                      after block 2, {} pixels differ, {} outside that window\n", c2.count,
               c2.outside);
    if (c1.count != Index(window) * window || c1.outside != 0 || c2.outside == 0) {
      fmt::print("unexpected: windows should confine block 1 and the shift should let block 2 cross them\n");
      return 1;
    }
    fmt::print("the first block stays within the window, the shifted one crosses into its neighbours\n");
    return 0;
  } catch (const attn::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
