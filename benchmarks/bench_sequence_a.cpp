// The sequence layers of the reference module (perceiver, anchor, adaptive_multi_head,
// capsule_routing) beside multi_head, fp32, in one
// binary so their times compare within one run: B = 8, T = 512, D = 512, 8 heads of width 64, one and
// two threads. perceiver runs as self-attention (kv = query, the same work as multi_head: 4 projections,
// Q·Kᵀ and P·V over T x T); anchor runs in standard mode (the same work) and with 64 anchors (every
// token attends to 64 keys). GFLOP/s count the dense work of multi_head for every entry, so the
// counter reads as a speed relative to it. adaptive_multi_head runs as self-attention (query = value):
// the temperatures' two passes over the logits come on top of multi_head's work. capsule_routing runs
// at T = 512 only (its positional routing costs O(heads·T³) per item); `--peak capsule_routing` runs
// without the positional term (the same [heads, T, T] buffers, O(heads·T²) routing) so T = 4096 ends.
//
//   attn_bench_sequence_a [google-benchmark flags]
//   attn_bench_sequence_a --peak multi_head|perceiver|anchor|adaptive_multi_head|capsule_routing B L causal [threads]
//                                                   one forward, for /usr/bin/time -v
#include <cstdint>
#include <cstdio>
#include <string>

#include <attn/attn.hpp>

#include "bench_common.hpp"

namespace {

using attn::Index;
using attn_bench::kEmbed;
using attn_bench::kHeads;

attn::Tensor<float, 3> make_input(Index batch, Index len) {
  attn::Tensor<float, 3> x(batch, len, kEmbed);
  attn::Rng rng(2);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  return x;
}

/// Arguments {B, T, threads}: the B = 8, T = 512 (and T = 2048), 1 and 2 threads.
void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "T", "threads"});
  for (std::int64_t len : {512, 2048})
    for (std::int64_t threads : {1, 2}) b->Args({8, len, threads});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

template <class F>
void run(benchmark::State& state, F&& forward) {
  const Index B = state.range(0), T = state.range(1);
  attn::set_num_threads(static_cast<int>(state.range(2)));
  const auto x = make_input(B, T);
  for (auto _ : state) {
    auto y = forward(x);
    benchmark::DoNotOptimize(y.data());
  }
  attn_bench::report(state, attn_bench::forward_flops(B, T));
}

void BM_multi_head(benchmark::State& state) {
  const attn::MultiHeadAttention<float> l({.embed_dim = int(kEmbed), .num_heads = int(kHeads)}, 1);
  run(state, [&](const auto& x) { return l.forward(x); });
}
void BM_perceiver(benchmark::State& state) {
  const attn::PerceiverAttention<float> l({.dim = int(kEmbed), .num_heads = int(kHeads)}, 1);
  run(state, [&](const auto& x) { return l.forward(x, x); });
}
void BM_anchor_standard(benchmark::State& state) {
  const attn::AnchorAttention<float> l({.dim = int(kEmbed), .num_heads = int(kHeads)}, 1);
  run(state, [&](const auto& x) { return l.forward(x); });
}
void BM_anchor_64(benchmark::State& state) {
  const attn::AnchorAttention<float> l({.dim = int(kEmbed), .num_heads = int(kHeads)}, 1);
  run(state, [&](const auto& x) { return l.forward(x, 64); });
}

void BM_adaptive_multi_head(benchmark::State& state) {
  const attn::AdaptiveMultiHeadAttention<float> l(
      {.num_heads = int(kHeads), .key_dim = int(kEmbed / kHeads), .query_input_dim = int(kEmbed)}, 1);
  run(state, [&](const auto& x) { return l.forward(x, x); });
}
void BM_capsule_routing(benchmark::State& state) {
  const attn::CapsuleRoutingSelfAttention<float> l({.num_heads = int(kHeads), .input_dim = int(kEmbed)}, 1);
  run(state, [&](const auto& x) { return l.forward(x); });
}
/// {B, T, threads} at T = 512 only.
void shapes_512(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "T", "threads"});
  for (std::int64_t threads : {1, 2}) b->Args({8, 512, threads});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_multi_head)->Apply(shapes);
BENCHMARK(BM_perceiver)->Apply(shapes);
BENCHMARK(BM_anchor_standard)->Apply(shapes);
BENCHMARK(BM_anchor_64)->Apply(shapes);
BENCHMARK(BM_adaptive_multi_head)->Apply(shapes);
BENCHMARK(BM_capsule_routing)->Apply(shapes_512);

int peak(const attn_bench::PeakArgs& p) {
  attn::set_num_threads(static_cast<int>(p.threads));
  const auto x = make_input(p.batch, p.len);
  attn::Tensor<float, 3> y;
  if (p.what == "multi_head")
    y = attn::MultiHeadAttention<float>({.embed_dim = int(kEmbed), .num_heads = int(kHeads), .causal = p.causal}, 1)
            .forward(x);
  else if (p.what == "perceiver")
    y = attn::PerceiverAttention<float>({.dim = int(kEmbed), .num_heads = int(kHeads)}, 1).forward(x, x,
                                                                                                    {.causal = p.causal});
  else if (p.what == "anchor")
    y = attn::AnchorAttention<float>({.dim = int(kEmbed), .num_heads = int(kHeads)}, 1).forward(x, 64);
  else if (p.what == "adaptive_multi_head")
    y = attn::AdaptiveMultiHeadAttention<float>(
            {.num_heads = int(kHeads), .key_dim = int(kEmbed / kHeads), .query_input_dim = int(kEmbed)}, 1)
            .forward(x, x, {.causal = p.causal});
  else if (p.what == "capsule_routing")
    y = attn::CapsuleRoutingSelfAttention<float>(
            {.num_heads = int(kHeads), .use_positional_routing = false, .input_dim = int(kEmbed)}, 1)
            .forward(x, {.causal = p.causal});
  else {
    std::fprintf(stderr, "--peak: unknown layer '%s' (multi_head, perceiver, anchor, adaptive_multi_head or "
                         "capsule_routing)\n", p.what.c_str());
    return 2;
  }
  double sum = 0;
  for (Index i = 0; i < y.size(); ++i) sum += y.data()[i];
  std::printf("peak mode: %s B=%lld L=%lld causal=%d threads=%lld checksum %.6g\n", p.what.c_str(),
              static_cast<long long>(p.batch), static_cast<long long>(p.len), int(p.causal),
              static_cast<long long>(p.threads), sum);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  attn_bench::PeakArgs p;
  if (attn_bench::parse_peak(argc, argv, p)) return peak(p);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
