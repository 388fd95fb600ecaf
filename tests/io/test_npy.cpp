// NumPy .npy reading and writing (attn/io/npy.hpp): the bytes numpy.save writes, spelled out from the
// format's documentation, as the oracle; every malformed header field and size an IOError naming the
// file and the field.
#include "support.hpp"

#include <attn/io/npy.hpp>

#include <bit>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>

using attn::DType;
using attn::NpyArray;
using Bytes = std::vector<std::uint8_t>;

namespace {

void put_le(Bytes& b, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

/// A version-1.0 file of the dict text `dict`, padded to 64 bytes with spaces and a newline as numpy
/// does (or as given when `raw`), then `data`.
Bytes npy_of(const std::string& dict, const Bytes& data, int version = 1, bool raw = false) {
  std::string h = dict;
  const std::size_t pre = version == 1 ? 10 : 12;
  if (!raw) {
    while ((pre + h.size() + 1) % 64 != 0) h.push_back(' ');
    h.push_back('\n');
  }
  Bytes b{0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<std::uint8_t>(version), 0};
  put_le(b, h.size(), version == 1 ? 2 : 4);
  b.insert(b.end(), h.begin(), h.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

Bytes f32_bytes(std::initializer_list<float> v) {
  Bytes b;
  for (float f : v) put_le(b, std::bit_cast<std::uint32_t>(f), 4);
  return b;
}

void require_io_error(const Bytes& bytes, const std::string& fragment) {
  INFO("expecting an IOError containing: " << fragment);
  try {
    (void)NpyArray::from_bytes(bytes, "x.npy");
    FAIL("no exception");
  } catch (const attn::IOError& e) {
    const std::string what = e.what();
    INFO("message: " << what);
    CHECK(what.find("npy 'x.npy'") != std::string::npos);
    CHECK(what.find(fragment) != std::string::npos);
  }
}

const std::string f32_23 = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";

}  // namespace

TEST_CASE("npy: writes what numpy.save writes, byte for byte", "[npy]") {
  // numpy.save(np.arange(6, dtype=np.float32).reshape(2, 3)): the 10-byte preamble, the dict padded
  // with spaces to 127 bytes and a newline (10 + 118 = 128, a multiple of 64), then the data.
  const Bytes expected = npy_of(f32_23, f32_bytes({0, 1, 2, 3, 4, 5}));
  REQUIRE(expected.size() == 128 + 24);
  CHECK(expected[8] == 118);
  const std::vector<float> v{0, 1, 2, 3, 4, 5};
  CHECK(attn::npy_bytes<float>({2, 3}, v) == expected);
  // a scalar is shape (), a vector (n,) with numpy's trailing comma
  Bytes scalar;
  put_le(scalar, std::bit_cast<std::uint64_t>(1.5), 8);
  const std::vector<double> one{1.5};
  CHECK(attn::npy_bytes<double>({}, one) ==
        npy_of("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", scalar));
  const std::vector<double> three{1, 2, 3};
  const Bytes vec = attn::npy_bytes<double>({3}, three);
  CHECK(std::string(vec.begin() + 10, vec.begin() + 67).find("'shape': (3,), }") != std::string::npos);
  // double data written as float32 on request
  const std::vector<double> d{0, 1, 2, 3, 4, 5};
  CHECK(attn::npy_bytes<double>({2, 3}, d, DType::F32) == expected);
}

TEST_CASE("npy: reads every version, both float dtypes, and round-trips through files", "[npy]") {
  const NpyArray a = NpyArray::from_bytes(npy_of(f32_23, f32_bytes({0, 1, 2, 3, 4, 5})), "x.npy");
  CHECK(a.dtype() == DType::F32);
  CHECK(a.shape() == attn::Shape{2, 3});
  CHECK(a.version() == 1);
  CHECK(a.values<double>() == std::vector<double>{0, 1, 2, 3, 4, 5});
  // version 2.0 and 3.0 have a 4-byte header length
  for (int version : {2, 3}) {
    const NpyArray b = NpyArray::from_bytes(npy_of(f32_23, f32_bytes({6, 5, 4, 3, 2, 1}), version), "x.npy");
    CHECK(b.version() == version);
    CHECK(b.values<float>() == std::vector<float>{6, 5, 4, 3, 2, 1});
  }
  // key order and quotes are free; zero extents hold no data
  const NpyArray z = NpyArray::from_bytes(npy_of("{\"shape\": (0, 4), 'descr': '<f8', 'fortran_order': False}", {}), "x.npy");
  CHECK(z.size() == 0);
  CHECK(z.shape() == attn::Shape{0, 4});
  // a file round trip through write_npy, double values kept exactly as float64
  const auto path = attn_test::temp_path("roundtrip.npy");
  attn::AnyTensor<double> t(attn::Shape{2, 1, 3}, {0.1, -2.5, 1e300, 4, 5, -0.0});
  attn::write_npy(path, t);
  const attn::AnyTensor<double> back = attn::read_npy<double>(path);
  CHECK(back == t);
  // the same file read as float: 1e300 does not fit
  CHECK_THROWS_WITH(attn::read_npy<float>(path), Catch::Contains("value 1e+300 at flat index 2 does not fit in float32"));
  std::filesystem::remove(path);
  CHECK_THROWS_WITH(NpyArray::open(path), Catch::Contains("cannot open the file for reading"));
}

TEST_CASE("npy: masks from bool, uint8 and 0/1 floats, any other value refused", "[npy]") {
  const NpyArray m = NpyArray::from_bytes(npy_of("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", {1, 0, 1}), "x.npy");
  bool out[3] = {};
  m.read_bools(out);
  CHECK((out[0] && !out[1] && out[2]));
  CHECK_THROWS_WITH(m.values<float>(), Catch::Contains("field 'descr' is '|b1'; numbers are read from float32"));
  const NpyArray f = NpyArray::from_bytes(
      npy_of("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f32_bytes({0, 1, 0.5f})), "x.npy");
  CHECK_THROWS_WITH(f.read_bools(out), Catch::Contains("only 0 (blocked) and 1 (attend), got 0.5 at flat index 2"));
  const NpyArray u = NpyArray::from_bytes(npy_of("{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }", {0, 1, 2}), "x.npy");
  CHECK_THROWS_WITH(u.read_bools(out), Catch::Contains("got 2 at flat index 2"));
  bool two[2] = {};
  CHECK_THROWS_AS(m.read_bools(two), attn::IOError);
}

TEST_CASE("npy: every malformed preamble, header field and size is an IOError naming the field", "[npy]") {
  const Bytes data = f32_bytes({0, 1, 2, 3, 4, 5});
  require_io_error({}, "file has 0 bytes");
  Bytes magic = npy_of(f32_23, data);
  magic[0] = 'x';
  require_io_error(magic, "not a .npy file");
  Bytes version = npy_of(f32_23, data);
  version[6] = 4;
  require_io_error(version, "format version 4.0 is not supported");
  Bytes beyond = npy_of(f32_23, data);
  beyond[8] = 0xff;
  beyond[9] = 0xff;
  require_io_error(beyond, "header length 65535 goes beyond the end of the file");
  Bytes huge_v2 = npy_of(f32_23, data, 2);
  huge_v2[11] = 0x7f;
  require_io_error(huge_v2, "is above the limit of 65536 bytes");
  auto bad = [&](const std::string& dict, const std::string& fragment) { require_io_error(npy_of(dict, data), fragment); };
  bad("['descr', '<f4']", "header: expected a Python dict '{' at header offset 0");
  bad("{'descr': '<f4', 'fortran_order': False}", "header: key 'shape' is missing");
  bad("{'shape': (2, 3), 'fortran_order': False}", "header: key 'descr' is missing");
  bad("{'descr': '<f4', 'shape': (2, 3)}", "header: key 'fortran_order' is missing");
  bad("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}", "key 'descr' appears twice");
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'extra': 1}", "unknown key 'extra'");
  bad("{'descr': 4, 'fortran_order': False, 'shape': (2, 3)}", "field 'descr': a quoted dtype string");
  bad("{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3)}", "field 'fortran_order': True or False");
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3]}", "field 'shape': a tuple");
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3)}", "field 'shape': expected a non-negative integer");
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (2.0, 3)}", "field 'shape': expected ',' or ')'");
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (6)}", "(n) is not a tuple");
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 3)}", "does not fit in 64 bits");
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3) 'x'}", "expected ',' or '}' after the value of 'shape'");
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} x", "unexpected text after the dict");
  bad("{'descr': '<f4\\n', 'fortran_order': False, 'shape': (2, 3)}", "unsupported character in a string");
  bad("{'descr': '<i8', 'fortran_order': False, 'shape': (2, 3)}", "field 'descr' is '<i8': expected float32 '<f4'");
  bad("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3)}", "field 'descr' is '>f4'");
  bad("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 3)}", "field 'descr': a quoted dtype string");
  bad("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3)}", "field 'fortran_order' is True");
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 0)}",
      "field 'shape' [4294967296, 4294967296, 0] of '<f4' overflows");
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4)}", "truncated: field 'shape' [2, 4] of '<f4' needs 32 data bytes, the file has 24");
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000)}", "needs 4000000000000 data bytes");
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (5,)}", "4 bytes after the data of field 'shape' [5]");
  // no closing newline, and a NUL or a byte beyond ASCII in the header
  require_io_error(npy_of(f32_23 + "     ", data, 1, true), "does not end with a newline");
  std::string nul = f32_23;
  nul[3] = '\0';
  require_io_error(npy_of(nul, data), "not printable ASCII at header offset 3");
  std::string high = f32_23;
  high[3] = static_cast<char>(0xe9);
  require_io_error(npy_of(high, data), "not printable ASCII at header offset 3");
  // truncated anywhere, never read out of bounds
  const Bytes good = npy_of(f32_23, data);
  for (std::size_t n = 0; n < good.size(); ++n) {
    INFO("truncated to " << n << " bytes");
    CHECK_THROWS_AS(NpyArray::from_bytes(Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n)), "x.npy"),
                    attn::IOError);
  }
}

TEST_CASE("npy writer: refuses what it cannot write", "[npy]") {
  const std::vector<float> v{1, 2, 3};
  CHECK_THROWS_WITH(attn::npy_bytes<float>({2, 2}, v), Catch::Contains("shape [2, 2] needs 4 values, got 3"));
  CHECK_THROWS_WITH(attn::npy_bytes<float>({-1, 3}, v), Catch::Contains("negative extent"));
  CHECK_THROWS_WITH(attn::npy_bytes<float>({3}, v, DType::BOOL), Catch::Contains("dtype BOOL is not written"));
  const std::vector<double> big{1e300};
  CHECK_THROWS_WITH(attn::npy_bytes<double>({1}, big, DType::F32), Catch::Contains("does not fit in float32"));
  CHECK_THROWS_WITH(attn::write_npy("/nonexistent/dir/y.npy", attn::AnyTensor<float>(attn::Shape{1})),
                    Catch::Contains("cannot open the file for writing"));
}
