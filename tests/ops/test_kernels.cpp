// The kernel table (ops/kernels.hpp) and the SIMD dispatch (core/simd.hpp): every matrix product of every
// available instruction-set level against a plain-loop product in long double, over odd shapes, strides,
// transposed operands, accumulation and empty extents; the tiled ops::gemm bit-identical for 1, 2 and 3
// threads; the row passes of each level against the generic ones; the one-row products (matvec,
// vecmat_acc, dense on one token) and their several-row forms (matvec_rows, vecmat_acc_rows) against
// plain loops; set_simd and ATTN_SIMD; the per-thread scratch
// frames (core/scratch.hpp).
#include "support.hpp"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace attn_test;
namespace ops = attn::ops;

namespace {

/// A row-major [rows, cols] matrix with leading dimension cols + pad; padding cells hold a sentinel so a
/// kernel that reads or writes them shows.
template <class T>
struct Mat {
  Index rows, cols, ld;
  std::vector<T> buf;
  Mat(Index r, Index c, Index pad, std::uint64_t seed) : rows(r), cols(c), ld(c + pad) {
    buf.assign(static_cast<std::size_t>(std::max<Index>(r * ld, 1)), T(777));
    attn::Rng rng(seed);
    for (Index i = 0; i < r; ++i)
      for (Index j = 0; j < c; ++j) at(i, j) = static_cast<T>(rng.uniform(-1.0, 1.0));
  }
  T& at(Index i, Index j) { return buf[static_cast<std::size_t>(i * ld + j)]; }
  [[nodiscard]] T at(Index i, Index j) const { return buf[static_cast<std::size_t>(i * ld + j)]; }
};

/// The largest |kernel - oracle| over C, and whether every padding cell of C kept its sentinel.
template <class T>
std::pair<double, bool> run_gemm(const ops::Kernels<T>& kern, Index m, Index n, Index k, bool b_trans,
                                 bool accumulate, bool direct, std::uint64_t seed) {
  const Mat<T> a(m, k, 3, seed);
  const Mat<T> b = b_trans ? Mat<T>(n, k, 5, seed + 1) : Mat<T>(k, n, 5, seed + 1);
  Mat<T> c(m, n, 2, seed + 2);
  const Mat<T> c0 = c;
  kern.gemm(m, n, k, a.buf.data(), a.ld, b.buf.data(), b.ld, b_trans, c.buf.data(), c.ld, accumulate, direct);
  double worst = 0;
  bool pad_ok = true;
  for (Index i = 0; i < m; ++i) {
    for (Index j = 0; j < n; ++j) {
      long double s = accumulate ? c0.at(i, j) : 0.0L;
      for (Index q = 0; q < k; ++q)
        s += static_cast<long double>(a.at(i, q)) * (b_trans ? b.at(j, q) : b.at(q, j));
      worst = std::max(worst, static_cast<double>(std::abs(static_cast<long double>(c.at(i, j)) - s)));
    }
    for (Index j = n; j < c.ld; ++j) pad_ok = pad_ok && c.at(i, j) == T(777);
  }
  return {worst, pad_ok};
}

}  // namespace

TEST_CASE("simd: the levels, their names and set_simd", "[simd]") {
  SimdGuard guard;
  REQUIRE(attn::simd_available(attn::Simd::generic));
  REQUIRE(attn::simd_name(attn::Simd::generic) == "generic");
  REQUIRE(attn::simd_name(attn::Simd::avx2) == "avx2");
  REQUIRE(attn::simd_name(attn::Simd::avx512) == "avx512");
  for (attn::Simd s : {attn::Simd::generic, attn::Simd::avx2, attn::Simd::avx512}) {
    INFO(attn::simd_name(s));
    if (attn::simd_available(s)) {
      attn::set_simd(s);
      REQUIRE(attn::simd() == s);
      REQUIRE(ops::kernels<float>().level == s);
      REQUIRE(ops::kernels<double>().level == s);
    } else {
      REQUIRE_THROWS_AS(attn::set_simd(s), attn::ConfigError);
      REQUIRE_THROWS_WITH(attn::set_simd(s), Catch::Contains("is not supported here"));
    }
  }
  REQUIRE_THROWS_AS(attn::set_simd(static_cast<attn::Simd>(7)), attn::ConfigError);
  WARN("SIMD levels tested on this machine: " << simd_levels_string());
}

TEST_CASE("simd: ATTN_SIMD picks the level, and an unusable value warns", "[simd]") {
  std::vector<std::string> logged;
  LogLines capture(logged);
  const char* saved = std::getenv("ATTN_SIMD");
  const std::string saved_value = saved ? saved : "";
  ::setenv("ATTN_SIMD", "generic", 1);
  REQUIRE(attn::detail::simd_from_environment() == attn::Simd::generic);
  REQUIRE(logged.empty());
  ::setenv("ATTN_SIMD", "sse9", 1);
  REQUIRE(attn::detail::simd_from_environment() == attn::simd_supported());
  REQUIRE(logged.size() == 1);
  REQUIRE(logged[0] == fmt::format("WARNING ATTN_SIMD=sse9: unknown level (expected generic, avx2 or avx512); "
                                   "using {}",
                                   attn::simd_name(attn::simd_supported())));
  ::unsetenv("ATTN_SIMD");
  REQUIRE(attn::detail::simd_from_environment() == attn::simd_supported());
  if (saved) ::setenv("ATTN_SIMD", saved_value.c_str(), 1);
}

TEMPLATE_TEST_CASE("kernels: every level's product equals a plain-loop product", "[kernels][simd]", float,
                   double) {
  using T = TestType;
  const double tol = std::is_same_v<T, float> ? 2e-5 : 1e-12;
  std::uint64_t seed = 1;
  for (attn::Simd level : simd_levels()) {
    const auto& kern = ops::kernels<T>(level);
    REQUIRE(kern.level == level);
    for (auto [m, n, k] : {std::tuple<Index, Index, Index>{1, 1, 1}, {7, 13, 5}, {9, 33, 70}, {17, 31, 129},
                           {40, 80, 300}, {261, 257, 513}, {3, 600, 2}, {600, 3, 2}, {5, 4, 0}})
      for (bool b_trans : {false, true})
        for (bool accumulate : {false, true})
          for (bool direct : {false, true}) {
            INFO(attn::simd_name(level) << " m " << m << " n " << n << " k " << k << " b_trans " << b_trans
                                        << " accumulate " << accumulate << " direct " << direct);
            const auto [worst, pad_ok] = run_gemm(kern, m, n, k, b_trans, accumulate, direct, seed += 3);
            REQUIRE(pad_ok);
            REQUIRE(worst <= tol * std::max<Index>(1, k));
          }
    // Empty outputs write nothing.
    T c = T(5);
    const T one = T(1);
    kern.gemm(0, 1, 1, &one, 1, &one, 1, false, &c, 1, false, false);
    kern.gemm(1, 0, 1, &one, 1, &one, 1, false, &c, 1, false, true);
    REQUIRE(c == T(5));
  }
}

TEMPLATE_TEST_CASE("kernels: ops::gemm tiles bit-identically for 1, 2 and 3 threads on every level",
                   "[kernels][simd][threads]", float, double) {
  using T = TestType;
  SimdGuard simd_guard;
  const int saved_threads = attn::num_threads();
  const Index m = 530, n = 300, k = 260;  // several 256 x 256 tiles, ragged edges
  const Mat<T> a(m, k, 0, 5), b(k, n, 0, 6);
  for (attn::Simd level : simd_levels()) {
    attn::set_simd(level);
    std::vector<std::vector<T>> outs;
    for (int threads : {1, 2, 3}) {
      attn::set_num_threads(threads);
      std::vector<T> c(static_cast<std::size_t>(m * n), T(-1));
      ops::gemm<T>(m, n, k, a.buf.data(), a.ld, b.buf.data(), b.ld, false, c.data(), n);
      outs.push_back(std::move(c));
    }
    INFO(attn::simd_name(level));
    for (std::size_t t = 1; t < outs.size(); ++t)
      REQUIRE(std::memcmp(outs[0].data(), outs[t].data(), outs[0].size() * sizeof(T)) == 0);
    // The packed kernels: the tiled product equals one untiled call, bit for bit.
    if (level == attn::Simd::generic) continue;
    std::vector<T> whole(static_cast<std::size_t>(m * n));
    ops::kernels<T>(level).gemm(m, n, k, a.buf.data(), a.ld, b.buf.data(), b.ld, false, whole.data(), n, false,
                                false);
    REQUIRE(std::memcmp(outs[0].data(), whole.data(), whole.size() * sizeof(T)) == 0);
    // ... and so does reading the operands in place.
    std::vector<T> in_place(whole.size());
    ops::kernels<T>(level).gemm(m, n, k, a.buf.data(), a.ld, b.buf.data(), b.ld, false, in_place.data(), n, false,
                                true);
    REQUIRE(std::memcmp(in_place.data(), whole.data(), whole.size() * sizeof(T)) == 0);
  }
  attn::set_num_threads(saved_threads);
}

TEST_CASE("kernels: every level's row passes agree with the generic ones", "[kernels][simd]") {
  using T = float;
  const auto& ref = ops::kernels<T>(attn::Simd::generic);
  constexpr T ninf = -std::numeric_limits<T>::infinity();
  for (attn::Simd level : simd_levels()) {
    const auto& kern = ops::kernels<T>(level);
    attn::Rng rng(9);
    for (Index n : {1, 7, 8, 15, 16, 17, 33, 256, 259}) {
      INFO(attn::simd_name(level) << " n " << n);
      std::vector<T> z(static_cast<std::size_t>(n)), bias(z.size());
      std::vector<char> keep_c(z.size());
      for (std::size_t i = 0; i < z.size(); ++i) {
        z[i] = static_cast<T>(rng.uniform(-30.0, 30.0));
        bias[i] = static_cast<T>(rng.uniform(-2.0, 2.0));
        keep_c[i] = rng.uniform(0.0, 1.0) < 0.7;
      }
      std::unique_ptr<bool[]> keep(new bool[z.size()]);
      for (std::size_t i = 0; i < z.size(); ++i) keep[i] = keep_c[i] != 0;
      keep[0] = true;
      for (Index ce : {Index(0), n / 2, n}) {
        for (int variant = 0; variant < 3; ++variant) {
          const T* bp = variant == 1 ? bias.data() : nullptr;
          const bool* kp = variant == 2 ? keep.get() : nullptr;
          auto z1 = z, z2 = z;
          const T m1 = ref.prepare(z1.data(), n, ce, T(0.125), bp, kp);
          const T m2 = kern.prepare(z2.data(), n, ce, T(0.125), bp, kp);
          REQUIRE(m2 == Approx(m1).epsilon(1e-6).margin(1e-6));
          for (std::size_t i = 0; i < z.size(); ++i) {
            REQUIRE((z1[i] == ninf) == (z2[i] == ninf));
            if (z1[i] != ninf) REQUIRE(z2[i] == Approx(z1[i]).epsilon(1e-6).margin(1e-6));
          }
          REQUIRE(kern.row_max(z2.data(), n) == m2);
          if (m1 == ninf) continue;
          const T s1 = ref.exp_sum(z1.data(), n, m1);
          const T s2 = kern.exp_sum(z2.data(), n, m2);
          REQUIRE(s2 == Approx(s1).epsilon(1e-5));
          for (std::size_t i = 0; i < z.size(); ++i) {
            REQUIRE(z2[i] == Approx(z1[i]).epsilon(1e-5).margin(1e-30));
            REQUIRE(z2[i] >= T(0));
            REQUIRE(z2[i] <= T(1));
          }
        }
      }
    }
    // exp of the polynomial against std::exp over the whole non-positive range, -inf included.
    std::vector<T> x;
    for (double v = -100.0; v <= 0.0; v += 0.37) x.push_back(static_cast<T>(v));
    x.push_back(ninf);
    x.push_back(T(0));
    auto e = x;
    const T sum = kern.exp_sum(e.data(), static_cast<Index>(e.size()), T(0));
    double expect_sum = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double want = x[i] == ninf ? 0.0 : std::exp(static_cast<double>(x[i]));
      expect_sum += want;
      INFO(attn::simd_name(level) << " x " << x[i]);
      REQUIRE(e[i] == Approx(want).epsilon(3e-7).margin(2e-38));
    }
    REQUIRE(sum == Approx(expect_sum).epsilon(1e-6));
  }
}

TEST_CASE("kernels: the one-row products (matvec, vecmat_acc) and dense on one row, every level", "[kernels][simd]") {
  ATTN_FOR_EACH_SIMD_LEVEL();
  // widths below, at and past a register block (4 registers of 16 or 8 floats), odd ones, strided rows
  for (const Index d : {1, 7, 16, 33, 64, 100}) {
    for (const Index cols : {1, 3, 4, 5, 130}) {
      INFO("d " << d << ", cols " << cols);
      const Mat<float> K(cols, d, 3, 11 + static_cast<std::uint64_t>(d));  // row stride d + 3
      const Mat<float> q(1, d, 0, 12);
      std::vector<float> z(static_cast<std::size_t>(cols) + 1, 555.0f);
      // matvec takes contiguous rows: copy K without its padding
      std::vector<float> Kc(static_cast<std::size_t>(cols * d));
      for (Index c = 0; c < cols; ++c)
        for (Index e = 0; e < d; ++e) Kc[static_cast<std::size_t>(c * d + e)] = K.at(c, e);
      ops::matvec(Kc.data(), cols, d, q.buf.data(), z.data());
      for (Index c = 0; c < cols; ++c) {
        double want = 0;
        for (Index e = 0; e < d; ++e) want += double(K.at(c, e)) * double(q.at(0, e));
        REQUIRE(z[static_cast<std::size_t>(c)] == Approx(want).margin(1e-5).epsilon(1e-5));
      }
      REQUIRE(z[static_cast<std::size_t>(cols)] == 555.0f);  // nothing past the end
      // vecmat_acc on the strided K (ld = d + 3), accumulating onto o
      const Mat<float> zc(1, cols, 0, 13);
      Mat<float> o(1, d, 2, 14);
      const Mat<float> o0 = o;
      ops::vecmat_acc(zc.buf.data(), K.buf.data(), cols, d, K.ld, o.buf.data());
      for (Index e = 0; e < d; ++e) {
        double want = o0.at(0, e);
        for (Index c = 0; c < cols; ++c) want += double(zc.at(0, c)) * double(K.at(c, e));
        REQUIRE(o.at(0, e) == Approx(want).margin(1e-5).epsilon(1e-5));
      }
      for (Index e = d; e < o.ld; ++e) REQUIRE(o.buf[static_cast<std::size_t>(e)] == 777.0f);  // padding kept
    }
  }
  // dense on one row (its own path) against the product of several rows (ops::gemm), row by row
  const Index in = 70, out = 300;
  attn::Weight<float> w{"kernel", {in, out}, std::vector<float>(static_cast<std::size_t>(in * out))};
  attn::Weight<float> bias{"bias", {out}, std::vector<float>(static_cast<std::size_t>(out))};
  attn::Rng rng(5);
  for (auto& v : w.data) v = static_cast<float>(rng.uniform(-1.0, 1.0));
  for (auto& v : bias.data) v = static_cast<float>(rng.uniform(-1.0, 1.0));
  const Mat<float> x(3, in, 0, 15);
  std::vector<float> all(static_cast<std::size_t>(3 * out)), one(static_cast<std::size_t>(out));
  ops::dense(x.buf.data(), 3, w, &bias, all.data());
  for (Index r = 0; r < 3; ++r) {
    ops::dense(x.buf.data() + r * in, 1, w, &bias, one.data());
    for (Index j = 0; j < out; ++j)
      REQUIRE(one[static_cast<std::size_t>(j)] ==
              Approx(all[static_cast<std::size_t>(r * out + j)]).margin(1e-5).epsilon(1e-5));
  }
}

TEST_CASE("kernels: several query rows against one block (matvec_rows, vecmat_acc_rows), every level",
          "[kernels][simd]") {
  ATTN_FOR_EACH_SIMD_LEVEL();
  // row counts through every group (4, 2, 1 and their sums), widths below, at and past a register
  // block, key counts below and past a tile and past the prefetch distance
  for (const Index d : {1, 7, 16, 33, 64, 100}) {
    for (const Index cols : {1, 3, 5, 130}) {
      for (const Index rows : {1, 2, 3, 4, 5, 7, 8}) {
        INFO("d " << d << ", cols " << cols << ", rows " << rows);
        const Mat<float> K(cols, d, 0, 21 + static_cast<std::uint64_t>(d));
        const Mat<float> Vm(cols, d, 0, 22 + static_cast<std::uint64_t>(cols));
        const Mat<float> Q(rows, d, 0, 23 + static_cast<std::uint64_t>(rows));
        const Mat<float> next(40, d, 0, 24);  // the rows "read next": asked for, never changing a result
        const Index ldz = cols + 2;
        Mat<float> Z(rows, cols, 2, 25);  // its padding holds the sentinel
        ops::matvec_rows(K.buf.data(), cols, d, Q.buf.data(), rows, Z.buf.data(), ldz);
        Mat<float> Zn(rows, cols, 2, 26);
        ops::matvec_rows(K.buf.data(), cols, d, Q.buf.data(), rows, Zn.buf.data(), ldz, next.buf.data());
        for (Index r = 0; r < rows; ++r) {
          for (Index c = 0; c < cols; ++c) {
            double want = 0;
            for (Index e = 0; e < d; ++e) want += double(K.at(c, e)) * double(Q.at(r, e));
            REQUIRE(Z.at(r, c) == Approx(want).margin(1e-5).epsilon(1e-5));
            REQUIRE(Zn.at(r, c) == Z.at(r, c));
          }
          for (Index c = cols; c < ldz; ++c) REQUIRE(Z.at(r, c) == 777.0f);
        }
        // weights onto O: each element one fused multiply-add chain in key order, exactly
        const Mat<float> W(rows, cols, 2, 27);
        Mat<float> O(rows, d, 0, 28);
        const Mat<float> O0 = O;
        std::vector<float> tail(4, 999.0f);  // O is contiguous [rows, d]: its end is checked below
        O.buf.insert(O.buf.end(), tail.begin(), tail.end());
        ops::vecmat_acc_rows(W.buf.data(), W.ld, Vm.buf.data(), cols, d, rows, O.buf.data(),
                             rows % 2 == 0 ? next.buf.data() : nullptr);
        for (Index r = 0; r < rows; ++r)
          for (Index e = 0; e < d; ++e) {
            float want = O0.at(r, e);
            for (Index c = 0; c < cols; ++c) want = std::fma(W.at(r, c), Vm.at(c, e), want);
            REQUIRE(O.at(r, e) == want);
          }
        for (std::size_t i = 0; i < tail.size(); ++i) REQUIRE(O.buf[static_cast<std::size_t>(rows * d) + i] == 999.0f);
      }
    }
  }
  // double: the plain loops
  const Mat<double> K(9, 5, 0, 31), Q(3, 5, 0, 32);
  std::vector<double> Z(27);
  ops::matvec_rows(K.buf.data(), 9, 5, Q.buf.data(), 3, Z.data(), 9);
  for (Index r = 0; r < 3; ++r)
    for (Index c = 0; c < 9; ++c) {
      double want = 0;
      for (Index e = 0; e < 5; ++e) want += K.at(c, e) * Q.at(r, e);
      REQUIRE(Z[static_cast<std::size_t>(r * 9 + c)] == Approx(want).epsilon(1e-14));
    }
}

TEST_CASE("scratch: frames nest, reuse their buffers, and free the big ones", "[scratch]") {
  attn::release_scratch();
  float* outer_first = nullptr;
  {
    attn::ScratchFrame outer;
    outer_first = outer.get<float>(1000);
    float* outer_second = outer.get<float>(10);
    REQUIRE(outer_first != outer_second);
    REQUIRE(reinterpret_cast<std::uintptr_t>(outer_first) % 64 == 0);
    for (int i = 0; i < 1000; ++i) outer_first[i] = float(i);  // writable, and not touched by inner frames
    {
      attn::ScratchFrame inner;
      double* a = inner.get<double>(500);
      REQUIRE(static_cast<void*>(a) != static_cast<void*>(outer_first));
      REQUIRE(static_cast<void*>(a) != static_cast<void*>(outer_second));
      for (int i = 0; i < 500; ++i) a[i] = -1.0;
    }
    for (int i = 0; i < 1000; ++i) REQUIRE(outer_first[i] == float(i));
    {
      attn::ScratchFrame inner;  // takes the slot the last inner frame released
      REQUIRE(inner.get<float>(0) != nullptr);
    }
  }
  {
    attn::ScratchFrame again;  // the same first slot, big enough already: the same memory
    REQUIRE(again.get<float>(800) == outer_first);
  }
  const std::size_t saved_limit = attn::scratch_limit();
  REQUIRE(saved_limit == std::size_t(1) << 30);  // the documented default
  attn::set_scratch_limit(1 << 20);
  {
    attn::ScratchFrame big;
    char* p = big.get<char>((1 << 20) + 1);
    p[0] = 1;
    p[1 << 20] = 2;
    float* small = big.get<float>(100);
    small[99] = 1.0f;
  }
  attn::set_scratch_limit(saved_limit);
  REQUIRE(attn::detail::scratch_arena().top == 0);
  REQUIRE(attn::detail::scratch_arena().buffers[0].bytes() == 0);  // over the limit: not kept
  REQUIRE(attn::detail::scratch_arena().buffers[1].bytes() >= 400);  // under it: kept
  attn::release_scratch();
  for (const auto& b : attn::detail::scratch_arena().buffers) REQUIRE(b.bytes() == 0);
}
