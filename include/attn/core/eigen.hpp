/// \file
/// The one place in attn that includes Eigen. Eigen's own warnings are silenced here so that the
/// library builds warning-free under -Wall -Wextra -Wpedantic in user code.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC system_header
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wpedantic"
#endif

#include <Eigen/Core>
#include <unsupported/Eigen/CXX11/Tensor>

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif
