// The window layer at Swin-T's first stage: a feature map 56x56x96, 3 heads, window 7, B = 8, fp32,
// unshifted and shifted (shift 3), through the feature-map entry (pad, roll, partition, attention with
// the relative-position bias and the shifted-window mask, reverse), against the same-FLOP dense
// computation: multi_head over the same tokens as 512 sequences of 49 (the same fused QKV and output
// projections, the same attention core, no bias, no partition). 1 and 2 threads.
// Also attention_block at ViT-S's width: a 14x14x384 map, 6 heads, mlp_ratio 4, B = 8, fp32, post-norm
// (libtorch's nn::TransformerEncoderLayer is post-norm: BM_torch_attention_block in bench_torch.cpp does
// the same computation, times the per-channel scale) and pre-norm, 1 and 2 threads.
//
//   attn_bench_vision_layers [google-benchmark flags]
#include <cstdint>

#include <attn/attn.hpp>
#include <benchmark/benchmark.h>

namespace {

using attn::Index;

constexpr Index kBatch = 8, kSide = 56, kDim = 96, kHeads = 3, kWindow = 7;

/// Projections (QKV and output) and Q·Kᵀ, P·V over every window.
double window_flops() {
  const double tokens = double(kBatch) * kSide * kSide, n = double(kWindow) * kWindow;
  return 4.0 * 2.0 * tokens * kDim * kDim + 2.0 * 2.0 * tokens * n * kDim;
}

void report(benchmark::State& state) {
  state.counters["GFLOPS"] = benchmark::Counter(window_flops() * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

attn::Tensor<float, 4> feature_map() {
  attn::Tensor<float, 4> x(kBatch, kSide, kSide, kDim);
  attn::Rng rng(1);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  return x;
}

void BM_window_map(benchmark::State& state) {
  attn::set_num_threads(static_cast<int>(state.range(1)));
  const attn::WindowAttention<float> layer({.dim = kDim, .window_size = kWindow, .num_heads = kHeads}, 2);
  const auto x = feature_map();
  const Index shift = state.range(0) != 0 ? kWindow / 2 : 0;
  for (auto _ : state) {
    auto y = layer.forward_map(x, shift);
    benchmark::DoNotOptimize(y.data());
  }
  report(state);
}

void BM_dense_same_flops(benchmark::State& state) {
  attn::set_num_threads(static_cast<int>(state.range(1)));
  const attn::MultiHeadAttention<float> mha({.embed_dim = kDim, .num_heads = kHeads, .use_bias = true}, 2);
  const auto m = feature_map();
  const Index windows = kBatch * (kSide / kWindow) * (kSide / kWindow);
  const attn::Tensor<float, 3> x = m.reshape(std::array<Index, 3>{windows, kWindow * kWindow, kDim});
  for (auto _ : state) {
    auto y = mha.forward(x);
    benchmark::DoNotOptimize(y.data());
  }
  report(state);
}

void args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"shifted", "threads"});
  for (std::int64_t threads : {1, 2})
    for (std::int64_t shifted : {0, 1}) b->Args({shifted, threads});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_window_map)->Apply(args);
BENCHMARK(BM_dense_same_flops)->Apply(args);

constexpr Index kBlockSide = 14, kBlockDim = 384, kBlockHeads = 6;

/// Matrix products of one attention_block forward: Q, K, V and output projections, Q·Kᵀ and P·V, the MLP.
double block_flops() {
  const double n = double(kBlockSide) * kBlockSide, tokens = double(kBatch) * n, d = kBlockDim, f = 4.0 * d;
  return 2.0 * tokens * (4.0 * d * d + 2.0 * d * f) + 2.0 * 2.0 * double(kBatch) * n * n * d;
}

void BM_attention_block(benchmark::State& state) {
  attn::set_num_threads(static_cast<int>(state.range(1)));
  const attn::AttentionBlock<float> layer(
      {.dim = kBlockDim, .num_heads = kBlockHeads, .normalization_position = state.range(0) != 0 ? "post" : "pre"}, 2);
  attn::Tensor<float, 4> x(kBatch, kBlockSide, kBlockSide, kBlockDim);
  attn::Rng rng(1);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  for (auto _ : state) {
    auto y = layer.forward(x);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOPS"] = benchmark::Counter(block_flops() * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_attention_block)
    ->ArgNames({"post", "threads"})
    ->Args({1, 1})
    ->Args({0, 1})
    ->Args({1, 2})
    ->Args({0, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
