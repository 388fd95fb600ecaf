/// \file
/// Named weight tensors owned by a layer, in a stable order (the order of `parameters()`), with
/// Keras-layout shapes (a dense kernel is `[in, out]`).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/init.hpp"
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

/// The weights of one layer, in registration order.
template <class T>
class WeightSet {
public:
  /// Adds a weight and fills it with the named initializer from a stream derived from `seed` and
  /// the weight's name (so adding a weight never changes the values of the others). Returns its slot.
  std::size_t add(std::string name, Shape shape, std::string_view initializer, std::uint64_t seed,
                  bool trainable = true) {
    Weight<T> w{std::move(name), std::move(shape), {}, trainable};
    w.data.resize(static_cast<std::size_t>(shape_size(w.shape)));
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
};

}  // namespace attn
