// Shared helpers of the test suite: seeded inputs, element-wise comparison with a report of the worst
// element, and the example parameters of a config type.
#pragma once

#include <attn/attn.hpp>
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>
#include <limits>
#include <sstream>
#include <string>

namespace attn_test {

using attn::Index;
using attn::Json;
using attn::Shape;

/// Uniform values in [-1, 1) from a seed (drawn in double, so float and double inputs agree).
template <class T>
attn::AnyTensor<T> random_any(const Shape& shape, std::uint64_t seed, double scale = 1.0) {
  attn::AnyTensor<T> t(shape);
  attn::Rng rng(seed);
  for (Index i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(scale * rng.uniform(-1.0, 1.0));
  return t;
}
template <class T, int R>
attn::Tensor<T, R> random_tensor(const Shape& shape, std::uint64_t seed, double scale = 1.0) {
  return random_any<T>(shape, seed, scale).template to_tensor<R>();
}

/// Restores the SIMD level of the process when a test ends.
struct SimdGuard {
  attn::Simd saved = attn::simd();
  SimdGuard() = default;
  SimdGuard(const SimdGuard&) = delete;
  SimdGuard& operator=(const SimdGuard&) = delete;
  ~SimdGuard() { attn::set_simd(saved); }
};

/// Sets a SIMD level for a scope and restores the previous one.
struct SimdScope {
  attn::Simd saved = attn::simd();
  explicit SimdScope(attn::Simd level) { attn::set_simd(level); }
  SimdScope(const SimdScope&) = delete;
  SimdScope& operator=(const SimdScope&) = delete;
  ~SimdScope() { attn::set_simd(saved); }
};

/// Runs the rest of the enclosing test once per SIMD level of this machine (a Catch2 generator), with
/// the level named in failure messages and restored afterwards.
#define ATTN_FOR_EACH_SIMD_LEVEL()                                                                  \
  const attn_test::SimdScope attn_simd_scope(GENERATE(from_range(attn_test::simd_levels())));       \
  INFO("simd " << attn::simd_name(attn::simd()))

/// Every SIMD level this machine can run, lowest first.
inline std::vector<attn::Simd> simd_levels() {
  std::vector<attn::Simd> v;
  for (attn::Simd s : {attn::Simd::generic, attn::Simd::avx2, attn::Simd::avx512})
    if (attn::simd_available(s)) v.push_back(s);
  return v;
}
inline std::string simd_levels_string() {
  std::string out;
  for (attn::Simd s : simd_levels()) out += (out.empty() ? "" : ", ") + std::string(attn::simd_name(s));
  return out;
}

/// Collects attn's log lines ("LEVEL message") while alive, at every level.
struct LogLines {
  attn::LogLevel saved = attn::log_level();
  explicit LogLines(std::vector<std::string>& lines) {
    attn::set_log_level(attn::LogLevel::debug);
    attn::set_log_sink([&lines](attn::LogLevel l, std::string_view m) {
      lines.push_back(std::string(attn::log_level_name(l)) + " " + std::string(m));
    });
  }
  LogLines(const LogLines&) = delete;
  LogLines& operator=(const LogLines&) = delete;
  ~LogLines() {
    attn::set_log_sink(nullptr);
    attn::set_log_level(saved);
  }
};

/// Result of an element-wise comparison.
struct Comparison {
  bool ok = true;
  std::string report;
};

/// |a - b| <= atol + rtol·|b| element-wise, NaN-aware (NaN equals NaN only when both are NaN);
/// reports the worst element.
template <class A, class B>
Comparison compare(const A* a, const B* b, const Shape& shape, double rtol, double atol) {
  const Index n = attn::shape_size(shape);
  double worst = -1;
  Index worst_i = -1;
  Comparison c;
  for (Index i = 0; i < n; ++i) {
    const double x = static_cast<double>(a[i]);
    const double y = static_cast<double>(b[i]);
    if (std::isnan(x) || std::isnan(y)) {
      if (std::isnan(x) && std::isnan(y)) continue;
      worst = std::numeric_limits<double>::infinity();
      worst_i = i;
      break;
    }
    const double excess = std::abs(x - y) - (atol + rtol * std::abs(y));
    if (excess > 0 && excess > worst) {
      worst = excess;
      worst_i = i;
    }
  }
  if (worst_i >= 0) {
    c.ok = false;
    // unravel the flat index
    Shape idx(shape.size());
    Index r = worst_i;
    for (std::size_t k = shape.size(); k-- > 0;) {
      idx[k] = shape[k] == 0 ? 0 : r % shape[k];
      r = shape[k] == 0 ? 0 : r / shape[k];
    }
    std::ostringstream os;
    os.precision(10);
    os << "worst element " << attn::shape_str(idx) << " of " << attn::shape_str(shape) << ": got "
       << static_cast<double>(a[worst_i]) << ", expected " << static_cast<double>(b[worst_i])
       << " (rtol " << rtol << ", atol " << atol << ")";
    c.report = os.str();
  }
  return c;
}

template <class TA, class TB>
Comparison compare(const TA& a, const TB& b, double rtol, double atol) {
  const Shape sa = attn::shape_of(a);
  const Shape sb = attn::shape_of(b);
  if (sa != sb) return {false, "shapes differ: " + attn::shape_str(sa) + " vs " + attn::shape_str(sb)};
  return compare(a.data(), b.data(), sa, rtol, atol);
}

#define ATTN_REQUIRE_CLOSE(a, b, rtol, atol)                              \
  do {                                                                     \
    const auto attn_cmp_ = ::attn_test::compare((a), (b), (rtol), (atol)); \
    INFO(attn_cmp_.report);                                                \
    REQUIRE(attn_cmp_.ok);                                                 \
  } while (false)

/// Required parameters of config C set to their documented example values.
template <class C>
Json example_params() {
  return attn::required_examples<C>();
}

/// Every value finite.
template <class T>
bool all_finite(const T* p, Index n) {
  for (Index i = 0; i < n; ++i)
    if (!std::isfinite(static_cast<double>(p[i]))) return false;
  return true;
}

// ---- plain-loop oracles, written from the formulas (no attn kernels involved) ----

using Keep = std::function<bool(Index b, Index h, Index i, Index j)>;
using Bias = std::function<double(Index b, Index h, Index i, Index j)>;

/// softmax(q kᵀ·scale + bias, masked) v on [B, H, T, d] / [B, Hkv, S, d] / [B, Hkv, S, dv], query head
/// h reading kv head h / (H / Hkv); rows with no allowed key give zeros. Returns {output, weights}.
inline std::pair<attn::Tensor<double, 4>, attn::Tensor<double, 4>> naive_attention(
    const attn::Tensor<double, 4>& q, const attn::Tensor<double, 4>& k, const attn::Tensor<double, 4>& v,
    double scale, const Keep& keep = nullptr, const Bias& bias = nullptr) {
  const Index B = q.dimension(0), H = q.dimension(1), T = q.dimension(2), d = q.dimension(3);
  const Index Hkv = k.dimension(1), S = k.dimension(2), dv = v.dimension(3), g = H / Hkv;
  attn::Tensor<double, 4> out(B, H, T, dv), w(B, H, T, S);
  out.setZero();
  w.setZero();
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < H; ++h)
      for (Index i = 0; i < T; ++i) {
        std::vector<double> z(static_cast<std::size_t>(S));
        double mx = -1e300;
        for (Index j = 0; j < S; ++j) {
          double s = 0;
          for (Index c = 0; c < d; ++c) s += q(b, h, i, c) * k(b, h / g, j, c);
          s = s * scale + (bias ? bias(b, h, i, j) : 0.0);
          z[static_cast<std::size_t>(j)] = keep && !keep(b, h, i, j) ? -1e300 : s;
          mx = std::max(mx, z[static_cast<std::size_t>(j)]);
        }
        if (mx <= -1e299) continue;
        double sum = 0;
        for (auto& x : z) sum += (x = x <= -1e299 ? 0 : std::exp(x - mx));
        for (Index j = 0; j < S; ++j) {
          w(b, h, i, j) = z[static_cast<std::size_t>(j)] / sum;
          for (Index c = 0; c < dv; ++c) out(b, h, i, c) += w(b, h, i, j) * v(b, h / g, j, c);
        }
      }
  return {out, w};
}

/// x[B, T, in] · kernel[in, out] (+ bias[out]) with loops.
inline attn::Tensor<double, 3> naive_dense(const attn::Tensor<double, 3>& x, const attn::Weight<double>& kernel,
                                           const attn::Weight<double>* bias = nullptr) {
  const Index B = x.dimension(0), T = x.dimension(1), in = kernel.shape.at(0), out = kernel.shape.at(1);
  attn::Tensor<double, 3> y(B, T, out);
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < T; ++t)
      for (Index o = 0; o < out; ++o) {
        double s = bias ? bias->data[static_cast<std::size_t>(o)] : 0.0;
        for (Index i = 0; i < in; ++i) s += x(b, t, i) * kernel.data[static_cast<std::size_t>(i * out + o)];
        y(b, t, o) = s;
      }
  return y;
}

/// [B, T, H·d] -> [B, H, T, d] (head h owns features [h·d, (h+1)·d)).
inline attn::Tensor<double, 4> split_heads(const attn::Tensor<double, 3>& x, Index H) {
  const Index B = x.dimension(0), T = x.dimension(1), d = x.dimension(2) / H;
  attn::Tensor<double, 4> y(B, H, T, d);
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < H; ++h)
      for (Index t = 0; t < T; ++t)
        for (Index c = 0; c < d; ++c) y(b, h, t, c) = x(b, t, h * d + c);
  return y;
}

/// [B, H, T, d] -> [B, T, H·d].
inline attn::Tensor<double, 3> merge_heads(const attn::Tensor<double, 4>& x) {
  const Index B = x.dimension(0), H = x.dimension(1), T = x.dimension(2), d = x.dimension(3);
  attn::Tensor<double, 3> y(B, T, H * d);
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < H; ++h)
      for (Index t = 0; t < T; ++t)
        for (Index c = 0; c < d; ++c) y(b, t, h * d + c) = x(b, h, t, c);
  return y;
}

}  // namespace attn_test
