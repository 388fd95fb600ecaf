/// \file
/// Loading and saving a layer's weights (whole models, a JSON config plus one safetensors file, are in
/// attn/io/model.hpp: this header does not include the factory, so loading one layer's weights does not
/// compile every layer).
///
///   attn::load_weights(layer, source, prefix = "", {.allow_extra = false});
///   attn::save_weights(layer, "layer.safetensors", prefix = "");
///
/// `layer` is any object whose `parameters()` returns an `attn::WeightSet<T>&`: every typed layer and
/// `attn::AnyLayer<T>`. `source` is a `SafeTensors` file already read, a path to one, or an in-memory
/// `TensorDict<T>`. Each weight `w` of the layer is looked up as `prefix + "/" + w.name` (no slash is
/// added when the prefix is empty or already ends with one): e.g. `encoder/qkv/kernel`.
///
/// Loading checks every weight before changing any: a missing tensor, a tensor of the wrong shape or of
/// a dtype that is not F32/F64/F16/BF16, and (unless `allow_extra`) a tensor under the prefix that the
/// layer has no weight for are a WeightsError naming the layer type, the weight, the tensor and what
/// was expected against what was found. Values are converted into copies of the layer's weights, which
/// replace them only when everything succeeded: a failed load leaves the layer as it was.
/// `load_weights` returns the names of the tensors under the prefix that it skipped (only possible
/// with `allow_extra`; empty otherwise), so that e.g. a bias dropped by a mismatched `use_bias` does not
/// go unnoticed.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <span>
#include <sstream>
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
#include "attn/core/weights.hpp"
#include "attn/io/safetensors.hpp"

namespace attn {

/// Options of load_weights.
struct LoadOptions {
  /// Accept tensors under the prefix that the layer has no weight for (they are ignored).
  bool allow_extra = false;
};

/// Named tensors held in memory, in insertion order: the source that converters (e.g. the PyTorch
/// mappings in attn/io/torch.hpp) hand to load_weights.
template <class T>
class TensorDict {
public:
  /// Adds a tensor; a duplicate name is a WeightsError.
  void insert(std::string name, AnyTensor<T> tensor) {
    if (find(name) != nullptr)
      throw WeightsError(fmt::format("TensorDict: duplicate tensor name '{}'", name));
    items_.emplace_back(std::move(name), std::move(tensor));
  }
  [[nodiscard]] const AnyTensor<T>* find(std::string_view name) const {
    for (const auto& [n, t] : items_)
      if (n == name) return &t;
    return nullptr;
  }
  [[nodiscard]] bool contains(std::string_view name) const { return find(name) != nullptr; }
  [[nodiscard]] std::size_t size() const noexcept { return items_.size(); }
  [[nodiscard]] const std::vector<std::pair<std::string, AnyTensor<T>>>& items() const noexcept {
    return items_;
  }
  [[nodiscard]] std::vector<std::string> names() const {
    std::vector<std::string> n;
    for (const auto& [name, _] : items_) n.push_back(name);
    return n;
  }

private:
  std::vector<std::pair<std::string, AnyTensor<T>>> items_;
};

namespace detail {

template <class W>
struct weight_set_scalar {};
template <class T>
struct weight_set_scalar<WeightSet<T>> {
  using type = T;
};

}  // namespace detail

/// Anything with `parameters()` returning a mutable `WeightSet<T>&`.
template <class L>
concept HasWeights = requires(L& l) {
  typename detail::weight_set_scalar<std::remove_cvref_t<decltype(l.parameters())>>::type;
  requires std::is_lvalue_reference_v<decltype(l.parameters())>;
};

/// The scalar of a layer's weights.
template <HasWeights L>
using weight_scalar_t =
    typename detail::weight_set_scalar<std::remove_cvref_t<decltype(std::declval<L&>().parameters())>>::type;

namespace detail {

/// "multi_head (MultiHeadAttention)", or for a named AnyLayer "multi_head 'enc' (MultiHeadAttention)".
template <class L>
std::string layer_label(const L& layer) {
  if constexpr (requires {
                  L::Config::type_name;
                  L::Config::class_name;
                }) {
    return fmt::format("{} ({})", L::Config::type_name, L::Config::class_name);
  } else if constexpr (requires {
                         layer.type();
                         layer.class_name();
                         layer.name();
                       }) {
    if (layer.name().empty()) return fmt::format("{} ({})", layer.type(), layer.class_name());
    return fmt::format("{} '{}' ({})", layer.type(), layer.name(), layer.class_name());
  } else {
    return "layer";
  }
}

/// "" stays ""; "enc" becomes "enc/"; "enc/" stays.
inline std::string weight_prefix(std::string_view prefix) {
  std::string p(prefix);
  if (!p.empty() && p.back() != '/') p.push_back('/');
  return p;
}

/// What a source says about one tensor.
struct SourceTensor {
  Shape shape;
  std::string dtype;
  bool readable = false;
};

inline std::optional<SourceTensor> source_lookup(const SafeTensors& s, std::string_view name) {
  const auto* e = s.find(name);
  if (e == nullptr) return std::nullopt;
  return SourceTensor{e->shape, std::string(dtype_name(e->dtype)), dtype_is_readable(e->dtype)};
}
inline std::vector<std::string> source_names(const SafeTensors& s) { return s.names(); }
inline std::string source_origin(const SafeTensors& s) { return fmt::format("'{}'", s.origin()); }
template <class T>
void source_read(const SafeTensors& s, std::string_view name, std::vector<T>& out) {
  s.read_into<T>(name, std::span<T>(out));
}

template <class U>
std::optional<SourceTensor> source_lookup(const TensorDict<U>& s, std::string_view name) {
  const auto* t = s.find(name);
  if (t == nullptr) return std::nullopt;
  return SourceTensor{t->shape(), std::string(dtype_name(dtype_of<U>())), true};
}
template <class U>
std::vector<std::string> source_names(const TensorDict<U>& s) {
  return s.names();
}
template <class U>
std::string source_origin(const TensorDict<U>&) {
  return "the in-memory tensors";
}
template <class T, class U>
void source_read(const TensorDict<U>& s, std::string_view name, std::vector<T>& out) {
  const auto* t = s.find(name);
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = narrow_value<T>(static_cast<double>(t->data()[i]),
                             [&] { return fmt::format("tensor '{}' at flat index {}", name, i); });
}

/// Up to `n` names of `all` for a message.
inline std::string some_names(const std::vector<std::string>& all, std::size_t n = 8) {
  std::vector<std::string> shown;
  for (std::size_t i = 0; i < all.size() && i < n; ++i) shown.push_back("'" + all[i] + "'");
  if (all.size() > n) shown.push_back(fmt::format("... ({} in all)", all.size()));
  return shown.empty() ? "no tensors" : fmt::format("{}", fmt::join(shown, ", "));
}

/// The transactional load; returns the tensor names it used.
template <class L, class Source>
std::vector<std::string> load_weights_impl(L& layer, const Source& source, std::string_view prefix,
                                           LoadOptions options) {
  using T = weight_scalar_t<L>;
  auto& current = layer.parameters();
  WeightSet<T> staged = current;
  const std::string pre = weight_prefix(prefix);
  const std::string label = layer_label(layer);
  std::vector<std::string> used;
  for (auto& w : staged) {
    const std::string full = pre + w.name;
    const auto found = source_lookup(source, full);
    if (!found) {
      std::vector<std::string> near;
      for (auto& n : source_names(source))
        if (n.starts_with(pre)) near.push_back(n);
      throw WeightsError(
          fmt::format("{}: weight '{}' is missing: expected tensor '{}' of shape {} in {}, which has {}{}",
                      label, w.name, full, shape_str(w.shape), source_origin(source),
                      pre.empty() ? "" : fmt::format("under '{}': ", pre), some_names(near)));
    }
    if (!found->readable)
      throw WeightsError(
          fmt::format("{}: weight '{}': tensor '{}' in {} has dtype {}; expected F32, F64, F16 or BF16",
                      label, w.name, full, source_origin(source), found->dtype));
    if (found->shape != w.shape)
      throw WeightsError(fmt::format("{}: weight '{}': expected shape {}, found {} (tensor '{}' in {})",
                                     label, w.name, shape_str(w.shape), shape_str(found->shape), full,
                                     source_origin(source)));
    source_read<T>(source, full, w.data);
    used.push_back(full);
  }
  if (!options.allow_extra) {
    std::vector<std::string> extra;
    for (auto& n : source_names(source))
      if (n.starts_with(pre) && std::find(used.begin(), used.end(), n) == used.end()) extra.push_back(n);
    if (!extra.empty()) {
      std::vector<std::string> expected;
      for (const auto& w : staged) expected.push_back(w.name);
      throw WeightsError(
          fmt::format("{}: unexpected tensor(s) {} in {}{}: the layer's weights are {} (set "
                      "allow_extra to ignore other tensors)",
                      label, some_names(extra), source_origin(source),
                      pre.empty() ? "" : fmt::format(" under '{}'", pre), some_names(expected, 16)));
    }
  }
  current = std::move(staged);
  return used;
}

}  // namespace detail

namespace detail {
/// The source's tensor names under `prefix` that are not in `used`, in the source's order.
template <class Source>
std::vector<std::string> skipped_names(const Source& source, std::string_view prefix,
                                       const std::vector<std::string>& used) {
  const std::string pre = weight_prefix(prefix);
  std::vector<std::string> skipped;
  for (auto& n : source_names(source))
    if (n.starts_with(pre) && std::find(used.begin(), used.end(), n) == used.end()) skipped.push_back(n);
  return skipped;
}
}  // namespace detail

/// Loads every weight of `layer` from a safetensors file already read. See the file comment. Returns
/// the full names of the tensors under the prefix that were skipped (with `allow_extra`).
template <HasWeights L>
std::vector<std::string> load_weights(L& layer, const SafeTensors& file, std::string_view prefix = "",
                                      LoadOptions options = {}) {
  return detail::skipped_names(file, prefix, detail::load_weights_impl(layer, file, prefix, options));
}
/// Loads every weight of `layer` from the safetensors file at `path`; returns the skipped names.
template <HasWeights L>
std::vector<std::string> load_weights(L& layer, const std::filesystem::path& path, std::string_view prefix = "",
                                      LoadOptions options = {}) {
  return load_weights(layer, SafeTensors::open(path), prefix, options);
}
/// Loads every weight of `layer` from in-memory tensors; returns the skipped names.
template <HasWeights L, class U>
std::vector<std::string> load_weights(L& layer, const TensorDict<U>& tensors, std::string_view prefix = "",
                                      LoadOptions options = {}) {
  return detail::skipped_names(tensors, prefix, detail::load_weights_impl(layer, tensors, prefix, options));
}

/// Adds every weight of `layer` (as F32 for float layers, F64 for double) to `writer` under `prefix`.
template <HasWeights L>
void add_weights(SafeTensorsWriter& writer, const L& layer, std::string_view prefix = "") {
  using T = weight_scalar_t<L>;
  const std::string pre = detail::weight_prefix(prefix);
  for (const auto& w : layer.parameters()) writer.add<T>(pre + w.name, w.shape, std::span<const T>(w.data));
}
/// Writes every weight of `layer` to the safetensors file at `path`, under `prefix`.
template <HasWeights L>
void save_weights(const L& layer, const std::filesystem::path& path, std::string_view prefix = "") {
  SafeTensorsWriter writer;
  writer.set_metadata("format", "attn");
  add_weights(writer, layer, prefix);
  writer.write(path);
}

}  // namespace attn
