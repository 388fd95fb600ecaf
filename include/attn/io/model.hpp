/// \file
/// Whole models: a JSON config plus one safetensors file, built through the factory.
///
///   attn::save_model(layers, "model.json", "model.safetensors");
///   auto layers = attn::load_model<float>("model.json", "model.safetensors");
///
/// `save_model` writes the config JSON
///   {"format": "attn.model", "version": 1, "weights": "<file name>",
///    "layers": [{"prefix": "<prefix>", "config": <AnyLayer::config()>}, ...]}
/// and every layer's weights into one safetensors file under that layer's prefix: its name when the
/// name is non-empty, unique among the layers and not all digits, otherwise its index ("0", "1", ...).
/// `load_model` rebuilds the layers through the factory and loads their weights; a tensor of the file
/// that belongs to no layer is an error. The loaded set equals the saved one (AnyLayer's operator==).
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/param.hpp"
#include "attn/factory.hpp"
#include "attn/io/json_text.hpp"
#include "attn/io/safetensors.hpp"
#include "attn/io/weights.hpp"

namespace attn {

namespace detail {

inline bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

template <class T>
std::vector<std::string> model_prefixes(std::span<const AnyLayer<T>> layers) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const std::string& name = layers[i].name();
    const auto same =
        std::count_if(layers.begin(), layers.end(), [&](const AnyLayer<T>& l) { return l.name() == name; });
    out.push_back(!name.empty() && same == 1 && !all_digits(name) ? name : std::to_string(i));
  }
  return out;
}

/// The largest config file read (bytes): a model config is a few KiB; this bounds a wrong path
/// (a device, a weights file) before it is read into memory.
inline constexpr std::uintmax_t max_config_bytes = std::uintmax_t(64) << 20;

/// A JSON config file (a model config, the CLI's list files): IOError naming the file when it is not a
/// regular file, is larger than max_config_bytes, cannot be read, is not JSON, holds a key twice in one
/// object or nests deeper than 64 levels.
inline Json read_json_file(const std::filesystem::path& path) {
  const auto fail = [&](std::string_view what) {
    return IOError(fmt::format("model config '{}': {}", path.string(), what));
  };
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) throw fail("cannot open the file for reading");
  if (std::filesystem::is_directory(status)) throw fail("is a directory, not a file");
  if (!std::filesystem::is_regular_file(status)) throw fail("is not a regular file");
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) throw fail("cannot open the file for reading");
  if (size > max_config_bytes)
    throw fail(fmt::format("is {} bytes, more than a config can be ({} bytes)", size, max_config_bytes));
  std::ifstream in(path);
  if (!in) throw fail("cannot open the file for reading");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return parse_json_strict<Json>(
        ss.str(), 64,
        [&](const std::string& k) { throw fail(fmt::format("the key '{}' appears twice in one object", k)); },
        [&] { throw fail("nests deeper than 64 levels"); });
  } catch (const nlohmann::json::exception& e) {
    throw fail(fmt::format("not valid JSON ({})", e.what()));
  }
}

}  // namespace detail

/// The model config of `layers` (see the file comment); `weights_file` is recorded for the reader.
template <class T>
Json model_config(std::span<const AnyLayer<T>> layers, std::string_view weights_file = "") {
  Json j = Json::object();
  j["format"] = "attn.model";
  j["version"] = 1;
  if (!weights_file.empty()) j["weights"] = std::string(weights_file);
  Json list = Json::array();
  const auto prefixes = detail::model_prefixes(layers);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (layers[i].empty()) throw Error(fmt::format("save_model: layer {} is empty", i));
    list.push_back(Json{{"prefix", prefixes[i]}, {"config", layers[i].config()}});
  }
  j["layers"] = std::move(list);
  return j;
}

/// Every weight of `layers`, each under its model prefix, as one safetensors file in memory.
template <class T>
SafeTensorsWriter model_weights(std::span<const AnyLayer<T>> layers) {
  SafeTensorsWriter writer;
  writer.set_metadata("format", "attn.model");
  const auto prefixes = detail::model_prefixes(layers);
  for (std::size_t i = 0; i < layers.size(); ++i) add_weights(writer, layers[i], prefixes[i]);
  return writer;
}

/// Writes the model config JSON to `config_path` and all weights to `weights_path`.
template <class T>
void save_model(std::span<const AnyLayer<T>> layers, const std::filesystem::path& config_path,
                const std::filesystem::path& weights_path) {
  const Json config = model_config(layers, weights_path.filename().string());
  model_weights(layers).write(weights_path);
  std::ofstream out(config_path, std::ios::trunc);
  if (!out)
    throw IOError(fmt::format("model config '{}': cannot open the file for writing", config_path.string()));
  out << config.dump(2) << '\n';
  out.close();
  if (!out) throw IOError(fmt::format("model config '{}': writing failed", config_path.string()));
}
template <class T>
void save_model(const std::vector<AnyLayer<T>>& layers, const std::filesystem::path& config_path,
                const std::filesystem::path& weights_path) {
  save_model(std::span<const AnyLayer<T>>(layers), config_path, weights_path);
}

/// Rebuilds the layers of a model config and loads their weights from `weights`. A malformed config
/// is an IOError (a bad layer config a ConfigError from the factory); a weight problem, or a tensor
/// of the file that belongs to no layer, a WeightsError.
template <class T = float>
std::vector<AnyLayer<T>> load_model(const Json& config, const SafeTensors& weights) {
  auto bad = [](std::string_view what) { return IOError(fmt::format("model config: {}", what)); };
  if (!config.is_object()) throw bad(fmt::format("must be a JSON object, got {}", detail::json_kind(config)));
  if (!config.contains("format") || config.at("format") != "attn.model")
    throw bad("key 'format' must be \"attn.model\"");
  if (!config.contains("version") || config.at("version") != 1) throw bad("key 'version' must be 1");
  if (!config.contains("layers") || !config.at("layers").is_array())
    throw bad("key 'layers' must be an array");
  std::vector<AnyLayer<T>> layers;
  std::set<std::string> prefixes;
  std::set<std::string> used;
  std::size_t i = 0;
  for (const auto& entry : config.at("layers")) {
    if (!entry.is_object() || !entry.contains("prefix") || !entry.at("prefix").is_string() ||
        !entry.contains("config") || !entry.at("config").is_object())
      throw bad(fmt::format("layer {} must be an object with a string 'prefix' and an object 'config'", i));
    const std::string prefix = entry.at("prefix").template get<std::string>();
    if (!prefixes.insert(prefix).second)
      throw bad(fmt::format("layer {} repeats the prefix '{}'", i, prefix));
    AnyLayer<T> layer = create_attention_from_config<T>(entry.at("config"));
    for (auto& n : detail::load_weights_impl(layer, weights, prefix, LoadOptions{.allow_extra = true}))
      used.insert(n);
    layers.push_back(std::move(layer));
    ++i;
  }
  std::vector<std::string> stray;
  for (const auto& n : weights.names())
    if (used.count(n) == 0) stray.push_back(n);
  if (!stray.empty())
    throw WeightsError(fmt::format("load_model: tensor(s) {} in '{}' belong to no layer of the config",
                                   detail::some_names(stray), weights.origin()));
  return layers;
}
/// Reads a model saved by save_model.
template <class T = float>
std::vector<AnyLayer<T>> load_model(const std::filesystem::path& config_path,
                                    const std::filesystem::path& weights_path) {
  return load_model<T>(detail::read_json_file(config_path), SafeTensors::open(weights_path));
}

}  // namespace attn
