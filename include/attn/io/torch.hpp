/// \file
/// PyTorch interop: moving trained weights from a PyTorch `state_dict` (saved as safetensors, e.g.
/// with `safetensors.torch.save_file(model.state_dict(), "model.safetensors")`) into attn layers.
///
/// Layouts. `torch.nn.Linear` stores `weight [out, in]` and computes `y = x·weightᵀ + bias`; attn (the
/// Keras layout) stores `kernel [in, out]` and computes `y = x·kernel + bias`, so kernel = weightᵀ and
/// the bias is copied. Heads are split the same way in both (head i owns features [i·d, (i+1)·d)).
///
/// `torch.nn.MultiheadAttention(E, h)` (keys under its module prefix, e.g. "encoder.self_attn."):
///   in_proj_weight [3E, E]  rows [0,E) = W_q, [E,2E) = W_k, [2E,3E) = W_v   (when kdim == vdim == E)
///   q_proj_weight [E, E], k_proj_weight [E, kdim], v_proj_weight [E, vdim]  (otherwise)
///   in_proj_bias [3E] (bias=True), out_proj.weight [E, E], out_proj.bias [E] (bias=True)
/// maps to
///   multi_head (num_heads = h, use_bias = bias):   qkv/kernel [E, 3E] = in_proj_weightᵀ (the Q, K, V
///       column blocks keep torch's order), qkv/bias = in_proj_bias, proj/kernel = out_proj.weightᵀ,
///       proj/bias = out_proj.bias.
///   self_attention / cross_attention (num_heads = h, use_bias = bias, output_projection = true,
///       cross_attention's context_dim = kdim = vdim): query/kernel = W_qᵀ, key/kernel = W_kᵀ,
///       value/kernel = W_vᵀ, the biases are the three thirds of in_proj_bias, output/kernel =
///       out_proj.weightᵀ, output/bias = out_proj.bias.
/// All three scale the logits by 1/sqrt(E/h) as torch does. The number of heads is not stored in a
/// state_dict: build the layer with torch's `num_heads`. Torch's boolean masks are the opposite of
/// attn's (torch: true = blocked; attn: true = attend): pass `!key_padding_mask`.
/// Not representable: add_bias_kv (bias_k, bias_v) is a WeightsError; so is a torch tensor that the
/// layer has no weight for (biases for a layer built with use_bias = false, out_proj for a
/// self/cross_attention without output_projection) unless `allow_extra`, which drops them.
///
/// Grouped-query attention from separate `nn.Linear` projections (Llama-style names by default):
///   q_proj.weight [n_head·d, D], k_proj.weight [n_kv_head·d, D], v_proj.weight [n_kv_head·d, D],
///   o_proj.weight [D, n_head·d] (+ optional .bias)  →  group_query w_q, w_k, w_v, w_o kernels
///   (transposed) and biases, each bias where the layer has one: all four with `use_bias`; q/k/v
///   alone with `qkv_bias` (Qwen2: biases on q/k/v, none on o_proj); o alone with `proj_bias`.
///   The RoPE tables are derived from the layer's config and kept (a layer with `use_rope` false
///   has none).
/// attn's RoPE rotates interleaved pairs (2i, 2i+1). Models using the "rotate half" form (pairs
/// (i, i + r/2), as the Hugging Face Llama/GPT-NeoX code does) are converted exactly with
/// `RopeLayout::half_split`: within each query and key head the first r output features of the
/// projection are reordered so that feature i goes to 2i and feature i + r/2 to 2i + 1; the attention
/// scores, and so the outputs, are unchanged.
///
/// Every function loads through attn::load_weights, so a failure leaves the layer unchanged and the
/// WeightsError names the layer, the weight, expected against found, and the torch module prefix.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "attn/core/error.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/io/safetensors.hpp"
#include "attn/io/weights.hpp"
#include "attn/ops/rope.hpp"

namespace attn::torch {

/// "encoder.attn" + "in_proj_weight" → "encoder.attn.in_proj_weight" (no dot added when the prefix is
/// empty or already ends with one).
inline std::string key(std::string_view prefix, std::string_view name) {
  std::string k(prefix);
  if (!k.empty() && k.back() != '.') k.push_back('.');
  k += name;
  return k;
}

/// The transpose of an nn.Linear weight `[out, in]`: the Keras kernel `[in, out]`.
template <class T>
AnyTensor<T> linear_to_kernel(const AnyTensor<T>& weight, std::string_view what = "nn.Linear weight") {
  if (weight.rank() != 2)
    throw WeightsError(
        fmt::format("{} must have rank 2 ([out, in]), got shape {}", what, shape_str(weight.shape())));
  const Index out = weight.shape()[0], in = weight.shape()[1];
  AnyTensor<T> k(Shape{in, out});
  for (Index o = 0; o < out; ++o)
    for (Index i = 0; i < in; ++i) k.data()[i * out + o] = weight.data()[o * in + i];
  return k;
}

/// Tensor `name` of a torch state_dict, converted to T; WeightsError when it is missing.
template <class T>
AnyTensor<T> read(const SafeTensors& file, std::string_view name) {
  if (!file.contains(name))
    throw WeightsError(fmt::format("torch state_dict '{}' has no tensor '{}'", file.origin(), name));
  return file.tensor<T>(name);
}

/// The Keras kernel `[in, out]` of the nn.Linear weight called `name` (e.g. "decoder.q_proj.weight").
template <class T>
AnyTensor<T> linear_kernel(const SafeTensors& file, std::string_view name) {
  return linear_to_kernel(read<T>(file, name), fmt::format("tensor '{}' of '{}'", name, file.origin()));
}

namespace detail {

/// Rows [begin, end) of a rank-2 tensor (or elements of a rank-1 tensor).
template <class T>
AnyTensor<T> rows(const AnyTensor<T>& t, Index begin, Index end) {
  Shape s = t.shape();
  const Index width = t.rank() == 2 ? s[1] : 1;
  s[0] = end - begin;
  std::vector<T> v(t.data() + begin * width, t.data() + end * width);
  return AnyTensor<T>(s, std::move(v));
}

/// Stacks rank-2 tensors with equal column counts along the rows.
template <class T>
AnyTensor<T> stack_rows(const std::vector<const AnyTensor<T>*>& parts) {
  Index r = 0;
  std::vector<T> v;
  for (const auto* p : parts) {
    r += p->shape()[0];
    v.insert(v.end(), p->values().begin(), p->values().end());
  }
  return AnyTensor<T>(Shape{r, parts.front()->shape()[1]}, std::move(v));
}

template <class T>
void require_shape(const AnyTensor<T>& t, const Shape& expected, std::string_view name,
                   std::string_view origin) {
  bool ok = t.rank() == static_cast<int>(expected.size());
  for (std::size_t i = 0; ok && i < expected.size(); ++i) ok = expected[i] < 0 || expected[i] == t.shape()[i];
  if (ok) return;
  std::vector<std::string> parts;
  for (Index e : expected) parts.push_back(e < 0 ? std::string("*") : std::to_string(e));
  throw WeightsError(fmt::format("torch tensor '{}' in '{}': expected shape [{}], found {}", name, origin,
                                 fmt::join(parts, ", "), shape_str(t.shape())));
}

/// Runs load_weights and adds the torch context to any WeightsError.
template <class L, class T>
void load_converted(L& layer, const TensorDict<T>& dict, std::string_view what, const SafeTensors& file,
                    std::string_view prefix) {
  try {
    load_weights(layer, dict);
  } catch (const WeightsError& e) {
    throw WeightsError(fmt::format("{} [converted from {} under prefix '{}' in '{}']", e.what(), what, prefix,
                                   file.origin()));
  }
}

/// The layer's configuration as JSON (typed layers and AnyLayer).
template <class L>
Json config_json(const L& layer) {
  if constexpr (std::is_same_v<std::remove_cvref_t<decltype(layer.config())>, Json>)
    return layer.config();
  else
    return config_to_json(layer.config());
}

}  // namespace detail

/// The weights of the torch.nn.MultiheadAttention under `prefix` in `file`, renamed and transposed for
/// `layer` (multi_head, self_attention or cross_attention; chosen from the layer's weight names). See
/// the file comment; `allow_extra` drops torch tensors the layer has no weight for.
template <HasWeights L>
TensorDict<weight_scalar_t<L>> multihead_attention_tensors(const L& layer, const SafeTensors& file,
                                                           std::string_view prefix = "",
                                                           LoadOptions options = {}) {
  using T = weight_scalar_t<L>;
  const auto& ws = layer.parameters();
  const std::string label = attn::detail::layer_label(layer);
  const bool fused = ws.find("qkv/kernel") != nullptr;
  const bool split = ws.find("query/kernel") != nullptr;
  if (!fused && !split)
    throw WeightsError(
        fmt::format("{}: nn.MultiheadAttention maps to layers with weights 'qkv/kernel' "
                    "(multi_head) or 'query/kernel' (self_attention, cross_attention); this "
                    "layer has neither",
                    label));
  const auto k = [&](std::string_view n) { return key(prefix, n); };
  const std::string& origin = file.origin();
  if (file.contains(k("bias_k")) || file.contains(k("bias_v")))
    throw WeightsError(
        fmt::format("{}: '{}' holds bias_k/bias_v (nn.MultiheadAttention with add_bias_kv=True), "
                    "which attn layers cannot represent",
                    label, origin));

  // W_q, W_k, W_v in torch's [out, in] layout
  AnyTensor<T> wq, wk, wv;
  Index E = 0;
  if (file.contains(k("in_proj_weight"))) {
    const auto w = read<T>(file, k("in_proj_weight"));
    if (w.rank() != 2 || w.shape()[0] % 3 != 0)
      throw WeightsError(fmt::format("torch tensor '{}' in '{}': expected shape [3·E, E], found {}",
                                     k("in_proj_weight"), origin, shape_str(w.shape())));
    E = w.shape()[0] / 3;
    detail::require_shape(w, {3 * E, E}, k("in_proj_weight"), origin);
    wq = detail::rows(w, 0, E);
    wk = detail::rows(w, E, 2 * E);
    wv = detail::rows(w, 2 * E, 3 * E);
  } else if (file.contains(k("q_proj_weight"))) {
    wq = read<T>(file, k("q_proj_weight"));
    if (wq.rank() != 2)
      throw WeightsError(fmt::format("torch tensor '{}' in '{}': expected shape [E, E], found {}",
                                     k("q_proj_weight"), origin, shape_str(wq.shape())));
    E = wq.shape()[0];
    detail::require_shape(wq, {E, E}, k("q_proj_weight"), origin);
    wk = read<T>(file, k("k_proj_weight"));
    detail::require_shape(wk, {E, -1}, k("k_proj_weight"), origin);
    wv = read<T>(file, k("v_proj_weight"));
    detail::require_shape(wv, {E, -1}, k("v_proj_weight"), origin);
  } else {
    throw WeightsError(
        fmt::format("{}: '{}' has neither '{}' nor '{}': not an nn.MultiheadAttention under prefix "
                    "'{}'",
                    label, origin, k("in_proj_weight"), k("q_proj_weight"), prefix));
  }
  std::optional<AnyTensor<T>> in_bias, out_bias;
  if (file.contains(k("in_proj_bias"))) {
    in_bias = read<T>(file, k("in_proj_bias"));
    detail::require_shape(*in_bias, {3 * E}, k("in_proj_bias"), origin);
  }
  const auto out_w = read<T>(file, k("out_proj.weight"));
  detail::require_shape(out_w, {E, E}, k("out_proj.weight"), origin);
  if (file.contains(k("out_proj.bias"))) {
    out_bias = read<T>(file, k("out_proj.bias"));
    detail::require_shape(*out_bias, {E}, k("out_proj.bias"), origin);
  }

  TensorDict<T> dict;
  const auto no_slot = [&](std::string_view torch_name, std::string_view why) {
    if (!options.allow_extra)
      throw WeightsError(
          fmt::format("{}: torch tensor '{}' in '{}' has no counterpart: {} (allow_extra drops it)", label,
                      k(torch_name), origin, why));
  };
  const auto bias_needed = [&](std::string_view weight, std::string_view torch_name, bool have) {
    if (!have)
      throw WeightsError(
          fmt::format("{}: weight '{}' needs torch tensor '{}', which '{}' lacks (a module built "
                      "with bias=False maps to a layer with use_bias = false)",
                      label, weight, k(torch_name), origin));
  };
  const std::string_view in_b = fused ? "qkv/bias" : "query/bias";
  const std::string_view out_k = fused ? "proj/kernel" : "output/kernel";
  const std::string_view out_b = fused ? "proj/bias" : "output/bias";
  const bool layer_in_bias = ws.find(in_b) != nullptr;
  const bool layer_out = ws.find(out_k) != nullptr;
  const bool layer_out_bias = ws.find(out_b) != nullptr;

  if (fused) {
    if (wk.shape()[1] != wq.shape()[1] || wv.shape()[1] != wq.shape()[1])
      throw WeightsError(
          fmt::format("{}: multi_head projects queries, keys and values from one input, but the "
                      "torch module has kdim/vdim ({}, {}) != embed_dim ({})",
                      label, wk.shape()[1], wv.shape()[1], wq.shape()[1]));
    dict.insert("qkv/kernel", linear_to_kernel(detail::stack_rows<T>({&wq, &wk, &wv})));
  } else {
    dict.insert("query/kernel", linear_to_kernel(wq));
    dict.insert("key/kernel", linear_to_kernel(wk));
    dict.insert("value/kernel", linear_to_kernel(wv));
  }
  if (layer_in_bias) {
    bias_needed(in_b, "in_proj_bias", in_bias.has_value());
    if (fused) {
      dict.insert("qkv/bias", *in_bias);
    } else {
      dict.insert("query/bias", detail::rows(*in_bias, 0, E));
      dict.insert("key/bias", detail::rows(*in_bias, E, 2 * E));
      dict.insert("value/bias", detail::rows(*in_bias, 2 * E, 3 * E));
    }
  } else if (in_bias) {
    no_slot("in_proj_bias", "the layer has no projection biases (use_bias = false)");
  }
  if (layer_out)
    dict.insert(std::string(out_k), linear_to_kernel(out_w));
  else
    no_slot("out_proj.weight", "the layer has no output projection (build it with output_projection = true)");
  if (layer_out_bias) {
    bias_needed(out_b, "out_proj.bias", out_bias.has_value());
    dict.insert(std::string(out_b), *out_bias);
  } else if (out_bias && layer_out) {
    no_slot("out_proj.bias", "the layer has no output bias (use_bias = false)");
  }
  return dict;
}

/// Loads a torch.nn.MultiheadAttention (keys under `prefix`) into a multi_head, self_attention or
/// cross_attention layer (typed or AnyLayer). See the file comment.
template <HasWeights L>
void load_multihead_attention(L& layer, const SafeTensors& file, std::string_view prefix = "",
                              LoadOptions options = {}) {
  const auto dict = multihead_attention_tensors(layer, file, prefix, options);
  detail::load_converted(layer, dict, "torch.nn.MultiheadAttention", file, prefix);
}

/// How a model's RoPE pairs features (see the file comment).
enum class RopeLayout : std::uint8_t {
  interleaved,  ///< pairs (2i, 2i+1): attn's own layout (and RoFormer's); no change
  half_split,   ///< pairs (i, i + r/2): "rotate half" models (Hugging Face Llama, GPT-NeoX, ...)
};

/// The state_dict keys of a grouped-query attention made of four nn.Linear projections.
struct GroupedQueryNames {
  std::string q_weight = "q_proj.weight", k_weight = "k_proj.weight", v_weight = "v_proj.weight",
              o_weight = "o_proj.weight";
  std::string q_bias = "q_proj.bias", k_bias = "k_proj.bias", v_bias = "v_proj.bias", o_bias = "o_proj.bias";
};

struct GroupedQueryOptions {
  GroupedQueryNames names{};
  RopeLayout rope = RopeLayout::interleaved;
  /// allow_extra: torch biases for a layer without biases are dropped instead of an error.
  LoadOptions load{};
};

namespace detail {

/// Reorders the first r output features of each head of a projection (rows of an [out, in] weight, or
/// a bias) from half-split pairs (i, i + r/2) to interleaved pairs (2i, 2i + 1).
template <class T>
AnyTensor<T> half_split_to_interleaved(const AnyTensor<T>& t, Index heads, Index head_dim, Index r) {
  AnyTensor<T> out = t;
  const Index width = t.rank() == 2 ? t.shape()[1] : 1;
  const Index half = r / 2;
  for (Index h = 0; h < heads; ++h)
    for (Index i = 0; i < half; ++i)
      for (Index side = 0; side < 2; ++side) {
        const Index dst = h * head_dim + 2 * i + side;
        const Index src = h * head_dim + i + side * half;
        std::copy(t.data() + src * width, t.data() + (src + 1) * width, out.data() + dst * width);
      }
  return out;
}

}  // namespace detail

/// The weights of a grouped-query attention made of q/k/v/o nn.Linear projections (keys under
/// `prefix`), renamed and transposed for a group_query layer; its RoPE tables are kept.
template <HasWeights L>
TensorDict<weight_scalar_t<L>> grouped_query_tensors(const L& layer, const SafeTensors& file,
                                                     std::string_view prefix = "",
                                                     const GroupedQueryOptions& options = {}) {
  using T = weight_scalar_t<L>;
  const auto& ws = layer.parameters();
  const std::string label = attn::detail::layer_label(layer);
  for (auto n : {"w_q/kernel", "w_k/kernel", "w_v/kernel", "w_o/kernel"})
    if (ws.find(n) == nullptr)
      throw WeightsError(
          fmt::format("{}: grouped-query mapping needs a layer with weights w_q, w_k, w_v and w_o "
                      "(group_query); '{}' is missing",
                      label, n));
  const auto& N = options.names;
  const auto k = [&](std::string_view n) { return key(prefix, n); };
  Index heads_q = 0, heads_kv = 0, d = 0, r = 0;
  if (options.rope == RopeLayout::half_split) {
    const Json c = detail::config_json(layer);
    if (!c.contains("d_model") || !c.contains("n_head") || !c.contains("n_kv_head") ||
        !c.contains("rope_percentage"))
      throw WeightsError(
          fmt::format("{}: RopeLayout::half_split needs d_model, n_head, n_kv_head and "
                      "rope_percentage in the layer's config",
                      label));
    heads_q = c.at("n_head").get<Index>();
    heads_kv = c.at("n_kv_head").get<Index>();
    d = c.at("d_model").get<Index>() / heads_q;
    const bool rope = !c.contains("use_rope") || c.at("use_rope").get<bool>();
    r = rope ? ops::rope_rotary_dim(d, c.at("rope_percentage").get<double>()) : 0;
  }
  const auto permute = [&](const AnyTensor<T>& t, Index heads, std::string_view name) {
    if (options.rope != RopeLayout::half_split) return t;
    if (t.shape()[0] != heads * d)
      throw WeightsError(fmt::format("{}: torch tensor '{}' has {} output features, expected {} heads x {}",
                                     label, name, t.shape()[0], heads, d));
    return detail::half_split_to_interleaved(t, heads, d, r);
  };

  TensorDict<T> dict;
  struct Proj {
    std::string_view attn;
    const std::string& weight;
    const std::string& bias;
    Index heads;
  };
  const Proj projs[] = {{"w_q", N.q_weight, N.q_bias, heads_q},
                        {"w_k", N.k_weight, N.k_bias, heads_kv},
                        {"w_v", N.v_weight, N.v_bias, 0},
                        {"w_o", N.o_weight, N.o_bias, 0}};
  for (const auto& p : projs) {
    auto w = read<T>(file, k(p.weight));
    if (w.rank() != 2)
      throw WeightsError(
          fmt::format("torch tensor '{}' in '{}': expected an nn.Linear weight [out, in], found {}",
                      k(p.weight), file.origin(), shape_str(w.shape())));
    if (p.heads > 0) w = permute(w, p.heads, k(p.weight));
    dict.insert(fmt::format("{}/kernel", p.attn), linear_to_kernel(w));
    const std::string bias_name = fmt::format("{}/bias", p.attn);
    const bool has = file.contains(k(p.bias));
    if (ws.find(bias_name) != nullptr) {
      if (!has)
        throw WeightsError(
            fmt::format("{}: weight '{}' needs torch tensor '{}', which '{}' lacks (projections "
                        "without bias map to a layer without that bias: use_bias, qkv_bias and proj_bias "
                        "false for it)",
                        label, bias_name, k(p.bias), file.origin()));
      auto b = read<T>(file, k(p.bias));
      if (b.rank() != 1)
        throw WeightsError(fmt::format("torch tensor '{}' in '{}': expected a bias [out], found {}",
                                       k(p.bias), file.origin(), shape_str(b.shape())));
      if (p.heads > 0) b = permute(b, p.heads, k(p.bias));
      dict.insert(bias_name, std::move(b));
    } else if (has && !options.load.allow_extra) {
      throw WeightsError(
          fmt::format("{}: torch tensor '{}' in '{}' has no counterpart: the layer has no such bias "
                      "(set use_bias, or qkv_bias / proj_bias for q/k/v / o alone; allow_extra drops it)",
                      label, k(p.bias), file.origin()));
    }
  }
  // everything else the layer holds (the RoPE tables) is derived from its config: keep it
  for (const auto& w : ws)
    if (!w.trainable && !dict.contains(w.name)) dict.insert(w.name, AnyTensor<T>(w.shape, w.data));
  return dict;
}

/// Loads a grouped-query attention made of q/k/v/o nn.Linear projections into a group_query layer.
template <HasWeights L>
void load_grouped_query(L& layer, const SafeTensors& file, std::string_view prefix = "",
                        const GroupedQueryOptions& options = {}) {
  const auto dict = grouped_query_tensors(layer, file, prefix, options);
  detail::load_converted(layer, dict, "nn.Linear q/k/v/o projections", file, prefix);
}

/// A general nn.Linear mapping: for each (attn dense name, torch module name) pair, e.g.
/// ("query", "q_lin"), loads `<attn>/kernel` = `<prefix><torch>.weight`ᵀ and, when the layer has
/// `<attn>/bias`, `<attn>/bias` = `<prefix><torch>.bias`. Every other weight of the layer keeps its
/// value only if it is non-trainable; a trainable weight without a source is a WeightsError.
template <HasWeights L>
void load_linears(L& layer, const SafeTensors& file,
                  const std::vector<std::pair<std::string, std::string>>& map, std::string_view prefix = "",
                  LoadOptions options = {}) {
  using T = weight_scalar_t<L>;
  const auto& ws = layer.parameters();
  const std::string label = attn::detail::layer_label(layer);
  TensorDict<T> dict;
  for (const auto& [attn_name, torch_name] : map) {
    if (ws.find(attn_name + "/kernel") == nullptr)
      throw WeightsError(fmt::format("{}: the mapping names '{}', but the layer has no weight '{}/kernel'",
                                     label, attn_name, attn_name));
    dict.insert(attn_name + "/kernel", linear_kernel<T>(file, key(prefix, torch_name + ".weight")));
    const std::string tb = key(prefix, torch_name + ".bias");
    if (ws.find(attn_name + "/bias") != nullptr)
      dict.insert(attn_name + "/bias", read<T>(file, tb));
    else if (file.contains(tb) && !options.allow_extra)
      throw WeightsError(
          fmt::format("{}: torch tensor '{}' in '{}' has no counterpart: the layer has no weight "
                      "'{}/bias' (allow_extra drops it)",
                      label, tb, file.origin(), attn_name));
  }
  for (const auto& w : ws)
    if (!w.trainable && !dict.contains(w.name)) dict.insert(w.name, AnyTensor<T>(w.shape, w.data));
  detail::load_converted(layer, dict, "nn.Linear projections", file, prefix);
}

}  // namespace attn::torch
