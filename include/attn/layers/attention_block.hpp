/// \file
/// `attention_block` — AttentionBlock: one complete Transformer encoder layer (Vaswani et al., 2017,
/// "Attention Is All You Need"; pre-norm as in ViT, Dosovitskiy et al., 2021) over the flattened
/// feature map, times a learnable per-channel scale (the reference module's AttentionBlock around its
/// TransformerLayer, MLPBlock and LearnableMultiplier; spec dl_techniques_attention.md §4.3).
///
/// Shapes: x `[B, H, W, dim]` → `[B, H, W, dim]`. H and W are read from every input (any H, W >= 1).
/// With X the map flattened to tokens `[B, H·W, dim]` (token n = r·W + c), LN the LayerNormalization
/// over the channels (eps 1e-6, gamma and beta), Attn the inner attention (query = key = value, no
/// mask) and MLP(u) = gelu(u·W1 + b1)·W2 + b2 (exact erf GELU, hidden width F = int(dim·mlp_ratio)):
///   pre-norm  (normalization_position "pre", default):  U = X + Attn(LN1(X));  Y = U + MLP(LN2(U))
///   post-norm (normalization_position "post"):          U = LN1(X + Attn(X));  Y = LN2(U + MLP(U))
///   out = reshape(Y, [B, H, W, dim]) ⊙ gamma_ls          (per channel, when use_layer_scale)
/// As in the reference the scale multiplies the whole encoder output, residual included, and there is
/// no outer residual: a freshly initialised block (gamma_ls = layer_scale_init = 1e-4) outputs about
/// 1e-4 times its input, not the identity. With use_layer_scale = false it is the encoder layer itself.
///
/// The inner attention, `attention_type` (the reference's parameter and spellings; attn's type names
/// are accepted as aliases of the same inner layer, and config() keeps the spelling given):
///   "multi_head_attention" | "multi_head"      Keras MultiHeadAttention (num_heads, key_dim = dim /
///       num_heads, biases), computed by attn's `multi_head` layer (MultiHeadAttention, fused QKV, with
///       biases): the Keras Q/K/V kernels are its qkv kernel's column blocks, the Keras output kernel
///       `[h, d, dim]` is its proj kernel `[h·d, dim]`.
///   "window_attention" | "window"              `window` (WindowAttention) over the map through
///       its feature-map entry (zero padding to multiples of window_size, optional shifted windows).
///   "group_query_attention" | "group_query"    `group_query` (GroupedQueryAttention with RoPE), biases on.
///   "differential_attention" | "differential"  `differential` (DifferentialMultiHeadAttention).
/// Options of the inner layer go in the nested config `attention_args` (beyond the reference, whose
/// TransformerLayer fixes them); every one is optional, its default the reference's:
///   window:       window_size (8), shift_size (0; 0 <= shift_size < window_size)
///   group_query:  n_kv_head (num_heads; must divide num_heads), max_seq_len (2048),
///                 rope_percentage (1.0, in (0, 1]), rope_theta (10000.0)
///   differential: head_dim (dim / num_heads), lambda_init (0.8, in [0, 1]), layer_idx (0)
/// An option the chosen inner type does not take is a ConfigError naming it; an unknown key one with a
/// did-you-mean; the inner layer's own rules apply with its messages (prefixed `attention_args`).
///
/// Weights (the reference's Keras names and layouts, in this order; F = int(dim·mlp_ratio), h =
/// num_heads, d = dim / h): `vision_transformer/attention_norm/gamma`, `/beta` `[dim]`,
/// `vision_transformer/output_norm/gamma`, `/beta` `[dim]`, the inner attention's weights under
/// `vision_transformer/attention/`: for multi_head_attention (Keras MultiHeadAttention) `query/kernel
/// [dim, h, d]`, `query/bias [h, d]`, `key/...`, `value/...` likewise, `attention_output/kernel
/// [h, d, dim]`, `attention_output/bias [dim]`; for the other types the weights of that layer under
/// their own names (window: `qkv/kernel`, `qkv/bias`, `proj/kernel`, `proj/bias`,
/// `relative_position_bias_table`; group_query: `w_q/kernel`, `w_q/bias`, ..., `w_o/bias`,
/// `rope/cos_cached`, `rope/sin_cached` (non-trainable); differential: `attention1/...`,
/// `attention2/...`, `proj/...`, `lambda_param`); then `vision_transformer/ffn/fc1/kernel [dim, F]`,
/// `fc1/bias [F]`, `fc2/kernel [F, dim]`, `fc2/bias [dim]`; `layer_scale/gamma [dim]` when
/// use_layer_scale (initialised to layer_scale_init). Kernels glorot_uniform, biases zeros, norms
/// ones / zeros, the inner layer's own initializers for its special weights.
///
/// `forward_with_weights` also returns the inner attention's weights: `[B, h, H·W, H·W]` for
/// multi_head and group_query, per window `[B·nW, h, w², w²]` for window (windows in
/// window_partition's order); differential has none (ConfigError).
///
/// Errors: ConfigError with the reference's messages (`Parameter 'dim' must be positive, got 0`,
/// `dim (10) must be divisible by num_heads (3)`, `mlp_ratio must be positive, got 0.0`,
/// `layer_scale_init must be positive, got 0.0` (checked even without the scale), `intermediate_size
/// must be positive when moe_config is None, got 0`, `dropout_rate must be in [0.0, 1.0), got 1.0`);
/// ShapeError for an input that is not `[B, H >= 1, W >= 1, dim]` (`Expected 4D input, got 3D`,
/// `Input channels (6) must match dim (8)`) and from the inner layer (group_query: more tokens than
/// max_seq_len); WeightsError for a tampered weight, before any kernel runs.
///
/// Differences from the reference (deliberate):
/// - `attention_type` is settable through the factory: the reference's factory names its own first
///   parameter `attention_type` too, so passing it there is a Python TypeError and the block is always
///   Keras-MHA-based (spec §2.6, §6.3). Here the type is the config's `type` key, so no clash.
/// - An unknown `attention_type` is the house's choice message (the accepted values and the closest
///   one) instead of the reference's `Unknown attention type: {attention_type}`.
/// - `normalization_position` accepts "pre" and "post" only (the reference takes any other string,
///   typos included, as post-norm).
/// - H and W are read from each input (the reference freezes the build-time size).
/// - The window inner type partitions the map into windows (any H, W); the reference feeds the whole
///   flattened map to WindowAttention(window_size = 8), which only runs for exactly 64 tokens (for an
///   8 × 8 map both agree).
/// - Keras scales Q before Q·Kᵀ; the attention core scales the logits: equal up to the last bits.
/// - Dropout (`dropout_rate`, at the reference's five sites) is the identity (inference library); it is
///   validated and kept. The layer scale's non-negativity constraint acts on training only.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/layers/detail/vision_layers.hpp"
#include "attn/layers/differential.hpp"
#include "attn/layers/group_query.hpp"
#include "attn/layers/multi_head.hpp"
#include "attn/layers/window.hpp"
#include "attn/ops/activation.hpp"
#include "attn/ops/linear.hpp"
#include "attn/ops/norm.hpp"
#include "attn/ops/relpos.hpp"

namespace attn {

/// The accepted spellings of `attention_type`: the reference's four, then attn's type names.
inline constexpr std::array<std::string_view, 8> attention_block_types{
    "multi_head_attention", "window_attention", "group_query_attention", "differential_attention",
    "multi_head",           "window",           "group_query",           "differential"};
inline constexpr std::array<std::string_view, 2> attention_block_norm_positions{"pre", "post"};

/// The inner attention of an attention_block.
enum class AttentionBlockInner : std::uint8_t { multi_head, window, group_query, differential };

/// The options of the inner attention (`attention_args`): each unset means the reference's value.
struct AttentionBlockArgs {
  std::optional<int> window_size{};
  std::optional<int> shift_size{};
  std::optional<int> n_kv_head{};
  std::optional<int> max_seq_len{};
  std::optional<double> rope_percentage{};
  std::optional<double> rope_theta{};
  std::optional<int> head_dim{};
  std::optional<double> lambda_init{};
  std::optional<int> layer_idx{};

  static constexpr auto fields() {
    using C = AttentionBlockArgs;
    return std::array{
        Field<C>{.name = "window_size", .member = member<&C::window_size>, .range = positive,
                 .doc = "window: side of the square windows (null: 8, the reference's)."},
        Field<C>{.name = "shift_size", .member = member<&C::shift_size>, .range = non_negative,
                 .doc = "window: cyclic shift of the windows, < window_size (null: 0). Beyond the reference."},
        Field<C>{.name = "n_kv_head", .member = member<&C::n_kv_head>, .range = positive,
                 .doc = "group_query: key/value heads, dividing num_heads (null: num_heads)."},
        Field<C>{.name = "max_seq_len", .member = member<&C::max_seq_len>, .range = positive,
                 .doc = "group_query: RoPE table length, at least H·W (null: 2048)."},
        Field<C>{.name = "rope_percentage", .member = member<&C::rope_percentage>, .range = unit_half_open,
                 .doc = "group_query: rotated share of each head (null: 1.0)."},
        Field<C>{.name = "rope_theta", .member = member<&C::rope_theta>, .range = positive,
                 .doc = "group_query: RoPE base (null: 10000.0)."},
        Field<C>{.name = "head_dim", .member = member<&C::head_dim>, .range = positive,
                 .doc = "differential: width of each head (null: dim / num_heads)."},
        Field<C>{.name = "lambda_init", .member = member<&C::lambda_init>, .range = unit_interval,
                 .doc = "differential: initial lambda_param (null: 0.8)."},
        Field<C>{.name = "layer_idx", .member = member<&C::layer_idx>, .range = non_negative,
                 .doc = "differential: depth in the lambda schedule (null: 0)."},
    };
  }
  void check(Problems& /*p*/) const {}
};
static_assert(config_table_is_sound<AttentionBlockArgs>());

struct AttentionBlockConfig {
  int dim = 0;
  int num_heads = 8;
  double mlp_ratio = 4.0;
  std::string_view attention_type = "multi_head_attention";
  std::string_view normalization_position = "pre";
  double dropout_rate = 0.0;
  bool use_layer_scale = true;
  double layer_scale_init = 1e-4;
  AttentionBlockArgs attention_args{};

  static constexpr std::string_view type_name = "attention_block";
  static constexpr std::string_view class_name = "AttentionBlock";
  static constexpr std::string_view description =
      "Vision attention block: one Transformer encoder layer (attention and MLP, pre- or post-norm) over the "
      "flattened feature map, times a learnable per-channel scale.";
  static constexpr std::string_view use_case =
      "Vision transformers and hybrid CNN-transformers working on 4D feature maps.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = AttentionBlockConfig;
    return std::array{
        Field<C>{.name = "dim", .member = member<&C::dim>, .required = true, .example = "16",
                 .wording = Wording::factory, .range = positive, .doc = "Channels of the map (model width)."},
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .wording = Wording::factory,
                 .range = positive, .doc = "Attention heads; must divide dim."},
        Field<C>{.name = "mlp_ratio", .member = member<&C::mlp_ratio>, .range = positive,
                 .doc = "MLP hidden width over dim (hidden = int(dim * mlp_ratio))."},
        Field<C>{.name = "attention_type", .member = member<&C::attention_type>, .choices = attention_block_types,
                 .doc = "Inner attention: the reference's spellings or attn's type names (aliases)."},
        Field<C>{.name = "normalization_position", .member = member<&C::normalization_position>,
                 .choices = attention_block_norm_positions, .doc = "'pre' (pre-norm) or 'post' (post-norm)."},
        Field<C>{.name = "dropout_rate", .member = member<&C::dropout_rate>, .wording = Wording::factory,
                 .range = unit_interval, .doc = "Dropout at the reference's five sites (identity at inference)."},
        Field<C>{.name = "use_layer_scale", .member = member<&C::use_layer_scale>,
                 .doc = "Multiply the output by a learnable per-channel scale."},
        Field<C>{.name = "layer_scale_init", .member = member<&C::layer_scale_init>, .range = positive,
                 .doc = "Initial value of the per-channel scale."},
        Field<C>{.name = "attention_args", .member = member<&C::attention_args>,
                 .doc = "Options of the inner attention (see the header). Beyond the reference."},
    };
  }

  [[nodiscard]] AttentionBlockInner inner() const noexcept {
    const std::string_view t = attention_type;
    if (t == "window_attention" || t == "window") return AttentionBlockInner::window;
    if (t == "group_query_attention" || t == "group_query") return AttentionBlockInner::group_query;
    if (t == "differential_attention" || t == "differential") return AttentionBlockInner::differential;
    return AttentionBlockInner::multi_head;
  }
  [[nodiscard]] bool pre_norm() const noexcept { return normalization_position == "pre"; }
  [[nodiscard]] Index hidden() const noexcept { return static_cast<Index>(static_cast<double>(dim) * mlp_ratio); }

  [[nodiscard]] WindowAttentionConfig window_config() const {
    return {.dim = dim, .window_size = attention_args.window_size.value_or(8), .num_heads = num_heads};
  }
  [[nodiscard]] GroupedQueryAttentionConfig group_query_config() const {
    return {.d_model = dim, .n_head = num_heads, .n_kv_head = attention_args.n_kv_head.value_or(num_heads),
            .max_seq_len = attention_args.max_seq_len.value_or(2048), .dropout_rate = dropout_rate,
            .rope_percentage = attention_args.rope_percentage.value_or(1.0),
            .rope_theta = attention_args.rope_theta.value_or(10000.0), .use_bias = true};
  }
  [[nodiscard]] DifferentialMultiHeadAttentionConfig differential_config() const {
    return {.dim = dim, .num_heads = num_heads,
            .head_dim = attention_args.head_dim.value_or(num_heads > 0 ? dim / num_heads : 0),
            .dropout = dropout_rate, .lambda_init = attention_args.lambda_init.value_or(0.8),
            .layer_idx = attention_args.layer_idx.value_or(0)};
  }
  [[nodiscard]] MultiHeadAttentionConfig multi_head_config() const {
    return {.embed_dim = dim, .num_heads = num_heads, .dropout_rate = dropout_rate,
            .kernel_initializer = "glorot_uniform", .use_bias = true};
  }

  void check(Problems& p) const {
    if (!(static_cast<double>(dim) * mlp_ratio < 2147483648.0)) {
      p.push_back({"mlp_ratio", fmt::format("mlp_ratio ({}) makes the hidden width int(dim * mlp_ratio) exceed 2^31",
                                            detail::py_float(mlp_ratio))});
      return;
    }
    if (dim % num_heads != 0)
      p.push_back({"num_heads", fmt::format("dim ({}) must be divisible by num_heads ({})", dim, num_heads)});
    if (dropout_rate >= 1.0)
      p.push_back({"dropout_rate", fmt::format("dropout_rate must be in [0.0, 1.0), got {}",
                                               detail::py_float(dropout_rate))});
    if (hidden() <= 0)
      p.push_back({"mlp_ratio",
                   fmt::format("intermediate_size must be positive when moe_config is None, got {}", hidden())});
    if (!p.empty()) return;
    // the options of attention_args that the chosen inner type does not take
    const AttentionBlockInner k = inner();
    const AttentionBlockArgs& a = attention_args;
    const auto only = [&](bool set, std::string_view name, AttentionBlockInner owner) {
      if (set && k != owner)
        p.push_back({fmt::format("attention_args.{}", name),
                     fmt::format("attention_args.{} is not an option of attention_type '{}'", name, attention_type)});
    };
    only(a.window_size.has_value(), "window_size", AttentionBlockInner::window);
    only(a.shift_size.has_value(), "shift_size", AttentionBlockInner::window);
    only(a.n_kv_head.has_value(), "n_kv_head", AttentionBlockInner::group_query);
    only(a.max_seq_len.has_value(), "max_seq_len", AttentionBlockInner::group_query);
    only(a.rope_percentage.has_value(), "rope_percentage", AttentionBlockInner::group_query);
    only(a.rope_theta.has_value(), "rope_theta", AttentionBlockInner::group_query);
    only(a.head_dim.has_value(), "head_dim", AttentionBlockInner::differential);
    only(a.lambda_init.has_value(), "lambda_init", AttentionBlockInner::differential);
    only(a.layer_idx.has_value(), "layer_idx", AttentionBlockInner::differential);
    if (!p.empty()) return;
    // the inner layer's own rules, with its messages
    Problems inner_problems;
    switch (k) {
      case AttentionBlockInner::multi_head: inner_problems = check_config(multi_head_config()); break;
      case AttentionBlockInner::window: {
        inner_problems = check_config(window_config());
        const int w = a.window_size.value_or(8), s = a.shift_size.value_or(0);
        if (inner_problems.empty() && s >= w)
          p.push_back({"attention_args.shift_size",
                       fmt::format("attention_args.shift_size must be smaller than window_size ({}), got {}", w, s)});
        break;
      }
      case AttentionBlockInner::group_query: inner_problems = check_config(group_query_config()); break;
      case AttentionBlockInner::differential: inner_problems = check_config(differential_config()); break;
    }
    for (const auto& q : inner_problems)
      p.push_back({fmt::format("attention_args.{}", q.parameter),
                   fmt::format("attention_args ({} attention): {}", attention_type, q.message)});
  }
};
static_assert(config_table_is_sound<AttentionBlockConfig>());

template <class T = float>
class AttentionBlock : public LayerBase<AttentionBlock<T>, AttentionBlockConfig, T>,
                       public detail::MapDoor<AttentionBlock<T>, T> {
  using Base = LayerBase<AttentionBlock, AttentionBlockConfig, T>;
  friend Base;
  friend detail::MapDoor<AttentionBlock<T>, T>;

public:
  using Config = AttentionBlockConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit AttentionBlock(const Config& config, std::uint64_t seed = 0) : Base(config) {
    if (config_.inner() == AttentionBlockInner::window) {
      window_config_ = config_.window_config();
      const Index w = window_config_.window_size;
      check_allocation(fmt::format("attention_block: parameter 'attention_args.window_size' ({}): the relative-position "
                                   "index",
                                   w),
                       checked_shape_size({w, w, w, w}), sizeof(Index), "attention_block",
                       "attention_args.window_size");
      index_ = ops::relative_position_index(w, w, "attention_block");
    }
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{2, 3, 5, c.dim}}; }

  // forward(x): out `[B, H, W, dim]` of x `[B, H, W, dim]`.
  // forward_with_weights(x): also the inner attention's weights (see the file comment; detail::MapDoor).

private:
  using Base::config_, Base::weights_;
  static constexpr double kNormEps = 1e-6;
  static constexpr std::string_view kPrefix = "vision_transformer/attention/";

  struct Slots {
    WeightSlot ln1_gamma, ln1_beta, ln2_gamma, ln2_beta;
    std::size_t inner_first = 0, inner_count = 0;  // the inner attention's weights, in its own order
    WeightSlot fc1_kernel, fc1_bias, fc2_kernel, fc2_bias, scale;
  };

  using Proto = std::variant<std::monostate, MultiHeadAttention<T>, WindowAttention<T>, GroupedQueryAttention<T>,
                             DifferentialMultiHeadAttention<T>>;

  /// Declares the inner layer's weights under the prefix with its values, and keeps the layer with its
  /// weight data released as the template of the per-call copy.
  template <class Inner>
  static void add_inner(WeightSet<T>& w, Inner inner, Slots& s, Proto& proto, std::uint64_t seed) {
    s.inner_first = w.size();
    for (auto& p : inner.parameters()) {
      const std::size_t i = w.add(std::string(kPrefix) + p.name, p.shape, "zeros", seed, p.trainable);
      w[i].data = p.data;
      p.data = {};
    }
    s.inner_count = w.size() - s.inner_first;
    proto = std::move(inner);
  }

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index D = config_.dim, F = config_.hidden(), H = config_.num_heads, d = D / H;
    Slots s;
    Proto proto;
    s.ln1_gamma = w.add("vision_transformer/attention_norm/gamma", {D}, "ones", seed);
    s.ln1_beta = w.add("vision_transformer/attention_norm/beta", {D}, "zeros", seed);
    s.ln2_gamma = w.add("vision_transformer/output_norm/gamma", {D}, "ones", seed);
    s.ln2_beta = w.add("vision_transformer/output_norm/beta", {D}, "zeros", seed);
    s.inner_first = w.size();
    switch (config_.inner()) {
      case AttentionBlockInner::multi_head: {  // Keras MultiHeadAttention's names and rank-3 layouts
        for (const char* p : {"query", "key", "value"}) {
          w.add(fmt::format("{}{}/kernel", kPrefix, p), {D, H, d}, "glorot_uniform", seed);
          w.add(fmt::format("{}{}/bias", kPrefix, p), {H, d}, "zeros", seed);
        }
        w.add(fmt::format("{}attention_output/kernel", kPrefix), {H, d, D}, "glorot_uniform", seed);
        w.add(fmt::format("{}attention_output/bias", kPrefix), {D}, "zeros", seed);
        s.inner_count = 8;
        MultiHeadAttention<T> mha(config_.multi_head_config(), seed);
        for (auto& p : mha.parameters()) p.data = {};
        proto = std::move(mha);
        break;
      }
      case AttentionBlockInner::window: {
        WindowAttention<T> win(window_config_, seed);
        add_inner(w, std::move(win), s, proto, seed);
        break;
      }
      case AttentionBlockInner::group_query:
        add_inner(w, GroupedQueryAttention<T>(config_.group_query_config(), seed), s, proto, seed);
        break;
      case AttentionBlockInner::differential:
        add_inner(w, DifferentialMultiHeadAttention<T>(config_.differential_config(), seed), s, proto, seed);
        break;
    }
    s.fc1_kernel = w.add("vision_transformer/ffn/fc1/kernel", {D, F}, "glorot_uniform", seed);
    s.fc1_bias = w.add("vision_transformer/ffn/fc1/bias", {F}, "zeros", seed);
    s.fc2_kernel = w.add("vision_transformer/ffn/fc2/kernel", {F, D}, "glorot_uniform", seed);
    s.fc2_bias = w.add("vision_transformer/ffn/fc2/bias", {D}, "zeros", seed);
    if (config_.use_layer_scale) {
      s.scale = w.add("layer_scale/gamma", {D}, "zeros", seed);
      for (auto& v : w[s.scale.index].data) v = static_cast<T>(config_.layer_scale_init);
    }
    proto_ = std::move(proto);  // nothing throws from here on
    slots_ = s;
  }

  void check_input(const Shape& x) const {
    if (x.size() != 4)
      throw ShapeError(fmt::format("attention_block: Expected 4D input, got {}D (input shape {})", x.size(),
                                   shape_str(x)));
    if (x[3] != config_.dim)
      throw ShapeError(fmt::format("attention_block: Input channels ({}) must match dim ({}) (input shape {})", x[3],
                                   config_.dim, shape_str(x)));
    if (x[1] < 1 || x[2] < 1)
      throw ShapeError(fmt::format("attention_block: input must have shape [batch, height >= 1, width >= 1, {}], got {}",
                                   config_.dim, shape_str(x)));
  }

  const Weight<T>& inner_weight(std::size_t i) const { return weights_[slots_.inner_first + i]; }

  /// A copy of the template inner layer holding the block's current inner weights.
  template <class Inner>
  Inner bound_inner() const {
    Inner inner = std::get<Inner>(proto_);
    auto& p = inner.parameters();
    for (std::size_t i = 0; i < p.size(); ++i) p[i].data = inner_weight(i).data;
    return inner;
  }

  /// The multi_head layer on the Keras weights: qkv/kernel rows are [Wq row | Wk row | Wv row].
  MultiHeadAttention<T> bound_multi_head() const {
    MultiHeadAttention<T> mha = std::get<MultiHeadAttention<T>>(proto_);
    const Index D = config_.dim;
    auto& p = mha.parameters();  // qkv/kernel, qkv/bias, proj/kernel, proj/bias
    p[0].data.resize(static_cast<std::size_t>(D * 3 * D));
    p[1].data.resize(static_cast<std::size_t>(3 * D));
    for (Index j = 0; j < 3; ++j) {
      const auto& k = inner_weight(static_cast<std::size_t>(2 * j)).data;
      const auto& b = inner_weight(static_cast<std::size_t>(2 * j + 1)).data;
      for (Index r = 0; r < D; ++r)
        std::copy_n(k.data() + r * D, D, p[0].data.data() + r * 3 * D + j * D);
      std::copy_n(b.data(), D, p[1].data.data() + j * D);
    }
    p[2].data = inner_weight(6).data;
    p[3].data = inner_weight(7).data;
    return mha;
  }

  /// The inner attention of u `[B, H, W, dim]` (contiguous) into `out` `[B·H·W, dim]`.
  void attend(const T* u, Index B, Index Hs, Index Ws, T* out, Tensor<T, 4>* weights) const {
    const Index D = config_.dim, N = Hs * Ws;
    const ConstTensorView<T, 3> seq(u, B, N, D);
    Tensor<T, 3> y;
    switch (config_.inner()) {
      case AttentionBlockInner::multi_head: {
        const MultiHeadAttention<T> mha = bound_multi_head();
        if (weights != nullptr) {
          auto r = mha.forward_with_weights(seq);
          y = std::move(r.output);
          *weights = std::move(r.weights);
        } else {
          y = mha.forward(seq);
        }
        break;
      }
      case AttentionBlockInner::window: {
        const detail::WindowCompute<T> wc{window_config_, index_,
                                          {&inner_weight(0), &inner_weight(1), &inner_weight(2), &inner_weight(3),
                                           &inner_weight(4)}};
        const Tensor<T, 4> m = wc.run_map(ConstTensorView<T, 4>(u, B, Hs, Ws, D),
                                          config_.attention_args.shift_size.value_or(0), weights);
        std::copy_n(m.data(), m.size(), out);
        return;
      }
      case AttentionBlockInner::group_query: {
        const auto gqa = bound_inner<GroupedQueryAttention<T>>();
        if (weights != nullptr) {
          auto r = gqa.forward_with_weights(seq);
          y = std::move(r.output);
          *weights = std::move(r.weights);
        } else {
          y = gqa.forward(seq);
        }
        break;
      }
      case AttentionBlockInner::differential: y = bound_inner<DifferentialMultiHeadAttention<T>>().forward(seq); break;
    }
    std::copy_n(y.data(), y.size(), out);
  }

  /// y = gelu(u·W1 + b1)·W2 + b2 over rows of dim.
  void mlp(const T* u, Index rows, T* y) const {
    const Index F = config_.hidden();
    std::vector<T> h(static_cast<std::size_t>(rows * F));
    ops::dense(u, rows, this->weight(slots_.fc1_kernel), &this->weight(slots_.fc1_bias), h.data());
    ops::apply_activation<T>(gelu_, h.data(), rows * F, F, {}, Config::type_name);
    ops::dense(h.data(), rows, this->weight(slots_.fc2_kernel), &this->weight(slots_.fc2_bias), y);
  }

  void norm(const T* x, Index rows, WeightSlot gamma, WeightSlot beta, T* y) const {
    ops::layer_norm<T>(x, rows, config_.dim, this->weight(gamma).data.data(), this->weight(beta).data.data(), kNormEps,
                       y, Config::type_name);
  }

  Tensor<T, 4> run(ConstTensorView<T, 4> x, Tensor<T, 4>* weights) const {
    if (weights != nullptr && config_.inner() == AttentionBlockInner::differential)
      throw ConfigError("attention_block: the differential inner attention has no attention weights to return",
                        std::string(Config::type_name), "attention_type");
    check_input(shape_of(x));
    this->check_weights();
    const Index B = x.dimension(0), Hs = x.dimension(1), Ws = x.dimension(2), D = config_.dim;
    const Index rows = B * Hs * Ws, n = rows * D;
    Tensor<T, 4> out(B, Hs, Ws, D);
    if (rows == 0) {
      if (weights != nullptr) *weights = Tensor<T, 4>();
      return out;
    }
    std::vector<T> a(static_cast<std::size_t>(n)), u(static_cast<std::size_t>(n));
    T* y = out.data();
    if (config_.pre_norm()) {
      norm(x.data(), rows, slots_.ln1_gamma, slots_.ln1_beta, a.data());
      attend(a.data(), B, Hs, Ws, u.data(), weights);
      for (Index i = 0; i < n; ++i) u[static_cast<std::size_t>(i)] += x.data()[i];  // U = X + Attn(LN1(X))
      norm(u.data(), rows, slots_.ln2_gamma, slots_.ln2_beta, a.data());
      mlp(a.data(), rows, y);
      for (Index i = 0; i < n; ++i) y[i] += u[static_cast<std::size_t>(i)];  // Y = U + MLP(LN2(U))
    } else {
      attend(x.data(), B, Hs, Ws, a.data(), weights);
      for (Index i = 0; i < n; ++i) a[static_cast<std::size_t>(i)] += x.data()[i];
      norm(a.data(), rows, slots_.ln1_gamma, slots_.ln1_beta, u.data());  // U = LN1(X + Attn(X))
      mlp(u.data(), rows, a.data());
      for (Index i = 0; i < n; ++i) a[static_cast<std::size_t>(i)] += u[static_cast<std::size_t>(i)];
      norm(a.data(), rows, slots_.ln2_gamma, slots_.ln2_beta, y);  // Y = LN2(U + MLP(U))
    }
    if (const Weight<T>* g = this->optional_weight(slots_.scale))
      for (Index r = 0; r < rows; ++r)
        for (Index c = 0; c < D; ++c) y[r * D + c] *= g->data[static_cast<std::size_t>(c)];
    return out;
  }

  WindowAttentionConfig window_config_{};
  ops::IndexTable index_{};
  Proto proto_{};
  ops::Activation gelu_ = ops::Activation::from_name("gelu", "attention_block");
  Slots slots_;
};

}  // namespace attn
