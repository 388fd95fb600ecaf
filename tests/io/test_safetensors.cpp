// safetensors reading and writing (hand-built byte files as oracles, every corruption an IOError),
// and weights load/save for layers and whole models.
#include "support.hpp"

#include <atomic>
#include <bit>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <fstream>
#include <functional>
#include <limits>
#include <random>

using namespace attn_test;
using attn::DType;
using attn::SafeTensors;
using attn::SafeTensorsWriter;
using Bytes = std::vector<std::uint8_t>;

namespace {

void put_le(Bytes& b, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put_f32(Bytes& b, float f) { put_le(b, std::bit_cast<std::uint32_t>(f), 4); }
void put_f64(Bytes& b, double d) { put_le(b, std::bit_cast<std::uint64_t>(d), 8); }

/// A file: 8-byte little-endian length (of `header`, unless `length` is given), header, data.
Bytes file_of(const std::string& header, const Bytes& data = {}, std::optional<std::uint64_t> length = {}) {
  Bytes b;
  put_le(b, length.value_or(header.size()), 8);
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

/// Parsing `bytes` throws attn::IOError whose message contains `fragment`.
void require_io_error(const Bytes& bytes, const std::string& fragment) {
  INFO("expecting an IOError containing: " << fragment);
  try {
    (void)SafeTensors::from_bytes(bytes, "bad.safetensors");
  } catch (const attn::IOError& e) {
    const std::string what = e.what();
    INFO("message: " << what);
    CHECK(what.find(fragment) != std::string::npos);
    CHECK(what.find("bad.safetensors") != std::string::npos);
    return;
  }
  FAIL("no IOError");
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "<no exception>";
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// reading

TEST_CASE("safetensors: a hand-built file reads back exactly", "[safetensors]") {
  // two tensors, data out of header order, metadata, padding spaces after the JSON
  const std::string header = R"({"b":{"dtype":"F64","shape":[2],"data_offsets":[12,28]},)"
                             R"("__metadata__":{"format":"pt","note":"x"},)"
                             R"("a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}    )";
  Bytes data;
  put_f32(data, 1.5f);
  put_f32(data, -2.25f);
  put_f32(data, 0.1f);
  put_f64(data, 0.1);
  put_f64(data, -1e300);
  const auto st = SafeTensors::from_bytes(file_of(header, data));
  REQUIRE(st.size() == 2);
  REQUIRE(st.names() == std::vector<std::string>{"a", "b"});  // data order
  REQUIRE(st.metadata().size() == 2);
  REQUIRE(st.meta("format") == "pt");
  REQUIRE_FALSE(st.meta("missing").has_value());
  REQUIRE(st.at("a").dtype == DType::F32);
  REQUIRE(st.at("a").shape == Shape{3});
  REQUIRE(st.at("b").begin == 12);
  REQUIRE(st.values<float>("a") == std::vector<float>{1.5f, -2.25f, 0.1f});
  REQUIRE(st.values<double>("a") == std::vector<double>{1.5, -2.25, static_cast<double>(0.1f)});
  REQUIRE(st.values<double>("b") == std::vector<double>{0.1, -1e300});
  REQUIRE(st.raw("a").size() == 12);
  const auto t = st.tensor<double>("b");
  REQUIRE(t.shape() == Shape{2});
  // F64 -> float rounds, and a finite value beyond float's range is an error, not a silent infinity
  REQUIRE_THROWS_AS(st.values<float>("b"), attn::WeightsError);
  REQUIRE_THAT(message_of([&] { (void)st.values<float>("b"); }), Catch::Contains("does not fit in float"));
  REQUIRE_THROWS_AS(st.at("c"), attn::WeightsError);
  REQUIRE_FALSE(st.contains("c"));
}

TEST_CASE("safetensors: empty file, scalars and zero-size tensors", "[safetensors]") {
  const auto empty = SafeTensors::from_bytes(file_of("{}"));
  REQUIRE(empty.size() == 0);
  Bytes data;
  put_f32(data, 7.0f);
  const auto st = SafeTensors::from_bytes(file_of(
      R"({"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"z":{"dtype":"F32","shape":[0,5],"data_offsets":[4,4]},)"
      R"("z2":{"dtype":"F64","shape":[3,0],"data_offsets":[4,4]}})",
      data));
  REQUIRE(st.at("s").shape.empty());
  REQUIRE(st.values<double>("s") == std::vector<double>{7.0});
  REQUIRE(st.values<float>("z").empty());
  REQUIRE(st.tensor<float>("z2").shape() == Shape{3, 0});
}

TEST_CASE("safetensors: F16 and BF16 convert exactly from hand-computed bit patterns", "[safetensors]") {
  const double inf = std::numeric_limits<double>::infinity();
  // binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits
  const std::vector<std::pair<std::uint16_t, double>> f16{
      {0x3C00, 1.0},
      {0xC000, -2.0},
      {0x3555, 0.333251953125},          // 1.0101010101b x 2^-2
      {0x3BFF, 0.99951171875},           // 1 - 2^-11
      {0x7BFF, 65504.0},                 // largest finite
      {0x0400, 6.103515625e-05},         // 2^-14, smallest normal
      {0x0001, 5.9604644775390625e-08},  // 2^-24, smallest subnormal
      {0x03FF, 6.097555160522461e-05},   // 1023 x 2^-24, largest subnormal
      {0x8001, -5.9604644775390625e-08},
      {0x7C00, inf},
      {0xFC00, -inf},
      {0x0000, 0.0},
  };
  // bfloat16: the upper 16 bits of a binary32
  const std::vector<std::pair<std::uint16_t, double>> bf16{
      {0x3F80, 1.0},
      {0xC040, -3.0},
      {0x3EAB, 0.333984375},             // 1.0101011b x 2^-2
      {0x7F7F, 3.3895313892515355e+38},  // largest finite: (2 - 2^-7) x 2^127
      {0x0080, 1.1754943508222875e-38},  // 2^-126, smallest normal
      {0x0001, 9.183549615799121e-41},   // 2^-133, smallest subnormal
      {0x8001, -9.183549615799121e-41},
      {0x7F80, inf},
      {0xFF80, -inf},
  };
  SafeTensorsWriter w;
  Bytes a, b;
  for (auto [bits, _] : f16) put_le(a, bits, 2);
  put_le(a, 0x7E00, 2);  // NaN
  put_le(a, 0x8000, 2);  // -0
  for (auto [bits, _] : bf16) put_le(b, bits, 2);
  put_le(b, 0x7FC0, 2);  // NaN
  put_le(b, 0x8000, 2);  // -0
  w.add_raw("h", DType::F16, {static_cast<Index>(f16.size() + 2)}, a);
  w.add_raw("bf", DType::BF16, {static_cast<Index>(bf16.size() + 2)}, b);
  const auto st = w.to_safetensors();
  REQUIRE(st.at("h").dtype == DType::F16);
  REQUIRE(st.at("bf").dtype == DType::BF16);
  const auto hd = st.values<double>("h");
  const auto hf = st.values<float>("h");
  for (std::size_t i = 0; i < f16.size(); ++i) {
    INFO("f16 bits 0x" << std::hex << f16[i].first);
    REQUIRE(hd[i] == f16[i].second);
    REQUIRE(hf[i] == static_cast<float>(f16[i].second));
  }
  REQUIRE(std::isnan(hd[f16.size()]));
  REQUIRE(std::isnan(hf[f16.size()]));
  REQUIRE(hd.back() == 0.0);
  REQUIRE(std::signbit(hd.back()));
  const auto bd = st.values<double>("bf");
  const auto bfl = st.values<float>("bf");
  for (std::size_t i = 0; i < bf16.size(); ++i) {
    INFO("bf16 bits 0x" << std::hex << bf16[i].first);
    REQUIRE(bd[i] == bf16[i].second);
    REQUIRE(bfl[i] == static_cast<float>(bf16[i].second));
  }
  REQUIRE(std::isnan(bd[bf16.size()]));
  REQUIRE(std::signbit(bfl.back()));
}

TEST_CASE("safetensors: other dtypes parse but do not convert to floating point", "[safetensors]") {
  SafeTensorsWriter w;
  const Bytes ints{1, 0, 0, 0, 2, 0, 0, 0};
  w.add_raw("i", DType::I32, {2}, ints);
  w.add_raw("flags", DType::BOOL, {3}, Bytes{1, 0, 1});
  const auto st = w.to_safetensors();
  REQUIRE(st.at("i").dtype == DType::I32);
  REQUIRE(st.at("flags").shape == Shape{3});
  REQUIRE(st.raw("i").size() == 8);
  REQUIRE_THROWS_AS(st.values<float>("i"), attn::WeightsError);
  REQUIRE_THAT(message_of([&] { (void)st.values<double>("flags"); }), Catch::Contains("BOOL"));
  REQUIRE(attn::dtype_from_name("F8_E4M3") == DType::F8_E4M3);
  REQUIRE_FALSE(attn::dtype_from_name("f32").has_value());
  REQUIRE(attn::dtype_size(DType::BF16) == 2);
}

TEST_CASE("safetensors: I64, I32, U8 and BOOL read as integers and booleans, range-checked",
          "[safetensors]") {
  SafeTensorsWriter w;
  Bytes i64;
  for (std::int64_t v : {std::int64_t{5}, std::int64_t{-3}, std::int64_t{1} << 40}) {
    for (int b = 0; b < 8; ++b) i64.push_back(static_cast<std::uint8_t>(static_cast<std::uint64_t>(v) >> (8 * b)));
  }
  w.add_raw("lengths64", DType::I64, {3}, i64);
  w.add_raw("lengths32", DType::I32, {2}, Bytes{7, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff});  // 7, -2
  w.add_raw("u8", DType::U8, {2, 2}, Bytes{0, 1, 1, 255});
  w.add_raw("mask", DType::BOOL, {2, 3}, Bytes{1, 0, 1, 0, 0, 1});
  w.add_raw("bad_bool", DType::BOOL, {2}, Bytes{1, 2});
  w.add<float>("f", {2}, std::vector<float>{1, 0});
  const auto st = w.to_safetensors();
  REQUIRE(st.integers("lengths64") == std::vector<Index>{5, -3, Index{1} << 40});
  REQUIRE(st.integers<std::int32_t>("lengths32") == std::vector<std::int32_t>{7, -2});
  REQUIRE(st.integers<std::uint8_t>("u8") == std::vector<std::uint8_t>{0, 1, 1, 255});
  const auto m = st.bool_tensor<2>("mask");
  REQUIRE(attn::shape_of(m) == Shape{2, 3});
  REQUIRE((m(0, 0) && !m(0, 1) && m(0, 2) && !m(1, 0) && !m(1, 1) && m(1, 2)));
  // a mask read from a file is usable as a mask kind at once
  const attn::AttnMask am(m);
  REQUIRE(am.shape() == Shape{2, 3});
  // out of range for the destination: errors naming the tensor and the index
  REQUIRE_THROWS_WITH(st.integers<std::int32_t>("lengths64"),
                      "safetensors '<memory>': tensor 'lengths64' value 1099511627776 at flat index 2 does not fit "
                      "in the destination type");
  REQUIRE_THROWS_WITH(st.integers<std::uint8_t>("lengths32"), Catch::Contains("value -2 at flat index 1"));
  REQUIRE_THROWS_WITH(st.bool_tensor<2>("u8"), Catch::Contains("value 255 at flat index 3 does not fit in bool"));
  REQUIRE_THROWS_WITH(st.bool_tensor<1>("bad_bool"),
                      "safetensors '<memory>': tensor 'bad_bool' of dtype BOOL holds byte 2 at flat index 1 (only 0 "
                      "and 1 are booleans)");
  REQUIRE_THROWS_WITH(st.bool_tensor<1>("mask"), Catch::Contains("has shape [2, 3], expected rank 1"));
  // floating point is not silently rounded to integers, nor integers read as floats
  REQUIRE_THROWS_WITH(st.integers("f"), Catch::Contains("has dtype F32; only I64, I32, U8 and BOOL convert"));
  REQUIRE_THROWS_AS(st.values<double>("lengths64"), attn::WeightsError);
  // the same untrusted-input checks as for floats: a shape that does not match its bytes is refused
  const std::string header = R"({"x":{"dtype":"I64","shape":[3],"data_offsets":[0,16]}})";
  Bytes file;
  for (int b = 0; b < 8; ++b) file.push_back(static_cast<std::uint8_t>(header.size() >> (8 * b)));
  file.insert(file.end(), header.begin(), header.end());
  file.resize(file.size() + 16);
  REQUIRE_THROWS_WITH(attn::SafeTensors::from_bytes(file),
                      Catch::Contains("shape [3] of dtype I64 needs 24 bytes, data_offsets [0, 16] hold 16"));
}

// ---------------------------------------------------------------------------------------------------
// writing

TEST_CASE("safetensors: the writer's bytes follow the format", "[safetensors]") {
  SafeTensorsWriter w;
  w.set_metadata("k", "v");
  const std::vector<float> a{1.0f, -0.5f, 3.0f};
  w.add<float>("a", {3, 1}, a);
  const std::vector<double> b{0.25};
  w.add<double>("b", {}, b);
  const Bytes bytes = w.bytes();
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(bytes[static_cast<std::size_t>(i)]) << (8 * i);
  REQUIRE((8 + n) % 8 == 0);  // data section aligned to 8
  REQUIRE(bytes.size() == 8 + n + 12 + 8);
  const auto header =
      nlohmann::json::parse(std::string(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(n)));
  REQUIRE(header["__metadata__"]["k"] == "v");
  REQUIRE(header["a"]["dtype"] == "F32");
  REQUIRE(header["a"]["shape"] == nlohmann::json::array({3, 1}));
  REQUIRE(header["a"]["data_offsets"] == nlohmann::json::array({0, 12}));
  REQUIRE(header["b"]["data_offsets"] == nlohmann::json::array({12, 20}));
  // raw little-endian payload
  float f = 0;
  std::memcpy(&f, bytes.data() + 8 + n + 4, 4);  // the test machine is little-endian (x86/arm64)
  REQUIRE(f == -0.5f);
}

TEST_CASE("safetensors: every dtype round-trips through the writer", "[safetensors]") {
  const std::vector<double> d{0.1, -1.0 / 3.0, 1e-310, -0.0, 12345.678};
  const std::vector<float> f{0.1f, -1.0f / 3.0f, 1e-40f, -0.0f, 12345.678f};
  SafeTensorsWriter w;
  w.add<double>("d64", {5}, d);                // F64 exact
  w.add<double>("d32", {5}, d, DType::F32);    // rounded to float
  w.add<float>("f32", {5}, f);                 // F32 exact
  w.add<float>("f64", {1, 5}, f, DType::F64);  // widened, exact
  const Bytes h{0x00, 0x3C, 0x00, 0xC0};       // F16 1, -2
  w.add_raw("f16", DType::F16, {2}, h);
  const Bytes bf{0x80, 0x3F, 0x40, 0xC0};  // BF16 1, -3
  w.add_raw("bf16", DType::BF16, {2}, bf);
  const auto path = temp_path("all.safetensors");
  w.write(path);
  const auto st = SafeTensors::open(path);
  REQUIRE(st.origin() == path.string());
  REQUIRE(st.values<double>("d64") == d);
  for (std::size_t i = 0; i < d.size(); ++i) {
    REQUIRE(st.values<double>("d32")[i] == static_cast<double>(static_cast<float>(d[i])));
    REQUIRE(st.values<float>("d64")[i] == static_cast<float>(d[i]));
  }
  REQUIRE(st.values<float>("f32") == f);
  REQUIRE(st.at("f64").dtype == DType::F64);
  REQUIRE(st.values<float>("f64") == f);
  REQUIRE(std::signbit(st.values<double>("d64")[3]));
  REQUIRE(st.values<double>("f16") == std::vector<double>{1.0, -2.0});
  REQUIRE(st.values<float>("bf16") == std::vector<float>{1.0f, -3.0f});
  std::filesystem::remove_all(path.parent_path());
}

TEST_CASE("safetensors: writer errors", "[safetensors]") {
  SafeTensorsWriter w;
  const std::vector<float> v{1, 2};
  w.add<float>("x", {2}, v);
  REQUIRE_THROWS_AS(w.add<float>("x", {2}, v), attn::IOError);
  REQUIRE_THROWS_AS(w.add<float>("__metadata__", {2}, v), attn::IOError);
  REQUIRE_THROWS_AS(w.add<float>("y", {3}, v), attn::IOError);
  REQUIRE_THROWS_AS(w.add<float>("y", {-2}, v), attn::IOError);
  REQUIRE_THROWS_AS(w.add<float>("y", {2}, v, DType::F16), attn::IOError);
  REQUIRE_THROWS_AS(w.add_raw("y", DType::F32, {2}, Bytes(7)), attn::IOError);
  REQUIRE_THROWS_AS(w.add_raw("y", DType::F32, {3}, Bytes(8)), attn::IOError);
  const std::vector<double> big{1e300};
  REQUIRE_THROWS_AS(w.add<double>("y", {1}, big, DType::F32), attn::WeightsError);
  REQUIRE_THROWS_AS(w.write(temp_path("d") / "no" / "such" / "dir.safetensors"), attn::IOError);
  REQUIRE_THROWS_AS(SafeTensors::open(temp_path("missing.safetensors")), attn::IOError);
  REQUIRE_THROWS_AS(SafeTensors::open(temp_path("x").parent_path()), attn::IOError);
}

// ---------------------------------------------------------------------------------------------------
// untrusted input

TEST_CASE("safetensors: every corruption is an IOError with a clear message", "[safetensors]") {
  Bytes eight;
  put_f32(eight, 1.0f);
  put_f32(eight, 2.0f);
  const std::string ok_a = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

  SECTION("too short and header length") {
    require_io_error(Bytes{}, "fewer than the 8-byte header length");
    require_io_error(Bytes{2, 0, 0, 0, 0, 0, 0}, "fewer than the 8-byte header length");
    require_io_error(file_of("{}", {}, 3), "goes beyond the end of the file");
    require_io_error(file_of("{}", {}, std::uint64_t{1} << 63), "above the limit");
    require_io_error(file_of("{}", {}, 0xFFFFFFFFFFFFFFFFull), "above the limit");
    require_io_error(file_of("{}", {}, 99'999'999), "goes beyond the end of the file");
  }
  SECTION("header not JSON, not an object") {
    require_io_error(file_of("{abc"), "not valid JSON");
    require_io_error(file_of(""), "not valid JSON");
    require_io_error(file_of("{} x"), "not valid JSON");
    require_io_error(file_of(std::string("{}\0\0", 4)), "not valid JSON");
    require_io_error(file_of("\"\xff\xfe\""), "not valid JSON");  // ill-formed UTF-8
    require_io_error(file_of("[]"), "must be a JSON object, got array");
    require_io_error(file_of("42"), "must be a JSON object, got number");
    require_io_error(file_of(std::string(5000, '[') + std::string(5000, ']')), "nests deeper");
  }
  SECTION("duplicate names") {
    require_io_error(file_of("{" + ok_a + "," + ok_a + "}", eight), "duplicate name 'a'");
    require_io_error(
        file_of(R"({"a":{"dtype":"F32","dtype":"F64","shape":[2],"data_offsets":[0,8]}})", eight),
        "duplicate name 'dtype'");
    require_io_error(file_of(R"({"__metadata__":{"k":"1","k":"2"}})"), "duplicate name 'k'");
  }
  SECTION("malformed entries and metadata") {
    require_io_error(file_of(R"({"a":[1,2]})"), "tensor 'a': entry must be an object");
    require_io_error(file_of(R"({"a":{"dtype":"F32","shape":[2]}})", eight),
                     "must have dtype, shape and data_offsets");
    require_io_error(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", eight),
                     "unknown key 'x'");
    require_io_error(file_of(R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", eight),
                     "unknown dtype 'F33'");
    require_io_error(file_of(R"({"a":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", eight),
                     "unknown dtype 'f32'");
    require_io_error(file_of(R"({"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", eight),
                     "dtype must be a string");
    require_io_error(file_of(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight),
                     "shape must be an array of non-negative integers");
    require_io_error(file_of(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", eight),
                     "shape must be an array of non-negative integers");
    require_io_error(file_of(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", eight),
                     "shape must be an array");
    require_io_error(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}})", eight),
                     "data_offsets must be [begin, end]");
    require_io_error(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-1,7]}})", eight),
                     "data_offsets must be [begin, end]");
    require_io_error(file_of(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", eight),
                     "data_offsets must be [begin, end]");
    require_io_error(file_of(R"({"__metadata__":[1]})"), "'__metadata__' must be an object of strings");
    require_io_error(file_of(R"({"__metadata__":{"k":1}})"), "'__metadata__' value of 'k' must be a string");
  }
  SECTION("offsets out of range, overlapping, with gaps, not covering the data") {
    require_io_error(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,1000]}})", eight),
                     "go beyond the data section of 8 bytes");
    require_io_error(
        file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}})", eight),
        "go beyond the data section");
    Bytes twelve = eight;
    put_f32(twelve, 3.0f);
    require_io_error(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                             twelve),
                     "overlap");
    Bytes twenty = twelve;
    put_f64(twenty, 4.0);
    require_io_error(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})",
                             twenty),
                     "not contiguous: 'a' ends at byte 8 but the next tensor 'b' begins at byte 12");
    require_io_error(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", twelve),
                     "the first tensor 'a' begins at byte 4");
    require_io_error(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", twelve),
                     "cover 8 bytes of a data section of 12 bytes");
    require_io_error(file_of("{}", eight), "cover 0 bytes of a data section of 8 bytes");
  }
  SECTION("shape and dtype size") {
    require_io_error(file_of(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight),
                     "shape [3] of dtype F32 needs 12 bytes, data_offsets [0, 8] hold 8");
    require_io_error(
        file_of(R"({"a":{"dtype":"F64","shape":[4611686018427387904,4],"data_offsets":[0,8]}})", eight),
        "overflows");
    require_io_error(
        file_of(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", eight),
        "overflows");
    require_io_error(
        file_of(R"({"a":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,8]}})", eight),
        "too large");
    require_io_error(
        file_of(R"({"a":{"dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,8]}})", eight),
        "non-negative integers");
  }
}

TEST_CASE("safetensors: truncations and byte flips of a valid file never read out of bounds",
          "[safetensors]") {
  SafeTensorsWriter w;
  w.set_metadata("m", "v");
  const std::vector<float> a{1, 2, 3, 4, 5, 6};
  const std::vector<double> b{7, 8};
  w.add<float>("alpha", {2, 3}, a);
  w.add<double>("beta", {2}, b);
  const Bytes good = w.bytes();
  REQUIRE(SafeTensors::from_bytes(good).size() == 2);
  // every truncation is rejected
  for (std::size_t n = 0; n < good.size(); ++n) {
    const Bytes cut(good.begin(), good.begin() + static_cast<long>(n));
    INFO("truncated to " << n << " bytes");
    REQUIRE_THROWS_AS(SafeTensors::from_bytes(cut), attn::IOError);
  }
  // any single byte of the length or the header replaced by a few values: parses or throws IOError, and a
  // file that parses reads every tensor within bounds (ASan checks the reads)
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(good[static_cast<std::size_t>(i)]) << (8 * i);
  int parsed = 0, rejected = 0;
  for (std::size_t pos = 0; pos < 8 + n; ++pos)
    for (std::uint8_t v : {std::uint8_t{0}, std::uint8_t{'0'}, std::uint8_t{'9'}, std::uint8_t{'"'},
                           std::uint8_t{'}'}, std::uint8_t{','}, std::uint8_t{0xFF}}) {
      Bytes bad = good;
      bad[pos] = v;
      try {
        const auto st = SafeTensors::from_bytes(bad);
        for (const auto& e : st.entries())
          if (attn::dtype_is_readable(e.dtype)) (void)st.values<double>(e.name);
        ++parsed;
      } catch (const attn::IOError&) {
        ++rejected;
      } catch (const attn::WeightsError&) {
        ++rejected;  // e.g. a dtype turned into another valid one
      }
    }
  REQUIRE(rejected > 0);
  REQUIRE(parsed > 0);
}

// ---------------------------------------------------------------------------------------------------
// weights of layers

namespace {
using MHA = attn::MultiHeadAttention<float>;

template <class T>
void require_same_weights(const attn::WeightSet<T>& a, const attn::WeightSet<T>& b) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    REQUIRE(a[i].name == b[i].name);
    REQUIRE(a[i].shape == b[i].shape);
    REQUIRE(a[i].data == b[i].data);
  }
}
}  // namespace

TEST_CASE("weights: save and load round-trip a layer, with and without a prefix", "[weights]") {
  const attn::MultiHeadAttentionConfig cfg{.embed_dim = 8, .num_heads = 2, .use_bias = true};
  MHA source(cfg, 1);
  for (auto& w : source.parameters())  // non-zero biases
    for (std::size_t i = 0; i < w.data.size(); ++i) w.data[i] += 0.01f * static_cast<float>(i % 5);
  for (std::string prefix : {"", "enc", "blocks/0/"}) {
    const auto path = temp_path("mha.safetensors");
    attn::save_weights(source, path, prefix);
    const auto st = SafeTensors::open(path);
    const std::string pre = prefix.empty() ? "" : (prefix.back() == '/' ? prefix : prefix + "/");
    REQUIRE(st.names() == std::vector<std::string>{pre + "qkv/kernel", pre + "qkv/bias", pre + "proj/kernel",
                                                   pre + "proj/bias"});
    REQUIRE(st.at(pre + "qkv/kernel").dtype == DType::F32);
    MHA target(cfg, 2);
    REQUIRE(target.parameters()[0].data != source.parameters()[0].data);
    attn::load_weights(target, path, prefix);
    require_same_weights(target.parameters(), source.parameters());
    // a double layer reads the F32 file exactly
    attn::MultiHeadAttention<double> wide(cfg, 3);
    attn::load_weights(wide, st, prefix);
    for (std::size_t i = 0; i < wide.parameters().size(); ++i)
      for (std::size_t j = 0; j < wide.parameters()[i].data.size(); ++j)
        REQUIRE(wide.parameters()[i].data[j] == static_cast<double>(source.parameters()[i].data[j]));
    std::filesystem::remove_all(path.parent_path());
  }
}

TEST_CASE("weights: load errors name the layer, the tensor, expected and found, the layer is unchanged",
          "[weights]") {
  const attn::MultiHeadAttentionConfig cfg{.embed_dim = 8, .num_heads = 2, .use_bias = true};
  const MHA good(cfg, 1);
  MHA layer(cfg, 2);
  const auto before = layer.parameters();
  const auto& gw = good.parameters();

  SECTION("missing tensor") {
    SafeTensorsWriter w;
    for (std::size_t i = 0; i < 3; ++i)
      w.add<float>("m/" + gw[i].name, gw[i].shape, gw[i].data);  // no proj/bias
    const auto msg = message_of([&] { attn::load_weights(layer, w.to_safetensors("f.safetensors"), "m"); });
    CHECK_THAT(msg, Catch::Contains(
                        "multi_head (MultiHeadAttention): weight 'proj/bias' is missing: expected tensor "
                        "'m/proj/bias' of shape [8] in 'f.safetensors'"));
    REQUIRE_THROWS_AS(attn::load_weights(layer, w.to_safetensors()), attn::WeightsError);
  }
  SECTION("wrong shape (after earlier weights were read)") {
    SafeTensorsWriter w;
    for (std::size_t i = 0; i < 4; ++i) {
      if (i == 2) {
        w.add<float>(gw[i].name, {4, 16}, gw[i].data);  // proj/kernel with 64 values but the wrong shape
      } else {
        w.add<float>(gw[i].name, gw[i].shape, gw[i].data);
      }
    }
    const auto msg = message_of([&] { attn::load_weights(layer, w.to_safetensors()); });
    CHECK_THAT(
        msg, Catch::Contains("multi_head (MultiHeadAttention): weight 'proj/kernel': expected shape [8, 8], "
                             "found [4, 16]"));
  }
  SECTION("unexpected extra tensor, unless allowed; tensors outside the prefix do not count") {
    SafeTensorsWriter w;
    for (const auto& x : gw) w.add<float>("a/" + x.name, x.shape, x.data);
    w.add<float>("a/extra", {2}, std::vector<float>{1, 2});
    w.add<float>("other/thing", {1}, std::vector<float>{1});
    const auto st = w.to_safetensors();
    const auto msg = message_of([&] { attn::load_weights(layer, st, "a"); });
    CHECK_THAT(msg, Catch::Contains("unexpected tensor(s) 'a/extra'"));
    CHECK_THAT(msg, Catch::Contains("multi_head (MultiHeadAttention)"));
    require_same_weights(layer.parameters(), before);
    const auto skipped = attn::load_weights(layer, st, "a", {.allow_extra = true});
    require_same_weights(layer.parameters(), gw);
    REQUIRE(skipped == std::vector<std::string>{"a/extra"});  // reported, not silently dropped
    return;
  }
  SECTION("unsupported dtype") {
    SafeTensorsWriter w;
    for (const auto& x : gw) {
      if (x.name == "qkv/bias") {
        w.add_raw(x.name, DType::I32, x.shape, Bytes(x.data.size() * 4));
      } else {
        w.add<float>(x.name, x.shape, x.data);
      }
    }
    const auto msg = message_of([&] { attn::load_weights(layer, w.to_safetensors()); });
    CHECK_THAT(msg, Catch::Contains(
                        "weight 'qkv/bias': tensor 'qkv/bias' in '<memory>' has dtype I32; expected F32, "
                        "F64, F16 or BF16"));
  }
  SECTION("a value that does not fit the layer's scalar") {
    SafeTensorsWriter w;
    for (const auto& x : gw) {
      std::vector<double> v(x.data.begin(), x.data.end());
      if (x.name == "proj/bias") v[3] = 1e200;
      w.add<double>(x.name, x.shape, v);
    }
    REQUIRE_THROWS_AS(attn::load_weights(layer, w.to_safetensors()), attn::WeightsError);
  }
  require_same_weights(layer.parameters(), before);
}

TEST_CASE("weights: F16 and BF16 files load into float and double layers", "[weights]") {
  // embed_dim 2, one head, no bias: qkv/kernel [2, 6], proj/kernel [2, 2]; values exact in half precision
  attn::MultiHeadAttention<double> layer({.embed_dim = 2, .num_heads = 1});
  Bytes qkv, proj;
  std::vector<double> expect_qkv, expect_proj;
  for (int i = 0; i < 12; ++i) {
    // F16 of (i - 6) / 4: exact small quarters
    const double v = (i - 6) / 4.0;
    expect_qkv.push_back(v);
    const float f = static_cast<float>(v);
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
    std::uint16_t half = 0;
    if (f != 0.0f) {
      const int exp = static_cast<int>((bits >> 23) & 0xff) - 127 + 15;
      half = static_cast<std::uint16_t>(((bits >> 16) & 0x8000u) | (static_cast<std::uint32_t>(exp) << 10) |
                                        ((bits >> 13) & 0x3ffu));
    }
    put_le(qkv, half, 2);
  }
  for (int i = 0; i < 4; ++i) {
    const float f = 0.5f + static_cast<float>(i);
    expect_proj.push_back(f);
    put_le(proj, std::bit_cast<std::uint32_t>(f) >> 16, 2);  // BF16: the upper half
  }
  SafeTensorsWriter w;
  w.add_raw("qkv/kernel", DType::F16, {2, 6}, qkv);
  w.add_raw("proj/kernel", DType::BF16, {2, 2}, proj);
  const auto st = w.to_safetensors();
  attn::load_weights(layer, st);
  REQUIRE(layer.parameters()[0].data == expect_qkv);
  REQUIRE(layer.parameters()[1].data == expect_proj);
  MHA narrow({.embed_dim = 2, .num_heads = 1});
  attn::load_weights(narrow, st);
  REQUIRE(narrow.parameters()[0].data[0] == -1.5f);
}

TEST_CASE("weights: AnyLayer and in-memory TensorDict sources", "[weights]") {
  auto layer = attn::create_attention_layer<double>(
      "group_query",
      {{"d_model", 8}, {"n_head", 2}, {"n_kv_head", 1}, {"max_seq_len", 6}, {"use_bias", true}}, "gq", 4);
  auto copy = attn::create_attention_layer<double>(
      "group_query",
      {{"d_model", 8}, {"n_head", 2}, {"n_kv_head", 1}, {"max_seq_len", 6}, {"use_bias", true}}, "gq", 5);
  REQUIRE_FALSE(layer == copy);
  const auto path = temp_path("gq.safetensors");
  attn::save_weights(layer, path, "gq");
  const auto st = SafeTensors::open(path);
  REQUIRE(st.contains("gq/rope/cos_cached"));  // non-trainable weights are saved too
  REQUIRE(st.at("gq/w_q/kernel").dtype == DType::F64);
  attn::load_weights(copy, st, "gq");
  REQUIRE(layer == copy);
  // the error names the AnyLayer's type, name and class
  auto wrong = attn::create_attention_layer<double>(
      "group_query",
      {{"d_model", 8}, {"n_head", 2}, {"n_kv_head", 2}, {"max_seq_len", 6}, {"use_bias", true}}, "gq2");
  CHECK_THAT(message_of([&] { attn::load_weights(wrong, st, "gq"); }),
             Catch::Contains(
                 "group_query 'gq2' (GroupedQueryAttention): weight 'w_k/kernel': expected shape [8, 8], "
                 "found [8, 4]"));
  // TensorDict
  attn::TensorDict<double> dict;
  for (const auto& w : layer.parameters()) dict.insert(w.name, attn::AnyTensor<double>(w.shape, w.data));
  REQUIRE_THROWS_AS(dict.insert("w_q/kernel", attn::AnyTensor<double>(Shape{1})), attn::WeightsError);
  auto third = attn::create_attention_layer<double>(
      "group_query",
      {{"d_model", 8}, {"n_head", 2}, {"n_kv_head", 1}, {"max_seq_len", 6}, {"use_bias", true}}, "gq", 9);
  attn::load_weights(third, dict);
  REQUIRE(third == layer);
  std::filesystem::remove_all(path.parent_path());
}

TEST_CASE("weights: a whole model saves to a config JSON plus one file and loads back equal", "[weights]") {
  std::vector<attn::AnyLayer<float>> model;
  model.push_back(
      attn::create_attention_layer<float>("multi_head", {{"embed_dim", 8}, {"num_heads", 2}}, "enc", 1));
  model.push_back(attn::create_attention_layer<float>("self_attention", {{"embed_dim", 6}}, "", 2));
  model.push_back(attn::create_attention_layer<float>(
      "cross_attention", {{"embed_dim", 4}, {"context_dim", 6}, {"output_projection", true}}, "dup", 3));
  model.push_back(attn::create_attention_layer<float>(
      "cbam", {{"channels", 8}, {"ratio", 2}, {"kernel_size", 3}}, "dup", 4));
  model.push_back(attn::create_attention_layer<float>("channel", {{"channels", 4}, {"ratio", 2}}, "12", 5));
  const auto cfg_path = temp_path("model.json");
  const auto w_path = cfg_path.parent_path() / "model.safetensors";
  attn::save_model(model, cfg_path, w_path);

  const auto cfg = attn::detail::read_json_file(cfg_path);
  REQUIRE(cfg["format"] == "attn.model");
  REQUIRE(cfg["weights"] == "model.safetensors");
  std::vector<std::string> prefixes;
  for (const auto& l : cfg["layers"]) prefixes.push_back(l["prefix"].get<std::string>());
  // name when unique and not all digits, else the index
  REQUIRE(prefixes == std::vector<std::string>{"enc", "1", "2", "3", "4"});
  REQUIRE(cfg["layers"][2]["config"]["type"] == "cross_attention");
  REQUIRE(cfg["layers"][2]["config"]["name"] == "dup");
  const auto st = SafeTensors::open(w_path);
  REQUIRE(st.contains("enc/qkv/kernel"));
  REQUIRE(st.contains("3/channel_attention/channel_attention_dense_1/kernel"));

  const auto loaded = attn::load_model<float>(cfg_path, w_path);
  REQUIRE(loaded.size() == model.size());
  for (std::size_t i = 0; i < model.size(); ++i) {
    INFO("layer " << i);
    REQUIRE(loaded[i] == model[i]);
    REQUIRE(loaded[i].name() == model[i].name());
  }
  // and the loaded layers compute the same
  const auto x = random_any<float>({2, 3, 8}, 5);
  REQUIRE(loaded[0].forward(x) == model[0].forward(x));

  SECTION("a tensor that belongs to no layer") {
    SafeTensorsWriter w = attn::model_weights<float>(model);
    w.add<float>("stray/x", {1}, std::vector<float>{1});
    CHECK_THAT(message_of([&] { (void)attn::load_model<float>(cfg, w.to_safetensors()); }),
               Catch::Contains("'stray/x'"));
  }
  SECTION("a missing weight names the layer") {
    SafeTensorsWriter w;
    for (const auto& name : st.names())
      if (name != "1/value/bias") w.add<float>(name, st.at(name).shape, st.values<float>(name));
    CHECK_THAT(message_of([&] { (void)attn::load_model<float>(cfg, w.to_safetensors()); }),
               Catch::Contains("self_attention (SelfAttention): weight 'value/bias' is missing"));
  }
  SECTION("malformed configs") {
    auto c = cfg;
    c["layers"][1]["prefix"] = "enc";
    REQUIRE_THROWS_AS(attn::load_model<float>(c, st), attn::IOError);
    c = cfg;
    c["format"] = "other";
    REQUIRE_THROWS_AS(attn::load_model<float>(c, st), attn::IOError);
    c = cfg;
    c["layers"][0].erase("config");
    REQUIRE_THROWS_AS(attn::load_model<float>(c, st), attn::IOError);
    c = cfg;
    c["layers"][0]["config"]["num_heads"] = 3;
    const auto saved = attn::log_level();
    attn::set_log_level(attn::LogLevel::off);  // the factory logs the failure at error level
    std::string msg;
    try {
      (void)attn::load_model<float>(c, st);
    } catch (const attn::ConfigError& e) {
      msg = e.what();
    }
    attn::set_log_level(saved);
    CHECK_THAT(msg, Catch::Contains("embed_dim (8) must be divisible by num_heads (3)"));
    REQUIRE_THROWS_AS(attn::load_model<float>(attn::Json::array(), st), attn::IOError);
    std::ofstream(cfg_path) << "{ not json";
    REQUIRE_THROWS_AS(attn::load_model<float>(cfg_path, w_path), attn::IOError);
  }
  std::filesystem::remove_all(cfg_path.parent_path());
}

TEST_CASE("weights: a double model round-trips exactly through F64", "[weights]") {
  std::vector<attn::AnyLayer<double>> model;
  model.push_back(attn::create_attention_layer<double>("spatial", {{"kernel_size", 5}}, "s", 7));
  model.push_back(
      attn::create_attention_layer<double>("multi_head", {{"embed_dim", 4}, {"num_heads", 2}}, "", 8));
  const auto cfg = attn::model_config<double>(model);
  const auto loaded = attn::load_model<double>(cfg, attn::model_weights<double>(model).to_safetensors());
  REQUIRE(loaded.size() == 2);
  REQUIRE(loaded[0] == model[0]);
  REQUIRE(loaded[1] == model[1]);
}
