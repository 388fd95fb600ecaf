// The libtorch sibling of bench_attention.cpp: torch::nn::MultiheadAttention (E = 512, 8 heads, no bias,
// need_weights = false, inference mode) on the same shapes and with the same work count; also the
// libtorch side of bench_vision_layers.cpp (Swin's window attention) and of bench_global_blocks.cpp (the
// global attention blocks, BM_torch_global/<block>).
// Also the libtorch side of attention_block in bench_vision_layers.cpp (BM_torch_attention_block:
// nn::TransformerEncoderLayer times a per-channel scale).
//
//   attn_bench_torch [google-benchmark flags]
//   attn_bench_torch --peak torch B L causal [threads]     one forward, for /usr/bin/time -v
//   attn_bench_torch --benchmark_filter=decode               the decode steps of bench_decode.cpp
#include <dlfcn.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <vector>

#include <torch/torch.h>

#include "bench_common.hpp"
#include "bench_global_blocks.hpp"

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

/// Swin's window attention the way its reference code computes it, at the shapes of
/// bench_vision_layers.cpp (B = 8, 56x56x96, 3 heads, window 7, shift 0 or 3): roll, window partition
/// (view/permute), the fused qkv Linear, q·scale, q·kᵀ (matmul) + the relative-position bias gathered
/// from the table (+ the shifted-window mask, -100), softmax, ·v (matmul), the proj Linear, window
/// reverse, roll back.
struct SwinWindowProblem {
  static constexpr std::int64_t B = 8, S = 56, C = 96, H = 3, w = 7, N = w * w, nW = (S / w) * (S / w);
  torch::nn::Linear qkv{torch::nn::LinearOptions(C, 3 * C)}, proj{torch::nn::LinearOptions(C, C)};
  torch::Tensor x, table, index, mask;
  std::int64_t shift;

  static torch::Tensor partition(const torch::Tensor& t, std::int64_t batch, std::int64_t c) {
    return t.view({batch, S / w, w, S / w, w, c}).permute({0, 1, 3, 2, 4, 5}).reshape({-1, N, c});
  }
  explicit SwinWindowProblem(bool shifted) : shift(shifted ? w / 2 : 0) {
    torch::manual_seed(1);
    x = torch::rand({B, S, S, C}) * 2 - 1;
    table = torch::randn({(2 * w - 1) * (2 * w - 1), H}) * 0.02;
    auto coords = torch::stack(torch::meshgrid({torch::arange(w), torch::arange(w)}, "ij")).flatten(1);  // [2, N]
    auto rel = (coords.unsqueeze(2) - coords.unsqueeze(1)).permute({1, 2, 0}).contiguous();          // [N, N, 2]
    rel.select(2, 0).add_(w - 1).mul_(2 * w - 1);
    rel.select(2, 1).add_(w - 1);
    index = rel.sum(-1).flatten();
    if (shift > 0) {
      auto img = torch::zeros({1, S, S, 1});
      auto acc = img.accessor<float, 4>();
      const auto region = [&](std::int64_t v) { return v < S - w ? 0 : (v < S - shift ? 1 : 2); };
      for (std::int64_t r = 0; r < S; ++r)
        for (std::int64_t c = 0; c < S; ++c) acc[0][r][c][0] = static_cast<float>(3 * region(r) + region(c));
      auto mw = partition(img, 1, 1).reshape({-1, N});
      mask = (mw.unsqueeze(1) - mw.unsqueeze(2)).ne(0).to(torch::kFloat) * -100.0;  // [nW, N, N]
    }
  }
  torch::Tensor forward() {
    auto t = shift > 0 ? torch::roll(x, {-shift, -shift}, {1, 2}) : x;
    auto win = partition(t, B, C);  // [B·nW, N, C]
    const std::int64_t bw = win.size(0);
    auto p = qkv->forward(win).reshape({bw, N, 3, H, C / H}).permute({2, 0, 3, 1, 4});
    auto q = p[0] * (1.0 / std::sqrt(double(C / H)));
    auto attn = torch::matmul(q, p[1].transpose(-2, -1));
    attn = attn + table.index_select(0, index).view({N, N, H}).permute({2, 0, 1}).unsqueeze(0);
    if (shift > 0) attn = (attn.view({bw / nW, nW, H, N, N}) + mask.unsqueeze(1).unsqueeze(0)).view({-1, H, N, N});
    attn = torch::softmax(attn, -1);
    auto out = proj->forward(torch::matmul(attn, p[2]).transpose(1, 2).reshape({bw, N, C}));
    out = out.view({B, S / w, S / w, w, w, C}).permute({0, 1, 3, 2, 4, 5}).reshape({B, S, S, C});
    return shift > 0 ? torch::roll(out, {shift, shift}, {1, 2}) : out;
  }
};

void BM_torch_swin_window(benchmark::State& state) {
  set_threads(static_cast<int>(state.range(1)));
  c10::InferenceMode guard;
  SwinWindowProblem p(state.range(0) != 0);
  for (auto _ : state) {
    auto y = p.forward();
    benchmark::DoNotOptimize(y.data_ptr());
  }
  const double tokens = double(SwinWindowProblem::B * SwinWindowProblem::S * SwinWindowProblem::S);
  const double c = double(SwinWindowProblem::C), n = double(SwinWindowProblem::N);
  state.counters["GFLOPS"] = benchmark::Counter((4.0 * 2.0 * tokens * c * c + 2.0 * 2.0 * tokens * n * c) * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_torch_swin_window)
    ->ArgNames({"shifted", "threads"})
    ->Args({0, 1})
    ->Args({1, 1})
    ->Args({0, 2})
    ->Args({1, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

/// The global attention blocks of bench_global_blocks.cpp, computed the way their reference code does
/// with libtorch operators (B = 8, fp32): the projections as matmuls on [B·N, C], head split by
/// view/permute, q·kᵀ (matmul), the block's position term, softmax, ·v, head merge, the output matmul.
struct GlobalBlockProblem {
  static constexpr std::int64_t B = attn_bench::kGlobalBatch;
  attn_bench::GlobalBlock which;
  torch::Tensor x, wqkv, bqkv, wout, bout, temp, rh, rw, table, index, wq, wkv, bn_scale_q, bn_shift_q, bn_scale_kv,
      bn_shift_kv, bn_scale_o, bn_shift_o;
  torch::Tensor sr_kernel, ln_gamma, ln_beta;  // CMT's key/value reduction: depthwise 4x4 stride 4, LayerNorm
  std::int64_t H = 0, W = 0, C = 0, h = 0, d = 0;

  static torch::Tensor small(std::vector<std::int64_t> shape) { return (torch::rand(shape) * 2 - 1) * 0.05; }
  /// The reference's rel_to_abs: [..., n, 2P - 1] -> [..., n, P].
  static torch::Tensor rel_to_abs(const torch::Tensor& t, std::int64_t p) {
    const auto n = t.size(-2);
    auto sizes = t.sizes().vec();
    sizes.pop_back();
    sizes.back() = n * (2 * p - 1);
    auto flat = t.reshape(sizes).narrow(-1, n - 1, n * (2 * p - 1) - n);
    sizes.back() = n;
    sizes.push_back(2 * p - 2);
    return flat.reshape(sizes).narrow(-1, p - n, p);
  }
  explicit GlobalBlockProblem(attn_bench::GlobalBlock w) : which(w) {
    using G = attn_bench::GlobalBlock;
    torch::manual_seed(1);
    switch (which) {
      case G::xca: H = W = 28; C = 160; h = 4; break;
      case G::botnet: H = W = 14; C = 1024; h = 4; break;
      case G::coatnet: H = W = 14; C = 384; h = 12; break;
      case G::levit_subsample: H = W = 14; C = 256; h = 16; break;
      case G::cmt: H = W = 28; C = 128; h = 2; break;
    }
    d = which == G::levit_subsample ? 16 : C / h;
    x = torch::rand({B, H, W, C}) * 2 - 1;
    const auto N = H * W;
    if (which == G::levit_subsample) {
      wq = small({C, h * d});
      wkv = small({C, 5 * h * d});
      wout = small({4 * h * d, 384});
      bn_scale_q = 1 + small({h * d}), bn_shift_q = small({h * d});
      bn_scale_kv = 1 + small({5 * h * d}), bn_shift_kv = small({5 * h * d});
      bn_scale_o = 1 + small({384}), bn_shift_o = small({384});
      table = small({N, h});
      // LeViT's index: query grid 7x7 at stride 2, key grid 14x14
      auto p = torch::arange(49).unsqueeze(1), m = torch::arange(N).unsqueeze(0);
      index = ((m % 14 - 2 * (p % 7)).abs() + 14 * (m.div(14, "floor") - 2 * p.div(7, "floor")).abs()).flatten();
      return;
    }
    if (which == G::cmt) {  // sr_ratio 4: keys and values on 7x7; KCAM's index, its last 49 columns
      wq = small({C, C});
      sr_kernel = small({C, 1, 4, 4});
      ln_gamma = 1 + small({C}), ln_beta = small({C});
      wkv = small({C, 2 * C});
      wout = small({C, C});
      table = small({h, (2 * H - 1) * (2 * W - 1)});
      auto p = torch::arange(N), m = torch::arange(N - 49, N);
      auto a = p % H, b = p.div(H, "floor"), ak = m % H, bk = m.div(H, "floor");
      index = ((a.unsqueeze(1) - ak.unsqueeze(0) + H - 1) + (b.unsqueeze(1) - bk.unsqueeze(0) + W - 1) * (2 * H - 1))
                  .flatten();
      return;
    }
    wqkv = small({C, 3 * C});
    if (which != G::botnet) wout = small({C, C});
    if (which == G::xca) bqkv = small({3 * C}), bout = small({C}), temp = 1 + small({h, 1, 1});
    if (which == G::botnet) rh = small({d, 2 * H - 1}), rw = small({d, 2 * W - 1});
    if (which == G::coatnet) {
      table = small({h, (2 * H - 1) * (2 * W - 1)});
      auto p = torch::arange(N);
      auto a = p % H, b = p.div(H, "floor");
      index = ((a.unsqueeze(1) - a.unsqueeze(0) + H - 1) + (b.unsqueeze(1) - b.unsqueeze(0) + W - 1) * (2 * H - 1))
                  .flatten();
    }
  }
  torch::Tensor forward() {
    using G = attn_bench::GlobalBlock;
    const auto N = H * W;
    const auto tokens = x.view({B * N, C});
    if (which == G::levit_subsample) {
      using torch::indexing::Slice;
      const auto xq = x.index({Slice(), Slice(0, torch::indexing::None, 2), Slice(0, torch::indexing::None, 2)})
                          .reshape({B * 49, C});
      auto q = torch::matmul(xq, wq) * bn_scale_q + bn_shift_q;  // inference BatchNorm folded to scale, shift
      auto kv = torch::matmul(tokens, wkv) * bn_scale_kv + bn_shift_kv;
      q = q.view({B, 49, h, d}).permute({0, 2, 1, 3});
      kv = kv.view({B, N, h, 5 * d}).permute({0, 2, 1, 3});
      auto k = kv.narrow(-1, 0, d), v = kv.narrow(-1, d, 4 * d);
      auto bias = table.index_select(0, index).view({49, N, h}).permute({2, 0, 1});
      auto attn = torch::softmax(torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(d))) + bias, -1);
      auto y = torch::hardswish(torch::matmul(attn, v).permute({0, 2, 1, 3}).reshape({B * 49, 4 * h * d}));
      return torch::matmul(y, wout) * bn_scale_o + bn_shift_o;
    }
    if (which == G::cmt) {
      auto q = torch::matmul(tokens, wq).view({B, N, h, d}).permute({0, 2, 1, 3});
      auto red = torch::conv2d(x.permute({0, 3, 1, 2}), sr_kernel, torch::Tensor(), torch::IntArrayRef{4, 4},
                               torch::IntArrayRef{0, 0}, torch::IntArrayRef{1, 1}, C)
                     .permute({0, 2, 3, 1});
      red = torch::layer_norm(red, {C}, ln_gamma, ln_beta, 1e-5).reshape({B * 49, C});
      auto kv = torch::matmul(red, wkv).view({B, 49, 2, h, d});
      auto k = kv.select(2, 0).permute({0, 2, 1, 3});
      auto v = kv.select(2, 1).permute({0, 2, 1, 3});
      auto scores = torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(d))) +
                    table.index_select(1, index).view({h, N, 49});
      auto y = torch::matmul(torch::softmax(scores, -1), v).permute({0, 2, 1, 3}).reshape({B * N, C});
      return torch::matmul(y, wout);
    }
    auto t = which == G::xca ? torch::addmm(bqkv, tokens, wqkv) : torch::matmul(tokens, wqkv);
    t = t.view({B, N, 3, h, d});
    if (which == G::xca) {
      auto q = t.select(2, 0).permute({0, 2, 3, 1}), k = t.select(2, 1).permute({0, 2, 1, 3});
      auto v = t.select(2, 2).permute({0, 2, 3, 1});
      q = q / torch::sqrt(torch::clamp_min(q.pow(2).sum(-1, true), 1e-6));
      k = k / torch::sqrt(torch::clamp_min(k.pow(2).sum(-2, true), 1e-6));
      auto attn = torch::softmax(torch::matmul(q, k) * temp, -1);
      auto y = torch::matmul(attn, v).permute({0, 3, 1, 2}).reshape({B * N, C});
      return torch::addmm(bout, y, wout);
    }
    auto q = t.select(2, 0).permute({0, 2, 1, 3}), k = t.select(2, 1).permute({0, 2, 1, 3});
    auto v = t.select(2, 2).permute({0, 2, 1, 3});
    auto scores = torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(d)));
    if (which == G::botnet) {
      auto q5 = q.reshape({B, h, H, W, d});
      auto lw = rel_to_abs(torch::matmul(q5, rw), W);                                     // [B, h, H, W, W]
      auto lh = rel_to_abs(torch::matmul(q5.transpose(2, 3), rh), H).transpose(2, 3);  // [B, h, H, W, H]
      scores = scores + (lh.unsqueeze(-1) + lw.unsqueeze(-2)).reshape({B, h, N, N});
    } else {
      scores = scores + table.index_select(1, index).view({h, N, N});
    }
    auto y = torch::matmul(torch::softmax(scores, -1), v).permute({0, 2, 1, 3}).reshape({B * N, C});
    return which == G::botnet ? y : torch::matmul(y, wout);
  }
};

void BM_torch_global(benchmark::State& state, attn_bench::GlobalBlock which) {
  set_threads(static_cast<int>(state.range(0)));
  c10::InferenceMode guard;
  GlobalBlockProblem p(which);
  for (auto _ : state) {
    auto y = p.forward();
    benchmark::DoNotOptimize(y.data_ptr());
  }
  attn_bench::report(state, attn_bench::global_block_flops(which));
}

void global_threads(benchmark::internal::Benchmark* b) {
  b->ArgNames({"threads"})->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK_CAPTURE(BM_torch_global, xca, attn_bench::GlobalBlock::xca)->Apply(global_threads);
BENCHMARK_CAPTURE(BM_torch_global, botnet, attn_bench::GlobalBlock::botnet)->Apply(global_threads);
BENCHMARK_CAPTURE(BM_torch_global, coatnet, attn_bench::GlobalBlock::coatnet)->Apply(global_threads);
BENCHMARK_CAPTURE(BM_torch_global, levit_subsample, attn_bench::GlobalBlock::levit_subsample)->Apply(global_threads);
BENCHMARK_CAPTURE(BM_torch_global, cmt, attn_bench::GlobalBlock::cmt)->Apply(global_threads);

/// attention_block's computation at the shape of bench_vision_layers.cpp (B = 8, a 14x14 map of 384
/// channels, 6 heads, MLP 4 x 384 with exact GELU): nn::TransformerEncoderLayer (post-norm, the only form
/// of libtorch 1.13's C++ module; dropout 0, eval) on the 196 tokens (sequence-first layout), then the
/// per-channel layer scale.
struct EncoderBlockProblem {
  static constexpr std::int64_t B = 8, S = 14, C = 384, H = 6;
  torch::nn::TransformerEncoderLayer layer{
      torch::nn::TransformerEncoderLayerOptions(C, H).dim_feedforward(4 * C).dropout(0.0).activation(torch::kGELU)};
  torch::Tensor x, gamma;

  EncoderBlockProblem() {
    torch::manual_seed(1);
    layer->eval();
    x = torch::rand({S * S, B, C}) * 2 - 1;
    gamma = torch::full({C}, 1e-4);
  }
  torch::Tensor forward() { return layer->forward(x) * gamma; }
};

void BM_torch_attention_block(benchmark::State& state) {
  set_threads(static_cast<int>(state.range(0)));
  c10::InferenceMode guard;
  EncoderBlockProblem p;
  for (auto _ : state) {
    auto y = p.forward();
    benchmark::DoNotOptimize(y.data_ptr());
  }
  const double n = double(EncoderBlockProblem::S * EncoderBlockProblem::S), tokens = double(EncoderBlockProblem::B) * n;
  const double d = double(EncoderBlockProblem::C), f = 4.0 * d;
  state.counters["GFLOPS"] = benchmark::Counter(
      (2.0 * tokens * (4.0 * d * d + 2.0 * d * f) + 4.0 * double(EncoderBlockProblem::B) * n * n * d) * 1e-9,
      benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_torch_attention_block)->ArgNames({"threads"})->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

/// One decode step (B = 1, one new token, E = 512, 8 heads) with `len` keys, the libtorch ways
/// (bench_decode.cpp is attn's side):
///   kind 0: nn::MultiheadAttention on the concatenated inputs (what users write: query = the new
///           token, key = value = every token so far; the module projects K and V of the whole prefix
///           again at every step);
///   kind 1: a preallocated cache [1, 8, len, 64] of projected K and V: project the new token (one
///           fused Linear), write its K and V into the cache (narrow + copy_), at::_scaled_dot_product_
///           attention (libtorch 1.13's fused entry point) over the cache, output Linear;
///   kind 2: as 1 with grouped-query attention (2 kv heads): libtorch 1.13 has no GQA, so K and V are
///           repeated to 8 heads (repeat_interleave) at every step, as its users do. No RoPE (attn's
///           group_query applies it; a small cost next to the attention).
struct TorchDecodeProblem {
  static constexpr std::int64_t E = kEmbed, H = kHeads, d = kEmbed / kHeads;
  std::int64_t len, kv_heads;
  int kind;
  torch::nn::MultiheadAttention mha{torch::nn::MultiheadAttentionOptions(E, H).bias(false)};
  torch::nn::Linear qkv{nullptr}, out{torch::nn::LinearOptions(E, E).bias(false)};
  torch::Tensor x, all, kc, vc;

  TorchDecodeProblem(std::int64_t length, int k) : len(length), kv_heads(k == 2 ? 2 : H), kind(k) {
    torch::manual_seed(1);
    mha->eval();
    qkv = torch::nn::Linear(torch::nn::LinearOptions(E, E + 2 * kv_heads * d).bias(false));
    x = torch::rand({1, 1, E}) * 2 - 1;
    if (kind == 0) {
      all = torch::rand({len, 1, E}) * 2 - 1;  // (L, B, E): the module's layout; the last row is x
      all.narrow(0, len - 1, 1).copy_(x);
    } else {
      kc = torch::rand({1, kv_heads, len, d}) * 2 - 1;
      vc = torch::rand({1, kv_heads, len, d}) * 2 - 1;
    }
  }
  torch::Tensor step() {
    if (kind == 0) return std::get<0>(mha->forward(x, all, all, {}, /*need_weights=*/false));
    const auto p = qkv->forward(x);  // [1, 1, E + 2·kv·d]
    const auto q = p.narrow(2, 0, E).view({1, 1, H, d}).transpose(1, 2);
    const auto k = p.narrow(2, E, kv_heads * d).view({1, 1, kv_heads, d}).transpose(1, 2);
    const auto v = p.narrow(2, E + kv_heads * d, kv_heads * d).view({1, 1, kv_heads, d}).transpose(1, 2);
    kc.narrow(2, len - 1, 1).copy_(k);
    vc.narrow(2, len - 1, 1).copy_(v);
    torch::Tensor keys = kc, values = vc;
    if (kind == 2) {
      keys = kc.repeat_interleave(H / kv_heads, 1);
      values = vc.repeat_interleave(H / kv_heads, 1);
    }
    const auto ctx = std::get<0>(at::_scaled_dot_product_attention(q, keys, values));
    return out->forward(ctx.transpose(1, 2).reshape({1, 1, E}));
  }
};

void BM_torch_decode(benchmark::State& state) {
  const std::int64_t len = state.range(0);
  set_threads(static_cast<int>(state.range(1)));
  c10::InferenceMode guard;
  TorchDecodeProblem p(len, static_cast<int>(state.range(2)));
  for (auto _ : state) {
    auto y = p.step();
    benchmark::DoNotOptimize(y.data_ptr());
  }
}

BENCHMARK(BM_torch_decode)
    ->ArgNames({"len", "threads", "kind"})
    ->ArgsProduct({{1024, 8192, 32768}, {1, 2}, {0, 1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

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
