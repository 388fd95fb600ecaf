// Reading the golden files of the vision operators (tools/golden/vision_ops.py writes them under
// tests/data/ops_<op>/): every file of an op for one scalar type, its config and tolerances, and a
// comparison against "expected/<name>" that reports the worst element.
#pragma once

#include "support.hpp"

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

namespace attn_test {

template <class T>
struct OpGolden {
  std::string name;  ///< "<dir>/<file>" for messages
  attn::SafeTensors file;
  double rtol = 0, atol = 0;
  Json config;

  [[nodiscard]] attn::AnyTensor<T> get(const std::string& tensor) const {
    return file.tensor<T>(tensor);
  }
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

/// Every golden file of `dir` for scalar T (f32 files for float, f64 for double), sorted by name;
/// REQUIREs exactly `count` of them (a missing or stray file fails).
template <class T>
std::vector<OpGolden<T>> op_goldens(const std::string& dir, std::size_t count) {
  namespace fs = std::filesystem;
  const std::string dtype = std::is_same_v<T, float> ? "f32" : "f64";
  const fs::path root = fs::path(ATTN_SOURCE_DIR) / "tests" / "data" / dir;
  std::vector<fs::path> paths;
  if (fs::is_directory(root))
    for (const auto& e : fs::directory_iterator(root))
      if (e.path().extension() == ".safetensors") paths.push_back(e.path());
  std::sort(paths.begin(), paths.end());
  std::vector<OpGolden<T>> out;
  for (const auto& p : paths) {
    auto file = attn::SafeTensors::open(p);
    if (file.meta("dtype").value_or("") != dtype) continue;
    REQUIRE(file.meta("type").value_or("") == dir);
    OpGolden<T> g{dir + "/" + p.filename().string(), std::move(file), 0, 0, {}};
    g.rtol = std::stod(*g.file.meta("rtol"));
    g.atol = std::stod(*g.file.meta("atol"));
    g.config = Json::parse(*g.file.meta("config"));
    out.push_back(std::move(g));
  }
  REQUIRE(out.size() == count);
  return out;
}

}  // namespace attn_test
