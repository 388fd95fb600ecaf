// attn: the command-line tool of the attn library. Lists and describes the registered layer types,
// validates configs, runs a layer on NumPy arrays, times it and draws its attention weights.
//
//   attn list [--json]                     attn info TYPE
//   attn validate CONFIG.json              attn run CONFIG.json --input X.npy [...]
//   attn bench CONFIG.json [--shape ...]   attn heatmap CONFIG.json --out maps.png [...]
//
// CONFIG.json is one layer object ({"type": ..., ...}), a model file as attn::save_model writes it
// ({"format": "attn.model", "layers": [{"prefix", "config"}]}) or a list of layers with input shapes
// as examples/configs/quickstart.json ({"layers": [{"layer": {...}, "inputs": [[...]]}]}).
// An array argument is a .npy file or a tensor of a safetensors file, FILE.safetensors:NAME.
// Exit codes: see exit_codes below and `attn --help`.
//
// This is the only translation unit of the tool that includes the factory (it compiles every layer).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <attn/core/init.hpp>
#include <attn/core/limits.hpp>
#include <attn/core/log.hpp>
#include <attn/core/parallel.hpp>
#include <attn/factory.hpp>
#include <attn/io/model.hpp>
#include <attn/io/npy.hpp>
#include <attn/io/safetensors.hpp>
#include <attn/io/weights.hpp>

#include "plot.hpp"

namespace {

namespace fs = std::filesystem;
using attn::AnyLayer;
using attn::AnyTensor;
using attn::Index;
using attn::Json;
using attn::Shape;

constexpr const char* exit_codes =
    "Exit codes: 0 success; 1 invalid config (validate found problems, unknown type, a parameter or option "
    "the layer does not take); 2 bad command line; 3 a file cannot be read or is malformed (JSON, a list or model "
    "file, .npy, .safetensors, PNG); 4 weights missing or mis-shaped; 5 an array of the wrong shape; 6 any other error.\n";

/// A mistake on the command line that CLI11 cannot see (exit 2).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- configs ------------------------------------------------------------------------------------

struct Entry {
  Json config;                            // the layer object (type, name, parameters)
  std::string prefix;                     // a model file's prefix of the layer's weights
  std::optional<std::vector<Shape>> inputs;  // a list file's input shapes
};

struct ConfigFile {
  enum class Kind { layer, model, list } kind = Kind::layer;
  std::string path;
  std::vector<Entry> entries;
  Json raw;
  std::optional<std::uint64_t> seed;  // a list file's "seed"
};

std::string layer_label(const Json& config, std::size_t index, std::size_t count) {
  std::string type = config.is_object() && config.contains("type") && config.at("type").is_string()
                         ? config.at("type").get<std::string>()
                         : std::string("?");
  std::string name = config.is_object() && config.contains("name") && config.at("name").is_string()
                         ? fmt::format(" '{}'", config.at("name").get<std::string>())
                         : std::string();
  return count > 1 ? fmt::format("layer {}{} ({})", index, name, type) : fmt::format("{}{}", type, name);
}

/// The bytes of a float32 array of `shape`, or an explanation of why it cannot be allocated: an
/// element count that overflows, or more than attn's allocation limit (core/limits.hpp).
std::optional<std::string> input_size_problem(const Shape& shape) {
  const auto count = attn::checked_shape_size(shape);
  const auto bytes = count ? attn::checked_bytes(*count, sizeof(float)) : std::nullopt;
  if (!bytes) return std::string("the element count overflows");
  if (*bytes > attn::allocation_limit())
    return fmt::format("a float32 array of {} is above the allocation limit of {}", attn::bytes_str(bytes),
                       attn::bytes_str(attn::allocation_limit()));
  return std::nullopt;
}

/// Throws `bad` naming the first key of `object` that is not among `known` (where names the object).
template <class Bad>
void refuse_unknown_keys(const Json& object, std::initializer_list<std::string_view> known, const std::string& where,
                         Bad bad) {
  for (auto it = object.begin(); it != object.end(); ++it) {
    const std::string& key = it.key();
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      std::vector<std::string> quoted;
      for (auto k : known) quoted.push_back(fmt::format("'{}'", k));
      throw bad(fmt::format("{}unknown key '{}' (the known keys: {})", where, key, fmt::join(quoted, ", ")));
    }
  }
}

ConfigFile read_config(const std::string& path) {
  ConfigFile f;
  f.path = path;
  f.raw = attn::detail::read_json_file(path);  // IOError when unreadable or not JSON
  const Json& j = f.raw;
  auto bad = [&](const std::string& what) { return attn::IOError(fmt::format("config '{}': {}", path, what)); };
  if (!j.is_object())
    throw bad(fmt::format("expected a JSON object, got {}", attn::detail::json_kind(j)));
  if (j.contains("format")) {
    if (j.at("format") != "attn.model") throw bad("key 'format' must be \"attn.model\" (a model file)");
    refuse_unknown_keys(j, {"format", "version", "weights", "layers"}, "model file: ", bad);
    if (!j.contains("version")) throw bad("key 'version' is missing (the integer 1)");
    if (!j.at("version").is_number_integer() || j.at("version") != 1)
      throw bad(fmt::format("key 'version' must be the integer 1, got {}", attn::detail::json_kind(j.at("version"))));
    if (j.contains("weights") && !j.at("weights").is_string())
      throw bad(fmt::format("key 'weights' must be a string (the weights file's name), got {}",
                            attn::detail::json_kind(j.at("weights"))));
    if (!j.contains("layers") || !j.at("layers").is_array()) throw bad("key 'layers' must be an array");
    f.kind = ConfigFile::Kind::model;
    std::size_t i = 0;
    for (const auto& e : j.at("layers")) {
      if (!e.is_object() || !e.contains("prefix") || !e.at("prefix").is_string() || !e.contains("config") ||
          !e.at("config").is_object())
        throw bad(fmt::format("layer {} must be an object with a string 'prefix' and an object 'config'", i));
      refuse_unknown_keys(e, {"prefix", "config"}, fmt::format("layers[{}]: ", i), bad);
      f.entries.push_back({e.at("config"), e.at("prefix").get<std::string>(), std::nullopt});
      ++i;
    }
  } else if (j.contains("type")) {
    f.kind = ConfigFile::Kind::layer;  // the layer's own keys are its parameters, checked by the library
    f.entries.push_back({j, "", std::nullopt});
  } else if (j.contains("layers")) {
    if (!j.at("layers").is_array()) throw bad("key 'layers' must be an array");
    refuse_unknown_keys(j, {"layers", "seed"}, "list file: ", bad);
    f.kind = ConfigFile::Kind::list;
    if (j.contains("seed")) {
      if (!j.at("seed").is_number_unsigned())
        throw bad(fmt::format("key 'seed' must be a non-negative integer (at most 2^64 - 1), got {}",
                              attn::detail::json_kind(j.at("seed"))));
      f.seed = j.at("seed").get<std::uint64_t>();
    }
    std::size_t i = 0;
    for (const auto& e : j.at("layers")) {
      if (!e.is_object() || !e.contains("layer"))
        throw bad(fmt::format("layers[{}] must be an object with a key 'layer' (and optionally 'inputs')", i));
      refuse_unknown_keys(e, {"layer", "inputs"}, fmt::format("layers[{}]: ", i), bad);
      Entry entry{e.at("layer"), "", std::nullopt};
      if (e.contains("inputs")) {
        std::vector<Shape> shapes;
        const Json& in = e.at("inputs");
        bool ok = in.is_array();
        for (std::size_t k = 0; ok && k < in.size(); ++k) {
          ok = in[k].is_array();
          Shape s;
          for (std::size_t d = 0; ok && d < in[k].size(); ++d) {
            ok = in[k][d].is_number_integer() && in[k][d].get<std::int64_t>() >= 0;
            if (ok) s.push_back(in[k][d].get<Index>());
          }
          const auto problem = ok ? input_size_problem(s) : std::nullopt;  // as --shape is checked
          if (problem) throw bad(fmt::format("layers[{}].inputs[{}] {}: {}", i, k, in[k].dump(), *problem));
          shapes.push_back(std::move(s));
        }
        if (!ok) throw bad(fmt::format("layers[{}].inputs must be a list of shapes (lists of non-negative integers)", i));
        entry.inputs = std::move(shapes);
      }
      f.entries.push_back(std::move(entry));
      ++i;
    }
  } else {
    throw bad(
        "expected a layer object (with a key 'type'), a model file (\"format\": \"attn.model\") or a list of "
        "layers ({\"layers\": [{\"layer\": {...}, \"inputs\": [[...]]}]})");
  }
  if (f.entries.empty()) throw bad("holds no layer");
  return f;
}

/// The index of the layer `which` (a name, a model prefix or an index) of the file, or the only one.
/// Text that is both the name (or prefix) of one layer and the index of another is refused.
std::size_t select_layer(const ConfigFile& f, const std::string& which) {
  std::vector<std::string> names;
  std::optional<std::size_t> by_name;
  for (std::size_t i = 0; i < f.entries.size(); ++i) {
    const Json& c = f.entries[i].config;
    const std::string name = c.is_object() && c.contains("name") && c.at("name").is_string()
                                 ? c.at("name").get<std::string>()
                                 : std::string();
    if (!by_name && !which.empty() &&
        (name == which || (!f.entries[i].prefix.empty() && f.entries[i].prefix == which)))
      by_name = i;
    names.push_back(name.empty() ? std::to_string(i) : name);
  }
  if (which.empty()) {
    if (f.entries.size() == 1) return 0;
    throw UsageError(fmt::format("'{}' holds {} layers: choose one with --layer ({})", f.path, f.entries.size(),
                                 fmt::join(names, ", ")));
  }
  std::optional<std::size_t> by_index;
  if (std::all_of(which.begin(), which.end(), [](char c) { return c >= '0' && c <= '9'; }) && which.size() < 9 &&
      std::stoul(which) < f.entries.size())
    by_index = std::stoul(which);
  if (by_name && by_index && *by_name != *by_index)
    throw UsageError(fmt::format("--layer '{}' is ambiguous in '{}': it is the name of layer {} and the index of "
                                 "layer {} ('{}'); rename one of them",
                                 which, f.path, *by_name, *by_index, names[*by_index]));
  if (by_name) return *by_name;
  if (by_index) return *by_index;
  throw UsageError(fmt::format("'{}' has no layer '{}' (layers: {})", f.path, which, fmt::join(names, ", ")));
}

// ---- arrays -------------------------------------------------------------------------------------

/// "x.npy" or "w.safetensors:name": the file and the tensor name (empty for .npy).
std::pair<std::string, std::string> split_source(const std::string& spec) {
  const std::string marker = ".safetensors:";
  const auto at = spec.find(marker);
  if (at != std::string::npos)
    return {spec.substr(0, at + marker.size() - 1), spec.substr(at + marker.size())};
  return {spec, ""};
}

/// The safetensors file of an array argument; a name it does not hold is an IOError (the file is
/// not what the command line says), not a weights problem.
attn::SafeTensors open_holding(const std::string& file, const std::string& name) {
  auto st = attn::SafeTensors::open(file);
  if (!st.contains(name))
    throw attn::IOError(fmt::format("safetensors '{}': no tensor named '{}' (it holds {})", file, name,
                                    attn::detail::some_names(st.names())));
  return st;
}

AnyTensor<float> read_array(const std::string& spec) {
  const auto [file, name] = split_source(spec);
  if (!name.empty()) return open_holding(file, name).tensor<float>(name);
  return attn::NpyArray::open(file).tensor<float>();
}

/// A boolean mask read from a .npy (bool, uint8 or 0/1 floats) or a safetensors tensor.
struct Mask {
  Shape shape;
  std::unique_ptr<bool[]> data;
};

Mask read_mask(const std::string& spec) {
  const auto [file, name] = split_source(spec);
  Mask m;
  if (!name.empty()) {
    const auto st = open_holding(file, name);
    const auto& e = st.at(name);
    m.shape = e.shape;
    const auto n = static_cast<std::size_t>(e.count());
    m.data = std::make_unique<bool[]>(n);
    if (attn::dtype_is_readable(e.dtype)) {
      const auto v = st.values<double>(name);
      for (std::size_t i = 0; i < n; ++i) {
        if (v[i] != 0.0 && v[i] != 1.0)
          throw attn::IOError(fmt::format("safetensors '{}': mask tensor '{}' holds only 0 (blocked) and 1 "
                                          "(attend), got {} at flat index {}",
                                          file, name, v[i], i));
        m.data[i] = v[i] != 0.0;
      }
    } else {
      st.read_integers_into<bool>(name, std::span<bool>(m.data.get(), n));
    }
    return m;
  }
  const auto a = attn::NpyArray::open(file);
  m.shape = a.shape();
  m.data = std::make_unique<bool[]>(static_cast<std::size_t>(a.size()));
  a.read_bools(std::span<bool>(m.data.get(), static_cast<std::size_t>(a.size())));
  return m;
}

AnyTensor<float> random_input(const Shape& shape, std::uint64_t seed) {
  AnyTensor<float> x(shape);
  attn::Rng rng(seed);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  return x;
}

Shape parse_shape(const std::string& text) {
  Shape s;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const auto comma = text.find(',', pos);
    const std::string part = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (part.empty() || part.size() > 12 || !std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; }))
      throw UsageError(fmt::format("--shape '{}': expected extents separated by commas, e.g. 2,128,256", text));
    s.push_back(static_cast<Index>(std::stoll(part)));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  if (const auto problem = input_size_problem(s)) throw UsageError(fmt::format("--shape '{}': {}", text, *problem));
  return s;
}

// ---- layers -------------------------------------------------------------------------------------

struct Loaded {
  AnyLayer<float> layer;
  std::string label;
  std::string weights_note;  // where the weights came from
};

struct WeightOptions {
  std::string weights;
  std::string prefix;
  std::uint64_t seed = 0;
  bool seed_given = false;  // --seed on the command line (it overrides a list file's "seed")
};

/// The seed in force: --seed when given, else a list file's "seed", else 0.
std::uint64_t seed_of(const ConfigFile& f, std::uint64_t option, bool given) {
  return given || !f.seed ? option : *f.seed;
}

Loaded load_layer(const ConfigFile& f, std::size_t index, const WeightOptions& w) {
  const Entry& e = f.entries[index];
  Loaded out;
  out.label = layer_label(e.config, index, f.entries.size());
  if (f.kind == ConfigFile::Kind::model && w.weights.empty()) {
    if (!f.raw.contains("weights") || !f.raw.at("weights").is_string())
      throw UsageError(fmt::format("model file '{}' names no weights file: give --weights", f.path));
    const fs::path file = fs::path(f.path).parent_path() / f.raw.at("weights").get<std::string>();
    const auto layers = attn::load_model<float>(f.raw, attn::SafeTensors::open(file));
    out.layer = layers[index];
    out.weights_note = fmt::format("weights from {} under '{}'", file.string(), e.prefix);
    return out;
  }
  out.layer = attn::create_attention_from_config<float>(e.config, w.seed);
  if (!w.weights.empty()) {
    const std::string prefix = w.prefix.empty() ? e.prefix : w.prefix;
    (void)attn::load_weights(out.layer, attn::SafeTensors::open(w.weights), prefix);
    out.weights_note = prefix.empty() ? fmt::format("weights from {}", w.weights)
                                      : fmt::format("weights from {} under '{}'", w.weights, prefix);
  } else {
    out.weights_note = fmt::format("random weights (seed {}; give --weights to load trained ones)", w.seed);
  }
  return out;
}

/// "multi_head (MultiHeadAttention)" or "layer 3 'mha' (multi_head, MultiHeadAttention)".
std::string with_class(const Loaded& l) {
  std::string s = l.label;
  if (s.ends_with(")")) {
    s.pop_back();
    return fmt::format("{}, {})", s, l.layer.class_name());
  }
  return fmt::format("{} ({})", s, l.layer.class_name());
}

/// Output extents named after the input extents they equal (B, T, S, H, W, D, C), numbers otherwise.
std::string io_signature(std::string_view type) {
  std::string result;
  attn::visit_layer<float>(type, [&]<class L>() {
    using C = typename L::Config;
    // the layer's example config: every required parameter's example, defaults otherwise
    const auto layer = attn::create_attention_layer<float>(type, attn::required_examples<C>());
    std::vector<Shape> shapes = L::example_input_shapes(layer.template target<L>()->config());
    // distinct probe extents for everything but the feature axis, so each can be told apart
    const std::vector<std::vector<std::string>> names3{{"B", "T", "D"}, {"B", "S", "E"}};
    const std::vector<std::vector<std::string>> names4{{"B", "H", "W", "C"}, {"B", "H2", "W2", "C2"}};
    std::vector<std::pair<Index, std::string>> known;
    std::vector<std::string> ins;
    // small primes (a layer may bound a sequence length), none equal to a feature extent
    std::vector<Index> probes;
    // (spread out, so that a strided or pooled extent does not land on another probe)
    for (Index p : {17, 23, 29, 37, 41, 43, 47, 53, 59, 61, 67, 71})
      if (std::none_of(shapes.begin(), shapes.end(), [&](const Shape& s) { return !s.empty() && s.back() == p; }))
        probes.push_back(p);
    std::size_t next_probe = 0;
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      Shape& s = shapes[i];
      const auto& names = s.size() == 4 ? names4[std::min<std::size_t>(i, 1)] : names3[std::min<std::size_t>(i, 1)];
      std::vector<std::string> parts;
      for (std::size_t d = 0; d < s.size(); ++d) {
        const bool feature = d + 1 == s.size();
        if (!feature && !(i > 0 && d == 0)) s[d] = probes.at(next_probe++);
        if (i > 0 && d == 0) s[d] = shapes[0][0];
        const std::string n = d < names.size() ? names[d] : fmt::format("d{}", d);
        if (std::none_of(known.begin(), known.end(), [&](const auto& k) { return k.first == s[d]; }))
          known.emplace_back(s[d], n);
        parts.push_back(n);
      }
      ins.push_back(fmt::format("[{}]", fmt::join(parts, ", ")));
    }
    Shape out;
    try {
      out = layer.output_shape(shapes);
    } catch (const attn::Error&) {
      // extents the config fixes (a window's w² tokens, an embedding's input_shape, split sizes): the
      // type's own example shapes, in numbers
      const std::vector<Shape> example = L::example_input_shapes(layer.template target<L>()->config());
      const Shape example_out = layer.output_shape(example);
      std::vector<std::string> in_parts;
      for (const Shape& e : example) in_parts.push_back(fmt::format("[{}]", fmt::join(e, ", ")));
      result = fmt::format("{} -> [{}]", fmt::join(in_parts, ", "), fmt::join(example_out, ", "));
      return;
    }
    std::vector<std::string> parts;
    for (Index e : out) {
      auto it = std::find_if(known.begin(), known.end(), [&](const auto& k) { return k.first == e; });
      parts.push_back(it != known.end() ? it->second : std::to_string(e));
    }
    result = fmt::format("{} -> [{}]", fmt::join(ins, ", "), fmt::join(parts, ", "));
  });
  return result;
}

/// Matrix-product FLOPs of one forward (2 per multiply-add): the dense projections (every weight
/// `<name>/kernel` [in, out], applied to each token; cross_attention's key and value to the
/// context's) and the two products of attention, Q·Kᵀ and weights·V (2 · 2 · B · T · S · width).
/// Softmax, biases, RoPE and norms are not counted. Only for the types whose products are exactly
/// these; nothing otherwise.
std::optional<double> matmul_flops(const AnyLayer<float>& layer, const std::vector<Shape>& in) {
  const std::string type(layer.type());
  if (type != "multi_head" && type != "self_attention" && type != "cross_attention" && type != "group_query")
    return std::nullopt;
  if (in.empty() || in[0].size() != 3) return std::nullopt;
  const double b = static_cast<double>(in[0][0]), t = static_cast<double>(in[0][1]);
  const double s = in.size() > 1 && in[1].size() == 3 ? static_cast<double>(in[1][1]) : t;
  const bool cross = type == "cross_attention";
  double flops = 0;
  for (const auto& w : layer.parameters()) {
    // dense kernels [in, out] only: not biases, nor tables such as group_query's RoPE cos/sin
    if (w.shape.size() != 2 || !w.name.ends_with("/kernel")) continue;
    const bool on_context = cross && (w.name.starts_with("key/") || w.name.starts_with("value/"));
    flops += 2.0 * b * (on_context ? s : t) * static_cast<double>(w.shape[0]) * static_cast<double>(w.shape[1]);
  }
  const Json cfg = layer.config();
  const double width = cfg.contains("embed_dim") ? cfg.at("embed_dim").get<double>() : cfg.at("d_model").get<double>();
  flops += 4.0 * b * t * s * width;
  return flops;
}

// ---- subcommands --------------------------------------------------------------------------------

int cmd_list(bool json) {
  const Json info = attn::get_attention_info();
  if (json) {
    fmt::print("{}\n", info.dump(2));
    return 0;
  }
  std::vector<std::array<std::string, 4>> rows{{"type", "class", "input(s) -> output", "required"}};
  for (const auto& [type, e] : info.items()) {
    std::vector<std::string> req;
    for (const auto& r : e.at("required_params")) req.push_back(r.get<std::string>());
    rows.push_back({type, e.at("class").get<std::string>(), io_signature(type),
                    req.empty() ? "-" : fmt::format("{}", fmt::join(req, ", "))});
  }
  std::array<std::size_t, 4> width{};
  for (const auto& r : rows)
    for (std::size_t c = 0; c < 4; ++c) width[c] = std::max(width[c], r[c].size());
  for (const auto& r : rows) {
    const std::string line = fmt::format("{:<{}}  {:<{}}  {:<{}}  {}", r[0], width[0], r[1], width[1], r[2], width[2], r[3]);
    fmt::print("{}\n", line.substr(0, line.find_last_not_of(' ') + 1));
  }
  return 0;
}

int cmd_info(const std::string& type) {
  if (!attn::is_attention_type(type)) throw attn::ConfigError(attn::detail::unknown_type_message(type), type);
  const Json e = attn::get_attention_info().at(type);
  fmt::print("{} ({})\n", type, e.at("class").get<std::string>());
  fmt::print("  {}\n", e.at("description").get<std::string>());
  fmt::print("  use case: {}\n", e.at("use_case").get<std::string>());
  fmt::print("  input(s) -> output: {}\n", io_signature(type));
  fmt::print("parameters:\n");
  for (const auto& [name, p] : e.at("parameters").items()) {
    std::vector<std::string> facts{p.at("kind").get<std::string>()};
    if (p.value("required", false)) {
      facts.push_back("required");
      if (p.contains("example")) facts.push_back(fmt::format("e.g. {}", p.at("example").dump()));
    } else if (p.contains("default")) {
      facts.push_back(fmt::format("default {}", p.at("default").dump()));
    }
    if (p.contains("range")) facts.push_back(p.at("range").get<std::string>());
    if (p.value("odd", false)) facts.push_back("odd");
    if (p.contains("choices")) facts.push_back(fmt::format("one of {}", p.at("choices").dump()));
    if (p.contains("min_length") || p.contains("max_length"))
      facts.push_back(fmt::format("{} to {} elements", p.value("min_length", 0), p.value("max_length", 0)));
    fmt::print("  {} ({})\n", name, fmt::join(facts, "; "));
    const std::string doc = p.value("doc", std::string());
    if (!doc.empty()) fmt::print("      {}\n", doc);
    if (p.contains("parameters"))
      for (const auto& [inner, q] : p.at("parameters").items())
        fmt::print("      .{} ({}){}\n", inner, q.at("kind").get<std::string>(),
                   q.contains("default") ? fmt::format(", default {}", q.at("default").dump()) : std::string());
  }
  return 0;
}

int cmd_validate(const std::string& path) {
  const ConfigFile f = read_config(path);
  std::size_t problems = 0;
  std::vector<std::string> seen_prefixes;
  for (std::size_t i = 0; i < f.entries.size(); ++i) {
    const Json& c = f.entries[i].config;
    const std::string label = layer_label(c, i, f.entries.size());
    attn::Problems p;
    if (!c.is_object()) {
      p.push_back({"", fmt::format("Config must be a dictionary, got {}", attn::detail::json_kind(c))});
    } else if (!c.contains("type")) {
      p.push_back({"type", "Configuration dictionary must include a 'type' key."});
    } else if (!c.at("type").is_string()) {
      p.push_back({"type", fmt::format("Key 'type' must be a string, got {}", attn::detail::json_kind(c.at("type")))});
    } else {
      p = attn::check_attention_config(c.at("type").get<std::string>(), c);
    }
    if (f.kind == ConfigFile::Kind::model) {
      if (std::find(seen_prefixes.begin(), seen_prefixes.end(), f.entries[i].prefix) != seen_prefixes.end())
        p.push_back({"prefix", fmt::format("the prefix '{}' repeats that of an earlier layer", f.entries[i].prefix)});
      seen_prefixes.push_back(f.entries[i].prefix);
    }
    for (const auto& q : p)
      fmt::print("{}: {}: {}{}\n", path, label, q.parameter.empty() ? "" : fmt::format("parameter '{}': ", q.parameter),
                 q.message);
    if (p.empty()) fmt::print("{}: {}: ok\n", path, label);
    problems += p.size();
  }
  if (problems > 0) {
    fmt::print("{}: {} problem{}\n", path, problems, problems == 1 ? "" : "s");
    return 1;
  }
  return 0;
}

struct MaskOptions {
  std::string attn_mask;
  std::string key_padding;
  bool causal = false;
};

/// The layer's inputs: the arrays given, or seeded random arrays of the list file's shapes.
std::vector<AnyTensor<float>> gather_inputs(const ConfigFile& f, std::size_t index, const std::vector<std::string>& specs,
                                            std::uint64_t seed) {
  std::vector<AnyTensor<float>> inputs;
  if (!specs.empty()) {
    for (const auto& s : specs) inputs.push_back(read_array(s));
    return inputs;
  }
  const auto& shapes = f.entries[index].inputs;
  if (!shapes) throw UsageError("--input is required (only a list file such as examples/configs/quickstart.json "
                                "carries input shapes)");
  for (std::size_t i = 0; i < shapes->size(); ++i) inputs.push_back(random_input((*shapes)[i], seed + 1 + i));
  return inputs;
}

/// Runs the door with the masks asked for (kept alive by `keep`).
attn::ForwardResult<float> forward(const AnyLayer<float>& layer, std::vector<AnyTensor<float>> inputs,
                                   const MaskOptions& m, bool want_weights) {
  attn::ForwardArgs<float> args;
  args.inputs = std::move(inputs);
  Mask mask, padding;
  if (!m.attn_mask.empty()) {
    mask = read_mask(m.attn_mask);
    args.attn_mask = attn::AttnMask(mask.data.get(), mask.shape);
  }
  if (!m.key_padding.empty()) {
    padding = read_mask(m.key_padding);
    args.key_padding = attn::KeyPaddingMask(padding.data.get(), padding.shape);
  }
  args.causal = m.causal;
  args.return_weights = want_weights;
  return layer.forward(args);
}

std::string shapes_str(const std::vector<AnyTensor<float>>& xs) {
  std::vector<std::string> s;
  for (const auto& x : xs) s.push_back(attn::shape_str(x.shape()));
  return fmt::format("{}", fmt::join(s, ", "));
}

struct RunOptions {
  std::string config, layer, output, weights_out;
  std::vector<std::string> inputs;
  WeightOptions weights;
  MaskOptions masks;
};

int cmd_run(const RunOptions& o) {
  const ConfigFile f = read_config(o.config);
  const std::size_t index = select_layer(f, o.layer);
  WeightOptions wo = o.weights;
  wo.seed = seed_of(f, wo.seed, wo.seed_given);
  const Loaded l = load_layer(f, index, wo);
  auto inputs = gather_inputs(f, index, o.inputs, wo.seed);
  const std::string in_shapes = shapes_str(inputs);
  const auto r = forward(l.layer, std::move(inputs), o.masks, !o.weights_out.empty());
  fmt::print("{}: {} -> {}\n", with_class(l), in_shapes, attn::shape_str(r.output.shape()));
  fmt::print("  {}\n", l.weights_note);
  const auto& v = r.output.values();
  if (!v.empty()) {
    double lo = v[0], hi = v[0], sum = 0;
    for (float x : v) {
      lo = std::min(lo, static_cast<double>(x));
      hi = std::max(hi, static_cast<double>(x));
      sum += static_cast<double>(x);
    }
    fmt::print("  output min {:.4g}, max {:.4g}, mean {:.4g}\n", lo, hi, sum / static_cast<double>(v.size()));
  }
  if (!o.output.empty()) {
    attn::write_npy(o.output, r.output);
    fmt::print("  wrote {} (float32 {})\n", o.output, attn::shape_str(r.output.shape()));
  }
  if (!o.weights_out.empty()) {
    attn::write_npy(o.weights_out, *r.weights);
    fmt::print("  wrote {} (float32 attention weights {}, [batch, heads, queries, keys])\n", o.weights_out,
               attn::shape_str(r.weights->shape()));
  }
  return 0;
}

struct BenchOptions {
  std::string config, layer;
  std::vector<std::string> shapes;
  int threads = 0, repeats = 10, warmup = 2;
  std::uint64_t seed = 0;
  bool seed_given = false;
};

int cmd_bench(const BenchOptions& o) {
  const ConfigFile f = read_config(o.config);
  const std::uint64_t seed = seed_of(f, o.seed, o.seed_given);
  std::vector<std::size_t> which;
  if (!o.layer.empty() || f.entries.size() == 1) which.push_back(select_layer(f, o.layer));
  else if (!o.shapes.empty())
    throw UsageError(fmt::format("'{}' holds {} layers: --shape needs --layer", o.config, f.entries.size()));
  else
    for (std::size_t i = 0; i < f.entries.size(); ++i) which.push_back(i);
  if (o.threads > 0) attn::set_num_threads(o.threads);
  const bool tty = isatty(2) != 0;
  std::vector<std::array<std::string, 6>> rows{{"layer", "input(s)", "median ms", "min ms", "FLOPs", "GFLOP/s"}};
  for (std::size_t i : which) {
    const Loaded l = load_layer(f, i, {"", "", seed, true});
    std::vector<AnyTensor<float>> inputs;
    if (!o.shapes.empty()) {
      for (std::size_t k = 0; k < o.shapes.size(); ++k) inputs.push_back(random_input(parse_shape(o.shapes[k]), seed + 1 + k));
    } else {
      inputs = gather_inputs(f, i, {}, seed);
    }
    std::vector<Shape> shapes;
    for (const auto& x : inputs) shapes.push_back(x.shape());
    const auto t_start = std::chrono::steady_clock::now();
    for (int k = 0; k < o.warmup; ++k) (void)l.layer.forward(std::span<const AnyTensor<float>>(inputs));
    std::vector<double> ms;
    bool progress = false;
    for (int k = 0; k < o.repeats; ++k) {
      const auto t0 = std::chrono::steady_clock::now();
      (void)l.layer.forward(std::span<const AnyTensor<float>>(inputs));
      const auto t1 = std::chrono::steady_clock::now();
      ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      if (tty && std::chrono::duration<double>(t1 - t_start).count() > 1.0) {
        fmt::print(stderr, "\r{}: repeat {}/{}", l.label, k + 1, o.repeats);
        std::fflush(stderr);
        progress = true;
      }
    }
    if (progress) fmt::print(stderr, "\r{:<60}\r", "");
    std::sort(ms.begin(), ms.end());
    const double median = ms.size() % 2 == 1 ? ms[ms.size() / 2] : (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]) / 2;
    const auto flops = matmul_flops(l.layer, shapes);
    rows.push_back({l.label, shapes_str(inputs), fmt::format("{:.3f}", median), fmt::format("{:.3f}", ms.front()),
                    flops ? fmt::format("{:.0f}", *flops) : "-",
                    flops && median > 0 ? fmt::format("{:.2f}", *flops / (median * 1e6)) : "-"});
  }
  std::array<std::size_t, 6> width{};
  for (const auto& r : rows)
    for (std::size_t c = 0; c < 6; ++c) width[c] = std::max(width[c], r[c].size());
  for (const auto& r : rows)
    fmt::print("{:<{}}  {:<{}}  {:>{}}  {:>{}}  {:>{}}  {:>{}}\n", r[0], width[0], r[1], width[1], r[2], width[2], r[3],
               width[3], r[4], width[4], r[5], width[5]);
  fmt::print("{} repeats after {} warm-up, {} thread(s), float32; FLOPs: matrix products per forward (2 per "
             "multiply-add), '-' where the tool has no count for the type\n",
             o.repeats, o.warmup, attn::num_threads());
  return 0;
}

struct HeatmapOptions {
  std::string config, layer, out, grid;
  std::vector<std::string> inputs;
  WeightOptions weights;
  MaskOptions masks;
  int batch = 0;
  int head = -1;
  int query = -1;
};

int cmd_heatmap(const HeatmapOptions& o) {
  const ConfigFile f = read_config(o.config);
  const std::size_t index = select_layer(f, o.layer);
  WeightOptions wo = o.weights;
  wo.seed = seed_of(f, wo.seed, wo.seed_given);
  const Loaded l = load_layer(f, index, wo);
  auto inputs = gather_inputs(f, index, o.inputs, wo.seed);
  const Shape first = inputs.empty() ? Shape{} : inputs[0].shape();
  const auto r = forward(l.layer, std::move(inputs), o.masks, true);
  const AnyTensor<float>& w = *r.weights;  // [B, heads, T, S]
  const Shape& s = w.shape();
  const Index B = s[0], H = s[1], T = s[2], S = s[3];
  auto out_of = [](std::string_view opt, Index v, Index n, std::string_view what) {
    if (v < 0 || v >= n)
      throw UsageError(fmt::format("{} {} is out of range: the attention weights have {} {} (0 to {})", opt, v, n, what,
                                   n - 1));
  };
  out_of("--batch", o.batch, B, "batch items");
  if (o.head >= 0) out_of("--head", o.head, H, "heads");
  if (o.query >= 0) out_of("--query", o.query, T, "queries");
  int grid_h = 0, grid_w = 0;
  if (!o.grid.empty()) {
    const Shape g = parse_shape(o.grid);
    if (g.size() != 2 || g[0] * g[1] != S)
      throw UsageError(fmt::format("--grid {}: expected H,W with H * W = {} keys", o.grid, S));
    grid_h = static_cast<int>(g[0]);
    grid_w = static_cast<int>(g[1]);
  } else if (first.size() == 4 && first[1] * first[2] == S) {  // an image input: keys on its H x W grid
    grid_h = static_cast<int>(first[1]);
    grid_w = static_cast<int>(first[2]);
  }
  std::vector<attn_cli::Panel> panels;
  double vmax = 0;
  for (Index h = 0; h < H; ++h) {
    if (o.head >= 0 && h != o.head) continue;
    attn_cli::Panel p;
    const float* base = w.data() + ((o.batch * H + h) * T) * S;
    if (o.query >= 0) {
      const float* row = base + o.query * S;
      p.title = fmt::format("head {}, query {}", h, o.query);
      p.rows = grid_h > 0 ? grid_h : 1;
      p.cols = grid_h > 0 ? grid_w : static_cast<int>(S);
      p.values.assign(row, row + S);
      p.row_label = grid_h > 0 ? "row" : "";
      p.col_label = grid_h > 0 ? "column" : "key";
    } else {
      p.title = fmt::format("head {}", h);
      p.rows = static_cast<int>(T);
      p.cols = static_cast<int>(S);
      p.values.assign(base, base + T * S);
      p.row_label = "query";
      p.col_label = "key";
    }
    // a non-finite weight is no colour: refuse it rather than draw it as 0
    for (std::size_t j = 0; j < p.values.size(); ++j)
      if (!std::isfinite(p.values[j])) {
        const Index query = o.query >= 0 ? o.query : static_cast<Index>(j) / S;
        const Index key = o.query >= 0 ? static_cast<Index>(j) : static_cast<Index>(j) % S;
        throw std::runtime_error(fmt::format("{}: the attention weights are not finite: {} at batch {}, head {}, "
                                             "query {}, key {} (the first such weight); nothing drawn",
                                             l.label, p.values[j], o.batch, h, query, key));
      }
    for (double v : p.values) vmax = std::max(vmax, v);
    panels.push_back(std::move(p));
  }
  const int columns = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(panels.size()))));
  const auto img = attn_cli::render_panels(
      panels, 0.0, vmax > 0 ? vmax : 1.0,
      fmt::format("{}: attention weights, batch {}", l.label, o.batch), columns);
  img.write_png(o.out);
  fmt::print("{}: weights {} -> {} ({} x {} pixels, {} panel{})\n", with_class(l),
             attn::shape_str(s), o.out, img.width(), img.height(), panels.size(), panels.size() == 1 ? "" : "s");
  return 0;
}

/// --seed: a whole number from 0 to 2^64 - 1 (CLI11 alone wraps -1 around and clamps 2^64).
const CLI::Validator seed_range(
    [](std::string& text) -> std::string {
      const std::string max = "18446744073709551615";
      const bool digits =
          !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (!digits || text.size() > max.size() || (text.size() == max.size() && text > max))
        return fmt::format("expected an integer from 0 to {}, got '{}'", max, text);
      return {};
    },
    "0 to 2^64 - 1");

/// The help of --seed.
constexpr const char* seed_help = "seed of random weights and inputs (default: a list file's \"seed\", else 0)";

/// --weights, --prefix (which needs --weights) and --seed; returns --seed.
CLI::Option* add_weight_options(CLI::App* c, WeightOptions& w) {
  auto* weights = c->add_option("--weights", w.weights,
                                "safetensors file with the layer's weights (default: a model file's own; "
                                "otherwise random weights from --seed)");
  c->add_option("--prefix", w.prefix, "prefix of the layer's tensors in the --weights file, e.g. encoder/attn")
      ->needs(weights);
  return c->add_option("--seed", w.seed, seed_help)->check(seed_range);
}

void add_mask_options(CLI::App* c, MaskOptions& m) {
  c->add_option("--mask", m.attn_mask,
                "attention mask [T, S], [B, T, S] or [B, H, T, S]: true (1) = may attend (.npy of bool, uint8 "
                "or 0/1 floats, or FILE.safetensors:NAME)");
  c->add_option("--key-padding", m.key_padding, "key padding mask [B, S]: true (1) = a real key");
  c->add_flag("--causal", m.causal, "causal masking (query i sees keys j <= i + S - T)");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"attn: attention layers from JSON configs on NumPy arrays.\n"
               "Arrays are .npy files (float32 or float64, C order) or tensors of a safetensors file, "
               "FILE.safetensors:NAME.",
               "attn"};
  app.footer(exit_codes);
  app.require_subcommand(1);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "show the library's INFO log lines");

  bool list_json = false;
  auto* list = app.add_subcommand("list", "the registered layer types as a table");
  list->add_flag("--json", list_json, "every type's full description as JSON (get_attention_info)");

  std::string info_type;
  auto* info = app.add_subcommand("info", "a layer type's parameters: kind, default, range or choices, doc");
  info->add_option("TYPE", info_type, "a layer type, e.g. multi_head")->required();

  std::string validate_path;
  auto* validate = app.add_subcommand(
      "validate", "every problem of a config (one layer, a model file or a list of layers); exit 1 if any");
  validate->add_option("CONFIG", validate_path, "JSON file")->required();

  RunOptions run_o;
  auto* run = app.add_subcommand("run", "build a layer, load its weights, run it on arrays, write the outputs");
  run->add_option("CONFIG", run_o.config, "JSON file")->required();
  run->add_option("--layer", run_o.layer,
                  "which layer of a file that holds several (name, model prefix or index; text that names one "
                  "layer and is the index of another is an error)");
  run->add_option("--input", run_o.inputs,
                  "an input array, once per input of the layer, in order (default for a list file: random "
                  "arrays of its shapes)");
  run->add_option("--output", run_o.output, "write the output here (.npy, float32)");
  run->add_option("--weights-out", run_o.weights_out, "write the attention weights [B, heads, T, S] here (.npy)");
  auto* run_seed = add_weight_options(run, run_o.weights);
  add_mask_options(run, run_o.masks);

  BenchOptions bench_o;
  auto* bench = app.add_subcommand("bench", "time a layer's forward: median of repeats, ms and GFLOP/s");
  bench->add_option("CONFIG", bench_o.config, "JSON file")->required();
  bench->add_option("--layer", bench_o.layer,
                    "which layer, as for run (default: every layer of the file)");
  bench->add_option("--shape", bench_o.shapes,
                    "input shape as extents separated by commas, e.g. 8,512,256; once per input (default: a "
                    "list file's shapes)");
  bench->add_option("--threads", bench_o.threads, "threads of attn's kernels (default: all cores)")
      ->check(CLI::Range(1, 1024));
  bench->add_option("--repeats", bench_o.repeats, "timed forwards")->check(CLI::Range(1, 1000000))->capture_default_str();
  bench->add_option("--warmup", bench_o.warmup, "untimed forwards first")->check(CLI::Range(0, 1000000))->capture_default_str();
  auto* bench_seed = bench->add_option("--seed", bench_o.seed, seed_help)->check(seed_range);

  HeatmapOptions heat_o;
  auto* heat = app.add_subcommand("heatmap", "draw a layer's attention weights as a PNG, one panel per head");
  heat->add_option("CONFIG", heat_o.config, "JSON file")->required();
  heat->add_option("--out", heat_o.out, "the PNG file to write")->required();
  heat->add_option("--layer", heat_o.layer, "which layer of a file that holds several, as for run");
  heat->add_option("--input", heat_o.inputs, "an input array, once per input (default for a list file: random)");
  heat->add_option("--batch", heat_o.batch, "which batch item")->check(CLI::Range(0, 1 << 30))->capture_default_str();
  heat->add_option("--head", heat_o.head, "only this head (default: every head)")->check(CLI::Range(0, 1 << 30));
  auto* query = heat->add_option("--query", heat_o.query,
                   "only this query's row, on the H x W grid of an image input or of --grid (default: all queries)")
      ->check(CLI::Range(0, 1 << 30));
  heat->add_option("--grid", heat_o.grid, "H,W: lay the keys of --query out on this grid")->needs(query);
  auto* heat_seed = add_weight_options(heat, heat_o.weights);
  add_mask_options(heat, heat_o.masks);

  for (auto* sub : {list, info, validate, run, bench, heat}) sub->footer(exit_codes);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    (void)app.exit(e);
    return 2;
  }

  run_o.weights.seed_given = run_seed->count() > 0;
  heat_o.weights.seed_given = heat_seed->count() > 0;
  bench_o.seed_given = bench_seed->count() > 0;
  attn::set_log_level(verbose ? attn::LogLevel::info : attn::LogLevel::off);  // errors are printed below
  const std::string sub = app.get_subcommands().front()->get_name();
  try {
    if (*list) return cmd_list(list_json);
    if (*info) return cmd_info(info_type);
    if (*validate) return cmd_validate(validate_path);
    if (*run) return cmd_run(run_o);
    if (*bench) return cmd_bench(bench_o);
    if (*heat) return cmd_heatmap(heat_o);
  } catch (const UsageError& e) {
    fmt::print(stderr, "attn {}: {}\nRun with --help for more information.\n", sub, e.what());
    return 2;
  } catch (const attn::ConfigError& e) {
    fmt::print(stderr, "attn {}: {}\n", sub, e.what());
    return 1;
  } catch (const attn::IOError& e) {
    fmt::print(stderr, "attn {}: {}\n", sub, e.what());
    return 3;
  } catch (const attn::WeightsError& e) {
    fmt::print(stderr, "attn {}: {}\n", sub, e.what());
    return 4;
  } catch (const attn::ShapeError& e) {
    fmt::print(stderr, "attn {}: {}\n", sub, e.what());
    return 5;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "attn {}: out of memory\n", sub);
    return 6;
  } catch (const std::exception& e) {
    fmt::print(stderr, "attn {}: {}\n", sub, e.what());
    return 6;
  }
  return 6;
}
