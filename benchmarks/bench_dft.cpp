// FNet's Fourier mixing (ops/dft.hpp, Re(FFT2) of [B, N, D]) by Eigen's FFT module against the DFT as
// GEMMs through attn's kernels, fp32, B = 1, at (N, D) = (512, 768) and (4096, 512), 1 and 2 threads.
// The faster one is DftMethod::automatic's choice (see ops/dft.hpp). Measured on a shared AVX-512 host
// (fp32, real time, 1 thread): FFT 25-29 ms vs GEMM 49-51 ms at (512, 768); FFT 148-157 ms vs GEMM
// 1097-1137 ms at (4096, 512).
//
//   attn_bench_dft [google-benchmark flags]
#include <cmath>
#include <cstdint>

#include <attn/attn.hpp>

#include <benchmark/benchmark.h>

namespace {

using attn::Index;

void run(benchmark::State& state, attn::ops::DftMethod method) {
  const Index n = state.range(0), d = state.range(1);
  attn::set_num_threads(static_cast<int>(state.range(2)));
  std::vector<float> x(static_cast<std::size_t>(n * d)), y(x.size());
  attn::Rng rng(1);
  for (auto& v : x) v = static_cast<float>(rng.uniform(-1.0, 1.0));
  for (auto _ : state) {
    attn::ops::fourier_mix<float>(x.data(), 1, n, d, y.data(), method);
    benchmark::DoNotOptimize(y.data());
  }
  // the FFT's nominal work, 5·N·D·log2(N·D), so both rows are on one scale
  state.counters["nominal_GFLOPS"] = benchmark::Counter(
      5.0 * static_cast<double>(n * d) * std::log2(static_cast<double>(n * d)) * 1e-9,
      benchmark::Counter::kIsIterationInvariantRate);
}

void BM_fft(benchmark::State& state) { run(state, attn::ops::DftMethod::fft); }
void BM_gemm(benchmark::State& state) { run(state, attn::ops::DftMethod::gemm); }

void sizes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"N", "D", "threads"});
  for (auto [n, d] : {std::pair<std::int64_t, std::int64_t>{512, 768}, {4096, 512}})
    for (std::int64_t t : {1, 2}) b->Args({n, d, t});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_fft)->Apply(sizes);
BENCHMARK(BM_gemm)->Apply(sizes);

}  // namespace

BENCHMARK_MAIN();
