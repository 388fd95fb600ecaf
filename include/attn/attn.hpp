/// \file
/// attn: attention layers on Eigen tensors. Include this one header for everything.
#pragma once

#include "attn/core/eigen.hpp"
#include "attn/core/error.hpp"
#include "attn/core/init.hpp"
#include "attn/core/log.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/factory.hpp"
#include "attn/functional.hpp"
#include "attn/io/safetensors.hpp"
#include "attn/io/torch.hpp"
#include "attn/io/weights.hpp"
#include "attn/ops/linear.hpp"
#include "attn/ops/gates.hpp"
#include "attn/ops/masks.hpp"
#include "attn/ops/projected.hpp"
#include "attn/ops/rope.hpp"
#include "attn/ops/sdpa.hpp"
#include "attn/registry.hpp"
