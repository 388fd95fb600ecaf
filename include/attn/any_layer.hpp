/// \file
/// AnyLayer<T>: a layer of any type behind one value-semantic, type-erased interface, and its one
/// forward door (ForwardArgs in, ForwardResult out). The factory (factory.hpp) returns it; a layer built
/// in C++ converts to it (`attn::AnyLayer<float> any = attn::MultiHeadAttention<float>(config);`).
///
/// Build time: wrapping a layer type instantiates its whole forward for the scalar. The converting
/// constructor is defined out of line, so an explicit instantiation declaration suppresses that work in
/// a translation unit: `ATTN_LAYER_INSTANCES(extern, Class)` declares both scalars' instances of
/// `Class`, `ATTN_LAYER_INSTANCES(, Class)` defines them (in one translation unit of the program).
/// CMake's `attn::layers` target does this for every registered type (see README, "Build time").
#pragma once

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "attn/core/error.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/ops/masks.hpp"

namespace attn {

/// The arguments of `AnyLayer<T>::forward(const ForwardArgs<T>&)`, the one door to every capability of
/// a layer built from JSON: the inputs in the order of `input_ranks()`, the masks (the fields of
/// `AttentionMasks<T>`, ops/masks.hpp: `key_padding`, `key_lengths`, `attn_mask`, `causal`, `bias`),
/// whether to return the attention weights, and the names of extra outputs wanted. An option the layer
/// does not take is a ConfigError naming the layer type and the option (never silently ignored).
template <class T>
struct ForwardArgs : AttentionMasks<T> {
  std::vector<AnyTensor<T>> inputs;        ///< in the order of input_ranks()
  bool return_weights = false;             ///< fill ForwardResult::weights ([B, heads, T, S])
  std::vector<std::string> extra_outputs;  ///< names of extra outputs (no layer of today has any)
};

/// The result of `AnyLayer<T>::forward(const ForwardArgs<T>&)`.
template <class T>
struct ForwardResult {
  AnyTensor<T> output;
  std::optional<AnyTensor<T>> weights;                          ///< when return_weights
  std::vector<std::pair<std::string, AnyTensor<T>>> extras;  ///< the extra outputs asked for, in order
};

namespace detail {

/// Whether layer L's forward takes AttentionMasks<T> after its inputs, and whether it has
/// forward_with_weights.
template <class L, class T, std::size_t... I>
constexpr bool layer_takes_masks(std::index_sequence<I...>) {
  return requires(const L& l, const AttentionMasks<T>& m) {
    l.forward(std::declval<ConstTensorView<T, L::input_ranks[I]>>()..., m);
  };
}
template <class L, class T, std::size_t... I>
constexpr bool layer_returns_weights(std::index_sequence<I...>) {
  return requires(const L& l, const AttentionMasks<T>& m) {
    l.forward_with_weights(std::declval<ConstTensorView<T, L::input_ranks[I]>>()..., m);
  };
}

}  // namespace detail

/// A layer of any registered type, with value semantics (copies are deep).
template <class T = float>
class AnyLayer {
public:
  AnyLayer() = default;
  /// Wraps a layer (defined out of line: see the file's note on build time).
  template <class L>
    requires requires { typename L::Config; }
  AnyLayer(L layer, std::string name = {}, Json extras = Json::object());
  AnyLayer(const AnyLayer& o) : self_(o.self_ ? o.self_->clone() : nullptr), name_(o.name_) {}
  AnyLayer(AnyLayer&&) noexcept = default;
  AnyLayer& operator=(const AnyLayer& o) {
    if (this != &o) *this = AnyLayer(o);
    return *this;
  }
  AnyLayer& operator=(AnyLayer&&) noexcept = default;
  ~AnyLayer() = default;

  [[nodiscard]] bool empty() const noexcept { return self_ == nullptr; }
  [[nodiscard]] std::string_view type() const { return get().type(); }
  [[nodiscard]] std::string_view class_name() const { return get().class_name(); }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  /// The whole configuration: `type`, `name` (when set), every parameter and any training-only
  /// values the caller gave. create_attention_from_config(config()) builds a layer of an equal
  /// configuration; the seed is not part of it (weights are loaded or changed after construction, so a
  /// seed would not describe them): save_model / load_model (io/weights.hpp) carry the weights.
  [[nodiscard]] Json config() const {
    Json j = Json::object();
    j["type"] = std::string(type());
    if (!name_.empty()) j["name"] = name_;
    j.update(get().params());
    return j;
  }
  /// The ranks of the inputs forward() takes, in order.
  [[nodiscard]] std::vector<int> input_ranks() const { return get().input_ranks(); }
  [[nodiscard]] const WeightSet<T>& parameters() const { return get().weights(); }
  [[nodiscard]] WeightSet<T>& parameters() { return get().weights(); }

  /// Runs the layer with every option it has (see ForwardArgs): inputs, masks, causal, weights.
  [[nodiscard]] ForwardResult<T> forward(const ForwardArgs<T>& args) const { return get().forward_args(args); }

  /// Runs the layer on its inputs alone (ranks checked, clear errors).
  [[nodiscard]] AnyTensor<T> forward(std::span<const AnyTensor<T>> inputs) const {
    return get().forward(inputs);
  }
  [[nodiscard]] AnyTensor<T> forward(const AnyTensor<T>& x) const {
    return forward(std::span<const AnyTensor<T>>(&x, 1));
  }
  [[nodiscard]] AnyTensor<T> forward(std::initializer_list<AnyTensor<T>> inputs) const {
    return forward(std::span<const AnyTensor<T>>(inputs.begin(), inputs.size()));
  }
  [[nodiscard]] Shape output_shape(std::span<const Shape> inputs) const {
    return get().output_shape(inputs);
  }

  /// The concrete layer, or nullptr when this is not an L.
  template <class L>
  [[nodiscard]] const L* target() const noexcept {
    return self_ ? static_cast<const L*>(self_->target(typeid(L))) : nullptr;
  }
  template <class L>
  [[nodiscard]] L* target() noexcept {
    return self_ ? static_cast<L*>(const_cast<void*>(self_->target(typeid(L)))) : nullptr;
  }

  /// Same type, name, configuration and weights.
  friend bool operator==(const AnyLayer& a, const AnyLayer& b) {
    if (a.empty() || b.empty()) return a.empty() && b.empty();
    if (a.config() != b.config()) return false;
    const auto& wa = a.parameters();
    const auto& wb = b.parameters();
    if (wa.size() != wb.size()) return false;
    for (std::size_t i = 0; i < wa.size(); ++i)
      if (wa[i].name != wb[i].name || wa[i].shape != wb[i].shape || wa[i].data != wb[i].data)
        return false;
    return true;
  }

private:
  struct Concept {
    virtual ~Concept() = default;
    [[nodiscard]] virtual std::unique_ptr<Concept> clone() const = 0;
    [[nodiscard]] virtual std::string_view type() const = 0;
    [[nodiscard]] virtual std::string_view class_name() const = 0;
    [[nodiscard]] virtual Json params() const = 0;
    [[nodiscard]] virtual std::vector<int> input_ranks() const = 0;
    [[nodiscard]] virtual const WeightSet<T>& weights() const = 0;
    [[nodiscard]] virtual WeightSet<T>& weights() = 0;
    [[nodiscard]] virtual AnyTensor<T> forward(std::span<const AnyTensor<T>>) const = 0;
    [[nodiscard]] virtual ForwardResult<T> forward_args(const ForwardArgs<T>&) const = 0;
    [[nodiscard]] virtual Shape output_shape(std::span<const Shape>) const = 0;
    [[nodiscard]] virtual const void* target(const std::type_info&) const noexcept = 0;
  };

  template <class L>
  struct Model final : Concept {
    using C = typename L::Config;
    Model(L l, Json e) : layer(std::move(l)), extras(std::move(e)) {}
    std::unique_ptr<Concept> clone() const override { return std::make_unique<Model>(*this); }
    std::string_view type() const override { return C::type_name; }
    std::string_view class_name() const override { return C::class_name; }
    Json params() const override {
      Json j = config_to_json(layer.config());
      j.update(extras);
      return j;
    }
    std::vector<int> input_ranks() const override {
      return {L::input_ranks.begin(), L::input_ranks.end()};
    }
    const WeightSet<T>& weights() const override { return layer.parameters(); }
    WeightSet<T>& weights() override { return layer.parameters(); }

    void check_count(std::size_t n) const {
      if (n != L::input_ranks.size())
        throw ShapeError(fmt::format("{}: forward takes {} input(s) of rank(s) [{}], got {}",
                                     C::type_name, L::input_ranks.size(),
                                     fmt::join(L::input_ranks, ", "), n));
    }
    AnyTensor<T> forward(std::span<const AnyTensor<T>> in) const override {
      check_count(in.size());
      return [&]<std::size_t... I>(std::index_sequence<I...>) {
        return AnyTensor<T>(layer.forward(
            in[I].template view<L::input_ranks[I]>(fmt::format("{}: input {}", C::type_name, I))...));
      }(std::make_index_sequence<L::input_ranks.size()>{});
    }

    using Seq = std::make_index_sequence<L::input_ranks.size()>;
    static constexpr bool takes_masks = detail::layer_takes_masks<L, T>(Seq{});
    static constexpr bool returns_weights = detail::layer_returns_weights<L, T>(Seq{});

    [[noreturn]] static void refuse(std::string_view option, std::string_view why) {
      throw ConfigError(fmt::format("{}: forward does not take '{}' ({})", C::type_name, option, why),
                        std::string(C::type_name), std::string(option));
    }

    ForwardResult<T> forward_args(const ForwardArgs<T>& a) const override {
      check_count(a.inputs.size());
      if constexpr (!takes_masks) {
        constexpr std::string_view why = "the layer has no attention scores to mask";
        if (a.key_padding.given()) refuse("key_padding", why);
        if (a.key_lengths.given()) refuse("key_lengths", why);
        if (a.attn_mask.given()) refuse("attn_mask", why);
        if (a.causal) refuse("causal", why);
        if (a.bias.given()) refuse("bias", why);
      }
      if constexpr (!returns_weights)
        if (a.return_weights) refuse("return_weights", "the layer has no attention weights");
      for (const auto& name : a.extra_outputs)
        throw ConfigError(fmt::format("{}: forward has no extra output '{}' (the layer has no extra outputs)",
                                      C::type_name, name),
                          std::string(C::type_name), "extra_outputs");
      ForwardResult<T> r;
      [&]<std::size_t... I>(std::index_sequence<I...>) {
        const auto in = [&]<std::size_t J>() {
          return a.inputs[J].template view<L::input_ranks[J]>(fmt::format("{}: input {}", C::type_name, J));
        };
        const AttentionMasks<T>& masks = a;
        if constexpr (returns_weights) {
          if (a.return_weights) {
            auto res = layer.forward_with_weights(in.template operator()<I>()..., masks);
            r.output = AnyTensor<T>(res.output);
            r.weights = AnyTensor<T>(res.weights);
            return;
          }
        }
        if constexpr (takes_masks)
          r.output = AnyTensor<T>(layer.forward(in.template operator()<I>()..., masks));
        else
          r.output = AnyTensor<T>(layer.forward(in.template operator()<I>()...));
      }(Seq{});
      return r;
    }
    Shape output_shape(std::span<const Shape> in) const override {
      check_count(in.size());
      for (std::size_t i = 0; i < in.size(); ++i)
        if (static_cast<int>(in[i].size()) != L::input_ranks[i])
          throw ShapeError(fmt::format("{}: input {} must have rank {}, got shape {}", C::type_name, i,
                                       L::input_ranks[i], shape_str(in[i])));
      return [&]<std::size_t... I>(std::index_sequence<I...>) {
        return layer.output_shape(in[I]...);
      }(std::make_index_sequence<L::input_ranks.size()>{});
    }
    const void* target(const std::type_info& t) const noexcept override {
      return t == typeid(L) ? &layer : nullptr;
    }

    L layer;
    Json extras;
  };

  Concept& get() const {
    if (!self_) throw Error("attn::AnyLayer: empty layer");
    return *self_;
  }

  std::unique_ptr<Concept> self_;
  std::string name_;
};

template <class T>
template <class L>
  requires requires { typename L::Config; }
AnyLayer<T>::AnyLayer(L layer, std::string name, Json extras)
    : self_(std::make_unique<Model<L>>(std::move(layer), std::move(extras))), name_(std::move(name)) {}

}  // namespace attn

/// Declares (EXTERN = extern) or defines (EXTERN empty) the float and double instances of wrapping
/// layer class template `Class` (a name in namespace attn) into an AnyLayer. At namespace scope.
#define ATTN_LAYER_INSTANCES(EXTERN, Class)                                                           \
  EXTERN template attn::AnyLayer<float>::AnyLayer(attn::Class<float>, std::string, attn::Json);     \
  EXTERN template attn::AnyLayer<double>::AnyLayer(attn::Class<double>, std::string, attn::Json);
