// Seeded test inputs (uniform in [-1, 1), drawn in double so float and double inputs agree) and
// the example parameters of a config type.
#pragma once

#include <attn/core/init.hpp>
#include <attn/core/param.hpp>
#include <attn/core/tensor.hpp>

#include <cstdint>
#include <string>
#include <type_traits>

namespace attn_test {

using attn::Index;
using attn::Json;
using attn::Shape;

/// Uniform values in [-1, 1) from a seed (drawn in double, so float and double inputs agree).
template <class T>
attn::AnyTensor<T> random_any(const Shape& shape, std::uint64_t seed, double scale = 1.0) {
  attn::AnyTensor<T> t(shape);
  attn::Rng rng(seed);
  for (Index i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(scale * rng.uniform(-1.0, 1.0));
  return t;
}
template <class T, int R>
attn::Tensor<T, R> random_tensor(const Shape& shape, std::uint64_t seed, double scale = 1.0) {
  return random_any<T>(shape, seed, scale).template to_tensor<R>();
}

/// Every weight of `layer`, in parameters() order, set to scale·U[-1, 1) drawn from seed, seed + 1, ...
/// (one seed per weight; the values random_tensor gives for the same seeds, times scale).
template <class L>
void randomize_weights(L& layer, std::uint64_t seed, double scale = 0.5) {
  for (auto& w : layer.parameters()) {
    attn::Rng rng(seed++);
    for (auto& v : w.data) v = static_cast<std::decay_t<decltype(v)>>(scale * rng.uniform(-1.0, 1.0));
  }
}

/// Required parameters of config C set to their documented example values.
template <class C>
Json example_params() {
  return attn::required_examples<C>();
}

}  // namespace attn_test
