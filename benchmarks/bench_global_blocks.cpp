// The global attention blocks of KCAM at their papers' stage shapes, B = 8, fp32, 1 and 2 threads (the
// libtorch side of the same computations is in bench_torch.cpp, BM_torch_global_*):
//   cross_covariance_attention                       EdgeNeXt  28x28x160, 4 heads
//   mhsa_with_relative_position_embedding            BoTNet    14x14x1024, 4 heads, no output projection
//   mhsa_with_multi_head_relative_position_embedding CoAtNet   14x14x384, 12 heads
//   mhsa_with_multi_head_position_and_strides        LeViT     14x14x256 -> 7x7x384, 16 heads of 16, ratio 4
//   light_mhsa_with_multi_head_relative_position_embedding
//                                                    CMT       28x28x128, 2 heads, sr_ratio 4 (keys on 7x7)
// GFLOP/s count the matrix products (projections, Q·Kᵀ, P·V and BoTNet's position logits), 2 per
// multiply-add, as global_block_flops in bench_global_blocks.hpp.
//
//   attn_bench_global_blocks [google-benchmark flags]
#include <cstdint>

#include <attn/layers/cross_covariance_attention.hpp>
#include <attn/layers/light_mhsa_with_multi_head_relative_position_embedding.hpp>
#include <attn/layers/mhsa_with_multi_head_position_and_strides.hpp>
#include <attn/layers/mhsa_with_multi_head_relative_position_embedding.hpp>
#include <attn/layers/mhsa_with_relative_position_embedding.hpp>
#include <benchmark/benchmark.h>

#include "bench_common.hpp"
#include "bench_global_blocks.hpp"

namespace {

using attn::Index;
using attn_bench::GlobalBlock;

attn::Tensor<float, 4> feature_map(Index b, Index h, Index w, Index c) {
  attn::Tensor<float, 4> x(b, h, w, c);
  attn::Rng rng(1);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  return x;
}

/// Gives every weight small random values (position tables and BN gammas start at constants).
template <class L>
void randomize(L& layer) {
  attn::Rng rng(7);
  for (auto& w : layer.parameters())
    for (auto& v : w.data) v = static_cast<float>(rng.uniform(-0.05, 0.05)) + (w.name.ends_with("variance") ? 1.0f : 0.0f);
}

template <class L>
void run(benchmark::State& state, const L& layer, const attn::Tensor<float, 4>& x, GlobalBlock which) {
  attn::set_num_threads(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    auto y = layer.forward(x);
    benchmark::DoNotOptimize(y.data());
  }
  attn_bench::report(state, attn_bench::global_block_flops(which));
}

void BM_global_xca(benchmark::State& state) {
  attn::CrossCovarianceAttention<float> layer({.channels = 160, .num_heads = 4});
  randomize(layer);
  run(state, layer, feature_map(8, 28, 28, 160), GlobalBlock::xca);
}

void BM_global_botnet(benchmark::State& state) {
  attn::MhsaWithRelativePositionEmbedding<float> layer({.input_shape = {14, 14, 1024}, .num_heads = 4, .out_weight = false});
  randomize(layer);
  run(state, layer, feature_map(8, 14, 14, 1024), GlobalBlock::botnet);
}

void BM_global_coatnet(benchmark::State& state) {
  attn::MhsaWithMultiHeadRelativePositionEmbedding<float> layer({.input_shape = {14, 14, 384}, .num_heads = 12});
  randomize(layer);
  run(state, layer, feature_map(8, 14, 14, 384), GlobalBlock::coatnet);
}

void BM_global_levit_subsample(benchmark::State& state) {
  attn::MhsaWithMultiHeadPositionAndStrides<float> layer({.input_shape = {14, 14, 256}, .num_heads = 16, .key_dim = 16,
                                                          .output_dim = 384, .attn_ratio = 4, .strides = 2,
                                                          .activation = "hard_swish"});
  randomize(layer);
  run(state, layer, feature_map(8, 14, 14, 256), GlobalBlock::levit_subsample);
}

void BM_global_cmt(benchmark::State& state) {
  attn::LightMhsaWithMultiHeadRelativePositionEmbedding<float> layer(
      {.input_shape = {28, 28, 128}, .num_heads = 2, .sr_ratio = 4});
  randomize(layer);
  run(state, layer, feature_map(8, 28, 28, 128), GlobalBlock::cmt);
}

void threads(benchmark::internal::Benchmark* b) {
  b->ArgNames({"threads"})->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_global_xca)->Apply(threads);
BENCHMARK(BM_global_botnet)->Apply(threads);
BENCHMARK(BM_global_coatnet)->Apply(threads);
BENCHMARK(BM_global_levit_subsample)->Apply(threads);
BENCHMARK(BM_global_cmt)->Apply(threads);

}  // namespace

BENCHMARK_MAIN();
