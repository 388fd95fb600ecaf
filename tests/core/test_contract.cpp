// Registry-wide contract tests: every registered type, through the factory, meets the same rules.
#include "support.hpp"

#include <fstream>

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
  // a different seed gives different weights (when there are any)
  const auto c = attn::create_attention_from_config<float>(full, 8);
  if (a.parameters().count() > 0) REQUIRE_FALSE(a == c);
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
