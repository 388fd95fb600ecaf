// The factory: validation order and exact messages, JSON kinds, logging, info, AnyLayer semantics.
#include "support.hpp"

#include <mutex>
#include <vector>

using namespace attn_test;
using attn::ConfigError;

namespace {
/// Captures log lines for the duration of a test.
struct LogCapture {
  std::vector<std::pair<attn::LogLevel, std::string>> lines;
  attn::LogLevel saved = attn::log_level();
  explicit LogCapture(attn::LogLevel level) {
    attn::set_log_level(level);
    attn::set_log_sink([this](attn::LogLevel l, std::string_view m) { lines.emplace_back(l, std::string(m)); });
  }
  ~LogCapture() {
    attn::set_log_sink(nullptr);
    attn::set_log_level(saved);
  }
};
std::string available() { return attn::detail::py_list(attn::attention_type_names); }
}  // namespace

TEST_CASE("factory: unknown type, with the available types and a suggestion", "[factory]") {
  REQUIRE_THROWS_WITH(attn::validate_attention_config("vanilla_attention", {{"dim", 512}}),
                      "Unknown attention type 'vanilla_attention'. Available types: " + available());
  REQUIRE_THROWS_WITH(attn::create_attention_layer<float>("vanilla_attention", {{"dim", 512}}),
                      "Failed to create layer. Unknown type 'vanilla_attention'. Error: Unknown attention "
                      "type 'vanilla_attention'. Available types: " + available());
  REQUIRE_THROWS_WITH(attn::validate_attention_config("multihead", {}),
                      "Unknown attention type 'multihead'. Available types: " + available() +
                          ". Did you mean 'multi_head'?");
  REQUIRE_THROWS_AS(attn::validate_attention_config("", {}), ConfigError);
}

TEST_CASE("factory: the reference's range messages", "[factory]") {
  REQUIRE_THROWS_WITH(attn::validate_attention_config("multi_head", {{"embed_dim", 256}, {"num_heads", -8}}),
                      "Parameter 'num_heads' must be positive, got -8");
  REQUIRE_THROWS_WITH(attn::validate_attention_config("multi_head", {{"embed_dim", 0}}),
                      "Parameter 'embed_dim' must be positive, got 0");
  REQUIRE_THROWS_WITH(
      attn::validate_attention_config("multi_head", {{"embed_dim", 256}, {"dropout_rate", 1.5}}),
      "Parameter 'dropout_rate' must be between 0.0 and 1.0, got 1.5");
  REQUIRE_THROWS_WITH(
      attn::validate_attention_config("multi_head", {{"embed_dim", 256}, {"dropout_rate", -1}}),
      "Parameter 'dropout_rate' must be between 0.0 and 1.0, got -1.0");
  REQUIRE_NOTHROW(attn::validate_attention_config("multi_head", {{"embed_dim", 256}, {"dropout_rate", 1.0}}));
  // dimension names are checked before head names, as in the reference
  REQUIRE_THROWS_WITH(
      attn::validate_attention_config("multi_head", {{"num_heads", -1}, {"embed_dim", -2}}),
      "Parameter 'embed_dim' must be positive, got -2");
  // cross-field rules come last, with the class's wording
  REQUIRE_THROWS_WITH(attn::validate_attention_config("multi_head", {{"embed_dim", 10}, {"num_heads", 4}}),
                      "embed_dim (10) must be divisible by num_heads (4)");
  // through create_attention_layer the message is wrapped, as in the reference
  REQUIRE_THROWS_WITH(
      attn::create_attention_layer<float>("multi_head", {{"embed_dim", 256}, {"num_heads", -8}}),
      "Failed to create 'multi_head' layer (MultiHeadAttention). Required: ['embed_dim']. Provided: "
      "['embed_dim', 'num_heads']. Please check parameter compatibility. Original error: Parameter "
      "'num_heads' must be positive, got -8");
}

TEST_CASE("factory: unknown parameters are rejected with a did-you-mean", "[factory]") {
  const auto p = attn::check_attention_config("multi_head", {{"embed_dim", 64}, {"num_head", 8}});
  REQUIRE(p.size() == 1);
  REQUIRE(p[0].parameter == "num_head");
  REQUIRE(p[0].message ==
          "Unknown parameter 'num_head' for 'multi_head'. Did you mean 'num_heads'? Accepted parameters: "
          "['embed_dim', 'num_heads', 'dropout_rate', 'kernel_initializer', 'use_bias', 'input_dim', "
          "'causal', 'kernel_regularizer']");
}

TEST_CASE("factory: wrong JSON kinds name the parameter and the expected kind", "[factory]") {
  REQUIRE_THROWS_WITH(attn::validate_attention_config("multi_head", {{"embed_dim", "64"}}),
                      "Parameter 'embed_dim' of 'multi_head' must be an integer (32-bit), got string \"64\"");
  REQUIRE_THROWS_WITH(attn::validate_attention_config("multi_head", {{"embed_dim", 64.5}}),
                      "Parameter 'embed_dim' of 'multi_head' must be an integer (32-bit), got number 64.5");
  REQUIRE_THROWS_WITH(attn::validate_attention_config("multi_head", {{"embed_dim", true}}),
                      "Parameter 'embed_dim' of 'multi_head' must be an integer (32-bit), got boolean true");
  REQUIRE_THROWS_WITH(attn::validate_attention_config("multi_head", {{"embed_dim", 1LL << 40}}),
                      "Parameter 'embed_dim' of 'multi_head' must be an integer (32-bit), got integer "
                      "1099511627776");
  REQUIRE_THROWS_WITH(attn::validate_attention_config("multi_head", {{"embed_dim", 64}, {"use_bias", 1}}),
                      "Parameter 'use_bias' of 'multi_head' must be a boolean, got integer 1");
  REQUIRE_THROWS_WITH(
      attn::validate_attention_config("multi_head", {{"embed_dim", 64}, {"kernel_initializer", "he_norm"}}),
      "Parameter 'kernel_initializer' of 'multi_head' must be one of ['glorot_uniform', 'glorot_normal', "
      "'he_normal', 'he_uniform', 'lecun_normal', 'lecun_uniform', 'zeros', 'ones'], got 'he_norm'. Did "
      "you mean 'he_normal'?");
  REQUIRE_THROWS_WITH(attn::validate_attention_config("multi_head", {{"embed_dim", 64}, {"input_dim", "x"}}),
                      "Parameter 'input_dim' of 'multi_head' must be an integer or null, got string \"x\"");
  REQUIRE_THROWS_WITH(attn::validate_attention_config("multi_head", Json::array({1, 2})),
                      "Parameters for 'multi_head' must be a JSON object, got array [1,2]");
  // training-only values: null, a string or an object, kept for the round trip
  REQUIRE_NOTHROW(attn::validate_attention_config(
      "multi_head", {{"embed_dim", 64}, {"kernel_regularizer", {{"class_name", "L2"}}}}));
  REQUIRE_THROWS_WITH(attn::validate_attention_config("multi_head", {{"embed_dim", 64}, {"kernel_regularizer", 3}}),
                      "Parameter 'kernel_regularizer' of 'multi_head' must be null, a string or an object, "
                      "got integer 3");
}

TEST_CASE("factory: check_attention_config returns every problem and never throws", "[factory]") {
  const auto p = attn::check_attention_config(
      "multi_head", {{"num_heads", -1}, {"dropout_rate", 2.0}, {"bogus", 1}, {"use_bias", "yes"}});
  REQUIRE(p.size() == 5);
  REQUIRE(p[0].parameter == "bogus");
  REQUIRE(p[1].message == "Required parameters for 'multi_head' are missing: ['embed_dim']. Required: ['embed_dim']");
  REQUIRE(p[2].parameter == "use_bias");
  REQUIRE(p[3].message == "Parameter 'num_heads' must be positive, got -1");
  REQUIRE(p[4].message == "Parameter 'dropout_rate' must be between 0.0 and 1.0, got 2.0");
  REQUIRE(attn::check_attention_config("multi_head", {{"embed_dim", 64}}).empty());
  REQUIRE(attn::check_attention_config("nope", {}).size() == 1);
}

TEST_CASE("factory: create_attention_from_config", "[factory]") {
  REQUIRE_THROWS_WITH(attn::create_attention_from_config<float>(Json::array()),
                      "Config must be a dictionary, got array []");
  REQUIRE_THROWS_WITH(attn::create_attention_from_config<float>({{"embed_dim", 8}}),
                      "Configuration dictionary must include a 'type' key.");
  REQUIRE_THROWS_AS(attn::create_attention_from_config<float>({{"type", 3}}), ConfigError);
  const Json cfg = {{"type", "multi_head"}, {"embed_dim", 16}, {"num_heads", 4}, {"name", "mha_1"}};
  const auto layer = attn::create_attention_from_config<float>(cfg);
  REQUIRE(layer.type() == "multi_head");
  REQUIRE(layer.class_name() == "MultiHeadAttention");
  REQUIRE(layer.name() == "mha_1");
  REQUIRE(layer.target<attn::MultiHeadAttention<float>>() != nullptr);
  REQUIRE(layer.target<attn::MultiHeadAttention<double>>() == nullptr);
  REQUIRE(layer.target<attn::MultiHeadAttention<float>>()->config().num_heads == 4);
  // 'name' is not a provided parameter in the failure message
  REQUIRE_THROWS_WITH(attn::create_attention_from_config<float>({{"type", "multi_head"}, {"name", "x"}}),
                      "Failed to create 'multi_head' layer (MultiHeadAttention). Required: ['embed_dim']. "
                      "Provided: []. Please check parameter compatibility. Original error: Required "
                      "parameters for 'multi_head' are missing: ['embed_dim']. Required: ['embed_dim']");
}

TEST_CASE("factory: logging at info and error levels through a replaceable sink", "[factory][log]") {
  {
    LogCapture cap(attn::LogLevel::info);
    (void)attn::create_attention_layer<float>("multi_head", {{"embed_dim", 16}, {"num_heads", 4}}, "blk");
    REQUIRE(cap.lines.size() == 1);
    REQUIRE(cap.lines[0].first == attn::LogLevel::info);
    REQUIRE(cap.lines[0].second ==
            "Creating 'multi_head' layer with parameters: {'embed_dim': 16, 'num_heads': 4, 'dropout_rate': "
            "0.0, 'kernel_initializer': 'he_normal', 'use_bias': False, 'input_dim': None, 'causal': False, "
            "'name': 'blk'}");
  }
  {
    LogCapture cap(attn::LogLevel::warning);  // the default: quiet
    (void)attn::create_attention_layer<float>("multi_head", {{"embed_dim", 16}, {"num_heads", 4}});
    REQUIRE(cap.lines.empty());
    REQUIRE_THROWS(attn::create_attention_layer<float>("multi_head", {{"embed_dim", 16}, {"num_heads", 3}}));
    REQUIRE(cap.lines.size() == 1);
    REQUIRE(cap.lines[0].first == attn::LogLevel::error);
    REQUIRE(cap.lines[0].second ==
            "Failed to create 'multi_head' layer (MultiHeadAttention). Required: ['embed_dim']. Provided: "
            "['embed_dim', 'num_heads']. Please check parameter compatibility. Original error: embed_dim (16) "
            "must be divisible by num_heads (3)");
  }
  {
    LogCapture cap(attn::LogLevel::off);
    REQUIRE_THROWS(attn::create_attention_layer<float>("nope"));
    REQUIRE(cap.lines.empty());
  }
}

TEST_CASE("factory: info lists every registered type in registry order and is a fresh copy", "[factory]") {
  Json info = attn::get_attention_info();
  REQUIRE(info.size() == attn::attention_type_names.size());
  std::size_t i = 0;
  for (const auto& [k, v] : info.items()) REQUIRE(k == attn::attention_type_names[i++]);
  REQUIRE(info["multi_head"]["required_params"] == Json::array({"embed_dim"}));
  REQUIRE(info["multi_head"]["optional_params"]["kernel_initializer"] == "he_normal");
  info["multi_head"]["optional_params"]["num_heads"] = 99;  // mutating the copy
  REQUIRE(attn::get_attention_info()["multi_head"]["optional_params"]["num_heads"] == 8);
}

TEST_CASE("factory: compile-time type strings", "[factory]") {
  static_assert(attn::is_attention_type("multi_head"));
  static_assert(!attn::is_attention_type("vanilla_attention"));
  constexpr attn::AttentionType t{"multi_head"};
  static_assert(t.name() == "multi_head");
  const auto layer = attn::create_attention_layer<float>(t, {{"embed_dim", 8}, {"num_heads", 2}});
  REQUIRE(layer.type() == "multi_head");
}

TEST_CASE("factory: AnyLayer has value semantics", "[factory]") {
  auto a = attn::create_attention_layer<float>("multi_head", {{"embed_dim", 8}, {"num_heads", 2}}, "a", 1);
  auto b = a;  // deep copy
  REQUIRE(a == b);
  b.parameters()[0].data[0] += 1.0f;
  REQUIRE_FALSE(a == b);
  attn::AnyLayer<float> empty;
  REQUIRE(empty.empty());
  REQUIRE_THROWS_AS(empty.config(), attn::Error);
  REQUIRE_THROWS_WITH(a.forward({random_any<float>({1, 2, 8}, 1), random_any<float>({1, 2, 8}, 2)}),
                      "multi_head: forward takes 1 input(s) of rank(s) [3], got 2");
  REQUIRE_THROWS_WITH(a.forward(random_any<float>({2, 8}, 1)),
                      "multi_head: input 0 must have rank 3, got rank 2 with shape [2, 8]");
}
