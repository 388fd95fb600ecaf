/// \file
/// Parts shared by the vision layers of the reference module (`window`, `non_local`, `mobile_mqa`,
/// `attention_block`): the result of a forward on a feature map that also returns attention weights,
/// the forward door of a layer that takes only a feature map, and the flattening of a feature map `[B, H, W, C]` into tokens `[B, H·W, C]` (row-major: token
/// r·W + c), which is a view of the same memory.
#pragma once

#include "attn/core/tensor.hpp"

namespace attn {

/// Output of the `*_with_weights` forms of the layers on feature maps: the output `[B, H, W, C_out]`
/// and the attention weights `[batch', heads, queries, keys]` (each layer documents its axes).
template <class T>
struct FeatureMapResult {
  Tensor<T, 4> output;
  Tensor<T, 4> weights;
};

namespace detail {

/// The forward door of a layer that takes a feature map `[B, H, W, C]` only: `forward(x)` → out
/// `[B, H', W', C']` and `forward_with_weights(x)` → the output and the attention weights, over the
/// layer's `Tensor<T, 4> run(ConstTensorView<T, 4>, Tensor<T, 4>* weights) const` (a friend of this
/// class when private; weights null when not asked for). Each layer documents its shapes.
template <class Layer, class T>
class MapDoor {
public:
  /// out `[B, H', W', C']` of x `[B, H, W, C]`.
  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] Tensor<T, 4> forward(const X& x) const {
    return layer().run(view_of<T, 4>(x), nullptr);
  }
  /// The output and the attention weights.
  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] FeatureMapResult<T> forward_with_weights(const X& x) const {
    FeatureMapResult<T> r;
    r.output = layer().run(view_of<T, 4>(x), &r.weights);
    return r;
  }

private:
  [[nodiscard]] const Layer& layer() const noexcept { return static_cast<const Layer&>(*this); }
};

}  // namespace detail

}  // namespace attn
