/// \file
/// Tensor aliases (row-major, channels-last), shapes, shape checks and AnyTensor, the rank-erased
/// tensor that the factory's type-erased layers take and return.
#pragma once

#include <array>
#include <cstddef>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "attn/core/eigen.hpp"
#include "attn/core/error.hpp"

namespace attn {

using Index = Eigen::Index;

/// Owning tensor: row-major, so memory order matches NumPy, PyTorch and Keras.
template <class T, int R>
using Tensor = Eigen::Tensor<T, R, Eigen::RowMajor, Index>;
/// Mutable view over contiguous row-major storage.
template <class T, int R>
using TensorView = Eigen::TensorMap<Tensor<T, R>>;
/// Read-only view over contiguous row-major storage.
template <class T, int R>
using ConstTensorView = Eigen::TensorMap<const Tensor<T, R>>;

/// Row-major dynamic matrix and maps over tensor storage (the fast GEMM path).
template <class T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MatrixMap = Eigen::Map<Matrix<T>>;
template <class T>
using ConstMatrixMap = Eigen::Map<const Matrix<T>>;
template <class T>
using RowVector = Eigen::Matrix<T, 1, Eigen::Dynamic, Eigen::RowMajor>;

/// A shape: extents, outermost first.
using Shape = std::vector<Index>;

/// "[2, 3, 4]"
inline std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

inline Index shape_size(const Shape& s) {
  return std::accumulate(s.begin(), s.end(), Index{1}, std::multiplies<>());
}

/// a·b and a + b for non-negative extents, or nothing when the result overflows Index.
[[nodiscard]] inline std::optional<Index> checked_mul(Index a, Index b) noexcept {
  Index r = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}
[[nodiscard]] inline std::optional<Index> checked_add(Index a, Index b) noexcept {
  Index r = 0;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

/// The number of elements of `shape`, or nothing when an extent is negative or a partial product
/// overflows Index (every partial product is checked, whatever a zero extent elsewhere makes of the
/// total).
[[nodiscard]] inline std::optional<Index> checked_shape_size(const Shape& shape) noexcept {
  std::optional<Index> n = 1;
  for (Index e : shape)
    if (!(n = checked_mul(*n, e))) return std::nullopt;
  return n;
}

/// Throws ShapeError "<layer>: the <what> [..] has more elements than a 64-bit index counts" unless the
/// element count of `shape` (whose negative extents stand for an extent that overflowed already) fits
/// Index: the output of an op whose extents come from arguments, checked before it is allocated.
inline void check_element_count(std::string_view layer, std::string_view what, const Shape& shape) {
  if (!checked_shape_size(shape))
    throw ShapeError(fmt::format("{}: the {} {} has more elements than a 64-bit index counts", layer, what,
                                 shape_str(shape)));
}

/// A tensor (uninitialised, as Eigen's) of extents `dims`, after check_element_count.
template <class T, class... I>
[[nodiscard]] Tensor<T, static_cast<int>(sizeof...(I))> checked_tensor(std::string_view layer, std::string_view what,
                                                                      I... dims) {
  check_element_count(layer, what, Shape{static_cast<Index>(dims)...});
  return Tensor<T, static_cast<int>(sizeof...(I))>(static_cast<Index>(dims)...);
}

/// The shape of any Eigen tensor expression with known rank.
template <class TensorLike>
Shape shape_of(const TensorLike& t) {
  Shape s;
  const auto& d = t.dimensions();
  for (std::size_t i = 0; i < d.size(); ++i) s.push_back(static_cast<Index>(d[i]));
  return s;
}

/// Throws ShapeError "<layer>: <arg> must have shape <expected>, got <actual>" when `actual` does not
/// match `expected`; an entry of -1 in `expected` matches any extent.
inline void check_shape(std::string_view layer, std::string_view arg, const Shape& actual,
                        const Shape& expected, std::string_view meaning = {}) {
  bool ok = actual.size() == expected.size();
  for (std::size_t i = 0; ok && i < actual.size(); ++i)
    ok = expected[i] < 0 || expected[i] == actual[i];
  if (ok) return;
  std::vector<std::string> parts;
  for (Index e : expected) parts.push_back(e < 0 ? std::string("*") : std::to_string(e));
  throw ShapeError(fmt::format("{}: {} must have shape [{}]{}{}, got {}", layer, arg,
                               fmt::join(parts, ", "), meaning.empty() ? "" : " ", meaning,
                               shape_str(actual)));
}

/// A tensor whose rank is known at run time only: a shape plus contiguous row-major data.
template <class T>
class AnyTensor {
public:
  AnyTensor() = default;
  explicit AnyTensor(Shape shape) : shape_(std::move(shape)), data_(checked_size(shape_), T(0)) {}
  AnyTensor(Shape shape, std::vector<T> data) : shape_(std::move(shape)), data_(std::move(data)) {
    const Index n = checked_size(shape_);
    if (static_cast<Index>(data_.size()) != n)
      throw ShapeError(
          fmt::format("AnyTensor: shape {} needs {} values, got {}", shape_str(shape_), n, data_.size()));
  }
  template <int R>
  AnyTensor(const Tensor<T, R>& t)  // NOLINT(google-explicit-constructor): a tensor is an AnyTensor
      : shape_(shape_of(t)), data_(t.data(), t.data() + t.size()) {}

  [[nodiscard]] int rank() const noexcept { return static_cast<int>(shape_.size()); }
  [[nodiscard]] const Shape& shape() const noexcept { return shape_; }
  [[nodiscard]] Index size() const noexcept { return static_cast<Index>(data_.size()); }
  [[nodiscard]] T* data() noexcept { return data_.data(); }
  [[nodiscard]] const T* data() const noexcept { return data_.data(); }
  [[nodiscard]] const std::vector<T>& values() const noexcept { return data_; }

  /// A view of rank R; throws ShapeError naming `what` when the rank differs.
  template <int R>
  [[nodiscard]] ConstTensorView<T, R> view(std::string_view what = "tensor") const {
    check_rank<R>(what);
    return ConstTensorView<T, R>(data_.data(), to_array<R>());
  }
  template <int R>
  [[nodiscard]] TensorView<T, R> view(std::string_view what = "tensor") {
    check_rank<R>(what);
    return TensorView<T, R>(data_.data(), to_array<R>());
  }
  /// An owning copy of rank R.
  template <int R>
  [[nodiscard]] Tensor<T, R> to_tensor(std::string_view what = "tensor") const {
    return Tensor<T, R>(view<R>(what));
  }

  friend bool operator==(const AnyTensor& a, const AnyTensor& b) {
    return a.shape_ == b.shape_ && a.data_ == b.data_;
  }

private:
  static Index checked_size(const Shape& s) {
    for (Index e : s)
      if (e < 0) throw ShapeError(fmt::format("AnyTensor: negative extent in shape {}", shape_str(s)));
    const std::optional<Index> n = checked_shape_size(s);
    if (!n)
      throw ShapeError(
          fmt::format("AnyTensor: the element count of shape {} overflows a 64-bit index", shape_str(s)));
    return *n;
  }
  template <int R>
  void check_rank(std::string_view what) const {
    if (rank() != R)
      throw ShapeError(fmt::format("{} must have rank {}, got rank {} with shape {}", what, R, rank(),
                                   shape_str(shape_)));
  }
  template <int R>
  [[nodiscard]] std::array<Index, R> to_array() const {
    std::array<Index, R> a{};
    for (int i = 0; i < R; ++i) a[static_cast<std::size_t>(i)] = shape_[static_cast<std::size_t>(i)];
    return a;
  }

  Shape shape_;
  std::vector<T> data_;
};

}  // namespace attn

namespace attn {

/// Any row-major Eigen tensor or tensor map of scalar T and rank R (owning or not).
template <class X, class T, int R>
concept TensorOf = requires(const X& x) {
  { x.data() } -> std::convertible_to<const T*>;
  { x.dimensions() };
} && (std::remove_cvref_t<X>::NumIndices == R) &&
                   (static_cast<int>(std::remove_cvref_t<X>::Layout) == static_cast<int>(Eigen::RowMajor));

/// A read-only view of any TensorOf<X, T, R>.
template <class T, int R, class X>
  requires TensorOf<X, T, R>
ConstTensorView<T, R> view_of(const X& x) {
  return ConstTensorView<T, R>(static_cast<const T*>(x.data()), x.dimensions());
}

}  // namespace attn
