/// \file
/// Reading and writing NumPy `.npy` files (format versions 1.0, 2.0 and 3.0), the array format of
/// the `attn` command-line tool: inputs, masks, outputs and attention weights.
///
///   const attn::NpyArray x = attn::NpyArray::open("x.npy");   // parsed and checked
///   attn::AnyTensor<float> t = x.tensor<float>();              // F32 or F64 converted to float
///   attn::write_npy("y.npy", t);                                // '<f4' (float) or '<f8' (double)
///
/// Layout of a file (NumPy's `numpy.lib.format`): the magic `\x93NUMPY`, a major and a minor version
/// byte, the header length (2 bytes little-endian in 1.0, 4 bytes in 2.0 and 3.0), then the header: a
/// Python dict literal `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` padded with
/// spaces and ending in a newline, then the data, row-major (C order), with no trailing bytes.
///
/// Element types (`descr`): float32 `'<f4'` and float64 `'<f8'` convert to float or double
/// (`values`, `tensor`); bool `'|b1'` and uint8 `'|u1'` read as booleans for masks (`read_bools`,
/// which also takes floats that are exactly 0 or 1). Every other descr (big-endian, integers wider
/// than a byte, complex, structured, objects) is refused.
///
/// Every file is untrusted. A bad magic or version, a header length beyond the file or above
/// `max_header_size`, a header that is not exactly a dict of the three keys `descr`, `fortran_order`
/// and `shape` (a missing, repeated or unknown key, a value of the wrong kind, a negative or
/// non-integer extent, text after the dict, no closing newline), `fortran_order: True` (attn is
/// row-major; save with `numpy.ascontiguousarray`), a shape whose element or byte count overflows 64
/// bits, and data shorter or longer than the shape needs are each an attn::IOError naming the file
/// and the field. A float64 value beyond float's range read as float is an IOError naming the flat
/// index; a mask value other than 0 and 1 too. Nothing is read out of bounds.
///
/// Writing (`npy_bytes`, `write_npy`): format 1.0, `'<f4'` or `'<f8'`, C order, the header padded so
/// that the data starts at a multiple of 64 bytes, byte for byte what `numpy.save` writes.
///
/// Deliberate differences from NumPy's reader: it takes pickled object arrays, Fortran order and
/// every dtype, and tolerates a missing final newline; this reader does not.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/tensor.hpp"
#include "attn/io/safetensors.hpp"

namespace attn {

namespace detail {

/// A tiny reader of the Python literal subset that .npy headers use: a dict of string keys whose
/// values are strings, True/False or tuples of non-negative integers.
class NpyHeaderParser {
public:
  NpyHeaderParser(std::string_view text, const std::string& origin) : s_(text), origin_(origin) {}

  struct Result {
    std::string descr;
    bool fortran_order = false;
    Shape shape;
  };

  Result parse() {
    Result r;
    bool have_descr = false, have_order = false, have_shape = false;
    skip_space();
    expect('{', "a Python dict '{'");
    skip_space();
    while (!at('}')) {
      const std::string key = string_literal("a dict key (a quoted string)");
      skip_space();
      expect(':', fmt::format("':' after the key '{}'", key));
      skip_space();
      if (key == "descr") {
        if (have_descr) fail("key 'descr' appears twice");
        have_descr = true;
        r.descr = string_literal("field 'descr': a quoted dtype string such as '<f4'");
      } else if (key == "fortran_order") {
        if (have_order) fail("key 'fortran_order' appears twice");
        have_order = true;
        r.fortran_order = boolean("field 'fortran_order': True or False");
      } else if (key == "shape") {
        if (have_shape) fail("key 'shape' appears twice");
        have_shape = true;
        r.shape = tuple();
      } else {
        fail(fmt::format("unknown key '{}' (a .npy header has exactly 'descr', 'fortran_order' and 'shape')",
                         key));
      }
      skip_space();
      if (at(',')) {
        ++pos_;
        skip_space();
      } else if (!at('}')) {
        fail(fmt::format("expected ',' or '}}' after the value of '{}'", key));
      }
    }
    ++pos_;  // '}'
    while (pos_ < s_.size() && s_[pos_] == ' ') ++pos_;
    if (pos_ >= s_.size() || s_[pos_] != '\n')
      fail(pos_ >= s_.size() ? "the header does not end with a newline"
                             : fmt::format("unexpected text after the dict at header offset {}", pos_));
    ++pos_;
    if (pos_ != s_.size())
      fail(fmt::format("unexpected text after the closing newline at header offset {}", pos_));
    if (!have_descr) fail("key 'descr' is missing");
    if (!have_order) fail("key 'fortran_order' is missing");
    if (!have_shape) fail("key 'shape' is missing");
    return r;
  }

private:
  [[noreturn]] void fail(std::string_view what) const {
    throw IOError(fmt::format("npy '{}': header: {}", origin_, what));
  }
  [[nodiscard]] bool at(char c) const { return pos_ < s_.size() && s_[pos_] == c; }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t')) ++pos_;
  }
  void expect(char c, std::string_view what) {
    if (!at(c)) fail(fmt::format("expected {} at header offset {}", what, pos_));
    ++pos_;
  }
  std::string string_literal(std::string_view what) {
    if (!at('\'') && !at('"')) fail(fmt::format("expected {} at header offset {}", what, pos_));
    const char quote = s_[pos_++];
    std::string out;
    while (pos_ < s_.size() && s_[pos_] != quote) {
      const char c = s_[pos_++];
      if (c == '\\' || c == '\n' || static_cast<unsigned char>(c) < 0x20)
        fail(fmt::format("unsupported character in a string at header offset {}", pos_ - 1));
      out.push_back(c);
    }
    if (pos_ >= s_.size()) fail("a string is not closed");
    ++pos_;
    return out;
  }
  bool boolean(std::string_view what) {
    if (s_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (s_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    fail(fmt::format("expected {} at header offset {}", what, pos_));
  }
  Shape tuple() {
    expect('(', "field 'shape': a tuple of non-negative integers such as (2, 3)");
    Shape shape;
    skip_space();
    bool comma_after_last = false;
    while (!at(')')) {
      if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9')
        fail(fmt::format("field 'shape': expected a non-negative integer at header offset {}", pos_));
      std::uint64_t v = 0;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
        const auto digit = static_cast<std::uint64_t>(s_[pos_] - '0');
        if (v > (static_cast<std::uint64_t>(std::numeric_limits<Index>::max()) - digit) / 10)
          fail("field 'shape': an extent does not fit in 64 bits");
        v = v * 10 + digit;
        ++pos_;
      }
      shape.push_back(static_cast<Index>(v));
      skip_space();
      comma_after_last = false;
      if (at(',')) {
        ++pos_;
        comma_after_last = true;
        skip_space();
      } else if (!at(')')) {
        fail(fmt::format("field 'shape': expected ',' or ')' at header offset {}", pos_));
      }
    }
    if (shape.size() == 1 && !comma_after_last)
      fail("field 'shape': a one-element tuple is written (n,); (n) is not a tuple");
    ++pos_;
    return shape;
  }

  std::string_view s_;
  const std::string& origin_;
  std::size_t pos_ = 0;
};

inline constexpr std::string_view npy_magic{"\x93NUMPY", 6};

inline std::string npy_descr(DType d) {
  switch (d) {
    case DType::F32: return "<f4";
    case DType::F64: return "<f8";
    case DType::BOOL: return "|b1";
    case DType::U8: return "|u1";
    default: return "?";
  }
}

}  // namespace detail

/// A `.npy` file held in memory, its header parsed and checked (see the file comment).
class NpyArray {
public:
  /// The largest header accepted (bytes).
  static constexpr std::size_t max_header_size = 65536;

  NpyArray() = default;

  /// Reads and checks the file at `path`; IOError when it cannot be read or is malformed.
  static NpyArray open(const std::filesystem::path& path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
      throw IOError(fmt::format("npy '{}': is a directory, not a file", path.string()));
    std::ifstream in(path, std::ios::binary);
    if (!in) throw IOError(fmt::format("npy '{}': cannot open the file for reading", path.string()));
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    if (size < 0) throw IOError(fmt::format("npy '{}': cannot determine the file size", path.string()));
    in.seekg(0, std::ios::beg);
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
    if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size)))
      throw IOError(fmt::format("npy '{}': reading {} bytes failed", path.string(), size));
    return from_bytes(std::move(bytes), path.string());
  }

  /// Checks the bytes of a whole file; `origin` names it in error messages.
  static NpyArray from_bytes(std::vector<std::uint8_t> bytes, std::string origin = "<memory>") {
    NpyArray a;
    a.bytes_ = std::move(bytes);
    a.origin_ = std::move(origin);
    a.parse();
    return a;
  }

  /// The file name (or "<memory>") used in messages.
  [[nodiscard]] const std::string& origin() const noexcept { return origin_; }
  /// F32, F64, BOOL or U8.
  [[nodiscard]] DType dtype() const noexcept { return dtype_; }
  /// The header's descr: "<f4", "<f8", "|b1" or "|u1".
  [[nodiscard]] std::string descr() const { return detail::npy_descr(dtype_); }
  [[nodiscard]] const Shape& shape() const noexcept { return shape_; }
  [[nodiscard]] Index size() const noexcept { return count_; }
  /// The format version of the file: 1, 2 or 3.
  [[nodiscard]] int version() const noexcept { return version_; }
  /// The raw little-endian data bytes.
  [[nodiscard]] std::span<const std::uint8_t> data_bytes() const noexcept {
    return {bytes_.data() + data_begin_, bytes_.size() - data_begin_};
  }

  /// The values converted to T (float or double), flat; a float32 or float64 array only.
  template <class T>
  [[nodiscard]] std::vector<T> values() const {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "attn: scalar must be float or double");
    if (dtype_ != DType::F32 && dtype_ != DType::F64)
      throw IOError(fmt::format("npy '{}': field 'descr' is '{}'; numbers are read from float32 '<f4' or "
                                "float64 '<f8' arrays",
                                origin_, descr()));
    std::vector<T> out(static_cast<std::size_t>(count_));
    const std::uint8_t* p = bytes_.data() + data_begin_;
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (dtype_ == DType::F32) {
        out[i] = static_cast<T>(std::bit_cast<float>(static_cast<std::uint32_t>(detail::load_le(p + 4 * i, 4))));
      } else {
        const double v = std::bit_cast<double>(detail::load_le(p + 8 * i, 8));
        if constexpr (std::is_same_v<T, float>)
          if (std::isfinite(v) && std::abs(v) > static_cast<double>(std::numeric_limits<float>::max()))
            throw IOError(fmt::format("npy '{}': value {} at flat index {} does not fit in float32", origin_, v, i));
        out[i] = static_cast<T>(v);
      }
    }
    return out;
  }
  /// The array as a tensor of T with its shape.
  template <class T>
  [[nodiscard]] AnyTensor<T> tensor() const {
    return AnyTensor<T>(shape_, values<T>());
  }
  /// The values as booleans into `out` (exactly size() elements): bool and uint8 arrays, and float
  /// arrays, each value 0 or 1 (anything else is an IOError naming the flat index).
  void read_bools(std::span<bool> out) const {
    if (out.size() != static_cast<std::size_t>(count_))
      throw IOError(fmt::format("npy '{}': {} elements, destination holds {}", origin_, count_, out.size()));
    const std::uint8_t* p = bytes_.data() + data_begin_;
    for (std::size_t i = 0; i < out.size(); ++i) {
      double v = 0;
      switch (dtype_) {
        case DType::BOOL:
        case DType::U8: v = p[i]; break;
        case DType::F32: v = std::bit_cast<float>(static_cast<std::uint32_t>(detail::load_le(p + 4 * i, 4))); break;
        default: v = std::bit_cast<double>(detail::load_le(p + 8 * i, 8)); break;
      }
      if (v != 0.0 && v != 1.0)
        throw IOError(fmt::format("npy '{}': a mask holds only 0 (blocked) and 1 (attend), got {} at flat index {}",
                                  origin_, v, i));
      out[i] = v != 0.0;
    }
  }

private:
  [[noreturn]] void fail(std::string_view what) const { throw IOError(fmt::format("npy '{}': {}", origin_, what)); }

  void parse() {
    const std::size_t size = bytes_.size();
    const std::string_view magic = detail::npy_magic;
    if (size < 10 || std::memcmp(bytes_.data(), magic.data(), magic.size()) != 0)
      fail(size < 10 ? fmt::format("file has {} bytes, too few for the .npy preamble (magic, version, header "
                                   "length)",
                                   size)
                     : std::string("not a .npy file (the magic bytes \\x93NUMPY are missing)"));
    const int major = bytes_[6];
    const int minor = bytes_[7];
    if ((major != 1 && major != 2 && major != 3) || minor != 0)
      fail(fmt::format("format version {}.{} is not supported (1.0, 2.0 and 3.0 are)", major, minor));
    version_ = major;
    const std::size_t len_bytes = major == 1 ? 2 : 4;
    if (size < 8 + len_bytes) fail(fmt::format("file has {} bytes, too few for the header length", size));
    const std::uint64_t n = detail::load_le(bytes_.data() + 8, len_bytes);
    const std::size_t header_begin = 8 + len_bytes;
    if (n > max_header_size)
      fail(fmt::format("header length {} is above the limit of {} bytes", n, max_header_size));
    if (n > size - header_begin)
      fail(fmt::format("header length {} goes beyond the end of the file ({} bytes after the length)", n,
                       size - header_begin));
    const std::string_view text(reinterpret_cast<const char*>(bytes_.data() + header_begin),
                                static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < text.size(); ++i)
      if (static_cast<unsigned char>(text[i]) >= 0x80 || (text[i] < 0x20 && text[i] != '\n' && text[i] != '\t'))
        fail(fmt::format("header: a byte that is not printable ASCII at header offset {}", i));
    const auto h = detail::NpyHeaderParser(text, origin_).parse();

    if (h.descr == "<f4") dtype_ = DType::F32;
    else if (h.descr == "<f8") dtype_ = DType::F64;
    else if (h.descr == "|b1") dtype_ = DType::BOOL;
    else if (h.descr == "|u1") dtype_ = DType::U8;
    else
      fail(fmt::format("field 'descr' is '{}': expected float32 '<f4' or float64 '<f8' (little-endian), or for "
                       "masks bool '|b1' or uint8 '|u1'",
                       h.descr));
    if (h.fortran_order)
      fail("field 'fortran_order' is True: attn reads C-order (row-major) arrays only (save with "
           "numpy.ascontiguousarray)");

    // Every partial product of the non-zero extents must fit: a zero extent makes the total 0 but the
    // shape is still nonsense when the rest overflows.
    const std::uint64_t item = dtype_size(dtype_);
    std::uint64_t nonzero_bytes = item;
    Index nonzero = 1;
    for (Index e : h.shape) {
      if (e == 0) continue;
      const auto next = detail::checked_mul(nonzero_bytes, static_cast<std::uint64_t>(e));
      if (!next || e > std::numeric_limits<Index>::max() / nonzero)
        fail(fmt::format("field 'shape' {} of '{}' overflows 64-bit element or byte counts", shape_str(h.shape),
                         h.descr));
      nonzero_bytes = *next;
      nonzero *= e;
    }
    count_ = 1;
    for (Index e : h.shape) count_ *= e;  // <= nonzero, which did not overflow
    const std::uint64_t need = static_cast<std::uint64_t>(count_) * item;
    data_begin_ = header_begin + static_cast<std::size_t>(n);
    const std::uint64_t have = size - data_begin_;
    if (have < need)
      fail(fmt::format("truncated: field 'shape' {} of '{}' needs {} data bytes, the file has {}", shape_str(h.shape),
                       h.descr, need, have));
    if (have > need)
      fail(fmt::format("{} bytes after the data of field 'shape' {} of '{}' ({} bytes)", have - need,
                       shape_str(h.shape), h.descr, need));
    shape_ = h.shape;
  }

  std::vector<std::uint8_t> bytes_;
  std::string origin_ = "<memory>";
  DType dtype_ = DType::F32;
  Shape shape_;
  Index count_ = 0;
  int version_ = 1;
  std::size_t data_begin_ = 0;
};

/// The bytes of a .npy file (format 1.0, C order) holding `shape` and `data` as `dtype` (F32 or F64,
/// converted from T; a finite double beyond float's range is an IOError).
template <class T>
std::vector<std::uint8_t> npy_bytes(const Shape& shape, std::span<const T> data, DType dtype = dtype_of<T>()) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "attn: scalar must be float or double");
  if (dtype != DType::F32 && dtype != DType::F64)
    throw IOError(fmt::format("npy writer: dtype {} is not written (F32 and F64 are)", dtype_name(dtype)));
  std::uint64_t count = 1;
  for (Index e : shape) {
    if (e < 0) throw IOError(fmt::format("npy writer: negative extent in shape {}", shape_str(shape)));
    const auto next = detail::checked_mul(count, static_cast<std::uint64_t>(e));
    if (!next) throw IOError(fmt::format("npy writer: shape {} overflows", shape_str(shape)));
    count = *next;
  }
  if (count != data.size())
    throw IOError(fmt::format("npy writer: shape {} needs {} values, got {}", shape_str(shape), count, data.size()));
  std::string dims;
  for (std::size_t i = 0; i < shape.size(); ++i) dims += fmt::format("{}{}", i ? ", " : "", shape[i]);
  if (shape.size() == 1) dims += ",";
  std::string header =
      fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}), }}", detail::npy_descr(dtype), dims);
  const std::size_t padded = (10 + header.size() + 1 + 63) / 64 * 64;  // preamble + header + '\n'
  header.append(padded - 10 - header.size() - 1, ' ');
  header.push_back('\n');
  if (header.size() > 65535) throw IOError(fmt::format("npy writer: header of shape {} is too long", shape_str(shape)));
  const std::size_t w = dtype_size(dtype);
  std::vector<std::uint8_t> out(10 + header.size() + data.size() * w);
  std::memcpy(out.data(), detail::npy_magic.data(), detail::npy_magic.size());
  out[6] = 1;
  out[7] = 0;
  detail::store_le(out.data() + 8, header.size(), 2);
  std::memcpy(out.data() + 10, header.data(), header.size());
  std::uint8_t* p = out.data() + 10 + header.size();
  for (std::size_t i = 0; i < data.size(); ++i) {
    if (dtype == DType::F32) {
      const double v = static_cast<double>(data[i]);
      if (std::isfinite(v) && std::abs(v) > static_cast<double>(std::numeric_limits<float>::max()))
        throw IOError(fmt::format("npy writer: value {} at flat index {} does not fit in float32", v, i));
      detail::store_le(p + 4 * i, std::bit_cast<std::uint32_t>(static_cast<float>(data[i])), 4);
    } else {
      detail::store_le(p + 8 * i, std::bit_cast<std::uint64_t>(static_cast<double>(data[i])), 8);
    }
  }
  return out;
}
template <class T>
std::vector<std::uint8_t> npy_bytes(const AnyTensor<T>& t, DType dtype = dtype_of<T>()) {
  return npy_bytes<T>(t.shape(), std::span<const T>(t.data(), static_cast<std::size_t>(t.size())), dtype);
}

/// Writes `t` to the .npy file at `path` (replacing it) as `dtype` (F32 or F64); IOError on failure.
template <class T>
void write_npy(const std::filesystem::path& path, const AnyTensor<T>& t, DType dtype = dtype_of<T>()) {
  const auto b = npy_bytes(t, dtype);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw IOError(fmt::format("npy '{}': cannot open the file for writing", path.string()));
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  out.close();
  if (!out) throw IOError(fmt::format("npy '{}': writing {} bytes failed", path.string(), b.size()));
}

/// Reads the float32 or float64 .npy file at `path` as a tensor of T.
template <class T>
AnyTensor<T> read_npy(const std::filesystem::path& path) {
  return NpyArray::open(path).tensor<T>();
}

}  // namespace attn
