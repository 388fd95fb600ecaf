/// \file
/// Parameter specs: how a layer's Config describes its fields once, so that validation, JSON in and
/// out, defaults, discovery (get_attention_info) and error messages all follow from one table.
///
/// A Config is an aggregate whose member initializers are the defaults. It declares
///   static constexpr std::string_view type_name, class_name, description, use_case;
///   static constexpr auto fields() -> std::array<Field<Config>, N>;
///   static constexpr std::array<std::string_view, M> training_only;  // kept, no effect at inference
///   void check(Problems&) const;                                      // cross-field rules
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "attn/core/error.hpp"

namespace attn {

/// JSON with insertion-ordered objects (configs print in the order they were written).
using Json = nlohmann::ordered_json;

/// One thing wrong with a config: the parameter (empty for whole-config problems) and the message.
struct Problem {
  std::string parameter;
  std::string message;
  friend bool operator==(const Problem&, const Problem&) = default;
};
using Problems = std::vector<Problem>;

/// Single-field range rules; their messages follow the reference's wording.
enum class Rule : std::uint8_t {
  none,
  positive,        ///< > 0
  non_negative,    ///< >= 0
  unit_closed,     ///< in [0, 1]
  unit_half_open,  ///< in (0, 1]
};

/// A "size-like" pair, e.g. a kernel size (rows, cols). JSON accepts `7` and `[7, 7]`.
using Size2 = std::array<int, 2>;

template <class C>
using MemberPtr = std::variant<int C::*, double C::*, bool C::*, std::string_view C::*, Size2 C::*,
                               std::optional<int> C::*, std::optional<double> C::*>;

/// One row of a Config's field table.
template <class C>
struct Field {
  std::string_view name;
  MemberPtr<C> member;
  bool required = false;
  Rule rule = Rule::none;
  /// For string fields: the accepted values (the member then points into this list).
  std::span<const std::string_view> choices{};
  /// For int fields: the value must be odd (kernel sizes with 'same' padding).
  bool odd = false;
  /// For required fields: a valid value, used by documentation and the contract tests.
  double example = 0.0;
  std::string_view doc{};
};

template <class C>
concept LayerConfig = requires(const C& c, Problems& p) {
  { C::type_name } -> std::convertible_to<std::string_view>;
  { C::class_name } -> std::convertible_to<std::string_view>;
  { C::description } -> std::convertible_to<std::string_view>;
  { C::use_case } -> std::convertible_to<std::string_view>;
  C::fields();
  C::training_only;
  c.check(p);
};

namespace detail {

/// Python's repr of a float: shortest round trip, always with a decimal point or exponent.
inline std::string py_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

/// Python's repr of a JSON value: 'strings', True/False/None, [lists], {'dicts': ...}.
inline std::string py_repr(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null: return "None";
    case Json::value_t::boolean: return j.get<bool>() ? "True" : "False";
    case Json::value_t::number_integer: return std::to_string(j.get<std::int64_t>());
    case Json::value_t::number_unsigned: return std::to_string(j.get<std::uint64_t>());
    case Json::value_t::number_float: return py_float(j.get<double>());
    case Json::value_t::string: return fmt::format("'{}'", j.get<std::string>());
    case Json::value_t::array: {
      std::vector<std::string> parts;
      for (const auto& e : j) parts.push_back(py_repr(e));
      return fmt::format("[{}]", fmt::join(parts, ", "));
    }
    case Json::value_t::object: {
      std::vector<std::string> parts;
      for (const auto& [k, v] : j.items()) parts.push_back(fmt::format("'{}': {}", k, py_repr(v)));
      return fmt::format("{{{}}}", fmt::join(parts, ", "));
    }
    default: return j.dump();
  }
}

/// ['a', 'b']
template <class Range>
std::string py_list(const Range& names) {
  std::vector<std::string> parts;
  for (const auto& n : names) parts.push_back(fmt::format("'{}'", n));
  return fmt::format("[{}]", fmt::join(parts, ", "));
}

/// What a JSON value is, for messages: `string "8"`, `number 7.5`, `null`.
inline std::string json_kind(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return fmt::format("boolean {}", j.dump());
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return fmt::format("integer {}", j.dump());
    case Json::value_t::number_float: return fmt::format("number {}", j.dump());
    case Json::value_t::string: return fmt::format("string {}", j.dump());
    case Json::value_t::array: return fmt::format("array {}", j.dump());
    case Json::value_t::object: return fmt::format("object {}", j.dump());
    default: return j.dump();
  }
}

/// Levenshtein distance, for did-you-mean suggestions.
inline std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

/// The candidates closest to `word` (distance at most a third of the longer word, at least 2),
/// best first.
template <class Range>
std::vector<std::string> closest(std::string_view word, const Range& candidates) {
  std::vector<std::pair<std::size_t, std::string>> scored;
  for (const auto& c : candidates) {
    const std::string_view cv(c);
    const std::size_t d = edit_distance(word, cv);
    const std::size_t limit = std::max<std::size_t>(2, std::max(word.size(), cv.size()) / 3);
    const bool prefix = !word.empty() && (cv.starts_with(word) || word.starts_with(cv));
    if (d <= limit || prefix) scored.emplace_back(d, std::string(cv));
  }
  std::stable_sort(scored.begin(), scored.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> out;
  for (auto& s : scored) out.push_back(std::move(s.second));
  return out;
}

/// Names the reference factory itself checks, in the order it checks them, with its wording
/// ("Parameter 'x' must be ..."). Other names get the layer classes' wording ("x must be ...").
inline constexpr std::array<std::string_view, 6> factory_positive_names{"dim",      "embed_dim",
                                                                        "d_model",  "channels",
                                                                        "num_heads", "n_head"};
inline constexpr std::array<std::string_view, 5> factory_dropout_names{
    "dropout", "dropout_rate", "attention_dropout", "attn_dropout_rate", "proj_dropout_rate"};

inline int factory_rank(std::string_view name) {
  int r = 0;
  for (auto n : factory_positive_names) {
    if (n == name) return r;
    ++r;
  }
  for (auto n : factory_dropout_names) {
    if (n == name) return r;
    ++r;
  }
  return -1;
}

inline std::string range_message(std::string_view name, Rule rule, const std::string& value) {
  const bool factory = factory_rank(name) >= 0;
  switch (rule) {
    case Rule::positive:
      return factory ? fmt::format("Parameter '{}' must be positive, got {}", name, value)
                     : fmt::format("{} must be positive, got {}", name, value);
    case Rule::non_negative: return fmt::format("{} must be non-negative, got {}", name, value);
    case Rule::unit_closed:
      return factory ? fmt::format("Parameter '{}' must be between 0.0 and 1.0, got {}", name, value)
                     : fmt::format("{} must be between 0.0 and 1.0, got {}", name, value);
    case Rule::unit_half_open: return fmt::format("{} must be in (0, 1], got {}", name, value);
    case Rule::none: break;
  }
  return {};
}

inline bool rule_holds(Rule rule, double v) {
  switch (rule) {
    case Rule::positive: return v > 0;
    case Rule::non_negative: return v >= 0;
    case Rule::unit_closed: return v >= 0.0 && v <= 1.0;
    case Rule::unit_half_open: return v > 0.0 && v <= 1.0;
    case Rule::none: return !std::isnan(v);
  }
  return true;
}

/// Checks one field's value of config `c` against its rule, appending a problem if broken.
template <class C>
void check_field(const C& c, const Field<C>& f, Problems& problems) {
  auto add = [&](std::string msg) { problems.push_back({std::string(f.name), std::move(msg)}); };
  std::visit(
      [&](auto ptr) {
        using M = std::remove_cvref_t<decltype(c.*ptr)>;
        const M& v = c.*ptr;
        if constexpr (std::is_same_v<M, int>) {
          if (!rule_holds(f.rule, v)) add(range_message(f.name, f.rule, std::to_string(v)));
          else if (f.odd && v % 2 == 0)
            add(fmt::format("{} must be odd for 'same' padding, got {}", f.name, v));
        } else if constexpr (std::is_same_v<M, double>) {
          if (std::isnan(v)) add(fmt::format("{} must be a number, got nan", f.name));
          else if (!rule_holds(f.rule, v)) add(range_message(f.name, f.rule, py_float(v)));
        } else if constexpr (std::is_same_v<M, std::string_view>) {
          if (!f.choices.empty() && std::find(f.choices.begin(), f.choices.end(), v) == f.choices.end())
            add(fmt::format("Parameter '{}' must be one of {}, got '{}'", f.name, py_list(f.choices), v));
        } else if constexpr (std::is_same_v<M, Size2>) {
          if (!rule_holds(f.rule, v[0]) || !rule_holds(f.rule, v[1]))
            add(range_message(f.name, f.rule, fmt::format("({}, {})", v[0], v[1])));
          else if (f.odd && (v[0] % 2 == 0 || v[1] % 2 == 0))
            add(fmt::format("{} must be odd for 'same' padding, got ({}, {})", f.name, v[0], v[1]));
        } else if constexpr (std::is_same_v<M, std::optional<int>>) {
          if (v && !rule_holds(f.rule, *v)) add(range_message(f.name, f.rule, std::to_string(*v)));
        } else if constexpr (std::is_same_v<M, std::optional<double>>) {
          if (v && !rule_holds(f.rule, *v)) add(range_message(f.name, f.rule, py_float(*v)));
        }
      },
      f.member);
}

/// Reads one JSON value into field `f` of `c`; returns a problem message on a wrong kind.
template <class C>
std::optional<std::string> assign_field(C& c, const Field<C>& f, const Json& j, std::string_view type) {
  auto wrong = [&](std::string_view expected) {
    return fmt::format("Parameter '{}' of '{}' must be {}, got {}", f.name, type, expected, json_kind(j));
  };
  auto read_int = [&](const Json& v, int& out) -> bool {
    if (v.is_number_integer()) {
      const auto x = v.get<std::int64_t>();
      if (x < std::numeric_limits<int>::min() || x > std::numeric_limits<int>::max()) return false;
      out = static_cast<int>(x);
      return true;
    }
    if (v.is_number_unsigned()) {
      const auto x = v.get<std::uint64_t>();
      if (x > static_cast<std::uint64_t>(std::numeric_limits<int>::max())) return false;
      out = static_cast<int>(x);
      return true;
    }
    return false;
  };
  std::optional<std::string> result;
  std::visit(
      [&](auto ptr) {
        using M = std::remove_cvref_t<decltype(c.*ptr)>;
        M& dst = c.*ptr;
        if constexpr (std::is_same_v<M, int>) {
          if (!read_int(j, dst)) result = wrong("an integer (32-bit)");
        } else if constexpr (std::is_same_v<M, double>) {
          if (j.is_number()) dst = j.get<double>();
          else result = wrong("a number");
        } else if constexpr (std::is_same_v<M, bool>) {
          if (j.is_boolean()) dst = j.get<bool>();
          else result = wrong("a boolean");
        } else if constexpr (std::is_same_v<M, std::string_view>) {
          if (!j.is_string()) {
            result = wrong(f.choices.empty() ? std::string("a string")
                                             : fmt::format("one of {}", py_list(f.choices)));
            return;
          }
          const auto s = j.get<std::string>();
          auto it = std::find(f.choices.begin(), f.choices.end(), s);
          if (it == f.choices.end()) {
            auto near = closest(s, f.choices);
            result = fmt::format("Parameter '{}' of '{}' must be one of {}, got '{}'{}", f.name, type,
                                 py_list(f.choices), s,
                                 near.empty() ? "" : fmt::format(". Did you mean '{}'?", near.front()));
          } else {
            dst = *it;  // points into the static choice list
          }
        } else if constexpr (std::is_same_v<M, Size2>) {
          int a = 0;
          int b = 0;
          if (read_int(j, a)) {
            dst = {a, a};
          } else if (j.is_array() && j.size() == 2 && read_int(j[0], a) && read_int(j[1], b)) {
            dst = {a, b};
          } else {
            result = wrong("an integer or a list of 2 integers");
          }
        } else if constexpr (std::is_same_v<M, std::optional<int>>) {
          int a = 0;
          if (j.is_null()) dst.reset();
          else if (read_int(j, a)) dst = a;
          else result = wrong("an integer or null");
        } else if constexpr (std::is_same_v<M, std::optional<double>>) {
          if (j.is_null()) dst.reset();
          else if (j.is_number()) dst = j.get<double>();
          else result = wrong("a number or null");
        }
      },
      f.member);
  return result;
}

template <class C>
Json field_to_json(const C& c, const Field<C>& f) {
  return std::visit(
      [&](auto ptr) -> Json {
        using M = std::remove_cvref_t<decltype(c.*ptr)>;
        const M& v = c.*ptr;
        if constexpr (std::is_same_v<M, std::string_view>) return std::string(v);
        else if constexpr (std::is_same_v<M, Size2>) return Json::array({v[0], v[1]});
        else if constexpr (std::is_same_v<M, std::optional<int>> ||
                           std::is_same_v<M, std::optional<double>>)
          return v ? Json(*v) : Json(nullptr);
        else return Json(v);
      },
      f.member);
}

template <class C>
std::string_view field_kind(const Field<C>& f) {
  constexpr std::array<std::string_view, 7> kinds{"int",  "float",      "bool",        "string",
                                                  "size2", "int_or_null", "float_or_null"};
  return f.choices.empty() || f.member.index() != 3 ? kinds[f.member.index()] : "choice";
}

/// Range checks in the reference's order: the names its factory checks first, then the rest in
/// table order.
template <class C>
void check_ranges(const C& c, const std::vector<bool>& skip, Problems& problems) {
  constexpr auto fields = C::fields();
  std::vector<std::size_t> order(fields.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const int ra = factory_rank(fields[a].name);
    const int rb = factory_rank(fields[b].name);
    return (ra < 0 ? 1000 : ra) < (rb < 0 ? 1000 : rb);
  });
  for (std::size_t i : order)
    if (!skip[i]) check_field(c, fields[i], problems);
}

}  // namespace detail

/// All problems of a config given as a value (e.g. built directly in C++): ranges, then cross-field.
template <LayerConfig C>
Problems check_config(const C& c) {
  Problems problems;
  detail::check_ranges(c, std::vector<bool>(C::fields().size(), false), problems);
  if (problems.empty()) c.check(problems);
  return problems;
}

/// Throws ConfigError with the first problem of `c` (the constructors of layers call this, so an
/// object that exists is valid).
template <LayerConfig C>
void validate(const C& c) {
  const Problems p = check_config(c);
  if (!p.empty()) throw ConfigError(p.front().message, std::string(C::type_name), p.front().parameter);
}

/// Parses JSON parameters into a config, collecting every problem, in the documented order:
/// unknown parameters, missing required, wrong JSON kinds, ranges, cross-field rules (the last only
/// when nothing else was wrong). The reserved keys `type` and `name` must be removed by the caller.
template <LayerConfig C>
C parse_config(const Json& params, Problems& problems) {
  constexpr auto fields = C::fields();
  const std::string type(C::type_name);
  C c{};
  if (!params.is_object()) {
    problems.push_back({"", fmt::format("Parameters for '{}' must be a JSON object, got {}", type,
                                        detail::json_kind(params))});
    return c;
  }
  std::vector<std::string_view> accepted;
  for (const auto& f : fields) accepted.push_back(f.name);
  for (auto n : C::training_only) accepted.push_back(n);
  for (const auto& [key, value] : params.items()) {
    if (std::find(accepted.begin(), accepted.end(), key) != accepted.end()) continue;
    auto near = detail::closest(key, accepted);
    problems.push_back(
        {key, fmt::format("Unknown parameter '{}' for '{}'.{} Accepted parameters: {}", key, type,
                          near.empty() ? "" : fmt::format(" Did you mean '{}'?", near.front()),
                          detail::py_list(accepted))});
  }
  std::vector<std::string_view> required, missing;
  for (const auto& f : fields) {
    if (!f.required) continue;
    required.push_back(f.name);
    if (!params.contains(std::string(f.name))) missing.push_back(f.name);
  }
  if (!missing.empty())
    problems.push_back({std::string(missing.front()),
                        fmt::format("Required parameters for '{}' are missing: {}. Required: {}", type,
                                    detail::py_list(missing), detail::py_list(required))});
  std::vector<bool> skip(fields.size(), false);
  for (std::size_t i = 0; i < fields.size(); ++i) {
    const std::string key(fields[i].name);
    if (!params.contains(key)) {
      skip[i] = fields[i].required;  // missing: already reported
      continue;
    }
    if (auto err = detail::assign_field(c, fields[i], params.at(key), type)) {
      problems.push_back({key, *err});
      skip[i] = true;
    }
  }
  for (auto n : C::training_only) {
    const std::string key(n);
    if (params.contains(key) && !(params[key].is_null() || params[key].is_string() || params[key].is_object()))
      problems.push_back({key, fmt::format("Parameter '{}' of '{}' must be null, a string or an object, "
                                           "got {}", key, type, detail::json_kind(params[key]))});
  }
  const bool clean = problems.empty();
  detail::check_ranges(c, skip, problems);
  if (clean && problems.empty()) c.check(problems);
  return c;
}

/// Every field, in table order (training-only parameters are not part of the struct).
template <LayerConfig C>
Json config_to_json(const C& c) {
  Json j = Json::object();
  for (const auto& f : C::fields()) j[std::string(f.name)] = detail::field_to_json(c, f);
  return j;
}

/// ADL hooks so that `Json j = cfg;` and `j.get<MultiHeadAttentionConfig>()` work.
template <LayerConfig C>
void to_json(Json& j, const C& c) {
  j = config_to_json(c);
}
template <LayerConfig C>
void from_json(const Json& j, C& c) {
  Problems p;
  // A whole layer config may carry its "type" (which must match) and "name"; they are not fields.
  Json fields = j;
  if (j.is_object()) {
    if (j.contains("type") && j["type"] != std::string(C::type_name))
      throw ConfigError(fmt::format("Key 'type' ({}) does not match the attention type '{}'",
                                    detail::json_kind(j["type"]), C::type_name),
                        std::string(C::type_name), "type");
    fields.erase("type");
    fields.erase("name");
  }
  c = parse_config<C>(fields, p);
  if (!p.empty()) throw ConfigError(p.front().message, std::string(C::type_name), p.front().parameter);
}

/// Discovery record of a config type (the reference's five keys, plus per-parameter detail).
template <LayerConfig C>
Json config_info() {
  static constexpr C defaults{};
  Json info = Json::object();
  info["class"] = std::string(C::class_name);
  info["description"] = std::string(C::description);
  info["use_case"] = std::string(C::use_case);
  Json required = Json::array();
  Json optional = Json::object();
  Json params = Json::object();
  for (const auto& f : C::fields()) {
    Json p = Json::object();
    p["kind"] = std::string(detail::field_kind(f));
    p["required"] = f.required;
    if (f.required) {
      required.push_back(std::string(f.name));
      p["example"] = f.member.index() == 0 ? Json(static_cast<int>(f.example)) : Json(f.example);
    } else {
      optional[std::string(f.name)] = detail::field_to_json(defaults, f);
      p["default"] = optional[std::string(f.name)];
    }
    switch (f.rule) {
      case Rule::positive: p["range"] = "> 0"; break;
      case Rule::non_negative: p["range"] = ">= 0"; break;
      case Rule::unit_closed: p["range"] = "[0, 1]"; break;
      case Rule::unit_half_open: p["range"] = "(0, 1]"; break;
      case Rule::none: break;
    }
    if (f.odd) p["odd"] = true;
    if (!f.choices.empty()) {
      Json ch = Json::array();
      for (auto s : f.choices) ch.push_back(std::string(s));
      p["choices"] = ch;
    }
    p["doc"] = std::string(f.doc);
    params[std::string(f.name)] = p;
  }
  for (auto n : C::training_only) {
    optional[std::string(n)] = nullptr;
    params[std::string(n)] = Json{{"kind", "training_only"},
                                  {"required", false},
                                  {"default", nullptr},
                                  {"doc", "Kept for configs written for the reference; no effect at "
                                          "inference."}};
  }
  info["required_params"] = required;
  info["optional_params"] = optional;
  info["parameters"] = params;
  return info;
}

/// Compile-time sanity of a field table: unique names, and defaults that satisfy their own rules.
template <LayerConfig C>
constexpr bool config_table_is_sound() {
  constexpr auto fields = C::fields();
  const C c{};
  for (std::size_t i = 0; i < fields.size(); ++i) {
    for (std::size_t j = i + 1; j < fields.size(); ++j)
      if (fields[i].name == fields[j].name) return false;
    for (auto t : C::training_only)
      if (t == fields[i].name) return false;
    if (fields[i].required) continue;
    const bool ok = std::visit(
        [&](auto ptr) -> bool {
          using M = std::remove_cvref_t<decltype(c.*ptr)>;
          const auto& v = c.*ptr;
          const auto holds = [&](double x) {
            switch (fields[i].rule) {
              case Rule::positive: return x > 0;
              case Rule::non_negative: return x >= 0;
              case Rule::unit_closed: return x >= 0 && x <= 1;
              case Rule::unit_half_open: return x > 0 && x <= 1;
              case Rule::none: return true;
            }
            return true;
          };
          if constexpr (std::is_same_v<M, int> || std::is_same_v<M, double>) return holds(v);
          else if constexpr (std::is_same_v<M, Size2>) return holds(v[0]) && holds(v[1]);
          else if constexpr (std::is_same_v<M, std::string_view>) {
            if (fields[i].choices.empty()) return true;
            for (auto s : fields[i].choices)
              if (s == v) return true;
            return false;
          } else if constexpr (std::is_same_v<M, std::optional<int>> ||
                               std::is_same_v<M, std::optional<double>>)
            return !v || holds(*v);
          else return true;
        },
        fields[i].member);
    if (!ok) return false;
  }
  return true;
}

}  // namespace attn
