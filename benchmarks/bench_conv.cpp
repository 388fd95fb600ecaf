// 2-D convolutions of attn (ops/conv.hpp), fp32, channels-last, at the shapes of bench_conv_common.hpp,
// 1 and 2 threads, and the GEMM of the same size as each dense conv's im2col product (attn's ops::gemm:
// the ceiling of an im2col lowering, which conv2d still uses at the generic SIMD level; the AVX levels
// run implicit-GEMM tile kernels of their own). The SIMD level is attn's default unless ATTN_SIMD says
// otherwise.
//
//   attn_bench_conv [google-benchmark flags]
#include <cstdint>

#include <attn/attn.hpp>

#include "bench_conv_common.hpp"

namespace {

using attn::Index;

std::vector<float> random_values(Index n, std::uint64_t seed) {
  std::vector<float> v(static_cast<std::size_t>(n));
  attn::Rng rng(seed);
  for (auto& x : v) x = static_cast<float>(rng.uniform(-1.0, 1.0));
  return v;
}

void BM_attn(benchmark::State& state) {
  const auto& s = attn_bench::kConvShapes[state.range(0)];
  attn::set_num_threads(static_cast<int>(state.range(1)));
  const attn::Shape xs{s.batch, s.side, s.side, s.cin};
  const attn::Shape ks = s.depthwise ? attn::Shape{s.k, s.k, s.cin, 1} : attn::Shape{s.k, s.k, s.cin, s.cout};
  const auto x = random_values(attn::shape_size(xs), 1);
  const auto k = random_values(attn::shape_size(ks), 2);
  const auto bias = random_values(s.cout, 3);
  std::vector<float> y(static_cast<std::size_t>(s.batch * s.side * s.side * s.cout));
  attn::ops::Conv2dOptions o;
  o.padding = attn::ops::Padding2d::same();
  for (auto _ : state) {
    if (s.depthwise)
      attn::ops::depthwise_conv2d<float>(x.data(), xs, k.data(), ks, bias.data(), s.cout, y.data(), o);
    else
      attn::ops::conv2d<float>(x.data(), xs, k.data(), ks, bias.data(), s.cout, y.data(), o);
    benchmark::DoNotOptimize(y.data());
  }
  attn_bench::report_conv(state, attn_bench::conv_flops(s));
}

/// ops::gemm of [B·H·W, k·k·C_in] x [k·k·C_in, C_out] (dense shapes only; depthwise has no GEMM form).
void BM_gemm(benchmark::State& state) {
  const auto& s = attn_bench::kConvShapes[state.range(0)];
  if (s.depthwise) {
    state.SkipWithError("depthwise: no GEMM ceiling");
    return;
  }
  attn::set_num_threads(static_cast<int>(state.range(1)));
  const Index m = s.batch * s.side * s.side, kk = s.k * s.k * s.cin, n = s.cout;
  const auto a = random_values(m * kk, 1);
  const auto b = random_values(kk * n, 2);
  std::vector<float> c(static_cast<std::size_t>(m * n));
  for (auto _ : state) {
    attn::ops::gemm<float>(m, n, kk, a.data(), kk, b.data(), n, false, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  attn_bench::report_conv(state, attn_bench::conv_flops(s));
}

BENCHMARK(BM_attn)->Apply(attn_bench::conv_shapes);
BENCHMARK(BM_gemm)->Apply(attn_bench::conv_shapes);

}  // namespace

BENCHMARK_MAIN();
