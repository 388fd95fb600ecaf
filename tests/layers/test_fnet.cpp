// fnet: the spec's hand-computed cases (Appendix B), an independent double-loop DFT, any sizes on one
// layer, the token mask, messages, shape errors, threads and golden data from torch.fft.fft2.
#include <attn/layers/fnet.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::FNetFourierTransform<double>;

namespace {
/// Re Σ_n Σ_d x[n, d] e^{-2πi(nk/N + dl/D)} · s, written out with cosines.
attn::Tensor<double, 3> oracle(const attn::Tensor<double, 3>& x, bool normalize) {
  const Index B = x.dimension(0), N = x.dimension(1), D = x.dimension(2);
  const double pi = std::acos(-1.0), s = normalize ? 1.0 / std::sqrt(double(N * D)) : 1.0;
  attn::Tensor<double, 3> y(B, N, D);
  for (Index b = 0; b < B; ++b)
    for (Index k = 0; k < N; ++k)
      for (Index l = 0; l < D; ++l) {
        double acc = 0;
        for (Index n = 0; n < N; ++n)
          for (Index d = 0; d < D; ++d)
            acc += x(b, n, d) * std::cos(2 * pi * (double((n * k) % N) / double(N) + double((d * l) % D) / double(D)));
        y(b, k, l) = acc * s;
      }
  return y;
}
}  // namespace

TEST_CASE("fnet: no weights, and the validation messages", "[fnet]") {
  REQUIRE(L({}).parameters().size() == 0);
  const auto msg = [](attn::Json p) {
    const auto problems = attn::check_attention_config("fnet", p);
    return problems.empty() ? std::string() : problems.front().message;
  };
  REQUIRE(msg(attn::Json::object()).empty());
  REQUIRE(msg({{"implementation", "fft"}, {"normalize_dft", false}}).empty());
  REQUIRE(msg({{"epsilon", 0.0}}) == "epsilon must be positive, got 0.0");
  REQUIRE(msg({{"epsilon", -1e-3}}) == "epsilon must be positive, got -0.001");
  REQUIRE_THAT(msg({{"implementation", "fftt"}}),
               Catch::StartsWith("Parameter 'implementation' of 'fnet' must be one of ['matrix', 'fft'], got 'fftt'"));
  REQUIRE_THAT(msg({{"normalise_dft", true}}),
               Catch::StartsWith("Unknown parameter 'normalise_dft' for 'fnet'. Did you mean 'normalize_dft'?"));
  REQUIRE_THAT(msg({{"num_heads", -1}}), Catch::StartsWith("Unknown parameter 'num_heads' for 'fnet'"));
}

TEST_CASE("fnet: hand-computed cases (spec Appendix B)", "[fnet]") {
  const L l({});
  attn::Tensor<double, 3> a(1, 2, 2);
  a.setValues({{{1, 2}, {3, 4}}});
  ATTN_REQUIRE_CLOSE(l.forward(a), (attn::Tensor<double, 3>(1, 2, 2).setValues({{{5, -1}, {-2, 0}}})), 1e-14, 1e-14);
  attn::Tensor<double, 3> b(1, 2, 3);
  b.setValues({{{1, 0, 0}, {0, 0, 0}}});
  const auto yb = l.forward(b);
  for (Index i = 0; i < yb.size(); ++i) REQUIRE(yb.data()[i] == Approx(0.408248).margin(1e-6));
  attn::Tensor<double, 3> c(1, 2, 3);
  c.setValues({{{1, 2, 3}, {4, 5, 6}}});
  const auto yc = l.forward(c);
  const std::vector<double> want{8.573214, -1.224745, -1.224745, -3.674235, 0, 0};
  for (std::size_t i = 0; i < want.size(); ++i) REQUIRE(yc.data()[i] == Approx(want[i]).margin(1e-6));
  // without normalisation: times sqrt(N·D)
  const L raw({.normalize_dft = false});
  const attn::Tensor<double, 3> scaled = yc * std::sqrt(6.0);
  ATTN_REQUIRE_CLOSE(raw.forward(c), scaled, 1e-13, 1e-13);
}

TEST_CASE("fnet: equals a double-loop DFT for any sizes on one layer", "[fnet]") {
  for (bool norm : {true, false}) {
    const L l({.implementation = "fft", .normalize_dft = norm});
    for (const Shape& s : std::vector<Shape>{{2, 5, 6}, {1, 1, 7}, {3, 8, 1}, {1, 12, 9}, {1, 17, 11}}) {
      INFO(attn::shape_str(s) << " normalize " << norm);
      const auto x = random_tensor<double, 3>(s, 4);
      ATTN_REQUIRE_CLOSE(l.forward(x), oracle(x, norm), 1e-12, 1e-12);
    }
  }
  // float against the double oracle
  const attn::FNetFourierTransform<float> lf({});
  const auto x = random_tensor<double, 3>({2, 33, 20}, 5);
  const attn::Tensor<float, 3> xf = x.cast<float>();
  ATTN_REQUIRE_CLOSE(lf.forward(xf), oracle(x, true), 1e-4, 1e-5);
}

TEST_CASE("fnet: the token mask zeroes the rows of masked tokens after the mixing", "[fnet]") {
  const L l({});
  auto x = random_tensor<double, 3>({2, 5, 4}, 7);
  attn::Tensor<bool, 2> keep(2, 5);
  keep.setConstant(true);
  keep(1, 3) = keep(1, 4) = false;
  const auto y = l.forward(x, attn::KeyPaddingMask(keep));
  const auto full = oracle(x, true);
  for (Index b = 0; b < 2; ++b)
    for (Index n = 0; n < 5; ++n)
      for (Index d = 0; d < 4; ++d) REQUIRE(y(b, n, d) == Approx(keep(b, n) ? full(b, n, d) : 0.0).margin(1e-12));
  // masked tokens still take part in the mix of the others (as the reference): changing one changes row 0
  x(1, 4, 0) += 1.0;
  REQUIRE(l.forward(x, attn::KeyPaddingMask(keep))(1, 0, 0) != Approx(y(1, 0, 0)).margin(1e-6));
  attn::Tensor<bool, 2> bad(2, 4);
  bad.setConstant(true);
  REQUIRE_THROWS_WITH(l.forward(x, attn::KeyPaddingMask(bad)),
                      "fnet: mask must have shape [2, 5] ([batch, sequence], true = a real token), got [2, 4]");
}

TEST_CASE("fnet: bad shapes give ShapeErrors naming the layer", "[fnet]") {
  const L l({});
  REQUIRE_THROWS_WITH(l.output_shape({2, 3}),
                      "fnet: FNetFourierTransform expects 3D input (batch, sequence, hidden), got shape with 2 "
                      "dimensions: [2, 3]");
  REQUIRE_THROWS_AS(l.forward(attn::Tensor<double, 3>(1, 0, 4)), attn::ShapeError);
  REQUIRE(l.forward(attn::Tensor<double, 3>(0, 3, 4)).size() == 0);
  auto any = attn::create_attention_layer<double>("fnet");
  REQUIRE_THROWS_AS(any.forward(attn::AnyTensor<double>(random_tensor<double, 2>({2, 3}, 1))), attn::ShapeError);
}

TEST_CASE("fnet: 1 and 2 threads give bit-identical results", "[fnet][threads]") {
  const L l({});
  const auto x = random_tensor<double, 3>({3, 300, 48}, 8);
  const int saved = attn::num_threads();
  attn::set_num_threads(1);
  const auto a = l.forward(x);
  attn::set_num_threads(2);
  const auto b = l.forward(x);
  attn::set_num_threads(saved);
  REQUIRE(std::equal(a.data(), a.data() + a.size(), b.data()));
}

// ---- golden parity (tools/golden/fnet.py, tests/data/fnet/) ----

TEMPLATE_TEST_CASE("golden: fnet matches torch.fft.fft2", "[golden][fnet]", float, double) {
  using T = TestType;
  for_each_golden<T>("fnet", [](const Golden& g) {
    attn::FNetFourierTransform<T> layer(g.config.get<attn::FNetFourierTransformConfig>());
    const auto x = input<T, 3>(g, "x");
    const auto mask = mask_of(g, "input/mask");
    if (mask.data)
      check<T>(g, "output", layer.forward(x, attn::KeyPaddingMask(mask.view())));
    else
      check<T>(g, "output", layer.forward(x));
    if (!mask.data) {
      const auto any = attn::create_attention_layer<T>("fnet", g.config);
      check<T>(g, "output", any.forward(attn::AnyTensor<T>(x)).template view<3>());
    }
  });
}
