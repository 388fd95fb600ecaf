// Weights in and out: build a small model from JSON configs, save it as a config file plus one
// safetensors file, load it back, and check that the loaded model computes the same.
//
//   weights [output directory]     (default: the system's temporary directory)
#include <attn/attn.hpp>

#include <filesystem>
#include <vector>

#include <fmt/format.h>

int main(int argc, char** argv) {
  try {
    const std::filesystem::path dir = argc > 1 ? argv[1] : std::filesystem::temp_directory_path();
    std::vector<attn::AnyLayer<float>> model{
        attn::create_attention_from_config<float>(attn::Json::parse(
            R"({"type": "group_query", "name": "gqa", "d_model": 32, "n_head": 4, "n_kv_head": 2})"), 1),
        attn::create_attention_from_config<float>(
            attn::Json::parse(R"({"type": "multi_head", "name": "mha", "embed_dim": 32, "num_heads": 4})"), 2),
    };
    const auto config = dir / "attn_example_model.json";
    const auto weights = dir / "attn_example_model.safetensors";
    attn::save_model(model, config.string(), weights.string());
    const auto loaded = attn::load_model<float>(config.string(), weights.string());

    attn::AnyTensor<float> x({1, 6, 32});
    attn::Rng rng(7);
    for (attn::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
    bool same = loaded.size() == model.size();
    for (std::size_t i = 0; same && i < model.size(); ++i) {
      same = loaded[i] == model[i] && loaded[i].forward(x) == model[i].forward(x);
      fmt::print("{:<12} {:<6} {:>6} weights  {}\n", loaded[i].type(), loaded[i].name(),
                 loaded[i].parameters().count(), same ? "same output after the round trip" : "DIFFERENT");
    }
    fmt::print("saved {} and {}\n", config.string(), weights.string());
    std::filesystem::remove(config);
    std::filesystem::remove(weights);
    return same ? 0 : 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "weights: {}\n", e.what());
    return 1;
  }
}
