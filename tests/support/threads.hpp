// Running code under a given attn thread count (restored afterwards, also when the code throws), and
// the check every threaded layer has: 1 and 2 threads give bit-identical results.
#pragma once

#include <attn/core/parallel.hpp>

#include <algorithm>

namespace attn_test {

/// `run()` with attn::num_threads() set to n; the previous count is restored on return or throw.
template <class F>
auto with_threads(int n, F&& run) {
  struct Restore {
    int saved;
    ~Restore() { attn::set_num_threads(saved); }
  } restore{attn::num_threads()};
  attn::set_num_threads(n);
  return run();
}

/// Whether `run()` (returning a tensor) gives the same bits with 1 and with 2 threads.
template <class F>
bool same_bits_for_1_and_2_threads(F&& run) {
  const auto a = with_threads(1, run);
  const auto b = with_threads(2, run);
  return a.size() == b.size() && std::equal(a.data(), a.data() + a.size(), b.data());
}

}  // namespace attn_test
