// The shared operators every layer's forward runs (kernel tables, threaded products, the attention
// core, convolutions), compiled once into attn::layers (cmake/AttnLayers.cmake) for float and double.
// Under ATTN_PRECOMPILED_LAYERS their headers declare these instances extern, so no other translation
// unit of a program linked with attn::layers compiles them again.
#include <attn/ops/attention_core.hpp>
#include <attn/ops/conv.hpp>
#include <attn/ops/kernels.hpp>
#include <attn/ops/linear.hpp>

ATTN_KERNEL_INSTANCES(, float)
ATTN_KERNEL_INSTANCES(, double)
ATTN_LINEAR_INSTANCES(, float)
ATTN_LINEAR_INSTANCES(, double)
ATTN_CORE_INSTANCES(, float)
ATTN_CORE_INSTANCES(, double)
ATTN_CONV_INSTANCES(, float)
ATTN_CONV_INSTANCES(, double)
