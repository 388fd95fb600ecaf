// A pre-norm Transformer encoder layer made of attn layers, running the weights of a PyTorch
// nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout=0, activation="gelu",
// batch_first=True, norm_first=True) and checked against PyTorch's output:
//
//   h = x + MHA(LN1(x))          multi_head    (torch: self_attn, norm1)
//   y = h + MLP(LN2(h))          mlp_block     (torch: linear1, GELU, linear2, norm2)
//
//   encoder DATA.safetensors [OUT_DIR]
//
// DATA holds the state_dict under "layer.", the input "input/x" [B, T, d_model] and PyTorch's output
// "expected/output" (tools/golden/example_encoder.py writes it: tests/data/example_encoder/). With
// OUT_DIR, the attention layer is also saved as a model file (encoder_attention.json and
// .safetensors) with its input LN1(x) (encoder_ln1.npy), for `attn heatmap` to draw its maps.
// Exit 0 when the output matches PyTorch's within 1e-4 (relative to the largest value), 1 if not.
#include <attn/attn.hpp>
#include <attn/io/npy.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace {

using attn::Index;
using attn::Tensor;

/// LayerNorm over the last axis of [B, T, D], through attn's layer_norm (which takes [B, H, W, C]):
/// the tokens are viewed as a B x T x 1 grid.
Tensor<float, 3> layer_norm_tokens(const attn::LayerNorm<float>& ln, const Tensor<float, 3>& x) {
  const attn::ConstTensorView<float, 4> grid(x.data(), x.dimension(0), x.dimension(1), 1, x.dimension(2));
  const Tensor<float, 4> y = ln.forward(grid);
  return Tensor<float, 3>(attn::ConstTensorView<float, 3>(y.data(), x.dimensions()));
}

/// Copies torch's LayerNorm weight and bias (`<prefix>.weight`, `<prefix>.bias`) into ln/gamma, ln/beta.
void load_norm(attn::LayerNorm<float>& ln, const attn::SafeTensors& file, const std::string& prefix) {
  attn::TensorDict<float> dict;
  dict.insert("ln/gamma", file.tensor<float>(prefix + ".weight"));
  dict.insert("ln/beta", file.tensor<float>(prefix + ".bias"));
  attn::load_weights(ln, dict);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: encoder DATA.safetensors [OUT_DIR]\n");
    return 2;
  }
  try {
    const attn::SafeTensors file = attn::SafeTensors::open(argv[1]);
    const attn::Json cfg = attn::Json::parse(file.meta("config").value_or("{}"));
    const int d_model = cfg.at("d_model"), nhead = cfg.at("nhead"), ff = cfg.at("dim_feedforward");
    const double eps = cfg.at("layer_norm_eps");

    attn::MultiHeadAttention<float> attention({.embed_dim = d_model, .num_heads = nhead, .use_bias = true});
    attn::LayerNorm<float> norm1({.channels = d_model, .epsilon = eps});
    attn::LayerNorm<float> norm2({.channels = d_model, .epsilon = eps});
    attn::MlpBlock<float> mlp({.channels = d_model, .hidden_dim = ff});  // activation "gelu": exact, as torch's
    attn::torch::load_multihead_attention(attention, file, "layer.self_attn");
    load_norm(norm1, file, "layer.norm1");
    load_norm(norm2, file, "layer.norm2");
    attn::torch::load_linears(mlp, file, {{"Dense_0", "linear1"}, {"Dense_1", "linear2"}}, "layer.");

    const attn::AnyTensor<float> input = file.tensor<float>("input/x");
    const Tensor<float, 3> x = input.view<3>("input/x");
    const Tensor<float, 3> ln1 = layer_norm_tokens(norm1, x);
    const Tensor<float, 3> h = x + attention.forward(ln1);
    const Tensor<float, 3> y = h + mlp.forward(layer_norm_tokens(norm2, h));

    const attn::AnyTensor<float> expected = file.tensor<float>("expected/output");
    if (expected.shape() != attn::shape_of(y)) {
      std::fprintf(stderr, "expected/output has shape %s, the encoder gave %s\n",
                   attn::shape_str(expected.shape()).c_str(), attn::shape_str(attn::shape_of(y)).c_str());
      return 1;
    }
    double worst = 0, largest = 0;
    for (Index i = 0; i < y.size(); ++i) {
      worst = std::max(worst, std::abs(double(y.data()[i]) - double(expected.data()[i])));
      largest = std::max(largest, std::abs(double(expected.data()[i])));
    }
    fmt::print("encoder layer: d_model {}, {} heads, feed-forward {}, input {}\n", d_model, nhead, ff,
               attn::shape_str(input.shape()));
    fmt::print("largest difference from PyTorch: {:.3g} (largest value {:.3g})\n", worst, largest);

    // The input repeats `period` token embeddings (plus a little noise), so each head's map should
    // repeat with that period along the keys: the weight of key j and of key j + period are nearly
    // equal for every query. A map of noise would not.
    const Index period = std::stoi(file.meta("period").value_or("0"));
    if (period > 0) {
      const attn::AttentionResult<float> r = attention.forward_with_weights(ln1);
      const Tensor<float, 4>& w = r.weights;  // [B, heads, T, T]
      double drift = 0, peak = 0;
      for (Index b = 0; b < w.dimension(0); ++b)
        for (Index hd = 0; hd < w.dimension(1); ++hd)
          for (Index i = 0; i < w.dimension(2); ++i)
            for (Index j = 0; j < w.dimension(3); ++j) {
              peak = std::max(peak, double(w(b, hd, i, j)));
              if (j + period < w.dimension(3))
                drift = std::max(drift, std::abs(double(w(b, hd, i, j)) - double(w(b, hd, i, j + period))));
            }
      fmt::print("attention maps repeat with the input's period {}: largest weight {:.3f}, largest change "
                 "from key j to key j + {}: {:.3f}\n",
                 period, peak, period, drift);
      if (drift > 0.1 * peak) {
        fmt::print("the maps do not repeat with the input's period\n");
        return 1;
      }
    }

    if (argc > 2) {
      const std::filesystem::path out = argv[2];
      std::filesystem::create_directories(out);
      const std::vector<attn::AnyLayer<float>> model{attn::AnyLayer<float>(attention, "self_attn")};
      attn::save_model(model, out / "encoder_attention.json", out / "encoder_attention.safetensors");
      attn::write_npy(out / "encoder_ln1.npy", attn::AnyTensor<float>(ln1));
      fmt::print("wrote {} and {}\n", (out / "encoder_attention.json").string(), (out / "encoder_ln1.npy").string());
    }
    if (worst > 1e-4 * std::max(1.0, largest)) {
      fmt::print("MISMATCH\n");
      return 1;
    }
    fmt::print("matches PyTorch\n");
    return 0;
  } catch (const attn::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
