// Threads from the user's side: one const layer shared by two threads that run forwards at the same
// time (the pool is taken by one of them, the other runs its shares itself; per-thread scratch memory)
// gives each thread exactly the result a lone call gives. Run under ThreadSanitizer by scripts/tsan.sh.
#include "support.hpp"

#include <thread>

using namespace attn_test;

namespace {

struct ThreadsGuard {
  int saved = attn::num_threads();
  ThreadsGuard() = default;
  ThreadsGuard(const ThreadsGuard&) = delete;
  ThreadsGuard& operator=(const ThreadsGuard&) = delete;
  ~ThreadsGuard() { attn::set_num_threads(saved); }
};

/// Runs `f(i)` for i = 0, 1 on two threads at once, `rounds` times each; returns each thread's last result.
template <class F>
auto on_two_threads(F f, int rounds) {
  using R = decltype(f(0));
  std::array<R, 2> out;
  std::array<std::thread, 2> threads;
  for (int i = 0; i < 2; ++i)
    threads[static_cast<std::size_t>(i)] = std::thread([&, i] {
      for (int r = 0; r < rounds; ++r) out[static_cast<std::size_t>(i)] = f(i);
    });
  for (auto& t : threads) t.join();
  return out;
}

template <class T>
bool same_bits(const T& a, const T& b) {
  return a.size() == b.size() && std::equal(a.data(), a.data() + a.size(), b.data());
}

}  // namespace

TEST_CASE("threads: two threads share one const layer", "[threads]") {
  const ThreadsGuard guard;
  attn::set_num_threads(2);  // both callers want the pool
  const attn::MultiHeadAttention<float> mha({.embed_dim = 16, .num_heads = 4, .causal = true}, 3);
  const attn::GroupedQueryAttention<double> gqa({.d_model = 16, .n_head = 4, .n_kv_head = 2}, 4);
  const std::array<attn::Tensor<float, 3>, 2> xf{random_tensor<float, 3>({2, 300, 16}, 1),
                                                 random_tensor<float, 3>({3, 200, 16}, 2)};
  const std::array<attn::Tensor<double, 3>, 2> xd{random_tensor<double, 3>({2, 150, 16}, 3),
                                                  random_tensor<double, 3>({1, 260, 16}, 4)};
  // lone calls first: the oracle (results do not depend on the thread count or on which thread runs)
  const std::array<attn::Tensor<float, 3>, 2> ef{mha.forward(xf[0]), mha.forward(xf[1])};
  const std::array<attn::Tensor<double, 3>, 2> ed{gqa.forward(xd[0]), gqa.forward(xd[1])};
  const auto yf = on_two_threads([&](int i) { return mha.forward(xf[static_cast<std::size_t>(i)]); }, 3);
  const auto yd = on_two_threads([&](int i) { return gqa.forward(xd[static_cast<std::size_t>(i)]); }, 3);
  for (std::size_t i = 0; i < 2; ++i) {
    REQUIRE(same_bits(yf[i], ef[i]));
    REQUIRE(same_bits(yd[i], ed[i]));
  }
  // the same through the factory's AnyLayer, with the attention weights asked for on one thread
  const auto any = attn::create_attention_layer<float>("self_attention", {{"embed_dim", 16}, {"num_heads", 2}}, "", 5);
  const attn::AnyTensor<float> xa = random_any<float>({2, 130, 16}, 6);
  const auto ea = any.forward(xa);
  const auto* typed = any.target<attn::SelfAttention<float>>();
  REQUIRE(typed != nullptr);
  const auto ew = typed->forward_with_weights(xa.to_tensor<3>()).weights;
  const auto ya = on_two_threads(
      [&](int i) {
        if (i == 0) return any.forward(xa);
        return attn::AnyTensor<float>(typed->forward_with_weights(xa.to_tensor<3>()).weights);
      },
      2);
  REQUIRE(ya[0].shape() == ea.shape());
  REQUIRE(std::equal(ya[0].data(), ya[0].data() + ya[0].size(), ea.data()));
  REQUIRE(std::equal(ya[1].data(), ya[1].data() + ya[1].size(), ew.data()));
}
