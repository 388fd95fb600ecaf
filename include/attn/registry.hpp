/// \file
/// The registry: the single list of layer types the factory knows, in the reference's key order
/// (types beyond the reference follow it).
/// Adding a type: include its header and add one line to `Registry`.
#pragma once

#include <algorithm>
#include <array>
#include <string_view>
#include <tuple>

#include "attn/core/param.hpp"
#include "attn/layers/activation_by_name.hpp"
#include "attn/layers/adaptive_multi_head.hpp"
#include "attn/layers/anchor.hpp"
#include "attn/layers/anti_alias_downsample.hpp"
#include "attn/layers/attention_block.hpp"
#include "attn/layers/batchnorm_with_activation.hpp"
#include "attn/layers/bias_positional_embedding.hpp"
#include "attn/layers/capsule_routing.hpp"
#include "attn/layers/cbam.hpp"
#include "attn/layers/channel.hpp"
#include "attn/layers/channel_affine.hpp"
#include "attn/layers/context_attention.hpp"
#include "attn/layers/conv2d_no_bias.hpp"
#include "attn/layers/conv_positional_encoding.hpp"
#include "attn/layers/conv_relative_positional_encoding.hpp"
#include "attn/layers/cross_attention.hpp"
#include "attn/layers/cross_covariance_attention.hpp"
#include "attn/layers/differential.hpp"
#include "attn/layers/drop_block.hpp"
#include "attn/layers/fnet.hpp"
#include "attn/layers/group_query.hpp"
#include "attn/layers/hopfield.hpp"
#include "attn/layers/layer_norm.hpp"
#include "attn/layers/light_mhsa_with_multi_head_relative_position_embedding.hpp"
#include "attn/layers/mhsa_with_multi_head_position.hpp"
#include "attn/layers/mhsa_with_multi_head_position_and_strides.hpp"
#include "attn/layers/mhsa_with_multi_head_relative_position_embedding.hpp"
#include "attn/layers/mhsa_with_relative_position_embedding.hpp"
#include "attn/layers/mlp_block.hpp"
#include "attn/layers/mlp_pairwise_positional_embedding.hpp"
#include "attn/layers/mobile_mqa.hpp"
#include "attn/layers/multi_head.hpp"
#include "attn/layers/multi_head_positional_embedding.hpp"
#include "attn/layers/multi_head_relative_positional_embedding.hpp"
#include "attn/layers/multi_head_relative_positional_kernel_bias.hpp"
#include "attn/layers/multi_head_self_attention.hpp"
#include "attn/layers/multi_head_self_attention_channel.hpp"
#include "attn/layers/non_local.hpp"
#include "attn/layers/perceiver.hpp"
#include "attn/layers/positional_embedding.hpp"
#include "attn/layers/positional_encoding_fourier.hpp"
#include "attn/layers/relative_positional_embedding.hpp"
#include "attn/layers/se_module.hpp"
#include "attn/layers/self_attention.hpp"
#include "attn/layers/shared_weights_cross.hpp"
#include "attn/layers/spatial.hpp"
#include "attn/layers/window.hpp"

namespace attn {

/// A compile-time list of layer class templates.
template <template <class> class... Layers>
struct LayerTypes {
  static constexpr std::size_t size = sizeof...(Layers);
  template <class T>
  using layers = std::tuple<Layers<T>...>;
  using configs = std::tuple<typename Layers<float>::Config...>;
  static constexpr std::array<std::string_view, size> names{Layers<float>::Config::type_name...};
};

// clang-format off
using Registry = LayerTypes<
    ChannelAttention,       // channel
    CBAM,                   // cbam
    GroupedQueryAttention,  // group_query
    MultiHeadAttention,     // multi_head
    SpatialAttention,       // spatial
    // beyond the reference registry: the basics
    SelfAttention,          // self_attention
    CrossAttention,         // cross_attention
    // the sequence layers of the reference module
    DifferentialMultiHeadAttention,  // differential
    FNetFourierTransform,            // fnet
    HopfieldAttention,               // hopfield
    SharedWeightsCrossAttention,     // shared_weights_cross
    AnchorAttention,        // anchor
    PerceiverAttention,      // perceiver
    // the vision layers of the reference registry
    MobileMQA,              // mobile_mqa
    NonLocalAttention,      // non_local
    WindowAttention,         // window
    // the basic blocks of KCAM's common_layers (spec kcam_attention_layers.md §3)
    ActivationByName,       // activation_by_name
    AntiAliasDownsample,    // anti_alias_downsample
    BatchnormWithActivation,  // batchnorm_with_activation
    Conv2dNoBias,           // conv2d_no_bias
    DropBlock,              // drop_block
    LayerNorm,              // layer_norm
    SEModule,               // se_module
    ChannelAffine,          // channel_affine
    MlpBlock,                // mlp_block
    // positional embeddings (spec kcam_attention_layers.md §4), in the order of their issue
    BiasPositionalEmbedding,               // bias_positional_embedding
    MultiHeadPositionalEmbedding,          // multi_head_positional_embedding
    MultiHeadRelativePositionalEmbedding,  // multi_head_relative_positional_embedding
    PositionalEmbedding,                   // positional_embedding
    PositionalEncodingFourier,             // positional_encoding_fourier
    RelativePositionalEmbedding,            // relative_positional_embedding
    MultiHeadRelativePositionalKernelBias,  // multi_head_relative_positional_kernel_bias
    MlpPairwisePositionalEmbedding,         // mlp_pairwise_positional_embedding
    ConvPositionalEncoding,                 // conv_positional_encoding
    ConvRelativePositionalEncoding,         // conv_relative_positional_encoding
    // beyond the reference registry: the network of the seed notes
    ContextAttention,                // context_attention
    // the rest of the sequence layers of the reference module
    AdaptiveMultiHeadAttention,      // adaptive_multi_head
    CapsuleRoutingSelfAttention,     // capsule_routing
    // the global attention blocks of KCAM (spec kcam_attention_layers.md §5), in the order of their issue
    MultiHeadSelfAttention,                      // multi_head_self_attention
    CrossCovarianceAttention,                    // cross_covariance_attention
    MultiHeadSelfAttentionChannel,               // multi_head_self_attention_channel
    MhsaWithRelativePositionEmbedding,           // mhsa_with_relative_position_embedding
    MhsaWithMultiHeadRelativePositionEmbedding,  // mhsa_with_multi_head_relative_position_embedding
    MhsaWithMultiHeadPosition,                   // mhsa_with_multi_head_position
    MhsaWithMultiHeadPositionAndStrides,         // mhsa_with_multi_head_position_and_strides
    LightMhsaWithMultiHeadRelativePositionEmbedding,  // light_mhsa_with_multi_head_relative_position_embedding
    AttentionBlock                                    // attention_block
>;
// clang-format on

/// The registered type strings, in registry order.
inline constexpr auto attention_type_names = Registry::names;

/// True when `type` names a registered layer; usable in static_assert.
constexpr bool is_attention_type(std::string_view type) noexcept {
  return std::find(attention_type_names.begin(), attention_type_names.end(), type) !=
         attention_type_names.end();
}

namespace detail {
constexpr bool names_unique() {
  for (std::size_t i = 0; i < attention_type_names.size(); ++i)
    for (std::size_t j = i + 1; j < attention_type_names.size(); ++j)
      if (attention_type_names[i] == attention_type_names[j]) return false;
  return true;
}
template <class Tuple, std::size_t... I>
constexpr bool tables_sound(std::index_sequence<I...>) {
  return (config_table_is_sound<std::tuple_element_t<I, Tuple>>() && ...);
}
}  // namespace detail

static_assert(detail::names_unique(), "attn registry: two layer types share a type string");
static_assert(detail::tables_sound<Registry::configs>(std::make_index_sequence<Registry::size>{}),
              "attn registry: a config table has a duplicate name or a default outside its range");

/// A type string checked at compile time: `attn::AttentionType{"multi_head"}` compiles,
/// `attn::AttentionType{"multihead"}` does not. Converts to std::string_view.
class AttentionType {
public:
  consteval AttentionType(const char* name) : name_(name) {  // NOLINT(google-explicit-constructor)
    if (!is_attention_type(name_)) throw "attn::AttentionType: not a registered attention type";
  }
  [[nodiscard]] constexpr std::string_view name() const noexcept { return name_; }
  constexpr operator std::string_view() const noexcept { return name_; }  // NOLINT

private:
  std::string_view name_;
};

/// Calls `f.template operator()<Config>()` for the config of `type`, or returns false when
/// the type is unknown.
template <class F>
bool visit_config(std::string_view type, F&& f) {
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    return ((attention_type_names[I] == type
                 ? (f.template operator()<std::tuple_element_t<I, Registry::configs>>(), true)
                 : false) ||
            ...);
  }(std::make_index_sequence<Registry::size>{});
}

/// Calls `f.template operator()<Layer>()` for the layer class (scalar T) of `type`.
template <class T, class F>
bool visit_layer(std::string_view type, F&& f) {
  using Layers = typename Registry::template layers<T>;
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    return ((attention_type_names[I] == type
                 ? (f.template operator()<std::tuple_element_t<I, Layers>>(), true)
                 : false) ||
            ...);
  }(std::make_index_sequence<Registry::size>{});
}

}  // namespace attn
