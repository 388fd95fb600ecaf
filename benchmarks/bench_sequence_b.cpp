// The sequence layers differential, shared_weights_cross, hopfield, fnet and context_attention beside
// multi_head in one binary, fp32, B = 8, T = 512, D = 512 (8 heads of 64 where the layer has heads),
// threads from the argument (1 or 2). Compare each layer's time with multi_head's of the same run.
//
//   attn_bench_sequence_b [google-benchmark flags]
#include <cstdint>
#include <vector>

#include <attn/attn.hpp>

#include "bench_common.hpp"

namespace {

using attn::Index;
constexpr Index kB = 8, kT = 512, kD = 512;

attn::Tensor<float, 3> make_input(Index batch, Index len, Index dim) {
  attn::Tensor<float, 3> x(batch, len, dim);
  attn::Rng rng(2);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  return x;
}

template <class F>
void run(benchmark::State& state, F&& forward) {
  attn::set_num_threads(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    auto y = forward();
    benchmark::DoNotOptimize(y.data());
  }
}

void BM_multi_head(benchmark::State& state) {
  const attn::MultiHeadAttention<float> l({.embed_dim = int(kD), .num_heads = 8}, 1);
  const auto x = make_input(kB, kT, kD);
  run(state, [&] { return l.forward(x); });
  attn_bench::report(state, attn_bench::forward_flops(kB, kT));
}

void BM_differential(benchmark::State& state) {
  const attn::DifferentialMultiHeadAttention<float> l(
      {.dim = int(kD), .num_heads = 8, .head_dim = 64, .formulation = state.range(1) ? "paper" : "reference"}, 1);
  const auto x = make_input(kB, kT, kD);
  run(state, [&] { return l.forward(x); });
}

void BM_shared_weights_cross(benchmark::State& state) {
  const attn::SharedWeightsCrossAttention<float> l({.dim = int(kD), .num_heads = 8}, 1);
  const auto x = make_input(kB, kT, kD);
  const std::vector<int> split{256, 256};
  run(state, [&] { return l.forward(x, split); });
}

void BM_hopfield(benchmark::State& state) {
  const attn::HopfieldAttention<float> l(
      {.num_heads = 8, .key_dim = 64, .update_steps_max = int(state.range(1)), .input_dim = int(kD)}, 1);
  const auto x = make_input(kB, kT, kD);
  run(state, [&] { return l.forward(x); });
}

void BM_fnet(benchmark::State& state) {
  const attn::FNetFourierTransform<float> l({});
  const auto x = make_input(kB, kT, kD);
  run(state, [&] { return l.forward(x); });
}

void BM_context_attention(benchmark::State& state) {
  const attn::ContextAttention<float> l({.num_contexts = 16, .input_dim = int(kD), .output_dim = int(kD)}, 1);
  const auto x = make_input(kB, kT, kD);
  std::vector<Index> ids(kB);
  for (Index b = 0; b < kB; ++b) ids[static_cast<std::size_t>(b)] = b % 16;
  run(state, [&] { return l.forward(x, ids); });
}

void threads(benchmark::internal::Benchmark* b) {
  b->ArgNames({"threads"})->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK(BM_multi_head)->Apply(threads);
BENCHMARK(BM_differential)
    ->ArgNames({"threads", "paper"})
    ->Args({1, 0})->Args({2, 0})->Args({1, 1})->Args({2, 1})
    ->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_shared_weights_cross)->Apply(threads);
BENCHMARK(BM_hopfield)
    ->ArgNames({"threads", "steps"})
    ->Args({1, 0})->Args({2, 0})->Args({1, 3})->Args({2, 3})
    ->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fnet)->Apply(threads);
BENCHMARK(BM_context_attention)->Apply(threads);

BENCHMARK_MAIN();
