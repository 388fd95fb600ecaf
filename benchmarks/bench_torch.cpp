// The libtorch sibling of bench_attention.cpp: torch::nn::MultiheadAttention (E = 512, 8 heads, no bias,
// need_weights = false, inference mode) on the same shapes and with the same work count.
//
//   attn_bench_torch [google-benchmark flags]
//   attn_bench_torch --peak torch B L causal [threads]     one forward, for /usr/bin/time -v
#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <limits>

#include <torch/torch.h>

#include "bench_common.hpp"

namespace {

using attn_bench::kEmbed;
using attn_bench::kHeads;

struct TorchProblem {
  torch::nn::MultiheadAttention mha{torch::nn::MultiheadAttentionOptions(kEmbed, kHeads).bias(false)};
  torch::Tensor x, mask;

  TorchProblem(std::int64_t batch, std::int64_t len, bool causal) {
    torch::manual_seed(1);
    mha->eval();
    x = torch::rand({len, batch, kEmbed}) * 2 - 1;  // (L, B, E): the module's layout
    if (causal)  // additive float mask: -inf above the diagonal
      mask = torch::full({len, len}, -std::numeric_limits<float>::infinity()).triu(1);
  }
  torch::Tensor forward() {
    return std::get<0>(mha->forward(x, x, x, /*key_padding_mask=*/{}, /*need_weights=*/false, mask));
  }
};

/// libtorch's intra-op threads, and those of the BLAS it calls when that is OpenBLAS (Debian's libtorch
/// uses whatever libblas.so.3 the system selects; OpenBLAS keeps its own pool).
void set_threads(int n) {
  torch::set_num_threads(n);
  using SetThreads = void (*)(int);
  if (void* f = dlsym(RTLD_DEFAULT, "openblas_set_num_threads")) reinterpret_cast<SetThreads>(f)(n);
}

void BM_torch(benchmark::State& state) {
  const std::int64_t B = state.range(0), L = state.range(1);
  const bool causal = state.range(2) != 0;
  set_threads(static_cast<int>(state.range(3)));
  c10::InferenceMode guard;
  TorchProblem p(B, L, causal);
  for (auto _ : state) {
    auto y = p.forward();
    benchmark::DoNotOptimize(y.data_ptr());
  }
  attn_bench::report(state, attn_bench::forward_flops(B, L));
}

BENCHMARK(BM_torch)->Apply(attn_bench::shapes);

int peak(const attn_bench::PeakArgs& a) {
  if (a.what != "torch") {
    std::fprintf(stderr, "--peak: unknown path '%s' (torch)\n", a.what.c_str());
    return 2;
  }
  set_threads(static_cast<int>(a.threads));
  c10::InferenceMode guard;
  TorchProblem p(a.batch, a.len, a.causal);
  const auto y = p.forward();
  std::printf("peak mode: torch B=%lld L=%lld causal=%d threads=%lld checksum %.6g\n",
              static_cast<long long>(a.batch), static_cast<long long>(a.len), int(a.causal),
              static_cast<long long>(a.threads), y.sum().item<double>());
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
