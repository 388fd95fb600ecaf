// Shapes and work counts shared by the attn and libtorch convolution benchmarks (bench_conv.cpp,
// bench_torch_conv.cpp).
#pragma once

#include <cstdint>

#include <benchmark/benchmark.h>

namespace attn_bench {

/// One convolution problem: batch, square image side, channels in and out, square kernel, depthwise.
struct ConvShape {
  std::int64_t batch, side, cin, cout, k;
  bool depthwise;
};

/// The shapes of the issue, all at stride 1 with same-size padding, B = 8:
/// 0: conv 3x3 56x56x64 -> 64;  1: conv 3x3 14x14x256 -> 256;  2: depthwise 7x7 56x56x96.
inline constexpr ConvShape kConvShapes[] = {
    {8, 56, 64, 64, 3, false},
    {8, 14, 256, 256, 3, false},
    {8, 56, 96, 96, 7, true},
};

/// Multiply-adds x 2 of one forward (output pixels x taps x input channels per output channel).
inline double conv_flops(const ConvShape& s) {
  const double pixels = static_cast<double>(s.batch * s.side * s.side);
  const double taps = static_cast<double>(s.k * s.k);
  return 2.0 * pixels * taps * static_cast<double>(s.cout) * (s.depthwise ? 1.0 : static_cast<double>(s.cin));
}

/// Arguments {shape, threads}: every shape at 1 and 2 threads.
inline void conv_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"shape", "threads"});
  for (std::int64_t s = 0; s < 3; ++s)
    for (std::int64_t t : {1, 2}) b->Args({s, t});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

inline void report_conv(benchmark::State& state, double flops) {
  state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace attn_bench
