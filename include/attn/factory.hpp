/// \file
/// The factory: build any registered layer from a type string and JSON parameters, validate configs,
/// and describe every type. Names follow the reference module:
///   create_attention_layer<T>(type, params, name, seed)
///   create_attention_from_config<T>(config, seed)       ("type" and "name" keys are reserved)
///   validate_attention_config(type, params)             (throws ConfigError with the first problem)
///   check_attention_config(type, params)                (every problem, throws nothing)
///   get_attention_info()                                (JSON describing every type)
/// Layers come back as AnyLayer<T>: a value-semantic, type-erased layer.
#pragma once

#include <cstdint>
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

#include "attn/core/error.hpp"
#include "attn/core/log.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/ops/masks.hpp"
#include "attn/registry.hpp"

namespace attn {

namespace detail {

inline std::string unknown_type_message(std::string_view type) {
  auto near = closest(type, attention_type_names);
  return fmt::format("Unknown attention type '{}'. Available types: {}{}", type,
                     py_list(attention_type_names),
                     near.empty() ? "" : fmt::format(". Did you mean '{}'?", near.front()));
}

/// Splits the reserved keys off a parameter object: `name` (a string) and `type` (must equal `type`).
inline Json strip_reserved(std::string_view type, const Json& params, Problems& problems) {
  if (!params.is_object()) return params;
  Json rest = Json::object();
  for (const auto& [k, v] : params.items()) {
    if (k == "name") {
      if (!v.is_string() && !v.is_null())
        problems.push_back({"name", fmt::format("Parameter 'name' of '{}' must be a string, got {}",
                                                type, json_kind(v))});
    } else if (k == "type") {
      if (!v.is_string() || v.get<std::string>() != type)
        problems.push_back({"type", fmt::format("Key 'type' ({}) does not match the attention type '{}'",
                                                json_kind(v), type)});
    } else {
      rest[k] = v;
    }
  }
  return rest;
}

/// The training-only values a caller gave (kept for the round trip).
template <class C>
Json training_only_values(const Json& params) {
  Json extras = Json::object();
  for (auto n : C::training_only)
    if (params.contains(std::string(n))) extras[std::string(n)] = params.at(std::string(n));
  return extras;
}

}  // namespace detail

/// Every problem of a configuration, in the documented order (unknown type; unknown parameters;
/// missing required; wrong JSON kinds; ranges; cross-field rules). Never throws.
inline Problems check_attention_config(std::string_view type, const Json& params = Json::object()) {
  Problems problems;
  if (!is_attention_type(type)) {
    problems.push_back({"", detail::unknown_type_message(type)});
    return problems;
  }
  visit_config(type, [&]<class C>() {
    const Json rest = detail::strip_reserved(type, params, problems);
    (void)parse_config<C>(rest, problems);
  });
  return problems;
}

/// Throws ConfigError with the first problem of the configuration (the reference's wording).
inline void validate_attention_config(std::string_view type, const Json& params = Json::object()) {
  const Problems p = check_attention_config(type, params);
  if (!p.empty()) throw ConfigError(p.front().message, std::string(type), p.front().parameter);
}

/// JSON describing every registered type, in registry order: class, description, use_case,
/// required_params, optional_params (with defaults), parameters (per parameter: kind, required,
/// default or example, range and bounds, odd, choices, list length, a nested config's parameters,
/// wording, doc: see config_info in core/param.hpp) and input_ranks. A fresh value each call.
inline Json get_attention_info() {
  Json info = Json::object();
  for (auto type : attention_type_names) {
    visit_layer<float>(type, [&]<class L>() {
      Json entry = config_info<typename L::Config>();
      entry["input_ranks"] = L::input_ranks;
      info[std::string(type)] = std::move(entry);
    });
  }
  return info;
}

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
  template <class L>
  AnyLayer(L layer, std::string name = {}, Json extras = Json::object())
      : self_(std::make_unique<Model<L>>(std::move(layer), std::move(extras))), name_(std::move(name)) {}
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

/// Builds a layer of `type` from JSON parameters. Weights are drawn from `seed`.
/// On failure: ConfigError with the reference's wrapped message
/// ("Failed to create 'T' layer (Class). Required: [...]. Provided: [...]. Please check parameter
/// compatibility. Original error: ..."), also logged at ERROR level. On success the INFO line
/// "Creating 'T' layer with parameters: {...}" is logged.
template <class T = float>
AnyLayer<T> create_attention_layer(std::string_view type, const Json& params = Json::object(),
                                   std::string_view name = {}, std::uint64_t seed = 0) {
  if (!is_attention_type(type)) {
    const std::string msg = detail::unknown_type_message(type);
    const std::string wrapped =
        fmt::format("Failed to create layer. Unknown type '{}'. Error: {}", type, msg);
    log_message(LogLevel::error, wrapped);
    throw ConfigError(wrapped, std::string(type));
  }
  AnyLayer<T> result;
  visit_layer<T>(type, [&]<class L>() {
    using C = typename L::Config;
    Problems problems;
    const Json rest = detail::strip_reserved(type, params, problems);
    C config{};
    if (problems.empty()) config = parse_config<C>(rest, problems);
    if (!problems.empty()) {
      std::vector<std::string> provided;
      if (params.is_object())
        for (const auto& [k, v] : params.items())
          if (k != "name" && k != "type") provided.push_back(k);
      std::vector<std::string_view> required;
      for (const auto& f : C::fields())
        if (f.required) required.push_back(f.name);
      const std::string wrapped = fmt::format(
          "Failed to create '{}' layer ({}). Required: {}. Provided: {}. Please check parameter "
          "compatibility. Original error: {}",
          type, C::class_name, detail::py_list(required), detail::py_list(provided),
          problems.front().message);
      log_message(LogLevel::error, wrapped);
      throw ConfigError(wrapped, std::string(type), problems.front().parameter);
    }
    Json extras = detail::training_only_values<C>(rest);
    if (log_enabled(LogLevel::info)) {
      Json shown = config_to_json(config);
      shown.update(extras);
      if (!name.empty()) shown["name"] = std::string(name);
      log_message(LogLevel::info, fmt::format("Creating '{}' layer with parameters: {}", type,
                                              detail::py_repr(shown)));
    }
    result = AnyLayer<T>(L(config, seed), std::string(name), std::move(extras));
  });
  return result;
}

/// Builds a layer from a JSON object with a "type" key (and an optional "name"); every other key is
/// a parameter.
template <class T = float>
AnyLayer<T> create_attention_from_config(const Json& config, std::uint64_t seed = 0) {
  if (!config.is_object())
    throw ConfigError(fmt::format("Config must be a dictionary, got {}", detail::json_kind(config)));
  if (!config.contains("type"))
    throw ConfigError("Configuration dictionary must include a 'type' key.");
  const Json& type = config.at("type");
  if (!type.is_string())
    throw ConfigError(fmt::format("Key 'type' must be a string, got {}", detail::json_kind(type)), "",
                      "type");
  std::string name;
  if (config.contains("name")) {
    const Json& n = config.at("name");
    if (!n.is_string() && !n.is_null())
      throw ConfigError(fmt::format("Key 'name' must be a string, got {}", detail::json_kind(n)),
                        type.get<std::string>(), "name");
    if (n.is_string()) name = n.get<std::string>();
  }
  Json params = Json::object();
  for (const auto& [k, v] : config.items())
    if (k != "type" && k != "name") params[k] = v;
  return create_attention_layer<T>(type.get<std::string>(), params, name, seed);
}

}  // namespace attn
