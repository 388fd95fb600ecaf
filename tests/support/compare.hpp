// Element-wise comparison with a report of the worst element (ATTN_REQUIRE_CLOSE), and finiteness.
#pragma once

#include <attn/core/tensor.hpp>
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <sstream>
#include <string>

namespace attn_test {

using attn::Index;
using attn::Shape;

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

/// Every value finite.
template <class T>
bool all_finite(const T* p, Index n) {
  for (Index i = 0; i < n; ++i)
    if (!std::isfinite(static_cast<double>(p[i]))) return false;
  return true;
}

}  // namespace attn_test
