/// \file
/// `LayerBase` — what every typed layer has in common: it owns the validated config and the weights,
/// and provides `config()`, both `parameters()` overloads and `reset_parameters(seed)` once.
///
/// A layer derives from it through CRTP and supplies only what differs: its `using Config` and
/// `using Scalar`, `input_ranks`, `example_input_shapes`, `output_shape`, `forward` and the hook
///   void add_weights(WeightSet<T>& w, std::uint64_t seed) const;
/// that declares the layer's weights in their documented order into the empty set `w`. The hook may be
/// private (the layer then befriends its base). It may be non-const when the layer keeps state that
/// follows its weights (group_query's weight slots); it must then change that state only once nothing
/// can throw any more, as the new weights replace the old ones only after the hook has returned.
///
/// Construction is in two steps because the base is built before the layer's own members (the gates
/// of `channel`, `spatial` and `cbam`): the base's constructor stores and validates the config (so a
/// layer object that exists is valid), then the layer's constructor calls `reset_parameters(seed)`.
/// Inside the layer's class template the base is a dependent base: the layer brings `config_` and
/// `weights_` into scope with using-declarations. Copyable and movable like its members.
///
/// It lives in `layers/detail/` because every header directly in `layers/` is one registered layer
/// type (tests/check_layers.cmake checks that).
#pragma once

#include <cstdint>
#include <utility>

#include "attn/core/param.hpp"
#include "attn/core/weights.hpp"

namespace attn {

template <class Derived, LayerConfig Config, class T>
class LayerBase {
public:
  [[nodiscard]] const Config& config() const noexcept { return config_; }
  [[nodiscard]] const WeightSet<T>& parameters() const noexcept { return weights_; }
  [[nodiscard]] WeightSet<T>& parameters() noexcept { return weights_; }

  /// Re-draws every weight from `seed` with the configured initializers (the layer's `add_weights`);
  /// the current weights stay in place if that throws.
  void reset_parameters(std::uint64_t seed) {
    WeightSet<T> w;
    static_cast<Derived&>(*this).add_weights(w, seed);
    weights_ = std::move(w);
  }

protected:
  /// Stores the config and throws ConfigError with its first problem; the weights stay empty until
  /// the layer's constructor calls `reset_parameters`.
  explicit LayerBase(const Config& config) : config_(config) { validate(config_); }

  Config config_;
  WeightSet<T> weights_;
};

}  // namespace attn
