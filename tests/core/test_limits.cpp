// Hostile sizes: configs that pass validation but would allocate without bound are refused before any
// allocation (attn::set_allocation_limit), empty inputs of every registered type return at once (work
// proportional to elements, not to a dimension of an empty tensor), and config() rebuilds an equal
// configuration (weights travel through save_model).
#include "support.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <random>

using namespace attn_test;

namespace {

/// Restores the allocation limit when a test ends.
struct LimitGuard {
  std::size_t saved = attn::allocation_limit();
  LimitGuard() = default;
  LimitGuard(const LimitGuard&) = delete;
  LimitGuard& operator=(const LimitGuard&) = delete;
  ~LimitGuard() { attn::set_allocation_limit(saved); }
};

/// Building `params` of `type` throws ConfigError naming the type, the parameter and the bytes.
void require_refused(const std::string& type, const Json& params, const std::string& parameter,
                     const std::string& bytes) {
  INFO(type << " " << params.dump());
  try {
    (void)attn::create_attention_layer<float>(type, params);
  } catch (const attn::ConfigError& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(e.parameter() == parameter);
    CHECK(what.rfind(type + ": ", 0) == 0);
    CHECK(what.find("parameter '" + parameter + "'") != std::string::npos);
    CHECK(what.find(bytes) != std::string::npos);
    CHECK(what.find("allocation limit") != std::string::npos);
    return;
  } catch (const std::exception& e) {
    FAIL("not a ConfigError: " << typeid(e).name() << ": " << e.what());
  }
  FAIL("no exception");
}

}  // namespace

TEST_CASE("limits: the issue's configs are refused before allocating", "[limits]") {
  const LimitGuard guard;
  REQUIRE(attn::allocation_limit() == attn::default_allocation_limit);
  // two tables [2^31 - 1, 4] of float: 2 · 8589934588 bytes, more than 4 GiB
  require_refused("group_query", {{"d_model", 32}, {"n_head", 4}, {"n_kv_head", 2}, {"max_seq_len", 2147483647}},
                  "max_seq_len", "rope/cos_cached");
  // a 99999 x 99999 x 2 x 1 kernel: 79998400008 bytes
  require_refused("spatial", {{"kernel_size", 99999}}, "kernel_size", "79998400008 bytes");
  require_refused("cbam", {{"channels", 8}, {"ratio", 2}, {"kernel_size", 99999}}, "kernel_size",
                  "79998400008 bytes");
  // qkv/kernel [1e9, 3e9]: 1.2e19 bytes, beyond 64 bits
  require_refused("multi_head", {{"embed_dim", 1000000000}, {"num_heads", 1}}, "embed_dim", "qkv/kernel");
  require_refused("multi_head", {{"embed_dim", 2147483647}, {"num_heads", 1}}, "embed_dim", "more than 2^64 bytes");
  require_refused("self_attention", {{"embed_dim", 1000000000}}, "embed_dim", "bytes");
  require_refused("cross_attention", {{"embed_dim", 8}, {"context_dim", 2000000000}}, "context_dim", "bytes");
  require_refused("channel", {{"channels", 2000000000}, {"ratio", 1}}, "channels", "bytes");
  // a size-like pair is named with its whole value, as the config wrote it
  require_refused("conv2d_no_bias", {{"channels", 4096}, {"filters", 8192}, {"kernel_size", {3, 99999}}},
                  "kernel_size", "parameter 'kernel_size' ([3,99999]) is too large");
  // the typed constructors refuse the same way
  REQUIRE_THROWS_AS(attn::GroupedQueryAttention<float>({.d_model = 8, .n_head = 2, .n_kv_head = 1,
                                                        .max_seq_len = 2147483647}),
                    attn::ConfigError);
  REQUIRE_THROWS_AS(attn::ops::rope_tables<float>(8, 1.0, 10000.0, 2147483647), attn::ConfigError);
  REQUIRE_THROWS_AS(attn::causal_mask(1 << 20, 1 << 20), attn::ConfigError);  // 1 TiB of bools
  REQUIRE_THROWS_AS(attn::causal_mask(-1, 3), attn::ShapeError);
}

TEST_CASE("limits: the limit is the user's to set, and counts a layer's weights together", "[limits]") {
  const LimitGuard guard;
  // multi_head E = 64: qkv 64·192 + proj 64·64 floats = 65536 bytes (no bias: use_bias false)
  const Json p{{"embed_dim", 64}, {"num_heads", 4}, {"use_bias", false}};
  attn::set_allocation_limit(65536);
  REQUIRE_NOTHROW(attn::create_attention_layer<float>("multi_head", p));
  attn::set_allocation_limit(65535);  // one byte short: the second weight takes the total over
  try {
    (void)attn::create_attention_layer<float>("multi_head", p);
    FAIL("no exception");
  } catch (const attn::ConfigError& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(what.find("proj/kernel") != std::string::npos);
    CHECK(what.find("16384 bytes") != std::string::npos);  // this weight
    CHECK(what.find("65536 bytes") != std::string::npos);  // with the ones before it
    CHECK(what.find("65535 bytes") != std::string::npos);  // the limit
  }
  // doubles take twice the bytes
  attn::set_allocation_limit(65536);
  REQUIRE_THROWS_AS(attn::create_attention_layer<double>("multi_head", p), attn::ConfigError);
  // raising the limit lets a big table through
  attn::set_allocation_limit(std::size_t(1) << 40);
  REQUIRE_NOTHROW(attn::ops::rope_tables<float>(2, 1.0, 10000.0, 1 << 16));
  // reset_parameters on a built layer honours the limit in force, and keeps the old weights on refusal
  attn::MultiHeadAttention<float> layer({.embed_dim = 64, .num_heads = 4, .use_bias = false});
  const auto before = layer.parameters()[0].data;
  attn::set_allocation_limit(1024);
  REQUIRE_THROWS_AS(layer.reset_parameters(5), attn::ConfigError);
  REQUIRE(layer.parameters()[0].data == before);
}

TEST_CASE("limits: checked sizes catch overflow in every partial product", "[limits]") {
  const Index big = Index(1) << 32;
  REQUIRE(attn::checked_shape_size({big, Index(1) << 31, 0}) == std::nullopt);  // the prefix overflows
  REQUIRE(attn::checked_shape_size({0, big, Index(1) << 31}) == Index(0));     // 0 first: every product 0
  REQUIRE(attn::checked_shape_size({3, 4, 5}) == Index(60));
  REQUIRE(attn::checked_shape_size({}) == Index(1));
  REQUIRE(attn::checked_shape_size({2, -1}) == std::nullopt);
  REQUIRE(attn::checked_bytes(Index(1) << 62, 8) == std::nullopt);
  REQUIRE(attn::checked_bytes(5, 4) == std::size_t(20));
}

TEMPLATE_LIST_TEST_CASE("limits: empty inputs return at once from every registered type", "[limits][contract]",
                        attn::Registry::layers<float>) {
  using C = typename TestType::Config;
  const std::string type(C::type_name);
  const auto layer = attn::create_attention_layer<float>(type, example_params<C>(), "", 1);
  const auto shapes = TestType::example_input_shapes(example_params<C>().template get<C>());
  // Cases: empty batch; empty axis 1 (sequence or image height) in every input; a huge batch with an
  // empty axis 1 (2^36 x 0: the work of any loop over the batch would never end).
  std::vector<std::vector<Shape>> cases;
  for (Index batch : {Index(0), Index(1), Index(1) << 36}) {
    std::vector<Shape> s = shapes;
    for (auto& sh : s) {
      sh[0] = batch;
      if (batch != 0) sh[1] = 0;
    }
    cases.push_back(s);
  }
  for (const auto& s : cases) {
    std::vector<attn::AnyTensor<float>> in;
    for (const auto& sh : s) in.emplace_back(sh);
    INFO(type << " " << attn::shape_str(s[0]));
    const auto start = std::chrono::steady_clock::now();
    try {
      const auto y = layer.forward(in);
      REQUIRE(y.shape() == layer.output_shape(s));
      REQUIRE(all_finite(y.data(), y.size()));
    } catch (const attn::ShapeError& e) {
      // A layer may refuse an empty axis it reduces over (a gate over zero pixels is undefined), but
      // only with a ShapeError naming the layer, and never for an empty batch.
      INFO(e.what());
      REQUIRE(s[0][0] != 0);
      REQUIRE(std::string(e.what()).find(type) != std::string::npos);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    REQUIRE(seconds < 1.0);
  }
}

TEST_CASE("limits: the issue's hang, group_query on [2^36, 0, 8]", "[limits]") {
  attn::GroupedQueryAttention<float> layer({.d_model = 8, .n_head = 2, .n_kv_head = 1});
  const attn::Tensor<float, 3> x(Index(1) << 36, 0, 8);
  const auto start = std::chrono::steady_clock::now();
  const auto y = layer.forward(x);
  REQUIRE(y.dimension(0) == Index(1) << 36);
  REQUIRE(y.size() == 0);
  REQUIRE(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < 1.0);
  // the functions too
  const attn::Tensor<float, 4> q(Index(1) << 30, 2, 0, 4), k(Index(1) << 30, 2, 0, 4);
  attn::SdpaOptions<float> opt;
  opt.causal = true;
  const auto r = attn::scaled_dot_product_attention(q, k, k, opt);
  REQUIRE(r.output.size() == 0);
  volatile Index big = Index(1) << 40;
  REQUIRE(attn::causal_mask(big, 0).dimension(0) == big);
  REQUIRE(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < 1.0);
}

TEMPLATE_LIST_TEST_CASE("config: config() rebuilds an equal configuration, save_model carries the weights",
                        "[limits][contract]", attn::Registry::layers<float>) {
  using C = typename TestType::Config;
  Json cfg = example_params<C>();
  cfg["type"] = std::string(C::type_name);
  const auto a = attn::create_attention_from_config<float>(cfg, 1234);
  // The configuration is equal; the seed is not part of it (weights are loaded or drawn later, so a
  // seed in the config would not describe them): the same config with another seed draws others.
  const auto b = attn::create_attention_from_config<float>(a.config());
  REQUIRE(b.config() == a.config());
  REQUIRE(attn::create_attention_from_config<float>(cfg, 99).config() == a.config());
  // (weights drawn at random only: a layer whose initializers are all constants declares
  // `constant_initial_weights` (a fixed blur filter, BatchNorm's ones and zeros), and a table the
  // reference initialises to a constant, e.g. a zero attention bias, is the same for every seed)
  bool drawn = false;
  for (const auto& w : a.parameters())
    drawn = drawn || std::adjacent_find(w.data.begin(), w.data.end(), std::not_equal_to<>()) != w.data.end();
  if constexpr (requires { TestType::constant_initial_weights; })
    REQUIRE(a == b);
  else if (drawn)
    REQUIRE_FALSE(a == b);
  // save_model / load_model rebuild an equal layer: configuration and weights.
  const auto dir = attn_test::temp_path("model");
  std::filesystem::create_directories(dir);
  attn::save_model(std::vector<attn::AnyLayer<float>>{a}, dir / "m.json", dir / "m.safetensors");
  const auto back = attn::load_model<float>(dir / "m.json", dir / "m.safetensors");
  std::filesystem::remove_all(dir);
  REQUIRE(back.size() == 1);
  REQUIRE(back[0] == a);
}
