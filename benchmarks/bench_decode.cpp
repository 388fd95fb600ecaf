// Incremental decoding with a KV cache (attn/kv_cache.hpp), measured against the machine's memory
// bandwidth in the same run:
//   - a STREAM-like triad a = b + s·c over 3 arrays of 64 MiB each (24 bytes per element, STREAM's
//     count), 1 and 2 threads: the bandwidth ceiling;
//   - one decode step (B = 1, one new token: projections, cache append, attention over every cached
//     key, output projection) of multi_head (E = 512, 8 heads) and group_query (E = 512, 8 query heads,
//     2 kv heads, RoPE) with 1k, 8k and 32k cached tokens, 1 and 2 threads, float storage and bfloat16
//     storage: time per step and GB/s of K/V bytes read per step (the cache length times
//     bytes_per_token()), and that rate as a share of the triad on the same threads timed in the same
//     rounds (a triad pass before every three steps, both the fastest of their rounds: other
//     processes on the machine then weigh on the ceiling and the step alike; the header's triad is
//     measured once at the start);
//   - prefill of 2048 tokens then 256 decode steps end to end, against recomputing the full causal
//     forward over the whole sequence at each step (the latter timed on SAMPLES steps spread over the
//     256 and summed by the trapezoid rule: the full 256 take minutes).
//
//   attn_bench_decode [--quick] [--len=N,...] [--threads=N,...] [--storage=float|bfloat16]
//                     [--layer=multi_head|group_query] [--reps=N] [--no-e2e]
//   (--quick: 1k and 8k only, fewer repetitions; the others filter the decode table, --no-e2e skips
//   the end-to-end table; without options every row is measured)
// The libtorch side is attn_bench_torch --benchmark_filter=decode (bench_torch.cpp).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
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

/// STREAM triad a = b + 3·c over `threads` shares (attn's pool): 24 bytes per element (STREAM's
/// count); the arrays are allocated and first touched once.
class Triad {
public:
  Triad() : a_(n_, 0.0), b_(n_, 1.0), c_(n_, 2.0) { (void)seconds(1); }
  /// One pass, in seconds.
  double seconds(int threads) {
    attn::set_num_threads(threads);
    const auto t0 = Clock::now();
    attn::parallel_shares(attn::shares_for(threads), [&](int s, int p) {
      const std::size_t i0 = n_ * static_cast<std::size_t>(s) / static_cast<std::size_t>(p);
      const std::size_t i1 = n_ * static_cast<std::size_t>(s + 1) / static_cast<std::size_t>(p);
      for (std::size_t i = i0; i < i1; ++i) a_[i] = b_[i] + 3.0 * c_[i];
    });
    benchmark::DoNotOptimize(a_.data());
    return seconds_since(t0);
  }
  /// GB/s of a pass that took t seconds.
  [[nodiscard]] double gbs(double t) const { return 24.0 * static_cast<double>(n_) / t * 1e-9; }
  /// GB/s of the fastest of 10 passes.
  double best(int threads) {
    double t = 1e300;
    for (int r = 0; r < 10; ++r) t = std::min(t, seconds(threads));
    return gbs(t);
  }

private:
  std::size_t n_ = std::size_t(8) << 20;  // 8 Mi doubles = 64 MiB per array, 192 MiB in all
  std::vector<double> a_, b_, c_;
};

attn::Tensor<float, 3> random_input(Index b, Index l, Index e, unsigned seed) {
  attn::Tensor<float, 3> x(b, l, e);
  attn::Rng rng(seed);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  return x;
}

/// Times of one decode step and of one triad pass, each the fastest of `reps` rounds.
struct StepTimes {
  double step = 1e300;
  double triad = 1e300;
};

/// One decode step at a fixed cache length `len`: fill to len − 1 once, then `reps` rounds of (a triad
/// pass, three steps), each step appending one token, attending over len keys and truncating back to
/// len − 1; the first step of a round is not counted (it refills the caches the triad emptied: the
/// steps are timed back to back, as a decoder running one layer would). Interleaving puts the ceiling
/// and the step under the same load of the machine (other processes share its cores and memory bus).
template <class Layer>
StepTimes decode_step(const Layer& layer, Triad& triad, Index len, attn::KVStorage storage, int threads, int reps,
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
    attn::set_num_threads(threads);
    const auto t0 = Clock::now();
    auto y = layer.forward(x, cache);
    benchmark::DoNotOptimize(y.data());
    cache.truncate(0, len - 1);
    return seconds_since(t0);
  };
  (void)step();
  StepTimes best;
  for (int r = 0; r < reps; ++r) {
    best.triad = std::min(best.triad, triad.seconds(threads));
    (void)step();
    best.step = std::min(best.step, step());
    best.step = std::min(best.step, step());
  }
  return best;
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

/// "a,b,c" -> {a, b, c}
std::vector<long long> parse_list(const std::string& s) {
  std::vector<long long> out;
  std::size_t at = 0;
  while (at <= s.size()) {
    const std::size_t comma = std::min(s.find(',', at), s.size());
    out.push_back(std::stoll(s.substr(at, comma - at)));
    at = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, e2e = true;
  int reps_given = 0;
  std::vector<long long> lengths{1024, 8192, 32768}, thread_counts{1, 2};
  std::vector<attn::KVStorage> storages{attn::KVStorage::same, attn::KVStorage::bfloat16};
  std::vector<int> layers{0, 1};
  for (int a = 1; a < argc; ++a) {
    const std::string arg = argv[a];
    const auto value = [&](const char* key) {
      const std::string k = std::string(key) + "=";
      return arg.rfind(k, 0) == 0 ? std::optional<std::string>(arg.substr(k.size())) : std::nullopt;
    };
    if (arg == "--quick") {
      quick = true;
      lengths = {1024, 8192};
    } else if (arg == "--no-e2e") {
      e2e = false;
    } else if (const auto v = value("--len")) {
      lengths = parse_list(*v);
    } else if (const auto v = value("--threads")) {
      thread_counts = parse_list(*v);
    } else if (const auto v = value("--reps")) {
      reps_given = std::stoi(*v);
    } else if (const auto v = value("--storage")) {
      storages = {*v == "bfloat16" ? attn::KVStorage::bfloat16 : attn::KVStorage::same};
    } else if (const auto v = value("--layer")) {
      layers = {*v == "group_query" ? 1 : 0};
    } else {
      std::fprintf(stderr, "attn_bench_decode: unknown option %s\n", arg.c_str());
      return 2;
    }
  }
  std::printf("attn decode benchmark: SIMD level %s, hardware threads %u\n\n",
              std::string(attn::simd_name(attn::simd())).c_str(), std::thread::hardware_concurrency());
  Triad triad;
  const double triad1 = triad.best(1), triad2 = triad.best(2);
  std::printf("STREAM-like triad: %.2f GB/s (1 thread), %.2f GB/s (2 threads)\n\n", triad1, triad2);

  const auto mha = make_mha();
  const auto gqa = make_gqa();
  std::printf("| layer | storage | cache | threads | step (ms) | K/V GB/s | of triad | triad GB/s |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (const long long len : lengths)
    for (const auto storage : storages)
      for (const long long threads : thread_counts)
        for (const int which : layers) {
          std::size_t bpt = 0;
          const int reps = reps_given > 0 ? reps_given : quick ? 5 : len >= 32768 ? 10 : 20;
          const int nt = static_cast<int>(threads);
          const StepTimes t = which == 0 ? decode_step(mha, triad, len, storage, nt, reps, &bpt)
                                         : decode_step(gqa, triad, len, storage, nt, reps, &bpt);
          const double gbs = static_cast<double>(len) * static_cast<double>(bpt) / t.step * 1e-9;
          const double ceiling = triad.gbs(t.triad);
          std::printf("| %s | %s | %lld | %d | %.3f | %.2f | %.0f%% | %.2f |\n", which == 0 ? "multi_head" : "group_query",
                      storage == attn::KVStorage::same ? "float" : "bfloat16", len, nt, t.step * 1e3, gbs,
                      100.0 * gbs / ceiling, ceiling);
          std::fflush(stdout);
        }

  if (!e2e) return 0;
  std::printf("\nPrefill 2048 + 256 decode steps (multi_head, float storage) against a full causal forward per "
              "step (recompute time: %d sampled steps, trapezoid sum):\n\n",
              quick ? 2 : 5);
  std::printf("| layer | threads | prefill (s) | 256 steps (s) | per step (ms) | recompute 256 (s) | speed-up |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const int threads : {1, 2}) end_to_end("multi_head", mha, 2048, 256, quick ? 2 : 5, threads);
  return 0;
}
