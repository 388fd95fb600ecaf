/// \file
/// What the basic blocks of KCAM's `common_layers.py` (spec kcam_attention_layers.md §3: the types
/// `activation_by_name`, `layer_norm`, `conv2d_no_bias`, `batchnorm_with_activation`, ...) share:
///
/// - `ActivationName`: a parameter kind holding an activation name as `activation_by_name` takes it
///   (ops/activation.hpp: `"relu"`, `"gelu/app"`, `"leaky_relu/0.01"`, ...). JSON: a string; stored
///   inline (at most 47 characters) so that a `constexpr Config{}` can hold it. An unknown name is
///   reported with the operator's message (the known names and a did-you-mean). `std::optional<ActivationName>`
///   gives the reference's `None` (JSON null).
/// - `ChannelAxis`: the `axis` parameter of the normalisation blocks: `"auto"` or the last axis of an
///   image (`-1` or `3`); anything else is a ConfigError (spec errata for §3.3 and §3.6).
/// - `BlockActivation`: an activation by name with its weights as the reference creates them
///   (`prelu`: `<activation>/alpha` `[1, 1, C]`, init 0.25; `star_relu`: scalars `<activation>/gain`
///   (init 1) and `<activation>/bias` (init 0), rank 0), where `<activation>` is the name as given
///   (the reference names the created Keras layer `name + activation`).
/// - `ActivationPair`: `se_module`'s `activation`, a name or a pair `[hidden, output]` (null elements: none).
/// - `ConvPadding`: `conv2d_no_bias`'s `padding`, "valid" / "same" (case-insensitive), an int or a pair.
/// - `check_block_input`: the rank-4 check of a block's input and its channel count.
///
/// Blocks whose initial weights are constants (BatchNorm's ones and zeros, a fixed filter, prelu's 0.25)
/// declare `static constexpr bool constant_initial_weights = true;`: the seed does not change them, and
/// the registry-wide contract test checks that instead of a change of weights with the seed.
#pragma once

#include <array>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/init.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/ops/activation.hpp"

namespace attn {

/// An activation name stored inline (see the file comment).
struct ActivationName {
  static constexpr std::size_t capacity = 47;
  std::array<char, capacity> chars{};
  std::size_t size = 0;

  constexpr ActivationName() = default;
  /// Throws attn::Error beyond `capacity` characters (a compile error in a constant).
  constexpr ActivationName(std::string_view s) : chars(copy(s)), size(s.size()) {}  // NOLINT
  constexpr ActivationName(const char* s) : ActivationName(std::string_view(s)) {}  // NOLINT
  [[nodiscard]] constexpr std::string_view view() const noexcept { return {chars.data(), size}; }
  [[nodiscard]] std::string str() const { return std::string(view()); }
  friend constexpr bool operator==(const ActivationName& a, const ActivationName& b) noexcept {
    return a.view() == b.view();
  }

private:
  static constexpr std::array<char, capacity> copy(std::string_view s) {
    if (s.size() > capacity)
      throw Error(fmt::format("attn::ActivationName: '{}' is longer than {} characters", s, capacity));
    std::array<char, capacity> a{};
    for (std::size_t i = 0; i < s.size(); ++i) a[i] = s[i];
    return a;
  }
};

template <>
struct ParamTraits<ActivationName> {
  static std::string kind(const FieldSpec& /*f*/) { return "activation"; }
  static std::string expected(const FieldSpec& /*f*/) { return "an activation name (a string)"; }
  static std::string expected_or_null(const FieldSpec& /*f*/) { return "an activation name (a string) or null"; }
  static Parsed parse(const Json& j, ActivationName& out, const FieldSpec& /*f*/, const ParamContext& ctx) {
    if (!j.is_string()) return Parsed::wrong_kind;
    const auto s = j.get<std::string>();
    if (s.size() > ActivationName::capacity) {
      ctx.add(fmt::format("Parameter '{}' of '{}' must have at most {} characters, got {}", ctx.path, ctx.type,
                          ActivationName::capacity, s.size()));
      return Parsed::reported;
    }
    out = ActivationName(std::string_view(s));
    return Parsed::ok;
  }
  static Json to_json(const ActivationName& v, const FieldSpec& /*f*/) { return v.str(); }
  static void check(const ActivationName& v, const FieldSpec& /*f*/, const ParamContext& ctx) {
    try {
      (void)ops::Activation::from_name(v.view(), ctx.type);
    } catch (const ConfigError& e) {
      ctx.add(e.what());
    }
  }
  static constexpr bool valid(const ActivationName& v, const FieldSpec& /*f*/) { return v.size > 0; }
  static constexpr bool row_ok(const FieldSpec& f) { return detail::no_rules(f); }
  static void describe(Json& info, const FieldSpec& /*f*/) {
    Json names = Json::array();
    for (auto s : ops::special_activation_names) names.push_back(std::string(s));
    for (auto s : ops::keras_activation_names) names.push_back(std::string(s));
    info["choices"] = std::move(names);
  }
};

/// `se_module`'s `activation`: a name (the hidden activation; the output one is "sigmoid") or a pair
/// `[hidden, output]`; null (or a null element) is the reference's `None`: no activation. An empty name
/// stands for null.
struct ActivationPair {
  ActivationName hidden = ActivationName("relu");
  ActivationName output = ActivationName("sigmoid");
  bool pair = false;  ///< given as a pair (kept for the JSON round trip)
  friend constexpr bool operator==(const ActivationPair&, const ActivationPair&) = default;
};

template <>
struct ParamTraits<ActivationPair> {
  static std::string kind(const FieldSpec& /*f*/) { return "activation_pair"; }
  static std::string expected(const FieldSpec& /*f*/) {
    return "an activation name, null or a list of 2 (hidden, output)";
  }
  static Parsed parse(const Json& j, ActivationPair& out, const FieldSpec& f, const ParamContext& ctx) {
    const auto one = [&](const Json& e, ActivationName& n, const ParamContext& c) {
      if (e.is_null()) {
        n = ActivationName();
        return Parsed::ok;
      }
      return ParamTraits<ActivationName>::parse(e, n, f, c);
    };
    if (j.is_array()) {
      if (j.size() != 2) return Parsed::wrong_kind;
      ActivationPair v;
      v.pair = true;
      const Parsed a = one(j[0], v.hidden, ctx.element(0)), b = one(j[1], v.output, ctx.element(1));
      if (a == Parsed::wrong_kind || b == Parsed::wrong_kind) return Parsed::wrong_kind;
      if (a != Parsed::ok || b != Parsed::ok) return Parsed::reported;
      out = v;
      return Parsed::ok;
    }
    ActivationPair v;
    const Parsed r = one(j, v.hidden, ctx);
    if (r == Parsed::ok) out = v;
    return r;
  }
  static Json to_json(const ActivationPair& v, const FieldSpec& /*f*/) {
    const auto one = [](const ActivationName& n) { return n.size == 0 ? Json(nullptr) : Json(n.str()); };
    return v.pair ? Json::array({one(v.hidden), one(v.output)}) : one(v.hidden);
  }
  static void check(const ActivationPair& v, const FieldSpec& f, const ParamContext& ctx) {
    if (v.hidden.size > 0) ParamTraits<ActivationName>::check(v.hidden, f, v.pair ? ctx.element(0) : ctx);
    if (v.output.size > 0) ParamTraits<ActivationName>::check(v.output, f, ctx.element(1));
  }
  static constexpr bool valid(const ActivationPair& /*v*/, const FieldSpec& /*f*/) { return true; }
  static constexpr bool row_ok(const FieldSpec& f) { return detail::no_rules(f); }
  static void describe(Json& info, const FieldSpec& f) { ParamTraits<ActivationName>::describe(info, f); }
};

/// `"auto"` or an integer axis; only "auto" and the channel axis of an image (-1, 3) are valid.
struct ChannelAxis {
  bool is_auto = true;
  int value = -1;  ///< when !is_auto
  friend constexpr bool operator==(const ChannelAxis&, const ChannelAxis&) = default;
  [[nodiscard]] constexpr bool ok() const noexcept { return is_auto || value == -1 || value == 3; }
};

template <>
struct ParamTraits<ChannelAxis> {
  static std::string kind(const FieldSpec& /*f*/) { return "axis"; }
  static std::string expected(const FieldSpec& /*f*/) { return "'auto' or an integer"; }
  static Parsed parse(const Json& j, ChannelAxis& out, const FieldSpec& /*f*/, const ParamContext& /*ctx*/) {
    int v = 0;
    if (j.is_string() && j.get<std::string>() == "auto") {
      out = {};
      return Parsed::ok;
    }
    if (detail::read_int(j, v)) {
      out = {false, v};
      return Parsed::ok;
    }
    return Parsed::wrong_kind;
  }
  static Json to_json(const ChannelAxis& v, const FieldSpec& /*f*/) { return v.is_auto ? Json("auto") : Json(v.value); }
  static void check(const ChannelAxis& v, const FieldSpec& /*f*/, const ParamContext& ctx) {
    if (!v.ok())
      ctx.add(fmt::format("{} must be 'auto' or the channel axis of a [batch, height, width, channels] input (-1 or "
                          "3), got {}",
                          ctx.path, v.value));
  }
  static constexpr bool valid(const ChannelAxis& v, const FieldSpec& /*f*/) { return v.ok(); }
  static constexpr bool row_ok(const FieldSpec& f) { return detail::no_rules(f); }
  static void describe(Json& info, const FieldSpec& /*f*/) { info["choices"] = Json::array({"auto", -1, 3}); }
};

/// The `padding` of `conv2d_no_bias`: the strings "valid" / "same" (case-insensitive), or an explicit
/// symmetric pad: an int `p` or a pair `[p_h, p_w]` (an explicit pad of 0 is "valid", as the reference).
struct ConvPadding {
  enum class Mode : std::uint8_t { valid, same, pads };
  Mode mode = Mode::valid;
  int h = 0, w = 0;  ///< Mode::pads
  friend constexpr bool operator==(const ConvPadding&, const ConvPadding&) = default;
};

template <>
struct ParamTraits<ConvPadding> {
  static std::string kind(const FieldSpec& /*f*/) { return "padding"; }
  static std::string expected(const FieldSpec& /*f*/) {
    return "'valid', 'same', an integer or a list of 2 integers";
  }
  static Parsed parse(const Json& j, ConvPadding& out, const FieldSpec& /*f*/, const ParamContext& ctx) {
    if (j.is_string()) {
      std::string s = j.get<std::string>();
      for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (s == "valid" || s == "same") {
        out = {s == "same" ? ConvPadding::Mode::same : ConvPadding::Mode::valid, 0, 0};
        return Parsed::ok;
      }
      ctx.add(fmt::format("Parameter '{}' of '{}' must be 'valid', 'same', an integer or a list of 2 integers, "
                          "got '{}'",
                          ctx.path, ctx.type, j.get<std::string>()));
      return Parsed::reported;
    }
    Size2 p{};
    if (ParamTraits<Size2>::parse(j, p, {}, ctx) != Parsed::ok) return Parsed::wrong_kind;
    out = {ConvPadding::Mode::pads, p[0], p[1]};
    return Parsed::ok;
  }
  static Json to_json(const ConvPadding& v, const FieldSpec& /*f*/) {
    switch (v.mode) {
      case ConvPadding::Mode::valid: return "valid";
      case ConvPadding::Mode::same: return "same";
      case ConvPadding::Mode::pads: break;
    }
    return Json::array({v.h, v.w});
  }
  static void check(const ConvPadding& v, const FieldSpec& /*f*/, const ParamContext& ctx) {
    if (v.mode == ConvPadding::Mode::pads && (v.h < 0 || v.w < 0))
      ctx.add(fmt::format("{} must be non-negative, got ({}, {})", ctx.path, v.h, v.w));
  }
  static constexpr bool valid(const ConvPadding& v, const FieldSpec& /*f*/) {
    return v.mode != ConvPadding::Mode::pads || (v.h >= 0 && v.w >= 0);
  }
  static constexpr bool row_ok(const FieldSpec& f) { return detail::no_rules(f); }
  static void describe(Json& info, const FieldSpec& /*f*/) { info["choices"] = Json::array({"valid", "same"}); }
};

namespace detail {

/// ShapeError unless x is `[B, H, W, channels]` (channels < 0: any).
inline void check_block_input(std::string_view layer, const Shape& x, Index channels) {
  if (x.size() != 4)
    throw ShapeError(fmt::format("{}: input x must have rank 4 [batch, height, width, channels], got shape {}", layer,
                                 shape_str(x)));
  if (channels >= 0 && x[3] != channels)
    throw ShapeError(fmt::format("{}: input x must have {} channels (shape [B, H, W, {}]), got shape {}", layer,
                                 channels, channels, shape_str(x)));
}

/// Fills a weight uniformly in [-limit, limit) from the stream of its name (as WeightSet::add does).
template <class T>
void fill_uniform(Weight<T>& w, double limit, std::uint64_t seed) {
  Rng rng(seed ^ hash_name(w.name) ^ 0x5bd1e995ull);
  for (auto& v : w.data) v = static_cast<T>(rng.uniform(-limit, limit));
}

/// An activation by name with the weights the reference creates for it (see the file comment).
class BlockActivation {
public:
  struct Slots {
    WeightSlot alpha, gain, bias;
  };
  BlockActivation() = default;
  /// `name` empty: none (identity). `layer` is named in errors.
  BlockActivation(std::string_view name, std::string_view layer)
      : act_(name.empty() ? std::nullopt : std::optional(ops::Activation::from_name(name, layer))) {}

  [[nodiscard]] bool present() const noexcept { return act_.has_value(); }
  [[nodiscard]] const ops::Activation* get() const noexcept { return act_ ? &*act_ : nullptr; }

  /// Declares prelu's alpha [1, 1, channels] (or `alpha_shape` when given) or star_relu's scalars.
  template <class T>
  Slots add_weights(WeightSet<T>& w, Index channels, std::uint64_t seed, const Shape& alpha_shape = {}) const {
    Slots s;
    if (!act_) return s;
    const std::string base = act_->name + "/";
    if (act_->kind == ops::ActivationKind::prelu) {
      s.alpha = w.add(base + "alpha", alpha_shape.empty() ? Shape{1, 1, channels} : alpha_shape, "zeros", seed);
      for (auto& v : w[s.alpha.index].data) v = T(0.25);
    } else if (act_->kind == ops::ActivationKind::star_relu) {
      s.gain = w.add(base + "gain", {}, "ones", seed);
      s.bias = w.add(base + "bias", {}, "zeros", seed);
    }
    return s;
  }

  /// In place on `n` values in rows of `channels`.
  template <class T>
  void apply(const WeightSet<T>& w, const Slots& s, T* x, Index n, Index channels, std::string_view layer) const {
    if (!act_) return;
    ops::ActivationParams<T> p;
    if (s.alpha.declared()) p.alpha = w[s.alpha.index].data.data();
    if (s.gain.declared()) p.gain = w[s.gain.index].data[0];
    if (s.bias.declared()) p.bias = w[s.bias.index].data[0];
    ops::apply_activation<T>(*act_, x, n, channels, p, layer);
  }

private:
  std::optional<ops::Activation> act_;
};

}  // namespace detail
}  // namespace attn
