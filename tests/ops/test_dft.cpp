// ops/dft.hpp: DFT of rows and FNet's Re(FFT2) mixing against torch.fft (golden file of
// tools/golden/vision_ops.py) through both algorithms (Eigen's FFT and the GEMM form), lengths of every
// kind (prime, composite), thread-count independence and errors.
#include "golden_ops.hpp"

using namespace attn_test;
namespace ops = attn::ops;

TEMPLATE_TEST_CASE("dft: torch.fft golden values, both algorithms", "[ops][dft][golden]", float, double) {
  using T = TestType;
  const auto gs = op_goldens<T>("ops_dft");
  const auto& g = gs.front();
  const auto x = g.get("input/x");
  const auto rows = g.get("input/rows");
  for (auto m : {ops::DftMethod::automatic, ops::DftMethod::fft, ops::DftMethod::gemm}) {
    INFO("method " << static_cast<int>(m));
    attn::AnyTensor<T> y(x.shape());
    ops::fourier_mix<T>(x.data(), x.shape()[0], x.shape()[1], x.shape()[2], y.data(), m);
    g.check("mix", y.data(), y.shape());
    attn::AnyTensor<T> re(rows.shape()), im(rows.shape());
    ops::dft_rows<T>(rows.data(), rows.shape()[0], rows.shape()[1], re.data(), im.data(), m);
    g.check("re", re.data(), re.shape());
    g.check("im", im.data(), im.shape());
  }
}

TEMPLATE_TEST_CASE("dft: FFT and GEMM agree on odd and prime lengths, and threads do not change bits", "[ops][dft]", float,
                   double) {
  using T = TestType;
  const double tol = std::is_same_v<T, float> ? 2e-4 : 1e-10;
  for (const auto& [n, d] : std::vector<std::pair<Index, Index>>{{7, 13}, {16, 9}, {1, 5}, {33, 1}}) {
    const auto x = random_any<T>({2, n, d}, 4);
    attn::AnyTensor<T> a(x.shape()), b(x.shape());
    ops::fourier_mix<T>(x.data(), 2, n, d, a.data(), ops::DftMethod::fft);
    ops::fourier_mix<T>(x.data(), 2, n, d, b.data(), ops::DftMethod::gemm);
    const auto c = compare(a.data(), b.data(), a.shape(), tol, tol);
    INFO(c.report);
    CHECK(c.ok);
  }
  const auto x = random_any<T>({3, 40, 24}, 5);
  const int saved = attn::num_threads();
  std::vector<attn::AnyTensor<T>> ys;
  for (int t : {1, 2, 3}) {
    attn::set_num_threads(t);
    attn::AnyTensor<T> y(x.shape());
    ops::fourier_mix<T>(x.data(), 3, 40, 24, y.data());
    ys.push_back(y);
  }
  attn::set_num_threads(saved);
  CHECK(ys[0] == ys[1]);
  CHECK(ys[0] == ys[2]);
  // DC term of the mix is the sum of the sample
  double sum = 0;
  for (Index i = 0; i < 40 * 24; ++i) sum += static_cast<double>(x.data()[i]);
  CHECK(static_cast<double>(ys[0].data()[0]) == Approx(sum).epsilon(1e-4));
}

TEST_CASE("dft: empty transform lengths are ShapeErrors", "[ops][dft][errors]") {
  std::vector<float> x(4), y(4);
  REQUIRE_THROWS_MATCHES(ops::fourier_mix<float>(x.data(), 1, 0, 4, y.data()), attn::ShapeError,
                         Catch::Message("fourier_mix: the transform length must be at least 1, got 0"));
  REQUIRE_THROWS_AS(ops::dft_rows<float>(x.data(), 1, 0, y.data(), y.data()), attn::ShapeError);
}
