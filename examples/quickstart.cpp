// Quick start: build attention layers from a JSON config through the factory, run them on seeded
// random input, and print each layer's type, parameter count, shapes and a checksum.
//
//   quickstart [config.json]     (default: examples/configs/quickstart.json)
//
// The config holds {"seed": N, "layers": [{"layer": {<layer config>}, "inputs": [[shape], ...]}]}.
#include <attn/attn.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : ATTN_EXAMPLES_DIR "/configs/quickstart.json";
  try {
    std::ifstream in(path);
    if (!in) throw attn::IOError(fmt::format("cannot open config file '{}'", path));
    const attn::Json cfg = attn::Json::parse(in);
    const auto seed = cfg.value("seed", std::uint64_t{0});
    // rows first, then columns as wide as their widest cell (a layer with two inputs has a wide cell)
    std::vector<std::array<std::string, 6>> rows{{"type", "name", "params", "input(s)", "output", "checksum"}};
    for (const auto& entry : cfg.at("layers")) {
      const auto layer = attn::create_attention_from_config<float>(entry.at("layer"), seed);
      std::vector<attn::AnyTensor<float>> inputs;
      std::vector<std::string> shapes;
      attn::Rng rng(seed + inputs.size() + 1);
      for (const auto& s : entry.at("inputs")) {
        attn::AnyTensor<float> x(s.get<attn::Shape>());
        for (attn::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
        shapes.push_back(attn::shape_str(x.shape()));
        inputs.push_back(std::move(x));
      }
      const auto y = layer.forward(inputs);
      double sum = 0.0;
      for (float v : y.values()) sum += static_cast<double>(v);
      rows.push_back({std::string(layer.type()), layer.name(), fmt::format("{}", layer.parameters().count()),
                      fmt::format("{}", fmt::join(shapes, " ")), attn::shape_str(y.shape()),
                      fmt::format("{:.6f}", sum)});
    }
    std::array<std::size_t, 6> width{};
    for (const auto& r : rows)
      for (std::size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
    for (const auto& r : rows)  // text columns left-aligned, numbers right-aligned
      fmt::print("{:<{}}  {:<{}}  {:>{}}  {:<{}}  {:<{}}  {:>{}}\n", r[0], width[0], r[1], width[1], r[2], width[2],
                 r[3], width[3], r[4], width[4], r[5], width[5]);
    fmt::print("checksum: sum of each layer's outputs (seed {})\n", seed);
  } catch (const std::exception& e) {
    fmt::print(stderr, "quickstart: {}\n", e.what());
    return 1;
  }
  return 0;
}
