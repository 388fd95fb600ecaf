/// \file
/// Reading and writing the safetensors format, the weight-file format of attn.
///
/// Layout of a file: an 8-byte little-endian unsigned header length N, then N bytes of UTF-8 JSON,
/// then the data section. The JSON header is an object: each key is a tensor name mapped to
/// `{"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}` (offsets in bytes, relative to
/// the start of the data section, end exclusive); the optional key `"__metadata__"` maps strings to
/// strings. Tensor data is raw, row-major and little-endian. Writers pad the header with spaces so
/// that the data section starts at a multiple of 8 bytes.
///
/// Reading (`SafeTensors`): the file is read once into memory and every tensor is converted from its
/// bytes straight into the caller's scalar (no other copy). Dtypes I64, I32, U8 and BOOL convert to
/// integers and booleans (`integers`, `bool_tensor`: masks and lengths travel in the same files; every
/// value range-checked). Dtypes F32, F64, F16 and BF16 convert to
/// float or double (F16 and BF16 exactly; F64 to float rounds to nearest, and a finite value beyond
/// float's range is an error rather than a silent infinity). Every valid safetensors dtype string is
/// accepted in the header (BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, I32, U32, I64, U64 too), but
/// reading those as numbers is a WeightsError: attn weights are floating point.
///
/// Every file is untrusted: a header length beyond the file (or above 100 MB), a header that is not
/// JSON or not an object, a duplicate name, a malformed entry or an unknown dtype string, data offsets
/// out of range, overlapping or leaving gaps (the tensors must tile the data section exactly), and a
/// shape whose byte size overflows or differs from its offsets are all an attn::IOError naming the
/// file and the tensor. Nothing is read out of bounds.
///
/// Writing (`SafeTensorsWriter`): tensors as F32 or F64 (converted from the caller's scalar), or raw
/// bytes of any dtype; optional string metadata; names unique and not `__metadata__`.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
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
#include "attn/core/tensor.hpp"
#include "attn/io/json_text.hpp"

namespace attn {

/// The element types of the safetensors format.
enum class DType : std::uint8_t {
  BOOL,
  U8,
  I8,
  F8_E5M2,
  F8_E4M3,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  F64,
  I64,
  U64
};

namespace detail {
struct DTypeInfo {
  DType dtype;
  std::string_view name;
  std::size_t size;
};
inline constexpr std::array<DTypeInfo, 15> dtype_table{{
    {DType::BOOL, "BOOL", 1},
    {DType::U8, "U8", 1},
    {DType::I8, "I8", 1},
    {DType::F8_E5M2, "F8_E5M2", 1},
    {DType::F8_E4M3, "F8_E4M3", 1},
    {DType::I16, "I16", 2},
    {DType::U16, "U16", 2},
    {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},
    {DType::I32, "I32", 4},
    {DType::U32, "U32", 4},
    {DType::F32, "F32", 4},
    {DType::F64, "F64", 8},
    {DType::I64, "I64", 8},
    {DType::U64, "U64", 8},
}};
}  // namespace detail

/// "F32", "BF16", ...
constexpr std::string_view dtype_name(DType d) noexcept {
  for (const auto& e : detail::dtype_table)
    if (e.dtype == d) return e.name;
  return "?";
}
/// Bytes per element.
constexpr std::size_t dtype_size(DType d) noexcept {
  for (const auto& e : detail::dtype_table)
    if (e.dtype == d) return e.size;
  return 0;
}
/// The dtype called `name` (exact, case-sensitive), or nothing.
constexpr std::optional<DType> dtype_from_name(std::string_view name) noexcept {
  for (const auto& e : detail::dtype_table)
    if (e.name == name) return e.dtype;
  return std::nullopt;
}
/// True for the dtypes that convert to float and double: F32, F64, F16, BF16.
constexpr bool dtype_is_readable(DType d) noexcept {
  return d == DType::F32 || d == DType::F64 || d == DType::F16 || d == DType::BF16;
}
/// F32 for float, F64 for double.
template <class T>
constexpr DType dtype_of() noexcept {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "attn: scalar must be float or double");
  return std::is_same_v<T, float> ? DType::F32 : DType::F64;
}

namespace detail {

inline std::uint64_t load_le(const std::uint8_t* p, std::size_t n) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  return v;
}
inline void store_le(std::uint8_t* p, std::uint64_t v, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

/// IEEE binary16 bits to double (exact): subnormals, infinities and NaN (sign kept) included.
inline double half_to_double(std::uint16_t h) noexcept {
  const bool negative = (h & 0x8000u) != 0;
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  double v = 0;
  if (exponent == 0)
    v = std::ldexp(static_cast<double>(mantissa), -24);
  else if (exponent == 31)
    v = mantissa == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  else
    v = std::ldexp(static_cast<double>(1024 + mantissa), exponent - 25);
  return negative ? -v : v;
}

/// bfloat16 bits to float (exact: the upper half of a binary32).
inline float bf16_to_float(std::uint16_t b) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

/// a * b, or nothing on overflow of 64 bits.
inline std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b) noexcept {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return std::nullopt;
  return a * b;
}

/// Converts one double to T; a finite double beyond float's range throws.
template <class T>
T narrow_value(double v, const std::function<std::string()>& where) {
  if constexpr (std::is_same_v<T, float>) {
    if (std::isfinite(v) && std::abs(v) > static_cast<double>(std::numeric_limits<float>::max()))
      throw WeightsError(fmt::format("{}: value {} does not fit in float", where(), v));
  }
  return static_cast<T>(v);
}

}  // namespace detail

/// A safetensors file held in memory, parsed and validated. Cheap to move; tensors are converted on
/// request.
class SafeTensors {
public:
  /// One tensor of the file: offsets are relative to the data section.
  struct Entry {
    std::string name;
    DType dtype{};
    Shape shape;
    std::uint64_t begin = 0, end = 0;
    [[nodiscard]] Index count() const { return shape_size(shape); }
  };

  /// The largest header accepted (bytes).
  static constexpr std::uint64_t max_header_size = 100'000'000;

  SafeTensors() = default;

  /// Reads and validates the file at `path`; IOError when it cannot be read or is malformed.
  static SafeTensors open(const std::filesystem::path& path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
      throw IOError(fmt::format("safetensors '{}': is a directory, not a file", path.string()));
    std::ifstream in(path, std::ios::binary);
    if (!in) throw IOError(fmt::format("safetensors '{}': cannot open the file for reading", path.string()));
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    if (size < 0)
      throw IOError(fmt::format("safetensors '{}': cannot determine the file size", path.string()));
    in.seekg(0, std::ios::beg);
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
    if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size)))
      throw IOError(fmt::format("safetensors '{}': reading {} bytes failed", path.string(), size));
    return from_bytes(std::move(bytes), path.string());
  }

  /// Validates the bytes of a whole file; `origin` names it in error messages.
  static SafeTensors from_bytes(std::vector<std::uint8_t> bytes, std::string origin = "<memory>") {
    SafeTensors st;
    st.bytes_ = std::move(bytes);
    st.origin_ = std::move(origin);
    st.parse();
    return st;
  }

  /// The file name (or "<memory>") used in messages.
  [[nodiscard]] const std::string& origin() const noexcept { return origin_; }
  /// The tensors in data order.
  [[nodiscard]] const std::vector<Entry>& entries() const noexcept { return entries_; }
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }
  /// The `__metadata__` strings.
  [[nodiscard]] const std::map<std::string, std::string, std::less<>>& metadata() const noexcept {
    return metadata_;
  }
  /// The metadata value of `key`, or nothing.
  [[nodiscard]] std::optional<std::string> meta(std::string_view key) const {
    auto it = metadata_.find(key);
    if (it == metadata_.end()) return std::nullopt;
    return it->second;
  }
  /// The tensor names in data order.
  [[nodiscard]] std::vector<std::string> names() const {
    std::vector<std::string> n;
    n.reserve(entries_.size());
    for (const auto& e : entries_) n.push_back(e.name);
    return n;
  }
  [[nodiscard]] bool contains(std::string_view name) const { return index_.find(name) != index_.end(); }
  /// The entry called `name`, or nullptr.
  [[nodiscard]] const Entry* find(std::string_view name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &entries_[it->second];
  }
  /// The entry called `name`; WeightsError when there is none.
  [[nodiscard]] const Entry& at(std::string_view name) const {
    if (const Entry* e = find(name)) return *e;
    throw WeightsError(fmt::format("safetensors '{}': no tensor named '{}'", origin_, name));
  }
  /// The raw little-endian bytes of a tensor.
  [[nodiscard]] std::span<const std::uint8_t> raw(std::string_view name) const {
    const Entry& e = at(name);
    return {bytes_.data() + data_begin_ + e.begin, static_cast<std::size_t>(e.end - e.begin)};
  }

  /// Converts tensor `name` into `out`, which must hold exactly its element count. F32/F64/F16/BF16
  /// only (WeightsError otherwise).
  template <class T>
  void read_into(std::string_view name, std::span<T> out) const {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "attn: scalar must be float or double");
    const Entry& e = at(name);
    if (!dtype_is_readable(e.dtype))
      throw WeightsError(
          fmt::format("safetensors '{}': tensor '{}' has dtype {}; only F32, F64, F16 and "
                      "BF16 convert to floating point",
                      origin_, name, dtype_name(e.dtype)));
    const auto n = static_cast<std::size_t>(e.count());
    if (out.size() != n)
      throw WeightsError(fmt::format("safetensors '{}': tensor '{}' has {} elements, destination holds {}",
                                     origin_, name, n, out.size()));
    const std::uint8_t* p = bytes_.data() + data_begin_ + e.begin;
    switch (e.dtype) {
      case DType::F32:
        for (std::size_t i = 0; i < n; ++i)
          out[i] =
              static_cast<T>(std::bit_cast<float>(static_cast<std::uint32_t>(detail::load_le(p + 4 * i, 4))));
        return;
      case DType::F64:
        for (std::size_t i = 0; i < n; ++i)
          out[i] = detail::narrow_value<T>(std::bit_cast<double>(detail::load_le(p + 8 * i, 8)), [&] {
            return fmt::format("safetensors '{}': tensor '{}' at flat index {}", origin_, name, i);
          });
        return;
      case DType::F16:
        for (std::size_t i = 0; i < n; ++i)
          out[i] = static_cast<T>(
              detail::half_to_double(static_cast<std::uint16_t>(detail::load_le(p + 2 * i, 2))));
        return;
      case DType::BF16:
        for (std::size_t i = 0; i < n; ++i)
          out[i] = static_cast<T>(
              detail::bf16_to_float(static_cast<std::uint16_t>(detail::load_le(p + 2 * i, 2))));
        return;
      default:
        return;  // unreachable: checked above
    }
  }
  /// Converts tensor `name`, of dtype I64, I32, U8 or BOOL, into the integers (or booleans) `out`,
  /// which must hold exactly its element count. I is bool, std::uint8_t, std::int32_t or std::int64_t
  /// (attn::Index). Every value is checked against I's range (a bool takes only 0 and 1), and a BOOL
  /// byte other than 0 or 1 is malformed: WeightsError naming the tensor and the flat index. Float
  /// dtypes are a WeightsError (no silent rounding).
  template <class I>
  void read_integers_into(std::string_view name, std::span<I> out) const {
    static_assert(std::is_same_v<I, bool> || std::is_same_v<I, std::uint8_t> || std::is_same_v<I, std::int32_t> ||
                      std::is_same_v<I, std::int64_t> || std::is_same_v<I, long> || std::is_same_v<I, long long>,
                  "attn: integer destination must be bool, uint8_t, int32_t or int64_t");
    const Entry& e = at(name);
    if (e.dtype != DType::I64 && e.dtype != DType::I32 && e.dtype != DType::U8 && e.dtype != DType::BOOL)
      throw WeightsError(
          fmt::format("safetensors '{}': tensor '{}' has dtype {}; only I64, I32, U8 and BOOL convert to "
                      "integers and booleans",
                      origin_, name, dtype_name(e.dtype)));
    const auto n = static_cast<std::size_t>(e.count());
    if (out.size() != n)
      throw WeightsError(fmt::format("safetensors '{}': tensor '{}' has {} elements, destination holds {}",
                                     origin_, name, n, out.size()));
    const std::uint8_t* p = bytes_.data() + data_begin_ + e.begin;
    const std::size_t w = dtype_size(e.dtype);
    constexpr bool to_bool = std::is_same_v<I, bool>;
    const long double lo = to_bool ? 0.0L : static_cast<long double>(std::numeric_limits<I>::min());
    const long double hi = to_bool ? 1.0L : static_cast<long double>(std::numeric_limits<I>::max());
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t bits = detail::load_le(p + w * i, w);
      std::int64_t v = 0;
      switch (e.dtype) {
        case DType::I64: v = static_cast<std::int64_t>(bits); break;
        case DType::I32: v = static_cast<std::int32_t>(static_cast<std::uint32_t>(bits)); break;
        default: v = static_cast<std::int64_t>(bits); break;  // U8, BOOL: one byte
      }
      if (e.dtype == DType::BOOL && v > 1)
        throw WeightsError(fmt::format("safetensors '{}': tensor '{}' of dtype BOOL holds byte {} at flat index {} "
                                       "(only 0 and 1 are booleans)",
                                       origin_, name, v, i));
      const auto lv = static_cast<long double>(v);
      if (lv < lo || lv > hi)
        throw WeightsError(fmt::format("safetensors '{}': tensor '{}' value {} at flat index {} does not fit in {}",
                                       origin_, name, v, i, to_bool ? "bool (0 or 1)" : "the destination type"));
      out[i] = static_cast<I>(v);
    }
  }
  /// Tensor `name` (I64, I32, U8 or BOOL) as integers, flat, e.g. key lengths.
  template <class I = Index>
  [[nodiscard]] std::vector<I> integers(std::string_view name) const {
    static_assert(!std::is_same_v<I, bool>, "attn: use bool_tensor for booleans");
    std::vector<I> v(static_cast<std::size_t>(at(name).count()));
    read_integers_into<I>(name, std::span<I>(v));
    return v;
  }
  /// Tensor `name` (BOOL, or U8/I32/I64 holding only 0 and 1) as a boolean tensor of rank R, e.g. a
  /// mask; WeightsError when its rank is not R.
  template <int R>
  [[nodiscard]] Tensor<bool, R> bool_tensor(std::string_view name) const {
    const Entry& e = at(name);
    if (static_cast<int>(e.shape.size()) != R)
      throw WeightsError(fmt::format("safetensors '{}': tensor '{}' has shape {}, expected rank {}", origin_, name,
                                     shape_str(e.shape), R));
    std::array<Index, R> dims{};
    for (int i = 0; i < R; ++i) dims[static_cast<std::size_t>(i)] = e.shape[static_cast<std::size_t>(i)];
    Tensor<bool, R> t(dims);
    read_integers_into<bool>(name, std::span<bool>(t.data(), static_cast<std::size_t>(t.size())));
    return t;
  }

  /// Tensor `name` converted to T, flat.
  template <class T>
  [[nodiscard]] std::vector<T> values(std::string_view name) const {
    std::vector<T> v(static_cast<std::size_t>(at(name).count()));
    read_into<T>(name, std::span<T>(v));
    return v;
  }
  /// Tensor `name` converted to T, with its shape.
  template <class T>
  [[nodiscard]] AnyTensor<T> tensor(std::string_view name) const {
    const Entry& e = at(name);
    return AnyTensor<T>(e.shape, values<T>(name));
  }

private:
  using Header = nlohmann::json;

  [[nodiscard]] IOError error(std::string_view what) const {
    return IOError(fmt::format("safetensors '{}': {}", origin_, what));
  }

  /// Parses the header JSON, rejecting duplicate keys at any depth (nlohmann keeps the last one).
  [[nodiscard]] Header parse_json(const char* first, const char* last) const {
    try {
      return detail::parse_json_strict<Header>(
          std::string_view(first, static_cast<std::size_t>(last - first)), 3,
          [&](const std::string& k) { throw error(fmt::format("duplicate name '{}' in the header", k)); },
          [&] { throw error("header nests deeper than a safetensors header can"); });
    } catch (const nlohmann::json::exception& e) {
      throw IOError(fmt::format("safetensors '{}': header is not valid JSON ({})", origin_, e.what()));
    }
  }

  /// A JSON value for a message, cut to a readable length.
  static std::string brief(const Header& j) {
    std::string s = j.dump();
    if (s.size() > 80) s = s.substr(0, 77) + "...";
    return s;
  }

  static std::optional<std::uint64_t> as_count(const Header& j) {
    if (j.is_number_unsigned()) return j.get<std::uint64_t>();
    if (j.is_number_integer() && j.get<std::int64_t>() >= 0)
      return static_cast<std::uint64_t>(j.get<std::int64_t>());
    return std::nullopt;
  }

  void parse() {
    const std::size_t size = bytes_.size();
    if (size < 8) throw error(fmt::format("file has {} bytes, fewer than the 8-byte header length", size));
    const std::uint64_t n = detail::load_le(bytes_.data(), 8);
    if (n > max_header_size)
      throw error(fmt::format("header length {} is above the limit of {} bytes", n, max_header_size));
    if (n > size - 8)
      throw error(fmt::format("header length {} goes beyond the end of the file ({} bytes after the length)",
                              n, size - 8));
    data_begin_ = 8 + static_cast<std::size_t>(n);
    const auto* h = reinterpret_cast<const char*>(bytes_.data() + 8);
    // nlohmann's lexer stops at a NUL byte and would ignore what follows; JSON text never holds one
    if (const void* nul = std::memchr(h, 0, static_cast<std::size_t>(n)))
      throw error(fmt::format("header is not valid JSON (a NUL byte at header offset {})",
                              static_cast<const char*>(nul) - h));
    const Header header = parse_json(h, h + n);
    if (!header.is_object())
      throw error(fmt::format("header must be a JSON object, got {}", header.type_name()));

    const std::uint64_t data_size = size - data_begin_;
    for (const auto& [key, value] : header.items()) {
      if (key == "__metadata__") {
        if (!value.is_object())
          throw error(fmt::format("'__metadata__' must be an object of strings, got {}", value.type_name()));
        for (const auto& [mk, mv] : value.items()) {
          if (!mv.is_string())
            throw error(
                fmt::format("'__metadata__' value of '{}' must be a string, got {}", mk, mv.type_name()));
          metadata_.emplace(mk, mv.get<std::string>());
        }
        continue;
      }
      entries_.push_back(parse_entry(key, value, data_size));
    }
    std::sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    std::uint64_t pos = 0;
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const Entry& e = entries_[i];
      if (e.begin < pos)
        throw error(fmt::format("tensors '{}' [{}, {}) and '{}' [{}, {}) overlap", entries_[i - 1].name,
                                entries_[i - 1].begin, entries_[i - 1].end, e.name, e.begin, e.end));
      if (e.begin > pos)
        throw error(
            i == 0 ? fmt::format(
                         "data_offsets are not contiguous: the first tensor '{}' begins at byte {}, not 0",
                         e.name, e.begin)
                   : fmt::format(
                         "data_offsets are not contiguous: '{}' ends at byte {} but the next tensor '{}' "
                         "begins at byte {}",
                         entries_[i - 1].name, pos, e.name, e.begin));
      pos = e.end;
    }
    if (pos != data_size)
      throw error(fmt::format(
          "the tensors cover {} bytes of a data section of {} bytes (data_offsets must tile it exactly)", pos,
          data_size));
    for (std::size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].name, i);
  }

  Entry parse_entry(const std::string& name, const Header& v, std::uint64_t data_size) const {
    auto bad = [&](std::string_view what) { return error(fmt::format("tensor '{}': {}", name, what)); };
    if (!v.is_object())
      throw bad(
          fmt::format("entry must be an object with dtype, shape and data_offsets, got {}", v.type_name()));
    for (const auto& [k, _] : v.items())
      if (k != "dtype" && k != "shape" && k != "data_offsets")
        throw bad(fmt::format("unknown key '{}' (expected dtype, shape and data_offsets)", k));
    if (!v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      throw bad("entry must have dtype, shape and data_offsets");
    Entry e;
    e.name = name;
    const Header& dt = v.at("dtype");
    if (!dt.is_string()) throw bad(fmt::format("dtype must be a string, got {}", brief(dt)));
    const auto parsed = dtype_from_name(dt.get_ref<const std::string&>());
    if (!parsed) {
      std::vector<std::string_view> known;
      for (const auto& d : detail::dtype_table) known.push_back(d.name);
      throw bad(fmt::format("unknown dtype '{}' (expected one of {})", dt.get_ref<const std::string&>(),
                            fmt::join(known, ", ")));
    }
    e.dtype = *parsed;
    const Header& sh = v.at("shape");
    if (!sh.is_array())
      throw bad(fmt::format("shape must be an array of non-negative integers, got {}", brief(sh)));
    std::uint64_t bytes = dtype_size(e.dtype);
    // The product of the non-zero extents bounds every partial product in any order: it must fit
    // Index (element counts) and, times the dtype size, 64-bit byte counts, even when a zero extent
    // makes the total 0 (shape [2^32, 2^31, 0] overflows the signed element count of its prefix).
    std::uint64_t nonzero_bytes = dtype_size(e.dtype);
    Index nonzero = 1;
    for (const auto& x : sh) {
      const auto extent = as_count(x);
      if (!extent)
        throw bad(fmt::format("shape must be an array of non-negative integers, got {}", brief(sh)));
      if (*extent > static_cast<std::uint64_t>(std::numeric_limits<Index>::max()))
        throw bad(fmt::format("extent {} of shape {} is too large", *extent, brief(sh)));
      if (*extent != 0) {
        const auto next = detail::checked_mul(nonzero_bytes, *extent);
        if (!next || static_cast<Index>(*extent) > std::numeric_limits<Index>::max() / nonzero)
          throw bad(fmt::format("shape {} of dtype {} overflows 64-bit element or byte counts (checked "
                                "over its non-zero extents)",
                                brief(sh), dt.get_ref<const std::string&>()));
        nonzero_bytes = *next;
        nonzero *= static_cast<Index>(*extent);
      }
      bytes *= *extent;  // <= nonzero_bytes, which did not overflow
      e.shape.push_back(static_cast<Index>(*extent));
    }
    const Header& off = v.at("data_offsets");
    std::optional<std::uint64_t> b, en;
    if (off.is_array() && off.size() == 2) {
      b = as_count(off[0]);
      en = as_count(off[1]);
    }
    if (!b || !en || *b > *en)
      throw bad(fmt::format("data_offsets must be [begin, end] with 0 <= begin <= end, got {}", brief(off)));
    if (*en > data_size)
      throw bad(
          fmt::format("data_offsets [{}, {}] go beyond the data section of {} bytes", *b, *en, data_size));
    if (*en - *b != bytes)
      throw bad(fmt::format("shape {} of dtype {} needs {} bytes, data_offsets [{}, {}] hold {}", brief(sh),
                            dtype_name(e.dtype), bytes, *b, *en, *en - *b));
    e.begin = *b;
    e.end = *en;
    return e;
  }

  std::vector<std::uint8_t> bytes_;
  std::string origin_ = "<memory>";
  std::size_t data_begin_ = 8;
  std::vector<Entry> entries_;
  std::map<std::string, std::size_t, std::less<>> index_;
  std::map<std::string, std::string, std::less<>> metadata_;
};

/// Builds a safetensors file: tensors in the order added, optional string metadata.
class SafeTensorsWriter {
public:
  /// Adds `data` (row-major, shape `shape`) stored as `dtype` (F32 or F64).
  template <class T>
  void add(std::string name, const Shape& shape, std::span<const T> data, DType dtype = dtype_of<T>()) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "attn: scalar must be float or double");
    if (dtype != DType::F32 && dtype != DType::F64)
      throw IOError(
          fmt::format("safetensors writer: tensor '{}': converting writes support F32 and F64, got {} "
                      "(use add_raw for other dtypes)",
                      name, dtype_name(dtype)));
    check_shape_count(name, shape, data.size());
    const std::size_t w = dtype_size(dtype);
    std::vector<std::uint8_t> bytes(data.size() * w);
    for (std::size_t i = 0; i < data.size(); ++i) {
      if (dtype == DType::F32) {
        const float f = detail::narrow_value<float>(static_cast<double>(data[i]), [&] {
          return fmt::format("safetensors writer: tensor '{}' at flat index {}", name, i);
        });
        detail::store_le(bytes.data() + 4 * i, std::bit_cast<std::uint32_t>(f), 4);
      } else {
        detail::store_le(bytes.data() + 8 * i, std::bit_cast<std::uint64_t>(static_cast<double>(data[i])), 8);
      }
    }
    push(std::move(name), dtype, shape, std::move(bytes));
  }
  template <class T>
  void add(std::string name, const AnyTensor<T>& t, DType dtype = dtype_of<T>()) {
    add<T>(std::move(name), t.shape(), std::span<const T>(t.data(), static_cast<std::size_t>(t.size())),
           dtype);
  }
  /// Adds raw little-endian bytes of any dtype; their size must be shape × dtype size.
  void add_raw(std::string name, DType dtype, const Shape& shape, std::span<const std::uint8_t> bytes) {
    if (bytes.size() % dtype_size(dtype) != 0)
      throw IOError(
          fmt::format("safetensors writer: tensor '{}': {} bytes are not a whole number of {} elements", name,
                      bytes.size(), dtype_name(dtype)));
    check_shape_count(name, shape, bytes.size() / dtype_size(dtype));
    push(std::move(name), dtype, shape, std::vector<std::uint8_t>(bytes.begin(), bytes.end()));
  }
  /// Sets a `__metadata__` entry.
  void set_metadata(std::string key, std::string value) { metadata_[std::move(key)] = std::move(value); }
  [[nodiscard]] bool contains(std::string_view name) const {
    return std::any_of(tensors_.begin(), tensors_.end(), [&](const Pending& p) { return p.name == name; });
  }

  /// The whole file.
  [[nodiscard]] std::vector<std::uint8_t> bytes() const {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    std::uint64_t offset = 0;
    for (const auto& t : tensors_) {
      const std::uint64_t end = offset + t.bytes.size();
      header[t.name] = {
          {"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape}, {"data_offsets", {offset, end}}};
      offset = end;
    }
    std::string text;
    try {
      text = header.dump();
    } catch (const nlohmann::json::exception& e) {
      throw IOError(fmt::format("safetensors writer: cannot encode the header ({})", e.what()));
    }
    while ((8 + text.size()) % 8 != 0) text.push_back(' ');
    std::vector<std::uint8_t> out(8 + text.size() + offset);
    detail::store_le(out.data(), text.size(), 8);
    std::memcpy(out.data() + 8, text.data(), text.size());
    std::size_t pos = 8 + text.size();
    for (const auto& t : tensors_) {
      if (!t.bytes.empty()) std::memcpy(out.data() + pos, t.bytes.data(), t.bytes.size());
      pos += t.bytes.size();
    }
    return out;
  }
  /// Writes the file at `path` (replacing it); IOError on failure.
  void write(const std::filesystem::path& path) const {
    const auto b = bytes();
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw IOError(fmt::format("safetensors '{}': cannot open the file for writing", path.string()));
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    out.close();
    if (!out)
      throw IOError(fmt::format("safetensors '{}': writing {} bytes failed", path.string(), b.size()));
  }
  /// The file, parsed back (e.g. to hand converted weights to load_weights without touching disk).
  [[nodiscard]] SafeTensors to_safetensors(std::string origin = "<memory>") const {
    return SafeTensors::from_bytes(bytes(), std::move(origin));
  }

private:
  struct Pending {
    std::string name;
    DType dtype;
    Shape shape;
    std::vector<std::uint8_t> bytes;
  };

  static void check_shape_count(const std::string& name, const Shape& shape, std::size_t count) {
    std::uint64_t n = 1;
    Index nonzero = 1;  // every partial product checked, whatever a zero extent makes of the total
    for (Index e : shape) {
      if (e < 0)
        throw IOError(fmt::format("safetensors writer: tensor '{}': negative extent in shape {}", name,
                                  shape_str(shape)));
      if (e != 0 && e > std::numeric_limits<Index>::max() / nonzero)
        throw IOError(
            fmt::format("safetensors writer: tensor '{}': shape {} overflows", name, shape_str(shape)));
      if (e != 0) nonzero *= e;
      n *= static_cast<std::uint64_t>(e);
    }
    if (n != count)
      throw IOError(fmt::format("safetensors writer: tensor '{}': shape {} needs {} elements, got {}", name,
                                shape_str(shape), n, count));
  }
  void push(std::string name, DType dtype, const Shape& shape, std::vector<std::uint8_t> bytes) {
    if (name == "__metadata__")
      throw IOError("safetensors writer: '__metadata__' is reserved and cannot name a tensor");
    if (contains(name)) throw IOError(fmt::format("safetensors writer: duplicate tensor name '{}'", name));
    tensors_.push_back({std::move(name), dtype, shape, std::move(bytes)});
  }

  std::vector<Pending> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace attn
