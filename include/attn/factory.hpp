/// \file
/// The factory: build any registered layer from a type string and JSON parameters, validate configs,
/// and describe every type. Names follow the reference module:
///   create_attention_layer<T>(type, params, name, seed)
///   create_attention_from_config<T>(config, seed)       ("type" and "name" keys are reserved)
///   validate_attention_config(type, params)             (throws ConfigError with the first problem)
///   check_attention_config(type, params)                (every problem, throws nothing)
///   get_attention_info()                                (JSON describing every type)
/// Layers come back as AnyLayer<T> (any_layer.hpp): a value-semantic, type-erased layer.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "attn/any_layer.hpp"
#include "attn/core/error.hpp"
#include "attn/core/log.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/ops/masks.hpp"
#include "attn/registry.hpp"

namespace attn {

namespace detail {

inline std::string unknown_type_message(std::string_view type) {
  auto near = closest(type, attention_type_names);
  return fmt::format("Unknown attention type '{}'. Available types: {}{}", type,
                     py_list(attention_type_names),
                     near.empty() ? "" : fmt::format(". Did you mean '{}'?", near.front()));
}

/// Splits the reserved keys off a parameter object: `name` (a string) and `type` (must equal `type`).
inline Json strip_reserved(std::string_view type, const Json& params, Problems& problems) {
  if (!params.is_object()) return params;
  Json rest = Json::object();
  for (const auto& [k, v] : params.items()) {
    if (k == "name") {
      if (!v.is_string() && !v.is_null())
        problems.push_back({"name", fmt::format("Parameter 'name' of '{}' must be a string, got {}",
                                                type, json_kind(v))});
    } else if (k == "type") {
      if (!v.is_string() || v.get<std::string>() != type)
        problems.push_back({"type", fmt::format("Key 'type' ({}) does not match the attention type '{}'",
                                                json_kind(v), type)});
    } else {
      rest[k] = v;
    }
  }
  return rest;
}

/// The training-only values a caller gave (kept for the round trip).
template <class C>
Json training_only_values(const Json& params) {
  Json extras = Json::object();
  for (auto n : C::training_only)
    if (params.contains(std::string(n))) extras[std::string(n)] = params.at(std::string(n));
  return extras;
}

}  // namespace detail

// The three registry-wide functions below walk every registered type's parameter table, so their code
// grows with the registry. Under ATTN_PRECOMPILED_LAYERS a translation unit sees only their declarations:
// attn::layers compiles them once (its factory TU defines ATTN_FACTORY_DEFINITIONS before including this
// header). Without CMake, define ATTN_FACTORY_DEFINITIONS in the one file that compiles
// ATTN_FACTORY_INSTANCES(, float).
#if defined(ATTN_PRECOMPILED_LAYERS) && !defined(ATTN_FACTORY_DEFINITIONS)

/// Every problem of a configuration, in the documented order (unknown type; unknown parameters;
/// missing required; wrong JSON kinds; ranges; cross-field rules). Never throws.
Problems check_attention_config(std::string_view type, const Json& params = Json::object());

/// Throws ConfigError with the first problem of the configuration (the reference's wording).
void validate_attention_config(std::string_view type, const Json& params = Json::object());

/// JSON describing every registered type (see the definition below for its contents).
Json get_attention_info();

#else
#ifdef ATTN_FACTORY_DEFINITIONS
#define ATTN_FACTORY_LINKAGE
#else
#define ATTN_FACTORY_LINKAGE inline
#endif

/// Every problem of a configuration, in the documented order (unknown type; unknown parameters;
/// missing required; wrong JSON kinds; ranges; cross-field rules). Never throws.
ATTN_FACTORY_LINKAGE Problems check_attention_config(std::string_view type, const Json& params = Json::object()) {
  Problems problems;
  if (!is_attention_type(type)) {
    problems.push_back({"", detail::unknown_type_message(type)});
    return problems;
  }
  visit_config(type, [&]<class C>() {
    const Json rest = detail::strip_reserved(type, params, problems);
    (void)parse_config<C>(rest, problems);
  });
  return problems;
}

/// Throws ConfigError with the first problem of the configuration (the reference's wording).
ATTN_FACTORY_LINKAGE void validate_attention_config(std::string_view type, const Json& params = Json::object()) {
  const Problems p = check_attention_config(type, params);
  if (!p.empty()) throw ConfigError(p.front().message, std::string(type), p.front().parameter);
}

/// JSON describing every registered type, in registry order: class, description, use_case,
/// required_params, optional_params (with defaults), parameters (per parameter: kind, required,
/// default or example, range and bounds, odd, choices, list length, a nested config's parameters,
/// wording, doc: see config_info in core/param.hpp) and input_ranks. A fresh value each call.
ATTN_FACTORY_LINKAGE Json get_attention_info() {
  Json info = Json::object();
  for (auto type : attention_type_names) {
    visit_layer<float>(type, [&]<class L>() {
      Json entry = config_info<typename L::Config>();
      entry["input_ranks"] = L::input_ranks;
      info[std::string(type)] = std::move(entry);
    });
  }
  return info;
}

#undef ATTN_FACTORY_LINKAGE
#endif

/// Builds a layer of `type` from JSON parameters. Weights are drawn from `seed`.
/// On failure: ConfigError with the reference's wrapped message
/// ("Failed to create 'T' layer (Class). Required: [...]. Provided: [...]. Please check parameter
/// compatibility. Original error: ..."), also logged at ERROR level. On success the INFO line
/// "Creating 'T' layer with parameters: {...}" is logged.
template <class T = float>
AnyLayer<T> create_attention_layer(std::string_view type, const Json& params = Json::object(),
                                   std::string_view name = {}, std::uint64_t seed = 0) {
  if (!is_attention_type(type)) {
    const std::string msg = detail::unknown_type_message(type);
    const std::string wrapped =
        fmt::format("Failed to create layer. Unknown type '{}'. Error: {}", type, msg);
    log_message(LogLevel::error, wrapped);
    throw ConfigError(wrapped, std::string(type));
  }
  AnyLayer<T> result;
  visit_layer<T>(type, [&]<class L>() {
    using C = typename L::Config;
    Problems problems;
    const Json rest = detail::strip_reserved(type, params, problems);
    C config{};
    if (problems.empty()) config = parse_config<C>(rest, problems);
    if (!problems.empty()) {
      std::vector<std::string> provided;
      if (params.is_object())
        for (const auto& [k, v] : params.items())
          if (k != "name" && k != "type") provided.push_back(k);
      std::vector<std::string_view> required;
      for (const auto& f : C::fields())
        if (f.required) required.push_back(f.name);
      const std::string wrapped = fmt::format(
          "Failed to create '{}' layer ({}). Required: {}. Provided: {}. Please check parameter "
          "compatibility. Original error: {}",
          type, C::class_name, detail::py_list(required), detail::py_list(provided),
          problems.front().message);
      log_message(LogLevel::error, wrapped);
      throw ConfigError(wrapped, std::string(type), problems.front().parameter);
    }
    Json extras = detail::training_only_values<C>(rest);
    if (log_enabled(LogLevel::info)) {
      Json shown = config_to_json(config);
      shown.update(extras);
      if (!name.empty()) shown["name"] = std::string(name);
      log_message(LogLevel::info, fmt::format("Creating '{}' layer with parameters: {}", type,
                                              detail::py_repr(shown)));
    }
    result = AnyLayer<T>(L(config, seed), std::string(name), std::move(extras));
  });
  return result;
}

/// Builds a layer from a JSON object with a "type" key (and an optional "name"); every other key is
/// a parameter.
template <class T = float>
AnyLayer<T> create_attention_from_config(const Json& config, std::uint64_t seed = 0) {
  if (!config.is_object())
    throw ConfigError(fmt::format("Config must be a dictionary, got {}", detail::json_kind(config)));
  if (!config.contains("type"))
    throw ConfigError("Configuration dictionary must include a 'type' key.");
  const Json& type = config.at("type");
  if (!type.is_string())
    throw ConfigError(fmt::format("Key 'type' must be a string, got {}", detail::json_kind(type)), "",
                      "type");
  std::string name;
  if (config.contains("name")) {
    const Json& n = config.at("name");
    if (!n.is_string() && !n.is_null())
      throw ConfigError(fmt::format("Key 'name' must be a string, got {}", detail::json_kind(n)),
                        type.get<std::string>(), "name");
    if (n.is_string()) name = n.get<std::string>();
  }
  Json params = Json::object();
  for (const auto& [k, v] : config.items())
    if (k != "type" && k != "name") params[k] = v;
  return create_attention_layer<T>(type.get<std::string>(), params, name, seed);
}

}  // namespace attn

/// Declares (EXTERN = extern) or defines (EXTERN empty) the factory's entry points for scalar T. At
/// namespace scope.
#define ATTN_FACTORY_INSTANCES(EXTERN, T)                                                          \
  EXTERN template attn::AnyLayer<T> attn::create_attention_layer<T>(std::string_view, const attn::Json&, \
                                                                    std::string_view, std::uint64_t); \
  EXTERN template attn::AnyLayer<T> attn::create_attention_from_config<T>(const attn::Json&, std::uint64_t);

// A target linked with attn::layers (cmake/AttnLayers.cmake) gets the entry points from that library,
// which compiles each registered type once; this translation unit then compiles none of them.
#ifdef ATTN_PRECOMPILED_LAYERS
ATTN_FACTORY_INSTANCES(extern, float)
ATTN_FACTORY_INSTANCES(extern, double)
#endif
