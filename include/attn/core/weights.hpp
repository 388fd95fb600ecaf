/// \file
/// Named weight tensors owned by a layer, in a stable order (the order of `parameters()`), with
/// Keras-layout shapes (a dense kernel is `[in, out]`).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/init.hpp"
#include "attn/core/limits.hpp"
#include "attn/core/tensor.hpp"

namespace attn {

/// One named weight tensor: contiguous row-major storage.
template <class T>
struct Weight {
  std::string name;
  Shape shape;
  std::vector<T> data;
  bool trainable = true;

  [[nodiscard]] Index size() const noexcept { return static_cast<Index>(data.size()); }
  /// The weight as a matrix: rows = first extent, columns = the product of the others (a rank-1
  /// weight is one row).
  [[nodiscard]] ConstMatrixMap<T> matrix() const {
    return ConstMatrixMap<T>(data.data(), rows(), size() / std::max<Index>(rows(), 1));
  }
  [[nodiscard]] MatrixMap<T> matrix() {
    return MatrixMap<T>(data.data(), rows(), size() / std::max<Index>(rows(), 1));
  }
  /// A rank-1 weight (a bias) as a row vector.
  [[nodiscard]] Eigen::Map<const RowVector<T>> row() const {
    return Eigen::Map<const RowVector<T>>(data.data(), size());
  }
  template <int R>
  [[nodiscard]] ConstTensorView<T, R> view() const {
    std::array<Index, R> d{};
    for (int i = 0; i < R; ++i) d[static_cast<std::size_t>(i)] = shape.at(static_cast<std::size_t>(i));
    return ConstTensorView<T, R>(data.data(), d);
  }

private:
  [[nodiscard]] Index rows() const noexcept { return shape.size() <= 1 ? 1 : shape[0]; }
};

namespace detail {
/// Thrown by WeightSet::add when a weight would take the set past attn::allocation_limit(); the layer
/// (LayerBase::reset_parameters) rethrows it as a ConfigError naming itself and the parameter.
struct AllocationRefused : ConfigError {
  std::string weight;
  Shape shape;
  AllocationRefused(const std::string& message, std::string w, Shape s)
      : ConfigError(message), weight(std::move(w)), shape(std::move(s)) {}
};
}  // namespace detail

/// The weights of one layer, in registration order.
template <class T>
class WeightSet {
public:
  /// Adds a weight and fills it with the named initializer from a stream derived from `seed` and
  /// the weight's name (so adding a weight never changes the values of the others). Returns its slot.
  /// Before allocating, the weight's bytes are computed with overflow checks and added to the set's
  /// total; a total above attn::allocation_limit() (core/limits.hpp) throws a ConfigError naming the
  /// weight, its shape and the bytes, and nothing is allocated.
  std::size_t add(std::string name, Shape shape, std::string_view initializer, std::uint64_t seed,
                  bool trainable = true) {
    const std::optional<Index> n = checked_shape_size(shape);
    const std::optional<std::size_t> bytes = n ? checked_bytes(*n, sizeof(T)) : std::nullopt;
    if (!bytes || *bytes > allocation_limit() || bytes_ + *bytes > allocation_limit()) {
      const std::optional<std::size_t> total =
          bytes && bytes_ <= std::numeric_limits<std::size_t>::max() - *bytes ? std::optional(bytes_ + *bytes)
                                                                              : std::nullopt;
      throw detail::AllocationRefused(
          fmt::format("weight '{}' of shape {} needs {} (the layer's weights up to it: {}), above the allocation "
                      "limit of {} (attn::set_allocation_limit raises it)",
                      name, shape_str(shape), bytes_str(bytes), bytes_str(total), bytes_str(allocation_limit())),
          name, shape);
    }
    bytes_ += *bytes;
    Weight<T> w{std::move(name), std::move(shape), {}, trainable};
    w.data.resize(static_cast<std::size_t>(*n));
    Rng rng(seed ^ hash_name(w.name));
    initialize(initializer, w.shape, w.data.data(), rng);
    weights_.push_back(std::move(w));
    return weights_.size() - 1;
  }

  [[nodiscard]] std::size_t size() const noexcept { return weights_.size(); }
  [[nodiscard]] bool empty() const noexcept { return weights_.empty(); }
  [[nodiscard]] const Weight<T>& operator[](std::size_t i) const { return weights_[i]; }
  [[nodiscard]] Weight<T>& operator[](std::size_t i) { return weights_[i]; }
  [[nodiscard]] auto begin() const noexcept { return weights_.begin(); }
  [[nodiscard]] auto end() const noexcept { return weights_.end(); }
  [[nodiscard]] auto begin() noexcept { return weights_.begin(); }
  [[nodiscard]] auto end() noexcept { return weights_.end(); }

  /// The weight called `name`, or nullptr.
  [[nodiscard]] const Weight<T>* find(std::string_view name) const noexcept {
    auto it = std::find_if(weights_.begin(), weights_.end(),
                           [&](const Weight<T>& w) { return w.name == name; });
    return it == weights_.end() ? nullptr : &*it;
  }
  [[nodiscard]] Weight<T>* find(std::string_view name) noexcept {
    return const_cast<Weight<T>*>(std::as_const(*this).find(name));
  }

  /// Total number of scalars (trainable and not).
  [[nodiscard]] Index count() const noexcept {
    Index n = 0;
    for (const auto& w : weights_) n += w.size();
    return n;
  }

private:
  std::vector<Weight<T>> weights_;
  std::size_t bytes_ = 0;  // bytes added through add()
};

}  // namespace attn
