/// \file
/// Parameter specs: how a layer's Config describes its fields once, so that validation, JSON in and
/// out, defaults, discovery (get_attention_info) and error messages all follow from one table.
///
/// A Config is an aggregate whose member initializers are the defaults (a `constexpr Config{}` must
/// compile: the registry reads the defaults at compile time). A layer's Config declares
///   static constexpr std::string_view type_name, class_name, description, use_case;
///   static constexpr auto fields() -> std::array<Field<Config>, N>;
///   static constexpr std::array<std::string_view, M> training_only;  // kept, no effect at inference
///   void check(Problems&) const;                                      // cross-field rules
/// A nested config (a member whose type is itself a Config, e.g. an inner attention's options) needs
/// only `fields()` and `check()` (`training_only` is optional).
///
/// A row of the table names the member through `member<&Config::x>` and declares its rules as data:
///   Field<C>{.name = "embed_dim", .member = member<&C::embed_dim>, .required = true, .example = "32",
///            .wording = Wording::factory, .range = positive, .doc = "..."}
///   Field<C>{.name = "kernel_size", .member = member<&C::kernel_size>, .range = positive, .odd = true}
///   Field<C>{.name = "window_sizes", .member = member<&C::window_sizes>,
///            .range = {.min = at_least(1), .max = at_most(64)}, .length = {.min = 1}}
/// `range` bounds every number of the value (both extents of a size, every element of a list, an
/// optional's value when set); `odd` likewise; `length` bounds a list's length; `choices` lists the
/// accepted strings of a string-choice member (which then points into that list); `example` is the
/// JSON text of a valid value (required rows must have one); `wording` selects the message style.
/// Validation order: unknown parameters (did-you-mean), missing required, wrong JSON kinds, ranges
/// (rows with Wording::factory first, then the others, each group in table order), cross-field
/// rules (only when nothing else was wrong).
///
/// Parameter kinds (the member's C++ type selects its trait, ParamTraits<M>):
///   int            "int"          JSON integer in 32-bit range             range, odd
///   double         "float"        JSON number                              range
///   bool           "bool"         JSON boolean
///   std::string_view "choice"     JSON string among `choices`              choices (required)
///   enum class E   "enum"         JSON string among E's names (a constexpr table found by ADL:
///                                 `constexpr std::array<EnumName<E>, N> enum_names(E)`); forward
///                                 code compares E values, never strings
///   Size2          "size2"        `7` or `[7, 5]`                          range, odd (each extent)
///   std::optional<T> "<T>_or_null" null (unset) or a T                    T's rules when set
///   InplaceVector<T, N> (IntList, FloatList)  "<T>_list"  JSON array of T  range, odd per element;
///                                 length (plus the capacity N)
///   a nested Config "config"      JSON object checked by the inner table; problems name the dotted
///                                 path (`attention.num_heads`, `window_sizes[2]` for list elements)
/// A member type without a trait does not compile (static_assert naming this comment).
///
/// Lists are `InplaceVector<T, N>`, a fixed-capacity vector written here, not std::vector: a
/// std::vector cannot be the member of a `constexpr Config{}` with a non-empty default (a constant
/// may not own heap memory), and the registry, `config_table_is_sound` and get_attention_info read
/// defaults from `constexpr Config{}`. The capacity (default 16) is the list's maximum length; a
/// longer JSON list is a ConfigError. Forward code reads a list as a span (`std::span<const int>`).
///
/// Messages: wrong kinds say "Parameter 'x' of 'type' must be <expected>, got <json kind>"; rules
/// follow the reference's two wordings, chosen per row by `wording`: Wording::factory (the parameters
/// the reference's factory checks itself: "Parameter 'num_heads' must be positive, got -8") or
/// Wording::layer (the layer classes' checks: "ratio must be positive, got 0"). The rule phrase comes
/// from the range data: (0, inf) "must be positive", [0, inf) "must be non-negative", [0, 1] "must be
/// between 0.0 and 1.0", otherwise "must be > a", ">= a", "< b", "<= b" or "in [a, b]" with the
/// brackets of the bounds.
///
/// Examples are JSON text in the row, not a C++ value, because one row type serves every kind: so a
/// required list, choice, enum or nested config has one too (`"[1, 2]"`, `R"("softmax")"`). The
/// contract tests parse every registered type's examples through their traits.
///
/// Errors: parse_config / check_config collect Problems; validate, from_json and the factory throw
/// ConfigError with the first (its parameter() is the path). InplaceVector throws attn::Error past its
/// capacity; an example that is not JSON text throws attn::Error (a table bug, caught by the tests).
/// A table that is not sound (config_table_is_sound: duplicate names, a rule its kind does not use, a
/// required row without example, a default outside its own rules) fails the registry's static_assert.
///
/// How to add a parameter kind: specialise `ParamTraits<M>` (a full or a constrained partial
/// specialisation, declared before any Config that uses it) with the static members listed under
/// ParamKind below: `kind` (its name in messages and info), `expected` (what the JSON must be, for the
/// wrong-kind message), `parse` (JSON -> value: Parsed::ok, Parsed::wrong_kind to let the caller report
/// "must be <expected>", or Parsed::reported after adding its own problems to the context), `to_json`,
/// `check` (the row's rules on a value, from JSON or built in C++, problems added to the context in the
/// row's wording), constexpr `valid` (the same rules as a bool, for the compile-time check of defaults),
/// constexpr `row_ok` (the row declares only rules this kind uses) and `describe` (the kind's entries
/// of get_attention_info). Optional members: `plural` ("integers": list messages) and
/// `expected_or_null` (the wording inside an optional). `ParamKind<M>` then holds, and the kind works
/// everywhere (optional<M> and lists of it included). Add a case to tests/core/test_param.cpp.
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "attn/core/error.hpp"

namespace attn {

/// JSON with insertion-ordered objects (configs print in the order they were written).
using Json = nlohmann::ordered_json;

/// One thing wrong with a config: the parameter (empty for whole-config problems; a dotted path
/// inside a nested config, `name[i]` for a list element) and the message.
struct Problem {
  std::string parameter;
  std::string message;
  friend bool operator==(const Problem&, const Problem&) = default;
};
using Problems = std::vector<Problem>;

// ---- rules as data -------------------------------------------------------------------------------

/// One bound of a numeric range: the value and whether it is excluded (open).
struct Limit {
  double value = 0.0;
  bool open = false;
  friend constexpr bool operator==(const Limit&, const Limit&) = default;
};
constexpr Limit greater_than(double v) noexcept { return {v, true}; }  ///< x > v
constexpr Limit at_least(double v) noexcept { return {v, false}; }     ///< x >= v
constexpr Limit less_than(double v) noexcept { return {v, true}; }     ///< x < v
constexpr Limit at_most(double v) noexcept { return {v, false}; }      ///< x <= v

/// The numeric range of a field (each number of the value); no bound: any finite number (JSON has no
/// NaN or infinity; from C++ both are refused, and config() could not write them).
struct Range {
  std::optional<Limit> min{};
  std::optional<Limit> max{};
  [[nodiscard]] constexpr bool bounded() const noexcept { return min.has_value() || max.has_value(); }
  [[nodiscard]] constexpr bool holds(double v) const noexcept {
    if (v - v != 0) return false;  // NaN or ±inf (std::isfinite is not constexpr)
    if (min && (min->open ? !(v > min->value) : !(v >= min->value))) return false;
    if (max && (max->open ? !(v < max->value) : !(v <= max->value))) return false;
    return true;
  }
  friend constexpr bool operator==(const Range&, const Range&) = default;
};
inline constexpr Range positive{.min = greater_than(0)};                        ///< > 0
inline constexpr Range non_negative{.min = at_least(0)};                        ///< >= 0
inline constexpr Range unit_interval{.min = at_least(0), .max = at_most(1)};    ///< [0, 1]
inline constexpr Range unit_half_open{.min = greater_than(0), .max = at_most(1)};  ///< (0, 1]

/// Bounds on a list's length (the list's capacity also bounds it).
struct Length {
  std::size_t min = 0;
  std::size_t max = std::numeric_limits<std::size_t>::max();
  [[nodiscard]] constexpr bool bounded() const noexcept {
    return min > 0 || max != std::numeric_limits<std::size_t>::max();
  }
  [[nodiscard]] constexpr bool holds(std::size_t n) const noexcept { return n >= min && n <= max; }
};
constexpr Length exact_length(std::size_t n) noexcept { return {n, n}; }

/// The message style of a row's rules (the reference words them two ways).
enum class Wording : std::uint8_t {
  layer,    ///< the layer classes' checks: "ratio must be positive, got 0"
  factory,  ///< the parameters the reference's factory checks itself, before building the layer:
            ///< "Parameter 'num_heads' must be positive, got -8"; these rows are checked first
};

/// A row of a field table without its member: what a parameter kind's trait sees.
struct FieldSpec {
  std::string_view name;
  bool required = false;
  std::string_view example{};
  Wording wording = Wording::layer;
  Range range{};
  bool odd = false;
  Length length{};
  std::span<const std::string_view> choices{};
  std::string_view doc{};
};

/// A "size-like" pair, e.g. a kernel size (rows, cols). JSON accepts `7` and `[7, 7]`.
using Size2 = std::array<int, 2>;

/// A vector of at most N elements stored inline: usable in a `constexpr Config{}` (see the header
/// comment), trivially copyable for trivially copyable T. Reads as a std::span<const T>.
template <class T, std::size_t N = 16>
class InplaceVector {
public:
  using value_type = T;
  using size_type = std::size_t;
  using iterator = T*;
  using const_iterator = const T*;

  constexpr InplaceVector() noexcept = default;
  /// Throws attn::Error when `init` has more than N elements (a compile error in a constant).
  /// (Members set in the initializer list, not the body: g++ rejects writes to a member of a const
  /// object under construction in a constant expression.)
  constexpr InplaceVector(std::initializer_list<T> init) : items_(copy(init)), size_(init.size()) {}

  [[nodiscard]] static constexpr std::size_t capacity() noexcept { return N; }
  [[nodiscard]] constexpr std::size_t size() const noexcept { return size_; }
  [[nodiscard]] constexpr bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] constexpr T* data() noexcept { return items_.data(); }
  [[nodiscard]] constexpr const T* data() const noexcept { return items_.data(); }
  [[nodiscard]] constexpr T* begin() noexcept { return items_.data(); }
  [[nodiscard]] constexpr T* end() noexcept { return items_.data() + size_; }
  [[nodiscard]] constexpr const T* begin() const noexcept { return items_.data(); }
  [[nodiscard]] constexpr const T* end() const noexcept { return items_.data() + size_; }
  /// Unchecked, like std::vector's.
  [[nodiscard]] constexpr T& operator[](std::size_t i) noexcept { return items_[i]; }
  [[nodiscard]] constexpr const T& operator[](std::size_t i) const noexcept { return items_[i]; }
  /// Checked: throws attn::Error naming the index and the size.
  [[nodiscard]] constexpr const T& at(std::size_t i) const {
    if (i >= size_) throw Error(fmt::format("attn::InplaceVector: index {} out of range (size {})", i, size_));
    return items_[i];
  }
  /// Throws attn::Error when full.
  constexpr void push_back(const T& v) {
    if (size_ == N) throw Error(fmt::format("attn::InplaceVector: push_back beyond the capacity {}", N));
    items_[size_++] = v;
  }
  constexpr void clear() noexcept { size_ = 0; }
  constexpr operator std::span<const T>() const noexcept { return {items_.data(), size_}; }  // NOLINT

  friend constexpr bool operator==(const InplaceVector& a, const InplaceVector& b) noexcept {
    if (a.size_ != b.size_) return false;
    for (std::size_t i = 0; i < a.size_; ++i)
      if (!(a.items_[i] == b.items_[i])) return false;
    return true;
  }

private:
  static constexpr std::array<T, N> copy(std::initializer_list<T> init) {
    if (init.size() > N)
      throw Error(fmt::format("attn::InplaceVector: {} elements exceed the capacity {}", init.size(), N));
    std::array<T, N> a{};
    std::size_t i = 0;
    for (const T& v : init) a[i++] = v;
    return a;
  }

  std::array<T, N> items_{};
  std::size_t size_ = 0;
};
using IntList = InplaceVector<int>;       ///< a list of ints (window sizes, split sizes, dilations)
using FloatList = InplaceVector<double>;  ///< a list of floats

/// One name of an enum's constexpr name table.
template <class E>
struct EnumName {
  E value;
  std::string_view name;
};

/// An enum usable as a parameter: `enum_names(E{})`, found by argument-dependent lookup (a function
/// in the enum's namespace, or a friend of the class that declares it), returns its name table:
///   constexpr std::array<EnumName<Mode>, 2> enum_names(Mode) { return {{{Mode::a, "a"}, {Mode::b, "b"}}}; }
template <class E>
concept NamedEnum = std::is_enum_v<E> && requires { enum_names(E{}); };

// ---- helpers for messages ------------------------------------------------------------------------

namespace detail {

/// Python's repr of a float: shortest round trip, always with a decimal point or exponent.
inline std::string py_float(double v) {
  if (v != v) return "nan";
  if (v == std::numeric_limits<double>::infinity()) return "inf";
  if (v == -std::numeric_limits<double>::infinity()) return "-inf";
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
template <class Range_>
std::string py_list(const Range_& names) {
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
template <class Range_>
std::vector<std::string> closest(std::string_view word, const Range_& candidates) {
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

/// ". Did you mean 'x'?" for the closest candidate, or nothing.
template <class Range_>
std::string did_you_mean(std::string_view word, const Range_& candidates) {
  auto near = closest(word, candidates);
  return near.empty() ? std::string() : fmt::format(". Did you mean '{}'?", near.front());
}

/// Reads a JSON integer that fits an int.
inline bool read_int(const Json& v, int& out) {
  // unsigned first: is_number_integer() is true for JSON's unsigned integers too, and reading one
  // above 2^63 as int64 would wrap it (18446744073709551615 would read as -1)
  if (v.is_number_unsigned()) {
    const auto x = v.get<std::uint64_t>();
    if (x > static_cast<std::uint64_t>(std::numeric_limits<int>::max())) return false;
    out = static_cast<int>(x);
    return true;
  }
  if (v.is_number_integer()) {
    const auto x = v.get<std::int64_t>();
    if (x < std::numeric_limits<int>::min() || x > std::numeric_limits<int>::max()) return false;
    out = static_cast<int>(x);
    return true;
  }
  return false;
}

/// A bound in messages and info: 0, 1.5, 1e-09.
inline std::string bound_str(double v) { return fmt::format("{}", v); }

/// The rule phrase of a range ("must be positive", "must be in (0, 1]").
inline std::string range_phrase(const Range& r) {
  if (r.min == greater_than(0) && !r.max) return "must be positive";
  if (r.min == at_least(0) && !r.max) return "must be non-negative";
  if (r.min == at_least(0) && r.max == at_most(1)) return "must be between 0.0 and 1.0";
  if (r.min && r.max)
    return fmt::format("must be in {}{}, {}{}", r.min->open ? '(' : '[', bound_str(r.min->value),
                       bound_str(r.max->value), r.max->open ? ')' : ']');
  if (r.min) return fmt::format("must be {} {}", r.min->open ? ">" : ">=", bound_str(r.min->value));
  if (r.max) return fmt::format("must be {} {}", r.max->open ? "<" : "<=", bound_str(r.max->value));
  return "must be a number";
}

/// The range as text for info: "> 0", "[0, 1]", "(0, 1]".
inline std::string range_text(const Range& r) {
  if (r.min && r.max)
    return fmt::format("{}{}, {}{}", r.min->open ? '(' : '[', bound_str(r.min->value), bound_str(r.max->value),
                       r.max->open ? ')' : ']');
  if (r.min) return fmt::format("{} {}", r.min->open ? ">" : ">=", bound_str(r.min->value));
  if (r.max) return fmt::format("{} {}", r.max->open ? "<" : "<=", bound_str(r.max->value));
  return {};
}

/// info entries of a range: "range" (text) and the bounds as numbers, in JSON Schema's terms.
inline void describe_range(Json& info, const Range& r) {
  if (!r.bounded()) return;
  info["range"] = range_text(r);
  if (r.min) info[r.min->open ? "exclusive_minimum" : "minimum"] = r.min->value;
  if (r.max) info[r.max->open ? "exclusive_maximum" : "maximum"] = r.max->value;
}

inline std::string elements(std::size_t n) { return fmt::format("{} element{}", n, n == 1 ? "" : "s"); }

/// "must have exactly 3 elements", for a length rule (the capacity bounds the length too).
inline std::string length_phrase(const Length& l, std::size_t capacity) {
  const std::size_t max = std::min(l.max, capacity);
  if (l.min == max) return fmt::format("must have exactly {}", elements(max));
  if (l.min > 0 && max < capacity) return fmt::format("must have between {} and {} elements", l.min, max);
  if (l.min > 0) return fmt::format("must have at least {}", elements(l.min));
  return fmt::format("must have at most {}", elements(max));
}

}  // namespace detail

// ---- the context a trait reports into -------------------------------------------------------------

/// Where a value sits while it is parsed or checked: the layer type, the parameter's path (dotted in
/// nested configs, `name[i]` for list elements) and the problems collected so far.
struct ParamContext {
  std::string_view type;
  std::string path;
  Problems* problems = nullptr;

  [[nodiscard]] ParamContext child(std::string_view name) const {
    return {type, path.empty() ? std::string(name) : fmt::format("{}.{}", path, name), problems};
  }
  [[nodiscard]] ParamContext element(std::size_t i) const {
    return {type, fmt::format("{}[{}]", path, i), problems};
  }
  /// Adds a problem at this path.
  void add(std::string message) const { problems->push_back({path, std::move(message)}); }
  /// "Parameter 'x' of 'type' must be <expected>, got <json kind>".
  void add_wrong_kind(std::string_view expected, const Json& got) const {
    add(fmt::format("Parameter '{}' of '{}' must be {}, got {}", path, type, expected, detail::json_kind(got)));
  }
  /// A broken rule in the row's wording: "x <phrase>, got v" or "Parameter 'x' <phrase>, got v".
  void add_rule(const FieldSpec& f, std::string_view phrase, std::string_view value) const {
    add(f.wording == Wording::factory ? fmt::format("Parameter '{}' {}, got {}", path, phrase, value)
                                      : fmt::format("{} {}, got {}", path, phrase, value));
  }
};

/// What a trait's parse did.
enum class Parsed : std::uint8_t {
  ok,          ///< the value was stored
  wrong_kind,  ///< the JSON is not of this kind: the caller reports "must be <expected>"
  reported,    ///< the trait added its own problems (unknown choice, bad element, nested problems)
};

// ---- parameter kinds -----------------------------------------------------------------------------

/// The trait of a parameter kind, specialised per member type (see "How to add a parameter kind").
/// The primary template is empty: a member type without a specialisation is not a parameter.
template <class M>
struct ParamTraits {};

/// A member type with a complete trait.
template <class M>
concept ParamKind = requires(const Json& j, M& out, const M& v, const FieldSpec& f, const ParamContext& ctx,
                             Json& info) {
  { ParamTraits<M>::kind(f) } -> std::convertible_to<std::string>;
  { ParamTraits<M>::expected(f) } -> std::convertible_to<std::string>;
  { ParamTraits<M>::parse(j, out, f, ctx) } -> std::same_as<Parsed>;
  { ParamTraits<M>::to_json(v, f) } -> std::convertible_to<Json>;
  ParamTraits<M>::check(v, f, ctx);
  { ParamTraits<M>::valid(v, f) } -> std::same_as<bool>;
  { ParamTraits<M>::row_ok(f) } -> std::same_as<bool>;
  ParamTraits<M>::describe(info, f);
};

template <class C>
struct Field;

/// A config type: a field table and cross-field rules (a nested config needs no more).
template <class C>
concept ParamConfig = std::is_class_v<C> && requires(const C& c, Problems& p) {
  C::fields();
  c.check(p);
};

/// A layer's config: a ParamConfig with the names the registry and messages use.
template <class C>
concept LayerConfig = ParamConfig<C> && requires {
  { C::type_name } -> std::convertible_to<std::string_view>;
  { C::class_name } -> std::convertible_to<std::string_view>;
  { C::description } -> std::convertible_to<std::string_view>;
  { C::use_case } -> std::convertible_to<std::string_view>;
  C::training_only;
};

namespace detail {
constexpr bool no_rules(const FieldSpec& f) {
  return !f.range.bounded() && !f.odd && !f.length.bounded() && f.choices.empty();
}
// Used by the nested-config trait; defined with the table machinery below.
template <ParamConfig C>
std::vector<bool> read_fields(C& c, const Json& params, const ParamContext& ctx);
template <ParamConfig C>
void check_fields(const C& c, const std::vector<bool>& skip, const ParamContext& ctx);
template <ParamConfig C>
void check_cross(const C& c, const ParamContext& ctx);
template <ParamConfig C>
constexpr bool all_fields_valid(const C& c);
template <ParamConfig C>
Json params_info();
}  // namespace detail

template <ParamConfig C>
Json config_to_json(const C& c);
template <ParamConfig C>
constexpr bool config_table_is_sound();

/// int: a JSON integer in 32-bit range; range and odd.
template <>
struct ParamTraits<int> {
  static constexpr std::string_view plural = "integers";
  static std::string kind(const FieldSpec& /*f*/) { return "int"; }
  static std::string expected(const FieldSpec& /*f*/) { return "an integer (32-bit)"; }
  static std::string expected_or_null(const FieldSpec& /*f*/) { return "an integer or null"; }
  static Parsed parse(const Json& j, int& out, const FieldSpec& /*f*/, const ParamContext& /*ctx*/) {
    return detail::read_int(j, out) ? Parsed::ok : Parsed::wrong_kind;
  }
  static Json to_json(const int& v, const FieldSpec& /*f*/) { return v; }
  static void check(const int& v, const FieldSpec& f, const ParamContext& ctx) {
    if (!f.range.holds(v)) ctx.add_rule(f, detail::range_phrase(f.range), std::to_string(v));
    else if (f.odd && v % 2 == 0) ctx.add_rule(f, "must be odd for 'same' padding", std::to_string(v));
  }
  static constexpr bool valid(const int& v, const FieldSpec& f) {
    return f.range.holds(v) && (!f.odd || v % 2 != 0);
  }
  static constexpr bool row_ok(const FieldSpec& f) { return f.choices.empty() && !f.length.bounded(); }
  static void describe(Json& info, const FieldSpec& f) {
    detail::describe_range(info, f.range);
    if (f.odd) info["odd"] = true;
  }
};

/// double: any JSON number; range (NaN and ±inf, from C++, are reported).
template <>
struct ParamTraits<double> {
  static constexpr std::string_view plural = "numbers";
  static std::string kind(const FieldSpec& /*f*/) { return "float"; }
  static std::string expected(const FieldSpec& /*f*/) { return "a number"; }
  static Parsed parse(const Json& j, double& out, const FieldSpec& /*f*/, const ParamContext& /*ctx*/) {
    if (!j.is_number()) return Parsed::wrong_kind;
    out = j.get<double>();
    return Parsed::ok;
  }
  static Json to_json(const double& v, const FieldSpec& /*f*/) { return v; }
  static void check(const double& v, const FieldSpec& f, const ParamContext& ctx) {
    if (v != v) ctx.add(fmt::format("{} must be a number, got nan", ctx.path));
    else if (v - v != 0) ctx.add(fmt::format("{} must be a finite number, got {}", ctx.path, detail::py_float(v)));
    else if (!f.range.holds(v)) ctx.add_rule(f, detail::range_phrase(f.range), detail::py_float(v));
  }
  static constexpr bool valid(const double& v, const FieldSpec& f) { return f.range.holds(v); }
  static constexpr bool row_ok(const FieldSpec& f) {
    return f.choices.empty() && !f.length.bounded() && !f.odd;
  }
  static void describe(Json& info, const FieldSpec& f) { detail::describe_range(info, f.range); }
};

/// bool: a JSON boolean; no rules.
template <>
struct ParamTraits<bool> {
  static constexpr std::string_view plural = "booleans";
  static std::string kind(const FieldSpec& /*f*/) { return "bool"; }
  static std::string expected(const FieldSpec& /*f*/) { return "a boolean"; }
  static Parsed parse(const Json& j, bool& out, const FieldSpec& /*f*/, const ParamContext& /*ctx*/) {
    if (!j.is_boolean()) return Parsed::wrong_kind;
    out = j.get<bool>();
    return Parsed::ok;
  }
  static Json to_json(const bool& v, const FieldSpec& /*f*/) { return v; }
  static void check(const bool& /*v*/, const FieldSpec& /*f*/, const ParamContext& /*ctx*/) {}
  static constexpr bool valid(const bool& /*v*/, const FieldSpec& /*f*/) { return true; }
  static constexpr bool row_ok(const FieldSpec& f) { return detail::no_rules(f); }
  static void describe(Json& /*info*/, const FieldSpec& /*f*/) {}
};

/// String choice: a JSON string among the row's `choices`; the member then points into that list
/// (so a row must have choices: free text has no storage in a constexpr Config).
template <>
struct ParamTraits<std::string_view> {
  static std::string kind(const FieldSpec& /*f*/) { return "choice"; }
  static std::string expected(const FieldSpec& f) { return fmt::format("one of {}", detail::py_list(f.choices)); }
  static Parsed parse(const Json& j, std::string_view& out, const FieldSpec& f, const ParamContext& ctx) {
    if (!j.is_string()) return Parsed::wrong_kind;
    const auto s = j.get<std::string>();
    const auto it = std::find(f.choices.begin(), f.choices.end(), s);
    if (it == f.choices.end()) {
      ctx.add(fmt::format("Parameter '{}' of '{}' must be one of {}, got '{}'{}", ctx.path, ctx.type,
                          detail::py_list(f.choices), s, detail::did_you_mean(s, f.choices)));
      return Parsed::reported;
    }
    out = *it;  // points into the static choice list
    return Parsed::ok;
  }
  static Json to_json(const std::string_view& v, const FieldSpec& /*f*/) { return std::string(v); }
  static void check(const std::string_view& v, const FieldSpec& f, const ParamContext& ctx) {
    if (std::find(f.choices.begin(), f.choices.end(), v) == f.choices.end())
      ctx.add(fmt::format("Parameter '{}' must be one of {}, got '{}'", ctx.path, detail::py_list(f.choices), v));
  }
  static constexpr bool valid(const std::string_view& v, const FieldSpec& f) {
    for (auto c : f.choices)
      if (c == v) return true;
    return false;
  }
  static constexpr bool row_ok(const FieldSpec& f) {
    return !f.choices.empty() && !f.range.bounded() && !f.odd && !f.length.bounded();
  }
  static void describe(Json& info, const FieldSpec& f) {
    Json ch = Json::array();
    for (auto s : f.choices) ch.push_back(std::string(s));
    info["choices"] = std::move(ch);
  }
};

/// Size2: `7` (square) or `[7, 5]`; range and odd apply to both extents.
template <>
struct ParamTraits<Size2> {
  static std::string kind(const FieldSpec& /*f*/) { return "size2"; }
  static std::string expected(const FieldSpec& /*f*/) { return "an integer or a list of 2 integers"; }
  static Parsed parse(const Json& j, Size2& out, const FieldSpec& /*f*/, const ParamContext& /*ctx*/) {
    int a = 0;
    int b = 0;
    if (detail::read_int(j, a)) {
      out = {a, a};
      return Parsed::ok;
    }
    if (j.is_array() && j.size() == 2 && detail::read_int(j[0], a) && detail::read_int(j[1], b)) {
      out = {a, b};
      return Parsed::ok;
    }
    return Parsed::wrong_kind;
  }
  static Json to_json(const Size2& v, const FieldSpec& /*f*/) { return Json::array({v[0], v[1]}); }
  static void check(const Size2& v, const FieldSpec& f, const ParamContext& ctx) {
    const std::string shown = fmt::format("({}, {})", v[0], v[1]);
    if (!f.range.holds(v[0]) || !f.range.holds(v[1])) ctx.add_rule(f, detail::range_phrase(f.range), shown);
    else if (f.odd && (v[0] % 2 == 0 || v[1] % 2 == 0)) ctx.add_rule(f, "must be odd for 'same' padding", shown);
  }
  static constexpr bool valid(const Size2& v, const FieldSpec& f) {
    return ParamTraits<int>::valid(v[0], f) && ParamTraits<int>::valid(v[1], f);
  }
  static constexpr bool row_ok(const FieldSpec& f) { return ParamTraits<int>::row_ok(f); }
  static void describe(Json& info, const FieldSpec& f) { ParamTraits<int>::describe(info, f); }
};

namespace detail {
template <class T>
inline constexpr bool is_optional = false;
template <class T>
inline constexpr bool is_optional<std::optional<T>> = true;

template <NamedEnum E>
constexpr auto enum_table() {
  return enum_names(E{});
}
template <NamedEnum E>
constexpr bool enum_table_is_sound() {
  constexpr auto t = enum_table<E>();
  if (t.size() == 0) return false;
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (t[i].name.empty()) return false;
    for (std::size_t j = i + 1; j < t.size(); ++j)
      if (t[i].name == t[j].name || t[i].value == t[j].value) return false;
  }
  return true;
}
template <NamedEnum E>
std::vector<std::string_view> enum_name_list() {
  std::vector<std::string_view> names;
  for (const auto& e : enum_table<E>()) names.push_back(e.name);
  return names;
}
}  // namespace detail

/// The name of an enum value ("" for a value outside the table).
template <NamedEnum E>
constexpr std::string_view enum_name(E v) noexcept {
  for (const auto& e : detail::enum_table<E>())
    if (e.value == v) return e.name;
  return {};
}
/// The enum value of a name, if any.
template <NamedEnum E>
constexpr std::optional<E> enum_from_name(std::string_view name) noexcept {
  for (const auto& e : detail::enum_table<E>())
    if (e.name == name) return e.value;
  return std::nullopt;
}

/// Enum: a JSON string among the enum's names, stored as the enum value.
template <NamedEnum E>
struct ParamTraits<E> {
  static_assert(detail::enum_table_is_sound<E>(),
                "attn: an enum's name table (enum_names) is empty or repeats a name or a value");
  static std::string kind(const FieldSpec& /*f*/) { return "enum"; }
  static std::string expected(const FieldSpec& /*f*/) {
    return fmt::format("one of {}", detail::py_list(detail::enum_name_list<E>()));
  }
  static Parsed parse(const Json& j, E& out, const FieldSpec& /*f*/, const ParamContext& ctx) {
    if (!j.is_string()) return Parsed::wrong_kind;
    const auto s = j.get<std::string>();
    if (auto v = enum_from_name<E>(s)) {
      out = *v;
      return Parsed::ok;
    }
    const auto names = detail::enum_name_list<E>();
    ctx.add(fmt::format("Parameter '{}' of '{}' must be one of {}, got '{}'{}", ctx.path, ctx.type,
                        detail::py_list(names), s, detail::did_you_mean(s, names)));
    return Parsed::reported;
  }
  static Json to_json(const E& v, const FieldSpec& /*f*/) { return std::string(enum_name(v)); }
  static void check(const E& v, const FieldSpec& /*f*/, const ParamContext& ctx) {
    if (enum_name(v).empty())
      ctx.add(fmt::format("Parameter '{}' must be one of {}, got the unnamed value {}", ctx.path,
                          detail::py_list(detail::enum_name_list<E>()),
                          static_cast<long long>(static_cast<std::underlying_type_t<E>>(v))));
  }
  static constexpr bool valid(const E& v, const FieldSpec& /*f*/) { return !enum_name(v).empty(); }
  static constexpr bool row_ok(const FieldSpec& f) { return detail::no_rules(f); }
  static void describe(Json& info, const FieldSpec& /*f*/) {
    Json ch = Json::array();
    for (auto s : detail::enum_name_list<E>()) ch.push_back(std::string(s));
    info["choices"] = std::move(ch);
  }
};

/// std::optional<T>: JSON null (unset) or a T; T's rules apply when set.
template <ParamKind T>
struct ParamTraits<std::optional<T>> {
  static_assert(!detail::is_optional<T>, "attn: an optional of an optional is not a parameter kind");
  using Inner = ParamTraits<T>;
  static std::string kind(const FieldSpec& f) { return fmt::format("{}_or_null", Inner::kind(f)); }
  static std::string expected(const FieldSpec& f) {
    if constexpr (requires { Inner::expected_or_null(f); }) return Inner::expected_or_null(f);
    else return fmt::format("{} or null", Inner::expected(f));
  }
  static Parsed parse(const Json& j, std::optional<T>& out, const FieldSpec& f, const ParamContext& ctx) {
    if (j.is_null()) {
      out.reset();
      return Parsed::ok;
    }
    T v{};
    const Parsed r = Inner::parse(j, v, f, ctx);
    if (r == Parsed::ok) out = v;
    return r;
  }
  static Json to_json(const std::optional<T>& v, const FieldSpec& f) {
    return v ? Json(Inner::to_json(*v, f)) : Json(nullptr);
  }
  static void check(const std::optional<T>& v, const FieldSpec& f, const ParamContext& ctx) {
    if (v) Inner::check(*v, f, ctx);
  }
  static constexpr bool valid(const std::optional<T>& v, const FieldSpec& f) { return !v || Inner::valid(*v, f); }
  static constexpr bool row_ok(const FieldSpec& f) { return Inner::row_ok(f); }
  static void describe(Json& info, const FieldSpec& f) { Inner::describe(info, f); }
};

/// InplaceVector<T, N>: a JSON array of T (int, double, bool, an enum or a string choice); the row's
/// range, odd and choices apply to each element (problems name `x[i]`), `length` to the list.
template <ParamKind T, std::size_t N>
struct ParamTraits<InplaceVector<T, N>> {
  static_assert(std::is_arithmetic_v<T> || std::is_enum_v<T> || std::is_same_v<T, std::string_view>,
                "attn: list elements must be int, double, bool, an enum or a string choice");
  using Elem = ParamTraits<T>;
  static constexpr FieldSpec element_spec(FieldSpec f) {
    f.length = {};
    return f;
  }
  static std::string kind(const FieldSpec& f) { return fmt::format("{}_list", Elem::kind(f)); }
  static std::string expected(const FieldSpec& /*f*/) {
    if constexpr (requires { Elem::plural; }) return fmt::format("a list of {}", Elem::plural);
    else return "a list";
  }
  static Parsed parse(const Json& j, InplaceVector<T, N>& out, const FieldSpec& f, const ParamContext& ctx) {
    if (!j.is_array()) return Parsed::wrong_kind;
    if (j.size() > N) {
      ctx.add(fmt::format("Parameter '{}' of '{}' must have at most {}, got {}", ctx.path, ctx.type,
                          detail::elements(N), j.size()));
      return Parsed::reported;
    }
    InplaceVector<T, N> v;
    bool bad = false;
    for (std::size_t i = 0; i < j.size(); ++i) {
      T e{};
      const ParamContext ectx = ctx.element(i);
      const Parsed r = Elem::parse(j[i], e, f, ectx);
      if (r == Parsed::wrong_kind) ectx.add_wrong_kind(Elem::expected(f), j[i]);
      bad = bad || r != Parsed::ok;
      v.push_back(e);
    }
    if (bad) return Parsed::reported;
    out = v;
    return Parsed::ok;
  }
  static Json to_json(const InplaceVector<T, N>& v, const FieldSpec& f) {
    Json a = Json::array();
    for (const T& e : v) a.push_back(Elem::to_json(e, f));
    return a;
  }
  static void check(const InplaceVector<T, N>& v, const FieldSpec& f, const ParamContext& ctx) {
    if (!f.length.holds(v.size())) {
      ctx.add_rule(f, detail::length_phrase(f.length, N), std::to_string(v.size()));
      return;
    }
    for (std::size_t i = 0; i < v.size(); ++i) Elem::check(v[i], f, ctx.element(i));
  }
  static constexpr bool valid(const InplaceVector<T, N>& v, const FieldSpec& f) {
    if (!f.length.holds(v.size())) return false;
    for (const T& e : v)
      if (!Elem::valid(e, f)) return false;
    return true;
  }
  static constexpr bool row_ok(const FieldSpec& f) {
    return Elem::row_ok(element_spec(f)) && f.length.min <= f.length.max && f.length.min <= N;
  }
  static void describe(Json& info, const FieldSpec& f) {
    Elem::describe(info, f);
    info["min_length"] = f.length.min;
    info["max_length"] = std::min(f.length.max, N);
  }
};

/// A nested config: a JSON object read by the inner config's own table (unknown, missing, kinds now;
/// its ranges and cross-field rules with the outer ranges); problems carry the dotted path.
template <ParamConfig Inner>
struct ParamTraits<Inner> {
  static std::string kind(const FieldSpec& /*f*/) { return "config"; }
  static std::string expected(const FieldSpec& /*f*/) { return "an object"; }
  static Parsed parse(const Json& j, Inner& out, const FieldSpec& /*f*/, const ParamContext& ctx) {
    if (!j.is_object()) return Parsed::wrong_kind;
    const std::size_t before = ctx.problems->size();
    Inner v{};
    (void)detail::read_fields(v, j, ctx);
    if (ctx.problems->size() != before) return Parsed::reported;
    out = v;
    return Parsed::ok;
  }
  static Json to_json(const Inner& v, const FieldSpec& /*f*/) { return config_to_json(v); }
  static void check(const Inner& v, const FieldSpec& /*f*/, const ParamContext& ctx) {
    const std::size_t before = ctx.problems->size();
    detail::check_fields(v, std::vector<bool>(Inner::fields().size(), false), ctx);
    if (ctx.problems->size() == before) detail::check_cross(v, ctx);
  }
  static constexpr bool valid(const Inner& v, const FieldSpec& /*f*/) { return detail::all_fields_valid(v); }
  static constexpr bool row_ok(const FieldSpec& f) {
    return detail::no_rules(f) && config_table_is_sound<Inner>();
  }
  static void describe(Json& info, const FieldSpec& /*f*/) { info["parameters"] = detail::params_info<Inner>(); }
};

// ---- rows of a field table -----------------------------------------------------------------------

/// What a row does with its member: the member type's trait, bound to the member (type-erased so
/// that rows of different member types share one std::array).
template <class C>
struct MemberOps {
  std::string (*kind)(const FieldSpec&);
  std::string (*expected)(const FieldSpec&);
  Parsed (*parse)(C&, const Json&, const FieldSpec&, const ParamContext&);
  Json (*to_json)(const C&, const FieldSpec&);
  void (*check)(const C&, const FieldSpec&, const ParamContext&);
  bool (*valid)(const C&, const FieldSpec&);  // constexpr
  bool (*row_ok)(const FieldSpec&);           // constexpr
  void (*describe)(Json&, const FieldSpec&);
  /// The integers of the value (an int, a size-like pair, a list of ints, a set optional of those)
  /// appended to the vector; returns the value as JSON text ("7", "[2,3]"), empty when it has none.
  std::string (*int_values)(const C&, std::vector<std::int64_t>&);
};

namespace detail {
template <class T>
inline constexpr bool is_int_list = false;
template <std::size_t N>
inline constexpr bool is_int_list<InplaceVector<int, N>> = true;
template <>
inline constexpr bool is_int_list<Size2> = true;

/// MemberOps::int_values of one value.
template <class M>
std::string int_values(const M& v, std::vector<std::int64_t>& out) {
  if constexpr (std::is_same_v<M, int>) {
    out.push_back(v);
    return std::to_string(v);
  } else if constexpr (is_int_list<M>) {
    out.insert(out.end(), v.begin(), v.end());
    return fmt::format("[{}]", fmt::join(v, ","));
  } else if constexpr (is_optional<M>) {
    return v ? int_values(*v, out) : std::string();
  } else {
    return {};
  }
}

template <auto P>
struct member_of;
template <class C, class M, M C::*P>
struct member_of<P> {
  using Class = C;
  using Type = M;
};

template <auto P>
struct MemberOpsFor {
  using C = typename member_of<P>::Class;
  using M = std::remove_cv_t<typename member_of<P>::Type>;
  static_assert(ParamKind<M>,
                "attn: this Config member's type is not a parameter kind (no complete ParamTraits<M>). Use "
                "a supported kind or add one: see 'How to add a parameter kind' in attn/core/param.hpp");
  using Tr = ParamTraits<M>;
  static std::string kind(const FieldSpec& f) { return Tr::kind(f); }
  static std::string expected(const FieldSpec& f) { return Tr::expected(f); }
  static Parsed parse(C& c, const Json& j, const FieldSpec& f, const ParamContext& ctx) {
    return Tr::parse(j, c.*P, f, ctx);
  }
  static Json to_json(const C& c, const FieldSpec& f) { return Tr::to_json(c.*P, f); }
  static void check(const C& c, const FieldSpec& f, const ParamContext& ctx) { Tr::check(c.*P, f, ctx); }
  static constexpr bool valid(const C& c, const FieldSpec& f) { return Tr::valid(c.*P, f); }
  static constexpr bool row_ok(const FieldSpec& f) { return Tr::row_ok(f); }
  static void describe(Json& info, const FieldSpec& f) { Tr::describe(info, f); }
  static std::string int_values(const C& c, std::vector<std::int64_t>& out) { return detail::int_values(c.*P, out); }
  static constexpr MemberOps<C> make() {
    if constexpr (ParamKind<M>)
      return {&kind, &expected, &parse, &to_json, &check, &valid, &row_ok, &describe, &int_values};
    else return {};  // the static_assert above has said why
  }
};
template <auto P>
inline constexpr MemberOps<typename member_of<P>::Class> member_ops = MemberOpsFor<P>::make();
}  // namespace detail

/// The member of a row: `member<&Config::x>` (its type selects the trait).
template <auto P>
inline constexpr const MemberOps<typename detail::member_of<P>::Class>* member = &detail::member_ops<P>;

/// One row of a Config's field table (see the header comment).
template <class C>
struct Field {
  std::string_view name;
  const MemberOps<C>* member = nullptr;
  bool required = false;
  /// JSON text of a valid value: required rows must have one (documentation, contract tests).
  std::string_view example{};
  Wording wording = Wording::layer;
  /// Bounds of every number of the value.
  Range range{};
  /// Every int of the value must be odd (kernel sizes with 'same' padding).
  bool odd = false;
  /// Bounds of a list's length.
  Length length{};
  /// A string choice's accepted values (the member then points into this list).
  std::span<const std::string_view> choices{};
  std::string_view doc{};

  [[nodiscard]] constexpr FieldSpec spec() const noexcept {
    return {name, required, example, wording, range, odd, length, choices, doc};
  }
};

// ---- the table machinery -------------------------------------------------------------------------

namespace detail {

template <class C>
constexpr std::span<const std::string_view> training_only_of() {
  if constexpr (requires { C::training_only; }) return C::training_only;
  else return {};
}

inline std::string join_path(const std::string& path, std::string_view name) {
  return path.empty() ? std::string(name) : fmt::format("{}.{}", path, name);
}

/// The value of a row's example (throws attn::Error when the text is not JSON: a table bug).
inline Json example_json(const FieldSpec& f) {
  Json j = Json::parse(f.example.begin(), f.example.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    throw Error(fmt::format("attn: the example of parameter '{}' is not JSON: {}", f.name, f.example));
  return j;
}

/// Unknown parameters, missing required ones and wrong kinds, reading every known value into `c`;
/// returns, per row, whether its range check is to be skipped (missing or not read).
template <ParamConfig C>
std::vector<bool> read_fields(C& c, const Json& params, const ParamContext& ctx) {
  constexpr auto fields = C::fields();
  constexpr auto training_only = training_only_of<C>();
  std::vector<std::string> accepted;
  for (const auto& f : fields) accepted.push_back(join_path(ctx.path, f.name));
  for (auto n : training_only) accepted.push_back(join_path(ctx.path, n));
  for (const auto& [key, value] : params.items()) {
    const std::string full = join_path(ctx.path, key);
    if (std::find(accepted.begin(), accepted.end(), full) != accepted.end()) continue;
    auto near = closest(full, accepted);
    ctx.problems->push_back(
        {full, fmt::format("Unknown parameter '{}' for '{}'.{} Accepted parameters: {}", full, ctx.type,
                           near.empty() ? "" : fmt::format(" Did you mean '{}'?", near.front()),
                           py_list(accepted))});
  }
  std::vector<std::string> required, missing;
  for (const auto& f : fields) {
    if (!f.required) continue;
    required.push_back(join_path(ctx.path, f.name));
    if (!params.contains(std::string(f.name))) missing.push_back(required.back());
  }
  if (!missing.empty())
    ctx.problems->push_back({missing.front(), fmt::format("Required parameters for '{}' are missing: {}. "
                                                          "Required: {}",
                                                          ctx.type, py_list(missing), py_list(required))});
  std::vector<bool> skip(fields.size(), false);
  for (std::size_t i = 0; i < fields.size(); ++i) {
    const std::string key(fields[i].name);
    if (!params.contains(key)) {
      skip[i] = fields[i].required;  // missing: already reported
      continue;
    }
    const FieldSpec spec = fields[i].spec();
    const ParamContext fctx = ctx.child(key);
    const Json& value = params.at(key);
    const Parsed r = fields[i].member->parse(c, value, spec, fctx);
    if (r == Parsed::wrong_kind) fctx.add_wrong_kind(fields[i].member->expected(spec), value);
    skip[i] = r != Parsed::ok;
  }
  for (auto n : training_only) {
    const std::string key(n);
    if (params.contains(key) && !(params[key].is_null() || params[key].is_string() || params[key].is_object()))
      ctx.child(key).add(fmt::format("Parameter '{}' of '{}' must be null, a string or an object, got {}",
                                     join_path(ctx.path, key), ctx.type, json_kind(params[key])));
  }
  return skip;
}

/// Calls `f(std::integral_constant<std::size_t, I>{})` for every row I of C's table. A row's operation
/// read in a constant expression (`constexpr auto op = C::fields()[I].member->check;`) is a direct
/// call: the row's other operations (JSON in and out) are then not compiled into a translation unit
/// that only builds typed layers, which the type-erased table, read at run time, would make it do.
template <ParamConfig C, class F>
constexpr void for_each_row(F&& f) {
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (f(std::integral_constant<std::size_t, I>{}), ...);
  }(std::make_index_sequence<C::fields().size()>{});
}

/// Range rules of every row not skipped: Wording::factory rows first (the reference's factory checks
/// those before the layer does), then the others, each group in table order.
template <ParamConfig C>
void check_fields(const C& c, const std::vector<bool>& skip, const ParamContext& ctx) {
  for (const Wording pass : {Wording::factory, Wording::layer})
    for_each_row<C>([&](auto row) {
      constexpr std::size_t i = decltype(row)::value;
      constexpr Field<C> field = C::fields()[i];
      constexpr auto check = field.member->check;
      if (!skip[i] && field.wording == pass) check(c, field.spec(), ctx.child(field.name));
    });
}

/// The config's cross-field rules; inside a nested config the parameter gets the path and the
/// message the prefix "path: ".
template <ParamConfig C>
void check_cross(const C& c, const ParamContext& ctx) {
  Problems local;
  c.check(local);
  for (auto& p : local) {
    if (ctx.path.empty()) {
      ctx.problems->push_back(std::move(p));
    } else {
      ctx.problems->push_back({p.parameter.empty() ? ctx.path : join_path(ctx.path, p.parameter),
                               fmt::format("{}: {}", ctx.path, p.message)});
    }
  }
}

/// Every row's value (required ones included) satisfies its rules.
template <ParamConfig C>
constexpr bool all_fields_valid(const C& c) {
  constexpr auto fields = C::fields();
  for (const auto& f : fields)
    if (!f.member->valid(c, f.spec())) return false;
  return true;
}

/// Per-parameter info: kind, required, example or default, the kind's rules, doc.
template <ParamConfig C>
Json params_info() {
  static const C defaults{};
  Json params = Json::object();
  for (const auto& f : C::fields()) {
    const FieldSpec spec = f.spec();
    Json p = Json::object();
    p["kind"] = f.member->kind(spec);
    p["required"] = f.required;
    if (!f.required) p["default"] = f.member->to_json(defaults, spec);
    if (!f.example.empty()) p["example"] = example_json(spec);
    f.member->describe(p, spec);
    if (f.wording == Wording::factory) p["wording"] = "factory";
    p["doc"] = std::string(f.doc);
    params[std::string(f.name)] = std::move(p);
  }
  for (auto n : training_only_of<C>())
    params[std::string(n)] = Json{{"kind", "training_only"},
                                  {"required", false},
                                  {"default", nullptr},
                                  {"doc", "Kept for configs written for the reference; no effect at "
                                          "inference."}};
  return params;
}

}  // namespace detail

/// All problems of a config given as a value (e.g. built directly in C++): ranges, then cross-field.
template <ParamConfig C>
Problems check_config(const C& c) {
  Problems problems;
  std::string_view type;
  if constexpr (requires { C::type_name; }) type = C::type_name;
  const ParamContext ctx{type, {}, &problems};
  detail::check_fields(c, std::vector<bool>(C::fields().size(), false), ctx);
  if (problems.empty()) detail::check_cross(c, ctx);
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
  C c{};
  if (!params.is_object()) {
    problems.push_back({"", fmt::format("Parameters for '{}' must be a JSON object, got {}", C::type_name,
                                        detail::json_kind(params))});
    return c;
  }
  const ParamContext ctx{C::type_name, {}, &problems};
  const std::vector<bool> skip = detail::read_fields(c, params, ctx);
  const bool clean = problems.empty();
  detail::check_fields(c, skip, ctx);
  if (clean && problems.empty()) detail::check_cross(c, ctx);
  return c;
}

/// Every field, in table order (training-only parameters are not part of the struct).
template <ParamConfig C>
Json config_to_json(const C& c) {
  Json j = Json::object();
  for (const auto& f : C::fields()) j[std::string(f.name)] = f.member->to_json(c, f.spec());
  return j;
}

/// The required parameters of C set to their examples (a minimal valid JSON config, cross-field
/// rules permitting).
template <ParamConfig C>
Json required_examples() {
  Json j = Json::object();
  for (const auto& f : C::fields())
    if (f.required) j[std::string(f.name)] = detail::example_json(f.spec());
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

namespace detail {
/// One parameter's value in JSON (kept for callers of the former API).
template <class C>
Json field_to_json(const C& c, const Field<C>& f) {
  return f.member->to_json(c, f.spec());
}
}  // namespace detail

/// Discovery record of a config type: the reference's five keys (class, description, use_case,
/// required_params, optional_params with defaults) plus `parameters`: per parameter its kind,
/// required, default or example, range (text and JSON Schema bounds), odd, choices, list length,
/// a nested config's parameters, the message wording when it is the factory's, and doc.
template <LayerConfig C>
Json config_info() {
  static const C defaults{};
  Json info = Json::object();
  info["class"] = std::string(C::class_name);
  info["description"] = std::string(C::description);
  info["use_case"] = std::string(C::use_case);
  Json required = Json::array();
  Json optional = Json::object();
  for (const auto& f : C::fields()) {
    if (f.required) required.push_back(std::string(f.name));
    else optional[std::string(f.name)] = f.member->to_json(defaults, f.spec());
  }
  for (auto n : C::training_only) optional[std::string(n)] = nullptr;
  info["required_params"] = required;
  info["optional_params"] = optional;
  info["parameters"] = detail::params_info<C>();
  return info;
}

/// Compile-time sanity of a field table: every row has a member, a name (no '.' or '['), unique
/// names (training-only ones included), rules its kind uses, an example when required, and a
/// default that satisfies its rules when optional.
template <ParamConfig C>
constexpr bool config_table_is_sound() {
  constexpr auto fields = C::fields();
  constexpr auto training_only = detail::training_only_of<C>();
  const C c{};
  for (std::size_t i = 0; i < fields.size(); ++i) {
    const Field<C>& f = fields[i];
    if (f.member == nullptr || f.name.empty()) return false;
    if (f.name.find_first_of(".[") != std::string_view::npos) return false;
    for (std::size_t j = i + 1; j < fields.size(); ++j)
      if (f.name == fields[j].name) return false;
    for (auto t : training_only)
      if (t == f.name) return false;
    if (!f.member->row_ok(f.spec())) return false;
    if (f.required ? f.example.empty() : !f.member->valid(c, f.spec())) return false;
  }
  return true;
}

}  // namespace attn
