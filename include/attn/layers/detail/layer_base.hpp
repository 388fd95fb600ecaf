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
#include <string>
#include <utility>

#include <fmt/format.h>

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
  /// the current weights stay in place if that throws. Weights (and tables) beyond
  /// attn::allocation_limit() throw ConfigError naming the layer, the parameter that sets the size, the
  /// weight and the bytes, before anything is allocated (core/limits.hpp).
  void reset_parameters(std::uint64_t seed) {
    WeightSet<T> w;
    try {
      static_cast<Derived&>(*this).add_weights(w, seed);
    } catch (const detail::AllocationRefused& e) {
      const auto [param, value] = size_parameter(e.shape);
      throw ConfigError(param.empty() ? fmt::format("{}: {}", Config::type_name, e.what())
                                      : fmt::format("{}: parameter '{}' ({}) is too large: {}", Config::type_name,
                                                    param, value, e.what()),
                        std::string(Config::type_name), param);
    }
    weights_ = std::move(w);
  }

private:
  /// The integer parameter of the config (or an element of a size-like pair) that gives the largest
  /// extent of `shape`, with its JSON value: the one to name when the weight is too big.
  std::pair<std::string, std::string> size_parameter(const Shape& shape) const {
    std::string best, value;
    Index best_extent = 1;
    const Json j = config_to_json(config_);
    const auto consider = [&](const std::string& key, const Json& v, const Json& shown) {
      if (!v.is_number_integer()) return;
      const auto x = v.get<std::int64_t>();
      for (Index e : shape)
        if (e == x && e > best_extent) {
          best_extent = e;
          best = key;
          value = shown.dump();
        }
    };
    for (const auto& [key, v] : j.items()) {
      consider(key, v, v);
      if (v.is_array())
        for (const auto& x : v) consider(key, x, v);
    }
    return {best, value};
  }

protected:
  /// Stores the config and throws ConfigError with its first problem; the weights stay empty until
  /// the layer's constructor calls `reset_parameters`.
  explicit LayerBase(const Config& config) : config_(config) { validate(config_); }

  Config config_;
  WeightSet<T> weights_;
};

}  // namespace attn
