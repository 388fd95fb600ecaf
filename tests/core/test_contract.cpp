// Registry-wide contract tests: every registered type, through the factory, meets the same rules.
#include "support.hpp"

#include <algorithm>
#include <fstream>
#include <functional>

using namespace attn_test;

namespace {
template <class L>
std::string type_of() {
  return std::string(L::Config::type_name);
}
}  // namespace

TEMPLATE_LIST_TEST_CASE("contract: defaults plus required examples validate", "[contract]",
                        attn::Registry::layers<float>) {
  using C = typename TestType::Config;
  const Json params = example_params<C>();
  INFO(type_of<TestType>() << " " << params.dump());
  const auto problems = attn::check_attention_config(C::type_name, params);
  for (const auto& p : problems) INFO(p.message);
  REQUIRE(problems.empty());
  REQUIRE_NOTHROW(attn::validate_attention_config(C::type_name, params));
}

TEMPLATE_LIST_TEST_CASE("contract: JSON round trip is the identity", "[contract]",
                        attn::Registry::layers<float>) {
  using C = typename TestType::Config;
  Json cfg = example_params<C>();
  cfg["type"] = std::string(C::type_name);
  cfg["name"] = "layer_1";
  const auto a = attn::create_attention_from_config<float>(cfg, 7);
  const Json full = a.config();
  // every parameter of the table appears, with the caller's values kept
  for (const auto& f : C::fields()) REQUIRE(full.contains(std::string(f.name)));
  for (const auto& [k, v] : cfg.items()) REQUIRE(full.at(k) == v);
  const auto b = attn::create_attention_from_config<float>(full, 7);
  REQUIRE(b.config() == full);
  REQUIRE(a == b);
  // the typed config survives to_json / from_json
  const C typed = full.get<C>();
  REQUIRE(attn::config_to_json(typed) == attn::config_to_json(a.target<TestType>()->config()));
  // a different seed gives different weights when any are drawn at random; a layer whose initializers
  // are all constants (BatchNorm's ones and zeros, a fixed filter) declares `constant_initial_weights`,
  // and a table the reference initialises to a constant (a zero attention bias) is the same for every
  // seed
  const auto c = attn::create_attention_from_config<float>(full, 8);
  bool drawn = false;
  for (const auto& w : a.parameters())
    drawn = drawn || std::adjacent_find(w.data.begin(), w.data.end(), std::not_equal_to<>()) != w.data.end();
  if constexpr (requires { TestType::constant_initial_weights; })
    REQUIRE(a == c);
  else if (drawn)
    REQUIRE_FALSE(a == c);
  else
    REQUIRE(a == c);
}

TEMPLATE_LIST_TEST_CASE("contract: each missing required key and an unknown key give their messages",
                        "[contract]", attn::Registry::layers<float>) {
  using C = typename TestType::Config;
  const std::string type = type_of<TestType>();
  const Json params = example_params<C>();
  std::vector<std::string> required;
  for (const auto& f : C::fields())
    if (f.required) required.emplace_back(f.name);
  const std::string req_list = attn::detail::py_list(required);
  for (const auto& r : required) {
    Json p = params;
    p.erase(r);
    const std::string expected = fmt::format("Required parameters for '{}' are missing: ['{}']. Required: {}",
                                             type, r, req_list);
    REQUIRE_THROWS_WITH(attn::validate_attention_config(type, p), expected);
    std::vector<std::string> provided;
    for (const auto& [k, v] : p.items()) provided.push_back(k);
    REQUIRE_THROWS_WITH(attn::create_attention_layer<float>(type, p),
                        fmt::format("Failed to create '{}' layer ({}). Required: {}. Provided: {}. Please "
                                    "check parameter compatibility. Original error: {}",
                                    type, C::class_name, req_list, attn::detail::py_list(provided),
                                    expected));
  }
  Json p = params;
  p["zzz_not_a_parameter"] = 1;
  const auto problems = attn::check_attention_config(type, p);
  REQUIRE(problems.size() == 1);
  REQUIRE(problems[0].parameter == "zzz_not_a_parameter");
  REQUIRE_THAT(problems[0].message,
               Catch::StartsWith(fmt::format("Unknown parameter 'zzz_not_a_parameter' for '{}'. Accepted "
                                             "parameters: [",
                                             type)));
}

TEMPLATE_LIST_TEST_CASE("contract: seeded forward gives the declared shape and finite values, float "
                        "and double agree",
                        "[contract]", attn::Registry::layers<float>) {
  using C = typename TestType::Config;
  const std::string type = type_of<TestType>();
  const Json params = example_params<C>();
  const auto lf = attn::create_attention_layer<float>(type, params, "", 3);
  const auto ld = attn::create_attention_layer<double>(type, params, "", 3);
  const C cfg = params.get<C>();
  const auto shapes = TestType::example_input_shapes(cfg);
  std::vector<attn::AnyTensor<float>> xf;
  std::vector<attn::AnyTensor<double>> xd;
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    xf.push_back(random_any<float>(shapes[i], 100 + i));
    xd.push_back(random_any<double>(shapes[i], 100 + i));
  }
  const auto yf = lf.forward(xf);
  const auto yd = ld.forward(xd);
  REQUIRE(yf.shape() == lf.output_shape(shapes));
  REQUIRE(yd.shape() == yf.shape());
  REQUIRE(yf.size() > 0);
  REQUIRE(all_finite(yf.data(), yf.size()));
  REQUIRE(all_finite(yd.data(), yd.size()));
  const auto cmp = compare(yf.data(), yd.data(), yf.shape(), 1e-4, 1e-5);
  INFO(cmp.report);
  REQUIRE(cmp.ok);
  // wrong input rank: a clear ShapeError, not a crash
  std::vector<attn::AnyTensor<float>> bad = xf;
  bad[0] = random_any<float>({3}, 1);
  REQUIRE_THROWS_AS(lf.forward(bad), attn::ShapeError);
}

TEMPLATE_LIST_TEST_CASE("contract: info describes the type", "[contract]", attn::Registry::layers<float>) {
  using C = typename TestType::Config;
  const Json info = attn::get_attention_info();
  const Json& e = info.at(std::string(C::type_name));
  REQUIRE(e.at("class") == std::string(C::class_name));
  REQUIRE_FALSE(e.at("description").get<std::string>().empty());
  REQUIRE_FALSE(e.at("use_case").get<std::string>().empty());
  static constexpr C defaults{};
  for (const auto& f : C::fields()) {
    if (f.required) {
      REQUIRE(std::find(e.at("required_params").begin(), e.at("required_params").end(),
                        std::string(f.name)) != e.at("required_params").end());
    } else {
      REQUIRE(e.at("optional_params").at(std::string(f.name)) ==
              attn::detail::field_to_json(defaults, f));
    }
  }
  for (auto n : C::training_only) REQUIRE(e.at("optional_params").at(std::string(n)).is_null());
}

TEMPLATE_LIST_TEST_CASE("contract: the type string is the header's file stem", "[contract]",
                        attn::Registry::layers<float>) {
  using C = typename TestType::Config;
  const std::string path = std::string(ATTN_SOURCE_DIR "/include/attn/layers/") + std::string(C::type_name) + ".hpp";
  INFO(path);
  REQUIRE(std::ifstream(path).good());
  const std::string test = std::string(ATTN_SOURCE_DIR "/tests/layers/test_") + std::string(C::type_name) + ".cpp";
  INFO(test);
  REQUIRE(std::ifstream(test).good());
}

namespace {

/// Random inputs of the type's example shapes.
template <class L>
std::vector<attn::AnyTensor<double>> example_inputs(const typename L::Config& cfg, std::uint64_t seed) {
  std::vector<attn::AnyTensor<double>> xs;
  const auto shapes = L::example_input_shapes(cfg);
  for (std::size_t i = 0; i < shapes.size(); ++i) xs.push_back(random_any<double>(shapes[i], seed + i));
  return xs;
}

template <class L>
constexpr bool takes_masks() {
  return attn::detail::layer_takes_masks<L, double>(std::make_index_sequence<L::input_ranks.size()>{});
}
template <class L>
constexpr bool returns_weights() {
  return attn::detail::layer_returns_weights<L, double>(std::make_index_sequence<L::input_ranks.size()>{});
}

/// The typed layer's forward (with masks when it takes them) on AnyTensor inputs.
template <class L>
attn::Tensor<double, L::input_ranks[0]> typed_forward(const L& layer, const std::vector<attn::AnyTensor<double>>& in,
                                                      const attn::AttentionMasks<double>& masks) {
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    if constexpr (takes_masks<L>())
      return layer.forward(in[I].template view<L::input_ranks[I]>()..., masks);
    else
      return layer.forward(in[I].template view<L::input_ranks[I]>()...);
  }(std::make_index_sequence<L::input_ranks.size()>{});
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("contract: a weight resized through parameters() is a WeightsError before any kernel runs",
                        "[contract][weights]", attn::Registry::layers<double>) {
  using C = typename TestType::Config;
  const std::string type = type_of<TestType>();
  const C cfg = example_params<C>().template get<C>();
  const auto inputs = example_inputs<TestType>(cfg, 11);
  const auto good = attn::create_attention_layer<double>(type, example_params<C>(), "", 5);
  REQUIRE_NOTHROW(good.forward(inputs));
  if (good.parameters().size() == 0) {
    // a parameter-free type (fnet): a weight that appears through parameters() is refused
    auto extra = good;
    extra.parameters().add("stray/kernel", {2, 2}, "zeros", 0);
    REQUIRE_THROWS_MATCHES(extra.forward(inputs), attn::WeightsError,
                           Catch::Matchers::Message(fmt::format("{}: the layer has 1 weights, 0 were declared "
                                                                "(parameters() must keep its weights, in their order)",
                                                                type)));
    return;
  }
  for (std::size_t i = 0; i < good.parameters().size(); ++i) {
    const auto& w = good.parameters()[i];
    INFO(type << ": weight " << w.name << " " << attn::shape_str(w.shape));
    // 1. shape and storage grown together (a consistent but wrong tensor)
    {
      auto bad = good;
      auto& b = bad.parameters()[i];
      if (b.shape.empty()) b.shape.push_back(2);  // a scalar weight (shape []) becomes [2]
      else b.shape.back() += 1;
      b.data.resize(static_cast<std::size_t>(attn::shape_size(b.shape)));
      REQUIRE_THROWS_MATCHES(bad.forward(inputs), attn::WeightsError,
                             Catch::Matchers::Message(fmt::format(
                                 "{}: weight '{}' must have shape {} ({} values), got shape {} with {} values", type,
                                 w.name, attn::shape_str(w.shape), w.size(), attn::shape_str(b.shape), b.size())));
      // the typed layer checks the same (no type erasure involved)
      REQUIRE_THROWS_AS(typed_forward(*bad.template target<TestType>(), inputs, {}), attn::WeightsError);
    }
    // 2. storage shrunk under an unchanged shape
    {
      auto bad = good;
      bad.parameters()[i].data.pop_back();
      REQUIRE_THROWS_AS(bad.forward(inputs), attn::WeightsError);
    }
    // 3. renamed
    {
      auto bad = good;
      bad.parameters()[i].name += "_renamed";
      REQUIRE_THROWS_WITH(bad.forward(inputs), Catch::StartsWith(fmt::format("{}: weight '{}' is missing", type, w.name)));
    }
  }
  // 4. a weight removed
  auto fewer = good;
  fewer.parameters() = attn::WeightSet<double>{};
  REQUIRE_THROWS_AS(fewer.forward(inputs), attn::WeightsError);
}

TEMPLATE_LIST_TEST_CASE("contract: every forward option is reachable through AnyLayer or cleanly refused",
                        "[contract][door]", attn::Registry::layers<double>) {
  using C = typename TestType::Config;
  const std::string type = type_of<TestType>();
  const C cfg = example_params<C>().template get<C>();
  const auto any = attn::create_attention_layer<double>(type, example_params<C>(), "", 9);
  const TestType& typed = *any.template target<TestType>();
  const auto inputs = example_inputs<TestType>(cfg, 21);

  attn::ForwardArgs<double> plain;
  plain.inputs = inputs;
  const auto base = any.forward(plain);
  REQUIRE_FALSE(base.weights.has_value());
  REQUIRE(base.extras.empty());
  REQUIRE(base.output == any.forward(inputs));  // the positional overload is the same door
  REQUIRE(base.output == attn::AnyTensor<double>(typed_forward(typed, inputs, {})));

  // The options, each with a value that changes the output of a layer that takes it.
  const Index B = inputs[0].shape()[0], T = inputs[0].shape()[1], S = inputs.back().shape()[1];
  attn::Tensor<bool, 2> pad(B, S);
  pad.setConstant(true);
  pad(0, S - 1) = false;
  const std::vector<Index> lengths(static_cast<std::size_t>(B), S - 2);
  attn::Tensor<bool, 2> mask(T, S);
  mask.setConstant(true);
  for (Index t = 0; t < T; ++t) mask(t, (t + 1) % S) = false;
  const auto bias = random_tensor<double, 2>({T, S}, 3, 2.0);
  struct Option {
    std::string name;
    std::function<void(attn::AttentionMasks<double>&)> set;
  };
  const std::vector<Option> options{
      {"key_padding", [&](auto& m) { m.key_padding = attn::KeyPaddingMask(pad); }},
      {"key_lengths", [&](auto& m) { m.key_lengths = lengths; }},
      {"attn_mask", [&](auto& m) { m.attn_mask = attn::AttnMask(mask); }},
      {"causal", [&](auto& m) { m.causal = true; }},
      {"bias", [&](auto& m) { m.bias = bias; }},
  };
  for (const auto& o : options) {
    INFO(type << ": option " << o.name);
    attn::ForwardArgs<double> args;
    args.inputs = inputs;
    o.set(args);
    if constexpr (takes_masks<TestType>()) {
      const auto r = any.forward(args);
      attn::AttentionMasks<double> m;
      o.set(m);
      REQUIRE(r.output == attn::AnyTensor<double>(typed_forward(typed, inputs, m)));
      REQUIRE_FALSE(r.output == base.output);  // honoured, not ignored
    } else {
      REQUIRE_THROWS_MATCHES(any.forward(args), attn::ConfigError,
                             Catch::Matchers::Message(fmt::format(
                                 "{}: forward does not take '{}' (the layer has no attention scores to mask)",
                                 type, o.name)));
    }
  }
  {
    INFO(type << ": return_weights");
    attn::ForwardArgs<double> args;
    args.inputs = inputs;
    args.return_weights = true;
    if constexpr (returns_weights<TestType>()) {
      const auto r = any.forward(args);
      REQUIRE(r.output == base.output);
      REQUIRE(r.weights.has_value());
      const auto want = [&]<std::size_t... I>(std::index_sequence<I...>) {
        return typed.forward_with_weights(inputs[I].template view<TestType::input_ranks[I]>()...);
      }(std::make_index_sequence<TestType::input_ranks.size()>{});
      REQUIRE(*r.weights == attn::AnyTensor<double>(want.weights));
      REQUIRE(r.weights->shape() == Shape{B, r.weights->shape()[1], T, S});
    } else {
      REQUIRE_THROWS_MATCHES(any.forward(args), attn::ConfigError,
                             Catch::Matchers::Message(fmt::format(
                                 "{}: forward does not take 'return_weights' (the layer has no attention weights)",
                                 type)));
    }
  }
  {
    INFO(type << ": an extra output no layer has");
    attn::ForwardArgs<double> args;
    args.inputs = inputs;
    args.extra_outputs = {"bogus"};
    REQUIRE_THROWS_MATCHES(any.forward(args), attn::ConfigError,
                           Catch::Matchers::Message(fmt::format(
                               "{}: forward has no extra output 'bogus' (the layer has no extra outputs)",
                               type)));
  }
  // a wrong number of inputs is a ShapeError through the door too
  attn::ForwardArgs<double> none;
  REQUIRE_THROWS_AS(any.forward(none), attn::ShapeError);
}
