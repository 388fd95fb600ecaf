// group_query: an independent loop oracle (projections, RoPE from its formula, K/V head repetition,
// softmax, output projection), the RoPE op on hand-computed values and its relative-position property,
// identities with multi_head, the mask contract, validation messages and log lines.
#include "support.hpp"
#include "support/golden.hpp"

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace {

using attn::Index;
using attn::Json;
using attn::Shape;
using attn_test::random_any;
using attn_test::random_tensor;
using GQA = attn::GroupedQueryAttention<double>;
using Cfg = attn::GroupedQueryAttentionConfig;
using MHA = attn::MultiHeadAttention<double>;

/// Captures every log line (at every level) for its lifetime, then restores the default sink and the
/// previous level.
struct LogCapture {
  std::vector<std::pair<attn::LogLevel, std::string>> lines;
  attn::LogLevel saved = attn::log_level();
  LogCapture() {
    attn::set_log_level(attn::LogLevel::debug);
    attn::set_log_sink([this](attn::LogLevel l, std::string_view m) { lines.emplace_back(l, std::string(m)); });
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  ~LogCapture() {
    attn::set_log_sink(nullptr);
    attn::set_log_level(saved);
  }
};

using KeepFn = std::function<bool(Index b, Index h, Index i, Index j)>;

struct Reference {
  attn::Tensor<double, 3> y;
  attn::Tensor<double, 4> p;  // [B, H, L, L]
};

/// Plain loops, written from the formulas of the spec; only the layer's trainable weights are read
/// (the RoPE angles are recomputed here from ω_i = 1 / theta^(2i/r)).
Reference oracle(const GQA& layer, const attn::Tensor<double, 3>& x, const KeepFn& keep = {}) {
  const Cfg& c = layer.config();
  const auto& W = layer.parameters();
  const Index B = x.dimension(0), L = x.dimension(1), D = c.d_model, H = c.n_head, Hkv = c.n_kv_head;
  const Index d = D / H, g = H / Hkv;
  Index r = static_cast<Index>(static_cast<double>(d) * c.rope_percentage);
  if (r % 2 == 1) r -= 1;
  if (!c.use_rope) r = 0;

  auto project = [&](const std::string& name, const attn::Tensor<double, 3>& in) {
    const attn::Weight<double>* k = W.find(name + "/kernel");
    const attn::Weight<double>* bias = W.find(name + "/bias");
    REQUIRE(k != nullptr);
    REQUIRE((bias != nullptr) == (c.use_bias || (name == "w_o" ? c.proj_bias : c.qkv_bias)));
    const Index n_in = k->shape.at(0), n_out = k->shape.at(1);
    attn::Tensor<double, 3> out(B, L, n_out);
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < L; ++t)
        for (Index o = 0; o < n_out; ++o) {
          double s = bias ? bias->data[static_cast<std::size_t>(o)] : 0.0;
          for (Index i = 0; i < n_in; ++i) s += in(b, t, i) * k->data[static_cast<std::size_t>(i * n_out + o)];
          out(b, t, o) = s;
        }
    return out;
  };
  const auto q = project("w_q", x);
  const auto k = project("w_k", x);
  const auto v = project("w_v", x);
  REQUIRE(q.dimension(2) == H * d);
  REQUIRE(k.dimension(2) == Hkv * d);

  // [B, H, L, d]: query heads as they are, K/V heads repeated g times consecutively (kv head h / g).
  auto to_heads = [&](const attn::Tensor<double, 3>& t, bool repeat, bool rotate) {
    attn::Tensor<double, 4> o(B, H, L, d);
    for (Index b = 0; b < B; ++b)
      for (Index h = 0; h < H; ++h)
        for (Index l = 0; l < L; ++l)
          for (Index f = 0; f < d; ++f) o(b, h, l, f) = t(b, l, (repeat ? h / g : h) * d + f);
    if (rotate)
      for (Index b = 0; b < B; ++b)
        for (Index h = 0; h < H; ++h)
          for (Index l = 0; l < L; ++l)
            for (Index i = 0; i < r / 2; ++i) {
              const double omega =
                  1.0 / std::pow(c.rope_theta, 2.0 * static_cast<double>(i) / static_cast<double>(r));
              const double angle = static_cast<double>(l) * omega;
              const double x0 = o(b, h, l, 2 * i), x1 = o(b, h, l, 2 * i + 1);
              o(b, h, l, 2 * i) = x0 * std::cos(angle) - x1 * std::sin(angle);
              o(b, h, l, 2 * i + 1) = x0 * std::sin(angle) + x1 * std::cos(angle);
            }
    return o;
  };
  const auto Q = to_heads(q, false, true);
  const auto K = to_heads(k, true, true);
  const auto V = to_heads(v, true, false);

  Reference ref{attn::Tensor<double, 3>(B, L, D), attn::Tensor<double, 4>(B, H, L, L)};
  ref.p.setZero();
  attn::Tensor<double, 3> ctx(B, L, D);
  ctx.setZero();
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < H; ++h)
      for (Index i = 0; i < L; ++i) {
        std::vector<double> z(static_cast<std::size_t>(L), 0.0);
        std::vector<bool> ok(static_cast<std::size_t>(L), true);
        double mx = -1e300;
        bool any = false;
        for (Index j = 0; j < L; ++j) {
          double s = 0;
          for (Index f = 0; f < d; ++f) s += Q(b, h, i, f) * K(b, h, j, f);
          s /= std::sqrt(static_cast<double>(d));
          ok[static_cast<std::size_t>(j)] = !keep || keep(b, h, i, j);
          z[static_cast<std::size_t>(j)] = s;
          if (ok[static_cast<std::size_t>(j)]) {
            mx = std::max(mx, s);
            any = true;
          }
        }
        if (!any) continue;  // fully masked row: zero weights, zero context
        double sum = 0;
        for (Index j = 0; j < L; ++j) {
          const auto u = static_cast<std::size_t>(j);
          z[u] = ok[u] ? std::exp(z[u] - mx) : 0.0;
          sum += z[u];
        }
        for (Index j = 0; j < L; ++j) {
          ref.p(b, h, i, j) = z[static_cast<std::size_t>(j)] / sum;
          for (Index f = 0; f < d; ++f) ctx(b, i, h * d + f) += ref.p(b, h, i, j) * V(b, h, j, f);
        }
      }
  ref.y = project("w_o", ctx);
  return ref;
}

/// Non-zero biases, so that they are exercised.
void set_biases(GQA& layer) {
  std::size_t n = 0;
  for (auto& w : layer.parameters()) {
    if (!w.trainable || w.shape.size() != 1) continue;
    for (std::size_t i = 0; i < w.data.size(); ++i) w.data[i] = 0.05 * static_cast<double>((i + 3 * n) % 7) - 0.12;
    ++n;
  }
  const auto& c = layer.config();
  REQUIRE(n == (c.use_bias || c.qkv_bias ? 3u : 0u) + (c.use_bias || c.proj_bias ? 1u : 0u));
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

/// RoPE(x, position p) through the op, using the offset argument to place a single row at p.
std::vector<double> rope_at(std::vector<double> x, const attn::ops::RopeTables<double>& t, Index p) {
  const Index d = static_cast<Index>(x.size());
  attn::ops::apply_rope(attn::ops::heads_out<double>(x.data(), 1, 1, 1, d, d), t.view(), p);
  return x;
}

}  // namespace

TEST_CASE("group_query: weights have the reference's names, shapes, flags and RoPE tables", "[group_query]") {
  const GQA plain({.d_model = 16, .n_head = 4, .n_kv_head = 2, .max_seq_len = 10});
  const auto& w = plain.parameters();
  std::vector<std::string> names;
  for (const auto& p : w) names.push_back(p.name);
  REQUIRE(names == std::vector<std::string>{"w_q/kernel", "w_k/kernel", "w_v/kernel", "w_o/kernel",
                                            "rope/cos_cached", "rope/sin_cached"});
  REQUIRE(w[0].shape == Shape{16, 16});
  REQUIRE(w[1].shape == Shape{16, 8});
  REQUIRE(w[2].shape == Shape{16, 8});
  REQUIRE(w[3].shape == Shape{16, 16});
  REQUIRE(w[4].shape == Shape{10, 2});  // d = 4, r = 4, r/2 = 2
  REQUIRE(w[5].shape == Shape{10, 2});
  for (std::size_t i = 0; i < 4; ++i) REQUIRE(w[i].trainable);
  REQUIRE_FALSE(w[4].trainable);
  REQUIRE_FALSE(w[5].trainable);
  // d = 4, theta = 10000: ω = [1, 0.01]
  const double omega[2] = {1.0, 0.01};
  for (Index p = 0; p < 10; ++p)
    for (Index i = 0; i < 2; ++i) {
      const auto at = static_cast<std::size_t>(p * 2 + i);
      REQUIRE(w[4].data[at] == Approx(std::cos(static_cast<double>(p) * omega[i])).margin(1e-15));
      REQUIRE(w[5].data[at] == Approx(std::sin(static_cast<double>(p) * omega[i])).margin(1e-15));
    }
  // glorot_uniform: |w| <= sqrt(6 / (fan_in + fan_out)), and not all zero
  const double limit = std::sqrt(6.0 / (16.0 + 8.0));
  double sq = 0;
  for (double v : w[1].data) {
    REQUIRE(std::abs(v) <= limit);
    sq += v * v;
  }
  REQUIRE(sq > 0);

  const GQA biased({.d_model = 16, .n_head = 4, .n_kv_head = 2, .max_seq_len = 10, .use_bias = true});
  names.clear();
  for (const auto& p : biased.parameters()) names.push_back(p.name);
  REQUIRE(names == std::vector<std::string>{"w_q/kernel", "w_q/bias", "w_k/kernel", "w_k/bias", "w_v/kernel",
                                            "w_v/bias", "w_o/kernel", "w_o/bias", "rope/cos_cached",
                                            "rope/sin_cached"});
  REQUIRE(biased.parameters()[1].shape == Shape{16});
  REQUIRE(biased.parameters()[3].shape == Shape{8});
  REQUIRE(biased.parameters()[5].shape == Shape{8});
  REQUIRE(biased.parameters()[7].shape == Shape{16});
  for (std::size_t i : {1u, 3u, 5u, 7u})
    for (double v : biased.parameters()[i].data) REQUIRE(v == 0.0);
  const GQA ones_bias({.d_model = 16, .n_head = 4, .n_kv_head = 2, .use_bias = true, .bias_initializer = "ones"});
  for (double v : ones_bias.parameters()[1].data) REQUIRE(v == 1.0);

  // r = 0 (d = 8, rope_percentage 0.1): tables of one column of zeros
  LogCapture quiet;
  const GQA none({.d_model = 16, .n_head = 2, .n_kv_head = 1, .max_seq_len = 6, .rope_percentage = 0.1});
  REQUIRE(none.parameters()[4].shape == Shape{6, 1});
  for (std::size_t i : {4u, 5u})
    for (double v : none.parameters()[i].data) REQUIRE(v == 0.0);
  // partial rotation: d = 8, rope_percentage 0.5 -> r = 4, two columns
  REQUIRE(GQA({.d_model = 16, .n_head = 2, .n_kv_head = 1, .rope_percentage = 0.5}).parameters()[4].shape ==
          Shape{2048, 2});

  // deterministic from the seed; a new seed changes the kernels, never the tables
  const Cfg cfg{.d_model = 16, .n_head = 4, .n_kv_head = 2, .max_seq_len = 10};
  const GQA a(cfg, 5), b(cfg, 5), c(cfg, 6);
  for (std::size_t i = 0; i < 6; ++i) REQUIRE(a.parameters()[i].data == b.parameters()[i].data);
  for (std::size_t i = 0; i < 4; ++i) REQUIRE(a.parameters()[i].data != c.parameters()[i].data);
  REQUIRE(a.parameters()[4].data == c.parameters()[4].data);
  GQA reset(cfg, 6);
  reset.reset_parameters(5);
  for (std::size_t i = 0; i < 6; ++i) REQUIRE(reset.parameters()[i].data == a.parameters()[i].data);
}

TEST_CASE("rope op: rotated width, hand values, identity at 0, pass-through, offsets", "[group_query][rope]") {
  using attn::ops::rope_rotary_dim;
  REQUIRE(rope_rotary_dim(4, 1.0) == 4);
  REQUIRE(rope_rotary_dim(5, 1.0) == 4);
  REQUIRE(rope_rotary_dim(3, 1.0) == 2);
  REQUIRE(rope_rotary_dim(8, 0.5) == 4);
  REQUIRE(rope_rotary_dim(8, 0.1) == 0);   // int(0.8) = 0
  REQUIRE(rope_rotary_dim(10, 0.3) == 2);  // int(3.0000000000000004) = 3 -> 2
  REQUIRE(rope_rotary_dim(1, 1.0) == 0);
  REQUIRE(rope_rotary_dim(64, 0.25) == 16);

  // Spec: d = 4, theta = 10000, [1, 0, 1, 0] at position 1 -> [cos 1, sin 1, cos 0.01, sin 0.01].
  const auto t4 = attn::ops::rope_tables<double>(4, 1.0, 10000.0, 4);
  REQUIRE(t4.rotary_dim == 4);
  REQUIRE(t4.columns() == 2);
  std::vector<double> buf{1, 0, 1, 0, 1, 0, 1, 0};  // [B=1, L=2, heads=1, d=4]
  attn::ops::apply_rope(attn::ops::heads_out<double>(buf.data(), 1, 2, 1, 4, 4), t4.view());
  REQUIRE(buf[0] == 1.0);  // position 0: the identity
  REQUIRE(buf[1] == 0.0);
  REQUIRE(buf[2] == 1.0);
  REQUIRE(buf[3] == 0.0);
  REQUIRE(buf[4] == Approx(0.540302).margin(5e-7));
  REQUIRE(buf[5] == Approx(0.841471).margin(5e-7));
  REQUIRE(buf[6] == Approx(0.999950).margin(5e-7));
  REQUIRE(buf[7] == Approx(0.010000).margin(5e-7));
  REQUIRE(buf[4] == Approx(std::cos(1.0)).margin(1e-15));
  REQUIRE(buf[7] == Approx(std::sin(0.01)).margin(1e-15));

  // Position 0 is the identity on any vector; an odd head width leaves its last feature alone.
  const auto t5 = attn::ops::rope_tables<double>(5, 1.0, 10000.0, 8);
  REQUIRE(t5.rotary_dim == 4);
  const std::vector<double> x5{0.3, -1.2, 0.7, 2.0, -0.4};
  REQUIRE(rope_at(x5, t5, 0) == x5);
  const auto y5 = rope_at(x5, t5, 6);
  REQUIRE(y5[4] == x5[4]);
  REQUIRE(y5[0] == Approx(0.3 * std::cos(6.0) + 1.2 * std::sin(6.0)).margin(1e-14));
  REQUIRE(y5[1] == Approx(0.3 * std::sin(6.0) - 1.2 * std::cos(6.0)).margin(1e-14));
  const double w1 = 1.0 / std::pow(10000.0, 2.0 / 4.0);
  REQUIRE(y5[2] == Approx(0.7 * std::cos(6 * w1) - 2.0 * std::sin(6 * w1)).margin(1e-14));
  REQUIRE(y5[3] == Approx(0.7 * std::sin(6 * w1) + 2.0 * std::cos(6 * w1)).margin(1e-14));
  // rotation preserves the norm
  REQUIRE(dot(y5, y5) == Approx(dot(x5, x5)).epsilon(1e-14));

  // The offset: row l of a buffer applied with offset o is rotated as position o + l.
  const auto t8 = attn::ops::rope_tables<double>(8, 1.0, 500.0, 12);
  const auto seq = random_any<double>({1, 5, 2, 8}, 17);  // [B, L, heads, d]
  std::vector<double> whole(seq.values());
  attn::ops::apply_rope(attn::ops::heads_out<double>(whole.data(), 1, 5, 2, 8, 16), t8.view());
  std::vector<double> tail(seq.values().begin() + 3 * 16, seq.values().end());  // rows 3, 4
  attn::ops::apply_rope(attn::ops::heads_out<double>(tail.data(), 1, 2, 2, 8, 16), t8.view(), 3);
  for (std::size_t i = 0; i < tail.size(); ++i) REQUIRE(tail[i] == whole[3 * 16 + i]);
  // out of the table: a ShapeError, nothing read or written
  std::vector<double> three(3 * 8, 1.0);
  REQUIRE_THROWS_WITH(
      attn::ops::apply_rope(attn::ops::heads_out<double>(three.data(), 1, 3, 1, 8, 8), t8.view(), 10),
      "rope: positions [10, 13) exceed the table length (12)");
  REQUIRE_THROWS_AS(attn::ops::apply_rope(attn::ops::heads_out<double>(three.data(), 1, 3, 1, 8, 8), t8.view(), -1),
                    attn::ShapeError);
  REQUIRE_THROWS_AS(attn::ops::apply_rope(attn::ops::heads_out<double>(three.data(), 1, 1, 1, 4, 4), t8.view()),
                    attn::ShapeError);  // tables for width 8 on heads of width 4
  for (double v : three) REQUIRE(v == 1.0);
  REQUIRE_THROWS_WITH(attn::ops::rope_tables<double>(0, 1.0, 10000.0, 4), "head_dim must be positive, got 0");
  REQUIRE_THROWS_WITH(attn::ops::rope_tables<double>(4, 1.0, 10000.0, 0), "max_seq_len must be positive, got 0");
  REQUIRE_THROWS_WITH(attn::ops::rope_tables<double>(4, 1.0, -2.0, 4), "rope_theta must be positive, got -2.0");
  REQUIRE_THROWS_WITH(attn::ops::rope_tables<double>(4, 0.0, 10000.0, 4),
                      "rope_percentage must be in (0, 1], got 0.0");

  // float tables are the double tables rounded
  const auto tf = attn::ops::rope_tables<float>(8, 1.0, 500.0, 12);
  for (std::size_t i = 0; i < tf.cos.size(); ++i) {
    REQUIRE(tf.cos[i] == static_cast<float>(t8.cos[i]));
    REQUIRE(tf.sin[i] == static_cast<float>(t8.sin[i]));
  }
}

TEST_CASE("rope op: <RoPE(q, m), RoPE(k, n)> depends only on m - n", "[group_query][rope]") {
  for (const double pct : {1.0, 0.5}) {
    const auto t = attn::ops::rope_tables<double>(8, pct, 10000.0, 64);
    const auto q = random_any<double>({8}, 1).values();
    const auto k = random_any<double>({8}, 2).values();
    const double d30 = dot(rope_at(q, t, 3), rope_at(k, t, 0));
    REQUIRE(dot(rope_at(q, t, 7), rope_at(k, t, 4)) == Approx(d30).margin(1e-12));
    REQUIRE(dot(rope_at(q, t, 50), rope_at(k, t, 47)) == Approx(d30).margin(1e-12));
    const double d0 = dot(q, k);
    REQUIRE(dot(rope_at(q, t, 9), rope_at(k, t, 9)) == Approx(d0).margin(1e-12));
    // and it does depend on m - n
    REQUIRE(std::abs(dot(rope_at(q, t, 7), rope_at(k, t, 5)) - d30) > 1e-6);
  }
}

TEST_CASE("group_query: equals an independent loop implementation", "[group_query]") {
  struct Case {
    int d_model, n_head, n_kv_head;
    double pct, theta;
  };
  const std::vector<Case> cases{
      {16, 4, 4, 1.0, 10000.0},  // MHA with RoPE
      {16, 4, 2, 1.0, 10000.0},  // GQA, groups of 2
      {16, 4, 1, 1.0, 10000.0},  // MQA
      {24, 6, 3, 0.5, 100.0},    // d = 4, r = 2: partial rotation
      {18, 6, 2, 1.0, 10000.0},  // d = 3 (odd), r = 2, one feature passes through
      {20, 4, 2, 0.75, 5.0},     // d = 5, int(3.75) = 3 -> r = 2
      {16, 2, 1, 0.1, 10000.0},  // d = 8, r = 0: no rotation
  };
  LogCapture quiet;  // odd head widths log warnings
  for (const auto& c : cases)
    for (const bool bias : {false, true}) {
      INFO("d_model " << c.d_model << " n_head " << c.n_head << " n_kv_head " << c.n_kv_head << " pct " << c.pct
                      << " bias " << bias);
      GQA layer({.d_model = c.d_model, .n_head = c.n_head, .n_kv_head = c.n_kv_head, .max_seq_len = 16,
                 .rope_percentage = c.pct, .rope_theta = c.theta, .use_bias = bias},
                static_cast<std::uint64_t>(c.d_model * 10 + c.n_kv_head));
      set_biases(layer);
      const auto x = random_tensor<double, 3>({2, 7, c.d_model}, 40 + static_cast<std::uint64_t>(c.n_head));
      const auto r = layer.forward_with_weights(x);
      const auto ref = oracle(layer, x);
      ATTN_REQUIRE_CLOSE(r.output, ref.y, 1e-12, 1e-12);
      ATTN_REQUIRE_CLOSE(r.weights, ref.p, 1e-12, 1e-12);
      ATTN_REQUIRE_CLOSE(layer.forward(x), r.output, 1e-12, 1e-12);
    }
}

TEST_CASE("group_query: head mapping 8/2 sends query heads 0-3 to kv head 0 and 4-7 to kv head 1",
          "[group_query]") {
  // d = 2. Zero Q/K kernels give uniform attention; V is its bias only (zero kernel), distinct per kv
  // head; the output projection is the identity. So output head h = the value of the kv head it reads.
  GQA layer({.d_model = 16, .n_head = 8, .n_kv_head = 2, .use_bias = true});
  auto& w = layer.parameters();
  for (auto& p : w)
    if (p.trainable) std::fill(p.data.begin(), p.data.end(), 0.0);
  w.find("w_v/bias")->data = {1.0, 1.5, 2.0, 2.5};
  auto& wo = *w.find("w_o/kernel");
  for (Index i = 0; i < 16; ++i) wo.data[static_cast<std::size_t>(i * 16 + i)] = 1.0;
  const auto x = random_tensor<double, 3>({2, 5, 16}, 3);
  const auto y = layer.forward(x);
  for (Index b = 0; b < 2; ++b)
    for (Index t = 0; t < 5; ++t)
      for (Index h = 0; h < 8; ++h) {
        const double expect0 = h < 4 ? 1.0 : 2.0;
        REQUIRE(y(b, t, 2 * h) == Approx(expect0).epsilon(1e-14));
        REQUIRE(y(b, t, 2 * h + 1) == Approx(expect0 + 0.5).epsilon(1e-14));
      }
}

TEST_CASE("group_query: with RoPE the identity and n_kv_head == n_head it equals multi_head", "[group_query]") {
  LogCapture quiet;  // r = 0 logs a warning
  for (const auto& [d_model, heads] : std::vector<std::pair<int, int>>{{16, 2}, {32, 4}}) {
    // d = 8, rope_percentage 0.1 -> r = 0
    const GQA g({.d_model = d_model, .n_head = heads, .n_kv_head = heads, .rope_percentage = 0.1}, 21);
    MHA m({.embed_dim = d_model, .num_heads = heads, .use_bias = false}, 99);
    const auto& gw = g.parameters();
    auto& qkv = *m.parameters().find("qkv/kernel");
    auto& proj = *m.parameters().find("proj/kernel");
    REQUIRE(qkv.shape == Shape{d_model, 3 * d_model});
    const Index D = d_model;
    for (Index i = 0; i < D; ++i)
      for (Index blk = 0; blk < 3; ++blk)
        for (Index o = 0; o < D; ++o)
          qkv.data[static_cast<std::size_t>(i * 3 * D + blk * D + o)] =
              gw[static_cast<std::size_t>(blk)].data[static_cast<std::size_t>(i * D + o)];
    proj.data = gw.find("w_o/kernel")->data;
    const auto x = random_tensor<double, 3>({2, 6, d_model}, 8);
    const auto rg = g.forward_with_weights(x);
    const auto rm = m.forward_with_weights(x);
    ATTN_REQUIRE_CLOSE(rg.output, rm.output, 1e-12, 1e-12);
    ATTN_REQUIRE_CLOSE(rg.weights, rm.weights, 1e-12, 1e-12);
    // with a key padding mask too
    attn::Tensor<bool, 2> pad(2, 6);
    pad.setConstant(true);
    pad(0, 5) = pad(1, 1) = false;
    ATTN_REQUIRE_CLOSE(g.forward(x, {.key_padding = attn::KeyPaddingMask(pad)}), m.forward(x, {.key_padding = attn::KeyPaddingMask(pad)}), 1e-12, 1e-12);

    // RoPE on (same weights otherwise): no longer equal, so the rotation is really applied
    GQA rot({.d_model = d_model, .n_head = heads, .n_kv_head = heads}, 21);
    REQUIRE_FALSE(attn_test::compare(rot.forward(x), rm.output, 1e-6, 1e-6).ok);
  }
}

TEST_CASE("group_query: shared K/V heads equal multi_head with the K/V head columns repeated (r = 0)",
          "[group_query]") {
  LogCapture quiet;
  // d_model 16, 4 query heads over 2 kv heads, d = 4, rope_percentage 0.2 -> int(0.8) = 0
  const GQA g({.d_model = 16, .n_head = 4, .n_kv_head = 2, .rope_percentage = 0.2}, 4);
  MHA m({.embed_dim = 16, .num_heads = 4}, 1);
  const auto& gw = g.parameters();
  auto& qkv = *m.parameters().find("qkv/kernel");
  const Index D = 16, d = 4, g_size = 2;
  for (Index i = 0; i < D; ++i)
    for (Index o = 0; o < D; ++o) {
      const Index h = o / d, f = o % d, kv_col = (h / g_size) * d + f;
      qkv.data[static_cast<std::size_t>(i * 3 * D + o)] = gw[0].data[static_cast<std::size_t>(i * D + o)];
      qkv.data[static_cast<std::size_t>(i * 3 * D + D + o)] = gw[1].data[static_cast<std::size_t>(i * 8 + kv_col)];
      qkv.data[static_cast<std::size_t>(i * 3 * D + 2 * D + o)] = gw[2].data[static_cast<std::size_t>(i * 8 + kv_col)];
    }
  m.parameters().find("proj/kernel")->data = gw[3].data;
  const auto x = random_tensor<double, 3>({3, 5, 16}, 12);
  ATTN_REQUIRE_CLOSE(g.forward(x), m.forward(x), 1e-12, 1e-12);
}

TEST_CASE("group_query: a rank-2 mask is key padding: equals running on the truncated sequence",
          "[group_query]") {
  GQA layer({.d_model = 16, .n_head = 4, .n_kv_head = 2, .max_seq_len = 32, .use_bias = true}, 3);
  set_biases(layer);
  const auto x = random_tensor<double, 3>({2, 6, 16}, 9);
  attn::Tensor<bool, 2> pad(2, 6);
  pad.setConstant(true);
  for (Index j = 4; j < 6; ++j) pad(1, j) = false;  // item 1 has 4 real tokens
  const auto r = layer.forward_with_weights(x, {.key_padding = attn::KeyPaddingMask(pad)});
  attn::Tensor<double, 3> x1 = x.slice(std::array<Index, 3>{1, 0, 0}, std::array<Index, 3>{1, 4, 16});
  const auto y1 = layer.forward(x1);
  for (Index t = 0; t < 4; ++t)
    for (Index f = 0; f < 16; ++f) REQUIRE(r.output(1, t, f) == Approx(y1(0, t, f)).margin(1e-12));
  for (Index h = 0; h < 4; ++h)
    for (Index i = 0; i < 6; ++i) {
      REQUIRE(r.weights(1, h, i, 4) == 0.0);
      REQUIRE(r.weights(1, h, i, 5) == 0.0);
      for (Index b = 0; b < 2; ++b) {
        double s = 0;
        for (Index j = 0; j < 6; ++j) s += r.weights(b, h, i, j);
        REQUIRE(s == Approx(1.0).epsilon(1e-12));
      }
    }
  // item 0 is unmasked: as without a mask
  const auto r0 = layer.forward(x);
  for (Index t = 0; t < 6; ++t)
    for (Index f = 0; f < 16; ++f) REQUIRE(r.output(0, t, f) == Approx(r0(0, t, f)).margin(1e-12));
  const auto ref = oracle(layer, x, [&](Index b, Index, Index, Index j) { return pad(b, j); });
  ATTN_REQUIRE_CLOSE(r.output, ref.y, 1e-12, 1e-12);
  ATTN_REQUIRE_CLOSE(r.weights, ref.p, 1e-12, 1e-12);
}

TEST_CASE("group_query: causal masking matches the oracle and the prefix property", "[group_query]") {
  GQA layer({.d_model = 12, .n_head = 3, .n_kv_head = 1, .max_seq_len = 16, .use_bias = true, .causal = true},
            8);
  set_biases(layer);
  const auto x = random_tensor<double, 3>({2, 7, 12}, 31);
  const auto r = layer.forward_with_weights(x);
  const auto ref = oracle(layer, x, [](Index, Index, Index i, Index j) { return j <= i; });
  ATTN_REQUIRE_CLOSE(r.output, ref.y, 1e-12, 1e-12);
  ATTN_REQUIRE_CLOSE(r.weights, ref.p, 1e-12, 1e-12);
  for (Index b = 0; b < 2; ++b)
    for (Index h = 0; h < 3; ++h)
      for (Index i = 0; i < 7; ++i)
        for (Index j = i + 1; j < 7; ++j) REQUIRE(r.weights(b, h, i, j) == 0.0);
  // the first k outputs depend only on the first k tokens
  attn::Tensor<double, 3> prefix = x.slice(std::array<Index, 3>{0, 0, 0}, std::array<Index, 3>{2, 4, 12});
  const auto yp = layer.forward(prefix);
  for (Index b = 0; b < 2; ++b)
    for (Index t = 0; t < 4; ++t)
      for (Index f = 0; f < 12; ++f) REQUIRE(yp(b, t, f) == Approx(r.output(b, t, f)).margin(1e-12));
  // combined with a key padding mask
  attn::Tensor<bool, 2> pad(2, 7);
  pad.setConstant(true);
  pad(0, 0) = false;  // query 0 of item 0 then sees nothing: a zero context, output = the output bias
  pad(1, 3) = false;
  const auto rm = layer.forward_with_weights(x, {.key_padding = attn::KeyPaddingMask(pad)});
  const auto refm = oracle(layer, x, [&](Index b, Index, Index i, Index j) { return j <= i && pad(b, j); });
  ATTN_REQUIRE_CLOSE(rm.output, refm.y, 1e-12, 1e-12);
  ATTN_REQUIRE_CLOSE(rm.weights, refm.p, 1e-12, 1e-12);
  const auto& bo = layer.parameters().find("w_o/bias")->data;
  for (Index f = 0; f < 12; ++f) REQUIRE(rm.output(0, 0, f) == Approx(bo[static_cast<std::size_t>(f)]).margin(1e-15));
  // without causal, the same layer differs (the flag is honoured)
  Cfg bidirectional = layer.config();
  bidirectional.causal = false;
  GQA open(bidirectional);
  open.parameters() = layer.parameters();  // same weights
  REQUIRE_FALSE(attn_test::compare(open.forward(x), r.output, 1e-6, 1e-6).ok);
}

TEST_CASE("group_query: mask ranks 3 and 4, fully masked rows give zeros, bad masks are errors",
          "[group_query]") {
  const GQA layer({.d_model = 16, .n_head = 4, .n_kv_head = 2}, 4);
  const auto x = random_tensor<double, 3>({1, 3, 16}, 5);
  attn::Tensor<bool, 3> m3(1, 3, 3);
  m3.setConstant(true);
  m3(0, 0, 2) = false;
  for (Index j = 0; j < 3; ++j) m3(0, 2, j) = false;  // query 2 sees nothing
  const auto r3 = layer.forward_with_weights(x, {.attn_mask = attn::AttnMask(m3)});
  for (Index h = 0; h < 4; ++h) {
    for (Index j = 0; j < 3; ++j) REQUIRE(r3.weights(0, h, 2, j) == 0.0);
    REQUIRE(r3.weights(0, h, 0, 2) == 0.0);
    REQUIRE(r3.weights(0, h, 0, 0) + r3.weights(0, h, 0, 1) == Approx(1.0).epsilon(1e-12));
  }
  for (Index f = 0; f < 16; ++f) REQUIRE(r3.output(0, 2, f) == 0.0);  // zero context, no bias
  const auto ref3 = oracle(layer, x, [&](Index b, Index, Index i, Index j) { return m3(b, i, j); });
  ATTN_REQUIRE_CLOSE(r3.output, ref3.y, 1e-12, 1e-12);
  // rank 4 with a head extent of 1 broadcasts like rank 3
  attn::Tensor<bool, 4> m41 = m3.reshape(std::array<Index, 4>{1, 1, 3, 3});
  ATTN_REQUIRE_CLOSE(layer.forward(x, {.attn_mask = attn::AttnMask(m41)}), r3.output, 1e-12, 1e-12);
  // per query head
  attn::Tensor<bool, 4> mh(1, 4, 3, 3);
  for (Index h = 0; h < 4; ++h)
    for (Index i = 0; i < 3; ++i)
      for (Index j = 0; j < 3; ++j) mh(0, h, i, j) = (h + i + j) % 3 != 0 || j == i;
  const auto rh = layer.forward_with_weights(x, {.attn_mask = attn::AttnMask(mh)});
  const auto refh = oracle(layer, x, [&](Index b, Index h, Index i, Index j) { return mh(b, h, i, j); });
  ATTN_REQUIRE_CLOSE(rh.output, refh.y, 1e-12, 1e-12);
  ATTN_REQUIRE_CLOSE(rh.weights, refh.p, 1e-12, 1e-12);

  // masks of the wrong shape: a ShapeError naming the layer, expected and actual shapes
  attn::Tensor<bool, 4> kvh(1, 2, 3, 3);  // n_kv_head heads is not a valid head extent
  kvh.setConstant(true);
  REQUIRE_THROWS_WITH(layer.forward(x, {.attn_mask = attn::AttnMask(kvh)}),
                      "group_query: attn_mask of shape [1, 2, 3, 3] does not broadcast to [1, 4, 3, 3] (an extent "
                      "is neither 1 nor equal)");
  attn::Tensor<bool, 2> bad2(1, 4);
  bad2.setConstant(true);
  REQUIRE_THROWS_WITH(layer.forward(x, {.key_padding = attn::KeyPaddingMask(bad2)}),
                      "group_query: key_padding_mask must have shape [1, 3] ([batch, keys], true = a real key), "
                      "got [1, 4]");
  REQUIRE_THROWS_WITH(layer.forward(x, {.attn_mask = attn::AttnMask(bad2)}),
                      "group_query: attn_mask of shape [1, 4] does not broadcast to [1, 4, 3, 3] (the key axis "
                      "must equal S)");
  attn::Tensor<bool, 3> bad3(1, 3, 2);
  bad3.setConstant(true);
  REQUIRE_THROWS_AS(layer.forward(x, {.attn_mask = attn::AttnMask(bad3)}), attn::ShapeError);
  attn::Tensor<bool, 1> r1(3);
  r1.setConstant(true);
  REQUIRE_THROWS_WITH(layer.forward(x, {.attn_mask = attn::AttnMask(r1)}),
                      "group_query: attn_mask must have rank 2 [T, S], 3 [B, T, S] or 4 [B, 1|H, T, S], got rank 1 "
                      "with shape [3]");
}

TEST_CASE("group_query: float and double agree", "[group_query]") {
  const Cfg cfg{.d_model = 32, .n_head = 8, .n_kv_head = 2, .use_bias = true, .bias_initializer = "glorot_uniform"};
  const attn::GroupedQueryAttention<float> lf(cfg, 13);
  const GQA ld(cfg, 13);
  const auto xf = random_tensor<float, 3>({2, 40, 32}, 77);
  const auto xd = random_tensor<double, 3>({2, 40, 32}, 77);
  const auto rf = lf.forward_with_weights(xf);
  const auto rd = ld.forward_with_weights(xd);
  ATTN_REQUIRE_CLOSE(rf.output, rd.output, 1e-4, 1e-5);
  ATTN_REQUIRE_CLOSE(rf.weights, rd.weights, 1e-4, 1e-5);
  // the float tables are the double tables rounded
  for (std::size_t i : {8u, 9u})
    for (std::size_t j = 0; j < ld.parameters()[i].data.size(); ++j)
      REQUIRE(lf.parameters()[i].data[j] == static_cast<float>(ld.parameters()[i].data[j]));
}

TEST_CASE("group_query: validation messages", "[group_query]") {
  const auto msg = [](const Cfg& c) -> std::string {
    try {
      LogCapture quiet;
      GQA layer(c);
    } catch (const attn::ConfigError& e) {
      return e.what();
    }
    return "(no error)";
  };
  const Cfg ok{.d_model = 16, .n_head = 4, .n_kv_head = 2};
  auto with = [&](auto f) {
    Cfg c = ok;
    f(c);
    return msg(c);
  };
  REQUIRE(msg(ok) == "(no error)");
  REQUIRE(with([](Cfg& c) { c.d_model = 0; }) == "Parameter 'd_model' must be positive, got 0");
  REQUIRE(with([](Cfg& c) { c.n_head = -2; }) == "Parameter 'n_head' must be positive, got -2");
  REQUIRE(with([](Cfg& c) { c.n_kv_head = 0; }) == "n_kv_head must be positive, got 0");
  REQUIRE(with([](Cfg& c) { c.n_kv_head = -3; }) == "n_kv_head must be positive, got -3");
  REQUIRE(with([](Cfg& c) { c.max_seq_len = 0; }) == "max_seq_len must be positive, got 0");
  REQUIRE(with([](Cfg& c) { c.rope_theta = 0.0; }) == "rope_theta must be positive, got 0.0");
  REQUIRE(with([](Cfg& c) { c.rope_theta = -1.5; }) == "rope_theta must be positive, got -1.5");
  REQUIRE(with([](Cfg& c) { c.dropout_rate = 1.5; }) ==
          "Parameter 'dropout_rate' must be between 0.0 and 1.0, got 1.5");
  REQUIRE(with([](Cfg& c) { c.dropout_rate = -0.1; }) ==
          "Parameter 'dropout_rate' must be between 0.0 and 1.0, got -0.1");
  REQUIRE(with([](Cfg& c) { c.dropout_rate = 1.0; }) == "(no error)");
  REQUIRE(with([](Cfg& c) { c.rope_percentage = 0.0; }) == "rope_percentage must be in (0, 1], got 0.0");
  REQUIRE(with([](Cfg& c) { c.rope_percentage = 1.5; }) == "rope_percentage must be in (0, 1], got 1.5");
  REQUIRE(with([](Cfg& c) { c.rope_percentage = 1.0; }) == "(no error)");
  REQUIRE(with([](Cfg& c) { c.rope_percentage = 1e-9; }) == "(no error)");
  REQUIRE(with([](Cfg& c) { c.d_model = 10; }) == "d_model (10) must be divisible by n_head (4)");
  REQUIRE(with([](Cfg& c) { c.n_kv_head = 3; }) == "n_head (4) must be divisible by n_kv_head (3)");
  REQUIRE(with([](Cfg& c) { c.n_kv_head = 8; }) == "n_head (4) must be divisible by n_kv_head (8)");
  REQUIRE(with([](Cfg& c) { c.kernel_initializer = "bogus"; }) ==
          "Parameter 'kernel_initializer' must be one of ['glorot_uniform', 'glorot_normal', 'he_normal', "
          "'he_uniform', 'lecun_normal', 'lecun_uniform', 'zeros', 'ones'], got 'bogus'");
  REQUIRE_THAT(with([](Cfg& c) { c.bias_initializer = "random"; }),
               Catch::StartsWith("Parameter 'bias_initializer' must be one of ['glorot_uniform'"));

  // through the factory: the same wording, the reference's missing-parameter message, JSON kinds
  const Json base{{"d_model", 16}, {"n_head", 4}, {"n_kv_head", 2}};
  REQUIRE_NOTHROW(attn::validate_attention_config("group_query", base));
  auto fail = [](const Json& p) -> std::string {
    try {
      attn::validate_attention_config("group_query", p);
    } catch (const attn::ConfigError& e) {
      return e.what();
    }
    return "(no error)";
  };
  REQUIRE(fail({{"d_model", 16}, {"n_head", 4}}) ==
          "Required parameters for 'group_query' are missing: ['n_kv_head']. Required: ['d_model', 'n_head', "
          "'n_kv_head']");
  Json p = base;
  p["n_kv_head"] = 0;
  REQUIRE(fail(p) == "n_kv_head must be positive, got 0");
  p = base;
  p["d_model"] = -8;
  REQUIRE(fail(p) == "Parameter 'd_model' must be positive, got -8");
  p = base;
  p["n_kv_head"] = "2";
  REQUIRE(fail(p) == "Parameter 'n_kv_head' of 'group_query' must be an integer (32-bit), got string \"2\"");
  p = base;
  p["rope_percentage"] = 0;
  REQUIRE(fail(p) == "rope_percentage must be in (0, 1], got 0.0");
  p = base;
  p["n_head"] = 3;
  p["d_model"] = 12;
  p["n_kv_head"] = 2;
  REQUIRE(fail(p) == "n_head (3) must be divisible by n_kv_head (2)");
  p = base;
  p["kernel_regularizer"] = "l2";
  p["bias_regularizer"] = nullptr;
  p["causal"] = true;
  REQUIRE(fail(p) == "(no error)");
  const auto layer = attn::create_attention_layer<double>("group_query", p, "gqa", 2);
  REQUIRE(layer.config().at("kernel_regularizer") == "l2");
  REQUIRE(layer.config().at("causal") == true);
  REQUIRE(layer.target<GQA>()->config().causal);

  // discovery: the reference's defaults, in its order (then `causal`, `use_rope`, `qkv_bias` and
  // `proj_bias`, beyond the reference)
  const Json info = attn::get_attention_info().at("group_query");
  REQUIRE(info.at("class") == "GroupedQueryAttention");
  REQUIRE(info.at("required_params") == Json::array({"d_model", "n_head", "n_kv_head"}));
  const Json expected_optional = Json::parse(
      R"({"max_seq_len": 2048, "dropout_rate": 0.0, "rope_percentage": 1.0, "rope_theta": 10000.0,
          "use_bias": false, "kernel_initializer": "glorot_uniform", "bias_initializer": "zeros",
          "causal": false, "use_rope": true, "qkv_bias": false, "proj_bias": false,
          "kernel_regularizer": null, "bias_regularizer": null})");
  REQUIRE(attn::Json(info.at("optional_params")) == expected_optional);
  REQUIRE(info.at("input_ranks") == Json::array({3}));
}

TEST_CASE("group_query: shape errors, max_seq_len, empty sequences, tampered weights", "[group_query]") {
  const GQA layer({.d_model = 16, .n_head = 4, .n_kv_head = 2, .max_seq_len = 8});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 3>({1, 3, 15}, 1)),
                      "group_query: input must have shape [*, *, 16] ([batch, seq, d_model]), got [1, 3, 15]");
  const std::string too_long =
      "group_query: Input sequence length (9) exceeds max_seq_len (8). Please increase max_seq_len or "
      "truncate the input.";
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 3>({1, 9, 16}, 1)), too_long);
  REQUIRE_THROWS_WITH(layer.output_shape({1, 9, 16}), too_long);
  REQUIRE_THROWS_AS(layer.forward(random_tensor<double, 3>({1, 9, 16}, 1)), attn::ShapeError);
  REQUIRE(layer.forward(random_tensor<double, 3>({2, 8, 16}, 1)).dimension(1) == 8);  // exactly max_seq_len
  REQUIRE(layer.output_shape({2, 8, 16}) == Shape{2, 8, 16});
  // empty sequence and empty batch: empty outputs, no crash
  const auto e = layer.forward_with_weights(attn::Tensor<double, 3>(2, 0, 16));
  REQUIRE(e.output.dimension(1) == 0);
  REQUIRE(e.weights.dimension(1) == 4);
  REQUIRE(layer.forward(attn::Tensor<double, 3>(0, 3, 16)).dimension(0) == 0);
  // the factory path: rank checked, output shape
  const auto any = attn::create_attention_layer<double>(
      "group_query", Json{{"d_model", 16}, {"n_head", 4}, {"n_kv_head", 2}, {"max_seq_len", 8}}, "", 0);
  const auto ax = random_any<double>({2, 5, 16}, 4);
  REQUIRE(any.forward(ax).shape() == Shape{2, 5, 16});
  ATTN_REQUIRE_CLOSE(any.forward(ax).to_tensor<3>(), layer.forward(ax.to_tensor<3>()), 0.0, 0.0);
  REQUIRE_THROWS_AS(any.forward(random_any<double>({2, 9, 16}, 4)), attn::ShapeError);
  // weights replaced with the wrong shape: a WeightsError, never an out-of-bounds read
  GQA tampered = layer;
  auto& cos = *tampered.parameters().find("rope/cos_cached");
  cos.data.resize(4);
  REQUIRE_THROWS_AS(tampered.forward(random_tensor<double, 3>({1, 3, 16}, 1)), attn::WeightsError);
  GQA tampered2 = layer;
  tampered2.parameters().find("w_k/kernel")->shape = {16, 16};
  REQUIRE_THROWS_WITH(tampered2.forward(random_tensor<double, 3>({1, 3, 16}, 1)),
                      "group_query: weight 'w_k/kernel' must have shape [16, 8] (128 values), got shape "
                      "[16, 16] with 128 values");
}

TEST_CASE("group_query: log lines at construction", "[group_query][log]") {
  using L = attn::LogLevel;
  using Lines = std::vector<std::pair<L, std::string>>;
  const auto lines_of = [](const Cfg& c) {
    LogCapture cap;
    const GQA layer(c);
    return cap.lines;
  };
  REQUIRE(lines_of({.d_model = 32, .n_head = 4, .n_kv_head = 2}) ==
          Lines{{L::info, "GroupedQueryAttention initialized: d_model=32, n_head=4, n_kv_head=2, groups=2"}});
  // d = 3: odd head width, int(3) = 3 rounded down to 2
  REQUIRE(lines_of({.d_model = 9, .n_head = 3, .n_kv_head = 1}) ==
          Lines{{L::warning, "head_dim (3) is odd, RoPE works best with even dimensions"},
                {L::info, "Adjusted rope_dim to 2 to ensure even dimension"},
                {L::info, "GroupedQueryAttention initialized: d_model=9, n_head=3, n_kv_head=1, groups=3"}});
  // d = 8, rope_percentage 0.1: int(0.8) = 0, nothing rotates
  REQUIRE(lines_of({.d_model = 16, .n_head = 2, .n_kv_head = 2, .rope_percentage = 0.1}) ==
          Lines{{L::info, "GroupedQueryAttention initialized: d_model=16, n_head=2, n_kv_head=2, groups=1"},
                {L::warning, "rope_dim is too small, no rotary embedding will be applied"}});
  // d = 3, rope_percentage 0.5: int(1.5) = 1, rounded down to 0
  REQUIRE(lines_of({.d_model = 12, .n_head = 4, .n_kv_head = 4, .rope_percentage = 0.5}) ==
          Lines{{L::warning, "head_dim (3) is odd, RoPE works best with even dimensions"},
                {L::info, "Adjusted rope_dim to 0 to ensure even dimension"},
                {L::info, "GroupedQueryAttention initialized: d_model=12, n_head=4, n_kv_head=4, groups=1"},
                {L::warning, "rope_dim is too small, no rotary embedding will be applied"}});
  // the capture restored the level; at the default level the INFO line is not even formatted
  const auto before = attn::log_level();
  {
    LogCapture cap;
    attn::set_log_level(L::warning);
    const GQA layer({.d_model = 32, .n_head = 4, .n_kv_head = 2});
    REQUIRE(cap.lines.empty());
  }
  REQUIRE(attn::log_level() == before);
}

// ---- golden parity (tools/golden/group_query.py, tests/data/group_query/) ----

using namespace attn_test;

TEMPLATE_TEST_CASE("golden: group_query with RoPE matches PyTorch ops", "[golden][group_query]", float,
                   double) {
  using T = TestType;
  for_each_golden<T>("group_query", [](const Golden& g) {
    attn::GroupedQueryAttention<T> layer(g.config.get<attn::GroupedQueryAttentionConfig>());
    attn::torch::GroupedQueryOptions options;
    options.rope = g.meta("rope_layout") == "half_split" ? attn::torch::RopeLayout::half_split
                                                         : attn::torch::RopeLayout::interleaved;
    attn::torch::load_grouped_query(layer, g.file, g.meta("torch_prefix"), options);
    const auto mask = mask_of(g, "input/mask");
    const auto r = layer.forward_with_weights(input<T, 3>(g, "x"), mask.masks<T>());
    check<T>(g, "output", r.output);
    check<T>(g, "weights", r.weights);
    auto any = attn::create_attention_layer<T>("group_query", g.config);
    attn::torch::load_grouped_query(any, g.file, g.meta("torch_prefix"), options);
    check_through_door<T>(g, any, {attn::AnyTensor<T>(input<T, 3>(g, "x"))}, mask);
  });
}

TEST_CASE("group_query: use_rope = false switches RoPE off explicitly", "[group_query][rope]") {
  const Cfg on{.d_model = 16, .n_head = 4, .n_kv_head = 2, .max_seq_len = 8};
  Cfg off = on;
  off.use_rope = false;
  LogCapture log;
  const GQA a(off, 7);
  // no tables, and none of RoPE's log lines
  for (const auto& w : a.parameters()) REQUIRE(w.name.rfind("rope/", 0) == std::string::npos);
  REQUIRE(a.parameters().size() == 4);
  for (const auto& [level, line] : log.lines) REQUIRE(line.find("rope") == std::string::npos);
  const auto x = random_tensor<double, 3>({2, 6, 16}, 3);
  const auto r = a.forward_with_weights(x);
  const auto ref = oracle(a, x);  // r = 0 in the oracle: no rotation
  ATTN_REQUIRE_CLOSE(r.output, ref.y, 1e-12, 1e-12);
  ATTN_REQUIRE_CLOSE(r.weights, ref.p, 1e-12, 1e-12);
  // the same trainable weights with RoPE on give a different output (the switch is honoured)
  GQA b(on, 7);
  for (std::size_t i = 0; i < 4; ++i) REQUIRE(b.parameters()[i].data == a.parameters()[i].data);
  REQUIRE_FALSE(attn_test::compare(b.forward(x), r.output, 1e-6, 1e-6).ok);
  // through JSON
  const auto any = attn::create_attention_layer<double>(
      "group_query", {{"d_model", 16}, {"n_head", 4}, {"n_kv_head", 2}, {"max_seq_len", 8}, {"use_rope", false}}, "", 7);
  ATTN_REQUIRE_CLOSE(any.forward(attn::AnyTensor<double>(x)).to_tensor<3>(), r.output, 0.0, 0.0);
}

TEST_CASE("group_query: per-projection biases (qkv_bias, proj_bias)", "[group_query]") {
  const auto names = [](const GQA& l) {
    std::vector<std::string> n;
    for (const auto& w : l.parameters()) n.push_back(w.name);
    return n;
  };
  using V = std::vector<std::string>;
  const Cfg base{.d_model = 8, .n_head = 4, .n_kv_head = 2, .max_seq_len = 5};
  Cfg qkv = base;
  qkv.qkv_bias = true;
  REQUIRE(names(GQA(qkv)) == V{"w_q/kernel", "w_q/bias", "w_k/kernel", "w_k/bias", "w_v/kernel", "w_v/bias",
                               "w_o/kernel", "rope/cos_cached", "rope/sin_cached"});
  Cfg proj = base;
  proj.proj_bias = true;
  REQUIRE(names(GQA(proj)) == V{"w_q/kernel", "w_k/kernel", "w_v/kernel", "w_o/kernel", "w_o/bias",
                                "rope/cos_cached", "rope/sin_cached"});
  Cfg all = base;
  all.use_bias = true;
  REQUIRE(names(GQA(all)).size() == 10);
  // forward equals the oracle with the biases set
  GQA layer(qkv, 3);
  set_biases(layer);
  const auto x = random_tensor<double, 3>({2, 5, 8}, 4);
  ATTN_REQUIRE_CLOSE(layer.forward(x), oracle(layer, x).y, 1e-12, 1e-12);
  // identity: q/k/v biases alone equal all four biases with a zero output bias
  GQA full(all, 3);
  for (auto& w : full.parameters())
    if (w.name == "w_o/bias")
      std::fill(w.data.begin(), w.data.end(), 0.0);
    else
      w.data = layer.parameters().find(w.name)->data;
  ATTN_REQUIRE_CLOSE(full.forward(x), layer.forward(x), 1e-13, 1e-14);
}
