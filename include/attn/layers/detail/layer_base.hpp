/// \file
/// `LayerBase` — what every typed layer has in common: it owns the validated config and the weights,
/// and provides `config()`, both `parameters()` overloads, `reset_parameters(seed)` and the weight
/// slots through which `forward` reads its weights. Also `AttentionResult<T>`, the result of every
/// layer's `forward_with_weights`.
///
/// A layer derives from it through CRTP and supplies only what differs: its `using Config` and
/// `using Scalar`, `input_ranks`, `example_input_shapes`, `output_shape`, `forward` and the hook
///   void add_weights(WeightSet<T>& w, std::uint64_t seed);
/// that declares the layer's weights in their documented order into the empty set `w`, each once with
/// its name and shape, and records the returned slots in a member of the layer
/// (`slots_.qkv_kernel = w.add("qkv/kernel", {D, 3E}, init, seed)`). The hook may be private (the layer
/// then befriends its base). It must change the layer's state only once nothing can throw any more, as
/// the new weights replace the old ones only after the hook has returned.
///
/// Weight slots. The base records the name and shape of every weight that `add_weights` declared.
/// `forward` calls `check_weights()` before any kernel runs: a weight whose name, shape or number of
/// values no longer matches its declaration (`parameters()` hands out mutable references, e.g. for
/// loading) is a WeightsError naming the layer, the weight, the expected and the found shape — never
/// an out-of-bounds read. It then reads weights through their slots (`weight(slots_.qkv_kernel)`,
/// `optional_weight(slots_.qkv_bias)` for a weight that a config may leave out): no positional index
/// and no name lookup per call.
///
/// Construction is in two steps because the base is built before the layer's own members: the base's
/// constructor stores and validates the config (so a layer object that exists is valid), then the
/// layer's constructor calls `reset_parameters(seed)`. Inside the layer's class template the base is a
/// dependent base: the layer brings `config_` and `weights_` into scope with using-declarations.
/// Copyable and movable like its members.
///
/// It lives in `layers/detail/` because every header directly in `layers/` is one registered layer
/// type (tests/check_layers.cmake checks that).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"

namespace attn {

/// Output of the `forward_with_weights` forms of the attention layers: the layer output and the
/// attention probabilities.
template <class T>
struct AttentionResult {
  Tensor<T, 3> output;
  Tensor<T, 4> weights;  ///< [B, heads, T, S]
};

/// The position of one declared weight in its layer's WeightSet; default: not declared (a weight the
/// config leaves out, e.g. a bias with use_bias = false). Converts from the slot `WeightSet::add`
/// returns.
struct WeightSlot {
  static constexpr std::size_t none = static_cast<std::size_t>(-1);
  std::size_t index = none;

  constexpr WeightSlot() = default;
  constexpr WeightSlot(std::size_t i) noexcept : index(i) {}  // NOLINT(google-explicit-constructor)
  [[nodiscard]] constexpr bool declared() const noexcept { return index != none; }
};

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
    std::vector<Declared> declared;
    declared.reserve(w.size());
    for (const auto& x : w) declared.push_back({x.name, x.shape});
    weights_ = std::move(w);
    declared_ = std::move(declared);
  }

  /// Throws WeightsError unless every weight still has the name and shape (and as many values) that
  /// `add_weights` declared, and no weight was added or removed. Every forward calls it first.
  void check_weights() const {
    const std::string_view type = Config::type_name;
    if (weights_.size() != declared_.size())
      throw WeightsError(fmt::format("{}: the layer has {} weights, {} were declared (parameters() must "
                                     "keep its weights, in their order)",
                                     type, weights_.size(), declared_.size()));
    for (std::size_t i = 0; i < declared_.size(); ++i) {
      const Weight<T>& w = weights_[i];
      const Declared& d = declared_[i];
      if (w.name != d.name)
        throw WeightsError(fmt::format("{}: weight '{}' is missing (weight {} is named '{}')", type, d.name, i,
                                       w.name));
      if (w.shape != d.shape || w.size() != shape_size(d.shape))
        throw WeightsError(fmt::format("{}: weight '{}' must have shape {} ({} values), got shape {} with {} "
                                       "values",
                                       type, d.name, shape_str(d.shape), shape_size(d.shape),
                                       shape_str(w.shape), w.size()));
    }
  }

private:
  /// The integer parameter of the config (or an element of a size-like pair or a list) to name when a
  /// weight of `shape` is too big, with its value as JSON text: the one whose value is the largest extent
  /// of `shape`; when no parameter is (the extent is a product, e.g. attn_ratio·num_heads·key_dim), the
  /// parameter with the largest value. None when every integer is 1 or less.
  std::pair<std::string, std::string> size_parameter(const Shape& shape) const {
    const Index largest = shape.empty() ? 0 : *std::max_element(shape.begin(), shape.end());
    std::string equal, equal_value, biggest, biggest_value;
    std::int64_t biggest_x = 1;
    detail::for_each_row<Config>([&](auto row) {
      constexpr Field<Config> field = Config::fields()[decltype(row)::value];
      constexpr auto int_values = field.member->int_values;
      std::vector<std::int64_t> xs;
      const std::string shown = int_values(config_, xs);
      for (const std::int64_t x : xs) {
        if (x == largest && x > 1 && equal.empty()) {
          equal = std::string(field.name);
          equal_value = shown;
        }
        if (x > biggest_x) {
          biggest_x = x;
          biggest = std::string(field.name);
          biggest_value = shown;
        }
      }
    });
    return equal.empty() ? std::pair{biggest, biggest_value} : std::pair{equal, equal_value};
  }

protected:
  /// Stores the config and throws ConfigError with its first problem; the weights stay empty until
  /// the layer's constructor calls `reset_parameters`.
  explicit LayerBase(const Config& config) : config_(config) { validate(config_); }

  /// The weight in `slot`, which the config declares (check_weights() first).
  [[nodiscard]] const Weight<T>& weight(WeightSlot slot) const noexcept { return weights_[slot.index]; }
  /// The weight in `slot`, or nullptr when the config leaves it out.
  [[nodiscard]] const Weight<T>* optional_weight(WeightSlot slot) const noexcept {
    return slot.declared() ? &weights_[slot.index] : nullptr;
  }

  Config config_;
  WeightSet<T> weights_;

private:
  struct Declared {
    std::string name;
    Shape shape;
  };
  std::vector<Declared> declared_;
};

}  // namespace attn
