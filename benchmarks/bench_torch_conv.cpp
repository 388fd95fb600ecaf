// The libtorch sibling of bench_conv.cpp: torch::conv2d (inference mode, fp32) on the same shapes and
// work counts. The input is channels-last in memory (torch::MemoryFormat::ChannelsLast), like attn's.
//
//   attn_bench_torch_conv [google-benchmark flags]
#include <dlfcn.h>

#include <torch/torch.h>

#include "bench_conv_common.hpp"

namespace {

void set_threads(int n) {
  torch::set_num_threads(n);
  using SetThreads = void (*)(int);
  if (void* f = dlsym(RTLD_DEFAULT, "openblas_set_num_threads")) reinterpret_cast<SetThreads>(f)(n);
}

void BM_torch(benchmark::State& state) {
  const auto& s = attn_bench::kConvShapes[state.range(0)];
  set_threads(static_cast<int>(state.range(1)));
  c10::InferenceMode guard;
  torch::manual_seed(1);
  const auto x = (torch::rand({s.batch, s.cin, s.side, s.side}) * 2 - 1).contiguous(torch::MemoryFormat::ChannelsLast);
  const std::int64_t groups = s.depthwise ? s.cin : 1;
  const auto w = (torch::rand({s.cout, s.cin / groups, s.k, s.k}) * 2 - 1).contiguous(torch::MemoryFormat::ChannelsLast);
  const auto b = torch::rand({s.cout});
  for (auto _ : state) {
    auto y = torch::conv2d(x, w, b, /*stride=*/1, /*padding=*/s.k / 2, /*dilation=*/1, groups);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  attn_bench::report_conv(state, attn_bench::conv_flops(s));
}

BENCHMARK(BM_torch)->Apply(attn_bench::conv_shapes);

}  // namespace

BENCHMARK_MAIN();
