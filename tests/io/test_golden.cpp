// Golden parity tests: attn against reference computations built from PyTorch operators by
// tools/make_golden.py (committed under tests/data/<type>/; CI never runs Python). Each file holds the
// inputs, the weights (in attn's names, or as a PyTorch state_dict mapped through attn/io/torch.hpp),
// the expected outputs and the tolerances. float runs the f32 files, double the f64 files.
#include "support.hpp"

#include <algorithm>
#include <filesystem>
#include <memory>

using namespace attn_test;

namespace {

namespace fs = std::filesystem;

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

/// Every golden file of `type`, sorted by name.
std::vector<Golden> golden(const std::string& type) {
  const fs::path dir = fs::path(ATTN_SOURCE_DIR) / "tests" / "data" / type;
  std::vector<fs::path> paths;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".safetensors") paths.push_back(e.path());
  std::sort(paths.begin(), paths.end());
  std::vector<Golden> out;
  for (const auto& p : paths) {
    Golden g{type + "/" + p.filename().string(), attn::SafeTensors::open(p), "", 0, 0, {}};
    g.dtype = g.meta("dtype");
    g.rtol = std::stod(g.meta("rtol"));
    g.atol = std::stod(g.meta("atol"));
    g.config = attn::Json::parse(g.meta("config"));
    REQUIRE(g.meta("type") == type);
    out.push_back(std::move(g));
  }
  return out;
}

template <class T>
bool for_scalar(const Golden& g) {
  return g.dtype == (std::is_same_v<T, float> ? "f32" : "f64");
}

/// A boolean mask read from a 0/1 tensor (1 = attend). The files store key padding as rank 2 [B, S]
/// and attention masks as rank 3 or 4; masks() says which kind each is.
struct Mask {
  std::unique_ptr<bool[]> data;
  Shape shape;
  [[nodiscard]] attn::BoolMask view() const {
    return data ? attn::BoolMask(data.get(), shape) : attn::BoolMask{};
  }
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
Mask mask_of(const Golden& g, const std::string& name) {
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
  const Shape shape = attn::shape_of(got);
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

/// Runs `body` on every file of `type` for scalar T and checks that `count` files were seen.
template <class T, class F>
void for_each_golden(const std::string& type, std::size_t count, F&& body) {
  std::size_t seen = 0;
  for (const auto& g : golden(type)) {
    if (!for_scalar<T>(g)) continue;
    ++seen;
    INFO("golden file " << g.name);
    body(g);
  }
  REQUIRE(seen == count);  // a missing or unexpected file fails
}

}  // namespace

TEMPLATE_TEST_CASE("golden: scaled_dot_product_attention matches PyTorch", "[golden][sdpa]", float, double) {
  using T = TestType;
  for_each_golden<T>("sdpa", 11, [](const Golden& g) {
    const auto q = g.file.tensor<T>("input/q");
    const auto k = g.file.tensor<T>("input/k");
    const auto v = g.file.tensor<T>("input/v");
    const auto mask = mask_of(g, "input/mask");
    const attn::AnyTensor<T> bias =
        g.file.contains("input/bias") ? g.file.tensor<T>("input/bias") : attn::AnyTensor<T>();
    attn::SdpaOptions<T> o;
    if (mask.data) o.attn_mask = attn::AttnMask(mask.view());
    if (g.file.contains("input/bias")) {
      // a rank-3 bias [H, T, S] of the rank-4 cases is read with a leading 1 (attn refuses the
      // ambiguous rank 3 on rank-4 inputs; see ops/masks.hpp)
      Shape bs = bias.shape();
      if (q.rank() == 4 && bs.size() == 3) bs.insert(bs.begin(), 1);
      o.bias = attn::AttnBias<T>(bias.data(), bs);
    }
    o.causal = g.config.at("causal").get<bool>();
    if (!g.config.at("scale").is_null()) o.scale = g.config.at("scale").get<double>();
    const bool unscaled = g.config.at("function") == "dot_product_attention";
    const auto run = [&]<int R>(const attn::SdpaOptions<T>& opts) {
      const auto r = unscaled ? attn::dot_product_attention(q.template view<R>(), k.template view<R>(),
                                                            v.template view<R>())
                              : attn::scaled_dot_product_attention(q.template view<R>(), k.template view<R>(),
                                                                   v.template view<R>(), opts);
      check<T>(g, "output", r.output);
      check<T>(g, "weights", r.weights);
    };
    if (q.rank() == 4)
      run.template operator()<4>(o);
    else
      run.template operator()<3>(o);
    if (const auto lengths = g.file.meta("key_lengths")) {
      // the same padding through the key_lengths option, and as a key padding mask [B, S]
      const auto n = attn::Json::parse(*lengths).get<std::vector<Index>>();
      attn::SdpaOptions<T> o2;
      o2.key_lengths = n;
      run.template operator()<4>(o2);
      REQUIRE(mask.shape.size() == 4);
      attn::SdpaOptions<T> o3;
      o3.key_padding = attn::KeyPaddingMask(mask.data.get(), Shape{mask.shape[0], mask.shape[3]});
      run.template operator()<4>(o3);
    }
  });
}

TEMPLATE_TEST_CASE("golden: torch.nn.MultiheadAttention into multi_head, self_attention, cross_attention",
                   "[golden][torch]", float, double) {
  using T = TestType;
  for_each_golden<T>("torch_mha", 4, [](const Golden& g) {
    const std::string prefix = g.meta("torch_prefix");
    const auto x = input<T, 3>(g, "x");
    const auto mask = mask_of(g, "input/key_padding");  // [B, S], 1 = a real key
    attn::Json split = g.config;
    split["output_projection"] = true;
    if (!g.file.contains("input/context")) {
      attn::MultiHeadAttention<T> mh(attn::Json{
          {"embed_dim", g.config.at("embed_dim")},
          {"num_heads", g.config.at("num_heads")},
          {"use_bias",
           g.config.at("use_bias")}}.get<attn::MultiHeadAttentionConfig>());
      attn::torch::load_multihead_attention(mh, g.file, prefix);
      const auto r = mh.forward_with_weights(x, mask.masks<T>());
      check<T>(g, "output", r.output);
      check<T>(g, "weights", r.weights);

      attn::SelfAttention<T> sa(split.get<attn::SelfAttentionConfig>());
      attn::torch::load_multihead_attention(sa, g.file, prefix);
      const auto s = sa.forward_with_weights(x, mask.masks<T>());
      check<T>(g, "output", s.output);
      check<T>(g, "weights", s.weights);

      // the type-erased path: the same through AnyLayer's forward door, mask and weights included
      auto any = attn::create_attention_layer<T>("self_attention", split);
      attn::torch::load_multihead_attention(any, g.file, prefix);
      attn::ForwardArgs<T> args;
      static_cast<attn::AttentionMasks<T>&>(args) = mask.masks<T>();
      args.inputs = {attn::AnyTensor<T>(x)};
      args.return_weights = true;
      const auto y = any.forward(args);
      check<T>(g, "output", y.output.template view<3>());
      REQUIRE(y.weights.has_value());
      check<T>(g, "weights", y.weights->template view<4>());
    } else {
      const auto ctx = input<T, 3>(g, "context");
      attn::CrossAttention<T> ca(split.get<attn::CrossAttentionConfig>());
      attn::torch::load_multihead_attention(ca, g.file, prefix);
      const auto r = ca.forward_with_weights(x, ctx, mask.masks<T>());
      check<T>(g, "output", r.output);
      check<T>(g, "weights", r.weights);
      auto any = attn::create_attention_layer<T>("cross_attention", split);
      attn::torch::load_multihead_attention(any, g.file, prefix);
      attn::ForwardArgs<T> args;
      static_cast<attn::AttentionMasks<T>&>(args) = mask.masks<T>();
      args.inputs = {attn::AnyTensor<T>(x), attn::AnyTensor<T>(ctx)};
      args.return_weights = true;
      const auto y = any.forward(args);
      check<T>(g, "output", y.output.template view<3>());
      check<T>(g, "weights", y.weights.value().template view<4>());
    }
  });
}

TEMPLATE_TEST_CASE("golden: multi_head (the reference layout) matches PyTorch ops", "[golden][multi_head]",
                   float, double) {
  using T = TestType;
  for_each_golden<T>("multi_head", 4, [](const Golden& g) {
    attn::MultiHeadAttention<T> layer(g.config.get<attn::MultiHeadAttentionConfig>());
    attn::load_weights(layer, g.file, "weights");
    const auto mask = mask_of(g, "input/mask");
    const auto r = layer.forward_with_weights(input<T, 3>(g, "x"), mask.masks<T>());
    check<T>(g, "output", r.output);
    check<T>(g, "weights", r.weights);
    // through AnyLayer's forward door
    auto any = attn::create_attention_layer<T>("multi_head", g.config);
    attn::load_weights(any, g.file, "weights");
    attn::ForwardArgs<T> args;
    static_cast<attn::AttentionMasks<T>&>(args) = mask.masks<T>();
    args.inputs = {attn::AnyTensor<T>(input<T, 3>(g, "x"))};
    args.return_weights = true;
    const auto y = any.forward(args);
    check<T>(g, "output", y.output.template view<3>());
    check<T>(g, "weights", y.weights.value().template view<4>());
  });
}

TEMPLATE_TEST_CASE("golden: group_query with RoPE matches PyTorch ops", "[golden][group_query]", float,
                   double) {
  using T = TestType;
  for_each_golden<T>("group_query", 5, [](const Golden& g) {
    attn::GroupedQueryAttention<T> layer(g.config.get<attn::GroupedQueryAttentionConfig>());
    attn::torch::GroupedQueryOptions options;
    options.rope = g.meta("rope_layout") == "half_split" ? attn::torch::RopeLayout::half_split
                                                         : attn::torch::RopeLayout::interleaved;
    attn::torch::load_grouped_query(layer, g.file, g.meta("torch_prefix"), options);
    const auto mask = mask_of(g, "input/mask");
    const auto r = layer.forward_with_weights(input<T, 3>(g, "x"), mask.masks<T>());
    check<T>(g, "output", r.output);
    check<T>(g, "weights", r.weights);
    // through AnyLayer's forward door
    auto any = attn::create_attention_layer<T>("group_query", g.config);
    attn::torch::load_grouped_query(any, g.file, g.meta("torch_prefix"), options);
    attn::ForwardArgs<T> args;
    static_cast<attn::AttentionMasks<T>&>(args) = mask.masks<T>();
    args.inputs = {attn::AnyTensor<T>(input<T, 3>(g, "x"))};
    args.return_weights = true;
    const auto y = any.forward(args);
    check<T>(g, "output", y.output.template view<3>());
    check<T>(g, "weights", y.weights.value().template view<4>());
  });
}

TEMPLATE_TEST_CASE("golden: channel, spatial and cbam match PyTorch conv2d and pooling", "[golden][cbam]",
                   float, double) {
  using T = TestType;
  for_each_golden<T>("channel", 2, [](const Golden& g) {
    attn::ChannelAttention<T> layer(g.config.get<attn::ChannelAttentionConfig>());
    attn::load_weights(layer, g.file, "weights");
    check<T>(g, "output", layer.forward(input<T, 4>(g, "x")));
  });
  for_each_golden<T>("spatial", 3, [](const Golden& g) {
    attn::SpatialAttention<T> layer(g.config.get<attn::SpatialAttentionConfig>());
    attn::load_weights(layer, g.file, "weights");
    check<T>(g, "output", layer.forward(input<T, 4>(g, "x")));
  });
  for_each_golden<T>("cbam", 2, [](const Golden& g) {
    attn::CBAM<T> layer(g.config.get<attn::CBAMConfig>());
    attn::load_weights(layer, g.file, "weights");
    check<T>(g, "output", layer.forward(input<T, 4>(g, "x")));
  });
}
