// Helpers of the attn tool's tests (no factory, so it compiles quickly):
//   attn_cli_testkit compare ACTUAL EXPECTED [RTOL ATOL]   arrays equal within rtol/atol (exit 1 if not)
//   attn_cli_testkit to-npy SOURCE OUT.npy f4|f8           copy an array into a .npy of that dtype
//   attn_cli_testkit extract OUT SRC FROM TO [SRC FROM TO]...  the tensors of each SRC.safetensors under
//                                                          prefix FROM, renamed to prefix TO, into OUT
//   attn_cli_testkit bad-npy DIR                           write a good and many malformed .npy files
//   attn_cli_testkit png-check FILE MIN_W MIN_H            read a PNG back with libpng and check it
// An array (SOURCE, ACTUAL, EXPECTED) is a .npy file or FILE.safetensors:NAME.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <png.h>

#include <attn/io/npy.hpp>
#include <attn/io/safetensors.hpp>

namespace {

attn::AnyTensor<double> read_array(const std::string& spec) {
  const std::string marker = ".safetensors:";
  const auto at = spec.find(marker);
  if (at != std::string::npos)
    return attn::SafeTensors::open(spec.substr(0, at + marker.size() - 1)).tensor<double>(spec.substr(at + marker.size()));
  return attn::NpyArray::open(spec).tensor<double>();
}

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  if (!out) throw attn::IOError("cannot write " + path);
}

/// A .npy file of `header` (the dict text, padded here) followed by `data_bytes` bytes.
std::vector<std::uint8_t> npy_with_header(const std::string& header, std::size_t data_bytes, int version = 1) {
  std::string h = header;
  const std::size_t pre = version == 1 ? 10 : 12;
  while ((pre + h.size() + 1) % 64 != 0) h.push_back(' ');
  h.push_back('\n');
  std::vector<std::uint8_t> out{0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<std::uint8_t>(version), 0};
  for (std::size_t i = 0; i < pre - 8; ++i) out.push_back(static_cast<std::uint8_t>(h.size() >> (8 * i)));
  out.insert(out.end(), h.begin(), h.end());
  out.resize(out.size() + data_bytes, 0);
  return out;
}

int compare(const std::string& actual, const std::string& expected, double rtol, double atol) {
  const auto a = read_array(actual);
  const auto e = read_array(expected);
  if (a.shape() != e.shape()) {
    fmt::print("shape mismatch: {} has {}, {} has {}\n", actual, attn::shape_str(a.shape()), expected,
               attn::shape_str(e.shape()));
    return 1;
  }
  double worst = 0;
  for (attn::Index i = 0; i < a.size(); ++i) {
    const double x = a.data()[i], y = e.data()[i];
    const double d = std::abs(x - y);
    worst = std::max(worst, d);
    if (!(d <= atol + rtol * std::abs(y))) {
      fmt::print("mismatch at flat index {}: {} vs {} (rtol {}, atol {})\n", i, x, y, rtol, atol);
      return 1;
    }
  }
  fmt::print("match: {} values of shape {}, max abs difference {:.3g}\n", a.size(), attn::shape_str(a.shape()), worst);
  return 0;
}

int to_npy(const std::string& source, const std::string& out, const std::string& dtype) {
  const auto t = read_array(source);
  attn::write_npy(out, t, dtype == "f4" ? attn::DType::F32 : attn::DType::F64);
  return 0;
}

int extract(const std::vector<std::string>& a) {
  attn::SafeTensorsWriter w;
  for (std::size_t i = 2; i + 2 < a.size(); i += 3) {
    const auto st = attn::SafeTensors::open(a[i]);
    for (const auto& e : st.entries())
      if (e.name.starts_with(a[i + 1]))
        w.add_raw(a[i + 2] + e.name.substr(a[i + 1].size()), e.dtype, e.shape, st.raw(e.name));
  }
  w.write(a[1]);
  return 0;
}

int bad_npy(const std::string& dir) {
  const std::string ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 5, 7), }";
  const std::size_t n = 35 * 4;
  write_bytes(dir + "/good.npy", npy_with_header(ok, n));
  auto truncated = npy_with_header(ok, n);
  truncated.resize(truncated.size() - 9);
  write_bytes(dir + "/truncated.npy", truncated);
  write_bytes(dir + "/trailing.npy", npy_with_header(ok, n + 3));
  write_bytes(dir + "/wrong_dtype.npy", npy_with_header("{'descr': '<i8', 'fortran_order': False, 'shape': (1, 5, 7), }", 35 * 8));
  write_bytes(dir + "/big_endian.npy", npy_with_header("{'descr': '>f4', 'fortran_order': False, 'shape': (1, 5, 7), }", n));
  write_bytes(dir + "/fortran.npy", npy_with_header("{'descr': '<f4', 'fortran_order': True, 'shape': (1, 5, 7), }", n));
  write_bytes(dir + "/missing_shape.npy", npy_with_header("{'descr': '<f4', 'fortran_order': False, }", n));
  write_bytes(dir + "/bad_header.npy", npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 5, 7), ", n));
  write_bytes(dir + "/huge_shape.npy",
              npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 7), }", n));
  write_bytes(dir + "/large_shape.npy",
              npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000, 7), }", n));
  auto magic = npy_with_header(ok, n);
  magic[1] = 'X';
  write_bytes(dir + "/bad_magic.npy", magic);
  auto beyond = npy_with_header(ok, 0);
  beyond[8] = 0xff;
  beyond[9] = 0x7f;
  write_bytes(dir + "/header_beyond_file.npy", beyond);
  write_bytes(dir + "/empty.npy", {});
  // a mask [5, 5] of uint8 holding a 2
  auto mask = npy_with_header("{'descr': '|u1', 'fortran_order': False, 'shape': (5, 5), }", 25);
  mask.back() = 2;
  write_bytes(dir + "/mask_not_boolean.npy", mask);
  // an input [1, 4, 8] with a NaN in token 2: attention weights that are NaN
  attn::AnyTensor<double> nan_input(attn::Shape{1, 4, 8});
  for (attn::Index i = 0; i < nan_input.size(); ++i) nan_input.data()[i] = 0.1 * static_cast<double>(i % 7);
  nan_input.data()[2 * 8 + 3] = std::nan("");
  attn::write_npy(dir + "/nan_input.npy", nan_input, attn::DType::F32);
  return 0;
}

int png_check(const std::string& path, int min_w, int min_h) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    fmt::print("cannot open {}\n", path);
    return 1;
  }
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    std::fclose(f);
    fmt::print("libpng could not read {}\n", path);
    return 1;
  }
  png_init_io(png, f);
  png_read_png(png, info, PNG_TRANSFORM_IDENTITY, nullptr);
  const auto w = static_cast<int>(png_get_image_width(png, info));
  const auto h = static_cast<int>(png_get_image_height(png, info));
  const int type = png_get_color_type(png, info);
  const int depth = png_get_bit_depth(png, info);
  png_bytepp rows = png_get_rows(png, info);
  std::set<std::uint32_t> colours;
  if (type == PNG_COLOR_TYPE_RGB && depth == 8)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        const png_bytep p = rows[y] + 3 * x;
        colours.insert((std::uint32_t(p[0]) << 16) | (std::uint32_t(p[1]) << 8) | p[2]);
      }
  png_destroy_read_struct(&png, &info, nullptr);
  std::fclose(f);
  // the colour bar holds both ends of viridis
  const bool ends = colours.count(0x440154) == 1 && colours.count(0xFDE725) == 1;
  fmt::print("png {} x {}, colour type {}, depth {}, {} distinct colours, viridis ends {}\n", w, h, type, depth,
             colours.size(), ends ? "present" : "missing");
  const bool ok = type == PNG_COLOR_TYPE_RGB && depth == 8 && w >= min_w && h >= min_h && colours.size() > 16 && ends;
  if (!ok) fmt::print("png check failed (want RGB 8-bit, at least {} x {}, not constant)\n", min_w, min_h);
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> a(argv + 1, argv + argc);
  try {
    if (a.size() >= 3 && a[0] == "compare")
      return compare(a[1], a[2], a.size() > 3 ? std::stod(a[3]) : 1e-5, a.size() > 4 ? std::stod(a[4]) : 1e-6);
    if (a.size() == 4 && a[0] == "to-npy") return to_npy(a[1], a[2], a[3]);
    if (a.size() >= 5 && a.size() % 3 == 2 && a[0] == "extract") return extract(a);
    if (a.size() == 2 && a[0] == "bad-npy") return bad_npy(a[1]);
    if (a.size() == 4 && a[0] == "png-check") return png_check(a[1], std::stoi(a[2]), std::stoi(a[3]));
  } catch (const std::exception& e) {
    fmt::print("attn_cli_testkit: {}\n", e.what());
    return 1;
  }
  fmt::print("usage: see the comment at the top of testkit.cpp\n");
  return 2;
}
