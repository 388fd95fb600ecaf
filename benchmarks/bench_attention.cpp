// Multi-head self-attention forward, fp32, E = 512, H = 8, d = 64: attn (the MultiHeadAttention layer on
// the attention core), a plain Eigen implementation (the floor) and an fp32 GEMM of the same work (the
// ceiling), over B in {1, 8}, L in {128, 512, 2048, 4096}, causal or not, 1 and 2 threads; also the
// layer with its projections split over the threads, and the attention core alone.
//
//   attn_bench_attention [google-benchmark flags]        the benchmarks
//   attn_bench_attention --peak attn|eigen B L causal [threads]
//                                                        one forward, for /usr/bin/time -v
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>

#include <attn/attn.hpp>

#include "bench_common.hpp"

namespace {

using attn::Index;
using attn_bench::kEmbed;
using attn_bench::kHeadDim;
using attn_bench::kHeads;
using Layer = attn::MultiHeadAttention<float>;
using Mat = attn::Matrix<float>;

Layer make_layer() { return Layer({.embed_dim = int(kEmbed), .num_heads = int(kHeads)}, 1); }

attn::Tensor<float, 3> make_input(Index batch, Index len) {
  attn::Tensor<float, 3> x(batch, len, kEmbed);
  attn::Rng rng(2);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  return x;
}

/// y[rows, out] = x[rows, in]·W; when `threaded`, chunks of 256 rows (fixed, so the result does not
/// depend on the thread count) are spread over attn's threads. This is the change proposed for
/// ops::dense; the layer's projections run on the calling thread today.
void project(const float* x, Index rows, const attn::Weight<float>& w, float* y, bool threaded) {
  if (!threaded) return attn::ops::dense<float>(x, rows, w, nullptr, y);
  const Index in = w.shape.at(0), out = w.shape.at(1), chunk = 256;
  attn::parallel_for((rows + chunk - 1) / chunk, [&](std::int64_t t) {
    const Index r0 = t * chunk, n = std::min(chunk, rows - r0);
    attn::MatrixMap<float>(y + r0 * out, n, out).noalias() = attn::ConstMatrixMap<float>(x + r0 * in, n, in) * w.matrix();
  });
}

/// The layer's forward with the core's causal flag: the same steps as MultiHeadAttention (fused QKV
/// projection, the core on strided head views, output projection). The layer takes causal masks as a
/// boolean [L, L] tensor, which the core reads per element; the flag lets it skip blocks.
attn::Tensor<float, 3> forward_core(const Layer& layer, const attn::Tensor<float, 3>& x, bool causal,
                                    bool threaded_projections) {
  const Index B = x.dimension(0), L = x.dimension(1), E = kEmbed, H = kHeads, d = kHeadDim;
  const auto& w = layer.parameters();
  attn::Tensor<float, 3> qkv(B, L, 3 * E), ctx(B, L, E), y(B, L, E);
  project(x.data(), B * L, w[0], qkv.data(), threaded_projections);
  attn::ops::AttentionMask<float> mask;
  mask.causal = causal;
  attn::ops::attention_core(attn::ops::heads_of<float>(qkv.data(), B, L, H, d, 3 * E),
                            attn::ops::heads_of<float>(qkv.data() + E, B, L, H, d, 3 * E),
                            attn::ops::heads_of<float>(qkv.data() + 2 * E, B, L, H, d, 3 * E),
                            attn::ops::heads_out<float>(ctx.data(), B, L, H, d, E),
                            1.0f / std::sqrt(static_cast<float>(d)), mask);
  project(ctx.data(), B * L, w[1], y.data(), threaded_projections);
  return y;
}

/// Plain Eigen: projections, the full L x L score matrix per (batch, head), row softmax, P·V, output
/// projection. Heads are spread over attn's threads (projections on the calling thread, as the layer).
attn::Tensor<float, 3> forward_plain_eigen(const Layer& layer, const attn::Tensor<float, 3>& x, bool causal) {
  const Index B = x.dimension(0), L = x.dimension(1), E = kEmbed, H = kHeads, d = kHeadDim;
  const auto& w = layer.parameters();
  const Mat qkv = attn::ConstMatrixMap<float>(x.data(), B * L, E) * w[0].matrix();
  Mat ctx(B * L, E);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  attn::parallel_for(B * H, [&](std::int64_t t) {
    const Index b = t / H, h = t % H;
    const Mat q = qkv.block(b * L, h * d, L, d);
    const Mat k = qkv.block(b * L, E + h * d, L, d);
    const Mat v = qkv.block(b * L, 2 * E + h * d, L, d);
    Mat s = (q * k.transpose()) * scale;
    if (causal)
      for (Index i = 0; i + 1 < L; ++i) s.row(i).tail(L - 1 - i).setConstant(-std::numeric_limits<float>::infinity());
    for (Index i = 0; i < L; ++i) {
      const float mx = s.row(i).maxCoeff();
      s.row(i) = (s.row(i).array() - mx).exp().matrix();
      s.row(i) /= s.row(i).sum();
    }
    ctx.block(b * L, h * d, L, d).noalias() = s * v;
  });
  attn::Tensor<float, 3> y(B, L, E);
  attn::MatrixMap<float>(y.data(), B * L, E).noalias() = ctx * w[1].matrix();
  return y;
}

void BM_attn(benchmark::State& state) {
  const Index B = state.range(0), L = state.range(1);
  const bool causal = state.range(2) != 0;
  attn::set_num_threads(static_cast<int>(state.range(3)));
  const Layer layer = make_layer();
  const auto x = make_input(B, L);
  for (auto _ : state) {
    auto y = causal ? forward_core(layer, x, true, false) : layer.forward(x);
    benchmark::DoNotOptimize(y.data());
  }
  attn_bench::report(state, attn_bench::forward_flops(B, L));
}

void BM_attn_threaded_projections(benchmark::State& state) {
  const Index B = state.range(0), L = state.range(1);
  const bool causal = state.range(2) != 0;
  attn::set_num_threads(static_cast<int>(state.range(3)));
  const Layer layer = make_layer();
  const auto x = make_input(B, L);
  for (auto _ : state) {
    auto y = forward_core(layer, x, causal, true);
    benchmark::DoNotOptimize(y.data());
  }
  attn_bench::report(state, attn_bench::forward_flops(B, L));
}

void BM_eigen(benchmark::State& state) {
  const Index B = state.range(0), L = state.range(1);
  const bool causal = state.range(2) != 0;
  attn::set_num_threads(static_cast<int>(state.range(3)));
  const Layer layer = make_layer();
  const auto x = make_input(B, L);
  for (auto _ : state) {
    auto y = forward_plain_eigen(layer, x, causal);
    benchmark::DoNotOptimize(y.data());
  }
  attn_bench::report(state, attn_bench::forward_flops(B, L));
}

/// The attention core alone on a fixed [B, L, 3·E] QKV buffer (no projections), causal by its flag.
/// GFLOP/s count Q·Kᵀ and P·V over the full L x L.
void BM_core(benchmark::State& state) {
  const Index B = state.range(0), L = state.range(1), E = kEmbed, H = kHeads, d = kHeadDim;
  attn::set_num_threads(static_cast<int>(state.range(3)));
  attn::ops::AttentionMask<float> mask;
  mask.causal = state.range(2) != 0;
  const auto qkv = make_input(B, 3 * L);  // [B, 3L, E] has the size of [B, L, 3E]
  attn::Tensor<float, 3> ctx(B, L, E);
  for (auto _ : state) {
    attn::ops::attention_core(attn::ops::heads_of<float>(qkv.data(), B, L, H, d, 3 * E),
                              attn::ops::heads_of<float>(qkv.data() + E, B, L, H, d, 3 * E),
                              attn::ops::heads_of<float>(qkv.data() + 2 * E, B, L, H, d, 3 * E),
                              attn::ops::heads_out<float>(ctx.data(), B, L, H, d, E), 0.125f, mask);
    benchmark::DoNotOptimize(ctx.data());
  }
  attn_bench::report(state, 4.0 * double(B) * double(L) * double(L) * double(E));
}

/// The ceiling: one square fp32 GEMM C = A·B with 2n³ = the forward's flops, rows split over the threads.
void BM_gemm(benchmark::State& state) {
  const Index B = state.range(0), L = state.range(1);
  const int threads = static_cast<int>(state.range(3));
  attn::set_num_threads(threads);
  const double flops = attn_bench::forward_flops(B, L);
  const Index n = std::max<Index>(8, static_cast<Index>(std::llround(std::cbrt(flops / 2.0))));
  const Mat a = Mat::Random(n, n), b = Mat::Random(n, n);
  Mat c(n, n);
  for (auto _ : state) {
    attn::parallel_shares(attn::shares_for(threads), [&](int s, int p) {
      const Index r0 = n * s / p, r1 = n * (s + 1) / p;
      c.middleRows(r0, r1 - r0).noalias() = a.middleRows(r0, r1 - r0) * b;
    });
    benchmark::DoNotOptimize(c.data());
  }
  attn_bench::report(state, 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n));
  state.counters["n"] = static_cast<double>(n);
}

BENCHMARK(BM_attn)->Apply(attn_bench::shapes);
BENCHMARK(BM_attn_threaded_projections)->Apply(attn_bench::shapes);
BENCHMARK(BM_eigen)->Apply(attn_bench::shapes);
BENCHMARK(BM_core)->Apply(attn_bench::shapes);
BENCHMARK(BM_gemm)->Apply(attn_bench::shapes);

/// The three paths must compute the same function: checked once on a small input before timing.
bool self_check() {
  const Layer layer = make_layer();
  const auto x = make_input(2, 67);
  bool ok = true;
  for (bool causal : {false, true}) {
    const auto a = forward_core(layer, x, causal, true);
    const auto b = forward_plain_eigen(layer, x, causal);
    double worst = 0;
    for (Index i = 0; i < a.size(); ++i) worst = std::max(worst, double(std::abs(a.data()[i] - b.data()[i])));
    if (!causal) {
      const auto c = layer.forward(x);
      for (Index i = 0; i < a.size(); ++i) worst = std::max(worst, double(std::abs(a.data()[i] - c.data()[i])));
    }
    if (worst > 1e-3) {
      std::fprintf(stderr, "self-check failed (causal %d): max difference %g\n", int(causal), worst);
      ok = false;
    }
  }
  return ok;
}

int peak(const attn_bench::PeakArgs& p) {
  attn::set_num_threads(static_cast<int>(p.threads));
  const Layer layer = make_layer();
  const auto x = make_input(p.batch, p.len);
  attn::Tensor<float, 3> y;
  if (p.what == "attn") y = p.causal ? forward_core(layer, x, true, false) : layer.forward(x);
  else if (p.what == "eigen") y = forward_plain_eigen(layer, x, p.causal);
  else {
    std::fprintf(stderr, "--peak: unknown path '%s' (attn or eigen)\n", p.what.c_str());
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
  if (!self_check()) return 1;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
