// Golden files: reference results computed with PyTorch operators by tools/make_golden.py (one module
// per type under tools/golden/), committed under tests/data/<type>/<case>_<f32|f64>.safetensors; CI
// never runs Python. Each file holds the inputs ("input/..."), the weights (in attn's names under
// "weights/", or a PyTorch state_dict mapped through attn/io/torch.hpp), the expected outputs
// ("expected/...") and, as metadata, the tolerances and the config. float reads the f32 files, double
// the f64 files.
#pragma once

#include <attn/core/tensor.hpp>
#include <attn/io/safetensors.hpp>
#include <attn/ops/masks.hpp>
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "support/compare.hpp"

namespace attn_test {

struct Golden {
  std::string name;  ///< "<type>/<file>" for messages
  attn::SafeTensors file;
  std::string dtype;  ///< "f32" or "f64"
  double rtol = 0, atol = 0;
  attn::Json config;

  [[nodiscard]] std::string meta(std::string_view key) const {
    const auto v = file.meta(key);
    if (!v) throw std::runtime_error(name + ": no metadata '" + std::string(key) + "'");
    return *v;
  }
};

/// Every golden file of `type`, sorted by name. Fails unless there is at least one, each has the
/// metadata of its type, and every case comes in both dtypes.
inline std::vector<Golden> golden(const std::string& type) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(ATTN_SOURCE_DIR) / "tests" / "data" / type;
  std::vector<fs::path> paths;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".safetensors") paths.push_back(e.path());
  std::sort(paths.begin(), paths.end());
  INFO("golden data under " << dir.string());
  REQUIRE(!paths.empty());
  std::vector<Golden> out;
  std::map<std::string, std::set<std::string>> cases;  // dtype -> case names
  for (const auto& p : paths) {
    Golden g{type + "/" + p.filename().string(), attn::SafeTensors::open(p), "", 0, 0, {}};
    g.dtype = g.meta("dtype");
    g.rtol = std::stod(g.meta("rtol"));
    g.atol = std::stod(g.meta("atol"));
    g.config = attn::Json::parse(g.meta("config"));
    INFO(g.name);
    REQUIRE(g.meta("type") == type);
    REQUIRE((g.dtype == "f32" || g.dtype == "f64"));
    REQUIRE(p.stem().string() == g.meta("case") + "_" + g.dtype);
    cases[g.dtype].insert(g.meta("case"));
    out.push_back(std::move(g));
  }
  REQUIRE(cases["f32"] == cases["f64"]);  // a case missing in one dtype fails
  return out;
}

template <class T>
bool for_scalar(const Golden& g) {
  return g.dtype == (std::is_same_v<T, float> ? "f32" : "f64");
}

/// A boolean mask read from a 0/1 tensor (1 = attend).
struct Mask {
  std::unique_ptr<bool[]> data;
  attn::Shape shape;
  [[nodiscard]] attn::BoolMask view() const {
    return data ? attn::BoolMask(data.get(), shape) : attn::BoolMask{};
  }
  /// The files store key padding as rank 2 [B, S] and attention masks as rank 3 or 4.
  template <class T>
  [[nodiscard]] attn::AttentionMasks<T> masks() const {
    attn::AttentionMasks<T> m;
    if (!data) return m;
    if (shape.size() == 2)
      m.key_padding = attn::KeyPaddingMask(view());
    else
      m.attn_mask = attn::AttnMask(view());
    return m;
  }
};
inline Mask mask_of(const Golden& g, const std::string& name) {
  Mask m;
  if (!g.file.contains(name)) return m;
  const auto v = g.file.values<double>(name);
  m.shape = g.file.at(name).shape;
  m.data = std::make_unique<bool[]>(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    REQUIRE((v[i] == 0.0 || v[i] == 1.0));
    m.data[i] = v[i] == 1.0;
  }
  return m;
}

/// Compares `got` with "expected/<what>" within the file's tolerances; reports the worst element.
template <class T, class Got>
void check(const Golden& g, const std::string& what, const Got& got) {
  const auto expected = g.file.tensor<T>("expected/" + what);
  const attn::Shape shape = attn::shape_of(got);
  INFO(g.name << ": " << what);
  REQUIRE(shape == expected.shape());
  const auto c = compare(got.data(), expected.data(), shape, g.rtol, g.atol);
  INFO(c.report);
  REQUIRE(c.ok);
}

template <class T, int R>
attn::Tensor<T, R> input(const Golden& g, const std::string& name) {
  return g.file.tensor<T>("input/" + name).template to_tensor<R>(name);
}

/// Runs `body` on every file of `type` for scalar T (every case the generator wrote: none may be
/// missing in one dtype, and there must be at least one).
template <class T, class F>
void for_each_golden(const std::string& type, F&& body) {
  std::size_t seen = 0;
  for (const auto& g : golden(type)) {
    if (!for_scalar<T>(g)) continue;
    ++seen;
    INFO("golden file " << g.name);
    body(g);
  }
  REQUIRE(seen > 0);
}

/// Runs `layer` (built through the factory, weights loaded) through AnyLayer's forward door with the
/// file's mask and checks the output and the attention weights against the file.
template <class T>
void check_through_door(const Golden& g, const attn::AnyLayer<T>& layer, std::vector<attn::AnyTensor<T>> inputs,
                        const Mask& mask) {
  attn::ForwardArgs<T> args;
  static_cast<attn::AttentionMasks<T>&>(args) = mask.template masks<T>();
  args.inputs = std::move(inputs);
  args.return_weights = true;
  const auto y = layer.forward(args);
  check<T>(g, "output", y.output.template view<3>());
  REQUIRE(y.weights.has_value());
  check<T>(g, "weights", y.weights->template view<4>());
}

}  // namespace attn_test
