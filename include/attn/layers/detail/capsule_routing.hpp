/// \file
/// The routing terms of `capsule_routing`: capsule squash, dynamic routing with the coupling softmax
/// over the INPUT capsules (the reference's choice), and the vertical (across heads) and horizontal
/// (across query rows, causal) terms computed from one batch item's raw logits A [h, T, S].
///
///   squash(s) = (‖s‖² / (1 + ‖s‖²)) · s / sqrt(‖s‖² + ε)
///   route(u_0..u_{I−1}), one output capsule, R iterations:
///     β = 0;  repeat R times: c = softmax_i(β); s = Σ_i c_i u_i; v = squash(s); (not last) β_i += u_i·v
/// With votes replicated over the output capsules (the reference's vertical core) every output capsule
/// equals this one-output route, so one is computed.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include <Eigen/Core>

#include "attn/core/tensor.hpp"

namespace attn::detail {

/// Squashes s[0, n) in place.
template <class T>
void capsule_squash(T* s, Index n, T eps) {
  T n2 = 0;
  for (Index j = 0; j < n; ++j) n2 += s[j] * s[j];
  const T f = n2 / (T(1) + n2) / std::sqrt(n2 + eps);
  for (Index j = 0; j < n; ++j) s[j] *= f;
}

/// v[0, len) = route of the `inputs` capsules u_i = rows of U (row i at u + i·ld, length len), R
/// iterations. `beta`, `c` hold `inputs` values of scratch.
template <class T>
void capsule_route(const T* u, Index inputs, Index len, Index ld, int iterations, T eps, T* v, std::vector<T>& beta,
                   std::vector<T>& c) {
  using Map = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0,
                         Eigen::OuterStride<>>;
  const Map U(u, inputs, len, Eigen::OuterStride<>(ld));
  Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>> V(v, len);
  beta.assign(static_cast<std::size_t>(inputs), T(0));
  c.resize(static_cast<std::size_t>(inputs));
  Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>> B(beta.data(), inputs), C(c.data(), inputs);
  for (int r = 0; r < iterations; ++r) {
    if (r == 0) {
      C.setConstant(T(1) / static_cast<T>(inputs));  // softmax of zeros
    } else {
      const T mx = B.maxCoeff();
      C = (B.array() - mx).exp();
      C /= C.sum();
    }
    V.noalias() = U.transpose() * C;
    capsule_squash(v, len, eps);
    if (r + 1 < iterations) B.noalias() += U * V;
  }
}

}  // namespace attn::detail
