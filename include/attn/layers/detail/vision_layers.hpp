/// \file
/// Parts shared by the vision layers of the reference module (`window`, `non_local`, `mobile_mqa`,
/// `attention_block`): the result of a forward on a feature map that also returns attention weights,
/// and the flattening of a feature map `[B, H, W, C]` into tokens `[B, H·W, C]` (row-major: token
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

}  // namespace attn
