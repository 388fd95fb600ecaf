// Multi-head self-attention forward, fp32, E = 512, H = 8, d = 64: attn (the MultiHeadAttention layer,
// its `causal` option for the causal rows), a plain Eigen implementation (the floor) and fp32 GEMMs of
// the same work (the ceiling: attn's own tiled GEMM, and Eigen's), over B in {1, 8}, L in {128, 512,
// 2048, 4096}, causal or not, 1 and 2 threads; also the forward's three phases alone (the fused QKV
// projection, the attention core, the output projection) and, when OpenBLAS is found at configure time,
// OpenBLAS's sgemm of 1024^3 on 1 and 2 threads (the machine's ceiling). The SIMD level is attn's
// default (the best the CPU has) unless ATTN_SIMD says otherwise.
//
//   attn_bench_attention [google-benchmark flags]        the benchmarks
//   attn_bench_attention --peak attn|eigen B L causal [threads]
//                                                        one forward, for /usr/bin/time -v
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>

#include <attn/attn.hpp>

#ifdef ATTN_BENCH_OPENBLAS
#include <cblas.h>
#endif

#include "bench_common.hpp"

namespace {

using attn::Index;
using attn_bench::kEmbed;
using attn_bench::kHeadDim;
using attn_bench::kHeads;
using Layer = attn::MultiHeadAttention<float>;
using Mat = attn::Matrix<float>;

Layer make_layer(bool causal = false) {
  return Layer({.embed_dim = int(kEmbed), .num_heads = int(kHeads), .causal = causal}, 1);
}

attn::Tensor<float, 3> make_input(Index batch, Index len) {
  attn::Tensor<float, 3> x(batch, len, kEmbed);
  attn::Rng rng(2);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  return x;
}

/// Plain Eigen: projections, the full L x L score matrix per (batch, head), row softmax, P·V, output
/// projection. Heads are spread over attn's threads (the projections are single Eigen products).
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
  attn::set_num_threads(static_cast<int>(state.range(3)));
  const Layer layer = make_layer(state.range(2) != 0);
  const auto x = make_input(B, L);
  for (auto _ : state) {
    auto y = layer.forward(x);
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

/// The attention core alone on head-major Q, K, V ([B, H, L, d] each, contiguous per head): the same
/// work as BM_core without the [B, L, 3, H, d] projection's row stride (a diagnostic of the layout).
void BM_core_head_major(benchmark::State& state) {
  const Index B = state.range(0), L = state.range(1), E = kEmbed, H = kHeads, d = kHeadDim;
  attn::set_num_threads(static_cast<int>(state.range(3)));
  attn::ops::AttentionMask<float> mask;
  mask.causal = state.range(2) != 0;
  const auto qkv = make_input(B, 3 * L);
  attn::Tensor<float, 3> ctx(B, L, E);
  const auto view = [&](Index part) {
    return attn::ops::HeadsView<float>{qkv.data() + part * B * L * E, B, L, H, d, H * L * d, d, L * d};
  };
  for (auto _ : state) {
    attn::ops::attention_core(view(0), view(1), view(2), attn::ops::heads_out<float>(ctx.data(), B, L, H, d, E),
                              0.125f, mask);
    benchmark::DoNotOptimize(ctx.data());
  }
  attn_bench::report(state, 4.0 * double(B) * double(L) * double(L) * double(E));
}

/// The forward's first phase alone: the fused QKV projection x [B·L, E] · Wqkv [E, 3E] (ops::dense, the
/// layer's own weights), on attn's threads. GFLOP/s count its 2·B·L·E·3E.
void BM_qkv(benchmark::State& state) {
  const Index B = state.range(0), L = state.range(1), E = kEmbed;
  attn::set_num_threads(static_cast<int>(state.range(3)));
  const Layer layer = make_layer();
  const auto x = make_input(B, L);
  attn::Tensor<float, 3> qkv(B, L, 3 * E);
  qkv.setZero();  // touched before timing
  for (auto _ : state) {
    attn::ops::dense<float>(x.data(), B * L, layer.parameters()[0], nullptr, qkv.data());
    benchmark::DoNotOptimize(qkv.data());
  }
  attn_bench::report(state, 2.0 * double(B) * double(L) * double(E) * double(3 * E));
}

/// The forward's last phase alone: the output projection ctx [B·L, E] · Wproj [E, E].
void BM_outproj(benchmark::State& state) {
  const Index B = state.range(0), L = state.range(1), E = kEmbed;
  attn::set_num_threads(static_cast<int>(state.range(3)));
  const Layer layer = make_layer();
  const auto ctx = make_input(B, L);
  attn::Tensor<float, 3> y(B, L, E);
  y.setZero();
  for (auto _ : state) {
    attn::ops::dense<float>(ctx.data(), B * L, layer.parameters()[1], nullptr, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  attn_bench::report(state, 2.0 * double(B) * double(L) * double(E) * double(E));
}

/// The shapes of the projections: causal or not does not change them.
void dense_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "L", "causal", "threads"});
  for (std::int64_t batch : {1, 8})
    for (std::int64_t len : {128, 512, 2048, 4096})
      for (std::int64_t threads : {1, 2}) b->Args({batch, len, 0, threads});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

/// The side of a square GEMM with the forward's flops (2n³).
Index gemm_side(const benchmark::State& state) {
  const double flops = attn_bench::forward_flops(state.range(0), state.range(1));
  return std::max<Index>(8, static_cast<Index>(std::llround(std::cbrt(flops / 2.0))));
}

/// The ceiling: attn's own fp32 GEMM (ops::gemm: the kernels of the SIMD level in use, tiled over attn's
/// threads) on a square problem with the forward's flops.
void BM_gemm(benchmark::State& state) {
  attn::set_num_threads(static_cast<int>(state.range(3)));
  const Index n = gemm_side(state);
  const Mat a = Mat::Random(n, n), b = Mat::Random(n, n);
  Mat c = Mat::Zero(n, n);  // touched before timing: no first-touch page faults in the loop
  for (auto _ : state) {
    attn::ops::gemm<float>(n, n, n, a.data(), n, b.data(), n, false, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  attn_bench::report(state, 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n));
  state.counters["n"] = static_cast<double>(n);
}

/// Eigen's fp32 GEMM at the build's instruction set, same problem, rows split over attn's threads.
void BM_gemm_eigen(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(3));
  attn::set_num_threads(threads);
  const Index n = gemm_side(state);
  const Mat a = Mat::Random(n, n), b = Mat::Random(n, n);
  Mat c = Mat::Zero(n, n);  // touched before timing: no first-touch page faults in the loop
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

#ifdef ATTN_BENCH_OPENBLAS
/// OpenBLAS's name of the kernel set it runs (its run-time CPU detection, or OPENBLAS_CORETYPE).
std::string openblas_core() { return std::string(openblas_get_corename()) + " (" + openblas_get_config() + ")"; }

/// The machine's ceiling: OpenBLAS's sgemm of 1024^3 (row-major, no transposes) on `threads` of its own
/// threads. OpenBLAS goes back to one thread afterwards so that its pool stays idle in other benchmarks.
void BM_openblas(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  constexpr Index n = 1024;
  openblas_set_num_threads(threads);
  const Mat a = Mat::Random(n, n), b = Mat::Random(n, n);
  Mat c = Mat::Zero(n, n);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f,
                c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  openblas_set_num_threads(1);
  attn_bench::report(state, 2.0 * double(n) * double(n) * double(n));
  state.SetLabel(openblas_core());
}

/// attn's GEMM on the same 1024^3 problem, next to OpenBLAS's.
void BM_gemm1024(benchmark::State& state) {
  attn::set_num_threads(static_cast<int>(state.range(0)));
  constexpr Index n = 1024;
  const Mat a = Mat::Random(n, n), b = Mat::Random(n, n);
  Mat c = Mat::Zero(n, n);
  for (auto _ : state) {
    attn::ops::gemm<float>(n, n, n, a.data(), n, b.data(), n, false, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  attn_bench::report(state, 2.0 * double(n) * double(n) * double(n));
}
#endif

// The ceilings first: they are the reference of every ratio, and OpenBLAS's pool then sleeps.
#ifdef ATTN_BENCH_OPENBLAS
BENCHMARK(BM_openblas)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_gemm1024)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
#endif
BENCHMARK(BM_attn)->Apply(attn_bench::shapes);
BENCHMARK(BM_qkv)->Apply(dense_shapes);
BENCHMARK(BM_core)->Apply(attn_bench::shapes);
BENCHMARK(BM_core_head_major)->Apply(attn_bench::shapes);
BENCHMARK(BM_outproj)->Apply(dense_shapes);
BENCHMARK(BM_eigen)->Apply(attn_bench::shapes);
BENCHMARK(BM_gemm)->Apply(attn_bench::shapes);
BENCHMARK(BM_gemm_eigen)->Apply(attn_bench::shapes);

/// attn and plain Eigen must compute the same function: checked once on a small input before timing.
bool self_check() {
  const auto x = make_input(2, 67);
  bool ok = true;
  for (bool causal : {false, true}) {
    const auto a = make_layer(causal).forward(x);
    const auto b = forward_plain_eigen(make_layer(causal), x, causal);
    double worst = 0;
    for (Index i = 0; i < a.size(); ++i) worst = std::max(worst, double(std::abs(a.data()[i] - b.data()[i])));
    if (worst > 1e-3) {
      std::fprintf(stderr, "self-check failed (causal %d): max difference %g\n", int(causal), worst);
      ok = false;
    }
  }
  return ok;
}

int peak(const attn_bench::PeakArgs& p) {
  attn::set_num_threads(static_cast<int>(p.threads));
  const Layer layer = make_layer(p.causal);
  const auto x = make_input(p.batch, p.len);
  attn::Tensor<float, 3> y;
  if (p.what == "attn") y = layer.forward(x);
  else if (p.what == "eigen") y = forward_plain_eigen(layer, x, p.causal);
  else {
    std::fprintf(stderr, "--peak: unknown path '%s' (attn or eigen)\n", p.what.c_str());
    return 2;
  }
  double sum = 0;
  for (Index i = 0; i < y.size(); ++i) sum += y.data()[i];
  std::printf("peak mode: %s simd=%s B=%lld L=%lld causal=%d threads=%lld checksum %.6g\n", p.what.c_str(),
              std::string(attn::simd_name(attn::simd())).c_str(),
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
  benchmark::AddCustomContext("attn_simd", std::string(attn::simd_name(attn::simd())));
#ifdef ATTN_BENCH_OPENBLAS
  benchmark::AddCustomContext("openblas_core", openblas_core());
  std::fprintf(stderr, "OpenBLAS core: %s\n", openblas_core().c_str());
#endif
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
