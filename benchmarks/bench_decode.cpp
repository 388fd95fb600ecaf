// Incremental decoding with a KV cache (attn/kv_cache.hpp), measured against the machine's memory
// bandwidth in the same run:
//   - a STREAM-like triad a = b + s·c over 3 arrays of 64 MiB each (24 bytes per element, STREAM's
//     count), 1 and 2 threads: the bandwidth ceiling;
//   - one decode step (B = 1, one new token: projections, cache append, attention over every cached
//     key, output projection) of multi_head (E = 512, 8 heads) and group_query (E = 512, 8 query heads,
//     2 kv heads, RoPE) with 1k, 8k and 32k cached tokens, 1 and 2 threads, float storage and bfloat16
//     storage: time per step and GB/s of K/V bytes read per step (the cache length times
//     bytes_per_token()), and that rate as a share of the triad;
//   - prefill of 2048 tokens then 256 decode steps end to end, against recomputing the full causal
//     forward over the whole sequence at each step (the latter timed on SAMPLES steps spread over the
//     256 and summed by the trapezoid rule: the full 256 take minutes).
//
//   attn_bench_decode [--quick]      (--quick: 1k and 8k only, fewer repetitions)
// The libtorch side is attn_bench_torch --benchmark_filter=decode (bench_torch.cpp).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>

#include <attn/attn.hpp>

namespace {

using attn::Index;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// The fastest of `reps` runs of f, in seconds.
template <class F>
double best_of(int reps, F&& f) {
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

/// STREAM triad over `threads` shares (attn's pool), GB/s with 24 bytes per element.
double triad(int threads) {
  const std::size_t n = std::size_t(8) << 20;  // 8 Mi doubles = 64 MiB per array
  std::vector<double> a(n, 0.0), b(n, 1.0), c(n, 2.0);
  attn::set_num_threads(threads);
  const auto run = [&] {
    attn::parallel_shares(attn::shares_for(threads), [&](int s, int p) {
      const std::size_t i0 = n * static_cast<std::size_t>(s) / static_cast<std::size_t>(p);
      const std::size_t i1 = n * static_cast<std::size_t>(s + 1) / static_cast<std::size_t>(p);
      for (std::size_t i = i0; i < i1; ++i) a[i] = b[i] + 3.0 * c[i];
    });
    benchmark::DoNotOptimize(a.data());
  };
  run();  // first touch of every page
  const double t = best_of(10, run);
  return 24.0 * static_cast<double>(n) / t * 1e-9;
}

attn::Tensor<float, 3> random_input(Index b, Index l, Index e, unsigned seed) {
  attn::Tensor<float, 3> x(b, l, e);
  attn::Rng rng(seed);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  return x;
}

/// One decode step at a fixed cache length `len`: fill to len − 1 once, then time (append one token,
/// attend over len keys, truncate back to len − 1).
template <class Layer>
double decode_step(const Layer& layer, Index len, attn::KVStorage storage, int threads, int reps,
                   std::size_t* bytes_per_token) {
  attn::set_num_threads(threads);
  attn::KVCache<float> cache = layer.make_cache(1, len, storage);
  *bytes_per_token = cache.bytes_per_token();
  const Index chunk = 1024;
  for (Index done = 0; done < len - 1;) {  // prefill in chunks (keeps the prefill's scratch small)
    const Index t = std::min(chunk, len - 1 - done);
    (void)layer.forward(random_input(1, t, 512, 7 + static_cast<unsigned>(done)), cache);
    done += t;
  }
  const auto x = random_input(1, 1, 512, 3);
  const auto step = [&] {
    auto y = layer.forward(x, cache);
    benchmark::DoNotOptimize(y.data());
    cache.truncate(0, len - 1);
  };
  step();
  return best_of(reps, step);
}

attn::MultiHeadAttention<float> make_mha() { return attn::MultiHeadAttention<float>({.embed_dim = 512, .num_heads = 8}, 1); }
attn::GroupedQueryAttention<float> make_gqa() {
  return attn::GroupedQueryAttention<float>({.d_model = 512, .n_head = 8, .n_kv_head = 2, .max_seq_len = 32768}, 1);
}

/// Prefill of `prompt` tokens then `steps` decode steps, with the cache; and the same outputs by a full
/// causal forward over the whole sequence at every step (sampled).
template <class Layer>
void end_to_end(const char* name, const Layer& layer, Index prompt, Index steps, int samples, int threads) {
  attn::set_num_threads(threads);
  const auto seq = random_input(1, prompt + steps, 512, 11);
  const auto slice = [&](Index from, Index n) {
    attn::Tensor<float, 3> x(1, n, 512);
    std::memcpy(x.data(), seq.data() + from * 512, static_cast<std::size_t>(n * 512) * sizeof(float));
    return x;
  };
  const auto t0 = Clock::now();
  attn::KVCache<float> cache = layer.make_cache(1, prompt + steps);
  (void)layer.forward(slice(0, prompt), cache);
  const double t_prefill = seconds_since(t0);
  for (Index s = 0; s < steps; ++s) {
    auto y = layer.forward(slice(prompt + s, 1), cache);
    benchmark::DoNotOptimize(y.data());
  }
  const double t_cached = seconds_since(t0);
  // recompute: a full causal forward over prompt + s + 1 tokens for sampled s, trapezoid sum over 256
  std::vector<Index> at;
  for (int i = 0; i < samples; ++i) at.push_back(steps == 1 ? 0 : (steps - 1) * i / std::max(1, samples - 1));
  std::vector<double> t_at;
  for (const Index s : at) {
    const auto x = slice(0, prompt + s + 1);
    t_at.push_back(best_of(1, [&] {
      auto y = layer.forward(x, {.causal = true});
      benchmark::DoNotOptimize(y.data());
    }));
  }
  double t_recompute = t_at.size() == 1 ? t_at[0] * static_cast<double>(steps) : 0.0;
  for (std::size_t i = 1; i < at.size(); ++i)
    t_recompute += 0.5 * (t_at[i] + t_at[i - 1]) * static_cast<double>(at[i] - at[i - 1]);
  if (at.size() > 1) t_recompute += 0.5 * (t_at.front() + t_at.back());  // the trapezoid's end points
  std::printf("| %s | %d | %.3f | %.3f | %.2f | %.1f | %.0fx |\n", name, threads, t_prefill, t_cached - t_prefill,
              (t_cached - t_prefill) / static_cast<double>(steps) * 1e3, t_recompute,
              t_recompute / (t_cached - t_prefill));
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  std::printf("attn decode benchmark: SIMD level %s, hardware threads %u\n\n",
              std::string(attn::simd_name(attn::simd())).c_str(), std::thread::hardware_concurrency());
  const double triad1 = triad(1), triad2 = triad(2);
  std::printf("STREAM-like triad: %.2f GB/s (1 thread), %.2f GB/s (2 threads)\n\n", triad1, triad2);

  const auto mha = make_mha();
  const auto gqa = make_gqa();
  std::printf("| layer | storage | cache | threads | step (ms) | K/V GB/s | of triad |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  std::vector<Index> lengths{1024, 8192};
  if (!quick) lengths.push_back(32768);
  for (const Index len : lengths)
    for (const auto storage : {attn::KVStorage::same, attn::KVStorage::bfloat16})
      for (const int threads : {1, 2})
        for (const int which : {0, 1}) {
          std::size_t bpt = 0;
          const int reps = len >= 32768 ? 10 : 30;
          const double t = which == 0 ? decode_step(mha, len, storage, threads, quick ? 5 : reps, &bpt)
                                      : decode_step(gqa, len, storage, threads, quick ? 5 : reps, &bpt);
          const double gbs = static_cast<double>(len) * static_cast<double>(bpt) / t * 1e-9;
          const double ceiling = threads == 1 ? triad1 : triad2;
          std::printf("| %s | %s | %lld | %d | %.3f | %.2f | %.0f%% |\n", which == 0 ? "multi_head" : "group_query",
                      storage == attn::KVStorage::same ? "float" : "bfloat16", static_cast<long long>(len), threads,
                      t * 1e3, gbs, 100.0 * gbs / ceiling);
          std::fflush(stdout);
        }

  std::printf("\nPrefill 2048 + 256 decode steps (multi_head, float storage) against a full causal forward per "
              "step (recompute time: %d sampled steps, trapezoid sum):\n\n",
              quick ? 2 : 5);
  std::printf("| layer | threads | prefill (s) | 256 steps (s) | per step (ms) | recompute 256 (s) | speed-up |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const int threads : {1, 2}) end_to_end("multi_head", mha, 2048, 256, quick ? 2 : 5, threads);
  return 0;
}
