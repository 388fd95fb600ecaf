// relative_positional_embedding: the gather against the reference's rel_to_abs reshape trick (written
// here from the spec) for the spec's (P, n_q) pairs, the forward against plain loops, Appendix B.8,
// the resize, PyTorch golden data (the trick in torch), validation and shape errors.
#include <attn/layers/relative_positional_embedding.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using RPE = attn::RelativePositionalEmbedding<double>;

namespace {

/// The reference's rel_to_abs on rows [n_q, 2P − 1] (one leading item): flatten, drop the first n_q − 1
/// and the last element, view as [n_q, 2P − 2], keep columns [P − n_q, 2P − n_q).
std::vector<double> rel_to_abs_trick(const std::vector<double>& rel, Index nq, Index p) {
  const Index dim = 2 * p - 1;
  if (p == 1) return rel;
  std::vector<double> out(static_cast<std::size_t>(nq * p));
  if (nq == 1) {
    for (Index k = 0; k < p; ++k) out[static_cast<std::size_t>(k)] = rel[static_cast<std::size_t>(dim - p + k)];
    return out;
  }
  const std::vector<double> flat(rel.begin() + (nq - 1), rel.end() - 1);  // nq·dim − nq values
  const Index width = 2 * (p - 1), gap = p - nq;
  for (Index x = 0; x < nq; ++x)
    for (Index k = 0; k < p; ++k) out[static_cast<std::size_t>(x * p + k)] = flat[static_cast<std::size_t>(x * width + gap + k)];
  return out;
}

}  // namespace

TEST_CASE("relative_positional_embedding: the gather equals the rel_to_abs trick for the spec's (P, n_q)",
          "[relative_positional_embedding]") {
  struct Pair {
    int p, nq;
  };
  for (const Pair& pr : {Pair{16, 16}, Pair{6, 4}, Pair{10, 2}, Pair{6, 1}, Pair{3, 2}}) {
    INFO("P = " << pr.p << ", n_q = " << pr.nq);
    // a query of one row (H = 1) and n_q columns; width table of 2P − 1 entries
    const int d = 3;
    const RPE layer({.input_shape = {1, 1, pr.nq, d}, .position_width = pr.p}, 7);
    const auto q = random_tensor<double, 5>({1, 1, 1, pr.nq, d}, 11);
    const auto f = layer.logit_factors(q);
    const auto& rw = *layer.parameters().find("r_width");
    REQUIRE(rw.shape == Shape{d, 2 * pr.p - 1});
    std::vector<double> rel(static_cast<std::size_t>(pr.nq * (2 * pr.p - 1)));
    for (Index x = 0; x < pr.nq; ++x)
      for (Index l = 0; l < 2 * pr.p - 1; ++l) {
        double s = 0;
        for (Index j = 0; j < d; ++j) s += q(0, 0, 0, x, j) * rw.data[static_cast<std::size_t>(j * (2 * pr.p - 1) + l)];
        rel[static_cast<std::size_t>(x * (2 * pr.p - 1) + l)] = s;
      }
    const auto want = rel_to_abs_trick(rel, pr.nq, pr.p);
    REQUIRE(f.width.dimension(4) == pr.p);
    for (Index x = 0; x < pr.nq; ++x)
      for (Index k = 0; k < pr.p; ++k) REQUIRE(f.width(0, 0, 0, x, k) == Approx(want[static_cast<std::size_t>(x * pr.p + k)]).margin(1e-14));
  }
  // Appendix B.8: P = 3, n_q = 2: x = 0 reads R[0, 2..4], x = 1 reads R[1, 1..3]
  const std::vector<double> r{0, 1, 2, 3, 4, 10, 11, 12, 13, 14};
  REQUIRE(rel_to_abs_trick(r, 2, 3) == std::vector<double>{2, 3, 4, 11, 12, 13});
}

TEST_CASE("relative_positional_embedding: weights and forward against plain loops", "[relative_positional_embedding]") {
  struct Case {
    attn::IntList shape;
    int ph, pw;
    bool absolute, dynamic;
  };
  for (const Case& c : {Case{{2, 3, 4, 5}, 0, 0, false, false}, Case{{1, 2, 5, 3}, 4, 7, false, false},
                        Case{{2, 3, 2, 4}, 0, 0, true, false}, Case{{1, 3, 3, 2}, 5, 0, false, true},
                        Case{{1, 2, 3, 2}, 4, 6, true, true}}) {
    const RPE layer({.input_shape = c.shape, .position_height = c.ph, .position_width = c.pw,
                     .use_absolute_pos = c.absolute, .dynamic_shape = c.dynamic},
                    3);
    const Index h = c.shape[0], H = c.shape[1], W = c.shape[2], d = c.shape[3];
    const Index ph = std::max<Index>(c.ph, H), pw = std::max<Index>(c.pw > 0 ? c.pw : c.ph, W);
    const Index oh = c.dynamic ? std::min(ph, H) : ph, ow = c.dynamic ? std::min(pw, W) : pw;
    const auto& rh = layer.parameters()[0];
    const auto& rw = layer.parameters()[1];
    REQUIRE(rh.name == "r_height");
    REQUIRE(rw.name == "r_width");
    REQUIRE(rh.shape == Shape{d, c.absolute ? ph : 2 * ph - 1});
    REQUIRE(rw.shape == Shape{d, c.absolute ? pw : 2 * pw - 1});
    const auto q = random_tensor<double, 5>({2, h, H, W, d}, 4);
    const auto y = layer.forward(q);
    REQUIRE(y.dimension(4) == oh * ow);
    REQUIRE(layer.output_shape({2, h, H, W, d}) == Shape{2, h, H, W, oh * ow});
    for (Index b = 0; b < 2; ++b)
      for (Index n = 0; n < h; ++n)
        for (Index yy = 0; yy < H; ++yy)
          for (Index x = 0; x < W; ++x)
            for (Index ky = 0; ky < oh; ++ky)
              for (Index kx = 0; kx < ow; ++kx) {
                const Index ih = c.absolute ? ky : ph - 1 + ky - yy, iw = c.absolute ? kx : pw - 1 + kx - x;
                double s = 0;
                for (Index j = 0; j < d; ++j)
                  s += q(b, n, yy, x, j) * (rh.data[static_cast<std::size_t>(j * rh.shape[1] + ih)] +
                                            rw.data[static_cast<std::size_t>(j * rw.shape[1] + iw)]);
                REQUIRE(y(b, n, yy, x, ky * ow + kx) == Approx(s).margin(1e-13));
              }
  }
  // Normal(0, d^-0.5) init: the spread of 2·(2·16 − 1)·64 values
  const RPE big({.input_shape = {1, 16, 16, 64}}, 1);
  double s2 = 0;
  Index n = 0;
  for (const auto& w : big.parameters())
    for (double v : w.data) {
      s2 += v * v;
      ++n;
    }
  REQUIRE(std::sqrt(s2 / double(n)) == Approx(0.125).epsilon(0.05));
  // upstream shape test: [2, 4, 14, 16, 32] -> [2, 4, 14, 16, 14, 16] (merged: 14·16)
  const auto any = attn::create_attention_layer<float>("relative_positional_embedding", {{"input_shape", {4, 14, 16, 32}}});
  REQUIRE(any.forward(random_any<float>({2, 4, 14, 16, 32}, 1)).shape() == Shape{2, 4, 14, 16, 14 * 16});
}

TEST_CASE("relative_positional_embedding: hand-computed resize and its errors", "[relative_positional_embedding]") {
  // H = W = 2: tables of 3 entries; d = 1. Old [1, 2] = (0, 4) -> 3: src (i + 0.5)·2/3 − 0.5 = −1/6, 0.5, 7/6
  // -> 0, 2, 4 (clamped ends)
  RPE layer({.input_shape = {1, 2, 2, 1}});
  attn::Weight<double> h{"r_height", {1, 2}, {0.0, 4.0}};
  attn::Weight<double> w{"r_width", {1, 1}, {5.0}};
  layer.load_resized_weights(h, w);
  REQUIRE(layer.parameters()[0].data[0] == Approx(0.0).margin(1e-15));
  REQUIRE(layer.parameters()[0].data[1] == Approx(2.0).margin(1e-15));
  REQUIRE(layer.parameters()[0].data[2] == Approx(4.0).margin(1e-15));
  REQUIRE(layer.parameters()[1].data == std::vector<double>{5.0, 5.0, 5.0});
  const auto before = layer.parameters()[0].data;
  attn::Weight<double> bad{"r_width", {2, 1}, {1.0, 2.0}};  // d = 2, not 1
  REQUIRE_THROWS_AS(layer.load_resized_weights(h, bad), attn::ShapeError);
  attn::Weight<double> short_h{"r_height", {1, 3}, {1.0, 2.0}};  // 2 values for 3
  REQUIRE_THROWS_AS(layer.load_resized_weights(short_h, w), attn::ShapeError);
  REQUIRE(layer.parameters()[0].data == before);  // neither replaced
}

TEST_CASE("relative_positional_embedding: validation and shape errors", "[relative_positional_embedding]") {
  REQUIRE_THROWS_WITH(RPE({.input_shape = {1, 2, 2, 4}, .position_height = -1}), "position_height must be non-negative, got -1");
  REQUIRE_THROWS_AS(RPE({.input_shape = {1, 2, 2}}), attn::ConfigError);
  REQUIRE_THROWS_AS(RPE({.input_shape = {1, 2, 0, 4}}), attn::ConfigError);
  const RPE layer({.input_shape = {2, 3, 4, 5}});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 5>({1, 2, 4, 3, 5}, 1)),
                      "relative_positional_embedding: query must have shape [*, 2, 3, 4, 5] (the query [B, heads, H, W, "
                      "key_dim] of the input_shape), got [1, 2, 4, 3, 5]");
  REQUIRE(layer.forward(attn::Tensor<double, 5>(0, 2, 3, 4, 5)).size() == 0);
}

// ---- golden parity (tools/golden/relative_positional_embedding.py) ----
TEMPLATE_TEST_CASE("golden: relative_positional_embedding matches PyTorch's matmul and rel_to_abs reshapes",
                   "[golden][relative_positional_embedding]", float, double) {
  using T = TestType;
  for_each_golden<T>("relative_positional_embedding", [](const Golden& g) {
    attn::RelativePositionalEmbedding<T> layer(g.config.get<attn::RelativePositionalEmbeddingConfig>());
    if (g.file.contains("input/r_height")) {
      const auto h = g.file.tensor<T>("input/r_height"), w = g.file.tensor<T>("input/r_width");
      const auto method = g.meta("method") == "nearest" ? attn::ResizeMethod::nearest : attn::ResizeMethod::bilinear;
      layer.load_resized_weights(attn::Weight<T>{"r_height", h.shape(), h.values()},
                                 attn::Weight<T>{"r_width", w.shape(), w.values()}, method);
      check<T>(g, "r_height", layer.parameters()[0].template view<2>());
      check<T>(g, "r_width", layer.parameters()[1].template view<2>());
    } else {
      attn::load_weights(layer, g.file, "weights");
    }
    check<T>(g, "output", layer.forward(input<T, 5>(g, "query")));
  });
}
