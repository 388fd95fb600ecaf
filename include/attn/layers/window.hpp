/// \file
/// `window` — Swin's window multi-head self-attention with a learned relative-position bias (Liu et
/// al., 2021, "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows").
///
/// Shapes: `forward` takes a batch of windows x `[B', N, dim]` with N = window_size² (the tokens of a
/// window in row-major order, token n = r·window_size + c; B' = batch × windows) and returns
/// `[B', N, dim]`. Optional attention weights `[B', num_heads, N, N]` (per window).
/// Forward (w = window_size, h = num_heads, d = dim / h):
///   Q, K, V = split(x·Wqkv + bqkv)                          fused QKV as in multi_head
///   Z[b, i, n, m] = (Q·Kᵀ)[n, m]·scale + table[index[n, m], i] (+ mask)
///   y = merge(softmax(Z) V)·Wproj + bproj
/// with scale = qk_scale, or d^-1/2 when qk_scale is null, and
/// index[n, m] = (r_n − r_m + w − 1)·(2w − 1) + (c_n − c_m + w − 1) (spec Appendix B: for w = 2,
/// [[4,3,1,0],[5,4,2,1],[7,6,4,3],[8,7,5,4]]).
///
/// Masks, beyond the reference (which has none):
/// - `forward(x, masks)` takes the library's masks (ops/masks.hpp) over the scores `[B', h, N, N]`; an
///   additive `bias` there is added on top of the relative-position bias.
/// - `forward_windows(x, window_mask)` takes a per-window additive mask `[nW, N, N]` (Swin's
///   shifted-window mask, ops::shifted_window_mask: 0 or −100), window b' of x using mask b' mod nW
///   (the windows of one image are consecutive, as window_partition lays them out); B' must be a
///   multiple of nW.
/// - `forward_map(x, shift_size)` takes a feature map `[B, H, W, dim]` and does Swin's whole block of
///   attention: zero-pads the bottom and right to multiples of w (any H, W >= 1), rolls the padded map
///   by −shift_size on both axes when shift_size > 0 (0 <= shift_size < w), partitions into windows,
///   attends with the shifted-window mask of the padded map, reverses, rolls back and crops: output
///   `[B, H, W, dim]`. As in Swin's code, the zero-padded tokens are keys like any other (their keys and
///   values are the projection biases). `forward_map_with_weights` also returns the per-window weights
///   `[B·nW, h, N, N]` (windows in window_partition's order). The padding, roll and partition (and
///   their inverses) run as one gather into and one scatter out of per-thread scratch
///   (core/scratch.hpp), split over threads: no intermediate map is allocated.
///
/// Weights (reference names, Keras layout, in this order): `qkv/kernel [dim, 3·dim]`, `qkv/bias
/// [3·dim]` (with `qkv_bias`, default), `proj/kernel [dim, dim]`, `proj/bias [dim]` (with `proj_bias`,
/// default), `relative_position_bias_table [(2w−1)², num_heads]` (Keras TruncatedNormal(stddev=0.02));
/// kernels from `kernel_initializer` (glorot_uniform), biases from `bias_initializer` (zeros). The
/// relative-position index is a constant, not a weight.
///
/// Validation, the reference's messages: `dim`, `num_heads` positive (factory wording), the dropout
/// rates in [0, 1] (factory wording), `window_size` positive ("window_size must be positive, got 0"),
/// then "dim (D) must be divisible by num_heads (h)". Input checks (ShapeError, prefixed "window: "):
/// rank 3, last axis dim, and the reference's "Input sequence length (N) does not match the square of
/// the window_size (w^2 = w²). WindowAttention requires the input to be a single window of tokens.";
/// a window mask of the wrong shape; for forward_map rank 4, channels dim, H, W >= 1, and a shift
/// outside [0, w) (ConfigError naming shift_size). The relative-position index (window_size⁴
/// integers) and the weights are refused above attn::allocation_limit() (ConfigError naming
/// window_size). `kernel_regularizer`, `bias_regularizer` are kept
/// for the round trip; dropout is the identity (inference).
///
/// Differences from the reference (deliberate): the reference multiplies Q by the scale before Q·Kᵀ;
/// here the product is scaled (equal up to float rounding). Its only input is a batch of windows with
/// no mask; the masked and the feature-map entries above are additions. A query row whose every key is
/// masked by a boolean mask yields zeros (the library's contract).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/init.hpp"
#include "attn/core/limits.hpp"
#include "attn/core/param.hpp"
#include "attn/core/parallel.hpp"
#include "attn/core/scratch.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/layers/detail/vision_layers.hpp"
#include "attn/ops/linear.hpp"
#include "attn/ops/masks.hpp"
#include "attn/ops/relpos.hpp"
#include "attn/ops/sdpa.hpp"
#include "attn/ops/window.hpp"

namespace attn {

struct WindowAttentionConfig {
  int dim = 0;
  int window_size = 0;
  int num_heads = 0;
  bool qkv_bias = true;
  std::optional<double> qk_scale{};
  double attn_dropout_rate = 0.0;
  double proj_dropout_rate = 0.0;
  bool proj_bias = true;
  std::string_view kernel_initializer = "glorot_uniform";
  std::string_view bias_initializer = "zeros";

  static constexpr std::string_view type_name = "window";
  static constexpr std::string_view class_name = "WindowAttention";
  static constexpr std::string_view description =
      "Swin-style window multi-head self-attention with a learned relative-position bias.";
  static constexpr std::string_view use_case =
      "Efficient local attention in Swin-like vision transformers (windows of window_size² tokens).";
  static constexpr std::array<std::string_view, 2> training_only{"kernel_regularizer", "bias_regularizer"};

  static constexpr auto fields() {
    using C = WindowAttentionConfig;
    return std::array{
        Field<C>{.name = "dim", .member = member<&C::dim>, .required = true, .example = "8",
                 .wording = Wording::factory, .range = positive,
                 .doc = "Channels of the tokens (input and output width)."},
        Field<C>{.name = "window_size", .member = member<&C::window_size>, .required = true, .example = "2",
                 .range = positive, .doc = "Side of the square window; a window holds window_size² tokens."},
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .required = true, .example = "2",
                 .wording = Wording::factory, .range = positive,
                 .doc = "Number of attention heads; must divide dim."},
        Field<C>{.name = "qkv_bias", .member = member<&C::qkv_bias>, .doc = "Bias of the fused QKV projection."},
        Field<C>{.name = "qk_scale", .member = member<&C::qk_scale>,
                 .doc = "Scale of the logits (null: (dim / num_heads)^-1/2)."},
        Field<C>{.name = "attn_dropout_rate", .member = member<&C::attn_dropout_rate>,
                 .wording = Wording::factory, .range = unit_interval,
                 .doc = "Dropout on the attention weights (identity at inference)."},
        Field<C>{.name = "proj_dropout_rate", .member = member<&C::proj_dropout_rate>,
                 .wording = Wording::factory, .range = unit_interval,
                 .doc = "Dropout on the output projection (identity at inference)."},
        Field<C>{.name = "proj_bias", .member = member<&C::proj_bias>, .doc = "Bias of the output projection."},
        Field<C>{.name = "kernel_initializer", .member = member<&C::kernel_initializer>,
                 .choices = initializer_names, .doc = "Initializer of both kernels."},
        Field<C>{.name = "bias_initializer", .member = member<&C::bias_initializer>,
                 .choices = initializer_names, .doc = "Initializer of both biases."},
    };
  }

  void check(Problems& p) const {
    if (num_heads > 0 && dim % num_heads != 0)
      p.push_back({"num_heads", fmt::format("dim ({}) must be divisible by num_heads ({})", dim, num_heads)});
  }
  [[nodiscard]] Index tokens() const noexcept { return Index(window_size) * window_size; }
  [[nodiscard]] Index table_rows() const noexcept { return (2 * Index(window_size) - 1) * (2 * Index(window_size) - 1); }
};
static_assert(config_table_is_sound<WindowAttentionConfig>());


namespace detail {

/// The weights WindowAttention reads (optional ones null when the config leaves them out).
template <class T>
struct WindowWeights {
  const Weight<T>* qkv_kernel = nullptr;
  const Weight<T>* qkv_bias = nullptr;
  const Weight<T>* proj_kernel = nullptr;
  const Weight<T>* proj_bias = nullptr;
  const Weight<T>* table = nullptr;
};

/// The computation of WindowAttention on given weights (checked by the caller), so that a layer that
/// holds a window attention among its own weights (attention_block) runs the same code.
template <class T>
struct WindowCompute {
  const WindowAttentionConfig& c;
  const ops::IndexTable& index;
  WindowWeights<T> w;

  static void check_input(const WindowAttentionConfig& cfg, const Shape& x) {
    check_shape(WindowAttentionConfig::type_name, "input", x, {-1, -1, cfg.dim}, "([windows, window_size², dim])");
    if (x[1] != cfg.tokens())
      throw ShapeError(fmt::format("window: Input sequence length ({}) does not match the square of the window_size "
                                   "({}^2 = {}). WindowAttention requires the input to be a single window of tokens.",
                                   x[1], cfg.window_size, cfg.tokens()));
  }
  void check_input(const Shape& x) const { check_input(c, x); }

  /// The relative-position bias `[heads, N, N]` of the current table.
  void gather_bias(T* out) const {
    ops::gather_relative_bias(w.table->data.data(), c.num_heads, c.table_rows(),
                              /*heads_first=*/false, index, out, "window");
  }

  Tensor<T, 3> run(ConstTensorView<T, 3> x, const AttentionMasks<T>& masks, const ConstTensorView<T, 3>* wmask,
                   Tensor<T, 4>* weights) const {
    check_input(shape_of(x));
    Tensor<T, 3> y(x.dimension(0), c.tokens(), c.dim);
    run_into(x, masks, wmask, weights, y.data());
    return y;
  }

  /// run, writing y `[B', N, dim]` to `out` (the caller checked x).
  void run_into(ConstTensorView<T, 3> x, const AttentionMasks<T>& masks, const ConstTensorView<T, 3>* wmask,
                Tensor<T, 4>* weights, T* out) const {
    const Index Bw = x.dimension(0), N = c.tokens(), C = c.dim, H = c.num_heads, d = C / H;
    const Index NN = N * N;
    Index nW = 1;
    if (wmask != nullptr) {
      const Shape ms = shape_of(*wmask);
      check_shape(WindowAttentionConfig::type_name, "window_mask", ms, {-1, N, N}, "([windows per image, N, N], additive)");
      nW = ms[0];
      if (nW < 1 || Bw % nW != 0)
        throw ShapeError(fmt::format("window: the {} windows of the input are not a whole number of images of {} "
                                     "windows (window_mask {})",
                                     Bw, nW, shape_str(ms)));
    }
    BoundMasks<T> bound = bind_masks(masks, Bw, H, N, N, WindowAttentionConfig::type_name);
    if (weights) *weights = Tensor<T, 4>(Bw, H, N, N);
    if (Bw == 0) return;
    ScratchFrame scratch;
    T* qkv = scratch.get<T>(Bw * N * 3 * C);
    T* ctx = scratch.get<T>(Bw * N * C);
    ops::dense(x.data(), Bw * N, *w.qkv_kernel, w.qkv_bias, qkv);
    const T scale = static_cast<T>(c.qk_scale ? *c.qk_scale : 1.0 / std::sqrt(double(d)));
    ops::AttentionMask<T>& core = bound.core;
    if (wmask != nullptr) {
      // bias[w, h] = table bias[h] + mask[w], read by window b' as that of b' mod nW: one core call
      // for every window of every image
      T* bias = scratch.get<T>(nW * H * NN);
      gather_bias(bias);
      for (Index w = nW - 1; w >= 0; --w)
        for (Index h = 0; h < H; ++h) {
          const T* src = bias + h * NN;
          const T* m = wmask->data() + w * NN;
          T* dst = bias + (w * H + h) * NN;
          for (Index i = 0; i < NN; ++i) dst[i] = src[i] + m[i];
        }
      core.bias = bias;
      core.bias_sb = H * NN;
      core.bias_sh = NN;
      core.bias_st = N;
      core.bias_period = nW;
      ops::attention(ops::heads_of<T>(qkv, Bw, N, H, d, 3 * C), ops::heads_of<T>(qkv + C, Bw, N, H, d, 3 * C),
                     ops::heads_of<T>(qkv + 2 * C, Bw, N, H, d, 3 * C), ops::heads_out<T>(ctx, Bw, N, H, d, C), scale,
                     core, weights ? weights->data() : nullptr);
    } else {
      const bool user_bias = core.bias != nullptr;
      T* bias = scratch.get<T>((user_bias ? Bw : 1) * H * NN);
      gather_bias(bias);
      if (user_bias) {  // relative-position bias + the caller's bias, [B', H, N, N]
        for (Index b = Bw - 1; b >= 0; --b)
          for (Index h = 0; h < H; ++h)
            for (Index i = 0; i < N; ++i) {
              const T* rel = bias + h * NN + i * N;
              const T* ub = core.bias + b * core.bias_sb + h * core.bias_sh + i * core.bias_st;
              T* dst = bias + ((b * H + h) * N + i) * N;
              for (Index j = 0; j < N; ++j) dst[j] = rel[j] + ub[j];
            }
      }
      core.bias = bias;
      core.bias_sb = user_bias ? H * NN : 0;
      core.bias_sh = NN;
      core.bias_st = N;
      ops::attention(ops::heads_of<T>(qkv, Bw, N, H, d, 3 * C), ops::heads_of<T>(qkv + C, Bw, N, H, d, 3 * C),
                     ops::heads_of<T>(qkv + 2 * C, Bw, N, H, d, 3 * C), ops::heads_out<T>(ctx, Bw, N, H, d, C), scale,
                     core, weights ? weights->data() : nullptr);
    }
    ops::dense(ctx, Bw * N, *w.proj_kernel, w.proj_bias, out);
  }

  Tensor<T, 4> run_map(ConstTensorView<T, 4> x, Index shift, Tensor<T, 4>* weights) const {
    const Shape s = shape_of(x);
    if (s.size() != 4 || s[3] != c.dim || s[1] < 1 || s[2] < 1)
      throw ShapeError(fmt::format("window: forward_map input must have shape [batch, height >= 1, width >= 1, {}], "
                                   "got {}",
                                   c.dim, shape_str(s)));
    const Index w = c.window_size;
    if (shift < 0 || shift >= w)
      throw ConfigError(fmt::format("window: shift_size must lie in [0, window_size) = [0, {}), got {}", w, shift),
                        "window", "shift_size");
    const Index B = s[0], Hs = s[1], Ws = s[2], C = s[3];
    const Index Hp = (Hs + w - 1) / w * w, Wp = (Ws + w - 1) / w * w;
    const Index ph = Hp / w, pw = Wp / w, nW = ph * pw, N = w * w;
    // Padding, the cyclic shift, the partition and their inverses in one gather and one scatter: token
    // (r, q) of window (i, j) of image b reads pixel (sy, sx) = ((i·w + r + shift) mod Hp,
    // (j·w + q + shift) mod Wp) of the zero-padded map (torch.roll by −shift, then the partition), and
    // its output goes back to the same pixel (the reverse, the roll by +shift, the crop).
    const auto each_token = [&](auto&& f) {  // copies only: split over (image, window row)
      parallel_for(B * ph, [&](std::int64_t task) {
        const Index b = static_cast<Index>(task) / ph, i = static_cast<Index>(task) % ph;
        for (Index r = 0; r < w; ++r) {
          const Index sy = (i * w + r + shift) % Hp;
          for (Index j = 0; j < pw; ++j)
            for (Index q = 0; q < w; ++q) {
              const Index t = ((b * ph + i) * pw + j) * N + r * w + q;
              const Index sx = (j * w + q + shift) % Wp;
              f(t, sy < Hs && sx < Ws ? x.data() + ((b * Hs + sy) * Ws + sx) * C : nullptr, b, sy, sx);
            }
        }
      });
    };
    ScratchFrame scratch;
    T* tokens = scratch.get<T>(B * nW * N * C);
    T* yt = scratch.get<T>(B * nW * N * C);
    each_token([&](Index t, const T* src, Index, Index, Index) {
      if (src) std::copy_n(src, C, tokens + t * C);
      else std::fill_n(tokens + t * C, C, T(0));
    });
    const ConstTensorView<T, 3> tv(tokens, B * nW, N, C);
    if (shift > 0) {
      const Tensor<T, 3> mask = ops::shifted_window_mask<T>(Hp, Wp, w, w, shift, shift, "window");
      const ConstTensorView<T, 3> mv(mask.data(), nW, N, N);
      run_into(tv, {}, &mv, weights, yt);
    } else {
      run_into(tv, {}, nullptr, weights, yt);
    }
    Tensor<T, 4> y(B, Hs, Ws, C);
    each_token([&](Index t, const T* src, Index b, Index sy, Index sx) {
      if (src) std::copy_n(yt + t * C, C, y.data() + ((b * Hs + sy) * Ws + sx) * C);
    });
    return y;
  }

};

}  // namespace detail

template <class T = float>
class WindowAttention : public LayerBase<WindowAttention<T>, WindowAttentionConfig, T> {
  using Base = LayerBase<WindowAttention, WindowAttentionConfig, T>;
  friend Base;

public:
  using Config = WindowAttentionConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{3};

  explicit WindowAttention(const Config& config, std::uint64_t seed = 0)
      : Base(config), index_(make_index(config)) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{3, c.tokens(), c.dim}}; }

  /// The relative-position index `[N, N]` (Swin's `relative_position_index`).
  [[nodiscard]] const ops::IndexTable& relative_position_index() const noexcept { return index_; }

  /// y `[B', N, dim]` of windows x `[B', N, dim]`; `masks` over the scores `[B', heads, N, N]`.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x, const AttentionMasks<T>& masks = {}) const {
    return run(view_of<T, 3>(x), masks, nullptr, nullptr);
  }
  /// The output and the attention weights `[B', heads, N, N]`.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] AttentionResult<T> forward_with_weights(const X& x, const AttentionMasks<T>& masks = {}) const {
    AttentionResult<T> r;
    r.output = run(view_of<T, 3>(x), masks, nullptr, &r.weights);
    return r;
  }

  /// y `[B', N, dim]` with a per-window additive mask `[nW, N, N]` (window b' uses mask b' mod nW).
  template <class X, class M>
    requires TensorOf<X, T, 3> && TensorOf<M, T, 3>
  [[nodiscard]] Tensor<T, 3> forward_windows(const X& x, const M& window_mask) const {
    const auto m = view_of<T, 3>(window_mask);
    return run(view_of<T, 3>(x), {}, &m, nullptr);
  }
  template <class X, class M>
    requires TensorOf<X, T, 3> && TensorOf<M, T, 3>
  [[nodiscard]] AttentionResult<T> forward_windows_with_weights(const X& x, const M& window_mask) const {
    const auto m = view_of<T, 3>(window_mask);
    AttentionResult<T> r;
    r.output = run(view_of<T, 3>(x), {}, &m, &r.weights);
    return r;
  }

  /// Swin's windowed attention over a feature map x `[B, H, W, dim]` (see the file comment).
  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] Tensor<T, 4> forward_map(const X& x, Index shift_size = 0) const {
    return run_map(view_of<T, 4>(x), shift_size, nullptr);
  }
  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] FeatureMapResult<T> forward_map_with_weights(const X& x, Index shift_size = 0) const {
    FeatureMapResult<T> r;
    r.output = run_map(view_of<T, 4>(x), shift_size, &r.weights);
    return r;
  }

private:
  using Base::config_, Base::weights_;

  struct Slots {
    WeightSlot qkv_kernel, qkv_bias, proj_kernel, proj_bias, table;
  };

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index c = config_.dim, h = config_.num_heads;
    Slots s;
    s.qkv_kernel = w.add("qkv/kernel", {c, 3 * c}, config_.kernel_initializer, seed);
    if (config_.qkv_bias) s.qkv_bias = w.add("qkv/bias", {3 * c}, config_.bias_initializer, seed);
    s.proj_kernel = w.add("proj/kernel", {c, c}, config_.kernel_initializer, seed);
    if (config_.proj_bias) s.proj_bias = w.add("proj/bias", {c}, config_.bias_initializer, seed);
    s.table = w.add("relative_position_bias_table", {config_.table_rows(), h}, "zeros", seed);
    Weight<T>& table = w[s.table.index];  // Keras TruncatedNormal(stddev=0.02)
    Rng rng(seed ^ hash_name(table.name));
    for (auto& v : table.data) v = static_cast<T>(rng.truncated_normal(0.02));
    slots_ = s;
  }

  void check_input(const Shape& x) const { detail::WindowCompute<T>::check_input(config_, x); }

  /// The relative-position index [N, N] (N = window_size²), refused above attn::allocation_limit().
  static ops::IndexTable make_index(const Config& c) {
    const Index w = c.window_size;
    check_allocation(fmt::format("window: parameter 'window_size' ({}): the relative-position index", w),
                     checked_shape_size({w, w, w, w}), sizeof(Index), "window", "window_size");
    return ops::relative_position_index(w, w, "window");
  }

  detail::WindowWeights<T> weight_ptrs() const {
    return {&this->weight(slots_.qkv_kernel), this->optional_weight(slots_.qkv_bias), &this->weight(slots_.proj_kernel),
            this->optional_weight(slots_.proj_bias), &this->weight(slots_.table)};
  }
  detail::WindowCompute<T> compute() const { return {config_, index_, weight_ptrs()}; }

  Tensor<T, 3> run(ConstTensorView<T, 3> x, const AttentionMasks<T>& masks, const ConstTensorView<T, 3>* wmask,
                   Tensor<T, 4>* weights) const {
    check_input(shape_of(x));
    this->check_weights();  // before compute() takes the weights' addresses
    return compute().run(x, masks, wmask, weights);
  }
  Tensor<T, 4> run_map(ConstTensorView<T, 4> x, Index shift, Tensor<T, 4>* weights) const {
    this->check_weights();
    return compute().run_map(x, shift, weights);
  }

  ops::IndexTable index_;
  Slots slots_;
};

}  // namespace attn
