// Parameter kinds (core/param.hpp) through a test-only Config that uses every kind: parsing, the
// wrong-kind messages, bounds (open and closed, min and max), odd, list elements and lengths, enums,
// optional null, a nested config with dotted paths, the validation order, the JSON round trip, info,
// and the compile-time checks of a table. The config is defined here and not registered.
#include "support.hpp"

#include <limits>
#include <optional>
#include <string_view>

using attn::Json;
using attn::Problems;

namespace {

enum class Gate { sigmoid, softmax, relu };
constexpr std::array<attn::EnumName<Gate>, 3> enum_names(Gate /*unused*/) {
  return {{{Gate::sigmoid, "sigmoid"}, {Gate::softmax, "softmax"}, {Gate::relu, "relu"}}};
}

constexpr std::array<std::string_view, 2> mode_names{"fast", "exact"};

/// A nested config: an inner attention's options (no type name, no training-only keys).
struct InnerConfig {
  int head_dim = 8;
  int num_heads = 2;
  double dropout = 0.0;

  static constexpr auto fields() {
    using C = InnerConfig;
    return std::array{
        attn::Field<C>{.name = "head_dim", .member = attn::member<&C::head_dim>, .required = true,
                       .example = "8", .range = attn::positive},
        attn::Field<C>{.name = "num_heads", .member = attn::member<&C::num_heads>,
                       .wording = attn::Wording::factory, .range = attn::positive},
        attn::Field<C>{.name = "dropout", .member = attn::member<&C::dropout>, .wording = attn::Wording::factory,
                       .range = attn::unit_interval},
    };
  }
  void check(Problems& p) const {
    if (num_heads > 0 && head_dim % num_heads != 0)
      p.push_back({"num_heads", fmt::format("head_dim ({}) must be divisible by num_heads ({})", head_dim,
                                            num_heads)});
  }
};

struct TestConfig {
  int width = 0;
  std::string_view mode = "fast";
  attn::IntList dilations{};
  int depth = 3;
  double rate = 0.5;
  double temperature = 1.0;
  int taps = 5;
  bool flag = false;
  std::string_view init = "zeros";
  Gate gate = Gate::softmax;
  attn::Size2 kernel{3, 3};
  std::optional<int> groups{};
  std::optional<double> scale{};
  std::optional<Gate> fallback{};
  attn::IntList windows{2, 4, 8};
  attn::FloatList weights{0.25, 0.75};
  InnerConfig attention{};

  static constexpr std::string_view type_name = "test_param";
  static constexpr std::string_view class_name = "TestParam";
  static constexpr std::string_view description = "Every parameter kind.";
  static constexpr std::string_view use_case = "Unit tests of core/param.hpp.";
  static constexpr std::array<std::string_view, 1> training_only{"regularizer"};

  static constexpr auto fields() {
    using C = TestConfig;
    using attn::Field;
    using attn::member;
    return std::array{
        Field<C>{.name = "width", .member = member<&C::width>, .required = true, .example = "16",
                 .wording = attn::Wording::factory, .range = attn::positive, .doc = "Width."},
        Field<C>{.name = "mode", .member = member<&C::mode>, .required = true, .example = R"("exact")",
                 .choices = mode_names},
        Field<C>{.name = "dilations", .member = member<&C::dilations>, .required = true, .example = "[1, 2]",
                 .range = attn::positive, .length = {.min = 1, .max = 4}},
        Field<C>{.name = "depth", .member = member<&C::depth>,
                 .range = {.min = attn::at_least(1), .max = attn::at_most(12)}},
        Field<C>{.name = "rate", .member = member<&C::rate>,
                 .range = {.min = attn::greater_than(0), .max = attn::less_than(1)}},
        Field<C>{.name = "temperature", .member = member<&C::temperature>,
                 .range = {.max = attn::less_than(100)}},
        Field<C>{.name = "taps", .member = member<&C::taps>, .range = {.min = attn::at_least(1)}, .odd = true},
        Field<C>{.name = "flag", .member = member<&C::flag>},
        Field<C>{.name = "init", .member = member<&C::init>, .choices = attn::initializer_names},
        Field<C>{.name = "gate", .member = member<&C::gate>, .example = R"("relu")"},
        Field<C>{.name = "kernel", .member = member<&C::kernel>, .range = attn::positive, .odd = true},
        Field<C>{.name = "groups", .member = member<&C::groups>, .range = attn::positive},
        Field<C>{.name = "scale", .member = member<&C::scale>, .range = attn::non_negative},
        Field<C>{.name = "fallback", .member = member<&C::fallback>},
        Field<C>{.name = "windows", .member = member<&C::windows>, .range = {.min = attn::at_least(1)},
                 .length = {.min = 1}},
        Field<C>{.name = "weights", .member = member<&C::weights>, .range = attn::unit_interval,
                 .length = attn::exact_length(2)},
        Field<C>{.name = "attention", .member = member<&C::attention>},
    };
  }
  void check(Problems& p) const {
    if (width % 2 != 0) p.push_back({"width", fmt::format("width ({}) must be even", width)});
  }
};
static_assert(attn::LayerConfig<TestConfig>);
static_assert(attn::config_table_is_sound<TestConfig>());
static_assert(attn::config_table_is_sound<InnerConfig>());

const Json minimal{{"width", 16}, {"mode", "fast"}, {"dilations", {1, 2}}};

Json with(Json j, const std::string& key, Json value) {
  j[key] = std::move(value);
  return j;
}
Problems problems_of(const Json& j) {
  Problems p;
  (void)attn::parse_config<TestConfig>(j, p);
  return p;
}
/// The single problem of `j` (fails the test when there is not exactly one).
attn::Problem only(const Json& j) {
  const Problems p = problems_of(j);
  INFO(j.dump());
  for (const auto& x : p) INFO(x.parameter << ": " << x.message);
  REQUIRE(p.size() == 1);
  return p[0];
}
std::string msg(const Json& j) { return only(j).message; }
TestConfig parsed(const Json& j) {
  Problems p;
  const TestConfig c = attn::parse_config<TestConfig>(j, p);
  for (const auto& x : p) INFO(x.parameter << ": " << x.message);
  REQUIRE(p.empty());
  return c;
}
std::string cpp_msg(const TestConfig& c) {
  const Problems p = attn::check_config(c);
  return p.empty() ? "(no problem)" : p.front().message;
}

// ---- compile-time: kinds with and without traits, tables that are not sound ----

static_assert(attn::ParamKind<int> && attn::ParamKind<double> && attn::ParamKind<bool>);
static_assert(attn::ParamKind<std::string_view> && attn::ParamKind<attn::Size2> && attn::ParamKind<Gate>);
static_assert(attn::ParamKind<std::optional<int>> && attn::ParamKind<std::optional<Gate>>);
static_assert(attn::ParamKind<attn::IntList> && attn::ParamKind<attn::FloatList>);
static_assert(attn::ParamKind<InnerConfig>);
// no trait: a member of these types does not compile (tests/compile_fail/param_unsupported_kind.cpp)
static_assert(!attn::ParamKind<float> && !attn::ParamKind<std::string> && !attn::ParamKind<std::vector<int>>);
enum class Unnamed { a, b };
static_assert(!attn::ParamKind<Unnamed>);

struct BadDefault {  // an optional row whose default breaks its own range
  int n = 0;
  static constexpr auto fields() {
    return std::array{attn::Field<BadDefault>{.name = "n", .member = attn::member<&BadDefault::n>,
                                              .range = attn::positive}};
  }
  void check(Problems& /*p*/) const {}
};
struct NoExample {  // a required row without an example
  int n = 0;
  static constexpr auto fields() {
    return std::array{attn::Field<NoExample>{.name = "n", .member = attn::member<&NoExample::n>, .required = true}};
  }
  void check(Problems& /*p*/) const {}
};
struct OddFloat {  // a rule the kind does not use
  double x = 1.0;
  static constexpr auto fields() {
    return std::array{attn::Field<OddFloat>{.name = "x", .member = attn::member<&OddFloat::x>, .odd = true}};
  }
  void check(Problems& /*p*/) const {}
};
struct FreeString {  // a string without choices has no storage
  std::string_view s = "a";
  static constexpr auto fields() {
    return std::array{attn::Field<FreeString>{.name = "s", .member = attn::member<&FreeString::s>}};
  }
  void check(Problems& /*p*/) const {}
};
struct TwoNames {  // duplicate names
  int a = 1;
  int b = 1;
  static constexpr auto fields() {
    return std::array{attn::Field<TwoNames>{.name = "a", .member = attn::member<&TwoNames::a>},
                      attn::Field<TwoNames>{.name = "a", .member = attn::member<&TwoNames::b>}};
  }
  void check(Problems& /*p*/) const {}
};
struct EvenDefault {  // odd rule, even default
  int k = 4;
  static constexpr auto fields() {
    return std::array{attn::Field<EvenDefault>{.name = "k", .member = attn::member<&EvenDefault::k>, .odd = true}};
  }
  void check(Problems& /*p*/) const {}
};
struct ShortList {  // a default list shorter than its minimum length
  attn::IntList v{1};
  static constexpr auto fields() {
    return std::array{attn::Field<ShortList>{.name = "v", .member = attn::member<&ShortList::v>,
                                             .length = {.min = 2}}};
  }
  void check(Problems& /*p*/) const {}
};
struct BadNested {  // a nested default that breaks the inner table
  InnerConfig inner{.head_dim = 0};
  static constexpr auto fields() {
    return std::array{attn::Field<BadNested>{.name = "inner", .member = attn::member<&BadNested::inner>}};
  }
  void check(Problems& /*p*/) const {}
};
static_assert(!attn::config_table_is_sound<BadDefault>());
static_assert(!attn::config_table_is_sound<NoExample>());
static_assert(!attn::config_table_is_sound<OddFloat>());
static_assert(!attn::config_table_is_sound<FreeString>());
static_assert(!attn::config_table_is_sound<TwoNames>());
static_assert(!attn::config_table_is_sound<EvenDefault>());
static_assert(!attn::config_table_is_sound<ShortList>());
static_assert(!attn::config_table_is_sound<BadNested>());

// the enum's name table, at compile time
static_assert(attn::enum_name(Gate::relu) == "relu");
static_assert(attn::enum_from_name<Gate>("sigmoid") == Gate::sigmoid);
static_assert(!attn::enum_from_name<Gate>("tanh").has_value());
// ranges as data
static_assert(attn::positive.holds(1e-9) && !attn::positive.holds(0.0));
static_assert(attn::unit_interval.holds(0.0) && attn::unit_interval.holds(1.0) && !attn::unit_interval.holds(1.5));
static_assert(!attn::unit_half_open.holds(0.0) && attn::unit_half_open.holds(1.0));

}  // namespace

TEST_CASE("param: every kind parses, and absent parameters keep their defaults", "[param]") {
  const TestConfig d = parsed(minimal);
  REQUIRE(d.width == 16);
  REQUIRE(d.mode == "fast");
  REQUIRE(d.dilations == attn::IntList{1, 2});
  REQUIRE(d.depth == 3);
  REQUIRE(d.gate == Gate::softmax);
  REQUIRE(d.windows == attn::IntList{2, 4, 8});
  REQUIRE_FALSE(d.groups.has_value());
  REQUIRE(d.attention.head_dim == 8);

  const Json full = Json::parse(R"({
      "width": 32, "mode": "exact", "dilations": [1, 2, 4], "depth": 12, "rate": 0.25, "temperature": -3,
      "taps": 7, "flag": true, "init": "he_normal", "gate": "relu", "kernel": [3, 5], "groups": 4,
      "scale": 0.5, "fallback": "sigmoid", "windows": [16], "weights": [0, 1],
      "attention": {"head_dim": 12, "num_heads": 3, "dropout": 0.1}, "regularizer": {"l2": 0.01}})");
  const TestConfig c = parsed(full);
  REQUIRE(c.width == 32);
  REQUIRE(c.mode == "exact");
  REQUIRE(c.mode.data() == mode_names[1].data());  // points into the choice list
  REQUIRE(c.dilations == attn::IntList{1, 2, 4});
  REQUIRE(c.depth == 12);
  REQUIRE(c.rate == 0.25);
  REQUIRE(c.temperature == -3.0);
  REQUIRE(c.taps == 7);
  REQUIRE(c.flag);
  REQUIRE(c.init == "he_normal");
  REQUIRE(c.gate == Gate::relu);
  REQUIRE(c.kernel == attn::Size2{3, 5});
  REQUIRE(c.groups == 4);
  REQUIRE(c.scale == 0.5);
  REQUIRE(c.fallback == Gate::sigmoid);
  REQUIRE(c.windows == attn::IntList{16});
  REQUIRE(c.weights == attn::FloatList{0.0, 1.0});
  REQUIRE(c.attention.head_dim == 12);
  REQUIRE(c.attention.num_heads == 3);
  REQUIRE(c.attention.dropout == 0.1);
  // a size given as one int is square; a list reads as a span
  REQUIRE(parsed(with(minimal, "kernel", 7)).kernel == attn::Size2{7, 7});
  const std::span<const int> s = c.dilations;
  REQUIRE(s.size() == 3);
  REQUIRE(s[2] == 4);
}

TEST_CASE("param: wrong JSON kinds name the parameter, the expected kind and what came", "[param]") {
  REQUIRE(msg(with(minimal, "width", "16")) ==
          "Parameter 'width' of 'test_param' must be an integer (32-bit), got string \"16\"");
  REQUIRE(msg(with(minimal, "width", 1LL << 33)) ==
          "Parameter 'width' of 'test_param' must be an integer (32-bit), got integer 8589934592");
  REQUIRE(msg(with(minimal, "rate", "x")) == "Parameter 'rate' of 'test_param' must be a number, got string \"x\"");
  REQUIRE(msg(with(minimal, "flag", 1)) == "Parameter 'flag' of 'test_param' must be a boolean, got integer 1");
  REQUIRE(msg(with(minimal, "mode", 3)) ==
          "Parameter 'mode' of 'test_param' must be one of ['fast', 'exact'], got integer 3");
  REQUIRE(msg(with(minimal, "gate", true)) ==
          "Parameter 'gate' of 'test_param' must be one of ['sigmoid', 'softmax', 'relu'], got boolean true");
  REQUIRE(msg(with(minimal, "kernel", Json::array({3, 3, 3}))) ==
          "Parameter 'kernel' of 'test_param' must be an integer or a list of 2 integers, got array [3,3,3]");
  REQUIRE(msg(with(minimal, "groups", "2")) ==
          "Parameter 'groups' of 'test_param' must be an integer or null, got string \"2\"");
  REQUIRE(msg(with(minimal, "scale", Json::array())) ==
          "Parameter 'scale' of 'test_param' must be a number or null, got array []");
  REQUIRE(msg(with(minimal, "fallback", 0)) ==
          "Parameter 'fallback' of 'test_param' must be one of ['sigmoid', 'softmax', 'relu'] or null, got "
          "integer 0");
  REQUIRE(msg(with(minimal, "windows", 3)) ==
          "Parameter 'windows' of 'test_param' must be a list of integers, got integer 3");
  REQUIRE(msg(with(minimal, "weights", Json::object())) ==
          "Parameter 'weights' of 'test_param' must be a list of numbers, got object {}");
  REQUIRE(msg(with(minimal, "attention", 3)) ==
          "Parameter 'attention' of 'test_param' must be an object, got integer 3");
  REQUIRE(msg(with(minimal, "regularizer", 3)) ==
          "Parameter 'regularizer' of 'test_param' must be null, a string or an object, got integer 3");
  REQUIRE(only(with(minimal, "flag", "yes")).parameter == "flag");
}

TEST_CASE("param: bounds, open and closed, min and max, in the row's wording", "[param]") {
  // factory wording (declared in the row)
  REQUIRE(msg(with(minimal, "width", 0)) == "Parameter 'width' must be positive, got 0");
  // closed [1, 12]: both ends accepted, one past each end rejected
  REQUIRE(parsed(with(minimal, "depth", 1)).depth == 1);
  REQUIRE(parsed(with(minimal, "depth", 12)).depth == 12);
  REQUIRE(msg(with(minimal, "depth", 0)) == "depth must be in [1, 12], got 0");
  REQUIRE(msg(with(minimal, "depth", 13)) == "depth must be in [1, 12], got 13");
  // open (0, 1): the ends rejected, values just inside accepted
  REQUIRE(msg(with(minimal, "rate", 0)) == "rate must be in (0, 1), got 0.0");
  REQUIRE(msg(with(minimal, "rate", 1.0)) == "rate must be in (0, 1), got 1.0");
  REQUIRE(parsed(with(minimal, "rate", 1e-12)).rate == 1e-12);
  REQUIRE(parsed(with(minimal, "rate", 0.999999)).rate == 0.999999);
  // a max alone, open
  REQUIRE(msg(with(minimal, "temperature", 100)) == "temperature must be < 100, got 100.0");
  REQUIRE(parsed(with(minimal, "temperature", 99.5)).temperature == 99.5);
  // a min alone, closed; then odd
  REQUIRE(msg(with(minimal, "taps", 0)) == "taps must be >= 1, got 0");
  REQUIRE(msg(with(minimal, "taps", 4)) == "taps must be odd for 'same' padding, got 4");
  REQUIRE(parsed(with(minimal, "taps", 1)).taps == 1);
  // size: both extents
  REQUIRE(msg(with(minimal, "kernel", 0)) == "kernel must be positive, got (0, 0)");
  REQUIRE(msg(with(minimal, "kernel", Json::array({3, 4}))) == "kernel must be odd for 'same' padding, got (3, 4)");
  // the same rules hold for a config built in C++
  TestConfig c = parsed(minimal);
  REQUIRE(cpp_msg(c) == "(no problem)");
  c.depth = 13;
  REQUIRE(cpp_msg(c) == "depth must be in [1, 12], got 13");
  c = parsed(minimal);
  c.width = -4;
  REQUIRE(cpp_msg(c) == "Parameter 'width' must be positive, got -4");
  REQUIRE_THROWS_AS(attn::validate(c), attn::ConfigError);
  REQUIRE_THROWS_WITH(attn::validate(c), "Parameter 'width' must be positive, got -4");
  c = parsed(minimal);
  c.rate = std::nan("");
  REQUIRE(cpp_msg(c) == "rate must be a number, got nan");
  // infinities too (config() would write them as null, which no config reads back)
  c.rate = std::numeric_limits<double>::infinity();
  REQUIRE(cpp_msg(c) == "rate must be a finite number, got inf");
  c = parsed(minimal);
  c.temperature = -std::numeric_limits<double>::infinity();  // below its only bound, < 100
  REQUIRE(cpp_msg(c) == "temperature must be a finite number, got -inf");
  c = parsed(minimal);
  c.init = "bogus";
  REQUIRE_THAT(cpp_msg(c), Catch::StartsWith("Parameter 'init' must be one of ['glorot_uniform'"));
  REQUIRE_THAT(cpp_msg(c), Catch::EndsWith("], got 'bogus'"));
}

TEST_CASE("param: list elements and lengths", "[param]") {
  auto p = only(with(minimal, "windows", Json::array({2, "x", 4})));
  REQUIRE(p.parameter == "windows[1]");
  REQUIRE(p.message == "Parameter 'windows[1]' of 'test_param' must be an integer (32-bit), got string \"x\"");
  p = only(with(minimal, "windows", Json::array({2, 0})));
  REQUIRE(p.parameter == "windows[1]");
  REQUIRE(p.message == "windows[1] must be >= 1, got 0");
  REQUIRE(msg(with(minimal, "weights", Json::array({0.5, 1.5}))) == "weights[1] must be between 0.0 and 1.0, got 1.5");
  REQUIRE(msg(with(minimal, "dilations", Json::array({1, -3}))) == "dilations[1] must be positive, got -3");
  // every bad element is reported
  const Problems both = problems_of(with(minimal, "windows", Json::array({"a", 1, 2.5})));
  REQUIRE(both.size() == 2);
  REQUIRE(both[0].message == "Parameter 'windows[0]' of 'test_param' must be an integer (32-bit), got string \"a\"");
  REQUIRE(both[1].message == "Parameter 'windows[2]' of 'test_param' must be an integer (32-bit), got number 2.5");
  // lengths: minimum, exact, between, capacity
  REQUIRE(msg(with(minimal, "windows", Json::array())) == "windows must have at least 1 element, got 0");
  REQUIRE(msg(with(minimal, "weights", Json::array({0.5}))) == "weights must have exactly 2 elements, got 1");
  REQUIRE(msg(with(minimal, "dilations", Json::array({1, 1, 1, 1, 1}))) ==
          "dilations must have between 1 and 4 elements, got 5");
  Json seventeen = Json::array();
  for (int i = 0; i < 17; ++i) seventeen.push_back(1);
  REQUIRE(msg(with(minimal, "windows", seventeen)) ==
          "Parameter 'windows' of 'test_param' must have at most 16 elements, got 17");
  Json sixteen = seventeen;
  sixteen.erase(16);
  REQUIRE(parsed(with(minimal, "windows", sixteen)).windows.size() == 16);
  // the C++ side: InplaceVector's own bounds
  attn::IntList v{1, 2};
  REQUIRE_THROWS_AS(v.at(2), attn::Error);
  REQUIRE_THROWS_AS((attn::InplaceVector<int, 2>{1, 2, 3}), attn::Error);
  attn::InplaceVector<int, 2> w{1, 2};
  REQUIRE_THROWS_AS(w.push_back(3), attn::Error);
}

TEST_CASE("param: enums parse to values, print as names and suggest the closest name", "[param]") {
  for (const auto& [name, value] : std::vector<std::pair<std::string, Gate>>{
           {"sigmoid", Gate::sigmoid}, {"softmax", Gate::softmax}, {"relu", Gate::relu}}) {
    const TestConfig c = parsed(with(minimal, "gate", name));
    REQUIRE(c.gate == value);
    REQUIRE(attn::config_to_json(c).at("gate") == name);
  }
  const auto p = only(with(minimal, "gate", "softmx"));
  REQUIRE(p.parameter == "gate");
  REQUIRE(p.message == "Parameter 'gate' of 'test_param' must be one of ['sigmoid', 'softmax', 'relu'], got "
                       "'softmx'. Did you mean 'softmax'?");
  REQUIRE(msg(with(minimal, "gate", "tanh")) ==
          "Parameter 'gate' of 'test_param' must be one of ['sigmoid', 'softmax', 'relu'], got 'tanh'");
  REQUIRE(msg(with(minimal, "mode", "exct")) ==
          "Parameter 'mode' of 'test_param' must be one of ['fast', 'exact'], got 'exct'. Did you mean 'exact'?");
  // a value outside the table, built in C++
  TestConfig c = parsed(minimal);
  c.gate = static_cast<Gate>(7);
  REQUIRE(cpp_msg(c) == "Parameter 'gate' must be one of ['sigmoid', 'softmax', 'relu'], got the unnamed value 7");
}

TEST_CASE("param: optional values: null is unset, a value obeys the rules", "[param]") {
  const TestConfig c = parsed(with(with(minimal, "groups", nullptr), "fallback", nullptr));
  REQUIRE_FALSE(c.groups.has_value());
  REQUIRE_FALSE(c.fallback.has_value());
  REQUIRE(attn::config_to_json(c).at("groups").is_null());
  REQUIRE(parsed(with(minimal, "groups", 3)).groups == 3);
  REQUIRE(parsed(with(minimal, "scale", 0)).scale == 0.0);  // non-negative: 0 allowed
  REQUIRE(msg(with(minimal, "groups", 0)) == "groups must be positive, got 0");
  REQUIRE(msg(with(minimal, "scale", -0.5)) == "scale must be non-negative, got -0.5");
  REQUIRE(msg(with(minimal, "fallback", "relu6")) ==
          "Parameter 'fallback' of 'test_param' must be one of ['sigmoid', 'softmax', 'relu'], got 'relu6'. Did "
          "you mean 'relu'?");
}

TEST_CASE("param: a nested config reports its problems with a dotted path", "[param]") {
  auto p = only(with(minimal, "attention", {{"head_dim", 8}, {"num_head", 2}}));
  REQUIRE(p.parameter == "attention.num_head");
  REQUIRE(p.message == "Unknown parameter 'attention.num_head' for 'test_param'. Did you mean "
                       "'attention.num_heads'? Accepted parameters: ['attention.head_dim', 'attention.num_heads', "
                       "'attention.dropout']");
  p = only(with(minimal, "attention", Json::object()));
  REQUIRE(p.parameter == "attention.head_dim");
  REQUIRE(p.message ==
          "Required parameters for 'test_param' are missing: ['attention.head_dim']. Required: ['attention.head_dim']");
  p = only(with(minimal, "attention", {{"head_dim", "8"}}));
  REQUIRE(p.parameter == "attention.head_dim");
  REQUIRE(p.message == "Parameter 'attention.head_dim' of 'test_param' must be an integer (32-bit), got string \"8\"");
  p = only(with(minimal, "attention", {{"head_dim", 8}, {"num_heads", -1}}));
  REQUIRE(p.parameter == "attention.num_heads");
  REQUIRE(p.message == "Parameter 'attention.num_heads' must be positive, got -1");
  REQUIRE(msg(with(minimal, "attention", {{"head_dim", 0}})) == "attention.head_dim must be positive, got 0");
  // the inner cross-field rule, with the path
  p = only(with(minimal, "attention", {{"head_dim", 8}, {"num_heads", 3}}));
  REQUIRE(p.parameter == "attention.num_heads");
  REQUIRE(p.message == "attention: head_dim (8) must be divisible by num_heads (3)");
  // built in C++: the same checks
  TestConfig c = parsed(minimal);
  c.attention.dropout = 2.0;
  REQUIRE(cpp_msg(c) == "Parameter 'attention.dropout' must be between 0.0 and 1.0, got 2.0");
  REQUIRE(attn::check_config(c).front().parameter == "attention.dropout");
}

TEST_CASE("param: the documented validation order", "[param]") {
  // unknown, missing required, wrong kinds, ranges; cross-field rules only when nothing else is wrong
  const Json j = {{"bogus", 1},      {"flag", "x"},  {"depth", 0},
                  {"width", 3},      {"mode", "fast"}, {"attention", {{"head_dim", 8}, {"num_heads", -2}}}};
  const Problems p = problems_of(j);
  REQUIRE(p.size() == 5);
  REQUIRE(p[0].parameter == "bogus");
  REQUIRE(p[1].message == "Required parameters for 'test_param' are missing: ['dilations']. Required: ['width', "
                          "'mode', 'dilations']");
  REQUIRE(p[2].parameter == "flag");
  REQUIRE(p[3].message == "depth must be in [1, 12], got 0");
  REQUIRE(p[4].message == "Parameter 'attention.num_heads' must be positive, got -2");
  // factory-worded rows are checked first, whatever their place in the table
  const Problems r = problems_of(with(with(minimal, "depth", 0), "width", -1));
  REQUIRE(r.size() == 2);
  REQUIRE(r[0].message == "Parameter 'width' must be positive, got -1");
  REQUIRE(r[1].message == "depth must be in [1, 12], got 0");
  // cross-field last
  REQUIRE(msg(with(minimal, "width", 3)) == "width (3) must be even");
  REQUIRE(problems_of(with(with(minimal, "width", 3), "depth", 0)).size() == 1);
}

TEST_CASE("param: JSON round trip and the ADL hooks", "[param]") {
  const Json full = Json::parse(R"({
      "width": 8, "mode": "exact", "dilations": [3], "depth": 2, "rate": 0.75, "temperature": 2.5, "taps": 3,
      "flag": true, "init": "ones", "gate": "sigmoid", "kernel": [1, 3], "groups": 2, "scale": null,
      "fallback": "relu", "windows": [1, 2, 3, 4], "weights": [0.5, 0.5],
      "attention": {"head_dim": 6, "num_heads": 2, "dropout": 0.5}})");
  const TestConfig c = parsed(full);
  const Json out = attn::config_to_json(c);
  REQUIRE(out == full);  // every field, in table order, the values as given
  REQUIRE(attn::config_to_json(parsed(out)) == out);
  TestConfig d{};
  attn::from_json(out, d);
  Json again;
  attn::to_json(again, d);
  REQUIRE(again == out);
  // the defaults
  const Json def = attn::config_to_json(TestConfig{});
  REQUIRE(def.at("gate") == "softmax");
  REQUIRE(def.at("windows") == Json::array({2, 4, 8}));
  REQUIRE(def.at("weights") == Json::array({0.25, 0.75}));
  REQUIRE(def.at("kernel") == Json::array({3, 3}));
  REQUIRE(def.at("fallback").is_null());
  REQUIRE(def.at("attention") == Json({{"head_dim", 8}, {"num_heads", 2}, {"dropout", 0.0}}));
  // the required examples make a valid config
  const Json ex = attn::required_examples<TestConfig>();
  REQUIRE(ex == Json({{"width", 16}, {"mode", "exact"}, {"dilations", {1, 2}}}));
  REQUIRE(problems_of(ex).empty());
}

TEST_CASE("param: info describes every kind", "[param]") {
  const Json info = attn::config_info<TestConfig>();
  REQUIRE(info.at("class") == "TestParam");
  REQUIRE(info.at("required_params") == Json::array({"width", "mode", "dilations"}));
  const Json& opt = info.at("optional_params");
  REQUIRE(opt.at("depth") == 3);
  REQUIRE(opt.at("gate") == "softmax");
  REQUIRE(opt.at("windows") == Json::array({2, 4, 8}));
  REQUIRE(opt.at("groups").is_null());
  REQUIRE(opt.at("regularizer").is_null());
  REQUIRE(opt.at("attention").at("head_dim") == 8);
  const Json& ps = info.at("parameters");
  auto kind = [&](const char* n) { return ps.at(n).at("kind").get<std::string>(); };
  REQUIRE(kind("width") == "int");
  REQUIRE(kind("rate") == "float");
  REQUIRE(kind("flag") == "bool");
  REQUIRE(kind("mode") == "choice");
  REQUIRE(kind("gate") == "enum");
  REQUIRE(kind("kernel") == "size2");
  REQUIRE(kind("groups") == "int_or_null");
  REQUIRE(kind("scale") == "float_or_null");
  REQUIRE(kind("fallback") == "enum_or_null");
  REQUIRE(kind("windows") == "int_list");
  REQUIRE(kind("weights") == "float_list");
  REQUIRE(kind("attention") == "config");
  REQUIRE(kind("regularizer") == "training_only");
  // required: example, no default; optional: default
  REQUIRE(ps.at("width").at("required") == true);
  REQUIRE(ps.at("width").at("example") == 16);
  REQUIRE_FALSE(ps.at("width").contains("default"));
  REQUIRE(ps.at("mode").at("example") == "exact");
  REQUIRE(ps.at("dilations").at("example") == Json::array({1, 2}));
  REQUIRE(ps.at("gate").at("default") == "softmax");
  REQUIRE(ps.at("gate").at("example") == "relu");
  // bounds: text and numbers
  REQUIRE(ps.at("width").at("range") == "> 0");
  REQUIRE(ps.at("width").at("exclusive_minimum") == 0.0);
  REQUIRE(ps.at("width").at("wording") == "factory");
  REQUIRE_FALSE(ps.at("depth").contains("wording"));
  REQUIRE(ps.at("depth").at("range") == "[1, 12]");
  REQUIRE(ps.at("depth").at("minimum") == 1.0);
  REQUIRE(ps.at("depth").at("maximum") == 12.0);
  REQUIRE(ps.at("rate").at("range") == "(0, 1)");
  REQUIRE(ps.at("rate").at("exclusive_maximum") == 1.0);
  REQUIRE(ps.at("temperature").at("range") == "< 100");
  REQUIRE_FALSE(ps.at("temperature").contains("minimum"));
  REQUIRE(ps.at("taps").at("odd") == true);
  REQUIRE(ps.at("kernel").at("odd") == true);
  REQUIRE_FALSE(ps.at("flag").contains("range"));
  // choices, lengths, nested parameters
  REQUIRE(ps.at("mode").at("choices") == Json::array({"fast", "exact"}));
  REQUIRE(ps.at("gate").at("choices") == Json::array({"sigmoid", "softmax", "relu"}));
  REQUIRE(ps.at("fallback").at("choices") == Json::array({"sigmoid", "softmax", "relu"}));
  REQUIRE(ps.at("windows").at("min_length") == 1);
  REQUIRE(ps.at("windows").at("max_length") == 16);
  REQUIRE(ps.at("windows").at("range") == ">= 1");
  REQUIRE(ps.at("weights").at("min_length") == 2);
  REQUIRE(ps.at("weights").at("max_length") == 2);
  REQUIRE(ps.at("attention").at("parameters").at("num_heads").at("kind") == "int");
  REQUIRE(ps.at("attention").at("parameters").at("head_dim").at("required") == true);
  REQUIRE(ps.at("attention").at("default") == opt.at("attention"));
  REQUIRE(ps.at("width").at("doc") == "Width.");
}

TEST_CASE("param: every registered type's rows have a known kind and valid examples", "[param]") {
  const Json info = attn::get_attention_info();
  // the kinds of core/param.hpp, those the basic blocks add (layers/detail/blocks_common.hpp) and
  // adaptive_multi_head's int-or-list (its output_shape and attention_axes, as Keras takes them)
  const std::vector<std::string> kinds{"int",        "float",  "bool",          "choice",     "enum",
                                       "size2",      "int_list", "float_list",  "config",     "training_only",
                                       "activation", "activation_pair", "axis", "padding", "int_or_int_list"};
  for (const auto& [type, e] : info.items()) {
    for (const auto& [name, p] : e.at("parameters").items()) {
      INFO(type << "." << name);
      // a kind, or an optional one ("<kind>_or_null")
      std::string kind = p.at("kind").get<std::string>();
      if (kind.ends_with("_or_null")) kind.resize(kind.size() - std::string_view("_or_null").size());
      REQUIRE(std::find(kinds.begin(), kinds.end(), kind) != kinds.end());
      REQUIRE(p.contains(p.at("required").get<bool>() ? "example" : "default"));
    }
    // each required example alone (with the others) validates
    Json req = Json::object();
    for (const auto& [name, p] : e.at("parameters").items())
      if (p.at("required").get<bool>()) req[name] = p.at("example");
    INFO(type << " " << req.dump());
    REQUIRE(attn::check_attention_config(type, req).empty());
  }
}
