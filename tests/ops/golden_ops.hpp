// The golden files of the vision operators (tools/golden/vision_ops.py writes them under
// tests/data/ops_<op>/), read through tests/support/golden.hpp: every file of an op for one scalar
// type, with accessors for its tensors and a comparison against "expected/<name>" that reports the
// worst element.
#pragma once

#include "support.hpp"
#include "support/golden.hpp"

#include <string>
#include <utility>
#include <vector>

namespace attn_test {

template <class T>
struct OpGolden : Golden {
  explicit OpGolden(Golden g) : Golden(std::move(g)) {}

  [[nodiscard]] attn::AnyTensor<T> get(const std::string& tensor) const { return file.tensor<T>(tensor); }
  [[nodiscard]] bool has(const std::string& tensor) const { return file.contains(tensor); }

  /// Compares `got` (data + shape) with "expected/<what>" within the file's tolerances.
  void check(const std::string& what, const T* got, const Shape& shape) const {
    const auto expected = file.tensor<T>("expected/" + what);
    INFO(name << ": " << what);
    REQUIRE(shape == expected.shape());
    const auto c = compare(got, expected.data(), shape, rtol, atol);
    INFO(c.report);
    REQUIRE(c.ok);
  }
};

/// Every golden file of `dir` for scalar T (f32 files for float, f64 for double), sorted by name.
template <class T>
std::vector<OpGolden<T>> op_goldens(const std::string& dir) {
  std::vector<OpGolden<T>> out;
  for (auto& g : golden(dir))
    if (for_scalar<T>(g)) out.emplace_back(std::move(g));
  return out;
}

}  // namespace attn_test
