// The attention core (ops/attention_core.hpp) and the thread pool (core/parallel.hpp): the core against
// ops::attention_reference over a sweep of shapes, strides, masks, GQA ratios, tilings and thread
// counts; hand-computed cases and a plain-loop oracle written from the formula; bit-identical results
// for any thread count, on every SIMD level the machine has (core/simd.hpp); and the multi_head layer
// against the reference path.
#include "support.hpp"

#include <atomic>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using namespace attn_test;
namespace ops = attn::ops;

namespace {

/// Restores the thread setting of the process when a test ends.
struct ThreadGuard {
  int saved = attn::num_threads();
  ~ThreadGuard() { attn::set_num_threads(saved); }
};

/// A [B, L, H, dim] buffer laid out with gaps (between heads, rows and batch items) so that every
/// stride of the views is exercised; gap cells hold a sentinel.
template <class T>
struct Heads {
  std::vector<T> buf;
  Index B, L, H, dim, s_head, s_len, s_batch;
  static constexpr double sentinel = 12345.0;

  Heads(Index b, Index l, Index h, Index d, bool gaps)
      : B(b), L(l), H(h), dim(d), s_head(gaps ? d + 1 : d), s_len(gaps ? h * (d + 1) + 3 : h * d),
        s_batch(gaps ? l * s_len + 2 : l * s_len) {
    buf.assign(static_cast<std::size_t>(std::max<Index>(B * s_batch, 1)), static_cast<T>(sentinel));
  }
  T& at(Index b, Index l, Index h, Index i) {
    return buf[static_cast<std::size_t>(b * s_batch + l * s_len + h * s_head + i)];
  }
  const T& at(Index b, Index l, Index h, Index i) const {
    return buf[static_cast<std::size_t>(b * s_batch + l * s_len + h * s_head + i)];
  }
  void fill(std::uint64_t seed, double scale = 1.0) {
    attn::Rng rng(seed);
    for (Index b = 0; b < B; ++b)
      for (Index l = 0; l < L; ++l)
        for (Index h = 0; h < H; ++h)
          for (Index i = 0; i < dim; ++i) at(b, l, h, i) = static_cast<T>(scale * rng.uniform(-1.0, 1.0));
  }
  [[nodiscard]] ops::HeadsView<T> view() const { return {buf.data(), B, L, H, dim, s_batch, s_len, s_head}; }
  [[nodiscard]] ops::HeadsOut<T> out() { return {buf.data(), B, L, H, dim, s_batch, s_len, s_head}; }
  /// The values as a contiguous [B, L, H, dim].
  [[nodiscard]] std::vector<T> packed() const {
    std::vector<T> v;
    for (Index b = 0; b < B; ++b)
      for (Index l = 0; l < L; ++l)
        for (Index h = 0; h < H; ++h)
          for (Index i = 0; i < dim; ++i) v.push_back(at(b, l, h, i));
    return v;
  }
  /// Whether every gap cell still holds the sentinel.
  [[nodiscard]] bool gaps_untouched() const {
    std::vector<bool> used(buf.size(), false);
    for (Index b = 0; b < B; ++b)
      for (Index l = 0; l < L; ++l)
        for (Index h = 0; h < H; ++h)
          for (Index i = 0; i < dim; ++i) used[static_cast<std::size_t>(b * s_batch + l * s_len + h * s_head + i)] = true;
    for (std::size_t i = 0; i < buf.size(); ++i)
      if (!used[i] && buf[i] != static_cast<T>(sentinel)) return false;
    return true;
  }
};

/// A boolean buffer (std::vector<bool> has no bool*).
struct Bools {
  std::unique_ptr<bool[]> p;
  Index n = 0;
  Bools() = default;
  explicit Bools(Index size) : p(new bool[static_cast<std::size_t>(std::max<Index>(size, 1))]()), n(size) {}
};

/// One mask configuration with its storage.
template <class T>
struct MaskCase {
  std::string name;
  bool causal = false;
  std::vector<Index> lengths;
  Bools keep;
  Index keep_sb = 0, keep_sh = 0, keep_st = 0;
  std::vector<T> bias;
  Index bias_sb = 0, bias_sh = 0, bias_st = 0;

  [[nodiscard]] ops::AttentionMask<T> mask() const {
    ops::AttentionMask<T> m;
    m.causal = causal;
    m.key_lengths = lengths.empty() ? nullptr : lengths.data();
    if (keep.p) {
      m.keep = keep.p.get();
      m.keep_sb = keep_sb;
      m.keep_sh = keep_sh;
      m.keep_st = keep_st;
    }
    if (!bias.empty()) {
      m.bias = bias.data();
      m.bias_sb = bias_sb;
      m.bias_sh = bias_sh;
      m.bias_st = bias_st;
    }
    return m;
  }
};

/// Keep mask of `rows` x S rows of random booleans (about 1 in 4 false) with the given strides.
template <class T>
void set_keep(MaskCase<T>& c, Index size, Index sb, Index sh, Index st, std::uint64_t seed) {
  c.keep = Bools(size);
  attn::Rng rng(seed);
  for (Index i = 0; i < size; ++i) c.keep.p[static_cast<std::size_t>(i)] = rng.uniform() >= 0.25;
  c.keep_sb = sb;
  c.keep_sh = sh;
  c.keep_st = st;
}
template <class T>
void set_bias(MaskCase<T>& c, Index size, Index sb, Index sh, Index st, std::uint64_t seed) {
  c.bias.resize(static_cast<std::size_t>(size));
  attn::Rng rng(seed);
  for (auto& x : c.bias) x = static_cast<T>(2.0 * rng.uniform(-1.0, 1.0));
  c.bias_sb = sb;
  c.bias_sh = sh;
  c.bias_st = st;
}

/// Every mask kind of the contract for queries [B, T], keys [B, S] and Hq heads.
template <class T>
std::vector<MaskCase<T>> mask_cases(Index B, Index Hq, Index T_, Index S, std::uint64_t seed) {
  std::vector<MaskCase<T>> v;
  const auto add = [&](std::string name) -> MaskCase<T>& {
    v.emplace_back();
    v.back().name = std::move(name);
    return v.back();
  };
  add("none");
  add("causal").causal = true;
  {
    auto& c = add("key_lengths");
    for (Index b = 0; b < B; ++b)  // 0, then S / 2 (partial), and the last one past S (clamped to S)
      c.lengths.push_back(b == 0 ? 0 : b + 1 == B ? S + 5 : S / 2);
  }
  set_keep(add("keep [T, S]"), T_ * S, 0, 0, S, seed + 1);
  set_keep(add("keep [B, S] (key padding)"), B * S, S, 0, 0, seed + 2);
  set_keep(add("keep [B, T, S]"), B * T_ * S, T_ * S, 0, S, seed + 3);
  set_keep(add("keep [B, 1, T, S]"), B * T_ * S, T_ * S, 0, S, seed + 4);
  set_keep(add("keep [B, H, T, S]"), B * Hq * T_ * S, Hq * T_ * S, T_ * S, S, seed + 5);
  set_bias(add("bias [H, T, S]"), Hq * T_ * S, 0, T_ * S, S, seed + 6);
  set_bias(add("bias [B, H, T, S]"), B * Hq * T_ * S, Hq * T_ * S, T_ * S, S, seed + 7);
  {
    auto& c = add("causal + key_lengths + keep [B, H, T, S] + bias [B, H, T, S]");
    c.causal = true;
    for (Index b = 0; b < B; ++b) c.lengths.push_back(S - b);
    set_keep(c, B * Hq * T_ * S, Hq * T_ * S, T_ * S, S, seed + 8);
    set_bias(c, B * Hq * T_ * S, Hq * T_ * S, T_ * S, S, seed + 9);
  }
  {
    auto& c = add("causal + keep [B, S] + bias [H, T, S]");
    c.causal = true;
    set_keep(c, B * S, S, 0, 0, seed + 10);
    set_bias(c, Hq * T_ * S, 0, T_ * S, S, seed + 11);
  }
  return v;
}

template <class T>
constexpr double rtol() {
  return std::is_same_v<T, float> ? 3e-5 : 1e-11;
}
template <class T>
constexpr double atol() {
  return std::is_same_v<T, float> ? 3e-6 : 1e-12;
}

struct Dims {
  Index B, T, S, Hq, Hkv, d, dv;
};

/// Runs the core and the reference on one problem and requires equal results (outputs, and the
/// weights when `with_weights`); the output view has gaps that must stay untouched.
template <class T>
void check_against_reference(const Dims& s, const MaskCase<T>& mc, const ops::AttentionCoreOptions& opt,
                             bool with_weights, std::uint64_t seed, double logit_scale = 1.0) {
  Heads<T> q(s.B, s.T, s.Hq, s.d, true), k(s.B, s.S, s.Hkv, s.d, true), v(s.B, s.S, s.Hkv, s.dv, true);
  q.fill(seed, logit_scale);
  k.fill(seed + 1);
  v.fill(seed + 2);
  Heads<T> got(s.B, s.T, s.Hq, s.dv, true), want(s.B, s.T, s.Hq, s.dv, false);
  const Index nw = s.B * s.Hq * s.T * s.S;
  std::vector<T> w_got(static_cast<std::size_t>(std::max<Index>(nw, 1)), T(-7)),
      w_want(static_cast<std::size_t>(std::max<Index>(nw, 1)), T(-9));
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(std::max<Index>(s.d, 1))));
  const auto m = mc.mask();
  ops::attention_reference(q.view(), k.view(), v.view(), want.out(), scale, m,
                           with_weights ? w_want.data() : nullptr);
  ops::attention_core(q.view(), k.view(), v.view(), got.out(), scale, m, with_weights ? w_got.data() : nullptr,
                      opt);
  INFO("mask: " << mc.name << "; B " << s.B << " T " << s.T << " S " << s.S << " Hq " << s.Hq << " Hkv "
                << s.Hkv << " d " << s.d << " dv " << s.dv << "; blocks " << opt.query_block << " x "
                << opt.key_block << "; weights " << with_weights);
  const auto g = got.packed(), w = want.packed();
  REQUIRE(all_finite(g.data(), static_cast<Index>(g.size())));
  const auto c = compare(g.data(), w.data(), {s.B, s.T, s.Hq, s.dv}, rtol<T>(), atol<T>());
  INFO(c.report);
  REQUIRE(c.ok);
  REQUIRE(got.gaps_untouched());
  if (with_weights) {
    const auto cw = compare(w_got.data(), w_want.data(), {s.B, s.Hq, s.T, s.S}, rtol<T>(), atol<T>());
    INFO(cw.report);
    REQUIRE(cw.ok);
    for (Index i = 0; i < nw; ++i)  // masked probabilities are exact zeros, as in the reference
      if (w_want[static_cast<std::size_t>(i)] == T(0)) REQUIRE(w_got[static_cast<std::size_t>(i)] == T(0));
  }
}

/// Plain loops from the formula, independent of both the core and the reference: out[b, i, h] =
/// sum_j softmax_j(scale·q·k_j + bias, over visible j) v_j, zeros when nothing is visible.
template <class T>
std::vector<double> naive_attention(const Heads<T>& q, const Heads<T>& k, const Heads<T>& v, double scale,
                                    const MaskCase<T>& mc) {
  const Index B = q.B, Tq = q.L, S = k.L, Hq = q.H, group = Hq / k.H, d = q.dim, dv = v.dim;
  std::vector<double> out;
  for (Index b = 0; b < B; ++b)
    for (Index i = 0; i < Tq; ++i)
      for (Index h = 0; h < Hq; ++h) {
        std::vector<double> z;
        std::vector<Index> idx;
        // causal is bottom-right aligned to the item's own key length (S without key lengths)
        const Index len = mc.lengths.empty() ? S : std::clamp<Index>(mc.lengths[static_cast<std::size_t>(b)], 0, S);
        for (Index j = 0; j < S; ++j) {
          bool ok = !mc.causal || j <= i + len - Tq;
          if (!mc.lengths.empty()) ok = ok && j < len;
          if (mc.keep.p)
            ok = ok && mc.keep.p[static_cast<std::size_t>(b * mc.keep_sb + h * mc.keep_sh + i * mc.keep_st + j)];
          if (!ok) continue;
          double s = 0;
          for (Index c = 0; c < d; ++c)
            s += static_cast<double>(q.at(b, i, h, c)) * static_cast<double>(k.at(b, j, h / group, c));
          s *= scale;
          if (!mc.bias.empty())
            s += static_cast<double>(mc.bias[static_cast<std::size_t>(b * mc.bias_sb + h * mc.bias_sh + i * mc.bias_st + j)]);
          z.push_back(s);
          idx.push_back(j);
        }
        double mx = -std::numeric_limits<double>::infinity();
        for (double x : z) mx = std::max(mx, x);
        double sum = 0;
        for (double& x : z) sum += (x = std::exp(x - mx));
        for (Index c = 0; c < dv; ++c) {
          double o = 0;
          for (std::size_t t = 0; t < z.size(); ++t) o += z[t] / sum * static_cast<double>(v.at(b, idx[t], h / group, c));
          out.push_back(z.empty() ? 0.0 : o);
        }
      }
  return out;
}

/// Small tilings that put block edges everywhere, and the defaults.
std::vector<ops::AttentionCoreOptions> tilings() {
  return {{.query_block = 1, .key_block = 1, .min_parallel_flops = 0},
          {.query_block = 3, .key_block = 5, .min_parallel_flops = 0},
          {.query_block = 8, .key_block = 16, .min_parallel_flops = 0},
          {}};
}

}  // namespace

TEMPLATE_TEST_CASE("attention core: hand-computed cases", "[attention_core]", float, double) {
  using T = TestType;
  ATTN_FOR_EACH_SIMD_LEVEL();
  // One query, two keys: logits 0 and ln 3 -> probabilities 1/4, 3/4; values 4 and 8 -> 7.
  std::vector<T> q{T(1)}, k{T(0), static_cast<T>(std::log(3.0))}, v{T(4), T(8)}, o{T(-1)}, w{T(-1), T(-1)};
  const auto Q = ops::heads_of<T>(q.data(), 1, 1, 1, 1, 1), K = ops::heads_of<T>(k.data(), 1, 2, 1, 1, 1),
             V = ops::heads_of<T>(v.data(), 1, 2, 1, 1, 1);
  const auto O = ops::heads_out<T>(o.data(), 1, 1, 1, 1, 1);
  ops::attention_core(Q, K, V, O, T(1), ops::AttentionMask<T>{}, w.data());
  REQUIRE(o[0] == Approx(7.0).epsilon(1e-6));
  REQUIRE(w[0] == Approx(0.25).epsilon(1e-6));
  REQUIRE(w[1] == Approx(0.75).epsilon(1e-6));

  // Causal, T = 2 < S = 3, bottom-right: query 0 sees keys 0, 1; query 1 sees all three. Equal logits
  // (q = 0) make each row the mean of the visible values.
  std::vector<T> q2{T(0), T(0)}, k2{T(1), T(2), T(3)}, v2{T(3), T(6), T(12)}, o2(2, T(-1));
  ops::AttentionMask<T> causal;
  causal.causal = true;
  ops::attention_core(ops::heads_of<T>(q2.data(), 1, 2, 1, 1, 1), ops::heads_of<T>(k2.data(), 1, 3, 1, 1, 1),
                      ops::heads_of<T>(v2.data(), 1, 3, 1, 1, 1), ops::heads_out<T>(o2.data(), 1, 2, 1, 1, 1),
                      T(1), causal);
  REQUIRE(o2[0] == Approx(4.5).epsilon(1e-6));
  REQUIRE(o2[1] == Approx(7.0).epsilon(1e-6));

  // Causal, T = 3 > S = 2: query 0 sees no key (zeros), query 1 sees key 0, query 2 sees both.
  std::vector<T> q3(3, T(0)), o3(3, T(-1));
  ops::attention_core(ops::heads_of<T>(q3.data(), 1, 3, 1, 1, 1), ops::heads_of<T>(k2.data(), 1, 2, 1, 1, 1),
                      ops::heads_of<T>(v2.data(), 1, 2, 1, 1, 1), ops::heads_out<T>(o3.data(), 1, 3, 1, 1, 1),
                      T(1), causal);
  REQUIRE(o3[0] == T(0));
  REQUIRE(o3[1] == Approx(3.0).epsilon(1e-6));
  REQUIRE(o3[2] == Approx(4.5).epsilon(1e-6));

  // Causal with key lengths, T = 2, S = 4, lengths {4, 3}: each item's mask is bottom-right aligned to
  // its own length (the queries are its last two positions). Item 0: query 0 sees keys 0..2, query 1
  // keys 0..3. Item 1 (length 3): query 0 sees keys 0..1 only (not key 2, its own next token), query 1
  // keys 0..2. Equal logits: each row is the mean of its visible values.
  std::vector<T> q4(4, T(0)), k4(8, T(0)), v4{T(1), T(2), T(4), T(8), T(16), T(32), T(64), T(128)},
      o4(4, T(-1)), w4(16, T(-1));
  const std::vector<Index> lengths{4, 3};
  ops::AttentionMask<T> ragged;
  ragged.causal = true;
  ragged.key_lengths = lengths.data();
  for (const bool reference : {false, true}) {
    const auto Q4 = ops::heads_of<T>(q4.data(), 2, 2, 1, 1, 1), K4 = ops::heads_of<T>(k4.data(), 2, 4, 1, 1, 1),
               V4 = ops::heads_of<T>(v4.data(), 2, 4, 1, 1, 1);
    const auto O4 = ops::heads_out<T>(o4.data(), 2, 2, 1, 1, 1);
    if (reference)
      ops::attention_reference(Q4, K4, V4, O4, T(1), ragged, w4.data());
    else
      ops::attention_core(Q4, K4, V4, O4, T(1), ragged, w4.data(),
                          {.query_block = 1, .key_block = 1, .min_parallel_flops = 0});
    INFO("reference path: " << reference);
    REQUIRE(o4[0] == Approx(7.0 / 3.0).epsilon(1e-6));     // item 0, query 0: (1 + 2 + 4) / 3
    REQUIRE(o4[1] == Approx(15.0 / 4.0).epsilon(1e-6));    // item 0, query 1: (1 + 2 + 4 + 8) / 4
    REQUIRE(o4[2] == Approx(48.0 / 2.0).epsilon(1e-6));    // item 1, query 0: (16 + 32) / 2
    REQUIRE(o4[3] == Approx(112.0 / 3.0).epsilon(1e-6));   // item 1, query 1: (16 + 32 + 64) / 3
    // the weights of item 1, query 0: [1/2, 1/2, 0, 0]
    REQUIRE(w4[8] == Approx(0.5).epsilon(1e-6));
    REQUIRE(w4[9] == Approx(0.5).epsilon(1e-6));
    REQUIRE(w4[10] == T(0));
    REQUIRE(w4[11] == T(0));
  }
}

TEMPLATE_TEST_CASE("attention core: head dims 1..128 and T != S against the reference", "[attention_core]",
                   float, double) {
  using T = TestType;
  ATTN_FOR_EACH_SIMD_LEVEL();
  MaskCase<T> none, causal;
  none.name = "none";
  causal.name = "causal";
  causal.causal = true;
  std::uint64_t seed = 100;
  for (Index d : {1, 2, 3, 5, 7, 8, 16, 31, 33, 64, 65, 127, 128})
    for (auto [Tq, S] : {std::pair<Index, Index>{1, 1}, {9, 23}, {23, 9}, {70, 70}})
      for (const auto& opt : {ops::AttentionCoreOptions{.query_block = 4, .key_block = 8, .min_parallel_flops = 0},
                              ops::AttentionCoreOptions{}}) {
        const Dims dims{2, Tq, S, 2, 2, d, d == 1 ? 3 : d};
        check_against_reference<T>(dims, none, opt, false, seed++);
        check_against_reference<T>(dims, causal, opt, false, seed++);
      }
  // A value width different from the key width, and a long sequence crossing many default blocks.
  check_against_reference<T>({1, 300, 700, 2, 1, 24, 40}, causal, {}, false, seed++);
  check_against_reference<T>({1, 700, 300, 2, 2, 24, 8}, none, {}, false, seed++);
}

TEMPLATE_TEST_CASE("attention core: every mask kind, GQA ratio and tiling against the reference",
                   "[attention_core]", float, double) {
  using T = TestType;
  ATTN_FOR_EACH_SIMD_LEVEL();
  std::uint64_t seed = 1000;
  for (auto [Hq, Hkv] : {std::pair<Index, Index>{2, 2}, {4, 2}, {8, 2}, {4, 1}})  // GQA 1, 2, 4, MQA
    for (auto [Tq, S] : {std::pair<Index, Index>{13, 13}, {7, 19}, {19, 7}}) {
      const Dims dims{3, Tq, S, Hq, Hkv, 6, 5};
      for (const auto& mc : mask_cases<T>(dims.B, Hq, Tq, S, seed))
        for (const auto& opt : tilings()) {
          check_against_reference<T>(dims, mc, opt, false, seed++);
          check_against_reference<T>(dims, mc, opt, true, seed++);
        }
    }
}

TEMPLATE_TEST_CASE("attention core: agrees with a plain-loop oracle on every mask kind", "[attention_core]",
                   float, double) {
  using T = TestType;
  ATTN_FOR_EACH_SIMD_LEVEL();
  const Index B = 2, Tq = 6, S = 9, Hq = 4, Hkv = 2, d = 3, dv = 2;
  Heads<T> q(B, Tq, Hq, d, false), k(B, S, Hkv, d, false), v(B, S, Hkv, dv, false);
  q.fill(1, 2.0);
  k.fill(2);
  v.fill(3);
  for (const auto& mc : mask_cases<T>(B, Hq, Tq, S, 77)) {
    Heads<T> o(B, Tq, Hq, dv, false);
    ops::attention_core(q.view(), k.view(), v.view(), o.out(), static_cast<T>(0.7), mc.mask(), nullptr,
                        {.query_block = 4, .key_block = 4, .min_parallel_flops = 0});
    const auto want = naive_attention(q, k, v, static_cast<double>(static_cast<T>(0.7)), mc);
    const auto got = o.packed();
    INFO("mask: " << mc.name);
    const auto c = compare(got.data(), want.data(), {B, Tq, Hq, dv}, rtol<T>(), atol<T>());
    INFO(c.report);
    REQUIRE(c.ok);
  }
}

TEMPLATE_TEST_CASE("attention core: fully masked rows give zeros, never NaN", "[attention_core]", float,
                   double) {
  using T = TestType;
  ATTN_FOR_EACH_SIMD_LEVEL();
  const Index B = 2, Tq = 5, S = 7, H = 2, d = 4;
  Heads<T> q(B, Tq, H, d, false), k(B, S, H, d, false), v(B, S, H, d, false);
  q.fill(5);
  k.fill(6);
  v.fill(7);
  const T inf = std::numeric_limits<T>::infinity();
  std::vector<MaskCase<T>> cases(4);
  cases[0].name = "key_lengths 0";
  cases[0].lengths = {0, 0};
  cases[1].name = "keep all false";
  set_keep(cases[1], Tq * S, 0, 0, S, 1);
  for (Index i = 0; i < Tq * S; ++i) cases[1].keep.p[static_cast<std::size_t>(i)] = false;
  cases[2].name = "bias -inf";
  cases[2].bias.assign(static_cast<std::size_t>(H * Tq * S), -inf);
  cases[2].bias_sh = Tq * S;
  cases[2].bias_st = S;
  cases[3].name = "keep: some rows all false";
  set_keep(cases[3], Tq * S, 0, 0, S, 2);
  for (Index j = 0; j < S; ++j) cases[3].keep.p[static_cast<std::size_t>(2 * S + j)] = false;
  for (const auto& mc : cases)
    for (bool weights : {false, true})
      for (Index qb : {1, 2, 64}) {
        INFO(mc.name << ", weights " << weights << ", query block " << qb);
        Heads<T> o(B, Tq, H, d, false);
        std::vector<T> w(static_cast<std::size_t>(B * H * Tq * S), T(-3));
        ops::attention_core(q.view(), k.view(), v.view(), o.out(), T(1), mc.mask(), weights ? w.data() : nullptr,
                            {.query_block = qb, .key_block = 3, .min_parallel_flops = 0});
        const auto g = o.packed();
        REQUIRE(all_finite(g.data(), static_cast<Index>(g.size())));
        for (Index b = 0; b < B; ++b)
          for (Index i = 0; i < Tq; ++i)
            for (Index h = 0; h < H; ++h) {
              const bool dead = &mc != &cases[3] || i == 2;
              for (Index c = 0; c < d; ++c)
                if (dead) REQUIRE(o.at(b, i, h, c) == T(0));
              if (weights && dead)
                for (Index j = 0; j < S; ++j)
                  REQUIRE(w[static_cast<std::size_t>(((b * H + h) * Tq + i) * S + j)] == T(0));
            }
      }
}

TEMPLATE_TEST_CASE("attention core: logits of magnitude 1e4 stay finite and equal the reference",
                   "[attention_core]", float, double) {
  using T = TestType;
  ATTN_FOR_EACH_SIMD_LEVEL();
  // Integer-valued queries and keys with scale 1: every logit is an exact integer up to ~3e4, so the
  // reference's logits and the core's are the same numbers and only exp rounding differs.
  const Index B = 1, Tq = 9, S = 33, H = 2, d = 3;
  Heads<T> q(B, Tq, H, d, false), k(B, S, H, d, false), v(B, S, H, d, false);
  attn::Rng rng(9);
  for (auto& x : q.buf) x = static_cast<T>(std::floor(rng.uniform(-200.0, 200.0)));
  for (auto& x : k.buf) x = static_cast<T>(std::floor(rng.uniform(-60.0, 60.0)));
  v.fill(10);
  for (const auto& mc : mask_cases<T>(B, H, Tq, S, 5)) {
    if (!mc.bias.empty()) continue;  // random biases are not integers
    for (bool weights : {false, true}) {
      Heads<T> got(B, Tq, H, d, false), want(B, Tq, H, d, false);
      std::vector<T> wg(static_cast<std::size_t>(B * H * Tq * S)), ww(wg.size());
      ops::attention_reference(q.view(), k.view(), v.view(), want.out(), T(1), mc.mask(),
                               weights ? ww.data() : nullptr);
      ops::attention_core(q.view(), k.view(), v.view(), got.out(), T(1), mc.mask(), weights ? wg.data() : nullptr,
                          {.query_block = 4, .key_block = 8, .min_parallel_flops = 0});
      INFO(mc.name << ", weights " << weights);
      const auto g = got.packed(), w = want.packed();
      REQUIRE(all_finite(g.data(), static_cast<Index>(g.size())));
      double max_logit = 0;
      for (Index i = 0; i < Tq; ++i)
        for (Index j = 0; j < S; ++j) {
          double s = 0;
          for (Index c = 0; c < d; ++c) s += static_cast<double>(q.at(0, i, 0, c) * k.at(0, j, 0, c));
          max_logit = std::max(max_logit, std::abs(s));
        }
      REQUIRE(max_logit > 1e4);
      const auto c = compare(g.data(), w.data(), {B, Tq, H, d}, rtol<T>(), atol<T>());
      INFO(c.report);
      REQUIRE(c.ok);
      if (weights) {
        const auto cw = compare(wg.data(), ww.data(), {B, H, Tq, S}, rtol<T>(), atol<T>());
        INFO(cw.report);
        REQUIRE(cw.ok);
      }
    }
  }
}

/// Grouped-query heads with gaps between rows (B = 2, 37 queries, 45 keys, 4 query heads on 2 kv heads),
/// filled from seed, seed + 1, seed + 2: the problem of the thread and task-grouping tests.
template <class T>
struct GroupedProblem {
  static constexpr Index B = 2, Tq = 37, S = 45, Hq = 4, Hkv = 2, d = 16, dv = 12;
  struct Qkv {
    Heads<T> q{B, Tq, Hq, d, true}, k{B, S, Hkv, d, true}, v{B, S, Hkv, dv, true};
  } qkv;
  explicit GroupedProblem(std::uint64_t seed) {
    qkv.q.fill(seed);
    qkv.k.fill(seed + 1);
    qkv.v.fill(seed + 2);
  }
};

TEMPLATE_TEST_CASE("attention core: bit-identical results for 1, 2 and 3 threads", "[attention_core][threads]",
                   float, double) {
  using T = TestType;
  ATTN_FOR_EACH_SIMD_LEVEL();
  ThreadGuard guard;
  using P = GroupedProblem<T>;
  constexpr Index B = P::B, Tq = P::Tq, S = P::S, Hq = P::Hq, dv = P::dv;
  const P p(21);
  const auto& [q, k, v] = p.qkv;
  for (const auto& mc : mask_cases<T>(B, Hq, Tq, S, 31))
    for (bool weights : {false, true})
      for (const auto& opt : {ops::AttentionCoreOptions{.query_block = 5, .key_block = 7, .min_parallel_flops = 0},
                              ops::AttentionCoreOptions{.min_parallel_flops = 0}}) {
        std::vector<std::vector<T>> outs, ws;
        for (int threads : {1, 2, 3}) {
          attn::set_num_threads(threads);
          Heads<T> o(B, Tq, Hq, dv, true);
          std::vector<T> w(static_cast<std::size_t>(B * Hq * Tq * S), T(0));
          ops::attention_core(q.view(), k.view(), v.view(), o.out(), T(0.25), mc.mask(),
                              weights ? w.data() : nullptr, opt);
          outs.push_back(o.buf);
          ws.push_back(w);
        }
        INFO(mc.name << ", weights " << weights << ", blocks " << opt.query_block);
        for (std::size_t t = 1; t < outs.size(); ++t) {
          REQUIRE(std::memcmp(outs[0].data(), outs[t].data(), outs[0].size() * sizeof(T)) == 0);
          REQUIRE(std::memcmp(ws[0].data(), ws[t].data(), ws[0].size() * sizeof(T)) == 0);
        }
      }
}

TEMPLATE_TEST_CASE("attention core: grouping query tiles into tasks never changes a bit", "[attention_core]",
                   float, double) {
  // A task runs several query tiles of one (batch, head) over each key block, packed once (packed
  // kernels); every row must come out as when each tile runs alone.
  using T = TestType;
  ATTN_FOR_EACH_SIMD_LEVEL();
  ThreadGuard guard;
  using P = GroupedProblem<T>;
  constexpr Index B = P::B, Tq = P::Tq, S = P::S, Hq = P::Hq, dv = P::dv;
  const P p(41);
  const auto& [q, k, v] = p.qkv;
  for (int threads : {1, 2}) {
    attn::set_num_threads(threads);
    for (const auto& mc : mask_cases<T>(B, Hq, Tq, S, 44)) {
      std::vector<std::vector<T>> outs;
      for (Index per_task : {1, 2, 3, 16}) {
        Heads<T> o(B, Tq, Hq, dv, true);
        ops::attention_core(q.view(), k.view(), v.view(), o.out(), T(0.25), mc.mask(), nullptr,
                            {.query_block = 5, .key_block = 7, .min_parallel_flops = 0,
                             .query_blocks_per_task = per_task});
        outs.push_back(o.buf);
      }
      INFO(mc.name << ", threads " << threads);
      for (std::size_t t = 1; t < outs.size(); ++t)
        REQUIRE(std::memcmp(outs[0].data(), outs[t].data(), outs[0].size() * sizeof(T)) == 0);
    }
  }
}

TEMPLATE_TEST_CASE("attention core: asking for the weights never changes the output", "[attention_core]", float,
                   double) {
  using T = TestType;
  ATTN_FOR_EACH_SIMD_LEVEL();
  const Index B = 2, Tq = 29, S = 41, Hq = 4, Hkv = 2, d = 9, dv = 7;
  Heads<T> q(B, Tq, Hq, d, false), k(B, S, Hkv, d, false), v(B, S, Hkv, dv, false);
  q.fill(61, 3.0);
  k.fill(62);
  v.fill(63);
  for (const auto& mc : mask_cases<T>(B, Hq, Tq, S, 64))
    for (const auto& opt : tilings()) {
      Heads<T> o1(B, Tq, Hq, dv, false), o2(B, Tq, Hq, dv, false);
      std::vector<T> w(static_cast<std::size_t>(B * Hq * Tq * S));
      ops::attention_core(q.view(), k.view(), v.view(), o1.out(), T(0.3), mc.mask(), nullptr, opt);
      ops::attention_core(q.view(), k.view(), v.view(), o2.out(), T(0.3), mc.mask(), w.data(), opt);
      INFO(mc.name << ", blocks " << opt.query_block << " x " << opt.key_block);
      REQUIRE(std::memcmp(o1.buf.data(), o2.buf.data(), o1.buf.size() * sizeof(T)) == 0);
    }
}

TEMPLATE_TEST_CASE("attention core: GQA reads shared K/V heads in place (equals MHA on repeated heads)",
                   "[attention_core]", float, double) {
  using T = TestType;
  const Index B = 2, Tq = 11, S = 14, Hq = 8, d = 5;
  for (Index Hkv : {1, 2, 4, 8}) {
    const Index group = Hq / Hkv;
    Heads<T> q(B, Tq, Hq, d, true), k(B, S, Hkv, d, true), v(B, S, Hkv, d, true);
    q.fill(41);
    k.fill(42);
    v.fill(43);
    Heads<T> kr(B, S, Hq, d, false), vr(B, S, Hq, d, false);  // heads repeated: the copy GQA avoids
    for (Index b = 0; b < B; ++b)
      for (Index j = 0; j < S; ++j)
        for (Index h = 0; h < Hq; ++h)
          for (Index c = 0; c < d; ++c) {
            kr.at(b, j, h, c) = k.at(b, j, h / group, c);
            vr.at(b, j, h, c) = v.at(b, j, h / group, c);
          }
    MaskCase<T> mc;
    mc.causal = true;
    Heads<T> o1(B, Tq, Hq, d, false), o2(B, Tq, Hq, d, false);
    ops::attention_core(q.view(), k.view(), v.view(), o1.out(), T(0.5), mc.mask());
    ops::attention_core(q.view(), kr.view(), vr.view(), o2.out(), T(0.5), mc.mask());
    INFO("Hkv " << Hkv);
    REQUIRE(o1.packed() == o2.packed());
  }
}

TEMPLATE_TEST_CASE("attention core: a bias periodic over the batch equals its copy per item",
                   "[attention_core]", float, double) {
  using T = TestType;
  // 6 batch items (windows of 2 images), a bias per window position: period 3
  const Index B = 6, period = 3, Tq = 9, S = 9, Hq = 2, d = 4;
  Heads<T> q(B, Tq, Hq, d, true), k(B, S, Hq, d, true), v(B, S, Hq, d, true);
  q.fill(51);
  k.fill(52);
  v.fill(53);
  MaskCase<T> periodic, copied;
  set_bias(periodic, period * Hq * Tq * S, Hq * Tq * S, Tq * S, S, 54);
  copied.bias.resize(static_cast<std::size_t>(B * Hq * Tq * S));
  for (Index b = 0; b < B; ++b)
    std::copy_n(periodic.bias.begin() + (b % period) * Hq * Tq * S, Hq * Tq * S,
                copied.bias.begin() + b * Hq * Tq * S);
  copied.bias_sb = Hq * Tq * S;
  copied.bias_sh = Tq * S;
  copied.bias_st = S;
  auto pm = periodic.mask();
  pm.bias_period = period;
  Heads<T> o1(B, Tq, Hq, d, false), o2(B, Tq, Hq, d, false), o3(B, Tq, Hq, d, false);
  std::vector<T> w1(static_cast<std::size_t>(B * Hq * Tq * S)), w2(w1.size());
  ops::attention_core(q.view(), k.view(), v.view(), o1.out(), T(0.5), pm, w1.data());
  ops::attention_core(q.view(), k.view(), v.view(), o2.out(), T(0.5), copied.mask(), w2.data());
  REQUIRE(o1.packed() == o2.packed());
  REQUIRE(w1 == w2);
  // the reference path reads it the same way
  ops::attention_reference(q.view(), k.view(), v.view(), o3.out(), T(0.5), pm);
  const auto got = o1.packed(), want = o3.packed();
  const auto c = compare(got.data(), want.data(), {B, Tq, Hq, d}, rtol<T>(), atol<T>());
  INFO(c.report);
  REQUIRE(c.ok);
  // the period is honoured: reading one bias for every item gives another result
  REQUIRE_FALSE(o1.packed() == [&] {
    auto m = periodic.mask();
    m.bias_sb = 0;  // every item reads item 0's bias
    Heads<T> o(B, Tq, Hq, d, false);
    ops::attention_core(q.view(), k.view(), v.view(), o.out(), T(0.5), m);
    return o.packed();
  }());
}

TEMPLATE_TEST_CASE("attention core: fully masked key blocks are skipped, not computed", "[attention_core]",
                   float, double) {
  using T = TestType;
  // Keys past key_lengths, and key blocks that a boolean mask drops for every query, hold NaN in K and
  // V: the reference multiplies them (NaN·0 = NaN); the core must never touch them.
  const Index B = 2, Tq = 6, S = 24, H = 2, d = 4;
  Heads<T> q(B, Tq, H, d, false), k(B, S, H, d, false), v(B, S, H, d, false);
  q.fill(51);
  k.fill(52);
  v.fill(53);
  Heads<T> k_clean = k, v_clean = v;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  MaskCase<T> mc;
  mc.lengths = {20, 13};
  set_keep(mc, Tq * S, 0, 0, S, 3);
  for (Index i = 0; i < Tq; ++i)
    for (Index j = 8; j < 16; ++j) mc.keep.p[static_cast<std::size_t>(i * S + j)] = false;
  for (Index b = 0; b < B; ++b)
    for (Index j = 0; j < S; ++j)
      if ((j >= 8 && j < 16) || j >= mc.lengths[static_cast<std::size_t>(b)])
        for (Index h = 0; h < H; ++h)
          for (Index c = 0; c < d; ++c) k.at(b, j, h, c) = v.at(b, j, h, c) = nan;
  for (bool weights : {false, true}) {
    Heads<T> got(B, Tq, H, d, false), want(B, Tq, H, d, false);
    std::vector<T> wg(static_cast<std::size_t>(B * H * Tq * S)), ww(wg.size());
    ops::attention_core(q.view(), k.view(), v.view(), got.out(), T(1), mc.mask(), weights ? wg.data() : nullptr,
                        {.query_block = 3, .key_block = 8, .min_parallel_flops = 0});
    ops::attention_reference(q.view(), k_clean.view(), v_clean.view(), want.out(), T(1), mc.mask(),
                             weights ? ww.data() : nullptr);
    INFO("weights " << weights);
    const auto g = got.packed(), w = want.packed();
    const auto c = compare(g.data(), w.data(), {B, Tq, H, d}, rtol<T>(), atol<T>());
    INFO(c.report);
    REQUIRE(c.ok);
  }
}

TEMPLATE_TEST_CASE("attention core: empty query or key sequences", "[attention_core]", float, double) {
  using T = TestType;
  for (bool weights : {false, true}) {
    // T = 0: nothing to compute, nothing written.
    Heads<T> q0(2, 0, 2, 3, false), k(2, 4, 2, 3, false), v(2, 4, 2, 3, false), o0(2, 0, 2, 3, false);
    k.fill(1);
    v.fill(2);
    std::vector<T> w(1, T(5));
    ops::attention_core(q0.view(), k.view(), v.view(), o0.out(), T(1), ops::AttentionMask<T>{},
                        weights ? w.data() : nullptr);
    REQUIRE(w[0] == T(5));
    // S = 0: every query sees nothing -> zeros.
    Heads<T> q(2, 3, 2, 3, false), k0(2, 0, 2, 3, false), v0(2, 0, 2, 3, false), o(2, 3, 2, 3, true);
    q.fill(3);
    ops::attention_core(q.view(), k0.view(), v0.view(), o.out(), T(1), ops::AttentionMask<T>{},
                        weights ? w.data() : nullptr);
    for (T x : o.packed()) REQUIRE(x == T(0));
    REQUIRE(o.gaps_untouched());
  }
}

TEST_CASE("attention core: inconsistent views and tilings are rejected", "[attention_core]") {
  std::vector<float> buf(4096, 0.0f);
  const auto q = ops::heads_of<float>(buf.data(), 2, 5, 4, 8, 32);
  const auto k = ops::heads_of<float>(buf.data(), 2, 6, 2, 8, 16);
  const auto v = ops::heads_of<float>(buf.data(), 2, 6, 2, 3, 6);
  auto out = ops::heads_out<float>(buf.data() + 1000, 2, 5, 4, 3, 12);
  const ops::AttentionMask<float> m;
  REQUIRE_NOTHROW(ops::attention_core(q, k, v, out, 1.0f, m));
  const auto bad = [&](ops::HeadsView<float> q2, ops::HeadsView<float> k2, ops::HeadsView<float> v2,
                       ops::HeadsOut<float> o2, const std::string& what) {
    INFO(what);
    REQUIRE_THROWS_AS(ops::attention_core(q2, k2, v2, o2, 1.0f, m), attn::ShapeError);
    REQUIRE_THROWS_WITH(ops::attention_core(q2, k2, v2, o2, 1.0f, m), Catch::Matchers::Contains(what));
  };
  bad(q, ops::heads_of<float>(buf.data(), 3, 6, 2, 8, 16), v, out, "batch sizes differ");
  bad(q, k, ops::heads_of<float>(buf.data(), 2, 7, 2, 3, 6), out, "keys and values differ in length");
  bad(q, k, ops::heads_of<float>(buf.data(), 2, 6, 1, 3, 6), out, "differ in head count");
  bad(q, ops::heads_of<float>(buf.data(), 2, 6, 2, 7, 16), ops::heads_of<float>(buf.data(), 2, 6, 2, 3, 6), out,
      "differ in head dim");
  bad(q, ops::heads_of<float>(buf.data(), 2, 6, 3, 8, 24), ops::heads_of<float>(buf.data(), 2, 6, 3, 3, 9), out,
      "multiple of the key/value head count");
  bad(q, k, v, ops::heads_out<float>(buf.data() + 1000, 2, 5, 4, 4, 16), "the output must be");
  REQUIRE_THROWS_AS(ops::attention_core(q, k, v, out, 1.0f, m, nullptr, {.query_block = 0}), attn::ConfigError);
  REQUIRE_THROWS_WITH(ops::attention_core(q, k, v, out, 1.0f, m, nullptr, {.key_block = -2}),
                      Catch::Matchers::Contains("must be positive, got " +
                                                std::to_string(ops::AttentionCoreOptions{}.query_block) + " and -2"));
  REQUIRE_THROWS_WITH(ops::attention_core(q, k, v, out, 1.0f, m, nullptr, {.query_blocks_per_task = 0}),
                      Catch::Matchers::Contains("query_blocks_per_task must be positive, got 0"));
  // The entry point every layer calls is the core.
  REQUIRE_THROWS_AS(ops::attention(q, ops::heads_of<float>(buf.data(), 3, 6, 2, 8, 16), v, out, 1.0f, m),
                    attn::ShapeError);
}

TEST_CASE("threads: set_num_threads validates and num_threads reads it", "[threads]") {
  ThreadGuard guard;
  REQUIRE(attn::num_threads() >= 1);
  attn::set_num_threads(3);
  REQUIRE(attn::num_threads() == 3);
  for (int bad : {0, -1, -8}) {
    REQUIRE_THROWS_AS(attn::set_num_threads(bad), attn::ConfigError);
    REQUIRE_THROWS_WITH(attn::set_num_threads(bad), "attn::set_num_threads: the number of threads must be at "
                                                    "least 1, got " + std::to_string(bad));
  }
  REQUIRE(attn::num_threads() == 3);
}

TEST_CASE("threads: parallel_for runs every task once, statically, nesting stays serial, errors propagate",
          "[threads]") {
  ThreadGuard guard;
  for (int threads : {1, 2, 4}) {
    attn::set_num_threads(threads);
    for (std::int64_t n : {0, 1, 2, 3, 17, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
      attn::parallel_for(n, [&](std::int64_t i) { hits[static_cast<std::size_t>(i)]++; });
      for (const auto& h : hits) REQUIRE(h.load() == 1);
    }
    // The share of each task is fixed by (task, shares): share s runs s, s + P, ...
    std::vector<int> owner(40, -1);
    const int shares = attn::shares_for(40);
    REQUIRE(shares == std::min(threads, 40));
    std::atomic<int> inside{0}, nested_serial{0};  // Catch's REQUIRE is not for worker threads
    attn::parallel_shares(shares, [&](int s, int p) {
      inside += attn::in_parallel_share() ? 1 : 0;
      nested_serial += attn::shares_for(100) == 1 ? 1 : 0;  // nested kernels stay serial
      for (int i = s; i < 40; i += p) owner[static_cast<std::size_t>(i)] = s;
    });
    REQUIRE(inside.load() == shares);
    REQUIRE(nested_serial.load() == shares);
    REQUIRE_FALSE(attn::in_parallel_share());
    for (int i = 0; i < 40; ++i) REQUIRE(owner[static_cast<std::size_t>(i)] == i % shares);
    REQUIRE_THROWS_WITH(attn::parallel_shares(shares, [](int s, int) {
                          if (s == 0 || s == 1) throw std::runtime_error("share failed");
                        }),
                        "share failed");
    // The pool is still usable after an exception.
    std::atomic<int> count{0};
    attn::parallel_for(10, [&](std::int64_t) { count++; });
    REQUIRE(count.load() == 10);
  }
}

TEST_CASE("multi_head: the layer on the core equals the reference path", "[attention_core][multi_head]") {
  ThreadGuard guard;
  const attn::MultiHeadAttention<double> layer({.embed_dim = 24, .num_heads = 3, .use_bias = true}, 7);
  const auto x = random_tensor<double, 3>({2, 70, 24}, 8);
  attn::Tensor<bool, 2> pad(2, 70);
  for (Index b = 0; b < 2; ++b)
    for (Index j = 0; j < 70; ++j) pad(b, j) = !(b == 1 && j >= 50);
  for (int threads : {1, 2}) {
    attn::set_num_threads(threads);
    for (bool masked : {false, true}) {
      attn::AttentionMasks<double> mask;
      if (masked) mask.key_padding = attn::KeyPaddingMask(pad);
      const auto r = layer.forward_with_weights(x, mask);
      const auto y = layer.forward(x, mask);
      // Before the switch: the same projections around ops::attention_reference.
      const auto& w = layer.parameters();
      const Index B = 2, L = 70, E = 24, H = 3, d = 8;
      attn::Tensor<double, 3> qkv(B, L, 3 * E), ctx(B, L, E), want(B, L, E);
      attn::Tensor<double, 4> weights(B, H, L, L);
      attn::ops::dense(x.data(), B * L, w[0], &w[1], qkv.data());
      const auto bound = attn::bind_masks(mask, B, H, L, L, "multi_head");
      const attn::ops::AttentionMask<double>& m = bound.core;
      ops::attention_reference(ops::heads_of<double>(qkv.data(), B, L, H, d, 3 * E),
                               ops::heads_of<double>(qkv.data() + E, B, L, H, d, 3 * E),
                               ops::heads_of<double>(qkv.data() + 2 * E, B, L, H, d, 3 * E),
                               ops::heads_out<double>(ctx.data(), B, L, H, d, E), 1.0 / std::sqrt(8.0), m,
                               weights.data());
      attn::ops::dense(ctx.data(), B * L, w[2], &w[3], want.data());
      INFO("threads " << threads << ", masked " << masked);
      ATTN_REQUIRE_CLOSE(y, want, 1e-11, 1e-12);
      ATTN_REQUIRE_CLOSE(r.output, want, 1e-11, 1e-12);
      ATTN_REQUIRE_CLOSE(r.weights, weights, 1e-11, 1e-12);
    }
  }
}
