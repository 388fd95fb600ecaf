// Shapes, work counts and argument handling shared by the attn and libtorch benchmark binaries.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <benchmark/benchmark.h>

namespace attn_bench {

/// Multi-head self-attention of the issue: embed width 512, 8 heads of width 64.
inline constexpr std::int64_t kEmbed = 512;
inline constexpr std::int64_t kHeads = 8;
inline constexpr std::int64_t kHeadDim = kEmbed / kHeads;

/// The work of one forward, counted as in the issue: the 4 projections (Q, K, V, output) and Q·Kᵀ and
/// P·V over the full L x L (a causal mask is counted dense, so its saving shows as more GFLOP/s).
inline double forward_flops(std::int64_t batch, std::int64_t len) {
  const double b = static_cast<double>(batch), l = static_cast<double>(len), e = static_cast<double>(kEmbed);
  return 4.0 * 2.0 * b * l * e * e + 2.0 * 2.0 * b * l * l * e;
}

/// Arguments {B, L, causal, threads} of every benchmark: B in {1, 8}, L in {128, 512, 2048, 4096},
/// with and without the causal mask, 1 and 2 threads.
inline void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "L", "causal", "threads"});
  for (std::int64_t batch : {1, 8})
    for (std::int64_t len : {128, 512, 2048, 4096})
      for (std::int64_t causal : {0, 1})
        for (std::int64_t threads : {1, 2}) b->Args({batch, len, causal, threads});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

/// Sets the time, GFLOP/s and shape counters of a finished benchmark.
inline void report(benchmark::State& state, double flops) {
  state.counters["GFLOPS"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

/// Peak-memory mode: `<binary> --peak <what> B L causal [threads]` runs one forward and exits, so that
/// `/usr/bin/time -v` reports the peak RSS of exactly one configuration.
struct PeakArgs {
  std::string what;
  std::int64_t batch = 0, len = 0, threads = 1;
  bool causal = false;
};
inline bool parse_peak(int argc, char** argv, PeakArgs& p) {
  if (argc < 2 || std::string(argv[1]) != "--peak") return false;
  if (argc < 6) {
    std::fprintf(stderr, "usage: %s --peak <what> B L causal [threads]\n", argv[0]);
    std::exit(2);
  }
  p.what = argv[2];
  p.batch = std::atoll(argv[3]);
  p.len = std::atoll(argv[4]);
  p.causal = std::atoi(argv[5]) != 0;
  p.threads = argc > 6 ? std::atoll(argv[6]) : 1;
  if (p.batch < 1 || p.len < 1 || p.threads < 1) {
    std::fprintf(stderr, "--peak: B, L and threads must be positive\n");
    std::exit(2);
  }
  return true;
}

}  // namespace attn_bench
